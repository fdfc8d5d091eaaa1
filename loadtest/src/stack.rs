//! The real system on loopback for end-to-end tests and benchmarks: the `aiproxy-control-plane`
//! and `aiproxy-edge` binaries as child processes (so fault tests really kill them), each in its
//! own temporary data dir with logs kept beside it, and an admin API client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// Where the workspace binaries are: `$AIPROXY_BIN_DIR`, else beside the running test or bench
/// executable (`target/<profile>`).
pub fn bin_path(name: &str) -> PathBuf {
    let dir = match std::env::var_os("AIPROXY_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe = std::env::current_exe().expect("path of the running executable");
            let mut dir = exe.parent().expect("executable folder").to_path_buf();
            if dir.ends_with("deps") {
                dir.pop();
            }
            dir
        }
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (`cargo build --workspace --bins`, as scripts/test.sh does)",
        path.display()
    );
    path
}

/// A loopback address nobody listens on right now.
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

/// A scratch folder removed on drop (logs are printed first if the test failed).
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new(label: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("aiproxy-{label}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for entry in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "log") {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(40).collect();
                    eprintln!("--- last lines of {} ---", path.display());
                    for line in tail.into_iter().rev() {
                        eprintln!("{line}");
                    }
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Variables that could point a child at a real Azure credential: never inherited.
const AZURE_VARIABLES: [&str; 8] = [
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_AUTHORITY_HOST",
    "AZURE_FEDERATED_TOKEN_FILE",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "MSI_ENDPOINT",
];

/// `OTEL_*` (and the log format and metrics listener) from the outer environment: never
/// inherited.
fn telemetry_variables() -> Vec<std::ffi::OsString> {
    std::env::vars_os()
        .map(|(name, _)| name)
        .filter(|name| {
            name.to_str().is_some_and(|n| {
                n.starts_with("OTEL_") || n == "AIPROXY_LOG_FORMAT" || n == "AIPROXY_METRICS_ADDR"
            })
        })
        .collect()
}

/// `GET http://{addr}/metrics`: the Prometheus text a process serves on `AIPROXY_METRICS_ADDR`.
pub async fn scrape_metrics(addr: SocketAddr) -> String {
    let response = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("the metrics listener answers");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    response.text().await.expect("the metrics text")
}

/// Drops what a child must never inherit: Azure credentials, and telemetry settings (nothing a
/// test or benchmark starts exports anywhere but where it says).
pub fn isolate(cmd: &mut Command) {
    for var in AZURE_VARIABLES {
        cmd.env_remove(var);
    }
    for var in telemetry_variables() {
        cmd.env_remove(var);
    }
}

fn command(binary: &Path, log: &Path) -> Command {
    let mut cmd = Command::new(binary);
    isolate(&mut cmd);
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open child log");
    cmd.env(
        "RUST_LOG",
        std::env::var("AIPROXY_TEST_LOG").unwrap_or_else(|_| "info".into()),
    )
    .stdin(Stdio::null())
    .stdout(log_file.try_clone().expect("log handle"))
    .stderr(log_file)
    .kill_on_drop(true);
    cmd
}

/// Waits until `url` answers 2xx. `false` when the process exited first (typically: the loopback
/// port picked for it was taken meanwhile by another process), so the caller can retry elsewhere.
async fn wait_for(url: &str, what: &str, timeout: Duration, child: &mut Child) -> bool {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(r) = http.get(url).send().await
            && r.status().is_success()
        {
            return true;
        }
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not become ready at {url} within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Attempts at starting a process whose loopback port was taken between picking and binding.
const START_ATTEMPTS: usize = 3;

#[derive(Default, Clone)]
pub struct ControlPlaneOptions {
    /// Defaults to an embedded SQLite file in the scratch dir.
    pub database_url: Option<String>,
    pub extra_env: Vec<(String, String)>,
}

impl ControlPlaneOptions {
    /// The embedded database, with `env` added to the process's environment.
    pub fn with_env(env: &[(&str, String)]) -> Self {
        Self {
            database_url: None,
            extra_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }
}

/// A control-plane process. Keeps its ports, tokens and data dir across `kill`/`restart`.
pub struct ControlPlane {
    child: Option<Child>,
    pub admin_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub admin_token: String,
    pub edge_token: String,
    /// Where `GET /metrics` is served (`AIPROXY_METRICS_ADDR`), for `start_with_metrics`.
    pub metrics_addr: Option<SocketAddr>,
    options: ControlPlaneOptions,
    dir: Arc<ScratchDir>,
}

impl ControlPlane {
    pub async fn start() -> Self {
        Self::start_with(ControlPlaneOptions::default()).await
    }

    pub async fn start_with(options: ControlPlaneOptions) -> Self {
        Self::start_inner(options, false).await
    }

    /// A control plane serving `/metrics` on a loopback port of its own (`metrics_addr`).
    pub async fn start_with_metrics(options: ControlPlaneOptions) -> Self {
        Self::start_inner(options, true).await
    }

    async fn start_inner(options: ControlPlaneOptions, metrics: bool) -> Self {
        let mut cp = Self {
            child: None,
            admin_addr: free_addr(),
            grpc_addr: free_addr(),
            admin_token: format!("adm_test_{}", uuid::Uuid::new_v4().simple()),
            edge_token: format!("edg_test_{}", uuid::Uuid::new_v4().simple()),
            metrics_addr: metrics.then(free_addr),
            options,
            dir: Arc::new(ScratchDir::new("cp")),
        };
        for _ in 0..START_ATTEMPTS {
            if cp.spawn().await {
                return cp;
            }
            // A port was taken meanwhile: pick others.
            cp.admin_addr = free_addr();
            cp.grpc_addr = free_addr();
            cp.metrics_addr = cp.metrics_addr.map(|_| free_addr());
        }
        panic!(
            "the control plane exited at start {START_ATTEMPTS} times; see its log in {}",
            cp.dir.path().display()
        );
    }

    /// Starts the process; `false` if it exited before answering.
    async fn spawn(&mut self) -> bool {
        let dir = self.dir.path();
        let database_url = self
            .options
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", dir.join("aiproxy.db").display()));
        let mut cmd = command(
            &bin_path("aiproxy-control-plane"),
            &dir.join("control-plane.log"),
        );
        cmd.env("AIPROXY_DATABASE_URL", database_url)
            .env("AIPROXY_DATA_DIR", dir)
            .env("AIPROXY_GRPC_ADDR", self.grpc_addr.to_string())
            .env("AIPROXY_ADMIN_ADDR", self.admin_addr.to_string())
            .env("AIPROXY_ADMIN_TOKEN", &self.admin_token)
            .env("AIPROXY_EDGE_TOKEN", &self.edge_token)
            .env("AIPROXY_ALLOW_INSECURE_UPSTREAMS", "true")
            .env("AIPROXY_CHANGE_POLL_MS", "200")
            // Never a credential that could reach a real identity service: tests that need one
            // pin managed-identity and point IDENTITY_ENDPOINT at a loopback fake.
            .env("AIPROXY_CREDENTIAL", "none");
        if let Some(addr) = self.metrics_addr {
            cmd.env("AIPROXY_METRICS_ADDR", addr.to_string());
        }
        for (k, v) in &self.options.extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start aiproxy-control-plane");
        let url = format!("http://{}/healthz", self.admin_addr);
        let started = wait_for(
            &url,
            "the control plane",
            Duration::from_secs(30),
            &mut child,
        )
        .await;
        self.child = Some(child);
        started
    }

    /// SIGKILL: no graceful shutdown, streams cut as by a crash.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill the control plane");
        }
    }

    /// Kills and starts it again on the same ports and data.
    pub async fn restart(&mut self) {
        self.kill().await;
        assert!(
            self.spawn().await,
            "the control plane exited at restart; see its log in {}",
            self.dir.path().display()
        );
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the process (and its earlier runs, across `restart`) wrote to its log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("control-plane.log")).unwrap_or_default()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    pub fn admin(&self) -> Admin {
        Admin {
            // Idle connections are dropped before the admin server's keep-alive (its header-read
            // timeout, 10 s) would close them under a request.
            http: reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_secs(5))
                .build()
                .expect("HTTP client"),
            base: format!("http://{}/admin/api/v1", self.admin_addr),
            token: self.admin_token.clone(),
        }
    }
}

/// An edge process connected to a control plane.
pub struct Edge {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// Where `GET /metrics` is served (`AIPROXY_METRICS_ADDR`), for `start_with_metrics`.
    pub metrics_addr: Option<SocketAddr>,
    _dir: ScratchDir,
}

impl Edge {
    pub async fn start(cp: &ControlPlane, region: &str) -> Self {
        Self::start_with_token(cp, region, &cp.edge_token, true).await
    }

    /// `wait_ready: false` for edges that are expected never to get a catalog.
    pub async fn start_with_token(
        cp: &ControlPlane,
        region: &str,
        token: &str,
        wait_ready: bool,
    ) -> Self {
        Self::launch(cp, region, token, wait_ready, env_only(&[])).await
    }

    /// An edge with extra environment (e.g. `AIPROXY_TOKEN_EXPIRY_MARGIN_SECS`).
    pub async fn start_with_env(cp: &ControlPlane, region: &str, env: &[(&str, &str)]) -> Self {
        Self::launch(cp, region, &cp.edge_token, true, env_only(env)).await
    }

    /// An edge serving `/metrics` on a loopback port of its own (`metrics_addr`).
    pub async fn start_with_metrics(cp: &ControlPlane, region: &str, env: &[(&str, &str)]) -> Self {
        let launch = Launch {
            env,
            metrics: true,
            binary: None,
        };
        Self::launch(cp, region, &cp.edge_token, true, launch).await
    }

    /// An edge from another binary than the workspace's (an instrumented build, an earlier
    /// commit's), with extra environment.
    pub async fn start_binary(cp: &ControlPlane, binary: &Path, env: &[(&str, &str)]) -> Self {
        let launch = Launch {
            env,
            metrics: false,
            binary: Some(binary),
        };
        Self::launch(cp, "", &cp.edge_token, true, launch).await
    }

    /// An edge presenting `token`, with extra environment; `wait_ready` as in `start_with_token`.
    pub async fn start_with_token_and_env(
        cp: &ControlPlane,
        region: &str,
        token: &str,
        wait_ready: bool,
        env: &[(&str, &str)],
    ) -> Self {
        Self::launch(cp, region, token, wait_ready, env_only(env)).await
    }

    async fn launch(
        cp: &ControlPlane,
        region: &str,
        token: &str,
        wait_ready: bool,
        launch: Launch<'_>,
    ) -> Self {
        let dir = ScratchDir::new("edge");
        // Absolute: the edge runs in its scratch folder, where a relative path names nothing.
        let binary = match launch.binary {
            Some(binary) => std::fs::canonicalize(binary)
                .unwrap_or_else(|e| panic!("edge binary {}: {e}", binary.display())),
            None => bin_path("aiproxy-edge"),
        };
        let path = if wait_ready { "readyz" } else { "healthz" };
        for _ in 0..START_ATTEMPTS {
            let addr = free_addr();
            let metrics_addr = launch.metrics.then(free_addr);
            let mut cmd = command(&binary, &dir.path().join("edge.log"));
            cmd.current_dir(dir.path())
                .env("AIPROXY_CONTROL_PLANE_URL", cp.grpc_url())
                .env("AIPROXY_LISTEN_ADDR", addr.to_string())
                .env("AIPROXY_REGION", region)
                .env("AIPROXY_EDGE_TOKEN", token)
                .env("AIPROXY_EDGE_ID", format!("edge-{}", addr.port()))
                // Tests run many processes on two cores: a 250 ms control-call deadline would
                // make them flaky, not stricter. Scenarios that test the deadline set their own.
                .env("AIPROXY_CONTROL_CALL_DEADLINE_MS", "2000");
            if let Some(metrics_addr) = metrics_addr {
                cmd.env("AIPROXY_METRICS_ADDR", metrics_addr.to_string());
            }
            for (k, v) in launch.env {
                cmd.env(k, v);
            }
            let mut child = cmd.spawn().expect("start aiproxy-edge");
            let url = format!("http://{addr}/{path}");
            if wait_for(&url, "the edge", Duration::from_secs(30), &mut child).await {
                return Self {
                    child: Some(child),
                    addr,
                    metrics_addr,
                    _dir: dir,
                };
            }
        }
        panic!(
            "the edge exited at start {START_ATTEMPTS} times; see {}",
            dir.path().join("edge.log").display()
        );
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What `/readyz` says (whether ready or not).
    pub async fn readiness(&self) -> Value {
        reqwest::get(format!("{}/readyz", self.url()))
            .await
            .expect("the edge answers /readyz")
            .json()
            .await
            .expect("/readyz is JSON")
    }

    /// `<edge>/api/v1`: what SDKs use as their endpoint.
    pub fn api_base(&self) -> String {
        format!("{}/api/v1", self.url())
    }

    /// `<edge>/api/v1/openai/deployments/{deployment}/{operation}?api-version=…`.
    pub fn deployment_url(&self, deployment: &str, operation: &str) -> String {
        format!(
            "{}/openai/deployments/{deployment}/{operation}?api-version={API_VERSION}",
            self.api_base()
        )
    }

    /// `deployment`'s chat completions on this edge.
    pub fn chat_url(&self, deployment: &str) -> String {
        self.deployment_url(deployment, "chat/completions")
    }

    /// A chat completions call for `deployment` with `key` in `api-key`, for a body (and any
    /// other header) to be added.
    pub fn chat_request(&self, key: &str, deployment: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .post(self.chat_url(deployment))
            .header("api-key", key)
    }

    /// A chat completions call with `body`, sent: its response, or why there was none.
    pub async fn try_chat(
        &self,
        key: &str,
        deployment: &str,
        body: &Value,
    ) -> reqwest::Result<reqwest::Response> {
        self.chat_request(key, deployment).json(body).send().await
    }

    /// [`Edge::try_chat`] on an edge that must answer.
    pub async fn chat(&self, key: &str, deployment: &str, body: &Value) -> reqwest::Response {
        self.try_chat(key, deployment, body)
            .await
            .expect("edge reachable")
    }

    /// SIGKILL.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill the edge");
        }
    }

    /// SIGTERM, as an orchestrator sends before it would kill: the edge drains and exits by
    /// itself; `wait_exit` sees it go.
    pub fn terminate(&self) {
        crate::process::terminate(self.pid().expect("the edge is running"));
    }

    /// Waits up to `timeout` for the process to exit; its status, or `None` if it still runs.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let status = tokio::time::timeout(timeout, child.wait()).await.ok()?;
        let status = status.expect("wait for the edge");
        self.child = None;
        Some(status)
    }

    /// The process id, while it runs (to read its memory from /proc).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("edge.log")).unwrap_or_default()
    }
}

/// How an edge is started: extra environment, whether it serves `/metrics`, which binary.
struct Launch<'a> {
    env: &'a [(&'a str, &'a str)],
    metrics: bool,
    /// Another edge binary than the workspace's.
    binary: Option<&'a Path>,
}

fn env_only<'a>(env: &'a [(&'a str, &'a str)]) -> Launch<'a> {
    Launch {
        env,
        metrics: false,
        binary: None,
    }
}

/// Admin API client.
#[derive(Clone)]
pub struct Admin {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let response = req.send().await.expect("admin API reachable");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.request(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.request(Method::PUT, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.request(Method::GET, path, None).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.request(Method::DELETE, path, None).await
    }

    async fn created(&self, path: &str, body: Value) -> Value {
        let (status, value) = self.post(path, body).await;
        assert_eq!(status, StatusCode::CREATED, "POST {path}: {value}");
        value
    }

    /// Creates a resource; returns its id.
    pub async fn create_resource(&self, body: Value) -> String {
        self.created("/resources", body).await["id"]
            .as_str()
            .expect("resource id")
            .to_string()
    }

    pub async fn create_event(&self, body: Value) -> String {
        self.created("/events", body).await["id"]
            .as_str()
            .expect("event id")
            .to_string()
    }

    /// Registers an attendee; returns their key.
    pub async fn add_attendee(&self, event_id: &str, user_id: &str) -> String {
        let v = self
            .created(
                &format!("/events/{event_id}/attendees"),
                json!({"user_id": user_id}),
            )
            .await;
        v["api_key"].as_str().expect("api_key").to_string()
    }

    /// An event open from yesterday to tomorrow exposing `resource_ids`, with the fields of
    /// `settings` (an object: caps, say) on top; its id.
    pub async fn create_open_event(&self, resource_ids: &[String], settings: Value) -> String {
        let mut body = json!({
            "name": "Test hackathon",
            "starts_at": rfc3339_from_now(-86_400),
            "ends_at": rfc3339_from_now(86_400),
            "time_zone": "Europe/Paris",
            "organizer_name": "Ada",
            "organizer_email": "ada@example.com",
            "resource_ids": resource_ids,
        });
        let Value::Object(settings) = settings else {
            panic!("event settings must be a JSON object, got {settings}");
        };
        body.as_object_mut()
            .expect("an event body is an object")
            .extend(settings);
        self.create_event(body).await
    }

    /// An event open from yesterday to tomorrow exposing `resource_ids`, and one attendee's key.
    pub async fn open_event(&self, resource_ids: &[String]) -> (String, String) {
        let event_id = self.create_open_event(resource_ids, json!({})).await;
        let key = self.add_attendee(&event_id, "attendee-1").await;
        (event_id, key)
    }

    /// Waits until the admin API shows a managed-identity token for the resource; returns its
    /// `managed_identity` status.
    pub async fn wait_token(&self, resource_id: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (_, r) = self.get(&format!("/resources/{resource_id}")).await;
            if r["managed_identity"]["token_expires_at"].is_string() {
                return r["managed_identity"].clone();
            }
            assert!(
                Instant::now() < deadline,
                "no token for {resource_id} within {timeout:?}: {r}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls `/edges` until `edges` connected edges have ACKed the catalog's current version.
    pub async fn wait_edges_acked(&self, edges: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let (_, status) = self.get("/edges").await;
            let current = status["catalog_version"].as_u64().unwrap_or(u64::MAX);
            let list = status["edges"].as_array().cloned().unwrap_or_default();
            let caught_up = list
                .iter()
                .filter(|e| e["connected"] == true && e["version_acked"].as_u64() >= Some(current))
                .count();
            if caught_up >= edges {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "edges did not ACK version {current} in {timeout:?}: {status}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `GET /usage?event_id=…` over the last day and the next: its `totals`.
    pub async fn usage_totals(&self, event_id: &str) -> Value {
        let (status, usage) = self
            .get(&format!(
                "/usage?event_id={event_id}&from={}&to={}",
                rfc3339_from_now(-86_400),
                rfc3339_from_now(86_400)
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{usage}");
        usage["totals"].clone()
    }

    /// Waits until the event's usage totals (tokens: prompt, completion, total, cached) equal,
    /// exactly, what the mock upstreams reported (delivery is asynchronous: about a second).
    /// Returns the totals.
    pub async fn assert_usage_matches(
        &self,
        event_id: &str,
        mocks: &[&crate::mock::MockAzure],
        timeout: Duration,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let mut reported = crate::mock::UsageTotals::default();
            for mock in mocks {
                let t = mock.stats.usage_total();
                reported.prompt_tokens += t.prompt_tokens;
                reported.completion_tokens += t.completion_tokens;
                reported.total_tokens += t.total_tokens;
                reported.cached_tokens += t.cached_tokens;
            }
            let totals = self.usage_totals(event_id).await;
            let counted = |field: &str| totals[field].as_u64().unwrap_or(0);
            let pairs = [
                ("prompt_tokens", reported.prompt_tokens),
                ("completion_tokens", reported.completion_tokens),
                ("total_tokens", reported.total_tokens),
                ("cached_tokens", reported.cached_tokens),
            ];
            if pairs.iter().all(|(f, want)| counted(f) == *want) {
                return totals;
            }
            assert!(
                Instant::now() < deadline,
                "usage totals did not reach what the upstream reported in {timeout:?}: {totals} vs {reported:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// RFC 3339 (UTC) of now plus `offset_secs`.
pub fn rfc3339_from_now(offset_secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(offset_secs))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The upstream key the standard scenario's resource carries and its mock expects.
pub const UPSTREAM_KEY: &str = "upstream-key-for-tests";
/// The `api-version` clients send in tests.
pub const API_VERSION: &str = "2024-10-21";

/// The common end-to-end setup: a mock upstream expecting `UPSTREAM_KEY`, a control plane with a
/// `gpt-4o` foundry-model resource on it, an open event exposing it, one attendee, one edge.
pub struct Scenario {
    pub mock: crate::mock::MockAzure,
    pub cp: ControlPlane,
    pub edge: Edge,
    pub admin: Admin,
    pub resource_id: String,
    pub event_id: String,
    pub key: String,
}

/// The mock upstream with `config`, expecting `UPSTREAM_KEY` (the key `model_resource` stores).
pub async fn keyed_mock(mut config: crate::mock::MockConfig) -> crate::mock::MockAzure {
    config.auth = crate::mock::ExpectedAuth::ApiKey(UPSTREAM_KEY.into());
    crate::mock::MockAzure::start(config)
        .await
        .expect("start the mock upstream")
}

impl Scenario {
    pub async fn start(mock_config: crate::mock::MockConfig) -> Self {
        Self::start_with(mock_config, ControlPlaneOptions::default()).await
    }

    /// The same, with the control plane started with `cp_options` (Postgres, say).
    pub async fn start_with(
        mock_config: crate::mock::MockConfig,
        cp_options: ControlPlaneOptions,
    ) -> Self {
        let mock = keyed_mock(mock_config).await;
        let cp = ControlPlane::start_with(cp_options).await;
        let admin = cp.admin();
        let resource_id = admin
            .create_resource(model_resource("gpt-4o", &mock.endpoint(), ""))
            .await;
        let (event_id, key) = admin.open_event(std::slice::from_ref(&resource_id)).await;
        let edge = Edge::start(&cp, "").await;
        Self {
            mock,
            cp,
            edge,
            admin,
            resource_id,
            event_id,
            key,
        }
    }

    /// `POST <edge>/api/v1/openai/deployments/{deployment}/{operation}?api-version=…` with the key.
    pub async fn call(&self, deployment: &str, operation: &str, body: Value) -> reqwest::Response {
        reqwest::Client::new()
            .post(self.edge.deployment_url(deployment, operation))
            .header("api-key", &self.key)
            .json(&body)
            .send()
            .await
            .expect("edge reachable")
    }
}

/// A `foundry-model` resource body for the admin API, keyed with `UPSTREAM_KEY`.
pub fn model_resource(deployment: &str, endpoint: &str, region: &str) -> Value {
    json!({
        "friendly_name": format!("{deployment} ({region})"),
        "deployment_name": deployment,
        "model_type": "Foundry_Model",
        "endpoint_url": endpoint,
        "key": UPSTREAM_KEY,
        "region": region,
    })
}

/// A fresh, empty Postgres database for one test (server from `AIPROXY_TEST_POSTGRES_URL`, default
/// `postgres://postgres@127.0.0.1:5432/postgres`); returns its URL. Needs `psql` (scripts/test.sh
/// installs the client with the server).
pub fn create_postgres_database() -> String {
    let admin_url = std::env::var("AIPROXY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("aiproxy_e2e_{}", uuid::Uuid::new_v4().simple());
    let status = std::process::Command::new("psql")
        .args([
            admin_url.as_str(),
            "-q",
            "-c",
            &format!("CREATE DATABASE {name}"),
        ])
        .status()
        .expect("psql is needed to create the test database");
    assert!(
        status.success(),
        "could not create database {name} on {admin_url}"
    );
    let (base, _) = admin_url.rsplit_once('/').expect("a database URL");
    format!("{base}/{name}")
}

/// Repeats `attempt` every 50 ms until it returns true; panics with `what` after `timeout`. For
/// changes that reach edges asynchronously (a new key, a token, an ownership record).
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut attempt: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !attempt().await {
        assert!(Instant::now() < deadline, "{what} (waited {timeout:?})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An answer read by `raw_request`.
#[derive(Debug)]
pub struct RawReply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
}

impl RawReply {
    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `error.message` of a JSON error body, or "".
    pub fn error_message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// Sends one HTTP/1.1 request whose request target is exactly `target` (path and query): unlike
/// reqwest and the `url` crate, nothing resolves `.`/`..`, re-encodes escapes or turns `\` into
/// `/` on the way, so the server sees what an attacker would send. `Host` is set; `headers` are
/// added as given. Panics if the server cannot be reached or does not answer within 30 s.
pub async fn raw_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> RawReply {
    use http_body_util::BodyExt;
    let send = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("server reachable");
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("HTTP/1.1 handshake");
        tokio::spawn(connection);
        let uri: http::Uri = target
            .parse()
            .unwrap_or_else(|e| panic!("'{target}' is not a request target hyper can send: {e}"));
        let mut request = http::Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::HOST, addr.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.unwrap_or_default(),
            )))
            .expect("a valid request");
        let response = sender.send_request(request).await.expect("an answer");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("the whole body").to_bytes();
        RawReply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    };
    tokio::time::timeout(Duration::from_secs(30), send)
        .await
        .unwrap_or_else(|_| panic!("{method} {target}: no answer within 30 s"))
}

/// Runs a Python check script from `loadtest/tests/sdk/` with `env`, and asserts it exits 0 and
/// prints `success`. The official SDKs it imports are installed by scripts/test.sh; variables
/// that could point an SDK elsewhere are removed.
pub async fn run_python_check(script: &str, env: &[(&str, String)], success: &str) {
    let python = std::env::var("AIPROXY_PYTHON").unwrap_or_else(|_| "python3".into());
    let path = format!("{}/tests/sdk/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut command = Command::new(&python);
    command.arg(&path);
    for var in [
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "AZURE_OPENAI_API_KEY",
        "AZURE_OPENAI_ENDPOINT",
    ] {
        command.env_remove(var);
    }
    for var in telemetry_variables() {
        command.env_remove(var);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command
        .env("NO_PROXY", "127.0.0.1,localhost")
        .output()
        .await
        .unwrap_or_else(|e| panic!("could not run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains(success),
        "{script} failed (are the SDKs installed? scripts/test.sh installs them)\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
}
