//! The CSV form of `/usage`: a `text/csv` download streamed through a channel-backed body. The
//! range is read one window of buckets at a time and each window's rows are sent as they are
//! read, so an export of any size holds one window in memory. Windows grow across stretches
//! without usage and shrink when one holds too many rows; they end on bucket boundaries, so no
//! bucket is split between two of them.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use http_body::Frame;
use http_body_util::StreamBody;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::error::ApiError;
use super::usage::rfc3339;
use crate::catalog::model::{UsageGranularity, UsageReportQuery, UsageRow};
use crate::catalog::service::CatalogError;
use crate::catalog::store::{CatalogStore, StoreResult};

/// Most rows one window reads before it is split (unless it is a single bucket).
const WINDOW_ROWS: u64 = 20_000;
/// Widest window, however long the stretch without usage.
const MAX_WINDOW_MS: i64 = 1024 * UsageGranularity::DAY_MS;

const CSV_HEADER: &str = "bucket,event_id,resource_id,deployment_name,user_id,requests,errors,\
    prompt_tokens,completion_tokens,total_tokens,cached_tokens\r\n";

/// Reads a report's range window by window, in bucket order.
struct CsvWindows {
    query: UsageReportQuery,
    /// Start of the next window; the range is done when it reaches `query.filter.to_ms`.
    next_ms: i64,
    span_ms: i64,
}

impl CsvWindows {
    fn new(query: UsageReportQuery) -> Self {
        let next_ms = query.filter.from_ms;
        Self {
            span_ms: Self::base_span(query.granularity),
            query,
            next_ms,
        }
    }

    /// A day of hours, or a week of days.
    fn base_span(granularity: UsageGranularity) -> i64 {
        match granularity {
            UsageGranularity::Hour => UsageGranularity::DAY_MS,
            UsageGranularity::Day => 7 * UsageGranularity::DAY_MS,
        }
    }

    fn window_end(&self, start: i64, span: i64) -> i64 {
        let g = self.query.granularity;
        let end = g.floor(start.saturating_add(span));
        let end = if end <= start {
            g.floor(start) + g.bucket_ms()
        } else {
            end
        };
        end.min(self.query.filter.to_ms)
    }

    /// The next window's rows; `None` once the range is read.
    async fn next(&mut self, store: &dyn CatalogStore) -> StoreResult<Option<Vec<UsageRow>>> {
        let start = self.next_ms;
        if start >= self.query.filter.to_ms {
            return Ok(None);
        }
        let bucket = self.query.granularity.bucket_ms();
        let mut span = self.span_ms;
        loop {
            let end = self.window_end(start, span);
            let single_bucket = end - start <= bucket;
            let mut window = self.query.clone();
            window.filter.from_ms = start;
            window.filter.to_ms = end;
            let limit = if single_bucket {
                u64::MAX >> 1
            } else {
                WINDOW_ROWS + 1
            };
            let rows = store.usage_rows(&window, limit).await?;
            if rows.len() as u64 > WINDOW_ROWS && !single_bucket {
                // A window widened across a stretch without usage starts over from the base span;
                // a base window that is still too full is halved.
                let base = Self::base_span(self.query.granularity);
                span = if span > base {
                    base
                } else {
                    (span / 2).max(bucket)
                };
                continue;
            }
            self.next_ms = end;
            self.span_ms = if rows.is_empty() {
                (span * 2).min(MAX_WINDOW_MS)
            } else {
                Self::base_span(self.query.granularity).min(span)
            };
            return Ok(Some(rows));
        }
    }
}

/// A CSV field, quoted when RFC 4180 needs it.
fn csv_field(out: &mut String, value: &str) {
    if value.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

fn csv_rows(rows: &[UsageRow]) -> String {
    let mut out = String::new();
    for r in rows {
        out.push_str(&rfc3339(r.bucket_ms));
        for dimension in [&r.event_id, &r.resource_id, &r.deployment_name, &r.user_id] {
            out.push(',');
            csv_field(&mut out, dimension.as_deref().unwrap_or(""));
        }
        let t = &r.totals;
        for n in [
            t.requests,
            t.errors,
            t.prompt_tokens,
            t.completion_tokens,
            t.total_tokens,
            t.cached_tokens,
        ] {
            out.push(',');
            out.push_str(&n.to_string());
        }
        out.push_str("\r\n");
    }
    out
}

type CsvFrame = Result<Frame<Bytes>, std::io::Error>;

/// Streams the report as CSV. The first window is read before the answer starts, so a database
/// that is down gets the usual 503; a failure later cuts the body off (the client sees an
/// incomplete transfer, never a short file that looks whole).
pub(super) async fn report(
    store: Arc<dyn CatalogStore>,
    query: UsageReportQuery,
) -> Result<Response, ApiError> {
    let mut windows = CsvWindows::new(query);
    let first = windows
        .next(&*store)
        .await
        .map_err(CatalogError::from)?
        .unwrap_or_default();
    let (tx, rx) = mpsc::channel::<CsvFrame>(4);
    tokio::spawn(async move {
        let data = |text: String| Ok(Frame::data(Bytes::from(text)));
        let head = format!("{CSV_HEADER}{}", csv_rows(&first));
        if tx.send(data(head)).await.is_err() {
            return;
        }
        loop {
            match windows.next(&*store).await {
                Ok(Some(rows)) if rows.is_empty() => {}
                Ok(Some(rows)) => {
                    if tx.send(data(csv_rows(&rows))).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(error = %e, "usage CSV export failed part way: the download is cut off");
                    let _ = tx
                        .send(Err(std::io::Error::other("usage export failed")))
                        .await;
                    return;
                }
            }
        }
    });
    let body = Body::new(StreamBody::new(ReceiverStream::new(rx)));
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"usage.csv\"",
            ),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::model::{UsageFilter, UsageGrouping};

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        let mut out = String::new();
        csv_field(&mut out, "plain");
        out.push(',');
        csv_field(&mut out, "a,\"b\"");
        assert_eq!(out, "plain,\"a,\"\"b\"\"\"");
    }

    #[test]
    fn day_windows_end_on_day_boundaries() {
        let day = UsageGranularity::DAY_MS;
        let from = chrono::DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z").unwrap();
        let mut query = UsageReportQuery {
            filter: UsageFilter {
                from_ms: from.timestamp_millis(),
                to_ms: from.timestamp_millis() + 19 * day,
                ..Default::default()
            },
            granularity: UsageGranularity::Day,
            group_by: UsageGrouping::default(),
        };
        let start = query.filter.from_ms;
        let windows = CsvWindows::new(query.clone());
        let end = windows.window_end(start, 7 * day);
        assert_eq!(end % day, 0);
        assert_eq!(end, UsageGranularity::Day.floor(start) + 7 * day);
        query.filter.to_ms = start + day;
        let short = CsvWindows::new(query);
        assert_eq!(
            short.window_end(start, 7 * day),
            start + day,
            "never past to"
        );
    }
}
