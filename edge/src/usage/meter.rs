//! The body every metered answer streams through: frames go to the client as they arrive, while a
//! copy is scanned for the upstream's `usage`; when the body ends (or the client goes away) one
//! usage record is made, the tokens are charged to the event's token caps, and the request's
//! metrics are recorded.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use aiproxy_proto::MAX_ONCE_KEY_BYTES;
use aiproxy_proto::v1 as pb;
use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::{Notify, watch};

use super::follow::FollowUp;
use super::scan::{self, StreamScan, Tokens, Unfinished, UsageChunkFilter};
use crate::body::{BoxError, EdgeBody};
use crate::metrics::{Finished, ServedBy};
use crate::quota::Charge;
use crate::state::EdgeState;

/// Which upstream resource answered (put in the response's extensions by `proxy::forward`).
#[derive(Debug, Clone)]
pub struct Served {
    pub resource_id: String,
    pub deployment_name: String,
    /// `gen_ai.provider.name` of the resource; `None` for search and MCP.
    pub provider: Option<&'static str>,
    /// How long the upstream took to send its answer's head.
    pub upstream_wait: Duration,
}

/// What is kept of a JSON answer larger than `AIPROXY_USAGE_SCAN_BYTES`: its end.
const TAIL: usize = 64 * 1024;

/// Longest the edge keeps reading an answer its client stopped reading, to learn its usage.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// Longest shutdown waits for stopped drains to make their records.
const STOPPED_DRAINS_LIMIT: Duration = Duration::from_secs(5);

/// One running drain, counted in [`Drains`] while it lives.
pub(crate) struct DrainTicket(Arc<Drains>);

impl Drop for DrainTicket {
    fn drop(&mut self) {
        self.0.ended();
    }
}

/// Answers still being read in the background after their client left ([`MeteredBody`]'s
/// `drop`). Each leaves a usage record when it ends, so shutdown waits for them before its last
/// usage flush ([`Drains::finish`]); a record made after that flush would be lost.
#[derive(Debug)]
pub struct Drains {
    running: AtomicUsize,
    none_left: Notify,
    stop: watch::Sender<bool>,
}

impl Default for Drains {
    fn default() -> Self {
        Self {
            running: AtomicUsize::new(0),
            none_left: Notify::new(),
            stop: watch::Sender::new(false),
        }
    }
}

impl Drains {
    /// Answers being read now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Waits until `deadline` for the answers being read to end; those still reading then stop
    /// where they are and make their records now (usage unknown unless already seen).
    pub async fn finish(&self, deadline: tokio::time::Instant) {
        if tokio::time::timeout_at(deadline, self.none_running())
            .await
            .is_ok()
        {
            return;
        }
        tracing::warn!(
            running = self.running(),
            "answers whose clients left (or runs and responses followed) were still being read at shutdown: their usage is recorded as far as it was read"
        );
        self.stop.send_replace(true);
        // A stopped drain only makes its record; this bound is for a runtime that never ran it.
        if tokio::time::timeout(STOPPED_DRAINS_LIMIT, self.none_running())
            .await
            .is_err()
        {
            tracing::warn!(
                running = self.running(),
                "drains and follow-ups did not stop"
            );
        }
    }

    async fn none_running(&self) {
        loop {
            // Made before the check, so a drain that ends in between still wakes it.
            let notified = self.none_left.notified();
            if self.running() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Runs `read` (true: the answer ended whole) for at most [`DRAIN_LIMIT`], or until shutdown
    /// stops the drains (false).
    async fn read(&self, read: impl Future<Output = bool>) -> bool {
        let mut stop = self.stop.subscribe();
        tokio::select! {
            read = tokio::time::timeout(DRAIN_LIMIT, read) => read.unwrap_or(false),
            _ = stop.wait_for(|stop| *stop) => false,
        }
    }

    /// Counts a drain (or a follow-up, see `super::follow`) until the returned ticket is
    /// dropped (its task ended, panicked, or was dropped unrun).
    pub(crate) fn start(self: &Arc<Self>) -> DrainTicket {
        self.running.fetch_add(1, Ordering::AcqRel);
        DrainTicket(self.clone())
    }

    fn ended(&self) {
        if self.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.none_left.notify_waiters();
        }
    }
}

/// A request being metered: what its usage record needs, filled in as the pipeline learns it.
#[derive(Debug)]
pub struct Metering {
    pub method: http::Method,
    pub event_id: String,
    pub user_id: String,
    /// chat, completions, embeddings, responses, images, audio, agents, search, inference, mcp.
    pub family: &'static str,
    /// The deployment or model the caller named (empty: the serving resource's).
    pub deployment: String,
    /// The edge added `stream_options.include_usage` upstream: the usage-only chunk is not for
    /// the client.
    pub strip_usage_chunk: bool,
    /// The token counters to charge.
    pub charge: Charge,
    /// The request's span (off when telemetry is): usage is recorded on it, and it ends when
    /// the answer has been streamed.
    pub span: aiproxy_telemetry::ServerSpan,
    /// The client's `api-version`, sent again (alone) when the edge follows a run or response
    /// this answer shows at work (see `super::follow`); kept only for calls that can show one.
    pub follow_api_version: Option<String>,
    started: Instant,
    started_at_ms: i64,
}

impl Metering {
    pub fn new(
        method: &http::Method,
        event_id: &str,
        user_id: &str,
        family: &'static str,
        started: Instant,
        started_at_ms: i64,
    ) -> Self {
        Self {
            method: method.clone(),
            event_id: event_id.to_string(),
            user_id: user_id.to_string(),
            family,
            deployment: String::new(),
            strip_usage_chunk: false,
            charge: Charge::default(),
            span: aiproxy_telemetry::ServerSpan::off(),
            follow_api_version: None,
            started,
            started_at_ms,
        }
    }

    /// Wraps the answer's body so its usage is read as it streams by; the record is made when
    /// the body ends or is dropped.
    pub fn wrap(self, state: &Arc<EdgeState>, response: Response<EdgeBody>) -> Response<EdgeBody> {
        let (mut parts, body) = response.into_parts();
        let served = parts.extensions.get::<Served>().cloned();
        let header = |name| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_ascii_lowercase()
        };
        let content_type = header(http::header::CONTENT_TYPE);
        let encoding = header(http::header::CONTENT_ENCODING);
        let limit = state.usage.settings.scan_bytes;
        let tokens_expected = !matches!(self.family, "search" | "mcp");
        let scan = match &served {
            None => Scan::Nothing,
            Some(_) if !tokens_expected => Scan::Nothing,
            Some(_) if !encoding.is_empty() && encoding != "identity" => Scan::Unreadable,
            Some(_) if content_type.starts_with("text/event-stream") => {
                if self.strip_usage_chunk {
                    // The filter changes the length of what the client receives.
                    parts.headers.remove(http::header::CONTENT_LENGTH);
                    Scan::Filter(UsageChunkFilter::new(limit))
                } else {
                    Scan::Stream(StreamScan::new(limit))
                }
            }
            Some(_) if content_type.contains("json") => Scan::Json {
                whole: None,
                copy: Vec::new(),
                limit,
                over: false,
            },
            Some(_) => Scan::Nothing,
        };
        let streamed = matches!(scan, Scan::Filter(_) | Scan::Stream(_));
        // The head is here: what the upstream did not spend of the time to it, the edge did.
        let added = served
            .as_ref()
            .map(|s| self.started.elapsed().saturating_sub(s.upstream_wait));
        let record = Pending {
            state: state.clone(),
            metering: self,
            served,
            status: parts.status.as_u16(),
            streamed,
            added,
        };
        let body = MeteredBody {
            inner: Some(body),
            scan,
            first_byte: None,
            tail: None,
            ended: false,
            record: Some(record),
        };
        Response::from_parts(parts, body.boxed_unsync())
    }
}

/// What is read from the answer as it passes.
enum Scan {
    /// No tokens to find (an edge-made answer, search, MCP, binary content).
    Nothing,
    /// Compressed: the edge cannot read it (the edge asks for uncompressed answers, so rare).
    Unreadable,
    Json {
        /// The answer while it is one frame (most are): kept as it is, not copied.
        whole: Option<Bytes>,
        /// The answer once it is more than one frame.
        copy: Vec<u8>,
        limit: usize,
        /// Past `limit`, `copy` keeps only the last `TAIL` bytes (where `usage` is written).
        over: bool,
    },
    Stream(StreamScan),
    Filter(UsageChunkFilter),
}

/// What the scan found: tokens (if the upstream reported them), the run or response they belong
/// to, and whether usage should have been there but could not be read.
struct Found {
    tokens: Option<Tokens>,
    once_id: Option<String>,
    /// The model the answer named (`gen_ai.response.model`).
    model: Option<String>,
    unknown: bool,
    /// A run or response the answer showed at work.
    unfinished: Option<Unfinished>,
}

impl Scan {
    fn feed(&mut self, data: &Bytes) {
        match self {
            Scan::Json {
                whole,
                copy,
                limit,
                over,
            } => {
                if whole.is_none() && copy.is_empty() && !*over && data.len() <= *limit {
                    *whole = Some(data.clone());
                    return;
                }
                if let Some(first) = whole.take() {
                    copy.extend_from_slice(&first);
                }
                if !*over && copy.len() + data.len() <= *limit {
                    copy.extend_from_slice(data);
                } else {
                    *over = true;
                    copy.extend_from_slice(&data[data.len().saturating_sub(TAIL)..]);
                    let excess = copy.len().saturating_sub(TAIL);
                    copy.drain(..excess);
                }
            }
            Scan::Stream(scan) => scan.feed(data),
            // The filter is fed by `poll_frame`, which forwards what it returns.
            Scan::Filter(_) | Scan::Nothing | Scan::Unreadable => {}
        }
    }

    /// `complete`: the body arrived whole (not cut off by an error or a client gone).
    fn found(&mut self, complete: bool) -> Found {
        let mut unfinished = None;
        let (tokens, once_id, model, broken) = match self {
            Scan::Nothing => (None, None, None, false),
            Scan::Unreadable => (None, None, None, true),
            Scan::Json {
                whole, copy, over, ..
            } => {
                let copy = whole.as_deref().unwrap_or(copy);
                if *over {
                    // Chat, completions and embeddings answers write `usage` last.
                    let usage = scan::usage_in_tail(copy);
                    (usage, None, None, usage.is_none())
                } else {
                    let answer = scan::scan_json(copy);
                    unfinished = answer.unfinished;
                    (answer.usage, answer.once_id, answer.model, false)
                }
            }
            Scan::Stream(scan) => {
                let outcome = scan.finish();
                unfinished = outcome.unfinished;
                (
                    outcome.usage,
                    outcome.once_id,
                    outcome.model,
                    outcome.broken,
                )
            }
            Scan::Filter(filter) => (
                filter.usage(),
                None,
                filter.model().map(str::to_string),
                filter.broken(),
            ),
        };
        let expected = !matches!(self, Scan::Nothing);
        Found {
            unknown: tokens.is_none() && expected && (broken || !complete),
            tokens,
            once_id,
            model,
            unfinished,
        }
    }
}

/// The record waiting for its body to end.
struct Pending {
    state: Arc<EdgeState>,
    metering: Metering,
    served: Option<Served>,
    status: u16,
    streamed: bool,
    /// The edge's share of the time to the answer's head (when an upstream answered).
    added: Option<Duration>,
}

impl Pending {
    fn finish(self, found: Found, first_byte: Option<Instant>) {
        let m = self.metering;
        let millis = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        let provider = self.served.as_ref().and_then(|s| s.provider);
        let (resource_id, deployment) = match self.served {
            Some(s) if m.deployment.is_empty() => (s.resource_id, s.deployment_name),
            Some(s) => (s.resource_id, m.deployment),
            None => (String::new(), m.deployment),
        };
        let duration = m.started.elapsed();
        let first_byte = first_byte.map(|t| t - m.started);
        // A successful stream of these APIs always ends with its usage (the edge asks for it).
        let unknown = found.unknown
            || (found.tokens.is_none()
                && self.streamed
                && (200..300).contains(&self.status)
                && matches!(m.family, "chat" | "completions" | "responses"));
        crate::proxy::trace::record_usage(
            &m.span,
            m.family,
            &deployment,
            found.model.as_deref(),
            found.tokens,
            unknown,
        );
        let tokens = found.tokens.unwrap_or_default();
        // A run's or a stored response's usage shows on every read of it: its tokens count once
        // (in the caps and, by the record's once-key, in the control plane's totals).
        let once_key = found
            .once_id
            .map(|id| bounded_once_key(format!("{resource_id}:{id}")))
            .unwrap_or_default();
        let first_charge = self
            .state
            .quota
            .charge(&self.state, &m.charge, tokens.total, &once_key);
        if let Some(object) = found.unfinished
            && (200..300).contains(&self.status)
            && !resource_id.is_empty()
        {
            let once_key = bounded_once_key(format!("{resource_id}:{}", object.once_id()));
            // A client polling its run shows it at work on every read: followed already.
            if !self.state.follow_ups.follows(&once_key) {
                self.state.follow_ups.follow(
                    &self.state,
                    FollowUp {
                        resource_id: resource_id.clone(),
                        object,
                        api_version: m.follow_api_version.clone(),
                        once_key,
                        charge: m.charge.clone(),
                        event_id: m.event_id.clone(),
                        user_id: m.user_id.clone(),
                        deployment: deployment.clone(),
                        family: m.family,
                    },
                );
            }
        }
        // Only a pool that served the call names the model: a made-up name is never a label.
        let served = (!resource_id.is_empty()).then(|| ServedBy {
            resource_id: &resource_id,
            model: &deployment,
            provider,
        });
        self.state.metrics.finished(&Finished {
            method: &m.method,
            family: m.family,
            event_id: &m.event_id,
            served,
            status: self.status,
            duration,
            first_byte,
            streamed: self.streamed,
            // A run read again reports the same tokens: they are counted at first sight only.
            tokens: found.tokens.filter(|_| first_charge),
            added: self.added,
        });
        self.state.usage.push(pb::UsageRecord {
            event_id: m.event_id,
            user_id: m.user_id,
            resource_id,
            deployment_name: deployment,
            route_family: m.family.to_string(),
            status: u32::from(self.status),
            started_at_ms: m.started_at_ms,
            duration_ms: millis(duration),
            ttfb_ms: first_byte.map_or(0, millis),
            streamed: self.streamed,
            prompt_tokens: tokens.prompt,
            completion_tokens: tokens.completion,
            total_tokens: tokens.total,
            cached_tokens: tokens.cached,
            reasoning_tokens: tokens.reasoning,
            usage_unknown: unknown,
            once_key,
            follow_up: false,
        });
    }
}

/// An object id comes from the upstream's answer: one too long for the control plane is replaced
/// by its SHA-256 (still one key per object, so it is counted once).
fn bounded_once_key(key: String) -> String {
    if key.len() <= MAX_ONCE_KEY_BYTES {
        return key;
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    let mut out = String::from("sha256:");
    for byte in digest.as_ref() {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

struct MeteredBody {
    /// Taken by `Drop` to read on after the client left.
    inner: Option<EdgeBody>,
    scan: Scan,
    first_byte: Option<Instant>,
    /// What the filter still held when the stream ended, sent before the end.
    tail: Option<Bytes>,
    ended: bool,
    record: Option<Pending>,
}

impl MeteredBody {
    /// The upstream's answer says it has no more frames.
    fn inner_done(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(|inner| inner.is_end_stream())
    }

    /// The answer arrived whole: what the filter still holds goes out last, and the record is made.
    fn end(&mut self) {
        self.ended = true;
        if let Scan::Filter(filter) = &mut self.scan {
            let tail = filter.finish();
            if !tail.is_empty() {
                self.tail = Some(tail);
            }
        }
        self.finish(true);
    }

    fn finish(&mut self, complete: bool) {
        if let Some(record) = self.record.take() {
            record.finish(self.scan.found(complete), self.first_byte);
        }
    }
}

impl Body for MeteredBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if let Some(tail) = this.tail.take() {
                return Poll::Ready(Some(Ok(Frame::data(tail))));
            }
            let Some(inner) = this.inner.as_mut().filter(|_| !this.ended) else {
                return Poll::Ready(None);
            };
            match ready!(Pin::new(inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let frame = match frame.into_data() {
                        Ok(data) => {
                            if this.first_byte.is_none() && !data.is_empty() {
                                this.first_byte = Some(Instant::now());
                            }
                            if let Scan::Filter(filter) = &mut this.scan {
                                let out = filter.push(&data);
                                if out.is_empty() && !this.inner_done() {
                                    continue;
                                }
                                Frame::data(out)
                            } else {
                                this.scan.feed(&data);
                                Frame::data(data)
                            }
                        }
                        Err(frame) => frame,
                    };
                    // A body of known length says it has ended with its last frame, and hyper
                    // then stops polling (and drops it): the record is made now, not on drop.
                    if this.inner_done() {
                        this.end();
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Some(Err(e)) => {
                    this.ended = true;
                    this.finish(false);
                    return Poll::Ready(Some(Err(e)));
                }
                None => this.end(),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.tail.is_none() && (self.ended || self.inner_done())
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.scan, &self.inner) {
            (Scan::Filter(_), _) | (_, None) => SizeHint::default(),
            (_, Some(inner)) => inner.size_hint(),
        }
    }
}

impl Drop for MeteredBody {
    /// The client went away before the end: the rest of the answer is read (and discarded) in
    /// the background, for at most a minute, so its usage is still counted — the upstream bills
    /// the tokens whether or not the client reads them.
    fn drop(&mut self) {
        let Some(record) = self.record.take() else {
            return;
        };
        let mut scan = std::mem::replace(&mut self.scan, Scan::Nothing);
        let first_byte = self.first_byte;
        if self.ended || self.inner_done() {
            // Whole (an empty body hyper never polled, or one that ended with its last frame).
            record.finish(scan.found(true), first_byte);
            return;
        }
        let inner = self.inner.take();
        let reads_on = inner.is_some()
            && !matches!(scan, Scan::Nothing | Scan::Unreadable)
            && !record.state.draining();
        match (inner, tokio::runtime::Handle::try_current()) {
            (Some(inner), Ok(runtime)) if reads_on => {
                // Counted before it is spawned: shutdown cannot miss it.
                let ticket = record.state.drains.start();
                runtime.spawn(drain(inner, scan, record, first_byte, ticket));
            }
            _ => record.finish(scan.found(false), first_byte),
        }
    }
}

async fn drain(
    mut inner: EdgeBody,
    mut scan: Scan,
    record: Pending,
    first_byte: Option<Instant>,
    ticket: DrainTicket,
) {
    let read = async {
        while let Some(frame) = inner.frame().await {
            let Ok(frame) = frame else {
                return false;
            };
            if let Ok(data) = frame.into_data() {
                match &mut scan {
                    Scan::Filter(filter) => {
                        filter.push(&data);
                    }
                    other => other.feed(&data),
                }
            }
        }
        true
    };
    let complete = ticket.0.read(read).await;
    record.finish(scan.found(complete), first_byte);
    drop(ticket);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_waits_for_drains_and_stops_those_past_its_deadline() {
        let in_ = |d: Duration| tokio::time::Instant::now() + d;
        let drains = Arc::new(Drains::default());
        let at = Instant::now();
        drains.finish(in_(Duration::from_secs(5))).await;
        assert!(
            at.elapsed() < Duration::from_secs(1),
            "none running: at once"
        );

        // One that ends by itself within the window is waited for.
        let ticket = drains.start();
        let whole = tokio::spawn(async move {
            ticket
                .0
                .read(async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    true
                })
                .await
        });
        drains.finish(in_(Duration::from_secs(5))).await;
        assert_eq!(drains.running(), 0);
        assert!(whole.is_finished() && whole.await.unwrap());

        // One that would read for a minute is stopped at the deadline.
        let ticket = drains.start();
        let cut = tokio::spawn(async move { ticket.0.read(std::future::pending()).await });
        let at = Instant::now();
        drains.finish(in_(Duration::from_millis(100))).await;
        assert!(at.elapsed() < Duration::from_secs(5));
        assert_eq!(drains.running(), 0);
        assert!(!cut.await.unwrap(), "stopped, not whole");

        // One whose task panicked (or was dropped unrun) is not waited for forever.
        let ticket = drains.start();
        let panicked = tokio::spawn(async move {
            let _ticket = ticket;
            panic!("a drain that fails");
        });
        assert!(panicked.await.is_err());
        assert_eq!(drains.running(), 0);
    }

    const CHAT: &[u8] = br#"{"id":"c","object":"chat.completion","usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;

    fn json(limit: usize) -> Scan {
        Scan::Json {
            whole: None,
            copy: Vec::new(),
            limit,
            over: false,
        }
    }

    #[test]
    fn a_once_key_too_long_for_the_control_plane_becomes_its_digest() {
        let short = "r1:run:run_abc".to_string();
        assert_eq!(bounded_once_key(short.clone()), short);
        let long = format!("r1:run:{}", "x".repeat(600));
        let bounded = bounded_once_key(long.clone());
        assert!(bounded.len() <= MAX_ONCE_KEY_BYTES, "{bounded}");
        assert!(bounded.starts_with("sha256:"));
        assert_eq!(bounded, bounded_once_key(long), "one object, one key");
        assert_ne!(
            bounded,
            bounded_once_key(format!("r1:run:{}", "y".repeat(600)))
        );
    }

    #[test]
    fn a_json_answer_is_read_from_its_copy_in_any_pieces() {
        let mut scan = json(1024);
        for piece in CHAT.chunks(5) {
            scan.feed(&Bytes::copy_from_slice(piece));
        }
        let found = scan.found(true);
        assert_eq!(found.tokens.map(|t| t.total), Some(7));
        assert!(!found.unknown);
    }

    #[test]
    fn a_json_answer_in_one_frame_is_read_without_a_copy() {
        let mut scan = json(1024);
        scan.feed(&Bytes::from_static(CHAT));
        assert!(
            matches!(&scan, Scan::Json { whole: Some(_), copy, .. } if copy.is_empty()),
            "one frame is kept as it came"
        );
        assert_eq!(scan.found(true).tokens.map(|t| t.total), Some(7));
        // A second frame: both are read, in order.
        let mut scan = json(1024);
        let (head, rest) = CHAT.split_at(30);
        scan.feed(&Bytes::from_static(head));
        scan.feed(&Bytes::from_static(rest));
        assert_eq!(scan.found(true).tokens.map(|t| t.total), Some(7));
    }

    #[test]
    fn an_answer_past_the_bound_is_read_from_its_end_or_flagged() {
        // Larger than the bound: the usage written last is still read.
        let big = format!(
            r#"{{"object":"list","data":[{}],"usage":{{"prompt_tokens":9,"total_tokens":9}}}}"#,
            "0.125,".repeat(40_000) + "1"
        );
        let mut scan = json(1024);
        for piece in big.as_bytes().chunks(4096) {
            scan.feed(&Bytes::copy_from_slice(piece));
        }
        let found = scan.found(true);
        assert_eq!(found.tokens.map(|t| t.total), Some(9));
        assert!(!found.unknown);
        // The same when its first frame alone was under the bound (kept whole at first).
        let mut scan = json(1024);
        let (first, rest) = big.as_bytes().split_at(500);
        scan.feed(&Bytes::copy_from_slice(first));
        for piece in rest.chunks(4096) {
            scan.feed(&Bytes::copy_from_slice(piece));
        }
        assert_eq!(scan.found(true).tokens.map(|t| t.total), Some(9));
        // No usage at its end: counted without tokens, and flagged.
        let mut scan = json(CHAT.len() - 1);
        scan.feed(&Bytes::copy_from_slice(&big.as_bytes()[..200_000]));
        let found = scan.found(true);
        assert_eq!(found.tokens, None);
        assert!(found.unknown);
    }

    #[test]
    fn a_cut_answer_without_usage_is_flagged_and_one_without_tokens_to_find_is_not() {
        let mut scan = json(1024);
        scan.feed(&Bytes::from_static(&CHAT[..20]));
        assert!(scan.found(false).unknown);
        assert!(!Scan::Nothing.found(false).unknown);
        assert!(Scan::Unreadable.found(true).unknown);
        // A complete answer that reports no usage (an error, a file) is not a reading failure.
        let mut scan = json(1024);
        scan.feed(&Bytes::from_static(br#"{"error":{"code":"429"}}"#));
        assert!(!scan.found(true).unknown);
    }
}
