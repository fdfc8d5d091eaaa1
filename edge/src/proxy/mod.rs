//! The request pipeline, in the order every proxied request goes through it:
//! authenticate → resolve route → check policy → choose upstream → authorise upstream →
//! forward and stream back. Each phase lives in its own module; this one only sequences them.

pub mod client_auth;
pub mod errors;
pub mod policy;
pub mod routes;

use std::sync::Arc;

use chrono::Utc;
use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use serde_json::json;

use crate::body::{EdgeBody, full, stream};
use crate::snapshot::{CatalogSnapshot, UpstreamResource};
use crate::state::EdgeState;
use crate::upstream::{UpstreamError, auth, headers, pool};
use errors::{ProxyError, json_response};
use routes::Route;

pub async fn handle(state: Arc<EdgeState>, request: Request<Incoming>) -> Response<EdgeBody> {
    match serve(&state, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn serve(
    state: &EdgeState,
    request: Request<Incoming>,
) -> Result<Response<EdgeBody>, ProxyError> {
    let snapshot = state.snapshot();
    let path = request.uri().path().to_string();
    let route = routes::resolve(request.method(), &path);
    let (operation_path, deployment) = match route {
        Route::Healthz => return Ok(Response::new(full("ok"))),
        Route::Readyz => return Ok(readiness(&snapshot)),
        Route::Unknown => return Err(ProxyError::not_found(format!("No route for {path}"))),
        Route::MethodNotAllowed => {
            return Err(ProxyError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{} is not supported on {path}", request.method()),
            ));
        }
        Route::Deployment {
            deployment,
            operation,
        } => (
            format!("/openai/deployments/{deployment}/{operation}"),
            Some(deployment),
        ),
        // The v1 API names the deployment in the body's `model`.
        Route::OpenAiV1 { operation } => (format!("/openai/v1/{operation}"), None),
    };
    if !snapshot.loaded {
        return Err(not_ready());
    }
    let caller =
        client_auth::authenticate(&snapshot, request.headers(), Utc::now().timestamp_millis())?;
    let (parts, body) = request.into_parts();
    // A JSON body is read (once) only when a rule needs it: the v1 `model`, or the token cap.
    let needs_body =
        deployment.is_none() || (caller.event.max_token_cap > 0 && is_json(&parts.headers));
    let (body, model) = if needs_body {
        let (bytes, value) = policy::read_json(body, state.max_json_body_bytes).await?;
        policy::check_token_cap(&value, caller.event.max_token_cap)?;
        let model = match deployment {
            Some(_) => None,
            None => Some(policy::model_of(&value)?.to_string()),
        };
        (full(bytes), model)
    } else {
        (stream(body), None)
    };
    let deployment = deployment.or(model.as_deref()).unwrap_or_default();
    let upstream = choose(state, &snapshot, &caller.event.id, deployment)?;
    forward(state, &snapshot, upstream, &operation_path, parts, body).await
}

fn readiness(snapshot: &CatalogSnapshot) -> Response<EdgeBody> {
    let status = if snapshot.loaded {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(
        status,
        &json!({"ready": snapshot.loaded, "catalog_version": snapshot.version}),
    )
}

fn not_ready() -> ProxyError {
    ProxyError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "This edge has not received its catalog from the control plane yet; retry shortly.",
    )
}

fn is_json(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("json"))
}

fn choose(
    state: &EdgeState,
    snapshot: &CatalogSnapshot,
    event_id: &str,
    deployment: &str,
) -> Result<Arc<UpstreamResource>, ProxyError> {
    let members = snapshot.pool(event_id, deployment).ok_or_else(|| {
        let available = snapshot.deployment_names(event_id);
        ProxyError::not_found(format!(
            "Deployment '{deployment}' not found for this event. Available deployments are: {}",
            if available.is_empty() {
                "(none)".to_string()
            } else {
                available.join(", ")
            }
        ))
    })?;
    Ok(pool::choose(members, &state.region, state.next_round_robin()).clone())
}

async fn forward(
    state: &EdgeState,
    snapshot: &CatalogSnapshot,
    upstream: Arc<UpstreamResource>,
    path: &str,
    parts: http::request::Parts,
    body: EdgeBody,
) -> Result<Response<EdgeBody>, ProxyError> {
    let target = match parts.uri.query() {
        Some(query) => format!("{}{path}?{query}", upstream.origin),
        None => format!("{}{path}", upstream.origin),
    };
    let uri: Uri = target
        .parse()
        .map_err(|_| ProxyError::bad_request("The request path or query string is not valid"))?;
    let mut upstream_headers = headers::for_upstream(parts.headers);
    auth::authorize(
        &upstream,
        snapshot,
        Utc::now().timestamp_millis(),
        state.token_margin_ms,
        &mut upstream_headers,
    )
    .map_err(|e| ProxyError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let mut request = Request::new(body);
    *request.method_mut() = parts.method;
    *request.uri_mut() = uri;
    *request.headers_mut() = upstream_headers;

    let response = state
        .upstream
        .send(request)
        .await
        .map_err(|e| upstream_failure(&upstream, e))?;
    let (mut parts, body) = response.into_parts();
    parts.headers = headers::for_client(parts.headers);
    Ok(Response::from_parts(parts, stream(body)))
}

fn upstream_failure(upstream: &UpstreamResource, error: UpstreamError) -> ProxyError {
    let status = match error {
        UpstreamError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    };
    tracing::warn!(resource = %upstream.id, %error, "upstream call failed");
    ProxyError::new(
        status,
        format!(
            "Upstream '{}' ({}) failed: {error}",
            upstream.friendly_name, upstream.origin
        ),
    )
}
