//! Which edges are connected, what version each holds, what it last said (ACK/NACK) and why its
//! previous stream ended; shown by the admin API at `/admin/api/v1/edges`.
//!
//! An edge that reconnects gets a new session before the old one has noticed its stream is gone.
//! Each session therefore holds a handle (`EdgeSession`) stamped with a generation, and only the
//! newest session of an edge id may change that edge's status: a late disconnect of an old session
//! leaves the new one connected.
//!
//! Edge ids come and go (every replica restart may bring a new one), so an edge that has been
//! disconnected for longer than the registry's expiry (an hour by default) is forgotten.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aiproxy_proto::v1 as pb;
use chrono::Utc;
use serde::Serialize;

/// Longest text kept from an edge (errors it reports): it is peer input, shown and logged.
const MAX_REPORTED_TEXT: usize = 2048;
/// How long a disconnected edge stays listed.
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Serialize)]
pub struct EdgeStatus {
    pub edge_id: String,
    pub region: String,
    pub software_version: String,
    pub connected: bool,
    pub connected_at: String,
    /// The version the edge said it held when it connected (0: it had nothing).
    pub hello_version: u64,
    pub version_sent: u64,
    pub version_acked: u64,
    pub last_nack: Option<String>,
    /// Why the edge's previous stream ended, as the edge reported it in its Hello.
    pub last_error: Option<String>,
    /// When its stream ended (RFC 3339); `None` while connected.
    pub disconnected_at: Option<String>,
}

struct Entry {
    status: EdgeStatus,
    generation: u64,
    disconnected: Option<Instant>,
}

#[derive(Default)]
struct Edges {
    by_id: HashMap<String, Entry>,
    next_generation: u64,
}

#[derive(Clone)]
pub struct EdgeRegistry {
    inner: Arc<Mutex<Edges>>,
    expiry: Duration,
}

impl Default for EdgeRegistry {
    fn default() -> Self {
        Self::with_expiry(DEFAULT_EXPIRY)
    }
}

impl EdgeRegistry {
    /// A registry that forgets edges disconnected for longer than `expiry`.
    pub fn with_expiry(expiry: Duration) -> Self {
        Self {
            inner: Arc::default(),
            expiry,
        }
    }

    /// Runs `f` on the edges, after dropping the ones disconnected for longer than the expiry.
    fn with<R>(&self, f: impl FnOnce(&mut Edges) -> R) -> R {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let expiry = self.expiry;
        guard
            .by_id
            .retain(|_, e| e.disconnected.is_none_or(|at| at.elapsed() <= expiry));
        f(&mut guard)
    }

    /// Registers a new session for the edge that sent `hello`; it replaces any older session's
    /// status. The edge counts as disconnected when the returned handle is dropped.
    pub fn connected(&self, hello: &pb::Hello) -> EdgeSession {
        let generation = self.with(|edges| {
            edges.next_generation += 1;
            let generation = edges.next_generation;
            let status = EdgeStatus {
                edge_id: hello.edge_id.clone(),
                region: hello.region.clone(),
                software_version: hello.software_version.clone(),
                connected: true,
                connected_at: Utc::now().to_rfc3339(),
                hello_version: hello.version,
                version_sent: 0,
                version_acked: hello.version,
                last_nack: None,
                last_error: Some(bounded(&hello.last_error)).filter(|e| !e.is_empty()),
                disconnected_at: None,
            };
            edges.by_id.insert(
                hello.edge_id.clone(),
                Entry {
                    status,
                    generation,
                    disconnected: None,
                },
            );
            generation
        });
        EdgeSession {
            registry: self.clone(),
            edge_id: hello.edge_id.clone(),
            generation,
        }
    }

    /// How many edges are connected, per region they reported.
    pub fn connected_by_region(&self) -> BTreeMap<String, u64> {
        self.with(|edges| {
            let mut regions = BTreeMap::new();
            for entry in edges.by_id.values().filter(|e| e.status.connected) {
                *regions.entry(entry.status.region.clone()).or_insert(0) += 1;
            }
            regions
        })
    }

    pub fn list(&self) -> Vec<EdgeStatus> {
        let mut all: Vec<EdgeStatus> =
            self.with(|edges| edges.by_id.values().map(|e| e.status.clone()).collect());
        all.sort_by(|a, b| a.edge_id.cmp(&b.edge_id));
        all
    }
}

/// One Sync session's hold on its edge's status.
pub struct EdgeSession {
    registry: EdgeRegistry,
    edge_id: String,
    generation: u64,
}

impl EdgeSession {
    /// Applies `f` to the edge's entry if this is still its newest session.
    fn update_entry(&self, f: impl FnOnce(&mut Entry)) {
        self.registry.with(|edges| {
            if let Some(entry) = edges.by_id.get_mut(&self.edge_id)
                && entry.generation == self.generation
            {
                f(entry);
            }
        });
    }

    fn update(&self, f: impl FnOnce(&mut EdgeStatus)) {
        self.update_entry(|entry| f(&mut entry.status));
    }

    pub fn sent(&self, version: u64) {
        self.update(|s| s.version_sent = version);
    }

    pub fn acked(&self, version: u64) {
        self.update(|s| {
            s.version_acked = version;
            s.last_nack = None;
        });
    }

    pub fn nacked(&self, error: &str) {
        let error = bounded(error);
        self.update(|s| s.last_nack = Some(error));
    }
}

impl Drop for EdgeSession {
    fn drop(&mut self) {
        self.update_entry(|entry| {
            entry.status.connected = false;
            entry.status.disconnected_at = Some(Utc::now().to_rfc3339());
            entry.disconnected = Some(Instant::now());
        });
    }
}

/// `text` cut to at most `MAX_REPORTED_TEXT` bytes, on a character boundary.
fn bounded(text: &str) -> String {
    if text.len() <= MAX_REPORTED_TEXT {
        return text.to_string();
    }
    let mut end = MAX_REPORTED_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(last_error: &str) -> pb::Hello {
        pb::Hello {
            edge_id: "edge-1".into(),
            region: "swedencentral".into(),
            version: 4,
            software_version: "test".into(),
            catalog_id: "c".into(),
            last_error: last_error.into(),
        }
    }

    #[test]
    fn a_late_disconnect_of_an_old_session_leaves_the_new_one_connected() {
        let registry = EdgeRegistry::default();
        let old = registry.connected(&hello(""));
        let new = registry.connected(&hello("stream reset"));
        old.acked(99);
        drop(old);
        let status = &registry.list()[0];
        assert!(status.connected);
        assert_eq!(status.version_acked, 4, "the old session no longer writes");
        new.sent(5);
        new.acked(5);
        assert_eq!(registry.list()[0].version_acked, 5);
        drop(new);
        assert!(!registry.list()[0].connected);
    }

    #[test]
    fn edges_disconnected_longer_than_the_expiry_are_forgotten() {
        let registry = EdgeRegistry::with_expiry(Duration::from_millis(50));
        let gone = registry.connected(&hello(""));
        let mut other = hello("");
        other.edge_id = "edge-2".into();
        let _staying = registry.connected(&other);
        drop(gone);
        let listed = registry.list();
        assert_eq!(listed.len(), 2, "a fresh disconnect is still shown");
        assert!(listed[0].disconnected_at.is_some());
        std::thread::sleep(Duration::from_millis(80));
        let listed = registry.list();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].edge_id, "edge-2", "connected edges never expire");
    }

    #[test]
    fn the_previous_stream_error_is_kept_and_bounded() {
        let registry = EdgeRegistry::default();
        let _quiet = registry.connected(&hello(""));
        assert_eq!(registry.list()[0].last_error, None);
        let long = "é".repeat(MAX_REPORTED_TEXT);
        let _failed = registry.connected(&hello(&long));
        let kept = registry.list()[0].last_error.clone().unwrap();
        assert!(kept.len() <= MAX_REPORTED_TEXT + '…'.len_utf8());
        assert!(kept.starts_with("éé"));
    }
}
