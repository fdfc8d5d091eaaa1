//! Catalog distribution to edges: the `EdgeService.Sync` stream (`server`), the conversion of
//! catalog rows to wire messages (`convert`), the registry of connected edges (`edges`), and the
//! change feed that wakes every stream when the catalog version moves.

pub mod convert;
pub mod edges;
pub mod server;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::catalog::store::CatalogStore;

/// The latest catalog version this replica knows of. A hint only: streams always re-read the
/// store by version, so a missed or coalesced notification loses nothing.
#[derive(Clone)]
pub struct ChangeFeed {
    tx: Arc<watch::Sender<u64>>,
}

impl Default for ChangeFeed {
    fn default() -> Self {
        Self::new()
    }
}

impl ChangeFeed {
    pub fn new() -> Self {
        Self {
            tx: Arc::new(watch::channel(0).0),
        }
    }

    pub fn notify(&self, version: u64) {
        self.tx.send_if_modified(|current| {
            if version > *current {
                *current = version;
                true
            } else {
                false
            }
        });
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }

    /// Polls the store's version so that changes written by other control-plane replicas reach
    /// this replica's edges too.
    pub fn spawn_poller(
        &self,
        store: Arc<dyn CatalogStore>,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let feed = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match store.current_version().await {
                    Ok(v) => feed.notify(v),
                    Err(e) => tracing::warn!(error = %e, "could not read the catalog version"),
                }
            }
        })
    }
}
