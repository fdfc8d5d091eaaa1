//! Scenario 6: an edge gets SIGTERM (a rolling deploy, a scale-in) with 50 SSE streams open. It
//! must first answer `/readyz` with 503 (so the load balancer stops sending new calls) for
//! `AIPROXY_SHUTDOWN_DELAY_MS`, then close its listener, let every open stream finish (within
//! `AIPROXY_SHUTDOWN_GRACE_SECS`), and exit by itself. Not one stream may be cut. The other edge
//! carries the steady load meanwhile. The terminated edge delivers the usage of every stream
//! before it exits: the totals equal, exactly, what the upstreams reported.

use std::time::{Duration, Instant};

use aiproxy_loadtest::mock::{MockAzure, MockConfig};
use aiproxy_loadtest::stack::{UPSTREAM_KEY, model_resource};
use aiproxy_loadtest::steady::{SteadyLoad, ms};
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::mpsc;

use crate::support::*;

const STREAMS: usize = 50;
const SHUTDOWN_DELAY_MS: u64 = 500;
const GRACE_SECS: u64 = 30;

/// One stream: whether it ended with `[DONE]`, and when it ended.
async fn open_stream(
    http: reqwest::Client,
    url: String,
    key: String,
    started: mpsc::Sender<()>,
) -> (bool, Instant) {
    let response = http
        .post(&url)
        .header("api-key", &key)
        .json(&json!({"messages": [{"role": "user", "content": "Hi"}], "stream": true}))
        .send()
        .await;
    let Ok(response) = response.and_then(|r| r.error_for_status()) else {
        return (false, Instant::now());
    };
    let mut body = response.bytes_stream();
    let mut text = Vec::new();
    let mut announced = false;
    while let Some(chunk) = body.next().await {
        let Ok(bytes) = chunk else {
            return (false, Instant::now());
        };
        text.extend_from_slice(&bytes);
        if !announced {
            announced = true;
            let _ = started.send(()).await;
        }
    }
    (
        String::from_utf8_lossy(&text).contains("data: [DONE]"),
        Instant::now(),
    )
}

/// What `/readyz` said after SIGTERM: when it first said 503, when it first could not be reached.
async fn watch_readiness(url: String, since: Instant) -> (Option<Duration>, Option<Duration>) {
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut first_503 = None;
    while since.elapsed() < Duration::from_secs(15) {
        match http.get(&url).send().await {
            Ok(r) if r.status() == 503 => {
                first_503.get_or_insert(since.elapsed());
            }
            Ok(_) => {}
            Err(_) => return (first_503, Some(since.elapsed())),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (first_503, None)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_turns_readiness_off_first_and_lets_fifty_streams_finish() {
    let _turn = one_at_a_time().await;
    let mut s = FaultStack::start(FaultOptions {
        edge_env: vec![
            (
                "AIPROXY_SHUTDOWN_DELAY_MS".into(),
                SHUTDOWN_DELAY_MS.to_string(),
            ),
            ("AIPROXY_SHUTDOWN_GRACE_SECS".into(), GRACE_SECS.to_string()),
        ],
        ..Default::default()
    })
    .await;
    // Streams of ~3.2 s: eight chunks 400 ms apart.
    let slow = MockAzure::start(MockConfig {
        auth: aiproxy_loadtest::mock::ExpectedAuth::ApiKey(UPSTREAM_KEY.into()),
        stream_chunks: 8,
        stream_chunk_delay: Duration::from_millis(400),
        ..Default::default()
    })
    .await
    .unwrap();
    let id = s
        .admin
        .create_resource(model_resource("slow", &slow.endpoint(), ""))
        .await;
    let (_, mut event) = s.admin.get(&format!("/events/{}", s.event_id)).await;
    event["resource_ids"]
        .as_array_mut()
        .unwrap()
        .push(id.into());
    s.admin.put(&format!("/events/{}", s.event_id), event).await;
    s.admin.wait_edges_acked(2, Duration::from_secs(10)).await;

    let load = SteadyLoad::start(s.targets_on(&[1]), RATE, Duration::from_secs(60));
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(GRACE_SECS + 10))
        .build()
        .unwrap();
    let (started_tx, mut started_rx) = mpsc::channel(STREAMS);
    let streams: Vec<_> = (0..STREAMS)
        .map(|_| {
            tokio::spawn(open_stream(
                http.clone(),
                s.edges[0].chat_url("slow"),
                s.key.clone(),
                started_tx.clone(),
            ))
        })
        .collect();
    drop(started_tx);
    for _ in 0..STREAMS {
        tokio::time::timeout(Duration::from_secs(20), started_rx.recv())
            .await
            .expect("50 streams opened")
            .expect("a stream failed before its first chunk");
    }

    let terminated = Instant::now();
    s.edges[0].terminate();
    let readiness = tokio::spawn(watch_readiness(
        format!("{}/readyz", s.edges[0].url()),
        terminated,
    ));
    let mut ends = Vec::new();
    for stream in streams {
        ends.push(stream.await.unwrap());
    }
    let exit = s.edges[0]
        .wait_exit(Duration::from_secs(GRACE_SECS + 5))
        .await;
    let exited_after = terminated.elapsed();
    let (first_503, refused) = readiness.await.unwrap();
    let report = load.stop().await;

    let finished = ends.iter().filter(|(done, _)| *done).count();
    let last_end = ends
        .iter()
        .map(|(_, at)| at.duration_since(terminated))
        .max()
        .unwrap_or_default();
    println!(
        "[faults] 6 edge SIGTERM with {STREAMS} open streams: readyz 503 after {} | listener closed after {} | {finished}/{STREAMS} streams finished, {} cut, the last {} after SIGTERM | exited after {} ({exit:?}) | other edge {}",
        first_503.map(ms).unwrap_or_else(|| "never".into()),
        refused.map(ms).unwrap_or_else(|| "never".into()),
        STREAMS - finished,
        ms(last_end),
        ms(exited_after),
        report.all(),
    );
    let first_503 = first_503.expect("/readyz never answered 503 after SIGTERM");
    if let Some(refused) = refused {
        assert!(
            first_503 < refused,
            "readiness dropped before the listener closed"
        );
    }
    assert_eq!(finished, STREAMS, "no stream was cut by the shutdown");
    assert!(
        last_end > Duration::from_secs(1),
        "the streams were still running at SIGTERM"
    );
    let exit = exit.expect("the edge did not exit after its streams finished");
    assert!(exit.success(), "a drained edge exits cleanly: {exit:?}");
    assert!(
        exited_after < last_end + Duration::from_secs(5),
        "the edge exits soon after its last stream: {} vs {}",
        ms(exited_after),
        ms(last_end)
    );
    assert_clean("calls through the other edge", &report.all());
    s.admin
        .assert_usage_matches(
            &s.event_id,
            &[&s.keyed, &s.managed, &slow],
            Duration::from_secs(15),
        )
        .await;
}
