//! A span per admin API request, exported over OpenTelemetry, and its metrics (duration by
//! method, route template and status): never the admin token, a path's values beyond the route
//! template, or a body. Both cost nothing when telemetry is off (the span is disabled at its
//! callsite, the metrics are no-ops checked first).

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;
use tracing::field::Empty;

pub(super) async fn admin_request(request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let metrics = crate::metrics::metrics();
    // A client can make up any method: it is never exported as it was sent.
    let method = aiproxy_telemetry::http_method(request.method().as_str());
    let span = tracing::info_span!(
        target: aiproxy_telemetry::SPAN_TARGET,
        "aiproxy.admin.request",
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.route = Empty,
        http.response.status_code = Empty,
    );
    // The template (`/admin/api/v1/events/{id}`), not the path: bounded, and no ids in names.
    let route = (!span.is_disabled() || metrics.on()).then(|| {
        request
            .extensions()
            .get::<MatchedPath>()
            .map_or("(unmatched)", MatchedPath::as_str)
            .to_string()
    });
    if !span.is_disabled()
        && let Some(route) = &route
    {
        span.record("http.route", route.as_str());
        // The conventions name a span of a method outside their set `HTTP {route}`.
        let verb = if method == aiproxy_telemetry::OTHER_METHOD {
            "HTTP"
        } else {
            method
        };
        aiproxy_telemetry::rename(&span, format!("{verb} {route}"));
    }
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    if !span.is_disabled() {
        span.record("http.response.status_code", i64::from(status.as_u16()));
        if status.is_server_error() {
            span.record("otel.status_code", "ERROR");
        }
    }
    if let Some(route) = &route {
        metrics.admin_answered(method, route, status.as_u16(), started.elapsed());
    }
    response
}
