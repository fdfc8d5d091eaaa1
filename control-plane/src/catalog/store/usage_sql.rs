//! The SQL of usage (`UsageStore`), shared by both stores the way `sql.rs` is: one macro
//! instantiated per concrete sqlx database.
//!
//! A batch is applied in one transaction opened with `$begin_write` (`BEGIN IMMEDIATE` on SQLite,
//! so concurrent appliers queue for the write lock instead of failing). Its first statement
//! inserts the batch id: a second applier of the same batch waits on that key until the first
//! commits, then finds it and changes nothing. Once keys are claimed the same way. The records are
//! summed in memory per (event, attendee, resource, deployment, hour) and each sum is added to its
//! row with an upsert; keys are always written in one order, so two batches touching the same
//! rows cannot deadlock.

use std::collections::BTreeMap;

use crate::catalog::model::{
    UsageFilter, UsageGranularity, UsageRecord, UsageReportQuery, UsageRow, UsageSum, UsageTotals,
};

/// Rows one upsert statement writes (16 parameters each): far below either database's limit.
pub(super) const UPSERT_BATCH: usize = 200;
/// Once keys one statement claims.
pub(super) const ONCE_BATCH: usize = 500;

/// The row a record is added to: `(event_id, user_id, resource_id, deployment_name, hour_ms)`.
pub(super) type HourlyKey<'a> = (&'a str, &'a str, &'a str, &'a str, i64);

/// What one hourly row adds up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct HourlySums {
    pub requests: i64,
    pub errors: i64,
    pub streamed: i64,
    pub usage_unknown: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    pub cached_tokens: i64,
    pub reasoning_tokens: i64,
    pub duration_ms: i64,
    pub ttfb_ms: i64,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl HourlySums {
    fn add(&mut self, r: &UsageRecord, with_tokens: bool) {
        self.requests += i64::from(!r.follow_up);
        self.errors += i64::from(r.status >= 400);
        self.streamed += i64::from(r.streamed);
        self.usage_unknown += i64::from(r.usage_unknown);
        self.duration_ms = self.duration_ms.saturating_add(to_i64(r.duration_ms));
        self.ttfb_ms = self.ttfb_ms.saturating_add(to_i64(r.ttfb_ms));
        if with_tokens {
            let add = |sum: &mut i64, v: u64| *sum = sum.saturating_add(to_i64(v));
            add(&mut self.prompt_tokens, r.prompt_tokens);
            add(&mut self.completion_tokens, r.completion_tokens);
            add(&mut self.total_tokens, r.total_tokens);
            add(&mut self.cached_tokens, r.cached_tokens);
            add(&mut self.reasoning_tokens, r.reasoning_tokens);
        }
    }

    pub(super) fn values(&self) -> [i64; 11] {
        [
            self.requests,
            self.errors,
            self.streamed,
            self.usage_unknown,
            self.prompt_tokens,
            self.completion_tokens,
            self.total_tokens,
            self.cached_tokens,
            self.reasoning_tokens,
            self.duration_ms,
            self.ttfb_ms,
        ]
    }

    /// Adds the requests an edge summed.
    fn add_sum(&mut self, s: &UsageSum) {
        let add = |sum: &mut i64, v: u64| *sum = sum.saturating_add(to_i64(v));
        add(&mut self.requests, s.requests);
        add(&mut self.errors, s.errors);
        add(&mut self.streamed, s.streamed);
        add(&mut self.usage_unknown, s.usage_unknown);
        add(&mut self.prompt_tokens, s.prompt_tokens);
        add(&mut self.completion_tokens, s.completion_tokens);
        add(&mut self.total_tokens, s.total_tokens);
        add(&mut self.cached_tokens, s.cached_tokens);
        add(&mut self.reasoning_tokens, s.reasoning_tokens);
        add(&mut self.duration_ms, s.duration_ms);
        add(&mut self.ttfb_ms, s.ttfb_ms);
    }
}

/// Sums `records` and `sums` per hourly row, in key order. `with_tokens` says whether a record's
/// tokens count (its once key was not counted before); it is asked once per record, in order.
pub(super) fn aggregate<'a>(
    records: &'a [UsageRecord],
    sums: &'a [UsageSum],
    mut with_tokens: impl FnMut(&UsageRecord) -> bool,
) -> BTreeMap<HourlyKey<'a>, HourlySums> {
    let mut rows: BTreeMap<HourlyKey<'a>, HourlySums> = BTreeMap::new();
    for r in records {
        let key = (
            r.event_id.as_str(),
            r.user_id.as_str(),
            r.resource_id.as_str(),
            r.deployment_name.as_str(),
            UsageGranularity::Hour.floor(r.started_at_ms),
        );
        let tokens = with_tokens(r);
        rows.entry(key).or_default().add(r, tokens);
    }
    for s in sums {
        let key = (
            s.event_id.as_str(),
            s.user_id.as_str(),
            s.resource_id.as_str(),
            s.deployment_name.as_str(),
            s.hour_ms,
        );
        rows.entry(key).or_default().add_sum(s);
    }
    rows
}

const HOURLY_COLUMNS: &str = "event_id, user_id, resource_id, deployment_name, hour_ms, requests, \
    errors, streamed, usage_unknown, prompt_tokens, completion_tokens, total_tokens, cached_tokens, \
    reasoning_tokens, duration_ms, ttfb_ms";
const SUMMED: [&str; 11] = [
    "requests",
    "errors",
    "streamed",
    "usage_unknown",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "duration_ms",
    "ttfb_ms",
];

/// Adds `rows` sums to their hourly rows, creating the missing ones.
pub(super) fn upsert_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|i| {
            let params: Vec<String> = (1..=16).map(|p| format!("${}", i * 16 + p)).collect();
            format!("({})", params.join(", "))
        })
        .collect();
    let updates: Vec<String> = SUMMED
        .iter()
        .map(|c| format!("{c} = usage_hourly.{c} + excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO usage_hourly ({HOURLY_COLUMNS}) VALUES {} \
         ON CONFLICT (event_id, user_id, resource_id, deployment_name, hour_ms) DO UPDATE SET {}",
        values.join(", "),
        updates.join(", ")
    )
}

/// Claims `keys` once keys at time `$1`; returns the ones no earlier batch had claimed.
pub(super) fn claim_once_sql(keys: usize) -> String {
    let values: Vec<String> = (0..keys).map(|i| format!("(${}, $1)", i + 2)).collect();
    format!(
        "INSERT INTO usage_once (once_key, applied_at_ms) VALUES {} \
         ON CONFLICT (once_key) DO NOTHING RETURNING once_key",
        values.join(", ")
    )
}

/// `WHERE` for `filter`: the hours in `[$1, $2)`, then one `= $n` per exact filter. Returns the
/// clause and the filter values to bind after `$1`, `$2`.
pub(super) fn filter_sql(filter: &UsageFilter) -> (String, Vec<String>) {
    let mut clause = String::from("WHERE hour_ms >= $1 AND hour_ms < $2");
    let mut binds = Vec::new();
    for (column, value) in [
        ("event_id", &filter.event_id),
        ("resource_id", &filter.resource_id),
        ("user_id", &filter.user_id),
    ] {
        if let Some(value) = value {
            binds.push(value.clone());
            clause.push_str(&format!(" AND {column} = ${}", binds.len() + 2));
        }
    }
    (clause, binds)
}

const REPORT_SUMS: &str = "CAST(SUM(requests) AS BIGINT) AS requests, \
    CAST(SUM(errors) AS BIGINT) AS errors, CAST(SUM(prompt_tokens) AS BIGINT) AS prompt_tokens, \
    CAST(SUM(completion_tokens) AS BIGINT) AS completion_tokens, \
    CAST(SUM(total_tokens) AS BIGINT) AS total_tokens, \
    CAST(SUM(cached_tokens) AS BIGINT) AS cached_tokens";

/// The report's rows for `query`, at most `limit`; the binds as `filter_sql`'s.
pub(super) fn report_sql(query: &UsageReportQuery, limit: u64) -> (String, Vec<String>) {
    let bucket = match query.granularity {
        UsageGranularity::Hour => "hour_ms".to_string(),
        g => format!("(hour_ms / {0}) * {0}", g.bucket_ms()),
    };
    let g = query.group_by;
    let mut grouped = vec![bucket.clone()];
    let mut ordered = vec!["bucket_ms"];
    let mut dimension = |on: bool, column: &'static str| {
        if on {
            grouped.push(column.to_string());
            ordered.push(column);
            column.to_string()
        } else {
            format!("CAST(NULL AS TEXT) AS {column}")
        }
    };
    let dimensions = [
        dimension(g.event, "event_id"),
        dimension(g.resource, "resource_id"),
        dimension(g.resource, "deployment_name"),
        dimension(g.attendee, "user_id"),
    ];
    let (clause, binds) = filter_sql(&query.filter);
    let sql = format!(
        "SELECT {bucket} AS bucket_ms, {}, {REPORT_SUMS} FROM usage_hourly {clause} \
         GROUP BY {} ORDER BY {} LIMIT {limit}",
        dimensions.join(", "),
        grouped.join(", "),
        ordered.join(", "),
    );
    (sql, binds)
}

/// The sums over everything `filter` selects; the binds as `filter_sql`'s.
pub(super) fn totals_sql(filter: &UsageFilter) -> (String, Vec<String>) {
    let (clause, binds) = filter_sql(filter);
    let sums: Vec<String> = [
        "requests",
        "errors",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "cached_tokens",
    ]
    .iter()
    .map(|c| format!("COALESCE(CAST(SUM({c}) AS BIGINT), 0) AS {c}"))
    .collect();
    (
        format!("SELECT {} FROM usage_hourly {clause}", sums.join(", ")),
        binds,
    )
}

#[derive(sqlx::FromRow)]
pub(super) struct UsageTotalsRow {
    requests: i64,
    errors: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    total_tokens: i64,
    cached_tokens: i64,
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl From<UsageTotalsRow> for UsageTotals {
    fn from(r: UsageTotalsRow) -> Self {
        UsageTotals {
            requests: to_u64(r.requests),
            errors: to_u64(r.errors),
            prompt_tokens: to_u64(r.prompt_tokens),
            completion_tokens: to_u64(r.completion_tokens),
            total_tokens: to_u64(r.total_tokens),
            cached_tokens: to_u64(r.cached_tokens),
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct UsageReportRow {
    bucket_ms: i64,
    event_id: Option<String>,
    resource_id: Option<String>,
    deployment_name: Option<String>,
    user_id: Option<String>,
    #[sqlx(flatten)]
    totals: UsageTotalsRow,
}

/// Report rows in their order: bucket, then the dimensions, byte-wise (the databases' collations
/// may differ; the answer must not).
pub(super) fn report_rows(rows: Vec<UsageReportRow>) -> Vec<UsageRow> {
    let mut rows: Vec<UsageRow> = rows
        .into_iter()
        .map(|r| UsageRow {
            bucket_ms: r.bucket_ms,
            event_id: r.event_id,
            resource_id: r.resource_id,
            deployment_name: r.deployment_name,
            user_id: r.user_id,
            totals: r.totals.into(),
        })
        .collect();
    rows.sort_by(|a, b| {
        (
            a.bucket_ms,
            &a.event_id,
            &a.resource_id,
            &a.deployment_name,
            &a.user_id,
        )
            .cmp(&(
                b.bucket_ms,
                &b.event_id,
                &b.resource_id,
                &b.deployment_name,
                &b.user_id,
            ))
    });
    rows
}

/// Implements `UsageStore` for `$store` (a struct with a `pool: sqlx::Pool<$db>` field).
/// `$begin_write` is the statement that opens a write transaction.
macro_rules! impl_usage_store {
    ($store:ty, $db:ty, $begin_write:expr) => {
        mod usage_store {
            use std::collections::HashSet;

            use super::*;
            use $crate::catalog::model::{
                UsageFilter, UsageGranularity, UsageRecord, UsageReportQuery, UsageRow, UsageSum,
                UsageSummary, UsageTotals,
            };
            use $crate::catalog::store::usage_sql::{
                HourlySums, ONCE_BATCH, UPSERT_BATCH, UsageReportRow, UsageTotalsRow, aggregate,
                claim_once_sql, report_rows, report_sql, totals_sql, upsert_sql,
            };
            use $crate::catalog::store::{StoreResult, UsageStore};

            #[async_trait::async_trait]
            impl UsageStore for $store {
                async fn apply_usage_batch(
                    &self,
                    batch_id: &str,
                    records: &[UsageRecord],
                    sums: &[UsageSum],
                    now_ms: i64,
                ) -> StoreResult<bool> {
                    let mut tx = self.pool.begin_with($begin_write).await?;
                    let fresh = sqlx::query(
                        "INSERT INTO usage_batches (batch_id, applied_at_ms) VALUES ($1, $2) \
                         ON CONFLICT (batch_id) DO NOTHING",
                    )
                    .bind(batch_id)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                    if fresh.rows_affected() == 0 {
                        tx.rollback().await?;
                        return Ok(false);
                    }
                    let mut keys: Vec<&str> = records
                        .iter()
                        .map(|r| r.once_key.as_str())
                        .filter(|k| !k.is_empty())
                        .collect();
                    keys.sort_unstable();
                    keys.dedup();
                    // Keys claimed now: their first record in this batch brings the tokens.
                    let mut claimed: HashSet<String> = HashSet::new();
                    for chunk in keys.chunks(ONCE_BATCH) {
                        let sql = claim_once_sql(chunk.len());
                        let mut query = sqlx::query_as::<_, (String,)>(sqlx::AssertSqlSafe(sql)).bind(now_ms);
                        for key in chunk {
                            query = query.bind(*key);
                        }
                        claimed.extend(query.fetch_all(&mut *tx).await?.into_iter().map(|(k,)| k));
                    }
                    let rows: Vec<_> = aggregate(records, sums, |r| r.once_key.is_empty() || claimed.remove(&r.once_key))
                        .into_iter()
                        .collect();
                    for chunk in rows.chunks(UPSERT_BATCH) {
                        let sql = upsert_sql(chunk.len());
                        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                        for ((event_id, user_id, resource_id, deployment_name, hour_ms), sums) in chunk {
                            let sums: &HourlySums = sums;
                            query = query
                                .bind(*event_id)
                                .bind(*user_id)
                                .bind(*resource_id)
                                .bind(*deployment_name)
                                .bind(*hour_ms);
                            for v in sums.values() {
                                query = query.bind(v);
                            }
                        }
                        query.execute(&mut *tx).await?;
                    }
                    tx.commit().await?;
                    Ok(true)
                }

                async fn usage_rows(&self, query: &UsageReportQuery, limit: u64) -> StoreResult<Vec<UsageRow>> {
                    let (sql, binds) = report_sql(query, limit);
                    let mut q = sqlx::query_as::<_, UsageReportRow>(sqlx::AssertSqlSafe(sql))
                        .bind(query.filter.from_ms)
                        .bind(query.filter.to_ms);
                    for b in binds {
                        q = q.bind(b);
                    }
                    Ok(report_rows(q.fetch_all(&self.pool).await?))
                }

                async fn usage_totals(&self, filter: &UsageFilter) -> StoreResult<UsageTotals> {
                    let (sql, binds) = totals_sql(filter);
                    let mut q = sqlx::query_as::<_, UsageTotalsRow>(sqlx::AssertSqlSafe(sql))
                        .bind(filter.from_ms)
                        .bind(filter.to_ms);
                    for b in binds {
                        q = q.bind(b);
                    }
                    Ok(q.fetch_one(&self.pool).await?.into())
                }

                async fn usage_summary(
                    &self,
                    event_id: &str,
                    user_id: &str,
                    day: chrono::NaiveDate,
                ) -> StoreResult<UsageSummary> {
                    let from_ms = day.and_time(chrono::NaiveTime::MIN).and_utc().timestamp_millis();
                    let filter = UsageFilter {
                        event_id: Some(event_id.to_string()),
                        resource_id: None,
                        user_id: Some(user_id.to_string()),
                        from_ms,
                        to_ms: from_ms + UsageGranularity::DAY_MS,
                    };
                    let today = self.usage_totals(&filter).await?;
                    let (event_total,): (i64,) = sqlx::query_as(
                        "SELECT COALESCE(CAST(SUM(total_tokens) AS BIGINT), 0) FROM usage_hourly WHERE event_id = $1",
                    )
                    .bind(event_id)
                    .fetch_one(&self.pool)
                    .await?;
                    Ok(UsageSummary {
                        requests: today.requests,
                        prompt_tokens: today.prompt_tokens,
                        completion_tokens: today.completion_tokens,
                        total_tokens: today.total_tokens,
                        event_total_tokens: u64::try_from(event_total).unwrap_or(0),
                    })
                }

                async fn purge_usage_dedupe(&self, older_than_ms: i64) -> StoreResult<u64> {
                    let batches = sqlx::query("DELETE FROM usage_batches WHERE applied_at_ms < $1")
                        .bind(older_than_ms)
                        .execute(&self.pool)
                        .await?;
                    let once = sqlx::query("DELETE FROM usage_once WHERE applied_at_ms < $1")
                        .bind(older_than_ms)
                        .execute(&self.pool)
                        .await?;
                    Ok(batches.rows_affected() + once.rows_affected())
                }
            }
        }
    };
}

pub(crate) use impl_usage_store;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::model::UsageGrouping;

    fn record(user: &str, started_at_ms: i64, status: u32, total: u64) -> UsageRecord {
        UsageRecord {
            event_id: "e".into(),
            user_id: user.into(),
            resource_id: "r".into(),
            deployment_name: "d".into(),
            status,
            started_at_ms,
            total_tokens: total,
            ..Default::default()
        }
    }

    #[test]
    fn records_are_summed_per_utc_hour_and_tokens_only_when_they_count() {
        let records = [
            record("u", 3_600_000 - 1, 200, 5),
            record("u", 3_600_000, 500, 7),
            record("u", 7_199_999, 200, 11),
        ];
        let mut asked = 0;
        let sums = aggregate(&records, &[], |_| {
            asked += 1;
            asked != 3
        });
        let rows: Vec<_> = sums.into_iter().collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].0.4, 0);
        assert_eq!((rows[0].1.requests, rows[0].1.total_tokens), (1, 5));
        assert_eq!(rows[1].0.4, 3_600_000);
        assert_eq!(
            (rows[1].1.requests, rows[1].1.errors, rows[1].1.total_tokens),
            (2, 1, 7),
            "the third record's tokens do not count"
        );
    }

    #[test]
    fn upserts_number_sixteen_parameters_per_row() {
        let sql = upsert_sql(2);
        assert!(sql.contains("($17, $18,"), "{sql}");
        assert!(sql.contains("$32)"), "{sql}");
        assert!(!sql.contains("$33"), "{sql}");
        assert!(sql.contains("requests = usage_hourly.requests + excluded.requests"));
    }

    #[test]
    fn report_sql_groups_on_what_was_asked_and_nulls_the_rest() {
        let query = UsageReportQuery {
            filter: UsageFilter {
                event_id: Some("e".into()),
                user_id: Some("u".into()),
                ..Default::default()
            },
            granularity: UsageGranularity::Day,
            group_by: UsageGrouping {
                resource: true,
                ..Default::default()
            },
        };
        let (sql, binds) = report_sql(&query, 10);
        assert_eq!(binds, ["e", "u"]);
        assert!(sql.contains("AND event_id = $3 AND user_id = $4"), "{sql}");
        assert!(sql.contains("CAST(NULL AS TEXT) AS event_id"), "{sql}");
        assert!(
            sql.contains(
                "GROUP BY (hour_ms / 86400000) * 86400000, resource_id, deployment_name ORDER BY"
            ),
            "{sql}"
        );
        assert!(sql.ends_with("LIMIT 10"), "{sql}");
    }
}
