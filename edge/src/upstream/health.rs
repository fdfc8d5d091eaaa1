//! Pool member health: a member that answers 429 or a 5xx, or cannot be reached, is left out of its
//! pool for a while (its `Retry-After` when it gives one, else a few seconds), so traffic moves to
//! the other members. Local to each edge; nothing to share.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{HeaderMap, StatusCode};

const DEFAULT_THROTTLED: Duration = Duration::from_secs(10);
const DEFAULT_FAILING: Duration = Duration::from_secs(5);
const LONGEST: Duration = Duration::from_secs(120);

#[derive(Default)]
pub struct PoolHealth {
    tripped_until: Mutex<HashMap<String, Instant>>,
}

/// Whether an upstream answer means "try another member": throttled or failing.
pub fn trips(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

impl PoolHealth {
    pub fn is_healthy(&self, resource_id: &str) -> bool {
        let map = self.tripped_until.lock().unwrap_or_else(|p| p.into_inner());
        map.get(resource_id)
            .is_none_or(|until| *until <= Instant::now())
    }

    /// Every member ever left out, and whether it still is (for the pool-health gauge).
    pub fn members(&self) -> Vec<(String, bool)> {
        let now = Instant::now();
        let map = self.tripped_until.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .map(|(id, until)| (id.clone(), *until > now))
            .collect()
    }

    /// Leaves the member out after an answer with `status` (or an unreachable member: `None`).
    pub fn trip(&self, resource_id: &str, status: Option<StatusCode>, headers: Option<&HeaderMap>) {
        let retry_after = headers
            .and_then(|h| h.get(http::header::RETRY_AFTER))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let default = if status == Some(StatusCode::TOO_MANY_REQUESTS) {
            DEFAULT_THROTTLED
        } else {
            DEFAULT_FAILING
        };
        let pause = retry_after.unwrap_or(default).min(LONGEST);
        tracing::info!(resource = resource_id, status = ?status, pause_s = pause.as_secs(), "pool member left out");
        let mut map = self.tripped_until.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(resource_id.to_string(), Instant::now() + pause);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tripped_member_comes_back_after_its_retry_after() {
        let health = PoolHealth::default();
        assert!(health.is_healthy("a"));
        let mut headers = HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, "0".parse().unwrap());
        health.trip("a", Some(StatusCode::TOO_MANY_REQUESTS), Some(&headers));
        assert!(health.is_healthy("a"), "Retry-After: 0 means at once");
        health.trip("a", Some(StatusCode::SERVICE_UNAVAILABLE), None);
        assert!(!health.is_healthy("a"));
        assert!(trips(StatusCode::TOO_MANY_REQUESTS) && trips(StatusCode::BAD_GATEWAY));
        assert!(!trips(StatusCode::BAD_REQUEST) && !trips(StatusCode::OK));
    }
}
