//! End to end, managed identity: the real control plane mints tokens from the fake App Service
//! identity endpoint on loopback (never anything else: the stack strips every Azure variable and
//! these tests set IDENTITY_ENDPOINT to the fake), edges send them as Bearer tokens, and the mock
//! upstream checks each token's audience.

use std::time::{Duration, Instant};

use aiproxy_loadtest::identity::{FakeIdentityEndpoint, IdentityMode};
use aiproxy_loadtest::mock::{ExpectedAuth, MockAzure, MockConfig};
use aiproxy_loadtest::stack::{
    ControlPlane, ControlPlaneOptions, Edge, create_postgres_database, eventually, model_resource,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

const COGNITIVE: &str = "https://cognitiveservices.azure.com";
const AI_AZURE: &str = "https://ai.azure.com";
const PROXY_CLIENT_ID: &str = "aaaaaaaa-0000-0000-0000-000000000001";
const RESOURCE_CLIENT_ID: &str = "bbbbbbbb-0000-0000-0000-000000000002";

fn mi_env(identity: &FakeIdentityEndpoint, mode: &str) -> Vec<(String, String)> {
    vec![
        ("AIPROXY_CREDENTIAL".into(), mode.into()),
        ("IDENTITY_ENDPOINT".into(), identity.endpoint()),
        ("IDENTITY_HEADER".into(), identity.header().into()),
        ("AZURE_CLIENT_ID".into(), PROXY_CLIENT_ID.into()),
    ]
}

async fn bearer_mock(audience: &str) -> MockAzure {
    MockAzure::start(MockConfig {
        auth: ExpectedAuth::Bearer {
            audience: audience.into(),
        },
        ..Default::default()
    })
    .await
    .unwrap()
}

fn mi_resource(
    deployment: &str,
    model_type: &str,
    endpoint: &str,
    client_id: Option<&str>,
) -> Value {
    json!({
        "friendly_name": format!("{deployment} via managed identity"),
        "deployment_name": deployment,
        "model_type": model_type,
        "endpoint_url": endpoint,
        "use_managed_identity": true,
        "identity_client_id": client_id,
    })
}

async fn chat(edge: &Edge, key: &str, deployment: &str) -> reqwest::Response {
    edge.chat(
        key,
        deployment,
        &json!({"messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await
}

/// A control plane minting from a fake identity endpoint (tokens of `lifetime`), one
/// managed-identity `gpt-4o` resource on a bearer-checking mock, an open event and its key, with
/// the first token already minted.
struct MiSetup {
    identity: FakeIdentityEndpoint,
    cp: ControlPlane,
    upstream: MockAzure,
    mi: String,
    key: String,
}

impl MiSetup {
    async fn start(lifetime: Duration) -> Self {
        let identity = FakeIdentityEndpoint::start("hdr", lifetime).await.unwrap();
        let options = ControlPlaneOptions {
            extra_env: mi_env(&identity, "managed-identity"),
            ..Default::default()
        };
        let cp = ControlPlane::start_with(options).await;
        let upstream = bearer_mock(COGNITIVE).await;
        let mi = cp
            .admin()
            .create_resource(mi_resource(
                "gpt-4o",
                "foundry-model",
                &upstream.endpoint(),
                None,
            ))
            .await;
        let (_, key) = cp.admin().open_event(std::slice::from_ref(&mi)).await;
        cp.admin().wait_token(&mi, Duration::from_secs(10)).await;
        Self {
            identity,
            cp,
            upstream,
            mi,
            key,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_identity_and_scope_gets_one_token_for_a_thousand_requests_through_two_edges() {
    let identity = FakeIdentityEndpoint::start("identity-header-secret", Duration::from_secs(3600))
        .await
        .unwrap();
    let cp = ControlPlane::start_with(ControlPlaneOptions {
        extra_env: mi_env(&identity, "chain"),
        ..Default::default()
    })
    .await;
    let admin = cp.admin();
    let mi_upstream = bearer_mock(COGNITIVE).await;
    let keyed_upstream = MockAzure::start(MockConfig {
        auth: ExpectedAuth::ApiKey(aiproxy_loadtest::stack::UPSTREAM_KEY.into()),
        ..Default::default()
    })
    .await
    .unwrap();

    // One pool mixing a managed-identity member and a keyed one; a deployment on its own identity;
    // and a Foundry agent resource, which needs the ai.azure.com scope.
    let mi = admin
        .create_resource(mi_resource(
            "gpt-4o",
            "Foundry_Model",
            &mi_upstream.endpoint(),
            None,
        ))
        .await;
    let keyed = admin
        .create_resource(model_resource("gpt-4o", &keyed_upstream.endpoint(), ""))
        .await;
    let own = admin
        .create_resource(mi_resource(
            "gpt-4o-mini",
            "foundry-model",
            &mi_upstream.endpoint(),
            Some(RESOURCE_CLIENT_ID),
        ))
        .await;
    let agent = admin
        .create_resource(mi_resource(
            "agents",
            "Foundry_Agent",
            "https://acct.services.ai.azure.com/api/projects/hack",
            None,
        ))
        .await;
    let (_, key) = admin
        .open_event(&[mi.clone(), keyed.clone(), own.clone(), agent.clone()])
        .await;

    let status = admin.wait_token(&mi, Duration::from_secs(10)).await;
    assert_eq!(
        status["scope"],
        "https://cognitiveservices.azure.com/.default"
    );
    assert_eq!(
        status["credential"], "ManagedIdentityCredential",
        "{status}"
    );
    assert!(status["last_error"].is_null());
    let agent_status = admin.wait_token(&agent, Duration::from_secs(10)).await;
    assert_eq!(agent_status["scope"], "https://ai.azure.com/.default");
    let own_status = admin.wait_token(&own, Duration::from_secs(10)).await;
    assert_eq!(
        own_status["identity"],
        format!("user-assigned {RESOURCE_CLIENT_ID}")
    );
    let (_, listed) = admin.get("/resources").await;
    assert!(
        !listed.to_string().contains("eyJ"),
        "the admin API never shows a token"
    );

    let edges = [Edge::start(&cp, "").await, Edge::start(&cp, "").await];
    admin.wait_edges_acked(2, Duration::from_secs(5)).await;
    // Tokens may follow the catalog by a moment; wait until both edges answer.
    for edge in &edges {
        eventually(
            "the edge never got the token",
            Duration::from_secs(5),
            || async { chat(edge, &key, "gpt-4o-mini").await.status() == StatusCode::OK },
        )
        .await;
    }

    let mut handles = Vec::new();
    for worker in 0..10 {
        let (url_a, url_b, key) = (edges[0].api_base(), edges[1].api_base(), key.clone());
        handles.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut failures = Vec::new();
            for i in 0..100 {
                let base = if (worker + i) % 2 == 0 {
                    &url_a
                } else {
                    &url_b
                };
                let deployment = if i % 3 == 0 { "gpt-4o-mini" } else { "gpt-4o" };
                let r = http
                    .post(format!(
                        "{base}/openai/deployments/{deployment}/chat/completions"
                    ))
                    .header("api-key", &key)
                    .json(&json!({"messages": [{"role": "user", "content": "Hi"}]}))
                    .send()
                    .await
                    .unwrap();
                if r.status() != StatusCode::OK {
                    failures.push(format!(
                        "{}: {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    ));
                }
            }
            failures
        }));
    }
    for h in handles {
        let failures = h.await.unwrap();
        assert!(failures.is_empty(), "{failures:?}");
    }
    assert_eq!(
        mi_upstream
            .stats
            .rejected_auth
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_eq!(
        keyed_upstream
            .stats
            .rejected_auth
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert!(
        keyed_upstream
            .stats
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0,
        "the keyed pool member served too"
    );
    let seen = mi_upstream
        .stats
        .last_request("/openai/deployments/gpt-4o/chat/completions")
        .unwrap();
    assert!(seen.headers.get("api-key").is_none());

    assert_eq!(
        identity.count(Some(PROXY_CLIENT_ID), COGNITIVE),
        1,
        "{:?}",
        identity.counts()
    );
    assert_eq!(
        identity.count(Some(PROXY_CLIENT_ID), AI_AZURE),
        1,
        "{:?}",
        identity.counts()
    );
    assert_eq!(
        identity.count(Some(RESOURCE_CLIENT_ID), COGNITIVE),
        1,
        "{:?}",
        identity.counts()
    );
    assert_eq!(identity.calls().len(), 3, "{:?}", identity.calls());
}

#[tokio::test(flavor = "multi_thread")]
async fn two_control_plane_replicas_sharing_redis_mint_once() {
    let identity = FakeIdentityEndpoint::start("hdr", Duration::from_secs(3600))
        .await
        .unwrap();
    let mut env = mi_env(&identity, "managed-identity");
    env.push((
        "AIPROXY_REDIS_URL".into(),
        std::env::var("AIPROXY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
    ));
    env.push((
        "AIPROXY_ENCRYPTION_KEY".into(),
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into(),
    ));
    let options = ControlPlaneOptions {
        database_url: Some(create_postgres_database()),
        extra_env: env,
    };
    let first = ControlPlane::start_with(options.clone()).await;
    let upstream = bearer_mock(COGNITIVE).await;
    let mi = first
        .admin()
        .create_resource(mi_resource(
            "gpt-4o",
            "foundry-model",
            &upstream.endpoint(),
            None,
        ))
        .await;
    let (_, key) = first.admin().open_event(std::slice::from_ref(&mi)).await;
    let first_status = first.admin().wait_token(&mi, Duration::from_secs(10)).await;

    let second = ControlPlane::start_with(options).await;
    let second_status = second
        .admin()
        .wait_token(&mi, Duration::from_secs(10))
        .await;
    assert_eq!(
        second_status["token_expires_at"], first_status["token_expires_at"],
        "the second replica adopted the shared token"
    );

    let edge_a = Edge::start(&first, "").await;
    let edge_b = Edge::start(&second, "").await;
    for edge in [&edge_a, &edge_b] {
        eventually(
            "the edge never served the MI resource",
            Duration::from_secs(5),
            || async { chat(edge, &key, "gpt-4o").await.status() == StatusCode::OK },
        )
        .await;
    }
    assert_eq!(identity.calls().len(), 1, "{:?}", identity.calls());
}

#[tokio::test(flavor = "multi_thread")]
async fn sixty_second_tokens_are_refreshed_before_expiry_without_a_failed_request() {
    let MiSetup {
        identity,
        cp,
        upstream,
        mi: _mi,
        key,
    } = MiSetup::start(Duration::from_secs(60)).await;
    let edge = Edge::start_with_env(&cp, "", &[("AIPROXY_TOKEN_EXPIRY_MARGIN_SECS", "10")]).await;

    // Past the first refresh (~30 s) and past the first token's usable life (50 s).
    let started = Instant::now();
    let mut tokens_seen = std::collections::BTreeSet::new();
    let mut requests = 0;
    while started.elapsed() < Duration::from_secs(56) {
        let response = chat(&edge, &key, "gpt-4o").await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "at {:?}: {}",
            started.elapsed(),
            response.text().await.unwrap_or_default()
        );
        requests += 1;
        if let Some(seen) = upstream
            .stats
            .last_request("/openai/deployments/gpt-4o/chat/completions")
        {
            tokens_seen.insert(seen.headers["authorization"].to_str().unwrap().to_string());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        tokens_seen.len() >= 2,
        "a refreshed token was used ({requests} requests)"
    );
    let calls = identity.calls();
    assert!(
        (2..=3).contains(&calls.len()),
        "refreshed at half-life, not more: {calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_identity_endpoint_backs_off_while_the_old_token_serves() {
    let MiSetup {
        identity,
        cp,
        upstream: _upstream,
        mi,
        key,
    } = MiSetup::start(Duration::from_secs(24)).await;
    let minted_at = Instant::now();
    identity.set_mode(IdentityMode::Fail500);
    let edge = Edge::start_with_env(&cp, "", &[("AIPROXY_TOKEN_EXPIRY_MARGIN_SECS", "5")]).await;

    // The refresh at half-life (~12 s) fails; the status says why; the old token keeps serving.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let (_, r) = cp.admin().get(&format!("/resources/{mi}")).await;
        if r["managed_identity"]["last_error"].is_string() {
            break r["managed_identity"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "the failed refresh never showed: {r}"
        );
        assert_eq!(chat(&edge, &key, "gpt-4o").await.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("the identity service is failing"),
        "{status}"
    );
    assert!(status["next_attempt_at"].is_string(), "{status}");
    assert!(
        status["token_expires_at"].is_string(),
        "the old token is still held"
    );
    while minted_at.elapsed() < Duration::from_secs(17) {
        assert_eq!(chat(&edge, &key, "gpt-4o").await.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let failed = identity.calls().iter().filter(|c| c.status == 500).count();
    assert_eq!(
        failed,
        1,
        "one failed attempt, then at least 30 s of backoff: {:?}",
        identity.calls()
    );

    // Past expiry minus the margin the edge stops using it and says so.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let response = chat(&edge, &key, "gpt-4o").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("'gpt-4o via managed identity'")
            && message.contains("no managed-identity token is available"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn edges_serve_managed_identity_requests_without_the_control_plane_until_the_margin() {
    let MiSetup {
        identity: _identity,
        mut cp,
        upstream: _upstream,
        mi: _mi,
        key,
    } = MiSetup::start(Duration::from_secs(20)).await;
    let minted_at = Instant::now();
    let edge = Edge::start_with_env(&cp, "", &[("AIPROXY_TOKEN_EXPIRY_MARGIN_SECS", "5")]).await;
    eventually(
        "the edge never served the MI resource",
        Duration::from_secs(5),
        || async { chat(&edge, &key, "gpt-4o").await.status() == StatusCode::OK },
    )
    .await;
    cp.kill().await;
    while minted_at.elapsed() < Duration::from_secs(13) {
        assert_eq!(
            chat(&edge, &key, "gpt-4o").await.status(),
            StatusCode::OK,
            "at {:?}",
            minted_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(16).saturating_sub(minted_at.elapsed())).await;
    let response = chat(&edge, &key, "gpt-4o").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no managed-identity token is available")
    );
    assert!(!edge.log().contains("eyJ"), "the edge never logs a token");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_any_credential_key_resources_work_and_managed_identity_ones_say_why() {
    let cp = ControlPlane::start().await; // the stack pins AIPROXY_CREDENTIAL=none
    let admin = cp.admin();
    let keyed_upstream = MockAzure::start(MockConfig {
        auth: ExpectedAuth::ApiKey(aiproxy_loadtest::stack::UPSTREAM_KEY.into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let keyed = admin
        .create_resource(model_resource("gpt-4o", &keyed_upstream.endpoint(), ""))
        .await;
    let mi = admin
        .create_resource(mi_resource(
            "gpt-4o-mini",
            "foundry-model",
            "https://x.openai.azure.com",
            None,
        ))
        .await;
    let (_, key) = admin.open_event(&[keyed, mi.clone()]).await;
    let edge = Edge::start(&cp, "").await;

    assert_eq!(chat(&edge, &key, "gpt-4o").await.status(), StatusCode::OK);
    let response = chat(&edge, &key, "gpt-4o-mini").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().starts_with("Resource 'gpt-4o-mini via managed identity' uses managed identity and no managed-identity token is available"),
        "{body}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, r) = admin.get(&format!("/resources/{mi}")).await;
        if let Some(e) = r["managed_identity"]["last_error"].as_str() {
            assert!(e.contains("AIPROXY_CREDENTIAL=none"), "{e}");
            break;
        }
        assert!(Instant::now() < deadline, "{r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn throttled_and_slow_identity_endpoints() {
    let throttled = FakeIdentityEndpoint::start("hdr", Duration::from_secs(3600))
        .await
        .unwrap();
    throttled.set_mode(IdentityMode::Fail429);
    let slow = FakeIdentityEndpoint::start("hdr", Duration::from_secs(3600))
        .await
        .unwrap();
    slow.set_mode(IdentityMode::Slow(Duration::from_secs(2)));
    let cp_throttled = ControlPlane::start_with(ControlPlaneOptions {
        extra_env: mi_env(&throttled, "managed-identity"),
        ..Default::default()
    })
    .await;
    let cp_slow = ControlPlane::start_with(ControlPlaneOptions {
        extra_env: mi_env(&slow, "managed-identity"),
        ..Default::default()
    })
    .await;
    let body = mi_resource(
        "gpt-4o",
        "foundry-model",
        "https://x.openai.azure.com",
        None,
    );
    let throttled_id = cp_throttled.admin().create_resource(body.clone()).await;
    let started = Instant::now();
    let slow_id = cp_slow.admin().create_resource(body).await;

    let status = cp_slow
        .admin()
        .wait_token(&slow_id, Duration::from_secs(20))
        .await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the slow endpoint's token arrives when it answers"
    );
    assert!(status["last_error"].is_null(), "{status}");

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, r) = cp_throttled
            .admin()
            .get(&format!("/resources/{throttled_id}"))
            .await;
        if let Some(error) = r["managed_identity"]["last_error"].as_str() {
            assert!(error.contains("too many requests"), "{error}");
            assert!(r["managed_identity"]["token_expires_at"].is_null());
            break;
        }
        assert!(Instant::now() < deadline, "{r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        throttled.calls().len(),
        1,
        "a throttled mint is not retried before the back-off"
    );
}

/// The Foundry Agent Service through an edge with a managed-identity agent resource: every call
/// carries a bearer token for `https://ai.azure.com` (the mock refuses any other audience, and
/// any `api-key`), minted once; the run's thread and agent are the caller's.
#[tokio::test(flavor = "multi_thread")]
async fn foundry_agent_calls_carry_an_ai_azure_com_token() {
    let identity = FakeIdentityEndpoint::start("hdr", Duration::from_secs(3600))
        .await
        .unwrap();
    let cp = ControlPlane::start_with(ControlPlaneOptions {
        extra_env: mi_env(&identity, "managed-identity"),
        ..Default::default()
    })
    .await;
    let upstream = bearer_mock(AI_AZURE).await;
    let admin = cp.admin();
    let agent = admin
        .create_resource(mi_resource(
            "agents",
            "Foundry_Agent",
            &format!("{}/api/projects/hack", upstream.endpoint()),
            None,
        ))
        .await;
    let (_, key) = admin.open_event(std::slice::from_ref(&agent)).await;
    let status = admin.wait_token(&agent, Duration::from_secs(10)).await;
    assert_eq!(status["scope"], "https://ai.azure.com/.default");
    let edge = Edge::start(&cp, "").await;
    admin.wait_edges_acked(1, Duration::from_secs(5)).await;

    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut request = http
            .request(
                method,
                format!("{}{path}?api-version=2025-05-15-preview", edge.api_base()),
            )
            .header("Authorization", format!("Bearer {key}"));
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    // The token may follow the catalog by a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    let assistant = loop {
        let (status, body) = call(
            reqwest::Method::POST,
            "/assistants",
            Some(json!({"model": "gpt-4o", "name": "helper"})),
        )
        .await;
        if status == StatusCode::OK {
            break body;
        }
        assert!(Instant::now() < deadline, "{status}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let assistant_id = assistant["id"].as_str().unwrap().to_string();
    let (status, thread) = call(reqwest::Method::POST, "/threads", Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{thread}");
    let thread_id = thread["id"].as_str().unwrap();
    let (status, message) = call(
        reqwest::Method::POST,
        &format!("/threads/{thread_id}/messages"),
        Some(json!({"role": "user", "content": "Hi"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{message}");
    let (status, run) = call(
        reqwest::Method::POST,
        &format!("/threads/{thread_id}/runs"),
        Some(json!({"assistant_id": assistant_id})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    let run_id = run["id"].as_str().unwrap();
    let (status, run) = call(
        reqwest::Method::GET,
        &format!("/threads/{thread_id}/runs/{run_id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{run}");

    let rejected = upstream
        .stats
        .rejected_auth
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(rejected, 0, "every call carried an ai.azure.com token");
    let seen = upstream
        .stats
        .last_request(&format!(
            "/api/projects/hack/threads/{thread_id}/runs/{run_id}"
        ))
        .unwrap();
    assert!(seen.headers.get("api-key").is_none());
    let bearer = seen.headers["authorization"].to_str().unwrap();
    let token = bearer.strip_prefix("Bearer ").unwrap();
    assert_eq!(
        aiproxy_loadtest::identity::audience_of(token).as_deref(),
        Some(AI_AZURE)
    );
    assert_eq!(
        identity.count(Some(PROXY_CLIENT_ID), AI_AZURE),
        1,
        "{:?}",
        identity.counts()
    );
    assert_eq!(identity.calls().len(), 1, "{:?}", identity.calls());
}
