//! The request's span, exported over OpenTelemetry with the GenAI semantic conventions: which
//! operation on which model at which provider, the tokens it used, the upstream that served it,
//! and the event it was made for. Never a key, a token, a prompt or a completion.
//!
//! With telemetry off the span is disabled at its callsite: nothing here formats or allocates,
//! and a client's `traceparent` goes upstream untouched (`aiproxy_telemetry` documents both).

use http::{HeaderMap, StatusCode};
use tracing::Span;
use tracing::field::Empty;

use crate::snapshot::UpstreamResource;
use crate::usage::scan::Tokens;

/// Probes are not traced or counted: they would bury the requests worth seeing. Only the two
/// probe paths themselves: a client cannot hide other calls by ending their path with one.
pub fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz")
}

/// A span for one client request, continuing the client's W3C trace context if it sent one.
pub fn request_span(region: &str, method: &http::Method, headers: &HeaderMap) -> Span {
    let span = tracing::info_span!(
        target: aiproxy_telemetry::SPAN_TARGET,
        "aiproxy.edge.request",
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method.as_str(),
        http.response.status_code = Empty,
        gen_ai.operation.name = Empty,
        gen_ai.provider.name = Empty,
        gen_ai.request.model = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        server.address = Empty,
        aiproxy.route.family = Empty,
        aiproxy.event.id = Empty,
        aiproxy.resource.id = Empty,
        aiproxy.edge.region = region,
        aiproxy.usage.unknown = Empty,
    );
    aiproxy_telemetry::continue_trace(&span, headers);
    span
}

/// The caller is known: which event, and which route family it called.
pub fn record_call(span: &Span, event_id: &str, family: &'static str) {
    if span.is_disabled() {
        return;
    }
    span.record("aiproxy.event.id", event_id);
    // No family: the caller asked about its event, no upstream call.
    if !family.is_empty() {
        span.record("aiproxy.route.family", family);
        span.record("gen_ai.operation.name", operation_of(family));
    }
}

/// The upstream chosen, just before the request goes to it; the span's trace context replaces
/// any the client sent, so the upstream continues this trace.
pub fn record_upstream(upstream: &UpstreamResource, headers: &mut HeaderMap) {
    let span = Span::current();
    if span.is_disabled() {
        return;
    }
    span.record("aiproxy.resource.id", upstream.id.as_str());
    span.record("server.address", host_of(&upstream.origin));
    if let Some(provider) = provider_of(&upstream.model_type) {
        span.record("gen_ai.provider.name", provider);
    }
    aiproxy_telemetry::inject_trace(&span, headers);
}

/// The answer's status (its head: a stream may still fail later).
pub fn record_status(span: &Span, status: StatusCode) {
    if span.is_disabled() {
        return;
    }
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
}

/// The usage record is made: the model and the tokens the upstream reported.
pub fn record_usage(
    span: &Span,
    family: &'static str,
    model: &str,
    tokens: Option<Tokens>,
    unknown: bool,
) {
    if span.is_disabled() {
        return;
    }
    if !model.is_empty() {
        span.record("gen_ai.request.model", model);
        aiproxy_telemetry::rename(span, format!("{} {model}", operation_of(family)));
    }
    if let Some(tokens) = tokens {
        // As i64: tracing-opentelemetry exports u64 values as strings.
        span.record("gen_ai.usage.input_tokens", saturating_i64(tokens.prompt));
        span.record(
            "gen_ai.usage.output_tokens",
            saturating_i64(tokens.completion),
        );
    }
    if unknown {
        span.record("aiproxy.usage.unknown", true);
    }
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `gen_ai.operation.name` for a route family: the convention's well-known values where one
/// fits, the family's own name otherwise.
pub(crate) fn operation_of(family: &'static str) -> &'static str {
    match family {
        "chat" | "responses" => "chat",
        "completions" => "text_completion",
        "agents" => "invoke_agent",
        other => other,
    }
}

/// `gen_ai.provider.name` for a resource type; search and MCP servers are no GenAI providers.
pub(crate) fn provider_of(model_type: &str) -> Option<&'static str> {
    match model_type {
        "foundry-model" => Some("azure.ai.openai"),
        "ai-inference" => Some("azure.ai.inference"),
        "foundry-agent" => Some("azure.ai.foundry"),
        _ => None,
    }
}

/// The host of a `scheme://authority` origin.
fn host_of(origin: &str) -> &str {
    let authority = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    let authority = authority.split('/').next().unwrap_or(authority);
    match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_an_origin_drops_scheme_port_and_path() {
        assert_eq!(host_of("https://x.openai.azure.com"), "x.openai.azure.com");
        assert_eq!(host_of("http://127.0.0.1:8443/openai"), "127.0.0.1");
        assert_eq!(host_of("x.example"), "x.example");
    }

    #[test]
    fn route_families_map_to_gen_ai_operations() {
        assert_eq!(operation_of("chat"), "chat");
        assert_eq!(operation_of("completions"), "text_completion");
        assert_eq!(operation_of("embeddings"), "embeddings");
        assert_eq!(operation_of("agents"), "invoke_agent");
    }

    #[test]
    fn probes_are_not_traced() {
        assert!(is_probe("/healthz") && is_probe("/readyz"));
        assert!(!is_probe("/openai/deployments/gpt/chat/completions"));
        // Not probes, whatever they end with: they are traced and counted like any call.
        assert!(!is_probe("/api/v1/healthz"));
        assert!(!is_probe("/api/v1/openai/deployments/gpt-4o/healthz"));
        assert!(!is_probe(
            "/readyz/../api/v1/openai/deployments/gpt-4o/chat/completions"
        ));
    }
}
