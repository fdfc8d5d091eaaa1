//! `EdgeService.Sync`: one session per edge stream. The edge says Hello with the catalog it holds;
//! the session answers at once (full snapshot, or the delta since that version), then pushes every
//! later change and records the edge's ACK/NACK. A NACK makes the next update a full snapshot.

use std::sync::Arc;
use std::time::Duration;

use aiproxy_proto::v1 as pb;
use pb::edge_message::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::convert;
use super::edges::EdgeRegistry;
use crate::catalog::model::CatalogChanges;
use crate::catalog::model::FoundryObject;
use crate::catalog::service::{Catalog, CatalogError};
use crate::tokens::TokenBroker;

pub struct EdgeSyncService {
    catalog: Arc<Catalog>,
    edges: EdgeRegistry,
    tokens: Arc<TokenBroker>,
}

impl EdgeSyncService {
    pub fn new(catalog: Arc<Catalog>, edges: EdgeRegistry, tokens: Arc<TokenBroker>) -> Self {
        Self {
            catalog,
            edges,
            tokens,
        }
    }
}

#[tonic::async_trait]
impl pb::edge_service_server::EdgeService for EdgeSyncService {
    type SyncStream = ReceiverStream<Result<pb::SyncUpdate, Status>>;

    async fn record_object(
        &self,
        request: Request<pb::OwnedObject>,
    ) -> Result<Response<pb::ObjectAck>, Status> {
        let o = request.into_inner();
        let object = FoundryObject {
            kind: o.kind,
            id: o.id,
            event_id: o.event_id,
            user_id: o.user_id,
            resource_id: o.resource_id,
        };
        let version = self
            .catalog
            .record_object(&object)
            .await
            .map_err(object_status)?;
        Ok(Response::new(pb::ObjectAck { version }))
    }

    async fn forget_object(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::ObjectAck>, Status> {
        let r = request.into_inner();
        let version = self
            .catalog
            .forget_object(&r.kind, &r.id)
            .await
            .map_err(object_status)?;
        Ok(Response::new(pb::ObjectAck { version }))
    }

    async fn lease_requests(
        &self,
        request: Request<pb::LeaseRequest>,
    ) -> Result<Response<pb::Lease>, Status> {
        let r = request.into_inner();
        let event = self
            .catalog
            .get_event(&r.event_id)
            .await
            .map_err(object_status)?;
        if event.daily_request_cap == 0 {
            return Ok(Response::new(pb::Lease { granted: r.wanted }));
        }
        let granted = self
            .catalog
            .store()
            .lease_requests(
                &r.event_id,
                &r.user_id,
                &r.day,
                r.wanted.max(1),
                event.daily_request_cap,
            )
            .await
            .map_err(|e| object_status(e.into()))?;
        Ok(Response::new(pb::Lease { granted }))
    }

    async fn lookup_object(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::OwnedObject>, Status> {
        let r = request.into_inner();
        match self.catalog.store().get_object(&r.kind, &r.id).await {
            Ok(Some(o)) => Ok(Response::new(convert::owned_object(&o))),
            Ok(None) => Err(Status::not_found(format!(
                "{} '{}' was not created through the proxy",
                r.kind, r.id
            ))),
            Err(e) => Err(object_status(e.into())),
        }
    }

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
            edges: self.edges.clone(),
            tokens: self.tokens.clone(),
            edge_id: hello.edge_id.clone(),
            outbound: tx,
        };
        tokio::spawn(session.run(hello, inbound));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

fn object_status(e: CatalogError) -> Status {
    match e {
        CatalogError::NotFound { .. } => Status::not_found(e.to_string()),
        CatalogError::Conflict(m) => Status::already_exists(m),
        CatalogError::Invalid { .. } => Status::invalid_argument(e.to_string()),
        CatalogError::Store(e) => Status::unavailable(format!("catalog unavailable: {e}")),
    }
}

struct SyncSession {
    catalog: Arc<Catalog>,
    edges: EdgeRegistry,
    tokens: Arc<TokenBroker>,
    edge_id: String,
    outbound: mpsc::Sender<Result<pb::SyncUpdate, Status>>,
}

impl SyncSession {
    async fn run(self, hello: pb::Hello, mut inbound: Streaming<pb::EdgeMessage>) {
        let edge_id = self.edge_id.clone();
        tracing::info!(edge = %edge_id, region = %hello.region, held = hello.version, "edge connected");
        self.edges.connected(
            &edge_id,
            &hello.region,
            &hello.software_version,
            hello.version,
        );
        let mut changes_rx = self.catalog.change_feed().subscribe();
        let mut tokens_rx = self.tokens.subscribe();
        tokens_rx.borrow_and_update();
        let store = self.catalog.store().clone();

        let catalog_id = match store.catalog_id().await {
            Ok(id) => id,
            Err(e) => {
                let _ = self
                    .outbound
                    .send(Err(Status::unavailable(format!(
                        "catalog unavailable: {e}"
                    ))))
                    .await;
                self.edges.disconnected(&edge_id);
                return;
            }
        };
        // Nothing held, or a version of another catalog, means the edge needs everything.
        let mut held = (!hello.catalog_id.is_empty() && hello.catalog_id == catalog_id)
            .then_some(hello.version);
        let mut first = true;
        let mut tokens_changed = false;
        loop {
            match store.changes_since(held).await {
                Ok(changes) => {
                    if first || tokens_changed || changes.full || !changes.is_empty() {
                        let update = self.build_update(held.unwrap_or(0), changes, &catalog_id);
                        let version = update.version;
                        if self.outbound.send(Ok(update)).await.is_err() {
                            break;
                        }
                        self.edges.sent(&edge_id, version);
                        held = Some(version);
                        first = false;
                        tokens_changed = false;
                    }
                }
                Err(e) => {
                    tracing::warn!(edge = %edge_id, error = %e, "could not read catalog changes; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
            tokio::select! {
                                changed = changes_rx.changed() => if changed.is_err() { break },
                changed = tokens_rx.changed() => match changed {
                    Ok(()) => tokens_changed = true,
                    Err(_) => break,
                },
                message = inbound.message() => match message {
                    Ok(Some(pb::EdgeMessage { message: Some(Message::Ack(ack)) })) => {
                        self.edges.acked(&edge_id, ack.version);
                    }
                    Ok(Some(pb::EdgeMessage { message: Some(Message::Nack(nack)) })) => {
                        tracing::warn!(edge = %edge_id, version = nack.version, error = %nack.error, "edge rejected an update; sending a full snapshot");
                        self.edges.nacked(&edge_id, &nack.error);
                        held = None;
                        // Do not spin if the edge keeps rejecting.
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                },
                _ = self.outbound.closed() => break,
            }
        }
        tracing::info!(edge = %edge_id, "edge disconnected");
        self.edges.disconnected(&edge_id);
    }

    fn build_update(&self, base: u64, changes: CatalogChanges, catalog_id: &str) -> pb::SyncUpdate {
        let cipher = self.catalog.cipher();
        pb::SyncUpdate {
            version: changes.version,
            nonce: uuid::Uuid::new_v4().to_string(),
            full: changes.full,
            base_version: if changes.full { 0 } else { base },
            catalog_id: catalog_id.to_string(),
            resources: changes
                .resources
                .iter()
                .map(|r| convert::edge_resource(r, cipher))
                .collect(),
            events: changes.events.iter().map(convert::event_info).collect(),
            attendees: changes
                .attendees
                .iter()
                .map(convert::edge_attendee)
                .collect(),
            removals: changes.removals.iter().map(convert::removal).collect(),
            objects: changes.objects.iter().map(convert::owned_object).collect(),
            // Every update carries the whole (small) token set, so a token never waits for a catalog change.
            tokens_included: true,
            tokens: self.tokens.edge_tokens(),
            key_hash_secret: if changes.full {
                self.catalog.key_hasher().secret().to_vec()
            } else {
                Vec::new()
            },
        }
    }
}
