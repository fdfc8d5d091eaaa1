//! Steady background traffic for fault tests: chat calls, JSON and SSE, at a fixed rate whatever
//! the answers do (open loop, so a stall shows as latency rather than as fewer requests), spread
//! round-robin over a set of targets (edges × resources × kinds), for a bounded time. Each call is
//! recorded with when it was sent, so a test marks the moments it caused a fault and reads
//! figures per phase: sent, failed (an error status or no answer), lost (a stream cut before its
//! `[DONE]`), p50 and p99 latency (to the last byte).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use tokio::task::JoinHandle;

/// Longest a single call may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// One kind of call the load sends.
#[derive(Debug, Clone)]
pub struct Target {
    /// Names the target in failure reports, e.g. `edge1 gpt-4o sse`.
    pub label: String,
    /// The full URL of the chat-completions call.
    pub url: String,
    /// The attendee key, sent as `api-key`.
    pub key: String,
    /// `stream: true` (SSE) rather than one JSON answer.
    pub stream: bool,
}

impl Target {
    /// A chat-completions call on `deployment` through the edge whose `/api/v1` base is `api_base`.
    pub fn chat(label: &str, api_base: &str, deployment: &str, key: &str, stream: bool) -> Self {
        Self {
            label: format!(
                "{label} {deployment} {}",
                if stream { "sse" } else { "json" }
            ),
            url: format!(
                "{api_base}/openai/deployments/{deployment}/chat/completions?api-version={}",
                crate::stack::API_VERSION
            ),
            key: key.to_string(),
            stream,
        }
    }
}

/// How one call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// An error status, no answer, or a JSON body cut short: what the client saw.
    Failed(String),
    /// A stream that started (2xx) and ended without `data: [DONE]`.
    Lost(String),
}

#[derive(Debug, Clone)]
pub struct Record {
    /// Index into the targets.
    pub target: usize,
    /// When the call was sent, from the start of the load.
    pub sent_at: Duration,
    /// Until the last byte (or the failure).
    pub latency: Duration,
    pub outcome: Outcome,
}

/// Load running in the background until `stop` (or its time limit).
pub struct SteadyLoad {
    started: Instant,
    stopping: Arc<AtomicBool>,
    driver: JoinHandle<Vec<Record>>,
    targets: Arc<Vec<Target>>,
}

impl SteadyLoad {
    /// Starts sending `rate` calls per second over `targets`, for at most `limit`.
    pub fn start(targets: Vec<Target>, rate: u32, limit: Duration) -> Self {
        assert!(!targets.is_empty(), "steady load needs a target");
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(CALL_TIMEOUT)
            .pool_max_idle_per_host(64)
            // As a well-configured client does: reuse a connection only while the server still
            // keeps it (the edge closes HTTP/1 connections idle past its header-read timeout,
            // 2 s in the hostile-clients scenario), so a reused connection is never one the edge
            // is closing at that moment.
            .pool_idle_timeout(Duration::from_millis(1_000))
            .build()
            .expect("HTTP client");
        let targets = Arc::new(targets);
        let stopping = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let gap = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
        let driver = {
            let (targets, stopping) = (targets.clone(), stopping.clone());
            tokio::spawn(async move {
                let mut calls: Vec<JoinHandle<Record>> = Vec::new();
                for i in 0.. {
                    let due = started + gap.mul_f64(f64::from(i));
                    if stopping.load(Ordering::Relaxed) || due.duration_since(started) >= limit {
                        break;
                    }
                    tokio::time::sleep_until(due.into()).await;
                    let index = i as usize % targets.len();
                    let (client, targets) = (client.clone(), targets.clone());
                    calls.push(tokio::spawn(async move {
                        let target = &targets[index];
                        let sent = Instant::now();
                        let outcome = call(&client, target).await;
                        Record {
                            target: index,
                            sent_at: sent.duration_since(started),
                            latency: sent.elapsed(),
                            outcome,
                        }
                    }));
                }
                let mut records = Vec::with_capacity(calls.len());
                for call in calls {
                    records.push(call.await.expect("a load call"));
                }
                records
            })
        };
        Self {
            started,
            stopping,
            driver,
            targets,
        }
    }

    /// Time since the load started: mark a phase boundary with it.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Lets the load run until `at` after its start, then `stop`s it.
    pub async fn stop_after(self, at: Duration) -> SteadyReport {
        tokio::time::sleep_until((self.started + at).into()).await;
        self.stop().await
    }

    /// Stops sending, waits for the calls in flight, and returns every record.
    pub async fn stop(self) -> SteadyReport {
        self.stopping.store(true, Ordering::Relaxed);
        let mut records = self.driver.await.expect("the load driver");
        records.sort_by_key(|r| r.sent_at);
        SteadyReport {
            records,
            targets: self.targets.to_vec(),
        }
    }
}

async fn call(client: &reqwest::Client, target: &Target) -> Outcome {
    let mut body = json!({
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 16,
    });
    if target.stream {
        body["stream"] = json!(true);
    }
    let response = client
        .post(&target.url)
        .header("api-key", &target.key)
        .json(&body)
        .send()
        .await;
    let response = match response {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(format!("{}: {e}", target.label)),
    };
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        return Outcome::Failed(format!("{}: {status} {text}", target.label));
    }
    if !target.stream {
        return match response.bytes().await {
            Ok(b) if b.starts_with(b"{") => Outcome::Ok,
            Ok(b) => Outcome::Failed(format!(
                "{}: not JSON: {}",
                target.label,
                String::from_utf8_lossy(&b)
            )),
            Err(e) => Outcome::Failed(format!("{}: body cut: {e}", target.label)),
        };
    }
    // Keep only the tail: `[DONE]` is the last event.
    let mut tail: Vec<u8> = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(bytes) => {
                tail.extend_from_slice(&bytes);
                if tail.len() > 256 {
                    tail.drain(..tail.len() - 256);
                }
            }
            Err(e) => return Outcome::Lost(format!("{}: stream cut: {e}", target.label)),
        }
    }
    if String::from_utf8_lossy(&tail).contains("data: [DONE]") {
        Outcome::Ok
    } else {
        Outcome::Lost(format!("{}: stream ended without [DONE]", target.label))
    }
}

/// Every call of one run.
pub struct SteadyReport {
    /// By send time.
    pub records: Vec<Record>,
    pub targets: Vec<Target>,
}

impl SteadyReport {
    pub fn all(&self) -> Stats {
        self.stats_where(|_, _| true)
    }

    /// Calls sent in `[from, to)` (times from the start of the load).
    pub fn window(&self, from: Duration, to: Duration) -> Stats {
        self.stats_where(|r, _| r.sent_at >= from && r.sent_at < to)
    }

    pub fn stats_where(&self, keep: impl Fn(&Record, &Target) -> bool) -> Stats {
        Stats::of(
            self.records
                .iter()
                .filter(|r| keep(r, &self.targets[r.target])),
        )
    }
}

/// Figures for a set of calls.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub sent: usize,
    pub failed: usize,
    pub lost: usize,
    /// Over successful calls.
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// The first few failures and losses, to say what went wrong.
    pub examples: Vec<String>,
}

impl Stats {
    fn of<'a>(records: impl Iterator<Item = &'a Record>) -> Self {
        let mut stats = Stats::default();
        let mut latencies = Vec::new();
        for record in records {
            stats.sent += 1;
            match &record.outcome {
                Outcome::Ok => latencies.push(record.latency),
                Outcome::Failed(why) | Outcome::Lost(why) => {
                    if matches!(record.outcome, Outcome::Failed(_)) {
                        stats.failed += 1;
                    } else {
                        stats.lost += 1;
                    }
                    if stats.examples.len() < 5 {
                        stats
                            .examples
                            .push(format!("at {:.1}s: {why}", record.sent_at.as_secs_f64()));
                    }
                }
            }
        }
        latencies.sort_unstable();
        stats.p50 = percentile(&latencies, 50.0);
        stats.p99 = percentile(&latencies, 99.0);
        stats.max = latencies.last().copied().unwrap_or_default();
        stats
    }

    /// Neither failed nor lost calls.
    pub fn clean(&self) -> bool {
        self.failed == 0 && self.lost == 0
    }
}

/// Nearest-rank percentile of sorted `latencies`.
pub fn percentile(latencies: &[Duration], p: f64) -> Duration {
    if latencies.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * latencies.len() as f64).ceil() as usize;
    latencies[rank.clamp(1, latencies.len()) - 1]
}

/// Milliseconds with one decimal.
pub fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1000.0)
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent={} failed={} lost={} p50={} p99={}",
            self.sent,
            self.failed,
            self.lost,
            ms(self.p50),
            ms(self.p99)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let l: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&l, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&l, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&l[..1], 99.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 99.0), Duration::ZERO);
    }
}
