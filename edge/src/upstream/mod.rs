//! Calling upstream: the pool of HTTP/1.1 connections (`http1`; plain or TLS with rustls on
//! aws-lc-rs), choosing a pool member (`pool`), the credentials put on the request (`auth`) and
//! header hygiene (`headers`).

pub mod auth;
pub mod headers;
pub mod health;
pub mod http1;
pub mod pool;

use std::sync::Arc;
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;

use crate::body::EdgeBody;

pub use http1::PooledBody as UpstreamBody;

/// How long an upstream connection may idle before it is not used again, and how many may idle
/// per upstream origin.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
const MAX_IDLE_PER_ORIGIN: usize = 1024;

pub struct UpstreamClient {
    pool: Arc<http1::Http1Pool>,
    pub response_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("request failed: {0}")]
    Request(String),
}

impl UpstreamClient {
    /// Upstream certificates are checked against the webpki roots.
    pub fn new(response_timeout: Duration) -> anyhow::Result<Self> {
        use hyper_rustls::ConfigBuilderExt;
        // As before this pool: the process-wide default provider, for rustls users that ask for it.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let tls = tls_config()?.with_webpki_roots().with_no_client_auth();
        Ok(Self::with_tls(response_timeout, tls))
    }

    /// Upstream certificates are checked against `roots` (tests: an upstream on loopback).
    pub fn with_roots(
        response_timeout: Duration,
        roots: rustls::RootCertStore,
    ) -> anyhow::Result<Self> {
        let tls = tls_config()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self::with_tls(response_timeout, tls))
    }

    fn with_tls(response_timeout: Duration, tls: rustls::ClientConfig) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Self {
            pool: http1::Http1Pool::new(connector, IDLE_TIMEOUT, MAX_IDLE_PER_ORIGIN),
            response_timeout,
        }
    }

    pub async fn send(
        &self,
        request: http::Request<EdgeBody>,
    ) -> Result<http::Response<UpstreamBody>, UpstreamError> {
        match tokio::time::timeout(self.response_timeout, self.pool.send(request)).await {
            Err(_) => Err(UpstreamError::Timeout(self.response_timeout)),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(http1::Http1Error::Connect(e))) => {
                Err(UpstreamError::Connect(error_chain(e.as_ref())))
            }
            Ok(Err(e)) => Err(UpstreamError::Request(error_chain(&e))),
        }
    }
}

fn tls_config() -> anyhow::Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>>
{
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
