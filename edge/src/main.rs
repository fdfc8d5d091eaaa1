use clap::Parser;

use aiproxy_edge::config::EdgeConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = aiproxy_telemetry::init("aiproxy-edge", "info")?;
    let config = EdgeConfig::parse();
    let result = aiproxy_edge::run(config, shutdown_signal()).await;
    // The servers have stopped: export what is buffered before exiting.
    telemetry.shutdown().await;
    result
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
