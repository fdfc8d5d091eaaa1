//! Catalog distribution to edges: the `EdgeService` gRPC service (`server`), one Sync stream's
//! loop (`session`), the cutting of large updates into messages of bounded size (`chunks`), the
//! conversion of catalog rows to wire messages (`convert`), the registry of connected edges
//! (`edges`), and the change feed that wakes every stream when the catalog version or the forget
//! sequence moves: raised by this replica's own writes, by Postgres change notifications from the
//! other replicas (`listen`), and by a poller kept as the fallback.

pub mod chunks;
pub mod convert;
pub mod edges;
pub mod listen;
pub mod server;
mod session;
mod shared_changes;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::catalog::store::CatalogStore;

/// The latest catalog version, and the latest forget sequence number (ownership records dropped,
/// see `ownership`), this replica knows of. Hints only: streams always re-read the store by number,
/// so a missed or coalesced notification loses nothing.
#[derive(Clone)]
pub struct ChangeFeed {
    versions: Arc<watch::Sender<u64>>,
    forgets: Arc<watch::Sender<u64>>,
}

impl Default for ChangeFeed {
    fn default() -> Self {
        Self::new()
    }
}

/// Raises the watched number to `to`; never lowers it.
fn raise(tx: &watch::Sender<u64>, to: u64) {
    tx.send_if_modified(|current| {
        if to > *current {
            *current = to;
            true
        } else {
            false
        }
    });
}

impl ChangeFeed {
    pub fn new() -> Self {
        Self {
            versions: Arc::new(watch::channel(0).0),
            forgets: Arc::new(watch::channel(0).0),
        }
    }

    pub fn notify(&self, version: u64) {
        raise(&self.versions, version);
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.versions.subscribe()
    }

    /// The latest catalog version this replica knows of.
    pub fn version(&self) -> u64 {
        *self.versions.borrow()
    }

    pub fn notify_forget(&self, seq: u64) {
        raise(&self.forgets, seq);
    }

    pub fn subscribe_forgets(&self) -> watch::Receiver<u64> {
        self.forgets.subscribe()
    }

    /// Re-reads the store's catalog version and forget sequence and raises the feed to them.
    pub async fn refresh(&self, store: &dyn CatalogStore) {
        match store.current_version().await {
            Ok(v) => self.notify(v),
            Err(e) => tracing::warn!(error = %e, "could not read the catalog version"),
        }
        match store.current_forget_seq().await {
            Ok(seq) => self.notify_forget(seq),
            Err(e) => tracing::warn!(error = %e, "could not read the forget sequence"),
        }
    }

    /// Polls the store's catalog version and forget sequence so that changes written by other
    /// control-plane replicas reach this replica's edges too (the fallback when change
    /// notifications are not available or were missed).
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
                feed.refresh(store.as_ref()).await;
            }
        })
    }

    /// On Postgres, listens for the change notifications other replicas' commits send (see
    /// `listen`); `None` for a database without them (SQLite: one replica).
    pub fn spawn_listener(
        &self,
        store: Arc<dyn CatalogStore>,
        database_url: &str,
    ) -> Option<tokio::task::JoinHandle<()>> {
        listen::supported(database_url)
            .then(|| listen::spawn(self.clone(), store, database_url.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_feed_only_moves_forward_and_keeps_versions_and_forgets_apart() {
        let feed = ChangeFeed::new();
        let mut versions = feed.subscribe();
        let mut forgets = feed.subscribe_forgets();
        feed.notify_forget(3);
        assert!(!versions.has_changed().unwrap());
        assert!(forgets.has_changed().unwrap());
        assert_eq!(*forgets.borrow_and_update(), 3);
        feed.notify_forget(2);
        assert!(!forgets.has_changed().unwrap(), "a lower number is stale");
        feed.notify(5);
        assert_eq!(*versions.borrow_and_update(), 5);
    }
}
