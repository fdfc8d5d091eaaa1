//! A list call shows only the caller's objects. The page is made from the caller's own records
//! (the control plane lists them in creation order), and each object is read from the resource
//! it lives on. Nothing another attendee created is read, so no number or size of their objects
//! can slow, break or cut short this caller's list, and `has_more`/`last_id` describe exactly
//! what remains of the caller's own objects.

use std::pin::Pin;
use std::sync::Arc;

use aiproxy_proto::v1 as pb;
use futures_util::StreamExt;
use http::{Method, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use serde_json::{Value, json};

use super::{ObjectKind, available_resource, base_of};
use crate::body::EdgeBody;
use crate::proxy::canonical::is_id;
use crate::proxy::client_auth::Caller;
use crate::proxy::errors::{ProxyError, json_response};
use crate::snapshot::{CatalogSnapshot, UpstreamResource};
use crate::state::EdgeState;

/// Upstream reads in flight for one page.
const CONCURRENT_READS: usize = 8;
/// Record pages read to fill one page when objects are filtered out (`purpose`) or gone upstream;
/// a page cut short by this still says `has_more: true`, with a cursor to go on from.
const MAX_RECORD_PAGES: usize = 3;

struct ListParams {
    limit: u32,
    descending: bool,
    after: Option<String>,
    /// `GET /files?purpose=…`.
    purpose: Option<String>,
    /// Passed on to each upstream read.
    api_version: Option<String>,
}

fn list_params(query: Option<&str>) -> Result<ListParams, ProxyError> {
    let mut params = ListParams {
        limit: 20,
        descending: true,
        after: None,
        purpose: None,
        api_version: None,
    };
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "limit" => {
                params.limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|l| (1..=100).contains(l))
                    .ok_or_else(|| {
                        ProxyError::bad_request("limit: a whole number from 1 to 100")
                    })?;
            }
            "order" => {
                params.descending = match value {
                    "desc" => true,
                    "asc" => false,
                    _ => return Err(ProxyError::bad_request("order: asc or desc")),
                }
            }
            "after" if !value.is_empty() => {
                if !is_id(value) {
                    return Err(ProxyError::bad_request("after: not an object id"));
                }
                params.after = Some(value.to_string());
            }
            "before" if !value.is_empty() => {
                return Err(ProxyError::bad_request(
                    "before: not supported through the proxy; page forward with after=<last_id>",
                ));
            }
            "purpose" => params.purpose = Some(value.to_string()),
            "api-version" => params.api_version = Some(value.to_string()),
            _ => {}
        }
    }
    Ok(params)
}

pub async fn list(
    state: &Arc<EdgeState>,
    snapshot: &CatalogSnapshot,
    caller: &Caller,
    kind: ObjectKind,
    parts: &http::request::Parts,
) -> Result<Response<EdgeBody>, ProxyError> {
    let params = list_params(parts.uri.query())?;
    let mut kept: Vec<Value> = Vec::new();
    let mut cursor = params.after.clone();
    let mut has_more = false;
    for _ in 0..MAX_RECORD_PAGES {
        let query = pb::OwnedObjectsQuery {
            event_id: caller.event.id.clone(),
            user_id: caller.user_id.clone(),
            kind: kind.as_str().to_string(),
            after_id: cursor.clone().unwrap_or_default(),
            descending: params.descending,
            limit: params.limit - kept.len() as u32,
        };
        let (records, more) = state.control.list_owned(query).await.map_err(|e| {
            tracing::warn!(error = %e, "listing an attendee's objects failed");
            ProxyError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Cannot list your objects right now; retry shortly.",
            )
        })?;
        has_more = more;
        // Boxed one by one: a lazily mapped iterator of futures borrowing the request trips the
        // compiler's `Send` inference for the connection task.
        let mut reads: Vec<ReadFuture<'_>> = Vec::with_capacity(records.len());
        for record in &records {
            let upstream = available_resource(snapshot, caller, &record.resource_id);
            reads.push(Box::pin(read_object(
                state,
                snapshot,
                upstream,
                kind,
                record,
                &params,
                &parts.headers,
            )));
        }
        let objects: Vec<Result<Read, ProxyError>> = futures_util::stream::iter(reads)
            .buffered(CONCURRENT_READS)
            .collect()
            .await;
        for (record, object) in records.iter().zip(objects) {
            match object? {
                Read::Found(object) if matches_purpose(&object, params.purpose.as_deref()) => {
                    kept.push(object);
                }
                Read::Found(_) | Read::Unavailable => {}
                Read::Gone => forget_gone(state, kind, &record.id),
            }
        }
        cursor = records.last().map(|r| r.id.clone()).or(cursor);
        if kept.len() >= params.limit as usize || !has_more {
            break;
        }
    }
    let id_of = |v: &Value| v.get("id").and_then(Value::as_str).map(str::to_string);
    let first_id = kept.first().and_then(id_of);
    // SDKs go on with `after=<last_id>`: the last object shown, or where the reading stopped.
    let last_id = kept.last().and_then(id_of).or(cursor.filter(|_| has_more));
    Ok(json_response(
        StatusCode::OK,
        &json!({"object": "list", "data": kept, "first_id": first_id, "last_id": last_id, "has_more": has_more}),
    ))
}

fn matches_purpose(object: &Value, purpose: Option<&str>) -> bool {
    purpose.is_none_or(|p| object.get("purpose").and_then(Value::as_str) == Some(p))
}

/// Deleted upstream without the proxy (expired, removed in the portal): the record goes too.
fn forget_gone(state: &Arc<EdgeState>, kind: ObjectKind, id: &str) {
    state.ownership.forget(&(kind, id.to_string()));
    let state = state.clone();
    let id = id.to_string();
    tokio::spawn(async move {
        if let Err(e) = state.control.forget(kind.as_str(), &id).await {
            tracing::warn!(kind = kind.as_str(), %e, "could not forget an object gone upstream");
        }
    });
}

type ReadFuture<'a> = Pin<Box<dyn Future<Output = Result<Read, ProxyError>> + Send + 'a>>;

enum Read {
    Found(Value),
    /// 404 upstream.
    Gone,
    /// On a resource the caller's event no longer exposes.
    Unavailable,
}

async fn read_object(
    state: &EdgeState,
    snapshot: &CatalogSnapshot,
    upstream: Option<Arc<UpstreamResource>>,
    kind: ObjectKind,
    record: &pb::OwnedObject,
    params: &ListParams,
    client_headers: &http::HeaderMap,
) -> Result<Read, ProxyError> {
    let Some(upstream) = upstream else {
        return Ok(Read::Unavailable);
    };
    let mut target = format!("{}{}/{}", base_of(&upstream), kind.collection(), record.id);
    if let Some(version) = &params.api_version {
        target.push_str("?api-version=");
        target.push_str(version);
    }
    let uri: Uri = target
        .parse()
        .map_err(|_| ProxyError::bad_request("api-version: not a valid query value"))?;
    let response = crate::proxy::own_call(
        state,
        snapshot,
        &upstream,
        Method::GET,
        uri,
        Some(client_headers),
    )
    .await?;
    let status = response.status();
    if status == StatusCode::NOT_FOUND {
        return Ok(Read::Gone);
    }
    let bytes = Limited::new(response.into_body(), state.max_json_body_bytes)
        .collect()
        .await
        .map_err(|_| ProxyError::new(StatusCode::BAD_GATEWAY, "A listed object could not be read"))?
        .to_bytes();
    if !status.is_success() {
        return Err(ProxyError::new(
            status,
            format!(
                "Reading a listed {} upstream failed with {status}",
                kind.label()
            ),
        ));
    }
    serde_json::from_slice(&bytes)
        .map(Read::Found)
        .map_err(|_| ProxyError::new(StatusCode::BAD_GATEWAY, "A listed object is not JSON"))
}
