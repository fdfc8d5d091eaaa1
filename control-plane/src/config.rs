//! The control plane's configuration: environment variables (each also a `--flag`), parsed once.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgAction, Parser};

use crate::identity::CredentialMode;
use crate::ownership::RecordLifetimes;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "aiproxy-control-plane",
    version,
    about = "AI Proxy control plane"
)]
pub struct Config {
    /// Catalog database: postgres://… (production) or sqlite://… (embedded).
    #[arg(
        long,
        env = "AIPROXY_DATABASE_URL",
        default_value = "sqlite://./data/aiproxy.db"
    )]
    pub database_url: String,

    /// gRPC listen address (EdgeService, CatalogService, health, reflection).
    #[arg(long, env = "AIPROXY_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,

    /// Admin HTTP API listen address.
    #[arg(long, env = "AIPROXY_ADMIN_ADDR", default_value = "127.0.0.1:8081")]
    pub admin_addr: SocketAddr,

    /// Bearer token for the admin API. Embedded mode: generated into the data dir.
    #[arg(long, env = "AIPROXY_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// 32 bytes, standard base64, for AES-256-GCM of upstream keys. Embedded mode: generated.
    #[arg(long, env = "AIPROXY_ENCRYPTION_KEY", hide_env_values = true)]
    pub encryption_key: Option<String>,

    /// Credential edges present on the Sync stream. Embedded mode: generated.
    #[arg(long, env = "AIPROXY_EDGE_TOKEN", hide_env_values = true)]
    pub edge_token: Option<String>,

    /// Credential for the read-only CatalogService; defaults to the admin token.
    #[arg(long, env = "AIPROXY_CATALOG_TOKEN", hide_env_values = true)]
    pub catalog_token: Option<String>,

    /// Admit plain http:// upstream endpoints (local mocks and tests only).
    #[arg(long, env = "AIPROXY_ALLOW_INSECURE_UPSTREAMS", default_value_t = false, action = ArgAction::Set)]
    pub allow_insecure_upstreams: bool,

    /// Redis for the shared managed-identity token cache and mint locks (`redis://` or `rediss://`);
    /// unset: an in-memory cache (one replica).
    #[arg(long, env = "AIPROXY_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Which credential mints managed-identity tokens: the DefaultAzureCredential chain, or one step.
    #[arg(long, env = "AIPROXY_CREDENTIAL", value_enum, default_value = "chain")]
    pub credential: CredentialMode,

    /// Where the embedded mode keeps its generated secrets; defaults to the SQLite file's folder.
    #[arg(long, env = "AIPROXY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// The built admin console (`admin-web/dist`), served at `/`.
    #[arg(long, env = "AIPROXY_ADMIN_WEB_DIR", default_value = "admin-web/dist")]
    pub admin_web_dir: PathBuf,

    /// How often (ms) to re-read the catalog version, to pick up changes made by other replicas.
    #[arg(long, env = "AIPROXY_CHANGE_POLL_MS", default_value_t = 1000)]
    pub change_poll_ms: u64,

    /// Days a model response's ownership record lasts (Azure keeps stored responses 30 days);
    /// 0: until the response is deleted through the proxy or its event is deleted.
    #[arg(long, env = "AIPROXY_RESPONSE_RECORD_TTL_DAYS", default_value_t = 30)]
    pub response_record_ttl_days: u32,

    /// Days the ownership record of any other Foundry object (agent, thread, file, vector store,
    /// conversation) lasts; 0: until the object is deleted through the proxy or its event is deleted.
    #[arg(long, env = "AIPROXY_OBJECT_RECORD_TTL_DAYS", default_value_t = 0)]
    pub object_record_ttl_days: u32,
}

impl Config {
    pub fn record_lifetimes(&self) -> RecordLifetimes {
        RecordLifetimes {
            response_days: self.response_record_ttl_days,
            other_days: self.object_record_ttl_days,
        }
    }

    /// Embedded mode: SQLite catalog; secrets that are not given are generated and kept on disk.
    pub fn is_embedded(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }

    pub fn resolved_data_dir(&self) -> PathBuf {
        if let Some(dir) = &self.data_dir {
            return dir.clone();
        }
        let path = self
            .database_url
            .trim_start_matches("sqlite://")
            .trim_start_matches("sqlite:")
            .split('?')
            .next()
            .unwrap_or("");
        PathBuf::from(path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("./data"))
    }
}
