use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use opentelemetry_sdk::metrics::Temporality;

use super::*;

fn settings(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Settings::from_lookup(|name| vars.get(name).cloned())
}

#[test]
fn without_an_endpoint_no_exporter_or_layer_is_built() {
    let s = settings(&[("OTEL_SERVICE_NAME", "x"), ("AIPROXY_LOG_FORMAT", "json")]).unwrap();
    assert_eq!(s.endpoint, None);
    assert!(tracer_provider(&s, "test").unwrap().is_none());
}

#[test]
fn sdk_disabled_wins_over_an_endpoint() {
    let s = settings(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
        ("OTEL_SDK_DISABLED", "true"),
    ])
    .unwrap();
    assert_eq!(s.endpoint, None);
    assert!(tracer_provider(&s, "test").unwrap().is_none());
}

#[test]
fn a_signal_whose_exporter_is_none_is_not_exported() {
    let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317");
    let s = settings(&[endpoint, ("OTEL_METRICS_EXPORTER", "none")]).unwrap();
    assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:4317"));
    assert_eq!(s.metrics_endpoint, None);
    let s = settings(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")]).unwrap();
    assert_eq!(s.endpoint, None);
    assert_eq!(s.metrics_endpoint.as_deref(), Some("http://127.0.0.1:4317"));
    let s = settings(&[endpoint, ("OTEL_TRACES_EXPORTER", "otlp")]).unwrap();
    assert!(s.endpoint.is_some());
    let e = settings(&[endpoint, ("OTEL_TRACES_EXPORTER", "zipkin")]).unwrap_err();
    assert!(e.to_string().starts_with("OTEL_TRACES_EXPORTER:"), "{e}");
}

#[test]
fn unsupported_values_name_their_variable() {
    let e = settings(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]).unwrap_err();
    assert!(
        e.to_string().starts_with("OTEL_EXPORTER_OTLP_PROTOCOL:"),
        "{e}"
    );
    let e = settings(&[("AIPROXY_LOG_FORMAT", "xml")]).unwrap_err();
    assert!(e.to_string().starts_with("AIPROXY_LOG_FORMAT:"), "{e}");
    let e = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "127.0.0.1:4317")]).unwrap_err();
    assert!(
        e.to_string().starts_with("OTEL_EXPORTER_OTLP_ENDPOINT:"),
        "{e}"
    );
}

#[test]
fn metrics_settings_are_read_and_checked() {
    let s = settings(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
        ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "1500"),
        ("AIPROXY_METRICS_ADDR", "127.0.0.1:9464"),
    ])
    .unwrap();
    assert_eq!(s.metrics_endpoint.as_deref(), Some("http://collector:4317"));
    assert_eq!(s.metrics_protocol, ExportProtocol::HttpProtobuf);
    assert_eq!(
        s.protocol,
        ExportProtocol::Grpc,
        "traces keep the general protocol"
    );
    assert_eq!(
        s.metric_export_interval,
        Some(std::time::Duration::from_millis(1500))
    );
    assert_eq!(s.metrics_addr, Some("127.0.0.1:9464".parse().unwrap()));
    assert_eq!(
        s.metrics_temporality,
        Temporality::Cumulative,
        "the default"
    );
    for (value, temporality) in [
        ("delta", Temporality::Delta),
        (" Delta ", Temporality::Delta),
        ("cumulative", Temporality::Cumulative),
        ("lowmemory", Temporality::LowMemory),
    ] {
        let s = settings(&[("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", value)]).unwrap();
        assert_eq!(s.metrics_temporality, temporality, "{value}");
    }
    let s = settings(&[
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317"),
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://metrics:4317"),
    ])
    .unwrap();
    assert_eq!(s.endpoint.as_deref(), Some("http://traces:4317"));
    assert_eq!(s.metrics_endpoint.as_deref(), Some("http://metrics:4317"));
    for (variable, value) in [
        ("AIPROXY_METRICS_ADDR", "9464"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "10s"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "0"),
        ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/json"),
        (
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
            "sometimes",
        ),
    ] {
        let e = settings(&[(variable, value)]).unwrap_err();
        assert!(e.to_string().starts_with(&format!("{variable}:")), "{e}");
    }
    let off = settings(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
        ("OTEL_SDK_DISABLED", "true"),
    ])
    .unwrap();
    assert_eq!(off.metrics_endpoint, None);
}

#[test]
fn protocol_and_service_name_are_read() {
    let s = settings(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=prod, service.name=edge-eu",
        ),
    ])
    .unwrap();
    assert_eq!(s.protocol, ExportProtocol::HttpProtobuf);
    assert!(s.service_name_given);
    assert_eq!(settings(&[]).unwrap().protocol, ExportProtocol::Grpc);
    assert!(!settings(&[]).unwrap().service_name_given);
}

#[tokio::test]
async fn with_an_endpoint_a_provider_is_built_for_either_protocol() {
    for protocol in ["grpc", "http/protobuf"] {
        let s = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ])
        .unwrap();
        let provider = tracer_provider(&s, "test").unwrap().expect("a provider");
        let telemetry = Telemetry {
            provider: Some(provider),
            meters: None,
            scrape: None,
        };
        assert!(telemetry.exporting());
        telemetry.shutdown().await;
    }
}

/// Log lines written to memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'w> MakeWriter<'w> for Captured {
    type Writer = Captured;
    fn make_writer(&'w self) -> Self::Writer {
        self.clone()
    }
}

fn json_lines(captured: &Captured) -> Vec<serde_json::Value> {
    let bytes = captured.0.lock().unwrap().clone();
    String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

#[test]
fn json_log_lines_carry_the_current_spans_trace_and_span_ids() {
    let s = settings(&[("AIPROXY_LOG_FORMAT", "json")]).unwrap();
    // A provider with no exporter: spans get real ids, nothing leaves the process.
    let provider = SdkTracerProvider::builder().build();
    let captured = Captured::default();
    let subscriber = subscriber(
        &s,
        EnvFilter::new("info"),
        Some(&provider),
        captured.clone(),
        false,
    );
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(n = 1, "outside");
        let span = tracing::info_span!(target: SPAN_TARGET, "request");
        let _entered = span.enter();
        tracing::info!(n = 2, "inside");
    });
    let lines = json_lines(&captured);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["fields"]["message"], "outside");
    assert!(lines[0].get("trace_id").is_none());
    assert_eq!(lines[1]["fields"]["n"], 2);
    let trace_id = lines[1]["trace_id"].as_str().unwrap();
    let span_id = lines[1]["span_id"].as_str().unwrap();
    assert_eq!(trace_id.len(), 32);
    assert_eq!(span_id.len(), 16);
    assert!(trace_id.chars().all(|c| c.is_ascii_hexdigit()) && trace_id != "0".repeat(32));
}

/// The edge's request spans are no `tracing` spans: the request future runs in the span's
/// OpenTelemetry context (`ServerSpan::context`), and log lines take their ids from it.
#[test]
fn json_log_lines_carry_the_ids_of_the_opentelemetry_context_they_run_in() {
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId};
    let s = settings(&[("AIPROXY_LOG_FORMAT", "json")]).unwrap();
    let captured = Captured::default();
    let subscriber = subscriber(&s, EnvFilter::new("info"), None, captured.clone(), false);
    let trace_id = TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap();
    let span_id = SpanId::from_hex("b7ad6b7169203331").unwrap();
    let context = opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::SAMPLED,
        true,
        Default::default(),
    ));
    tracing::subscriber::with_default(subscriber, || {
        let _current = context.attach();
        tracing::warn!("upstream call failed");
    });
    let lines = json_lines(&captured);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(lines[0]["span_id"], "b7ad6b7169203331");
}

#[test]
fn exported_spans_never_show_in_log_lines() {
    let s = settings(&[]).unwrap();
    let provider = SdkTracerProvider::builder().build();
    let captured = Captured::default();
    let subscriber = subscriber(
        &s,
        EnvFilter::new("trace"),
        Some(&provider),
        captured.clone(),
        false,
    );
    tracing::subscriber::with_default(subscriber, || {
        let span =
            tracing::info_span!(target: SPAN_TARGET, "request", gen_ai.request.model = "gpt-4o");
        let _entered = span.enter();
        tracing::info!("inside");
    });
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("inside"));
    assert!(
        !text.contains("gpt-4o") && !text.contains("request{"),
        "{text}"
    );
}

#[test]
fn without_telemetry_exported_spans_are_disabled() {
    let s = settings(&[]).unwrap();
    let subscriber = subscriber(
        &s,
        EnvFilter::new("trace"),
        None,
        Captured::default(),
        false,
    );
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!(target: SPAN_TARGET, "request");
        assert!(span.is_disabled());
    });
}

#[test]
fn a_method_outside_the_conventions_set_is_other() {
    assert_eq!(crate::http_method("PATCH"), "PATCH");
    assert_eq!(crate::http_method("TRACE"), "TRACE");
    assert_eq!(crate::http_method("BREW"), "_OTHER");
    assert_eq!(crate::http_method("get"), "_OTHER");
}
