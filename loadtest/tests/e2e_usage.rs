//! Usage metering and token budgets end to end (issue 11): the real control plane and edges
//! against the mock upstream, which keeps a ledger of the usage it reported.
//! - the usage totals the admin API reports equal, exactly, what the upstream reported, for every
//!   kind of call, driven by the official `openai` SDK through two edges with concurrent clients;
//! - a stream whose client did not ask for usage reaches the client without it (byte-exact);
//! - token caps (per attendee per day, per event) hold across two edges within the documented
//!   bound, with the documented 429s;
//! - `/eventinfo` shows the caller's usage today and what is left;
//! - a resource with `use_max_completion_tokens` gets `max_tokens` renamed;
//! - a stream whose client left is still read for its usage when the edge is stopped.

use std::sync::atomic::Ordering;
use std::time::Duration;

use aiproxy_loadtest::mock::MockConfig;
use aiproxy_loadtest::stack::{API_VERSION, Edge, Scenario, eventually, run_python_check};
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

const CHAT: &str = "/openai/deployments/gpt-4o/chat/completions";

async fn set_event(s: &Scenario, fields: Value) {
    let (_, mut event) = s.admin.get(&format!("/events/{}", s.event_id)).await;
    for (k, v) in fields.as_object().unwrap() {
        event[k] = v.clone();
    }
    let (status, answer) = s.admin.put(&format!("/events/{}", s.event_id), event).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

async fn chat(edge: &Edge, key: &str, body: Value) -> reqwest::Response {
    edge.chat(key, "gpt-4o", &body).await
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_totals_equal_what_the_upstream_reported_through_two_edges() {
    let s = Scenario::start(MockConfig {
        stream_chunks: 4,
        stream_chunk_delay: Duration::from_millis(5),
        ..Default::default()
    })
    .await;
    let second = Edge::start(&s.cp, "").await;
    run_python_check(
        "usage_sdk_load.py",
        &[
            (
                "AIPROXY_EDGE_APIS",
                format!("{},{}", s.edge.api_base(), second.api_base()),
            ),
            ("AIPROXY_KEY", s.key.clone()),
            ("AIPROXY_DEPLOYMENT", "gpt-4o".into()),
            ("AIPROXY_ROUNDS", "4".into()),
        ],
        "usage SDK load passed",
    )
    .await;
    let totals = s
        .admin
        .assert_usage_matches(&s.event_id, &[&s.mock], Duration::from_secs(15))
        .await;
    let reported = s.mock.stats.usage_total();
    assert!(
        reported.cached_tokens > 0,
        "the mock reported cached tokens: {reported:?}"
    );
    // One record per call the mock answered (each SDK call is one HTTP request).
    assert_eq!(totals["requests"].as_u64(), Some(s.mock.stats.total()));
    assert_eq!(totals["errors"], 0);

    // The same usage by resource and by attendee, and as CSV.
    let (_, by) = s
        .admin
        .get(&format!(
            "/usage?event_id={}&group_by=resource,attendee&granularity=day",
            s.event_id
        ))
        .await;
    let rows = by["rows"].as_array().unwrap();
    assert!(!rows.is_empty(), "{by}");
    assert!(
        rows.iter()
            .all(|r| r["resource_id"] == s.resource_id.as_str()
                && r["user_id"] == "attendee-1"
                && r["deployment_name"] == "gpt-4o"),
        "{by}"
    );
    let summed: u64 = rows
        .iter()
        .map(|r| r["total_tokens"].as_u64().unwrap())
        .sum();
    assert_eq!(summed, reported.total_tokens);
}

/// Calls one after the other, JSON and streamed (the edge rewrites and meters both), go over one
/// upstream connection: each answer is read to its end, so its connection goes back to the pool.
#[tokio::test(flavor = "multi_thread")]
async fn answers_read_to_their_end_leave_the_upstream_connection_for_the_next_call() {
    let s = Scenario::start(MockConfig::default()).await;
    let bodies = [
        json!({"messages": [{"role": "user", "content": "Hi"}]}),
        json!({"messages": [{"role": "user", "content": "Hi"}], "stream": true}),
        json!({"messages": [{"role": "user", "content": "Hi"}], "stream": true,
               "stream_options": {"include_usage": true}}),
    ];
    for body in bodies.iter().cycle().take(9) {
        let answer = chat(&s.edge, &s.key, body.clone()).await;
        assert_eq!(answer.status(), StatusCode::OK);
        answer.bytes().await.unwrap();
    }
    assert_eq!(s.mock.stats.connections.load(Ordering::Relaxed), 1);
}

/// A stream whose client leaves is still read to its end for its usage, so its upstream
/// connection is not lost either.
#[tokio::test(flavor = "multi_thread")]
async fn a_stream_whose_client_left_leaves_its_upstream_connection_for_the_next_call() {
    let s = Scenario::start(MockConfig {
        stream_chunks: 10,
        stream_chunk_delay: Duration::from_millis(30),
        ..MockConfig::default()
    })
    .await;
    let answer = chat(
        &s.edge,
        &s.key,
        json!({"messages": [{"role": "user", "content": "Hi"}], "stream": true}),
    )
    .await;
    let mut body = answer.bytes_stream();
    body.next().await.expect("a first chunk").unwrap();
    drop(body);
    eventually(
        "the mock sent the whole stream",
        Duration::from_secs(10),
        || async { s.mock.stats.streams_finished.load(Ordering::Relaxed) == 1 },
    )
    .await;
    // The edge reads the last bytes as they come; give it a moment to hand the connection back.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let answer = chat(
        &s.edge,
        &s.key,
        json!({"messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(answer.status(), StatusCode::OK);
    answer.bytes().await.unwrap();
    assert_eq!(s.mock.stats.connections.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_that_did_not_ask_for_usage_reaches_its_client_as_azure_sends_it() {
    let s = Scenario::start(MockConfig::default()).await;
    let body = json!({"messages": [{"role": "user", "content": "Hi"}], "stream": true});
    let through_edge = chat(&s.edge, &s.key, body.clone())
        .await
        .text()
        .await
        .unwrap();
    // The upstream was asked for usage…
    let sent = s
        .mock
        .stats
        .last_request(CHAT)
        .expect("the mock saw the call");
    let sent: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
    // …and the client got what the upstream sends a client that did not ask: the same events,
    // with no usage chunk and no `usage` member.
    let direct = reqwest::Client::new()
        .post(format!(
            "{}{}?api-version={API_VERSION}",
            s.mock.endpoint(),
            CHAT
        ))
        .header("api-key", aiproxy_loadtest::stack::UPSTREAM_KEY)
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let shape = |text: &str| -> Vec<Value> {
        text.split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| {
                let mut v: Value = serde_json::from_str(d).unwrap();
                // Ids and timestamps differ from call to call.
                v.as_object_mut().unwrap().remove("id");
                v.as_object_mut().unwrap().remove("created");
                v
            })
            .collect()
    };
    assert!(!through_edge.contains("usage"), "{through_edge}");
    assert_eq!(shape(&through_edge), shape(&direct));
    assert!(through_edge.ends_with("data: [DONE]\n\n"), "{through_edge}");
    // It was counted all the same.
    s.admin
        .assert_usage_matches(&s.event_id, &[&s.mock], Duration::from_secs(10))
        .await;
}

/// Streams chat calls (asking for their usage) through `edge` from `clients` concurrent clients
/// until one is refused; returns (calls answered, the largest call's tokens, the refusal).
async fn spend_until_refused(
    edge: &Edge,
    key: &str,
    clients: usize,
) -> (usize, u64, reqwest::Response) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(clients);
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let tx = tx.clone();
            let url = format!("{}{CHAT}?api-version={API_VERSION}", edge.api_base());
            let key = key.to_string();
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let (mut answered, mut largest) = (0, 0);
                for _ in 0..500 {
                    let response = http
                        .post(&url)
                        .header("api-key", &key)
                        .json(&json!({"messages": [{"role": "user", "content": "Spend"}],
                                      "stream": true, "stream_options": {"include_usage": true}}))
                        .send()
                        .await
                        .unwrap();
                    if response.status() != StatusCode::OK {
                        let _ = tx.send(response).await;
                        break;
                    }
                    let mut text = Vec::new();
                    let mut body = response.bytes_stream();
                    while let Some(chunk) = body.next().await {
                        text.extend_from_slice(&chunk.unwrap());
                    }
                    let text = String::from_utf8(text).unwrap();
                    let total = text
                        .split("\"total_tokens\":")
                        .nth(1)
                        .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
                        .and_then(|n| n.parse::<u64>().ok())
                        .expect("the stream reported its usage");
                    largest = largest.max(total);
                    answered += 1;
                }
                (answered, largest)
            })
        })
        .collect();
    drop(tx);
    let (mut answered, mut largest) = (0, 0);
    for worker in workers {
        let (calls, most) = worker.await.unwrap();
        answered += calls;
        largest = largest.max(most);
    }
    let refusal = rx.recv().await.expect("the cap refused a call");
    (answered, largest, refusal)
}

#[tokio::test(flavor = "multi_thread")]
async fn token_caps_hold_across_two_edges_within_the_bound() {
    let s = Scenario::start(MockConfig::default()).await;
    let second = Edge::start(&s.cp, "").await;
    const CAP: u64 = 3_000;
    const CLIENTS: usize = 3;
    set_event(&s, json!({"daily_token_cap": CAP})).await;
    s.admin.wait_edges_acked(2, Duration::from_secs(10)).await;
    let (a, b) = tokio::join!(
        spend_until_refused(&s.edge, &s.key, CLIENTS),
        spend_until_refused(&second, &s.key, CLIENTS)
    );
    let ((answered_a, largest_a, refusal), (answered_b, largest_b, _)) = (a, b);
    assert_eq!(refusal.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: i64 = refusal.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=86_400).contains(&retry_after), "{retry_after}");
    let message: Value = refusal.json().await.unwrap();
    assert_eq!(
        message["error"]["message"],
        format!(
            "The event daily token cap of {CAP} tokens per attendee has been reached. Requests are disabled until UTC midnight."
        )
    );
    let totals = s
        .admin
        .assert_usage_matches(&s.event_id, &[&s.mock], Duration::from_secs(10))
        .await;
    let used = totals["total_tokens"].as_u64().unwrap();
    // The bound: the calls in flight on each edge when the cap was reached (one per client),
    // each at most the largest call seen.
    let calls = answered_a + answered_b;
    let bound = (2 * CLIENTS) as u64 * largest_a.max(largest_b);
    println!(
        "[usage] daily token cap {CAP}: {used} tokens used in {calls} calls (bound {CAP} + {bound})"
    );
    assert!(used >= CAP, "the cap was reached: {used}");
    assert!(used <= CAP + bound, "{used} > {CAP} + {bound}");

    // The event budget: 429 without Retry-After (waiting does not help).
    set_event(&s, json!({"daily_token_cap": 0, "token_budget": used})).await;
    s.admin.wait_edges_acked(2, Duration::from_secs(10)).await;
    let refused = chat(&second, &s.key, json!({"messages": []})).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().get("retry-after").is_none());
    let message: Value = refused.json().await.unwrap();
    assert_eq!(
        message["error"]["message"],
        format!(
            "The event token budget of {used} tokens has been used up. Ask the organizer to raise it."
        )
    );
    // A search call generates no tokens: a used-up token budget does not refuse it.
    let search = s
        .admin
        .create_resource(
            json!({"friendly_name": "products", "deployment_name": "products",
            "model_type": "azure-ai-search", "endpoint_url": s.mock.endpoint(),
            "key": aiproxy_loadtest::stack::UPSTREAM_KEY}),
        )
        .await;
    set_event(&s, json!({"resource_ids": [s.resource_id, search]})).await;
    s.admin.wait_edges_acked(2, Duration::from_secs(10)).await;
    let searched = reqwest::Client::new()
        .post(format!(
            "{}/indexes/products/docs/search?api-version=2024-07-01",
            second.api_base()
        ))
        .header("api-key", &s.key)
        .json(&json!({"search": "*"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        searched.status(),
        StatusCode::OK,
        "search under a used-up token budget"
    );
    assert_eq!(
        chat(&second, &s.key, json!({"messages": []}))
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Raised: calls go through again at once.
    set_event(&s, json!({"token_budget": used + 10_000})).await;
    s.admin.wait_edges_acked(2, Duration::from_secs(10)).await;
    assert_eq!(
        chat(&second, &s.key, json!({"messages": []}))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn eventinfo_shows_the_usage_today_and_what_is_left() {
    let s = Scenario::start(MockConfig::default()).await;
    set_event(
        &s,
        json!({"daily_token_cap": 100_000, "token_budget": 1_000_000, "daily_request_cap": 50}),
    )
    .await;
    s.admin.wait_edges_acked(1, Duration::from_secs(10)).await;
    for _ in 0..3 {
        assert_eq!(
            chat(
                &s.edge,
                &s.key,
                json!({"messages": [{"role": "user", "content": "Hi"}]})
            )
            .await
            .status(),
            StatusCode::OK
        );
    }
    let used = s
        .admin
        .assert_usage_matches(&s.event_id, &[&s.mock], Duration::from_secs(10))
        .await["total_tokens"]
        .as_u64()
        .unwrap();
    let info: Value = reqwest::Client::new()
        .post(format!("{}/eventinfo", s.edge.api_base()))
        .header("api-key", &s.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["usage_today"]["requests"], 3, "{info}");
    assert_eq!(info["usage_today"]["total_tokens"], used, "{info}");
    assert_eq!(info["remaining"]["daily_requests"], 47, "{info}");
    assert_eq!(info["remaining"]["daily_tokens"], 100_000 - used, "{info}");
    assert_eq!(
        info["remaining"]["event_tokens"],
        1_000_000 - used,
        "{info}"
    );
    assert_eq!(info["daily_token_cap"], 100_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reasoning_model_resource_gets_max_completion_tokens() {
    let s = Scenario::start(MockConfig::default()).await;
    let (_, mut resource) = s.admin.get(&format!("/resources/{}", s.resource_id)).await;
    resource["use_max_completion_tokens"] = json!(true);
    for field in ["id", "has_key", "managed_identity"] {
        resource.as_object_mut().unwrap().remove(field);
    }
    let (status, answer) = s
        .admin
        .put(&format!("/resources/{}", s.resource_id), resource)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    s.admin.wait_edges_acked(1, Duration::from_secs(10)).await;
    eventually(
        "the edge renames max_tokens",
        Duration::from_secs(10),
        || async {
            let status = chat(
                &s.edge,
                &s.key,
                json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 64}),
            )
            .await
            .status();
            let sent: Value =
                serde_json::from_slice(&s.mock.stats.last_request(CHAT).unwrap().body).unwrap();
            status == StatusCode::OK
                && sent["max_completion_tokens"] == 64
                && sent.get("max_tokens").is_none()
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn records_wait_on_disk_while_the_control_plane_is_down_and_arrive_after_a_restart() {
    let mut s = Scenario::start(MockConfig::default()).await;
    let state = aiproxy_loadtest::stack::ScratchDir::new("edge-state");
    let state_dir = state.path().display().to_string();
    let env = [
        ("AIPROXY_EDGE_STATE_DIR", state_dir.as_str()),
        ("AIPROXY_USAGE_SHUTDOWN_FLUSH_SECS", "1"),
        ("AIPROXY_SHUTDOWN_DELAY_MS", "0"),
    ];
    let mut edge = Edge::start_with_env(&s.cp, "", &env).await;
    s.cp.kill().await;
    for _ in 0..5 {
        let answer = chat(
            &edge,
            &s.key,
            json!({"messages": [{"role": "user", "content": "Hi"}]}),
        )
        .await;
        assert_eq!(
            answer.status(),
            StatusCode::OK,
            "the edge serves while the control plane is down"
        );
    }
    let ready = edge.readiness().await;
    assert_eq!(ready["usage"]["pending_records"], 5, "{ready}");
    // The control plane said it takes sums: one attendee's calls wait as one entry (two if an
    // hour began meanwhile).
    let entries = ready["usage"]["pending_entries"].as_u64().unwrap();
    assert!((1..=2).contains(&entries), "{ready}");
    edge.terminate();
    assert!(edge.wait_exit(Duration::from_secs(20)).await.is_some());
    assert!(edge.log().contains("they stay on disk"), "{}", edge.log());
    s.cp.restart().await;
    // A new edge on the same state folder sends what the old one left.
    let _again = Edge::start_with_env(&s.cp, "", &env).await;
    s.admin
        .assert_usage_matches(&s.event_id, &[&s.mock], Duration::from_secs(15))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_whose_client_left_is_counted_even_when_the_edge_stops_meanwhile() {
    // A stream of about 3 s: its usage comes in the last chunk.
    let s = Scenario::start(MockConfig {
        stream_chunks: 10,
        stream_chunk_delay: Duration::from_millis(300),
        ..MockConfig::default()
    })
    .await;
    let env = [
        ("AIPROXY_SHUTDOWN_DELAY_MS", "0"),
        ("AIPROXY_USAGE_SHUTDOWN_FLUSH_SECS", "5"),
    ];
    let mut edge = Edge::start_with_env(&s.cp, "", &env).await;
    let answer = chat(
        &edge,
        &s.key,
        json!({"messages": [{"role": "user", "content": "Hi"}], "stream": true}),
    )
    .await;
    assert_eq!(answer.status(), StatusCode::OK);
    let mut body = answer.bytes_stream();
    body.next().await.expect("a first chunk").unwrap();
    // The client leaves: the edge reads the rest in the background, for its usage…
    drop(body);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // …and is told to stop while it still does: the record must not be lost.
    // The mock ledgers a stream's usage once it has sent it all: the edge read it to the end.
    stop_then_count(&s, &mut edge).await;
}

/// Stops `edge` (SIGTERM) and waits until it has exited; then the event's usage totals must
/// equal what the mock reported, and not be nothing.
async fn stop_then_count(s: &Scenario, edge: &mut Edge) {
    edge.terminate();
    assert!(
        edge.wait_exit(Duration::from_secs(20)).await.is_some(),
        "{}",
        edge.log()
    );
    let totals = s
        .admin
        .assert_usage_matches(&s.event_id, &[&s.mock], Duration::from_secs(10))
        .await;
    assert!(totals["total_tokens"].as_u64().unwrap_or(0) > 0, "{totals}");
}

/// Waits until the event's usage totals show tokens, then until they equal what the mock
/// reported; returns them.
async fn counted(s: &Scenario) -> Value {
    eventually(
        "the tokens are counted",
        Duration::from_secs(20),
        || async { s.admin.usage_totals(&s.event_id).await["total_tokens"].as_u64() > Some(0) },
    )
    .await;
    s.admin
        .assert_usage_matches(&s.event_id, &[&s.mock], Duration::from_secs(5))
        .await
}

/// The standard scenario plus a Foundry agent resource on the mock's project `hack`; A's agent
/// and thread there. Returns (the edge-relative thread path, the agent id).
async fn with_agents(s: &Scenario, edge: &Edge) -> (String, String) {
    let agents = s
        .admin
        .create_resource(json!({"friendly_name": "agents", "deployment_name": "agents",
            "model_type": "foundry-agent", "endpoint_url": format!("{}/api/projects/hack", s.mock.endpoint()),
            "key": aiproxy_loadtest::stack::UPSTREAM_KEY}))
        .await;
    set_event(s, json!({"resource_ids": [s.resource_id, agents]})).await;
    s.admin.wait_edges_acked(1, Duration::from_secs(5)).await;
    let agent = foundry(
        edge,
        &s.key,
        "POST",
        "/assistants",
        Some(json!({"model": "gpt-4o",
        "name": "helper", "instructions": "Answer briefly."})),
    )
    .await;
    let thread = foundry(edge, &s.key, "POST", "/threads", Some(json!({}))).await;
    (
        format!("/threads/{}", thread["id"].as_str().unwrap()),
        agent["id"].as_str().unwrap().to_string(),
    )
}

/// The runs and responses `edge` follows now, as `/readyz` shows them.
async fn follow_ups(edge: &Edge) -> u64 {
    edge.readiness().await["follow_ups"]
        .as_u64()
        .expect("follow_ups in /readyz")
}

/// `agent` run on `thread` (not streamed): the run, as answered (queued).
async fn start_run(edge: &Edge, key: &str, thread: &str, agent: &str) -> Value {
    let body = json!({"assistant_id": agent});
    foundry(edge, key, "POST", &format!("{thread}/runs"), Some(body)).await
}

/// A Foundry call through `edge` that must succeed; its JSON answer.
async fn foundry(edge: &Edge, key: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, answer) = foundry_call(edge, key, method, path, body).await;
    assert_eq!(status, StatusCode::OK, "{method} {path}: {answer}");
    answer
}

async fn foundry_call(
    edge: &Edge,
    key: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .request(
            method.parse().unwrap(),
            format!("{}{path}?api-version=2025-05-15-preview", edge.api_base()),
        )
        .header("api-key", key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// An agent run reports its tokens only on a read of the finished run. A client that starts one
/// and reads only the thread's messages would use tokens no cap sees: the edge reads the run to
/// its end itself, charges its tokens to the caps and records them (as no request). A client that
/// reads its run finished is charged for it once, and the edge then does not read it.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_no_client_reads_to_its_end_is_followed_and_counted() {
    let s = Scenario::start(MockConfig::default()).await;
    let (thread, agent) = with_agents(&s, &s.edge).await;
    // One token a day: the run's tokens, once charged, refuse A's next call.
    set_event(&s, json!({"daily_token_cap": 1})).await;
    s.admin.wait_edges_acked(1, Duration::from_secs(5)).await;
    let mut calls = 4u64; // agents, thread, and the two below.
    let run = start_run(&s.edge, &s.key, &thread, &agent).await;
    assert_eq!(run["status"], "queued", "{run}");
    assert_eq!(
        follow_ups(&s.edge).await,
        1,
        "/readyz shows the run followed"
    );
    let messages = foundry(&s.edge, &s.key, "GET", &format!("{thread}/messages"), None).await;
    assert!(
        !messages["data"].as_array().unwrap().is_empty(),
        "{messages}"
    );
    // No client reads the run: the edge does, and its tokens reach the cap and the totals.
    let run_path = format!(
        "/api/projects/hack{thread}/runs/{}",
        run["id"].as_str().unwrap()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let refused = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        calls += 1;
        let (status, answer) =
            foundry_call(&s.edge, &s.key, "GET", &format!("{thread}/messages"), None).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            break answer;
        }
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert!(
            std::time::Instant::now() < deadline,
            "the run's tokens never reached the cap"
        );
    };
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("daily token cap"),
        "{refused}"
    );
    assert_eq!(
        s.mock.stats.count_for(&run_path),
        1,
        "the edge read the run once"
    );
    eventually(
        "the edge no longer follows the run",
        Duration::from_secs(5),
        || async { follow_ups(&s.edge).await == 0 },
    )
    .await;
    let totals = s
        .admin
        .assert_usage_matches(&s.event_id, &[&s.mock], Duration::from_secs(15))
        .await;
    assert!(totals["total_tokens"].as_u64().unwrap() > 0, "{totals}");
    assert_eq!(
        totals["requests"].as_u64(),
        Some(calls),
        "the edge's read is no request: {totals}"
    );
}

/// A client that reads its run finished is charged for it; the edge, which saw it queued, then
/// leaves it alone.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_its_client_reads_finished_is_not_read_again_by_the_edge() {
    let s = Scenario::start(MockConfig::default()).await;
    let (thread, agent) = with_agents(&s, &s.edge).await;
    let run = start_run(&s.edge, &s.key, &thread, &agent).await;
    let run_path = format!("{thread}/runs/{}", run["id"].as_str().unwrap());
    let finished = foundry(&s.edge, &s.key, "GET", &run_path, None).await;
    assert_eq!(finished["status"], "completed", "{finished}");
    // Past the edge's first look at the run.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        s.mock
            .stats
            .count_for(&format!("/api/projects/hack{run_path}")),
        1,
        "only the client read the run"
    );
    let totals = s
        .admin
        .assert_usage_matches(&s.event_id, &[&s.mock], Duration::from_secs(15))
        .await;
    assert_eq!(totals["requests"].as_u64(), Some(4), "{totals}");
}

/// An edge told to stop reads the runs it follows once more at once, and records those that
/// ended: their tokens are not lost with it.
#[tokio::test(flavor = "multi_thread")]
async fn an_edge_that_stops_reads_the_runs_it_follows_once_more() {
    let s = Scenario::start(MockConfig::default()).await;
    let env = [
        ("AIPROXY_SHUTDOWN_DELAY_MS", "0"),
        ("AIPROXY_USAGE_SHUTDOWN_FLUSH_SECS", "5"),
    ];
    let mut edge = Edge::start_with_env(&s.cp, "", &env).await;
    let (thread, agent) = with_agents(&s, &edge).await;
    let created = std::time::Instant::now();
    start_run(&edge, &s.key, &thread, &agent).await;
    stop_then_count(&s, &mut edge).await;
    // Its own schedule would have read the run 5 s after it was seen: the edge, gone before
    // then, read it when told to stop.
    assert!(
        created.elapsed() < Duration::from_secs(5),
        "the edge waited for the follow-up's schedule ({:?})",
        created.elapsed()
    );
}

/// A `background: true` response answers queued; its usage comes with a read of the finished
/// response, which a client reading only its conversation's items never makes: the edge does.
#[tokio::test(flavor = "multi_thread")]
async fn a_background_response_no_client_reads_is_followed_and_counted() {
    let s = Scenario::start(MockConfig::default()).await;
    let response = reqwest::Client::new()
        .post(format!("{}/openai/v1/responses", s.edge.api_base()))
        .header("api-key", &s.key)
        .json(&json!({"model": "gpt-4o", "input": "Write a long essay.", "background": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response: Value = response.json().await.unwrap();
    assert_eq!(response["status"], "queued", "{response}");
    let totals = counted(&s).await;
    assert!(totals["total_tokens"].as_u64().unwrap_or(0) > 0, "{totals}");
    assert_eq!(totals["requests"].as_u64(), Some(1), "{totals}");
    let read = format!("/openai/v1/responses/{}", response["id"].as_str().unwrap());
    assert_eq!(s.mock.stats.count_for(&read), 1, "the edge read it once");
}

/// A run's stream that ends with the run at work (as Azure's does when the run waits for tool
/// outputs) carries no usage: the edge follows the run from the stream's events.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_whose_stream_ends_before_it_does_is_followed_and_counted() {
    let s = Scenario::start(MockConfig::default()).await;
    let (thread, agent) = with_agents(&s, &s.edge).await;
    s.mock.end_run_streams_after(Some(2));
    let stream = reqwest::Client::new()
        .post(format!(
            "{}{thread}/runs?api-version=2025-05-15-preview",
            s.edge.api_base()
        ))
        .header("api-key", &s.key)
        .json(&json!({"assistant_id": agent, "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let text = stream.text().await.unwrap();
    assert!(
        text.contains("thread.run.queued") && !text.contains("\"usage\":{"),
        "{text}"
    );
    let totals = counted(&s).await;
    assert_eq!(totals["requests"].as_u64(), Some(3), "{totals}");
}

/// An attendee with `AIPROXY_FOLLOW_UPS_PER_ATTENDEE` runs at work, followed for their usage,
/// starts no more until some end: no one crowds out the others' follow-ups, or starts runs faster
/// than the edge can count them. Other attendees are not held back.
#[tokio::test(flavor = "multi_thread")]
async fn an_attendee_with_many_runs_at_work_starts_no_more_until_they_end() {
    let s = Scenario::start(MockConfig::default()).await;
    let env = [("AIPROXY_FOLLOW_UPS_PER_ATTENDEE", "2")];
    let edge = Edge::start_with_env(&s.cp, "", &env).await;
    let (thread, agent) = with_agents(&s, &edge).await;
    for _ in 0..2 {
        start_run(&edge, &s.key, &thread, &agent).await;
    }
    let refused = reqwest::Client::new()
        .post(format!(
            "{}{thread}/runs?api-version=2025-05-15-preview",
            edge.api_base()
        ))
        .header("api-key", &s.key)
        .json(&json!({"assistant_id": agent}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["retry-after"], "5");
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(
        refused["error"]["message"],
        "You have 2 runs or responses still at work: wait for some to end before starting more."
    );
    let b = s.admin.add_attendee(&s.event_id, "attendee-2").await;
    s.admin.wait_edges_acked(2, Duration::from_secs(5)).await;
    foundry(&edge, &b, "POST", "/threads", Some(json!({}))).await;
    // Once the edge has read A's runs to their end, A may start another.
    eventually("A's runs end", Duration::from_secs(20), || async {
        follow_ups(&edge).await == 0
    })
    .await;
    start_run(&edge, &s.key, &thread, &agent).await;
}
