//! Usage metering as the control plane sees it: edges meter every proxied request and send the
//! records in batches (`EdgeService.ReportUsage`); this module checks what they send and applies
//! each batch once (`UsageStore::apply_usage_batch`), answers an attendee's usage for
//! `/eventinfo` (`GetUsage`), and forgets old dedupe ids in the hourly upkeep.
//!
//! Usage is not catalog state: it takes no version, never rides the Sync stream, and stays after
//! its event is deleted (reports of past events keep working).

use std::sync::Arc;

use chrono::NaiveDate;

use crate::catalog::model::{UsageGranularity, UsageRecord, UsageSum, UsageSummary};
use crate::catalog::service::{CatalogError, CatalogResult};
use crate::catalog::store::CatalogStore;

/// Most entries (records and sums) one batch may carry (edges flush every 500 entries or every
/// second).
pub const MAX_RECORDS_PER_BATCH: usize = 5000;
/// Most requests one sum may count: far beyond one edge's hour for one attendee, and small enough
/// that a full batch of sums cannot overflow a 64-bit count.
pub const MAX_SUM_REQUESTS: u64 = 1_000_000_000;
/// Longest batch id, in characters (`[A-Za-z0-9_-]`).
pub const MAX_BATCH_ID_CHARS: usize = 128;
/// Longest id or deployment name a record may carry, in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Longest once key, in bytes (part of the Sync contract).
pub use aiproxy_proto::MAX_ONCE_KEY_BYTES;
/// Most tokens one record (or one lease's debt) may count: far beyond any real call, and small
/// enough that a full batch cannot overflow a 64-bit sum.
pub const MAX_TOKENS: u64 = 1_000_000_000_000_000;
/// How long applied batch ids and once keys are kept. An edge spills unsent batches to disk and
/// sends them after a restart, possibly days later: a batch resent within this time is still
/// recognised; one resent later would count twice.
pub const USAGE_DEDUPE_RETENTION_MS: i64 = 30 * 86_400_000;
/// Latest request time a record may carry (the end of year 9999), Unix ms.
const MAX_STARTED_AT_MS: i64 = 253_402_300_799_999;

pub struct UsageLedger {
    store: Arc<dyn CatalogStore>,
}

impl UsageLedger {
    pub fn new(store: Arc<dyn CatalogStore>) -> Self {
        Self { store }
    }

    /// Checks and applies a batch; `false` when it had been applied before (nothing changed).
    pub async fn apply(
        &self,
        batch_id: &str,
        records: &[UsageRecord],
        sums: &[UsageSum],
    ) -> CatalogResult<bool> {
        check_batch_id(batch_id)?;
        let entries = records.len() + sums.len();
        if entries > MAX_RECORDS_PER_BATCH {
            return Err(CatalogError::invalid(
                "records",
                format!(
                    "at most {MAX_RECORDS_PER_BATCH} records and sums per batch, got {entries}: split the batch"
                ),
            ));
        }
        for (i, r) in records.iter().enumerate() {
            check_record(i, r)?;
        }
        for (i, s) in sums.iter().enumerate() {
            check_sum(i, s)?;
        }
        Ok(self
            .store
            .apply_usage_batch(batch_id, records, sums, now_ms())
            .await?)
    }

    /// One attendee's usage on the UTC day `day` (`YYYY-MM-DD`), and the event's total tokens.
    pub async fn summary(
        &self,
        event_id: &str,
        user_id: &str,
        day: &str,
    ) -> CatalogResult<UsageSummary> {
        required_id("event_id", event_id)?;
        required_id("user_id", user_id)?;
        let day = parse_utc_day("day", day)?;
        Ok(self.store.usage_summary(event_id, user_id, day).await?)
    }

    /// Forgets dedupe ids older than the retention. Every replica may run it: an idempotent delete.
    pub async fn upkeep(&self, now_ms: i64) -> CatalogResult<()> {
        let purged = self
            .store
            .purge_usage_dedupe(now_ms.saturating_sub(USAGE_DEDUPE_RETENTION_MS))
            .await?;
        tracing::debug!(purged, "usage dedupe ids upkeep");
        Ok(())
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A UTC day as edges send it: exactly `YYYY-MM-DD`.
pub fn parse_utc_day(field: &'static str, day: &str) -> CatalogResult<NaiveDate> {
    let parsed = (day.len() == 10)
        .then(|| NaiveDate::parse_from_str(day, "%Y-%m-%d").ok())
        .flatten();
    parsed.ok_or_else(|| {
        CatalogError::invalid(
            field,
            format!("expected a UTC day as YYYY-MM-DD, got '{day}'"),
        )
    })
}

/// A non-empty id of at most `MAX_ID_BYTES`.
pub fn required_id(field: &'static str, value: &str) -> CatalogResult<()> {
    if value.is_empty() {
        return Err(CatalogError::invalid(field, "required, a non-empty string"));
    }
    bounded(field, value, MAX_ID_BYTES, None)
}

/// Which entry of a batch a field is of, for error messages: `("record", 3)`.
type Entry = Option<(&'static str, usize)>;

fn check_batch_id(id: &str) -> CatalogResult<()> {
    let well_formed = (1..=MAX_BATCH_ID_CHARS).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !well_formed {
        return Err(CatalogError::invalid(
            "batch_id",
            format!("expected 1 to {MAX_BATCH_ID_CHARS} characters of A-Z, a-z, 0-9, '-' and '_'"),
        ));
    }
    Ok(())
}

fn bounded(field: &'static str, value: &str, max: usize, entry: Entry) -> CatalogResult<()> {
    let which = || {
        entry
            .map(|(kind, i)| format!(" ({kind} {i})"))
            .unwrap_or_default()
    };
    if value.len() > max {
        return Err(CatalogError::invalid(
            field,
            format!("at most {max} bytes{}", which()),
        ));
    }
    // Refused as invalid (the edge sets the batch aside), not left to a database that refuses a
    // NUL as a failure the edge would retry for ever.
    if value.chars().any(char::is_control) {
        return Err(CatalogError::invalid(
            field,
            format!("no control characters{}", which()),
        ));
    }
    Ok(())
}

/// The ids a record or a sum is counted under: bounded, no control characters.
fn check_ids(kind: &'static str, i: usize, ids: [(&'static str, &str); 4]) -> CatalogResult<()> {
    for (field, value) in ids {
        bounded(field, value, MAX_ID_BYTES, Some((kind, i)))?;
    }
    Ok(())
}

/// A record's or a sum's tokens: at most `MAX_TOKENS` of each kind.
fn check_tokens(
    kind: &'static str,
    i: usize,
    tokens: [(&'static str, u64); 5],
) -> CatalogResult<()> {
    for (field, tokens) in tokens {
        if tokens > MAX_TOKENS {
            return Err(CatalogError::invalid(
                field,
                format!("at most {MAX_TOKENS} ({kind} {i} has {tokens})"),
            ));
        }
    }
    Ok(())
}

fn check_record(i: usize, r: &UsageRecord) -> CatalogResult<()> {
    check_ids(
        "record",
        i,
        [
            ("event_id", &r.event_id),
            ("user_id", &r.user_id),
            ("resource_id", &r.resource_id),
            ("deployment_name", &r.deployment_name),
        ],
    )?;
    check_tokens(
        "record",
        i,
        [
            ("prompt_tokens", r.prompt_tokens),
            ("completion_tokens", r.completion_tokens),
            ("total_tokens", r.total_tokens),
            ("cached_tokens", r.cached_tokens),
            ("reasoning_tokens", r.reasoning_tokens),
        ],
    )?;
    bounded(
        "once_key",
        &r.once_key,
        MAX_ONCE_KEY_BYTES,
        Some(("record", i)),
    )?;
    if !(100..=599).contains(&r.status) {
        return Err(CatalogError::invalid(
            "status",
            format!(
                "expected an HTTP status from 100 to 599 (record {i} has {})",
                r.status
            ),
        ));
    }
    if !(1..=MAX_STARTED_AT_MS).contains(&r.started_at_ms) {
        return Err(CatalogError::invalid(
            "started_at_ms",
            format!(
                "expected Unix milliseconds after 1970 (record {i} has {})",
                r.started_at_ms
            ),
        ));
    }
    if r.follow_up && r.once_key.is_empty() {
        return Err(CatalogError::invalid(
            "follow_up",
            format!("a follow-up record carries its object's once_key (record {i} has none)"),
        ));
    }
    Ok(())
}

fn check_sum(i: usize, s: &UsageSum) -> CatalogResult<()> {
    check_ids(
        "sum",
        i,
        [
            ("event_id", &s.event_id),
            ("user_id", &s.user_id),
            ("resource_id", &s.resource_id),
            ("deployment_name", &s.deployment_name),
        ],
    )?;
    check_tokens(
        "sum",
        i,
        [
            ("prompt_tokens", s.prompt_tokens),
            ("completion_tokens", s.completion_tokens),
            ("total_tokens", s.total_tokens),
            ("cached_tokens", s.cached_tokens),
            ("reasoning_tokens", s.reasoning_tokens),
        ],
    )?;
    let invalid = |field: &'static str, expected: String| {
        Err(CatalogError::invalid(
            field,
            format!("{expected} (sum {i})"),
        ))
    };
    let hour = UsageGranularity::HOUR_MS;
    if !(hour..=MAX_STARTED_AT_MS).contains(&s.hour_ms) || s.hour_ms % hour != 0 {
        return invalid(
            "hour_ms",
            format!(
                "expected the start of a UTC hour in Unix milliseconds, got {}",
                s.hour_ms
            ),
        );
    }
    if !(1..=MAX_SUM_REQUESTS).contains(&s.requests) {
        return invalid(
            "requests",
            format!("expected 1 to {MAX_SUM_REQUESTS}, got {}", s.requests),
        );
    }
    for (field, count) in [
        ("errors", s.errors),
        ("streamed", s.streamed),
        ("usage_unknown", s.usage_unknown),
    ] {
        if count > s.requests {
            return invalid(
                field,
                format!("at most the sum's {} requests, got {count}", s.requests),
            );
        }
    }
    // A record's durations are 32-bit milliseconds.
    let most = s.requests * u64::from(u32::MAX);
    for (field, ms) in [("duration_ms", s.duration_ms), ("ttfb_ms", s.ttfb_ms)] {
        if ms > most {
            return invalid(
                field,
                format!("at most {most} for {} requests, got {ms}", s.requests),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> UsageRecord {
        UsageRecord {
            event_id: "e".into(),
            user_id: "u".into(),
            status: 200,
            started_at_ms: 1_750_000_000_000,
            ..Default::default()
        }
    }

    #[test]
    fn batch_ids_are_short_and_url_safe() {
        assert!(check_batch_id("edge-1_0001").is_ok());
        assert!(check_batch_id(&"a".repeat(MAX_BATCH_ID_CHARS)).is_ok());
        for bad in ["", "a b", "a/b", "é", &"a".repeat(MAX_BATCH_ID_CHARS + 1)] {
            assert!(check_batch_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn records_need_an_http_status_a_time_and_plausible_counts() {
        assert!(check_record(0, &record()).is_ok());
        let mut r = record();
        r.status = 42;
        let err = check_record(3, &r).unwrap_err().to_string();
        assert!(
            err.starts_with("status: ") && err.contains("record 3"),
            "{err}"
        );
        let mut r = record();
        r.started_at_ms = 0;
        assert!(check_record(0, &r).is_err());
        let mut r = record();
        r.total_tokens = MAX_TOKENS + 1;
        assert!(check_record(0, &r).is_err());
        let mut r = record();
        r.deployment_name = "d".repeat(MAX_ID_BYTES + 1);
        assert!(check_record(0, &r).is_err());
        let mut r = record();
        r.once_key = "run\u{0}1".into();
        let err = check_record(2, &r).unwrap_err().to_string();
        assert!(
            err.starts_with("once_key: no control characters") && err.contains("record 2"),
            "{err}"
        );
        let mut r = record();
        r.follow_up = true;
        let err = check_record(1, &r).unwrap_err().to_string();
        assert!(
            err.starts_with("follow_up: ") && err.contains("record 1"),
            "{err}"
        );
        r.once_key = "r1:run:run_1".into();
        assert!(check_record(1, &r).is_ok());
    }

    fn sum() -> UsageSum {
        UsageSum {
            event_id: "e".into(),
            user_id: "u".into(),
            hour_ms: 1_749_999_600_000,
            requests: 3,
            errors: 1,
            duration_ms: 30,
            ..Default::default()
        }
    }

    #[test]
    fn sums_need_an_hour_requests_and_counts_their_requests_could_make() {
        assert!(check_sum(0, &sum()).is_ok());
        type Spoil = fn(&mut UsageSum);
        let bad: [(&str, Spoil); 9] = [
            ("hour_ms", |s| s.hour_ms += 1),
            ("hour_ms", |s| s.hour_ms = 0),
            ("hour_ms", |s| s.hour_ms = -UsageGranularity::HOUR_MS),
            ("requests", |s| s.requests = 0),
            ("requests", |s| s.requests = MAX_SUM_REQUESTS + 1),
            ("errors", |s| s.errors = 4),
            ("total_tokens", |s| s.total_tokens = MAX_TOKENS + 1),
            ("duration_ms", |s| {
                s.duration_ms = 3 * u64::from(u32::MAX) + 1
            }),
            ("user_id", |s| s.user_id = "u\u{0}".into()),
        ];
        for (field, spoil) in bad {
            let mut s = sum();
            spoil(&mut s);
            let err = check_sum(4, &s).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("{field}: ")) && err.contains("sum 4"),
                "{field}: {err}"
            );
        }
    }

    #[test]
    fn days_are_exactly_year_month_day() {
        assert_eq!(
            parse_utc_day("day", "2026-03-29").unwrap(),
            NaiveDate::from_ymd_opt(2026, 3, 29).unwrap()
        );
        for bad in [
            "2026-3-29",
            "2026-02-30",
            "+2026-03-29",
            "",
            "2026-03-29T00:00:00Z",
        ] {
            assert!(parse_utc_day("day", bad).is_err(), "{bad}");
        }
    }
}
