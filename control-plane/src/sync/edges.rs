//! Which edges are connected, what version each holds and what it last said (ACK/NACK); shown by
//! the admin API at `/admin/api/v1/edges`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use serde::Serialize;

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
}

#[derive(Clone, Default)]
pub struct EdgeRegistry {
    inner: Arc<Mutex<HashMap<String, EdgeStatus>>>,
}

impl EdgeRegistry {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, EdgeStatus>) -> R) -> R {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    pub fn connected(&self, edge_id: &str, region: &str, software_version: &str, held: u64) {
        self.with(|m| {
            m.insert(
                edge_id.to_string(),
                EdgeStatus {
                    edge_id: edge_id.to_string(),
                    region: region.to_string(),
                    software_version: software_version.to_string(),
                    connected: true,
                    connected_at: Utc::now().to_rfc3339(),
                    hello_version: held,
                    version_sent: 0,
                    version_acked: held,
                    last_nack: None,
                },
            );
        });
    }

    pub fn sent(&self, edge_id: &str, version: u64) {
        self.with(|m| m.get_mut(edge_id).map(|s| s.version_sent = version));
    }

    pub fn acked(&self, edge_id: &str, version: u64) {
        self.with(|m| {
            m.get_mut(edge_id).map(|s| {
                s.version_acked = version;
                s.last_nack = None;
            })
        });
    }

    pub fn nacked(&self, edge_id: &str, error: &str) {
        self.with(|m| {
            m.get_mut(edge_id)
                .map(|s| s.last_nack = Some(error.to_string()))
        });
    }

    pub fn disconnected(&self, edge_id: &str) {
        self.with(|m| m.get_mut(edge_id).map(|s| s.connected = false));
    }

    pub fn list(&self) -> Vec<EdgeStatus> {
        let mut all: Vec<EdgeStatus> = self.with(|m| m.values().cloned().collect());
        all.sort_by(|a, b| a.edge_id.cmp(&b.edge_id));
        all
    }
}
