//! `CatalogService`: read-only resources and events for other services. Built only from
//! `ResourceInfo`/`EventInfo`, which have no field for a secret.

use std::sync::Arc;

use aiproxy_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::catalog::service::{CATALOG_UNAVAILABLE, Catalog};
use crate::catalog::store::StoreError;
use crate::sync::convert;

pub struct CatalogReadService {
    catalog: Arc<Catalog>,
}

impl CatalogReadService {
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Self { catalog }
    }
}

fn internal(e: StoreError) -> Status {
    tracing::warn!(error = %e, "catalog read failed");
    Status::unavailable(CATALOG_UNAVAILABLE)
}

#[tonic::async_trait]
impl pb::catalog_service_server::CatalogService for CatalogReadService {
    async fn list_resources(
        &self,
        _: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ResourceList>, Status> {
        let store = self.catalog.store();
        let version = store.current_version().await.map_err(internal)?;
        let resources = store.list_resources().await.map_err(internal)?;
        Ok(Response::new(pb::ResourceList {
            version,
            resources: resources.iter().map(convert::resource_info).collect(),
        }))
    }

    async fn get_resource(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::ResourceInfo>, Status> {
        let id = request.into_inner().id;
        match self
            .catalog
            .store()
            .get_resource(&id)
            .await
            .map_err(internal)?
        {
            Some(r) => Ok(Response::new(convert::resource_info(&r))),
            None => Err(Status::not_found(format!("resource '{id}' not found"))),
        }
    }

    async fn list_events(
        &self,
        _: Request<pb::ListRequest>,
    ) -> Result<Response<pb::EventList>, Status> {
        let store = self.catalog.store();
        let version = store.current_version().await.map_err(internal)?;
        let events = store.list_events().await.map_err(internal)?;
        Ok(Response::new(pb::EventList {
            version,
            events: events.iter().map(convert::event_info).collect(),
        }))
    }

    async fn get_event(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::EventInfo>, Status> {
        let id = request.into_inner().id;
        match self
            .catalog
            .store()
            .get_event(&id)
            .await
            .map_err(internal)?
        {
            Some(e) => Ok(Response::new(convert::event_info(&e))),
            None => Err(Status::not_found(format!("event '{id}' not found"))),
        }
    }

    type WatchStream = ReceiverStream<Result<pb::CatalogChange, Status>>;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        // 0 asks for everything.
        let mut since = Some(request.into_inner().since_version).filter(|v| *v > 0);
        let (tx, rx) = mpsc::channel(8);
        let catalog = self.catalog.clone();
        tokio::spawn(async move {
            let mut changes_rx = catalog.change_feed().subscribe();
            let mut first = true;
            loop {
                match catalog.store().changes_since(since).await {
                    Ok(changes) if first || changes.full || !changes.is_empty() => {
                        since = Some(changes.version);
                        first = false;
                        let change = pb::CatalogChange {
                            version: changes.version,
                            full: changes.full,
                            resources: changes
                                .resources
                                .iter()
                                .map(convert::resource_info)
                                .collect(),
                            events: changes.events.iter().map(convert::event_info).collect(),
                            removals: changes
                                .removals
                                .iter()
                                .filter(|r| r.kind != crate::catalog::model::ObjectKind::Attendee)
                                .map(convert::removal)
                                .collect(),
                        };
                        if tx.send(Ok(change)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = tx.send(Err(internal(e))).await;
                        return;
                    }
                }
                tokio::select! {
                    changed = changes_rx.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
