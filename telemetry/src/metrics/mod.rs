//! Metrics for both binaries: one OpenTelemetry meter provider, read two ways — exported over
//! OTLP every `OTEL_METRIC_EXPORT_INTERVAL` when an endpoint is set, and rendered as Prometheus
//! text on `GET /metrics` at `AIPROXY_METRICS_ADDR` when that is set (`prometheus`, `scrape`).
//! Instruments are made once from [`meter`] and recorded on as the work happens.
//!
//! With neither set no provider exists: [`meter`] hands out no-op instruments, and [`metrics_on`]
//! is false so callers can skip building attributes altogether.

mod prometheus;
mod scrape;

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::metrics::Meter;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::PeriodicReader;
use opentelemetry_sdk::metrics::SdkMeterProvider;

pub use prometheus::{CONTENT_TYPE, PrometheusReader, label_name, metric_name, render};
pub(crate) use scrape::ScrapeServer;

use crate::{ExportProtocol, Settings, TelemetryError};

/// Set once a meter provider is installed.
static METRICS_ON: AtomicBool = AtomicBool::new(false);

/// The HTTP semantic conventions' advised buckets for `http.server.request.duration` (seconds),
/// for both binaries.
pub const HTTP_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Whether metrics are collected (an OTLP endpoint or `AIPROXY_METRICS_ADDR` is set). Check it
/// before preparing a measurement's attributes: when false every instrument is a no-op.
pub fn metrics_on() -> bool {
    METRICS_ON.load(Ordering::Relaxed)
}

/// The meter to make instruments from: the installed provider's, or a no-op one. Make
/// instruments after [`crate::init`].
pub fn meter(name: &'static str) -> Meter {
    opentelemetry::global::meter(name)
}

/// The meter provider when metrics are wanted: an OTLP periodic reader when an endpoint is set,
/// and `prometheus` (the `/metrics` reader) when given. `None` builds nothing.
pub fn meter_provider(
    settings: &Settings,
    resource: Resource,
    prometheus: Option<PrometheusReader>,
) -> Result<Option<SdkMeterProvider>, TelemetryError> {
    if settings.metrics_endpoint.is_none() && prometheus.is_none() {
        return Ok(None);
    }
    let mut builder = SdkMeterProvider::builder().with_resource(resource);
    if let Some(endpoint) = &settings.metrics_endpoint {
        // As for spans (`crate::tracer_provider`): tonic on the export runtime, given the
        // endpoint; the HTTP exporter reads it itself.
        let exporter = match settings.metrics_protocol {
            ExportProtocol::Grpc => {
                let _on = crate::export::runtime()?.enter();
                opentelemetry_otlp::MetricExporter::builder()
                    .with_tonic()
                    .with_endpoint(endpoint)
                    .with_temporality(settings.metrics_temporality)
                    .build()?
            }
            ExportProtocol::HttpProtobuf => opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_temporality(settings.metrics_temporality)
                .build()?,
        };
        // Exports from the SDK's own thread, like spans (`tracer_provider`).
        let mut reader = PeriodicReader::builder(exporter);
        if let Some(interval) = settings.metric_export_interval {
            reader = reader.with_interval(interval);
        }
        builder = builder.with_reader(reader.build());
    }
    if let Some(prometheus) = prometheus {
        builder = builder.with_reader(prometheus);
    }
    Ok(Some(builder.build()))
}

/// Makes `provider` the one [`meter`] draws from.
pub(crate) fn install(provider: &SdkMeterProvider) {
    opentelemetry::global::set_meter_provider(provider.clone());
    METRICS_ON.store(true, Ordering::Relaxed);
}

#[cfg(test)]
mod tests;
