//! `EdgeService`: the calls an edge makes. `Sync` opens one session per stream (`session.rs`);
//! the ownership calls (RecordObjects, ForgetObject, LookupObjects, ListOwnedObjects) apply the
//! rules of `ownership`; LeaseRequests takes from a request or token cap (`quota`); ReportUsage and
//! GetUsage apply the rules of `usage`. Every error maps to a gRPC status in `status` below;
//! database error text is logged, never sent.

use std::sync::Arc;

use aiproxy_proto::v1 as pb;
use pb::edge_message::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument as _;

use super::chunks::MAX_SYNC_MESSAGE_BYTES;
use super::convert;
use super::edges::EdgeRegistry;
use super::session::SyncSession;
use super::shared_changes::SharedChanges;
use crate::catalog::service::{CATALOG_UNAVAILABLE, Catalog, CatalogError};
use crate::ownership::{ObjectOwnership, OwnedObjectsQuery};
use crate::quota::{self, LeaseAsk, LeaseCounter};
use crate::tokens::TokenBroker;
use crate::usage::UsageLedger;

pub struct EdgeSyncService {
    catalog: Arc<Catalog>,
    ownership: Arc<ObjectOwnership>,
    usage: Arc<UsageLedger>,
    edges: EdgeRegistry,
    tokens: Arc<TokenBroker>,
    changes: Arc<SharedChanges>,
}

impl EdgeSyncService {
    pub fn new(
        catalog: Arc<Catalog>,
        ownership: Arc<ObjectOwnership>,
        usage: Arc<UsageLedger>,
        edges: EdgeRegistry,
        tokens: Arc<TokenBroker>,
    ) -> Self {
        Self {
            changes: Arc::new(SharedChanges::new(catalog.store().clone())),
            catalog,
            ownership,
            usage,
            edges,
            tokens,
        }
    }
}

#[tonic::async_trait]
impl pb::edge_service_server::EdgeService for EdgeSyncService {
    type SyncStream = ReceiverStream<Result<pb::SyncUpdate, Status>>;

    async fn sync(
        &self,
        request: Request<Streaming<pb::EdgeMessage>>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        let mut inbound = request.into_inner();
        let hello = match inbound.message().await? {
            Some(pb::EdgeMessage {
                message: Some(Message::Hello(hello)),
            }) => hello,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message on Sync must be Hello",
                ));
            }
        };
        if hello.edge_id.trim().is_empty() {
            return Err(Status::invalid_argument("Hello.edge_id must not be empty"));
        }
        let (tx, rx) = mpsc::channel(8);
        let session = SyncSession {
            catalog: self.catalog.clone(),
            changes: self.changes.clone(),
            tokens: self.tokens.clone(),
            edge: self.edges.connected(&hello),
            edge_id: hello.edge_id.clone(),
            outbound: tx,
            max_message_bytes: MAX_SYNC_MESSAGE_BYTES,
        };
        // One span per Sync session, from Hello to the stream's end.
        let span = tracing::info_span!(
            target: aiproxy_telemetry::SPAN_TARGET,
            "aiproxy.sync.session",
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = "aiproxy.v1.EdgeService",
            rpc.method = "Sync",
            aiproxy.edge.id = hello.edge_id.as_str(),
            aiproxy.edge.region = hello.region.as_str(),
            aiproxy.catalog.version_held = saturating_i64(hello.version),
        );
        tokio::spawn(session.run(hello, inbound).instrument(span));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn record_objects(
        &self,
        request: Request<pb::OwnedObjects>,
    ) -> Result<Response<pb::ObjectAck>, Status> {
        let objects = request.into_inner().objects;
        let written = self
            .ownership
            .record(objects.into_iter().map(convert::foundry_object).collect())
            .await
            .map_err(status)?;
        // Records take no catalog version.
        Ok(Response::new(pb::ObjectAck {
            version: 0,
            written: u32::try_from(written).unwrap_or(u32::MAX),
        }))
    }

    async fn forget_object(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::ObjectAck>, Status> {
        let r = request.into_inner();
        let seq = self
            .ownership
            .forget(&r.kind, &r.id)
            .await
            .map_err(status)?;
        // The forget sequence number: the edge's stream has seen it once it carries this forget.
        Ok(Response::new(pb::ObjectAck {
            version: seq,
            written: 0,
        }))
    }

    async fn lookup_objects(
        &self,
        request: Request<pb::ObjectRefs>,
    ) -> Result<Response<pb::OwnedObjects>, Status> {
        let refs: Vec<(String, String)> = request
            .into_inner()
            .refs
            .into_iter()
            .map(|r| (r.kind, r.id))
            .collect();
        let found = self.ownership.lookup(&refs).await.map_err(status)?;
        Ok(Response::new(pb::OwnedObjects {
            objects: found.into_iter().map(convert::owned_object).collect(),
        }))
    }

    async fn list_owned_objects(
        &self,
        request: Request<pb::OwnedObjectsQuery>,
    ) -> Result<Response<pb::OwnedObjectsPage>, Status> {
        let q = request.into_inner();
        let query = OwnedObjectsQuery {
            event_id: q.event_id,
            user_id: q.user_id,
            kind: q.kind,
            after_id: Some(q.after_id).filter(|id| !id.is_empty()),
            descending: q.descending,
            limit: q.limit,
        };
        let (objects, has_more) = self.ownership.list(&query).await.map_err(status)?;
        Ok(Response::new(pb::OwnedObjectsPage {
            objects: objects.into_iter().map(convert::owned_object).collect(),
            has_more,
        }))
    }

    async fn lease_requests(
        &self,
        request: Request<pb::LeaseRequest>,
    ) -> Result<Response<pb::Lease>, Status> {
        let r = request.into_inner();
        let counter = match pb::LeaseCounter::try_from(r.counter) {
            Ok(pb::LeaseCounter::DailyRequests) => LeaseCounter::DailyRequests,
            Ok(pb::LeaseCounter::DailyTokens) => LeaseCounter::DailyTokens,
            Ok(pb::LeaseCounter::EventTokens) => LeaseCounter::EventTokens,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "counter: unknown lease counter {}",
                    r.counter
                )));
            }
        };
        let ask = LeaseAsk {
            counter,
            event_id: r.event_id,
            user_id: r.user_id,
            day: r.day,
            wanted: r.wanted,
            debt: r.debt,
        };
        let (granted, left) = quota::lease(&self.catalog, &ask).await.map_err(status)?;
        Ok(Response::new(pb::Lease { granted, left }))
    }

    async fn report_usage(
        &self,
        request: Request<pb::UsageBatch>,
    ) -> Result<Response<pb::UsageAck>, Status> {
        let batch = request.into_inner();
        let records: Vec<_> = batch
            .records
            .into_iter()
            .map(convert::usage_record)
            .collect();
        let sums: Vec<_> = batch.sums.into_iter().map(convert::usage_sum).collect();
        let applied = self
            .usage
            .apply(&batch.batch_id, &records, &sums)
            .await
            .map_err(status)?;
        if !applied {
            tracing::debug!(batch_id = %batch.batch_id, edge = %batch.edge_id, "usage batch sent again: already applied");
        }
        Ok(Response::new(pb::UsageAck {
            duplicate: !applied,
        }))
    }

    async fn get_usage(
        &self,
        request: Request<pb::UsageQuery>,
    ) -> Result<Response<pb::UsageSummary>, Status> {
        let q = request.into_inner();
        let summary = self
            .usage
            .summary(&q.event_id, &q.user_id, &q.day)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::usage_summary(summary)))
    }
}

fn status(e: CatalogError) -> Status {
    match e {
        CatalogError::NotFound { .. } => Status::not_found(e.to_string()),
        CatalogError::Conflict(m) => Status::already_exists(m),
        CatalogError::Invalid { .. } => Status::invalid_argument(e.to_string()),
        CatalogError::Store(e) => {
            tracing::error!(error = %e, "catalog store failed during an edge call");
            Status::unavailable(CATALOG_UNAVAILABLE)
        }
    }
}

/// As i64: tracing-opentelemetry exports u64 values as strings.
fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::store::StoreError;

    #[test]
    fn database_errors_reach_the_log_not_the_caller() {
        let driver = StoreError::Database(sqlx::Error::Protocol(
            "FATAL: password authentication failed for user \"aiproxy\"".into(),
        ));
        let status = status(CatalogError::from(driver));
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(status.message(), CATALOG_UNAVAILABLE);
    }
}
