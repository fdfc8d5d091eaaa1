//! One conformance suite, run against both catalog stores: the embedded SQLite store and the
//! Postgres store (a fresh database per test, so tests run in parallel). Postgres comes from
//! `AIPROXY_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`); it must be
//! running: scripts/test.sh starts it.

use std::sync::Arc;

use aiproxy_control_plane::catalog::model::{
    Attendee, Event, ForgetsSince, FoundryObject, ModelType, ObjectKind, Resource,
};
use aiproxy_control_plane::catalog::store::{CatalogStore, KeyWrite, StoreError, open};
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
    let (v2, stored) = s.update_resource(&r, &KeyWrite::Drop).await.unwrap();
    assert!(v2 > v1);
    assert_eq!(stored, r);
    assert_eq!(s.get_resource("r1").await.unwrap().unwrap(), r);
    assert_eq!(s.list_resources().await.unwrap(), vec![r]);
    assert!(matches!(
        s.update_resource(&resource("nope", "x"), &KeyWrite::Drop)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.delete_resource("nope").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(s.get_resource("nope").await.unwrap().is_none());
}

fn keep(origin: &str) -> KeyWrite {
    KeyWrite::Keep {
        origin: origin.to_string(),
    }
}

/// Two admins edit one resource at once: one gives a new key (or moves it to another host), the
/// other renames it from what it read before. The rename keeps the key as it is in the row when
/// written, never the older one it read, and never a key given for another host.
async fn a_kept_key_is_the_stored_one_and_only_on_its_host(s: &dyn CatalogStore) {
    let mut r = resource("r1", "gpt-4o");
    r.endpoint_url = "https://AOAI.openai.azure.com/openai".into();
    r.encrypted_key = Some(b"key-1".to_vec());
    s.create_resource(&r).await.unwrap();
    let read_before = r.clone();

    r.encrypted_key = Some(b"key-2".to_vec());
    s.update_resource(&r, &KeyWrite::Replace(b"key-2".to_vec()))
        .await
        .unwrap();
    let mut renamed = read_before.clone();
    renamed.friendly_name = "renamed".into();
    let (_, stored) = s
        .update_resource(&renamed, &keep("https://aoai.openai.azure.com"))
        .await
        .unwrap();
    assert_eq!(stored.friendly_name, "renamed");
    assert_eq!(
        stored.encrypted_key.as_deref(),
        Some(&b"key-2"[..]),
        "the newer key stays"
    );

    let mut moved = stored.clone();
    moved.endpoint_url = "https://other.openai.azure.com".into();
    s.update_resource(&moved, &KeyWrite::Replace(b"key-other".to_vec()))
        .await
        .unwrap();
    let err = s
        .update_resource(&renamed, &keep("https://aoai.openai.azure.com"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let now = s.get_resource("r1").await.unwrap().unwrap();
    assert_eq!(now.endpoint_url, "https://other.openai.azure.com");
    assert_eq!(now.encrypted_key.as_deref(), Some(&b"key-other"[..]));

    // A host that merely starts like the stored one is another host.
    let mut lookalike = now.clone();
    lookalike.endpoint_url = "https://other.openai.azure.com.evil.example".into();
    assert!(matches!(
        s.update_resource(
            &lookalike,
            &keep("https://other.openai.azure.com.evil.example")
        )
        .await,
        Err(StoreError::Conflict(_))
    ));
    let (_, kept) = s
        .update_resource(&now, &keep("https://other.openai.azure.com"))
        .await
        .unwrap();
    assert_eq!(kept.encrypted_key.as_deref(), Some(&b"key-other"[..]));
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

    s.update_resource(&resource("r2", "b2"), &KeyWrite::Replace(vec![1, 2, 3, 4]))
        .await
        .unwrap();
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

fn object(kind: &str, id: &str, event_id: &str, user: &str) -> FoundryObject {
    FoundryObject {
        kind: kind.into(),
        id: id.into(),
        event_id: event_id.into(),
        user_id: user.into(),
        resource_id: "r-agent".into(),
        created_at_ms: 1_000,
        expires_at_ms: 0,
        alias_of: String::new(),
    }
}

fn refs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(kind, id)| (kind.to_string(), id.to_string()))
        .collect()
}

fn ids(objects: &[FoundryObject]) -> Vec<&str> {
    objects.iter().map(|o| o.id.as_str()).collect()
}

async fn ownership_records_are_all_or_nothing_and_take_no_catalog_version(s: &dyn CatalogStore) {
    s.create_event(&event("e1", &[])).await.unwrap();
    let held = s.current_version().await.unwrap();
    let mut first = object("thread", "thread_1", "e1", "u1");
    first.expires_at_ms = 9_000;
    let second = object("thread", "thread_2", "e1", "u1");
    s.record_objects(&[first.clone(), second.clone()])
        .await
        .unwrap();
    s.record_objects(&[first.clone()]).await.unwrap();
    s.record_objects(&[]).await.unwrap();
    assert_eq!(
        s.current_version().await.unwrap(),
        held,
        "records are not catalog"
    );
    let delta = s.changes_since(Some(held)).await.unwrap();
    assert!(!delta.full && delta.is_empty());

    let found = s
        .lookup_objects(
            &refs(&[
                ("thread", "thread_2"),
                ("thread", "thread_1"),
                ("file", "thread_1"),
            ]),
            2_000,
        )
        .await
        .unwrap();
    assert_eq!(
        found,
        vec![first.clone(), second.clone()],
        "known ones only, every field kept"
    );

    let stolen = object("thread", "thread_1", "e1", "u2");
    let innocent = object("thread", "thread_3", "e1", "u2");
    assert!(matches!(
        s.record_objects(&[innocent.clone(), stolen]).await,
        Err(StoreError::Conflict(m)) if m.contains("thread_1")
    ));
    assert!(
        s.lookup_objects(&refs(&[("thread", "thread_3")]), 2_000)
            .await
            .unwrap()
            .is_empty(),
        "a refused batch records nothing"
    );
    assert!(matches!(
        s.record_objects(&[innocent.clone(), object("thread", "thread_4", "nope", "u2")])
            .await,
        Err(StoreError::NotFound { kind: "event", .. })
    ));
    assert!(
        s.lookup_objects(&refs(&[("thread", "thread_3")]), 2_000)
            .await
            .unwrap()
            .is_empty()
    );

    s.delete_event("e1").await.unwrap();
    assert!(
        s.lookup_objects(
            &refs(&[("thread", "thread_1"), ("thread", "thread_2")]),
            2_000
        )
        .await
        .unwrap()
        .is_empty(),
        "records go with their event"
    );
}

async fn expired_records_count_as_absent_and_may_be_taken_over(s: &dyn CatalogStore) {
    s.create_event(&event("e1", &[])).await.unwrap();
    let mut response = object("response", "resp_1", "e1", "u1");
    response.expires_at_ms = 2_000;
    let mut lasting = object("thread", "thread_1", "e1", "u1");
    lasting.expires_at_ms = 0;
    s.record_objects(&[response.clone(), lasting.clone()])
        .await
        .unwrap();
    let wanted = refs(&[("response", "resp_1"), ("thread", "thread_1")]);
    let lookup = |now| s.lookup_objects(&wanted, now);
    assert_eq!(lookup(1_999).await.unwrap().len(), 2);
    assert_eq!(
        lookup(2_000).await.unwrap(),
        vec![lasting.clone()],
        "expired at its expiry"
    );

    let mut taken = object("response", "resp_1", "e1", "u2");
    taken.created_at_ms = 2_500;
    s.record_objects(&[taken.clone()]).await.unwrap();
    assert_eq!(
        lookup(3_000).await.unwrap(),
        vec![taken.clone(), lasting.clone()]
    );
    let mut back = response.clone();
    back.created_at_ms = 2_600;
    assert!(matches!(
        s.record_objects(&[back]).await,
        Err(StoreError::Conflict(_))
    ));

    let mut soon = object("response", "resp_2", "e1", "u1");
    soon.expires_at_ms = 5_000;
    s.record_objects(&[soon]).await.unwrap();
    assert_eq!(s.purge_expired_objects(4_000).await.unwrap(), 0);
    assert_eq!(s.purge_expired_objects(5_000).await.unwrap(), 1);
    assert_eq!(
        s.purge_expired_objects(1_000_000).await.unwrap(),
        0,
        "0 never expires"
    );
    assert_eq!(lookup(1_000_000).await.unwrap().len(), 2);
}

async fn forgetting_an_object_forgets_its_aliases_and_logs_an_invalidation(s: &dyn CatalogStore) {
    s.create_event(&event("e1", &[])).await.unwrap();
    let held = s.current_version().await.unwrap();
    assert_eq!(s.current_forget_seq().await.unwrap(), 0);
    let mut alias = object("agent", "my-agent", "e1", "u1");
    alias.alias_of = "asst_1".into();
    s.record_objects(&[
        object("agent", "asst_1", "e1", "u1"),
        alias,
        object("agent", "asst_2", "e1", "u1"),
        object("thread", "asst_1", "e1", "u1"),
    ])
    .await
    .unwrap();

    assert_eq!(s.forget_object("agent", "asst_1").await.unwrap(), 1);
    let left = s
        .lookup_objects(
            &refs(&[
                ("agent", "asst_1"),
                ("agent", "my-agent"),
                ("agent", "asst_2"),
                ("thread", "asst_1"),
            ]),
            2_000,
        )
        .await
        .unwrap();
    assert_eq!(
        ids(&left),
        ["asst_2", "asst_1"],
        "another kind with the same id stays"
    );
    assert_eq!(left[1].kind, "thread");
    assert_eq!(
        s.forgets_since(0).await.unwrap(),
        ForgetsSince {
            objects: refs(&[("agent", "asst_1"), ("agent", "my-agent")]),
            seq: 1,
            complete: true,
        }
    );
    assert!(matches!(
        s.forget_object("agent", "asst_1").await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        s.current_forget_seq().await.unwrap(),
        1,
        "a forget that finds nothing takes no number"
    );

    assert_eq!(s.forget_object("agent", "asst_2").await.unwrap(), 2);
    let since_one = s.forgets_since(1).await.unwrap();
    assert_eq!(
        (since_one.objects, since_one.seq, since_one.complete),
        (refs(&[("agent", "asst_2")]), 2, true)
    );
    let caught_up = s.forgets_since(2).await.unwrap();
    assert!(caught_up.complete && caught_up.objects.is_empty());
    assert_eq!(
        s.current_version().await.unwrap(),
        held,
        "forgets are not catalog"
    );

    assert_eq!(s.prune_forgets(0).await.unwrap(), 0, "nothing that old");
    let later = chrono::Utc::now().timestamp_millis() + 1;
    assert_eq!(s.prune_forgets(later).await.unwrap(), 3);
    assert!(
        !s.forgets_since(0).await.unwrap().complete,
        "pruned forgets are a gap"
    );
    assert!(!s.forgets_since(1).await.unwrap().complete);
    assert!(s.forgets_since(2).await.unwrap().complete);
    assert_eq!(
        s.current_forget_seq().await.unwrap(),
        2,
        "pruning keeps the number"
    );
    let ahead = s.forgets_since(9).await.unwrap();
    assert_eq!(
        (ahead.seq, ahead.complete),
        (2, false),
        "a number of another database"
    );
}

async fn attendee_lists_follow_creation_order_without_aliases_or_expired_records(
    s: &dyn CatalogStore,
) {
    s.create_event(&event("e1", &[])).await.unwrap();
    let at = |id: &str, created: i64| {
        let mut o = object("thread", id, "e1", "u1");
        o.created_at_ms = created;
        o
    };
    let mut expired = at("t_d", 300);
    expired.expires_at_ms = 350;
    let mut alias = at("t_alias", 400);
    alias.alias_of = "t_a".into();
    s.record_objects(&[
        at("t_c", 200),
        at("t_b", 200),
        at("t_a", 100),
        expired,
        alias,
        at("t_e", 500),
        object("thread", "theirs", "e1", "u2"),
        object("file", "file_1", "e1", "u1"),
    ])
    .await
    .unwrap();
    let list = |after: Option<&'static str>, descending: bool, limit: u32| {
        s.list_owned_objects("e1", "u1", "thread", after, descending, limit, 1_000)
    };
    let (page, more) = list(None, false, 2).await.unwrap();
    assert_eq!((ids(&page), more), (vec!["t_a", "t_b"], true));
    let (page, more) = list(Some("t_b"), false, 2).await.unwrap();
    assert_eq!(
        (ids(&page), more),
        (vec!["t_c", "t_e"], false),
        "same time: by id"
    );
    let (page, more) = list(Some("t_e"), false, 2).await.unwrap();
    assert_eq!((page.len(), more), (0, false));
    let (page, more) = list(None, true, 10).await.unwrap();
    assert_eq!(
        (ids(&page), more),
        (vec!["t_e", "t_c", "t_b", "t_a"], false)
    );
    let (page, more) = list(Some("t_c"), true, 1).await.unwrap();
    assert_eq!((ids(&page), more), (vec!["t_b"], true));
    let (page, _) = list(Some("t_d"), false, 10).await.unwrap();
    assert_eq!(
        ids(&page),
        ["t_e"],
        "an expired cursor still places the page"
    );

    for foreign in ["theirs", "t_alias", "file_1", "nothing"] {
        assert!(
            matches!(
                list(Some(foreign), false, 10).await,
                Err(StoreError::NotFound { .. })
            ),
            "{foreign} is not a cursor of u1's threads"
        );
    }
    let (files, _) = s
        .list_owned_objects("e1", "u1", "file", None, false, 10, 1_000)
        .await
        .unwrap();
    assert_eq!(ids(&files), ["file_1"]);
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

async fn concurrent_records_of_one_object_leave_one_owner(s: Arc<dyn CatalogStore>) {
    s.create_event(&event("e1", &[])).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                // Overlapping batches in opposite orders: no deadlock, one owner per object.
                let mut batch = vec![
                    object("file", "file_1", "e1", &format!("u{i}")),
                    object("file", "file_2", "e1", &format!("u{i}")),
                ];
                if i % 2 == 1 {
                    batch.reverse();
                }
                match s.record_objects(&batch).await {
                    Ok(()) => true,
                    Err(StoreError::Conflict(_)) => false,
                    Err(e) => panic!("{e}"),
                }
            })
        })
        .collect();
    let mut recorded = 0;
    for t in tasks {
        recorded += usize::from(t.await.unwrap());
    }
    assert_eq!(recorded, 1, "exactly one batch wins");
    let owners = s
        .lookup_objects(&refs(&[("file", "file_1"), ("file", "file_2")]), 2_000)
        .await
        .unwrap();
    assert_eq!(owners.len(), 2);
    assert_eq!(owners[0].user_id, owners[1].user_id);
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
            async fn a_kept_key_is_the_stored_one_and_only_on_its_host() {
                let t = $make().await;
                super::a_kept_key_is_the_stored_one_and_only_on_its_host(&*t.store).await;
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
            async fn ownership_records_are_all_or_nothing_and_take_no_catalog_version() {
                let t = $make().await;
                super::ownership_records_are_all_or_nothing_and_take_no_catalog_version(&*t.store)
                    .await;
                t.finish().await;
            }

            #[tokio::test]
            async fn expired_records_count_as_absent_and_may_be_taken_over() {
                let t = $make().await;
                super::expired_records_count_as_absent_and_may_be_taken_over(&*t.store).await;
                t.finish().await;
            }

            #[tokio::test]
            async fn forgetting_an_object_forgets_its_aliases_and_logs_an_invalidation() {
                let t = $make().await;
                super::forgetting_an_object_forgets_its_aliases_and_logs_an_invalidation(&*t.store)
                    .await;
                t.finish().await;
            }

            #[tokio::test]
            async fn attendee_lists_follow_creation_order_without_aliases_or_expired_records() {
                let t = $make().await;
                super::attendee_lists_follow_creation_order_without_aliases_or_expired_records(
                    &*t.store,
                )
                .await;
                t.finish().await;
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn concurrent_records_of_one_object_leave_one_owner() {
                let t = $make().await;
                super::concurrent_records_of_one_object_leave_one_owner(t.store.clone()).await;
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
