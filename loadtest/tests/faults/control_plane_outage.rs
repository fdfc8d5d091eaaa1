//! Scenario 1: the control plane is killed (SIGKILL) under steady load, stays down for a bounded
//! outage (20 s here; `AIPROXY_FAULT_OUTAGE_SECS=60` gives the figure), then restarts on
//! the same data. The event is capped (daily requests and tokens per request), so every call needs
//! a quota lease: the edges must keep serving from their snapshot and the leases they hold, with
//! no failed call and no added latency from waiting on a control plane that is gone. The usage of
//! every call made meanwhile waits on the edges and reaches the control plane after its restart:
//! the totals equal, exactly, what the upstreams reported.

use std::time::Duration;

use aiproxy_loadtest::steady::SteadyLoad;

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn control_plane_killed_and_restarted_under_load_on_a_capped_event() {
    let _turn = one_at_a_time().await;
    let mut s = FaultStack::start(FaultOptions::default()).await;
    let outage = outage(20);
    let phase = Duration::from_secs(8);
    let load = SteadyLoad::start(s.targets(), RATE, outage + phase * 4);

    tokio::time::sleep(phase).await;
    let killed_at = load.elapsed();
    s.cps[0].kill().await;
    tokio::time::sleep(outage).await;
    let restarting_at = load.elapsed();
    s.cps[0].restart().await;
    s.admin.wait_edges_acked(2, Duration::from_secs(30)).await;
    let resynced_at = load.elapsed();
    tokio::time::sleep(phase).await;
    let report = load.stop().await;

    // The first second warms connections and takes the first leases.
    let steady = report.window(Duration::from_secs(1), killed_at);
    let down = report.window(killed_at, restarting_at);
    let after = report.window(restarting_at, Duration::MAX);
    let all = report.all();
    println!(
        "[faults] 1 control plane killed {}s: steady {steady} | down {down} | after restart {after} | p99 down {} after {} | edges resynced {:.1}s after restart",
        outage.as_secs(),
        added(steady.p99, down.p99),
        added(steady.p99, after.p99),
        (resynced_at - restarting_at).as_secs_f64(),
    );
    assert_clean("calls through a control-plane outage", &all);
    assert!(
        down.sent >= (outage.as_secs() as usize) * RATE as usize * 9 / 10,
        "the load ran through the outage: {down}"
    );
    assert_p99_within("while the control plane was down", &steady, &down);
    assert_p99_within("after it restarted", &steady, &after);
    s.admin
        .assert_usage_matches(
            &s.event_id,
            &[&s.keyed, &s.managed],
            Duration::from_secs(30),
        )
        .await;
}
