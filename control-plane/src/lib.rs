//! AI Proxy control plane. It owns the catalog (Postgres, or SQLite in the embedded mode), serves
//! the admin API, and streams the catalog to the edge fleet over gRPC (`EdgeService.Sync`). Edges
//! never reach the database: everything they need arrives on that stream.
//!
//! Layout: `catalog` (types, rules, stores), `ownership` (who created which Foundry object: not
//! catalog state), `usage` (metered usage from the edges), `quota` (request and token caps held
//! in leases), `upkeep` (the hourly purge), `secrets` (encryption, key hashing), `sync` (the edge
//! stream), `grpc` (the gRPC server and the read-only catalog service), `admin` (HTTP API),
//! `metrics` (the instruments and what they read), `bootstrap` (secrets for the embedded mode),
//! `config`.

pub mod admin;
pub mod bootstrap;
pub mod catalog;
pub mod config;
pub mod grpc;
pub mod identity;
pub mod metrics;
pub mod ownership;
pub mod quota;
pub mod secrets;
pub mod sync;
pub mod tokens;
pub mod upkeep;
pub mod usage;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::catalog::service::Catalog;
use crate::config::Config;
use crate::identity::TokenProvider;
use crate::ownership::ObjectOwnership;
use crate::sync::ChangeFeed;
use crate::sync::edges::EdgeRegistry;
use crate::tokens::{
    BrokerSettings, MemoryTokenCache, RedisOrMemoryCache, TokenBroker, TokenCache,
};
use crate::usage::UsageLedger;

/// Runs the control plane until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if config.allow_insecure_upstreams {
        tracing::warn!(
            "AIPROXY_ALLOW_INSECURE_UPSTREAMS=true: plain http:// upstream endpoints are accepted; use this only for local mocks and tests"
        );
    }
    let secrets = bootstrap::resolve(&config)?;
    let store = catalog::store::open(&config.database_url, config.database_max_connections)
        .await
        .with_context(|| "opening the catalog database (AIPROXY_DATABASE_URL)")?;
    let cipher = Arc::new(secrets.cipher);
    let token_cache: Arc<dyn TokenCache> = match &config.redis_url {
        Some(url) => {
            let catalog_id = store.catalog_id().await?;
            RedisOrMemoryCache::start(url.expose(), cipher.clone(), &catalog_id)
                .await
                .map_err(anyhow::Error::msg)?
        }
        None => Arc::new(MemoryTokenCache::default()),
    };
    let broker = TokenBroker::new(
        Arc::new(TokenProvider::new(config.credential, None)),
        token_cache,
        BrokerSettings::default(),
    );
    tracing::info!(
        credential = config.credential.as_str(),
        token_cache = if config.redis_url.is_some() {
            "redis"
        } else {
            "memory"
        },
        "managed identity: tokens are minted on first need"
    );
    let feed = ChangeFeed::new();
    feed.notify(store.current_version().await?);
    feed.notify_forget(store.current_forget_seq().await?);
    // Other replicas' writes: Postgres change notifications, with polling as the fallback.
    let listener = feed.spawn_listener(store.clone(), &config.database_url);
    let poller = feed.spawn_poller(
        store.clone(),
        Duration::from_millis(config.change_poll_ms.max(50)),
    );
    let broker_task = broker.clone().spawn(store.clone(), feed.subscribe());
    let ownership = Arc::new(ObjectOwnership::new(
        store.clone(),
        feed.clone(),
        config.record_lifetimes(),
    ));
    let usage = Arc::new(UsageLedger::new(store.clone()));
    let upkeep = upkeep::spawn(ownership.clone(), usage.clone(), upkeep::UPKEEP_EVERY);
    let catalog = Arc::new(Catalog::new(
        store,
        cipher,
        config.allow_insecure_upstreams,
        feed,
    ));
    let edges = EdgeRegistry::default();
    // Read at each collection while the control plane runs.
    let _gauges = metrics::observe(&edges, catalog.change_feed(), &broker);

    let grpc_listener = TcpListener::bind(config.grpc_addr)
        .await
        .with_context(|| format!("binding AIPROXY_GRPC_ADDR {}", config.grpc_addr))?;
    let admin_listener = TcpListener::bind(config.admin_addr)
        .await
        .with_context(|| format!("binding AIPROXY_ADMIN_ADDR {}", config.admin_addr))?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let grpc = tokio::spawn(grpc::serve(
        grpc_listener,
        grpc::GrpcState {
            catalog: catalog.clone(),
            ownership,
            usage,
            edges: edges.clone(),
            tokens: broker.clone(),
        },
        grpc::GrpcCredentials {
            edge_token: secrets.edge_token,
            catalog_token: secrets.catalog_token,
        },
        config.grpc_reflection,
        grpc::GrpcLimits {
            max_connections: config.grpc_max_connections as usize,
            first_call_timeout: Duration::from_secs(config.grpc_first_call_timeout_secs),
        },
        stopped(stop_rx.clone()),
    ));
    let admin_state = admin::AdminState {
        catalog,
        edges,
        tokens: broker,
        admin_token: secrets.admin_token,
    };
    tracing::info!(addr = %config.admin_addr, "admin API listening");
    let admin = tokio::spawn(admin::server::serve(
        admin_listener,
        admin::router_with_console(admin_state, &config.admin_web_dir),
        config.http_limits(),
        stopped(stop_rx),
    ));

    let mut grpc = grpc;
    let grpc_result = tokio::select! {
        _ = shutdown => None,
        // The gRPC server only returns early on a fatal error.
        result = &mut grpc => Some(result),
    };
    let _ = stop_tx.send(true);
    poller.abort();
    if let Some(listener) = listener {
        listener.abort();
    }
    broker_task.abort();
    upkeep.abort();
    admin.await??;
    match grpc_result {
        Some(result) => result??,
        None => grpc.await??,
    }
    Ok(())
}
