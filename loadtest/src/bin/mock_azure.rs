//! `mock-azure`: the mock Azure OpenAI upstream as a standalone server, for manual runs and demos.

use std::net::SocketAddr;
use std::time::Duration;

use aiproxy_loadtest::mock::{ExpectedAuth, MockAzure, MockConfig};
use aiproxy_loadtest::otlp::CountingSink;
use clap::Parser;

#[derive(Parser)]
#[command(about = "Mock Azure OpenAI upstream (loopback only)")]
struct Args {
    /// Listen address (keep it on loopback).
    #[arg(long, default_value = "127.0.0.1:9100")]
    listen: SocketAddr,
    /// Require this api-key on every request (default: accept any).
    #[arg(long)]
    api_key: Option<String>,
    /// Content chunks per streamed chat completion.
    #[arg(long, default_value_t = 4)]
    stream_chunks: usize,
    /// Milliseconds between streamed chunks.
    #[arg(long, default_value_t = 50)]
    stream_delay_ms: u64,
    /// Also run an OTLP/gRPC sink on this address (keep it on loopback) that counts the spans it
    /// receives and prints the count when it changes (at most once a second).
    #[arg(long)]
    otlp_listen: Option<SocketAddr>,
    /// The sink's OTLP/HTTP address (with --otlp-listen; default: a free loopback port).
    #[arg(long, requires = "otlp_listen", default_value = "127.0.0.1:0")]
    otlp_http_listen: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = MockConfig {
        auth: args
            .api_key
            .map(ExpectedAuth::ApiKey)
            .unwrap_or(ExpectedAuth::Any),
        stream_chunks: args.stream_chunks,
        stream_chunk_delay: Duration::from_millis(args.stream_delay_ms),
        ..Default::default()
    };
    let mock = MockAzure::start_on(args.listen, config).await?;
    println!("mock Azure OpenAI listening on {}", mock.endpoint());
    if let Some(addr) = args.otlp_listen {
        let sink = CountingSink::start_on(addr, args.otlp_http_listen).await?;
        println!(
            "OTLP sink listening on {} (gRPC) and {} (HTTP)",
            sink.endpoint(),
            sink.http_endpoint()
        );
        // The task owns the sink: it runs until the process ends.
        tokio::spawn(async move {
            let mut printed = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = sink.spans();
                if now != printed {
                    println!("OTLP spans received: {now}");
                    printed = now;
                }
            }
        });
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}
