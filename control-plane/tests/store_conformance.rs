//! One conformance suite, run against both catalog stores: the embedded SQLite store and the
//! Postgres store (a fresh database per test, so tests run in parallel). Postgres comes from
//! `AIPROXY_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`); it must be
//! running: scripts/test.sh starts it.

use std::sync::Arc;

use aiproxy_control_plane::catalog::model::{
    Attendee, Event, ForgetsSince, FoundryObject, ModelType, ObjectKind, Resource, UsageFilter,
    UsageGranularity, UsageGrouping, UsageRecord, UsageReportQuery, UsageRow, UsageSum,
    UsageSummary, UsageTotals,
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
        store: open(&url, 10).await.expect("open sqlite store"),
        cleanup: None,
        _dir: Some(dir),
    }
}

async fn postgres_store() -> TestStore {
    postgres_store_with(10).await
}

async fn postgres_store_with(max_connections: u32) -> TestStore {
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
    let store = open(&format!("{base}/{db}"), max_connections)
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
        use_max_completion_tokens: false,
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
        daily_token_cap: 20_000,
        token_budget: 5_000_000_000,
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
    r.use_max_completion_tokens = true;
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
    changed.daily_token_cap = 0;
    changed.token_budget = 42;
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
    assert_eq!(
        s.record_objects(&[first.clone(), second.clone()])
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        s.record_objects(&[first.clone()]).await.unwrap(),
        0,
        "recorded already for the same attendee: not written by this call"
    );
    let third = object("thread", "thread_5", "e1", "u1");
    assert_eq!(
        s.record_objects(&[second.clone(), third.clone()])
            .await
            .unwrap(),
        1
    );
    assert_eq!(s.record_objects(&[]).await.unwrap(), 0);
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
    assert_eq!(
        s.record_objects(&[taken.clone()]).await.unwrap(),
        1,
        "an expired record taken over is written by this call"
    );
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
            .unwrap()
            .granted,
        3
    );
    assert_eq!(
        s.lease_requests("e1", "u1", "2026-11-30", 3, 5)
            .await
            .unwrap()
            .granted,
        2
    );
    assert_eq!(
        s.lease_requests("e1", "u1", "2026-11-30", 3, 5)
            .await
            .unwrap()
            .granted,
        0
    );
    assert_eq!(
        s.lease_requests("e1", "u1", "2026-12-01", 3, 5)
            .await
            .unwrap()
            .granted,
        3,
        "a new UTC day"
    );
    assert_eq!(
        s.lease_requests("e1", "u2", "2026-11-30", 3, 5)
            .await
            .unwrap()
            .granted,
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
                    .granted
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
                    Ok(_) => true,
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

/// 2026-03-29T10:00:00Z.
const HOUR_10: i64 = 1_774_778_400_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

fn usage(event: &str, user: &str, resource: &str, at_ms: i64, total: u64) -> UsageRecord {
    UsageRecord {
        event_id: event.into(),
        user_id: user.into(),
        resource_id: resource.into(),
        deployment_name: format!("{resource}-deployment"),
        status: 200,
        started_at_ms: at_ms,
        duration_ms: 100,
        ttfb_ms: 10,
        streamed: false,
        usage_unknown: false,
        prompt_tokens: total / 2,
        completion_tokens: total - total / 2,
        total_tokens: total,
        cached_tokens: total / 10,
        reasoning_tokens: 0,
        once_key: String::new(),
        follow_up: false,
    }
}

fn everything() -> UsageFilter {
    UsageFilter {
        from_ms: 0,
        to_ms: i64::MAX,
        ..Default::default()
    }
}

fn report(
    filter: UsageFilter,
    granularity: UsageGranularity,
    group_by: UsageGrouping,
) -> UsageReportQuery {
    UsageReportQuery {
        filter,
        granularity,
        group_by,
    }
}

fn totals(requests: u64, errors: u64, total_tokens: u64) -> UsageTotals {
    UsageTotals {
        requests,
        errors,
        prompt_tokens: 0,
        completion_tokens: 0,
        total_tokens,
        cached_tokens: 0,
    }
}

/// Only what `totals` sets, to compare rows without restating every token kind.
fn brief(t: UsageTotals) -> UsageTotals {
    totals(t.requests, t.errors, t.total_tokens)
}

async fn a_usage_batch_is_applied_once(s: &dyn CatalogStore) {
    let batch = [
        usage("e1", "u1", "r1", HOUR_10 + 5, 100),
        usage("e1", "u1", "r1", HOUR_10 + 6, 50),
    ];
    assert!(
        s.apply_usage_batch("edge-a_1", &batch, &[], 1_000)
            .await
            .unwrap()
    );
    assert!(
        !s.apply_usage_batch("edge-a_1", &batch, &[], 2_000)
            .await
            .unwrap(),
        "the same batch again is a duplicate"
    );
    assert!(
        !s.apply_usage_batch(
            "edge-a_1",
            &[usage("e1", "u1", "r1", HOUR_10, 7)],
            &[],
            3_000
        )
        .await
        .unwrap(),
        "the id decides, not the content"
    );
    let t = s.usage_totals(&everything()).await.unwrap();
    assert_eq!(
        t,
        UsageTotals {
            requests: 2,
            errors: 0,
            prompt_tokens: 75,
            completion_tokens: 75,
            total_tokens: 150,
            cached_tokens: 15,
        }
    );
    assert!(
        s.apply_usage_batch("edge-a_2", &[], &[], 4_000)
            .await
            .unwrap(),
        "an empty batch is a batch"
    );

    // Dedupe ids are forgotten after their retention: purged, the batch would count again.
    assert_eq!(
        s.purge_usage_dedupe(1_000).await.unwrap(),
        0,
        "nothing that old"
    );
    assert_eq!(s.purge_usage_dedupe(4_001).await.unwrap(), 2);
    assert!(
        s.apply_usage_batch("edge-a_1", &batch, &[], 5_000)
            .await
            .unwrap()
    );
    assert_eq!(s.usage_totals(&everything()).await.unwrap().requests, 4);
}

/// An edge's sums land in the rows records of the same key land in, once per batch.
async fn sums_add_to_the_rows_records_add_to(s: &dyn CatalogStore) {
    let sum = |user: &str, requests: u64, errors: u64, total: u64| UsageSum {
        event_id: "e1".into(),
        user_id: user.into(),
        resource_id: "r1".into(),
        deployment_name: "r1-deployment".into(),
        hour_ms: HOUR_10,
        requests,
        errors,
        streamed: 1,
        usage_unknown: 0,
        prompt_tokens: total / 2,
        completion_tokens: total - total / 2,
        total_tokens: total,
        cached_tokens: 0,
        reasoning_tokens: 0,
        duration_ms: 100 * requests,
        ttfb_ms: 10 * requests,
    };
    let records = [usage("e1", "u1", "r1", HOUR_10 + 5, 100)];
    let sums = [sum("u1", 500, 2, 9_000), sum("u2", 3, 0, 30)];
    assert!(
        s.apply_usage_batch("edge-a_1", &records, &sums, 1_000)
            .await
            .unwrap()
    );
    assert!(
        !s.apply_usage_batch("edge-a_1", &records, &sums, 2_000)
            .await
            .unwrap(),
        "a batch of sums sent again is a duplicate"
    );
    assert!(
        s.apply_usage_batch("edge-a_2", &[], &[sum("u1", 1, 1, 0)], 3_000)
            .await
            .unwrap()
    );
    let of = |user: &str| UsageFilter {
        user_id: Some(user.into()),
        ..everything()
    };
    assert_eq!(
        brief(s.usage_totals(&of("u1")).await.unwrap()),
        totals(502, 3, 9_100),
        "one record and two sums in one row"
    );
    assert_eq!(
        brief(s.usage_totals(&of("u2")).await.unwrap()),
        totals(3, 0, 30)
    );
    let rows = s
        .usage_rows(
            &report(
                everything(),
                UsageGranularity::Hour,
                UsageGrouping {
                    event: false,
                    resource: false,
                    attendee: true,
                },
            ),
            100,
        )
        .await
        .unwrap();
    let hours: Vec<_> = rows
        .iter()
        .map(|r| (r.bucket_ms, r.user_id.as_deref(), r.totals.requests))
        .collect();
    assert_eq!(
        hours,
        [(HOUR_10, Some("u1"), 502), (HOUR_10, Some("u2"), 3)],
        "{rows:?}"
    );
}

async fn a_batch_sent_concurrently_is_applied_once(s: Arc<dyn CatalogStore>) {
    let batch: Vec<UsageRecord> = (0..50)
        .map(|i| usage("e1", &format!("u{}", i % 5), "r1", HOUR_10 + i * 60_000, 10))
        .collect();
    let batch = Arc::new(batch);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (s, batch) = (s.clone(), batch.clone());
            tokio::spawn(async move {
                // Two ids, each sent four times at once (two replicas, resends in flight).
                let id = if i % 2 == 0 {
                    "batch-even"
                } else {
                    "batch-odd"
                };
                s.apply_usage_batch(id, &batch, &[], 1_000).await.unwrap()
            })
        })
        .collect();
    let mut applied = 0;
    for t in tasks {
        applied += usize::from(t.await.unwrap());
    }
    assert_eq!(applied, 2, "each id is applied exactly once");
    let t = s.usage_totals(&everything()).await.unwrap();
    assert_eq!((t.requests, t.total_tokens), (100, 1_000));
}

async fn tokens_of_a_once_key_count_once(s: &dyn CatalogStore) {
    let run = |key: &str, total| {
        let mut r = usage("e1", "u1", "agent", HOUR_10, total);
        r.once_key = key.into();
        r
    };
    // The same finished run read twice in one batch, then again in a later one.
    s.apply_usage_batch(
        "b1",
        &[
            run("run_1", 300),
            run("run_1", 300),
            usage("e1", "u1", "agent", HOUR_10, 5),
        ],
        &[],
        1_000,
    )
    .await
    .unwrap();
    s.apply_usage_batch("b2", &[run("run_1", 300), run("run_2", 40)], &[], 2_000)
        .await
        .unwrap();
    let t = s.usage_totals(&everything()).await.unwrap();
    assert_eq!(
        (t.requests, t.total_tokens),
        (5, 345),
        "every read is a request; each run's tokens count once"
    );
    // An edge that read runs to their end itself: their tokens (once), no request.
    let follow_up = |key: &str, total| UsageRecord {
        follow_up: true,
        ..run(key, total)
    };
    s.apply_usage_batch(
        "b3",
        &[follow_up("run_3", 70), follow_up("run_1", 300)],
        &[],
        3_000,
    )
    .await
    .unwrap();
    let t = s.usage_totals(&everything()).await.unwrap();
    assert_eq!(
        (t.requests, t.total_tokens),
        (5, 415),
        "a follow-up is no request; a run counted before brings nothing"
    );
    let purged = s.purge_usage_dedupe(1_500).await.unwrap();
    assert_eq!(purged, 2, "batch b1 and the key run_1");
}

async fn usage_is_summed_per_utc_hour(s: &dyn CatalogStore) {
    let mut failed = usage("e1", "u1", "r1", HOUR_10 + HOUR, 0);
    failed.status = 429;
    s.apply_usage_batch(
        "b1",
        &[
            usage("e1", "u1", "r1", HOUR_10 + HOUR - 1, 10),
            usage("e1", "u1", "r1", HOUR_10, 20),
            failed,
            usage("e1", "u1", "r1", HOUR_10 + 2 * HOUR - 1, 40),
        ],
        &[],
        1_000,
    )
    .await
    .unwrap();
    // A later batch adds to the same hour's row.
    s.apply_usage_batch(
        "b2",
        &[usage("e1", "u1", "r1", HOUR_10 + 30 * 60_000, 1)],
        &[],
        1_000,
    )
    .await
    .unwrap();
    let hours = s
        .usage_rows(
            &report(
                everything(),
                UsageGranularity::Hour,
                UsageGrouping::default(),
            ),
            100,
        )
        .await
        .unwrap();
    let seen: Vec<(i64, UsageTotals)> = hours
        .iter()
        .map(|r| (r.bucket_ms, brief(r.totals)))
        .collect();
    assert_eq!(
        seen,
        vec![
            (HOUR_10, totals(3, 0, 31)),
            (HOUR_10 + HOUR, totals(2, 1, 40))
        ]
    );
    let days = s
        .usage_rows(
            &report(
                everything(),
                UsageGranularity::Day,
                UsageGrouping::default(),
            ),
            100,
        )
        .await
        .unwrap();
    assert_eq!(days.len(), 1);
    assert_eq!(days[0].bucket_ms, HOUR_10 - 10 * HOUR, "the UTC day");
    assert_eq!(brief(days[0].totals), totals(5, 1, 71));
    // The hour is in the range when its start is: [from, to).
    let only_eleven = UsageFilter {
        from_ms: HOUR_10 + 1,
        to_ms: HOUR_10 + 2 * HOUR,
        ..Default::default()
    };
    assert_eq!(s.usage_totals(&only_eleven).await.unwrap().requests, 2);
}

async fn reports_group_filter_and_total(s: &dyn CatalogStore) {
    s.create_event(&event("e1", &[])).await.unwrap();
    let next_day = HOUR_10 + DAY;
    let mut error = usage("e2", "u1", "r2", HOUR_10, 0);
    error.status = 500;
    s.apply_usage_batch(
        "b1",
        &[
            usage("e1", "u1", "r1", HOUR_10, 100),
            usage("e1", "u2", "r1", HOUR_10, 10),
            usage("e1", "u1", "r2", HOUR_10 + HOUR, 1),
            usage("e1", "u2", "r1", next_day, 1_000),
            error,
        ],
        &[],
        1_000,
    )
    .await
    .unwrap();
    let rows = |filter, granularity, group_by| {
        let s = &s;
        async move {
            s.usage_rows(&report(filter, granularity, group_by), 100)
                .await
                .unwrap()
        }
    };
    let by_attendee = UsageGrouping {
        attendee: true,
        ..Default::default()
    };
    let e1 = UsageFilter {
        event_id: Some("e1".into()),
        ..everything()
    };
    let daily = rows(e1.clone(), UsageGranularity::Day, by_attendee).await;
    let seen: Vec<(i64, Option<&str>, Option<&str>, u64)> = daily
        .iter()
        .map(|r| {
            (
                r.bucket_ms,
                r.event_id.as_deref(),
                r.user_id.as_deref(),
                r.totals.total_tokens,
            )
        })
        .collect();
    let day0 = UsageGranularity::Day.floor(HOUR_10);
    assert_eq!(
        seen,
        vec![
            (day0, None, Some("u1"), 101),
            (day0, None, Some("u2"), 10),
            (day0 + DAY, None, Some("u2"), 1_000),
        ],
        "ordered by bucket then attendee; event not grouped on: null"
    );

    let all_dimensions = UsageGrouping {
        event: true,
        resource: true,
        attendee: true,
    };
    let full = rows(everything(), UsageGranularity::Hour, all_dimensions).await;
    assert_eq!(full.len(), 5);
    assert_eq!(
        full[0],
        UsageRow {
            bucket_ms: HOUR_10,
            event_id: Some("e1".into()),
            resource_id: Some("r1".into()),
            deployment_name: Some("r1-deployment".into()),
            user_id: Some("u1".into()),
            totals: UsageTotals {
                requests: 1,
                errors: 0,
                prompt_tokens: 50,
                completion_tokens: 50,
                total_tokens: 100,
                cached_tokens: 10,
            },
        }
    );
    assert_eq!(
        (full[2].event_id.as_deref(), full[2].totals.errors),
        (Some("e2"), 1),
        "e1 before e2 within the hour"
    );

    let by_resource = UsageGrouping {
        resource: true,
        ..Default::default()
    };
    let u1_resources = rows(
        UsageFilter {
            user_id: Some("u1".into()),
            ..everything()
        },
        UsageGranularity::Day,
        by_resource,
    )
    .await;
    let seen: Vec<(Option<&str>, Option<&str>, u64)> = u1_resources
        .iter()
        .map(|r| {
            (
                r.resource_id.as_deref(),
                r.deployment_name.as_deref(),
                r.totals.requests,
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (Some("r1"), Some("r1-deployment"), 1),
            (Some("r2"), Some("r2-deployment"), 2)
        ]
    );

    let r1 = UsageFilter {
        resource_id: Some("r1".into()),
        ..e1.clone()
    };
    assert_eq!(
        brief(s.usage_totals(&r1).await.unwrap()),
        totals(3, 0, 1_110)
    );
    assert_eq!(
        brief(s.usage_totals(&everything()).await.unwrap()),
        totals(5, 1, 1_111)
    );
    let first_day = UsageFilter {
        to_ms: day0 + DAY,
        ..e1.clone()
    };
    assert_eq!(
        brief(s.usage_totals(&first_day).await.unwrap()),
        totals(3, 0, 111)
    );
    let nobody = UsageFilter {
        user_id: Some("ghost".into()),
        ..everything()
    };
    assert_eq!(
        s.usage_totals(&nobody).await.unwrap(),
        UsageTotals::default()
    );
    assert!(
        rows(nobody, UsageGranularity::Hour, by_attendee)
            .await
            .is_empty()
    );
    assert_eq!(
        s.usage_rows(
            &report(everything(), UsageGranularity::Hour, all_dimensions),
            2
        )
        .await
        .unwrap()
        .len(),
        2,
        "the limit holds"
    );

    let day = chrono::NaiveDate::from_ymd_opt(2026, 3, 29).unwrap();
    assert_eq!(
        s.usage_summary("e1", "u1", day).await.unwrap(),
        UsageSummary {
            requests: 2,
            prompt_tokens: 50,
            completion_tokens: 51,
            total_tokens: 101,
            event_total_tokens: 1_111,
        }
    );
    let next = day.succ_opt().unwrap();
    assert_eq!(s.usage_summary("e1", "u1", next).await.unwrap().requests, 0);
    assert_eq!(
        s.usage_summary("e1", "u2", next)
            .await
            .unwrap()
            .total_tokens,
        1_000
    );

    // Usage is kept after its event is deleted.
    s.delete_event("e1").await.unwrap();
    assert_eq!(s.usage_totals(&e1).await.unwrap().total_tokens, 1_111);
}

async fn token_leases_pay_debt_first_and_never_grant_past_the_cap(s: Arc<dyn CatalogStore>) {
    s.create_event(&event("e1", &[])).await.unwrap();
    let day = "2026-03-29";
    assert_eq!(
        s.lease_tokens("e1", "u1", day, 400, 0, 1_000)
            .await
            .unwrap()
            .granted,
        400
    );
    // The edge spent 700 of its 400: 300 of debt, paid before the next lease.
    assert_eq!(
        s.lease_tokens("e1", "u1", day, 400, 300, 1_000)
            .await
            .unwrap()
            .granted,
        300
    );
    assert_eq!(
        s.lease_tokens("e1", "u1", day, 400, 0, 1_000)
            .await
            .unwrap()
            .granted,
        0
    );
    assert_eq!(
        s.lease_tokens("e1", "u1", day, 0, 50, 1_000)
            .await
            .unwrap()
            .granted,
        0,
        "debt alone is paid, nothing granted"
    );
    assert_eq!(
        s.lease_tokens("e1", "u1", "2026-03-30", 400, 0, 1_000)
            .await
            .unwrap()
            .granted,
        400,
        "a new UTC day"
    );
    assert_eq!(
        s.lease_tokens("e1", "u2", day, 400, 0, 1_000)
            .await
            .unwrap()
            .granted,
        400,
        "per attendee"
    );
    assert_eq!(
        s.lease_tokens("e1", "", "event", 2_000, 0, 1_000)
            .await
            .unwrap()
            .granted,
        1_000,
        "the event budget is its own counter"
    );
    // (A first lease starts from the recorded usage, which already holds what a debt was for: the
    // debt counts from the second lease on.)
    s.lease_tokens("e1", "u3", day, 0, 0, 1_000).await.unwrap();
    assert_eq!(
        s.lease_tokens("e1", "u3", day, 400, 2_000, 1_000)
            .await
            .unwrap()
            .granted,
        0,
        "a debt past the cap leaves nothing"
    );

    // The counter exists first: a first lease drops its debt (see above), which would blur the sum.
    s.lease_tokens("e1", "u4", day, 0, 0, 1_000).await.unwrap();
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let debt = i % 2 * 10;
                let granted = s
                    .lease_tokens("e1", "u4", day, 100, debt, 1_000)
                    .await
                    .unwrap()
                    .granted;
                (granted, debt)
            })
        })
        .collect();
    let (mut granted, mut spent) = (0, 0);
    for t in tasks {
        let (g, debt) = t.await.unwrap();
        granted += g;
        spent += g + if g > 0 { debt } else { 0 };
    }
    // Twelve leases of 100 against 1000, half of them paying a debt of 10: whatever the order,
    // the leases that were granted anything, with their debts, fill the cap and never pass it
    // (short of it by at most one debt that found the rest too small).
    assert!(granted <= 1_000, "granted {granted}");
    assert!(
        (990..=1_000).contains(&spent),
        "granted {granted}, with debts {spent}"
    );

    // What is left of the cap comes with every grant (edges size their next lease by it).
    let lease = s
        .lease_tokens("e1", "u9", day, 100, 0, 1_000)
        .await
        .unwrap();
    assert_eq!((lease.granted, lease.left), (100, 900));
    let lease = s
        .lease_tokens("e1", "u9", day, 100, 20, 1_000)
        .await
        .unwrap();
    assert_eq!((lease.granted, lease.left), (100, 780));

    // A counter starts from the usage recorded before it (a cap set mid-event): 600 tokens of
    // u5 that day (HOUR_10 is on 2026-03-29), 50 the day before; 1,250 for the whole event.
    s.apply_usage_batch(
        "seed",
        &[
            usage("e1", "u5", "r1", HOUR_10, 600),
            usage("e1", "u5", "r1", HOUR_10 - DAY, 50),
            usage("e1", "u6", "r1", HOUR_10, 600),
        ],
        &[],
        HOUR_10,
    )
    .await
    .unwrap();
    assert_eq!(
        s.lease_tokens("e1", "u5", day, 500, 0, 1_000)
            .await
            .unwrap()
            .granted,
        400,
        "the day's recorded usage counts, the day before's does not"
    );
    s.create_event(&event("e3", &[])).await.unwrap();
    s.apply_usage_batch(
        "seed-e3",
        &[usage("e3", "u1", "r1", HOUR_10, 700)],
        &[],
        HOUR_10,
    )
    .await
    .unwrap();
    assert_eq!(
        s.lease_tokens("e3", "", "event", 500, 0, 1_000)
            .await
            .unwrap()
            .granted,
        300,
        "an event budget counts all the event's recorded usage"
    );

    s.delete_event("e1").await.unwrap();
    assert!(
        s.lease_tokens("e2", "u1", day, 1, 0, 10).await.is_err(),
        "counters belong to an existing event"
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
            #[tokio::test]
            async fn a_usage_batch_is_applied_once() {
                let t = $make().await;
                super::a_usage_batch_is_applied_once(&*t.store).await;
                t.finish().await;
            }

            #[tokio::test]
            async fn sums_add_to_the_rows_records_add_to() {
                let t = $make().await;
                super::sums_add_to_the_rows_records_add_to(&*t.store).await;
                t.finish().await;
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn a_batch_sent_concurrently_is_applied_once() {
                let t = $make().await;
                super::a_batch_sent_concurrently_is_applied_once(t.store.clone()).await;
                t.finish().await;
            }

            #[tokio::test]
            async fn tokens_of_a_once_key_count_once() {
                let t = $make().await;
                super::tokens_of_a_once_key_count_once(&*t.store).await;
                t.finish().await;
            }

            #[tokio::test]
            async fn usage_is_summed_per_utc_hour() {
                let t = $make().await;
                super::usage_is_summed_per_utc_hour(&*t.store).await;
                t.finish().await;
            }

            #[tokio::test]
            async fn reports_group_filter_and_total() {
                let t = $make().await;
                super::reports_group_filter_and_total(&*t.store).await;
                t.finish().await;
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn token_leases_pay_debt_first_and_never_grant_past_the_cap() {
                let t = $make().await;
                super::token_leases_pay_debt_first_and_never_grant_past_the_cap(t.store.clone())
                    .await;
                t.finish().await;
            }
        }
    };
}

conformance!(sqlite, sqlite_store);
conformance!(postgres, postgres_store);

/// `AIPROXY_DATABASE_MAX_CONNECTIONS`: many concurrent catalog reads never hold more than the
/// configured number of Postgres connections (the server's limit is shared by every replica).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_pool_holds_at_most_the_configured_connections() {
    const LIMIT: i64 = 2;
    let t = postgres_store_with(LIMIT as u32).await;
    let (admin_url, db) = t.cleanup.clone().unwrap();
    for i in 0..20 {
        t.store
            .create_resource(&resource(&format!("r{i}"), &format!("d{i}")))
            .await
            .unwrap();
    }
    let readers: Vec<_> = (0..64)
        .map(|_| {
            let store = t.store.clone();
            tokio::spawn(async move {
                for _ in 0..20 {
                    store.list_resources().await.unwrap();
                }
            })
        })
        .collect();
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    let mut most = 0;
    while readers.iter().any(|r| !r.is_finished()) {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = $2",
        )
        .bind(&db)
        .bind(aiproxy_control_plane::catalog::store::POSTGRES_APPLICATION_NAME)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        most = most.max(n);
    }
    for r in readers {
        r.await.unwrap();
    }
    assert!(
        (1..=LIMIT).contains(&most),
        "the pool held {most} connections at once; the limit is {LIMIT}"
    );
    t.finish().await;
}
