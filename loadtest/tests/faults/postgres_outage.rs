//! Scenario 3: the catalog database stops under steady load. The Postgres cluster is the test's
//! own (`PrivatePostgres`: initdb into a scratch dir, its own port), never the machine's shared
//! one. Must hold: edges are unaffected (they serve from their snapshot: no failed call, no added
//! latency, although the event is capped and its counters live in the database); an admin write
//! answers a 503 within seconds saying the catalog database is unavailable, and leaves nothing
//! half written; after the restart every resource, event and attendee is there, and a write made then
//! reaches the edges.

use std::time::{Duration, Instant};

use aiproxy_loadtest::private_servers::PrivatePostgres;
use aiproxy_loadtest::stack::{Admin, eventually, model_resource};
use aiproxy_loadtest::steady::{SteadyLoad, ms};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

/// Every write the admin console can make, tried while the database is down.
fn writes_during_outage(s: &FaultStack, event: &Value) -> Vec<(Method, String, Option<Value>)> {
    let mut renamed = event.clone();
    renamed["name"] = json!("renamed during the outage");
    vec![
        (
            Method::POST,
            "/resources".into(),
            Some(model_resource("gpt-4o-new", "http://127.0.0.1:9", "")),
        ),
        (
            Method::PUT,
            format!("/events/{}", s.event_id),
            Some(renamed),
        ),
        (
            Method::POST,
            format!("/events/{}/attendees", s.event_id),
            Some(json!({"user_id": "during-outage"})),
        ),
        (
            Method::PUT,
            format!("/events/{}/attendees/attendee-1", s.event_id),
            Some(json!({"active": false})),
        ),
        (Method::DELETE, format!("/resources/{}", s.keyed_id), None),
    ]
}

/// What the catalog holds, for comparing before and after (without the token status, which is
/// not catalog data).
async fn catalog(admin: &Admin, event_id: &str) -> (Value, Value, Value) {
    let (_, mut resources) = admin.get("/resources").await;
    for resource in resources.as_array_mut().into_iter().flatten() {
        if let Some(fields) = resource.as_object_mut() {
            fields.remove("managed_identity");
        }
    }
    let (_, event) = admin.get(&format!("/events/{event_id}")).await;
    let (_, attendees) = admin.get(&format!("/events/{event_id}/attendees")).await;
    (resources, event, attendees)
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_stopped_edges_serve_admin_writes_get_503_and_nothing_is_lost() {
    let _turn = one_at_a_time().await;
    let pg = PrivatePostgres::start().await;
    let s = FaultStack::start(FaultOptions {
        database_url: Some(pg.url()),
        ..Default::default()
    })
    .await;
    let before = catalog(&s.admin, &s.event_id).await;
    let phase = Duration::from_secs(6);
    let outage = Duration::from_secs(15);
    let load = SteadyLoad::start(s.targets(), RATE, outage + Duration::from_secs(60));

    tokio::time::sleep(phase).await;
    let stopped_at = load.elapsed();
    pg.stop().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut slowest_refusal = Duration::ZERO;
    for (method, path, body) in writes_during_outage(&s, &before.1) {
        let started = Instant::now();
        let (status, answer) = s.admin.request(method.clone(), &path, body).await;
        slowest_refusal = slowest_refusal.max(started.elapsed());
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {path} while the database is down: {answer}"
        );
        let lower = message.to_lowercase();
        assert!(
            lower.contains("catalog database") && lower.contains("unavailable"),
            "{method} {path}: a message an admin can act on: {answer}"
        );
    }
    tokio::time::sleep(outage.saturating_sub(load.elapsed() - stopped_at)).await;

    let resumed_at = load.elapsed();
    pg.resume().await;
    let mut writable_after = None;
    let mut new_key = String::new();
    for _ in 0..300 {
        let (status, answer) = s
            .admin
            .post(
                &format!("/events/{}/attendees", s.event_id),
                json!({"user_id": "after-outage"}),
            )
            .await;
        if status == StatusCode::CREATED {
            writable_after = Some(load.elapsed() - resumed_at);
            new_key = answer["api_key"].as_str().unwrap_or_default().to_string();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let writable_after = writable_after.expect("admin writes never worked again after the restart");
    for edge in &s.edges {
        let url = edge.chat_url(KEYED);
        eventually(
            "a key added after the restart never reached an edge",
            Duration::from_secs(20),
            || async { post_chat(&url, &new_key).await == 200 },
        )
        .await;
    }
    tokio::time::sleep(phase).await;
    let report = load.stop().await;

    let steady = report.window(Duration::from_secs(1), stopped_at);
    let down = report.window(stopped_at, resumed_at);
    let after = report.window(resumed_at, Duration::MAX);
    println!(
        "[faults] 3 postgres stopped {}s: steady {steady} | down {down} | after {after} | p99 down {} | slowest 503 {} | writable {:.1}s after restart",
        outage.as_secs(),
        added(steady.p99, down.p99),
        ms(slowest_refusal),
        writable_after.as_secs_f64(),
    );
    assert_clean("calls while the catalog database was down", &report.all());
    assert!(
        slowest_refusal < Duration::from_secs(10),
        "a refused admin write answers within seconds, not after a long pool timeout: {}",
        ms(slowest_refusal)
    );
    let (resources, event, attendees) = catalog(&s.admin, &s.event_id).await;
    assert_eq!(resources, before.0, "resources are as before the outage");
    assert_eq!(event, before.1, "the event is as before the outage");
    let users: Vec<&str> = attendees
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["user_id"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        users.contains(&"attendee-1") && users.contains(&"after-outage"),
        "attendees from before and after: {attendees}"
    );
    assert!(
        !users.contains(&"during-outage"),
        "a refused write left nothing behind: {attendees}"
    );
    let first = attendees
        .as_array()
        .and_then(|a| a.iter().find(|x| x["user_id"] == "attendee-1"))
        .cloned()
        .unwrap_or(Value::Null);
    let first_before = before
        .2
        .as_array()
        .and_then(|a| a.iter().find(|x| x["user_id"] == "attendee-1"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(
        first, first_before,
        "the refused deactivation did not apply"
    );
    // Unaffected means no slower either: a capped call must not wait on a control plane whose
    // database is gone.
    assert_p99_within("while the catalog database was down", &steady, &down);
}
