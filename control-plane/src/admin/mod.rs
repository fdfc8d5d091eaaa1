//! The admin HTTP API (`/admin/api/v1/…`): JSON over axum, `Authorization: Bearer <admin token>` on
//! every route but `/healthz`. One module per resource family; errors map to HTTP in `error.rs`.

mod attendees;
mod edges;
pub mod error;
mod events;
mod fields;
mod resources;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};

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

pub fn router(state: AdminState) -> Router {
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
        .route("/openapi.json", get(openapi))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_admin_token,
        ));
    Router::new()
        .nest("/admin/api/v1", api)
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
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
