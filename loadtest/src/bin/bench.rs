//! `aiproxy-bench`: non-streaming chat completions, direct to the mock upstream vs through the
//! edge, with the same bounded load, in one run on this machine. Prints requests/s and p50/p99
//! for both and their ratios, the edge's CPU per request, and the time to the first body byte of
//! streamed chat calls. Build in release first (`cargo build --release --workspace --bins`) and
//! run `target/release/aiproxy-bench`; it starts the mock in-process and the control plane and
//! edge binaries beside it, all on loopback.
//!
//! `--baseline-edge <path>` also starts another edge binary (a build of an earlier commit) against
//! the same control plane and measures it in the same rounds, alternating with the current edge:
//! the figures are then current vs baseline (e.g. what usage metering costs).
//! `--baseline-env KEY=VALUE` (repeatable) gives that edge extra environment, and `--otlp-sink`
//! starts an in-process OTLP collector and points the baseline edge at it with every span sampled:
//! with the current binary as the baseline, the figures are then telemetry off vs on.
//! `--edge-cpu N` pins both edges to CPU N and everything else to the other CPUs (`taskset`), so
//! an edge's work (its export thread's included) is charged to its own core. On a 2-core machine
//! the single load core may then be the limit of an edge's throughput: read CPU per request.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aiproxy_loadtest::load::{self, LoadResult, LoadSpec};
use aiproxy_loadtest::mock::{MockAzure, MockConfig};
use aiproxy_loadtest::stack::{
    API_VERSION, ControlPlane, Edge, Scenario, UPSTREAM_KEY, rfc3339_from_now,
};
use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[derive(Parser)]
#[command(about = "Edge vs direct benchmark (loopback only, bounded)")]
struct Args {
    /// Requests per measured run.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Measured rounds; each round runs direct then the edge(s), and the best round of each is
    /// kept.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Offered rate (requests/s) of the open-loop latency run, the same on every path.
    #[arg(long, default_value_t = 2_000)]
    rate: u32,
    /// Duration of each open-loop latency run, in seconds.
    #[arg(long, default_value_t = 5)]
    latency_seconds: u32,
    /// Another `aiproxy-edge` binary (e.g. built from an earlier commit) to measure beside the
    /// current one, against the same control plane, in alternating rounds.
    #[arg(long)]
    baseline_edge: Option<PathBuf>,
    /// Streamed chat calls in flight at once in the first-byte measurement.
    #[arg(long, default_value_t = 50)]
    sse_concurrency: usize,
    /// Streamed calls each of those connections makes, one after the other, per round and path.
    #[arg(long, default_value_t = 10)]
    sse_calls: usize,
    /// Rounds of the first-byte measurement (paths alternate in each round); each path's p50 and
    /// p99 are the medians of its rounds'.
    #[arg(long, default_value_t = 5)]
    sse_rounds: usize,
    /// Pause of the mock upstream between two chunks of a stream, in milliseconds.
    #[arg(long, default_value_t = 10)]
    stream_chunk_delay_ms: u64,
    /// Extra environment of the baseline edge, `KEY=VALUE` (repeatable).
    #[arg(long, value_parser = parse_env_pair)]
    baseline_env: Vec<(String, String)>,
    /// Export the baseline edge's traces (sampled 1.0) to an in-process OTLP collector on loopback.
    #[arg(long, requires = "baseline_edge")]
    otlp_sink: bool,
    /// With `--otlp-sink`, export over OTLP/HTTP (`http/protobuf`) instead of gRPC.
    #[arg(long, requires = "otlp_sink")]
    otlp_http: bool,
    /// Pin the edges to this CPU (every thread, with `taskset`), and this process (load
    /// generator, mock, OTLP sink) and the control plane to the others: an edge's throughput is
    /// then what one core gives it, not what it wins from the load generator.
    #[arg(long)]
    edge_cpu: Option<usize>,
}

fn parse_env_pair(pair: &str) -> Result<(String, String), String> {
    pair.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got '{pair}'"))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Before the runtime's threads exist: they, and the processes started, inherit it.
    let pinned = match args.edge_cpu {
        Some(cpu) => {
            let others = other_cpus(cpu)?;
            pin(std::process::id(), &others)?;
            Some((cpu, others))
        }
        None => None,
    };
    // Two worker threads: the load generator and the mock share them, as the edge shares the cores.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(args, pinned))
}

/// One way to the mock upstream: directly, through the current edge, or through the baseline edge.
#[derive(Clone)]
struct Target {
    name: &'static str,
    base: String,
    headers: HeaderMap,
    /// Calls made through it (the current edge's are checked against the usage API at the end).
    calls: Arc<AtomicUsize>,
    /// The edge process, whose CPU time is read around each throughput run.
    pid: Option<u32>,
}

impl Target {
    fn new(name: &'static str, base: String, headers: HeaderMap, pid: Option<u32>) -> Self {
        Self {
            name,
            base,
            headers,
            calls: Arc::new(AtomicUsize::new(0)),
            pid,
        }
    }
}

/// `pinned`: the edges' CPU and the others' (`--edge-cpu`).
async fn run(args: Args, pinned: Option<(usize, String)>) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.rounds > 0 && args.sse_rounds > 0 && args.sse_concurrency > 0 && args.sse_calls > 0,
        "--rounds, --sse-rounds, --sse-concurrency and --sse-calls must be at least 1"
    );
    let mock_config = MockConfig {
        stream_chunk_delay: Duration::from_millis(args.stream_chunk_delay_ms),
        ..MockConfig::default()
    };
    let scenario = Scenario::start(mock_config).await;
    let sink = if args.otlp_sink {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Some(aiproxy_loadtest::otlp::CountingSink::start_on(loopback, loopback).await?)
    } else {
        None
    };
    let mut baseline_env = Vec::new();
    if let Some(sink) = &sink {
        let (endpoint, protocol) = if args.otlp_http {
            (sink.http_endpoint(), "http/protobuf")
        } else {
            (sink.endpoint(), "grpc")
        };
        println!("baseline edge exports its traces to {endpoint} ({protocol})");
        baseline_env.push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint));
        baseline_env.push(("OTEL_EXPORTER_OTLP_PROTOCOL".into(), protocol.into()));
        baseline_env.push(("OTEL_TRACES_SAMPLER".into(), "always_on".into()));
    }
    // Given last, so `--baseline-env OTEL_TRACES_SAMPLER=...` overrides the sink's default.
    baseline_env.extend(args.baseline_env.iter().cloned());
    let baseline = match &args.baseline_edge {
        Some(path) => {
            let env: Vec<(&str, &str)> = baseline_env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            Some(Edge::start_binary(&scenario.cp, path, &env).await)
        }
        None => None,
    };
    if let Some((cpu, others)) = &pinned {
        let edges = [scenario.edge.pid(), baseline.as_ref().and_then(Edge::pid)];
        for pid in edges.into_iter().flatten() {
            pin(pid, &cpu.to_string())?;
        }
        println!(
            "edges pinned to CPU {cpu}; load generator, mock and control plane to CPUs {others}"
        );
    }
    let body = Bytes::from_static(
        br#"{"messages":[{"role":"user","content":"Say hello"}],"max_tokens":16}"#,
    );
    let stream_body = Bytes::from_static(
        br#"{"messages":[{"role":"user","content":"Say hello"}],"max_tokens":16,"stream":true}"#,
    );
    let path = format!("/openai/deployments/gpt-4o/chat/completions?api-version={API_VERSION}");

    let mut direct_headers = HeaderMap::new();
    direct_headers.insert("api-key", HeaderValue::from_static(UPSTREAM_KEY));
    direct_headers.insert("content-type", HeaderValue::from_static("application/json"));
    let mut edge_headers = HeaderMap::new();
    edge_headers.insert("api-key", HeaderValue::from_str(&scenario.key)?);
    edge_headers.insert("content-type", HeaderValue::from_static("application/json"));

    let direct = Target::new(
        "direct to mock",
        scenario.mock.endpoint(),
        direct_headers,
        None,
    );
    let current = Target::new(
        if baseline.is_some() {
            "current edge"
        } else {
            "through the edge"
        },
        format!("{}/api/v1", scenario.edge.url()),
        edge_headers.clone(),
        scenario.edge.pid(),
    );
    let baseline_target = baseline.as_ref().map(|b| {
        Target::new(
            "baseline edge",
            format!("{}/api/v1", b.url()),
            edge_headers,
            b.pid(),
        )
    });
    // What other processes on the machine used meanwhile: the figures are only comparable
    // when that is about nothing.
    let ours = || {
        cpu_time(Some(std::process::id()))
            + cpu_time(scenario.cp.pid())
            + cpu_time(scenario.edge.pid())
            + cpu_time(baseline.as_ref().and_then(Edge::pid))
    };
    let (busy_at_start, ours_at_start, wall_start) = (machine_busy(), ours(), Instant::now());
    // The edges in the order of round `round` (1-based): alternating, so that neither always
    // runs right after direct (warmer caches) or right before it.
    let edges_in = |round: usize| -> Vec<&Target> {
        match &baseline_target {
            Some(b) if round.is_multiple_of(2) => vec![b, &current],
            Some(b) => vec![&current, b],
            None => vec![&current],
        }
    };
    let all: Vec<&Target> = std::iter::once(&direct)
        .chain(std::iter::once(&current))
        .chain(baseline_target.as_ref())
        .collect();

    let spec = |t: &Target, total: usize| {
        t.calls.fetch_add(total, Ordering::Relaxed);
        LoadSpec {
            uri: format!("{}{path}", t.base).parse().expect("uri"),
            headers: t.headers.clone(),
            body: body.clone(),
            concurrency: args.concurrency,
            total,
        }
    };

    // Warm up connection pools and caches on every path.
    for t in &all {
        let warm = load::run(spec(t, 2_000)).await;
        anyhow::ensure!(warm.failed == 0, "{}: requests failed at warm-up", t.name);
    }

    // 1. Throughput: closed loop, the same number of connections on every path, best of the rounds.
    let mut best: Vec<Option<LoadResult>> = all.iter().map(|_| None).collect();
    let mut paired_ratios = Vec::new();
    // CPU time the edge process and the control plane used during each path's runs (all rounds).
    let cp_pid = scenario.cp.pid();
    let mut edge_cpu = vec![Duration::ZERO; all.len()];
    let mut cp_cpu = vec![Duration::ZERO; all.len()];
    let mut measured = vec![0usize; all.len()];
    for round in 1..=args.rounds {
        let mut order = vec![&direct];
        order.extend(edges_in(round));
        let mut line = format!("throughput round {round}:");
        let mut rps = Vec::new();
        for t in order {
            let (edge_before, cp_before) = (cpu_time(t.pid), cpu_time(cp_pid));
            let r = load::run(spec(t, args.requests)).await;
            let i = index_of(&all, t);
            edge_cpu[i] += cpu_time(t.pid).saturating_sub(edge_before);
            cp_cpu[i] += cpu_time(cp_pid).saturating_sub(cp_before);
            measured[i] += args.requests;
            anyhow::ensure!(
                r.failed == 0,
                "{}: requests failed in the benchmark",
                t.name
            );
            line.push_str(&format!(" {} {};", t.name, summary(&r)));
            rps.push((t.name, r.requests_per_second()));
            let slot = &mut best[i];
            if slot
                .as_ref()
                .is_none_or(|b| r.requests_per_second() > b.requests_per_second())
            {
                *slot = Some(r);
            }
        }
        if let Some(b) = &baseline_target {
            let get = |name| rps.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
            let ratio = get(current.name).unwrap_or(0.0) / get(b.name).unwrap_or(f64::NAN);
            line.push_str(&format!(" current/baseline {ratio:.3}"));
            paired_ratios.push(ratio);
        }
        println!("{line}");
    }
    let best: Vec<LoadResult> = best.into_iter().map(|r| r.expect("a round")).collect();

    // 2. Latency: open loop at the same fixed rate on every path, below saturation; rounds
    // alternate between the edges and the round with the median current-edge p99 is reported.
    let latency_total = (args.rate as usize * args.latency_seconds as usize).max(1);
    let mut latency_rounds: Vec<Vec<LoadResult>> = Vec::new();
    for round in 1..=args.rounds {
        let mut order = vec![&direct];
        order.extend(edges_in(round));
        let mut results: Vec<Option<LoadResult>> = all.iter().map(|_| None).collect();
        let mut line = format!("latency round {round}:");
        for t in order {
            let r = load::run_at_rate(spec(t, latency_total), args.rate).await;
            anyhow::ensure!(
                r.failed == 0,
                "{}: requests failed in the latency run",
                t.name
            );
            line.push_str(&format!(" {} {};", t.name, summary(&r)));
            results[index_of(&all, t)] = Some(r);
        }
        println!("{line}");
        latency_rounds.push(results.into_iter().map(|r| r.expect("measured")).collect());
    }
    latency_rounds.sort_by_key(|r| r[1].percentile(99.0));
    let latency = latency_rounds.swap_remove(latency_rounds.len() / 2);

    // 3. Streamed chat: time to the first body byte, `sse_concurrency` calls in flight.
    let mut sse_rounds: Vec<Vec<LoadResult>> = Vec::new();
    let mut usage_chunks = vec![0usize; all.len()];
    let mut upstream_usage = vec![0u64; all.len()];
    for round in 1..=args.sse_rounds {
        let mut order = vec![&direct];
        order.extend(edges_in(round));
        let mut results: Vec<Option<LoadResult>> = all.iter().map(|_| None).collect();
        let mut line = format!("first-byte round {round}:");
        for t in order {
            let i = index_of(&all, t);
            let before = scenario.mock.stats.usage_total().requests;
            let uri: Uri = format!("{}{path}", t.base).parse()?;
            t.calls.fetch_add(
                args.sse_concurrency * (args.sse_calls + 1),
                Ordering::Relaxed,
            );
            let r = tokio::time::timeout(
                Duration::from_secs(120),
                sse_round(
                    uri,
                    t.headers.clone(),
                    stream_body.clone(),
                    args.sse_concurrency,
                    args.sse_calls,
                ),
            )
            .await
            .with_context(|| format!("{}: streamed calls did not finish in 120 s", t.name))?;
            anyhow::ensure!(
                r.failed == 0,
                "{}: {} streamed calls failed",
                t.name,
                r.failed
            );
            upstream_usage[i] += scenario.mock.stats.usage_total().requests - before;
            usage_chunks[i] += r.usage_chunks;
            line.push_str(&format!(
                " {} p50 {:.3} ms p99 {:.3} ms;",
                t.name,
                ms(r.result.percentile(50.0)),
                ms(r.result.percentile(99.0))
            ));
            results[i] = Some(r.result);
        }
        println!("{line}");
        sse_rounds.push(results.into_iter().map(|r| r.expect("measured")).collect());
    }
    // Per path, the median over the rounds of each percentile (a round's p99 of 500 streams on a
    // shared machine swings with whatever else ran in it).
    let median_of = |i: usize, p: f64| {
        let mut v: Vec<Duration> = sse_rounds.iter().map(|r| r[i].percentile(p)).collect();
        v.sort_unstable();
        v[v.len() / 2]
    };
    let ttfb: Vec<(Duration, Duration)> = (0..all.len())
        .map(|i| (median_of(i, 50.0), median_of(i, 99.0)))
        .collect();
    let timed_calls = args.sse_concurrency * args.sse_calls;

    // 4. The current edge really metered: what the usage API counted for the event.
    let metered = wait_usage_requests(
        &scenario.cp,
        &scenario.event_id,
        current.calls.load(Ordering::Relaxed) as u64,
        Duration::from_secs(15),
    )
    .await;

    // The report.
    println!();
    println!(
        "Throughput, closed loop with {} connections (best of {} rounds of {} requests):",
        args.concurrency, args.rounds, args.requests
    );
    println!();
    println!(
        "| path | requests/s | p50 ms | p99 ms | edge CPU µs/request | control plane CPU µs/request |"
    );
    println!("|---|---|---|---|---|---|");
    let per_request = |cpu: Duration, i: usize| cpu.as_secs_f64() * 1e6 / measured[i].max(1) as f64;
    for (i, (t, r)) in all.iter().zip(&best).enumerate() {
        let edge = match t.pid {
            Some(_) => format!("{:.1}", per_request(edge_cpu[i], i)),
            None => "-".to_string(),
        };
        println!(
            "| {} | {:.0} | {:.3} | {:.3} | {edge} | {:.1} |",
            t.name,
            r.requests_per_second(),
            ms(r.percentile(50.0)),
            ms(r.percentile(99.0)),
            per_request(cp_cpu[i], i),
        );
    }
    println!();
    println!(
        "(CPU: user + system time of the process over all {} rounds, per request; {} ms resolution)",
        args.rounds,
        1000 / clock_ticks()
    );
    println!();
    println!(
        "edge/direct throughput ratio: {:.2} (target >= 0.50)",
        best[1].requests_per_second() / best[0].requests_per_second()
    );
    if baseline_target.is_some() {
        println!(
            "current/baseline edge CPU per request: {:.3}; with the control plane's: {:.3}",
            per_request(edge_cpu[1], 1) / per_request(edge_cpu[2], 2),
            (per_request(edge_cpu[1], 1) + per_request(cp_cpu[1], 1))
                / (per_request(edge_cpu[2], 2) + per_request(cp_cpu[2], 2)),
        );
        let ratio = best[1].requests_per_second() / best[2].requests_per_second();
        let mut sorted = paired_ratios;
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        // The edge under test: the current one, or with --otlp-sink the baseline (export on).
        let (candidate, claim) = if args.otlp_sink {
            (
                1.0 / ratio.max(f64::MIN_POSITIVE),
                "export on costs at most 5 % throughput",
            )
        } else {
            (ratio, "the current edge costs at most 5 % throughput")
        };
        let candidate_median = if args.otlp_sink {
            1.0 / median.max(f64::MIN_POSITIVE)
        } else {
            median
        };
        let verdict = match (candidate >= 0.95, candidate_median >= 0.95) {
            (true, true) => "meets",
            (false, false) => "DOES NOT meet",
            _ => "inconclusive (the two estimates disagree) on",
        };
        println!(
            "current/baseline throughput ratio: {ratio:.3} best vs best, {median:.3} median of the rounds' ratios (rounds {:.3} to {:.3}); {verdict} \"{claim}\"",
            sorted[0],
            sorted[sorted.len() - 1],
        );
    }
    println!();
    println!(
        "Latency, open loop at {} requests/s for {} s on each path (median of {} rounds):",
        args.rate, args.latency_seconds, args.rounds
    );
    println!();
    println!("| path | p50 ms | p99 ms |");
    println!("|---|---|---|");
    for (t, r) in all.iter().zip(&latency) {
        println!(
            "| {} | {:.3} | {:.3} |",
            t.name,
            ms(r.percentile(50.0)),
            ms(r.percentile(99.0))
        );
    }
    println!();
    println!(
        "added by the edge: p50 {:.3} ms, p99 {:.3} ms (target <= 0.5 ms); edge/direct p99 ratio {:.2}",
        ms(latency[1].percentile(50.0)) - ms(latency[0].percentile(50.0)),
        ms(latency[1].percentile(99.0)) - ms(latency[0].percentile(99.0)),
        ms(latency[1].percentile(99.0)) / ms(latency[0].percentile(99.0)),
    );
    if baseline_target.is_some() {
        println!(
            "current vs baseline edge: p50 {:+.3} ms, p99 {:+.3} ms",
            ms(latency[1].percentile(50.0)) - ms(latency[2].percentile(50.0)),
            ms(latency[1].percentile(99.0)) - ms(latency[2].percentile(99.0)),
        );
    }
    println!();
    println!(
        "Streamed chat (\"stream\": true, no stream_options), time to first body byte: {} calls in flight, {} calls per path and round, {} ms between upstream chunks (medians over {} rounds):",
        args.sse_concurrency,
        args.sse_concurrency * args.sse_calls,
        args.stream_chunk_delay_ms,
        args.sse_rounds
    );
    println!();
    println!(
        "| path | calls | p50 ms | p99 ms | usage chunks the client saw (all rounds) | upstream answers with usage (all rounds, with warm-up calls) |"
    );
    println!("|---|---|---|---|---|---|");
    for (i, (t, (p50, p99))) in all.iter().zip(&ttfb).enumerate() {
        println!(
            "| {} | {timed_calls} | {:.3} | {:.3} | {} | {} |",
            t.name,
            ms(*p50),
            ms(*p99),
            usage_chunks[i],
            upstream_usage[i]
        );
    }
    println!();
    let added = |a: usize, b: usize| (ms(ttfb[a].0) - ms(ttfb[b].0), ms(ttfb[a].1) - ms(ttfb[b].1));
    let (p50, p99) = added(1, 0);
    println!(
        "first byte, {} vs direct: p50 {p50:+.3} ms, p99 {p99:+.3} ms",
        current.name
    );
    if baseline_target.is_some() {
        let (p50, p99) = added(2, 0);
        println!("first byte, baseline edge vs direct: p50 {p50:+.3} ms, p99 {p99:+.3} ms");
        let (p50, p99) = added(1, 2);
        println!("first byte, current vs baseline edge: p50 {p50:+.3} ms, p99 {p99:+.3} ms");
    }
    println!();
    match metered {
        Some(n) => println!(
            "usage API: {n} requests counted for the event; {} calls went through the current edge",
            current.calls.load(Ordering::Relaxed)
        ),
        None => println!("usage API: no answer (totals not available)"),
    }
    let others = (machine_busy().saturating_sub(busy_at_start))
        .saturating_sub(ours().saturating_sub(ours_at_start));
    let placement = match &pinned {
        Some((cpu, rest)) => {
            format!("edges on CPU {cpu}, load generator, mock and control plane on CPUs {rest}")
        }
        None => format!(
            "{} cores, load generator, mock, control plane and edge(s) on it together",
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0)
        ),
    };
    println!(
        "machine: {placement}; other processes used {:.1} CPU-s in the {:.0} s of the run",
        others.as_secs_f64(),
        wall_start.elapsed().as_secs_f64()
    );
    anyhow::ensure!(
        usage_chunks.iter().all(|&n| n == 0),
        "a client that did not ask for usage received a usage chunk"
    );
    if let (Some(sink), Some(target)) = (&sink, &baseline_target) {
        // The edge exports when 512 spans are queued or every 5 s: wait for the last batch.
        let mut received = sink.spans();
        loop {
            tokio::time::sleep(Duration::from_secs(6)).await;
            let now = sink.spans();
            if now == received {
                break;
            }
            received = now;
        }
        let calls = target.calls.load(Ordering::Relaxed);
        println!(
            "the OTLP sink received {received} spans for the {calls} calls through the baseline edge ({:.1} %)",
            100.0 * received as f64 / calls.max(1) as f64
        );
    }
    drop(baseline);
    drop::<(MockAzure, ControlPlane, Edge)>((scenario.mock, scenario.cp, scenario.edge));
    Ok(())
}

/// Pins every thread of process `pid` to `cpus` (a `taskset` list); threads it starts later
/// inherit it.
fn pin(pid: u32, cpus: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("taskset")
        .args(["--all-tasks", "--cpu-list", "--pid", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .context("running taskset (util-linux) to pin a process")?;
    anyhow::ensure!(
        status.success(),
        "taskset could not pin process {pid} to CPUs {cpus}"
    );
    Ok(())
}

/// Every CPU this process may use but `cpu`, as a `taskset` list (from `Cpus_allowed_list` in
/// `/proc/self/status`: the ids need not start at 0 nor follow each other).
fn other_cpus(cpu: usize) -> anyhow::Result<String> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .context("no Cpus_allowed_list in /proc/self/status")?
        .trim();
    let mut allowed = Vec::new();
    for part in list.split(',') {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        allowed.extend(first.parse::<usize>()?..=last.parse::<usize>()?);
    }
    anyhow::ensure!(
        allowed.contains(&cpu) && allowed.len() > 1,
        "--edge-cpu {cpu}: this process may use CPUs {list}"
    );
    Ok(allowed
        .iter()
        .filter(|c| **c != cpu)
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(","))
}

/// User + system CPU time of process `pid` so far, from `/proc/<pid>/stat` (zero if unknown).
fn cpu_time(pid: Option<u32>) -> Duration {
    let Some(stat) = pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
    else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces, in parentheses): state is field 3,
    // utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |n: usize| {
        fields
            .get(n)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / clock_ticks() as f64)
}

/// CPU time all cores spent busy (not idle or waiting for I/O) since boot, from `/proc/stat`.
fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum();
    Duration::from_secs_f64(busy as f64 / clock_ticks() as f64)
}

/// Clock ticks per second of `/proc` CPU times (`getconf CLK_TCK`, 100 on Linux).
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

fn index_of(all: &[&Target], t: &Target) -> usize {
    all.iter()
        .position(|x| x.name == t.name)
        .expect("a known target")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(r: &LoadResult) -> String {
    format!(
        "{:.0} req/s p50 {:.3} ms p99 {:.3} ms",
        r.requests_per_second(),
        ms(r.percentile(50.0)),
        ms(r.percentile(99.0))
    )
}

/// What one path's streamed calls gave: time to the first body byte of each (in `latencies`).
struct SseRound {
    result: LoadResult,
    failed: usize,
    /// Chunks carrying a non-null `usage` that reached the client.
    usage_chunks: usize,
}

/// `concurrency` connections each make `calls` streamed calls one after the other (after one
/// untimed call that opens the connection), reading each stream to its end; the time from sending
/// a request to its first body byte is recorded.
async fn sse_round(
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    concurrency: usize,
    calls: usize,
) -> SseRound {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency)
        .build(connector);
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, uri, headers, body) =
                (client.clone(), uri.clone(), headers.clone(), body.clone());
            tokio::spawn(async move {
                let mut ttfb = Vec::with_capacity(calls);
                let (mut failed, mut usage_chunks) = (0usize, 0usize);
                // The first call opens the connection and is not timed: the figures are those of
                // streams on open keep-alive connections, as an SDK's pool makes them.
                for call in 0..=calls {
                    let mut request = Request::new(Full::new(body.clone()));
                    *request.method_mut() = Method::POST;
                    *request.uri_mut() = uri.clone();
                    *request.headers_mut() = headers.clone();
                    match one_stream(&client, request).await {
                        Some((first, usage)) => {
                            if call > 0 {
                                ttfb.push(first);
                            }
                            usage_chunks += usage;
                        }
                        None => failed += 1,
                    }
                }
                (ttfb, failed, usage_chunks)
            })
        })
        .collect();
    let (mut latencies, mut failed, mut usage_chunks) = (Vec::new(), 0, 0);
    for worker in workers {
        let (l, f, u) = worker.await.expect("stream worker");
        latencies.extend(l);
        failed += f;
        usage_chunks += u;
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    SseRound {
        result: LoadResult {
            ok: latencies.len(),
            failed,
            elapsed,
            latencies,
        },
        failed,
        usage_chunks,
    }
}

/// One streamed call read to its end: the time to its first body byte and the number of usage
/// chunks in it; `None` if it failed, was not an event stream, or ended without `[DONE]`.
async fn one_stream(
    client: &Client<HttpConnector, Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Option<(Duration, usize)> {
    let t0 = Instant::now();
    let call = async {
        let response = client.request(request).await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let is_sse = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let mut body = response.into_body();
        let mut first = None;
        let mut text = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.ok()?.into_data()
                && !data.is_empty()
            {
                first.get_or_insert_with(|| t0.elapsed());
                text.extend_from_slice(&data);
            }
        }
        let text = String::from_utf8_lossy(&text);
        if !is_sse || !text.contains("data: [DONE]") {
            return None;
        }
        let usage = text
            .split("\n\n")
            .filter(|event| event.contains("\"usage\":{"))
            .count();
        Some((first?, usage))
    };
    tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .ok()
        .flatten()
}

/// Polls the admin usage API until the event's `totals.requests` reaches `expected` (delivery is
/// asynchronous) or `timeout` passes; the last count, `None` if the API never answered.
async fn wait_usage_requests(
    cp: &ControlPlane,
    event_id: &str,
    expected: u64,
    timeout: Duration,
) -> Option<u64> {
    let admin = cp.admin();
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        let (status, usage) = admin
            .get(&format!(
                "/usage?event_id={event_id}&from={}&to={}",
                rfc3339_from_now(-86_400),
                rfc3339_from_now(86_400)
            ))
            .await;
        if status.is_success() {
            last = usage["totals"]["requests"].as_u64();
        }
        if last.is_some_and(|n| n >= expected) || Instant::now() >= deadline {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
