//! AI Proxy edge: a stateless HTTP proxy. It holds the catalog in memory (received from the
//! control plane over `EdgeService.Sync`) and never calls a database, a cache or Entra ID; its only
//! network hop per request is the upstream.
//!
//! Layout: `config`, `state` (snapshot + upstream client), `snapshot` (immutable catalog and how
//! updates build the next one), `sync` (the stream client), `server` (HTTP accept loop), `proxy`
//! (the request pipeline and its phases), `maps` (the hash maps requests look things up in), `upstream` (client, pool choice, upstream auth, headers),
//! `ownership` (who owns which Foundry object), `control_calls` (calls to the control plane
//! besides Sync), `sse` (event-stream parsing), `quota` (the events' caps, leased from the control
//! plane), `usage` (metering and usage delivery), `metrics` (the instruments and what they
//! read).

pub mod body;
pub mod config;
pub mod control_calls;
pub mod maps;
pub mod metrics;
pub mod ownership;
pub mod proxy;
pub mod quota;
pub mod server;
pub mod snapshot;
pub mod sse;
pub mod state;
pub mod sync;
pub mod upstream;
pub mod usage;

use std::sync::Arc;

use anyhow::Context;
use tokio::net::{TcpListener, TcpSocket};

use crate::config::EdgeConfig;
use crate::state::EdgeState;
use crate::sync::{SyncClient, SyncSettings};

/// Runs an edge until `shutdown` resolves.
pub async fn run(config: EdgeConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let edge_token = config.resolved_edge_token()?;
    let edge_id = config.resolved_edge_id();
    let state = Arc::new(EdgeState::new(&config, &edge_token, &edge_id)?);
    // Read at each collection while the edge runs.
    let _gauges = metrics::observe(&state);
    let settings = SyncSettings {
        control_plane_url: config.control_plane_url.clone(),
        edge_token,
        edge_id,
        region: config.region.clone(),
    };
    tracing::info!(edge = %settings.edge_id, region = %settings.region, control_plane = %settings.control_plane_url, "edge starting");
    let sync = tokio::spawn(SyncClient::new(settings, state.clone()).run());
    let delivery = {
        let state = state.clone();
        tokio::spawn(async move { state.usage.run(&state.control).await })
    };
    let listener = listen(config.listen_addr)
        .with_context(|| format!("binding AIPROXY_LISTEN_ADDR {}", config.listen_addr))?;
    tracing::info!(addr = %config.listen_addr, "edge listening");
    let result = server::serve(listener, state.clone(), shutdown).await;
    // Every request has ended (or was cut off at the end of the grace period) and left its usage
    // record: deliver them before exiting.
    delivery.abort();
    let _ = delivery.await;
    state
        .usage
        .flush(
            &state.control,
            std::time::Duration::from_secs(config.usage_shutdown_flush_secs),
        )
        .await;
    sync.abort();
    result
}

/// A listener with a backlog deep enough for a burst of connections (the kernel caps it at
/// `net.core.somaxconn`): past a full backlog, new clients' handshakes stall for seconds.
fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(8192)
}
