use aiproxy_telemetry::metrics::PrometheusReader;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::SdkMeterProvider;

use super::*;

fn metrics(on: bool) -> (SdkMeterProvider, PrometheusReader, EdgeMetrics) {
    let reader = PrometheusReader::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(reader.clone())
        .build();
    let metrics = EdgeMetrics::new(&provider.meter("test"), on);
    (provider, reader, metrics)
}

fn chat<'a>(status: u16, tokens: Option<Tokens>) -> Finished<'a> {
    Finished {
        method: &http::Method::POST,
        family: "chat",
        event_id: "ev1",
        served: Some(ServedBy {
            resource_id: "res1",
            model: "gpt-4o",
            provider: Some("azure.ai.openai"),
        }),
        status,
        duration: Duration::from_millis(120),
        first_byte: Some(Duration::from_millis(30)),
        streamed: true,
        tokens,
        added: Some(Duration::from_micros(400)),
    }
}

fn tokens(prompt: u64, completion: u64) -> Option<Tokens> {
    Some(Tokens {
        prompt,
        completion,
        total: prompt + completion,
        ..Tokens::default()
    })
}

#[test]
fn a_finished_call_is_counted_timed_and_its_tokens_added() {
    let (_provider, reader, metrics) = metrics(true);
    metrics.finished(&chat(200, tokens(10, 5)));
    metrics.finished(&chat(200, tokens(7, 3)));
    metrics.finished(&chat(429, None));
    let text = reader.render();
    for line in [
        "aiproxy_edge_requests_total{aiproxy_event_id=\"ev1\",aiproxy_resource_id=\"res1\",aiproxy_route_family=\"chat\",http_response_status_class=\"2xx\"} 2\n",
        "aiproxy_edge_requests_total{aiproxy_event_id=\"ev1\",aiproxy_resource_id=\"res1\",aiproxy_route_family=\"chat\",http_response_status_class=\"4xx\"} 1\n",
        "aiproxy_edge_tokens_total{aiproxy_event_id=\"ev1\",gen_ai_request_model=\"gpt-4o\",gen_ai_token_type=\"input\"} 17\n",
        "aiproxy_edge_tokens_total{aiproxy_event_id=\"ev1\",gen_ai_request_model=\"gpt-4o\",gen_ai_token_type=\"output\"} 8\n",
        "gen_ai_client_token_usage_sum{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"azure.ai.openai\",gen_ai_request_model=\"gpt-4o\",gen_ai_token_type=\"input\"} 17\n",
        "gen_ai_server_time_to_first_token_seconds_count{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"azure.ai.openai\",gen_ai_request_model=\"gpt-4o\"} 2\n",
        "gen_ai_server_request_duration_seconds_count{error_type=\"429\",gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"azure.ai.openai\",gen_ai_request_model=\"gpt-4o\"} 1\n",
        "http_server_request_duration_seconds_count{aiproxy_route_family=\"chat\",http_request_method=\"POST\",http_response_status_code=\"200\"} 2\n",
        "aiproxy_edge_added_latency_seconds_count{aiproxy_route_family=\"chat\"} 3\n",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}

#[test]
fn unmetered_answers_failures_and_replays_are_counted_without_caller_labels() {
    let (_provider, reader, metrics) = metrics(true);
    metrics.answered(&http::Method::GET, 401, Duration::from_millis(1));
    let odd = http::Method::from_bytes(b"BREW").unwrap();
    metrics.answered(&odd, 404, Duration::from_millis(1));
    metrics.upstream_answered("res1", http::StatusCode::TOO_MANY_REQUESTS);
    metrics.upstream_answered("res1", http::StatusCode::TOO_MANY_REQUESTS);
    metrics.upstream_answered("res1", http::StatusCode::OK);
    metrics.upstream_failed("res1", UpstreamFailure::Timeout);
    metrics.replayed("res1");
    let text = reader.render();
    for line in [
        "aiproxy_edge_requests_total{http_response_status_class=\"4xx\"} 2\n",
        "http_server_request_duration_seconds_count{http_request_method=\"_OTHER\",http_response_status_code=\"404\"} 1\n",
        "aiproxy_edge_upstream_failures_total{aiproxy_resource_id=\"res1\",aiproxy_upstream_failure=\"throttled\"} 2\n",
        "aiproxy_edge_upstream_failures_total{aiproxy_resource_id=\"res1\",aiproxy_upstream_failure=\"timeout\"} 1\n",
        "aiproxy_edge_upstream_replays_total{aiproxy_resource_id=\"res1\"} 1\n",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}

#[test]
fn a_follow_up_adds_its_tokens_and_no_request() {
    let (_provider, reader, metrics) = metrics(true);
    let run = Finished {
        method: &http::Method::GET,
        family: "agents",
        event_id: "ev1",
        served: Some(ServedBy {
            resource_id: "agents1",
            model: "agents",
            provider: None,
        }),
        status: 200,
        duration: Duration::ZERO,
        first_byte: None,
        streamed: false,
        tokens: tokens(40, 9),
        added: None,
    };
    metrics.followed_up(&run);
    let text = reader.render();
    for line in [
        "aiproxy_edge_tokens_total{aiproxy_event_id=\"ev1\",gen_ai_request_model=\"agents\",gen_ai_token_type=\"input\"} 40\n",
        "aiproxy_edge_tokens_total{aiproxy_event_id=\"ev1\",gen_ai_request_model=\"agents\",gen_ai_token_type=\"output\"} 9\n",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    for absent in [
        "aiproxy_edge_requests_total{",
        "http_server_request_duration_seconds_count{",
        "gen_ai_client_token_usage",
    ] {
        assert!(!text.contains(absent), "{absent} in\n{text}");
    }
}

#[test]
fn with_metrics_off_nothing_is_recorded() {
    let (_provider, reader, metrics) = metrics(false);
    metrics.finished(&chat(200, tokens(1, 1)));
    metrics.answered(&http::Method::GET, 404, Duration::from_millis(1));
    metrics.upstream_failed("res1", UpstreamFailure::Timeout);
    let text = reader.render();
    assert!(!text.contains("# TYPE aiproxy_edge_"), "{text}");
    assert!(!text.contains("duration"), "{text}");
}

#[test]
fn status_classes_are_bounded() {
    assert_eq!(status_class(204), "2xx");
    assert_eq!(status_class(503), "5xx");
    assert_eq!(status_class(999), "5xx");
}

#[test]
fn a_series_is_shown_only_once_a_request_measured_it() {
    let (_provider, reader, metrics) = metrics(true);
    // Not streamed and no tokens: no first-token or token series for this shape, not even zeros.
    let mut call = chat(200, None);
    call.streamed = false;
    metrics.finished(&call);
    let text = reader.render();
    assert!(text.contains("gen_ai_server_request_duration_seconds_count{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"azure.ai.openai\",gen_ai_request_model=\"gpt-4o\"} 1\n"), "{text}");
    for absent in [
        "time_to_first_token_seconds_count{",
        "aiproxy_edge_tokens_total{",
        "gen_ai_client_token_usage_count{",
    ] {
        assert!(!text.contains(absent), "{absent} in\n{text}");
    }
    // The same shape streamed with tokens later: those series appear, with that call only.
    metrics.finished(&chat(200, tokens(4, 2)));
    let text = reader.render();
    for line in [
        "gen_ai_server_time_to_first_token_seconds_count{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"azure.ai.openai\",gen_ai_request_model=\"gpt-4o\"} 1\n",
        "aiproxy_edge_tokens_total{aiproxy_event_id=\"ev1\",gen_ai_request_model=\"gpt-4o\",gen_ai_token_type=\"output\"} 2\n",
        "aiproxy_edge_requests_total{aiproxy_event_id=\"ev1\",aiproxy_resource_id=\"res1\",aiproxy_route_family=\"chat\",http_response_status_class=\"2xx\"} 2\n",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}

#[test]
fn more_shapes_than_the_cache_holds_are_all_counted() {
    let (_provider, reader, metrics) = metrics(true);
    let events: Vec<String> = (0..series::CAPACITY + 10)
        .map(|i| format!("ev{i}"))
        .collect();
    // Twice round, the second time with the cache old enough to be emptied when full: the shapes
    // it could not hold and the series counted before go on counting.
    for round in 0..2 {
        if round == 1 {
            metrics.series.age();
        }
        for event_id in &events {
            let mut call = chat(200, tokens(3, 1));
            call.event_id = event_id;
            metrics.finished(&call);
        }
    }
    assert!(metrics.series.len() <= series::CAPACITY);
    let text = reader.render();
    for event_id in [
        &events[0],
        &events[series::CAPACITY],
        &events[series::CAPACITY + 9],
    ] {
        let line = format!(
            "aiproxy_edge_requests_total{{aiproxy_event_id=\"{event_id}\",aiproxy_resource_id=\"res1\",aiproxy_route_family=\"chat\",http_response_status_class=\"2xx\"}} 2\n"
        );
        assert!(
            text.contains(&line),
            "{line} missing from {}",
            &text[..2000.min(text.len())]
        );
        let line = format!(
            "aiproxy_edge_tokens_total{{aiproxy_event_id=\"{event_id}\",gen_ai_request_model=\"gpt-4o\",gen_ai_token_type=\"input\"}} 6\n"
        );
        assert!(
            text.contains(&line),
            "{line} missing from {}",
            &text[..2000.min(text.len())]
        );
    }
}

#[test]
fn a_full_cache_keeps_its_shapes_until_it_may_be_emptied() {
    let cache = series::SeriesCache::default();
    let events: Vec<String> = (0..=series::CAPACITY).map(|i| format!("ev{i}")).collect();
    let shape = |event_id| series::Shape {
        family: "chat",
        event_id,
        status: 200,
        method: "POST",
        served: None,
    };
    let first = cache.get(&shape(&events[0]));
    for event_id in &events[1..series::CAPACITY] {
        cache.get(&shape(event_id));
    }
    assert_eq!(cache.len(), series::CAPACITY);
    // One shape more than it holds, twice: measured on a series of its own each time, and the
    // held shapes stay (more live shapes than the cache holds do not make it churn).
    let extra = &events[series::CAPACITY];
    assert!(!Arc::ptr_eq(
        &cache.get(&shape(extra)),
        &cache.get(&shape(extra))
    ));
    assert_eq!(cache.len(), series::CAPACITY);
    assert!(Arc::ptr_eq(&first, &cache.get(&shape(&events[0]))));
    // Once old enough, the next new shape empties it.
    cache.age();
    let held = cache.get(&shape(extra));
    assert_eq!(cache.len(), 1);
    assert!(Arc::ptr_eq(&held, &cache.get(&shape(extra))));
    assert!(!Arc::ptr_eq(&first, &cache.get(&shape(&events[0]))));
}

#[test]
fn unserved_and_providerless_calls_get_only_the_series_they_can_fill() {
    let (_provider, reader, metrics) = metrics(true);
    // Refused by the edge before any upstream (a cap reached): no resource, no GenAI series.
    let mut refused = chat(429, None);
    refused.served = None;
    refused.event_id = "ev2";
    metrics.finished(&refused);
    // A served call whose provider the conventions do not name (a search index): its requests
    // and tokens, none of the GenAI series.
    let mut search = chat(200, tokens(2, 0));
    search.family = "search";
    search.served = Some(ServedBy {
        resource_id: "res2",
        model: "products",
        provider: None,
    });
    metrics.finished(&search);
    // An upstream 400 that still reported tokens: they are counted, without an error type.
    metrics.finished(&chat(400, tokens(9, 0)));
    let text = reader.render();
    for line in [
        "aiproxy_edge_requests_total{aiproxy_event_id=\"ev2\",aiproxy_route_family=\"chat\",http_response_status_class=\"4xx\"} 1\n",
        "aiproxy_edge_requests_total{aiproxy_event_id=\"ev1\",aiproxy_resource_id=\"res2\",aiproxy_route_family=\"search\",http_response_status_class=\"2xx\"} 1\n",
        "aiproxy_edge_tokens_total{aiproxy_event_id=\"ev1\",gen_ai_request_model=\"products\",gen_ai_token_type=\"input\"} 2\n",
        "gen_ai_client_token_usage_sum{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"azure.ai.openai\",gen_ai_request_model=\"gpt-4o\",gen_ai_token_type=\"input\"} 9\n",
        "gen_ai_server_request_duration_seconds_count{error_type=\"400\",gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"azure.ai.openai\",gen_ai_request_model=\"gpt-4o\"} 1\n",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    for absent in [
        "gen_ai_request_model=\"\"",
        "gen_ai_provider_name=\"\"",
        "error_type=\"400\",gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"azure.ai.openai\",gen_ai_request_model=\"gpt-4o\",gen_ai_token_type",
    ] {
        assert!(!text.contains(absent), "{absent} in\n{text}");
    }
    assert_eq!(
        text.matches("gen_ai_client_token_usage_count{").count(),
        2,
        "only the 400's input and output tokens\n{text}"
    );
}
