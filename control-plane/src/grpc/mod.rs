//! The gRPC server: `EdgeService` (edge credential), `CatalogService` (catalog-reader credential;
//! refused when none is configured), gRPC health, and reflection only when
//! `AIPROXY_GRPC_REFLECTION=true` (it hands out the whole API surface to anyone who reaches the port).
//! Open connections are capped (`AIPROXY_GRPC_MAX_CONNECTIONS`): anyone who reaches the port can
//! open connections before any credential is checked, and without a cap could use up the
//! process's file descriptors, which the admin listener and the database pool share. A
//! connection that has made no authenticated call within `AIPROXY_GRPC_FIRST_CALL_TIMEOUT_SECS`
//! is closed, so strangers cannot hold places under the cap for long; an edge makes its Sync call
//! at once and keeps its connection for as long as it answers HTTP/2 pings.

pub mod auth;
pub mod catalog_service;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use aiproxy_proto::v1 as pb;
use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::catalog::service::Catalog;
use crate::ownership::ObjectOwnership;
use crate::secrets::Secret;
use crate::sync::edges::EdgeRegistry;
use crate::sync::server::EdgeSyncService;
use crate::tokens::TokenBroker;
use crate::usage::UsageLedger;
use auth::BearerToken;
use catalog_service::CatalogReadService;

/// Largest EdgeService message either way. Sync updates are cut into 1 MiB chunks
/// (`sync::chunks`), ownership calls carry at most 1000 objects and usage batches at most 5000
/// records; this is the safety margin.
pub const MAX_EDGE_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Streams one gRPC connection may have open at once (tonic's default is no limit). An edge's
/// Sync stream and its control calls stay far below it (a client queues calls past it); without
/// it, a stranger could open streams by the hundred thousand before any credential check answered.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 1000;

/// The gRPC listener's connection limits.
#[derive(Debug, Clone, Copy)]
pub struct GrpcLimits {
    /// Open connections at most; more wait in the listen backlog.
    pub max_connections: usize,
    /// A connection that has made no authenticated call this long after connecting is closed.
    pub first_call_timeout: Duration,
}

pub struct GrpcCredentials {
    pub edge_token: Secret,
    /// `None`: CatalogService is off.
    pub catalog_token: Option<Secret>,
}

const CATALOG_SERVICE_OFF: &str = "CatalogService is off on this control plane: set AIPROXY_CATALOG_TOKEN (its own secret) to turn it on";

/// What the gRPC services serve.
pub struct GrpcState {
    pub catalog: Arc<Catalog>,
    pub ownership: Arc<ObjectOwnership>,
    pub usage: Arc<UsageLedger>,
    pub edges: EdgeRegistry,
    pub tokens: Arc<TokenBroker>,
}

pub async fn serve(
    listener: TcpListener,
    state: GrpcState,
    credentials: GrpcCredentials,
    reflection: bool,
    limits: GrpcLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<pb::edge_service_server::EdgeServiceServer<EdgeSyncService>>()
        .await;
    let catalog_guard = match credentials.catalog_token {
        Some(token) => {
            health_reporter
                .set_serving::<pb::catalog_service_server::CatalogServiceServer<CatalogReadService>>()
                .await;
            BearerToken::new(token, "catalog token (AIPROXY_CATALOG_TOKEN)")
        }
        None => {
            health_reporter
                .set_not_serving::<pb::catalog_service_server::CatalogServiceServer<CatalogReadService>>()
                .await;
            BearerToken::service_off(CATALOG_SERVICE_OFF)
        }
    };
    let reflection = if reflection {
        tracing::warn!("AIPROXY_GRPC_REFLECTION=true: gRPC reflection is served");
        Some(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .build_v1()?,
        )
    } else {
        None
    };

    let GrpcState {
        catalog,
        ownership,
        usage,
        edges,
        tokens,
    } = state;
    let edge_service = InterceptedService::new(
        pb::edge_service_server::EdgeServiceServer::new(EdgeSyncService::new(
            catalog.clone(),
            ownership,
            usage,
            edges,
            tokens,
        ))
        .max_decoding_message_size(MAX_EDGE_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_EDGE_MESSAGE_BYTES),
        BearerToken::new(credentials.edge_token, "edge token (AIPROXY_EDGE_TOKEN)"),
    );
    let catalog_service = pb::catalog_service_server::CatalogServiceServer::with_interceptor(
        CatalogReadService::new(catalog),
        catalog_guard,
    );

    let local: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(addr = ?local, reflection = reflection.is_some(), ?limits, "gRPC listening (EdgeService, CatalogService, health)");
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .add_service(health_service)
        .add_optional_service(reflection)
        .add_service(edge_service)
        .add_service(catalog_service)
        .serve_with_incoming_shutdown(capped(listener, limits), shutdown)
        .await?;
    Ok(())
}

/// The listener's connections, at most `limits.max_connections` open at once: past it, new
/// clients wait in the listen backlog until one closes (as on the admin listener). A failed
/// accept (out of file descriptors, say) is retried after a pause rather than in a busy loop.
fn capped(
    listener: TcpListener,
    limits: GrpcLimits,
) -> impl Stream<Item = std::io::Result<CappedConnection>> + Send + 'static {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let first_call_timeout = limits.first_call_timeout;
    Box::pin(futures_util::stream::unfold(
        (listener, permits),
        move |(listener, permits)| async move {
            let permit = permits.clone().acquire_owned().await.ok()?;
            loop {
                match listener.accept().await {
                    Ok((io, _)) => {
                        let _ = io.set_nodelay(true);
                        let connection = CappedConnection::new(io, permit, first_call_timeout);
                        return Some((Ok(connection), (listener, permits)));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "gRPC accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        },
    ))
}

/// What every call on a gRPC connection finds in its request's extensions: the peer's address,
/// and the mark the bearer-token check sets once a call on the connection passed it. (tonic's
/// `Request::remote_addr` looks for a bare `TcpConnectInfo` and finds none: read `tcp`.)
#[derive(Debug, Clone)]
pub struct GrpcConnectInfo {
    pub tcp: TcpConnectInfo,
    authenticated: Arc<AtomicBool>,
}

impl GrpcConnectInfo {
    /// A call on this connection presented a valid credential.
    pub fn mark_authenticated(&self) {
        self.authenticated.store(true, Ordering::Release);
    }
}

/// An accepted connection holding its place under the cap until it is dropped; its reads fail
/// once the first-call timeout has passed with no authenticated call on it.
struct CappedConnection {
    io: TcpStream,
    _permit: OwnedSemaphorePermit,
    authenticated: Arc<AtomicBool>,
    /// Until the first authenticated call: when the connection is given up.
    first_call_by: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl CappedConnection {
    fn new(io: TcpStream, permit: OwnedSemaphorePermit, first_call_timeout: Duration) -> Self {
        Self {
            io,
            _permit: permit,
            authenticated: Arc::new(AtomicBool::new(false)),
            first_call_by: Some(Box::pin(tokio::time::sleep(first_call_timeout))),
        }
    }
}

impl Connected for CappedConnection {
    type ConnectInfo = GrpcConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        GrpcConnectInfo {
            tcp: self.io.connect_info(),
            authenticated: self.authenticated.clone(),
        }
    }
}

impl AsyncRead for CappedConnection {
    /// hyper always has a read waiting on an HTTP/2 connection, so the deadline's timer wakes it
    /// and the read fails then (hyper closes the connection).
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Some(deadline) = this.first_call_by.as_mut() {
            if this.authenticated.load(Ordering::Acquire) {
                this.first_call_by = None;
            } else if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the gRPC client made no authenticated call in time",
                )));
            }
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for CappedConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Accepts one connection from a client, under a first-call timeout of `limit`.
    async fn accepted(listener: &TcpListener, limit: Duration) -> (TcpStream, CappedConnection) {
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (io, _) = listener.accept().await.unwrap();
        let permit = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        (client, CappedConnection::new(io, permit, limit))
    }

    /// Reads from `connection` until it fails or `within` passes; the failure's kind.
    async fn fails_within(
        connection: &mut CappedConnection,
        within: Duration,
    ) -> Option<std::io::ErrorKind> {
        let mut buf = [0u8; 16];
        let read = async {
            loop {
                if let Err(e) = connection.read(&mut buf).await {
                    return e.kind();
                }
            }
        };
        tokio::time::timeout(within, read).await.ok()
    }

    /// A connection with no authenticated call when the first-call timeout passes fails its
    /// reads (hyper then closes it), whether it was silent or talking; one whose call passed the
    /// credential check is not timed any more.
    #[tokio::test(start_paused = true)]
    async fn a_connection_without_an_authenticated_call_in_time_is_given_up() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let limit = Duration::from_secs(10);

        let (_client, mut silent) = accepted(&listener, limit).await;
        let started = tokio::time::Instant::now();
        let failed = fails_within(&mut silent, limit * 3).await;
        assert_eq!(failed, Some(std::io::ErrorKind::TimedOut));
        assert_eq!(started.elapsed(), limit);

        let (mut client, mut talking) = accepted(&listener, limit).await;
        client.write_all(b"PRI * HTTP/2.0").await.unwrap();
        let started = tokio::time::Instant::now();
        let failed = fails_within(&mut talking, limit * 3).await;
        assert_eq!(failed, Some(std::io::ErrorKind::TimedOut));
        assert_eq!(started.elapsed(), limit);

        let (mut client, mut served) = accepted(&listener, limit).await;
        client.write_all(b"PRI * HTTP/2.0").await.unwrap();
        served.connect_info().mark_authenticated();
        let failed = fails_within(&mut served, limit * 3).await;
        assert_eq!(
            failed, None,
            "a connection with an authenticated call was given up"
        );
    }

    /// Two connections fill a cap of two: a third client waits in the backlog until one of them
    /// closes, then is served.
    #[tokio::test]
    async fn past_the_cap_a_connection_waits_until_one_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = GrpcLimits {
            max_connections: 2,
            first_call_timeout: Duration::from_secs(60),
        };
        let mut incoming = capped(listener, limits);
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(TcpStream::connect(addr).await.unwrap());
        }
        let first = incoming.next().await.unwrap().unwrap();
        let _second = incoming.next().await.unwrap().unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(300), incoming.next()).await;
        assert!(
            waited.is_err(),
            "a third connection was accepted past the cap of two"
        );
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(5), incoming.next())
            .await
            .expect("the third connection was accepted once one closed")
            .unwrap()
            .unwrap();
        assert_eq!(
            third.connect_info().tcp.remote_addr(),
            clients[2].local_addr().ok()
        );
    }
}
