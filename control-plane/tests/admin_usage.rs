//! `GET /admin/api/v1/usage`, called in-process on an embedded store seeded through the store's
//! `apply_usage_batch` (and, for a report of 100 000 rows, straight into the table): JSON rows and totals, grouping, day buckets, filters, the default range,
//! the CSV download (quoting, streaming a report too large for JSON), and parameter errors.

mod support;

use aiproxy_control_plane::catalog::model::UsageRecord;
use axum::http::StatusCode;
use serde_json::{Value, json};
use support::admin::*;

/// 2026-03-29T10:00:00Z.
const HOUR_10: i64 = 1_774_778_400_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;
/// 2026-03-29 and 2026-03-30, UTC.
const TWO_DAYS: &str = "from=2026-03-29T00:00:00Z&to=2026-03-31T00:00:00Z";

fn record(event: &str, user: &str, resource: &str, at_ms: i64, total: u64) -> UsageRecord {
    UsageRecord {
        event_id: event.into(),
        user_id: user.into(),
        resource_id: resource.into(),
        deployment_name: format!("{resource}-deployment"),
        status: 200,
        started_at_ms: at_ms,
        prompt_tokens: total - total / 4,
        completion_tokens: total / 4,
        total_tokens: total,
        cached_tokens: total / 10,
        ..Default::default()
    }
}

async fn seed(api: &Api, batch_id: &str, records: &[UsageRecord]) {
    let applied = api
        .catalog
        .store()
        .apply_usage_batch(batch_id, records, &[], 1_000)
        .await
        .unwrap();
    assert!(applied);
}

async fn seed_two_days(api: &Api) {
    let mut failed = record("e1", "u2", "r1", HOUR_10 + 30 * 60_000, 0);
    failed.status = 500;
    seed(
        api,
        "b1",
        &[
            record("e1", "u1", "r1", HOUR_10 + 5 * 60_000, 100),
            failed,
            record("e1", "u1", "r2", HOUR_10 + HOUR + 60_000, 8),
            record("e2", "u1", "r1", HOUR_10 + DAY - HOUR, 1_000),
        ],
    )
    .await;
}

/// `(bucket, event_id, resource_id, user_id, requests, total_tokens)` of each row.
fn brief(report: &Value) -> Vec<(String, Value, Value, Value, u64, u64)> {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["bucket"].as_str().unwrap().to_string(),
                r["event_id"].clone(),
                r["resource_id"].clone(),
                r["user_id"].clone(),
                r["requests"].as_u64().unwrap(),
                r["total_tokens"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn row(
    bucket: &str,
    event: Value,
    resource: Value,
    user: Value,
    requests: u64,
    total: u64,
) -> (String, Value, Value, Value, u64, u64) {
    (bucket.to_string(), event, resource, user, requests, total)
}

#[tokio::test]
async fn usage_reports_answer_rows_and_totals_as_json() {
    let api = api(false).await;
    seed_two_days(&api).await;
    let (status, report) = api.send("GET", &format!("/usage?{TWO_DAYS}"), None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        report["rows"][0],
        json!({"bucket": "2026-03-29T10:00:00Z", "event_id": null, "resource_id": null,
               "deployment_name": null, "user_id": null, "requests": 2, "errors": 1,
               "prompt_tokens": 75, "completion_tokens": 25, "total_tokens": 100, "cached_tokens": 10}),
        "one row per hour, dimensions null"
    );
    assert_eq!(
        brief(&report),
        vec![
            row(
                "2026-03-29T10:00:00Z",
                Value::Null,
                Value::Null,
                Value::Null,
                2,
                100
            ),
            row(
                "2026-03-29T11:00:00Z",
                Value::Null,
                Value::Null,
                Value::Null,
                1,
                8
            ),
            row(
                "2026-03-30T09:00:00Z",
                Value::Null,
                Value::Null,
                Value::Null,
                1,
                1_000
            ),
        ]
    );
    assert_eq!(
        report["totals"],
        json!({"requests": 4, "errors": 1, "prompt_tokens": 831, "completion_tokens": 277,
               "total_tokens": 1108, "cached_tokens": 110})
    );

    let (_, by_day) = api
        .send(
            "GET",
            &format!("/usage?{TWO_DAYS}&granularity=day&group_by=attendee,event"),
            None,
        )
        .await;
    assert_eq!(
        brief(&by_day),
        vec![
            row(
                "2026-03-29T00:00:00Z",
                json!("e1"),
                Value::Null,
                json!("u1"),
                2,
                108
            ),
            row(
                "2026-03-29T00:00:00Z",
                json!("e1"),
                Value::Null,
                json!("u2"),
                1,
                0
            ),
            row(
                "2026-03-30T00:00:00Z",
                json!("e2"),
                Value::Null,
                json!("u1"),
                1,
                1_000
            ),
        ]
    );

    let (_, by_resource) = api
        .send(
            "GET",
            &format!("/usage?{TWO_DAYS}&granularity=day&group_by=resource&event_id=e1&user_id=u1"),
            None,
        )
        .await;
    let rows = by_resource["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{by_resource}");
    assert_eq!(
        (&rows[0]["resource_id"], &rows[0]["deployment_name"]),
        (&json!("r1"), &json!("r1-deployment"))
    );
    assert_eq!(rows[1]["resource_id"], "r2");
    assert_eq!(by_resource["totals"]["total_tokens"], 108);

    let (_, r1) = api
        .send("GET", &format!("/usage?{TWO_DAYS}&resource_id=r1"), None)
        .await;
    assert_eq!(r1["totals"]["requests"], 3);
    let (_, first_hour) = api
        .send(
            "GET",
            "/usage?from=2026-03-29T10:00:00Z&to=2026-03-29T11:00:00%2B00:00",
            None,
        )
        .await;
    assert_eq!(
        first_hour["totals"]["requests"], 2,
        "to is exclusive: {first_hour}"
    );
    let (_, none) = api
        .send("GET", &format!("/usage?{TWO_DAYS}&event_id=ghost"), None)
        .await;
    assert_eq!(
        none,
        json!({"rows": [], "totals": {"requests": 0, "errors": 0, "prompt_tokens": 0,
        "completion_tokens": 0, "total_tokens": 0, "cached_tokens": 0}})
    );
}

#[tokio::test]
async fn the_default_range_is_the_last_seven_days() {
    let api = api(false).await;
    let now = chrono::Utc::now().timestamp_millis();
    seed(
        &api,
        "b1",
        &[
            record("e1", "u1", "r1", now - HOUR, 5),
            record("e1", "u1", "r1", now - 6 * DAY, 7),
            record("e1", "u1", "r1", now - 8 * DAY, 1_000),
        ],
    )
    .await;
    let (status, report) = api.send("GET", "/usage?group_by=event", None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["totals"]["total_tokens"], 12, "{report}");
}

#[tokio::test]
async fn usage_csv_has_the_json_columns_with_rfc_4180_quoting() {
    let api = api(false).await;
    seed_two_days(&api).await;
    seed(
        &api,
        "b2",
        &[record("e1", "grace, \"g\"", "r1", HOUR_10, 3)],
    )
    .await;
    let (status, headers, csv) = api
        .get_text(&format!(
            "/usage?{TWO_DAYS}&format=csv&group_by=event,resource,attendee&event_id=e1"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{csv}");
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        csv,
        "bucket,event_id,resource_id,deployment_name,user_id,requests,errors,prompt_tokens,completion_tokens,total_tokens,cached_tokens\r\n\
         2026-03-29T10:00:00Z,e1,r1,r1-deployment,\"grace, \"\"g\"\"\",1,0,3,0,3,0\r\n\
         2026-03-29T10:00:00Z,e1,r1,r1-deployment,u1,1,0,75,25,100,10\r\n\
         2026-03-29T10:00:00Z,e1,r1,r1-deployment,u2,1,1,0,0,0,0\r\n\
         2026-03-29T11:00:00Z,e1,r2,r2-deployment,u1,1,0,6,2,8,0\r\n"
    );
    let (_, _, ungrouped) = api
        .get_text(&format!("/usage?{TWO_DAYS}&format=csv&granularity=day"))
        .await;
    let lines: Vec<&str> = ungrouped.lines().collect();
    assert_eq!(
        lines[1..],
        [
            "2026-03-29T00:00:00Z,,,,,4,1,84,27,111,10",
            "2026-03-30T00:00:00Z,,,,,1,0,750,250,1000,100"
        ]
    );
    let (_, _, empty) = api
        .get_text(&format!("/usage?{TWO_DAYS}&format=csv&event_id=ghost"))
        .await;
    assert_eq!(empty.lines().count(), 1, "the header alone");
}

#[tokio::test]
async fn a_report_too_large_for_json_is_refused_and_streams_whole_as_csv() {
    const USERS: i64 = 1_000;
    const HOURS: i64 = 101;
    let api = api(false).await;
    // The hourly rows straight into the database (one statement: batches of records would take
    // this debug build many seconds), one batch through the store to join them.
    seed(&api, "b1", &[record("e1", "u0000", "r1", HOUR_10, 2)]).await;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", api._dir.join("c.db").display()))
        .await
        .unwrap();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
         INSERT INTO usage_hourly SELECT 'e1', printf('u%04d', i % $2), 'r1', 'r1-deployment', \
         $3 + (i / $2) * $4, 1, 0, 0, 0, 1, 1, 2, 0, 0, 100, 10 FROM n",
    )
    .bind(USERS * HOURS - 1)
    .bind(USERS)
    .bind(HOUR_10)
    .bind(HOUR)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    // Far-apart bounds: the export crosses years without usage in a few windows.
    let range = "from=2020-01-01T00:00:00Z&to=2030-01-01T00:00:00Z&group_by=attendee";

    let (status, err) = api.send("GET", &format!("/usage?{range}"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        message(&err).contains("narrow the filters or use format=csv"),
        "{err}"
    );

    let started = std::time::Instant::now();
    let (status, _, csv) = api.get_text(&format!("/usage?{range}&format=csv")).await;
    eprintln!("{} CSV bytes in {:?}", csv.len(), started.elapsed());
    assert_eq!(status, StatusCode::OK);
    let lines: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(lines.len() as i64, USERS * HOURS, "every row once");
    assert!(
        lines[0].starts_with("2026-03-29T10:00:00Z,,,,u0000,1,"),
        "{}",
        lines[0]
    );
    assert!(
        lines[lines.len() - 1].starts_with("2026-04-02T14:00:00Z,,,,u0999,1,"),
        "{}",
        lines[lines.len() - 1]
    );
    let mut sorted = lines.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, lines, "in bucket, then attendee order");
}

#[tokio::test]
async fn bad_report_parameters_are_named() {
    let api = api(false).await;
    for (query, field, hint) in [
        ("granularity=week", "granularity", "hour or day"),
        (
            "group_by=event,model",
            "group_by",
            "event, resource, attendee",
        ),
        ("format=xml", "format", "json or csv"),
        ("from=yesterday", "from", "RFC 3339"),
        ("to=2026-03-29", "to", "RFC 3339"),
        (
            "from=2026-03-29T00:00:00Z&to=2026-03-29T00:00:00Z",
            "from",
            "before to",
        ),
        ("event_id=", "event_id", "must not be empty"),
        ("user_id=a&user_id=b", "user_id", "more than once"),
    ] {
        let (status, err) = api.send("GET", &format!("/usage?{query}"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {err}");
        assert_eq!(err["error"]["field"], field, "{query}: {err}");
        assert!(message(&err).contains(hint), "{query}: {err}");
    }
    let (status, err) = api.send("GET", "/usage?evnt_id=e1", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        message(&err).contains("unknown query parameter 'evnt_id'"),
        "{err}"
    );
    let (status, _) = api.call("GET", "/usage", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
