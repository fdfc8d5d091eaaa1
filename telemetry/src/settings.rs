//! The telemetry settings, read once from the environment and checked at start-up: a value
//! that cannot be honoured stops the process with the variable's name and what it accepts.

use std::net::SocketAddr;
use std::time::Duration;

use opentelemetry_sdk::metrics::Temporality;

/// Where log lines go and how they look (`AIPROXY_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    Text,
    /// One JSON object per line, with `trace_id` and `span_id` inside an exported span.
    Json,
}

/// The OTLP transport (`OTEL_EXPORTER_OTLP_{TRACES,METRICS}_PROTOCOL`, else
/// `OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportProtocol {
    /// OTLP/gRPC over the tonic client both binaries already use (the default).
    Grpc,
    /// OTLP/HTTP with protobuf bodies, over reqwest.
    HttpProtobuf,
}

impl ExportProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            ExportProtocol::Grpc => "grpc",
            ExportProtocol::HttpProtobuf => "http/protobuf",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub log_format: LogFormat,
    /// The OTLP endpoint for traces; `None`: no span is exported and no OpenTelemetry layer exists.
    pub endpoint: Option<String>,
    pub protocol: ExportProtocol,
    /// The OTLP endpoint for metrics; `None`: no metric is exported over OTLP.
    pub metrics_endpoint: Option<String>,
    pub metrics_protocol: ExportProtocol,
    /// How often metrics are exported over OTLP (`OTEL_METRIC_EXPORT_INTERVAL`, milliseconds).
    pub metric_export_interval: Option<Duration>,
    /// What each OTLP metric export carries (`OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`):
    /// totals since start (cumulative, the default) or what happened since the last export
    /// (delta, for backends that add exports up).
    pub metrics_temporality: Temporality,
    /// Where `GET /metrics` (Prometheus text) is served (`AIPROXY_METRICS_ADDR`); `None`: nowhere.
    pub metrics_addr: Option<SocketAddr>,
    /// `OTEL_SERVICE_NAME` or a `service.name` in `OTEL_RESOURCE_ATTRIBUTES` names the service.
    pub service_name_given: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error("{variable}: expected {expected}, got '{value}'")]
    Invalid {
        variable: &'static str,
        expected: &'static str,
        value: String,
    },
}

impl Settings {
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `var` (the environment, or a map in tests).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let log_format = match var("AIPROXY_LOG_FORMAT").as_deref().map(str::trim) {
            None => LogFormat::Text,
            Some(v) if v.eq_ignore_ascii_case("text") => LogFormat::Text,
            Some(v) if v.eq_ignore_ascii_case("json") => LogFormat::Json,
            Some(v) => return Err(invalid("AIPROXY_LOG_FORMAT", "text or json", v)),
        };
        let disabled = match var("OTEL_SDK_DISABLED").as_deref().map(str::trim) {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(v) => return Err(invalid("OTEL_SDK_DISABLED", "true or false", v)),
        };
        let (endpoint, protocol) = otlp_target(&var, &TRACES, disabled)?;
        let (metrics_endpoint, metrics_protocol) = otlp_target(&var, &METRICS, disabled)?;
        let metric_export_interval = match var("OTEL_METRIC_EXPORT_INTERVAL") {
            None => None,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Some(Duration::from_millis(ms)),
                _ => {
                    return Err(invalid(
                        "OTEL_METRIC_EXPORT_INTERVAL",
                        "a positive number of milliseconds",
                        &v,
                    ));
                }
            },
        };
        let metrics_temporality =
            match var("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE").as_deref() {
                None => Temporality::Cumulative,
                // The SDK's own parser (case-insensitive), which would only warn and fall back.
                Some(v) => v.trim().parse::<Temporality>().map_err(|()| {
                    invalid(
                        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
                        "cumulative, delta or lowmemory",
                        v,
                    )
                })?,
            };
        let metrics_addr = match var("AIPROXY_METRICS_ADDR") {
            None => None,
            Some(v) => Some(v.trim().parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "AIPROXY_METRICS_ADDR",
                    "an address and port, e.g. 0.0.0.0:9464",
                    &v,
                )
            })?),
        };
        let service_name_given = var("OTEL_SERVICE_NAME").is_some()
            || var("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|attributes| {
                attributes
                    .split(',')
                    .any(|kv| kv.trim_start().starts_with("service.name="))
            });
        Ok(Settings {
            log_format,
            endpoint,
            protocol,
            metrics_endpoint,
            metrics_protocol,
            metric_export_interval,
            metrics_temporality,
            metrics_addr,
            service_name_given,
        })
    }
}

/// One signal's own OTLP variables (they win over the general ones).
struct SignalVariables {
    /// `otlp` (the default) or `none`: this signal is not exported at all.
    exporter: &'static str,
    endpoint: &'static str,
    protocol: &'static str,
}

const TRACES: SignalVariables = SignalVariables {
    exporter: "OTEL_TRACES_EXPORTER",
    endpoint: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    protocol: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
};

const METRICS: SignalVariables = SignalVariables {
    exporter: "OTEL_METRICS_EXPORTER",
    endpoint: "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    protocol: "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
};

/// The endpoint and protocol of one signal; no endpoint when the SDK is disabled or the
/// signal's exporter is `none`.
fn otlp_target(
    var: &impl Fn(&str) -> Option<String>,
    signal: &SignalVariables,
    disabled: bool,
) -> Result<(Option<String>, ExportProtocol), SettingsError> {
    let off = match var(signal.exporter).as_deref().map(str::trim) {
        None | Some("" | "otlp") => false,
        Some("none") => true,
        Some(v) => return Err(invalid(signal.exporter, "otlp or none", v)),
    };
    let endpoint = var(signal.endpoint)
        .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .filter(|_| !disabled && !off);
    let (protocol_var, protocol) = match var(signal.protocol) {
        Some(v) => (signal.protocol, Some(v)),
        None => (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            var("OTEL_EXPORTER_OTLP_PROTOCOL"),
        ),
    };
    let protocol = match protocol.as_deref().map(str::trim) {
        None | Some("grpc") => ExportProtocol::Grpc,
        Some("http/protobuf") => ExportProtocol::HttpProtobuf,
        Some(v) => return Err(invalid(protocol_var, "grpc or http/protobuf", v)),
    };
    if let Some(endpoint) = &endpoint
        && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
    {
        return Err(invalid(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "an http:// or https:// URL",
            endpoint,
        ));
    }
    Ok((endpoint, protocol))
}

fn invalid(variable: &'static str, expected: &'static str, value: &str) -> SettingsError {
    SettingsError::Invalid {
        variable,
        expected,
        value: value.to_string(),
    }
}
