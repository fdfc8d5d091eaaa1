//! The request's span, exported over OpenTelemetry with the GenAI semantic conventions: which
//! operation on which model at which provider, the tokens it used, the upstream that served it,
//! and the event it was made for. Never a key, a token, a prompt or a completion.
//!
//! The span is an [`aiproxy_telemetry::ServerSpan`]: with telemetry off it is off, nothing here
//! formats or allocates, and a client's `traceparent` goes upstream untouched.

use std::sync::Arc;

use aiproxy_telemetry::ServerSpan;
use http::{HeaderMap, StatusCode};
use opentelemetry::KeyValue;

use crate::snapshot::UpstreamResource;
use crate::usage::scan::Tokens;

/// Probes are not traced or counted: they would bury the requests worth seeing. Only the two
/// probe paths themselves: a client cannot hide other calls by ending their path with one.
pub fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz")
}

/// A span for one client request, continuing the client's W3C trace context if it sent one.
/// A method outside the standard set is `_OTHER`, as the HTTP conventions say: a client's
/// made-up method is not copied into the span.
pub fn request_span(region: &Arc<str>, method: &http::Method, headers: &HeaderMap) -> ServerSpan {
    ServerSpan::start("aiproxy.edge.request", headers, || {
        vec![
            KeyValue::new(
                "http.request.method",
                aiproxy_telemetry::http_method(method.as_str()),
            ),
            KeyValue::new("aiproxy.edge.region", Arc::clone(region)),
        ]
    })
}

/// The caller is known: which event, and which route family it called.
pub fn record_call(span: &ServerSpan, event_id: &str, family: &'static str) {
    span.set(|| KeyValue::new("aiproxy.event.id", event_id.to_string()));
    // No family: the caller asked about its event, no upstream call.
    if !family.is_empty() {
        span.set(|| KeyValue::new("aiproxy.route.family", family));
        span.set(|| KeyValue::new("gen_ai.operation.name", operation_of(family)));
    }
}

/// The upstream chosen, just before the request goes to it; the span's trace context replaces
/// any the client sent, so the upstream continues this trace.
pub fn record_upstream(upstream: &UpstreamResource, headers: &mut HeaderMap) {
    let span = ServerSpan::current();
    span.set(|| KeyValue::new("aiproxy.resource.id", upstream.id.clone()));
    span.set(|| KeyValue::new("server.address", host_of(&upstream.origin).to_string()));
    if let Some(provider) = provider_of(&upstream.model_type) {
        span.set(|| KeyValue::new("gen_ai.provider.name", provider));
    }
    span.inject(headers);
}

/// The answer's status (its head: a stream may still fail later).
pub fn record_status(span: &ServerSpan, status: StatusCode) {
    span.set(|| KeyValue::new("http.response.status_code", i64::from(status.as_u16())));
    if status.is_server_error() {
        span.set_error();
    }
}

/// The usage record is made: the model asked for, the model that answered and the tokens the
/// upstream reported.
pub fn record_usage(
    span: &ServerSpan,
    family: &'static str,
    model: &str,
    response_model: Option<&str>,
    tokens: Option<Tokens>,
    unknown: bool,
) {
    if !span.is_recording() {
        return;
    }
    if !model.is_empty() {
        span.set(|| KeyValue::new("gen_ai.request.model", model.to_string()));
        span.rename(|| format!("{} {model}", operation_of(family)));
    }
    // As long as a deployment name may be: an upstream's answer does not size an attribute.
    if let Some(answered) = response_model.filter(|m| !m.is_empty() && m.len() <= 256) {
        span.set(|| KeyValue::new("gen_ai.response.model", answered.to_string()));
    }
    if let Some(tokens) = tokens {
        span.set(|| KeyValue::new("gen_ai.usage.input_tokens", saturating_i64(tokens.prompt)));
        span.set(|| {
            KeyValue::new(
                "gen_ai.usage.output_tokens",
                saturating_i64(tokens.completion),
            )
        });
    }
    if unknown {
        span.set(|| KeyValue::new("aiproxy.usage.unknown", true));
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

/// The host of a `scheme://authority` origin (never a `user:password@` in it).
fn host_of(origin: &str) -> &str {
    let authority = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    let authority = authority.split('/').next().unwrap_or(authority);
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
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
        assert_eq!(host_of("https://user:secret@x.example:443/p"), "x.example");
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
