//! Assistants (`/assistants`, what the `azure-ai-agents` SDK calls agents) and the new Agents API
//! (`/agents`), where an agent is named by its caller and its id is that name. `POST /agents` with
//! a name that exists adds a version, as `create_version` does: an attendee who reuses another's
//! agent name through a careless proxy rewrites that agent, which the next GET shows.

use http::{Method, Response, StatusCode};
use serde_json::{Map, Value, json};

use super::{Project, deleted, fields_of, list, merge, method_not_allowed};
use crate::mock::path::Route;
use crate::mock::store::now;
use crate::mock::{MockBody, MockRequest, error, json, not_found};

pub fn assistants(
    project: &mut Project,
    request: &MockRequest,
    route: &Route,
) -> Response<MockBody> {
    let body = match request.json() {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let missing = |id: &str| not_found(&format!("No assistant found with id '{id}'."));
    match (request.method, route.len()) {
        (&Method::GET, 0) => list(&project.store, "assistants", request.query, |_| true),
        (&Method::POST, 0) => {
            if let Err(response) = project.check_references(&body) {
                return *response;
            }
            let mut fields = Map::new();
            for (key, default) in [
                ("name", Value::Null),
                ("description", Value::Null),
                ("instructions", Value::Null),
                ("tools", json!([])),
                ("tool_resources", json!({})),
                ("metadata", json!({})),
                ("temperature", json!(1.0)),
                ("top_p", json!(1.0)),
                ("response_format", json!("auto")),
            ] {
                fields.insert(key.into(), default);
            }
            fields.extend(fields_of(&body));
            let assistant = project
                .store
                .create("assistants", "asst_", "assistant", fields);
            json(StatusCode::OK, &assistant)
        }
        (&Method::GET, 1) => match project.store.get("assistants", route.seg(0)) {
            Some(assistant) => json(StatusCode::OK, assistant),
            None => missing(route.seg(0)),
        },
        (&Method::POST, 1) => {
            if let Err(response) = project.check_references(&body) {
                return *response;
            }
            match project.store.get_mut("assistants", route.seg(0)) {
                Some(assistant) => {
                    merge(assistant, fields_of(&body));
                    json(StatusCode::OK, assistant)
                }
                None => missing(route.seg(0)),
            }
        }
        (&Method::DELETE, 1) => match project.store.remove("assistants", route.seg(0)) {
            Some(_) => deleted(route.seg(0), "assistant"),
            None => missing(route.seg(0)),
        },
        (_, 0 | 1) => method_not_allowed(),
        _ => not_found(&format!("Resource not found: {}", request.path)),
    }
}

pub fn agents(project: &mut Project, request: &MockRequest, route: &Route) -> Response<MockBody> {
    let body = match request.json() {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let name = route.seg(0);
    let missing = |name: &str| not_found(&format!("Agent '{name}' not found."));
    let shape = route.shape();
    match (request.method, shape.as_slice()) {
        (&Method::GET, []) => list(&project.store, "agents", request.query, |_| true),
        (&Method::POST, []) => {
            let Some(name) = body["name"].as_str().filter(|n| !n.is_empty()) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "An agent needs a 'name'.",
                );
            };
            json(StatusCode::OK, &new_version(project, name, &body))
        }
        (&Method::GET, [_]) => match project.store.get("agents", name) {
            Some(agent) => json(StatusCode::OK, agent),
            None => missing(name),
        },
        (&Method::POST, [_]) | (&Method::POST, [_, "versions"]) => {
            if !project.store.contains("agents", name) {
                return missing(name);
            }
            let agent = new_version(project, name, &body);
            if shape.len() == 2 {
                json(StatusCode::OK, &agent["versions"]["latest"])
            } else {
                json(StatusCode::OK, &agent)
            }
        }
        (&Method::DELETE, [_]) => match project.store.remove("agents", name) {
            Some(_) => json(
                StatusCode::OK,
                &json!({"object": "agent.deleted", "id": name, "name": name, "deleted": true}),
            ),
            None => missing(name),
        },
        (&Method::GET, [_, "versions"]) => {
            if !project.store.contains("agents", name) {
                return missing(name);
            }
            list(
                &project.store,
                &format!("agents/{name}/versions"),
                request.query,
                |_| true,
            )
        }
        (&Method::GET, [_, "versions", _]) => {
            match project
                .store
                .get(&format!("agents/{name}/versions"), route.seg(2))
            {
                Some(version) => json(StatusCode::OK, version),
                None => missing(&format!("{name}:{}", route.seg(2))),
            }
        }
        (&Method::DELETE, [_, "versions", _]) => {
            match project
                .store
                .remove(&format!("agents/{name}/versions"), route.seg(2))
            {
                Some(_) => deleted(route.seg(2), "agent.version"),
                None => missing(&format!("{name}:{}", route.seg(2))),
            }
        }
        (_, [] | [_] | [_, "versions"] | [_, "versions", _]) => method_not_allowed(),
        _ => not_found(&format!("Resource not found: {}", request.path)),
    }
}

/// Creates `name` at version 1, or adds the next version; returns the agent.
fn new_version(project: &mut Project, name: &str, body: &Value) -> Value {
    let versions = format!("agents/{name}/versions");
    let number = project.store.all(&versions).count() + 1;
    let mut fields = Map::new();
    fields.insert("name".into(), json!(name));
    fields.insert("version".into(), json!(number.to_string()));
    fields.insert("description".into(), body["description"].clone());
    fields.insert(
        "definition".into(),
        body.get("definition").cloned().unwrap_or(json!({})),
    );
    fields.insert(
        "metadata".into(),
        body.get("metadata").cloned().unwrap_or(json!({})),
    );
    let version = project
        .store
        .insert(&versions, &number.to_string(), "agent.version", fields);
    match project.store.get_mut("agents", name) {
        Some(agent) => {
            agent["versions"]["latest"] = version;
            agent.clone()
        }
        None => {
            let mut fields = Map::new();
            fields.insert("name".into(), json!(name));
            fields.insert("versions".into(), json!({"latest": version}));
            fields.insert("created_at".into(), json!(now()));
            project.store.insert("agents", name, "agent", fields)
        }
    }
}
