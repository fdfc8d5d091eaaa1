//! The edge's configuration: environment variables (each also a `--flag`), parsed once.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

#[derive(Clone, Parser)]
#[command(
    name = "aiproxy-edge",
    version,
    about = "AI Proxy edge (HTTP data plane)"
)]
pub struct EdgeConfig {
    /// The control plane's gRPC address (https:// in production).
    #[arg(
        long,
        env = "AIPROXY_CONTROL_PLANE_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub control_plane_url: String,

    /// Where clients connect (HTTP/1.1 and HTTP/2).
    #[arg(long, env = "AIPROXY_LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen_addr: SocketAddr,

    /// This edge's Azure region; pool members in it are preferred.
    #[arg(long, env = "AIPROXY_REGION", default_value = "")]
    pub region: String,

    /// Credential for the control plane's Sync stream. When unset, read from
    /// `./data/edge.token`, where the embedded control plane keeps the one it generated.
    #[arg(long, env = "AIPROXY_EDGE_TOKEN", hide_env_values = true)]
    pub edge_token: Option<String>,

    /// Where to keep the last-known-good snapshot (sealed with a key derived from the edge token),
    /// so a restart while the control plane is unreachable still serves. Unset: memory only.
    #[arg(long, env = "AIPROXY_EDGE_STATE_DIR")]
    pub state_dir: Option<std::path::PathBuf>,

    /// Name this edge reports to the control plane (default: $HOSTNAME, else random).
    #[arg(long, env = "AIPROXY_EDGE_ID")]
    pub edge_id: Option<String>,

    /// Longest wait for an upstream's response headers, in seconds (bodies may stream longer).
    #[arg(long, env = "AIPROXY_UPSTREAM_TIMEOUT_SECS", default_value_t = 300)]
    pub upstream_timeout_secs: u64,

    /// A managed-identity token is not used in its last this-many seconds (clock skew, request time).
    #[arg(long, env = "AIPROXY_TOKEN_EXPIRY_MARGIN_SECS", default_value_t = 60)]
    pub token_expiry_margin_secs: u64,

    /// Largest JSON request body the edge reads to inspect (model, token caps), in bytes.
    #[arg(long, env = "AIPROXY_MAX_JSON_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_json_body_bytes: usize,

    /// Foundry object owners this edge keeps in memory (the records live in the control plane).
    #[arg(
        long,
        env = "AIPROXY_OWNERSHIP_CACHE_ENTRIES",
        default_value_t = 100_000
    )]
    pub ownership_cache_entries: usize,

    /// How long "no such object" is remembered, in milliseconds (an object created through
    /// another edge a moment ago is found once this passes).
    #[arg(
        long,
        env = "AIPROXY_OWNERSHIP_NEGATIVE_TTL_MS",
        default_value_t = 2_000
    )]
    pub ownership_negative_ttl_ms: u64,

    /// Runs and background responses one attendee may have at work, followed by this edge for
    /// their usage, before the attendee's agent and Responses calls that create objects are
    /// refused (429) until some end.
    #[arg(long, env = "AIPROXY_FOLLOW_UPS_PER_ATTENDEE", default_value_t = 100)]
    pub follow_ups_per_attendee: usize,

    /// A client must send a request's headers within this many milliseconds (slow clients).
    #[arg(long, env = "AIPROXY_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,

    /// A connection with no request in flight for this many seconds is closed.
    #[arg(long, env = "AIPROXY_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    pub idle_timeout_secs: u64,

    /// Longest a client may leave the answer unread: when no byte of it can be written for this
    /// many seconds (the client's receive window stays shut, or on HTTP/2 one stream's flow-control
    /// window), the connection is closed.
    #[arg(long, env = "AIPROXY_CLIENT_SEND_TIMEOUT_SECS", default_value_t = 60)]
    pub client_send_timeout_secs: u64,

    /// Longest gap between two pieces of a request body, in seconds.
    #[arg(long, env = "AIPROXY_BODY_READ_TIMEOUT_SECS", default_value_t = 30)]
    pub body_read_timeout_secs: u64,

    /// HTTP/2 ping interval in seconds (a peer that does not answer within it is dropped).
    #[arg(long, env = "AIPROXY_HTTP2_KEEPALIVE_SECS", default_value_t = 20)]
    pub http2_keepalive_secs: u64,

    /// Concurrent streams one HTTP/2 connection may open.
    #[arg(long, env = "AIPROXY_HTTP2_MAX_STREAMS", default_value_t = 100)]
    pub http2_max_streams: u32,

    /// Open client connections at most; more wait in the listen backlog.
    #[arg(long, env = "AIPROXY_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Largest request head (request line and headers), in bytes.
    #[arg(long, env = "AIPROXY_MAX_HEADER_BYTES", default_value_t = 64 * 1024)]
    pub max_header_bytes: usize,

    /// Most headers one request may carry.
    #[arg(long, env = "AIPROXY_MAX_HEADERS", default_value_t = 100)]
    pub max_headers: usize,

    /// Longest silence inside an upstream answer (a stream that stops sending), in seconds.
    #[arg(
        long,
        env = "AIPROXY_UPSTREAM_IDLE_TIMEOUT_SECS",
        default_value_t = 120
    )]
    pub upstream_idle_timeout_secs: u64,

    /// Longest a request waits for the control plane (ownership look-ups, records, leases), in
    /// milliseconds; past it the call is refused (ownership) or let through (leases).
    #[arg(long, env = "AIPROXY_CONTROL_CALL_DEADLINE_MS", default_value_t = 250)]
    pub control_call_deadline_ms: u64,

    /// On SIGTERM, how long readiness answers 503 before the listener closes (so load balancers
    /// stop sending), in milliseconds.
    #[arg(long, env = "AIPROXY_SHUTDOWN_DELAY_MS", default_value_t = 2_000)]
    pub shutdown_delay_ms: u64,

    /// Then, how long open requests and streams may take to finish, in seconds.
    #[arg(long, env = "AIPROXY_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,

    /// Usage records are sent to the control plane at least this often, in milliseconds.
    #[arg(long, env = "AIPROXY_USAGE_FLUSH_MS", default_value_t = 1_000)]
    pub usage_flush_ms: u64,

    /// ... and as soon as this many are waiting (the most one batch holds).
    #[arg(long, env = "AIPROXY_USAGE_BATCH_RECORDS", default_value_t = 500)]
    pub usage_batch_records: usize,

    /// Usage records kept while the control plane is unreachable; past it new ones are dropped
    /// (counted in `/readyz` and logged).
    #[arg(long, env = "AIPROXY_USAGE_BUFFER_RECORDS", default_value_t = 100_000)]
    pub usage_buffer_records: usize,

    /// The most of one answer (JSON) or of one event (streams) kept to read its usage, in bytes;
    /// a larger answer is counted without tokens and flagged `usage_unknown`.
    #[arg(long, env = "AIPROXY_USAGE_SCAN_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub usage_scan_bytes: usize,

    /// On shutdown, how long the edge tries to deliver the usage records it holds, in seconds.
    #[arg(long, env = "AIPROXY_USAGE_SHUTDOWN_FLUSH_SECS", default_value_t = 10)]
    pub usage_shutdown_flush_secs: u64,
}

/// Time and size limits of the client-facing server and of upstream calls.
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub client_send_timeout: Duration,
    pub body_read_timeout: Duration,
    pub http2_keepalive: Duration,
    pub http2_max_streams: u32,
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub upstream_idle_timeout: Duration,
    pub control_call_deadline: Duration,
    pub shutdown_delay: Duration,
    pub shutdown_grace: Duration,
}

impl std::fmt::Debug for EdgeConfig {
    /// Everything but the edge token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeConfig")
            .field("control_plane_url", &self.control_plane_url)
            .field("listen_addr", &self.listen_addr)
            .field("region", &self.region)
            .field("edge_token", &self.edge_token.as_ref().map(|_| "***"))
            .field("state_dir", &self.state_dir)
            .field("limits", &self.limits())
            .finish_non_exhaustive()
    }
}

impl EdgeConfig {
    pub fn limits(&self) -> Limits {
        Limits {
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms.max(1)),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs.max(1)),
            client_send_timeout: Duration::from_secs(self.client_send_timeout_secs.max(1)),
            body_read_timeout: Duration::from_secs(self.body_read_timeout_secs.max(1)),
            http2_keepalive: Duration::from_secs(self.http2_keepalive_secs.max(1)),
            http2_max_streams: self.http2_max_streams.max(1),
            max_connections: self.max_connections.max(1),
            // hyper's HTTP/1 buffer has a floor of 8 KiB.
            max_header_bytes: self.max_header_bytes.max(8192),
            max_headers: self.max_headers.max(1),
            upstream_idle_timeout: Duration::from_secs(self.upstream_idle_timeout_secs.max(1)),
            control_call_deadline: Duration::from_millis(self.control_call_deadline_ms.max(1)),
            shutdown_delay: Duration::from_millis(self.shutdown_delay_ms),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
        }
    }

    pub fn usage_delivery(&self) -> crate::usage::DeliverySettings {
        crate::usage::DeliverySettings {
            flush_interval: Duration::from_millis(self.usage_flush_ms.max(10)),
            batch_records: self.usage_batch_records.clamp(1, 5_000),
            buffer_records: self.usage_buffer_records.max(1),
            scan_bytes: self.usage_scan_bytes.max(1024),
        }
    }

    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_secs(self.upstream_timeout_secs.max(1))
    }

    pub fn resolved_edge_id(&self) -> String {
        self.edge_id
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| format!("edge-{}", &uuid::Uuid::new_v4().to_string()[..8]))
    }

    pub fn resolved_edge_token(&self) -> anyhow::Result<String> {
        if let Some(t) = self.edge_token.as_ref().filter(|t| !t.trim().is_empty()) {
            return Ok(t.trim().to_string());
        }
        match std::fs::read_to_string("data/edge.token") {
            Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
            _ => anyhow::bail!(
                "AIPROXY_EDGE_TOKEN is not set (and there is no ./data/edge.token from an embedded control plane)"
            ),
        }
    }
}
