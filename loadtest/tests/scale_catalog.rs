//! The catalog at the size of a large event: 100,000 attendees and 300,000 ownership records, on
//! Postgres, with the real binaries. What attendees create must stay out of the catalog edges
//! receive; a catalog larger than one gRPC message must still reach a new edge; a change to one
//! attendee must reach edges promptly; Responses calls must cost an edge no catalog work. The
//! figures it prints are the ones docs/benchmarks.md quotes.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use aiproxy_loadtest::mock::{MockAzure, MockConfig};
use aiproxy_loadtest::stack::{
    ControlPlane, ControlPlaneOptions, Edge, ScratchDir, create_postgres_database, eventually,
    model_resource,
};
use serde_json::{Value, json};

const ATTENDEES: u32 = 100_000;
const RECORDS: u32 = 300_000;
const RESPONSES_CALLS: u32 = 50;

fn psql(url: &str, sql: &str) -> String {
    let output = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qtA", "-c", sql])
        .output()
        .expect("psql");
    assert!(
        output.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// The sealed last-known-good snapshot an edge keeps in its state dir: the catalog as it holds it.
fn state_file_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("state dir")
        .flatten()
        // Not the temporary file a write in progress goes to before its rename.
        .filter(|e| e.path().extension().is_none_or(|x| x != "tmp"))
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .max()
        .unwrap_or(0)
}

async fn readyz(edge: &Edge) -> Value {
    let response = reqwest::get(format!("{}/readyz", edge.url())).await;
    match response {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// Starts an edge keeping its state in `dir`; waits until it holds `version`; returns how long
/// that took from the process start.
async fn edge_at(cp: &ControlPlane, dir: &ScratchDir, version: u64) -> (Edge, Duration) {
    let started = Instant::now();
    let state_dir = dir.path().to_str().expect("utf-8 path").to_string();
    let edge = Edge::start_with_env(cp, "", &[("AIPROXY_EDGE_STATE_DIR", &state_dir)]).await;
    eventually(
        "the edge holds the bulk catalog",
        Duration::from_secs(60),
        || async { readyz(&edge).await["catalog_version"].as_u64() >= Some(version) },
    )
    .await;
    let elapsed = started.elapsed();
    // The state file is written just after the snapshot is swapped in.
    eventually(
        "the edge keeps its snapshot on disk",
        Duration::from_secs(30),
        || async { state_file_bytes(dir.path()) > 0 },
    )
    .await;
    (edge, elapsed)
}

fn rss_mib(edge: &Edge) -> f64 {
    let pid = edge.pid().expect("a running edge");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

async fn status_with(edge: &Edge, key: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/eventinfo", edge.api_base()))
        .header("api-key", key)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_catalog_syncs_and_ownership_records_stay_out_of_it() {
    let url = create_postgres_database();
    let mock = MockAzure::start(MockConfig::default()).await.expect("mock");
    let cp = ControlPlane::start_with(ControlPlaneOptions {
        database_url: Some(url.clone()),
        // Postgres mode generates nothing: the encryption key is required.
        extra_env: vec![(
            "AIPROXY_ENCRYPTION_KEY".into(),
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into(),
        )],
    })
    .await;
    let admin = cp.admin();
    let resource = admin
        .create_resource(model_resource("gpt", &mock.endpoint(), ""))
        .await;
    let (event_id, key) = admin.open_event(std::slice::from_ref(&resource)).await;

    // 100,000 attendees in one catalog write (one version), as a bulk registration would make.
    psql(
        &url,
        &format!(
            "WITH v AS (UPDATE catalog_meta SET version = version + 1 RETURNING version) \
             INSERT INTO attendees (event_id, user_id, key_hash, active, created_at_ms, version) \
             SELECT '{event_id}', 'bulk-' || i, sha256(('key-' || i)::bytea), true, 0, (SELECT version FROM v) \
             FROM generate_series(1, {ATTENDEES}) AS i"
        ),
    );
    let version: u64 = psql(&url, "SELECT version FROM catalog_meta")
        .parse()
        .expect("version");

    let dir_before = ScratchDir::new("scale-before");
    let (edge_before, ready_before) = edge_at(&cp, &dir_before, version).await;
    let snapshot_before = state_file_bytes(dir_before.path());

    // 300,000 ownership records (responses, threads, files), as a busy event leaves behind.
    psql(
        &url,
        &format!(
            "INSERT INTO foundry_objects (kind, id, event_id, user_id, resource_id, created_at_ms) \
             SELECT (ARRAY['response', 'thread', 'file'])[1 + i % 3], 'obj_' || i, '{event_id}', \
                    'bulk-' || (1 + i % {ATTENDEES}), '{resource}', i \
             FROM generate_series(1, {RECORDS}) AS i"
        ),
    );
    assert_eq!(
        psql(&url, "SELECT version FROM catalog_meta"),
        version.to_string(),
        "ownership records take no catalog version"
    );

    let dir_after = ScratchDir::new("scale-after");
    let (edge, ready_after) = edge_at(&cp, &dir_after, version).await;
    let snapshot_after = state_file_bytes(dir_after.path());
    assert!(
        snapshot_before > 5_000_000,
        "the catalog of 100k attendees is over 4 MiB: {snapshot_before}"
    );
    assert_eq!(
        snapshot_after, snapshot_before,
        "300,000 records leave the edge's catalog the same size"
    );

    // One attendee's change reaches the edge (a new attendee can call, a deactivated one cannot).
    let changed = Instant::now();
    let newcomer = admin.add_attendee(&event_id, "newcomer").await;
    eventually(
        "the new attendee reaches the edge",
        Duration::from_secs(10),
        || async { status_with(&edge, &newcomer).await == 200 },
    )
    .await;
    let add_latency = changed.elapsed();
    let changed = Instant::now();
    let (status, _) = admin
        .put(
            &format!("/events/{event_id}/attendees/attendee-1"),
            json!({"active": false}),
        )
        .await;
    assert!(status.is_success(), "{status}");
    eventually(
        "the deactivation reaches the edge",
        Duration::from_secs(10),
        || async { status_with(&edge, &key).await == 401 },
    )
    .await;
    let deactivate_latency = changed.elapsed();

    // Responses calls are recorded (in the database) and change nothing in the catalog.
    let held = readyz(&edge).await["catalog_version"].as_u64();
    let applied_before = edge.log().matches("catalog snapshot applied").count();
    let http = reqwest::Client::new();
    for i in 0..RESPONSES_CALLS {
        let response = http
            .post(format!("{}/openai/v1/responses", edge.api_base()))
            .header("api-key", &newcomer)
            .json(&json!({"model": "gpt", "input": format!("call {i}")}))
            .send()
            .await
            .expect("responses call");
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
    }
    assert_eq!(readyz(&edge).await["catalog_version"].as_u64(), held);
    assert_eq!(
        edge.log().matches("catalog snapshot applied").count(),
        applied_before,
        "Responses calls made the edge apply a catalog update"
    );
    assert_eq!(
        psql(
            &url,
            "SELECT count(*) FROM foundry_objects WHERE user_id = 'newcomer' AND kind = 'response'"
        ),
        RESPONSES_CALLS.to_string()
    );

    println!(
        "scale: {ATTENDEES} attendees, {RECORDS} records | snapshot {:.1} MB without records, {:.1} MB with | \
         new edge ready in {:.2} s without records, {:.2} s with | edge RSS {:.0} MiB | \
         new attendee reached the edge in {} ms, deactivation in {} ms",
        snapshot_before as f64 / 1e6,
        snapshot_after as f64 / 1e6,
        ready_before.as_secs_f64(),
        ready_after.as_secs_f64(),
        rss_mib(&edge),
        add_latency.as_millis(),
        deactivate_latency.as_millis(),
    );
    drop(edge_before);
}
