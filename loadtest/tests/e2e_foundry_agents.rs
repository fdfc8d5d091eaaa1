//! End to end, the Foundry Agent Service through the event's `foundry-agent` resource, with
//! attendees kept apart across two edges: ownership is recorded through the control plane, other
//! attendees' objects (and objects never created through the proxy) are refused, lists show only
//! the caller's objects with pagination that terminates, deleting forgets.

use std::time::Duration;

use aiproxy_loadtest::mock::MockConfig;
use aiproxy_loadtest::stack::{Edge, Scenario, UPSTREAM_KEY, eventually};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const API: &str = "api-version=2025-05-15-preview";

struct Agents {
    s: Scenario,
    second_edge: Edge,
    other_key: String,
}

impl Agents {
    async fn start() -> Self {
        let s = Scenario::start(MockConfig::default()).await;
        let agent = s
            .admin
            .create_resource(json!({"friendly_name": "Hackathon agents", "deployment_name": "agents",
                "model_type": "Foundry_Agent", "endpoint_url": format!("{}/api/projects/hack", s.mock.endpoint()),
                "key": UPSTREAM_KEY}))
            .await;
        let (_, mut event) = s.admin.get(&format!("/events/{}", s.event_id)).await;
        event["resource_ids"] = json!([s.resource_id, agent]);
        s.admin.put(&format!("/events/{}", s.event_id), event).await;
        let other_key = s.admin.add_attendee(&s.event_id, "attendee-2").await;
        let second_edge = Edge::start(&s.cp, "").await;
        s.admin.wait_edges_acked(2, Duration::from_secs(5)).await;
        Self {
            s,
            second_edge,
            other_key,
        }
    }

    async fn call(
        &self,
        edge: &Edge,
        key: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let separator = if path.contains('?') { '&' } else { '?' };
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}{separator}{API}", edge.api_base()))
            .header("Authorization", format!("Bearer {key}"));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

fn refused(result: &(StatusCode, Value), kind: &str) {
    assert_eq!(result.0, StatusCode::FORBIDDEN, "{result:?}");
    assert_eq!(
        result.1["error"]["message"],
        format!("Unauthorized access to {kind}.")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn attendees_only_reach_their_own_objects_on_every_edge() {
    let a = Agents::start().await;
    let (mine, theirs) = (a.s.key.clone(), a.other_key.clone());
    let (edge1, edge2) = (&a.s.edge, &a.second_edge);

    let (status, assistant) = a
        .call(
            edge1,
            &mine,
            Method::POST,
            "/assistants",
            Some(json!({"model": "gpt-4o", "name": "helper"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{assistant}");
    let id = assistant["id"].as_str().unwrap().to_string();
    let seen =
        a.s.mock
            .stats
            .last_request("/api/projects/hack/assistants")
            .unwrap();
    assert_eq!(seen.headers["api-key"], UPSTREAM_KEY);
    assert!(
        seen.query
            .unwrap()
            .contains("api-version=2025-05-15-preview")
    );

    // At once, through the other edge: its snapshot may not have it yet, the control plane does.
    let (status, _) = a
        .call(
            edge2,
            &mine,
            Method::GET,
            &format!("/assistants/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    refused(
        &a.call(
            edge2,
            &theirs,
            Method::GET,
            &format!("/assistants/{id}"),
            None,
        )
        .await,
        "agent",
    );
    refused(
        &a.call(
            edge1,
            &theirs,
            Method::DELETE,
            &format!("/assistants/{id}"),
            None,
        )
        .await,
        "agent",
    );
    refused(
        &a.call(
            edge1,
            &theirs,
            Method::POST,
            &format!("/assistants/{id}"),
            Some(json!({"name": "x"})),
        )
        .await,
        "agent",
    );

    let (_, thread) = a
        .call(edge2, &mine, Method::POST, "/threads", Some(json!({})))
        .await;
    let thread_id = thread["id"].as_str().unwrap().to_string();
    refused(
        &a.call(
            edge1,
            &theirs,
            Method::POST,
            &format!("/threads/{thread_id}/messages"),
            Some(json!({"role": "user", "content": "hi"})),
        )
        .await,
        "thread",
    );
    let (status, _) = a
        .call(
            edge1,
            &mine,
            Method::POST,
            &format!("/threads/{thread_id}/messages"),
            Some(json!({"role": "user", "content": "hi"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Another attendee's agent cannot be run, even on one's own thread.
    let (_, their_thread) = a
        .call(edge1, &theirs, Method::POST, "/threads", Some(json!({})))
        .await;
    let their_thread = their_thread["id"].as_str().unwrap().to_string();
    refused(
        &a.call(
            edge1,
            &theirs,
            Method::POST,
            &format!("/threads/{their_thread}/runs"),
            Some(json!({"assistant_id": id})),
        )
        .await,
        "agent",
    );
    let (status, _) = a
        .call(
            edge1,
            &mine,
            Method::POST,
            &format!("/threads/{thread_id}/runs"),
            Some(json!({"assistant_id": id})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the owner runs their agent on their thread"
    );
    let (status, messages) = a
        .call(
            edge1,
            &mine,
            Method::GET,
            &format!("/threads/{thread_id}/messages"),
            None,
        )
        .await;
    // The user's message and the reply of the run above.
    assert_eq!(
        (status, messages["data"].as_array().unwrap().len()),
        (StatusCode::OK, 2)
    );

    // Files: the upload streams through; the file is the uploader's.
    let form = reqwest::multipart::Form::new()
        .text("purpose", "assistants")
        .part(
            "file",
            reqwest::multipart::Part::bytes(vec![b'x'; 200_000]).file_name("notes.txt"),
        );
    let upload = reqwest::Client::new()
        .post(format!("{}/files?{API}", edge1.api_base()))
        .header("api-key", &mine)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), StatusCode::OK);
    let file: Value = upload.json().await.unwrap();
    assert!(file["bytes"].as_u64().unwrap() > 200_000);
    refused(
        &a.call(
            edge2,
            &theirs,
            Method::GET,
            &format!("/files/{}", file["id"].as_str().unwrap()),
            None,
        )
        .await,
        "file",
    );

    let (_, store) = a
        .call(
            edge1,
            &mine,
            Method::POST,
            "/vector_stores",
            Some(json!({"name": "docs"})),
        )
        .await;
    let store_id = store["id"].as_str().unwrap();
    refused(
        &a.call(
            edge2,
            &theirs,
            Method::GET,
            &format!("/vector_stores/{store_id}"),
            None,
        )
        .await,
        "vector store",
    );
    let (status, _) = a
        .call(
            edge2,
            &mine,
            Method::GET,
            &format!("/vector_stores/{store_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Conversations and agent responses (the newer API).
    let (_, conversation) = a
        .call(
            edge1,
            &mine,
            Method::POST,
            "/openai/v1/conversations",
            Some(json!({})),
        )
        .await;
    let conversation_id = conversation["id"].as_str().unwrap();
    refused(
        &a.call(
            edge2,
            &theirs,
            Method::GET,
            &format!("/openai/v1/conversations/{conversation_id}/items"),
            None,
        )
        .await,
        "conversation",
    );
    let (status, _) = a
        .call(
            edge2,
            &mine,
            Method::GET,
            &format!("/openai/v1/conversations/{conversation_id}/items"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Agent references name agents of the new Agents API, whose names are recorded at creation.
    let (status, _) = a
        .call(
            edge1,
            &mine,
            Method::POST,
            "/agents",
            Some(json!({"name": "helper", "definition": {"kind": "prompt", "model": "gpt-4o"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, response) = a
        .call(
            edge1,
            &mine,
            Method::POST,
            "/openai/v1/responses",
            Some(json!({"agent": {"name": "helper", "type": "agent_reference"}, "input": "hi"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{response}");
    assert_eq!(
        a.s.mock
            .stats
            .count_for("/api/projects/hack/openai/v1/responses"),
        1,
        "an agent reference goes to Foundry"
    );
    refused(
        &a.call(
            edge2,
            &theirs,
            Method::GET,
            &format!("/openai/v1/responses/{}", response["id"].as_str().unwrap()),
            None,
        )
        .await,
        "response",
    );

    // Deleting forgets: the object is then unreachable like any object not created through the proxy.
    let (status, _) = a
        .call(
            edge1,
            &mine,
            Method::DELETE,
            &format!("/assistants/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    refused(
        &a.call(
            edge2,
            &mine,
            Method::GET,
            &format!("/assistants/{id}"),
            None,
        )
        .await,
        "agent",
    );
    let direct = reqwest::Client::new()
        .post(format!(
            "{}/api/projects/hack/assistants",
            a.s.mock.endpoint()
        ))
        .header("api-key", UPSTREAM_KEY)
        .json(&json!({"name": "created outside the proxy"}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    refused(
        &a.call(
            edge1,
            &mine,
            Method::GET,
            &format!("/assistants/{}", direct["id"].as_str().unwrap()),
            None,
        )
        .await,
        "agent",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_show_only_the_callers_objects_and_paging_ends() {
    let a = Agents::start().await;
    let (mine, theirs) = (a.s.key.clone(), a.other_key.clone());
    let mut expected = Vec::new();
    for i in 0..5 {
        let (_, other) = a
            .call(
                &a.s.edge,
                &theirs,
                Method::POST,
                "/assistants",
                Some(json!({"name": format!("theirs-{i}")})),
            )
            .await;
        assert!(other["id"].is_string());
        let (_, own) = a
            .call(
                &a.s.edge,
                &mine,
                Method::POST,
                "/assistants",
                Some(json!({"name": format!("mine-{i}")})),
            )
            .await;
        expected.push(own["id"].as_str().unwrap().to_string());
    }
    for _ in 0..3 {
        a.call(
            &a.s.edge,
            &theirs,
            Method::POST,
            "/assistants",
            Some(json!({"name": "theirs-tail"})),
        )
        .await;
    }
    a.s.admin.wait_edges_acked(2, Duration::from_secs(5)).await;

    // Page as the azure-ai-agents SDK does: after=<last_id> until a page has no last_id.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10 {
        let path = match &after {
            Some(after) => format!("/assistants?limit=2&order=asc&after={after}"),
            None => "/assistants?limit=2&order=asc".to_string(),
        };
        let (status, page) = a
            .call(&a.second_edge, &mine, Method::GET, &path, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        seen.extend(data.iter().map(|d| d["id"].as_str().unwrap().to_string()));
        match page["last_id"].as_str() {
            Some(last) => after = Some(last.to_string()),
            None => break,
        }
    }
    assert_eq!(
        seen, expected,
        "exactly the caller's objects, once each, in order"
    );

    let (_, empty) = a.call(&a.s.edge, &mine, Method::GET, "/files", None).await;
    assert_eq!(empty["data"], json!([]));
    assert!(empty["last_id"].is_null() && empty["has_more"] == false);
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_runs_pass_through_and_their_thread_is_the_callers() {
    let a = Agents::start().await;
    let (mine, theirs) = (a.s.key.clone(), a.other_key.clone());
    let (_, agent) = a
        .call(
            &a.s.edge,
            &mine,
            Method::POST,
            "/assistants",
            Some(json!({"name": "runner"})),
        )
        .await;
    let response = reqwest::Client::new()
        .post(format!("{}/threads/runs?{API}", a.s.edge.api_base()))
        .header("api-key", &mine)
        .json(&json!({"assistant_id": agent["id"], "stream": true, "thread": {"messages": [{"role": "user", "content": "hi"}]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = response.text().await.unwrap();
    assert!(
        text.contains("event: thread.run.created")
            && text.contains("event: thread.message.delta")
            && text.ends_with("data: [DONE]\n\n")
    );
    let thread_id = text
        .split("\"thread_id\":\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .unwrap()
        .to_string();

    let path = format!("/threads/{thread_id}");
    eventually(
        "the streamed run's thread was never recorded for its creator",
        Duration::from_secs(5),
        || async {
            a.call(&a.second_edge, &mine, Method::GET, &path, None)
                .await
                .0
                == StatusCode::OK
        },
    )
    .await;
    refused(
        &a.call(
            &a.second_edge,
            &theirs,
            Method::GET,
            &format!("/threads/{thread_id}"),
            None,
        )
        .await,
        "thread",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_without_an_agent_resource_says_so() {
    let s = Scenario::start(MockConfig::default()).await;
    let response = reqwest::Client::new()
        .get(format!("{}/assistants?{API}", s.edge.api_base()))
        .header("api-key", &s.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "No Foundry Agent deployment found for the event."
    );
}
