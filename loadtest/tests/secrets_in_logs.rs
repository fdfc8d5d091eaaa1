//! No secret reaches a log. One run creates every kind of secret the system handles — the admin,
//! edge and catalog tokens, the encryption key, the Redis password, the identity endpoint's
//! header, upstream API keys (stored, rotated, wrong), attendee keys, managed-identity tokens
//! (refreshed during the run) — and drives traffic through its failure paths too: wrong and
//! near-miss client keys, an edge with a near-miss token, an admin call with a near-miss token,
//! upstream 401, 500 and 429, a hanging upstream, admin writes with bad bodies carrying a key.
//! Every process logs at debug level; then every log line of the run is searched for every secret.

use std::time::Duration;

use aiproxy_loadtest::identity::FakeIdentityEndpoint;
use aiproxy_loadtest::mock::{ExpectedAuth, Hang, MockAzure, MockConfig};
use aiproxy_loadtest::private_servers::PrivateRedis;
use aiproxy_loadtest::stack::{ControlPlane, ControlPlaneOptions, Edge};
use base64::Engine;
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

const COGNITIVE: &str = "https://cognitiveservices.azure.com";

fn unique(label: &str) -> String {
    format!("{label}-{}", uuid::Uuid::new_v4().simple())
}

/// `secret` with its last character changed: what a client with a typo sends.
fn near_miss(secret: &str) -> String {
    let mut chars: Vec<char> = secret.chars().collect();
    let last = chars.last_mut().expect("a non-empty secret");
    *last = if *last == 'x' { 'y' } else { 'x' };
    chars.into_iter().collect()
}

fn keyed_resource(deployment: &str, endpoint: &str, key: &str) -> Value {
    json!({
        "friendly_name": deployment,
        "deployment_name": deployment,
        "model_type": "foundry-model",
        "endpoint_url": endpoint,
        "key": key,
    })
}

async fn keyed_mock(key: &str, fail_with: Option<u16>, hang: Option<Hang>) -> MockAzure {
    MockAzure::start(MockConfig {
        auth: ExpectedAuth::ApiKey(key.into()),
        fail_with,
        hang,
        ..Default::default()
    })
    .await
    .unwrap()
}

/// Every secret of the run, by kind.
#[derive(Default)]
struct Secrets(Vec<(String, String)>);

impl Secrets {
    fn add(&mut self, kind: &str, value: &str) {
        assert!(value.len() >= 8, "{kind} is too short to search for");
        self.0.push((kind.to_string(), value.to_string()));
    }

    /// `(log, kind, the line with the secret masked)` for each secret found in each log.
    fn found_in(&self, logs: &[(String, String)]) -> Vec<(String, String, String)> {
        let mut found = Vec::new();
        for (log, text) in logs {
            for line in text.lines() {
                for (kind, value) in &self.0 {
                    if line.contains(value.as_str()) {
                        let masked = line.replace(value.as_str(), &format!("<{kind}>"));
                        found.push((log.clone(), kind.clone(), masked));
                    }
                }
            }
        }
        found
    }
}

struct Caller {
    http: reqwest::Client,
}

impl Caller {
    /// A chat call; `stream` reads the SSE body to its end. The status (0 if none) and the start of
    /// the body.
    async fn chat(
        &self,
        edge: &Edge,
        deployment: &str,
        auth: (&str, String),
        stream: bool,
    ) -> (u16, String) {
        let mut body = json!({"messages": [{"role": "user", "content": "Hi"}]});
        if stream {
            body["stream"] = json!(true);
        }
        let response = self
            .http
            .post(edge.chat_url(deployment))
            .header(auth.0, auth.1)
            .json(&body)
            .send()
            .await;
        match response {
            Ok(r) => {
                let status = r.status().as_u16();
                let mut body = r.bytes_stream();
                let mut start = Vec::new();
                while let Some(Ok(bytes)) = body.next().await {
                    if start.len() < 300 {
                        start.extend_from_slice(&bytes);
                    }
                }
                (status, String::from_utf8_lossy(&start).into_owned())
            }
            Err(e) => (0, e.to_string()),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_created_in_a_run_appears_in_any_log() {
    let mut secrets = Secrets::default();
    let debug = ("RUST_LOG".to_string(), "debug".to_string());

    let identity_header = unique("identity-header");
    let identity = FakeIdentityEndpoint::start(&identity_header, Duration::from_secs(20))
        .await
        .unwrap();
    let encryption_key = base64::engine::general_purpose::STANDARD.encode(
        [
            *uuid::Uuid::new_v4().as_bytes(),
            *uuid::Uuid::new_v4().as_bytes(),
        ]
        .concat(),
    );
    let catalog_token = unique("cat-token");
    let redis_password = unique("redis-password");
    let redis = PrivateRedis::start_with_password(&redis_password).await;
    let cp = ControlPlane::start_with(ControlPlaneOptions {
        database_url: None,
        extra_env: vec![
            debug.clone(),
            ("AIPROXY_CREDENTIAL".into(), "managed-identity".into()),
            ("IDENTITY_ENDPOINT".into(), identity.endpoint()),
            ("IDENTITY_HEADER".into(), identity_header.clone()),
            ("AIPROXY_ENCRYPTION_KEY".into(), encryption_key.clone()),
            ("AIPROXY_CATALOG_TOKEN".into(), catalog_token.clone()),
            ("AIPROXY_REDIS_URL".into(), redis.url()),
        ],
    })
    .await;
    let admin = cp.admin();

    let good_key = unique("upstream-good");
    let stored_wrong_key = unique("upstream-stale");
    let good = keyed_mock(&good_key, None, None).await;
    let failing = keyed_mock(&good_key, Some(500), None).await;
    let throttled = keyed_mock(&good_key, Some(429), None).await;
    let wedged = keyed_mock(&good_key, None, Some(Hang::BeforeHeaders)).await;
    let managed = MockAzure::start(MockConfig {
        auth: ExpectedAuth::Bearer {
            audience: COGNITIVE.into(),
        },
        ..Default::default()
    })
    .await
    .unwrap();
    let mut ids = Vec::new();
    for (deployment, mock, key) in [
        ("good", &good, &good_key),
        ("stale", &good, &stored_wrong_key),
        ("failing", &failing, &good_key),
        ("throttled", &throttled, &good_key),
        ("wedged", &wedged, &good_key),
    ] {
        ids.push(
            admin
                .create_resource(keyed_resource(deployment, &mock.endpoint(), key))
                .await,
        );
    }
    // A key set, then rotated: both are secrets.
    let first_key = unique("upstream-first");
    let rotated_key = unique("upstream-rotated");
    let rotated = keyed_mock(&rotated_key, None, None).await;
    let rotating = admin
        .create_resource(keyed_resource("rotating", &rotated.endpoint(), &first_key))
        .await;
    let (_, mut resource) = admin.get(&format!("/resources/{rotating}")).await;
    resource["key"] = json!(rotated_key);
    let (status, _) = admin.put(&format!("/resources/{rotating}"), resource).await;
    assert_eq!(status, StatusCode::OK, "key rotation");
    ids.push(rotating);
    ids.push(
        admin
            .create_resource(json!({
                "friendly_name": "managed",
                "deployment_name": "managed",
                "model_type": "foundry-model",
                "endpoint_url": managed.endpoint(),
                "use_managed_identity": true,
            }))
            .await,
    );
    let (event_id, first_attendee) = admin.open_event(&ids).await;
    let second_attendee = admin.add_attendee(&event_id, "attendee-2").await;

    // Admin writes with bad bodies carrying a key; a call with a near-miss admin token.
    let bad_body_key = unique("upstream-in-bad-body");
    let (status, _) = admin
        .put(
            &format!("/resources/{}", ids[0]),
            json!({"key": bad_body_key, "endpoint_url": 42, "deployment_name": ["x"]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let truncated_key = unique("upstream-in-broken-json");
    let broken = reqwest::Client::new()
        .post(format!("http://{}/admin/api/v1/resources", cp.admin_addr))
        .bearer_auth(&cp.admin_token)
        .header("content-type", "application/json")
        .body(format!(r#"{{"key": "{truncated_key}", "endpoint_url": "#))
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), StatusCode::BAD_REQUEST);
    let wrong_admin_token = near_miss(&cp.admin_token);
    let refused = reqwest::Client::new()
        .get(format!("http://{}/admin/api/v1/resources", cp.admin_addr))
        .bearer_auth(&wrong_admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    let edge_env = [
        ("RUST_LOG", "debug"),
        ("AIPROXY_UPSTREAM_TIMEOUT_SECS", "1"),
        ("AIPROXY_TOKEN_EXPIRY_MARGIN_SECS", "5"),
    ];
    let edges = [
        Edge::start_with_env(&cp, "", &edge_env).await,
        Edge::start_with_env(&cp, "", &edge_env).await,
    ];
    let wrong_edge_token = near_miss(&cp.edge_token);
    let intruder =
        Edge::start_with_token_and_env(&cp, "", &wrong_edge_token, false, &edge_env).await;
    admin.wait_edges_acked(2, Duration::from_secs(10)).await;

    let caller = Caller {
        http: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
    };
    let wrong_key = near_miss(&first_attendee);
    let random_key = unique("not-a-key");
    // Two passes, the second after the first managed-identity token's refresh (20 s lifetime).
    for pass in 0..2 {
        for edge in &edges {
            for stream in [false, true] {
                for (auth, expected) in [
                    (("api-key", first_attendee.clone()), 200),
                    (("authorization", format!("Bearer {second_attendee}")), 200),
                    (("api-key", wrong_key.clone()), 401),
                    (("authorization", format!("Bearer {random_key}")), 401),
                ] {
                    let (status, body) = caller.chat(edge, "good", auth, stream).await;
                    assert_eq!(status, expected, "pass {pass}: {body}");
                }
                let key = ("api-key", first_attendee.clone());
                for deployment in ["managed", "rotating"] {
                    let (status, body) = caller.chat(edge, deployment, key.clone(), stream).await;
                    assert_eq!(status, 200, "{deployment}: {body}");
                }
                for deployment in ["stale", "failing", "throttled", "wedged"] {
                    let (status, body) = caller.chat(edge, deployment, key.clone(), stream).await;
                    assert!(status >= 400, "{deployment}: {status} {body}");
                }
            }
        }
        if pass == 0 {
            tokio::time::sleep(Duration::from_secs(12)).await;
        }
    }
    let tokens = identity.issued_tokens();
    assert!(tokens.len() >= 2, "a token was refreshed during the run");
    assert_eq!(
        intruder_ready(&intruder).await,
        StatusCode::SERVICE_UNAVAILABLE
    );

    secrets.add("admin token", &cp.admin_token);
    secrets.add("near-miss admin token", &wrong_admin_token);
    secrets.add("edge token", &cp.edge_token);
    secrets.add("near-miss edge token", &wrong_edge_token);
    secrets.add("catalog token", &catalog_token);
    secrets.add("encryption key", &encryption_key);
    secrets.add("redis password", &redis_password);
    secrets.add("identity header", &identity_header);
    for (kind, key) in [
        ("upstream key", &good_key),
        ("stale upstream key", &stored_wrong_key),
        ("first upstream key", &first_key),
        ("rotated upstream key", &rotated_key),
        ("key in a refused body", &bad_body_key),
        ("key in broken JSON", &truncated_key),
        ("attendee key", &first_attendee),
        ("attendee key", &second_attendee),
        ("near-miss attendee key", &wrong_key),
        ("unknown client key", &random_key),
    ] {
        secrets.add(kind, key);
    }
    for token in &tokens {
        secrets.add("managed-identity token", token);
        let claims = token.split('.').nth(1).expect("a JWT");
        secrets.add("managed-identity token claims", claims);
    }

    let mut logs = vec![("control plane".to_string(), cp.log())];
    for (i, edge) in edges.iter().enumerate() {
        logs.push((format!("edge {i}"), edge.log()));
    }
    logs.push(("edge with a wrong token".into(), intruder.log()));
    let lines: usize = logs.iter().map(|(_, t)| t.lines().count()).sum();
    assert!(
        logs.iter().all(|(_, t)| t.contains("DEBUG")),
        "every process logged at debug level"
    );
    let found = secrets.found_in(&logs);
    println!(
        "[secrets] {} secrets of {} kinds searched in {lines} log lines of {} processes: {} found",
        secrets.0.len(),
        {
            let mut kinds: Vec<&str> = secrets.0.iter().map(|(k, _)| k.as_str()).collect();
            kinds.sort_unstable();
            kinds.dedup();
            kinds.len()
        },
        logs.len(),
        found.len()
    );
    assert!(
        found.is_empty(),
        "secrets in logs:\n{}",
        found
            .iter()
            .take(20)
            .map(|(log, kind, line)| format!("{log}: {kind}: {line}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

async fn intruder_ready(edge: &Edge) -> StatusCode {
    reqwest::get(format!("{}/readyz", edge.url()))
        .await
        .map(|r| r.status())
        .unwrap_or(StatusCode::BAD_GATEWAY)
}
