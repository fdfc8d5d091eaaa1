//! End to end: the real control plane and edge binaries, the mock upstream, real HTTP clients.
//! The Azure OpenAI routes, client authentication and its errors, pools, and admin changes.

use std::time::{Duration, Instant};

use aiproxy_loadtest::mock::{MOCK_REPLY, MockAzure, MockConfig};
use aiproxy_loadtest::stack::{
    API_VERSION, Edge, Scenario, UPSTREAM_KEY, model_resource, rfc3339_from_now,
};
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn chat_body() -> Value {
    json!({"messages": [{"role": "user", "content": "Hi"}]})
}

async fn error_message(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.expect("JSON error body");
    (
        status,
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_completion_goes_upstream_with_the_resource_key_and_query_string() {
    let s = Scenario::start(MockConfig::default()).await;
    let response = reqwest::Client::new()
        .post(s.edge.chat_url("gpt-4o"))
        .header("Authorization", format!("Bearer {}", s.key))
        .header("x-ms-client-request-id", "req-42")
        .header("Connection", "keep-alive")
        .json(&chat_body())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["x-mock-upstream"],
        "azure-openai",
        "upstream headers are kept"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], MOCK_REPLY);

    let seen = s
        .mock
        .stats
        .last_request("/openai/deployments/gpt-4o/chat/completions")
        .unwrap();
    assert_eq!(
        seen.query.as_deref(),
        Some(format!("api-version={API_VERSION}").as_str())
    );
    assert_eq!(seen.headers["api-key"], UPSTREAM_KEY);
    assert!(
        seen.headers.get("authorization").is_none(),
        "the client's credential must not be forwarded"
    );
    assert_eq!(seen.headers["x-ms-client-request-id"], "req-42");
    assert_eq!(
        s.mock
            .stats
            .rejected_auth
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_chat_events_reach_the_client_before_upstream_has_finished() {
    let s = Scenario::start(MockConfig {
        stream_chunks: 4,
        stream_chunk_delay: Duration::from_millis(400),
        ..Default::default()
    })
    .await;
    let response = s
        .call(
            "gpt-4o",
            "chat/completions",
            json!({"messages": [{"role": "user", "content": "Hi"}], "stream": true, "stream_options": {"include_usage": true}}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert_eq!(response.headers()["apim-request-id"], "mock-request-id");

    let mut body = response.bytes_stream();
    let first = body.next().await.expect("a first event").unwrap();
    assert!(
        String::from_utf8_lossy(&first).starts_with("data: "),
        "{first:?}"
    );
    let stats = &s.mock.stats;
    assert_eq!(
        stats
            .streams_started
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert_eq!(
        stats
            .streams_finished
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the first event must arrive while upstream is still streaming"
    );
    let mut all = first.to_vec();
    while let Some(chunk) = body.next().await {
        all.extend_from_slice(&chunk.unwrap());
    }
    let text = String::from_utf8(all).unwrap();
    assert!(
        text.contains("\"usage\""),
        "final usage chunk passes through"
    );
    assert!(text.trim_end().ends_with("data: [DONE]"));
}

#[tokio::test(flavor = "multi_thread")]
async fn embeddings_other_operations_and_the_v1_api_are_routed() {
    let s = Scenario::start(MockConfig::default()).await;
    let response = s
        .call("gpt-4o", "embeddings", json!({"input": ["a", "b"]}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2);

    // An upload streams through untouched (multipart, not inspected).
    let audio = vec![7u8; 300_000];
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(audio).file_name("a.wav"),
        )
        .text("model", "whisper");
    let response = reqwest::Client::new()
        .post(format!(
            "{}/openai/deployments/gpt-4o/audio/transcriptions?api-version={API_VERSION}",
            s.edge.api_base()
        ))
        .header("api-key", &s.key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["operation"], "audio/transcriptions");
    assert!(body["bytes_received"].as_u64().unwrap() > 300_000);

    let v1 = |body: Value| {
        reqwest::Client::new()
            .post(format!("{}/openai/v1/chat/completions", s.edge.api_base()))
            .header("api-key", &s.key)
            .json(&body)
            .send()
    };
    let response = v1(json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(s.mock.stats.count_for("/openai/v1/chat/completions"), 1);

    let (status, message) =
        error_message(v1(json!({"model": "gpt-5", "messages": []})).await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        message,
        "Deployment 'gpt-5' not found for this event. Available deployments are: gpt-4o"
    );

    let (status, message) = error_message(v1(json!({"messages": []})).await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message.starts_with("model:"), "{message}");

    let response = reqwest::Client::new()
        .post(format!("{}/openai/v1/responses", s.edge.api_base()))
        .header("api-key", &s.key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, message) = error_message(response).await;
    assert_eq!(
        (status, message.as_str()),
        (StatusCode::BAD_REQUEST, "Invalid JSON in request body")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_deployment_lists_the_available_ones() {
    let s = Scenario::start(MockConfig::default()).await;
    let embed = s
        .admin
        .create_resource(model_resource(
            "text-embedding-3-small",
            &s.mock.endpoint(),
            "",
        ))
        .await;
    let (_, event) = s.admin.get(&format!("/events/{}", s.event_id)).await;
    let mut event = event;
    event["resource_ids"] = json!([s.resource_id, embed]);
    let (status, _) = s.admin.put(&format!("/events/{}", s.event_id), event).await;
    assert_eq!(status, StatusCode::OK);
    s.admin.wait_edges_acked(1, Duration::from_secs(5)).await;

    let (status, message) =
        error_message(s.call("gpt-35", "chat/completions", chat_body()).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        message,
        "Deployment 'gpt-35' not found for this event. Available deployments are: gpt-4o, text-embedding-3-small"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_keys_say_why() {
    let s = Scenario::start(MockConfig::default()).await;
    let url = format!(
        "{}/openai/deployments/gpt-4o/chat/completions",
        s.edge.api_base()
    );
    let http = reqwest::Client::new();

    let (status, message) =
        error_message(http.post(&url).json(&chat_body()).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(message.starts_with("Missing API key"), "{message}");

    let wrong = http
        .post(&url)
        .header("api-key", "aip_not-a-real-key")
        .json(&chat_body())
        .send()
        .await
        .unwrap();
    let (status, message) = error_message(wrong).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(message.starts_with("Unknown API key"), "{message}");

    // A keep-alive connection that has presented the key: the edge remembers the key's hash for
    // the connection, and still looks the attendee up on every call.
    let call = || {
        http.post(&url)
            .header("api-key", &s.key)
            .json(&chat_body())
            .send()
    };
    let answered = call().await.unwrap();
    assert_eq!(answered.status(), StatusCode::OK);
    answered.bytes().await.unwrap();
    let (status, _) = s
        .admin
        .put(
            &format!("/events/{}/attendees/attendee-1", s.event_id),
            json!({"active": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    s.admin.wait_edges_acked(1, Duration::from_secs(5)).await;
    for refused in [
        call().await.unwrap(),
        s.call("gpt-4o", "chat/completions", chat_body()).await,
    ] {
        let (status, message) = error_message(refused).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            message,
            "This API key has been deactivated by the event organizer."
        );
    }

    let (_, mut event) = s.admin.get(&format!("/events/{}", s.event_id)).await;
    event["active"] = json!(false);
    s.admin.put(&format!("/events/{}", s.event_id), event).await;
    s.admin
        .put(
            &format!("/events/{}/attendees/attendee-1", s.event_id),
            json!({"active": true}),
        )
        .await;
    s.admin.wait_edges_acked(1, Duration::from_secs(5)).await;
    let (status, message) =
        error_message(s.call("gpt-4o", "chat/completions", chat_body()).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(message, "The event 'Test hackathon' is not active.");
    assert_eq!(
        s.mock
            .stats
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "nothing but the one answered call reached upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn event_window_is_enforced_in_the_events_time_zone() {
    let s = Scenario::start(MockConfig::default()).await;
    // Local date-times (no offset), read in America/New_York.
    let local = |days: i64| {
        (chrono::Utc::now() + chrono::Duration::days(days))
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string()
    };
    let event = |name: &str, from: i64, to: i64| {
        json!({"name": name, "starts_at": local(from), "ends_at": local(to), "time_zone": "America/New_York",
               "resource_ids": [s.resource_id]})
    };
    let future = s.admin.create_event(event("Future", 2, 3)).await;
    let past = s.admin.create_event(event("Past", -3, -2)).await;
    let future_key = s.admin.add_attendee(&future, "u1").await;
    let past_key = s.admin.add_attendee(&past, "u1").await;
    s.admin.wait_edges_acked(1, Duration::from_secs(5)).await;

    let (_, stored) = s.admin.get(&format!("/events/{future}")).await;
    let starts = stored["starts_at"].as_str().unwrap();
    assert!(
        starts.ends_with("-05:00") || starts.ends_with("-04:00"),
        "shown in New York time: {starts}"
    );

    let call = |key: String| {
        reqwest::Client::new()
            .post(format!(
                "{}/openai/deployments/gpt-4o/chat/completions",
                s.edge.api_base()
            ))
            .header("api-key", key)
            .json(&chat_body())
            .send()
    };
    let (status, message) = error_message(call(future_key).await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        message.starts_with("The event 'Future' has not started yet: it starts at "),
        "{message}"
    );
    assert!(message.contains("America/New_York"), "{message}");
    let (status, message) = error_message(call(past_key).await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        message.starts_with("The event 'Past' ended at "),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn token_cap_refuses_larger_requests() {
    let s = Scenario::start(MockConfig::default()).await;
    let (_, mut event) = s.admin.get(&format!("/events/{}", s.event_id)).await;
    event["max_token_cap"] = json!(256);
    s.admin.put(&format!("/events/{}", s.event_id), event).await;
    s.admin.wait_edges_acked(1, Duration::from_secs(5)).await;

    let over = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1000});
    let (status, message) = error_message(s.call("gpt-4o", "chat/completions", over).await).await;
    assert_eq!(
        (status, message.as_str()),
        (
            StatusCode::BAD_REQUEST,
            "max_tokens exceeds the event max token cap of 256"
        )
    );
    let under = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 100});
    assert_eq!(
        s.call("gpt-4o", "chat/completions", under).await.status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_changes_reach_the_edge_quickly() {
    let s = Scenario::start(MockConfig::default()).await;
    let new_key_at = Instant::now();
    let key = s.admin.add_attendee(&s.event_id, "late-arrival").await;
    // Poll the edge itself: the change counts as seen when the new key works.
    let mut status = StatusCode::UNAUTHORIZED;
    while new_key_at.elapsed() < Duration::from_secs(5) {
        status = reqwest::Client::new()
            .post(format!(
                "{}/openai/deployments/gpt-4o/chat/completions",
                s.edge.api_base()
            ))
            .header("api-key", &key)
            .json(&chat_body())
            .send()
            .await
            .unwrap()
            .status();
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        status,
        StatusCode::OK,
        "the new attendee was not accepted by the edge within 5 s"
    );
    eprintln!(
        "admin change visible at the edge after {:?}",
        new_key_at.elapsed()
    );

    // Deactivating the resource empties the pool.
    let (_, mut resource) = s.admin.get(&format!("/resources/{}", s.resource_id)).await;
    resource["active"] = json!(false);
    let (status, _) = s
        .admin
        .put(&format!("/resources/{}", s.resource_id), resource)
        .await;
    assert_eq!(status, StatusCode::OK);
    s.admin.wait_edges_acked(1, Duration::from_secs(5)).await;
    assert_eq!(
        s.call("gpt-4o", "chat/completions", chat_body())
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pool_prefers_the_edges_region_then_spreads() {
    let s = Scenario::start(MockConfig::default()).await;
    let second = MockAzure::start(MockConfig {
        auth: aiproxy_loadtest::mock::ExpectedAuth::ApiKey(UPSTREAM_KEY.into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let (_, mut first) = s.admin.get(&format!("/resources/{}", s.resource_id)).await;
    first["region"] = json!("swedencentral");
    s.admin
        .put(&format!("/resources/{}", s.resource_id), first)
        .await;
    let east = s
        .admin
        .create_resource(model_resource("gpt-4o", &second.endpoint(), "eastus"))
        .await;
    let (_, mut event) = s.admin.get(&format!("/events/{}", s.event_id)).await;
    event["resource_ids"] = json!([s.resource_id, east]);
    s.admin.put(&format!("/events/{}", s.event_id), event).await;
    let east_edge = Edge::start(&s.cp, "eastus").await;
    s.admin.wait_edges_acked(2, Duration::from_secs(5)).await;

    let path = "/openai/deployments/gpt-4o/chat/completions";
    let send = |edge: String| {
        let key = s.key.clone();
        async move {
            reqwest::Client::new()
                .post(format!("{edge}/api/v1{path}"))
                .header("api-key", key)
                .json(&chat_body())
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    for _ in 0..6 {
        assert_eq!(send(east_edge.url()).await, StatusCode::OK);
    }
    assert_eq!(
        second.stats.count_for(path),
        6,
        "the eastus edge uses the eastus member"
    );
    assert_eq!(s.mock.stats.count_for(path), 0);

    // The first edge has no region: load spreads over both members.
    for _ in 0..6 {
        assert_eq!(send(s.edge.url()).await, StatusCode::OK);
    }
    assert_eq!(second.stats.count_for(path), 9);
    assert_eq!(s.mock.stats.count_for(path), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn events_accept_rfc3339_windows_from_any_offset() {
    let s = Scenario::start(MockConfig::default()).await;
    let id = s
        .admin
        .create_event(json!({"name": "Offsets", "starts_at": rfc3339_from_now(-60), "ends_at": rfc3339_from_now(3600),
                             "time_zone": "Asia/Tokyo", "resource_ids": [s.resource_id]}))
        .await;
    let key = s.admin.add_attendee(&id, "tokyo").await;
    s.admin.wait_edges_acked(1, Duration::from_secs(5)).await;
    let response = reqwest::Client::new()
        .post(format!(
            "{}/openai/deployments/gpt-4o/embeddings",
            s.edge.api_base()
        ))
        .header("api-key", key)
        .json(&json!({"input": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daily_request_cap_holds_across_edges() {
    let s = Scenario::start(MockConfig::default()).await;
    let (_, mut event) = s.admin.get(&format!("/events/{}", s.event_id)).await;
    event["daily_request_cap"] = json!(3);
    s.admin.put(&format!("/events/{}", s.event_id), event).await;
    let other_key = s.admin.add_attendee(&s.event_id, "attendee-2").await;
    let second = Edge::start(&s.cp, "").await;
    s.admin.wait_edges_acked(2, Duration::from_secs(5)).await;

    let call = |edge: &Edge, key: &str| {
        reqwest::Client::new()
            .post(format!(
                "{}/openai/deployments/gpt-4o/chat/completions",
                edge.api_base()
            ))
            .header("api-key", key)
            .json(&chat_body())
            .send()
    };
    for edge in [&s.edge, &second, &s.edge] {
        assert_eq!(call(edge, &s.key).await.unwrap().status(), StatusCode::OK);
    }
    for edge in [&second, &s.edge] {
        let refused = call(edge, &s.key).await.unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry_after: i64 = refused.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (1..=86_400).contains(&retry_after),
            "until UTC midnight: {retry_after}"
        );
        let (_, message) = error_message(refused).await;
        assert_eq!(
            message,
            "The event daily request rate of 3 calls has been exceeded. Requests are disabled until UTC midnight."
        );
    }
    assert_eq!(
        call(&second, &other_key).await.unwrap().status(),
        StatusCode::OK,
        "the cap is per attendee"
    );
    assert_eq!(
        s.mock
            .stats
            .count_for("/openai/deployments/gpt-4o/chat/completions"),
        4
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_pool_member_is_left_out_and_the_request_moves_on() {
    let s = Scenario::start(MockConfig::default()).await;
    let throttled = MockAzure::start(MockConfig {
        auth: aiproxy_loadtest::mock::ExpectedAuth::ApiKey(UPSTREAM_KEY.into()),
        fail_with: Some(429),
        ..Default::default()
    })
    .await
    .unwrap();
    // The throttled member is in the edge's own region, so it is tried first.
    let local = s
        .admin
        .create_resource(model_resource("gpt-4o", &throttled.endpoint(), "eastus"))
        .await;
    let (_, mut event) = s.admin.get(&format!("/events/{}", s.event_id)).await;
    event["resource_ids"] = json!([s.resource_id, local]);
    s.admin.put(&format!("/events/{}", s.event_id), event).await;
    let edge = Edge::start(&s.cp, "eastus").await;
    s.admin.wait_edges_acked(2, Duration::from_secs(5)).await;

    let path = "/openai/deployments/gpt-4o/chat/completions";
    for _ in 0..5 {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", edge.api_base()))
            .header("api-key", &s.key)
            .json(&chat_body())
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "the request moved on to the healthy member"
        );
    }
    assert_eq!(
        throttled.stats.count_for(path),
        1,
        "left out after its 429 (Retry-After: 30)"
    );
    assert_eq!(s.mock.stats.count_for(path), 5);
}
