//! Catalog changes read once for every Sync stream that needs the same ones. When a change lands,
//! the connected edges all hold the same version and need the same delta; each stream reading it
//! for itself made one change cost one database read per edge (200 edges: 200 identical reads
//! queued on the pool). Streams ask here instead: a read is shared while it is current.
//!
//! Reads starting from different versions do not wait for each other: a new edge's full snapshot
//! (hundreds of milliseconds at 100,000 attendees) holds up only the streams that need that same
//! read, not every other edge's delta.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;

use crate::catalog::model::CatalogChanges;
use crate::catalog::store::{CatalogStore, StoreResult};

/// Different versions held at once (edges that were away, new edges needing everything).
const KEPT: usize = 8;

/// The latest read from one starting version; its lock is held while that read is made.
type Slot = Arc<tokio::sync::Mutex<Option<Arc<CatalogChanges>>>>;

/// How changes are read: `CatalogStore::changes_since`.
type Read =
    Box<dyn Fn(Option<u64>) -> BoxFuture<'static, StoreResult<CatalogChanges>> + Send + Sync>;

pub struct SharedChanges {
    read: Read,
    /// One slot per starting version (`None`: everything), oldest first.
    slots: Mutex<VecDeque<(Option<u64>, Slot)>>,
}

impl SharedChanges {
    pub fn new(store: Arc<dyn CatalogStore>) -> Self {
        Self::reading(Box::new(move |held| {
            let store = store.clone();
            Box::pin(async move { store.changes_since(held).await })
        }))
    }

    fn reading(read: Read) -> Self {
        Self {
            read,
            slots: Mutex::new(VecDeque::new()),
        }
    }

    fn slot(&self, held: Option<u64>) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, slot)) = slots.iter().find(|(from, _)| *from == held) {
            return slot.clone();
        }
        if slots.len() >= KEPT {
            slots.pop_front();
        }
        let slot = Slot::default();
        slots.push_back((held, slot.clone()));
        slot
    }

    /// `store.changes_since(held)`, as of catalog version `at_least` or later: a read made for
    /// another stream is reused when it starts from the same version and reaches `at_least`
    /// (writes after it raise the version streams ask for, so they are never missed). Streams
    /// asking for the same read meanwhile wait for it rather than read again.
    pub async fn since(
        &self,
        held: Option<u64>,
        at_least: u64,
    ) -> StoreResult<Arc<CatalogChanges>> {
        let slot = self.slot(held);
        let mut latest = slot.lock().await;
        if let Some(changes) = latest.as_ref().filter(|c| c.version >= at_least) {
            return Ok(changes.clone());
        }
        let changes = Arc::new((self.read)(held).await?);
        *latest = Some(changes.clone());
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// Reads return version 10; a full read (`None`) waits until `release` is notified.
    fn shared(reads: Arc<AtomicUsize>, release: Arc<tokio::sync::Notify>) -> SharedChanges {
        SharedChanges::reading(Box::new(move |held| {
            let (reads, release) = (reads.clone(), release.clone());
            Box::pin(async move {
                reads.fetch_add(1, Ordering::SeqCst);
                if held.is_none() {
                    release.notified().await;
                }
                Ok(CatalogChanges {
                    version: 10,
                    full: held.is_none(),
                    ..Default::default()
                })
            })
        }))
    }

    #[tokio::test]
    async fn a_slow_full_read_does_not_hold_up_a_delta() {
        let (reads, release) = (Arc::default(), Arc::new(tokio::sync::Notify::new()));
        let changes = Arc::new(shared(Arc::clone(&reads), release.clone()));
        let full = tokio::spawn({
            let changes = changes.clone();
            async move { changes.since(None, 10).await.unwrap() }
        });
        tokio::task::yield_now().await;
        let delta = tokio::time::timeout(Duration::from_secs(5), changes.since(Some(9), 10))
            .await
            .expect("the delta was read while the full read was still going")
            .unwrap();
        assert!(!delta.full);
        release.notify_one();
        assert!(full.await.unwrap().full);
    }

    #[tokio::test]
    async fn streams_wanting_the_same_read_share_it_until_a_newer_version_is_asked() {
        let (reads, release) = (Arc::new(AtomicUsize::new(0)), Arc::default());
        let changes = Arc::new(shared(reads.clone(), release));
        let asks: Vec<_> = (0..20)
            .map(|_| {
                let changes = changes.clone();
                tokio::spawn(async move { changes.since(Some(9), 10).await.unwrap() })
            })
            .collect();
        for ask in asks {
            assert_eq!(ask.await.unwrap().version, 10);
        }
        assert_eq!(
            reads.load(Ordering::SeqCst),
            1,
            "one read for twenty streams"
        );
        changes.since(Some(9), 11).await.unwrap();
        assert_eq!(
            reads.load(Ordering::SeqCst),
            2,
            "a newer version is read again"
        );
    }
}
