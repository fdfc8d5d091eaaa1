//! Scenario 2: Redis (the token cache, locks and change notifications) is killed under two
//! control-plane replicas sharing Postgres, stays down longer than a managed-identity token lives,
//! then comes back empty. The Redis is the test's own (`PrivateRedis`), never the machine's shared
//! one. Must hold: no failed call; tokens are still refreshed while Redis is down (the fake
//! identity endpoint keeps issuing them and the upstream sees new ones); a replica restarted
//! meanwhile starts without Redis (the cache is optional); the replicas use Redis again once it is
//! back.

use std::time::{Duration, Instant};

use aiproxy_loadtest::private_servers::PrivateRedis;
use aiproxy_loadtest::stack::create_postgres_database;
use aiproxy_loadtest::steady::SteadyLoad;

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn redis_killed_under_two_replicas_then_restored() {
    let _turn = one_at_a_time().await;
    let mut redis = PrivateRedis::start().await;
    let lifetime = Duration::from_secs(30);
    let mut s = FaultStack::start(FaultOptions {
        replicas: 2,
        database_url: Some(create_postgres_database()),
        cp_env: vec![("AIPROXY_REDIS_URL".into(), redis.url())],
        edge_env: vec![("AIPROXY_TOKEN_EXPIRY_MARGIN_SECS".into(), "5".into())],
        token_lifetime: lifetime,
        ..Default::default()
    })
    .await;
    let first_minted = Instant::now();
    let phase = Duration::from_secs(6);
    let outage = lifetime + Duration::from_secs(5);
    let load = SteadyLoad::start(s.targets(), RATE, outage + Duration::from_secs(90));

    tokio::time::sleep(phase).await;
    let killed_at = load.elapsed();
    let tokens_at_kill = s.identity.issued_tokens().len();
    redis.kill().await;

    tokio::time::sleep(Duration::from_secs(10)).await;
    // A replica that restarts while Redis is down must still start, and serve its edge.
    s.cps[1].restart().await;
    let replica_back_at = load.elapsed();
    tokio::time::sleep(outage - Duration::from_secs(10)).await;

    let restored_at = load.elapsed();
    let tokens_during_outage = s.identity.issued_tokens().len() - tokens_at_kill;
    redis.restore().await;
    let mut reused_after = None;
    for _ in 0..400 {
        if redis.key_count().is_some_and(|n| n > 0) {
            reused_after = Some(load.elapsed() - restored_at);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(phase).await;
    let report = load.stop().await;

    let steady = report.window(Duration::from_secs(1), killed_at);
    let down = report.window(killed_at, restored_at);
    let after = report.window(restored_at, Duration::MAX);
    let managed_calls = report.stats_where(|_, t| t.label.contains(MANAGED));
    let tokens_seen = s.managed.stats.authorizations_seen().len();
    println!(
        "[faults] 2 redis killed {}s under 2 replicas: steady {steady} | down {down} | after {after} | p99 down {} | tokens minted while down {tokens_during_outage}, distinct tokens upstream {tokens_seen} | replica restarted without redis at {:.1}s | redis used again {:?} after restore",
        outage.as_secs(),
        added(steady.p99, down.p99),
        replica_back_at.as_secs_f64(),
        reused_after.map(|d| format!("{:.1}s", d.as_secs_f64())),
    );
    assert_clean("calls through a Redis outage", &report.all());
    assert!(
        first_minted.elapsed() > lifetime && managed_calls.sent > 0,
        "the run outlived the first token, so later managed-identity calls needed a refreshed one"
    );
    assert!(
        tokens_during_outage >= 1,
        "tokens were refreshed while Redis was down"
    );
    assert!(
        tokens_seen >= 2,
        "the upstream saw refreshed tokens: {tokens_seen}"
    );
    assert!(
        reused_after.is_some(),
        "the replicas never wrote to Redis again after it came back"
    );
}
