//! Logging and OpenTelemetry for both binaries: one place reads the standard `OTEL_*` variables,
//! `AIPROXY_LOG_FORMAT` and `AIPROXY_METRICS_ADDR`, installs the `tracing` subscriber and the
//! meter provider (`metrics`), and flushes what is buffered at shutdown.
//!
//! Without `OTEL_EXPORTER_OTLP_ENDPOINT` (or with `OTEL_SDK_DISABLED=true`) no tracer provider,
//! exporter or OpenTelemetry layer exists: spans made with [`SPAN_TARGET`] are disabled at their
//! callsite, so their fields are never evaluated and recording on them is a no-op; a
//! [`ServerSpan`] is off.
//!
//! Two kinds of exported spans: the edge's request spans are [`ServerSpan`]s, made with the
//! OpenTelemetry API directly because they are on the hot path; the control plane's (admin calls,
//! Sync sessions, token mints) are `tracing` spans bridged by `tracing-opentelemetry`. Those
//! use `target: aiproxy_telemetry::SPAN_TARGET`; the log output never
//! shows them (so log lines look the same whether telemetry is on or off), and the OpenTelemetry
//! layer sees nothing else (library spans from hyper, h2 or sqlx are not exported).

mod export;
mod json;
pub mod metrics;
mod propagation;
mod settings;
mod span;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::BatchSpanProcessor;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

pub use metrics::{meter, metrics_on};
pub use propagation::rename;
pub use settings::{ExportProtocol, LogFormat, Settings, SettingsError};
pub use span::ServerSpan;

/// The `tracing` target of every span that is exported (and never logged).
pub const SPAN_TARGET: &str = "aiproxy_span";

/// `http.request.method` of a method outside the HTTP semantic conventions' set.
pub const OTHER_METHOD: &str = "_OTHER";

/// `http.request.method` for spans and metrics: a method of the HTTP semantic conventions' set,
/// or [`OTHER_METHOD`] (a client can make up any method; it never becomes an attribute or a
/// label).
pub fn http_method(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => OTHER_METHOD,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("RUST_LOG: {0}")]
    Filter(String),
    #[error("OTEL_EXPORTER_OTLP_ENDPOINT: the OTLP exporter could not be built: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("AIPROXY_METRICS_ADDR: cannot listen on {addr}: {source}")]
    MetricsListener {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("the OTLP export runtime could not be started: {0}")]
    ExportRuntime(String),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// What [`init`] set up; call [`Telemetry::shutdown`] once the servers have stopped so buffered
/// spans and the last metrics are exported before the process exits.
#[must_use = "call shutdown() after the servers stop, or buffered spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    meters: Option<SdkMeterProvider>,
    scrape: Option<metrics::ScrapeServer>,
}

impl Telemetry {
    /// Spans are exported (an endpoint is set and the SDK is not disabled).
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Where `GET /metrics` is served, when it is.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.scrape.as_ref().map(|s| s.addr)
    }

    /// Exports what is buffered and stops the exporters (at most their timeouts) and the
    /// `/metrics` listener.
    pub async fn shutdown(self) {
        if let Some(scrape) = &self.scrape {
            scrape.stop();
        }
        // Each provider's shutdown blocks until its export thread has exported (at most the
        // export timeout): a blocking task, not this runtime's thread.
        if let Some(provider) = self.provider {
            span::install(None);
            flushed(tokio::task::spawn_blocking(move || provider.shutdown()).await);
        }
        if let Some(meters) = self.meters {
            flushed(tokio::task::spawn_blocking(move || meters.shutdown()).await);
        }
    }
}

fn flushed(result: Result<opentelemetry_sdk::error::OTelSdkResult, tokio::task::JoinError>) {
    match result {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "flushing telemetry at shutdown failed"),
        Err(error) => tracing::warn!(%error, "flushing telemetry at shutdown failed"),
    }
}

/// Installs logging (and, when configured, trace and metric export and the `/metrics` listener)
/// for the process from its environment.
/// `service` names the service unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` does;
/// `default_filter` applies when `RUST_LOG` is unset. Call inside the Tokio runtime.
pub fn init(service: &'static str, default_filter: &str) -> Result<Telemetry, TelemetryError> {
    let settings = Settings::from_env()?;
    let prometheus = settings
        .metrics_addr
        .map(|_| metrics::PrometheusReader::default());
    let meters =
        metrics::meter_provider(&settings, resource(&settings, service), prometheus.clone())?;
    let scrape = match (settings.metrics_addr, prometheus) {
        (Some(addr), Some(reader)) => Some(
            metrics::ScrapeServer::start(addr, reader)
                .map_err(|source| TelemetryError::MetricsListener { addr, source })?,
        ),
        _ => None,
    };
    if let Some(meters) = &meters {
        metrics::install(meters);
    }
    // After the meters: the SDK's batch span processor counts the spans it exports and those it
    // drops (`otel.sdk.processor.span.processed`) with the meter installed when it is made.
    let provider = tracer_provider(&settings, service)?;
    // The edge's request spans; installed here, not by `tracer_provider`, which tests call freely.
    span::install(provider.as_ref().map(|p| p.tracer("aiproxy")));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let filter = log_filter(default_filter)?;
    subscriber(&settings, filter, provider.as_ref(), std::io::stdout, ansi)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    if let Some(endpoint) = &settings.endpoint {
        tracing::info!(%endpoint, protocol = settings.protocol.as_str(), "exporting traces over OTLP");
    }
    if let Some(endpoint) = &settings.metrics_endpoint {
        tracing::info!(%endpoint, protocol = settings.metrics_protocol.as_str(), "exporting metrics over OTLP");
    }
    if let Some(scrape) = &scrape {
        tracing::info!(addr = %scrape.addr, "serving Prometheus metrics at /metrics");
    }
    Ok(Telemetry {
        provider,
        meters,
        scrape,
    })
}

/// The service's resource: `service` as its name unless `OTEL_SERVICE_NAME` or
/// `OTEL_RESOURCE_ATTRIBUTES` names it, plus those attributes and the SDK's.
fn resource(settings: &Settings, service: &'static str) -> Resource {
    let mut resource = Resource::builder();
    if !settings.service_name_given {
        resource = resource.with_service_name(service);
    }
    resource.build()
}

/// `RUST_LOG`, else `default_filter`.
fn log_filter(default_filter: &str) -> Result<EnvFilter, TelemetryError> {
    match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => {
            EnvFilter::try_new(value).map_err(|e| TelemetryError::Filter(e.to_string()))
        }
        _ => EnvFilter::try_new(default_filter).map_err(|e| TelemetryError::Filter(e.to_string())),
    }
}

/// The tracer provider when spans are to be exported; `None` builds nothing at all.
pub fn tracer_provider(
    settings: &Settings,
    service: &'static str,
) -> Result<Option<SdkTracerProvider>, TelemetryError> {
    let exporter = match (settings.protocol, &settings.endpoint) {
        (_, None) => return Ok(None),
        // tonic's channel runs on the export runtime (see `export`).
        (ExportProtocol::Grpc, Some(endpoint)) => {
            let _on = export::runtime()?.enter();
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()?
        }
        // The exporter reads the endpoint itself: it appends `/v1/traces` to the general
        // variable, not to the signal's own. Both read `OTEL_EXPORTER_OTLP_HEADERS` themselves.
        (ExportProtocol::HttpProtobuf, Some(_)) => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build()?,
    };
    // The SDK's own export thread; batch size and delay from `OTEL_BSP_*`. An ended span goes
    // into a queue without waking anything; the thread wakes when a batch is full or the delay
    // is up. (The Tokio-runtime processor sends every span to its task as a message: a task
    // wake-up per request on the proxy's core.) OTLP/HTTP uses reqwest's blocking client, made
    // for threads like this one. The thread exports below the requests' priority (`export`).
    let processor = BatchSpanProcessor::builder(export::Background(exporter)).build();
    // The sampler comes from `OTEL_TRACES_SAMPLER`/`_ARG` (default: parent-based, always on).
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource(settings, service))
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok(Some(provider))
}

/// The subscriber: log lines (text or JSON) filtered by `filter`, plus the OpenTelemetry layer
/// (only for [`SPAN_TARGET`] spans) when `provider` is given.
pub fn subscriber<W>(
    settings: &Settings,
    filter: EnvFilter,
    provider: Option<&SdkTracerProvider>,
    writer: W,
    ansi: bool,
) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = filter.add_directive(
        format!("{SPAN_TARGET}=off")
            .parse()
            .expect("a valid directive"),
    );
    let logs = match settings.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .event_format(json::JsonWithTraceIds::default())
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
    };
    // No provider, no layer: an `Option` layer that is `None` would enable every span.
    let layers = match provider {
        None => logs,
        Some(provider) => logs
            .and_then(
                tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("aiproxy"))
                    .with_location(false)
                    .with_threads(false)
                    .with_target(false)
                    .with_tracked_inactivity(false)
                    .with_filter(Targets::new().with_target(SPAN_TARGET, tracing::Level::TRACE)),
            )
            .boxed(),
    };
    tracing_subscriber::registry().with(layers)
}

#[cfg(test)]
mod tests;
