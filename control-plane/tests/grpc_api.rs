//! The gRPC surface, in-process on loopback: EdgeService.Sync (auth, snapshot, deltas, resume,
//! ACK bookkeeping, chunked snapshots, the edge's last error), CatalogService (no secrets, its own
//! credential, Watch), health, reflection (off unless enabled), NACK back-off. Ownership calls and
//! forgets: `grpc_ownership.rs`.

mod support;

use std::time::Duration;

use aiproxy_control_plane::catalog::model::Event;
use aiproxy_control_plane::catalog::store::open;
use aiproxy_control_plane::sync::chunks::MAX_SYNC_MESSAGE_BYTES;
use aiproxy_proto::v1 as pb;
use pb::catalog_service_client::CatalogServiceClient;
use pb::edge_message::Message;
use pb::edge_service_client::EdgeServiceClient;
use support::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

#[tokio::test(flavor = "multi_thread")]
async fn sync_refuses_edges_without_the_edge_token() {
    let running = start().await;
    for token in ["wrong", ADMIN_TOKEN, CATALOG_TOKEN] {
        let err = open_sync(&running, token, hello(0, ""))
            .await
            .err()
            .expect("refused");
        assert_eq!(err.code(), Code::Unauthenticated, "{token}");
    }
    let mut client = EdgeServiceClient::new(running.channel().await);
    let (_tx, rx) = mpsc::channel::<pb::EdgeMessage>(1);
    let err = client
        .sync(tonic::Request::new(ReceiverStream::new(rx)))
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_sends_a_snapshot_then_deltas_and_resumes_by_version() {
    let running = start().await;
    let first = running.add_resource("gpt-4o").await;

    let mut edge = open_sync(&running, EDGE_TOKEN, hello(0, "")).await.unwrap();
    let snapshot = edge.next().await;
    assert!(snapshot.full);
    assert_eq!(snapshot.key_hash_secret.len(), 32);
    assert_eq!(snapshot.resources.len(), 1);
    assert_eq!(
        snapshot.resources[0].api_key, "sk-secret-upstream",
        "edges get the decrypted key"
    );
    edge.ack(&snapshot).await;

    let started = std::time::Instant::now();
    let second = running.add_resource("embed").await;
    let delta = edge.next().await;
    eprintln!(
        "admin change pushed to the edge after {:?}",
        started.elapsed()
    );
    assert!(!delta.full);
    assert_eq!(delta.base_version, snapshot.version);
    assert!(delta.version > snapshot.version);
    assert_eq!(delta.resources.len(), 1);
    assert_eq!(delta.resources[0].info.as_ref().unwrap().id, second);
    assert!(delta.key_hash_secret.is_empty());
    edge.ack(&delta).await;

    // The registry shows the ACK.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let edges = running.admin_get("/edges").await;
    assert_eq!(
        edges["edges"][0]["version_acked"].as_u64(),
        Some(delta.version),
        "{edges}"
    );
    drop(edge);

    // Reconnecting with the held version gets an immediate, empty delta; changes made while away come as a delta.
    let mut back = open_sync(
        &running,
        EDGE_TOKEN,
        hello(delta.version, &snapshot.catalog_id),
    )
    .await
    .unwrap();
    let resumed = back.next().await;
    assert!(!resumed.full && resumed.resources.is_empty());
    assert_eq!(resumed.version, delta.version);
    drop(back);
    let _ = first;
    running.add_resource("third").await;
    let mut back = open_sync(
        &running,
        EDGE_TOKEN,
        hello(delta.version, &snapshot.catalog_id),
    )
    .await
    .unwrap();
    let missed = back.next().await;
    assert!(!missed.full);
    assert_eq!(missed.resources.len(), 1);

    // A version of another catalog gets a full snapshot.
    let mut other = open_sync(
        &running,
        EDGE_TOKEN,
        hello(delta.version, "another-catalog"),
    )
    .await
    .unwrap();
    assert!(other.next().await.full);
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_needs_hello_first() {
    let running = start().await;
    let (tx, rx) = mpsc::channel(8);
    tx.send(pb::EdgeMessage {
        message: Some(Message::Ack(pb::Ack::default())),
    })
    .await
    .unwrap();
    let mut client = EdgeServiceClient::new(running.channel().await);
    let err = client
        .sync(with_token(ReceiverStream::new(rx), EDGE_TOKEN))
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread")]
async fn catalog_service_is_read_only_and_secret_free() {
    let running = start().await;
    let id = running.add_resource("gpt-4o").await;
    let mut client = CatalogServiceClient::new(running.channel().await);
    let err = client
        .list_resources(with_token(pb::ListRequest {}, EDGE_TOKEN))
        .await
        .err()
        .unwrap();
    assert_eq!(
        err.code(),
        Code::Unauthenticated,
        "the edge token is not a catalog credential"
    );

    let list = client
        .list_resources(with_token(pb::ListRequest {}, CATALOG_TOKEN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.resources.len(), 1);
    assert!(list.resources[0].has_key);
    let encoded = prost::Message::encode_to_vec(&list);
    assert!(
        !encoded.windows(9).any(|w| w == b"sk-secret"),
        "no secret on the catalog service"
    );
    let got = client
        .get_resource(with_token(pb::GetRequest { id: id.clone() }, CATALOG_TOKEN))
        .await
        .unwrap();
    assert_eq!(got.into_inner().deployment_name, "gpt-4o");
    let missing = client
        .get_resource(with_token(
            pb::GetRequest { id: "nope".into() },
            CATALOG_TOKEN,
        ))
        .await;
    assert_eq!(missing.err().unwrap().code(), Code::NotFound);

    let mut watch = client
        .watch(with_token(
            pb::WatchRequest {
                since_version: list.version,
            },
            CATALOG_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.version, list.version);
    running.add_resource("embed").await;
    let change = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(change.resources.len(), 1);
    assert_eq!(change.resources[0].deployment_name, "embed");
}

/// The services reflection lists, or the status it was refused with.
async fn reflected_services(running: &Running) -> Result<Vec<String>, tonic::Status> {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(running.channel().await);
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await?
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.message().await?.unwrap().message_response
    else {
        panic!("expected a service list");
    };
    Ok(list.service.into_iter().map(|s| s.name).collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn health_is_served_and_reflection_only_when_enabled() {
    let running = start().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(running.channel().await);
    for service in ["", "aiproxy.v1.EdgeService", "aiproxy.v1.CatalogService"] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service}"
        );
    }
    let refused = reflected_services(&running).await.unwrap_err();
    assert_eq!(
        refused.code(),
        Code::Unimplemented,
        "reflection is off by default"
    );

    let with_reflection = start_fresh_with(|c| c.grpc_reflection = true).await;
    let names = reflected_services(&with_reflection).await.unwrap();
    for expected in [
        "aiproxy.v1.EdgeService",
        "aiproxy.v1.CatalogService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not in {names:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nacks_in_a_row_back_off_exponentially_and_an_ack_starts_over() {
    let running = start().await;
    running.add_resource("gpt-4o").await;
    let mut edge = open_sync(&running, EDGE_TOKEN, hello(0, "")).await.unwrap();
    let mut update = edge.next_update().await;
    let nack = |update: &pb::SyncUpdate| pb::EdgeMessage {
        message: Some(Message::Nack(pb::Nack {
            version: update.version,
            nonce: update.nonce.clone(),
            error: "poison update".into(),
        })),
    };
    // Each NACK in a row doubles the wait before the next full snapshot: 1 s, 2 s, 4 s.
    let mut waits = Vec::new();
    for _ in 0..3 {
        edge.tx.send(nack(&update)).await.unwrap();
        let sent = std::time::Instant::now();
        update = reassemble(edge.next_chunks(Duration::from_secs(10)).await);
        waits.push(sent.elapsed());
        assert!(update.full, "a NACK is answered with a full snapshot");
    }
    let ms: Vec<u128> = waits.iter().map(|w| w.as_millis()).collect();
    assert!((900..1_900).contains(&ms[0]), "{ms:?}");
    assert!((1_900..3_500).contains(&ms[1]), "{ms:?}");
    assert!((3_900..6_000).contains(&ms[2]), "{ms:?}");
    assert_eq!(
        running.admin_get("/edges").await["edges"][0]["last_nack"],
        "poison update"
    );
    // An ACK of what was sent starts the back-off over.
    edge.ack(&update).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    edge.tx.send(nack(&update)).await.unwrap();
    let sent = std::time::Instant::now();
    edge.next_chunks(Duration::from_secs(10)).await;
    assert!(
        sent.elapsed() < Duration::from_millis(1_900),
        "after an ACK the first NACK waits 1 s again, not {:?}",
        sent.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_catalog_is_sent_once_and_then_only_changes() {
    let running = start().await;
    let mut edge = open_sync(&running, EDGE_TOKEN, hello(0, "")).await.unwrap();
    let snapshot = edge.next().await;
    assert!(snapshot.full);
    assert_eq!(snapshot.version, 0);
    edge.ack(&snapshot).await;
    // The ACK must not provoke the same empty snapshot again.
    running.add_resource("gpt-4o").await;
    let next = edge.next().await;
    assert!(
        !next.full,
        "expected the delta, got another full snapshot of version {}",
        next.version
    );
    assert_eq!(next.resources.len(), 1);
}

/// Puts an event with `count` attendees straight into the database in `dir` (one statement: the
/// admin API would take minutes), stamped with the event's catalog version.
async fn seed_attendees(dir: &std::path::Path, count: u32) {
    let url = database_url(dir);
    let store = open(&url, 10).await.unwrap();
    let version = store
        .create_event(&Event {
            id: "big-event".into(),
            name: "Keynote".into(),
            starts_at_ms: 1_700_000_000_000,
            ends_at_ms: 2_000_000_000_000,
            time_zone: "Europe/Paris".into(),
            max_token_cap: 0,
            daily_request_cap: 0,
            daily_token_cap: 0,
            token_budget: 0,
            organizer_name: String::new(),
            organizer_email: String::new(),
            active: true,
            resource_ids: Vec::new(),
        })
        .await
        .unwrap();
    drop(store);
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
         INSERT INTO attendees (event_id, user_id, key_hash, active, created_at_ms, version) \
         SELECT 'big-event', printf('attendee-%06d@example.com', i), randomblob(32), 1, 0, $2 FROM n",
    )
    .bind(i64::from(count))
    .bind(version as i64)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_larger_than_a_message_arrives_in_chunks_under_the_limit() {
    const ATTENDEES: u32 = 100_000;
    let dir = fresh_dir();
    seed_attendees(&dir, ATTENDEES).await;
    let running = start_on(&dir).await;

    // The client keeps tonic's default 4 MiB receive limit: only chunks get through.
    let mut edge = open_sync(&running, EDGE_TOKEN, hello(0, "")).await.unwrap();
    let started = std::time::Instant::now();
    let chunks = edge.next_chunks(Duration::from_secs(60)).await;
    eprintln!(
        "{ATTENDEES} attendees in {} chunks after {:?}",
        chunks.len(),
        started.elapsed()
    );
    let sizes: Vec<usize> = chunks.iter().map(prost::Message::encoded_len).collect();
    assert!(
        sizes.iter().sum::<usize>() > 4 * 1024 * 1024,
        "the snapshot must outgrow one default message: {sizes:?}"
    );
    assert!(
        sizes.iter().all(|&n| n <= MAX_SYNC_MESSAGE_BYTES),
        "{sizes:?}"
    );
    let snapshot = reassemble(chunks);
    assert!(snapshot.full && snapshot.reset_object_cache);
    assert_eq!(snapshot.events.len(), 1);
    let mut users: Vec<&str> = snapshot
        .attendees
        .iter()
        .map(|a| a.user_id.as_str())
        .collect();
    users.sort_unstable();
    users.dedup();
    assert_eq!(users.len(), ATTENDEES as usize, "every attendee, once");
    assert!(snapshot.attendees.iter().all(|a| a.key_hash.len() == 32));

    // One ACK for the whole update; the stream goes on with ordinary deltas.
    edge.ack(&snapshot).await;
    running.add_resource("gpt-4o").await;
    let delta = edge.next_update().await;
    assert!(!delta.full && !delta.reset_object_cache);
    assert_eq!(delta.base_version, snapshot.version);
    assert_eq!(delta.resources.len(), 1);
    let edges = running.admin_get("/edges").await;
    assert_eq!(
        edges["edges"][0]["version_acked"].as_u64(),
        Some(snapshot.version),
        "{edges}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_edges_last_stream_error_is_shown_and_an_old_session_ending_late_changes_nothing() {
    let running = start().await;
    let mut first = open_sync(&running, EDGE_TOKEN, hello(0, "")).await.unwrap();
    first.next().await;
    let mut failed = hello(0, "");
    failed.last_error = "stream error: h2 protocol error: connection reset".into();
    let mut second = open_sync(&running, EDGE_TOKEN, failed).await.unwrap();
    second.next().await;
    // The old stream ends after the new one began (an edge that reconnected before the control
    // plane noticed the first stream was gone).
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let edges = running.admin_get("/edges").await;
    let edge = &edges["edges"][0];
    assert_eq!(edges["edges"].as_array().unwrap().len(), 1, "{edges}");
    assert_eq!(edge["connected"], true, "{edges}");
    assert_eq!(
        edge["last_error"],
        "stream error: h2 protocol error: connection reset"
    );
    drop(second);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        running.admin_get("/edges").await["edges"][0]["connected"],
        false
    );
}
