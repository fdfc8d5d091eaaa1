//! What upstream answers say about token usage: a JSON answer's `usage`, the usage events of an
//! event stream, and the filter that hides the usage-only chunk from a client that did not ask
//! for it.
//!
//! Usage comes in two shapes, both read into [`Tokens`]:
//! - Chat, Completions, Embeddings and agent runs: `prompt_tokens`, `completion_tokens`,
//!   `total_tokens`, `prompt_tokens_details.cached_tokens`,
//!   `completion_tokens_details.reasoning_tokens`;
//! - the Responses API: `input_tokens`, `output_tokens`, `total_tokens`,
//!   `input_tokens_details.cached_tokens`, `output_tokens_details.reasoning_tokens` (input is
//!   read as prompt, output as completion).
//!
//! A count that is missing, `null` or not a whole number reads as 0; a missing `total_tokens` is
//! prompt + completion; `"usage": null` is no usage. Only the fields read here are looked at:
//! everything else is skipped (`IgnoredAny`) without being built, and strings are borrowed from
//! the input when they hold no escapes. Nothing here panics on any input. Member names are
//! compared as written: an upstream that spelled `usage` with escapes would not be understood.
//!
//! Usage of a run step (`"object":"thread.run.step"`) is ignored: it is part of its run's.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::sync::LazyLock;

use bytes::{Bytes, BytesMut};
use memchr::memmem;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Tokens one call used, as the upstream reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    pub prompt: u64,
    pub completion: u64,
    pub total: u64,
    pub cached: u64,
    pub reasoning: u64,
}

/// What a JSON answer says about its usage.
#[derive(Debug, Default, PartialEq)]
pub struct Answer {
    pub usage: Option<Tokens>,
    /// Set when the answer is a run (`run:<id>`) or a response (`response:<id>`) that carries a
    /// non-null usage: such an object's usage shows again on every later read of it, so its
    /// tokens count once per id.
    pub once_id: Option<String>,
    /// The model that answered (`model`; `gen_ai.response.model` on the request's span).
    pub model: Option<String>,
    /// A run or response still at work: its usage comes with a later read of it.
    pub unfinished: Option<Unfinished>,
}

/// A run or a (background) response that was not finished when an answer showed it: queued,
/// in progress, waiting for tool outputs or being cancelled. Its usage is reported by the
/// object once it ends, on the next read of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfinished {
    Run { id: String, thread_id: String },
    Response { id: String },
}

impl Unfinished {
    /// The id its usage is counted once by (see [`Answer::once_id`]).
    pub fn once_id(&self) -> String {
        match self {
            Unfinished::Run { id, .. } => format!("run:{id}"),
            Unfinished::Response { id } => format!("response:{id}"),
        }
    }
}

/// Statuses of a run or a response that has not ended.
const AT_WORK: [&str; 4] = ["queued", "in_progress", "requires_action", "cancelling"];

/// The usage a JSON answer (a chat completion, a completion, embeddings, a response, a run)
/// reports at its top level. Never panics; not JSON, or no usage: `Answer::default()`.
pub fn scan_json(bytes: &[u8]) -> Answer {
    let Ok(top) = serde_json::from_slice::<Top>(bytes) else {
        return Answer::default();
    };
    let model = top.model.map(Cow::into_owned);
    match top.object.as_deref() {
        Some(RUN_STEP) => Answer::default(),
        Some(kind @ (RUN | RESPONSE)) => {
            let unfinished = top
                .usage
                .is_none()
                .then(|| {
                    at_work(
                        kind,
                        top.status.as_deref(),
                        top.id.as_deref(),
                        top.thread_id,
                    )
                })
                .flatten();
            Answer {
                once_id: top.usage.and(once_id(kind, top.id)),
                usage: top.usage,
                model,
                unfinished,
            }
        }
        _ => Answer {
            usage: top.usage,
            once_id: None,
            model,
            unfinished: None,
        },
    }
}

/// The `usage` written last in the end of a JSON answer too large to keep whole (chat,
/// completions and embeddings answers write it last): the object after the last `"usage":`.
pub fn usage_in_tail(tail: &[u8]) -> Option<Tokens> {
    let key = b"\"usage\"";
    let at = tail.windows(key.len()).rposition(|w| w == key)?;
    let rest = &tail[at + key.len()..];
    let colon = rest.iter().position(|b| !b.is_ascii_whitespace())?;
    if rest[colon] != b':' {
        return None;
    }
    let mut values = serde_json::Deserializer::from_slice(&rest[colon + 1..])
        .into_iter::<&serde_json::value::RawValue>();
    let value = values.next()?.ok()?;
    let mut wrapped = Vec::with_capacity(value.get().len() + 10);
    wrapped.extend_from_slice(b"{\"usage\":");
    wrapped.extend_from_slice(value.get().as_bytes());
    wrapped.push(b'}');
    scan_json(&wrapped).usage
}

/// The run or response (`object`) still at work, by its status, if it is one and has an id (and
/// a run its thread).
fn at_work(
    object: &str,
    status: Option<&str>,
    id: Option<&str>,
    thread_id: Option<Cow<'_, str>>,
) -> Option<Unfinished> {
    if !status.is_some_and(|s| AT_WORK.contains(&s)) {
        return None;
    }
    let id = id?.to_string();
    match object {
        RUN => Some(Unfinished::Run {
            id,
            thread_id: thread_id?.into_owned(),
        }),
        _ => Some(Unfinished::Response { id }),
    }
}

/// `run:<id>` / `response:<id>`.
fn once_id(object: &str, id: Option<Cow<'_, str>>) -> Option<String> {
    let prefix = if object == RUN { "run" } else { "response" };
    id.map(|id| format!("{prefix}:{id}"))
}

const RUN: &str = "thread.run";
const RESPONSE: &str = "response";
const RUN_STEP: &str = "thread.run.step";
/// The Responses API events whose `response` carries the final usage.
const RESPONSE_ENDS: [&str; 3] = [
    "response.completed",
    "response.incomplete",
    "response.failed",
];

/// What one event reports: its usage, the run or response it is of (see [`Answer::once_id`])
/// and the model that answered; or a run or response still at work.
enum Reported {
    Usage {
        usage: Tokens,
        once_id: Option<String>,
        model: Option<String>,
    },
    AtWork(Unfinished),
}

/// What one event's data says about usage.
fn scan_event_data(data: &[u8]) -> Option<Reported> {
    let top = serde_json::from_slice::<Top>(data).ok()?;
    if let Some(kind) = top.kind.as_deref().filter(|k| k.starts_with("response.")) {
        let response = top.response?;
        // The ends carry its usage; `response.created`, `.queued`, `.in_progress` show it at work.
        if RESPONSE_ENDS.contains(&kind) {
            return response.usage.map(|usage| Reported::Usage {
                usage,
                once_id: once_id(RESPONSE, response.id),
                model: response.model.map(Cow::into_owned),
            });
        }
        return at_work(
            RESPONSE,
            response.status.as_deref(),
            response.id.as_deref(),
            None,
        )
        .map(Reported::AtWork);
    }
    let (once_id, object) = match top.object.as_deref() {
        Some(RUN_STEP) => return None,
        Some(kind @ (RUN | RESPONSE)) => (once_id(kind, top.id.clone()), Some(kind)),
        _ => (None, None),
    };
    match (top.usage, object) {
        (Some(usage), _) => Some(Reported::Usage {
            usage,
            once_id,
            model: top.model.map(Cow::into_owned),
        }),
        (None, Some(object)) => at_work(
            object,
            top.status.as_deref(),
            top.id.as_deref(),
            top.thread_id,
        )
        .map(Reported::AtWork),
        (None, None) => None,
    }
}

/// Usage in an event stream the edge passes through unchanged.
///
/// It cuts events with the same splitter as [`UsageChunkFilter`] rather than
/// [`crate::sse::SseParser`]: whether an event is past `limit` then never depends on where the
/// chunks split the stream, and an event that arrived within one chunk is read in place, without
/// a copy; only events whose text names `usage` are parsed.
#[derive(Debug)]
pub struct StreamScan {
    events: Splitter,
    outcome: StreamOutcome,
}

/// What an event stream said about its usage.
#[derive(Debug, Default, PartialEq)]
pub struct StreamOutcome {
    /// The last usage the stream reported.
    pub usage: Option<Tokens>,
    /// The run or response whose usage that was (see [`Answer::once_id`]).
    pub once_id: Option<String>,
    /// The model named beside that usage.
    pub model: Option<String>,
    /// A line/event past `limit`: usage could not be read.
    pub broken: bool,
    /// The run or response the stream last showed at work, unless its usage came after.
    pub unfinished: Option<Unfinished>,
}

impl StreamScan {
    /// `limit`: the most bytes one event may hold.
    pub fn new(limit: usize) -> Self {
        Self {
            events: Splitter::new(limit),
            outcome: StreamOutcome::default(),
        }
    }

    /// Reads one chunk of the stream (split anywhere).
    pub fn feed(&mut self, chunk: &[u8]) {
        let outcome = &mut self.outcome;
        self.events.push(chunk, |piece| {
            if let Piece::Event(event) = piece {
                match scan_event(event) {
                    Some(Reported::Usage {
                        usage,
                        once_id,
                        model,
                    }) => {
                        outcome.usage = Some(usage);
                        outcome.once_id = once_id;
                        outcome.model = model;
                        outcome.unfinished = None;
                    }
                    Some(Reported::AtWork(object)) => outcome.unfinished = Some(object),
                    None => {}
                }
            }
        });
        self.outcome.broken = self.events.broken;
    }

    /// What the stream said (an event left incomplete at the end is not read, as the SSE
    /// specification has it).
    pub fn finish(&mut self) -> StreamOutcome {
        std::mem::take(&mut self.outcome)
    }
}

/// What one complete event says about usage.
fn scan_event(event: &[u8]) -> Option<Reported> {
    USAGE.find(event)?;
    let segments = data_segments(event);
    scan_event_data(&data_of(event, &segments)?)
}

/// A chat/completions stream for a client that did not ask for `stream_options.include_usage`
/// while the edge asked for it upstream: gives the client exactly the stream Azure would have
/// sent it.
///
/// It works on the raw bytes: events end at a blank line (lines end with `\n`, `\r\n` or `\r`);
/// an event whose data is a JSON object with a non-null top-level `usage` and an empty `choices`
/// is the usage-only chunk, dropped whole; every other JSON data object loses its top-level
/// `"usage":null` member (with the comma that joins it to a neighbour and the whitespace between
/// them), every other byte kept; anything else passes untouched. An event is forwarded as soon as
/// its blank line has arrived. Past `limit` bytes in one event the filter gives up: from there on
/// everything passes through unchanged, and it is [`broken`](Self::broken).
#[derive(Debug)]
pub struct UsageChunkFilter {
    events: Splitter,
    /// The last event was dropped (a `\n` closing its `\r` goes with it).
    dropped: bool,
    usage: Option<Tokens>,
    model: Option<String>,
}

impl UsageChunkFilter {
    /// `limit`: the most bytes one event may hold.
    pub fn new(limit: usize) -> Self {
        Self {
            events: Splitter::new(limit),
            dropped: false,
            usage: None,
            model: None,
        }
    }

    /// The bytes to forward now: every event completed by this chunk (rewritten), holding back
    /// only an incomplete trailing event.
    pub fn push(&mut self, chunk: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(chunk.len() + self.events.held.len());
        let (dropped, usage, model) = (&mut self.dropped, &mut self.usage, &mut self.model);
        self.events.push(chunk, |piece| match piece {
            Piece::Event(event) => {
                *dropped = match filter_event(event, &mut out) {
                    Filtered::Dropped(tokens, answered_by) => {
                        *usage = Some(tokens);
                        *model = answered_by;
                        true
                    }
                    Filtered::Kept(tokens) => {
                        *usage = tokens.or(*usage);
                        false
                    }
                }
            }
            Piece::Lf if *dropped => {}
            Piece::Lf => out.extend_from_slice(b"\n"),
            Piece::Raw(bytes) => out.extend_from_slice(bytes),
        });
        out.freeze()
    }

    /// End of stream: whatever is still held, unchanged.
    pub fn finish(&mut self) -> Bytes {
        Bytes::from(std::mem::take(&mut self.events.held))
    }

    /// The usage the dropped usage-only chunk reported.
    pub fn usage(&self) -> Option<Tokens> {
        self.usage
    }

    /// The model the usage-only chunk named.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// An event went past `limit`: the rest passed through unchanged, usage may be missing.
    pub fn broken(&self) -> bool {
        self.events.broken
    }
}

/// Cuts an event stream into events, whatever the chunks: events end at a blank line, lines end
/// with `\n`, `\r\n` or `\r`. Past `limit` bytes in one event it gives up and passes everything on
/// as it comes. Whether an event goes past `limit` does not depend on where the chunks split it.
#[derive(Debug)]
struct Splitter {
    limit: usize,
    /// The start of the event not yet complete.
    held: Vec<u8>,
    /// The current line has no byte yet: a line end now ends the event.
    line_empty: bool,
    /// The last byte was a `\r` ending a line: a `\n` now belongs to it.
    after_cr: bool,
    /// The last event ended with a `\r` that ended a chunk: a `\n` opening the next chunk is its.
    event_cr: bool,
    broken: bool,
}

enum Piece<'a> {
    /// A complete event, its blank line included.
    Event(&'a [u8]),
    /// The `\n` that closes the `\r` ending the last event, come in a later chunk.
    Lf,
    /// Bytes once the limit is passed.
    Raw(&'a [u8]),
}

impl Splitter {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            held: Vec::new(),
            line_empty: true,
            after_cr: false,
            event_cr: false,
            broken: false,
        }
    }

    /// Hands each piece of `chunk` to `each`, in order; keeps an incomplete last event.
    fn push(&mut self, chunk: &[u8], mut each: impl FnMut(Piece<'_>)) {
        let mut chunk = chunk;
        if let Some(&first) = chunk.first()
            && std::mem::take(&mut self.event_cr)
            && first == b'\n'
        {
            each(Piece::Lf);
            chunk = &chunk[1..];
        }
        if self.broken {
            if !chunk.is_empty() {
                each(Piece::Raw(chunk));
            }
            return;
        }
        let mut start = 0;
        let mut i = 0;
        while i < chunk.len() {
            if std::mem::take(&mut self.after_cr) && chunk[i] == b'\n' {
                i += 1;
                continue;
            }
            // To the next line end: every byte before it is the line's.
            let Some(text) = memchr::memchr2(b'\n', b'\r', &chunk[i..]) else {
                self.line_empty = false;
                break;
            };
            if text > 0 {
                self.line_empty = false;
                i += text;
            }
            let byte = chunk[i];
            if !self.line_empty {
                self.line_empty = true;
                self.after_cr = byte == b'\r';
                i += 1;
                continue;
            }
            // A blank line: the event ends with it.
            let mut end = i + 1;
            if byte == b'\r' {
                match chunk.get(end) {
                    Some(b'\n') => end += 1,
                    Some(_) => {}
                    None => self.event_cr = true,
                }
            }
            // Measured without the `\n` of a closing `\r\n`, which may come in the next chunk.
            let measured =
                self.held.len() + end - start - usize::from(byte == b'\r' && end == i + 2);
            if measured > self.limit {
                self.broken = true;
                self.event_cr = false;
                let held = std::mem::take(&mut self.held);
                if !held.is_empty() {
                    each(Piece::Raw(&held));
                }
                each(Piece::Raw(&chunk[start..]));
                return;
            }
            if self.held.is_empty() {
                each(Piece::Event(&chunk[start..end]));
            } else {
                let mut event = std::mem::take(&mut self.held);
                event.extend_from_slice(&chunk[start..end]);
                each(Piece::Event(&event));
                // Keeps the allocation for the next event.
                event.clear();
                self.held = event;
            }
            start = end;
            i = end;
        }
        self.held.extend_from_slice(&chunk[start..]);
        if self.held.len() > self.limit {
            self.broken = true;
            each(Piece::Raw(&std::mem::take(&mut self.held)));
        }
    }
}

#[derive(Debug, PartialEq)]
enum Filtered {
    /// The usage-only chunk: its usage and model.
    Dropped(Tokens, Option<String>),
    /// Written to the output; the usage it reported, if any.
    Kept(Option<Tokens>),
}

/// Writes one complete event (its blank line included) as the client should see it.
fn filter_event(event: &[u8], out: &mut BytesMut) -> Filtered {
    let segments = data_segments(event);
    let Some(data) = data_of(event, &segments) else {
        out.extend_from_slice(event);
        return Filtered::Kept(None);
    };
    let Some(usage) = USAGE.find(&data) else {
        out.extend_from_slice(event);
        return Filtered::Kept(None);
    };
    if let Some(cut) = shortcut(&segments, &data, usage) {
        out.extend_from_slice(&event[..cut.start]);
        out.extend_from_slice(&event[cut.end..]);
        return Filtered::Kept(None);
    }
    filter_by_members(event, &segments, &data, out)
}

/// Nearly every chunk of a stream the edge asked usage for: one data line whose object ends with
/// the only `usage` it names (its first is its last member's name), `null`. The event's bytes to
/// cut, found without walking its members (`usage`: where the data first names `usage`).
fn shortcut(
    segments: &[std::ops::Range<usize>],
    data: &[u8],
    usage: usize,
) -> Option<std::ops::Range<usize>> {
    let [segment] = segments else {
        return None;
    };
    let cut = trailing_null_usage(data, usage)?;
    is_json(data).then(|| segment.start + cut.start..segment.start + cut.end)
}

fn is_json(text: &[u8]) -> bool {
    serde_json::from_slice::<IgnoredAny>(text).is_ok()
}

/// [`filter_event`] for any event whose data names `usage`: the data's top-level members read,
/// those to cut found by name and value.
fn filter_by_members(
    event: &[u8],
    segments: &[std::ops::Range<usize>],
    data: &[u8],
    out: &mut BytesMut,
) -> Filtered {
    let Some(members) = top_level_members(data).filter(|_| is_json(data)) else {
        out.extend_from_slice(event);
        return Filtered::Kept(None);
    };
    let named = |name: &[u8]| members.iter().rev().find(|m| &data[m.key.clone()] == name);
    let value = |m: &Member| &data[m.value.clone()];
    // The last `usage` member is the one a JSON reader keeps.
    let reported = named(b"usage")
        .filter(|m| value(m) != b"null")
        .and_then(|m| serde_json::from_slice::<UsageField>(value(m)).ok())
        .and_then(|u| u.0);
    if let Some(usage) = reported
        && named(b"choices").is_some_and(|m| is_empty_array(value(m)))
    {
        let model = named(b"model").and_then(|m| serde_json::from_slice::<String>(value(m)).ok());
        return Filtered::Dropped(usage, model);
    }
    let remove: Vec<bool> = members
        .iter()
        .map(|m| &data[m.key.clone()] == b"usage" && value(m) == b"null")
        .collect();
    let ranges = removal_ranges(&members, &remove);
    if ranges.is_empty() {
        out.extend_from_slice(event);
        return Filtered::Kept(reported);
    }
    // The removed ranges, from the data's text to the event's bytes (the data lines' text
    // only: line structure is kept).
    let mut cuts = Vec::with_capacity(ranges.len());
    let mut offset = 0;
    for segment in segments {
        let len = segment.end - segment.start;
        for range in &ranges {
            let from = range.start.max(offset);
            let to = range.end.min(offset + len);
            if from < to {
                cuts.push(segment.start + from - offset..segment.start + to - offset);
            }
        }
        offset += len + 1;
    }
    cuts.sort_by_key(|c| c.start);
    let mut at = 0;
    for cut in cuts {
        out.extend_from_slice(&event[at..cut.start]);
        at = cut.end;
    }
    out.extend_from_slice(&event[at..]);
    Filtered::Kept(reported)
}

/// When `data`, a JSON object (the caller checks it is valid JSON), ends with the member
/// `"usage": null` whose name is the text's first `usage` (at `usage`, so it names `usage`
/// nowhere else): the range to cut so that member goes as [`removal_ranges`] would cut it, with
/// the comma and whitespace before it (only member: the member alone). Read backwards from the
/// object's closing brace, which in valid JSON is structural, and so is every token before it
/// up to the name's opening quote.
fn trailing_null_usage(data: &[u8], usage: usize) -> Option<std::ops::Range<usize>> {
    let mut end = data.len();
    while end > 0 && matches!(data[end - 1], b' ' | b'\t' | b'\n' | b'\r') {
        end -= 1;
    }
    let before = |mut i: usize| {
        while i > 0 && matches!(data[i - 1], b' ' | b'\t' | b'\n' | b'\r') {
            i -= 1;
        }
        i
    };
    let close = end.checked_sub(1).filter(|&i| data[i] == b'}')?;
    let null_end = before(close);
    let null = null_end
        .checked_sub(4)
        .filter(|&i| &data[i..null_end] == b"null")?;
    let colon = before(null).checked_sub(1).filter(|&i| data[i] == b':')?;
    let name_end = before(colon);
    let quote = usage.checked_sub(1)?;
    if name_end != usage + 6 || data[quote] != b'"' || data[usage + 5] != b'"' {
        return None;
    }
    let joint = before(quote).checked_sub(1)?;
    match data[joint] {
        b',' => Some(before(joint)..null_end),
        b'{' => Some(quote..null_end),
        _ => None,
    }
}

/// The event's data: its data lines joined with `\n` (borrowed when there is one); `None` when
/// it has none.
fn data_of<'e>(event: &'e [u8], segments: &[std::ops::Range<usize>]) -> Option<Cow<'e, [u8]>> {
    match segments {
        [] => None,
        [one] => Some(Cow::Borrowed(&event[one.clone()])),
        many => {
            let mut joined = Vec::with_capacity(event.len());
            for (n, segment) in many.iter().enumerate() {
                if n > 0 {
                    joined.push(b'\n');
                }
                joined.extend_from_slice(&event[segment.clone()]);
            }
            Some(Cow::Owned(joined))
        }
    }
}

/// The byte ranges of the values of an event's `data` lines.
fn data_segments(event: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut segments = Vec::new();
    let mut start = 0;
    while start < event.len() {
        let end = memchr::memchr2(b'\n', b'\r', &event[start..]).map_or(event.len(), |p| start + p);
        let line = &event[start..end];
        if let Some(value) = line.strip_prefix(b"data") {
            let value_start = match value.first() {
                None => Some(end),
                Some(b':') if value.get(1) == Some(&b' ') => Some(start + 6),
                Some(b':') => Some(start + 5),
                Some(_) => None,
            };
            if let Some(value_start) = value_start {
                segments.push(value_start..end);
            }
        }
        start = end + 1;
        if event.get(end) == Some(&b'\r') && event.get(start) == Some(&b'\n') {
            start += 1;
        }
    }
    segments
}

/// One member of a JSON object: where its name (between the quotes) and its value are.
struct Member {
    /// The member's first byte (its opening quote).
    start: usize,
    key: std::ops::Range<usize>,
    value: std::ops::Range<usize>,
}

/// The members of the JSON object `text` is, found by structure only (the caller checks the
/// JSON is valid); `None` if it is not an object.
fn top_level_members(text: &[u8]) -> Option<Vec<Member>> {
    let mut i = skip_ws(text, 0);
    if text.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(text, i + 1);
    let mut members = Vec::new();
    if text.get(i) == Some(&b'}') {
        return Some(members);
    }
    loop {
        if text.get(i) != Some(&b'"') {
            return None;
        }
        let start = i;
        let key_end = string_end(text, i)?;
        i = skip_ws(text, key_end);
        if text.get(i) != Some(&b':') {
            return None;
        }
        let value_start = skip_ws(text, i + 1);
        let value_end = value_end(text, value_start)?;
        members.push(Member {
            start,
            key: start + 1..key_end - 1,
            value: value_start..value_end,
        });
        i = skip_ws(text, value_end);
        match text.get(i) {
            Some(b',') => i = skip_ws(text, i + 1),
            Some(b'}') => return Some(members),
            _ => return None,
        }
    }
}

/// The text to cut so that the members marked in `remove` go, with the commas and whitespace
/// that joined them to the others.
fn removal_ranges(members: &[Member], remove: &[bool]) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let Some(last_kept) = remove.iter().rposition(|r| !r) else {
        // Every member goes: from the first name to the last value.
        if let (Some(first), Some(last)) = (members.first(), members.last()) {
            ranges.push(first.start..last.value.end);
        }
        return ranges;
    };
    for (n, member) in members.iter().enumerate().take(last_kept) {
        if remove[n] {
            // Up to the next member's name.
            ranges.push(member.start..members[n + 1].start);
        }
    }
    if last_kept + 1 < members.len() {
        // The trailing run: from the end of the last kept value.
        ranges.push(members[last_kept].value.end..members[members.len() - 1].value.end);
    }
    ranges
}

fn skip_ws(text: &[u8], mut i: usize) -> usize {
    while matches!(text.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The position after the string opening at `i`.
fn string_end(text: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        match text.get(j)? {
            b'"' => return Some(j + 1),
            b'\\' => j += 2,
            _ => j += 1,
        }
    }
}

/// The position after the value starting at `i`.
fn value_end(text: &[u8], i: usize) -> Option<usize> {
    match text.get(i)? {
        b'"' => string_end(text, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match text.get(j)? {
                    b'"' => {
                        j = string_end(text, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let len = text[i..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(text.len() - i);
            (len > 0).then_some(i + len)
        }
    }
}

fn is_empty_array(value: &[u8]) -> bool {
    value.first() == Some(&b'[')
        && skip_ws(value, 1) + 1 == value.len()
        && value.last() == Some(&b']')
}

/// The name every usage check looks for first, its searcher built once.
static USAGE: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new("usage"));

/// The members of an answer or an event's data that say something about usage.
#[derive(Default)]
struct Top<'a> {
    object: Option<Cow<'a, str>>,
    model: Option<Cow<'a, str>>,
    id: Option<Cow<'a, str>>,
    /// `type` (Responses API events).
    kind: Option<Cow<'a, str>>,
    /// A run's or a response's `status`.
    status: Option<Cow<'a, str>>,
    /// A run's thread.
    thread_id: Option<Cow<'a, str>>,
    usage: Option<Tokens>,
    /// `response` (Responses API events): its id and usage.
    response: Option<Nested<'a>>,
}

impl<'de> FromMap<'de> for Top<'de> {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut top = Top::default();
        while let Some(key) = map.next_key::<Scalar>()? {
            match key.text() {
                Some("object") => top.object = map.next_value::<Scalar>()?.into_text(),
                Some("model") => top.model = map.next_value::<Scalar>()?.into_text(),
                Some("id") => top.id = map.next_value::<Scalar>()?.into_text(),
                Some("type") => top.kind = map.next_value::<Scalar>()?.into_text(),
                Some("status") => top.status = map.next_value::<Scalar>()?.into_text(),
                Some("thread_id") => top.thread_id = map.next_value::<Scalar>()?.into_text(),
                Some("usage") => top.usage = map.next_value::<UsageField>()?.0,
                Some("response") => top.response = Some(map.next_value::<Nested>()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(top)
    }
}

/// The `usage` member: `None` when null or not an object.
#[derive(Default)]
struct UsageField(Option<Tokens>);

impl<'de> FromMap<'de> for UsageField {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let (mut prompt, mut completion, mut total) = (None, None, None);
        let (mut input, mut output) = (None, None);
        let (mut cached, mut reasoning) = (None, None);
        while let Some(key) = map.next_key::<Scalar>()? {
            let slot = match key.text() {
                Some("prompt_tokens") => &mut prompt,
                Some("completion_tokens") => &mut completion,
                Some("total_tokens") => &mut total,
                Some("input_tokens") => &mut input,
                Some("output_tokens") => &mut output,
                Some("prompt_tokens_details" | "input_tokens_details") => {
                    cached = map.next_value::<Details>()?.cached;
                    continue;
                }
                Some("completion_tokens_details" | "output_tokens_details") => {
                    reasoning = map.next_value::<Details>()?.reasoning;
                    continue;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = map.next_value::<Scalar>()?.count();
        }
        let prompt = prompt.or(input).unwrap_or(0);
        let completion = completion.or(output).unwrap_or(0);
        Ok(UsageField(Some(Tokens {
            prompt,
            completion,
            total: total.unwrap_or(prompt.saturating_add(completion)),
            cached: cached.unwrap_or(0),
            reasoning: reasoning.unwrap_or(0),
        })))
    }
}

/// An object whose `id` and `usage` members are read (a Responses API event's `response`).
#[derive(Default)]
struct Nested<'a> {
    id: Option<Cow<'a, str>>,
    model: Option<Cow<'a, str>>,
    status: Option<Cow<'a, str>>,
    usage: Option<Tokens>,
}

impl<'de> FromMap<'de> for Nested<'de> {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut nested = Nested::default();
        while let Some(key) = map.next_key::<Scalar>()? {
            match key.text() {
                Some("usage") => nested.usage = map.next_value::<UsageField>()?.0,
                Some("id") => nested.id = map.next_value::<Scalar>()?.into_text(),
                Some("model") => nested.model = map.next_value::<Scalar>()?.into_text(),
                Some("status") => nested.status = map.next_value::<Scalar>()?.into_text(),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(nested)
    }
}

/// `*_tokens_details`: the counts read from it.
#[derive(Default)]
struct Details {
    cached: Option<u64>,
    reasoning: Option<u64>,
}

impl<'de> FromMap<'de> for Details {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut details = Details::default();
        while let Some(key) = map.next_key::<Scalar>()? {
            match key.text() {
                Some("cached_tokens") => details.cached = map.next_value::<Scalar>()?.count(),
                Some("reasoning_tokens") => details.reasoning = map.next_value::<Scalar>()?.count(),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(details)
    }
}

/// A type read from a JSON object; any other value reads as its default.
trait FromMap<'de>: Default {
    fn from_map<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error>;
}

struct MapOrDefault<T>(PhantomData<T>);

impl<'de, T: FromMap<'de>> Visitor<'de> for MapOrDefault<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<T, E> {
        Ok(T::default())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<T, E> {
        Ok(T::default())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<T, E> {
        Ok(T::default())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<T, E> {
        Ok(T::default())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<T, E> {
        Ok(T::default())
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<T, E> {
        Ok(T::default())
    }

    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Ok(T::default())
    }

    fn visit_none<E: de::Error>(self) -> Result<T, E> {
        Ok(T::default())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(T::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::from_map(map)
    }
}

macro_rules! from_map_deserialize {
    ($($ty:ty),*) => {$(
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(MapOrDefault(PhantomData))
            }
        }
    )*};
}

from_map_deserialize!(Top<'de>, UsageField, Nested<'de>, Details);

/// A string (borrowed when it holds no escapes), a token count (a whole non-negative number), or
/// anything else, skipped.
enum Scalar<'a> {
    Text(Cow<'a, str>),
    Count(u64),
    Other,
}

impl<'a> Scalar<'a> {
    fn text(&self) -> Option<&str> {
        match self {
            Scalar::Text(text) => Some(text),
            _ => None,
        }
    }

    fn into_text(self) -> Option<Cow<'a, str>> {
        match self {
            Scalar::Text(text) => Some(text),
            _ => None,
        }
    }

    fn count(&self) -> Option<u64> {
        match self {
            Scalar::Count(count) => Some(*count),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Other)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar<'de>, E> {
        Ok(u64::try_from(v).map_or(Scalar::Other, Scalar::Count))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Count(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar<'de>, E> {
        // 2^64: the first whole number past `u64::MAX`.
        let whole = v >= 0.0 && v.fract() == 0.0 && v < 18_446_744_073_709_551_616.0;
        Ok(if whole {
            Scalar::Count(v as u64)
        } else {
            Scalar::Other
        })
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Text(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Text(Cow::Owned(v.to_string())))
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Other)
    }

    fn visit_none<E: de::Error>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Other)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Scalar<'de>, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const CHAT_USAGE: &str = r#"{"completion_tokens":10,"completion_tokens_details":{"accepted_prediction_tokens":0,"audio_tokens":0,"reasoning_tokens":2,"rejected_prediction_tokens":0},"prompt_tokens":19,"prompt_tokens_details":{"audio_tokens":0,"cached_tokens":3},"total_tokens":29}"#;
    const CHAT_TOKENS: Tokens = Tokens {
        prompt: 19,
        completion: 10,
        total: 29,
        cached: 3,
        reasoning: 2,
    };

    fn tokens(prompt: u64, completion: u64, total: u64, cached: u64, reasoning: u64) -> Tokens {
        Tokens {
            prompt,
            completion,
            total,
            cached,
            reasoning,
        }
    }

    fn usage_of(json: &str) -> Option<Tokens> {
        scan_json(json.as_bytes()).usage
    }

    #[test]
    fn chat_completions_and_embeddings_usage_is_read() {
        let chat = format!(
            r#"{{"choices":[{{"index":0,"message":{{"role":"assistant","content":"{{\"usage\": 1}}"}}}}],"id":"chatcmpl-1","model":"gpt-4o-2024-08-06","object":"chat.completion","usage":{CHAT_USAGE}}}"#
        );
        assert_eq!(
            scan_json(chat.as_bytes()),
            Answer {
                usage: Some(CHAT_TOKENS),
                once_id: None,
                model: Some("gpt-4o-2024-08-06".into()),
                unfinished: None,
            }
        );
        let completion = r#"{"id":"cmpl-1","object":"text_completion","choices":[{"text":"hi","index":0}],
            "usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#;
        assert_eq!(usage_of(completion), Some(tokens(5, 7, 12, 0, 0)));
        let embeddings = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,-2e-3]}],
            "model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#;
        assert_eq!(usage_of(embeddings), Some(tokens(8, 0, 8, 0, 0)));
    }

    #[test]
    fn responses_usage_maps_input_to_prompt_and_output_to_completion() {
        let response = r#"{"id":"resp_1","object":"response","status":"completed","output":[{"type":"message",
            "content":[{"type":"output_text","text":"usage"}]}],"usage":{"input_tokens":36,
            "input_tokens_details":{"cached_tokens":4},"output_tokens":87,
            "output_tokens_details":{"reasoning_tokens":64},"total_tokens":123}}"#;
        assert_eq!(
            scan_json(response.as_bytes()),
            Answer {
                usage: Some(tokens(36, 87, 123, 4, 64)),
                once_id: Some("response:resp_1".into()),
                model: None,
                unfinished: None,
            }
        );
    }

    #[test]
    fn a_run_with_usage_is_named_and_other_runs_and_steps_are_not() {
        let run = r#"{"metadata":{"id":"forged"},"id":"run_abc","object":"thread.run","status":"completed",
            "usage":{"prompt_tokens":50,"completion_tokens":20,"total_tokens":70}}"#;
        assert_eq!(
            scan_json(run.as_bytes()),
            Answer {
                usage: Some(tokens(50, 20, 70, 0, 0)),
                once_id: Some("run:run_abc".into()),
                model: None,
                unfinished: None,
            }
        );
        // Still at work: no usage yet, and the run to read it from later.
        for status in AT_WORK {
            let run = format!(
                r#"{{"id":"run_abc","object":"thread.run","thread_id":"thread_1","status":"{status}","usage":null}}"#
            );
            assert_eq!(
                scan_json(run.as_bytes()),
                Answer {
                    unfinished: Some(Unfinished::Run {
                        id: "run_abc".into(),
                        thread_id: "thread_1".into()
                    }),
                    ..Answer::default()
                },
                "{status}"
            );
        }
        let background = r#"{"id":"resp_1","object":"response","status":"in_progress","background":true,"usage":null}"#;
        let answer = scan_json(background.as_bytes());
        assert_eq!(
            answer.unfinished,
            Some(Unfinished::Response {
                id: "resp_1".into()
            })
        );
        assert_eq!(answer.unfinished.unwrap().once_id(), "response:resp_1");
        for ended in [
            r#"{"id":"run_abc","object":"thread.run","thread_id":"t","status":"failed","usage":null}"#,
            r#"{"id":"run_abc","object":"thread.run","status":"queued","usage":null}"#,
            r#"{"object":"thread.run","thread_id":"t","status":"queued"}"#,
            r#"{"id":"resp_1","object":"response","status":"completed"}"#,
            r#"{"id":"m","object":"thread.message","thread_id":"t","status":"in_progress"}"#,
        ] {
            assert_eq!(scan_json(ended.as_bytes()).unfinished, None, "{ended}");
        }
        let step = r#"{"id":"step_1","object":"thread.run.step","usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;
        assert_eq!(scan_json(step.as_bytes()), Answer::default());
        let escaped = r#"{"id":"run_\u0061","object":"thread.run","usage":{"prompt_tokens":1}}"#;
        assert_eq!(
            scan_json(escaped.as_bytes()).once_id.as_deref(),
            Some("run:run_a")
        );
    }

    #[test]
    fn odd_numbers_read_as_zero_and_a_missing_total_is_the_sum() {
        assert_eq!(
            usage_of(r#"{"usage":{"prompt_tokens":4,"completion_tokens":6}}"#),
            Some(tokens(4, 6, 10, 0, 0))
        );
        assert_eq!(
            usage_of(
                r#"{"usage":{"prompt_tokens":null,"completion_tokens":"6","total_tokens":-1,
                "prompt_tokens_details":null,"completion_tokens_details":{"reasoning_tokens":1.5}}}"#
            ),
            Some(tokens(0, 0, 0, 0, 0))
        );
        assert_eq!(
            usage_of(
                r#"{"usage":{"prompt_tokens":3.0,"completion_tokens":1e1,"total_tokens":[1],"prompt_tokens_details":{"cached_tokens":{}}}}"#
            ),
            Some(tokens(3, 10, 13, 0, 0))
        );
        assert_eq!(
            usage_of(r#"{"usage":{"prompt_tokens":18446744073709551615,"completion_tokens":1}}"#),
            Some(tokens(u64::MAX, 1, u64::MAX, 0, 0))
        );
        assert_eq!(usage_of(r#"{"usage":{}}"#), Some(Tokens::default()));
        for no_usage in [
            r#"{"usage":null}"#,
            r#"{"usage":"13"}"#,
            r#"{"usage":[1]}"#,
            r#"{"id":"x"}"#,
            r#"[{"usage":{"total_tokens":1}}]"#,
            r#"{"choices":[{"usage":{"total_tokens":1}}]}"#,
            r#"{"usage":{"total_tokens":1}"#,
            "not json",
            "",
            "\u{feff}{}",
        ] {
            assert_eq!(
                scan_json(no_usage.as_bytes()),
                Answer::default(),
                "{no_usage}"
            );
        }
    }

    /// One event of a realistic chat stream: what Azure sends when asked for usage, and what it
    /// sends otherwise (`None`: nothing).
    struct Pair {
        upstream: String,
        client: Option<String>,
    }

    fn data(json: &str, eol: &str) -> String {
        format!("data: {json}{eol}{eol}")
    }

    fn chunk(fields: &str) -> String {
        format!(
            r#"{{"choices":[{fields}],"created":1700000000,"id":"chatcmpl-9","model":"gpt-4o","object":"chat.completion.chunk","system_fingerprint":"fp_1"}}"#
        )
    }

    /// `json` (an object) with `"usage":null` as its last member.
    fn with_null_usage(json: &str) -> String {
        format!(r#"{},"usage":null}}"#, &json[..json.len() - 1])
    }

    fn chat_pairs(eol: &str) -> Vec<Pair> {
        let same = |text: String| Pair {
            upstream: text.clone(),
            client: Some(text),
        };
        let nulled = |json: String| Pair {
            upstream: data(&with_null_usage(&json), eol),
            client: Some(data(&json, eol)),
        };
        let filter_results = r#"{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}]}"#;
        vec![
            same(format!(": azure{eol}{eol}")),
            nulled(filter_results.to_string()),
            nulled(chunk(
                r#"{"delta":{"content":"","refusal":null,"role":"assistant"},"finish_reason":null,"index":0,"logprobs":null}"#,
            )),
            nulled(chunk(
                r#"{"content_filter_results":{},"delta":{"content":"He said \"usage\":null, {\"choices\":[]}"},"finish_reason":null,"index":0}"#,
            )),
            Pair {
                upstream: data(
                    r#"{"id":"chatcmpl-9" , "usage" : null ,	"choices":[{"delta":{"content":"é"},"index":0}]}"#,
                    eol,
                ),
                client: Some(data(
                    r#"{"id":"chatcmpl-9" , "choices":[{"delta":{"content":"é"},"index":0}]}"#,
                    eol,
                )),
            },
            Pair {
                upstream: format!(
                    "event: message{eol}data: {{\"id\":\"m\",{eol}data: \"usage\":null}}{eol}{eol}"
                ),
                client: Some(format!(
                    "event: message{eol}data: {{\"id\":\"m\"{eol}data: }}{eol}{eol}"
                )),
            },
            Pair {
                upstream: data(r#"{ "usage":null }"#, eol),
                client: Some(data("{  }", eol)),
            },
            nulled(chunk(
                r#"{"delta":{},"finish_reason":"stop","index":0,"logprobs":null}"#,
            )),
            same(data(r#"not json "usage":null"#, eol)),
            same(data(r#"{"usage":null"#, eol)),
            Pair {
                upstream: data(
                    &format!(
                        r#"{{"choices":[ ],"created":1700000000,"id":"chatcmpl-9","model":"gpt-4o","object":"chat.completion.chunk","usage":{CHAT_USAGE}}}"#
                    ),
                    eol,
                ),
                client: None,
            },
            same(data("[DONE]", eol)),
        ]
    }

    fn streams(pairs: &[Pair]) -> (Vec<u8>, Vec<u8>) {
        let upstream: String = pairs.iter().map(|p| p.upstream.as_str()).collect();
        let client: String = pairs.iter().filter_map(|p| p.client.as_deref()).collect();
        (upstream.into_bytes(), client.into_bytes())
    }

    /// The filter's output for `stream` cut at `cuts` (sorted), and its usage and state.
    fn filtered(stream: &[u8], cuts: &[usize], limit: usize) -> (Vec<u8>, Option<Tokens>, bool) {
        let mut filter = UsageChunkFilter::new(limit);
        let mut out = Vec::new();
        let mut at = 0;
        for &cut in cuts.iter().chain([stream.len()].iter()) {
            let cut = cut.clamp(at, stream.len());
            out.extend_from_slice(&filter.push(&stream[at..cut]));
            at = cut;
        }
        out.extend_from_slice(&filter.finish());
        (out, filter.usage(), filter.broken())
    }

    fn scanned(stream: &[u8], cuts: &[usize], limit: usize) -> StreamOutcome {
        let mut scan = StreamScan::new(limit);
        let mut at = 0;
        for &cut in cuts.iter().chain([stream.len()].iter()) {
            let cut = cut.clamp(at, stream.len());
            scan.feed(&stream[at..cut]);
            at = cut;
        }
        scan.finish()
    }

    #[test]
    fn the_usage_chunk_goes_and_null_usage_members_go_at_every_split_point() {
        for eol in ["\n", "\r\n", "\r"] {
            let (upstream, client) = streams(&chat_pairs(eol));
            for cut in 0..=upstream.len() {
                let (out, usage, broken) = filtered(&upstream, &[cut], 4096);
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&client),
                    "eol {eol:?}, cut at {cut}"
                );
                assert_eq!((usage, broken), (Some(CHAT_TOKENS), false));
                let outcome = scanned(&upstream, &[cut], 4096);
                assert_eq!(outcome.usage, Some(CHAT_TOKENS));
            }
            let bytes: Vec<usize> = (0..upstream.len()).collect();
            assert_eq!(filtered(&upstream, &bytes, 4096).0, client, "byte by byte");
        }
    }

    #[test]
    fn complete_events_are_never_held() {
        let (upstream, _) = streams(&chat_pairs("\r"));
        let mut filter = UsageChunkFilter::new(4096);
        let first = b": azure\r\r";
        assert_eq!(&filter.push(first)[..], first);
        let rest = &upstream[first.len()..];
        let end = rest.windows(2).position(|w| w == b"\r\r").unwrap() + 2;
        let out = filter.push(&rest[..end]);
        assert!(out.starts_with(b"data: {\"choices\":[],"), "{out:?}");
        assert!(out.ends_with(b"}\r\r"));
        assert_eq!(&filter.push(b"data: [DO")[..], b"");
        assert_eq!(&filter.finish()[..], b"data: [DO");
    }

    #[test]
    fn the_filter_keeps_the_model_of_the_usage_chunk_it_drops() {
        let (upstream, _) = streams(&chat_pairs("\n"));
        let mut filter = UsageChunkFilter::new(4096);
        filter.push(&upstream);
        assert_eq!(filter.usage(), Some(CHAT_TOKENS));
        assert_eq!(filter.model(), Some("gpt-4o"));
    }

    #[test]
    fn a_client_that_asked_for_usage_would_see_the_stream_unchanged_by_the_scan() {
        let (upstream, _) = streams(&chat_pairs("\r\n"));
        let outcome = scanned(&upstream, &[], 4096);
        assert_eq!(
            outcome,
            StreamOutcome {
                usage: Some(CHAT_TOKENS),
                once_id: None,
                model: Some("gpt-4o".into()),
                broken: false,
                unfinished: None,
            }
        );
    }

    #[test]
    fn an_event_past_the_limit_stops_the_filter_and_everything_after_passes() {
        let mut pairs = chat_pairs("\n");
        let big = chunk(&format!(
            r#"{{"delta":{{"content":"{}"}},"index":0}}"#,
            "x".repeat(600)
        ));
        let at = 3;
        pairs.insert(
            at,
            Pair {
                upstream: data(&with_null_usage(&big), "\n"),
                client: None,
            },
        );
        let before: String = pairs[..at]
            .iter()
            .filter_map(|p| p.client.as_deref())
            .collect();
        let after: String = pairs[at..].iter().map(|p| p.upstream.as_str()).collect();
        let expected = format!("{before}{after}").into_bytes();
        let (upstream, _) = streams(&pairs);
        for cut in 0..=upstream.len() {
            let (out, usage, broken) = filtered(&upstream, &[cut], 512);
            assert_eq!(out, expected, "cut at {cut}");
            assert_eq!((usage, broken), (None, true), "cut at {cut}");
            let outcome = scanned(&upstream, &[cut], 512);
            assert!(outcome.broken && outcome.usage.is_none());
        }
    }

    #[test]
    fn a_responses_stream_reports_the_completed_event() {
        let usage = r#"{"input_tokens":12,"input_tokens_details":{"cached_tokens":0},"output_tokens":30,"output_tokens_details":{"reasoning_tokens":8},"total_tokens":42}"#;
        let stream = format!(
            "event: response.created\ndata: {{\"type\":\"response.created\",\"sequence_number\":0,\"response\":{{\"id\":\"resp_1\",\"usage\":null}}}}\n\n\
             event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"delta\":\"usage\"}}\n\n\
             event: response.completed\r\ndata: {{\"type\":\"response.completed\",\"sequence_number\":9,\"response\":{{\"id\":\"resp_1\",\"model\":\"gpt-4o-mini\",\"object\":\"response\",\"output\":[{{\"usage\":{{\"total_tokens\":1}}}}],\"usage\":{usage}}}}}\r\n\r\n"
        );
        let stream = stream.as_bytes();
        for cut in 0..=stream.len() {
            assert_eq!(
                scanned(stream, &[cut], 4096),
                StreamOutcome {
                    usage: Some(tokens(12, 30, 42, 0, 8)),
                    once_id: Some("response:resp_1".into()),
                    model: Some("gpt-4o-mini".into()),
                    broken: false,
                    unfinished: None,
                },
                "cut at {cut}"
            );
        }
        let incomplete = b"data: {\"type\":\"response.incomplete\",\"response\":{\"usage\":{\"input_tokens\":1,\"output_tokens\":2}}}\n\n";
        assert_eq!(
            scanned(incomplete, &[], 4096).usage,
            Some(tokens(1, 2, 3, 0, 0))
        );
        let unfinished = &stream[..stream.len() - 2];
        assert_eq!(scanned(unfinished, &[], 4096).usage, None);
        // Cut before it ended: the response, at work (once its status says so).
        let created = b"data: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_2\",\"status\":\"in_progress\",\"usage\":null}}\n\n";
        assert_eq!(
            scanned(created, &[], 4096).unfinished,
            Some(Unfinished::Response {
                id: "resp_2".into()
            })
        );
        assert_eq!(scanned(unfinished, &[], 4096).unfinished, None, "no status");
    }

    #[test]
    fn a_run_stream_reports_the_run_and_not_its_steps() {
        let run_usage = r#"{"prompt_tokens":40,"completion_tokens":9,"total_tokens":49}"#;
        let stream = format!(
            "event: thread.run.created\ndata: {{\"metadata\":{{}},\"id\":\"run_1\",\"object\":\"thread.run\",\"status\":\"queued\",\"usage\":null}}\n\n\
             event: thread.run.step.completed\ndata: {{\"id\":\"step_1\",\"object\":\"thread.run.step\",\"usage\":{{\"prompt_tokens\":40,\"completion_tokens\":9,\"total_tokens\":49}}}}\n\n\
             event: thread.run.completed\ndata: {{\"metadata\":{{\"id\":\"x\"}},\"id\":\"run_1\",\"object\":\"thread.run\",\"status\":\"completed\",\"usage\":{run_usage}}}\n\n\
             event: done\ndata: [DONE]\n\n"
        );
        assert_eq!(
            scanned(stream.as_bytes(), &[100], 4096),
            StreamOutcome {
                usage: Some(tokens(40, 9, 49, 0, 0)),
                once_id: Some("run:run_1".into()),
                model: None,
                broken: false,
                unfinished: None,
            }
        );
        // Cut before the run ended (a client gone, a drain past its minute): the run, at work.
        let cut = stream.find("event: thread.run.step").unwrap();
        assert_eq!(
            scanned(&stream.as_bytes()[..cut], &[], 4096).unfinished,
            None,
            "a run without its thread is not one the edge can read"
        );
        let with_thread = stream.replace(
            "\"status\":\"queued\"",
            "\"thread_id\":\"thread_1\",\"status\":\"queued\"",
        );
        let cut = with_thread.find("event: thread.run.step").unwrap();
        assert_eq!(
            scanned(&with_thread.as_bytes()[..cut], &[7], 4096).unfinished,
            Some(Unfinished::Run {
                id: "run_1".into(),
                thread_id: "thread_1".into()
            })
        );
        assert_eq!(scanned(with_thread.as_bytes(), &[], 4096).unfinished, None);
        let step_only = "data: {\"object\":\"thread.run.step\",\"usage\":{\"total_tokens\":3}}\n\n";
        assert_eq!(
            scanned(step_only.as_bytes(), &[], 4096),
            StreamOutcome::default()
        );
    }

    #[test]
    fn the_last_usage_wins() {
        let stream = b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\ndata: {\"choices\":[{}],\"usage\":null}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":2}}\n\n";
        assert_eq!(
            scanned(stream, &[], 4096).usage,
            Some(tokens(2, 0, 2, 0, 0))
        );
        let (out, usage, _) = filtered(stream, &[], 4096);
        assert_eq!(out, b"data: {\"choices\":[{}]}\n\n");
        assert_eq!(usage, Some(tokens(2, 0, 2, 0, 0)));
    }

    #[test]
    fn a_trailing_null_usage_is_cut_by_the_shortcut_with_its_comma_and_spaces() {
        // (event, what the client gets, whether the shortcut takes it)
        let cases: [(&[u8], &[u8], bool); 6] = [
            (
                b"data: {\"choices\":[{\"index\":0}], \"usage\" :\tnull }\n\n",
                b"data: {\"choices\":[{\"index\":0}] }\n\n",
                true,
            ),
            (b"data:{\"usage\":null}\r\n\r\n", b"data:{}\r\n\r\n", true),
            // Not the member: inside a string, an escaped quote, nested, or broken JSON.
            (
                b"data: {\"a\":\",\\\"usage\\\":null}\"}\n\n",
                b"data: {\"a\":\",\\\"usage\\\":null}\"}\n\n",
                false,
            ),
            (
                b"data: {\"a\":{\"usage\":null}}\n\n",
                b"data: {\"a\":{\"usage\":null}}\n\n",
                false,
            ),
            (
                b"data: {\"a\":tru,\"usage\":null}\n\n",
                b"data: {\"a\":tru,\"usage\":null}\n\n",
                false,
            ),
            (
                b"data: {\"usages\":null}\n\n",
                b"data: {\"usages\":null}\n\n",
                false,
            ),
        ];
        for (event, expected, shortcut) in cases {
            let mut out = BytesMut::new();
            assert_eq!(filter_event(event, &mut out), Filtered::Kept(None));
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(expected)
            );
            let segments = data_segments(event);
            let data = data_of(event, &segments).unwrap();
            assert_eq!(
                USAGE
                    .find(&data)
                    .and_then(|usage| super::shortcut(&segments, &data, usage))
                    .is_some(),
                shortcut,
                "{}",
                String::from_utf8_lossy(event)
            );
        }
    }

    #[test]
    fn usage_on_a_chunk_with_choices_is_counted_and_kept() {
        let stream = b"data: {\"choices\":[{\"index\":0}],\"usage\":{\"total_tokens\":5}}\n\n";
        let (out, usage, _) = filtered(stream, &[], 4096);
        assert_eq!(out, stream);
        assert_eq!(usage, Some(tokens(0, 0, 5, 0, 0)));
    }

    /// Bytes that look like an event stream of JSON, often enough to reach every branch.
    fn sse_like() -> impl Strategy<Value = Vec<u8>> {
        let pieces = prop::sample::select(vec![
            "data: ",
            "data:",
            "data",
            "event: x",
            ": c",
            "{",
            "}",
            "[",
            "]",
            "[ ]",
            "\"",
            "\\",
            ":",
            ",",
            " ",
            "\"usage\"",
            "\"choices\"",
            "null",
            "1",
            "-1",
            "2.5",
            "\"x\"",
            "\n",
            "\r",
            "\r\n",
            "\n\n",
            "\r\r",
            "[DONE]",
            "{\"prompt_tokens\":5}",
            "é",
            "\u{0}",
            "{\"choices\":[],\"usage\":{\"total_tokens\":3}}",
            "{\"a\":1,\"usage\":null}",
            "\"object\":\"thread.run\"",
            "\"type\":\"response.completed\"",
            "\"response\":",
        ]);
        prop::collection::vec(
            prop_oneof![
                pieces.prop_map(|p| p.as_bytes().to_vec()),
                prop::collection::vec(any::<u8>(), 0..4),
            ],
            0..80,
        )
        .prop_map(|pieces| pieces.concat())
    }

    /// Objects whose last member names `usage` in one form or another, among members that
    /// may name it too, with whitespace or not, sometimes broken: where the shortcut of
    /// [`filter_event`] applies, and where it must not.
    fn usage_objects() -> impl Strategy<Value = String> {
        let plain = prop::sample::select(vec![
            r#""a":1"#,
            r#""choices":[]"#,
            r#""choices":[{"delta":{"content":"hi"}}]"#,
            r#""model":"gpt-4o""#,
        ]);
        let naming = prop::sample::select(vec![
            r#""usage":null"#,
            r#""usage" : null"#,
            r#""usage":{"total_tokens":3}"#,
            r#""choices":[{"delta":{"content":"usage"}}]"#,
            r#""x":"\"usage\":null}""#,
            r#""k":{"usage":null}"#,
            r#""\\":"usage""#,
            r#""usages":null"#,
        ]);
        let ws = prop::sample::select(vec!["", " ", "\t", "\r\n "]);
        (
            prop::collection::vec((plain, ws.clone(), ws.clone()), 0..4),
            prop::option::of((0usize..4, naming.clone())),
            (naming, ws.clone(), ws.clone()),
            ws,
            prop::sample::select(vec!["", "", "", "x", "}", ",", "\\"]),
            any::<bool>(),
        )
            .prop_map(|(mut members, another, last, ws, junk, junk_first)| {
                if let Some((at, other)) = another {
                    members.insert(at.min(members.len()), (other, "", ""));
                }
                members.push(last);
                let body: Vec<String> = members
                    .iter()
                    .map(|(m, before, after)| format!("{before}{m}{after}"))
                    .collect();
                let object = format!("{{{}}}{ws}", body.join(","));
                if junk_first {
                    format!("{junk}{object}")
                } else {
                    format!("{object}{junk}")
                }
            })
    }

    proptest! {
        // Cheap cases, and the rarer shapes (two `usage` members) need many of them.
        #![proptest_config(ProptestConfig::with_cases(2048))]
        #[test]
        fn the_shortcut_for_a_trailing_null_usage_cuts_what_the_member_walk_cuts(
            object in usage_objects(),
            eol in prop::sample::select(vec!["\n", "\r\n", "\r"]),
            prefix in prop::sample::select(vec!["data: ", "data:", "event: x\ndata: "]),
        ) {
            let event = format!("{prefix}{object}{eol}{eol}");
            let event = event.as_bytes();
            let segments = data_segments(event);
            let data = data_of(event, &segments).unwrap();
            let (mut fast, mut walked) = (BytesMut::new(), BytesMut::new());
            let fast_says = filter_event(event, &mut fast);
            if USAGE.find(&data).is_some() {
                let walk_says = filter_by_members(event, &segments, &data, &mut walked);
                prop_assert_eq!(fast_says, walk_says);
                prop_assert_eq!(fast, walked);
            } else {
                prop_assert_eq!(&fast[..], event);
            }
        }
    }

    proptest! {

        #[test]
        fn random_splits_of_the_stream_give_the_client_stream(
            eol in prop::sample::select(vec!["\n", "\r\n", "\r"]),
            mut cuts in prop::collection::vec(0usize..4000, 0..12),
        ) {
            let (upstream, client) = streams(&chat_pairs(eol));
            cuts.sort_unstable();
            let (out, usage, broken) = filtered(&upstream, &cuts, 4096);
            prop_assert_eq!(out, client);
            prop_assert_eq!((usage, broken), (Some(CHAT_TOKENS), false));
            prop_assert_eq!(scanned(&upstream, &cuts, 4096).usage, Some(CHAT_TOKENS));
        }

        #[test]
        fn garbage_never_panics_and_any_split_reads_the_same(
            input in prop_oneof![sse_like(), prop::collection::vec(any::<u8>(), 0..300)],
            mut cuts in prop::collection::vec(0usize..400, 0..8),
            limit in prop_oneof![Just(4096usize), 1usize..64],
        ) {
            cuts.sort_unstable();
            let whole = filtered(&input, &[], limit);
            prop_assert_eq!(&filtered(&input, &cuts, limit), &whole);
            prop_assert!(whole.0.len() <= input.len());
            if USAGE.find(&input).is_none() {
                prop_assert_eq!(&whole.0, &input);
            }
            prop_assert_eq!(scanned(&input, &cuts, limit), scanned(&input, &[], limit));
            let _ = scan_json(&input);
        }
    }
}
