//! End to end, the route families beyond Azure OpenAI: Azure AI Search (both URL forms, key and
//! managed identity with the Search scope), the model inference API, MCP servers (streamable HTTP and
//! SSE, session id passed back), `/eventinfo` and `/event/{id}`.

use std::time::Duration;

use aiproxy_loadtest::identity::FakeIdentityEndpoint;
use aiproxy_loadtest::mock::{ExpectedAuth, MockAzure, MockConfig};
use aiproxy_loadtest::stack::{
    ControlPlane, ControlPlaneOptions, Edge, Scenario, UPSTREAM_KEY, eventually,
};
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn resource(name: &str, model_type: &str, endpoint: &str) -> Value {
    json!({"friendly_name": name, "deployment_name": name, "model_type": model_type, "endpoint_url": endpoint, "key": UPSTREAM_KEY})
}

/// The standard scenario plus a search index, an inference model and an MCP server on its mock.
async fn start() -> Scenario {
    let s = Scenario::start(MockConfig::default()).await;
    let base = s.mock.endpoint();
    let search = s
        .admin
        .create_resource(resource("products", "azure-ai-search", &base))
        .await;
    let inference = s
        .admin
        .create_resource(resource("Phi-4", "ai-inference", &format!("{base}/models")))
        .await;
    let mcp = s
        .admin
        .create_resource(resource("docs", "mcp-server", &format!("{base}/mcp")))
        .await;
    let (_, mut event) = s.admin.get(&format!("/events/{}", s.event_id)).await;
    event["resource_ids"] = json!([s.resource_id, search, inference, mcp]);
    let (status, _) = s.admin.put(&format!("/events/{}", s.event_id), event).await;
    assert_eq!(status, StatusCode::OK);
    s.admin.wait_edges_acked(1, Duration::from_secs(5)).await;
    s
}

async fn post(s: &Scenario, path: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}{path}", s.edge.api_base()))
        .header("api-key", &s.key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn message(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn search_queries_reach_the_index_in_both_url_forms() {
    let s = start().await;
    let response = post(
        &s,
        "/indexes/products/docs/search?api-version=2024-07-01",
        json!({"search": "tent"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["value"][0]["index"], "products");
    let seen = s
        .mock
        .stats
        .last_request("/indexes/products/docs/search")
        .unwrap();
    assert_eq!(seen.query.as_deref(), Some("api-version=2024-07-01"));
    assert_eq!(seen.headers["api-key"], UPSTREAM_KEY);

    let response = post(
        &s,
        "/indexes('products')/docs/search.post.search?api-version=2024-07-01",
        json!({"search": "x"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        s.mock
            .stats
            .count_for("/indexes('products')/docs/search.post.search"),
        1
    );

    let (status, message) = message(post(&s, "/indexes/orders/docs/search", json!({})).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        message,
        "Search index 'orders' not found for this event. Available indexes are: products"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn search_with_managed_identity_uses_the_search_scope() {
    let identity = FakeIdentityEndpoint::start("hdr", Duration::from_secs(3600))
        .await
        .unwrap();
    let env = vec![
        (
            "AIPROXY_CREDENTIAL".to_string(),
            "managed-identity".to_string(),
        ),
        ("IDENTITY_ENDPOINT".to_string(), identity.endpoint()),
        ("IDENTITY_HEADER".to_string(), "hdr".to_string()),
    ];
    let cp = ControlPlane::start_with(ControlPlaneOptions {
        extra_env: env,
        ..Default::default()
    })
    .await;
    let mock = MockAzure::start(MockConfig {
        auth: ExpectedAuth::Bearer {
            audience: "https://search.azure.com".into(),
        },
        ..Default::default()
    })
    .await
    .unwrap();
    let id = cp
        .admin()
        .create_resource(json!({"friendly_name": "products", "deployment_name": "products", "model_type": "azure-ai-search",
                                "endpoint_url": mock.endpoint(), "use_managed_identity": true}))
        .await;
    let (_, key) = cp.admin().open_event(std::slice::from_ref(&id)).await;
    let edge = Edge::start(&cp, "").await;
    let url = format!("{}/indexes/products/docs/search", edge.api_base());
    eventually(
        "the search call never succeeded with a managed-identity token",
        Duration::from_secs(5),
        || async {
            let response = reqwest::Client::new()
                .post(&url)
                .header("api-key", &key)
                .json(&json!({"search": "*"}))
                .send()
                .await;
            response.is_ok_and(|r| r.status() == StatusCode::OK)
        },
    )
    .await;
    assert_eq!(
        identity.count(None, "https://search.azure.com"),
        1,
        "{:?}",
        identity.calls()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn inference_calls_name_the_model_in_the_header_and_pass_extra_parameters() {
    let s = start().await;
    let response = reqwest::Client::new()
        .post(format!(
            "{}/chat/completions?api-version=2024-05-01-preview",
            s.edge.api_base()
        ))
        .header("Authorization", format!("Bearer {}", s.key))
        .header("extra-parameters", "pass-through")
        .json(
            &json!({"model": "Phi-4", "messages": [{"role": "user", "content": "Hi"}], "top_k": 5}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["model"], "Phi-4");
    let seen = s
        .mock
        .stats
        .last_request("/models/chat/completions")
        .unwrap();
    assert_eq!(seen.headers["azureml-model-deployment"], "Phi-4");
    assert_eq!(seen.headers["extra-parameters"], "pass-through");
    assert_eq!(seen.headers["api-key"], UPSTREAM_KEY);
    assert!(seen.headers.get("authorization").is_none());

    assert_eq!(
        post(&s, "/embeddings", json!({"model": "Phi-4", "input": ["a"]}))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        post(
            &s,
            "/images/embeddings",
            json!({"model": "Phi-4", "input": [{"image": "data:"}]})
        )
        .await
        .status(),
        StatusCode::OK
    );
    let info = reqwest::Client::new()
        .get(format!("{}/info", s.edge.api_base()))
        .header("api-key", &s.key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        info.status(),
        StatusCode::OK,
        "the event's only inference model answers /info"
    );
    assert_eq!(info.json::<Value>().await.unwrap()["model_name"], "Phi-4");

    let (status, message) = message(
        post(
            &s,
            "/chat/completions",
            json!({"model": "Llama", "messages": []}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        message,
        "Model 'Llama' not found for this event. Available models are: Phi-4"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_sessions_stream_through_with_their_session_id() {
    let s = start().await;
    let http = reqwest::Client::new();
    let url = format!("{}/mcp/docs", s.edge.api_base());
    let init = http
        .post(&url)
        .header("api-key", &s.key)
        .header("x-client-trace", "t-1")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(init.status(), StatusCode::OK);
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        session, "mock-mcp-session-1",
        "Mcp-Session-Id comes back to the client"
    );
    let seen = s.mock.stats.last_request("/mcp").unwrap();
    assert_eq!(
        seen.headers["x-client-trace"], "t-1",
        "client headers are passed on"
    );
    assert_eq!(seen.headers["api-key"], UPSTREAM_KEY);

    let call = http
        .post(&url)
        .header("api-key", &s.key)
        .header("mcp-session-id", &session)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "hi"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(call.status(), StatusCode::OK);
    assert!(
        call.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = call.text().await.unwrap();
    assert!(
        text.starts_with("event: message\ndata: ") && text.contains("\"hi\""),
        "{text}"
    );

    let stream = http
        .get(&url)
        .header("api-key", &s.key)
        .header("mcp-session-id", &session)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let first = stream.bytes_stream().next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("notifications/message"));

    let end = http
        .delete(&url)
        .header("api-key", &s.key)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(end.status(), StatusCode::OK);
    let (status, message) = message(post(&s, "/mcp/wiki", json!({})).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        message,
        "MCP server 'wiki' not found for this event. Available MCP servers are: docs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn event_information_for_attendees_and_registration_pages() {
    let s = start().await;
    let info = post(&s, "/eventinfo", json!({})).await;
    assert_eq!(info.status(), StatusCode::OK);
    let info: Value = info.json().await.unwrap();
    assert_eq!(info["is_authorized"], true);
    assert_eq!(info["event_code"], "Test hackathon");
    assert_eq!(info["organizer_email"], "ada@example.com");
    assert_eq!(info["capabilities"]["foundry-model"], json!(["gpt-4o"]));
    assert_eq!(info["capabilities"]["azure-ai-search"], json!(["products"]));
    assert_eq!(info["capabilities"]["ai-inference"], json!(["Phi-4"]));
    assert_eq!(info["capabilities"]["mcp-server"], json!(["docs"]));
    let anonymous = reqwest::Client::new()
        .post(format!("{}/eventinfo", s.edge.api_base()))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    let public = reqwest::get(format!("{}/event/{}", s.edge.api_base(), s.event_id))
        .await
        .unwrap();
    assert_eq!(public.status(), StatusCode::OK);
    let public: Value = public.json().await.unwrap();
    assert_eq!(public["event_code"], "Test hackathon");
    assert_eq!(public["is_open"], true);
    assert!(
        public.get("capabilities").is_none(),
        "the public page shows no catalog"
    );
    let unknown = reqwest::get(format!("{}/event/nope", s.edge.api_base()))
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}
