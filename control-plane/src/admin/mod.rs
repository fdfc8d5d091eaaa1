//! The admin HTTP API (`/admin/api/v1/…`): JSON over axum (CSV for usage exports), `Authorization: Bearer <admin token>` on
//! every route but `/healthz`. One module per resource family; errors map to HTTP in `error.rs`;
//! request bodies are bounded in `body.rs`; every response gets the headers of
//! `security_headers.rs`; `server.rs` runs the HTTP server with its timeouts and limits.

mod attendees;
pub mod body;
mod edges;
pub mod error;
mod events;
mod fields;
mod resources;
pub mod security_headers;
pub mod server;
mod trace;
mod usage;
mod usage_csv;

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use tower_http::services::{ServeDir, ServeFile};

use crate::catalog::service::Catalog;
use crate::secrets::Secret;
use crate::sync::edges::EdgeRegistry;
use crate::tokens::TokenBroker;
use error::ApiError;

#[derive(Clone)]
pub struct AdminState {
    pub catalog: Arc<Catalog>,
    pub edges: EdgeRegistry,
    pub tokens: Arc<TokenBroker>,
    pub admin_token: Secret,
}

pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// The admin API, plus the console's static files from `web_dir` at `/` (client-side routes fall
/// back to `index.html`).
pub fn router_with_console(state: AdminState, web_dir: &Path) -> Router {
    let index = web_dir.join("index.html");
    let with_console = if index.exists() {
        tracing::info!(dir = %web_dir.display(), "serving the admin console at /");
        api_router(state).fallback_service(ServeDir::new(web_dir).fallback(ServeFile::new(index)))
    } else {
        tracing::warn!(dir = %web_dir.display(), "admin console not built (no index.html): only the API is served; scripts/run.sh builds it");
        api_router(state).fallback(console_missing)
    };
    with_console.layer(middleware::from_fn(security_headers::add_security_headers))
}

async fn console_missing() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "The admin console is not built: run `npm ci && npm run build` in admin-web (scripts/run.sh does it), or use the API under /admin/api/v1",
    )
}

/// The admin API alone.
pub fn router(state: AdminState) -> Router {
    api_router(state).layer(middleware::from_fn(security_headers::add_security_headers))
}

fn api_router(state: AdminState) -> Router {
    let api = Router::new()
        .route("/resources", get(resources::list).post(resources::create))
        .route(
            "/resources/{id}",
            get(resources::get)
                .put(resources::update)
                .delete(resources::delete),
        )
        .route("/events", get(events::list).post(events::create))
        .route(
            "/events/{id}",
            get(events::get).put(events::update).delete(events::delete),
        )
        .route(
            "/events/{id}/attendees",
            get(attendees::list).post(attendees::create),
        )
        .route(
            "/events/{id}/attendees/{user_id}",
            put(attendees::set_active),
        )
        .route("/edges", get(edges::list))
        .route("/usage", get(usage::report))
        .route("/openapi.json", get(openapi))
        .fallback(api_not_found)
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_admin_token,
        ))
        .layer(middleware::from_fn(trace::admin_request));
    Router::new()
        .nest("/admin/api/v1", api)
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

async fn api_not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        format!(
            "No admin API route {}: see /admin/api/v1/openapi.json",
            uri.path()
        ),
    )
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

async fn require_admin_token(
    State(state): State<AdminState>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(token) if state.admin_token.matches(token.trim()) => next.run(request).await,
        Some(_) => ApiError::unauthorized("invalid admin token").into_response(),
        None => ApiError::unauthorized(
            "missing admin token: send 'Authorization: Bearer <AIPROXY_ADMIN_TOKEN>'",
        )
        .into_response(),
    }
}
