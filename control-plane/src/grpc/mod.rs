//! The gRPC server: `EdgeService` (edge credential), `CatalogService` (catalog-reader credential;
//! refused when none is configured), gRPC health, and reflection only when
//! `AIPROXY_GRPC_REFLECTION=true` (it hands out the whole API surface to anyone who reaches the port).

pub mod auth;
pub mod catalog_service;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aiproxy_proto::v1 as pb;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::interceptor::InterceptedService;

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
    tracing::info!(addr = ?local, reflection = reflection.is_some(), "gRPC listening (EdgeService, CatalogService, health)");
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(health_service)
        .add_optional_service(reflection)
        .add_service(edge_service)
        .add_service(catalog_service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}
