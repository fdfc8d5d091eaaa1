//! One conformance suite, run against both catalog stores: the embedded SQLite store and the
//! Postgres store (a fresh database per test, so tests run in parallel). Postgres comes from
//! `AIPROXY_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`); it must be
//! running: scripts/test.sh starts it.

use std::sync::Arc;

use aiproxy_control_plane::catalog::model::{
    Attendee, Event, FoundryObject, ModelType, ObjectKind, Resource,
};
use aiproxy_control_plane::catalog::store::{CatalogStore, StoreError, open};
use sqlx::Connection;

struct TestStore {
    store: Arc<dyn CatalogStore>,
    cleanup: Option<(String, String)>,
    _dir: Option<std::path::PathBuf>,
}

impl TestStore {
    async fn finish(self) {
        drop(self.store);
        if let Some((admin_url, db)) = self.cleanup {
            let mut conn = sqlx::PgConnection::connect(&admin_url).await.unwrap();
            let drop_db = format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)");
            sqlx::raw_sql(sqlx::AssertSqlSafe(drop_db))
                .execute(&mut conn)
                .await
                .unwrap();
        }
        if let Some(dir) = self._dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

async fn sqlite_store() -> TestStore {
    let dir = std::env::temp_dir().join(format!("aiproxy-store-{}", uuid::Uuid::new_v4().simple()));
    let url = format!("sqlite://{}", dir.join("catalog.db").display());
    TestStore {
        store: open(&url).await.expect("open sqlite store"),
        cleanup: None,
        _dir: Some(dir),
    }
}

async fn postgres_store() -> TestStore {
    let admin_url = std::env::var("AIPROXY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let db = format!("aiproxy_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("Postgres at {admin_url} is required for the store tests (scripts/test.sh starts it): {e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    let store = open(&format!("{base}/{db}"))
        .await
        .expect("open postgres store");
    TestStore {
        store,
        cleanup: Some((admin_url, db)),
        _dir: None,
    }
}

fn resource(id: &str, deployment: &str) -> Resource {
    Resource {
        id: id.into(),
        friendly_name: format!("{id} name"),
        deployment_name: deployment.into(),
        model_type: ModelType::FoundryModel,
        endpoint_url: "https://x.openai.azure.com".into(),
        region: "swedencentral".into(),
        use_managed_identity: false,
        identity_client_id: None,
        active: true,
        encrypted_key: Some(vec![1, 2, 3, 4]),
    }
}

fn event(id: &str, resource_ids: &[&str]) -> Event {
    Event {
        id: id.into(),
        name: format!("event {id}"),
        starts_at_ms: 1_700_000_000_000,
        ends_at_ms: 1_800_000_000_000,
        time_zone: "Europe/Paris".into(),
        max_token_cap: 512,
        daily_request_cap: 100,
        organizer_name: "Ada".into(),
        organizer_email: "ada@example.com".into(),
        active: true,
        resource_ids: resource_ids.iter().map(|s| s.to_string()).collect(),
    }
}

fn attendee(event_id: &str, user: &str) -> Attendee {
    Attendee {
        event_id: event_id.into(),
        user_id: user.into(),
        key_hash: format!("hash-{event_id}-{user}").into_bytes(),
        active: true,
        created_at_ms: 1_750_000_000_000,
    }
}

async fn resources_round_trip_and_bump_the_version(s: &dyn CatalogStore) {
    let v0 = s.current_version().await.unwrap();
    let mut r = resource("r1", "gpt-4o");
    r.identity_client_id = Some("00000000-0000-0000-0000-000000000001".into());
    let v1 = s.create_resource(&r).await.unwrap();
    assert!(v1 > v0);
    assert_eq!(s.get_resource("r1").await.unwrap().unwrap(), r);
    r.active = false;
    r.encrypted_key = None;
    r.use_managed_identity = true;
    let v2 = s.update_resource(&r).await.unwrap();
    assert!(v2 > v1);
    assert_eq!(s.get_resource("r1").await.unwrap().unwrap(), r);
    assert_eq!(s.list_resources().await.unwrap(), vec![r]);
    assert!(matches!(
        s.update_resource(&resource("nope", "x")).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.delete_resource("nope").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(s.get_resource("nope").await.unwrap().is_none());
}

async fn changes_since_returns_deltas_with_removals(s: &dyn CatalogStore) {
    let empty = s.changes_since(Some(0)).await.unwrap();
    assert!(
        !empty.full && empty.is_empty(),
        "an empty catalog held at version 0 has no news"
    );
    s.create_resource(&resource("r1", "a")).await.unwrap();
    s.create_resource(&resource("r2", "b")).await.unwrap();
    let full = s.changes_since(None).await.unwrap();
    assert!(full.full);
    assert_eq!(full.resources.len(), 2);
    let held = full.version;

    let nothing = s.changes_since(Some(held)).await.unwrap();
    assert!(!nothing.full && nothing.is_empty());
    assert_eq!(nothing.version, held);

    s.update_resource(&resource("r2", "b2")).await.unwrap();
    s.delete_resource("r1").await.unwrap();
    s.create_event(&event("e1", &["r2"])).await.unwrap();
    s.add_attendee(&attendee("e1", "u1")).await.unwrap();
    let delta = s.changes_since(Some(held)).await.unwrap();
    assert!(!delta.full);
    assert!(delta.version >= held + 4);
    assert_eq!(
        delta
            .resources
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>(),
        ["r2"]
    );
    assert_eq!(delta.resources[0].deployment_name, "b2");
    assert_eq!(delta.removals.len(), 1);
    assert_eq!(
        (delta.removals[0].kind, delta.removals[0].id.as_str()),
        (ObjectKind::Resource, "r1")
    );
    assert_eq!(delta.events.len(), 1);
    assert_eq!(delta.events[0].resource_ids, vec!["r2".to_string()]);
    assert_eq!(delta.attendees.len(), 1);

    // A version the store never handed out (another database) gets everything.
    let ahead = s.changes_since(Some(delta.version + 100)).await.unwrap();
    assert!(ahead.full);
    assert!(ahead.removals.is_empty());
    assert_eq!(ahead.resources.len(), 1);
    assert_eq!(s.catalog_id().await.unwrap(), ahead.catalog_id);
}

async fn events_keep_resource_order_and_refuse_unknown_resources(s: &dyn CatalogStore) {
    s.create_resource(&resource("r1", "a")).await.unwrap();
    s.create_resource(&resource("r2", "b")).await.unwrap();
    let e = event("e1", &["r2", "r1"]);
    s.create_event(&e).await.unwrap();
    assert_eq!(s.get_event("e1").await.unwrap().unwrap(), e);

    let before = s.current_version().await.unwrap();
    let bad = event("e2", &["r1", "missing"]);
    assert!(
        matches!(s.create_event(&bad).await, Err(StoreError::UnknownResource(id)) if id == "missing")
    );
    assert!(
        s.get_event("e2").await.unwrap().is_none(),
        "nothing half-written"
    );
    assert_eq!(
        s.current_version().await.unwrap(),
        before,
        "a failed write takes no version"
    );

    let mut changed = e.clone();
    changed.resource_ids = vec!["r1".into()];
    changed.name = "renamed".into();
    s.update_event(&changed).await.unwrap();
    assert_eq!(s.get_event("e1").await.unwrap().unwrap(), changed);
    let mut wrong = changed.clone();
    wrong.resource_ids = vec!["missing".into()];
    assert!(s.update_event(&wrong).await.is_err());
    assert_eq!(
        s.get_event("e1").await.unwrap().unwrap(),
        changed,
        "a failed update leaves the event as it was"
    );
    assert_eq!(s.list_events().await.unwrap().len(), 1);
}

async fn resources_in_use_cannot_be_deleted(s: &dyn CatalogStore) {
    s.create_resource(&resource("r1", "a")).await.unwrap();
    s.create_event(&event("e1", &["r1"])).await.unwrap();
    match s.delete_resource("r1").await {
        Err(StoreError::Conflict(m)) => assert!(m.contains("event e1"), "{m}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    s.delete_event("e1").await.unwrap();
    s.delete_resource("r1").await.unwrap();
    assert!(s.list_resources().await.unwrap().is_empty());
}

async fn attendees_are_unique_per_event_and_go_with_it(s: &dyn CatalogStore) {
    s.create_event(&event("e1", &[])).await.unwrap();
    s.add_attendee(&attendee("e1", "u1")).await.unwrap();
    assert!(matches!(
        s.add_attendee(&attendee("e1", "u1")).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.add_attendee(&attendee("nope", "u1")).await,
        Err(StoreError::NotFound { kind: "event", .. })
    ));
    let (_, a) = s.set_attendee_active("e1", "u1", false).await.unwrap();
    assert!(!a.active);
    assert!(matches!(
        s.set_attendee_active("e1", "ghost", true).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(s.list_attendees("e1").await.unwrap(), vec![a]);

    let held = s.current_version().await.unwrap();
    s.delete_event("e1").await.unwrap();
    assert!(matches!(
        s.list_attendees("e1").await,
        Err(StoreError::NotFound { .. })
    ));
    let delta = s.changes_since(Some(held)).await.unwrap();
    assert_eq!(
        (delta.removals[0].kind, delta.removals[0].id.as_str()),
        (ObjectKind::Event, "e1")
    );
    assert!(matches!(
        s.delete_event("e1").await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn foundry_objects_are_owned_and_forgotten(s: &dyn CatalogStore) {
    s.create_event(&event("e1", &[])).await.unwrap();
    let thread = FoundryObject {
        kind: "thread".into(),
        id: "thread_1".into(),
        event_id: "e1".into(),
        user_id: "u1".into(),
        resource_id: "r-agent".into(),
    };
    let held = s.current_version().await.unwrap();
    s.record_object(&thread).await.unwrap();
    s.record_object(&thread).await.unwrap();
    assert_eq!(
        s.get_object("thread", "thread_1").await.unwrap(),
        Some(thread.clone())
    );
    let mut stolen = thread.clone();
    stolen.user_id = "u2".into();
    assert!(matches!(
        s.record_object(&stolen).await,
        Err(StoreError::Conflict(_))
    ));
    let delta = s.changes_since(Some(held)).await.unwrap();
    assert_eq!(delta.objects, vec![thread.clone()]);

    let held = s.current_version().await.unwrap();
    s.forget_object("thread", "thread_1").await.unwrap();
    assert!(s.get_object("thread", "thread_1").await.unwrap().is_none());
    let delta = s.changes_since(Some(held)).await.unwrap();
    assert_eq!(
        (delta.removals[0].kind, delta.removals[0].id.as_str()),
        (ObjectKind::FoundryObject, "thread/thread_1")
    );
    assert!(matches!(
        s.forget_object("thread", "thread_1").await,
        Err(StoreError::NotFound { .. })
    ));

    let mut orphan = thread.clone();
    orphan.event_id = "nope".into();
    assert!(matches!(
        s.record_object(&orphan).await,
        Err(StoreError::NotFound { kind: "event", .. })
    ));
    s.record_object(&thread).await.unwrap();
    s.delete_event("e1").await.unwrap();
    assert!(
        s.get_object("thread", "thread_1").await.unwrap().is_none(),
        "objects go with their event"
    );
}

async fn request_leases_never_grant_past_the_daily_cap(s: Arc<dyn CatalogStore>) {
    s.create_event(&event("e1", &[])).await.unwrap();
    assert_eq!(
        s.lease_requests("e1", "u1", "2026-11-30", 3, 5)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        s.lease_requests("e1", "u1", "2026-11-30", 3, 5)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        s.lease_requests("e1", "u1", "2026-11-30", 3, 5)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        s.lease_requests("e1", "u1", "2026-12-01", 3, 5)
            .await
            .unwrap(),
        3,
        "a new UTC day"
    );
    assert_eq!(
        s.lease_requests("e1", "u2", "2026-11-30", 3, 5)
            .await
            .unwrap(),
        3,
        "per attendee"
    );
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                s.lease_requests("e1", "u3", "2026-11-30", 1, 4)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut granted = 0;
    for t in tasks {
        granted += t.await.unwrap();
    }
    assert_eq!(granted, 4, "concurrent leases add up to the cap exactly");
}

async fn concurrent_writers_get_distinct_growing_versions(s: Arc<dyn CatalogStore>) {
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.create_resource(&resource(&format!("r{i}"), "d"))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.unwrap());
    }
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(versions.len(), 16, "every write takes its own version");
    assert_eq!(
        s.current_version().await.unwrap(),
        *versions.last().unwrap()
    );
}

macro_rules! conformance {
    ($backend:ident, $make:ident) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn resources_round_trip_and_bump_the_version() {
                let t = $make().await;
                super::resources_round_trip_and_bump_the_version(&*t.store).await;
                t.finish().await;
            }

            #[tokio::test]
            async fn changes_since_returns_deltas_with_removals() {
                let t = $make().await;
                super::changes_since_returns_deltas_with_removals(&*t.store).await;
                t.finish().await;
            }

            #[tokio::test]
            async fn events_keep_resource_order_and_refuse_unknown_resources() {
                let t = $make().await;
                super::events_keep_resource_order_and_refuse_unknown_resources(&*t.store).await;
                t.finish().await;
            }

            #[tokio::test]
            async fn resources_in_use_cannot_be_deleted() {
                let t = $make().await;
                super::resources_in_use_cannot_be_deleted(&*t.store).await;
                t.finish().await;
            }

            #[tokio::test]
            async fn attendees_are_unique_per_event_and_go_with_it() {
                let t = $make().await;
                super::attendees_are_unique_per_event_and_go_with_it(&*t.store).await;
                t.finish().await;
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn request_leases_never_grant_past_the_daily_cap() {
                let t = $make().await;
                super::request_leases_never_grant_past_the_daily_cap(t.store.clone()).await;
                t.finish().await;
            }

            #[tokio::test]
            async fn foundry_objects_are_owned_and_forgotten() {
                let t = $make().await;
                super::foundry_objects_are_owned_and_forgotten(&*t.store).await;
                t.finish().await;
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn concurrent_writers_get_distinct_growing_versions() {
                let t = $make().await;
                super::concurrent_writers_get_distinct_growing_versions(t.store.clone()).await;
                t.finish().await;
            }
        }
    };
}

conformance!(sqlite, sqlite_store);
conformance!(postgres, postgres_store);
