//! Caps cost the control plane O(edges), not O(requests): one attendee calling as fast as it can
//! through an edge makes that edge take a lease every second or so, sized to the observed rate,
//! instead of one per twenty requests — and the daily request cap still holds exactly.

use std::time::{Duration, Instant};

use aiproxy_loadtest::mock::MockConfig;
use aiproxy_loadtest::stack::{API_VERSION, Scenario};
use reqwest::StatusCode;
use serde_json::json;

const CLIENTS: usize = 8;

/// Calls as fast as `CLIENTS` keep-alive clients can for `run`; returns (answered 200, refused 429).
async fn hammer(s: &Scenario, run: Duration) -> (u64, u64) {
    let url = format!(
        "{}/openai/deployments/gpt-4o/chat/completions?api-version={API_VERSION}",
        s.edge.api_base()
    );
    let until = Instant::now() + run;
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (url, key) = (url.clone(), s.key.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let (mut ok, mut refused) = (0, 0);
                while Instant::now() < until {
                    let status = http
                        .post(&url)
                        .header("api-key", &key)
                        .json(&json!({"messages": [{"role": "user", "content": "Hi"}]}))
                        .send()
                        .await
                        .unwrap()
                        .status();
                    match status {
                        StatusCode::OK => ok += 1,
                        StatusCode::TOO_MANY_REQUESTS => refused += 1,
                        other => panic!("unexpected {other}"),
                    }
                }
                (ok, refused)
            })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for w in workers {
        let (o, r) = w.await.unwrap();
        ok += o;
        refused += r;
    }
    (ok, refused)
}

async fn lease_calls(s: &Scenario) -> u64 {
    s.edge.readiness().await["quota"]["lease_calls"]
        .as_u64()
        .expect("readyz shows lease calls")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_attendee_costs_a_few_leases_per_second_and_the_cap_still_holds() {
    let s = Scenario::start(MockConfig::default()).await;
    let (_, mut event) = s.admin.get(&format!("/events/{}", s.event_id)).await;
    event["daily_request_cap"] = json!(10_000_000);
    s.admin.put(&format!("/events/{}", s.event_id), event).await;
    s.admin.wait_edges_acked(1, Duration::from_secs(10)).await;

    let run = Duration::from_secs(4);
    let before = lease_calls(&s).await;
    let (ok, refused) = hammer(&s, run).await;
    let leases = lease_calls(&s).await - before;
    println!(
        "[quota] {ok} calls in {}s from {CLIENTS} clients: {leases} lease calls ({:.0} calls per lease; fixed leases of 20 would take {})",
        run.as_secs(),
        ok as f64 / leases.max(1) as f64,
        ok / 20
    );
    assert_eq!(refused, 0);
    assert!(ok > 400, "the load ran: {ok}");
    // A few leases to learn the rate, then about one per two seconds.
    assert!(
        leases <= 8 + 2 * run.as_secs(),
        "{leases} lease calls for {ok} calls"
    );

    // The cap still holds exactly: lower it to just above what was used, and call on.
    let (_, mut event) = s.admin.get(&format!("/events/{}", s.event_id)).await;
    let cap = ok + 50;
    event["daily_request_cap"] = json!(cap);
    s.admin.put(&format!("/events/{}", s.event_id), event).await;
    s.admin.wait_edges_acked(1, Duration::from_secs(10)).await;
    let (more, refused) = hammer(&s, Duration::from_secs(2)).await;
    assert!(refused > 0, "the lowered cap was reached");
    assert!(
        ok + more <= cap,
        "{} calls answered under a cap of {cap}",
        ok + more
    );
}

/// Sets the event's daily request cap and waits for the edge to have it.
async fn set_daily_cap(s: &Scenario, cap: u64) {
    let (_, mut event) = s.admin.get(&format!("/events/{}", s.event_id)).await;
    event["daily_request_cap"] = json!(cap);
    s.admin.put(&format!("/events/{}", s.event_id), event).await;
    s.admin.wait_edges_acked(1, Duration::from_secs(10)).await;
}

/// `n` chat calls sent at once by one attendee; their statuses.
async fn burst(s: &Scenario, n: usize) -> Vec<StatusCode> {
    let url = format!(
        "{}/openai/deployments/gpt-4o/chat/completions?api-version={API_VERSION}",
        s.edge.api_base()
    );
    let http = reqwest::Client::new();
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let request = http
                .post(&url)
                .header("api-key", &s.key)
                .json(&json!({"messages": [{"role": "user", "content": "Hi"}]}));
            tokio::spawn(async move { request.send().await.unwrap().status() })
        })
        .collect();
    let mut statuses = Vec::with_capacity(n);
    for call in calls {
        statuses.push(call.await.unwrap());
    }
    statuses
}

/// A burst of first calls (nothing leased yet) takes one lease, not one per call: the others wait
/// for it. With a base lease of 20 and 60 calls at once, a few more follow; never 60.
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_first_calls_shares_its_lease() {
    const BURST: usize = 60;
    let s = Scenario::start(MockConfig::default()).await;
    set_daily_cap(&s, 10_000_000).await;
    let before = lease_calls(&s).await;
    for status in burst(&s, BURST).await {
        assert_eq!(status, StatusCode::OK);
    }
    let leases = lease_calls(&s).await - before;
    println!("[quota] {BURST} first calls at once: {leases} lease calls");
    // 60 calls on leases of 20 (the base) need 3; a background refill or two may join them.
    assert!(leases <= 6, "{leases} lease calls for a burst of {BURST}");
}

/// A burst larger than a small cap, on a fresh attendee: exactly the cap is answered, the rest
/// refused. Waiters that one small lease missed wait for the next, not a 429 before the cap.
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_past_a_small_cap_gets_exactly_the_cap() {
    const CAP: usize = 100;
    const BURST: usize = 150;
    let s = Scenario::start(MockConfig::default()).await;
    set_daily_cap(&s, CAP as u64).await;
    let (mut ok, mut refused) = (0, 0);
    for status in burst(&s, BURST).await {
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((ok, refused), (CAP, BURST - CAP));
}
