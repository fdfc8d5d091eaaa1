//! Metrics end to end (issue 14): the real control plane and edge serve Prometheus text at
//! `GET /metrics` on `AIPROXY_METRICS_ADDR` and export the same instruments over OTLP. The test
//! scrapes with a real HTTP client, parses with a Prometheus text parser (`prometheus-parse`, not
//! our renderer), and checks:
//! - counters move by exactly the calls made (plain and streamed chats, a refused call, an
//!   upstream failure), and token counts equal what the mock upstream reported;
//! - the gauges over catalog, Sync, usage delivery, pool health and connected edges, and each
//!   managed-identity token's seconds to expiry and mint failures;
//! - no label holds an attendee id, a key or a token;
//! - the same metrics arrive at an in-process OTLP collector.

use std::collections::BTreeSet;
use std::time::Duration;

use aiproxy_loadtest::mock::{MockAzure, MockConfig};
use aiproxy_loadtest::otlp::{OtlpCollector, ReceivedPoint};
use aiproxy_loadtest::stack::{
    ControlPlane, ControlPlaneOptions, Edge, UPSTREAM_KEY, eventually, free_addr, keyed_mock,
    model_resource, scrape_metrics,
};
use prometheus_parse::{Sample, Scrape, Value};
use serde_json::json;

const ATTENDEE: &str = "attendee-1";

async fn chat(edge: &Edge, key: &str, deployment: &str, stream: bool) -> u16 {
    let body = json!({"messages": [{"role": "user", "content": "hi"}], "stream": stream});
    let response = edge.chat(key, deployment, &body).await;
    let status = response.status().as_u16();
    response.bytes().await.expect("the whole answer");
    status
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text")
}

fn value(sample: &Sample) -> f64 {
    match &sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
        Value::Summary(_) => f64::NAN,
    }
}

/// The sum over the series of `metric` whose labels include `labels` (0 when there is none).
fn total(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(value)
        .sum()
}

/// Sets up a mock, a control plane, an event with a `gpt-4o` resource and a `broken` one (whose
/// upstream answers 503), and one attendee.
struct Stack {
    mock: MockAzure,
    _failing: MockAzure,
    cp: ControlPlane,
    event_id: String,
    resource_id: String,
    broken_id: String,
    key: String,
}

async fn stack(cp: ControlPlane) -> Stack {
    let mock = keyed_mock(MockConfig {
        stream_chunks: 3,
        ..Default::default()
    })
    .await;
    let failing = keyed_mock(MockConfig {
        fail_with: Some(503),
        retry_after_secs: 60,
        ..Default::default()
    })
    .await;
    let admin = cp.admin();
    let resource_id = admin
        .create_resource(model_resource("gpt-4o", &mock.endpoint(), ""))
        .await;
    let broken_id = admin
        .create_resource(model_resource("broken", &failing.endpoint(), ""))
        .await;
    let (event_id, key) = admin
        .open_event(&[resource_id.clone(), broken_id.clone()])
        .await;
    Stack {
        mock,
        _failing: failing,
        cp,
        event_id,
        resource_id,
        broken_id,
        key,
    }
}

/// When Prometheus's own `promtool` is at hand (`$AIPROXY_PROMTOOL`, else on the `PATH`), its
/// `check metrics` (parser and linter) must accept `text` without a remark; without it, skipped.
async fn promtool_accepts(text: &str) {
    use tokio::io::AsyncWriteExt as _;
    let promtool = std::env::var("AIPROXY_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let child = tokio::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("{promtool} not found: the exposition is checked by prometheus-parse only");
        return;
    };
    let mut stdin = child.stdin.take().expect("promtool's stdin");
    stdin
        .write_all(text.as_bytes())
        .await
        .expect("feed promtool");
    drop(stdin);
    let output = child.wait_with_output().await.expect("promtool ran");
    let remarks = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && remarks.trim().is_empty(),
        "promtool check metrics: {remarks}\n{text}"
    );
}

/// No label of any sample, and nothing in the text, holds a secret or the attendee's id.
fn assert_no_secret(text: &str, scrape: &Scrape, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "{secret:?} in the metrics:\n{text}");
    }
    for sample in &scrape.samples {
        for (name, value) in sample.labels.iter() {
            assert!(
                !secrets.contains(&value.as_str()) && !name.contains("user"),
                "label {name}={value} on {}",
                sample.metric
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn both_binaries_serve_prometheus_metrics_that_count_exactly_what_happened() {
    let s = stack(ControlPlane::start_with_metrics(ControlPlaneOptions::default()).await).await;
    let edge = Edge::start_with_metrics(&s.cp, "swedencentral", &[]).await;
    let edge_metrics = edge.metrics_addr.expect("the edge serves /metrics");

    // Three plain and two streamed chats, one call with a wrong key, one to a failing upstream.
    for stream in [false, false, false, true, true] {
        assert_eq!(chat(&edge, &s.key, "gpt-4o", stream).await, 200);
    }
    assert_eq!(chat(&edge, "not-a-key", "gpt-4o", false).await, 401);
    assert_eq!(chat(&edge, &s.key, "broken", false).await, 503);

    let event = s.event_id.as_str();
    let ok_chats = [
        ("aiproxy_route_family", "chat"),
        ("aiproxy_event_id", event),
        ("aiproxy_resource_id", s.resource_id.as_str()),
        ("http_response_status_class", "2xx"),
    ];
    // A record is made as its answer ends: wait until all seven are counted.
    eventually(
        "the edge counts every call",
        Duration::from_secs(10),
        || async {
            let scrape = parse(&scrape_metrics(edge_metrics).await);
            total(&scrape, "aiproxy_edge_requests_total", &[]) >= 7.0
        },
    )
    .await;
    let text = scrape_metrics(edge_metrics).await;
    let edge_scrape = parse(&text);
    let t = |metric: &str, labels: &[(&str, &str)]| total(&edge_scrape, metric, labels);

    assert_eq!(t("aiproxy_edge_requests_total", &ok_chats), 5.0, "{text}");
    assert_eq!(
        t(
            "aiproxy_edge_requests_total",
            &[
                ("aiproxy_resource_id", s.broken_id.as_str()),
                ("http_response_status_class", "5xx"),
            ]
        ),
        1.0
    );
    assert_eq!(t("aiproxy_edge_requests_total", &[]), 7.0, "{text}");
    // The refused call is counted without any caller label.
    let refused: Vec<&Sample> = edge_scrape
        .samples
        .iter()
        .filter(|s| s.metric == "aiproxy_edge_requests_total")
        .filter(|s| s.labels.get("http_response_status_class") == Some("4xx"))
        .collect();
    assert_eq!(refused.len(), 1, "{text}");
    assert_eq!(value(refused[0]), 1.0);
    assert_eq!(refused[0].labels.len(), 1, "{:?}", refused[0].labels);

    // Tokens: exactly what the mock reported, by counter and by the GenAI histogram.
    let reported = s.mock.stats.usage_total();
    let input = [("gen_ai_token_type", "input"), ("aiproxy_event_id", event)];
    let output = [("gen_ai_token_type", "output"), ("aiproxy_event_id", event)];
    assert!(reported.prompt_tokens > 0);
    assert_eq!(
        t("aiproxy_edge_tokens_total", &input),
        reported.prompt_tokens as f64
    );
    assert_eq!(
        t("aiproxy_edge_tokens_total", &output),
        reported.completion_tokens as f64
    );
    let genai = [
        ("gen_ai_operation_name", "chat"),
        ("gen_ai_provider_name", "azure.ai.openai"),
        ("gen_ai_request_model", "gpt-4o"),
    ];
    let with = |extra: (&'static str, &'static str)| {
        let mut labels = genai.to_vec();
        labels.push(extra);
        labels
    };
    assert_eq!(
        t(
            "gen_ai_client_token_usage_sum",
            &with(("gen_ai_token_type", "input"))
        ),
        reported.prompt_tokens as f64
    );
    assert_eq!(
        t(
            "gen_ai_client_token_usage_sum",
            &with(("gen_ai_token_type", "output"))
        ),
        reported.completion_tokens as f64
    );
    assert_eq!(
        t(
            "gen_ai_client_token_usage_count",
            &with(("gen_ai_token_type", "input"))
        ),
        5.0
    );
    // Durations: every chat; time to first token for the two streams only.
    assert_eq!(
        t("gen_ai_server_request_duration_seconds_count", &genai),
        5.0
    );
    assert_eq!(
        t("gen_ai_server_time_to_first_token_seconds_count", &genai),
        2.0
    );
    assert_eq!(
        t(
            "gen_ai_server_request_duration_seconds_count",
            &[("gen_ai_request_model", "broken"), ("error_type", "503")]
        ),
        1.0
    );
    assert_eq!(
        t(
            "http_server_request_duration_seconds_count",
            &[
                ("aiproxy_route_family", "chat"),
                ("http_request_method", "POST"),
                ("http_response_status_code", "200"),
            ]
        ),
        5.0
    );
    assert_eq!(
        t(
            "http_server_request_duration_seconds_count",
            &[("http_response_status_code", "401")]
        ),
        1.0
    );
    assert_eq!(
        t(
            "aiproxy_edge_added_latency_seconds_count",
            &[("aiproxy_route_family", "chat")]
        ),
        6.0,
        "the five chats and the failed one reached an upstream"
    );
    // The failing member: one failure, and it is left out (its Retry-After is a minute).
    assert_eq!(
        t(
            "aiproxy_edge_upstream_failures_total",
            &[
                ("aiproxy_resource_id", s.broken_id.as_str()),
                ("aiproxy_upstream_failure", "server_error"),
            ]
        ),
        1.0
    );
    assert_eq!(
        t(
            "aiproxy_edge_pool_member_left_out",
            &[("aiproxy_resource_id", s.broken_id.as_str())]
        ),
        1.0
    );
    // Gauges over the edge's state.
    assert!(t("aiproxy_edge_catalog_version", &[]) >= 1.0, "{text}");
    assert_eq!(t("aiproxy_edge_sync_connected", &[]), 1.0);
    assert_eq!(t("aiproxy_edge_sync_age_seconds", &[]), 0.0);
    assert!(
        edge_scrape
            .samples
            .iter()
            .any(|s| s.metric == "aiproxy_edge_usage_pending"),
        "{text}"
    );
    assert!(text.contains("service_name=\"aiproxy-edge\""), "{text}");

    // The control plane: its edge, its catalog, its pushes, its admin requests.
    let cp_metrics =
        s.cp.metrics_addr
            .expect("the control plane serves /metrics");
    let cp_text = scrape_metrics(cp_metrics).await;
    let cp_scrape = parse(&cp_text);
    let c = |metric: &str, labels: &[(&str, &str)]| total(&cp_scrape, metric, labels);
    assert_eq!(
        c(
            "aiproxy_cp_edges_connected",
            &[("aiproxy_edge_region", "swedencentral")]
        ),
        1.0,
        "{cp_text}"
    );
    assert_eq!(
        c("aiproxy_cp_catalog_version", &[]),
        t("aiproxy_edge_catalog_version", &[])
    );
    assert!(c("aiproxy_cp_sync_push_duration_seconds_count", &[]) >= 1.0);
    for (route, created) in [
        ("/admin/api/v1/resources", 2.0),
        ("/admin/api/v1/events", 1.0),
    ] {
        assert_eq!(
            c(
                "http_server_request_duration_seconds_count",
                &[
                    ("http_route", route),
                    ("http_request_method", "POST"),
                    ("http_response_status_code", "201"),
                ]
            ),
            created,
            "{route}: {cp_text}"
        );
    }
    assert!(cp_text.contains("service_name=\"aiproxy-control-plane\""));

    let secrets = [
        s.key.as_str(),
        "not-a-key",
        UPSTREAM_KEY,
        ATTENDEE,
        s.cp.admin_token.as_str(),
        s.cp.edge_token.as_str(),
    ];
    assert_no_secret(&text, &edge_scrape, &secrets);
    assert_no_secret(&cp_text, &cp_scrape, &secrets);
    promtool_accepts(&text).await;
    promtool_accepts(&cp_text).await;
}

/// The OpenTelemetry names behind the Prometheus ones above.
const EDGE_METRICS: [&str; 10] = [
    "aiproxy.edge.requests",
    "aiproxy.edge.tokens",
    "gen_ai.client.token.usage",
    "gen_ai.server.request.duration",
    "gen_ai.server.time_to_first_token",
    "http.server.request.duration",
    "aiproxy.edge.added_latency",
    "aiproxy.edge.catalog.version",
    "aiproxy.edge.sync.age",
    "aiproxy.edge.usage.pending",
];
const CONTROL_PLANE_METRICS: [&str; 4] = [
    "aiproxy.cp.edges.connected",
    "aiproxy.cp.catalog.version",
    "aiproxy.cp.sync.push.duration",
    "http.server.request.duration",
];

/// Every point the collector received of the edge's input-token counter (`aiproxy.edge.tokens`).
fn input_token_points(collector: &OtlpCollector) -> Vec<ReceivedPoint> {
    collector
        .metrics()
        .iter()
        .filter(|m| m.metric.name == "aiproxy.edge.tokens")
        .flat_map(|m| m.points())
        .filter(|p| p.str_attr("gen_ai.token.type").as_deref() == Some("input"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn both_binaries_export_the_same_metrics_over_otlp() {
    let collector = OtlpCollector::start().await;
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "200".to_string()),
    ];
    let cp = ControlPlane::start_with_metrics(ControlPlaneOptions::with_env(&otel)).await;
    let s = stack(cp).await;
    let env: Vec<(&str, &str)> = otel.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let edge = Edge::start_with_metrics(&s.cp, "swedencentral", &env).await;
    for stream in [false, true] {
        assert_eq!(chat(&edge, &s.key, "gpt-4o", stream).await, 200);
    }

    let reported = s.mock.stats.usage_total();
    let exported_input_tokens = |collector: &OtlpCollector| -> f64 {
        // Cumulative: the latest export of the counter holds the total.
        input_token_points(collector)
            .into_iter()
            .max_by_key(|p| p.time_unix_nano)
            .map_or(0.0, |p| p.value)
    };
    let names = |service: &str| -> BTreeSet<String> {
        collector
            .metrics()
            .iter()
            .filter(|m| m.service_name().as_deref() == Some(service))
            .map(|m| m.metric.name.clone())
            .collect()
    };
    eventually(
        "every metric exported over OTLP",
        Duration::from_secs(15),
        || {
            let edge_names = names("aiproxy-edge");
            let cp_names = names("aiproxy-control-plane");
            let tokens = exported_input_tokens(&collector);
            async move {
                EDGE_METRICS.iter().all(|n| edge_names.contains(*n))
                    && CONTROL_PLANE_METRICS.iter().all(|n| cp_names.contains(*n))
                    && tokens == reported.prompt_tokens as f64
            }
        },
    )
    .await;

    // The same instruments, under their Prometheus names, on /metrics.
    let text = scrape_metrics(edge.metrics_addr.unwrap()).await;
    for name in [
        "aiproxy_edge_requests_total",
        "aiproxy_edge_tokens_total",
        "gen_ai_client_token_usage",
        "gen_ai_server_request_duration_seconds",
        "gen_ai_server_time_to_first_token_seconds",
        "http_server_request_duration_seconds",
        "aiproxy_edge_added_latency_seconds",
        "aiproxy_edge_catalog_version",
        "aiproxy_edge_sync_age_seconds",
        "aiproxy_edge_usage_pending",
    ] {
        assert!(text.contains(&format!("# TYPE {name} ")), "{name}: {text}");
    }

    // Nothing exported over OTLP carries a secret or the attendee either.
    for metric in collector.metrics() {
        let printed = format!("{:?}", metric.metric);
        for secret in [
            s.key.as_str(),
            UPSTREAM_KEY,
            ATTENDEE,
            s.cp.edge_token.as_str(),
        ] {
            assert!(!printed.contains(secret), "{secret:?} in {printed}");
        }
    }
}

/// With `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta` (what the Bicep sets when the
/// apps export to the metrics collector, whose Azure Monitor exporter adds exports up) each
/// export carries only what happened since the previous one: the exported points of a counter
/// add up to exactly the total however many exports there were, and counters and histograms say
/// they are deltas.
#[tokio::test(flavor = "multi_thread")]
async fn with_delta_temporality_the_exports_add_up_to_the_totals() {
    use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, metric};

    let collector = OtlpCollector::start().await;
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "100".to_string()),
        (
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
            "delta".to_string(),
        ),
    ];
    let s = stack(ControlPlane::start().await).await;
    let env: Vec<(&str, &str)> = otel.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let edge = Edge::start_with_metrics(&s.cp, "swedencentral", &env).await;
    // Every exported point of the edge's input-token counter, added up.
    let exported_input_tokens = |collector: &OtlpCollector| -> f64 {
        input_token_points(collector).iter().map(|p| p.value).sum()
    };
    for round in 1..=2 {
        assert_eq!(chat(&edge, &s.key, "gpt-4o", false).await, 200);
        let reported = s.mock.stats.usage_total().prompt_tokens as f64;
        eventually(
            "the exported deltas add up to the tokens reported",
            Duration::from_secs(15),
            || {
                let exported = exported_input_tokens(&collector);
                async move { exported == reported }
            },
        )
        .await;
        // Several more exports (every 100 ms): nothing is counted again.
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(
            exported_input_tokens(&collector),
            reported,
            "round {round}: a later export counted the same tokens again"
        );
    }
    let temporality = |name: &str| -> Vec<i32> {
        collector
            .metrics()
            .iter()
            .filter(|m| m.metric.name == name)
            .filter_map(|m| match &m.metric.data {
                Some(metric::Data::Sum(sum)) => Some(sum.aggregation_temporality),
                Some(metric::Data::Histogram(histogram)) => Some(histogram.aggregation_temporality),
                _ => None,
            })
            .collect()
    };
    for name in [
        "aiproxy.edge.tokens",
        "aiproxy.edge.requests",
        "gen_ai.client.token.usage",
        "http.server.request.duration",
    ] {
        let seen = temporality(name);
        assert!(
            !seen.is_empty()
                && seen
                    .iter()
                    .all(|t| *t == AggregationTemporality::Delta as i32),
            "{name}: {seen:?}"
        );
    }
}

const RESOURCE_CLIENT_ID: &str = "bbbbbbbb-0000-0000-0000-000000000002";
const FAILING_CLIENT_ID: &str = "cccccccc-0000-0000-0000-000000000003";
const COGNITIVE_SCOPE: &str = "https://cognitiveservices.azure.com/.default";

fn mi_resource(deployment: &str, client_id: &str) -> serde_json::Value {
    json!({
        "friendly_name": format!("{deployment} via managed identity"),
        "deployment_name": deployment,
        "model_type": "foundry-model",
        "endpoint_url": "http://127.0.0.1:9",
        "use_managed_identity": true,
        "identity_client_id": client_id,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_control_plane_shows_token_expiry_and_mint_failures_per_identity_and_scope() {
    use aiproxy_loadtest::identity::{FakeIdentityEndpoint, IdentityMode};
    let identity = FakeIdentityEndpoint::start("hdr", Duration::from_secs(3600))
        .await
        .expect("the fake identity endpoint");
    let cp = ControlPlane::start_with_metrics(ControlPlaneOptions {
        extra_env: vec![
            ("AIPROXY_CREDENTIAL".into(), "managed-identity".into()),
            ("IDENTITY_ENDPOINT".into(), identity.endpoint()),
            ("IDENTITY_HEADER".into(), identity.header().into()),
        ],
        ..Default::default()
    })
    .await;
    let admin = cp.admin();
    let minted = admin
        .create_resource(mi_resource("gpt-4o", RESOURCE_CLIENT_ID))
        .await;
    admin.wait_token(&minted, Duration::from_secs(10)).await;
    // Another identity whose mints fail.
    identity.set_mode(IdentityMode::Fail500);
    admin
        .create_resource(mi_resource("gpt-4o-mini", FAILING_CLIENT_ID))
        .await;

    let addr = cp.metrics_addr.expect("the control plane serves /metrics");
    let failing = format!("user-assigned {FAILING_CLIENT_ID}");
    eventually(
        "a mint failure counted",
        Duration::from_secs(10),
        || async {
            let scrape = parse(&scrape_metrics(addr).await);
            total(
                &scrape,
                "aiproxy_cp_token_mint_failures_total",
                &[("aiproxy_identity", failing.as_str())],
            ) >= 1.0
        },
    )
    .await;
    let text = scrape_metrics(addr).await;
    let scrape = parse(&text);
    let holder = format!("user-assigned {RESOURCE_CLIENT_ID}");
    let expiry = total(
        &scrape,
        "aiproxy_cp_token_time_to_expiry_seconds",
        &[
            ("aiproxy_identity", holder.as_str()),
            ("aiproxy_token_scope", COGNITIVE_SCOPE),
        ],
    );
    assert!((3000.0..=3600.0).contains(&expiry), "{expiry}: {text}");
    assert_eq!(
        total(
            &scrape,
            "aiproxy_cp_token_mint_failures_total",
            &[("aiproxy_identity", holder.as_str())]
        ),
        0.0
    );
    // A token that never minted has no expiry to show; no token is ever shown.
    assert!(
        !scrape.samples.iter().any(|s| {
            s.metric == "aiproxy_cp_token_time_to_expiry_seconds"
                && s.labels.get("aiproxy_identity") == Some(failing.as_str())
        }),
        "{text}"
    );
    for token in identity.issued_tokens() {
        assert!(!text.contains(&token), "a token in the metrics");
    }
    promtool_accepts(&text).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_replayed_off_an_unreachable_pool_member_is_counted_once_against_that_member() {
    let cp = ControlPlane::start_with_metrics(ControlPlaneOptions::default()).await;
    let mock = keyed_mock(MockConfig::default()).await;
    // A pool member at a loopback port nobody listens on: the connection is refused, so the
    // member surely did not take the call.
    let dead_endpoint = format!("http://{}", free_addr());
    let admin = cp.admin();
    let live_id = admin
        .create_resource(model_resource("gpt-4o", &mock.endpoint(), ""))
        .await;
    let dead_id = admin
        .create_resource(model_resource("gpt-4o", &dead_endpoint, ""))
        .await;
    let (_, key) = admin.open_event(&[live_id.clone(), dead_id.clone()]).await;
    let edge = Edge::start_with_metrics(&cp, "swedencentral", &[]).await;
    let addr = edge.metrics_addr.expect("the edge serves /metrics");

    // Round-robin over the two members: of two calls in a row, one is sent to the dead member
    // first (the other, or the rest, find it left out for 5 s), and is replayed on the live one.
    for _ in 0..2 {
        assert_eq!(chat(&edge, &key, "gpt-4o", false).await, 200);
    }
    assert_eq!(
        mock.stats.total(),
        2,
        "both calls were answered by the live member"
    );
    eventually(
        "the edge counts both calls",
        Duration::from_secs(10),
        || async {
            let scrape = parse(&scrape_metrics(addr).await);
            total(&scrape, "aiproxy_edge_requests_total", &[]) >= 2.0
        },
    )
    .await;
    let text = scrape_metrics(addr).await;
    let scrape = parse(&text);
    let t = |metric: &str, labels: &[(&str, &str)]| total(&scrape, metric, labels);
    let replays = "aiproxy_edge_upstream_replays_total";
    assert_eq!(
        t(replays, &[("aiproxy_resource_id", dead_id.as_str())]),
        1.0,
        "{text}"
    );
    assert_eq!(t(replays, &[]), 1.0, "{text}");
    let failures = "aiproxy_edge_upstream_failures_total";
    assert_eq!(
        t(
            failures,
            &[
                ("aiproxy_resource_id", dead_id.as_str()),
                ("aiproxy_upstream_failure", "unreachable"),
            ]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(t(failures, &[]), 1.0, "only the dead member failed: {text}");
    assert_eq!(
        t(
            "aiproxy_edge_pool_member_left_out",
            &[("aiproxy_resource_id", dead_id.as_str())]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        t(
            "aiproxy_edge_requests_total",
            &[("http_response_status_class", "2xx")]
        ),
        2.0,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_edge_shows_sync_lost_and_its_age_once_the_control_plane_is_killed() {
    let mut s = stack(ControlPlane::start_with_metrics(ControlPlaneOptions::default()).await).await;
    let edge = Edge::start_with_metrics(&s.cp, "swedencentral", &[]).await;
    let addr = edge.metrics_addr.expect("the edge serves /metrics");
    let sync = |scrape: &Scrape| {
        (
            total(scrape, "aiproxy_edge_sync_connected", &[]),
            total(scrape, "aiproxy_edge_sync_age_seconds", &[]),
        )
    };
    eventually("Sync is up", Duration::from_secs(10), || async {
        sync(&parse(&scrape_metrics(addr).await)) == (1.0, 0.0)
    })
    .await;

    let killed = std::time::Instant::now();
    s.cp.kill().await;
    eventually(
        "the edge shows Sync lost, with an age",
        Duration::from_secs(10),
        || async {
            let (connected, age) = sync(&parse(&scrape_metrics(addr).await));
            connected == 0.0 && age > 0.0
        },
    )
    .await;
    // The age counts from when the stream was lost: no more than since the kill, and it grows.
    let (_, first) = sync(&parse(&scrape_metrics(addr).await));
    assert!(
        first > 0.0 && first <= killed.elapsed().as_secs_f64(),
        "{first} s, killed {:?} ago",
        killed.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (connected, later) = sync(&parse(&scrape_metrics(addr).await));
    assert_eq!(connected, 0.0);
    assert!(later >= first + 0.25, "{first} s, then {later} s");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_read_behind_a_foundry_list_is_counted_as_an_upstream_failure() {
    let cp = ControlPlane::start_with_metrics(ControlPlaneOptions::default()).await;
    let mock = keyed_mock(MockConfig::default()).await;
    let admin = cp.admin();
    let agents_id = admin
        .create_resource(json!({"friendly_name": "agents", "deployment_name": "agents",
            "model_type": "Foundry_Agent", "endpoint_url": format!("{}/api/projects/hack", mock.endpoint()),
            "key": UPSTREAM_KEY}))
        .await;
    let (_, key) = admin.open_event(std::slice::from_ref(&agents_id)).await;
    let edge = Edge::start_with_metrics(&cp, "swedencentral", &[]).await;
    let addr = edge.metrics_addr.expect("the edge serves /metrics");
    let client = reqwest::Client::new();
    let assistants = format!(
        "{}/assistants?api-version=2025-05-15-preview",
        edge.api_base()
    );
    for n in 0..2 {
        let created = client
            .post(&assistants)
            .header("api-key", &key)
            .json(&json!({"model": "gpt-4o", "name": format!("assistant-{n}")}))
            .send()
            .await
            .expect("edge reachable");
        assert_eq!(created.status(), 200, "{}", created.text().await.unwrap());
    }

    // The list is made from the caller's records; each object on it is read upstream, and
    // here each read is throttled.
    mock.fail_with(Some(429));
    let listed = client
        .get(&assistants)
        .header("api-key", &key)
        .send()
        .await
        .expect("edge reachable");
    assert_eq!(listed.status(), 429);
    mock.fail_with(None);

    let text = scrape_metrics(addr).await;
    let scrape = parse(&text);
    let throttled = total(
        &scrape,
        "aiproxy_edge_upstream_failures_total",
        &[
            ("aiproxy_resource_id", agents_id.as_str()),
            ("aiproxy_upstream_failure", "throttled"),
        ],
    );
    // Both listed objects were read (the page's reads all finish before it is answered).
    assert_eq!(throttled, 2.0, "{text}");
    assert_eq!(
        total(&scrape, "aiproxy_edge_upstream_failures_total", &[]),
        throttled,
        "{text}"
    );
}

/// Spans the SDK's export queue cannot hold are dropped, and counted where operators look: the
/// SDK's own `otel.sdk.processor.span.processed` counter, on `/metrics` with
/// `error_type="queue_full"`. The collector here accepts connections and never answers, so the
/// first export hangs (up to the export timeout) and, with a queue of one span, a later call's
/// span finds the queue full. Requests are served all the while.
#[tokio::test(flavor = "multi_thread")]
async fn spans_the_export_queue_cannot_hold_are_counted_as_dropped() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((connection, _)) = silent.accept().await {
            held.push(connection);
        }
    });
    let s = stack(ControlPlane::start().await).await;
    let edge = Edge::start_with_metrics(
        &s.cp,
        "swedencentral",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_METRICS_EXPORTER", "none"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "1"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1"),
        ],
    )
    .await;
    for _ in 0..5 {
        assert_eq!(chat(&edge, &s.key, "gpt-4o", false).await, 200);
    }
    // One span is being exported, one waits in the queue: of five, at least three are dropped
    // (each as its request ends, which may be just after the client has the answer).
    let metrics = edge.metrics_addr.unwrap();
    eventually(
        "three spans counted as dropped",
        Duration::from_secs(5),
        || async move {
            let scrape = parse(&scrape_metrics(metrics).await);
            let labels = [("error_type", "queue_full")];
            total(&scrape, "otel_sdk_processor_span_processed_total", &labels) >= 3.0
        },
    )
    .await;
}
