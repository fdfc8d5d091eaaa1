//! The Foundry Agent Service through the event's `foundry-agent` resources (and responses stored
//! on model resources), with attendees kept apart. Attendees of an event share one project
//! upstream, so this module is the only wall between them:
//! - the object a path names, and every object a body references (`references`), must have been
//!   created through the proxy by the caller (`crate::ownership`); anything else is 403;
//! - a call on an object goes to the resource the object lives on, and only while the caller's
//!   event still exposes that resource;
//! - every object created is recorded before the caller gets its id (`create`), a new agent's
//!   name before the agent is made, and lists show only the caller's objects, paged from the
//!   records (`lists`).

mod create;
mod lists;
pub mod references;
pub mod search_tools;

pub use crate::ownership::ObjectKind;
use create::NameReservation;
pub use create::{Creation, create};

use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use http::{Method, Response, StatusCode};

use super::canonical;
use super::client_auth::Caller;
use super::errors::ProxyError;
use super::policy;
use super::routes::FoundryPath;
use crate::body::{EdgeBody, full};
use crate::ownership::{ObjectKey, Owner};
use crate::snapshot::{CatalogSnapshot, UpstreamResource};
use crate::state::EdgeState;
use references::Reference;

const FOUNDRY_AGENT: &str = "foundry-agent";
const FOUNDRY_MODEL: &str = "foundry-model";

/// A request body as it reaches this module: still unread, or read already (a Responses call
/// whose `agent` sent it here), with the token cap applied.
pub enum RequestBody {
    Unread(EdgeBody),
    Json(Bytes),
}

pub fn unauthorized(kind: ObjectKind) -> ProxyError {
    ProxyError::new(
        StatusCode::FORBIDDEN,
        format!("Unauthorized access to {}.", kind.label()),
    )
}

fn owned_by(owner: &Owner, caller: &Caller) -> bool {
    owner.event_id == caller.event.id && owner.user_id == caller.user_id
}

pub async fn serve(
    state: &Arc<EdgeState>,
    snapshot: &CatalogSnapshot,
    caller: &Caller,
    path: FoundryPath<'_>,
    parts: http::request::Parts,
    body: RequestBody,
) -> Result<Response<EdgeBody>, ProxyError> {
    let (body, fields, references, searches) = match read_body(state, &parts, &path, body).await? {
        Read::Json(bytes) => {
            let fields = policy::inspect(&bytes)?;
            let references = references::collect(&bytes)?;
            let searches = search_tools::collect(&bytes)?;
            let creates_run = path.kind == ObjectKind::Thread
                && (path.creates_thread_and_run() || path.below == ["runs"]);
            let cap = creates_run.then_some(policy::CapField::RUNS);
            let bytes =
                policy::apply_token_cap(bytes.clone(), &fields, caller.event.max_token_cap, cap)?;
            let fields = (fields.name, fields.store);
            (full(bytes), fields, references, searches)
        }
        Read::Other(body) => (body, (None, None), Vec::new(), Vec::new()),
    };
    let (name, store) = fields;
    // `POST /agents` names the agent it creates: a name another attendee holds is theirs.
    let new_agent_name = name
        .as_deref()
        .filter(|_| path.kind == ObjectKind::Agent && path.is_collection());
    // Its name is its id in every path after this one.
    if new_agent_name.is_some_and(|name| !canonical::is_id(name)) {
        return Err(ProxyError::bad_request(format!(
            "name: {}",
            canonical::NOT_AN_ID
        )));
    }
    let path_object = path.id.map(|id| (path.kind, id));
    let checked = authorize(state, caller, path_object, &references, new_agent_name).await?;

    if let Some(owner) = &checked.path_owner {
        let upstream = available_resource(snapshot, caller, &owner.resource_id)
            .ok_or_else(|| gone(path.kind))?;
        search_tools::check(state, snapshot, &caller.event.id, &upstream, &searches).await?;
        let url = format!("{}{}", base_of(&upstream), path.path);
        let deleting = parts.method == Method::DELETE && path.below.is_empty();
        let response = super::forward(state, snapshot, upstream, &url, parts, body, None).await?;
        if deleting && response.status().is_success() {
            let id = path.id.unwrap_or_default();
            state.ownership.forget(&(path.kind, id.to_string()));
            if let Err(e) = state.control.forget(path.kind.as_str(), id).await {
                tracing::warn!(kind = path.kind.as_str(), %e, "deleted upstream but the ownership record stays");
            }
        }
        return Ok(response);
    }
    let upstream = match single_resource(snapshot, caller, &checked.reference_resources) {
        Some(upstream) => upstream,
        None => agent_resource(state, snapshot, &caller.event.id)?,
    };
    search_tools::check(state, snapshot, &caller.event.id, &upstream, &searches).await?;
    let base = base_of(&upstream).to_string();
    match parts.method {
        Method::GET if path.is_collection() => {
            lists::list(state, snapshot, caller, path.kind, &parts).await
        }
        Method::POST if path.is_collection() || path.creates_thread_and_run() => {
            let url = format!("{base}{}", path.path);
            let creation = Creation {
                kind: path.kind,
                thread_and_run: path.creates_thread_and_run(),
                // `store: false` is the Responses API's; other objects are always kept upstream.
                record: path.kind != ObjectKind::Response || store != Some(false),
            };
            let reserved = match new_agent_name.filter(|_| !checked.agent_name_is_callers) {
                Some(name) => {
                    Some(NameReservation::take(state, caller, &upstream, name, &parts).await?)
                }
                None => None,
            };
            let created = create(
                state, snapshot, caller, upstream, &url, parts, body, creation,
            )
            .await;
            if let Some(reserved) = reserved {
                let made = created.as_ref().is_ok_and(|r| r.status().is_success());
                reserved.settle(made).await;
            }
            created
        }
        _ => Err(ProxyError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not supported on {}", parts.method, path.path),
        )),
    }
}

/// The references in a model call's body (a Responses call's `previous_response_id`,
/// `conversation`, files, vector stores), authorised for the caller; returns the resources the
/// referenced objects live on, so a continued response goes where the earlier one is stored.
pub async fn authorize_body(
    state: &EdgeState,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<String>, ProxyError> {
    search_tools::refuse_any(body, &state.snapshot(), &caller.event.id)?;
    let references = references::collect(body)?;
    if references.is_empty() {
        return Ok(Vec::new());
    }
    Ok(authorize(state, caller, None, &references, None)
        .await?
        .reference_resources)
}

/// A Foundry call's body as read: JSON to inspect, or what passes on as it is.
enum Read {
    Json(Bytes),
    Other(EdgeBody),
}

/// POST bodies are JSON whatever the content type claims (so a reference cannot hide behind
/// `text/plain`), except file uploads, which stream through. GET and DELETE carry no body upstream.
async fn read_body(
    state: &EdgeState,
    parts: &http::request::Parts,
    path: &FoundryPath<'_>,
    body: RequestBody,
) -> Result<Read, ProxyError> {
    let incoming = match body {
        RequestBody::Json(bytes) => return Ok(Read::Json(bytes)),
        RequestBody::Unread(incoming) => incoming,
    };
    if parts.method != Method::POST {
        return Ok(Read::Other(full(Bytes::new())));
    }
    if path.kind == ObjectKind::File && path.is_collection() {
        return Ok(Read::Other(incoming));
    }
    let bytes = policy::read_body(
        incoming,
        state.max_json_body_bytes,
        state.limits.body_read_timeout,
    )
    .await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Read::Other(full(bytes)));
    }
    Ok(Read::Json(bytes))
}

/// What authorisation found out: the owner of the object in the path, and the resources the
/// referenced objects live on.
struct Checked {
    path_owner: Option<Arc<Owner>>,
    reference_resources: Vec<String>,
    /// The name `POST /agents` gives is the caller's already (a new version of their agent).
    agent_name_is_callers: bool,
}

/// One batched ownership look-up for the path's object, every body reference and a new agent's
/// name; any that is not the caller's refuses the whole call.
async fn authorize(
    state: &EdgeState,
    caller: &Caller,
    path_object: Option<(ObjectKind, &str)>,
    references: &[Reference],
    new_agent_name: Option<&str>,
) -> Result<Checked, ProxyError> {
    let mut keys: Vec<ObjectKey> = Vec::new();
    if let Some((kind, id)) = path_object {
        keys.push((kind, id.to_string()));
    }
    for reference in references {
        match reference {
            Reference::Object(kind, id) => keys.push((*kind, id.clone())),
            Reference::AnyAgent(id) => {
                keys.push((ObjectKind::Assistant, id.clone()));
                keys.push((ObjectKind::Agent, id.clone()));
            }
        }
    }
    if let Some(name) = new_agent_name {
        keys.push((ObjectKind::Agent, name.to_string()));
    }
    if keys.is_empty() {
        return Ok(Checked {
            path_owner: None,
            reference_resources: Vec::new(),
            agent_name_is_callers: false,
        });
    }
    let owners = state
        .ownership
        .owners(&state.control, &keys, Utc::now().timestamp_millis())
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "ownership look-up failed; refusing the call");
            ProxyError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Cannot check who owns the objects this call names right now; retry shortly.",
            )
        })?;
    let mut answers = keys.iter().zip(owners);
    let mut mine = |expected: ObjectKind| -> Result<Option<Arc<Owner>>, ProxyError> {
        let ((kind, _), owner) = answers.next().ok_or_else(|| unauthorized(expected))?;
        debug_assert_eq!(*kind, expected);
        match owner {
            Some(owner) if owned_by(&owner, caller) => Ok(Some(owner)),
            Some(_) => Err(unauthorized(expected)),
            None => Ok(None),
        }
    };
    let path_owner = match path_object {
        Some((kind, _)) => Some(mine(kind)?.ok_or_else(|| unauthorized(kind))?),
        None => None,
    };
    let mut reference_resources = Vec::new();
    for reference in references {
        let owner = match reference {
            Reference::Object(kind, _) => mine(*kind)?.ok_or_else(|| unauthorized(*kind))?,
            Reference::AnyAgent(_) => {
                let assistant = mine(ObjectKind::Assistant)?;
                let agent = mine(ObjectKind::Agent)?;
                assistant
                    .or(agent)
                    .ok_or_else(|| unauthorized(ObjectKind::Agent))?
            }
        };
        reference_resources.push(owner.resource_id.clone());
    }
    // Free (then reserved before the create), or the caller's own: both fine.
    let agent_name_is_callers = new_agent_name.is_some() && mine(ObjectKind::Agent)?.is_some();
    Ok(Checked {
        path_owner,
        reference_resources,
        agent_name_is_callers,
    })
}

/// A resource of the caller's event, active: where the caller's objects may be reached.
fn available_resource(
    snapshot: &CatalogSnapshot,
    caller: &Caller,
    resource_id: &str,
) -> Option<Arc<UpstreamResource>> {
    snapshot
        .event_resource(&caller.event.id, resource_id)
        .filter(|r| matches!(r.model_type.as_str(), FOUNDRY_AGENT | FOUNDRY_MODEL))
        .cloned()
}

fn gone(kind: ObjectKind) -> ProxyError {
    ProxyError::not_found(format!(
        "The resource that holds this {} is no longer available to this event.",
        kind.label()
    ))
}

/// A create that references objects goes where they live, when they all live on one agent
/// resource the event still exposes.
fn single_resource(
    snapshot: &CatalogSnapshot,
    caller: &Caller,
    resources: &[String],
) -> Option<Arc<UpstreamResource>> {
    let first = resources.first()?;
    if resources.iter().any(|r| r != first) {
        return None;
    }
    available_resource(snapshot, caller, first).filter(|r| r.model_type == FOUNDRY_AGENT)
}

/// Paths of agent resources follow the project endpoint; responses stored on a model resource
/// follow its origin.
/// Where a resource's Foundry objects are: a project's endpoint, or a model resource's origin.
pub(crate) fn base_of(upstream: &UpstreamResource) -> &str {
    if upstream.model_type == FOUNDRY_MODEL {
        &upstream.origin
    } else {
        &upstream.endpoint_url
    }
}

fn agent_resource(
    state: &EdgeState,
    snapshot: &CatalogSnapshot,
    event_id: &str,
) -> Result<Arc<UpstreamResource>, ProxyError> {
    let name = *snapshot
        .names(event_id, FOUNDRY_AGENT)
        .first()
        .ok_or_else(|| ProxyError::not_found("No Foundry Agent deployment found for the event."))?;
    super::choose(state, snapshot, event_id, FOUNDRY_AGENT, name)
}
