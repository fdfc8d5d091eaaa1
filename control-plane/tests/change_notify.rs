//! Control-plane replicas sharing one Postgres database learn of each other's writes through
//! `LISTEN/NOTIFY` (migration `0006_change_notify.sql`, `sync::listen`), with the poll interval set
//! far beyond the test's bounds; the listener recovers from a lost connection; and the poller alone
//! still carries changes. Postgres from `AIPROXY_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); each test makes its own database.

mod support;

use std::time::{Duration, Instant};

use aiproxy_control_plane::catalog::model::FoundryObject;
use aiproxy_control_plane::catalog::store::{CatalogStore, open};
use aiproxy_control_plane::config::Config;
use aiproxy_control_plane::sync::ChangeFeed;
use aiproxy_control_plane::sync::listen::APPLICATION_NAME;
use sqlx::Connection;
use support::{EDGE_TOKEN, Running, hello, open_sync, start_fresh_with};
use tokio::sync::watch;

const ENCRYPTION_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
/// Far beyond every bound below: a change that arrives in time came by notification.
const POLL_MS: u64 = 60_000;
const BOUND: Duration = Duration::from_secs(1);

struct Database {
    admin_url: String,
    name: String,
    url: String,
}

impl Database {
    async fn create() -> Self {
        let admin_url = std::env::var("AIPROXY_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("aiproxy_notify_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("Postgres at {admin_url} is required: {e}"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        let (base, _) = admin_url.rsplit_once('/').unwrap();
        let url = format!("{base}/{name}");
        Self {
            admin_url,
            name,
            url,
        }
    }

    async fn admin(&self) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&self.admin_url).await.unwrap()
    }

    /// Change listeners connected to this database and subscribed.
    async fn listeners(&self) -> i64 {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = $1 AND application_name = $2 AND query ILIKE 'LISTEN%'",
        )
        .bind(&self.name)
        .bind(APPLICATION_NAME)
        .fetch_one(&mut self.admin().await)
        .await
        .unwrap();
        n
    }

    async fn wait_listeners(&self, n: i64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.listeners().await < n {
            assert!(
                Instant::now() < deadline,
                "{n} change listeners within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Ends every change listener's connection, as a database restart or a network cut would.
    async fn terminate_listeners(&self) -> i64 {
        let ended: Vec<(bool,)> = sqlx::query_as(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND application_name = $2",
        )
        .bind(&self.name)
        .bind(APPLICATION_NAME)
        .fetch_all(&mut self.admin().await)
        .await
        .unwrap();
        ended.len() as i64
    }

    async fn drop(self) {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut self.admin().await)
        .await;
    }
}

fn replica(url: &str) -> impl Fn(&mut Config) + '_ {
    move |config: &mut Config| {
        config.database_url = url.to_string();
        config.encryption_key = Some(ENCRYPTION_KEY.into());
        config.change_poll_ms = POLL_MS;
    }
}

/// Waits until `rx` reaches `at_least`; how long that took from `since`.
async fn reached(rx: &mut watch::Receiver<u64>, at_least: u64, since: Instant) -> Duration {
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|v| *v >= at_least))
        .await
        .unwrap_or_else(|_| panic!("the feed reached {at_least} within 10 s"))
        .unwrap();
    since.elapsed()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_on_one_replica_reaches_the_other_replicas_edge_by_notification() {
    let db = Database::create().await;
    let a = start_fresh_with(replica(&db.url)).await;
    let b = start_fresh_with(replica(&db.url)).await;
    db.wait_listeners(2).await;

    let mut edge = open_sync(&b, EDGE_TOKEN, hello(0, "")).await.unwrap();
    let snapshot = edge.next_update().await;
    edge.ack(&snapshot).await;

    let mut took = Vec::new();
    for i in 0..5 {
        let started = Instant::now();
        let id = a.add_resource(&format!("notified-{i}")).await;
        loop {
            let update = edge.next_update().await;
            edge.ack(&update).await;
            if update
                .resources
                .iter()
                .any(|r| r.info.as_ref().is_some_and(|i| i.id == id))
            {
                break;
            }
        }
        took.push(started.elapsed());
    }
    took.sort();
    println!(
        "[change_notify] admin write on replica A -> update on replica B's edge ({} writes, poll every {} s): median {:.1} ms, max {:.1} ms",
        took.len(),
        POLL_MS / 1000,
        ms(took[took.len() / 2]),
        ms(*took.last().unwrap()),
    );
    assert!(
        *took.last().unwrap() < BOUND,
        "every write reached the other replica's edge within {BOUND:?}: {took:?}"
    );
    drop((a, b));
    db.drop().await;
}

fn object(event_id: &str, id: &str) -> FoundryObject {
    FoundryObject {
        kind: "agent".into(),
        id: id.into(),
        event_id: event_id.into(),
        user_id: "ada".into(),
        resource_id: "r-agent".into(),
        created_at_ms: 1_000,
        expires_at_ms: 0,
        alias_of: String::new(),
    }
}

/// Replica A (in-process) writes; "replica B" is its change feed alone, fed by a listener only.
async fn writer_and_listening_feed(
    db: &Database,
) -> (
    Running,
    std::sync::Arc<dyn CatalogStore>,
    ChangeFeed,
    tokio::task::JoinHandle<()>,
) {
    let a = start_fresh_with(replica(&db.url)).await;
    let store = open(&db.url, 10).await.unwrap();
    let feed = ChangeFeed::new();
    let listener = feed
        .spawn_listener(store.clone(), &db.url)
        .expect("Postgres listens");
    db.wait_listeners(2).await;
    (a, store, feed, listener)
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_and_forgets_are_notified_and_a_lost_connection_is_caught_up() {
    let db = Database::create().await;
    let (a, store, feed, listener) = writer_and_listening_feed(&db).await;
    let mut versions = feed.subscribe();
    let mut forgets = feed.subscribe_forgets();

    // A catalog write.
    let started = Instant::now();
    let event_id = a.add_event("notify").await;
    let version = store.current_version().await.unwrap();
    let took = reached(&mut versions, version, started).await;
    println!(
        "[change_notify] version {version} reached the other feed in {:.1} ms",
        ms(took)
    );
    assert!(took < BOUND, "version notified within {BOUND:?}: {took:?}");

    // A forget (one per object and alias, all with one sequence number).
    store
        .record_objects(&[object(&event_id, "asst_1"), {
            let mut alias = object(&event_id, "my-agent");
            alias.alias_of = "asst_1".into();
            alias
        }])
        .await
        .unwrap();
    let started = Instant::now();
    let seq = store.forget_object("agent", "asst_1").await.unwrap();
    let took = reached(&mut forgets, seq, started).await;
    println!(
        "[change_notify] forget {seq} reached the other feed in {:.1} ms",
        ms(took)
    );
    assert!(took < BOUND, "forget notified within {BOUND:?}: {took:?}");

    // The notification alone: from a bare version bump (autocommit) to the other feed.
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let mut bumps = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let (version,): (i64,) = sqlx::query_as(
            "UPDATE catalog_meta SET version = version + 1 WHERE singleton = 1 RETURNING version",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        bumps.push(reached(&mut versions, version as u64, started).await);
    }
    bumps.sort();
    println!(
        "[change_notify] commit -> other feed ({} version bumps): median {:.1} ms, max {:.1} ms",
        bumps.len(),
        ms(bumps[bumps.len() / 2]),
        ms(*bumps.last().unwrap())
    );
    assert!(
        *bumps.last().unwrap() < BOUND,
        "every bump notified within {BOUND:?}: {bumps:?}"
    );

    // The listeners' connections end; a write made at once may be notified to nobody, and is
    // still seen: the listener re-reads both numbers once it listens again.
    assert_eq!(db.terminate_listeners().await, 2);
    let started = Instant::now();
    a.add_resource("while-reconnecting").await;
    let version = store.current_version().await.unwrap();
    let took = reached(&mut versions, version, started).await;
    println!(
        "[change_notify] a write during the reconnection reached the other feed in {:.1} ms",
        ms(took)
    );
    assert!(
        took < Duration::from_secs(5),
        "caught up after the reconnection (poll is {POLL_MS} ms): {took:?}"
    );
    db.wait_listeners(2).await;
    let started = Instant::now();
    a.add_resource("after-reconnecting").await;
    let version = store.current_version().await.unwrap();
    let took = reached(&mut versions, version, started).await;
    assert!(
        took < BOUND,
        "notified again after the reconnection: {took:?}"
    );

    listener.abort();
    drop(a);
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_listener_the_poller_alone_carries_changes() {
    let db = Database::create().await;
    let a = start_fresh_with(replica(&db.url)).await;
    let store = open(&db.url, 10).await.unwrap();
    let feed = ChangeFeed::new();
    let poller = feed.spawn_poller(store.clone(), Duration::from_millis(100));
    let mut versions = feed.subscribe();
    let mut forgets = feed.subscribe_forgets();

    let started = Instant::now();
    let event_id = a.add_event("polled").await;
    let version = store.current_version().await.unwrap();
    let took = reached(&mut versions, version, started).await;
    assert!(took < BOUND, "version polled within {BOUND:?}: {took:?}");

    store
        .record_objects(&[object(&event_id, "asst_2")])
        .await
        .unwrap();
    let started = Instant::now();
    let seq = store.forget_object("agent", "asst_2").await.unwrap();
    let took = reached(&mut forgets, seq, started).await;
    assert!(took < BOUND, "forget polled within {BOUND:?}: {took:?}");

    // SQLite has no notifications: no listener.
    assert!(
        feed.spawn_listener(store.clone(), "sqlite:///tmp/x.db")
            .is_none()
    );

    poller.abort();
    drop(a);
    db.drop().await;
}
