//! End to end, the request policies a hostile client would try to dodge: the token cap applies to
//! every model call (a call asking for nothing gets the cap, odd values and content types are
//! refused or read as JSON anyway, runs and Responses calls included); forwarding headers and
//! cookies never reach upstream; a call that failed with a 5xx is not replayed on another member
//! (it may have been billed); failures never tell the caller the upstream's address.

use std::time::Duration;

use aiproxy_loadtest::mock::{ExpectedAuth, MockAzure, MockConfig};
use aiproxy_loadtest::stack::{Edge, Scenario, UPSTREAM_KEY, model_resource};
use reqwest::StatusCode;
use serde_json::{Value, json};

const CHAT: &str = "/openai/deployments/gpt-4o/chat/completions";

async fn capped_scenario(cap: u32) -> Scenario {
    let s = Scenario::start(MockConfig::default()).await;
    let (_, mut event) = s.admin.get(&format!("/events/{}", s.event_id)).await;
    event["max_token_cap"] = json!(cap);
    s.admin.put(&format!("/events/{}", s.event_id), event).await;
    s.admin.wait_edges_acked(1, Duration::from_secs(5)).await;
    s
}

async fn post(
    s: &Scenario,
    path_and_query: &str,
    content_type: &str,
    body: String,
) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{path_and_query}", s.edge.api_base()))
        .header("api-key", &s.key)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("edge reachable");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn sent_body(s: &Scenario, path: &str) -> Value {
    let request = s
        .mock
        .stats
        .last_request(path)
        .expect("the mock saw the call");
    serde_json::from_slice(&request.body).expect("JSON upstream")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_that_asks_for_no_limit_gets_the_event_cap() {
    let s = capped_scenario(128).await;
    let chat = json!({"messages": [{"role": "user", "content": "Hi"}]}).to_string();
    let (status, _) = post(
        &s,
        &format!("{CHAT}?api-version=2024-10-21"),
        "application/json",
        chat.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sent_body(&s, CHAT)["max_completion_tokens"], 128);
    // API versions before 2024-09-01 know only max_tokens.
    let (status, _) = post(
        &s,
        &format!("{CHAT}?api-version=2024-06-01"),
        "application/json",
        chat,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let sent = sent_body(&s, CHAT);
    assert_eq!(sent["max_tokens"], 128);
    assert!(sent.get("max_completion_tokens").is_none());
    // The Responses API takes max_output_tokens.
    let responses = json!({"model": "gpt-4o", "input": "Hi"}).to_string();
    let (status, _) = post(&s, "/openai/v1/responses", "application/json", responses).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        sent_body(&s, "/openai/v1/responses")["max_output_tokens"],
        128
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn odd_token_values_and_disguised_content_types_do_not_dodge_the_cap() {
    let s = capped_scenario(128).await;
    let path = format!("{CHAT}?api-version=2024-10-21");
    for (body, message) in [
        (
            r#"{"max_tokens": 1.5}"#,
            "max_tokens must be a whole number of tokens",
        ),
        (
            r#"{"max_tokens": "5000"}"#,
            "max_tokens must be a whole number of tokens",
        ),
        (
            r#"{"max_tokens": null}"#,
            "max_tokens must be a whole number of tokens",
        ),
        (
            r#"{"max_completion_tokens": 5000}"#,
            "max_completion_tokens exceeds the event max token cap of 128",
        ),
    ] {
        let (status, answer) = post(&s, &path, "application/json", body.into()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer["error"]["message"], message, "{body}");
    }
    // Calling it text/plain does not make a JSON body unreadable to the policy.
    let (status, answer) = post(&s, &path, "text/plain", r#"{"max_tokens": 5000}"#.into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    // Two values for one field: the edge and the upstream could read different ones.
    let (status, _) = post(
        &s,
        &path,
        "application/json",
        r#"{"max_tokens": 1, "max_tokens": 5000}"#.into(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(s.mock.stats.count_for(CHAT), 0, "nothing reached upstream");
}

#[tokio::test(flavor = "multi_thread")]
async fn client_forwarding_headers_and_cookies_stay_at_the_edge() {
    let s = Scenario::start(MockConfig::default()).await;
    let response = reqwest::Client::new()
        .post(format!(
            "{}{CHAT}?api-version=2024-10-21",
            s.edge.api_base()
        ))
        .header("api-key", &s.key)
        .header("x-forwarded-for", "10.0.0.1")
        .header("x-forwarded-host", "evil.example")
        .header("forwarded", "for=10.0.0.1")
        .header("x-real-ip", "10.0.0.1")
        .header("cookie", "session=attendee")
        .header("x-ms-client-request-id", "kept")
        .json(&json!({"messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen = s.mock.stats.last_request(CHAT).unwrap();
    for name in [
        "x-forwarded-for",
        "x-forwarded-host",
        "forwarded",
        "x-real-ip",
        "cookie",
    ] {
        assert!(seen.headers.get(name).is_none(), "{name} reached upstream");
    }
    assert_eq!(seen.headers.get("x-ms-client-request-id").unwrap(), "kept");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_that_failed_upstream_is_not_replayed_and_names_no_address() {
    let s = Scenario::start(MockConfig::default()).await;
    let failing = MockAzure::start(MockConfig {
        auth: ExpectedAuth::ApiKey(UPSTREAM_KEY.into()),
        fail_with: Some(500),
        ..Default::default()
    })
    .await
    .unwrap();
    let local = s
        .admin
        .create_resource(model_resource("gpt-4o", &failing.endpoint(), "eastus"))
        .await;
    // A pool member whose address answers nothing at all.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let dead = s
        .admin
        .create_resource(model_resource("solo", &dead_endpoint, ""))
        .await;
    let (_, mut event) = s.admin.get(&format!("/events/{}", s.event_id)).await;
    event["resource_ids"] = json!([s.resource_id, local, dead]);
    s.admin.put(&format!("/events/{}", s.event_id), event).await;
    let edge = Edge::start(&s.cp, "eastus").await;
    s.admin.wait_edges_acked(2, Duration::from_secs(5)).await;

    let response = reqwest::Client::new()
        .post(format!("{}{CHAT}?api-version=2024-10-21", edge.api_base()))
        .header("api-key", &s.key)
        .json(&json!({"messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(failing.stats.count_for(CHAT), 1);
    assert_eq!(
        s.mock.stats.count_for(CHAT),
        0,
        "a 5xx may have been billed: the call is not sent again"
    );

    let response = reqwest::Client::new()
        .post(format!(
            "{}/openai/deployments/solo/chat/completions",
            edge.api_base()
        ))
        .header("api-key", &s.key)
        .json(&json!({"messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let message = response.json::<Value>().await.unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("could not be reached"), "{message}");
    assert!(
        !message.contains("127.0.0.1") && !message.contains("http"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_runs_get_the_event_cap_too() {
    let s = capped_scenario(64).await;
    let agents = s
        .admin
        .create_resource(json!({"friendly_name": "Agents", "deployment_name": "agents",
            "model_type": "foundry-agent", "endpoint_url": format!("{}/api/projects/hack", s.mock.endpoint()),
            "key": UPSTREAM_KEY}))
        .await;
    let (_, mut event) = s.admin.get(&format!("/events/{}", s.event_id)).await;
    event["resource_ids"] = json!([s.resource_id, agents]);
    s.admin.put(&format!("/events/{}", s.event_id), event).await;
    s.admin.wait_edges_acked(1, Duration::from_secs(5)).await;

    let api = "?api-version=2025-05-15-preview";
    let (status, agent) = post(
        &s,
        &format!("/assistants{api}"),
        "application/json",
        json!({"model": "gpt-4o", "instructions": "Be brief."}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{agent}");
    let (status, thread) = post(
        &s,
        &format!("/threads{api}"),
        "application/json",
        "{}".into(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{thread}");
    let thread_id = thread["id"].as_str().unwrap();
    let runs = format!("/threads/{thread_id}/runs");
    let (status, run) = post(
        &s,
        &format!("{runs}{api}"),
        "application/json",
        json!({"assistant_id": agent["id"]}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(
        sent_body(&s, &format!("/api/projects/hack{runs}"))["max_completion_tokens"],
        64
    );
    let (status, _) = post(
        &s,
        &format!("{runs}{api}"),
        "application/json",
        json!({"assistant_id": agent["id"], "max_completion_tokens": 1000}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
