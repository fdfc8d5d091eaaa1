//! Scenario 5: upstreams that stop answering. One accepts calls and never sends a status
//! (`Hang::BeforeHeaders`): the caller must get a 504 once the edge's upstream timeout
//! (`AIPROXY_UPSTREAM_TIMEOUT_SECS`, 2 s here) passes. One sends a stream's headers and first chunk
//! and then nothing (`Hang::AfterFirstChunk`): the edge must cut the stream once the idle-stream
//! timeout (`AIPROXY_UPSTREAM_IDLE_TIMEOUT_SECS`, 2 s here) passes. Rounds of such calls must leave
//! the edges' memory flat, and the steady load on healthy resources must not notice.

use std::time::{Duration, Instant};

use aiproxy_loadtest::mock::{ExpectedAuth, Hang, MockAzure, MockConfig};
use aiproxy_loadtest::process;
use aiproxy_loadtest::stack::{API_VERSION, Edge, UPSTREAM_KEY, model_resource};
use aiproxy_loadtest::steady::{SteadyLoad, ms};
use futures_util::StreamExt;
use serde_json::json;

use crate::support::*;

const TIMEOUT: Duration = Duration::from_secs(2);
const ROUNDS: usize = 4;
/// Calls of each kind per round, spread over both edges.
const PER_ROUND: usize = 16;
/// How late after its timeout a cut may come (a loaded debug build on two cores).
const LATE: Duration = Duration::from_millis(2500);

async fn hanging_mock(hang: Hang) -> MockAzure {
    MockAzure::start(MockConfig {
        auth: ExpectedAuth::ApiKey(UPSTREAM_KEY.into()),
        hang: Some(hang),
        ..Default::default()
    })
    .await
    .unwrap()
}

fn url(edge: &Edge, deployment: &str) -> String {
    format!(
        "{}/openai/deployments/{deployment}/chat/completions?api-version={API_VERSION}",
        edge.api_base()
    )
}

/// A JSON call to a wedged upstream: its status and how long it took.
async fn wedged_call(http: &reqwest::Client, url: &str, key: &str) -> (u16, Duration) {
    let started = Instant::now();
    let status = http
        .post(url)
        .header("api-key", key)
        .json(&json!({"messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    (status, started.elapsed())
}

/// How a stream from a stalled upstream went.
struct Stalled {
    status: u16,
    first_chunk: bool,
    finished: bool,
    /// From the first chunk to the end of the stream.
    silent_for: Duration,
}

async fn stalled_call(http: &reqwest::Client, url: &str, key: &str) -> Stalled {
    let response = http
        .post(url)
        .header("api-key", key)
        .json(&json!({"messages": [{"role": "user", "content": "Hi"}], "stream": true}))
        .send()
        .await;
    let Ok(response) = response else {
        return Stalled {
            status: 0,
            first_chunk: false,
            finished: false,
            silent_for: Duration::ZERO,
        };
    };
    let status = response.status().as_u16();
    let mut body = response.bytes_stream();
    let mut seen = Vec::new();
    let mut first_at = None;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(bytes) => {
                first_at.get_or_insert_with(Instant::now);
                seen.extend_from_slice(&bytes);
            }
            Err(_) => break,
        }
    }
    Stalled {
        status,
        first_chunk: String::from_utf8_lossy(&seen).contains("data: {"),
        finished: String::from_utf8_lossy(&seen).contains("[DONE]"),
        silent_for: first_at.map(|t| t.elapsed()).unwrap_or_default(),
    }
}

fn rss_kib(edge: &Edge) -> u64 {
    process::memory(edge.pid().expect("edge running"))
        .expect("edge memory")
        .rss_kib
}

#[tokio::test(flavor = "multi_thread")]
async fn hanging_upstreams_get_504_and_cut_streams_and_memory_stays_flat() {
    let _turn = one_at_a_time().await;
    let secs = TIMEOUT.as_secs().to_string();
    let s = FaultStack::start(FaultOptions {
        edge_env: vec![
            ("AIPROXY_UPSTREAM_TIMEOUT_SECS".into(), secs.clone()),
            ("AIPROXY_UPSTREAM_IDLE_TIMEOUT_SECS".into(), secs),
        ],
        ..Default::default()
    })
    .await;
    let wedged = hanging_mock(Hang::BeforeHeaders).await;
    let stalled = hanging_mock(Hang::AfterFirstChunk).await;
    let (_, mut event) = s.admin.get(&format!("/events/{}", s.event_id)).await;
    for (deployment, mock) in [("wedged", &wedged), ("stalled", &stalled)] {
        let id = s
            .admin
            .create_resource(model_resource(deployment, &mock.endpoint(), ""))
            .await;
        event["resource_ids"]
            .as_array_mut()
            .unwrap()
            .push(id.into());
    }
    s.admin.put(&format!("/events/{}", s.event_id), event).await;
    s.admin.wait_edges_acked(2, Duration::from_secs(10)).await;

    let load = SteadyLoad::start(s.targets(), RATE, Duration::from_secs(120));
    // Bounds the test when a timeout is missing from the edge.
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let mut rss: Vec<[u64; 2]> = Vec::new();
    let mut statuses = Vec::new();
    let (mut slowest_504, mut fastest_504) = (Duration::ZERO, Duration::MAX);
    let (mut slowest_cut, mut fastest_cut) = (Duration::ZERO, Duration::MAX);
    let mut streams = Vec::new();
    for _ in 0..ROUNDS {
        let calls = (0..PER_ROUND).map(|i| {
            let edge = &s.edges[i % 2];
            let (http, key) = (&http, &s.key);
            let (wedged_url, stalled_url) = (url(edge, "wedged"), url(edge, "stalled"));
            async move {
                tokio::join!(
                    wedged_call(http, &wedged_url, key),
                    stalled_call(http, &stalled_url, key)
                )
            }
        });
        for ((status, took), stream) in futures_util::future::join_all(calls).await {
            statuses.push(status);
            slowest_504 = slowest_504.max(took);
            fastest_504 = fastest_504.min(took);
            slowest_cut = slowest_cut.max(stream.silent_for);
            fastest_cut = fastest_cut.min(stream.silent_for);
            streams.push(stream);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        rss.push([rss_kib(&s.edges[0]), rss_kib(&s.edges[1])]);
    }
    let report = load.stop().await;

    let growth_kib = (0..2)
        .map(|e| rss[ROUNDS - 1][e].saturating_sub(rss[0][e]))
        .max()
        .unwrap();
    let calls = ROUNDS * PER_ROUND;
    let got_504 = statuses.iter().filter(|s| **s == 504).count();
    let cut = streams
        .iter()
        .filter(|t| t.status == 200 && t.first_chunk && !t.finished)
        .count();
    println!(
        "[faults] 5 hanging upstream (timeouts {}s): {got_504}/{calls} got 504 after {}..{} | {cut}/{calls} streams cut {}..{} after their last chunk | edge RSS after round 1 {:.1} MiB, after round {ROUNDS} {:.1} MiB (+{:.1} MiB) | healthy load {}",
        TIMEOUT.as_secs(),
        ms(fastest_504),
        ms(slowest_504),
        ms(fastest_cut),
        ms(slowest_cut),
        rss[0][0].max(rss[0][1]) as f64 / 1024.0,
        rss[ROUNDS - 1][0].max(rss[ROUNDS - 1][1]) as f64 / 1024.0,
        growth_kib as f64 / 1024.0,
        report.all(),
    );
    assert_eq!(got_504, calls, "every wedged call gets 504: {statuses:?}");
    assert!(
        fastest_504 >= TIMEOUT - Duration::from_millis(200) && slowest_504 <= TIMEOUT + LATE,
        "504 after the configured timeout: {}..{}",
        ms(fastest_504),
        ms(slowest_504)
    );
    assert_eq!(cut, calls, "every stalled stream starts, then is cut");
    assert!(
        fastest_cut >= TIMEOUT - Duration::from_millis(200) && slowest_cut <= TIMEOUT + LATE,
        "streams cut by the idle timeout: {}..{}",
        ms(fastest_cut),
        ms(slowest_cut)
    );
    assert!(
        wedged.stats.hung.load(std::sync::atomic::Ordering::Relaxed) >= calls as u64
            && stalled
                .stats
                .hung
                .load(std::sync::atomic::Ordering::Relaxed)
                >= calls as u64,
        "the calls reached the hanging upstreams"
    );
    assert!(
        growth_kib < 8 * 1024,
        "edge memory stays flat over rounds of hanging calls: +{growth_kib} KiB"
    );
    assert_clean("healthy calls beside hanging upstreams", &report.all());
}
