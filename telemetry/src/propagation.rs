//! W3C trace context: a client's `traceparent`/`tracestate` read from its headers (written for
//! the next hop by [`crate::ServerSpan::inject`]), and spans renamed once their name is known.

use http::{HeaderMap, HeaderName};
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TraceContextExt as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

pub(crate) struct Extract<'a>(pub(crate) &'a HeaderMap);

impl Extractor for Extract<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// Renames `span` once its name is known (e.g. `chat gpt-4o`), even after it has started:
/// tracing-opentelemetry honours `otel.name` only before the span starts.
pub fn rename(span: &tracing::Span, name: String) {
    if span.is_disabled() {
        return;
    }
    span.context().span().update_name(name);
}
