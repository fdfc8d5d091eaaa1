//! The gRPC surface, in-process on loopback: EdgeService.Sync (auth, snapshot, deltas, resume,
//! ACK bookkeeping), CatalogService (no secrets, its own credential, Watch), health, reflection.

use std::time::Duration;

use aiproxy_control_plane::config::Config;
use aiproxy_proto::v1 as pb;
use pb::catalog_service_client::CatalogServiceClient;
use pb::edge_message::Message;
use pb::edge_service_client::EdgeServiceClient;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::Channel;

const EDGE_TOKEN: &str = "edge-secret";
const ADMIN_TOKEN: &str = "admin-secret";
const CATALOG_TOKEN: &str = "catalog-secret";

struct Running {
    grpc: String,
    admin: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn free() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Starts a control plane in-process on fresh loopback ports; tries new ports if one was taken in
/// the meantime (another process can grab a port between picking and binding it).
async fn start() -> Running {
    for _ in 0..3 {
        if let Some(running) = try_start().await {
            return running;
        }
    }
    panic!("the control plane could not bind loopback ports three times");
}

async fn try_start() -> Option<Running> {
    let dir = std::env::temp_dir().join(format!("aiproxy-grpc-{}", uuid::Uuid::new_v4().simple()));
    let (grpc, admin) = (free(), free());
    let config = Config {
        database_url: format!("sqlite://{}", dir.join("c.db").display()),
        grpc_addr: grpc,
        admin_addr: admin,
        admin_token: Some(ADMIN_TOKEN.into()),
        encryption_key: None,
        edge_token: Some(EDGE_TOKEN.into()),
        catalog_token: Some(CATALOG_TOKEN.into()),
        allow_insecure_upstreams: true,
        data_dir: Some(dir),
        redis_url: None,
        admin_web_dir: "admin-web/dist".into(),
        credential: aiproxy_control_plane::identity::CredentialMode::None,
        change_poll_ms: 1000,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(aiproxy_control_plane::run(config, async move {
        let _ = stopped.await;
    }));
    let admin_url = format!("http://{admin}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{admin_url}/healthz")).await.is_err() {
        if server.is_finished() {
            panic!(
                "the control plane stopped while starting: {:?}",
                server.await
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the control plane did not start within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Some(Running {
        grpc: format!("http://{grpc}"),
        admin: admin_url,
        _stop: stop,
    })
}

impl Running {
    async fn channel(&self) -> Channel {
        Channel::from_shared(self.grpc.clone())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    async fn admin_post(&self, path: &str, body: Value) -> Value {
        reqwest::Client::new()
            .post(format!("{}/admin/api/v1{path}", self.admin))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn add_resource(&self, name: &str) -> String {
        let r = self
            .admin_post(
                "/resources",
                json!({"friendly_name": name, "deployment_name": name, "model_type": "foundry-model",
                       "endpoint_url": "https://x.openai.azure.com", "key": "sk-secret-upstream"}),
            )
            .await;
        r["id"].as_str().unwrap().to_string()
    }
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

struct EdgeStream {
    tx: mpsc::Sender<pb::EdgeMessage>,
    inbound: tonic::Streaming<pb::SyncUpdate>,
}

async fn open_sync(
    running: &Running,
    token: &str,
    hello: pb::Hello,
) -> Result<EdgeStream, tonic::Status> {
    let (tx, rx) = mpsc::channel(8);
    tx.send(pb::EdgeMessage {
        message: Some(Message::Hello(hello)),
    })
    .await
    .unwrap();
    let mut client = EdgeServiceClient::new(running.channel().await);
    let inbound = client
        .sync(with_token(ReceiverStream::new(rx), token))
        .await?
        .into_inner();
    Ok(EdgeStream { tx, inbound })
}

impl EdgeStream {
    async fn next(&mut self) -> pb::SyncUpdate {
        tokio::time::timeout(Duration::from_secs(5), self.inbound.message())
            .await
            .expect("an update within 5 s")
            .unwrap()
            .unwrap()
    }

    async fn ack(&self, update: &pb::SyncUpdate) {
        let ack = pb::Ack {
            version: update.version,
            nonce: update.nonce.clone(),
        };
        self.tx
            .send(pb::EdgeMessage {
                message: Some(Message::Ack(ack)),
            })
            .await
            .unwrap();
    }
}

fn hello(version: u64, catalog_id: &str) -> pb::Hello {
    pb::Hello {
        edge_id: "edge-test".into(),
        region: "swedencentral".into(),
        version,
        software_version: "test".into(),
        catalog_id: catalog_id.into(),
    }
}

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
    let edges: Value = reqwest::Client::new()
        .get(format!("{}/admin/api/v1/edges", running.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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

#[tokio::test(flavor = "multi_thread")]
async fn health_and_reflection_are_served() {
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
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
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
