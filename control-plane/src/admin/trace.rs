//! A span per admin API request, exported over OpenTelemetry: method, matched route and status.
//! Never the admin token, a path's values beyond the route template, or a body. Disabled at its
//! callsite when telemetry is off.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;
use tracing::field::Empty;

pub(super) async fn admin_request(request: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        target: aiproxy_telemetry::SPAN_TARGET,
        "aiproxy.admin.request",
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = request.method().as_str(),
        http.route = Empty,
        http.response.status_code = Empty,
    );
    if !span.is_disabled() {
        // The template (`/admin/api/v1/events/{id}`), not the path: bounded, and no ids in names.
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or("(unmatched)", MatchedPath::as_str);
        span.record("http.route", route);
        aiproxy_telemetry::rename(&span, format!("{} {route}", request.method()));
    }
    let response = next.run(request).instrument(span.clone()).await;
    if !span.is_disabled() {
        let status = response.status();
        span.record("http.response.status_code", i64::from(status.as_u16()));
        if status.is_server_error() {
            span.record("otel.status_code", "ERROR");
        }
    }
    response
}
