//! The control plane's configuration: environment variables (each also a `--flag`), parsed once.
//! Secrets are read straight into `Secret`, so a `{config:?}` prints `***` for them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};

use crate::identity::CredentialMode;
use crate::ownership::RecordLifetimes;
use crate::secrets::Secret;

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

    /// Largest number of Postgres connections this replica opens for the catalog (one more is
    /// held for LISTEN/NOTIFY). Size the server for replicas × (this + 1) plus headroom; see
    /// docs/deploying.md. Ignored for SQLite.
    #[arg(long, env = "AIPROXY_DATABASE_MAX_CONNECTIONS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_max_connections: u32,

    /// gRPC listen address (EdgeService, CatalogService, health; reflection when enabled).
    #[arg(long, env = "AIPROXY_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,

    /// gRPC server: open connections at most (each edge holds one; catalog readers one each);
    /// further clients wait to be accepted until one closes.
    #[arg(long, env = "AIPROXY_GRPC_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub grpc_max_connections: u32,

    /// gRPC server: a connection that has made no authenticated call this many seconds after
    /// connecting is closed (an edge calls at once; strangers cannot hold places under the cap).
    #[arg(long, env = "AIPROXY_GRPC_FIRST_CALL_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub grpc_first_call_timeout_secs: u64,

    /// Serve gRPC server reflection (lets anyone who reaches the port list the services); off
    /// unless set, for debugging with grpcurl.
    #[arg(long, env = "AIPROXY_GRPC_REFLECTION", default_value_t = false, action = ArgAction::Set)]
    pub grpc_reflection: bool,

    /// Admin HTTP API listen address.
    #[arg(long, env = "AIPROXY_ADMIN_ADDR", default_value = "127.0.0.1:8081")]
    pub admin_addr: SocketAddr,

    /// Bearer token for the admin API. Embedded mode: generated into the data dir.
    #[arg(long, env = "AIPROXY_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,

    /// 32 bytes, standard base64, for AES-256-GCM of upstream keys. Embedded mode: generated.
    #[arg(long, env = "AIPROXY_ENCRYPTION_KEY", hide_env_values = true)]
    pub encryption_key: Option<Secret>,

    /// Credential edges present on the Sync stream. Embedded mode: generated.
    #[arg(long, env = "AIPROXY_EDGE_TOKEN", hide_env_values = true)]
    pub edge_token: Option<Secret>,

    /// Credential for the read-only CatalogService, its own secret (never the admin token).
    /// Embedded mode: generated into the data dir. Otherwise unset turns CatalogService off.
    #[arg(long, env = "AIPROXY_CATALOG_TOKEN", hide_env_values = true)]
    pub catalog_token: Option<Secret>,

    /// Admit plain http:// upstream endpoints (local mocks and tests only).
    #[arg(long, env = "AIPROXY_ALLOW_INSECURE_UPSTREAMS", default_value_t = false, action = ArgAction::Set)]
    pub allow_insecure_upstreams: bool,

    /// Redis for the shared managed-identity token cache and mint locks (`redis://` or `rediss://`);
    /// unset: an in-memory cache (one replica).
    /// Redis being down at start is not fatal: the in-memory cache serves until Redis answers.
    #[arg(long, env = "AIPROXY_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<Secret>,

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

    /// Admin HTTP server: ms a client has to send a request's headers (also how long an idle
    /// HTTP/1.1 connection waits for its next request); then the connection is closed.
    #[arg(long, env = "AIPROXY_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_ms: u64,

    /// Admin HTTP server: seconds a connection may stay open with no request in flight and no
    /// byte moving either way.
    #[arg(long, env = "AIPROXY_IDLE_TIMEOUT_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_secs: u64,

    /// Admin HTTP server: seconds a client has to send a whole request body (the admin API's
    /// bodies are small JSON documents).
    #[arg(long, env = "AIPROXY_BODY_READ_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_read_timeout_secs: u64,

    /// Admin HTTP server: largest request body, in bytes; larger ones get 413.
    #[arg(long, env = "AIPROXY_ADMIN_MAX_BODY_BYTES", default_value_t = 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub admin_max_body_bytes: u64,

    /// Admin HTTP server: seconds between HTTP/2 keepalive pings (a peer that does not answer
    /// within as long is dropped).
    #[arg(long, env = "AIPROXY_HTTP2_KEEPALIVE_SECS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub http2_keepalive_secs: u64,

    /// Admin HTTP server: concurrent streams one HTTP/2 connection may open.
    #[arg(long, env = "AIPROXY_HTTP2_MAX_STREAMS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub http2_max_streams: u32,

    /// Admin HTTP server: open connections at most; further clients wait to be accepted until one closes.
    #[arg(long, env = "AIPROXY_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Admin HTTP server: largest request head (request line and headers), in bytes; larger gets
    /// 431. HTTP/1.1 counts at least 8192.
    #[arg(long, env = "AIPROXY_MAX_HEADER_BYTES", default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_header_bytes: u32,

    /// Admin HTTP server: most request headers (HTTP/1.1); more gets 431.
    #[arg(long, env = "AIPROXY_MAX_HEADERS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_headers: u32,
}

/// The admin HTTP server's limits (see `admin::server`), from `Config::http_limits`.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_read_timeout: Duration,
    pub max_body_bytes: u64,
    pub http2_keepalive: Duration,
    pub http2_max_streams: u32,
    pub max_connections: u32,
    pub max_header_bytes: u32,
    pub max_headers: u32,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(30),
            max_body_bytes: 1024 * 1024,
            http2_keepalive: Duration::from_secs(20),
            http2_max_streams: 100,
            max_connections: 10_000,
            max_header_bytes: 65_536,
            max_headers: 100,
        }
    }
}

impl Config {
    pub fn http_limits(&self) -> HttpLimits {
        HttpLimits {
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            body_read_timeout: Duration::from_secs(self.body_read_timeout_secs),
            max_body_bytes: self.admin_max_body_bytes,
            http2_keepalive: Duration::from_secs(self.http2_keepalive_secs),
            http2_max_streams: self.http2_max_streams,
            max_connections: self.max_connections,
            max_header_bytes: self.max_header_bytes,
            max_headers: self.max_headers,
        }
    }

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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn limits_have_safe_defaults_and_secrets_never_print() {
        let config = Config::parse_from([
            "aiproxy-control-plane",
            "--admin-token",
            "adm-secret-value",
            "--catalog-token",
            "cat-secret-value",
        ]);
        let printed = format!("{config:?}");
        assert!(!printed.contains("secret-value"), "{printed}");
        let limits = config.http_limits();
        assert_eq!(limits.header_read_timeout, Duration::from_secs(10));
        assert_eq!(limits.idle_timeout, Duration::from_secs(60));
        assert_eq!(limits.body_read_timeout, Duration::from_secs(30));
        assert_eq!(limits.max_body_bytes, 1024 * 1024);
        assert_eq!(
            (limits.http2_keepalive, limits.http2_max_streams),
            (Duration::from_secs(20), 100)
        );
        assert_eq!(
            (
                limits.max_connections,
                limits.max_header_bytes,
                limits.max_headers
            ),
            (10_000, 65_536, 100)
        );
        assert!(!config.grpc_reflection, "reflection is off by default");
    }

    #[test]
    fn zero_limits_are_refused() {
        let parsed = Config::try_parse_from(["aiproxy-control-plane", "--max-connections", "0"]);
        assert!(parsed.is_err());
    }
}
