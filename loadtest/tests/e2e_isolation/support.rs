//! What the isolation suite shares: an event with every route family (a model, a Foundry
//! project, a search index, an inference model, an MCP server) and two attendees, a client that
//! sends request targets byte for byte, and one object of every kind per attendee.

use std::net::SocketAddr;
use std::time::Duration;

use aiproxy_loadtest::mock::{MockAzure, MockConfig};
use aiproxy_loadtest::stack::{
    ControlPlaneOptions, Edge, RawReply, Scenario, UPSTREAM_KEY, raw_request,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

pub const API_VERSION: &str = "api-version=2025-05-15-preview";
/// The Foundry project path on the mock.
pub const PROJECT: &str = "/api/projects/hack";

/// The standard scenario (model `gpt-4o`, attendee A's key in `s.key`) plus a `foundry-agent`
/// resource, search index `products`, inference model `Phi-4`, MCP server `docs`, and attendee B.
pub struct Stack {
    pub s: Scenario,
    pub agent_resource: String,
    pub a: String,
    pub b: String,
}

impl Stack {
    pub async fn start() -> Self {
        Self::start_with(ControlPlaneOptions::default()).await
    }

    /// The same, with the control plane started with `cp_options`.
    pub async fn start_with(cp_options: ControlPlaneOptions) -> Self {
        let s = Scenario::start_with(MockConfig::default(), cp_options).await;
        let base = s.mock.endpoint();
        let resource = |name: &str, model_type: &str, endpoint: String| {
            json!({"friendly_name": name, "deployment_name": name, "model_type": model_type,
                   "endpoint_url": endpoint, "key": UPSTREAM_KEY})
        };
        let agent_resource = s
            .admin
            .create_resource(resource(
                "agents",
                "Foundry_Agent",
                format!("{base}{PROJECT}"),
            ))
            .await;
        let mut ids = vec![s.resource_id.clone(), agent_resource.clone()];
        for (name, kind, endpoint) in [
            ("products", "azure-ai-search", base.clone()),
            ("Phi-4", "ai-inference", format!("{base}/models")),
            ("docs", "mcp-server", format!("{base}/mcp")),
        ] {
            ids.push(
                s.admin
                    .create_resource(resource(name, kind, endpoint))
                    .await,
            );
        }
        let (_, mut event) = s.admin.get(&format!("/events/{}", s.event_id)).await;
        event["resource_ids"] = json!(ids);
        let (status, body) = s.admin.put(&format!("/events/{}", s.event_id), event).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let b = s.admin.add_attendee(&s.event_id, "attendee-2").await;
        s.admin.wait_edges_acked(1, Duration::from_secs(5)).await;
        let a = s.key.clone();
        Self {
            s,
            agent_resource,
            a,
            b,
        }
    }

    pub fn mock(&self) -> &MockAzure {
        &self.s.mock
    }

    pub fn client(&self) -> Client {
        Client::of(&self.s.edge)
    }
}

/// A client of one edge that sends request targets exactly as written.
#[derive(Clone, Copy)]
pub struct Client {
    addr: SocketAddr,
}

impl Client {
    pub fn of(edge: &Edge) -> Self {
        Self { addr: edge.addr }
    }

    /// `method /api/v1{path}?api-version=…` with `key`, sent byte for byte.
    pub async fn raw(&self, method: &str, path: &str, key: &str, body: Option<&Value>) -> RawReply {
        let separator = if path.contains('?') { '&' } else { '?' };
        self.target(
            method,
            &format!("/api/v1{path}{separator}{API_VERSION}"),
            key,
            body,
        )
        .await
    }

    /// `method target` with `key`: the whole request target, `/api/v1` included.
    pub async fn target(
        &self,
        method: &str,
        target: &str,
        key: &str,
        body: Option<&Value>,
    ) -> RawReply {
        let mut headers = vec![("api-key", key)];
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        raw_request(
            self.addr,
            method,
            target,
            &headers,
            body.map(|b| b.to_string().into_bytes()),
        )
        .await
    }

    pub async fn json(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let reply = self.raw(method, path, key, body).await;
        (reply.status, reply.json())
    }

    /// A POST that must succeed; its JSON answer.
    pub async fn created(&self, path: &str, key: &str, body: Value) -> Value {
        let (status, object) = self.json("POST", path, key, Some(&body)).await;
        assert_eq!(status, StatusCode::OK, "POST {path}: {object}");
        object
    }

    /// Uploads `content` as `name` (multipart, purpose `assistants`); the file's id.
    pub async fn upload(&self, key: &str, name: &str, content: &str) -> String {
        let form = reqwest::multipart::Form::new()
            .text("purpose", "assistants")
            .part(
                "file",
                reqwest::multipart::Part::bytes(content.as_bytes().to_vec())
                    .file_name(name.to_string()),
            );
        let response = reqwest::Client::new()
            .post(format!("http://{}/api/v1/files?{API_VERSION}", self.addr))
            .header("api-key", key)
            .multipart(form)
            .send()
            .await
            .expect("edge reachable");
        assert_eq!(response.status(), StatusCode::OK, "upload {name}");
        let file: Value = response.json().await.expect("a JSON file object");
        id_of(&file, "file-")
    }

    /// Every id of a list, following `after=<last_id>` while `has_more`.
    pub async fn list_all(&self, path: &str, key: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let mut after: Option<String> = None;
        let separator = if path.contains('?') { '&' } else { '?' };
        for _ in 0..100 {
            let page_path = match &after {
                Some(after) => format!("{path}{separator}limit=100&after={after}"),
                None => format!("{path}{separator}limit=100"),
            };
            let (status, page) = self.json("GET", &page_path, key, None).await;
            assert_eq!(status, StatusCode::OK, "GET {page_path}: {page}");
            ids.extend(ids_in(&page));
            if page["has_more"] != true {
                return ids;
            }
            after = page["last_id"].as_str().map(str::to_string);
            assert!(after.is_some(), "has_more without last_id: {page}");
        }
        panic!("{path} did not end within 100 pages");
    }
}

/// The ids of a list page, in order.
pub fn ids_in(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {page}"))
        .iter()
        .map(|o| o["id"].as_str().expect("an id").to_string())
        .collect()
}

/// The object's `id`, checked to have Azure's `prefix`.
pub fn id_of(object: &Value, prefix: &str) -> String {
    let id = object["id"].as_str().unwrap_or_default().to_string();
    assert!(id.starts_with(prefix), "expected a {prefix}… id: {object}");
    id
}

/// One object of every kind, created by one attendee through the edge.
#[derive(Debug, Clone)]
pub struct Objects {
    pub assistant: String,
    /// A named agent of the new Agents API (its id is its name).
    pub agent: String,
    pub thread: String,
    pub file: String,
    pub vector_store: String,
    pub conversation: String,
    /// A stored response of that agent.
    pub agent_response: String,
    /// A stored response of the `gpt-4o` model.
    pub model_response: String,
}

impl Objects {
    /// Creates them; `label` marks every secret the objects hold, so a leak names its victim.
    pub async fn create(client: &Client, key: &str, label: &str) -> Self {
        let assistant = client
            .created(
                "/assistants",
                key,
                json!({"model": "gpt-4o", "name": format!("{label}-assistant"),
                       "instructions": format!("Secret instructions of {label}")}),
            )
            .await;
        let agent_name = format!(
            "{label}-agent-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let agent = client
            .created(
                "/agents",
                key,
                json!({"name": agent_name, "definition": {"kind": "prompt", "model": "gpt-4o",
                       "instructions": format!("Secret agent of {label}")}}),
            )
            .await;
        assert_eq!(agent["id"], agent_name.as_str(), "{agent}");
        let thread = client
            .created(
                "/threads",
                key,
                json!({"messages": [{"role": "user", "content": format!("Secret thread of {label}")}]}),
            )
            .await;
        let file = client
            .upload(
                key,
                &format!("{label}.txt"),
                &format!("Secret file of {label}"),
            )
            .await;
        let vector_store = client
            .created(
                "/vector_stores",
                key,
                json!({"name": format!("{label} docs"), "file_ids": [file]}),
            )
            .await;
        let conversation = client
            .created(
                "/openai/v1/conversations",
                key,
                json!({"items": [{"type": "message", "role": "user",
                                  "content": format!("Secret conversation of {label}")}]}),
            )
            .await;
        let agent_response = client
            .created(
                "/openai/v1/responses",
                key,
                json!({"agent": {"type": "agent_reference", "name": agent_name},
                       "input": format!("Secret agent prompt of {label}")}),
            )
            .await;
        let model_response = client
            .created(
                "/openai/v1/responses",
                key,
                json!({"model": "gpt-4o", "input": format!("Secret model prompt of {label}")}),
            )
            .await;
        Self {
            assistant: id_of(&assistant, "asst_"),
            agent: agent_name,
            thread: id_of(&thread, "thread_"),
            file,
            vector_store: id_of(&vector_store, "vs_"),
            conversation: id_of(&conversation, "conv_"),
            agent_response: id_of(&agent_response, "resp_"),
            model_response: id_of(&model_response, "resp_"),
        }
    }
}

/// Sends a request that must not reach upstream, and asserts it did not.
pub async fn unreached(
    mock: &MockAzure,
    client: &Client,
    method: &str,
    path: &str,
    key: &str,
    body: Option<&Value>,
) -> RawReply {
    let before = mock.stats.total();
    let reply = client.raw(method, path, key, body).await;
    assert_not_forwarded(mock, before, method, path, &reply);
    reply
}

/// Like `unreached`, for a whole request target (`/api/v1` included).
pub async fn unreached_target(
    mock: &MockAzure,
    client: &Client,
    method: &str,
    target: &str,
    key: &str,
    body: Option<&Value>,
) -> RawReply {
    let before = mock.stats.total();
    let reply = client.target(method, target, key, body).await;
    assert_not_forwarded(mock, before, method, target, &reply);
    reply
}

fn assert_not_forwarded(mock: &MockAzure, before: u64, method: &str, path: &str, reply: &RawReply) {
    let sent: Vec<String> = mock
        .stats
        .requests_since(before)
        .iter()
        .map(|r| format!("{} {} (routed as {})", r.method, r.raw_path, r.path))
        .collect();
    assert!(
        sent.is_empty(),
        "{method} {path} reached upstream as {sent:?}; the edge answered {} {}",
        reply.status,
        reply.text()
    );
}

/// 400 `Invalid request path: …`.
pub fn assert_invalid_path(reply: &RawReply, method: &str, path: &str) {
    assert_bad_request(reply, "Invalid request path", &format!("{method} {path}"));
}

/// 400 with a message that holds `part`.
pub fn assert_bad_request(reply: &RawReply, part: &str, what: &str) {
    assert_eq!(
        reply.status,
        StatusCode::BAD_REQUEST,
        "{what}: {}",
        reply.text()
    );
    assert!(
        reply.error_message().contains(part),
        "{what}: {}",
        reply.text()
    );
}

/// 403 `Unauthorized access to {kind}.`
pub fn assert_unauthorized(reply: &RawReply, kind: &str, what: &str) {
    assert_eq!(
        (reply.status, reply.error_message()),
        (
            StatusCode::FORBIDDEN,
            format!("Unauthorized access to {kind}.")
        ),
        "{what}: {}",
        reply.text()
    );
}

/// The events of an SSE body: (event name, data).
pub fn sse_events(text: &str) -> Vec<(String, String)> {
    text.split("\n\n")
        .filter_map(|block| {
            let name = block.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = block
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or("");
            Some((name.to_string(), data.to_string()))
        })
        .collect()
}
