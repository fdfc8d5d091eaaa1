//! The Responses API of a model: stored responses are their creator's, unstored ones are not
//! recorded, streamed ones are recorded from `response.created`; and the official SDKs, which
//! must see the same confinement.

use std::time::Duration;

use aiproxy_loadtest::stack::{eventually, run_python_check};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Stack, assert_unauthorized, id_of, sse_events, unreached};

#[tokio::test(flavor = "multi_thread")]
async fn stored_model_responses_are_the_creators_and_unstored_ones_are_not_recorded() {
    let stack = Stack::start().await;
    let client = stack.client();
    let mock = stack.mock();
    let stored = client
        .created(
            "/openai/v1/responses",
            &stack.a,
            json!({"model": "gpt-4o", "input": "A's secret plan"}),
        )
        .await;
    let id = id_of(&stored, "resp_");
    let path = format!("/openai/v1/responses/{id}");
    for (method, path, body) in [
        ("GET", path.clone(), None),
        ("DELETE", path.clone(), None),
        ("GET", format!("{path}/input_items"), None),
        ("POST", format!("{path}/cancel"), Some(json!({}))),
        (
            "POST",
            "/openai/v1/responses".to_string(),
            Some(json!({"model": "gpt-4o", "input": "go on", "previous_response_id": id})),
        ),
    ] {
        let reply = unreached(mock, &client, method, &path, &stack.b, body.as_ref()).await;
        assert_unauthorized(&reply, "response", &format!("B: {method} {path}"));
    }
    let (status, read) = client.json("GET", &path, &stack.a, None).await;
    assert_eq!((status, &read["id"]), (StatusCode::OK, &json!(id)));
    let (status, continued) = client
        .json(
            "POST",
            "/openai/v1/responses",
            &stack.a,
            Some(&json!({"model": "gpt-4o", "input": "go on", "previous_response_id": id})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{continued}");
    assert!(
        continued.to_string().contains("A's secret plan"),
        "the owner continues: {continued}"
    );

    let unstored = client
        .created(
            "/openai/v1/responses",
            &stack.a,
            json!({"model": "gpt-4o", "input": "x", "store": false}),
        )
        .await;
    let path = format!("/openai/v1/responses/{}", id_of(&unstored, "resp_"));
    for key in [&stack.a, &stack.b] {
        let reply = client.raw("GET", &path, key, None).await;
        assert!(
            [StatusCode::FORBIDDEN, StatusCode::NOT_FOUND].contains(&reply.status),
            "GET of a store:false response: {} {}",
            reply.status,
            reply.text()
        );
    }

    // Streamed: the response named in `response.created` is the caller's.
    let reply = client
        .raw(
            "POST",
            "/openai/v1/responses",
            &stack.a,
            Some(&json!({"model": "gpt-4o", "input": "x", "stream": true})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let events = sse_events(&reply.text());
    assert_eq!(events[0].0, "response.created", "{events:?}");
    let created: Value = serde_json::from_str(&events[0].1).unwrap();
    let path = format!(
        "/openai/v1/responses/{}",
        created["response"]["id"].as_str().unwrap()
    );
    eventually(
        "a streamed response was never recorded for its creator",
        Duration::from_secs(5),
        || async { client.json("GET", &path, &stack.a, None).await.0 == StatusCode::OK },
    )
    .await;
    let reply = unreached(mock, &client, "GET", &path, &stack.b, None).await;
    assert_unauthorized(&reply, "response", "B reads A's streamed response");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_sdks_confine_each_attendee_to_their_own_objects() {
    let stack = Stack::start().await;
    let env = [
        ("AIPROXY_EDGE_API", stack.s.edge.api_base()),
        ("AIPROXY_KEY", stack.a.clone()),
        ("AIPROXY_OTHER_KEY", stack.b.clone()),
        ("AIPROXY_DEPLOYMENT", "gpt-4o".to_string()),
    ];
    run_python_check("agents_sdk_check.py", &env, "agents SDK checks passed").await;
    run_python_check(
        "openai_sdk_check.py",
        &env,
        "openai SDK isolation checks passed",
    )
    .await;
}
