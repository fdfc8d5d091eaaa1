//! A Foundry project endpoint in the mock (`/api/projects/{project}/…`): assistants and agents
//! (the new Agents API, where an agent's id is its name), threads with messages and runs (SSE when
//! asked), files (multipart), vector stores with files and file batches, conversations and agent
//! responses — create / get / update / delete and paginated lists, as Azure answers them.
//!
//! Like Azure, the project knows nothing of attendees: every object is reachable by anyone who
//! names it, lists show everyone's objects, and a reference to an object (a file in
//! `tool_resources`, an agent in a run, a `previous_response_id`) is honoured if the object exists
//! and refused with 404 if not. What a run or a response could see is written into its answer (the
//! agent's instructions, the files' names, the earlier input), so a leak through the proxy shows.

mod agents;
mod files;
mod threads;

pub use threads::AGENT_REPLY;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use serde_json::{Map, Value};

use super::store::Store;
use super::usage::Meter;
use super::{MockBody, MockRequest, Refused, error, json, not_found};

/// Every project the mock serves, by name (any case).
#[derive(Default)]
pub struct Projects {
    projects: HashMap<String, Project>,
    /// Streamed runs end after this many events, the run left at work (see
    /// `MockAzure::end_run_streams_after`).
    pub run_streams_end_after: Option<usize>,
    /// Every project's connections, by name (see `MockAzure::add_connection`).
    pub connections: HashMap<String, Value>,
}

/// One project's objects. The Azure OpenAI side of the mock keeps its Responses in one too.
#[derive(Default)]
pub struct Project {
    pub store: Store,
    /// Uploaded file contents, by file id.
    pub contents: HashMap<String, Bytes>,
    /// `Projects::run_streams_end_after`, as this call sees it.
    pub run_streams_end_after: Option<usize>,
}

/// An agent a run or a response runs: an assistant, or an agent of the new Agents API.
pub struct Agent {
    pub id: String,
    pub model: Value,
    pub instructions: String,
    /// The stored object (its `tool_resources` are part of what a run sees).
    pub object: Value,
}

/// The files and vector stores a request names.
#[derive(Default, Debug, PartialEq)]
pub struct References {
    pub files: BTreeSet<String>,
    pub vector_stores: BTreeSet<String>,
}

impl References {
    /// Collects every `file_id`, `file_ids[]` and `vector_store_ids[]`, at any depth, outside
    /// `metadata` (which is the client's free text).
    pub fn of(value: &Value) -> Self {
        let mut references = Self::default();
        references.collect(value);
        references
    }

    pub fn extend(&mut self, other: References) {
        self.files.extend(other.files);
        self.vector_stores.extend(other.vector_stores);
    }

    fn collect(&mut self, value: &Value) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("metadata", _) => {}
                        ("file_id", Value::String(id)) => {
                            self.files.insert(id.clone());
                        }
                        ("file_ids", Value::Array(ids)) => {
                            self.files
                                .extend(ids.iter().filter_map(Value::as_str).map(str::to_string));
                        }
                        ("vector_store_ids", Value::Array(ids)) => self
                            .vector_stores
                            .extend(ids.iter().filter_map(Value::as_str).map(str::to_string)),
                        _ => self.collect(value),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| self.collect(item)),
            _ => {}
        }
    }
}

impl Project {
    /// An assistant by id, else an agent of the new API by name.
    pub fn agent(&self, id: &str) -> Option<Agent> {
        if let Some(assistant) = self.store.get("assistants", id) {
            return Some(Agent {
                id: id.to_string(),
                model: assistant["model"].clone(),
                instructions: assistant["instructions"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                object: assistant.clone(),
            });
        }
        let agent = self.store.get("agents", id)?;
        let definition = &agent["versions"]["latest"]["definition"];
        Some(Agent {
            id: id.to_string(),
            model: definition["model"].clone(),
            instructions: definition["instructions"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            object: agent.clone(),
        })
    }

    /// An agent named in an `agent_reference`: an agent of the new API, else the newest assistant
    /// with that name.
    pub fn agent_named(&self, name: &str) -> Option<Agent> {
        if self.store.contains("agents", name) {
            return self.agent(name);
        }
        let id = self
            .store
            .all("assistants")
            .filter(|a| a["name"] == name)
            .last()?["id"]
            .as_str()?
            .to_string();
        self.agent(&id)
    }

    /// The request's references, or Azure's 404 for the first one that does not exist.
    pub fn check_references(&self, request: &Value) -> Result<References, Refused> {
        let references = References::of(request);
        if let Some(missing) = references
            .files
            .iter()
            .find(|f| !self.store.contains("files", f))
        {
            return Err(Box::new(not_found(&format!(
                "No file found with id '{missing}'."
            ))));
        }
        if let Some(missing) = references
            .vector_stores
            .iter()
            .find(|v| !self.store.contains("vector_stores", v))
        {
            return Err(Box::new(not_found(&format!(
                "No vector store found with id '{missing}'."
            ))));
        }
        Ok(references)
    }

    /// What an agent would read from these references, as text a test can look for: each file's
    /// name and the start of its content, each vector store's name and files.
    pub fn describe(&self, references: &References) -> Vec<String> {
        let mut lines = Vec::new();
        for id in &references.files {
            if let Some(file) = self.store.get("files", id) {
                lines.push(format!(
                    "File {id} '{}': {}",
                    file["filename"].as_str().unwrap_or(""),
                    self.preview(id)
                ));
            }
        }
        for id in &references.vector_stores {
            if let Some(store) = self.store.get("vector_stores", id) {
                let files: Vec<String> = self
                    .store
                    .all(&format!("vector_stores/{id}/files"))
                    .filter_map(|f| f["id"].as_str())
                    .map(|f| format!("{f}: {}", self.preview(f)))
                    .collect();
                lines.push(format!(
                    "Vector store {id} '{}' with files [{}]",
                    store["name"].as_str().unwrap_or(""),
                    files.join("; ")
                ));
            }
        }
        lines
    }

    fn preview(&self, file_id: &str) -> String {
        let content = self.contents.get(file_id).cloned().unwrap_or_default();
        String::from_utf8_lossy(&content[..content.len().min(80)]).into_owned()
    }
}

pub fn answer(
    projects: &Mutex<Projects>,
    meter: &Arc<Meter>,
    request: &MockRequest,
) -> Response<MockBody> {
    let route = request.route();
    if route.len() < 3 {
        return not_found(&format!("Resource not found: {}", request.path));
    }
    let mut projects = projects.lock().unwrap();
    if route.skip(3).shape().first() == Some(&"connections") {
        return connections(&projects.connections, request, &route.skip(4));
    }
    let run_streams_end_after = projects.run_streams_end_after;
    let project = projects
        .projects
        .entry(route.seg(2).to_ascii_lowercase())
        .or_default();
    project.run_streams_end_after = run_streams_end_after;
    let rest = route.skip(3);
    let collection = rest.shape().first().map(|s| s.to_string());
    match collection.as_deref() {
        Some("assistants") => agents::assistants(project, request, &rest.skip(1)),
        Some("agents") => agents::agents(project, request, &rest.skip(1)),
        Some("threads") => threads::answer(project, request, &rest.skip(1), meter),
        Some("files") => files::files(project, request, &rest.skip(1)),
        Some("vector_stores") => files::vector_stores(project, request, &rest.skip(1)),
        Some("openai") if rest.starts_with(&["openai", "v1"]) => super::responses::answer(
            project,
            &super::responses::AGENT_SERVICE,
            request,
            &rest.skip(2),
            meter,
        ),
        _ => not_found(&format!("Resource not found: {}", request.path)),
    }
}

/// `GET /connections` and `GET /connections/{name}`, as the projects API answers them (without
/// credentials).
fn connections(
    known: &HashMap<String, Value>,
    request: &MockRequest,
    rest: &super::path::Route<'_>,
) -> Response<MockBody> {
    if *request.method != Method::GET {
        return method_not_allowed();
    }
    match rest.shape().as_slice() {
        [] => {
            let mut all: Vec<&Value> = known.values().collect();
            all.sort_by_key(|c| c["name"].as_str().unwrap_or_default().to_string());
            json(StatusCode::OK, &serde_json::json!({"value": all}))
        }
        [name] => match known.get(*name) {
            Some(connection) => json(StatusCode::OK, connection),
            None => error(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("Connection {name} not found"),
            ),
        },
        _ => not_found(&format!("Resource not found: {}", request.path)),
    }
}

/// A list page of `collection`, or 400 for a cursor that names no object.
pub(crate) fn list(
    store: &Store,
    collection: &str,
    query: &str,
    keep: impl Fn(&Value) -> bool,
) -> Response<MockBody> {
    match store.list(collection, query, keep) {
        Ok(page) => json(StatusCode::OK, &page),
        Err(bad) => error(StatusCode::BAD_REQUEST, "invalid_cursor", &bad.0),
    }
}

/// `{"id", "object": "{object}.deleted", "deleted": true}`.
pub(crate) fn deleted(id: &str, object: &str) -> Response<MockBody> {
    json(
        StatusCode::OK,
        &serde_json::json!({"id": id, "object": format!("{object}.deleted"), "deleted": true}),
    )
}

/// The request body's fields, without `stream` (not part of any object).
pub(crate) fn fields_of(request: &Value) -> Map<String, Value> {
    let mut fields = request.as_object().cloned().unwrap_or_default();
    fields.remove("stream");
    fields
}

/// Copies `fields` onto `object` (an update).
pub(crate) fn merge(object: &mut Value, fields: Map<String, Value>) {
    for (key, value) in fields {
        object[key] = value;
    }
}

pub(crate) fn method_not_allowed() -> Response<MockBody> {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Method not allowed for this route.",
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn references_are_found_at_any_depth_but_not_in_metadata() {
        let body = json!({
            "assistant_id": "asst_1",
            "additional_messages": [{"attachments": [{"file_id": "file-a"}],
                                     "content": [{"type": "image_file", "image_file": {"file_id": "file-b"}}]}],
            "tool_resources": {"code_interpreter": {"file_ids": ["file-c"]},
                               "file_search": {"vector_store_ids": ["vs_1"], "vector_stores": [{"file_ids": ["file-d"]}]}},
            "thread": {"messages": [{"attachments": [{"file_id": "file-e"}]}]},
            "tools": [{"type": "file_search", "vector_store_ids": ["vs_2"]}],
            "input": [{"type": "message", "content": [{"type": "input_file", "file_id": "file-f"}]}],
            "metadata": {"file_id": "file-not-a-reference"},
        });
        let references = References::of(&body);
        assert_eq!(
            references.files.into_iter().collect::<Vec<_>>(),
            ["file-a", "file-b", "file-c", "file-d", "file-e", "file-f"]
        );
        assert_eq!(
            references.vector_stores.into_iter().collect::<Vec<_>>(),
            ["vs_1", "vs_2"]
        );
    }
}
