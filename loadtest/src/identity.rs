//! Fake Entra ID services on loopback, for managed-identity tests:
//! - `FakeIdentityEndpoint` speaks the App Service / Container Apps managed-identity protocol
//!   (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`), with a configurable token lifetime and failure modes;
//! - `FakeEntra` is a token endpoint for the client-secret credential, reached through
//!   `LoopbackTransport`, an HTTP transport for the Azure SDK that sends every request, whatever its
//!   (https) host, to the fake on 127.0.0.1 instead.
//!
//! Tokens are unsigned JWTs whose `aud` is the requested resource, so the mock upstream can check
//! that a request carries a token for the right scope.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::mock::{MockBody, json as json_response};

static TOKEN_SERIAL: AtomicU64 = AtomicU64::new(1);

fn b64(value: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

/// An unsigned JWT for `audience`, unique per call.
pub fn fake_jwt(audience: &str, app_id: &str, expires_on: u64) -> String {
    let serial = TOKEN_SERIAL.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}.{}.fake-signature",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&json!({"aud": audience, "appid": app_id, "exp": expires_on, "jti": serial}))
    )
}

/// The `aud` claim of a token made by `fake_jwt`.
pub fn audience_of(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("aud")?.as_str().map(str::to_string)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn serve<F, Fut>(handler: F) -> std::io::Result<(SocketAddr, JoinHandle<()>)>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<MockBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |r| {
                    let handler = handler.clone();
                    async move { Ok::<_, std::convert::Infallible>(handler(r).await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((addr, task))
}

/// How the fake identity endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum IdentityMode {
    Ok,
    Fail500,
    Fail429,
    /// Answers correctly after this delay.
    Slow(Duration),
}

/// One token request the fake identity endpoint received.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityCall {
    pub client_id: Option<String>,
    pub resource: String,
    pub status: u16,
}

struct IdentityState {
    header: String,
    lifetime: Mutex<Duration>,
    mode: Mutex<IdentityMode>,
    calls: Mutex<Vec<IdentityCall>>,
    issued: Mutex<Vec<String>>,
}

/// The App Service / Container Apps identity endpoint.
pub struct FakeIdentityEndpoint {
    pub addr: SocketAddr,
    state: Arc<IdentityState>,
    task: JoinHandle<()>,
}

impl FakeIdentityEndpoint {
    /// `header` is the `IDENTITY_HEADER` secret it expects back in `X-IDENTITY-HEADER`.
    pub async fn start(header: &str, lifetime: Duration) -> std::io::Result<Self> {
        let state = Arc::new(IdentityState {
            header: header.to_string(),
            lifetime: Mutex::new(lifetime),
            mode: Mutex::new(IdentityMode::Ok),
            calls: Mutex::default(),
            issued: Mutex::default(),
        });
        let shared = state.clone();
        let (addr, task) = serve(move |r| {
            let state = shared.clone();
            async move { identity_answer(&state, r).await }
        })
        .await?;
        Ok(Self { addr, state, task })
    }

    /// The value for `IDENTITY_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}/msi/token", self.addr)
    }

    pub fn header(&self) -> &str {
        &self.state.header
    }

    pub fn set_mode(&self, mode: IdentityMode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    pub fn set_lifetime(&self, lifetime: Duration) {
        *self.state.lifetime.lock().unwrap() = lifetime;
    }

    pub fn calls(&self) -> Vec<IdentityCall> {
        self.state.calls.lock().unwrap().clone()
    }

    /// Every access token handed out, in order: secrets a test can look for where they must not be.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.state.issued.lock().unwrap().clone()
    }

    /// Requests for (client id, resource), whatever their outcome.
    pub fn count(&self, client_id: Option<&str>, resource: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.client_id.as_deref() == client_id && c.resource == resource)
            .count()
    }

    /// Requests per (client id, resource).
    pub fn counts(&self) -> HashMap<(Option<String>, String), usize> {
        let mut counts = HashMap::new();
        for call in self.calls() {
            *counts.entry((call.client_id, call.resource)).or_default() += 1;
        }
        counts
    }
}

impl Drop for FakeIdentityEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn error(status: StatusCode, message: &str) -> Response<MockBody> {
    json_response(
        status,
        &json!({"error": "invalid_request", "error_description": message}),
    )
}

async fn identity_answer(state: &IdentityState, request: Request<Incoming>) -> Response<MockBody> {
    let query: HashMap<String, String> = request
        .uri()
        .query()
        .map(|q| url_decode_pairs(q).into_iter().collect())
        .unwrap_or_default();
    let client_id = query.get("client_id").cloned();
    let resource = query.get("resource").cloned().unwrap_or_default();
    let record = |status: StatusCode| {
        state.calls.lock().unwrap().push(IdentityCall {
            client_id: client_id.clone(),
            resource: resource.clone(),
            status: status.as_u16(),
        });
    };
    let header_ok = request
        .headers()
        .get("x-identity-header")
        .and_then(|v| v.to_str().ok())
        == Some(state.header.as_str());
    if request.method() != http::Method::GET || !header_ok {
        record(StatusCode::UNAUTHORIZED);
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong X-IDENTITY-HEADER",
        );
    }
    if query.get("api-version").map(String::as_str) != Some("2019-08-01") || resource.is_empty() {
        record(StatusCode::BAD_REQUEST);
        return error(
            StatusCode::BAD_REQUEST,
            "api-version=2019-08-01 and resource are required",
        );
    }
    let mode = *state.mode.lock().unwrap();
    match mode {
        IdentityMode::Fail500 => {
            record(StatusCode::INTERNAL_SERVER_ERROR);
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the identity service is failing (fake)",
            );
        }
        IdentityMode::Fail429 => {
            record(StatusCode::TOO_MANY_REQUESTS);
            return error(StatusCode::TOO_MANY_REQUESTS, "too many requests (fake)");
        }
        IdentityMode::Slow(delay) => tokio::time::sleep(delay).await,
        IdentityMode::Ok => {}
    }
    record(StatusCode::OK);
    let expires_on = unix_now() + state.lifetime.lock().unwrap().as_secs();
    let app_id = client_id
        .clone()
        .unwrap_or_else(|| "system-assigned".into());
    let token = fake_jwt(&resource, &app_id, expires_on);
    state.issued.lock().unwrap().push(token.clone());
    json_response(
        StatusCode::OK,
        &json!({
            "access_token": token,
            "expires_on": expires_on.to_string(),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": app_id,
        }),
    )
}

fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=1&b=x%2Fy` (query strings and form bodies) as decoded pairs.
pub fn url_decode_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (url_decode(k), url_decode(v))
        })
        .collect()
}

/// One request the fake Entra token endpoint received.
#[derive(Debug, Clone)]
pub struct EntraCall {
    /// The host the credential meant to reach (before `LoopbackTransport` redirected it).
    pub original_url: String,
    pub path: String,
    pub form: HashMap<String, String>,
}

/// A fake Entra ID token endpoint (`POST /{tenant}/oauth2/v2.0/token`, client credentials).
pub struct FakeEntra {
    pub addr: SocketAddr,
    calls: Arc<Mutex<Vec<EntraCall>>>,
    task: JoinHandle<()>,
}

impl FakeEntra {
    pub async fn start(client_id: &str, client_secret: &str) -> std::io::Result<Self> {
        let calls: Arc<Mutex<Vec<EntraCall>>> = Arc::default();
        let (expected_id, expected_secret) = (client_id.to_string(), client_secret.to_string());
        let recorded = calls.clone();
        let (addr, task) = serve(move |request: Request<Incoming>| {
            let (calls, id, secret) = (recorded.clone(), expected_id.clone(), expected_secret.clone());
            async move {
                let original_url = request
                    .headers()
                    .get("x-original-url")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let path = request.uri().path().to_string();
                let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                let form: HashMap<String, String> =
                    url_decode_pairs(&String::from_utf8_lossy(&body)).into_iter().collect();
                calls.lock().unwrap().push(EntraCall { original_url, path: path.clone(), form: form.clone() });
                if !path.ends_with("/oauth2/v2.0/token") {
                    return error(StatusCode::NOT_FOUND, "not a token endpoint");
                }
                if form.get("grant_type").map(String::as_str) != Some("client_credentials")
                    || form.get("client_id") != Some(&id)
                    || form.get("client_secret") != Some(&secret)
                {
                    return json_response(
                        StatusCode::UNAUTHORIZED,
                        &json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided.", "error_codes": [7000215]}),
                    );
                }
                let scope = form.get("scope").cloned().unwrap_or_default();
                let audience = scope.trim_end_matches("/.default").to_string();
                json_response(
                    StatusCode::OK,
                    &json!({"token_type": "Bearer", "expires_in": 3600, "ext_expires_in": 3600,
                            "access_token": fake_jwt(&audience, &id, unix_now() + 3600)}),
                )
            }
        })
        .await?;
        Ok(Self { addr, calls, task })
    }

    pub fn calls(&self) -> Vec<EntraCall> {
        self.calls.lock().unwrap().clone()
    }
}

impl Drop for FakeEntra {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An Azure SDK HTTP transport that delivers every request to one loopback address, whatever the
/// URL says (the SDK insists on https authorities); the original URL travels in `x-original-url`.
#[derive(Debug)]
pub struct LoopbackTransport {
    target: SocketAddr,
    client: reqwest::Client,
    seen: Mutex<Vec<String>>,
}

impl LoopbackTransport {
    pub fn new(target: SocketAddr) -> Arc<Self> {
        Arc::new(Self {
            target,
            client: reqwest::Client::new(),
            seen: Mutex::default(),
        })
    }

    /// Every URL the SDK asked for, before redirection.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl azure_core::http::HttpClient for LoopbackTransport {
    async fn execute_request(
        &self,
        request: &azure_core::http::Request,
    ) -> azure_core::Result<azure_core::http::AsyncRawResponse> {
        let original = request.url().to_string();
        self.seen.lock().unwrap().push(original.clone());
        let mut redirected = request.clone();
        let url = redirected.url_mut();
        let _ = url.set_scheme("http");
        let _ = url.set_host(Some("127.0.0.1"));
        let _ = url.set_port(Some(self.target.port()));
        redirected.insert_header("x-original-url", original);
        azure_core::http::HttpClient::execute_request(&self.client, &redirected).await
    }
}
