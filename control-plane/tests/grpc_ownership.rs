//! Foundry object ownership over gRPC, in-process on loopback: RecordObjects, ForgetObject,
//! LookupObjects and ListOwnedObjects with their status codes, record lifetimes set by the control
//! plane, and forgets reaching the Sync streams of every replica that shares the database.

mod support;

use std::time::Instant;

use aiproxy_proto::v1 as pb;
use support::*;
use tonic::Code;

fn owned(kind: &str, id: &str, event_id: &str, user_id: &str) -> pb::OwnedObject {
    pb::OwnedObject {
        kind: kind.into(),
        id: id.into(),
        event_id: event_id.into(),
        user_id: user_id.into(),
        resource_id: "r-agent".into(),
        ..Default::default()
    }
}

fn object_ref(kind: &str, id: &str) -> pb::ObjectRef {
    pb::ObjectRef {
        kind: kind.into(),
        id: id.into(),
    }
}

fn edge_hello(edge_id: &str) -> pb::Hello {
    pb::Hello {
        edge_id: edge_id.into(),
        ..hello(0, "")
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forget_on_one_replica_reaches_the_sync_streams_of_every_replica() {
    let dir = fresh_dir();
    let a = start_on(&dir).await;
    let b = start_on(&dir).await;
    let event = a.add_event("Workshop").await;
    let mut alias = owned("agent", "my-agent", &event, "u1");
    alias.alias_of = "asst_1".into();
    a.edge_client()
        .await
        .record_objects(with_token(
            pb::OwnedObjects {
                objects: vec![owned("agent", "asst_1", &event, "u1"), alias],
            },
            EDGE_TOKEN,
        ))
        .await
        .unwrap();
    let seen_by_b = b
        .edge_client()
        .await
        .lookup_objects(with_token(
            pb::ObjectRefs {
                refs: vec![
                    object_ref("agent", "asst_1"),
                    object_ref("agent", "my-agent"),
                ],
            },
            EDGE_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen_by_b.objects.len(), 2, "replicas share the records");

    let mut on_a = open_sync(&a, EDGE_TOKEN, edge_hello("edge-a"))
        .await
        .unwrap();
    let mut on_b = open_sync(&b, EDGE_TOKEN, edge_hello("edge-b"))
        .await
        .unwrap();
    let first_a = on_a.next_update().await;
    let first_b = on_b.next_update().await;
    assert!(
        first_a.reset_object_cache && first_b.reset_object_cache,
        "a session starts by dropping the edge's ownership cache"
    );
    assert!(first_a.forgotten_objects.is_empty());
    on_a.ack(&first_a).await;
    on_b.ack(&first_b).await;

    let started = Instant::now();
    let ack = a
        .edge_client()
        .await
        .forget_object(with_token(object_ref("agent", "asst_1"), EDGE_TOKEN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ack.version, 1, "the forget sequence number");
    let expected = vec![
        object_ref("agent", "asst_1"),
        object_ref("agent", "my-agent"),
    ];
    for (replica, stream, first) in [("a", &mut on_a, &first_a), ("b", &mut on_b, &first_b)] {
        let update = stream.next_update().await;
        eprintln!(
            "forget reached replica {replica}'s edge after {:?}",
            started.elapsed()
        );
        assert_eq!(update.forgotten_objects, expected, "replica {replica}");
        assert!(
            !update.full && !update.reset_object_cache,
            "replica {replica}"
        );
        assert_eq!(
            (update.version, update.base_version),
            (first.version, first.version),
            "a forget changes no catalog version"
        );
        assert!(update.tokens_included);
        assert!(
            update.resources.is_empty() && update.events.is_empty() && update.attendees.is_empty()
        );
    }

    let again = b
        .edge_client()
        .await
        .forget_object(with_token(object_ref("agent", "asst_1"), EDGE_TOKEN))
        .await;
    assert_eq!(again.err().unwrap().code(), Code::NotFound);
    let gone = b
        .edge_client()
        .await
        .lookup_objects(with_token(
            pb::ObjectRefs {
                refs: expected.clone(),
            },
            EDGE_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(gone.objects.is_empty(), "the alias went with its object");
    drop((a, b));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn records_are_all_or_nothing_and_get_their_lifetime_from_the_control_plane() {
    let running = start().await;
    let event = running.add_event("Workshop").await;
    let mut client = running.edge_client().await;
    let unauthenticated = client
        .record_objects(tonic::Request::new(pb::OwnedObjects::default()))
        .await;
    assert_eq!(unauthenticated.err().unwrap().code(), Code::Unauthenticated);

    // What the edge says about times is ignored: the control plane sets them.
    let mut thread = owned("thread", "thread_1", &event, "u1");
    thread.expires_at_ms = 1;
    thread.created_at_ms = 1;
    let response = owned("response", "resp_1", &event, "u1");
    let before = now_ms();
    // How many records a call wrote, or why it was refused.
    let recorder = client.clone();
    let record = move |objects: Vec<pb::OwnedObject>| {
        let mut client = recorder.clone();
        async move {
            client
                .record_objects(with_token(pb::OwnedObjects { objects }, EDGE_TOKEN))
                .await
                .map(|ack| ack.into_inner().written)
                .map_err(|s| s.code())
        }
    };
    assert_eq!(record(vec![thread.clone(), response]).await, Ok(2));
    // Recorded already for the same attendee: the ack says this call wrote nothing (an edge
    // that reserved a name this way must not give it back).
    assert_eq!(record(vec![thread]).await, Ok(0));
    let found = client
        .lookup_objects(with_token(
            pb::ObjectRefs {
                refs: vec![
                    object_ref("thread", "thread_1"),
                    object_ref("response", "resp_1"),
                    object_ref("file", "nope"),
                ],
            },
            EDGE_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner()
        .objects;
    assert_eq!(found.len(), 2);
    let response = found.iter().find(|o| o.kind == "response").unwrap();
    let thread = found.iter().find(|o| o.kind == "thread").unwrap();
    assert_eq!(thread.expires_at_ms, 0, "other objects last until deleted");
    assert!(thread.created_at_ms >= before);
    let thirty_days = 30 * 86_400_000;
    assert!((before + thirty_days..=now_ms() + thirty_days).contains(&response.expires_at_ms));

    let status_of = |objects| {
        let record = &record;
        async move { record(objects).await.err() }
    };
    let theirs = owned("thread", "thread_1", &event, "u2");
    let fresh = owned("thread", "thread_2", &event, "u2");
    assert_eq!(
        status_of(vec![fresh.clone(), theirs]).await,
        Some(Code::AlreadyExists)
    );
    assert_eq!(
        status_of(vec![owned("thread", "thread_3", "no-such-event", "u2")]).await,
        Some(Code::NotFound)
    );
    assert_eq!(
        status_of(vec![owned("", "x", &event, "u2")]).await,
        Some(Code::InvalidArgument)
    );
    assert_eq!(
        status_of(vec![owned("thread", " ", &event, "u2")]).await,
        Some(Code::InvalidArgument)
    );
    assert_eq!(
        status_of(vec![owned("thread", "thread\u{0}4", &event, "u2")]).await,
        Some(Code::InvalidArgument)
    );
    let too_many: Vec<pb::OwnedObject> = (0..1001)
        .map(|i| owned("file", &format!("file_{i}"), &event, "u2"))
        .collect();
    assert_eq!(status_of(too_many).await, Some(Code::InvalidArgument));
    let lookup_fresh = client
        .lookup_objects(with_token(
            pb::ObjectRefs {
                refs: vec![object_ref("thread", "thread_2")],
            },
            EDGE_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        lookup_fresh.objects.is_empty(),
        "a refused batch records nothing"
    );

    let too_many_refs = pb::ObjectRefs {
        refs: (0..1001)
            .map(|i| object_ref("file", &format!("file_{i}")))
            .collect(),
    };
    let refused = client
        .lookup_objects(with_token(too_many_refs, EDGE_TOKEN))
        .await;
    assert_eq!(refused.err().unwrap().code(), Code::InvalidArgument);
    let never = client
        .forget_object(with_token(object_ref("thread", "never"), EDGE_TOKEN))
        .await;
    assert_eq!(never.err().unwrap().code(), Code::NotFound);
    let empty = client
        .forget_object(with_token(object_ref("thread", ""), EDGE_TOKEN))
        .await;
    assert_eq!(empty.err().unwrap().code(), Code::InvalidArgument);
    // A control character is invalid input, never handed to a database that may refuse it as a
    // failure (Postgres and a NUL): edges count failures, not refusals, against their breaker.
    let nul = client
        .lookup_objects(with_token(
            pb::ObjectRefs {
                refs: vec![object_ref("file", "file\u{0}1")],
            },
            EDGE_TOKEN,
        ))
        .await;
    assert_eq!(nul.err().unwrap().code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread")]
async fn owned_objects_are_listed_in_pages_of_at_most_a_hundred() {
    let running = start().await;
    let event = running.add_event("Workshop").await;
    let mut client = running.edge_client().await;
    let mut objects: Vec<pb::OwnedObject> = (0..120)
        .map(|i| owned("vector_store", &format!("vs_{i:03}"), &event, "u1"))
        .collect();
    objects.push(owned("vector_store", "vs_theirs", &event, "u2"));
    let mut alias = owned("vector_store", "docs", &event, "u1");
    alias.alias_of = "vs_000".into();
    objects.push(alias);
    client
        .record_objects(with_token(pb::OwnedObjects { objects }, EDGE_TOKEN))
        .await
        .unwrap();

    let list = |after_id: &str, descending: bool, limit: u32| {
        let query = pb::OwnedObjectsQuery {
            event_id: event.clone(),
            user_id: "u1".into(),
            kind: "vector_store".into(),
            after_id: after_id.into(),
            descending,
            limit,
        };
        let mut client = client.clone();
        async move {
            client
                .list_owned_objects(with_token(query, EDGE_TOKEN))
                .await
        }
    };
    let one = list("", false, 0).await.unwrap().into_inner();
    assert_eq!(one.objects.len(), 1, "a limit of 0 means 1");
    assert!(one.has_more);
    let page = list("", false, 1000).await.unwrap().into_inner();
    assert_eq!(page.objects.len(), 100, "pages are capped at 100");
    assert!(page.has_more);
    assert_eq!(page.objects[0].id, "vs_000");
    let last = page.objects.last().unwrap().id.clone();
    let rest = list(&last, false, 100).await.unwrap().into_inner();
    assert_eq!(
        rest.objects.len(),
        20,
        "aliases and other attendees' objects are left out"
    );
    assert!(!rest.has_more);
    assert_eq!(rest.objects.last().unwrap().id, "vs_119");
    let newest = list("", true, 2).await.unwrap().into_inner();
    let ids: Vec<&str> = newest.objects.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, ["vs_119", "vs_118"]);

    for after in ["vs_theirs", "docs", "nothing"] {
        let err = list(after, false, 10).await.err().unwrap();
        assert_eq!(err.code(), Code::NotFound, "{after}");
    }
    let mut no_kind = pb::OwnedObjectsQuery {
        event_id: event.clone(),
        user_id: "u1".into(),
        limit: 10,
        ..Default::default()
    };
    let err = client
        .list_owned_objects(with_token(no_kind.clone(), EDGE_TOKEN))
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Code::InvalidArgument);
    no_kind.kind = "vector_store".into();
    no_kind.user_id = "nobody".into();
    let nothing = client
        .list_owned_objects(with_token(no_kind, EDGE_TOKEN))
        .await
        .unwrap()
        .into_inner();
    assert!(nothing.objects.is_empty() && !nothing.has_more);
}
