//! `aiproxy-bench`: non-streaming chat completions, direct to the mock upstream vs through the
//! edge, with the same bounded load, in one run on this machine. Prints requests/s and p50/p99
//! for both and their ratios. Build in release first (`cargo build --release --workspace --bins`)
//! and run `target/release/aiproxy-bench`; it starts the mock in-process and the control plane
//! and edge binaries beside it, all on loopback.

use std::time::Duration;

use aiproxy_loadtest::load::{self, LoadResult, LoadSpec};
use aiproxy_loadtest::mock::{MockAzure, MockConfig};
use aiproxy_loadtest::stack::{API_VERSION, ControlPlane, Edge, Scenario, UPSTREAM_KEY};
use bytes::Bytes;
use clap::Parser;
use http::{HeaderMap, HeaderValue};

#[derive(Parser)]
#[command(about = "Edge vs direct benchmark (loopback only, bounded)")]
struct Args {
    /// Requests per measured run.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Measured rounds; each round runs direct then edge, and the best round of each is kept.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Offered rate (requests/s) of the open-loop latency run, the same on both paths.
    #[arg(long, default_value_t = 2_000)]
    rate: u32,
    /// Duration of each open-loop latency run, in seconds.
    #[arg(long, default_value_t = 5)]
    latency_seconds: u32,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Two worker threads: the load generator and the mock share them, as the edge shares the cores.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let scenario = Scenario::start(MockConfig::default()).await;
    let body = Bytes::from_static(
        br#"{"messages":[{"role":"user","content":"Say hello"}],"max_tokens":16}"#,
    );
    let path = format!("/openai/deployments/gpt-4o/chat/completions?api-version={API_VERSION}");

    let mut direct_headers = HeaderMap::new();
    direct_headers.insert("api-key", HeaderValue::from_static(UPSTREAM_KEY));
    direct_headers.insert("content-type", HeaderValue::from_static("application/json"));
    let mut edge_headers = HeaderMap::new();
    edge_headers.insert("api-key", HeaderValue::from_str(&scenario.key)?);
    edge_headers.insert("content-type", HeaderValue::from_static("application/json"));

    let spec = |base: String, headers: &HeaderMap, total: usize| LoadSpec {
        uri: format!("{base}{path}").parse().expect("uri"),
        headers: headers.clone(),
        body: body.clone(),
        concurrency: args.concurrency,
        total,
    };
    let direct_base = scenario.mock.endpoint();
    let edge_base = format!("{}/api/v1", scenario.edge.url());

    // Warm up connection pools and caches on both paths.
    load::run(spec(direct_base.clone(), &direct_headers, 2_000)).await;
    load::run(spec(edge_base.clone(), &edge_headers, 2_000)).await;

    // 1. Throughput: closed loop, the same number of connections on both paths, best of the rounds.
    let mut best_direct: Option<LoadResult> = None;
    let mut best_edge: Option<LoadResult> = None;
    for round in 1..=args.rounds {
        let direct = load::run(spec(direct_base.clone(), &direct_headers, args.requests)).await;
        let edge = load::run(spec(edge_base.clone(), &edge_headers, args.requests)).await;
        println!(
            "throughput round {round}: direct {}, edge {}",
            summary(&direct),
            summary(&edge)
        );
        anyhow::ensure!(
            direct.failed == 0 && edge.failed == 0,
            "requests failed during the benchmark"
        );
        if best_direct
            .as_ref()
            .is_none_or(|b| direct.requests_per_second() > b.requests_per_second())
        {
            best_direct = Some(direct);
        }
        if best_edge
            .as_ref()
            .is_none_or(|b| edge.requests_per_second() > b.requests_per_second())
        {
            best_edge = Some(edge);
        }
    }
    let (direct, edge) = (best_direct.expect("a round"), best_edge.expect("a round"));

    // 2. Latency: open loop at the same fixed rate on both paths, below saturation; rounds
    // alternate between the paths and the round with the median edge p99 is reported.
    let latency_total = (args.rate as usize * args.latency_seconds as usize).max(1);
    let mut latency_rounds = Vec::new();
    for round in 1..=args.rounds {
        let d = load::run_at_rate(
            spec(direct_base.clone(), &direct_headers, latency_total),
            args.rate,
        )
        .await;
        let e = load::run_at_rate(
            spec(edge_base.clone(), &edge_headers, latency_total),
            args.rate,
        )
        .await;
        anyhow::ensure!(
            d.failed == 0 && e.failed == 0,
            "requests failed during the latency run"
        );
        println!(
            "latency round {round}: direct {}, edge {}",
            summary(&d),
            summary(&e)
        );
        latency_rounds.push((d, e));
    }
    latency_rounds.sort_by_key(|(_, e)| e.percentile(99.0));
    let (direct_lat, edge_lat) = latency_rounds.swap_remove(latency_rounds.len() / 2);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!();
    println!(
        "Throughput, closed loop with {} connections (best of {} rounds of {} requests):",
        args.concurrency, args.rounds, args.requests
    );
    println!();
    println!("| path | requests/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    for (name, r) in [("direct to mock", &direct), ("through the edge", &edge)] {
        println!(
            "| {name} | {:.0} | {:.3} | {:.3} |",
            r.requests_per_second(),
            ms(r.percentile(50.0)),
            ms(r.percentile(99.0))
        );
    }
    println!();
    println!(
        "edge/direct throughput ratio: {:.2} (target >= 0.50)",
        edge.requests_per_second() / direct.requests_per_second()
    );
    println!();
    println!(
        "Latency, open loop at {} requests/s for {} s on each path (median of {} rounds):",
        args.rate, args.latency_seconds, args.rounds
    );
    println!();
    println!("| path | p50 ms | p99 ms |");
    println!("|---|---|---|");
    for (name, r) in [
        ("direct to mock", &direct_lat),
        ("through the edge", &edge_lat),
    ] {
        println!(
            "| {name} | {:.3} | {:.3} |",
            ms(r.percentile(50.0)),
            ms(r.percentile(99.0))
        );
    }
    println!();
    println!(
        "added by the edge: p50 {:.3} ms, p99 {:.3} ms (target <= 0.5 ms); edge/direct p99 ratio {:.2}",
        ms(edge_lat.percentile(50.0)) - ms(direct_lat.percentile(50.0)),
        ms(edge_lat.percentile(99.0)) - ms(direct_lat.percentile(99.0)),
        ms(edge_lat.percentile(99.0)) / ms(direct_lat.percentile(99.0)),
    );
    println!(
        "machine: {} cores, load generator, mock, control plane and edge on it together",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    drop::<(MockAzure, ControlPlane, Edge)>((scenario.mock, scenario.cp, scenario.edge));
    Ok(())
}

fn summary(r: &LoadResult) -> String {
    format!(
        "{:.0} req/s p50 {:.3} ms p99 {:.3} ms",
        r.requests_per_second(),
        r.percentile(50.0).as_secs_f64() * 1000.0,
        r.percentile(99.0).as_secs_f64() * 1000.0
    )
}
