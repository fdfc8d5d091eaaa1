//! W3C trace context across the edge: a client's `traceparent`/`tracestate` become the parent of
//! the request's span, and the span's own context goes upstream. Both are no-ops when the span is
//! disabled (telemetry off), so headers then pass exactly as the client sent them.

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

struct Extract<'a>(&'a HeaderMap);

impl Extractor for Extract<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct Inject<'a>(&'a mut HeaderMap);

impl Injector for Inject<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Makes the trace context in `headers` (if any, and valid) the parent of `span`.
pub fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    if span.is_disabled() {
        return;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Extract(headers)));
    // Fails only if the span has already started; it has not.
    let _ = span.set_parent(parent);
}

/// Replaces any trace context in `headers` with `span`'s, so the next hop continues its trace.
pub fn inject_trace(span: &tracing::Span, headers: &mut HeaderMap) {
    if span.is_disabled() {
        return;
    }
    let context = span.context();
    // A span the OpenTelemetry layer does not know (a library's, logged at `trace`) has no
    // trace context: the client's headers then pass as sent.
    if !context.span().span_context().is_valid() {
        return;
    }
    headers.remove("traceparent");
    headers.remove("tracestate");
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut Inject(headers))
    });
}

/// Renames `span` once its name is known (e.g. `chat gpt-4o`), even after it has started:
/// tracing-opentelemetry honours `otel.name` only before the span starts.
pub fn rename(span: &tracing::Span, name: String) {
    if span.is_disabled() {
        return;
    }
    span.context().span().update_name(name);
}
