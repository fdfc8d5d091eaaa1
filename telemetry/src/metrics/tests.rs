use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

fn provider() -> (SdkMeterProvider, PrometheusReader) {
    let reader = PrometheusReader::default();
    let provider = SdkMeterProvider::builder()
        .with_resource(Resource::builder().with_service_name("svc-test").build())
        .with_reader(reader.clone())
        .build();
    (provider, reader)
}

fn parse(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parsed")
}

fn sample<'a>(
    scrape: &'a prometheus_parse::Scrape,
    metric: &str,
    labels: &[(&str, &str)],
) -> Option<&'a prometheus_parse::Sample> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
}

#[test]
fn a_counter_ends_in_total_with_dots_made_underscores() {
    let (provider, reader) = provider();
    let meter = provider.meter("test");
    let requests = meter
        .u64_counter("aiproxy.edge.requests")
        .with_unit("{request}")
        .with_description("Requests answered")
        .build();
    let chat = [KeyValue::new("aiproxy.route.family", "chat")];
    requests.add(2, &chat);
    requests.add(1, &chat);
    requests.add(5, &[KeyValue::new("aiproxy.route.family", "embeddings")]);
    let text = reader.render();
    assert!(
        text.contains("# HELP aiproxy_edge_requests_total Requests answered\n"),
        "{text}"
    );
    assert!(text.contains("# TYPE aiproxy_edge_requests_total counter\n"));
    assert!(text.contains("aiproxy_edge_requests_total{aiproxy_route_family=\"chat\"} 3\n"));
    let scrape = parse(&text);
    let chat = sample(
        &scrape,
        "aiproxy_edge_requests_total",
        &[("aiproxy_route_family", "chat")],
    )
    .expect("the chat series");
    assert_eq!(chat.value, prometheus_parse::Value::Counter(3.0));
    let embeddings = sample(
        &scrape,
        "aiproxy_edge_requests_total",
        &[("aiproxy_route_family", "embeddings")],
    )
    .unwrap();
    assert_eq!(embeddings.value, prometheus_parse::Value::Counter(5.0));
}

#[test]
fn a_histogram_in_seconds_has_cumulative_buckets_a_sum_and_a_count() {
    let (provider, reader) = provider();
    let meter = provider.meter("test");
    let duration = meter
        .f64_histogram("http.server.request.duration")
        .with_unit("s")
        .with_boundaries(vec![0.1, 1.0, 10.0])
        .build();
    let ok = [KeyValue::new("http.response.status_code", 200)];
    for seconds in [0.0625, 0.5, 0.75, 20.0] {
        duration.record(seconds, &ok);
    }
    let text = reader.render();
    assert!(
        text.contains("# TYPE http_server_request_duration_seconds histogram\n"),
        "{text}"
    );
    for line in [
        "http_server_request_duration_seconds_bucket{http_response_status_code=\"200\",le=\"0.1\"} 1\n",
        "http_server_request_duration_seconds_bucket{http_response_status_code=\"200\",le=\"1\"} 3\n",
        "http_server_request_duration_seconds_bucket{http_response_status_code=\"200\",le=\"10\"} 3\n",
        "http_server_request_duration_seconds_bucket{http_response_status_code=\"200\",le=\"+Inf\"} 4\n",
        "http_server_request_duration_seconds_sum{http_response_status_code=\"200\"} 21.3125\n",
        "http_server_request_duration_seconds_count{http_response_status_code=\"200\"} 4\n",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    let scrape = parse(&text);
    let histogram =
        sample(&scrape, "http_server_request_duration_seconds", &[]).expect("the histogram");
    let prometheus_parse::Value::Histogram(buckets) = &histogram.value else {
        panic!("not a histogram: {histogram:?}");
    };
    let counts: Vec<(f64, f64)> = buckets.iter().map(|b| (b.less_than, b.count)).collect();
    assert_eq!(
        counts,
        [(0.1, 1.0), (1.0, 3.0), (10.0, 3.0), (f64::INFINITY, 4.0)]
    );
    assert_eq!(
        histogram.labels.get("http_response_status_code"),
        Some("200")
    );
    let count = sample(&scrape, "http_server_request_duration_seconds_count", &[]).unwrap();
    assert_eq!(count.value, prometheus_parse::Value::Untyped(4.0));
}

#[test]
fn gauges_annotations_and_ratios_follow_the_compatibility_rules() {
    let (provider, reader) = provider();
    let meter = provider.meter("test");
    let _version = meter
        .u64_observable_gauge("aiproxy.edge.catalog.version")
        .with_callback(|observer| observer.observe(42, &[]))
        .build();
    let pending = meter
        .i64_up_down_counter("aiproxy.edge.usage.pending")
        .with_unit("{record}")
        .build();
    pending.add(7, &[]);
    pending.add(-2, &[]);
    let _share = meter
        .f64_observable_gauge("pool.share")
        .with_unit("1")
        .with_callback(|observer| observer.observe(0.5, &[]))
        .build();
    let tokens = meter
        .u64_histogram("gen_ai.client.token.usage")
        .with_unit("{token}")
        .with_boundaries(vec![1.0, 4.0])
        .build();
    tokens.record(3, &[KeyValue::new("gen_ai.token.type", "input")]);
    let text = reader.render();
    for line in [
        "# TYPE aiproxy_edge_catalog_version gauge\naiproxy_edge_catalog_version 42\n",
        "# TYPE aiproxy_edge_usage_pending gauge\naiproxy_edge_usage_pending 5\n",
        "# TYPE pool_share_ratio gauge\npool_share_ratio 0.5\n",
        "# TYPE gen_ai_client_token_usage histogram\n",
        "gen_ai_client_token_usage_sum{gen_ai_token_type=\"input\"} 3\n",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    let scrape = parse(&text);
    assert_eq!(
        sample(&scrape, "aiproxy_edge_catalog_version", &[])
            .unwrap()
            .value,
        prometheus_parse::Value::Gauge(42.0)
    );
}

#[test]
fn label_values_are_escaped_and_the_resource_is_target_info() {
    let (provider, reader) = provider();
    let meter = provider.meter("test");
    let counter = meter.u64_counter("odd").build();
    counter.add(1, &[KeyValue::new("why", "a \"quoted\" \\ line\nbreak")]);
    let text = reader.render();
    assert!(
        text.contains(r#"odd_total{why="a \"quoted\" \\ line\nbreak"} 1"#),
        "{text}"
    );
    assert!(text.contains("# TYPE target_info gauge\n"), "{text}");
    let target = text
        .lines()
        .find(|l| l.starts_with("target_info{"))
        .expect("target_info");
    assert!(target.contains("service_name=\"svc-test\""), "{target}");
    assert!(target.ends_with(" 1"));
}

#[test]
fn names_keep_only_what_prometheus_allows() {
    assert_eq!(
        metric_name("gen_ai.client.token.usage"),
        "gen_ai_client_token_usage"
    );
    assert_eq!(metric_name("a..b-c/d"), "a_b_c_d");
    assert_eq!(metric_name("2xx.count"), "_2xx_count");
    assert_eq!(metric_name("ns:name"), "ns:name");
    assert_eq!(label_name("ns:name"), "ns_name");
    assert_eq!(label_name("aiproxy.event.id"), "aiproxy_event_id");
}

#[test]
fn nothing_wanted_builds_no_meter_provider() {
    let settings = crate::Settings::from_lookup(|_| None).unwrap();
    let built = meter_provider(&settings, Resource::builder().build(), None).unwrap();
    assert!(built.is_none());
}

#[tokio::test]
async fn the_scrape_listener_serves_metrics_and_nothing_else() {
    let (provider, reader) = provider();
    provider
        .meter("test")
        .u64_counter("scraped")
        .build()
        .add(1, &[]);
    let server = ScrapeServer::start("127.0.0.1:0".parse().unwrap(), reader).unwrap();
    let get = |path: &'static str, method: &'static str| {
        let addr = server.addr;
        async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let request =
                format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            answer
        }
    };
    let answer = get("/metrics", "GET").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(CONTENT_TYPE), "{answer}");
    assert!(answer.contains("scraped_total 1\n"), "{answer}");
    assert!(get("/", "GET").await.starts_with("HTTP/1.1 404"));
    assert!(get("/metrics", "POST").await.starts_with("HTTP/1.1 405"));
    server.stop();
}
