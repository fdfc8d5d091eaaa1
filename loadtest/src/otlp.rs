//! An in-process OTLP collector for tests, on 127.0.0.1: a tonic server implementing
//! `opentelemetry-proto`'s trace and metrics services (OTLP/gRPC) and a hyper server taking
//! `POST /v1/traces` and `POST /v1/metrics` (OTLP/HTTP protobuf), keeping every span and metric
//! either receives ([`OtlpCollector`]); [`CountingSink`] only counts spans, for benchmarks.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric, number_data_point};
use opentelemetry_proto::tonic::trace::v1::Span;

/// A span as the collector received it, with its resource's attributes.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub resource: Vec<KeyValue>,
    pub span: Span,
}

impl ReceivedSpan {
    pub fn service_name(&self) -> Option<String> {
        find(&self.resource, "service.name").and_then(as_string)
    }

    pub fn attr(&self, key: &str) -> Option<&Value> {
        find(&self.span.attributes, key)
    }

    pub fn str_attr(&self, key: &str) -> Option<String> {
        self.attr(key).and_then(as_string)
    }

    pub fn int_attr(&self, key: &str) -> Option<i64> {
        match self.attr(key)? {
            Value::IntValue(v) => Some(*v),
            _ => None,
        }
    }

    pub fn trace_id_hex(&self) -> String {
        hex(&self.span.trace_id)
    }

    pub fn span_id_hex(&self) -> String {
        hex(&self.span.span_id)
    }

    pub fn parent_span_id_hex(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    /// Every string in the span: its name, its attributes' and its resource's values and keys.
    pub fn strings(&self) -> Vec<String> {
        let mut out = vec![self.span.name.clone()];
        for kv in self.span.attributes.iter().chain(&self.resource) {
            out.push(kv.key.clone());
            if let Some(v) = kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                out.push(format!("{v:?}"));
            }
        }
        for event in &self.span.events {
            out.push(event.name.clone());
            for kv in &event.attributes {
                out.push(format!("{kv:?}"));
            }
        }
        out
    }
}

fn find<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn as_string(value: &Value) -> Option<String> {
    match value {
        Value::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A metric as the collector received it (one export's data points), with its resource.
#[derive(Debug, Clone)]
pub struct ReceivedMetric {
    pub resource: Vec<KeyValue>,
    pub metric: Metric,
}

/// One data point, whatever the metric's kind: sums and gauges carry `value`; histograms their
/// `count` and `sum` (in `value`).
#[derive(Debug, Clone)]
pub struct ReceivedPoint {
    pub attributes: Vec<KeyValue>,
    pub time_unix_nano: u64,
    pub value: f64,
    pub count: u64,
}

impl ReceivedPoint {
    pub fn str_attr(&self, key: &str) -> Option<String> {
        find(&self.attributes, key).and_then(as_string)
    }
}

impl ReceivedMetric {
    pub fn service_name(&self) -> Option<String> {
        find(&self.resource, "service.name").and_then(as_string)
    }

    pub fn points(&self) -> Vec<ReceivedPoint> {
        let number = |p: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint| {
            let value = match p.value {
                Some(number_data_point::Value::AsInt(v)) => v as f64,
                Some(number_data_point::Value::AsDouble(v)) => v,
                None => 0.0,
            };
            ReceivedPoint {
                attributes: p.attributes.clone(),
                time_unix_nano: p.time_unix_nano,
                value,
                count: 1,
            }
        };
        match &self.metric.data {
            Some(metric::Data::Sum(sum)) => sum.data_points.iter().map(number).collect(),
            Some(metric::Data::Gauge(gauge)) => gauge.data_points.iter().map(number).collect(),
            Some(metric::Data::Histogram(histogram)) => histogram
                .data_points
                .iter()
                .map(|p| ReceivedPoint {
                    attributes: p.attributes.clone(),
                    time_unix_nano: p.time_unix_nano,
                    value: p.sum.unwrap_or_default(),
                    count: p.count,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Keeps every span and metric (the tests' collector).
#[derive(Clone, Default)]
pub struct Received {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    metrics: Arc<Mutex<Vec<ReceivedMetric>>>,
}

/// What a [`Collector`] does with what it receives, over either protocol.
pub trait Keep: Clone + Default + Send + Sync + 'static {
    fn keep(&self, request: ExportTraceServiceRequest);
    fn keep_metrics(&self, request: ExportMetricsServiceRequest);
}

impl Keep for Received {
    fn keep_metrics(&self, request: ExportMetricsServiceRequest) {
        let mut received = self.metrics.lock().unwrap();
        for resource_metrics in request.resource_metrics {
            let resource = resource_metrics
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default();
            for scope in resource_metrics.scope_metrics {
                for metric in scope.metrics {
                    received.push(ReceivedMetric {
                        resource: resource.clone(),
                        metric,
                    });
                }
            }
        }
    }

    fn keep(&self, request: ExportTraceServiceRequest) {
        let mut received = self.spans.lock().unwrap();
        for resource_spans in request.resource_spans {
            let resource = resource_spans
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    received.push(ReceivedSpan {
                        resource: resource.clone(),
                        span,
                    });
                }
            }
        }
    }
}

/// The OTLP/gRPC services of a [`Keep`].
#[derive(Clone)]
struct Services<K>(K);

#[tonic::async_trait]
impl<K: Keep> TraceService for Services<K> {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.keep(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl<K: Keep> MetricsService for Services<K> {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.keep_metrics(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

/// Serves `keep` over OTLP/gRPC on `grpc` and OTLP/HTTP on `http` until the sender is dropped.
fn serve<K: Keep>(
    grpc: tokio::net::TcpListener,
    http: tokio::net::TcpListener,
    keep: K,
) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let services = Services(keep.clone());
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(services.clone()))
            .add_service(MetricsServiceServer::new(services))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(grpc),
                async {
                    let _ = stopped.await;
                },
            )
            .await;
    });
    tokio::spawn(serve_http(http, keep));
    stop
}

/// A collector on loopback: OTLP/gRPC and OTLP/HTTP, each request given to its [`Keep`]; stops
/// when dropped.
pub struct Collector<K> {
    addr: SocketAddr,
    http_addr: SocketAddr,
    kept: K,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// The tests' collector: keeps every span and metric.
pub type OtlpCollector = Collector<Received>;

/// Counts the spans it receives (and takes metrics without keeping them): for benchmarks, where
/// keeping every span would grow without bound.
pub type CountingSink = Collector<Counted>;

impl<K: Keep> Collector<K> {
    /// OTLP/gRPC on `grpc`, OTLP/HTTP on `http` (keep both on loopback).
    pub async fn start_on(grpc: SocketAddr, http: SocketAddr) -> std::io::Result<Self> {
        let grpc = tokio::net::TcpListener::bind(grpc).await?;
        let http = tokio::net::TcpListener::bind(http).await?;
        let (addr, http_addr) = (grpc.local_addr()?, http.local_addr()?);
        let kept = K::default();
        let stop = serve(grpc, http, kept.clone());
        Ok(Self {
            addr,
            http_addr,
            kept,
            _stop: stop,
        })
    }

    /// What `OTEL_EXPORTER_OTLP_ENDPOINT` should say for OTLP/gRPC.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What `OTEL_EXPORTER_OTLP_ENDPOINT` should say for OTLP/HTTP (`/v1/traces` is appended).
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http_addr)
    }
}

impl OtlpCollector {
    /// On free loopback ports.
    pub async fn start() -> Self {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::start_on(loopback, loopback)
            .await
            .expect("bind the OTLP collector")
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.kept.spans.lock().unwrap().clone()
    }

    /// Every metric of every export received so far (cumulative: later exports repeat them).
    pub fn metrics(&self) -> Vec<ReceivedMetric> {
        self.kept.metrics.lock().unwrap().clone()
    }
}

impl CountingSink {
    /// Spans received so far.
    pub fn spans(&self) -> u64 {
        self.kept.0.load(Ordering::Relaxed)
    }
}

/// OTLP/HTTP with protobuf bodies: `POST /v1/traces` and `/v1/metrics`; runs until the test's
/// runtime ends.
async fn serve_http<K: Keep>(listener: tokio::net::TcpListener, keep: K) {
    use http_body_util::{BodyExt as _, Full};
    use prost::Message as _;
    while let Ok((stream, _)) = listener.accept().await {
        let keep = keep.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let keep = keep.clone();
                    async move {
                        let path = request.uri().path().to_string();
                        let body = request.into_body().collect().await.map(|b| b.to_bytes());
                        let (kept, answer) = match (path.as_str(), body) {
                            ("/v1/traces", Ok(b)) => (
                                ExportTraceServiceRequest::decode(b)
                                    .map(|r| keep.keep(r))
                                    .is_ok(),
                                ExportTraceServiceResponse::default().encode_to_vec(),
                            ),
                            ("/v1/metrics", Ok(b)) => (
                                ExportMetricsServiceRequest::decode(b)
                                    .map(|r| keep.keep_metrics(r))
                                    .is_ok(),
                                ExportMetricsServiceResponse::default().encode_to_vec(),
                            ),
                            _ => (false, Vec::new()),
                        };
                        let status = if kept { 200 } else { 400 };
                        http::Response::builder()
                            .status(status)
                            .header("content-type", "application/x-protobuf")
                            .body(Full::new(bytes::Bytes::from(answer)))
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Counts spans (see [`CountingSink`]).
#[derive(Clone, Default)]
pub struct Counted(Arc<AtomicU64>);

impl Keep for Counted {
    fn keep(&self, request: ExportTraceServiceRequest) {
        let spans: usize = (request.resource_spans.iter())
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.0.fetch_add(spans as u64, Ordering::Relaxed);
    }

    fn keep_metrics(&self, _request: ExportMetricsServiceRequest) {}
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

    use super::*;

    fn resource_spans(scopes: &[usize]) -> ResourceSpans {
        ResourceSpans {
            scope_spans: scopes
                .iter()
                .map(|&n| ScopeSpans {
                    spans: vec![Span::default(); n],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn the_counting_sink_counts_every_span_of_every_export_over_both_protocols() {
        let loopback = "127.0.0.1:0".parse().unwrap();
        let sink = CountingSink::start_on(loopback, loopback).await.unwrap();
        assert_eq!(sink.spans(), 0);
        let mut client = TraceServiceClient::connect(sink.endpoint()).await.unwrap();
        for request in [
            vec![resource_spans(&[3, 2]), resource_spans(&[1])],
            vec![resource_spans(&[4])],
            vec![],
        ] {
            client
                .export(ExportTraceServiceRequest {
                    resource_spans: request,
                })
                .await
                .unwrap();
        }
        assert_eq!(sink.spans(), 10);

        use prost::Message as _;
        let body = ExportTraceServiceRequest {
            resource_spans: vec![resource_spans(&[2, 5])],
        }
        .encode_to_vec();
        let answer = reqwest::Client::new()
            .post(format!("{}/v1/traces", sink.http_endpoint()))
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(sink.spans(), 17);
    }
}
