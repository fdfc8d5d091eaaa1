//! The control plane's metrics (OpenTelemetry instruments; exported over OTLP and shown at
//! `/metrics` by `aiproxy_telemetry`): admin API requests, Sync push latency, token mint failures,
//! and gauges read at each collection (connected edges per region, the catalog version, each
//! managed-identity token's seconds to expiry).
//!
//! The instruments are process-wide, like the meter provider they come from: the admin layer,
//! the Sync sessions and the token broker record on them without threading a handle through
//! every constructor. With metrics off they are no-ops and [`metrics`] says so before any
//! attribute is built.
//!
//! Labels are bounded: route templates (never a path's ids), methods, status codes, edge regions,
//! and the (identity, scope) pairs the catalog's resources need. Never a token or an attendee.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, ObservableGauge};

use crate::identity::TokenKey;
use crate::sync::ChangeFeed;
use crate::sync::edges::EdgeRegistry;
use crate::tokens::TokenBroker;

/// From a push inside one region (milliseconds) to a large snapshot across the world (seconds).
const PUSH_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

pub struct ControlPlaneMetrics {
    on: bool,
    admin_duration: Histogram<f64>,
    push_duration: Histogram<f64>,
    mint_failures: Counter<u64>,
}

static METRICS: OnceLock<ControlPlaneMetrics> = OnceLock::new();

/// The process's instruments, made on first use from the installed meter provider (call
/// `aiproxy_telemetry::init` first, as `main` does).
pub fn metrics() -> &'static ControlPlaneMetrics {
    METRICS.get_or_init(|| {
        ControlPlaneMetrics::new(
            &aiproxy_telemetry::meter("aiproxy-control-plane"),
            aiproxy_telemetry::metrics_on(),
        )
    })
}

impl ControlPlaneMetrics {
    pub fn new(meter: &Meter, on: bool) -> Self {
        Self {
            on,
            admin_duration: meter
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .with_description(
                    "Admin API requests: duration by method, route template and status",
                )
                .with_boundaries(aiproxy_telemetry::metrics::HTTP_BUCKETS.to_vec())
                .build(),
            push_duration: meter
                .f64_histogram("aiproxy.cp.sync.push.duration")
                .with_unit("s")
                .with_description(
                    "From sending a catalog update on a Sync stream to the edge's ACK of it",
                )
                .with_boundaries(PUSH_BUCKETS.to_vec())
                .build(),
            mint_failures: meter
                .u64_counter("aiproxy.cp.token.mint.failures")
                .with_unit("{failure}")
                .with_description("Managed-identity token mints that failed, by identity and scope")
                .build(),
        }
    }

    pub fn on(&self) -> bool {
        self.on
    }

    /// An admin API request was answered; `route` is its template.
    pub fn admin_answered(&self, method: &str, route: &str, status: u16, duration: Duration) {
        if !self.on {
            return;
        }
        self.admin_duration.record(
            duration.as_secs_f64(),
            &[
                KeyValue::new(
                    "http.request.method",
                    aiproxy_telemetry::http_method(method),
                ),
                KeyValue::new("http.route", route.to_string()),
                KeyValue::new("http.response.status_code", i64::from(status)),
            ],
        );
    }

    /// An edge ACKed an update `elapsed` after it was sent.
    pub fn pushed(&self, full: bool, elapsed: Duration) {
        if !self.on {
            return;
        }
        let update = if full { "full" } else { "delta" };
        self.push_duration.record(
            elapsed.as_secs_f64(),
            &[KeyValue::new("aiproxy.sync.update", update)],
        );
    }

    pub fn mint_failed(&self, key: &TokenKey) {
        if !self.on {
            return;
        }
        self.mint_failures.add(1, &token_labels(key));
    }
}

/// The gauges over the control plane's state, read at each collection; dropped when it stops.
pub struct StateGauges {
    _u64: Vec<ObservableGauge<u64>>,
    _f64: ObservableGauge<f64>,
}

/// Registers the gauges (nothing when metrics are off).
pub fn observe(
    edges: &EdgeRegistry,
    feed: &ChangeFeed,
    tokens: &Arc<TokenBroker>,
) -> Option<StateGauges> {
    if !metrics().on {
        return None;
    }
    Some(observe_with(
        &aiproxy_telemetry::meter("aiproxy-control-plane"),
        edges,
        feed,
        tokens,
    ))
}

pub fn observe_with(
    meter: &Meter,
    edges: &EdgeRegistry,
    feed: &ChangeFeed,
    tokens: &Arc<TokenBroker>,
) -> StateGauges {
    let edges = edges.clone();
    let connected = meter
        .u64_observable_gauge("aiproxy.cp.edges.connected")
        .with_unit("{edge}")
        .with_description("Edges with a Sync stream open to this replica, by region")
        .with_callback(move |o| {
            for (region, count) in edges.connected_by_region() {
                let region = if region.is_empty() {
                    "unset".to_string()
                } else {
                    region
                };
                o.observe(count, &[KeyValue::new("aiproxy.edge.region", region)]);
            }
        })
        .build();
    let feed = feed.clone();
    let version = meter
        .u64_observable_gauge("aiproxy.cp.catalog.version")
        .with_description("The latest catalog version this replica knows of")
        .with_callback(move |o| o.observe(feed.version(), &[]))
        .build();
    let broker = Arc::downgrade(tokens);
    let expiry = meter
        .f64_observable_gauge("aiproxy.cp.token.time_to_expiry")
        .with_unit("s")
        .with_description("Seconds until each managed-identity token expires (negative: expired), by identity and scope")
        .with_callback(move |o| {
            let Some(broker) = broker.upgrade() else {
                return;
            };
            let now = chrono::Utc::now().timestamp_millis();
            for (key, expires_on_ms) in broker.expiries() {
                let seconds = (expires_on_ms - now) as f64 / 1000.0;
                o.observe(seconds, &token_labels(&key));
            }
        })
        .build();
    StateGauges {
        _u64: vec![connected, version],
        _f64: expiry,
    }
}

fn token_labels(key: &TokenKey) -> [KeyValue; 2] {
    [
        KeyValue::new("aiproxy.identity", key.identity_label()),
        KeyValue::new("aiproxy.token.scope", key.scope.as_str()),
    ]
}

#[cfg(test)]
mod tests {
    use aiproxy_telemetry::metrics::PrometheusReader;
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::SdkMeterProvider;

    use super::*;

    #[test]
    fn admin_requests_push_latency_and_mint_failures_are_recorded_with_bounded_labels() {
        let reader = PrometheusReader::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(reader.clone())
            .build();
        let metrics = ControlPlaneMetrics::new(&provider.meter("test"), true);
        metrics.admin_answered(
            "POST",
            "/admin/api/v1/events/{id}/attendees",
            201,
            Duration::from_millis(3),
        );
        metrics.admin_answered("BREW", "(unmatched)", 404, Duration::from_millis(1));
        metrics.pushed(true, Duration::from_millis(20));
        let key = TokenKey {
            identity_client_id: None,
            scope: crate::identity::Scope::CognitiveServices,
        };
        metrics.mint_failed(&key);
        let text = reader.render();
        for line in [
            "http_server_request_duration_seconds_count{http_request_method=\"POST\",http_response_status_code=\"201\",http_route=\"/admin/api/v1/events/{id}/attendees\"} 1\n",
            "http_server_request_duration_seconds_count{http_request_method=\"_OTHER\",http_response_status_code=\"404\",http_route=\"(unmatched)\"} 1\n",
            "aiproxy_cp_sync_push_duration_seconds_count{aiproxy_sync_update=\"full\"} 1\n",
            "aiproxy_cp_token_mint_failures_total{aiproxy_identity=\"the proxy's identity\",aiproxy_token_scope=\"https://cognitiveservices.azure.com/.default\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    struct OneHourTokens;

    #[async_trait::async_trait]
    impl crate::tokens::TokenSource for OneHourTokens {
        async fn mint(
            &self,
            _: &TokenKey,
        ) -> Result<(crate::identity::AccessToken, String), String> {
            let token = crate::identity::AccessToken {
                token: crate::secrets::Secret::new("secret-token-value".to_string()),
                expires_on_ms: chrono::Utc::now().timestamp_millis() + 3_600_000,
            };
            Ok((token, "FakeCredential".into()))
        }
    }

    #[tokio::test]
    async fn the_gauges_show_connected_edges_the_catalog_version_and_token_expiry() {
        let reader = PrometheusReader::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(reader.clone())
            .build();
        let edges = EdgeRegistry::default();
        let hello = |id: &str, region: &str| aiproxy_proto::v1::Hello {
            edge_id: id.into(),
            region: region.into(),
            ..Default::default()
        };
        let _a = edges.connected(&hello("a", "swedencentral"));
        let _b = edges.connected(&hello("b", "swedencentral"));
        let gone = edges.connected(&hello("c", "eastus"));
        drop(gone);
        let feed = ChangeFeed::new();
        feed.notify(7);
        let broker = TokenBroker::new(
            Arc::new(OneHourTokens),
            Arc::new(crate::tokens::MemoryTokenCache::default()),
            crate::tokens::BrokerSettings::default(),
        );
        let key = TokenKey {
            identity_client_id: Some("11111111-2222-3333-4444-555555555555".into()),
            scope: crate::identity::Scope::AiAzure,
        };
        broker.maintain(&key).await;
        let _gauges = observe_with(&provider.meter("test"), &edges, &feed, &broker);
        let text = reader.render();
        assert!(
            text.contains("aiproxy_cp_edges_connected{aiproxy_edge_region=\"swedencentral\"} 2\n"),
            "{text}"
        );
        assert!(
            !text.contains("eastus"),
            "a gone edge is not connected: {text}"
        );
        assert!(text.contains("aiproxy_cp_catalog_version 7\n"), "{text}");
        let expiry = text
            .lines()
            .find(|l| l.starts_with("aiproxy_cp_token_time_to_expiry_seconds{"))
            .expect("a token expiry");
        assert!(
            expiry.contains(
                "aiproxy_identity=\"user-assigned 11111111-2222-3333-4444-555555555555\""
            ),
            "{expiry}"
        );
        assert!(expiry.contains("aiproxy_token_scope=\"https://ai.azure.com/.default\""));
        let seconds: f64 = expiry.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((3500.0..=3600.0).contains(&seconds), "{expiry}");
        assert!(!text.contains("secret-token-value"));
    }

    #[test]
    fn with_metrics_off_nothing_is_recorded() {
        let reader = PrometheusReader::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(reader.clone())
            .build();
        let metrics = ControlPlaneMetrics::new(&provider.meter("test"), false);
        metrics.admin_answered("GET", "/healthz", 200, Duration::from_millis(1));
        metrics.pushed(false, Duration::from_millis(1));
        assert!(!reader.render().contains("seconds"));
    }
}
