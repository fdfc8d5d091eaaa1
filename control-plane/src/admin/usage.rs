//! `/usage`: usage reports over the hourly aggregates, as JSON (rows and totals) or as a CSV
//! download (`usage_csv.rs`). Parameters are checked strictly (an unknown one or a bad value is a
//! 400 naming it), so a typo never silently widens a report.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat};
use serde_json::{Value, json};

use super::AdminState;
use super::error::ApiError;
use super::usage_csv;
use crate::catalog::model::{
    UsageFilter, UsageGranularity, UsageGrouping, UsageReportQuery, UsageRow, UsageTotals,
};
use crate::catalog::service::CatalogError;
use crate::catalog::store::CatalogStore;

const ACCEPTED: &[&str] = &[
    "event_id",
    "resource_id",
    "user_id",
    "from",
    "to",
    "granularity",
    "group_by",
    "format",
];
/// Most rows the JSON form answers; beyond, narrow the filters or take the CSV.
pub const MAX_JSON_ROWS: u64 = 100_000;
/// Default range: this long before `to`.
const DEFAULT_RANGE_MS: i64 = 7 * UsageGranularity::DAY_MS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
}

/// The request's parameters, checked.
#[derive(Debug)]
struct ReportRequest {
    query: UsageReportQuery,
    format: Format,
}

fn parse_time(field: &'static str, value: &str) -> Result<i64, ApiError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            ApiError::invalid(
                field,
                format!("expected an RFC 3339 time such as 2026-03-29T00:00:00Z, got '{value}'"),
            )
        })
}

fn parse_request(params: Vec<(String, String)>, now_ms: i64) -> Result<ReportRequest, ApiError> {
    let mut seen: Vec<&str> = Vec::new();
    for (name, _) in &params {
        let Some(known) = ACCEPTED.iter().find(|a| **a == name) else {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter '{name}'; accepted: {}",
                ACCEPTED.join(", ")
            )));
        };
        if seen.contains(known) {
            return Err(ApiError::invalid(known, "given more than once"));
        }
        seen.push(known);
    }
    let get = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let id = |field: &'static str| -> Result<Option<String>, ApiError> {
        match get(field) {
            None => Ok(None),
            Some("") => Err(ApiError::invalid(
                field,
                "must not be empty (leave it out to take all)",
            )),
            Some(v) => Ok(Some(v.to_string())),
        }
    };
    let to_ms = get("to")
        .map(|v| parse_time("to", v))
        .transpose()?
        .unwrap_or(now_ms);
    let from_ms = get("from")
        .map(|v| parse_time("from", v))
        .transpose()?
        .unwrap_or(to_ms.saturating_sub(DEFAULT_RANGE_MS));
    if from_ms >= to_ms {
        return Err(ApiError::invalid("from", "must be before to"));
    }
    Ok(ReportRequest {
        query: UsageReportQuery {
            filter: UsageFilter {
                event_id: id("event_id")?,
                resource_id: id("resource_id")?,
                user_id: id("user_id")?,
                from_ms,
                to_ms,
            },
            granularity: parse_granularity(get("granularity"))?,
            group_by: parse_group_by(get("group_by").unwrap_or(""))?,
        },
        format: parse_format(get("format"))?,
    })
}

fn parse_granularity(value: Option<&str>) -> Result<UsageGranularity, ApiError> {
    match value {
        None | Some("hour") => Ok(UsageGranularity::Hour),
        Some("day") => Ok(UsageGranularity::Day),
        Some(other) => Err(ApiError::invalid(
            "granularity",
            format!("expected hour or day, got '{other}'"),
        )),
    }
}

fn parse_group_by(value: &str) -> Result<UsageGrouping, ApiError> {
    let mut group_by = UsageGrouping::default();
    for part in value.split(',') {
        match part.trim() {
            "" => {}
            "event" => group_by.event = true,
            "resource" => group_by.resource = true,
            "attendee" => group_by.attendee = true,
            other => {
                return Err(ApiError::invalid(
                    "group_by",
                    format!(
                        "expected a comma-separated list of event, resource, attendee; got '{other}'"
                    ),
                ));
            }
        }
    }
    Ok(group_by)
}

fn parse_format(value: Option<&str>) -> Result<Format, ApiError> {
    match value {
        None | Some("json") => Ok(Format::Json),
        Some("csv") => Ok(Format::Csv),
        Some(other) => Err(ApiError::invalid(
            "format",
            format!("expected json or csv, got '{other}'"),
        )),
    }
}

pub(super) fn rfc3339(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn totals_json(t: &UsageTotals) -> Value {
    json!({
        "requests": t.requests,
        "errors": t.errors,
        "prompt_tokens": t.prompt_tokens,
        "completion_tokens": t.completion_tokens,
        "total_tokens": t.total_tokens,
        "cached_tokens": t.cached_tokens,
    })
}

fn row_json(r: &UsageRow) -> Value {
    let mut out = json!({
        "bucket": rfc3339(r.bucket_ms),
        "event_id": r.event_id,
        "resource_id": r.resource_id,
        "deployment_name": r.deployment_name,
        "user_id": r.user_id,
    });
    if let (Value::Object(out), Value::Object(sums)) = (&mut out, totals_json(&r.totals)) {
        out.extend(sums);
    }
    out
}

pub async fn report(
    State(s): State<AdminState>,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let request = parse_request(params, chrono::Utc::now().timestamp_millis())?;
    let store = s.catalog.store().clone();
    match request.format {
        Format::Json => json_report(&*store, &request.query).await,
        Format::Csv => usage_csv::report(store, request.query).await,
    }
}

async fn json_report(
    store: &dyn CatalogStore,
    query: &UsageReportQuery,
) -> Result<Response, ApiError> {
    let rows = store
        .usage_rows(query, MAX_JSON_ROWS + 1)
        .await
        .map_err(CatalogError::from)?;
    if rows.len() as u64 > MAX_JSON_ROWS {
        return Err(ApiError::bad_request(format!(
            "the report has more than {MAX_JSON_ROWS} rows: narrow the filters or use format=csv"
        )));
    }
    let totals = store
        .usage_totals(&query.filter)
        .await
        .map_err(CatalogError::from)?;
    let rows: Vec<Value> = rows.iter().map(row_json).collect();
    Ok(Json(json!({ "rows": rows, "totals": totals_json(&totals) })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_the_last_seven_days_by_hour_as_json() {
        let now = 1_750_000_000_000;
        let r = parse_request(Vec::new(), now).unwrap();
        assert_eq!(r.format, Format::Json);
        assert_eq!(r.query.granularity, UsageGranularity::Hour);
        assert_eq!(r.query.group_by, UsageGrouping::default());
        assert_eq!(
            (r.query.filter.from_ms, r.query.filter.to_ms),
            (now - DEFAULT_RANGE_MS, now)
        );
    }

    #[test]
    fn bad_parameters_are_named() {
        for (pairs, field) in [
            (vec![("granularity", "week")], "granularity"),
            (vec![("group_by", "event,model")], "group_by"),
            (vec![("format", "xml")], "format"),
            (vec![("from", "yesterday")], "from"),
            (vec![("event_id", "")], "event_id"),
            (vec![("event_id", "a"), ("event_id", "b")], "event_id"),
            (
                vec![
                    ("from", "2026-01-02T00:00:00Z"),
                    ("to", "2026-01-01T00:00:00Z"),
                ],
                "from",
            ),
        ] {
            let err = parse_request(params(&pairs), 0).unwrap_err();
            assert!(
                format!("{err:?}").contains(&format!("{field}: ")),
                "{err:?}"
            );
        }
        let err = parse_request(params(&[("evnt_id", "x")]), 0).unwrap_err();
        assert!(format!("{err:?}").contains("unknown query parameter 'evnt_id'"));
    }
}
