//! The Foundry Agent Service through the event's `foundry-agent` resource, with attendees kept
//! apart: attendees of one event share one Foundry project upstream, so every object created
//! through the proxy is recorded against the creating attendee (fleet-wide, through the control
//! plane); reading, changing or deleting another attendee's object, or one never created through
//! the proxy, is refused; lists show only the caller's objects, with coherent pagination.

use std::sync::{Arc, Mutex};

use aiproxy_proto::v1 as pb;
use bytes::Bytes;
use chrono::Utc;
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use serde_json::{Value, json};

use super::client_auth::Caller;
use super::errors::{ProxyError, json_response};
use crate::body::{EdgeBody, full, read_to_bytes};
use crate::snapshot::{CatalogSnapshot, UpstreamResource};
use crate::state::EdgeState;
use crate::upstream::{auth, headers, pool};

const FOUNDRY_AGENT: &str = "foundry-agent";
/// Upstream pages a filtered list may read to fill one page for the caller.
const MAX_PAGES_PER_LIST: usize = 20;

/// What a Foundry path addresses.
pub struct FoundryCall {
    pub kind: &'static str,
    pub id: Option<String>,
    /// Below the object (`/threads/{id}/messages`): the object's owner decides, but it is not the
    /// object itself being deleted.
    pub nested: bool,
    pub path: String,
}

fn unauthorized(kind: &str) -> ProxyError {
    let label = kind.replace('_', " ");
    ProxyError::new(
        StatusCode::FORBIDDEN,
        format!("Unauthorized access to {label}."),
    )
}

fn agent_resource(
    state: &EdgeState,
    snapshot: &CatalogSnapshot,
    event_id: &str,
) -> Result<Arc<UpstreamResource>, ProxyError> {
    let missing = || ProxyError::not_found("No Foundry Agent deployment found for the event.");
    let name = *snapshot
        .names(event_id, FOUNDRY_AGENT)
        .first()
        .ok_or_else(missing)?;
    let members = snapshot
        .pool(event_id, FOUNDRY_AGENT, name)
        .ok_or_else(missing)?;
    Ok(
        pool::choose(members, &state.region, state.next_round_robin(), |m| {
            state.health.is_healthy(&m.id)
        })
        .clone(),
    )
}

fn owned_by(owner: &pb::OwnedObject, caller: &Caller) -> bool {
    owner.event_id == caller.event.id && owner.user_id == caller.user_id
}

/// The caller may touch `kind`/`id` only if they created it through the proxy.
async fn authorize_access(
    state: &EdgeState,
    snapshot: &CatalogSnapshot,
    caller: &Caller,
    kind: &str,
    id: &str,
) -> Result<pb::OwnedObject, ProxyError> {
    let known = snapshot.object_owner(kind, id).cloned();
    let owner = match known {
        Some(owner) => Some(owner),
        // Possibly created through another edge a moment ago: ask the control plane.
        None => state.control.lookup(kind, id).await.map_err(|e| {
            ProxyError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("Cannot check who owns this {kind} right now: {e}"),
            )
        })?,
    };
    match owner {
        Some(owner) if owned_by(&owner, caller) => Ok(owner),
        _ => Err(unauthorized(kind)),
    }
}

pub async fn serve(
    state: &Arc<EdgeState>,
    snapshot: Arc<CatalogSnapshot>,
    caller: &Caller,
    call: FoundryCall,
    parts: http::request::Parts,
    body: EdgeBody,
) -> Result<Response<EdgeBody>, ProxyError> {
    let snapshot = &*snapshot;
    let body = check_agent_in_run(state, snapshot, caller, &call, &parts, body).await?;
    match call.id.as_deref() {
        Some(id) => {
            let owner = authorize_access(state, snapshot, caller, call.kind, id).await?;
            // A response made through the model API lives on that model's resource.
            let (upstream, url) = match snapshot
                .resource(&owner.resource_id)
                .filter(|r| r.model_type == "foundry-model")
            {
                Some(model) => (model.clone(), format!("{}{}", model.origin, call.path)),
                None => {
                    let agent = agent_resource(state, snapshot, &caller.event.id)?;
                    let url = format!("{}{}", agent.endpoint_url, call.path);
                    (agent, url)
                }
            };
            let deleting = parts.method == Method::DELETE && !call.nested;
            let response =
                super::forward(state, snapshot, upstream, &url, parts, body, None).await?;
            if deleting
                && response.status().is_success()
                && let Err(e) = state.control.forget(call.kind, id).await
            {
                tracing::warn!(kind = call.kind, %e, "deleted upstream but the ownership record stays");
            }
            Ok(response)
        }
        None => {
            let upstream = agent_resource(state, snapshot, &caller.event.id)?;
            let url = format!("{}{}", upstream.endpoint_url, call.path);
            if parts.method == Method::GET {
                list_owned(state, snapshot, caller, &upstream, &url, parts, call.kind).await
            } else {
                create(state, snapshot, caller, upstream, &url, parts, body, call).await
            }
        }
    }
}

/// A run names the agent that runs it in its body (`assistant_id` / `agent_id`): that agent must be
/// the caller's too, or an attendee could run another's agent on their own thread.
async fn check_agent_in_run(
    state: &EdgeState,
    snapshot: &CatalogSnapshot,
    caller: &Caller,
    call: &FoundryCall,
    parts: &http::request::Parts,
    body: EdgeBody,
) -> Result<EdgeBody, ProxyError> {
    let creates_run =
        parts.method == Method::POST && call.kind == "thread" && call.path.ends_with("/runs");
    if !creates_run {
        return Ok(body);
    }
    let bytes = read_to_bytes(body, state.max_json_body_bytes)
        .await
        .map_err(|e| ProxyError::bad_request(format!("The request body could not be read: {e}")))?;
    let request: Value = serde_json::from_slice(&bytes)
        .map_err(|_| ProxyError::bad_request("Invalid JSON in request body"))?;
    for field in ["assistant_id", "agent_id"] {
        if let Some(agent) = request.get(field).and_then(Value::as_str) {
            authorize_access(state, snapshot, caller, "agent", agent).await?;
        }
    }
    Ok(full(bytes))
}

/// The field of a create response that names the object to record.
fn id_field(call: &FoundryCall) -> &'static str {
    // POST /threads/runs answers with a run; the thread it created is what attendees address.
    if call.kind == "thread" && call.path.ends_with("/runs") {
        "thread_id"
    } else {
        "id"
    }
}

/// Forwards a create call and records the new object against the caller.
#[allow(clippy::too_many_arguments)]
pub(super) async fn create(
    state: &Arc<EdgeState>,
    snapshot: &CatalogSnapshot,
    caller: &Caller,
    upstream: Arc<UpstreamResource>,
    url: &str,
    parts: http::request::Parts,
    body: EdgeBody,
    call: FoundryCall,
) -> Result<Response<EdgeBody>, ProxyError> {
    let template = pb::OwnedObject {
        kind: call.kind.to_string(),
        id: String::new(),
        event_id: caller.event.id.clone(),
        user_id: caller.user_id.clone(),
        resource_id: upstream.id.clone(),
    };
    let field = id_field(&call);
    let response = super::forward(state, snapshot, upstream, url, parts, body, None).await?;
    if !response.status().is_success() {
        return Ok(response);
    }
    let streaming = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if streaming {
        // Events pass on as they come; the first one naming the object gets it recorded.
        let (parts, body) = response.into_parts();
        return Ok(Response::from_parts(
            parts,
            record_from_stream(state.clone(), body, field, template),
        ));
    }
    let (parts, body) = response.into_parts();
    let bytes = read_to_bytes(body, state.max_json_body_bytes)
        .await
        .map_err(|e| {
            ProxyError::new(
                StatusCode::BAD_GATEWAY,
                format!("The Foundry answer could not be read: {e}"),
            )
        })?;
    if let Some(id) = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get(field)?.as_str().map(str::to_string))
        && let Err(e) = state
            .control
            .record(pb::OwnedObject { id, ..template })
            .await
    {
        tracing::warn!(%e, "created upstream but not recorded: its creator will be refused access");
    }
    Ok(Response::from_parts(parts, full(bytes)))
}

/// Passes an SSE body through unchanged while looking for `"<field>":"<id>"` in its first events.
fn record_from_stream(
    state: Arc<EdgeState>,
    body: EdgeBody,
    field: &'static str,
    template: pb::OwnedObject,
) -> EdgeBody {
    let needle = format!("\"{field}\":\"");
    let seen = Arc::new(Mutex::new((String::new(), false)));
    body.map_frame(move |frame| {
        if let Some(data) = frame.data_ref() {
            let mut guard = seen.lock().unwrap_or_else(|p| p.into_inner());
            let (text, done) = &mut *guard;
            if !*done && text.len() < 64 * 1024 {
                text.push_str(&String::from_utf8_lossy(data));
                if let Some(start) = text.find(&needle).map(|i| i + needle.len())
                    && let Some(len) = text[start..].find('"')
                {
                    *done = true;
                    let object = pb::OwnedObject {
                        id: text[start..start + len].to_string(),
                        ..template.clone()
                    };
                    let state = state.clone();
                    tokio::spawn(async move {
                        if let Err(e) = state.control.record(object).await {
                            tracing::warn!(%e, "created upstream (streamed) but not recorded");
                        }
                    });
                }
            }
        }
        frame
    })
    .boxed_unsync()
}

/// A list call filtered to the caller's objects. Reads as many upstream pages as it takes to fill
/// the caller's page, so `last_id` always moves forward and an empty page carries no `last_id`
/// (SDKs page with `after=<last_id>` until there is none).
async fn list_owned(
    state: &EdgeState,
    snapshot: &CatalogSnapshot,
    caller: &Caller,
    upstream: &Arc<UpstreamResource>,
    url: &str,
    parts: http::request::Parts,
    kind: &str,
) -> Result<Response<EdgeBody>, ProxyError> {
    let ListParams {
        limit,
        mut after,
        passed,
    } = list_params(parts.uri.query());
    let mut kept: Vec<Value> = Vec::new();
    let mut upstream_more = false;
    for _ in 0..MAX_PAGES_PER_LIST {
        let target = page_url(url, &passed, after.as_deref());
        let page = fetch_json(state, snapshot, upstream, &target, &parts.headers).await?;
        let data = page
            .get("data")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        upstream_more = page
            .get("has_more")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        after = data.last().and_then(item_id).map(str::to_string);
        for item in data {
            let id = item_id(&item).unwrap_or_default();
            let mine = match snapshot.object_owner(kind, id) {
                Some(owner) => owned_by(owner, caller),
                None => false,
            };
            if mine {
                kept.push(item);
            }
        }
        if kept.len() > limit || !upstream_more || after.is_none() {
            break;
        }
    }
    let has_more = kept.len() > limit || (upstream_more && !kept.is_empty());
    kept.truncate(limit);
    let first_id = kept.first().and_then(item_id).map(str::to_string);
    let last_id = kept.last().and_then(item_id).map(str::to_string);
    Ok(json_response(
        StatusCode::OK,
        &json!({"object": "list", "first_id": first_id, "last_id": last_id, "has_more": has_more, "data": kept}),
    ))
}

fn item_id(item: &Value) -> Option<&str> {
    item.get("id").and_then(Value::as_str)
}

struct ListParams {
    limit: usize,
    after: Option<String>,
    /// The client's other parameters (`order`, `api-version`, …), passed on as they are.
    passed: Vec<(String, String)>,
}

fn list_params(query: Option<&str>) -> ListParams {
    let mut params = ListParams {
        limit: 20,
        after: None,
        passed: Vec::new(),
    };
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "limit" => params.limit = value.parse().unwrap_or(20),
            "after" => params.after = Some(value.to_string()),
            _ => params.passed.push((key.to_string(), value.to_string())),
        }
    }
    params.limit = params.limit.clamp(1, 100);
    params
}

/// One upstream page: the client's parameters, the largest page, and the cursor.
fn page_url(url: &str, passed: &[(String, String)], after: Option<&str>) -> String {
    let mut query: Vec<String> = passed.iter().map(|(k, v)| format!("{k}={v}")).collect();
    query.push("limit=100".into());
    if let Some(after) = after {
        query.push(format!("after={after}"));
    }
    format!("{url}?{}", query.join("&"))
}

async fn fetch_json(
    state: &EdgeState,
    snapshot: &CatalogSnapshot,
    upstream: &UpstreamResource,
    target: &str,
    client_headers: &http::HeaderMap,
) -> Result<Value, ProxyError> {
    let uri: Uri = target
        .parse()
        .map_err(|_| ProxyError::bad_request("The query string is not valid"))?;
    let mut upstream_headers = headers::for_upstream(client_headers.clone());
    auth::authorize(
        upstream,
        snapshot,
        Utc::now().timestamp_millis(),
        state.token_margin_ms,
        &mut upstream_headers,
    )
    .map_err(|e| ProxyError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let mut request = Request::new(full(Bytes::new()));
    *request.uri_mut() = uri;
    *request.headers_mut() = upstream_headers;
    let response = state
        .upstream
        .send(request)
        .await
        .map_err(|e| super::upstream_failure(upstream, e))?;
    let status = response.status();
    let bytes = Limited::new(response.into_body(), state.max_json_body_bytes)
        .collect()
        .await
        .map_err(|_| {
            ProxyError::new(
                StatusCode::BAD_GATEWAY,
                "The Foundry list could not be read",
            )
        })?
        .to_bytes();
    if !status.is_success() {
        let message = String::from_utf8_lossy(&bytes)
            .chars()
            .take(500)
            .collect::<String>();
        return Err(ProxyError::new(
            status,
            format!("Foundry answered {status}: {message}"),
        ));
    }
    serde_json::from_slice(&bytes)
        .map_err(|_| ProxyError::new(StatusCode::BAD_GATEWAY, "The Foundry list is not JSON"))
}
