//! Scenario 4: one member of a two-member pool answers every call with 429 and `Retry-After`.
//! A 429 means the call was not processed, so the edge may replay it on the other member: JSON
//! callers must see no failure at all. The throttled member must be left out for its Retry-After
//! and tried again after it, which the mock's request counts show: about one call per edge per
//! Retry-After period, not one per request.

use std::time::Duration;

use aiproxy_loadtest::mock::{ExpectedAuth, MockAzure, MockConfig};
use aiproxy_loadtest::stack::{UPSTREAM_KEY, model_resource};
use aiproxy_loadtest::steady::SteadyLoad;

use crate::support::*;

const RETRY_AFTER_SECS: u64 = 4;
const PATH: &str = "/openai/deployments/gpt-4o/chat/completions";

#[tokio::test(flavor = "multi_thread")]
async fn a_member_answering_429_is_skipped_for_its_retry_after_and_no_json_call_fails() {
    let _turn = one_at_a_time().await;
    let s = FaultStack::start(FaultOptions::default()).await;
    let throttled = MockAzure::start(MockConfig {
        auth: ExpectedAuth::ApiKey(UPSTREAM_KEY.into()),
        fail_with: Some(429),
        retry_after_secs: RETRY_AFTER_SECS,
        ..Default::default()
    })
    .await
    .unwrap();
    let member = s
        .admin
        .create_resource(model_resource(KEYED, &throttled.endpoint(), ""))
        .await;
    let (_, mut event) = s.admin.get(&format!("/events/{}", s.event_id)).await;
    event["resource_ids"]
        .as_array_mut()
        .expect("resource ids")
        .push(member.into());
    s.admin.put(&format!("/events/{}", s.event_id), event).await;
    s.admin.wait_edges_acked(2, Duration::from_secs(10)).await;

    let run = Duration::from_secs(14);
    let healthy_before = s.keyed.stats.count_for(PATH);
    let load = SteadyLoad::start(s.targets(), RATE, run);
    let report = load.stop_after(run).await;
    let throttled_hits = throttled.stats.count_for(PATH);
    let healthy_hits = s.keyed.stats.count_for(PATH) - healthy_before;

    let json = report.stats_where(|_, t| !t.stream);
    let sse = report.stats_where(|_, t| t.stream);
    let edges = s.edges.len() as u64;
    let periods = run.as_secs().div_ceil(RETRY_AFTER_SECS);
    // One call per edge per period, plus one per edge racing the first 429 in each period.
    let most = edges * (periods + 1) * 2;
    println!(
        "[faults] 4 one pool member 429 Retry-After {RETRY_AFTER_SECS}s for {}s: json {json} | sse {sse} | throttled member got {throttled_hits} calls (at most {most} allowed, {} per edge per period), healthy member {healthy_hits}",
        run.as_secs(),
        throttled_hits as f64 / (edges * periods) as f64,
    );
    assert_clean("JSON calls with a throttled pool member", &json);
    assert!(
        throttled_hits <= most,
        "the throttled member was left out for its Retry-After: {throttled_hits} calls in {}s",
        run.as_secs()
    );
    assert!(
        throttled_hits >= edges * 2,
        "the member was tried again once its Retry-After passed: {throttled_hits} calls"
    );
}
