//! Ownership over an object's life: taken from a streamed answer's real ids, forgotten fleet-wide
//! on delete, and void once the resource leaves the caller's event.

use std::time::Duration;

use aiproxy_loadtest::stack::{Edge, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Client, Objects, Stack, assert_unauthorized, id_of, sse_events, unreached};

#[tokio::test(flavor = "multi_thread")]
async fn a_streamed_thread_and_run_belongs_to_its_caller_whatever_ids_its_metadata_holds() {
    let stack = Stack::start().await;
    let client = stack.client();
    let second = Edge::start(&stack.s.cp, "").await;
    let other_edge = Client::of(&second);
    let a = Objects::create(&client, &stack.a, "A").await;
    let b = Objects::create(&client, &stack.b, "B").await;
    let forged = json!({"id": a.thread, "thread_id": a.thread});
    let reply = client
        .raw(
            "POST",
            "/threads/runs",
            &stack.b,
            Some(&json!({"assistant_id": b.assistant, "stream": true, "metadata": forged,
                         "thread": {"metadata": forged, "messages": [{"role": "user", "content": "hi"}]}})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let events = sse_events(&reply.text());
    assert_eq!(
        events.first().map(|e| e.0.as_str()),
        Some("thread.created"),
        "{events:?}"
    );
    let thread: Value = serde_json::from_str(&events[0].1).unwrap();
    let created = id_of(&thread, "thread_");
    assert_ne!(created, a.thread);

    let path = format!("/threads/{created}");
    for edge in [&client, &other_edge] {
        eventually(
            "the streamed thread was never recorded for its creator",
            Duration::from_secs(5),
            || async { edge.json("GET", &path, &stack.b, None).await.0 == StatusCode::OK },
        )
        .await;
        let reply = unreached(stack.mock(), edge, "GET", &path, &stack.a, None).await;
        assert_unauthorized(&reply, "thread", "A reads B's streamed thread");
        let theirs = format!("/threads/{}", a.thread);
        let reply = unreached(stack.mock(), edge, "GET", &theirs, &stack.b, None).await;
        assert_unauthorized(&reply, "thread", "B reads A's thread named in B's metadata");
        assert_eq!(
            edge.json("GET", &theirs, &stack.a, None).await.0,
            StatusCode::OK
        );
    }
}

/// A deleted object of every kind: how to read it, delete it, and use it again.
struct Deletion {
    kind: &'static str,
    get: String,
    reuse: (String, Value),
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_object_is_unknown_on_every_edge_promptly() {
    let stack = Stack::start().await;
    let (edge1, second) = (stack.client(), Edge::start(&stack.s.cp, "").await);
    let edge2 = Client::of(&second);
    stack
        .s
        .admin
        .wait_edges_acked(2, Duration::from_secs(5))
        .await;
    let a = Objects::create(&edge1, &stack.a, "A").await;
    let keep = Objects::create(&edge1, &stack.a, "A-kept").await;
    let deletions = [
        Deletion {
            kind: "agent",
            get: format!("/assistants/{}", a.assistant),
            reuse: (
                format!("/threads/{}/runs", keep.thread),
                json!({"assistant_id": a.assistant}),
            ),
        },
        Deletion {
            kind: "agent",
            get: format!("/agents/{}", a.agent),
            reuse: (
                format!("/agents/{}/versions", a.agent),
                json!({"definition": {"instructions": "again"}}),
            ),
        },
        Deletion {
            kind: "thread",
            get: format!("/threads/{}", a.thread),
            reuse: (
                format!("/threads/{}/messages", a.thread),
                json!({"role": "user", "content": "hi"}),
            ),
        },
        Deletion {
            kind: "file",
            get: format!("/files/{}", a.file),
            reuse: (
                format!("/vector_stores/{}/files", keep.vector_store),
                json!({"file_id": a.file}),
            ),
        },
        Deletion {
            kind: "vector store",
            get: format!("/vector_stores/{}", a.vector_store),
            reuse: (
                format!("/vector_stores/{}/files", a.vector_store),
                json!({"file_id": keep.file}),
            ),
        },
        Deletion {
            kind: "conversation",
            get: format!("/openai/v1/conversations/{}", a.conversation),
            reuse: (
                format!("/openai/v1/conversations/{}/items", a.conversation),
                json!({"items": [{"type": "message", "role": "user", "content": "hi"}]}),
            ),
        },
        Deletion {
            kind: "response",
            get: format!("/openai/v1/responses/{}", a.model_response),
            reuse: (
                "/openai/v1/responses".to_string(),
                json!({"model": "gpt-4o", "input": "go on", "previous_response_id": a.model_response}),
            ),
        },
    ];
    // Both edges know the objects and their owner before the deletes.
    for d in &deletions {
        assert_eq!(
            edge2.json("GET", &d.get, &stack.a, None).await.0,
            StatusCode::OK,
            "{}",
            d.get
        );
        let reply = edge2.raw("GET", &d.get, &stack.b, None).await;
        assert_unauthorized(&reply, d.kind, &format!("B: GET {}", d.get));
    }
    for d in &deletions {
        let (status, answer) = edge1.json("DELETE", &d.get, &stack.a, None).await;
        assert_eq!(status, StatusCode::OK, "DELETE {}: {answer}", d.get);
    }
    for d in &deletions {
        eventually(
            &format!(
                "{} stayed readable on the other edge after its deletion",
                d.get
            ),
            Duration::from_secs(3),
            || async {
                edge2.raw("GET", &d.get, &stack.a, None).await.status == StatusCode::FORBIDDEN
            },
        )
        .await;
        for (edge, key) in [
            (&edge1, &stack.a),
            (&edge1, &stack.b),
            (&edge2, &stack.a),
            (&edge2, &stack.b),
        ] {
            let reply = edge.raw("GET", &d.get, key, None).await;
            assert_unauthorized(&reply, d.kind, &format!("GET {} after its deletion", d.get));
        }
        let (path, body) = &d.reuse;
        for edge in [&edge1, &edge2] {
            let reply = edge.raw("POST", path, &stack.a, Some(body)).await;
            assert!(
                [StatusCode::FORBIDDEN, StatusCode::NOT_FOUND].contains(&reply.status),
                "the owner reuses deleted {}: POST {path}: {} {}",
                d.get,
                reply.status,
                reply.text()
            );
        }
    }
}

/// A's objects on the Foundry project, each read with A's key; none may answer 2xx.
async fn assert_unreachable(stack: &Stack, a: &Objects, why: &str) {
    let client = stack.client();
    for path in [
        format!("/assistants/{}", a.assistant),
        format!("/agents/{}", a.agent),
        format!("/threads/{}", a.thread),
        format!("/threads/{}/messages", a.thread),
        format!("/files/{}", a.file),
        format!("/vector_stores/{}", a.vector_store),
        format!("/openai/v1/conversations/{}/items", a.conversation),
        format!("/openai/v1/responses/{}", a.agent_response),
    ] {
        let reply = client.raw("GET", &path, &stack.a, None).await;
        assert!(
            !reply.status.is_success(),
            "{why}: GET {path} answered {} {}",
            reply.status,
            reply.text()
        );
    }
    let run = json!({"assistant_id": a.assistant});
    let reply = client
        .raw(
            "POST",
            &format!("/threads/{}/runs", a.thread),
            &stack.a,
            Some(&run),
        )
        .await;
    assert!(
        !reply.status.is_success(),
        "{why}: a run answered {}",
        reply.status
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_on_a_deactivated_agent_resource_are_unreachable() {
    let stack = Stack::start().await;
    let a = Objects::create(&stack.client(), &stack.a, "A").await;
    let path = format!("/resources/{}", stack.agent_resource);
    let (_, mut resource) = stack.s.admin.get(&path).await;
    resource["active"] = json!(false);
    let (status, answer) = stack.s.admin.put(&path, resource).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    stack
        .s
        .admin
        .wait_edges_acked(1, Duration::from_secs(5))
        .await;
    assert_unreachable(&stack, &a, "resource deactivated").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_on_an_agent_resource_removed_from_the_event_are_unreachable() {
    let stack = Stack::start().await;
    let a = Objects::create(&stack.client(), &stack.a, "A").await;
    let path = format!("/events/{}", stack.s.event_id);
    let (_, mut event) = stack.s.admin.get(&path).await;
    let remaining: Vec<Value> = event["resource_ids"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|id| **id != stack.agent_resource.as_str())
        .cloned()
        .collect();
    event["resource_ids"] = Value::Array(remaining);
    let (status, answer) = stack.s.admin.put(&path, event).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    stack
        .s
        .admin
        .wait_edges_acked(1, Duration::from_secs(5))
        .await;
    assert_unreachable(&stack, &a, "resource removed from the event").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn model_responses_on_a_deactivated_model_resource_are_unreachable() {
    let stack = Stack::start().await;
    let client = stack.client();
    let stored = client
        .created(
            "/openai/v1/responses",
            &stack.a,
            json!({"model": "gpt-4o", "input": "hi"}),
        )
        .await;
    let path = format!("/openai/v1/responses/{}", id_of(&stored, "resp_"));
    assert_eq!(
        client.json("GET", &path, &stack.a, None).await.0,
        StatusCode::OK
    );
    let resource = format!("/resources/{}", stack.s.resource_id);
    let (_, mut body) = stack.s.admin.get(&resource).await;
    body["active"] = json!(false);
    let (status, answer) = stack.s.admin.put(&resource, body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    stack
        .s
        .admin
        .wait_edges_acked(1, Duration::from_secs(5))
        .await;
    let reply = client.raw("GET", &path, &stack.a, None).await;
    assert!(
        !reply.status.is_success(),
        "GET {path} on a deactivated resource: {} {}",
        reply.status,
        reply.text()
    );
}
