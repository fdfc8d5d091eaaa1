//! The edge's metrics (OpenTelemetry instruments; exported over OTLP and shown at `/metrics` by
//! `aiproxy_telemetry`). A request is recorded once, when it has ended: by the usage meter for the
//! calls it meters (at the end of the streamed answer), by `proxy::handle` for the rest. Upstream
//! failures and replays are counted where they happen; the state behind the gauges (catalog,
//! Sync, usage delivery, pool health) is read only when metrics are collected.
//!
//! With metrics off (no OTLP endpoint, no `AIPROXY_METRICS_ADDR`) every instrument is a no-op and
//! `on` is false: the recording functions return before building a single attribute.
//!
//! Labels are bounded: route families, status codes and classes, token types, and ids and names
//! from the catalog (events, upstream resources, deployments). Never an attendee, a key, a token
//! or a path. A name a caller made up never becomes a label: the model is recorded only once a
//! catalog pool served the call.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{
    AsyncInstrument, Counter, Histogram, Meter, ObservableCounter, ObservableGauge,
};

use crate::state::EdgeState;
use crate::usage::scan::Tokens;

mod series;
use series::{Series, SeriesCache, Shape, TokenType};

/// The GenAI semantic conventions' advised buckets.
const TOKEN_BUCKETS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];
const OPERATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
const FIRST_TOKEN_BUCKETS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// The edge's own time is expected in the sub-millisecond to millisecond range.
const ADDED_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

pub struct EdgeMetrics {
    on: bool,
    requests: Counter<u64>,
    http_duration: Histogram<f64>,
    operation_duration: Histogram<f64>,
    first_token: Histogram<f64>,
    token_usage: Histogram<u64>,
    tokens: Counter<u64>,
    added_latency: Histogram<f64>,
    upstream_failures: Counter<u64>,
    replays: Counter<u64>,
    series: SeriesCache,
}

/// Which upstream answered a finished request.
pub struct ServedBy<'a> {
    pub resource_id: &'a str,
    /// The deployment (a catalog pool's name).
    pub model: &'a str,
    /// `gen_ai.provider.name`; `None` for search and MCP.
    pub provider: Option<&'static str>,
}

/// A metered request, as the usage meter saw it when its answer ended.
pub struct Finished<'a> {
    pub method: &'a http::Method,
    pub family: &'static str,
    pub event_id: &'a str,
    pub served: Option<ServedBy<'a>>,
    pub status: u16,
    pub duration: Duration,
    /// To the answer's first body byte.
    pub first_byte: Option<Duration>,
    pub streamed: bool,
    pub tokens: Option<Tokens>,
    /// The edge's share of the time to the answer's head (that time less the upstream's).
    pub added: Option<Duration>,
}

/// Why an upstream call failed (the `aiproxy.upstream.failure` label).
#[derive(Debug, Clone, Copy)]
pub enum UpstreamFailure {
    /// 429.
    Throttled,
    /// 5xx.
    ServerError,
    Timeout,
    /// No connection could be made.
    Unreachable,
    /// The connection failed before an answer.
    Broken,
}

impl UpstreamFailure {
    fn as_str(self) -> &'static str {
        match self {
            UpstreamFailure::Throttled => "throttled",
            UpstreamFailure::ServerError => "server_error",
            UpstreamFailure::Timeout => "timeout",
            UpstreamFailure::Unreachable => "unreachable",
            UpstreamFailure::Broken => "broken",
        }
    }
}

impl EdgeMetrics {
    /// The instruments, from the process's meter provider (no-ops when metrics are off).
    pub fn from_telemetry() -> Self {
        Self::new(
            &aiproxy_telemetry::meter("aiproxy-edge"),
            aiproxy_telemetry::metrics_on(),
        )
    }

    pub fn new(meter: &Meter, on: bool) -> Self {
        Self {
            on,
            requests: meter
                .u64_counter("aiproxy.edge.requests")
                .with_unit("{request}")
                .with_description("Requests answered, by route family, event, upstream resource and status class")
                .build(),
            http_duration: meter
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .with_description("Time from the request's arrival to the end of its answer")
                .with_boundaries(aiproxy_telemetry::metrics::HTTP_BUCKETS.to_vec())
                .build(),
            operation_duration: meter
                .f64_histogram("gen_ai.server.request.duration")
                .with_unit("s")
                .with_description("Duration of GenAI calls through the edge, to the end of the answer")
                .with_boundaries(OPERATION_BUCKETS.to_vec())
                .build(),
            first_token: meter
                .f64_histogram("gen_ai.server.time_to_first_token")
                .with_unit("s")
                .with_description("Time to the first chunk of a successful streamed GenAI answer")
                .with_boundaries(FIRST_TOKEN_BUCKETS.to_vec())
                .build(),
            token_usage: meter
                .u64_histogram("gen_ai.client.token.usage")
                .with_unit("{token}")
                .with_description("Tokens per GenAI call, as the upstream reported them")
                .with_boundaries(TOKEN_BUCKETS.to_vec())
                .build(),
            tokens: meter
                .u64_counter("aiproxy.edge.tokens")
                .with_unit("{token}")
                .with_description("Tokens the upstreams reported, by event, model and token type")
                .build(),
            added_latency: meter
                .f64_histogram("aiproxy.edge.added_latency")
                .with_unit("s")
                .with_description("The edge's share of the time to an answer's head: that time less the upstream's")
                .with_boundaries(ADDED_BUCKETS.to_vec())
                .build(),
            upstream_failures: meter
                .u64_counter("aiproxy.edge.upstream.failures")
                .with_unit("{failure}")
                .with_description("Upstream calls that were throttled, failed or could not be made")
                .build(),
            replays: meter
                .u64_counter("aiproxy.edge.upstream.replays")
                .with_unit("{replay}")
                .with_description("Calls replayed on another pool member after one surely did not take them")
                .build(),
            series: SeriesCache::default(),
        }
    }

    pub fn on(&self) -> bool {
        self.on
    }

    /// A metered request has ended (its answer streamed to the end, or cut off).
    ///
    /// Its measurements go to series bound once per request shape ([`series`]): a request looks
    /// its shape up once, instead of the SDK hashing every measurement's labels.
    pub fn finished(&self, f: &Finished<'_>) {
        if !self.on {
            return;
        }
        let shape = Shape::of(f);
        let series = self.series.get(&shape);
        series
            .requests
            .get_or_init(|| self.requests.bind(&shape.request_labels()))
            .add(1);
        series
            .http_duration
            .get_or_init(|| self.http_duration.bind(&shape.http_labels()))
            .record(f.duration.as_secs_f64());
        if let Some(added) = f.added {
            series
                .added_latency
                .get_or_init(|| self.added_latency.bind(&[shape.family_label()]))
                .record(added.as_secs_f64());
        }
        let Some(served) = &shape.served else { return };
        self.add_tokens(&series, &shape, f.tokens, served.provider.is_some());
        if served.provider.is_none() {
            return;
        }
        series
            .operation_duration
            .get_or_init(|| self.operation_duration.bind(&shape.genai_labels(None)))
            .record(f.duration.as_secs_f64());
        if f.streamed
            && (200..300).contains(&f.status)
            && let Some(first) = f.first_byte
        {
            series
                .first_token
                .get_or_init(|| self.first_token.bind(&shape.genai_labels(None)))
                .record(first.as_secs_f64());
        }
    }

    /// The tokens of a run or response the edge read to its end itself (`usage::follow`): in
    /// `aiproxy.edge.tokens` like a request's, with no request, duration or per-call histogram.
    pub fn followed_up(&self, f: &Finished<'_>) {
        if !self.on || f.served.is_none() {
            return;
        }
        let shape = Shape::of(f);
        self.add_tokens(&self.series.get(&shape), &shape, f.tokens, false);
    }

    /// A served call's tokens: the counter, and with `per_call` the GenAI per-call histogram.
    fn add_tokens(
        &self,
        series: &Series,
        shape: &Shape<'_>,
        tokens: Option<Tokens>,
        per_call: bool,
    ) {
        let Some(tokens) = tokens else { return };
        for (kind, count) in [
            (TokenType::Input, tokens.prompt),
            (TokenType::Output, tokens.completion),
        ] {
            let i = kind as usize;
            series.tokens[i]
                .get_or_init(|| self.tokens.bind(&shape.token_labels(kind)))
                .add(count);
            if per_call {
                series.token_usage[i]
                    .get_or_init(|| self.token_usage.bind(&shape.genai_labels(Some(kind))))
                    .record(count);
            }
        }
    }

    /// A request that is not metered (refused before it reached an upstream route, or an edge
    /// endpoint) has been answered.
    pub fn answered(&self, method: &http::Method, status: u16, duration: Duration) {
        if !self.on {
            return;
        }
        self.requests.add(
            1,
            &[KeyValue::new(
                "http.response.status_class",
                status_class(status),
            )],
        );
        self.http_duration.record(
            duration.as_secs_f64(),
            &[
                KeyValue::new(
                    "http.request.method",
                    aiproxy_telemetry::http_method(method.as_str()),
                ),
                KeyValue::new("http.response.status_code", i64::from(status)),
            ],
        );
    }

    /// An upstream answered: a 429 or a 5xx counts as a failure.
    pub fn upstream_answered(&self, resource_id: &str, status: http::StatusCode) {
        if !self.on {
            return;
        }
        if status == http::StatusCode::TOO_MANY_REQUESTS {
            self.upstream_failed(resource_id, UpstreamFailure::Throttled);
        } else if status.is_server_error() {
            self.upstream_failed(resource_id, UpstreamFailure::ServerError);
        }
    }

    pub fn upstream_failed(&self, resource_id: &str, why: UpstreamFailure) {
        if !self.on {
            return;
        }
        self.upstream_failures.add(
            1,
            &[
                KeyValue::new("aiproxy.resource.id", resource_id.to_string()),
                KeyValue::new("aiproxy.upstream.failure", why.as_str()),
            ],
        );
    }

    /// A call is replayed on another member; `from` did not take it.
    pub fn replayed(&self, from: &str) {
        if !self.on {
            return;
        }
        self.replays
            .add(1, &[KeyValue::new("aiproxy.resource.id", from.to_string())]);
    }
}

/// The gauges over the edge's state, read at each collection; dropped with the edge.
pub struct StateGauges {
    _u64: Vec<ObservableGauge<u64>>,
    _f64: ObservableGauge<f64>,
    _dropped: ObservableCounter<u64>,
}

/// Registers the gauges over `state` (nothing when metrics are off).
pub fn observe(state: &Arc<EdgeState>) -> Option<StateGauges> {
    if !aiproxy_telemetry::metrics_on() {
        return None;
    }
    Some(observe_with(
        &aiproxy_telemetry::meter("aiproxy-edge"),
        state,
    ))
}

pub fn observe_with(meter: &Meter, state: &Arc<EdgeState>) -> StateGauges {
    let version = meter
        .u64_observable_gauge("aiproxy.edge.catalog.version")
        .with_description("The catalog version this edge serves (0: none yet)")
        .with_callback(reading(state, |s, o| o.observe(s.snapshot().version, &[])))
        .build();
    let connected = meter
        .u64_observable_gauge("aiproxy.edge.sync.connected")
        .with_description("1 while the Sync stream to the control plane is up")
        .with_callback(reading(state, |s, o| {
            o.observe(u64::from(s.sync_status().connected), &[])
        }))
        .build();
    let pending = meter
        .u64_observable_gauge("aiproxy.edge.usage.pending")
        .with_unit("{record}")
        .with_description("Usage records not yet acknowledged by the control plane")
        .with_callback(reading(state, |s, o| {
            o.observe(s.usage.status().pending_records as u64, &[])
        }))
        .build();
    let left_out = meter
        .u64_observable_gauge("aiproxy.edge.pool.member.left_out")
        .with_description("1 while a pool member is left out after a 429, a 5xx or no answer")
        .with_callback(reading(state, |s, o| {
            for (resource, out) in s.health.members() {
                o.observe(
                    u64::from(out),
                    &[KeyValue::new("aiproxy.resource.id", resource)],
                );
            }
        }))
        .build();
    let since = Instant::now();
    let age = meter
        .f64_observable_gauge("aiproxy.edge.sync.age")
        .with_unit("s")
        .with_description("Seconds since this edge last knew it held the current catalog: 0 while Sync is up, else since the stream was lost (or the edge started)")
        .with_callback(reading(state, move |s, o| {
            let status = s.sync_status();
            let age = if status.connected {
                Duration::ZERO
            } else {
                status.lost_at.unwrap_or(since).elapsed()
            };
            o.observe(age.as_secs_f64(), &[]);
        }))
        .build();
    let dropped = meter
        .u64_observable_counter("aiproxy.edge.usage.dropped")
        .with_unit("{record}")
        .with_description("Usage records dropped because the delivery buffer was full")
        .with_callback(reading(state, |s, o| {
            o.observe(s.usage.status().dropped_records, &[])
        }))
        .build();
    StateGauges {
        _u64: vec![version, connected, pending, left_out],
        _f64: age,
        _dropped: dropped,
    }
}

/// A callback that reads the edge's state while the edge is there.
fn reading<T: 'static>(
    state: &Arc<EdgeState>,
    read: impl Fn(&EdgeState, &dyn AsyncInstrument<T>) + Send + Sync + 'static,
) -> impl Fn(&dyn AsyncInstrument<T>) + Send + Sync + 'static {
    let state: Weak<EdgeState> = Arc::downgrade(state);
    move |observer| {
        if let Some(state) = state.upgrade() {
            read(&state, observer);
        }
    }
}

fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

fn operation_of(family: &'static str) -> &'static str {
    crate::proxy::trace::operation_of(family)
}

#[cfg(test)]
mod tests;
