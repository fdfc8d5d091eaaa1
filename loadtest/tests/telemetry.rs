//! OpenTelemetry traces end to end (issue 14): the real control plane and edge export over
//! OTLP/gRPC to an in-process collector on 127.0.0.1, and the test checks what arrived:
//! - one span per chat call, named and attributed by the GenAI semantic conventions, with the
//!   tokens the mock upstream reported;
//! - a client's W3C trace context is continued (same trace id, parent = the client's span), and
//!   the upstream sees the edge span as its parent;
//! - the control plane exports a span per admin API request and per Sync session;
//! - no key or token appears anywhere in what is exported, nor a method a client made up;
//! - spans still buffered at shutdown are flushed before the edge exits.

use std::time::Duration;

use aiproxy_loadtest::mock::MockConfig;
use aiproxy_loadtest::otlp::{OtlpCollector, ReceivedSpan};
use aiproxy_loadtest::stack::{
    API_VERSION, ControlPlane, ControlPlaneOptions, Edge, Scenario, UPSTREAM_KEY, eventually,
    keyed_mock, model_resource,
};
use serde_json::{Value, json};

const CHAT_PATH: &str = "/openai/deployments/gpt-4o/chat/completions";
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

async fn chat(edge: &Edge, key: &str, body: Value, traceparent: Option<&str>) -> String {
    let mut request = edge.chat_request(key, "gpt-4o").json(&body);
    if let Some(traceparent) = traceparent {
        request = request
            .header("traceparent", traceparent)
            .header("tracestate", "client=1");
    }
    let response = request.send().await.expect("edge reachable");
    assert_eq!(response.status(), 200);
    response.text().await.expect("the whole answer")
}

fn chat_spans(collector: &OtlpCollector) -> Vec<ReceivedSpan> {
    collector
        .spans()
        .into_iter()
        .filter(|s| s.str_attr("gen_ai.operation.name").as_deref() == Some("chat"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn edge_exports_genai_spans_that_continue_the_clients_trace() {
    let collector = OtlpCollector::start().await;
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_string()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()),
    ];
    let mock = keyed_mock(MockConfig {
        stream_chunks: 3,
        ..Default::default()
    })
    .await;
    let cp = ControlPlane::start_with(ControlPlaneOptions::with_env(&otel)).await;
    let admin = cp.admin();
    let resource_id = admin
        .create_resource(model_resource("gpt-4o", &mock.endpoint(), ""))
        .await;
    let (event_id, key) = admin.open_event(std::slice::from_ref(&resource_id)).await;
    let env: Vec<(&str, &str)> = otel.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut edge = Edge::start_with_env(&cp, "swedencentral", &env).await;

    // A call that continues the client's trace, then a stream that starts its own.
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let messages = json!([{"role": "user", "content": "a prompt that must not be exported"}]);
    chat(
        &edge,
        &key,
        json!({"messages": messages}),
        Some(&traceparent),
    )
    .await;
    let upstream_saw = mock
        .stats
        .last_request(CHAT_PATH)
        .expect("the mock answered")
        .headers
        .get("traceparent")
        .expect("a traceparent upstream")
        .to_str()
        .unwrap()
        .to_string();
    chat(
        &edge,
        &key,
        json!({"messages": messages, "stream": true}),
        None,
    )
    .await;

    // A made-up method: `_OTHER` in both binaries' spans, never the client's string.
    let client = reqwest::Client::new();
    let brew = reqwest::Method::from_bytes(b"BREWCOFFEE").unwrap();
    client
        .request(
            brew.clone(),
            format!("{}{CHAT_PATH}?api-version={API_VERSION}", edge.api_base()),
        )
        .header("api-key", &key)
        .send()
        .await
        .expect("edge reachable");
    client
        .request(
            brew,
            format!("http://{}/admin/api/v1/resources", cp.admin_addr),
        )
        .bearer_auth(&cp.admin_token)
        .send()
        .await
        .expect("admin API reachable");

    // The made-up method's spans, of the edge and of the control plane.
    let brewed = |service: &str| {
        collector
            .spans()
            .into_iter()
            .filter(|s| s.str_attr("http.request.method").as_deref() == Some("_OTHER"))
            .find(|s| s.service_name().as_deref() == Some(service))
    };
    eventually("both chat spans exported", Duration::from_secs(15), || {
        let n = chat_spans(&collector).len();
        let other = brewed("aiproxy-edge").is_some() && brewed("aiproxy-control-plane").is_some();
        async move { n >= 2 && other }
    })
    .await;
    let admin = brewed("aiproxy-control-plane").expect("checked above");
    assert_eq!(admin.span.name, "HTTP /admin/api/v1/resources");
    let spans = chat_spans(&collector);
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let continued = spans
        .iter()
        .find(|s| s.trace_id_hex() == CLIENT_TRACE)
        .expect("a span in the client's trace");
    let started = spans
        .iter()
        .find(|s| s.trace_id_hex() != CLIENT_TRACE)
        .expect("a span in a new trace");

    // The client's span is the parent; the edge's span is the upstream's parent.
    assert_eq!(continued.parent_span_id_hex(), CLIENT_SPAN);
    assert!(started.span.parent_span_id.is_empty(), "a root span");
    let parts: Vec<&str> = upstream_saw.split('-').collect();
    assert_eq!(parts.len(), 4, "{upstream_saw}");
    assert_eq!(
        parts[1], CLIENT_TRACE,
        "the upstream continues the client's trace"
    );
    assert_eq!(
        parts[2],
        continued.span_id_hex(),
        "the edge span is the upstream's parent"
    );

    for span in &spans {
        assert_eq!(span.span.name, "chat gpt-4o");
        assert_eq!(span.span.kind, 2, "SPAN_KIND_SERVER");
        assert_eq!(span.service_name().as_deref(), Some("aiproxy-edge"));
        assert_eq!(
            span.str_attr("gen_ai.provider.name").as_deref(),
            Some("azure.ai.openai")
        );
        assert_eq!(
            span.str_attr("gen_ai.request.model").as_deref(),
            Some("gpt-4o")
        );
        // The mock names its deployment as the model that answered.
        assert_eq!(
            span.str_attr("gen_ai.response.model").as_deref(),
            Some("gpt-4o")
        );
        assert_eq!(
            span.str_attr("server.address").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            span.int_attr("http.response.status_code"),
            Some(200),
            "{span:#?}"
        );
        assert_eq!(span.str_attr("aiproxy.event.id"), Some(event_id.clone()));
        assert_eq!(
            span.str_attr("aiproxy.resource.id"),
            Some(resource_id.clone())
        );
        assert_eq!(
            span.str_attr("aiproxy.edge.region").as_deref(),
            Some("swedencentral")
        );
        assert_eq!(
            span.str_attr("aiproxy.route.family").as_deref(),
            Some("chat")
        );
    }
    // The tokens are those the mock reported, call by call.
    let reported = mock.stats.usage_total();
    let sum = |key: &str| -> i64 { spans.iter().map(|s| s.int_attr(key).expect(key)).sum() };
    assert_eq!(
        sum("gen_ai.usage.input_tokens"),
        reported.prompt_tokens as i64
    );
    assert_eq!(
        sum("gen_ai.usage.output_tokens"),
        reported.completion_tokens as i64
    );

    // No secret, prompt or completion in anything exported (by the edge or the control plane).
    let all = collector.spans();
    for span in &all {
        for text in span.strings() {
            for secret in [
                key.as_str(),
                UPSTREAM_KEY,
                cp.admin_token.as_str(),
                cp.edge_token.as_str(),
                "a prompt that must not be exported",
                "BREWCOFFEE",
            ] {
                assert!(!text.contains(secret), "{secret:?} exported in {span:#?}");
            }
        }
    }
    // Probes are not traced.
    assert!(
        all.iter()
            .all(|s| !s.span.name.contains("healthz") && !s.span.name.contains("readyz")),
        "{all:#?}"
    );

    // Spans still buffered when the edge is told to stop are exported before it exits.
    let slow = Edge::start_with_env(
        &cp,
        "swedencentral",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint().as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
            ("AIPROXY_SHUTDOWN_DELAY_MS", "0"),
        ],
    )
    .await;
    let mut slow = slow;
    chat(&slow, &key, json!({"messages": messages}), None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        chat_spans(&collector).len(),
        2,
        "nothing exported before the batch delay"
    );
    slow.terminate();
    assert!(
        slow.wait_exit(Duration::from_secs(20)).await.is_some(),
        "the edge exits"
    );
    assert_eq!(
        chat_spans(&collector).len(),
        3,
        "the buffered span was flushed at shutdown"
    );

    // The control plane: a span per admin API request (by route template), and one per Sync
    // session, exported when the session ends (the stopped edge's has).
    let cp_spans = || {
        collector
            .spans()
            .into_iter()
            .filter(|s| s.service_name().as_deref() == Some("aiproxy-control-plane"))
            .collect::<Vec<_>>()
    };
    eventually(
        "the ended Sync session exported",
        Duration::from_secs(15),
        || {
            let done = cp_spans()
                .iter()
                .any(|s| s.span.name == "aiproxy.sync.session");
            async move { done }
        },
    )
    .await;
    let spans = cp_spans();
    let created = spans
        .iter()
        .find(|s| s.span.name == "POST /admin/api/v1/resources")
        .unwrap_or_else(|| panic!("an admin span: {spans:#?}"));
    assert_eq!(
        created.str_attr("http.route").as_deref(),
        Some("/admin/api/v1/resources")
    );
    assert_eq!(created.int_attr("http.response.status_code"), Some(201));
    assert!(
        spans
            .iter()
            .any(|s| s.span.name == "POST /admin/api/v1/events/{id}/attendees"),
        "routes are templates, not paths: {spans:#?}"
    );
    let session = spans
        .iter()
        .find(|s| s.span.name == "aiproxy.sync.session")
        .unwrap();
    assert_eq!(
        session.str_attr("aiproxy.edge.region").as_deref(),
        Some("swedencentral")
    );
    assert_eq!(session.str_attr("rpc.method").as_deref(), Some("Sync"));
    for span in &spans {
        for text in span.strings() {
            for secret in [
                cp.admin_token.as_str(),
                cp.edge_token.as_str(),
                key.as_str(),
                UPSTREAM_KEY,
            ] {
                assert!(!text.contains(secret), "{secret:?} exported in {span:#?}");
            }
        }
    }
    edge.kill().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_endpoint_a_clients_traceparent_passes_upstream_untouched() {
    // The scenario's edge runs with nothing configured.
    let s = Scenario::start(MockConfig::default()).await;
    let (edge, key, mock) = (&s.edge, &s.key, &s.mock);
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    chat(
        edge,
        key,
        json!({"messages": [{"role": "user", "content": "hi"}]}),
        Some(&traceparent),
    )
    .await;
    let seen = mock
        .stats
        .last_request(CHAT_PATH)
        .expect("the mock answered");
    assert_eq!(
        seen.headers.get("traceparent").unwrap(),
        traceparent.as_str()
    );
    assert_eq!(seen.headers.get("tracestate").unwrap(), "client=1");
}

#[tokio::test(flavor = "multi_thread")]
async fn edge_exports_over_otlp_http_protobuf() {
    let collector = OtlpCollector::start().await;
    let s = Scenario::start(MockConfig::default()).await;
    let key = &s.key;
    let endpoint = collector.http_endpoint();
    let edge = Edge::start_with_env(
        &s.cp,
        "",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_SERVICE_NAME", "edge-over-http"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    chat(
        &edge,
        key,
        json!({"messages": [{"role": "user", "content": "hi"}]}),
        None,
    )
    .await;
    eventually(
        "the chat span exported over HTTP",
        Duration::from_secs(15),
        || {
            let n = chat_spans(&collector).len();
            async move { n >= 1 }
        },
    )
    .await;
    let span = &chat_spans(&collector)[0];
    assert_eq!(span.service_name().as_deref(), Some("edge-over-http"));
    assert_eq!(span.span.name, "chat gpt-4o");
}

/// OTLP/gRPC export runs on a runtime of its own, not on the runtime the exporters were made in
/// (the proxy's): with that runtime's only thread held, as a proxy's core is under load, spans
/// and metrics are still exported. Made on the proxy's runtime, tonic's connection and the
/// encoding of every batch waited for that thread: the flush below timed out. The threads that
/// export run below the process's CPU priority. The exporters are given the endpoints the
/// settings resolved, each signal's own over the general one (the general one here goes
/// nowhere; this process's environment has none).
#[test]
fn grpc_export_runs_off_the_proxys_runtime_below_its_priority() {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry::trace::{Tracer as _, TracerProvider as _};

    let collector_runtime = tokio::runtime::Runtime::new().unwrap();
    let collector = collector_runtime.block_on(OtlpCollector::start());
    let endpoint = collector.endpoint();
    let settings = aiproxy_telemetry::Settings::from_lookup(|name| match name {
        "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://127.0.0.1:9".to_string()),
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" | "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT" => {
            Some(endpoint.clone())
        }
        _ => None,
    })
    .unwrap();
    let proxy = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    proxy.block_on(async {
        let spans = aiproxy_telemetry::tracer_provider(&settings, "held")
            .unwrap()
            .expect("spans are exported");
        let meters = aiproxy_telemetry::metrics::meter_provider(
            &settings,
            opentelemetry_sdk::Resource::builder().build(),
            None,
        )
        .unwrap()
        .expect("metrics are exported");
        spans.tracer("test").in_span("while held", |_| {});
        meters
            .meter("test")
            .u64_counter("held.calls")
            .build()
            .add(1, &[]);
        // Each flush blocks this runtime's only thread until its batch is exported.
        spans
            .force_flush()
            .expect("spans exported while the runtime is held");
        meters
            .force_flush()
            .expect("metrics exported while the runtime is held");
        let names: Vec<String> = collector.spans().into_iter().map(|s| s.span.name).collect();
        assert_eq!(names, ["while held"]);
        assert!(
            collector
                .metrics()
                .iter()
                .any(|m| m.metric.name == "held.calls")
        );
        #[cfg(target_os = "linux")]
        {
            let own = nice_of_this_thread().expect("this thread's nice value");
            let lowered = (own + 10).min(19);
            // Thread names as the kernel keeps them (15 bytes).
            for name in ["otlp-export", "OpenTelemetry.T"] {
                assert_eq!(nice_of_thread(name), Some(lowered), "{name}");
            }
        }
        spans.shutdown().unwrap();
        meters.shutdown().unwrap();
    });
}

/// The nice value in a `/proc/.../stat` line: field 19, the 17th after the parenthesised name.
#[cfg(target_os = "linux")]
fn nice_in_stat(stat: &str) -> Option<i64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(16)?.parse().ok()
}

#[cfg(target_os = "linux")]
fn nice_of_this_thread() -> Option<i64> {
    nice_in_stat(&std::fs::read_to_string("/proc/thread-self/stat").ok()?)
}

/// The nice value of this process's thread named `name`.
#[cfg(target_os = "linux")]
fn nice_of_thread(name: &str) -> Option<i64> {
    std::fs::read_dir("/proc/self/task").ok()?.find_map(|task| {
        let dir = task.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
        (comm.trim_end() == name).then_some(())?;
        nice_in_stat(&std::fs::read_to_string(dir.join("stat")).ok()?)
    })
}
