//! Foundry object ownership: which attendee created which agent, thread, file, vector store,
//! conversation or response through the proxy, so that edges keep attendees apart. It is not
//! catalog state — it grows with what attendees do — so it takes no catalog version and never rides
//! the Sync snapshot: the creating edge records objects before it answers, other edges look owners
//! up on demand, and forgets reach every edge's cache as small invalidations on the Sync stream.
//!
//! This module holds the rules the gRPC handlers apply: what an edge may send, how long a record
//! lasts (responses expire with Azure's stored responses; other objects last until deleted or
//! until their event is), the change-feed nudge that makes forgets prompt, and what the hourly
//! upkeep (`upkeep.rs`) does for ownership records.

use std::sync::Arc;

use crate::catalog::model::FoundryObject;
use crate::catalog::service::{CatalogError, CatalogResult};
use crate::catalog::store::CatalogStore;
use crate::sync::ChangeFeed;

/// Most objects (or references) one call may carry.
pub const MAX_OBJECTS_PER_CALL: usize = 1000;
/// Largest page `list` returns.
pub const MAX_PAGE: u32 = 100;
/// Longest kind, id or name an edge may send, in bytes (Azure's ids are far shorter).
const MAX_FIELD_BYTES: usize = 1024;
/// How long forget invalidations are kept for streams that have not read them yet. A stream that
/// falls further behind gets a cache reset instead.
const FORGET_LOG_KEEP_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// How long ownership records last, by kind (`AIPROXY_RESPONSE_RECORD_TTL_DAYS`,
/// `AIPROXY_OBJECT_RECORD_TTL_DAYS`); 0 days: until deleted, or until the event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLifetimes {
    pub response_days: u32,
    pub other_days: u32,
}

impl Default for RecordLifetimes {
    fn default() -> Self {
        Self {
            response_days: 30,
            other_days: 0,
        }
    }
}

impl RecordLifetimes {
    /// When a record of `kind` made at `now_ms` expires (0: never).
    pub fn expires_at_ms(&self, kind: &str, now_ms: i64) -> i64 {
        let days = if kind == "response" {
            self.response_days
        } else {
            self.other_days
        };
        if days == 0 {
            0
        } else {
            now_ms.saturating_add(i64::from(days) * DAY_MS)
        }
    }
}

/// A `ListOwnedObjects` request.
#[derive(Debug, Clone, Default)]
pub struct OwnedObjectsQuery {
    pub event_id: String,
    pub user_id: String,
    pub kind: String,
    /// Start after this record (one of the attendee's); `None`: from the start.
    pub after_id: Option<String>,
    pub descending: bool,
    /// Clamped to `1..=MAX_PAGE`.
    pub limit: u32,
}

pub struct ObjectOwnership {
    store: Arc<dyn CatalogStore>,
    changes: ChangeFeed,
    lifetimes: RecordLifetimes,
}

impl ObjectOwnership {
    pub fn new(
        store: Arc<dyn CatalogStore>,
        changes: ChangeFeed,
        lifetimes: RecordLifetimes,
    ) -> Self {
        Self {
            store,
            changes,
            lifetimes,
        }
    }

    /// Records every object or none (see `OwnershipStore::record_objects`); how many this call
    /// wrote. The record time and the expiry are set here, whatever the edge sent.
    pub async fn record(&self, mut objects: Vec<FoundryObject>) -> CatalogResult<usize> {
        check_count("objects", objects.len())?;
        let now = now_ms();
        for o in &mut objects {
            required("kind", &o.kind)?;
            required("id", &o.id)?;
            required("event_id", &o.event_id)?;
            required("user_id", &o.user_id)?;
            bounded("resource_id", &o.resource_id)?;
            bounded("alias_of", &o.alias_of)?;
            o.created_at_ms = now;
            o.expires_at_ms = self.lifetimes.expires_at_ms(&o.kind, now);
        }
        Ok(self.store.record_objects(&objects).await?)
    }

    /// Forgets a deleted object and its aliases, and wakes this replica's Sync streams at once
    /// (other replicas' streams notice through their poller). Returns the forget sequence number.
    pub async fn forget(&self, kind: &str, id: &str) -> CatalogResult<u64> {
        required("kind", kind)?;
        required("id", id)?;
        let seq = self.store.forget_object(kind, id).await?;
        self.changes.notify_forget(seq);
        Ok(seq)
    }

    /// The unexpired records among `refs` (`(kind, id)`); unknown ones are left out.
    pub async fn lookup(&self, refs: &[(String, String)]) -> CatalogResult<Vec<FoundryObject>> {
        check_count("refs", refs.len())?;
        for (kind, id) in refs {
            required("kind", kind)?;
            required("id", id)?;
        }
        Ok(self.store.lookup_objects(refs, now_ms()).await?)
    }

    /// One page of an attendee's records of one kind, and whether more follow.
    pub async fn list(
        &self,
        query: &OwnedObjectsQuery,
    ) -> CatalogResult<(Vec<FoundryObject>, bool)> {
        required("event_id", &query.event_id)?;
        required("user_id", &query.user_id)?;
        required("kind", &query.kind)?;
        if let Some(after) = &query.after_id {
            bounded("after_id", after)?;
        }
        let limit = query.limit.clamp(1, MAX_PAGE);
        Ok(self
            .store
            .list_owned_objects(
                &query.event_id,
                &query.user_id,
                &query.kind,
                query.after_id.as_deref(),
                query.descending,
                limit,
                now_ms(),
            )
            .await?)
    }

    /// Purges expired records and prunes old forget invalidations. Every replica may run it: both
    /// are idempotent deletes.
    pub async fn upkeep(&self, now_ms: i64) -> CatalogResult<()> {
        let purged = self.store.purge_expired_objects(now_ms).await?;
        let pruned = self
            .store
            .prune_forgets(now_ms.saturating_sub(FORGET_LOG_KEEP_MS))
            .await?;
        tracing::debug!(purged, pruned, "ownership records upkeep");
        Ok(())
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn check_count(field: &'static str, n: usize) -> CatalogResult<()> {
    if n > MAX_OBJECTS_PER_CALL {
        return Err(CatalogError::invalid(
            field,
            format!("at most {MAX_OBJECTS_PER_CALL} per call, got {n}: split the batch"),
        ));
    }
    Ok(())
}

fn required(field: &'static str, value: &str) -> CatalogResult<()> {
    if value.trim().is_empty() {
        return Err(CatalogError::invalid(field, "required, a non-empty string"));
    }
    bounded(field, value)
}

fn bounded(field: &'static str, value: &str) -> CatalogResult<()> {
    if value.len() > MAX_FIELD_BYTES {
        return Err(CatalogError::invalid(
            field,
            format!("at most {MAX_FIELD_BYTES} bytes"),
        ));
    }
    // Postgres refuses a NUL in text: left to the store, it would answer as a database failure,
    // which edges take for an outage.
    if value.chars().any(char::is_control) {
        return Err(CatalogError::invalid(field, "no control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_expire_after_their_days_and_other_objects_never_by_default() {
        let lifetimes = RecordLifetimes::default();
        let now = 1_750_000_000_000;
        assert_eq!(lifetimes.expires_at_ms("response", now), now + 30 * DAY_MS);
        assert_eq!(lifetimes.expires_at_ms("thread", now), 0);
        let kept = RecordLifetimes {
            response_days: 0,
            other_days: 7,
        };
        assert_eq!(kept.expires_at_ms("response", now), 0);
        assert_eq!(kept.expires_at_ms("agent", now), now + 7 * DAY_MS);
    }

    #[test]
    fn fields_edges_send_are_required_and_bounded() {
        assert!(required("id", " ").is_err());
        assert!(required("id", &"x".repeat(MAX_FIELD_BYTES + 1)).is_err());
        assert!(required("id", "thread_1").is_ok());
        assert!(required("id", "thread\u{0}1").is_err());
        assert!(bounded("alias_of", "a\nb").is_err());
        assert!(bounded("alias_of", "").is_ok());
        assert!(check_count("refs", MAX_OBJECTS_PER_CALL).is_ok());
        assert!(check_count("refs", MAX_OBJECTS_PER_CALL + 1).is_err());
    }
}
