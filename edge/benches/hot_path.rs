//! Micro-benchmarks of the edge's per-request work, through the crate's public API only: key
//! lookup (`client_auth::authenticate` against a snapshot with many attendees, without and with
//! a connection's memo of its key's hash), route resolution
//! (`CanonicalPath::parse` + `routes::resolve`, and the event's pool), header rewrite
//! (`headers::for_upstream`), and the cap check (`policy::inspect` + `policy::prepare` on a
//! realistic chat body), the usage meter's read of an answer (`usage::scan::scan_json`) and its
//! filter of a chat stream (`usage::scan::UsageChunkFilter`), the
//! metrics a finished call records (`metrics::EdgeMetrics::finished`, with a real SDK meter
//! provider), then the request-side steps all in a row.
//!
//!   cargo bench -p aiproxy-edge --bench hot_path             # full measurement
//!   cargo bench -p aiproxy-edge --bench hot_path -- --quick  # a few seconds

use std::hint::black_box;

use aiproxy_edge::proxy::canonical::CanonicalPath;
use aiproxy_edge::proxy::policy::{self, CapField, Prepare};
use aiproxy_edge::proxy::{client_auth, routes};
use aiproxy_edge::snapshot::{CatalogSnapshot, KeyMemo};
use aiproxy_edge::upstream::headers;
use aiproxy_edge::usage;
use aiproxy_proto::v1 as pb;
use aws_lc_rs::hmac;
use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method};

const SECRET: &[u8] = b"bench-key-hash-secret-0123456789abcdef";
const EVENT: &str = "evt-bench";
const PATH: &str = "/api/v1/openai/deployments/gpt-4o/chat/completions";
/// A chat call as SDKs send it: a system prompt, a short exchange, sampling settings.
const CHAT_BODY: &str = r#"{"messages":[{"role":"system","content":"You are a helpful assistant for a hackathon team. Answer briefly and cite the documentation when you can."},{"role":"user","content":"How do I stream a chat completion with the Python SDK?"},{"role":"assistant","content":"Pass stream=True to client.chat.completions.create and iterate over the chunks; each chunk has choices[0].delta.content."},{"role":"user","content":"And how do I get the token usage at the end of the stream?"}],"max_tokens":512,"temperature":0.7,"top_p":0.95,"stream":false}"#;
const STREAM_BODY: &str = r#"{"messages":[{"role":"user","content":"Say hello in three languages."}],"max_tokens":64,"stream":true}"#;

fn key_of(i: usize) -> String {
    format!("aip_bench_attendee_key_{i:08}_0123456789abcdef")
}

/// A loaded snapshot: one open event with a token cap and a daily request cap, one
/// `foundry-model` resource, `attendees` attendees.
fn snapshot(attendees: usize) -> CatalogSnapshot {
    let hasher = hmac::Key::new(hmac::HMAC_SHA256, SECRET);
    let now = chrono::Utc::now().timestamp_millis();
    let update = pb::SyncUpdate {
        version: 1,
        full: true,
        key_hash_secret: SECRET.to_vec(),
        catalog_id: "bench".into(),
        resources: vec![pb::EdgeResource {
            info: Some(pb::ResourceInfo {
                id: "res-1".into(),
                friendly_name: "gpt-4o".into(),
                deployment_name: "gpt-4o".into(),
                model_type: "foundry-model".into(),
                endpoint_url: "http://127.0.0.1:9100".into(),
                active: true,
                has_key: true,
                ..Default::default()
            }),
            api_key: "upstream-key".into(),
            token_scope: String::new(),
        }],
        events: vec![pb::EventInfo {
            id: EVENT.into(),
            name: "Bench hackathon".into(),
            starts_at_ms: now - 86_400_000,
            ends_at_ms: now + 86_400_000,
            time_zone: "UTC".into(),
            max_token_cap: 4096,
            daily_request_cap: 1_000_000,
            active: true,
            resource_ids: vec!["res-1".into()],
            ..Default::default()
        }],
        attendees: (0..attendees)
            .map(|i| pb::EdgeAttendee {
                event_id: EVENT.into(),
                user_id: format!("user-{i}"),
                key_hash: hmac::sign(&hasher, key_of(i).as_bytes()).as_ref().to_vec(),
                active: true,
            })
            .collect(),
        ..Default::default()
    };
    CatalogSnapshot::default()
        .apply(update)
        .expect("a valid snapshot")
}

/// What an OpenAI SDK sends with a chat call.
fn client_headers(key: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in [
        ("host", "edge.example.com"),
        ("user-agent", "AzureOpenAI/Python 1.82.0"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, deflate"),
        ("content-type", "application/json"),
        ("content-length", "512"),
        ("connection", "keep-alive"),
        ("x-stainless-lang", "python"),
        ("x-stainless-package-version", "1.82.0"),
        ("x-stainless-os", "Linux"),
        ("x-stainless-arch", "x64"),
        ("x-stainless-runtime", "CPython"),
        ("x-stainless-runtime-version", "3.12.3"),
        ("x-stainless-retry-count", "0"),
        ("x-stainless-read-timeout", "600"),
        ("x-forwarded-for", "203.0.113.7"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    h.insert(
        "api-key",
        HeaderValue::from_str(key).expect("a header value"),
    );
    h
}

fn key_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("key_lookup");
    for attendees in [1_000, 100_000] {
        let snap = snapshot(attendees);
        let known = client_headers(&key_of(attendees / 2));
        let unknown = client_headers("aip_not_a_key_of_this_event_0123456789abcdef");
        let now = chrono::Utc::now().timestamp_millis();
        group.bench_function(format!("authenticate/{attendees}_attendees"), |b| {
            b.iter(|| {
                let caller = client_auth::authenticate(&snap, black_box(&known), now, None);
                assert!(caller.is_ok());
                caller
            })
        });
        // A keep-alive connection's second call onwards: its key's hash is remembered.
        let memo = KeyMemo::default();
        group.bench_function(format!("same_connection/{attendees}_attendees"), |b| {
            b.iter(|| {
                let caller = client_auth::authenticate(&snap, black_box(&known), now, Some(&memo));
                assert!(caller.is_ok());
                caller
            })
        });
        group.bench_function(format!("unknown_key/{attendees}_attendees"), |b| {
            b.iter(|| {
                let caller = client_auth::authenticate(&snap, black_box(&unknown), now, None);
                assert!(caller.is_err());
                caller
            })
        });
    }
    group.finish();
}

fn route_resolution(c: &mut Criterion) {
    let mut group = c.benchmark_group("route");
    group.bench_function("parse+resolve/deployment_chat", |b| {
        b.iter(|| {
            let canonical = CanonicalPath::parse(black_box(PATH)).expect("a valid path");
            let matched = matches!(
                routes::resolve(&Method::POST, &canonical),
                Ok(routes::Route::Deployment { .. })
            );
            assert!(matched);
        })
    });
    let snap = snapshot(1);
    group.bench_function("pool/foundry_model", |b| {
        b.iter(|| {
            let pool = snap.pool(black_box(EVENT), "foundry-model", black_box("gpt-4o"));
            assert!(pool.is_some());
            pool.map(<[_]>::len)
        })
    });
    group.finish();
}

fn header_rewrite(c: &mut Criterion) {
    let mut group = c.benchmark_group("headers");
    let h = client_headers(&key_of(0));
    group.bench_function("for_upstream/sdk_headers", |b| {
        b.iter_batched(|| h.clone(), headers::for_upstream, BatchSize::SmallInput)
    });
    group.finish();
}

fn cap_check(c: &mut Criterion) {
    let mut group = c.benchmark_group("cap_check");
    let how = Prepare {
        cap: 4096,
        limit: Some(CapField::CHAT),
        rename_max_tokens: false,
        stream_usage: true,
    };
    for (name, body) in [("chat", CHAT_BODY), ("chat_stream", STREAM_BODY)] {
        let bytes = Bytes::from_static(body.as_bytes());
        group.bench_function(format!("inspect/{name}_{}B", body.len()), |b| {
            b.iter(|| policy::inspect(black_box(&bytes)).is_ok())
        });
        group.bench_function(format!("inspect+prepare/{name}_{}B", body.len()), |b| {
            b.iter(|| {
                let call = policy::inspect(black_box(&bytes)).expect("a valid body");
                policy::prepare(&bytes, &call, how).expect("under the cap")
            })
        });
    }
    group.finish();
}

/// The usage meter's read of a (non-streamed) answer: `usage::scan::scan_json`.
fn usage_scan(c: &mut Criterion) {
    let answer = br#"{"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}},"finish_reason":"stop","index":0,"logprobs":null,"message":{"content":"Hello! Bonjour! Hola!","refusal":null,"role":"assistant"}}],"created":1796308381,"id":"chatcmpl-KtpQR2i45eTugjucZevfv29u","model":"gpt-4o-2024-11-20","object":"chat.completion","system_fingerprint":"fp_mock","usage":{"completion_tokens":9,"completion_tokens_details":{"reasoning_tokens":0},"prompt_tokens":24,"prompt_tokens_details":{"cached_tokens":0},"total_tokens":33}}"#;
    c.bench_function(&format!("usage_scan/chat_answer_{}B", answer.len()), |b| {
        b.iter(|| usage::scan::scan_json(black_box(answer)))
    });
    // The same with an answer of about 1,000 tokens (lines, quotes, accents), as a real
    // assistant writes: its content is most of what the meter reads past.
    let line =
        r#"The proxy \"checks\" each key, then forwards the call \u2014 d\u00e9j\u00e0 vu.\n"#;
    let long = std::str::from_utf8(answer)
        .expect("UTF-8")
        .replace("Hello! Bonjour! Hola!", &line.repeat(60));
    c.bench_function(&format!("usage_scan/chat_answer_{}B", long.len()), |b| {
        b.iter(|| usage::scan::scan_json(black_box(long.as_bytes())))
    });
}

/// A chat stream as the mock upstream sends it when the edge asked for usage (every chunk ends
/// with `"usage":null`, the usage-only chunk last), through the filter that gives a client that
/// did not ask for usage the stream Azure would have sent it: `usage::scan::UsageChunkFilter`.
fn usage_filter(c: &mut Criterion) {
    const STREAM: &str = concat!(
        "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":[{\"content_filter_results\":{\"hate\":{\"filtered\":false,\"severity\":\"safe\"},\"self_harm\":{\"filtered\":false,\"severity\":\"safe\"},\"sexual\":{\"filtered\":false,\"severity\":\"safe\"},\"violence\":{\"filtered\":false,\"severity\":\"safe\"}},\"prompt_index\":0}],\"usage\":null}\n",
        "\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"Hello from \",\"role\":\"assistant\"},\"finish_reason\":null,\"index\":0,\"logprobs\":null}],\"created\":1796490819,\"id\":\"chatcmpl-3WKwVvDKotCosu6K4becMnUS\",\"model\":\"gpt-4o\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"fp_mock\",\"usage\":null}\n",
        "\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"the mock \"},\"finish_reason\":null,\"index\":0,\"logprobs\":null}],\"created\":1796490819,\"id\":\"chatcmpl-3WKwVvDKotCosu6K4becMnUS\",\"model\":\"gpt-4o\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"fp_mock\",\"usage\":null}\n",
        "\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"Azure OpenAI \"},\"finish_reason\":null,\"index\":0,\"logprobs\":null}],\"created\":1796490819,\"id\":\"chatcmpl-3WKwVvDKotCosu6K4becMnUS\",\"model\":\"gpt-4o\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"fp_mock\",\"usage\":null}\n",
        "\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"upstream.\"},\"finish_reason\":null,\"index\":0,\"logprobs\":null}],\"created\":1796490819,\"id\":\"chatcmpl-3WKwVvDKotCosu6K4becMnUS\",\"model\":\"gpt-4o\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"fp_mock\",\"usage\":null}\n",
        "\n",
        "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\",\"index\":0,\"logprobs\":null}],\"created\":1796490819,\"id\":\"chatcmpl-3WKwVvDKotCosu6K4becMnUS\",\"model\":\"gpt-4o\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"fp_mock\",\"usage\":null}\n",
        "\n",
        "data: {\"choices\":[],\"created\":1796490819,\"id\":\"chatcmpl-3WKwVvDKotCosu6K4becMnUS\",\"model\":\"gpt-4o\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"fp_mock\",\"usage\":{\"completion_tokens\":19,\"completion_tokens_details\":{\"accepted_prediction_tokens\":0,\"audio_tokens\":0,\"reasoning_tokens\":2,\"rejected_prediction_tokens\":0},\"prompt_tokens\":26,\"prompt_tokens_details\":{\"audio_tokens\":0,\"cached_tokens\":0},\"total_tokens\":45}}\n",
        "\n",
        "data: [DONE]\n",
        "\n",
    );
    c.bench_function(
        &format!("usage_scan/filter_chat_stream_{}B", STREAM.len()),
        |b| {
            b.iter(|| {
                let mut filter = usage::scan::UsageChunkFilter::new(64 * 1024);
                let out = filter.push(black_box(STREAM.as_bytes()));
                (out, filter.usage())
            })
        },
    );
}

/// The measurements a finished chat call makes (nine, on seven instruments), with the SDK's meter
/// provider and a cumulative reader, as when metrics are on; a few events and resources, so the
/// SDK holds several series per instrument.
fn metrics_finished(c: &mut Criterion) {
    use aiproxy_edge::metrics::{EdgeMetrics, Finished, ServedBy};
    use opentelemetry::metrics::MeterProvider as _;
    use std::time::Duration;

    let reader = aiproxy_telemetry::metrics::PrometheusReader::default();
    let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
        .with_reader(reader.clone())
        .build();
    let metrics = EdgeMetrics::new(&provider.meter("bench"), true);
    let events: Vec<String> = (0..8).map(|i| format!("evt-bench-{i}")).collect();
    let resources: Vec<String> = (0..4).map(|i| format!("res-bench-{i}")).collect();
    let tokens = usage::scan::Tokens {
        prompt: 24,
        completion: 9,
        total: 33,
        ..Default::default()
    };
    let mut i = 0usize;
    c.bench_function("metrics/finished_chat", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            metrics.finished(black_box(&Finished {
                method: &Method::POST,
                family: "chat",
                event_id: &events[i % events.len()],
                served: Some(ServedBy {
                    resource_id: &resources[i % resources.len()],
                    model: "gpt-4o",
                    provider: Some("azure.ai.openai"),
                }),
                status: 200,
                duration: Duration::from_millis(120),
                first_byte: Some(Duration::from_millis(30)),
                streamed: i.is_multiple_of(2),
                tokens: Some(tokens),
                added: Some(Duration::from_micros(300)),
            }))
        })
    });
    black_box(reader.render());
}

/// Everything above for one capped chat call, as the request path runs it.
fn all_together(c: &mut Criterion) {
    let snap = snapshot(100_000);
    let h = client_headers(&key_of(4_242));
    let bytes = Bytes::from_static(CHAT_BODY.as_bytes());
    let how = Prepare {
        cap: 4096,
        limit: Some(CapField::CHAT),
        rename_max_tokens: false,
        stream_usage: true,
    };
    let now = chrono::Utc::now().timestamp_millis();
    c.bench_function("hot_path/chat_100000_attendees", |b| {
        b.iter_batched(
            || h.clone(),
            |h| {
                let canonical = CanonicalPath::parse(black_box(PATH)).expect("a valid path");
                let route = routes::resolve(&Method::POST, &canonical).expect("a route");
                let routes::Route::Deployment { deployment, .. } = route else {
                    panic!("not a deployment route");
                };
                let caller = client_auth::authenticate(&snap, &h, now, None).expect("known");
                let pool = snap
                    .pool(&caller.event.id, "foundry-model", deployment)
                    .expect("a pool");
                let call = policy::inspect(&bytes).expect("a valid body");
                let body = policy::prepare(&bytes, &call, how).expect("under the cap");
                (pool.len(), body, headers::for_upstream(h))
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(
    benches,
    key_lookup,
    route_resolution,
    header_rewrite,
    cap_check,
    usage_scan,
    usage_filter,
    metrics_finished,
    all_together
);
criterion_main!(benches);
