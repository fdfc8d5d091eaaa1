//! The SQL both stores share. Postgres and SQLite accept the same statements here (`$n`
//! placeholders, `RETURNING`, `ON CONFLICT`), so the implementation is written once, as a macro
//! instantiated for each concrete sqlx database: no generic trait bounds, one copy of every rule.

use std::collections::HashMap;

use crate::catalog::model::{Attendee, Event, ModelType, ObjectKind, Removal, Resource};

pub(super) const RESOURCE_COLUMNS: &str = "id, friendly_name, deployment_name, model_type, \
    endpoint_url, region, use_managed_identity, identity_client_id, active, encrypted_key, \
    use_max_completion_tokens";
pub(super) const EVENT_COLUMNS: &str = "id, name, starts_at_ms, ends_at_ms, time_zone, \
    max_token_cap, daily_request_cap, organizer_name, organizer_email, active, daily_token_cap, \
    token_budget";
pub(super) const ATTENDEE_COLUMNS: &str = "event_id, user_id, key_hash, active, created_at_ms";

pub(super) const INSERT_RESOURCE: &str = "INSERT INTO resources (id, friendly_name, deployment_name, \
    model_type, endpoint_url, region, use_managed_identity, identity_client_id, active, encrypted_key, version, \
    use_max_completion_tokens) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
/// `$10` the new sealed key (or NULL), `$12` `keep`/`replace`/`drop`, `$13` the origin a kept key
/// belongs to, `$14` `use_max_completion_tokens`. `keep` leaves the key as it is in the row at
/// write time, and only when the stored endpoint (the old value: SET does not change what WHERE
/// reads) is on `$13`; else no row matches.
pub(super) const UPDATE_RESOURCE: &str = "UPDATE resources SET friendly_name = $2, deployment_name = $3, \
    model_type = $4, endpoint_url = $5, region = $6, use_managed_identity = $7, identity_client_id = $8, \
    active = $9, encrypted_key = CASE WHEN $12 = 'keep' THEN encrypted_key ELSE $10 END, version = $11, \
    use_max_completion_tokens = $14 \
    WHERE id = $1 AND ($12 <> 'keep' OR lower(endpoint_url) = $13 \
    OR substr(lower(endpoint_url), 1, length($13) + 1) = $13 || '/') \
    RETURNING id, friendly_name, deployment_name, model_type, endpoint_url, region, \
    use_managed_identity, identity_client_id, active, encrypted_key, use_max_completion_tokens";
pub(super) const INSERT_EVENT: &str = "INSERT INTO events (id, name, starts_at_ms, ends_at_ms, time_zone, \
    max_token_cap, daily_request_cap, organizer_name, organizer_email, active, version, daily_token_cap, \
    token_budget) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
pub(super) const UPDATE_EVENT: &str = "UPDATE events SET name = $2, starts_at_ms = $3, ends_at_ms = $4, \
    time_zone = $5, max_token_cap = $6, daily_request_cap = $7, organizer_name = $8, organizer_email = $9, \
    active = $10, version = $11, daily_token_cap = $12, token_budget = $13 WHERE id = $1";

#[derive(sqlx::FromRow)]
pub(super) struct ResourceRow {
    id: String,
    friendly_name: String,
    deployment_name: String,
    model_type: String,
    endpoint_url: String,
    region: String,
    use_managed_identity: bool,
    identity_client_id: Option<String>,
    active: bool,
    encrypted_key: Option<Vec<u8>>,
    use_max_completion_tokens: bool,
}

impl ResourceRow {
    pub(super) fn into_resource(self) -> Result<Resource, sqlx::Error> {
        let model_type = ModelType::parse(&self.model_type).ok_or_else(|| {
            sqlx::Error::Decode(
                format!("unknown model_type '{}' in resources", self.model_type).into(),
            )
        })?;
        Ok(Resource {
            id: self.id,
            friendly_name: self.friendly_name,
            deployment_name: self.deployment_name,
            model_type,
            endpoint_url: self.endpoint_url,
            region: self.region,
            use_managed_identity: self.use_managed_identity,
            identity_client_id: self.identity_client_id,
            active: self.active,
            use_max_completion_tokens: self.use_max_completion_tokens,
            encrypted_key: self.encrypted_key,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    id: String,
    name: String,
    starts_at_ms: i64,
    ends_at_ms: i64,
    time_zone: String,
    max_token_cap: i64,
    daily_request_cap: i64,
    organizer_name: String,
    organizer_email: String,
    active: bool,
    daily_token_cap: i64,
    token_budget: i64,
}

impl EventRow {
    pub(super) fn into_event(self, resource_ids: Vec<String>) -> Event {
        Event {
            id: self.id,
            name: self.name,
            starts_at_ms: self.starts_at_ms,
            ends_at_ms: self.ends_at_ms,
            time_zone: self.time_zone,
            max_token_cap: u32::try_from(self.max_token_cap).unwrap_or(u32::MAX),
            daily_request_cap: u32::try_from(self.daily_request_cap).unwrap_or(u32::MAX),
            daily_token_cap: u64::try_from(self.daily_token_cap).unwrap_or(0),
            token_budget: u64::try_from(self.token_budget).unwrap_or(0),
            organizer_name: self.organizer_name,
            organizer_email: self.organizer_email,
            active: self.active,
            resource_ids,
        }
    }
}

/// Joins event rows with their (ordered) resource links.
pub(super) fn assemble_events(rows: Vec<EventRow>, links: Vec<(String, String)>) -> Vec<Event> {
    let mut by_event: HashMap<String, Vec<String>> = HashMap::new();
    for (event_id, resource_id) in links {
        by_event.entry(event_id).or_default().push(resource_id);
    }
    rows.into_iter()
        .map(|row| {
            let ids = by_event.remove(&row.id).unwrap_or_default();
            row.into_event(ids)
        })
        .collect()
}

#[derive(sqlx::FromRow)]
pub(super) struct AttendeeRow {
    event_id: String,
    user_id: String,
    key_hash: Vec<u8>,
    active: bool,
    created_at_ms: i64,
}

impl From<AttendeeRow> for Attendee {
    fn from(row: AttendeeRow) -> Self {
        Attendee {
            event_id: row.event_id,
            user_id: row.user_id,
            key_hash: row.key_hash,
            active: row.active,
            created_at_ms: row.created_at_ms,
        }
    }
}

pub(super) fn removals_from_rows(rows: Vec<(String, String)>) -> Vec<Removal> {
    rows.into_iter()
        .filter_map(|(kind, id)| ObjectKind::parse(&kind).map(|kind| Removal { kind, id }))
        .collect()
}

pub(super) fn version_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(super) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// What a lease grants once its counter moved from `used_after - charged` to `used_after`, where
/// `charged` is `debt + wanted`: what was left of `cap` before the increment, after the debt, at
/// most `wanted` (the counter may pass the cap; grants never do).
pub(super) fn lease_grant(used_after: i64, charged: i64, debt: i64, cap: i64, wanted: i64) -> i64 {
    let before = used_after.saturating_sub(charged);
    cap.saturating_sub(before.saturating_add(debt))
        .clamp(0, wanted.max(0))
}

/// Implements `CatalogStore` for `$store` (a struct with a `pool: sqlx::Pool<$db>` field).
/// `$snapshot_sql` starts a read transaction at a consistent snapshot (dialect-specific).
macro_rules! impl_catalog_store {
    ($store:ty, $db:ty, $snapshot_sql:expr) => {
        use $crate::catalog::model::{Attendee, CatalogChanges, Event, ObjectKind, Resource};
        use $crate::catalog::store::sql::{
            ATTENDEE_COLUMNS, AttendeeRow, EVENT_COLUMNS, EventRow, INSERT_EVENT, INSERT_RESOURCE,
            RESOURCE_COLUMNS, ResourceRow, UPDATE_EVENT, UPDATE_RESOURCE, assemble_events,
            lease_grant, removals_from_rows, to_i64, version_u64,
        };
        use $crate::catalog::store::{CatalogStore, Granted, KeyWrite, StoreError};

        type Tx<'a> = sqlx::Transaction<'a, $db>;

        impl $store {
            async fn ensure_catalog_row(pool: &sqlx::Pool<$db>) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO catalog_meta (singleton, catalog_id, version) VALUES (1, $1, 0) \
                     ON CONFLICT (singleton) DO NOTHING",
                )
                .bind(uuid::Uuid::new_v4().to_string())
                .execute(pool)
                .await?;
                Ok(())
            }

            /// Takes the next version. Always the first statement of a write transaction: it
            /// locks the version row, so writers are serialised in version order.
            async fn bump(tx: &mut Tx<'_>) -> StoreResult<i64> {
                let (v,): (i64,) = sqlx::query_as(
                    "UPDATE catalog_meta SET version = version + 1 WHERE singleton = 1 RETURNING version",
                )
                .fetch_one(&mut **tx)
                .await?;
                Ok(v)
            }

            async fn tombstone(tx: &mut Tx<'_>, kind: ObjectKind, id: &str, v: i64) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO removals (kind, id, version) VALUES ($1, $2, $3) \
                     ON CONFLICT (kind, id) DO UPDATE SET version = excluded.version",
                )
                .bind(kind.as_str())
                .bind(id)
                .bind(v)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            async fn insert_resource(tx: &mut Tx<'_>, r: &Resource, v: i64) -> StoreResult<u64> {
                let done = sqlx::query(INSERT_RESOURCE)
                    .bind(&r.id)
                    .bind(&r.friendly_name)
                    .bind(&r.deployment_name)
                    .bind(r.model_type.as_str())
                    .bind(&r.endpoint_url)
                    .bind(&r.region)
                    .bind(r.use_managed_identity)
                    .bind(&r.identity_client_id)
                    .bind(r.active)
                    .bind(&r.encrypted_key)
                    .bind(v)
                    .bind(r.use_max_completion_tokens)
                    .execute(&mut **tx)
                    .await?;
                Ok(done.rows_affected())
            }

            /// Runs `sql` (`INSERT_EVENT` or `UPDATE_EVENT`: same parameters) for `e` at version `v`.
            async fn write_event(tx: &mut Tx<'_>, sql: &'static str, e: &Event, v: i64) -> StoreResult<u64> {
                let done = sqlx::query(sql)
                    .bind(&e.id)
                    .bind(&e.name)
                    .bind(e.starts_at_ms)
                    .bind(e.ends_at_ms)
                    .bind(&e.time_zone)
                    .bind(i64::from(e.max_token_cap))
                    .bind(i64::from(e.daily_request_cap))
                    .bind(&e.organizer_name)
                    .bind(&e.organizer_email)
                    .bind(e.active)
                    .bind(v)
                    .bind(to_i64(e.daily_token_cap))
                    .bind(to_i64(e.token_budget))
                    .execute(&mut **tx)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn event_exists(tx: &mut Tx<'_>, id: &str) -> StoreResult<bool> {
                let found: Option<(String,)> = sqlx::query_as("SELECT id FROM events WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut **tx)
                    .await?;
                Ok(found.is_some())
            }

            async fn write_event_links(tx: &mut Tx<'_>, event: &Event) -> StoreResult<()> {
                sqlx::query("DELETE FROM event_resources WHERE event_id = $1")
                    .bind(&event.id)
                    .execute(&mut **tx)
                    .await?;
                for (position, resource_id) in event.resource_ids.iter().enumerate() {
                    let found: Option<(String,)> =
                        sqlx::query_as("SELECT id FROM resources WHERE id = $1")
                            .bind(resource_id)
                            .fetch_optional(&mut **tx)
                            .await?;
                    if found.is_none() {
                        return Err(StoreError::UnknownResource(resource_id.clone()));
                    }
                    sqlx::query(
                        "INSERT INTO event_resources (event_id, resource_id, position) VALUES ($1, $2, $3)",
                    )
                    .bind(&event.id)
                    .bind(resource_id)
                    .bind(position as i64)
                    .execute(&mut **tx)
                    .await?;
                }
                Ok(())
            }

            async fn resources_where(
                executor: &mut <$db as sqlx::Database>::Connection,
                filter: &str,
                arg: Option<i64>,
                id: Option<&str>,
            ) -> StoreResult<Vec<Resource>> {
                let sql = format!("SELECT {RESOURCE_COLUMNS} FROM resources {filter} ORDER BY friendly_name, id");
                let mut query = sqlx::query_as::<_, ResourceRow>(sqlx::AssertSqlSafe(sql));
                if let Some(v) = arg {
                    query = query.bind(v);
                }
                if let Some(id) = id {
                    query = query.bind(id.to_string());
                }
                let rows = query.fetch_all(&mut *executor).await?;
                Ok(rows.into_iter().map(ResourceRow::into_resource).collect::<Result<_, _>>()?)
            }

            async fn events_where(
                executor: &mut <$db as sqlx::Database>::Connection,
                filter: &str,
                arg: Option<i64>,
                id: Option<&str>,
            ) -> StoreResult<Vec<Event>> {
                let sql = format!("SELECT {EVENT_COLUMNS} FROM events e {filter} ORDER BY starts_at_ms, id");
                let mut query = sqlx::query_as::<_, EventRow>(sqlx::AssertSqlSafe(sql));
                let links_sql = format!(
                    "SELECT er.event_id, er.resource_id FROM event_resources er \
                     JOIN events e ON e.id = er.event_id {filter} ORDER BY er.event_id, er.position"
                );
                let mut links_query = sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(links_sql));
                if let Some(v) = arg {
                    query = query.bind(v);
                    links_query = links_query.bind(v);
                }
                if let Some(id) = id {
                    query = query.bind(id.to_string());
                    links_query = links_query.bind(id.to_string());
                }
                let rows = query.fetch_all(&mut *executor).await?;
                let links = links_query.fetch_all(&mut *executor).await?;
                Ok(assemble_events(rows, links))
            }
        }

        #[async_trait::async_trait]
        impl CatalogStore for $store {
            async fn catalog_id(&self) -> StoreResult<String> {
                let (id,): (String,) =
                    sqlx::query_as("SELECT catalog_id FROM catalog_meta WHERE singleton = 1")
                        .fetch_one(&self.pool)
                        .await?;
                Ok(id)
            }

            async fn current_version(&self) -> StoreResult<u64> {
                let (v,): (i64,) =
                    sqlx::query_as("SELECT version FROM catalog_meta WHERE singleton = 1")
                        .fetch_one(&self.pool)
                        .await?;
                Ok(version_u64(v))
            }

            async fn changes_since(&self, since: Option<u64>) -> StoreResult<CatalogChanges> {
                let mut tx = self.pool.begin().await?;
                if let Some(sql) = $snapshot_sql {
                    sqlx::query(sql).execute(&mut *tx).await?;
                }
                let (catalog_id, current): (String, i64) = sqlx::query_as(
                    "SELECT catalog_id, version FROM catalog_meta WHERE singleton = 1",
                )
                .fetch_one(&mut *tx)
                .await?;
                let current_u = version_u64(current);
                let full = since.is_none_or(|v| v > current_u);
                let mut changes = CatalogChanges {
                    catalog_id,
                    version: current_u,
                    full,
                    ..Default::default()
                };
                if !full && since == Some(current_u) {
                    return Ok(changes);
                }
                let after = if full { 0 } else { since.unwrap_or(0) as i64 };
                changes.resources =
                    Self::resources_where(&mut *tx, "WHERE version > $1", Some(after), None).await?;
                changes.events =
                    Self::events_where(&mut *tx, "WHERE e.version > $1", Some(after), None).await?;
                let attendees_sql = format!(
                    "SELECT {ATTENDEE_COLUMNS} FROM attendees WHERE version > $1 ORDER BY event_id, user_id"
                );
                changes.attendees = sqlx::query_as::<_, AttendeeRow>(sqlx::AssertSqlSafe(attendees_sql))
                    .bind(after)
                    .fetch_all(&mut *tx)
                    .await?
                    .into_iter()
                    .map(Attendee::from)
                    .collect();
                if !full {
                    let rows: Vec<(String, String)> = sqlx::query_as(
                        "SELECT kind, id FROM removals WHERE version > $1 ORDER BY version",
                    )
                    .bind(after)
                    .fetch_all(&mut *tx)
                    .await?;
                    changes.removals = removals_from_rows(rows);
                }
                tx.commit().await?;
                Ok(changes)
            }

            async fn create_resource(&self, r: &Resource) -> StoreResult<u64> {
                let mut tx = self.pool.begin().await?;
                let v = Self::bump(&mut tx).await?;
                Self::insert_resource(&mut tx, r, v).await?;
                tx.commit().await?;
                Ok(version_u64(v))
            }

            async fn update_resource(&self, r: &Resource, key: &KeyWrite) -> StoreResult<(u64, Resource)> {
                let (mode, sealed, origin) = match key {
                    KeyWrite::Keep { origin } => ("keep", None, origin.as_str()),
                    KeyWrite::Replace(sealed) => ("replace", Some(sealed.as_slice()), ""),
                    KeyWrite::Drop => ("drop", None, ""),
                };
                let mut tx = self.pool.begin().await?;
                let v = Self::bump(&mut tx).await?;
                let row = sqlx::query_as::<_, ResourceRow>(UPDATE_RESOURCE)
                    .bind(&r.id)
                    .bind(&r.friendly_name)
                    .bind(&r.deployment_name)
                    .bind(r.model_type.as_str())
                    .bind(&r.endpoint_url)
                    .bind(&r.region)
                    .bind(r.use_managed_identity)
                    .bind(&r.identity_client_id)
                    .bind(r.active)
                    .bind(sealed)
                    .bind(v)
                    .bind(mode)
                    .bind(origin)
                    .bind(r.use_max_completion_tokens)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(row) = row else {
                    let found: Option<(String,)> = sqlx::query_as("SELECT id FROM resources WHERE id = $1")
                        .bind(&r.id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    return Err(match found {
                        None => StoreError::NotFound { kind: "resource", id: r.id.clone() },
                        Some(_) => StoreError::Conflict(format!(
                            "resource '{}' moved to another endpoint host while this update was made; \
                             read it again and send its key if the host changed",
                            r.id
                        )),
                    });
                };
                let stored = row.into_resource()?;
                tx.commit().await?;
                Ok((version_u64(v), stored))
            }

            async fn delete_resource(&self, id: &str) -> StoreResult<u64> {
                let mut tx = self.pool.begin().await?;
                let v = Self::bump(&mut tx).await?;
                let users: Vec<(String,)> = sqlx::query_as(
                    "SELECT e.name FROM event_resources er JOIN events e ON e.id = er.event_id \
                     WHERE er.resource_id = $1 ORDER BY e.name",
                )
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
                if !users.is_empty() {
                    let names: Vec<String> = users.into_iter().map(|(n,)| format!("'{n}'")).collect();
                    return Err(StoreError::Conflict(format!(
                        "resource '{id}' is used by event {}: remove it from the event first",
                        names.join(", ")
                    )));
                }
                let done = sqlx::query("DELETE FROM resources WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound { kind: "resource", id: id.to_string() });
                }
                Self::tombstone(&mut tx, ObjectKind::Resource, id, v).await?;
                tx.commit().await?;
                Ok(version_u64(v))
            }

            async fn get_resource(&self, id: &str) -> StoreResult<Option<Resource>> {
                let mut conn = self.pool.acquire().await?;
                let mut found =
                    Self::resources_where(&mut *conn, "WHERE id = $1", None, Some(id)).await?;
                Ok(found.pop())
            }

            async fn list_resources(&self) -> StoreResult<Vec<Resource>> {
                let mut conn = self.pool.acquire().await?;
                Self::resources_where(&mut *conn, "", None, None).await
            }

            async fn create_event(&self, e: &Event) -> StoreResult<u64> {
                let mut tx = self.pool.begin().await?;
                let v = Self::bump(&mut tx).await?;
                Self::write_event(&mut tx, INSERT_EVENT, e, v).await?;
                Self::write_event_links(&mut tx, e).await?;
                tx.commit().await?;
                Ok(version_u64(v))
            }

            async fn update_event(&self, e: &Event) -> StoreResult<u64> {
                let mut tx = self.pool.begin().await?;
                let v = Self::bump(&mut tx).await?;
                if Self::write_event(&mut tx, UPDATE_EVENT, e, v).await? == 0 {
                    return Err(StoreError::NotFound { kind: "event", id: e.id.clone() });
                }
                Self::write_event_links(&mut tx, e).await?;
                tx.commit().await?;
                Ok(version_u64(v))
            }

            async fn delete_event(&self, id: &str) -> StoreResult<u64> {
                let mut tx = self.pool.begin().await?;
                let v = Self::bump(&mut tx).await?;
                // Ownership records go with their event.
                sqlx::query("DELETE FROM foundry_objects WHERE event_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM attendees WHERE event_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM event_resources WHERE event_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                let done = sqlx::query("DELETE FROM events WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound { kind: "event", id: id.to_string() });
                }
                Self::tombstone(&mut tx, ObjectKind::Event, id, v).await?;
                tx.commit().await?;
                Ok(version_u64(v))
            }

            async fn get_event(&self, id: &str) -> StoreResult<Option<Event>> {
                let mut conn = self.pool.acquire().await?;
                let mut found = Self::events_where(&mut *conn, "WHERE e.id = $1", None, Some(id)).await?;
                Ok(found.pop())
            }

            async fn list_events(&self) -> StoreResult<Vec<Event>> {
                let mut conn = self.pool.acquire().await?;
                Self::events_where(&mut *conn, "", None, None).await
            }

            async fn add_attendee(&self, a: &Attendee) -> StoreResult<u64> {
                let mut tx = self.pool.begin().await?;
                let v = Self::bump(&mut tx).await?;
                if !Self::event_exists(&mut tx, &a.event_id).await? {
                    return Err(StoreError::NotFound { kind: "event", id: a.event_id.clone() });
                }
                let existing: Option<(String,)> = sqlx::query_as(
                    "SELECT user_id FROM attendees WHERE event_id = $1 AND user_id = $2",
                )
                .bind(&a.event_id)
                .bind(&a.user_id)
                .fetch_optional(&mut *tx)
                .await?;
                if existing.is_some() {
                    return Err(StoreError::Conflict(format!(
                        "attendee '{}' already has a key for this event (keys are shown only once; \
                         deactivate it and register the attendee under a new user_id to issue another)",
                        a.user_id
                    )));
                }
                sqlx::query(
                    "INSERT INTO attendees (event_id, user_id, key_hash, active, created_at_ms, version) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&a.event_id)
                .bind(&a.user_id)
                .bind(&a.key_hash)
                .bind(a.active)
                .bind(a.created_at_ms)
                .bind(v)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(version_u64(v))
            }

            async fn list_attendees(&self, event_id: &str) -> StoreResult<Vec<Attendee>> {
                let mut tx = self.pool.begin().await?;
                if !Self::event_exists(&mut tx, event_id).await? {
                    return Err(StoreError::NotFound { kind: "event", id: event_id.to_string() });
                }
                let sql = format!(
                    "SELECT {ATTENDEE_COLUMNS} FROM attendees WHERE event_id = $1 ORDER BY created_at_ms, user_id"
                );
                let rows = sqlx::query_as::<_, AttendeeRow>(sqlx::AssertSqlSafe(sql))
                    .bind(event_id)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(rows.into_iter().map(Attendee::from).collect())
            }

            async fn lease_requests(
                &self,
                event_id: &str,
                user_id: &str,
                day: &str,
                wanted: u32,
                cap: u32,
            ) -> StoreResult<Granted> {
                // One atomic increment: concurrent leases serialise on the row, and each is granted
                // what was left before its own increment (the counter may pass the cap; grants never do).
                let (used,): (i64,) = sqlx::query_as(
                    "INSERT INTO request_counts (event_id, user_id, day, used) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (event_id, user_id, day) DO UPDATE SET used = request_counts.used + $4 \
                     RETURNING used",
                )
                .bind(event_id)
                .bind(user_id)
                .bind(day)
                .bind(i64::from(wanted))
                .fetch_one(&self.pool)
                .await?;
                let granted = lease_grant(used, i64::from(wanted), 0, i64::from(cap), i64::from(wanted));
                Ok(Granted {
                    granted: u64::try_from(granted).unwrap_or(0),
                    left: u64::try_from(i64::from(cap) - used).unwrap_or(0),
                })
            }

            async fn lease_tokens(
                &self,
                event_id: &str,
                user_id: &str,
                period: &str,
                wanted: u64,
                debt: u64,
                cap: u64,
            ) -> StoreResult<Granted> {
                // Like request leases: one atomic increment (the debt is paid even when nothing is
                // left to grant), the grant carved from what was left before it. A counter starts
                // from the usage already recorded in its period (the attendee's day, or the whole
                // event), so a cap set or raised mid-event counts what was used before it.
                let (wanted, debt) = (to_i64(wanted), to_i64(debt));
                let charge = |add: i64| {
                    sqlx::query_as::<_, (i64,)>(
                        "UPDATE token_counts SET used = used + $4 \
                         WHERE event_id = $1 AND user_id = $2 AND period = $3 RETURNING used",
                    )
                    .bind(event_id)
                    .bind(user_id)
                    .bind(period)
                    .bind(add)
                };
                let charged = wanted.saturating_add(debt);
                let (used, charged, debt) = match charge(charged).fetch_optional(&self.pool).await? {
                    Some((used,)) => (used, charged, debt),
                    None => {
                        // First lease of this counter: it starts from the usage recorded so far (the
                        // recorded usage already holds what the debt was for: it is not added again).
                        let (from_ms, to_ms) = match chrono::NaiveDate::parse_from_str(period, "%Y-%m-%d") {
                            Ok(day) => {
                                let start = day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc().timestamp_millis();
                                (start, start + 86_400_000)
                            }
                            Err(_) => (i64::MIN, i64::MAX),
                        };
                        let inserted = sqlx::query(
                            "INSERT INTO token_counts (event_id, user_id, period, used) \
                             SELECT $1, $2, $3, CAST(COALESCE((SELECT SUM(total_tokens) FROM usage_hourly \
                                WHERE event_id = $1 AND ($2 = '' OR user_id = $2) AND hour_ms >= $4 AND hour_ms < $5), 0) AS BIGINT) \
                             WHERE true \
                             ON CONFLICT (event_id, user_id, period) DO NOTHING",
                        )
                        .bind(event_id)
                        .bind(user_id)
                        .bind(period)
                        .bind(from_ms)
                        .bind(to_ms)
                        .execute(&self.pool)
                        .await?
                        .rows_affected()
                            == 1;
                        let (add, debt) = if inserted { (wanted, 0) } else { (charged, debt) };
                        let (used,) = charge(add).fetch_one(&self.pool).await?;
                        (used, add, debt)
                    }
                };
                let granted = lease_grant(used, charged, debt, to_i64(cap), wanted);
                Ok(Granted {
                    granted: u64::try_from(granted).unwrap_or(0),
                    left: u64::try_from(to_i64(cap).saturating_sub(used)).unwrap_or(0),
                })
            }

            async fn set_attendee_active(
                &self,
                event_id: &str,
                user_id: &str,
                active: bool,
            ) -> StoreResult<(u64, Attendee)> {
                let mut tx = self.pool.begin().await?;
                let v = Self::bump(&mut tx).await?;
                if !Self::event_exists(&mut tx, event_id).await? {
                    return Err(StoreError::NotFound { kind: "event", id: event_id.to_string() });
                }
                let done = sqlx::query(
                    "UPDATE attendees SET active = $3, version = $4 WHERE event_id = $1 AND user_id = $2",
                )
                .bind(event_id)
                .bind(user_id)
                .bind(active)
                .bind(v)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound { kind: "attendee", id: user_id.to_string() });
                }
                let sql = format!(
                    "SELECT {ATTENDEE_COLUMNS} FROM attendees WHERE event_id = $1 AND user_id = $2"
                );
                let row = sqlx::query_as::<_, AttendeeRow>(sqlx::AssertSqlSafe(sql))
                    .bind(event_id)
                    .bind(user_id)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok((version_u64(v), Attendee::from(row)))
            }
        }
    };
}

pub(crate) use impl_catalog_store;
