//! Persistence of the catalog behind one trait, with a Postgres implementation (production) and a
//! SQLite one (the embedded default). Both share their SQL (see `sql.rs`) and pass one conformance
//! suite (`tests/store_conformance.rs`).
//!
//! Every write bumps a single catalog version inside its transaction and stamps the rows it touches
//! (and a tombstone for each removal) with it, so `changes_since(v)` is a plain `version > v` read.
//! The version row is written first in each transaction, which serialises writers: versions are
//! handed out in commit order and a reader never misses a row with a lower version.

mod postgres;
mod sql;
mod sqlite;

pub use postgres::PostgresCatalogStore;
pub use sqlite::SqliteCatalogStore;

use std::sync::Arc;

use async_trait::async_trait;

use super::model::{Attendee, CatalogChanges, Event, FoundryObject, Resource};

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

#[async_trait]
pub trait CatalogStore: Send + Sync + 'static {
    /// The catalog's identity: a random id made when the database was created. An edge holding a
    /// version of another catalog gets a full snapshot.
    async fn catalog_id(&self) -> StoreResult<String>;
    async fn current_version(&self) -> StoreResult<u64>;
    /// Everything with a version above `since`; everything (`full`) when nothing is held (`None`)
    /// or `since` is newer than the current version (the database was replaced).
    async fn changes_since(&self, since: Option<u64>) -> StoreResult<CatalogChanges>;

    async fn create_resource(&self, resource: &Resource) -> StoreResult<u64>;
    async fn update_resource(&self, resource: &Resource) -> StoreResult<u64>;
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
    /// Records who created a Foundry object; `Conflict` if another attendee already owns that id.
    async fn record_object(&self, object: &FoundryObject) -> StoreResult<u64>;
    /// Forgets a deleted object; `NotFound` if it was never recorded.
    async fn forget_object(&self, kind: &str, id: &str) -> StoreResult<u64>;
    async fn get_object(&self, kind: &str, id: &str) -> StoreResult<Option<FoundryObject>>;

    /// Takes up to `wanted` requests from an attendee's allowance of `cap` for `day`; returns how
    /// many were granted (0 once the cap is reached). Atomic across replicas.
    async fn lease_requests(
        &self,
        event_id: &str,
        user_id: &str,
        day: &str,
        wanted: u32,
        cap: u32,
    ) -> StoreResult<u32>;

    async fn set_attendee_active(
        &self,
        event_id: &str,
        user_id: &str,
        active: bool,
    ) -> StoreResult<(u64, Attendee)>;
}

/// Opens (and migrates) the store `AIPROXY_DATABASE_URL` names.
pub async fn open(url: &str) -> StoreResult<Arc<dyn CatalogStore>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresCatalogStore::connect(url).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteCatalogStore::connect(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}
