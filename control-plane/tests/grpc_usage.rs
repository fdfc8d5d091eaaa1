//! Usage and quotas over gRPC, in-process on loopback: ReportUsage applied once per batch id (sent
//! again, and sent at once to two replicas sharing the database), its validation, token leases
//! with debt against the daily cap and the event budget, and GetUsage.

mod support;

use aiproxy_proto::v1 as pb;
use serde_json::{Value, json};
use support::*;
use tonic::Code;

/// 2026-03-29T10:00:00Z.
const HOUR_10: i64 = 1_774_778_400_000;
const DAY: &str = "2026-03-29";

fn record(event_id: &str, user_id: &str, total: u64) -> pb::UsageRecord {
    pb::UsageRecord {
        event_id: event_id.into(),
        user_id: user_id.into(),
        resource_id: "r1".into(),
        deployment_name: "gpt-4o".into(),
        route_family: "chat".into(),
        status: 200,
        started_at_ms: HOUR_10 + 60_000,
        duration_ms: 250,
        ttfb_ms: 40,
        prompt_tokens: total / 2,
        completion_tokens: total - total / 2,
        total_tokens: total,
        ..Default::default()
    }
}

fn batch(id: &str, records: Vec<pb::UsageRecord>) -> pb::UsageBatch {
    pb::UsageBatch {
        batch_id: id.into(),
        edge_id: "edge-test".into(),
        records,
        sums: vec![],
    }
}

/// `requests` calls of `user_id` in the hour, summed as an edge sends them.
fn sum(event_id: &str, user_id: &str, requests: u64, total: u64) -> pb::UsageSum {
    pb::UsageSum {
        event_id: event_id.into(),
        user_id: user_id.into(),
        resource_id: "r1".into(),
        deployment_name: "gpt-4o".into(),
        hour_ms: HOUR_10,
        requests,
        prompt_tokens: total / 2,
        completion_tokens: total - total / 2,
        total_tokens: total,
        duration_ms: 250 * requests,
        ttfb_ms: 40 * requests,
        ..Default::default()
    }
}

async fn report(running: &Running, batch: pb::UsageBatch) -> Result<bool, tonic::Status> {
    let ack = running
        .edge_client()
        .await
        .report_usage(with_token(batch, EDGE_TOKEN))
        .await?;
    Ok(ack.into_inner().duplicate)
}

/// The admin API's totals for the event on 2026-03-29.
async fn totals(running: &Running, event_id: &str) -> Value {
    let report = running
        .admin_get(&format!(
            "/usage?event_id={event_id}&from=2026-03-29T00:00:00Z&to=2026-03-30T00:00:00Z"
        ))
        .await;
    report["totals"].clone()
}

async fn add_capped_event(running: &Running, daily_token_cap: u64, token_budget: u64) -> String {
    let e = running
        .admin_post(
            "/events",
            json!({"name": "Capped", "starts_at": "2026-03-28T09:00:00Z", "ends_at": "2036-03-29T17:00:00Z",
                   "daily_request_cap": 3, "daily_token_cap": daily_token_cap, "token_budget": token_budget}),
        )
        .await;
    assert_eq!(e["daily_token_cap"], daily_token_cap, "{e}");
    e["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_sent_again_or_to_two_replicas_at_once_is_applied_once() {
    let dir = fresh_dir();
    let a = start_on(&dir).await;
    let b = start_on(&dir).await;
    let event = a.add_event("Workshop").await;
    let first = batch(
        "edge-test-1",
        vec![record(&event, "u1", 100), record(&event, "u2", 20)],
    );
    assert!(!report(&a, first.clone()).await.unwrap(), "applied");
    assert!(
        report(&a, first.clone()).await.unwrap(),
        "a resend is a duplicate"
    );
    assert!(report(&b, first).await.unwrap(), "on another replica too");

    let second = batch("edge-test-2", vec![record(&event, "u1", 5)]);
    let sends: Vec<_> = (0..6)
        .map(|i| {
            let (a, b, second) = (&a, &b, second.clone());
            async move {
                report(if i % 2 == 0 { a } else { b }, second)
                    .await
                    .unwrap()
            }
        })
        .collect();
    let acks = futures_util::future::join_all(sends).await;
    assert_eq!(
        acks.iter().filter(|duplicate| !**duplicate).count(),
        1,
        "exactly one send applies it: {acks:?}"
    );
    let t = totals(&a, &event).await;
    assert_eq!(
        (t["requests"].as_u64(), t["total_tokens"].as_u64()),
        (Some(3), Some(125)),
        "{t}"
    );

    // Sums, beside a record, count once too.
    let mut third = batch("edge-test-3", vec![record(&event, "u2", 1)]);
    third.sums = vec![sum(&event, "u1", 400, 8_000), sum(&event, "u3", 2, 10)];
    assert!(!report(&a, third.clone()).await.unwrap(), "applied");
    assert!(report(&b, third).await.unwrap(), "a resend is a duplicate");
    let t = totals(&a, &event).await;
    assert_eq!(
        (t["requests"].as_u64(), t["total_tokens"].as_u64()),
        (Some(406), Some(8_136)),
        "{t}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_batches_are_refused_with_the_reason() {
    let running = start().await;
    let event = running.add_event("Workshop").await;
    let mut bad_status = record(&event, "u1", 1);
    bad_status.status = 42;
    let mut no_time = record(&event, "u1", 1);
    no_time.started_at_ms = 0;
    let mut long_key = record(&event, "u1", 1);
    long_key.once_key = "k".repeat(4096);
    let cases = [
        (batch("", vec![]), "batch_id"),
        (batch("has space", vec![]), "batch_id"),
        (batch(&"b".repeat(129), vec![]), "batch_id"),
        (batch("b1", vec![bad_status]), "status"),
        (batch("b2", vec![no_time]), "started_at_ms"),
        (batch("b3", vec![long_key]), "once_key"),
        (batch("b4", vec![record(&event, "u1", 1); 5001]), "records"),
        (
            pb::UsageBatch {
                sums: vec![sum(&event, "u1", 1, 1); 5001],
                ..batch("b5", vec![])
            },
            "records",
        ),
        (
            pb::UsageBatch {
                sums: vec![pb::UsageSum {
                    hour_ms: HOUR_10 + 1,
                    ..sum(&event, "u1", 1, 1)
                }],
                ..batch("b6", vec![])
            },
            "hour_ms",
        ),
        (
            pb::UsageBatch {
                sums: vec![pb::UsageSum {
                    errors: 2,
                    ..sum(&event, "u1", 1, 1)
                }],
                ..batch("b7", vec![])
            },
            "errors",
        ),
    ];
    for (batch, field) in cases {
        let err = report(&running, batch).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(
            err.message().starts_with(&format!("{field}: ")),
            "{}",
            err.message()
        );
    }
    let err = running
        .edge_client()
        .await
        .report_usage(with_token(batch("b5", vec![]), ADMIN_TOKEN))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert_eq!(
        totals(&running, &event).await["requests"],
        0,
        "nothing was applied"
    );
    assert!(
        !report(&running, batch("b1", vec![record(&event, "u1", 1)]))
            .await
            .unwrap(),
        "a refused batch leaves its id free"
    );
}

fn lease(
    event_id: &str,
    user_id: &str,
    counter: pb::LeaseCounter,
    wanted: u32,
    debt: u64,
) -> pb::LeaseRequest {
    pb::LeaseRequest {
        event_id: event_id.into(),
        user_id: user_id.into(),
        day: DAY.into(),
        wanted,
        counter: counter as i32,
        debt,
    }
}

async fn granted(running: &Running, request: pb::LeaseRequest) -> Result<u32, tonic::Status> {
    Ok(running
        .edge_client()
        .await
        .lease_requests(with_token(request, EDGE_TOKEN))
        .await?
        .into_inner()
        .granted)
}

#[tokio::test(flavor = "multi_thread")]
async fn token_leases_pay_their_debt_and_stop_at_the_cap() {
    use pb::LeaseCounter::{DailyRequests, DailyTokens, EventTokens};
    let running = start().await;
    let event = add_capped_event(&running, 1_000, 1_500).await;
    let take = |user: &str, counter, wanted, debt| {
        granted(&running, lease(&event, user, counter, wanted, debt))
    };

    assert_eq!(take("u1", DailyTokens, 400, 0).await.unwrap(), 400);
    // The calls took 700 of the 400 leased: 300 of debt, paid first.
    assert_eq!(take("u1", DailyTokens, 400, 300).await.unwrap(), 300);
    assert_eq!(
        take("u1", DailyTokens, 400, 0).await.unwrap(),
        0,
        "the daily cap is reached"
    );
    assert_eq!(
        take("u2", DailyTokens, 400, 0).await.unwrap(),
        400,
        "per attendee"
    );

    // The event budget ignores the attendee and the day.
    let mut budget = lease(&event, "", EventTokens, 1_000, 0);
    budget.day = String::new();
    assert_eq!(granted(&running, budget.clone()).await.unwrap(), 1_000);
    budget.debt = 200;
    assert_eq!(granted(&running, budget.clone()).await.unwrap(), 300);
    assert_eq!(granted(&running, budget).await.unwrap(), 0);

    // Request leases are unchanged (daily_request_cap 3).
    assert_eq!(take("u1", DailyRequests, 2, 0).await.unwrap(), 2);
    assert_eq!(take("u1", DailyRequests, 2, 0).await.unwrap(), 1);

    // No cap: the lease is granted whole.
    let open = running.add_event("Open").await;
    assert_eq!(
        granted(&running, lease(&open, "u1", DailyTokens, 5_000, 9_999))
            .await
            .unwrap(),
        5_000
    );
    assert_eq!(
        granted(&running, lease(&open, "", EventTokens, 5_000, 0))
            .await
            .unwrap(),
        5_000
    );

    let mut unknown = lease(&event, "u1", DailyTokens, 1, 0);
    unknown.counter = 7;
    let mut bad_day = lease(&event, "u1", DailyTokens, 1, 0);
    bad_day.day = "29/03/2026".into();
    let mut no_user = lease(&event, "", DailyTokens, 1, 0);
    no_user.user_id = String::new();
    for (request, field) in [(unknown, "counter"), (bad_day, "day"), (no_user, "user_id")] {
        let err = granted(&running, request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(
            err.message().starts_with(&format!("{field}: ")),
            "{}",
            err.message()
        );
    }
    let err = granted(&running, lease("ghost", "u1", DailyTokens, 1, 0))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn get_usage_answers_the_attendees_day_and_the_events_total() {
    let running = start().await;
    let event = running.add_event("Workshop").await;
    let mut yesterday = record(&event, "u1", 1_000);
    yesterday.started_at_ms -= 86_400_000;
    let mut run = record(&event, "u1", 70);
    run.once_key = "run_abc".into();
    report(
        &running,
        batch(
            "b1",
            vec![
                record(&event, "u1", 30),
                record(&event, "u2", 7),
                yesterday,
                run.clone(),
                run,
            ],
        ),
    )
    .await
    .unwrap();
    let summary = running
        .edge_client()
        .await
        .get_usage(with_token(
            pb::UsageQuery {
                event_id: event.clone(),
                user_id: "u1".into(),
                day: DAY.into(),
            },
            EDGE_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        summary,
        pb::UsageSummary {
            requests: 3,
            prompt_tokens: 15 + 35,
            completion_tokens: 15 + 35,
            total_tokens: 100,
            event_total_tokens: 1_107,
        }
    );
    let err = running
        .edge_client()
        .await
        .get_usage(with_token(
            pb::UsageQuery {
                event_id: event,
                user_id: "u1".into(),
                day: "today".into(),
            },
            EDGE_TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}
