//! Request spans made with the OpenTelemetry API itself, for the edge's hot path.
//!
//! A `tracing` span bridged by `tracing-opentelemetry` costs, per request, a registry slot, a
//! field visitor per recorded value and a context switch on every poll; with export on, that was
//! most of what tracing added to the edge's CPU per request. A [`ServerSpan`] is the SDK's span
//! in an OpenTelemetry [`Context`]: attributes go straight into it, and it ends (and is queued
//! for export) when its last clone is dropped.
//!
//! Without an exporter no tracer is installed, [`ServerSpan::start`] returns a span that is off,
//! and every method on it returns at once: nothing is allocated or formatted, and a client's
//! `traceparent` goes upstream exactly as it was sent.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt as _, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracer;

use crate::propagation::Extract;

/// The tracer of [`ServerSpan`]s; set while spans are exported.
static TRACER: ArcSwapOption<SdkTracer> = ArcSwapOption::const_empty();

pub(crate) fn install(tracer: Option<SdkTracer>) {
    TRACER.store(tracer.map(Arc::new));
}

/// Attributes a server span holds without growing its vector.
const ATTRIBUTE_ROOM: usize = 16;

/// One server request's span (or nothing, when spans are not exported). Clones share the span.
#[derive(Clone, Debug, Default)]
pub struct ServerSpan {
    context: Option<Context>,
    /// Sampled (or recorded): attributes and names are made only then. An unsampled span still
    /// carries its trace context to the next hop.
    recording: bool,
}

impl ServerSpan {
    /// A span that is off (a probe, or telemetry off).
    pub const fn off() -> Self {
        Self {
            context: None,
            recording: false,
        }
    }

    /// Starts a server span named `name`, continuing the W3C trace context in `headers` (if
    /// valid), with the attributes `attributes` makes (called only when spans are exported).
    pub fn start(
        name: &'static str,
        headers: &HeaderMap,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Self {
        let tracer = TRACER.load();
        let Some(tracer) = tracer.as_deref() else {
            return Self::off();
        };
        // Most calls carry no trace context: no propagator, no header parsing.
        let parent = if headers.contains_key(TRACEPARENT) {
            TraceContextPropagator::new().extract_with_context(&Context::new(), &Extract(headers))
        } else {
            Context::new()
        };
        // Room for all of a request's attributes (given now or set later), so none grows it.
        let builder = tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_attributes(Vec::with_capacity(ATTRIBUTE_ROOM));
        // The sampler decides before any attribute is made (none of ours are sampling inputs).
        let span = tracer.build_with_context(builder, &parent);
        let recording = span.is_recording();
        let mut span = span;
        if recording {
            span.set_attributes(attributes());
        }
        Self {
            context: Some(parent.with_span(span)),
            recording,
        }
    }

    /// The span of the context current on this thread: the request's, inside a future run with
    /// [`ServerSpan::context`] (off when there is none or spans are not exported).
    pub fn current() -> Self {
        if TRACER.load().is_none() {
            return Self::off();
        }
        let context = Context::current();
        if !context.has_active_span() {
            return Self::off();
        }
        let recording = context.span().is_recording();
        Self {
            context: Some(context),
            recording,
        }
    }

    /// Spans are exported and this is one (sampled or not).
    pub fn is_on(&self) -> bool {
        self.context.is_some()
    }

    /// Sampled: its attributes are kept.
    pub fn is_recording(&self) -> bool {
        self.recording
    }

    /// The context to run the request's future in (`opentelemetry::trace::FutureExt`), so log
    /// lines and [`ServerSpan::current`] see the span.
    pub fn context(&self) -> Option<&Context> {
        self.context.as_ref()
    }

    fn recorded(&self) -> Option<&Context> {
        self.context.as_ref().filter(|_| self.recording)
    }

    /// Sets one attribute; `make` is called only when the span is recorded.
    pub fn set(&self, make: impl FnOnce() -> KeyValue) {
        if let Some(cx) = self.recorded() {
            cx.span().set_attribute(make());
        }
    }

    /// Renames the span once its name is known (e.g. `chat gpt-4o`).
    pub fn rename(&self, make: impl FnOnce() -> String) {
        if let Some(cx) = self.recorded() {
            cx.span().update_name(make());
        }
    }

    /// Marks the span as failed (a 5xx answer).
    pub fn set_error(&self) {
        if let Some(cx) = self.recorded() {
            cx.span().set_status(Status::error(""));
        }
    }

    /// Replaces any trace context in `headers` with this span's, so the next hop continues the
    /// trace; headers are left as they are when the span is off.
    pub fn inject(&self, headers: &mut HeaderMap) {
        let Some(cx) = &self.context else { return };
        let span = cx.span();
        let context = span.span_context();
        if !context.is_valid() {
            return;
        }
        headers.remove(TRACESTATE);
        headers.insert(TRACEPARENT, traceparent(context));
        let state = context.trace_state().header();
        if !state.is_empty()
            && let Ok(value) = HeaderValue::from_str(&state)
        {
            headers.insert(TRACESTATE, value);
        }
    }
}

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// `00-<trace id>-<span id>-<flags>`, written straight into the header's bytes: on every proxied
/// call, the propagator's `format!` and its empty `tracestate` were measurable. The test pins it
/// to what `TraceContextPropagator` writes.
fn traceparent(context: &SpanContext) -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'-'; 55];
    out[..2].copy_from_slice(b"00");
    let fields: [(&[u8], usize); 3] = [
        (&context.trace_id().to_bytes(), 3),
        (&context.span_id().to_bytes(), 36),
        (&[context.trace_flags().to_u8()], 53),
    ];
    for (bytes, at) in fields {
        for (i, b) in bytes.iter().enumerate() {
            out[at + 2 * i] = HEX[usize::from(b >> 4)];
            out[at + 2 * i + 1] = HEX[usize::from(b & 0xf)];
        }
    }
    HeaderValue::from_bytes(&out).expect("hex digits and dashes are a valid header value")
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use opentelemetry::trace::{SpanId, TracerProvider as _};
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};

    use super::*;

    const CLIENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    struct Inject<'a>(&'a mut HeaderMap);

    impl opentelemetry::propagation::Injector for Inject<'_> {
        fn set(&mut self, key: &str, value: String) {
            let name = HeaderName::from_bytes(key.as_bytes()).unwrap();
            self.0.insert(name, HeaderValue::from_str(&value).unwrap());
        }
    }

    #[derive(Debug, Clone, Default)]
    struct Collected(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Collected {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    // One test: the tracer is process-wide.
    #[test]
    fn a_server_span_continues_the_clients_trace_and_is_off_without_a_tracer() {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", CLIENT.parse().unwrap());

        // Off: no attributes are made and the client's context goes upstream as sent.
        let span = ServerSpan::start("request", &headers, || unreachable!("made while off"));
        assert!(!span.is_on() && !ServerSpan::current().is_on());
        span.set(|| unreachable!("made while off"));
        span.inject(&mut headers);
        assert_eq!(headers["traceparent"], CLIENT);

        let exported = Collected::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exported.clone())
            .build();
        install(Some(provider.tracer("test")));
        let span = ServerSpan::start("request", &headers, || {
            vec![KeyValue::new("aiproxy.edge.region", "eu")]
        });
        assert!(span.is_on());
        span.set(|| KeyValue::new("gen_ai.usage.input_tokens", 12));
        span.rename(|| "chat gpt-4o".to_string());
        span.set_error();
        let mut upstream = headers.clone();
        span.inject(&mut upstream);
        let sent = upstream["traceparent"].to_str().unwrap().to_string();
        assert!(
            sent.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
            "{sent}"
        );
        assert!(!sent.contains("b7ad6b7169203331"), "{sent}");
        let mut by_the_sdk = HeaderMap::new();
        TraceContextPropagator::new()
            .inject_context(span.context().unwrap(), &mut Inject(&mut by_the_sdk));
        assert_eq!(by_the_sdk["traceparent"], sent);
        assert!(upstream.get("tracestate").is_none(), "no empty tracestate");
        {
            let _current = span.context().unwrap().clone().attach();
            assert!(ServerSpan::current().is_on());
        }
        assert!(!ServerSpan::current().is_on());
        // A client's unsampled trace: continued upstream (flags 00), nothing made or recorded.
        let mut unsampled = HeaderMap::new();
        unsampled.insert("traceparent", CLIENT.replace("-01", "-00").parse().unwrap());
        let not_sampled = ServerSpan::start("request", &unsampled, || {
            unreachable!("made while unsampled")
        });
        assert!(not_sampled.is_on() && !not_sampled.is_recording());
        not_sampled.set(|| unreachable!("made while unsampled"));
        not_sampled.inject(&mut unsampled);
        let sent_on = unsampled["traceparent"].to_str().unwrap();
        assert!(
            sent_on.starts_with("00-0af7651916cd43dd8448eb211c80319c-") && sent_on.ends_with("-00")
        );
        drop(not_sampled);

        let clone = span.clone();
        drop(span);
        assert!(
            exported.0.lock().unwrap().is_empty(),
            "ends with its last clone"
        );
        drop(clone);
        install(None);

        let spans = exported.0.lock().unwrap();
        assert_eq!(spans.len(), 1);
        let s = &spans[0];
        assert_eq!(s.name, "chat gpt-4o");
        assert_eq!(s.span_kind, SpanKind::Server);
        assert_eq!(
            s.parent_span_id,
            SpanId::from_hex("b7ad6b7169203331").unwrap()
        );
        assert!(sent.contains(&s.span_context.span_id().to_string()));
        assert!(matches!(s.status, Status::Error { .. }));
        let keys: Vec<&str> = s.attributes.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["aiproxy.edge.region", "gen_ai.usage.input_tokens"]);
    }
}
