//! Fleet figures: 200 simulated edges (plain `EdgeService.Sync` clients in this process, each on
//! its own HTTP/2 connection: Hello, ACK every update, stream kept open) on one control-plane
//! process. After every edge holds the first snapshot, an admin change (a new attendee) is made
//! `CHANGES` times; per change, the time from the admin call until each edge holds the update.
//! Prints one `[fleet] …` line: p50/p99 over all (edge, change) pairs, the control plane's RSS and
//! CPU time. Loopback only, bounded (< 60 s). `docs/benchmarks.md` ("Fleet: one change to 200
//! edges") records the figures.
//!
//! The control plane runs on a fresh Postgres database (`AIPROXY_TEST_POSTGRES_URL`, needs `psql`;
//! scripts/test.sh starts Postgres); `AIPROXY_FLEET_SQLITE=1` uses the embedded SQLite store
//! instead.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aiproxy_loadtest::process::memory;
use aiproxy_loadtest::stack::{ControlPlane, ControlPlaneOptions, create_postgres_database};
use aiproxy_proto::v1 as pb;
use pb::edge_message::Message;
use pb::edge_service_client::EdgeServiceClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

const EDGES: usize = 200;
const CHANGES: usize = 20;
/// The target is 100 ms; a debug build on a shared 2-core machine measures about 40 ms. Each
/// stream reading the delta for itself (200 reads queued on the pool per change) measured
/// 440–670 ms here: this bound catches that.
const P99_BOUND: Duration = Duration::from_millis(250);

/// Each complete update an edge received: its version and when it arrived.
type Arrivals = Arc<Mutex<Vec<(u64, Instant)>>>;

/// One simulated edge: sends Hello, ACKs every complete update, records its arrival.
async fn edge(url: String, token: String, index: usize, arrivals: Arrivals) {
    let channel = Channel::from_shared(url)
        .unwrap()
        .connect()
        .await
        .unwrap_or_else(|e| panic!("edge {index} connects: {e}"));
    let (tx, rx) = mpsc::channel(16);
    tx.send(pb::EdgeMessage {
        message: Some(Message::Hello(pb::Hello {
            edge_id: format!("fleet-{index}"),
            region: "swedencentral".into(),
            version: 0,
            software_version: "fleet-test".into(),
            catalog_id: String::new(),
            last_error: String::new(),
        })),
    })
    .await
    .unwrap();
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let mut inbound = EdgeServiceClient::new(channel)
        .sync(request)
        .await
        .unwrap_or_else(|e| panic!("edge {index} opens Sync: {e}"))
        .into_inner();
    while let Ok(Some(update)) = inbound.message().await {
        if update.more {
            continue;
        }
        arrivals
            .lock()
            .unwrap()
            .push((update.version, Instant::now()));
        let ack = pb::Ack {
            version: update.version,
            nonce: update.nonce,
        };
        if tx
            .send(pb::EdgeMessage {
                message: Some(Message::Ack(ack)),
            })
            .await
            .is_err()
        {
            break;
        }
    }
}

/// utime + stime of `pid` (`/proc/<pid>/stat`), in seconds (clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/<pid>/stat");
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::test(flavor = "multi_thread")]
async fn one_admin_change_reaches_200_edges() {
    let test_started = Instant::now();
    let postgres = !std::env::var("AIPROXY_FLEET_SQLITE").is_ok_and(|v| v == "1");
    let options = if postgres {
        ControlPlaneOptions {
            database_url: Some(create_postgres_database()),
            extra_env: vec![(
                "AIPROXY_ENCRYPTION_KEY".into(),
                "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into(),
            )],
        }
    } else {
        ControlPlaneOptions::default()
    };
    let cp = ControlPlane::start_with(options).await;
    let pid = cp.pid().expect("the control plane runs");
    let admin = cp.admin();
    let (event_id, _) = admin.open_event(&[]).await;
    let rss_idle = memory(pid).expect("control plane memory").rss_mib();
    let cpu_start = cpu_seconds(pid);

    // The fleet connects; every edge gets its first snapshot.
    let arrivals: Vec<Arrivals> = (0..EDGES).map(|_| Arrivals::default()).collect();
    let connect_started = Instant::now();
    let tasks: Vec<_> = arrivals
        .iter()
        .enumerate()
        .map(|(i, a)| tokio::spawn(edge(cp.grpc_url(), cp.edge_token.clone(), i, a.clone())))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while arrivals.iter().any(|a| a.lock().unwrap().is_empty()) {
        assert!(
            Instant::now() < deadline,
            "all {EDGES} edges hold a snapshot within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let connected_in = connect_started.elapsed();
    let cpu_connected = cpu_seconds(pid);
    let rss_connected = memory(pid).expect("control plane memory").rss_mib();

    // Changes, one at a time: each one's arrival at every edge.
    let mut took = Vec::with_capacity(EDGES * CHANGES);
    let mut per_change_max = Vec::with_capacity(CHANGES);
    for change in 0..CHANGES {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        admin
            .add_attendee(&event_id, &format!("fleet-attendee-{change}"))
            .await;
        let (_, status) = admin.get("/edges").await;
        let version = status["catalog_version"].as_u64().expect("catalog_version");
        let deadline = started + Duration::from_secs(10);
        let mut arrived: Vec<Option<Duration>> = vec![None; EDGES];
        loop {
            for (slot, a) in arrived.iter_mut().zip(&arrivals) {
                if slot.is_none() {
                    *slot = a
                        .lock()
                        .unwrap()
                        .iter()
                        .find(|(v, _)| *v >= version)
                        .map(|(_, at)| at.saturating_duration_since(started));
                }
            }
            if arrived.iter().all(Option::is_some) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "change {change} (version {version}) reached {} of {EDGES} edges within 10 s",
                arrived.iter().filter(|a| a.is_some()).count()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let arrived: Vec<Duration> = arrived.into_iter().flatten().collect();
        per_change_max.push(*arrived.iter().max().unwrap());
        took.extend(arrived);
    }
    let cpu_end = cpu_seconds(pid);
    let memory_end = memory(pid).expect("control plane memory");
    took.sort();
    per_change_max.sort();
    let (p50, p99, max) = (
        percentile(&took, 50.0),
        percentile(&took, 99.0),
        *took.last().unwrap(),
    );
    println!(
        "[fleet] store={} edges={EDGES} changes={CHANGES}: change -> edge p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (median of per-change last edge {:.1} ms); \
         all connected with a snapshot in {:.0} ms; control plane RSS {:.1} MiB idle, {:.1} MiB with {EDGES} edges, {:.1} MiB after the changes (peak {:.1} MiB); \
         CPU {:.2} s to connect the fleet, {:.2} s for {CHANGES} changes ({:.1} ms per change); test {:.1} s",
        if postgres { "postgres" } else { "sqlite" },
        ms(p50),
        ms(p99),
        ms(max),
        ms(per_change_max[per_change_max.len() / 2]),
        ms(connected_in),
        rss_idle,
        rss_connected,
        memory_end.rss_mib(),
        memory_end.peak_mib(),
        cpu_connected - cpu_start,
        cpu_end - cpu_connected,
        (cpu_end - cpu_connected) * 1000.0 / CHANGES as f64,
        test_started.elapsed().as_secs_f64(),
    );
    for task in tasks {
        task.abort();
    }
    assert!(
        p99 < P99_BOUND,
        "p99 {p99:?} over {} (edge, change) pairs within {P99_BOUND:?}",
        took.len()
    );
}
