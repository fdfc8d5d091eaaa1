//! Persistence of the catalog behind one trait, with a Postgres implementation (production) and a
//! SQLite one (the embedded default). Both share their SQL (see `sql.rs`) and pass one conformance
//! suite (`tests/store_conformance.rs`).
//!
//! Every write bumps a single catalog version inside its transaction and stamps the rows it touches
//! (and a tombstone for each removal) with it, so `changes_since(v)` is a plain `version > v` read.
//! The version row is written first in each transaction, which serialises writers: versions are
//! handed out in commit order and a reader never misses a row with a lower version.
//!
//! Foundry object ownership records live in the same database but outside the catalog version
//! (`OwnershipStore`, SQL in `ownership_sql.rs`): they grow with traffic, so edges look them up on
//! demand rather than receiving them on the Sync stream.
//!
//! Usage (`UsageStore`, SQL in `usage_sql.rs`) is outside the catalog version too: hourly sums per
//! (event, attendee, resource, deployment), applied once per batch id.

mod ownership_sql;
mod postgres;
mod sql;
mod sqlite;
mod usage_sql;

pub use postgres::{APPLICATION_NAME as POSTGRES_APPLICATION_NAME, PostgresCatalogStore};
pub use sqlite::SqliteCatalogStore;

use std::sync::Arc;

use async_trait::async_trait;

use super::model::{
    Attendee, CatalogChanges, Event, ForgetsSince, FoundryObject, Resource, UsageFilter,
    UsageRecord, UsageReportQuery, UsageRow, UsageSum, UsageSummary, UsageTotals,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} '{id}' not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{0}")]
    Conflict(String),
    #[error("resource_ids: no resource with id '{0}'")]
    UnknownResource(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported AIPROXY_DATABASE_URL '{0}': use postgres://… or sqlite://…")]
    UnsupportedUrl(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What an update does to a resource's stored upstream key.
#[derive(Clone)]
pub enum KeyWrite {
    /// Keep the stored key, provided the stored endpoint is on `origin` (see
    /// `catalog::endpoint::endpoint_origin`); otherwise refuse the update.
    Keep { origin: String },
    /// Store this sealed key instead.
    Replace(Vec<u8>),
    /// Store none.
    Drop,
}

impl std::fmt::Debug for KeyWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyWrite::Keep { origin } => write!(f, "Keep {{ origin: {origin:?} }}"),
            KeyWrite::Replace(_) => f.write_str("Replace(***)"),
            KeyWrite::Drop => f.write_str("Drop"),
        }
    }
}

/// What a lease took from a counter, and what was left of the cap after it (an edge sizes its
/// next lease by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    pub granted: u64,
    pub left: u64,
}

#[async_trait]
pub trait CatalogStore: OwnershipStore + UsageStore + Send + Sync + 'static {
    /// The catalog's identity: a random id made when the database was created. An edge holding a
    /// version of another catalog gets a full snapshot.
    async fn catalog_id(&self) -> StoreResult<String>;
    async fn current_version(&self) -> StoreResult<u64>;
    /// Everything with a version above `since`; everything (`full`) when nothing is held (`None`)
    /// or `since` is newer than the current version (the database was replaced).
    async fn changes_since(&self, since: Option<u64>) -> StoreResult<CatalogChanges>;

    async fn create_resource(&self, resource: &Resource) -> StoreResult<u64>;
    /// Writes every field of `resource` but its `encrypted_key`: `key` says what becomes of the
    /// stored one, decided by the UPDATE statement on the row as it is then (so an update racing
    /// another cannot keep a key the other replaced or moved to another host). Returns the version
    /// and the resource as stored. `Conflict` when `key` is `Keep` and the stored endpoint is no
    /// longer on the origin it names.
    async fn update_resource(
        &self,
        resource: &Resource,
        key: &KeyWrite,
    ) -> StoreResult<(u64, Resource)>;
    /// Refused with `Conflict` while an event exposes the resource.
    async fn delete_resource(&self, id: &str) -> StoreResult<u64>;
    async fn get_resource(&self, id: &str) -> StoreResult<Option<Resource>>;
    async fn list_resources(&self) -> StoreResult<Vec<Resource>>;

    async fn create_event(&self, event: &Event) -> StoreResult<u64>;
    async fn update_event(&self, event: &Event) -> StoreResult<u64>;
    /// Removes the event and its attendees.
    async fn delete_event(&self, id: &str) -> StoreResult<u64>;
    async fn get_event(&self, id: &str) -> StoreResult<Option<Event>>;
    async fn list_events(&self) -> StoreResult<Vec<Event>>;

    /// `Conflict` when the user already has a key for this event.
    async fn add_attendee(&self, attendee: &Attendee) -> StoreResult<u64>;
    async fn list_attendees(&self, event_id: &str) -> StoreResult<Vec<Attendee>>;

    /// Takes up to `wanted` requests from an attendee's allowance of `cap` for `day`; returns how
    /// many were granted (0 once the cap is reached) and what is left. Atomic across replicas.
    async fn lease_requests(
        &self,
        event_id: &str,
        user_id: &str,
        day: &str,
        wanted: u32,
        cap: u32,
    ) -> StoreResult<Granted>;

    /// Token leases: adds `debt + wanted` to the counter `(event_id, user_id, period)` in one
    /// atomic statement and grants what was left of `cap` before it, after the debt:
    /// `clamp(cap - (used_before + debt), 0, wanted)`. The counter may pass the cap; grants never
    /// do. `period` is the UTC day (`YYYY-MM-DD`) of a daily cap, or `event` (with user_id `''`).
    /// A new counter starts from the tokens already recorded in `usage_hourly` for its period (the
    /// attendee's day, or the whole event), so a cap set mid-event counts what came before it.
    async fn lease_tokens(
        &self,
        event_id: &str,
        user_id: &str,
        period: &str,
        wanted: u64,
        debt: u64,
        cap: u64,
    ) -> StoreResult<Granted>;

    async fn set_attendee_active(
        &self,
        event_id: &str,
        user_id: &str,
        active: bool,
    ) -> StoreResult<(u64, Attendee)>;
}

/// Who created which Foundry object. No method here takes a catalog version; a record goes with its
/// event (`delete_event`) or when it expires. "Expired" means `expires_at_ms` is set and not after
/// the time given; expired records count as absent everywhere and may be taken over.
#[async_trait]
pub trait OwnershipStore: Send + Sync + 'static {
    /// Records every object, or none: `Conflict` if any `(kind, id)` belongs to another attendee
    /// (unexpired), `NotFound` if an event is gone. Recording again for the same attendee changes
    /// nothing. The records are written as given: the caller sets `created_at_ms` (the record time,
    /// also the "now" that decides whether an existing record has expired) and `expires_at_ms`.
    /// Returns how many records this call wrote (those recorded already for the same attendee
    /// are not counted).
    async fn record_objects(&self, objects: &[FoundryObject]) -> StoreResult<usize>;
    /// Deletes the record `(kind, id)` and the aliases naming it, and logs a forget invalidation
    /// for each; returns the forget sequence number taken. `NotFound` if nothing was recorded.
    async fn forget_object(&self, kind: &str, id: &str) -> StoreResult<u64>;
    /// The unexpired records among `refs` (`(kind, id)` pairs); unknown ones are left out.
    async fn lookup_objects(
        &self,
        refs: &[(String, String)],
        now_ms: i64,
    ) -> StoreResult<Vec<FoundryObject>>;
    /// One attendee's unexpired records of one kind, aliases left out, ordered by
    /// `(created_at_ms, id)` (reversed when `descending`), after the record `after_id` (which must
    /// be one of that attendee's, else `NotFound`). Returns up to `limit` records and whether more
    /// follow.
    #[allow(clippy::too_many_arguments)]
    async fn list_owned_objects(
        &self,
        event_id: &str,
        user_id: &str,
        kind: &str,
        after_id: Option<&str>,
        descending: bool,
        limit: u32,
        now_ms: i64,
    ) -> StoreResult<(Vec<FoundryObject>, bool)>;
    /// Deletes the records expired at `now_ms`; returns how many.
    async fn purge_expired_objects(&self, now_ms: i64) -> StoreResult<u64>;
    /// The forget sequence number: moves on every forget, never goes back.
    async fn current_forget_seq(&self) -> StoreResult<u64>;
    /// The forgets after sequence number `seq`.
    async fn forgets_since(&self, seq: u64) -> StoreResult<ForgetsSince>;
    /// Drops forget invalidations logged before `older_than_ms`; returns how many.
    async fn prune_forgets(&self, older_than_ms: i64) -> StoreResult<u64>;
}

/// Usage as the edges report it, kept as hourly sums. Nothing here takes a catalog version, and
/// nothing is tied to an event's life: usage stays after its event is deleted.
#[async_trait]
pub trait UsageStore: Send + Sync + 'static {
    /// Applies a batch once, in one transaction: `false` (and no change) when `batch_id` was
    /// applied before, even by a concurrent call. Records are summed per (event, attendee,
    /// resource, deployment, UTC hour of `started_at_ms`); a record whose `once_key` was counted
    /// before (in an earlier batch or earlier in this one) counts as a request without tokens.
    /// Each sum (the records of one such key, summed by the edge) is added to its hour's row.
    async fn apply_usage_batch(
        &self,
        batch_id: &str,
        records: &[UsageRecord],
        sums: &[UsageSum],
        now_ms: i64,
    ) -> StoreResult<bool>;
    /// Report rows, ordered by bucket then dimensions; at most `limit` of them (ask one more than
    /// you accept to learn there were more).
    async fn usage_rows(&self, query: &UsageReportQuery, limit: u64) -> StoreResult<Vec<UsageRow>>;
    /// The sums over everything `filter` selects.
    async fn usage_totals(&self, filter: &UsageFilter) -> StoreResult<UsageTotals>;
    /// One attendee's usage on one UTC day, and the event's total tokens over all time.
    async fn usage_summary(
        &self,
        event_id: &str,
        user_id: &str,
        day: chrono::NaiveDate,
    ) -> StoreResult<UsageSummary>;
    /// Forgets batch ids and once keys applied before `older_than_ms`; returns how many.
    async fn purge_usage_dedupe(&self, older_than_ms: i64) -> StoreResult<u64>;
}

/// Opens (and migrates) the store `AIPROXY_DATABASE_URL` names; a Postgres pool holds at most
/// `max_connections` (`AIPROXY_DATABASE_MAX_CONNECTIONS`).
pub async fn open(url: &str, max_connections: u32) -> StoreResult<Arc<dyn CatalogStore>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(
            PostgresCatalogStore::connect(url, max_connections).await?,
        ))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteCatalogStore::connect(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}
