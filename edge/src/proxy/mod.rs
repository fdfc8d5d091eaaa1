//! The request pipeline, in the order every proxied request goes through it:
//! canonicalise the path → resolve route → authenticate → check policy → authorise object
//! references → choose upstream → authorise upstream → forward and stream back. Each phase lives
//! in its own module; this one only sequences them.

pub mod canonical;
pub mod client_auth;
pub(crate) mod data_sources;
pub mod errors;
pub mod event_info;
mod field_names;
pub mod foundry;
mod json_tree;
pub mod policy;
pub mod routes;
pub mod trace;

use std::sync::Arc;

use aiproxy_telemetry::ServerSpan;
use bytes::Bytes;
use chrono::Utc;
use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use opentelemetry::trace::FutureExt as _;
use serde_json::json;

use crate::body::{EdgeBody, full};
use crate::metrics::UpstreamFailure;
use crate::snapshot::{CatalogSnapshot, KeyMemo, UpstreamResource};
use crate::state::EdgeState;
use crate::upstream::{UpstreamError, auth, headers, health, pool};
use crate::usage::{Metering, Served};
use canonical::CanonicalPath;
use errors::{ProxyError, json_response};
use routes::Route;

/// Serves one request of a client connection; `keys` is that connection's (see [`KeyMemo`]).
pub async fn handle(
    state: Arc<EdgeState>,
    request: Request<Incoming>,
    keys: &KeyMemo,
) -> Response<EdgeBody> {
    let started = Started {
        at: std::time::Instant::now(),
        at_ms: Utc::now().timestamp_millis(),
    };
    // A client that stops sending its body mid-way is not waited for forever.
    let request = request.map(|body| {
        crate::body::with_idle_timeout(body, state.limits.body_read_timeout, "the request body")
    });
    let probe = trace::is_probe(request.uri().path());
    let span = if probe {
        ServerSpan::off()
    } else {
        trace::request_span(&state.region, request.method(), request.headers())
    };
    // Cheap to keep: a standard method is copied, not allocated.
    let method = request.method().clone();
    let mut metering = None;
    let serving = serve(&state, request, keys, started, &mut metering, &span);
    // In the span's context, log lines carry its trace id and the upstream call continues it.
    let served = match span.context() {
        Some(context) => serving.with_context(context.clone()).await,
        None => serving.await,
    };
    let response = match served {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    trace::record_status(&span, response.status());
    // Every authenticated call to a model, Foundry, search or MCP route leaves one usage record,
    // made when its answer has been streamed to the end, and its metrics are recorded with it;
    // any other answer's metrics are recorded now (probes aside).
    match metering {
        Some(metering) => metering.wrap(&state, response),
        None => {
            if !probe {
                state
                    .metrics
                    .answered(&method, response.status().as_u16(), started.at.elapsed());
            }
            response
        }
    }
}

#[derive(Clone, Copy)]
struct Started {
    at: std::time::Instant,
    at_ms: i64,
}

/// Where a proxied request goes: which kind of resource, named how, and the upstream path.
struct Plan<'a> {
    model_type: &'static str,
    name: Name<'a>,
    /// Appended to the resource's origin (Azure OpenAI) or to its whole endpoint (the others).
    base: Base,
    path: String,
    /// The model inference API wants the model in `azureml-model-deployment`.
    model_header: bool,
    /// The body is JSON (every model call but uploads).
    json: bool,
    /// Where the event's token cap goes when the caller asked for no limit.
    cap: Cap,
    /// The route family usage is reported under.
    family: &'static str,
    /// A chat/completions call, whose streams report usage only when asked to.
    stream_usage: bool,
}

enum Cap {
    /// The call generates no tokens (embeddings, images, speech) or is no model call.
    NotApplicable,
    Field(policy::CapField),
    /// Azure OpenAI chat: `max_completion_tokens` from API version 2024-09-01 on (the only one
    /// reasoning models accept), `max_tokens` before it (which older versions alone know).
    ChatByApiVersion,
}

impl Plan<'_> {
    /// `stream_options` is known to Azure OpenAI from API version 2024-09-01 on (and to v1).
    fn stream_usage_supported(&self, query: Option<&str>) -> bool {
        matches!(self.name, Name::BodyModel) || api_version(query) >= "2024-09-01"
    }

    fn cap_field(&self, query: Option<&str>) -> Option<policy::CapField> {
        match self.cap {
            Cap::NotApplicable => None,
            Cap::Field(field) => Some(field),
            Cap::ChatByApiVersion => Some(if api_version(query) >= "2024-09-01" {
                policy::CapField::CHAT
            } else {
                policy::CapField::MAX_TOKENS
            }),
        }
    }
}

fn api_version(query: Option<&str>) -> &str {
    query
        .unwrap_or_default()
        .split('&')
        .find_map(|p| p.strip_prefix("api-version="))
        .unwrap_or_default()
}

/// The route family of an Azure OpenAI operation.
fn family_of(operation: &str) -> &'static str {
    match operation {
        "chat/completions" | "extensions/chat/completions" => "chat",
        "completions" => "completions",
        "embeddings" => "embeddings",
        "responses" => "responses",
        o if o.starts_with("images") => "images",
        o if o.starts_with("audio") => "audio",
        _ => "other",
    }
}

/// Where each model operation takes its output-token limit.
fn cap_of(operation: &str, v1: bool) -> Cap {
    match operation {
        "chat/completions" | "extensions/chat/completions" if v1 => {
            Cap::Field(policy::CapField::CHAT)
        }
        "chat/completions" | "extensions/chat/completions" => Cap::ChatByApiVersion,
        "completions" => Cap::Field(policy::CapField::MAX_TOKENS),
        "responses" => Cap::Field(policy::CapField::RESPONSES),
        _ => Cap::NotApplicable,
    }
}

enum Name<'a> {
    Path(&'a str),
    /// The JSON body's `model`.
    BodyModel,
    /// `azureml-model-deployment`, else the event's only resource of the type.
    HeaderOrOnly,
}

enum Base {
    Origin,
    Endpoint,
}

async fn serve(
    state: &Arc<EdgeState>,
    request: Request<EdgeBody>,
    keys: &KeyMemo,
    started: Started,
    metering: &mut Option<Metering>,
    span: &ServerSpan,
) -> Result<Response<EdgeBody>, ProxyError> {
    let snapshot = state.snapshot();
    // The route borrows the path's segments after the request is taken apart: a copy of the
    // URI (shared bytes) keeps them.
    let uri = request.uri().clone();
    let canonical =
        CanonicalPath::parse(uri.path()).map_err(|e| ProxyError::bad_request(e.to_string()))?;
    let route = routes::resolve(request.method(), &canonical)
        .map_err(|e| ProxyError::bad_request(e.to_string()))?;
    let mut foundry_path = None;
    let plan = match route {
        Route::Healthz => return Ok(Response::new(full("ok"))),
        Route::Readyz => return Ok(readiness(state, &snapshot)),
        Route::Unknown => {
            return Err(ProxyError::not_found(format!(
                "No route for {}",
                canonical::join(canonical.segments())
            )));
        }
        Route::MethodNotAllowed => {
            return Err(ProxyError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!(
                    "{} is not supported on {}",
                    request.method(),
                    canonical::join(canonical.segments())
                ),
            ));
        }
        Route::EventPublic { event_id } => {
            return if snapshot.loaded {
                event_info::public(&snapshot, event_id)
            } else {
                Err(not_ready())
            };
        }
        Route::EventInfo => None,
        Route::Foundry(path) => {
            foundry_path = Some(path);
            None
        }
        Route::Deployment {
            deployment,
            operation,
        } => Some(Plan {
            model_type: FOUNDRY_MODEL,
            name: Name::Path(deployment),
            base: Base::Origin,
            path: concat(&["/openai/deployments/", deployment, "/", operation]),
            model_header: false,
            json: operation != "audio/transcriptions",
            cap: cap_of(operation, false),
            family: family_of(operation),
            stream_usage: matches!(operation, "chat/completions" | "completions"),
        }),
        Route::OpenAiV1 { operation } => Some(Plan {
            model_type: FOUNDRY_MODEL,
            name: Name::BodyModel,
            base: Base::Origin,
            path: concat(&["/openai/v1/", operation]),
            model_header: false,
            json: true,
            cap: cap_of(operation, true),
            family: family_of(operation),
            stream_usage: operation == "chat/completions",
        }),
        Route::Search { index, path } => Some(Plan {
            model_type: AZURE_AI_SEARCH,
            name: Name::Path(index),
            base: Base::Endpoint,
            path,
            model_header: false,
            json: false,
            cap: Cap::NotApplicable,
            family: "search",
            stream_usage: false,
        }),
        Route::Inference { operation } => Some(Plan {
            model_type: AI_INFERENCE,
            name: if operation == "info" {
                Name::HeaderOrOnly
            } else {
                Name::BodyModel
            },
            base: Base::Endpoint,
            path: concat(&["/", operation]),
            model_header: true,
            json: operation != "info",
            cap: match operation {
                "chat/completions" => Cap::Field(policy::CapField::MAX_TOKENS),
                _ => Cap::NotApplicable,
            },
            family: "inference",
            stream_usage: false,
        }),
        Route::Mcp { name, rest } => Some(Plan {
            model_type: MCP_SERVER,
            name: Name::Path(name),
            base: Base::Endpoint,
            path: rest,
            model_header: false,
            json: false,
            cap: Cap::NotApplicable,
            family: "mcp",
            stream_usage: false,
        }),
    };
    if !snapshot.loaded {
        return Err(not_ready());
    }
    let caller = client_auth::authenticate(
        &snapshot,
        request.headers(),
        Utc::now().timestamp_millis(),
        Some(keys),
    )?;
    let family = match (&plan, &foundry_path) {
        (Some(plan), _) => plan.family,
        (None, Some(path)) if path.kind == foundry::ObjectKind::Response => "responses",
        (None, Some(_)) => "agents",
        (None, None) => "",
    };
    trace::record_call(span, &caller.event.id, family);
    if !family.is_empty() {
        let mut meter = Metering::new(
            request.method(),
            &caller.event.id,
            &caller.user_id,
            family,
            started.at,
            started.at_ms,
        );
        let tokens = !matches!(family, "search" | "mcp");
        let admitted = state
            .quota
            .admit(state, &caller.event, &caller.user_id, tokens)
            .await;
        let refused = admitted.as_ref().err().map(|reached| {
            let error = ProxyError::new(StatusCode::TOO_MANY_REQUESTS, reached.message.clone());
            match reached.retry_after_secs {
                Some(secs) => error.with_retry_after(secs),
                None => error,
            }
        });
        meter.charge = admitted.unwrap_or_default();
        meter.span = span.clone();
        if matches!(family, "agents" | "responses") {
            let version = api_version(request.uri().query());
            meter.follow_api_version = (!version.is_empty()).then(|| version.to_string());
        }
        *metering = Some(meter);
        if let Some(error) = refused {
            return Err(error);
        }
        // An attendee with many runs and responses at work starts no more until some end.
        if matches!(family, "agents" | "responses")
            && request.method() == http::Method::POST
            && let Some(error) = state.follow_ups.refusal(&caller.event.id, &caller.user_id)
        {
            return Err(error);
        }
    }
    let Some(plan) = plan else {
        return match foundry_path {
            Some(path) => {
                let (mut parts, body) = request.into_parts();
                // Usage (a finished run's) is read from the answer: it must come uncompressed.
                parts.headers.remove(http::header::ACCEPT_ENCODING);
                let body = foundry::RequestBody::Unread(body);
                Box::pin(foundry::serve(state, &snapshot, &caller, path, parts, body)).await
            }
            None => Ok(Box::pin(event_info::for_caller(state, &snapshot, &caller)).await),
        };
    };
    let (mut parts, body) = request.into_parts();
    let responses = plan.path == "/openai/v1/responses";
    // A JSON body is read (once) only when a rule needs it: a `model` to route by, the token cap
    // on model calls, a chat call's stream (which must report its usage), a resource that wants
    // `max_completion_tokens`, or the object references of a Responses or chat call. Everything
    // else (uploads, search, MCP) streams through untouched. Model calls are JSON whatever the
    // content type says.
    let json_call = plan.json && matches!(plan.model_type, FOUNDRY_MODEL | AI_INFERENCE);
    if json_call {
        // Usage is read from the answer: it must come uncompressed.
        parts.headers.remove(http::header::ACCEPT_ENCODING);
    }
    let capped = json_call && caller.event.max_token_cap > 0;
    let by_body = matches!(plan.name, Name::BodyModel);
    let path_pool = match plan.name {
        Name::Path(name) => snapshot.pool(&caller.event.id, plan.model_type, name),
        _ => None,
    };
    // A JSON model call to a pool of several members is kept, so it can be replayed on another
    // member if the first surely did not take it (429, or no connection).
    let several = match plan.name {
        Name::Path(_) => path_pool.is_some_and(|m| m.len() > 1),
        _ => true,
    };
    let renames = path_pool.is_some_and(|m| m.iter().any(|m| m.use_max_completion_tokens));
    let replayable = several && !responses && json_call;
    // A chat message's `file` part names an uploaded file by id (`file.file_id`): like a
    // Responses call's input, the body is read to hold it to the caller's own files. Its
    // `data_sources` (On Your Data) are held to the event's search indexes.
    let file_parts = plan.family == "chat" && plan.model_type == FOUNDRY_MODEL;
    let read = by_body
        || capped
        || replayable
        || responses
        || file_parts
        || plan.stream_usage
        || renames
        || (matches!(plan.family, "chat" | "completions")
            && (caller.event.daily_token_cap > 0 || caller.event.token_budget > 0));
    let (bytes, unread) = if read {
        let bytes = policy::read_body(
            body,
            state.max_json_body_bytes,
            state.limits.body_read_timeout,
        )
        .await?;
        (Some(bytes), None)
    } else {
        (None, Some(body))
    };
    let call = bytes.as_deref().map(policy::inspect).transpose()?;
    let cap_field = plan.cap_field(parts.uri.query());
    let mut model = None;
    let mut stored_on = Vec::new();
    let mut stores_response = true;
    let mut responses_body = None;
    if let (Some(bytes), Some(call)) = (&bytes, &call) {
        // An agent's Responses call names no model.
        if by_body && !(responses && call.agent) {
            model = Some(policy::model_of(call)?.to_string());
        }
        if responses {
            let bytes = policy::apply_token_cap(
                bytes.clone(),
                call,
                caller.event.max_token_cap,
                cap_field,
            )?;
            // A Responses call that names an agent goes to the Foundry Agent Service.
            if call.agent {
                let path = routes::FoundryPath {
                    kind: foundry::ObjectKind::Response,
                    id: None,
                    below: Vec::new(),
                    path: plan.path.clone(),
                };
                let body = foundry::RequestBody::Json(bytes);
                return Box::pin(foundry::serve(state, &snapshot, &caller, path, parts, body))
                    .await;
            }
            stored_on = Box::pin(foundry::authorize_body(state, &caller, &bytes)).await?;
            stores_response = call.store != Some(false);
            responses_body = Some(bytes);
        } else if file_parts {
            let serving = || match plan.name {
                Name::Path(_) => path_pool,
                _ => model
                    .as_deref()
                    .and_then(|name| snapshot.pool(&caller.event.id, plan.model_type, name)),
            };
            data_sources::check(bytes, &snapshot, &caller.event.id, serving)?;
            if foundry::references::may_reference(bytes) {
                Box::pin(foundry::authorize_body(state, &caller, bytes)).await?;
            }
        }
    }
    let name = match plan.name {
        Name::Path(name) => name.to_string(),
        Name::BodyModel => model.unwrap_or_default(),
        Name::HeaderOrOnly => inference_model(&snapshot, &caller.event.id, &parts.headers)?,
    };
    if !canonical::is_deployment_name(&name) {
        return Err(ProxyError::bad_request(
            "model: letters, digits, '.', '_' and '-' only",
        ));
    }
    if let Some(meter) = metering.as_mut() {
        meter.deployment = name.clone();
    }
    let url_for = |upstream: &UpstreamResource| {
        let base = match plan.base {
            Base::Origin => upstream.origin.as_str(),
            Base::Endpoint => upstream.endpoint_url.as_str(),
        };
        concat(&[base, &plan.path])
    };
    let model_header = plan.model_header.then_some(name.as_str());
    let mut upstream = choose(state, &snapshot, &caller.event.id, plan.model_type, &name)?;
    if let Some(body) = responses_body {
        // Stored upstream and read back by id: recorded like Foundry objects, so
        // `GET /openai/v1/responses/{id}` finds this resource and only its creator reads it. A
        // continued response goes to the pool member that stores the one it continues.
        if let Some(member) = stored_on.first().and_then(|id| {
            snapshot
                .pool(&caller.event.id, plan.model_type, &name)?
                .iter()
                .find(|m| m.id == *id)
                .cloned()
        }) {
            upstream = member;
        }
        let url = url_for(&upstream);
        let creation = foundry::Creation {
            kind: foundry::ObjectKind::Response,
            thread_and_run: false,
            record: stores_response,
        };
        return Box::pin(foundry::create(
            state,
            &snapshot,
            &caller,
            upstream,
            &url,
            parts,
            full(body),
            creation,
        ))
        .await;
    }
    // The body each pool member gets: the cap, its own `max_tokens` spelling, and (for streams)
    // the usage chunk asked for.
    let stream_usage = plan.stream_usage && plan.stream_usage_supported(parts.uri.query());
    if matches!(plan.family, "chat" | "completions")
        && !stream_usage
        && call.as_ref().is_some_and(|c| c.stream == Some(true))
        && (caller.event.daily_token_cap > 0 || caller.event.token_budget > 0)
    {
        return Err(ProxyError::bad_request(
            "This event caps tokens, and streamed usage is reported only by the chat and completions APIs from api-version 2024-09-01 on: use a newer api-version, or do not stream",
        ));
    }
    let body_for = |member: &UpstreamResource| -> Result<Option<(Bytes, bool)>, ProxyError> {
        let (Some(bytes), Some(call)) = (&bytes, &call) else {
            return Ok(None);
        };
        let how = policy::Prepare {
            cap: caller.event.max_token_cap,
            limit: cap_field,
            rename_max_tokens: member.use_max_completion_tokens && plan.family == "chat",
            stream_usage,
        };
        policy::prepare(bytes, call, how).map(Some)
    };
    let body = match (body_for(&upstream)?, unread) {
        (Some((bytes, usage_added)), _) => {
            if let Some(meter) = metering.as_mut() {
                meter.strip_usage_chunk = usage_added;
            }
            full(bytes)
        }
        (None, Some(body)) => body,
        (None, None) => full(Bytes::new()),
    };
    let retry_parts = (replayable && bytes.is_some()).then(|| copy_parts(&parts));
    let url = url_for(&upstream);
    let result = forward(
        state,
        &snapshot,
        upstream.clone(),
        &url,
        parts,
        body,
        model_header,
    )
    .await;
    // Every failure leaves the member out for a while; only a call the member surely did not take
    // (429, or no connection at all) is replayed: a 5xx or a timeout may have been billed.
    let replay_safe = match &result {
        Ok(response) if health::trips(response.status()) => {
            state.health.trip(
                &upstream.id,
                Some(response.status()),
                Some(response.headers()),
            );
            response.status() == StatusCode::TOO_MANY_REQUESTS
        }
        Err(error)
            if matches!(
                error.status,
                StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT
            ) =>
        {
            state.health.trip(&upstream.id, None, None);
            error.not_delivered
        }
        _ => false,
    };
    if replay_safe && let Some(parts) = retry_parts {
        let next = choose(state, &snapshot, &caller.event.id, plan.model_type, &name)?;
        if next.id != upstream.id
            && state.health.is_healthy(&next.id)
            && let Some((bytes, _)) = body_for(&next)?
        {
            tracing::info!(from = %upstream.id, to = %next.id, "retrying on another pool member");
            state.metrics.replayed(&upstream.id);
            let url = url_for(&next);
            return forward(
                state,
                &snapshot,
                next,
                &url,
                parts,
                full(bytes),
                model_header,
            )
            .await;
        }
    }
    result
}

/// The request line and headers again, for a replay (the body is kept separately).
fn copy_parts(parts: &http::request::Parts) -> http::request::Parts {
    let mut request = Request::new(());
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    request.into_parts().0
}

pub(crate) const FOUNDRY_MODEL: &str = "foundry-model";
pub(crate) const AZURE_AI_SEARCH: &str = "azure-ai-search";
const AI_INFERENCE: &str = "ai-inference";
const MCP_SERVER: &str = "mcp-server";

/// `GET /info` names its model in `azureml-model-deployment`, or the event has only one.
fn inference_model(
    snapshot: &CatalogSnapshot,
    event_id: &str,
    headers: &http::HeaderMap,
) -> Result<String, ProxyError> {
    if let Some(model) = headers
        .get("azureml-model-deployment")
        .and_then(|v| v.to_str().ok())
    {
        return Ok(model.to_string());
    }
    match snapshot.names(event_id, AI_INFERENCE).as_slice() {
        [only] => Ok(only.to_string()),
        _ => Err(ProxyError::bad_request(
            "Name the model in the azureml-model-deployment header: this event offers several (or none)",
        )),
    }
}

/// Ready once a catalog is held (from the stream or the state file), until shutdown begins. A stream that keeps failing
/// does not make the edge unready (it serves its last-known-good catalog), but says so here.
fn readiness(state: &EdgeState, snapshot: &CatalogSnapshot) -> Response<EdgeBody> {
    let ready = snapshot.loaded && !state.draining();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let sync = state.sync_status();
    json_response(
        status,
        &json!({"ready": ready, "draining": state.draining(), "catalog_version": snapshot.version,
                "sync": {"connected": sync.connected, "failures_in_a_row": sync.failures_in_a_row,
                         "last_error": sync.last_error},
                "usage": state.usage.status(), "follow_ups": state.follow_ups.following(), "quota": {"lease_calls": state.quota.lease_calls()}}),
    )
}

fn not_ready() -> ProxyError {
    ProxyError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "This edge has not received its catalog from the control plane yet; retry shortly.",
    )
}

/// The names `event_id` has of `model_type`, for an error that lists them: `a, b`, or `(none)`.
pub(crate) fn available(snapshot: &CatalogSnapshot, event_id: &str, model_type: &str) -> String {
    match snapshot.names(event_id, model_type).join(", ") {
        none if none.is_empty() => "(none)".to_string(),
        names => names,
    }
}

fn choose(
    state: &EdgeState,
    snapshot: &CatalogSnapshot,
    event_id: &str,
    model_type: &str,
    name: &str,
) -> Result<Arc<UpstreamResource>, ProxyError> {
    let members = snapshot.pool(event_id, model_type, name).ok_or_else(|| {
        let available = available(snapshot, event_id, model_type);
        let (what, plural) = match model_type {
            AZURE_AI_SEARCH => ("Search index", "indexes"),
            AI_INFERENCE => ("Model", "models"),
            MCP_SERVER => ("MCP server", "MCP servers"),
            _ => ("Deployment", "deployments"),
        };
        ProxyError::not_found(format!(
            "{what} '{name}' not found for this event. Available {plural} are: {available}"
        ))
    })?;
    Ok(
        pool::choose(members, &state.region, state.next_round_robin(), |m| {
            state.health.is_healthy(&m.id)
        })
        .ok_or_else(|| ProxyError::not_found("This pool has no member"))?
        .clone(),
    )
}

/// The pieces one after another: the upstream paths and URLs of every call, without `format!`'s
/// machinery (about a thousand instructions a call each).
fn concat(pieces: &[&str]) -> String {
    let mut joined = String::with_capacity(pieces.iter().map(|p| p.len()).sum());
    for piece in pieces {
        joined.push_str(piece);
    }
    joined
}

/// Sends the request to `url` (+ the client's query string) with the resource's credential and
/// streams the answer back.
async fn forward(
    state: &EdgeState,
    snapshot: &CatalogSnapshot,
    upstream: Arc<UpstreamResource>,
    url: &str,
    parts: http::request::Parts,
    body: EdgeBody,
    model_header: Option<&str>,
) -> Result<Response<EdgeBody>, ProxyError> {
    let target = match parts.uri.query() {
        Some(query) => concat(&[url, "?", query]),
        None => url.to_string(),
    };
    let uri: Uri = target
        .parse()
        .map_err(|_| ProxyError::bad_request("The request path or query string is not valid"))?;
    let mut upstream_headers = headers::for_upstream(parts.headers);
    if let Some(model) = model_header {
        let value = http::HeaderValue::from_str(model)
            .map_err(|_| ProxyError::bad_request("model: not a valid name"))?;
        upstream_headers.insert("azureml-model-deployment", value);
    }
    authorize_upstream(state, snapshot, &upstream, &mut upstream_headers)?;
    let mut request = Request::new(body);
    *request.method_mut() = parts.method;
    *request.uri_mut() = uri;
    *request.headers_mut() = upstream_headers;

    let sent = std::time::Instant::now();
    let response = send_upstream(state, &upstream, request).await?;
    let upstream_wait = sent.elapsed();
    let (mut parts, body) = response.into_parts();
    parts.headers = headers::for_client(parts.headers);
    parts.extensions.insert(Served {
        resource_id: upstream.id.clone(),
        deployment_name: upstream.deployment_name.clone(),
        provider: trace::provider_of(&upstream.model_type),
        upstream_wait,
    });
    let body = crate::body::with_idle_timeout(
        body,
        state.limits.upstream_idle_timeout,
        "the upstream's answer",
    );
    Ok(Response::from_parts(parts, body))
}

/// The resource's credential on an upstream request (its key, or a managed-identity token), and
/// the request span's trace context.
pub(crate) fn authorize_upstream(
    state: &EdgeState,
    snapshot: &CatalogSnapshot,
    upstream: &UpstreamResource,
    headers: &mut http::HeaderMap,
) -> Result<(), ProxyError> {
    trace::record_upstream(upstream, headers);
    auth::authorize(
        upstream,
        snapshot,
        Utc::now().timestamp_millis(),
        state.token_margin_ms,
        headers,
    )
    .map_err(|e| ProxyError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
}

/// Every call to an upstream resource goes through here, so each answer and each failure is
/// counted against that resource in the metrics (a 429 or 5xx answer is a failure).
/// A call of the edge's own on `upstream` (no body): with the client's headers as a forwarded
/// call has them, when it is made for a client, and the resource's credential. The answer's
/// body is the caller's to read. A failed send is logged (without the credential) by
/// [`send_upstream`].
pub(crate) async fn own_call(
    state: &EdgeState,
    snapshot: &CatalogSnapshot,
    upstream: &UpstreamResource,
    method: http::Method,
    uri: http::Uri,
    client_headers: Option<&http::HeaderMap>,
) -> Result<Response<crate::upstream::UpstreamBody>, ProxyError> {
    let mut upstream_headers = match client_headers {
        Some(client) => headers::for_upstream(client.clone()),
        None => http::HeaderMap::new(),
    };
    upstream_headers.remove(http::header::CONTENT_TYPE);
    authorize_upstream(state, snapshot, upstream, &mut upstream_headers)?;
    let mut request = Request::new(crate::body::full(bytes::Bytes::new()));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = upstream_headers;
    send_upstream(state, upstream, request).await
}

pub(crate) async fn send_upstream(
    state: &EdgeState,
    upstream: &UpstreamResource,
    request: Request<EdgeBody>,
) -> Result<Response<crate::upstream::UpstreamBody>, ProxyError> {
    let response = state
        .upstream
        .send(request)
        .await
        .map_err(|e| upstream_failure(state, upstream, e))?;
    state
        .metrics
        .upstream_answered(&upstream.id, response.status());
    Ok(response)
}

/// What the caller is told when an upstream fails: which resource (by its friendly name) and
/// what happened, never its address or the transport's words (logged for operators instead).
fn upstream_failure(
    state: &EdgeState,
    upstream: &UpstreamResource,
    error: UpstreamError,
) -> ProxyError {
    tracing::warn!(resource = %upstream.id, %error, "upstream call failed");
    let why = match error {
        UpstreamError::Timeout(_) => UpstreamFailure::Timeout,
        UpstreamError::Connect(_) => UpstreamFailure::Unreachable,
        UpstreamError::Request(_) => UpstreamFailure::Broken,
    };
    state.metrics.upstream_failed(&upstream.id, why);
    let name = &upstream.friendly_name;
    match error {
        UpstreamError::Timeout(after) => ProxyError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "Upstream '{name}' did not answer within {} s.",
                after.as_secs()
            ),
        ),
        UpstreamError::Connect(_) => ProxyError::new(
            StatusCode::BAD_GATEWAY,
            format!("Upstream '{name}' could not be reached."),
        )
        .not_delivered(),
        UpstreamError::Request(_) => ProxyError::new(
            StatusCode::BAD_GATEWAY,
            format!("Upstream '{name}' failed before answering."),
        ),
    }
}
