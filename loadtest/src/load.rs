//! A bounded closed-loop load generator: `concurrency` workers share `total` requests over pooled
//! keep-alive connections and record each latency. Stops by itself when the count is reached.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub struct LoadSpec {
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub concurrency: usize,
    pub total: usize,
}

pub struct LoadResult {
    pub ok: usize,
    pub failed: usize,
    pub elapsed: Duration,
    /// Sorted ascending.
    pub latencies: Vec<Duration>,
}

impl LoadResult {
    pub fn requests_per_second(&self) -> f64 {
        (self.ok + self.failed) as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * (self.latencies.len() - 1) as f64).round() as usize;
        self.latencies[rank.min(self.latencies.len() - 1)]
    }
}

pub async fn run(spec: LoadSpec) -> LoadResult {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(spec.concurrency)
        .build(connector);
    let issued = Arc::new(AtomicUsize::new(0));
    let spec = Arc::new(spec);
    let started = Instant::now();
    let workers: Vec<_> = (0..spec.concurrency)
        .map(|_| {
            let (client, issued, spec) = (client.clone(), issued.clone(), spec.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failed = 0usize;
                while issued.fetch_add(1, Ordering::Relaxed) < spec.total {
                    let mut request = Request::new(Full::new(spec.body.clone()));
                    *request.method_mut() = Method::POST;
                    *request.uri_mut() = spec.uri.clone();
                    *request.headers_mut() = spec.headers.clone();
                    let t0 = Instant::now();
                    let ok = match client.request(request).await {
                        Ok(response) => {
                            let success = response.status().is_success();
                            success && response.into_body().collect().await.is_ok()
                        }
                        Err(_) => false,
                    };
                    if ok {
                        latencies.push(t0.elapsed());
                    } else {
                        failed += 1;
                    }
                }
                (latencies, failed)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(spec.total);
    let mut failed = 0;
    for worker in workers {
        let (l, f) = worker.await.expect("load worker");
        latencies.extend(l);
        failed += f;
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    LoadResult {
        ok: latencies.len(),
        failed,
        elapsed,
        latencies,
    }
}

/// Open loop: `total` requests sent at a fixed `rate` per second whatever the responses do, so
/// both paths see the same offered load; each latency is measured from the moment it was sent.
pub async fn run_at_rate(spec: LoadSpec, rate: u32) -> LoadResult {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);
    let gap = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let spec = Arc::new(spec);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(spec.total);
    for i in 0..spec.total {
        tokio::time::sleep_until((started + gap.mul_f64(i as f64)).into()).await;
        let (client, spec) = (client.clone(), spec.clone());
        tasks.push(tokio::spawn(async move {
            let mut request = Request::new(Full::new(spec.body.clone()));
            *request.method_mut() = Method::POST;
            *request.uri_mut() = spec.uri.clone();
            *request.headers_mut() = spec.headers.clone();
            let t0 = Instant::now();
            match client.request(request).await {
                Ok(r) if r.status().is_success() => {
                    r.into_body().collect().await.ok().map(|_| t0.elapsed())
                }
                _ => None,
            }
        }));
    }
    let mut latencies = Vec::with_capacity(spec.total);
    let mut failed = 0;
    for task in tasks {
        match task.await.expect("request task") {
            Some(l) => latencies.push(l),
            None => failed += 1,
        }
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    LoadResult {
        ok: latencies.len(),
        failed,
        elapsed,
        latencies,
    }
}
