//! Creating an object: forward the call, then record the new object against the caller before
//! the caller learns its id. A JSON answer is read (bounded), recorded, then sent; a streamed
//! answer (SSE) passes event by event, held back only until the event that names the object
//! (`thread.created`, `response.created`: the expected event type and JSON path, never a text
//! search) is parsed and recorded. If the record cannot be written the caller is told and the
//! object is deleted upstream, so no one holds an object the proxy does not know.

use std::sync::Arc;

use aiproxy_proto::v1 as pb;
use bytes::Bytes;
use chrono::Utc;
use http::{Method, Response, StatusCode, Uri};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{ObjectKind, base_of};
use crate::body::{BoxError, EdgeBody, full, read_to_bytes};
use crate::control_calls::RecordError;
use crate::ownership::Owner;
use crate::proxy::client_auth::Caller;
use crate::proxy::errors::ProxyError;
use crate::snapshot::{CatalogSnapshot, UpstreamResource};
use crate::sse::{SseEvent, SseParser};
use crate::state::EdgeState;

/// What a create call makes.
pub struct Creation {
    pub kind: ObjectKind,
    /// `POST /threads/runs`: the answer is a run; the thread it created is what gets recorded.
    pub thread_and_run: bool,
    /// False for `store: false` responses, which upstream does not keep.
    pub record: bool,
}

/// Longest stretch of a stream held back while waiting for the event that names the object.
const HELD_LIMIT: usize = 1024 * 1024;

#[allow(clippy::too_many_arguments)]
pub async fn create(
    state: &Arc<EdgeState>,
    snapshot: &CatalogSnapshot,
    caller: &Caller,
    upstream: Arc<UpstreamResource>,
    url: &str,
    parts: http::request::Parts,
    body: EdgeBody,
    creation: Creation,
) -> Result<Response<EdgeBody>, ProxyError> {
    let pending = PendingRecord {
        state: state.clone(),
        kind: creation.kind,
        thread_and_run: creation.thread_and_run,
        owner: Owner {
            event_id: caller.event.id.clone(),
            user_id: caller.user_id.clone(),
            resource_id: upstream.id.clone(),
            expires_at_ms: 0,
        },
        upstream: upstream.clone(),
        query: parts.uri.query().map(str::to_string),
        client_headers: parts.headers.clone(),
    };
    let mut parts = parts;
    if creation.record {
        // The edge reads the answer to record the object: it must come uncompressed.
        parts.headers.remove(http::header::ACCEPT_ENCODING);
    }
    let response = super::super::forward(state, snapshot, upstream, url, parts, body, None).await?;
    if !creation.record || !response.status().is_success() {
        return Ok(response);
    }
    let streaming = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let (parts, body) = response.into_parts();
    if streaming {
        return Ok(Response::from_parts(
            parts,
            pending.record_from_stream(body),
        ));
    }
    let bytes = read_to_bytes(body, state.max_json_body_bytes)
        .await
        .map_err(|e| {
            ProxyError::new(
                StatusCode::BAD_GATEWAY,
                format!("The Foundry answer could not be read: {e}"),
            )
        })?;
    let answer: Value = serde_json::from_slice(&bytes).map_err(|_| {
        ProxyError::new(
            StatusCode::BAD_GATEWAY,
            "The upstream answered a create call with something other than JSON",
        )
    })?;
    let id_field = if creation.thread_and_run {
        "thread_id"
    } else {
        "id"
    };
    let Some(id) = answer.get(id_field).and_then(Value::as_str) else {
        return Err(ProxyError::new(
            StatusCode::BAD_GATEWAY,
            format!("The upstream's answer names no {id_field}"),
        ));
    };
    let name = answer.get("name").and_then(Value::as_str);
    pending.record(id, name).await?;
    Ok(Response::from_parts(parts, full(bytes)))
}

/// Everything needed to record (or roll back) the object a call is creating.
struct PendingRecord {
    state: Arc<EdgeState>,
    kind: ObjectKind,
    thread_and_run: bool,
    owner: Owner,
    upstream: Arc<UpstreamResource>,
    query: Option<String>,
    client_headers: http::HeaderMap,
}

impl PendingRecord {
    fn kind_recorded(&self) -> ObjectKind {
        if self.thread_and_run {
            ObjectKind::Thread
        } else {
            self.kind
        }
    }

    /// Records `id` (and a named agent's name beside it); on failure deletes it upstream.
    async fn record(&self, id: &str, name: Option<&str>) -> Result<(), ProxyError> {
        let kind = self.kind_recorded();
        let record = |id: &str, alias_of: &str| pb::OwnedObject {
            kind: kind.as_str().to_string(),
            id: id.to_string(),
            event_id: self.owner.event_id.clone(),
            user_id: self.owner.user_id.clone(),
            resource_id: self.owner.resource_id.clone(),
            alias_of: alias_of.to_string(),
            ..Default::default()
        };
        let mut objects = vec![record(id, "")];
        if kind == ObjectKind::Agent
            && let Some(name) = name.filter(|n| *n != id)
        {
            objects.push(record(name, id));
        }
        match self.state.control.record(objects).await {
            Ok(_) => {
                let now = Utc::now().timestamp_millis();
                self.state
                    .ownership
                    .remember((kind, id.to_string()), self.owner.clone(), now);
                if kind == ObjectKind::Agent
                    && let Some(name) = name
                {
                    self.state.ownership.remember(
                        (kind, name.to_string()),
                        self.owner.clone(),
                        now,
                    );
                }
                Ok(())
            }
            Err(RecordError::Taken(message)) => {
                tracing::warn!(kind = kind.as_str(), %message, "created upstream under an id or name another attendee holds");
                Err(ProxyError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "The {} was created upstream under a name or id that belongs to another attendee; choose another name.",
                        kind.label()
                    ),
                ))
            }
            Err(RecordError::Failed(message)) => {
                tracing::warn!(kind = kind.as_str(), %message, "could not record a new object; deleting it upstream");
                self.roll_back(id).await;
                Err(ProxyError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "The {} could not be recorded for you, so it was not kept; retry shortly.",
                        kind.label()
                    ),
                ))
            }
        }
    }

    /// Best effort: deletes an object the proxy could not record.
    async fn roll_back(&self, id: &str) {
        let kind = self.kind_recorded();
        let target = object_url(&self.upstream, kind, id, self.query.as_deref());
        match call_upstream(
            &self.state,
            &self.upstream,
            Method::DELETE,
            &target,
            &self.client_headers,
        )
        .await
        {
            Some(status) if status.is_success() => {}
            Some(status) => {
                tracing::warn!(%status, "rolling back an unrecorded object failed")
            }
            None => tracing::warn!("rolling back an unrecorded object failed"),
        }
    }

    /// The id of the created object, if `event` is the one that names it.
    fn id_in(&self, event: &SseEvent) -> Option<String> {
        let pointer = match (self.kind, event.event.as_str()) {
            (ObjectKind::Thread, "thread.created") if self.thread_and_run => "/id",
            (ObjectKind::Thread, "thread.run.created") if self.thread_and_run => "/thread_id",
            (ObjectKind::Response, "response.created") => "/response/id",
            (_, _) => return None,
        };
        let data: Value = serde_json::from_str(&event.data).ok()?;
        data.pointer(pointer)?.as_str().map(str::to_string)
    }

    /// Passes the stream through, holding it back only until the object is recorded.
    fn record_from_stream(self, mut body: EdgeBody) -> EdgeBody {
        let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(16);
        tokio::spawn(async move {
            let mut parser = SseParser::new(HELD_LIMIT);
            let mut held: Vec<Frame<Bytes>> = Vec::new();
            let mut recorded = false;
            while let Some(frame) = body.frame().await {
                let frame = match frame {
                    Ok(frame) => frame,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                if recorded {
                    if tx.send(Ok(frame)).await.is_err() {
                        return;
                    }
                    continue;
                }
                let found = match frame.data_ref().map(|data| parser.push(data)) {
                    Some(Ok(events)) => events.iter().find_map(|e| self.id_in(e)),
                    Some(Err(e)) => {
                        let _ = tx.send(Ok(error_event(&e.to_string()))).await;
                        return;
                    }
                    None => None,
                };
                held.push(frame);
                let Some(id) = found else { continue };
                if let Err(e) = self.record(&id, None).await {
                    let _ = tx.send(Ok(error_event(&e.message))).await;
                    return;
                }
                recorded = true;
                for frame in held.drain(..) {
                    if tx.send(Ok(frame)).await.is_err() {
                        return;
                    }
                }
            }
            // The stream ended without naming an object (an upstream error event): pass it on.
            for frame in held {
                if tx.send(Ok(frame)).await.is_err() {
                    return;
                }
            }
        });
        StreamBody::new(ReceiverStream::new(rx)).boxed_unsync()
    }
}

fn error_event(message: &str) -> Frame<Bytes> {
    let data = json!({"error": {"code": "proxy_error", "message": message}});
    Frame::data(Bytes::from(format!("event: error\ndata: {data}\n\n")))
}

/// `<base>/<collection>/<id>[?query]` on `upstream`.
fn object_url(
    upstream: &UpstreamResource,
    kind: ObjectKind,
    id: &str,
    query: Option<&str>,
) -> String {
    let url = format!("{}{}/{id}", base_of(upstream), kind.collection());
    match query {
        Some(query) => format!("{url}?{query}"),
        None => url,
    }
}

/// A call of the edge's own on `upstream` for the client (see `proxy::own_call`): the answer's
/// status, or `None` if there was none.
async fn call_upstream(
    state: &Arc<EdgeState>,
    upstream: &Arc<UpstreamResource>,
    method: Method,
    target: &str,
    client_headers: &http::HeaderMap,
) -> Option<StatusCode> {
    let uri = target.parse::<Uri>().ok()?;
    let snapshot = state.snapshot();
    let response = crate::proxy::own_call(
        state,
        &snapshot,
        upstream,
        method,
        uri,
        Some(client_headers),
    )
    .await
    .ok()?;
    Some(response.status())
}

/// A new agent's name, taken for its creator before `POST /agents` reaches the upstream. The new
/// Agents API answers a create under a name that exists by adding a version to that agent,
/// whoever made it: recorded only after the create, a name two attendees chose at once became the
/// second one's version of the first one's agent, and an agent made outside the proxy (the
/// organiser's, in the portal) took an attendee's definition and became theirs. The record is
/// the control plane's, so one attendee holds a name across the fleet.
///
/// The same attendee may create one new name twice at once (a client that retries): only the
/// call whose record was new gives the name back when its create fails, and only if no agent of
/// that name exists upstream by then (the other call may have made it).
pub struct NameReservation {
    state: Arc<EdgeState>,
    name: String,
    /// This call wrote the record; `None` when it found it written by another of the caller's.
    wrote: Option<Wrote>,
}

/// What a reservation that wrote its record needs to tell, on failure, whether the agent exists.
struct Wrote {
    upstream: Arc<UpstreamResource>,
    target: String,
    headers: http::HeaderMap,
}

impl NameReservation {
    /// Records `name` for the caller (403 if another attendee holds it), then makes sure no agent
    /// of that name exists upstream (409 if one does: it was not made through the proxy).
    pub async fn take(
        state: &Arc<EdgeState>,
        caller: &Caller,
        upstream: &Arc<UpstreamResource>,
        name: &str,
        parts: &http::request::Parts,
    ) -> Result<Self, ProxyError> {
        let record = pb::OwnedObject {
            kind: ObjectKind::Agent.as_str().to_string(),
            id: name.to_string(),
            event_id: caller.event.id.clone(),
            user_id: caller.user_id.clone(),
            resource_id: upstream.id.clone(),
            ..Default::default()
        };
        let written = match state.control.record(vec![record]).await {
            Ok(written) => written > 0,
            Err(RecordError::Taken(_)) => return Err(super::unauthorized(ObjectKind::Agent)),
            Err(RecordError::Failed(message)) => {
                tracing::warn!(%message, "could not reserve a new agent's name");
                return Err(ProxyError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The agent's name could not be reserved for you right now; retry shortly.",
                ));
            }
        };
        let target = object_url(upstream, ObjectKind::Agent, name, parts.uri.query());
        let found = call_upstream(state, upstream, Method::GET, &target, &parts.headers).await;
        let reservation = Self {
            state: state.clone(),
            name: name.to_string(),
            wrote: written.then(|| Wrote {
                upstream: upstream.clone(),
                target,
                headers: parts.headers.clone(),
            }),
        };
        match found {
            Some(StatusCode::NOT_FOUND) => Ok(reservation),
            Some(status) if status.is_success() => {
                reservation.release().await;
                Err(ProxyError::new(
                    StatusCode::CONFLICT,
                    "An agent of this name exists in the project and was not made through the proxy; choose another name.",
                ))
            }
            other => {
                tracing::warn!(status = ?other, "could not tell whether a new agent's name is free upstream");
                reservation.release().await;
                Err(ProxyError::new(
                    StatusCode::BAD_GATEWAY,
                    "Could not check upstream whether the agent's name is free; retry shortly.",
                ))
            }
        }
    }

    /// Keeps the name if the agent was made; gives it back otherwise, if this call wrote the
    /// record and the upstream says no agent of that name exists (an answer it cannot give
    /// keeps the name: reserved with no agent costs nothing to the caller, who may create it).
    pub async fn settle(self, made: bool) {
        let Some(wrote) = self.wrote.as_ref().filter(|_| !made) else {
            return;
        };
        let found = call_upstream(
            &self.state,
            &wrote.upstream,
            Method::GET,
            &wrote.target,
            &wrote.headers,
        )
        .await;
        if found == Some(StatusCode::NOT_FOUND) {
            self.release().await;
        }
    }

    /// Gives the name back (the caller's agent of that name does not exist), if this call wrote
    /// the record: one found written belongs to another of the caller's calls.
    async fn release(self) {
        if self.wrote.is_none() {
            return;
        }
        let key = (ObjectKind::Agent, self.name);
        self.state.ownership.forget(&key);
        if let Err(e) = self.state.control.forget(key.0.as_str(), &key.1).await {
            tracing::warn!(%e, "a new agent's name stays reserved for its caller");
        }
    }
}
