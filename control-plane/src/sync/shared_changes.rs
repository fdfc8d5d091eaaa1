//! Catalog changes read once for every Sync stream that needs the same ones. When a change lands,
//! the connected edges all hold the same version and need the same delta; each stream reading it
//! for itself made one change cost one database read per edge (200 edges: 200 identical reads
//! queued on the pool). Streams ask here instead: a read is shared while it is current.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::catalog::model::CatalogChanges;
use crate::catalog::store::{CatalogStore, StoreResult};

/// Different versions held at once (edges that were away, new edges needing everything).
const KEPT: usize = 8;

pub struct SharedChanges {
    store: Arc<dyn CatalogStore>,
    /// Recent reads: the version they start from (`None`: everything) and what they found.
    recent: tokio::sync::Mutex<VecDeque<(Option<u64>, Arc<CatalogChanges>)>>,
}

impl SharedChanges {
    pub fn new(store: Arc<dyn CatalogStore>) -> Self {
        Self {
            store,
            recent: tokio::sync::Mutex::new(VecDeque::new()),
        }
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
        let mut recent = self.recent.lock().await;
        if let Some((_, changes)) = recent
            .iter()
            .find(|(from, changes)| *from == held && changes.version >= at_least)
        {
            return Ok(changes.clone());
        }
        let changes = Arc::new(self.store.changes_since(held).await?);
        recent.retain(|(from, _)| *from != held);
        if recent.len() >= KEPT {
            recent.pop_front();
        }
        recent.push_back((held, changes.clone()));
        Ok(changes)
    }
}
