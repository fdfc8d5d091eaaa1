//! The SQL of Foundry object ownership records (`OwnershipStore`), shared by both stores the way
//! `sql.rs` is: one macro instantiated per concrete sqlx database.
//!
//! None of these writes takes a catalog version. They open their transaction with `$begin_write`
//! (`BEGIN IMMEDIATE` on SQLite): their first statement may be a read, and a deferred SQLite
//! transaction that reads and then writes fails at once, without waiting, when another writer
//! committed in between. Forgets take the next number of `object_forget_seq` under its row lock,
//! so forget numbers become visible in the order they were taken and readers never skip one.

use crate::catalog::model::FoundryObject;

pub(super) const OBJECT_COLUMNS: &str =
    "kind, id, event_id, user_id, resource_id, created_at_ms, expires_at_ms, alias_of";

/// How many `(kind, id)` pairs one lookup query binds: far below either database's parameter limit.
pub(super) const LOOKUP_BATCH: usize = 400;

#[derive(sqlx::FromRow)]
pub(super) struct FoundryObjectRow {
    kind: String,
    id: String,
    event_id: String,
    user_id: String,
    resource_id: String,
    created_at_ms: i64,
    expires_at_ms: i64,
    alias_of: String,
}

impl From<FoundryObjectRow> for FoundryObject {
    fn from(row: FoundryObjectRow) -> Self {
        FoundryObject {
            kind: row.kind,
            id: row.id,
            event_id: row.event_id,
            user_id: row.user_id,
            resource_id: row.resource_id,
            created_at_ms: row.created_at_ms,
            expires_at_ms: row.expires_at_ms,
            alias_of: row.alias_of,
        }
    }
}

/// `SELECT … WHERE <unexpired at $1> AND (kind, id) IN (VALUES ($2, $3), …)` for `pairs` pairs.
pub(super) fn lookup_sql(pairs: usize) -> String {
    let values: Vec<String> = (0..pairs)
        .map(|i| format!("(${}, ${})", 2 * i + 2, 2 * i + 3))
        .collect();
    format!(
        "SELECT {OBJECT_COLUMNS} FROM foundry_objects \
         WHERE (expires_at_ms = 0 OR expires_at_ms > $1) AND (kind, id) IN (VALUES {}) \
         ORDER BY kind, id",
        values.join(", ")
    )
}

/// One attendee's unexpired, non-alias records of one kind, in `(created_at_ms, id)` order, after
/// the cursor `($5, $6)` when there is one; one row more than `limit` tells whether more follow.
pub(super) fn list_sql(with_cursor: bool, descending: bool, limit: u32) -> String {
    let (after, order) = if descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    let cursor = if with_cursor {
        format!(" AND (created_at_ms, id) {after} ($5, $6)")
    } else {
        String::new()
    };
    format!(
        "SELECT {OBJECT_COLUMNS} FROM foundry_objects \
         WHERE event_id = $1 AND user_id = $2 AND kind = $3 AND alias_of = '' \
         AND (expires_at_ms = 0 OR expires_at_ms > $4){cursor} \
         ORDER BY created_at_ms {order}, id {order} LIMIT {}",
        u64::from(limit) + 1
    )
}

pub(super) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Implements `OwnershipStore` for `$store` (a struct with a `pool: sqlx::Pool<$db>` field).
/// `$begin_write` is the statement that opens a write transaction.
macro_rules! impl_ownership_store {
    ($store:ty, $db:ty, $begin_write:expr) => {
        mod ownership_store {
            use super::*;
            use $crate::catalog::model::{FoundryObject, ForgetsSince};
            use $crate::catalog::store::ownership_sql::{
                FoundryObjectRow, LOOKUP_BATCH, list_sql, lookup_sql, to_i64,
            };
            use $crate::catalog::store::sql::version_u64;
            use $crate::catalog::store::{OwnershipStore, StoreError, StoreResult};

            type WriteTx = sqlx::Transaction<'static, $db>;

            impl $store {
                async fn begin_write(&self) -> StoreResult<WriteTx> {
                    Ok(self.pool.begin_with($begin_write).await?)
                }
            }

            #[async_trait::async_trait]
            impl OwnershipStore for $store {
                async fn record_objects(&self, objects: &[FoundryObject]) -> StoreResult<usize> {
                    if objects.is_empty() {
                        return Ok(0);
                    }
                    let mut tx = self.begin_write().await?;
                    let mut events: Vec<&str> = objects.iter().map(|o| o.event_id.as_str()).collect();
                    events.sort_unstable();
                    events.dedup();
                    for event_id in events {
                        let found: Option<(String,)> = sqlx::query_as("SELECT id FROM events WHERE id = $1")
                            .bind(event_id)
                            .fetch_optional(&mut *tx)
                            .await?;
                        if found.is_none() {
                            return Err(StoreError::NotFound { kind: "event", id: event_id.to_string() });
                        }
                    }
                    // One order for every writer, so two overlapping batches cannot deadlock.
                    let mut sorted: Vec<&FoundryObject> = objects.iter().collect();
                    let mut written_here = 0;
                    sorted.sort_by(|a, b| (&a.kind, &a.id).cmp(&(&b.kind, &b.id)));
                    for o in sorted {
                        // Inserts, or takes over a record that has expired; otherwise writes nothing.
                        let written = sqlx::query(
                            "INSERT INTO foundry_objects (kind, id, event_id, user_id, resource_id, \
                             created_at_ms, expires_at_ms, alias_of) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                             ON CONFLICT (kind, id) DO UPDATE SET event_id = excluded.event_id, \
                             user_id = excluded.user_id, resource_id = excluded.resource_id, \
                             created_at_ms = excluded.created_at_ms, expires_at_ms = excluded.expires_at_ms, \
                             alias_of = excluded.alias_of \
                             WHERE foundry_objects.expires_at_ms > 0 AND foundry_objects.expires_at_ms <= $6",
                        )
                        .bind(&o.kind)
                        .bind(&o.id)
                        .bind(&o.event_id)
                        .bind(&o.user_id)
                        .bind(&o.resource_id)
                        .bind(o.created_at_ms)
                        .bind(o.expires_at_ms)
                        .bind(&o.alias_of)
                        .execute(&mut *tx)
                        .await?;
                        if written.rows_affected() > 0 {
                            written_here += 1;
                            continue;
                        }
                        let (event_id, user_id): (String, String) = sqlx::query_as(
                            "SELECT event_id, user_id FROM foundry_objects WHERE kind = $1 AND id = $2",
                        )
                        .bind(&o.kind)
                        .bind(&o.id)
                        .fetch_one(&mut *tx)
                        .await?;
                        if event_id != o.event_id || user_id != o.user_id {
                            return Err(StoreError::Conflict(format!(
                                "{} '{}' belongs to another attendee",
                                o.kind, o.id
                            )));
                        }
                        // Recorded already for the same attendee (a retry): nothing changes.
                    }
                    tx.commit().await?;
                    Ok(written_here)
                }

                async fn forget_object(&self, kind: &str, id: &str) -> StoreResult<u64> {
                    let mut tx = self.begin_write().await?;
                    let (seq,): (i64,) = sqlx::query_as(
                        "UPDATE object_forget_seq SET seq = seq + 1 WHERE singleton = 1 RETURNING seq",
                    )
                    .fetch_one(&mut *tx)
                    .await?;
                    let gone: Vec<(String,)> = sqlx::query_as(
                        "DELETE FROM foundry_objects WHERE kind = $1 AND (id = $2 OR alias_of = $2) RETURNING id",
                    )
                    .bind(kind)
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await?;
                    if gone.is_empty() {
                        return Err(StoreError::NotFound { kind: "object", id: format!("{kind}/{id}") });
                    }
                    let at_ms = chrono::Utc::now().timestamp_millis();
                    for (gone_id,) in gone {
                        sqlx::query("INSERT INTO object_forgets (seq, kind, id, at_ms) VALUES ($1, $2, $3, $4)")
                            .bind(seq)
                            .bind(kind)
                            .bind(gone_id)
                            .bind(at_ms)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(version_u64(seq))
                }

                async fn lookup_objects(
                    &self,
                    refs: &[(String, String)],
                    now_ms: i64,
                ) -> StoreResult<Vec<FoundryObject>> {
                    let mut found = Vec::new();
                    for batch in refs.chunks(LOOKUP_BATCH) {
                        let sql = lookup_sql(batch.len());
                        let mut query = sqlx::query_as::<_, FoundryObjectRow>(sqlx::AssertSqlSafe(sql)).bind(now_ms);
                        for (kind, id) in batch {
                            query = query.bind(kind).bind(id);
                        }
                        found.extend(query.fetch_all(&self.pool).await?.into_iter().map(FoundryObject::from));
                    }
                    Ok(found)
                }

                async fn list_owned_objects(
                    &self,
                    event_id: &str,
                    user_id: &str,
                    kind: &str,
                    after_id: Option<&str>,
                    descending: bool,
                    limit: u32,
                    now_ms: i64,
                ) -> StoreResult<(Vec<FoundryObject>, bool)> {
                    // The cursor may have expired since the previous page: it still places the next one.
                    let cursor = match after_id {
                        None => None,
                        Some(after) => {
                            let at: Option<(i64,)> = sqlx::query_as(
                                "SELECT created_at_ms FROM foundry_objects WHERE kind = $1 AND id = $2 \
                                 AND event_id = $3 AND user_id = $4 AND alias_of = ''",
                            )
                            .bind(kind)
                            .bind(after)
                            .bind(event_id)
                            .bind(user_id)
                            .fetch_optional(&self.pool)
                            .await?;
                            match at {
                                Some((at,)) => Some((at, after)),
                                None => {
                                    return Err(StoreError::NotFound { kind: "object", id: format!("{kind}/{after}") });
                                }
                            }
                        }
                    };
                    let sql = list_sql(cursor.is_some(), descending, limit);
                    let mut query = sqlx::query_as::<_, FoundryObjectRow>(sqlx::AssertSqlSafe(sql))
                        .bind(event_id)
                        .bind(user_id)
                        .bind(kind)
                        .bind(now_ms);
                    if let Some((at, id)) = cursor {
                        query = query.bind(at).bind(id);
                    }
                    let mut page: Vec<FoundryObject> =
                        query.fetch_all(&self.pool).await?.into_iter().map(FoundryObject::from).collect();
                    let has_more = page.len() > limit as usize;
                    page.truncate(limit as usize);
                    Ok((page, has_more))
                }

                async fn purge_expired_objects(&self, now_ms: i64) -> StoreResult<u64> {
                    let done = sqlx::query("DELETE FROM foundry_objects WHERE expires_at_ms > 0 AND expires_at_ms <= $1")
                        .bind(now_ms)
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected())
                }

                async fn current_forget_seq(&self) -> StoreResult<u64> {
                    let (seq,): (i64,) = sqlx::query_as("SELECT seq FROM object_forget_seq WHERE singleton = 1")
                        .fetch_one(&self.pool)
                        .await?;
                    Ok(version_u64(seq))
                }

                async fn forgets_since(&self, since: u64) -> StoreResult<ForgetsSince> {
                    let current = self.current_forget_seq().await?;
                    if since >= current {
                        // Beyond the current number: a reader of another database.
                        return Ok(ForgetsSince { objects: Vec::new(), seq: current, complete: since == current });
                    }
                    // Every number up to `current` was committed with its rows (they share the transaction).
                    let rows: Vec<(i64, String, String)> = sqlx::query_as(
                        "SELECT seq, kind, id FROM object_forgets WHERE seq > $1 AND seq <= $2 ORDER BY seq, kind, id",
                    )
                    .bind(to_i64(since))
                    .bind(to_i64(current))
                    .fetch_all(&self.pool)
                    .await?;
                    // Numbers are dense (a forget that finds nothing rolls its number back), so a
                    // missing one was pruned.
                    let mut seqs: Vec<i64> = rows.iter().map(|(seq, _, _)| *seq).collect();
                    seqs.dedup();
                    let complete = seqs.len() as u64 == current - since;
                    Ok(ForgetsSince {
                        objects: rows.into_iter().map(|(_, kind, id)| (kind, id)).collect(),
                        seq: current,
                        complete,
                    })
                }

                async fn prune_forgets(&self, older_than_ms: i64) -> StoreResult<u64> {
                    let done = sqlx::query("DELETE FROM object_forgets WHERE at_ms < $1")
                        .bind(older_than_ms)
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected())
                }
            }
        }
    };
}

pub(crate) use impl_ownership_store;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_sql_numbers_pairs_after_the_time() {
        let sql = lookup_sql(2);
        assert!(sql.contains("IN (VALUES ($2, $3), ($4, $5))"), "{sql}");
    }

    #[test]
    fn list_sql_asks_one_row_more_and_follows_the_direction() {
        let sql = list_sql(true, true, 10);
        assert!(sql.contains("(created_at_ms, id) < ($5, $6)"), "{sql}");
        assert!(
            sql.ends_with("ORDER BY created_at_ms DESC, id DESC LIMIT 11"),
            "{sql}"
        );
        let sql = list_sql(false, false, 1);
        assert!(!sql.contains("$5"), "{sql}");
        assert!(sql.ends_with("ASC LIMIT 2"), "{sql}");
    }
}
