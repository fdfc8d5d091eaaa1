//! The edge's configuration: environment variables (each also a `--flag`), parsed once.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

#[derive(Debug, Clone, Parser)]
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
}

impl EdgeConfig {
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
