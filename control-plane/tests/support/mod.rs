//! The harness the gRPC test files share: an in-process control plane on loopback (alone, or
//! several sharing one database like replicas), an edge's Sync stream, and admin calls. The admin
//! test files share `admin` (the admin API in-process, no ports).
#![allow(dead_code)]

pub mod admin;

use std::path::{Path, PathBuf};
use std::time::Duration;

use aiproxy_control_plane::config::Config;
use aiproxy_proto::v1 as pb;
use clap::Parser;
use pb::edge_message::Message;
use pb::edge_service_client::EdgeServiceClient;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

pub const EDGE_TOKEN: &str = "edge-secret";
pub const ADMIN_TOKEN: &str = "admin-secret";
pub const CATALOG_TOKEN: &str = "catalog-secret";

pub struct Running {
    pub grpc: String,
    pub admin: String,
    pub admin_addr: std::net::SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
    /// The folder made for this control plane alone, removed when it is dropped.
    owned_dir: Option<PathBuf>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(dir) = self.owned_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn free() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A folder for one test's SQLite database and generated secrets.
pub fn fresh_dir() -> PathBuf {
    std::env::temp_dir().join(format!("aiproxy-grpc-{}", uuid::Uuid::new_v4().simple()))
}

pub fn database_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("c.db").display())
}

/// Starts a control plane in-process on a fresh database (removed when it is dropped).
pub async fn start() -> Running {
    start_fresh_with(|_| {}).await
}

/// Like `start`, with the test's own settings applied to the configuration.
pub async fn start_fresh_with(tweak: impl Fn(&mut Config)) -> Running {
    let dir = fresh_dir();
    let mut running = start_with(&dir, tweak).await;
    running.owned_dir = Some(dir);
    running
}

/// Starts a control plane in-process on the database in `dir` (several may share one, like
/// replicas sharing Postgres) on fresh loopback ports; tries new ports if one was taken in the
/// meantime (another process can grab a port between picking and binding it).
pub async fn start_on(dir: &Path) -> Running {
    start_with(dir, |_| {}).await
}

/// Like `start_on`, with the test's own settings applied to the configuration.
pub async fn start_with(dir: &Path, tweak: impl Fn(&mut Config)) -> Running {
    for _ in 0..3 {
        if let Some(running) = try_start(dir, &tweak).await {
            return running;
        }
    }
    panic!("the control plane could not bind loopback ports three times");
}

/// The configuration of an embedded control plane on `dir` at the given addresses: defaults for
/// everything else.
pub fn test_config(dir: &Path, grpc: std::net::SocketAddr, admin: std::net::SocketAddr) -> Config {
    let mut config = Config::try_parse_from(["aiproxy-control-plane"]).expect("defaults parse");
    config.database_url = database_url(dir);
    config.grpc_addr = grpc;
    config.admin_addr = admin;
    config.admin_token = Some(ADMIN_TOKEN.into());
    config.encryption_key = None;
    config.edge_token = Some(EDGE_TOKEN.into());
    config.catalog_token = Some(CATALOG_TOKEN.into());
    config.allow_insecure_upstreams = true;
    config.data_dir = Some(dir.to_path_buf());
    config.redis_url = None;
    config.admin_web_dir = "admin-web/dist".into();
    config.credential = aiproxy_control_plane::identity::CredentialMode::None;
    config.change_poll_ms = 200;
    config
}

async fn try_start(dir: &Path, tweak: &impl Fn(&mut Config)) -> Option<Running> {
    let (grpc, admin) = (free(), free());
    let mut config = test_config(dir, grpc, admin);
    tweak(&mut config);
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
        admin_addr: admin,
        _stop: stop,
        owned_dir: None,
    })
}

impl Running {
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.grpc.clone())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> Value {
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

    pub async fn add_resource(&self, name: &str) -> String {
        let r = self
            .admin_post(
                "/resources",
                json!({"friendly_name": name, "deployment_name": name, "model_type": "foundry-model",
                       "endpoint_url": "https://x.openai.azure.com", "key": "sk-secret-upstream"}),
            )
            .await;
        r["id"].as_str().unwrap().to_string()
    }

    pub async fn add_event(&self, name: &str) -> String {
        let e = self
            .admin_post(
                "/events",
                json!({"name": name, "starts_at": "2026-03-28T09:00:00", "ends_at": "2036-03-29T17:00:00",
                       "time_zone": "Europe/Paris", "resource_ids": []}),
            )
            .await;
        e["id"].as_str().unwrap().to_string()
    }

    pub async fn edge_client(&self) -> EdgeServiceClient<Channel> {
        EdgeServiceClient::new(self.channel().await)
    }

    pub async fn admin_get(&self, path: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{}/admin/api/v1{path}", self.admin))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

pub fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

pub struct EdgeStream {
    pub tx: mpsc::Sender<pb::EdgeMessage>,
    pub inbound: tonic::Streaming<pb::SyncUpdate>,
}

pub async fn open_sync(
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
    pub async fn next(&mut self) -> pb::SyncUpdate {
        self.next_within(Duration::from_secs(5)).await
    }

    pub async fn next_within(&mut self, wait: Duration) -> pb::SyncUpdate {
        tokio::time::timeout(wait, self.inbound.message())
            .await
            .unwrap_or_else(|_| panic!("a message within {wait:?}"))
            .unwrap()
            .unwrap()
    }

    /// Every chunk of the next update, as received.
    pub async fn next_chunks(&mut self, wait: Duration) -> Vec<pb::SyncUpdate> {
        let mut chunks = vec![self.next_within(wait).await];
        while chunks.last().is_some_and(|c| c.more) {
            chunks.push(self.next_within(wait).await);
        }
        chunks
    }

    /// The next update, its chunks put together the way an edge does.
    pub async fn next_update(&mut self) -> pb::SyncUpdate {
        reassemble(self.next_chunks(Duration::from_secs(5)).await)
    }

    pub async fn ack(&self, update: &pb::SyncUpdate) {
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

pub fn hello(version: u64, catalog_id: &str) -> pb::Hello {
    pb::Hello {
        edge_id: "edge-test".into(),
        region: "swedencentral".into(),
        version,
        software_version: "test".into(),
        catalog_id: catalog_id.into(),
        last_error: String::new(),
    }
}

/// Header from the first chunk, every repeated field concatenated in order.
pub fn reassemble(chunks: Vec<pb::SyncUpdate>) -> pb::SyncUpdate {
    let mut chunks = chunks.into_iter();
    let mut whole = chunks.next().expect("at least one chunk");
    for chunk in chunks {
        assert_eq!((chunk.version, &chunk.nonce), (whole.version, &whole.nonce));
        whole.resources.extend(chunk.resources);
        whole.events.extend(chunk.events);
        whole.attendees.extend(chunk.attendees);
        whole.removals.extend(chunk.removals);
        whole.forgotten_objects.extend(chunk.forgotten_objects);
    }
    whole.more = false;
    whole
}
