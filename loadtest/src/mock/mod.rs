//! A mock Azure upstream on loopback: Azure OpenAI (chat completions and completions as JSON and
//! SSE with a configurable pause between chunks, embeddings, the v1 API with stored Responses), a
//! Foundry project (`foundry`), Azure AI Search and an MCP server. It checks the credential it was
//! told to expect and records what it saw, so tests can assert what the proxy sent.
//!
//! Answers report token usage as Azure OpenAI does (`usage` on JSON answers; on streams, the
//! usage chunk only when `stream_options.include_usage` asks for it, `response.completed` on the
//! Responses API, `thread.run.completed` on runs), with numbers that differ on every call, and the
//! mock keeps a ledger of what it reported (`usage`): `MockStats::usage_ledger` in process,
//! `GET /_mock/usage` (JSON, neither authenticated nor recorded) from another process.
//!
//! It reads paths the way Azure's front ends do (`path`): encoded dots, encoded slashes and
//! backslashes are decoded, dot segments resolved, literals matched in any case. A proxy that
//! forwards a client's path string instead of the path it authorised is caught by it.

mod foundry;
mod mcp;
mod openai;
pub mod path;
mod responses;
mod search;
mod sse;
pub mod store;
mod usage;

pub use openai::MOCK_REPLY;
pub use usage::{UsageLedger, UsageTotals};

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub type MockBody = UnsyncBoxBody<Bytes, std::convert::Infallible>;

/// The credential the mock accepts.
#[derive(Debug, Clone)]
pub enum ExpectedAuth {
    /// Any request passes (benchmarks).
    Any,
    /// `api-key: <key>`; an `Authorization` header is refused too, so a forwarded client
    /// credential cannot go unnoticed.
    ApiKey(String),
    /// `Authorization: Bearer <token>` whose audience is this resource (e.g.
    /// `https://cognitiveservices.azure.com`), and no `api-key`: a managed-identity resource.
    Bearer { audience: String },
}

#[derive(Debug, Clone)]
pub struct MockConfig {
    pub auth: ExpectedAuth,
    /// Content chunks in a streamed chat completion.
    pub stream_chunks: usize,
    /// Pause before each chunk after the first.
    pub stream_chunk_delay: Duration,
    /// Answer every (authenticated) request with this status and `Retry-After:
    /// retry_after_secs`: a throttled or failing upstream.
    pub fail_with: Option<u16>,
    /// The `Retry-After` sent with `fail_with`, in seconds.
    pub retry_after_secs: u64,
    /// An upstream that stops answering part-way (fault tests).
    pub hang: Option<Hang>,
}

/// Where a hanging upstream stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hang {
    /// Accepts and reads every (authenticated) request, then never answers: no status line, the
    /// connection left open. What a proxy meets when an upstream wedges.
    BeforeHeaders,
    /// Streamed chat completions send their headers and first chunk, then nothing, the stream left
    /// open; other calls answer normally. What a proxy meets when a generation stalls.
    AfterFirstChunk,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            auth: ExpectedAuth::Any,
            stream_chunks: 4,
            stream_chunk_delay: Duration::from_millis(0),
            fail_with: None,
            retry_after_secs: 30,
            hang: None,
        }
    }
}

/// One request as the mock received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// The path the mock routed on: `raw_path` normalised as Azure's front ends do.
    pub path: String,
    /// The path exactly as it arrived on the wire.
    pub raw_path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Default)]
pub struct MockStats {
    /// A status every (authenticated) request is answered with from now on, set at run time by
    /// `MockAzure::fail_with` (0: none); `MockConfig::fail_with` applies from the start.
    failing_with: AtomicU16,
    pub requests: AtomicU64,
    pub rejected_auth: AtomicU64,
    pub streams_started: AtomicU64,
    pub streams_finished: AtomicU64,
    /// TCP connections accepted.
    pub connections: AtomicU64,
    /// Requests that reached a `Hang` and were left without an answer (or without the rest of it).
    pub hung: AtomicU64,
    /// Distinct `Authorization` header values received (few: one per token in use).
    authorizations: Mutex<HashSet<String>>,
    by_path: Mutex<HashMap<String, u64>>,
    /// The objects of the mock Foundry projects.
    foundry: Mutex<foundry::Projects>,
    /// What the Azure OpenAI side stores: Responses and conversations.
    openai: Mutex<foundry::Project>,
    recent: Mutex<VecDeque<RecordedRequest>>,
    /// The usage numbers handed out, and the ledger of what was reported.
    usage: Arc<usage::Meter>,
    /// The next request to hold (`MockAzure::hold_next`).
    hold: Mutex<Option<Hold>>,
}

/// A request to hold unanswered until the test lets it go, then answer with `status`.
struct Hold {
    method: Method,
    path: String,
    status: StatusCode,
    arrived: tokio::sync::oneshot::Sender<()>,
    release: tokio::sync::oneshot::Receiver<()>,
}

/// A request the mock holds (see `MockAzure::hold_next`).
pub struct Held {
    arrived: Option<tokio::sync::oneshot::Receiver<()>>,
    release: tokio::sync::oneshot::Sender<()>,
}

impl Held {
    /// Waits until the held request has arrived (at most `within`); false if it has not.
    pub async fn arrived(&mut self, within: Duration) -> bool {
        match self.arrived.take() {
            Some(arrived) => matches!(tokio::time::timeout(within, arrived).await, Ok(Ok(()))),
            None => true,
        }
    }

    /// Lets the held request be answered.
    pub fn answer(self) {
        let _ = self.release.send(());
    }
}

const RECENT_KEPT: usize = 256;

impl MockStats {
    /// Every request received, whatever its path or outcome.
    pub fn total(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Requests received whose routed (normalised) path is `path`.
    pub fn count_for(&self, path: &str) -> u64 {
        self.by_path.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// The most recent request whose path is `path`.
    pub fn last_request(&self, path: &str) -> Option<RecordedRequest> {
        self.recent
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|r| r.path == path)
            .cloned()
    }

    pub fn recent_requests(&self) -> Vec<RecordedRequest> {
        self.recent.lock().unwrap().iter().cloned().collect()
    }

    /// The requests received since `total()` was `total_before` (at most the last 256): what one
    /// step of a test made reach the mock.
    pub fn requests_since(&self, total_before: u64) -> Vec<RecordedRequest> {
        let total = self.total();
        let recent = self.recent.lock().unwrap();
        let new = usize::try_from(total.saturating_sub(total_before)).unwrap_or(usize::MAX);
        recent
            .iter()
            .skip(recent.len().saturating_sub(new))
            .cloned()
            .collect()
    }

    /// Every distinct `Authorization` header value received: the bearer tokens a managed-identity
    /// resource was called with.
    pub fn authorizations_seen(&self) -> Vec<String> {
        self.authorizations
            .lock()
            .unwrap()
            .iter()
            .cloned()
            .collect()
    }

    /// Every usage the mock reported, overall and per deployment or model.
    pub fn usage_ledger(&self) -> UsageLedger {
        self.usage.ledger()
    }

    /// The totals of every usage the mock reported.
    pub fn usage_total(&self) -> UsageTotals {
        self.usage.ledger().total
    }

    /// The totals of the usage the mock reported for one deployment or model (exact name).
    pub fn usage_for(&self, model: &str) -> UsageTotals {
        self.usage
            .ledger()
            .by_model
            .get(model)
            .copied()
            .unwrap_or_default()
    }

    fn record(&self, request: RecordedRequest, keep_body: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(value) = request
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            let mut seen = self.authorizations.lock().unwrap();
            if !seen.contains(value) {
                seen.insert(value.to_string());
            }
        }
        *self
            .by_path
            .lock()
            .unwrap()
            .entry(request.path.clone())
            .or_default() += 1;
        let mut recent = self.recent.lock().unwrap();
        if recent.len() == RECENT_KEPT {
            recent.pop_front();
        }
        let request = if keep_body {
            request
        } else {
            RecordedRequest {
                body: Bytes::new(),
                ..request
            }
        };
        recent.push_back(request);
    }
}

/// A running mock; stops when dropped.
pub struct MockAzure {
    pub addr: SocketAddr,
    pub stats: Arc<MockStats>,
    task: JoinHandle<()>,
}

impl MockAzure {
    pub async fn start(config: MockConfig) -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0".parse().expect("address"), config).await
    }

    pub async fn start_on(addr: SocketAddr, config: MockConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(MockStats::default());
        let shared = Arc::new((config, stats.clone()));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                shared.1.connections.fetch_add(1, Ordering::Relaxed);
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let shared = shared.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                handle(&shared.0, &shared.1, request).await,
                            )
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, stats, task })
    }

    /// From now on, answers every authenticated request with `status` (and `Retry-After`), as
    /// `MockConfig::fail_with` does from the start; `None` goes back to what `MockConfig` says.
    pub fn fail_with(&self, status: Option<u16>) {
        self.stats
            .failing_with
            .store(status.unwrap_or(0), Ordering::Relaxed);
    }

    /// From now on, streamed runs end after `events` events (`None`: whole), the run left at
    /// work as when Azure ends a run's stream at `requires_action`; the run itself has ended,
    /// and its usage is on the next read of it.
    pub fn end_run_streams_after(&self, events: Option<usize>) {
        self.stats.foundry.lock().unwrap().run_streams_end_after = events;
    }

    /// Gives every mock project a connection `name` of `kind` (`CognitiveSearch`, `BingLLMSearch`…)
    /// to `target`, as `GET {project}/connections/{name}` shows it.
    pub fn add_connection(&self, name: &str, kind: &str, target: &str) {
        let connection = serde_json::json!({
            "name": name,
            "id": format!("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/mock/projects/mock/connections/{name}"),
            "type": kind,
            "target": target,
            "isDefault": false,
            "credentials": {"type": "AAD"},
            "metadata": {},
        });
        let mut foundry = self.stats.foundry.lock().unwrap();
        foundry.connections.insert(name.to_string(), connection);
    }

    /// Holds the next authenticated `method` request to `path` (as the mock routes it, see
    /// `RecordedRequest::path`) unanswered until the returned [`Held`] is answered (or dropped),
    /// then answers it `status` without carrying it out: an upstream call that fails late,
    /// after later calls have overtaken it.
    pub fn hold_next(&self, method: Method, path: &str, status: StatusCode) -> Held {
        let (arrived_tx, arrived_rx) = tokio::sync::oneshot::channel();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel();
        *self.stats.hold.lock().unwrap() = Some(Hold {
            method,
            path: path.to_string(),
            status,
            arrived: arrived_tx,
            release: release_rx,
        });
        Held {
            arrived: Some(arrived_rx),
            release: release_tx,
        }
    }

    /// `http://127.0.0.1:<port>`: what a catalog resource's endpoint_url points at.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for MockAzure {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A request as the mock's routes see it: the path already normalised, the body already read.
pub(crate) struct MockRequest<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a Bytes,
}

impl MockRequest<'_> {
    pub fn route(&self) -> path::Route<'_> {
        path::Route::new(self.path)
    }

    /// The JSON body; an empty body reads as `{}`.
    pub fn json(&self) -> Result<serde_json::Value, Refused> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::json!({}));
        }
        serde_json::from_slice(self.body).map_err(|e| {
            Box::new(error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &format!("Invalid JSON body: {e}"),
            ))
        })
    }
}

/// An error answer returned early (boxed: a response is large for an `Err`).
pub(crate) type Refused = Box<Response<MockBody>>;

/// Where the ledger is read over HTTP.
pub const USAGE_PATH: &str = "/_mock/usage";

async fn handle(
    config: &MockConfig,
    stats: &Arc<MockStats>,
    request: Request<Incoming>,
) -> Response<MockBody> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let raw_path = parts.uri.path().to_string();
    if raw_path == USAGE_PATH && parts.method == Method::GET {
        return json(
            StatusCode::OK,
            &serde_json::to_value(stats.usage_ledger()).unwrap_or_default(),
        );
    }
    let normalised = path::normalise(&raw_path);
    let recorded = RecordedRequest {
        method: parts.method.to_string(),
        path: normalised.clone(),
        raw_path,
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers.clone(),
        body: body.clone(),
    };
    stats.record(recorded, body.len() <= 64 * 1024);
    if let Err(message) = check_auth(&config.auth, &parts.headers) {
        stats.rejected_auth.fetch_add(1, Ordering::Relaxed);
        return json(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({"error": {"code": "401", "message": message}}),
        );
    }
    let failing_with = match stats.failing_with.load(Ordering::Relaxed) {
        0 => config.fail_with,
        status => Some(status),
    };
    if let Some(status) = failing_with.and_then(|s| StatusCode::from_u16(s).ok()) {
        let mut response = json(
            status,
            &serde_json::json!({"error": {"code": status.as_u16().to_string(), "message": "mock failure"}}),
        );
        response.headers_mut().insert(
            http::header::RETRY_AFTER,
            config.retry_after_secs.to_string().parse().unwrap(),
        );
        return response;
    }
    let held = {
        let mut hold = stats.hold.lock().unwrap();
        match hold.take() {
            Some(h) if h.method == parts.method && h.path == normalised => Some(h),
            other => {
                *hold = other;
                None
            }
        }
    };
    if let Some(held) = held {
        let _ = held.arrived.send(());
        let _ = held.release.await;
        return json(
            held.status,
            &serde_json::json!({"error": {"code": held.status.as_u16().to_string(), "message": "mock failure after a hold"}}),
        );
    }
    if config.hang == Some(Hang::BeforeHeaders) {
        stats.hung.fetch_add(1, Ordering::Relaxed);
        return std::future::pending().await;
    }
    let request = MockRequest {
        method: &parts.method,
        path: &normalised,
        query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        body: &body,
    };
    let route = request.route();
    if route.starts_with(&["api", "projects"]) {
        foundry::answer(&stats.foundry, &stats.usage, &request)
    } else if normalised.to_ascii_lowercase().starts_with("/indexes") {
        search::answer(&request)
    } else if route.starts_with(&["mcp"]) {
        mcp::answer(&request)
    } else {
        openai::answer(config, stats, &request).await
    }
}

fn check_auth(expected: &ExpectedAuth, headers: &HeaderMap) -> Result<(), String> {
    match expected {
        ExpectedAuth::Any => Ok(()),
        ExpectedAuth::ApiKey(key) => {
            if headers.contains_key(http::header::AUTHORIZATION) {
                return Err(
                    "unexpected Authorization header: this resource uses an API key".into(),
                );
            }
            match headers.get("api-key").and_then(|v| v.to_str().ok()) {
                Some(k) if k == key => Ok(()),
                Some(_) => Err(
                    "Access denied due to invalid subscription key or wrong API endpoint.".into(),
                ),
                None => Err("missing api-key header".into()),
            }
        }
        ExpectedAuth::Bearer { audience } => {
            if headers.contains_key("api-key") {
                return Err(
                    "unexpected api-key header: this resource uses a managed identity".into(),
                );
            }
            let token = headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or("missing 'Authorization: Bearer' header")?;
            match crate::identity::audience_of(token) {
                Some(aud) if aud == *audience => Ok(()),
                Some(aud) => Err(format!("token audience '{aud}' is not '{audience}'")),
                None => Err("the bearer token is not a JWT".into()),
            }
        }
    }
}

pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<MockBody> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        "application/json".parse().unwrap(),
    );
    response
        .headers_mut()
        .insert("x-mock-upstream", "azure-openai".parse().unwrap());
    response
}

/// An Azure-shaped error: `{"error": {"code", "message", "type", "param"}}`.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response<MockBody> {
    json(
        status,
        &serde_json::json!({"error": {"code": code, "message": message, "type": "invalid_request_error", "param": null}}),
    )
}

pub(crate) fn not_found(message: &str) -> Response<MockBody> {
    error(StatusCode::NOT_FOUND, "not_found", message)
}

pub(crate) fn full(bytes: impl Into<Bytes>) -> MockBody {
    http_body_util::Full::new(bytes.into()).boxed_unsync()
}

#[cfg(test)]
mod tests;
