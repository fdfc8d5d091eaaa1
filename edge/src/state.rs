//! State shared by every request and the sync client: the current snapshot and the upstream client.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aiproxy_proto::v1 as pb;
use arc_swap::ArcSwap;

use crate::config::EdgeConfig;
use crate::snapshot::CatalogSnapshot;
use crate::upstream::UpstreamClient;

pub struct EdgeState {
    snapshot: ArcSwap<CatalogSnapshot>,
    pub upstream: UpstreamClient,
    pub region: String,
    pub max_json_body_bytes: usize,
    /// A managed-identity token is not used in its last `token_margin_ms`.
    pub token_margin_ms: i64,
    round_robin: AtomicUsize,
}

impl EdgeState {
    pub fn new(config: &EdgeConfig) -> anyhow::Result<Self> {
        Ok(Self {
            snapshot: ArcSwap::from_pointee(CatalogSnapshot::default()),
            upstream: UpstreamClient::new(config.upstream_timeout())?,
            region: config.region.clone(),
            max_json_body_bytes: config.max_json_body_bytes,
            token_margin_ms: config.token_expiry_margin_secs as i64 * 1000,
            round_robin: AtomicUsize::new(0),
        })
    }

    pub fn snapshot(&self) -> Arc<CatalogSnapshot> {
        self.snapshot.load_full()
    }

    /// Builds the next snapshot and swaps it in; on error the current one stays.
    pub fn apply_update(&self, update: pb::SyncUpdate) -> Result<(), String> {
        let next = self.snapshot.load().apply(update)?;
        tracing::info!(
            version = next.version,
            resources = next.resource_count(),
            "catalog snapshot applied"
        );
        self.snapshot.store(Arc::new(next));
        Ok(())
    }

    pub fn next_round_robin(&self) -> usize {
        self.round_robin.fetch_add(1, Ordering::Relaxed)
    }
}
