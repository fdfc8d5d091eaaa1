//! State shared by every request and the sync client: the current snapshot and the upstream client.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aiproxy_proto::v1 as pb;
use arc_swap::ArcSwap;

use crate::config::{EdgeConfig, Limits};
use crate::control_calls::ControlPlaneCalls;
use crate::metrics::EdgeMetrics;
use crate::ownership::Ownership;
use crate::quota::Quotas;
use crate::snapshot::CatalogSnapshot;
use crate::snapshot::persist::SnapshotFile;
use crate::upstream::UpstreamClient;
use crate::upstream::health::PoolHealth;
use crate::usage::UsageDelivery;

/// How the Sync stream is doing, as `/readyz` shows it.
#[derive(Debug, Clone, Default)]
pub struct SyncStatus {
    pub connected: bool,
    pub failures_in_a_row: u32,
    /// Why the last stream failed; kept until a stream delivers an update again.
    pub last_error: Option<String>,
    /// When the last connected stream ended (the catalog may be stale since).
    pub lost_at: Option<std::time::Instant>,
}

pub struct EdgeState {
    snapshot: ArcSwap<CatalogSnapshot>,
    /// Where the last-known-good snapshot is kept, when `AIPROXY_EDGE_STATE_DIR` is set.
    state_file: Option<SnapshotFile>,
    pub upstream: UpstreamClient,
    /// Calls to the control plane for shared state (ownership records, leases).
    pub control: ControlPlaneCalls,
    /// Who owns which Foundry object: a bounded cache over the control plane's records.
    pub ownership: Ownership,
    sync: Mutex<SyncStatus>,
    /// Leases on the events' caps (daily requests and tokens, the event token budget).
    pub quota: Quotas,
    /// Usage records on their way to the control plane.
    pub usage: UsageDelivery,
    /// Answers still read after their client left (their records are still to come).
    pub drains: Arc<crate::usage::Drains>,
    /// Runs and responses at work that no client may read to their end (see `usage::follow`).
    pub follow_ups: crate::usage::FollowUps,
    /// Where the agent projects' connections point (the Azure AI Search tool's check).
    pub connection_targets: crate::proxy::foundry::search_tools::ConnectionTargets,
    /// Pool members left out after 429s and failures.
    pub health: PoolHealth,
    pub metrics: EdgeMetrics,
    pub region: Arc<str>,
    pub max_json_body_bytes: usize,
    pub limits: Limits,
    /// Set on SIGTERM: readiness answers 503 while open requests finish.
    draining: std::sync::atomic::AtomicBool,
    /// A managed-identity token is not used in its last `token_margin_ms`.
    pub token_margin_ms: i64,
    round_robin: AtomicUsize,
}

impl EdgeState {
    pub fn new(config: &EdgeConfig, edge_token: &str, edge_id: &str) -> anyhow::Result<Self> {
        let state_file = config
            .state_dir
            .as_deref()
            .map(|dir| SnapshotFile::new(dir, edge_token));
        let initial = match state_file.as_ref().map(SnapshotFile::load) {
            Some(Ok(Some(snapshot))) => {
                tracing::info!(
                    version = snapshot.version,
                    "serving the last-known-good snapshot from disk until the control plane answers"
                );
                snapshot
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "ignoring the stored snapshot");
                CatalogSnapshot::default()
            }
            _ => CatalogSnapshot::default(),
        };
        Ok(Self {
            snapshot: ArcSwap::from_pointee(initial),
            state_file,
            upstream: UpstreamClient::new(config.upstream_timeout())?,
            control: ControlPlaneCalls::new(
                &config.control_plane_url,
                edge_token,
                config.limits().control_call_deadline,
            )?,
            ownership: Ownership::new(
                config.ownership_cache_entries,
                i64::try_from(config.ownership_negative_ttl_ms).unwrap_or(i64::MAX),
            ),
            sync: Mutex::new(SyncStatus::default()),
            quota: Quotas::default(),
            usage: UsageDelivery::new(
                edge_id,
                config.usage_delivery(),
                config.state_dir.as_deref(),
            ),
            drains: Arc::default(),
            follow_ups: crate::usage::FollowUps::new(config.follow_ups_per_attendee),
            connection_targets: Default::default(),
            health: PoolHealth::default(),
            metrics: EdgeMetrics::from_telemetry(),
            region: config.region.as_str().into(),
            max_json_body_bytes: config.max_json_body_bytes,
            limits: config.limits(),
            draining: std::sync::atomic::AtomicBool::new(false),
            token_margin_ms: config.token_expiry_margin_secs as i64 * 1000,
            round_robin: AtomicUsize::new(0),
        })
    }

    pub fn snapshot(&self) -> Arc<CatalogSnapshot> {
        self.snapshot.load_full()
    }

    /// Builds the next snapshot and swaps it in; on error the current one stays.
    pub fn apply_update(&self, update: pb::SyncUpdate) -> Result<(), String> {
        let current = self.snapshot.load();
        if current.unchanged_by(&update) {
            // An ownership invalidation or the same tokens again: nothing to rebuild or store.
            return Ok(());
        }
        let next = current.apply(update)?;
        tracing::info!(
            version = next.version,
            resources = next.resource_count(),
            "catalog snapshot applied"
        );
        let next = Arc::new(next);
        self.snapshot.store(next.clone());
        if let Some(file) = &self.state_file
            && let Err(e) = file.store(&next)
        {
            tracing::warn!(file = %file.path().display(), error = %e, "could not keep the last-known-good snapshot on disk");
        }
        release_freed_memory();
        Ok(())
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub fn sync_status(&self) -> SyncStatus {
        self.sync.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The sync client reports each stream's start and end here (for `/readyz`).
    pub fn set_sync_status(&self, update: impl FnOnce(&mut SyncStatus)) {
        update(&mut self.sync.lock().unwrap_or_else(|p| p.into_inner()));
    }

    pub fn next_round_robin(&self) -> usize {
        self.round_robin.fetch_add(1, Ordering::Relaxed)
    }
}

/// Applying an update (decoding it, building the next snapshot, writing the state file) allocates
/// transiently about as much as the catalog itself; glibc keeps what is freed in its arenas, so a
/// large catalog would leave the edge's RSS at its high-water mark. Hand it back to the system.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's `malloc_trim` takes no pointers and may be called at any time from any
        // thread; it only returns free memory at the top of the heaps to the system.
        unsafe {
            malloc_trim(0);
        }
    }
}
