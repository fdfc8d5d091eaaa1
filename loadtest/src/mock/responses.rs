//! The Responses and Conversations APIs (`…/openai/v1/responses`, `…/openai/v1/conversations`),
//! served both by the Azure OpenAI side of the mock (model responses) and by a Foundry project
//! (agent responses, `agent: {"type": "agent_reference", "name"}`).
//!
//! A response is stored unless `store: false` (then GET answers 404); `previous_response_id` and
//! `conversation` must name stored objects, and the reply repeats what they held ("Earlier input:
//! …", "Conversation so far: …"), as would a model given that context — so continuing another
//! attendee's response through a careless proxy shows their prompt. An agent's instructions and
//! the files a request names show the same way. `stream: true` answers with Azure's SSE events,
//! `response.created` first and `response.completed` (with usage) last.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Response, StatusCode};
use serde_json::{Map, Value, json};

use super::foundry::{Project, deleted, fields_of, list, merge, method_not_allowed};
use super::path::Route;
use super::store::{new_id, now};
use super::usage::Meter;
use super::{MockBody, MockRequest, error, json, not_found, sse};

/// How one side of the mock answers.
pub struct Flavor {
    /// The first part of every reply.
    pub reply: &'static str,
    /// A Foundry project: agent references resolve, file and vector store references are checked.
    pub agents: bool,
    /// Text deltas in a streamed reply, and the pause before each after the first.
    pub stream_chunks: usize,
    pub stream_delay: Duration,
}

pub const AGENT_SERVICE: Flavor = Flavor {
    reply: super::foundry::AGENT_REPLY,
    agents: true,
    stream_chunks: 2,
    stream_delay: Duration::ZERO,
};

/// `route` is what follows `openai/v1` (or `openai`).
pub fn answer(
    project: &mut Project,
    flavor: &Flavor,
    request: &MockRequest,
    route: &Route,
    meter: &Arc<Meter>,
) -> Response<MockBody> {
    let body = match request.json() {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let id = route.seg(1);
    let response_missing = || not_found(&format!("Response with id '{id}' not found."));
    let conversation_missing = || not_found(&format!("Conversation with id '{id}' not found."));
    let items = format!("conversations/{id}/items");
    match (request.method, route.shape().as_slice()) {
        (&Method::POST, ["responses"]) => {
            create_response(project, flavor, &body, request.body.len(), meter)
        }
        (&Method::GET, ["responses", _]) => match project.store.get("responses", id) {
            Some(response) => {
                // A background response's usage is counted on its first read, finished.
                if response["background"] == true {
                    meter.record_run(response);
                }
                json(StatusCode::OK, response)
            }
            None => response_missing(),
        },
        (&Method::DELETE, ["responses", _]) => match project.store.remove("responses", id) {
            Some(_) => deleted(id, "response"),
            None => response_missing(),
        },
        (&Method::GET, ["responses", _, "input_items"]) => {
            if !project.store.contains("responses", id) {
                return response_missing();
            }
            list(
                &project.store,
                &format!("responses/{id}/input_items"),
                request.query,
                |_| true,
            )
        }
        (&Method::POST, ["responses", _, "cancel"]) => {
            match project.store.get_mut("responses", id) {
                Some(response) if response["background"] == true => {
                    response["status"] = json!("cancelled");
                    json(StatusCode::OK, response)
                }
                Some(_) => error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "Only background responses can be cancelled.",
                ),
                None => response_missing(),
            }
        }
        (&Method::POST, ["conversations"]) => {
            if flavor.agents
                && let Err(response) = project.check_references(&body)
            {
                return *response;
            }
            let mut fields = Map::new();
            fields.insert(
                "metadata".into(),
                body.get("metadata").cloned().unwrap_or(json!({})),
            );
            let conversation =
                project
                    .store
                    .create("conversations", "conv_", "conversation", fields);
            let id = conversation["id"].as_str().unwrap_or_default().to_string();
            add_items(project, &id, &input_items(&body["items"]));
            json(StatusCode::OK, &conversation)
        }
        (&Method::GET, ["conversations"]) => {
            list(&project.store, "conversations", request.query, |_| true)
        }
        (&Method::GET, ["conversations", _]) => match project.store.get("conversations", id) {
            Some(conversation) => json(StatusCode::OK, conversation),
            None => conversation_missing(),
        },
        (&Method::POST, ["conversations", _]) => match project.store.get_mut("conversations", id) {
            Some(conversation) => {
                merge(conversation, fields_of(&body));
                json(StatusCode::OK, conversation)
            }
            None => conversation_missing(),
        },
        (&Method::DELETE, ["conversations", _]) => {
            match project.store.remove("conversations", id) {
                Some(_) => deleted(id, "conversation"),
                None => conversation_missing(),
            }
        }
        (_, ["conversations", _, "items", ..]) if !project.store.contains("conversations", id) => {
            conversation_missing()
        }
        (&Method::GET, ["conversations", _, "items"]) => {
            list(&project.store, &items, request.query, |_| true)
        }
        (&Method::POST, ["conversations", _, "items"]) => {
            if flavor.agents
                && let Err(response) = project.check_references(&body)
            {
                return *response;
            }
            let added = add_items(project, id, &input_items(&body["items"]));
            json(
                StatusCode::OK,
                &json!({"object": "list", "data": added,
                        "first_id": added.first().map(|i| i["id"].clone()),
                        "last_id": added.last().map(|i| i["id"].clone()), "has_more": false}),
            )
        }
        (&Method::GET, ["conversations", _, "items", _]) => {
            match project.store.get(&items, route.seg(3)) {
                Some(item) => json(StatusCode::OK, item),
                None => not_found(&format!("Item with id '{}' not found.", route.seg(3))),
            }
        }
        (&Method::DELETE, ["conversations", _, "items", _]) => {
            match project.store.remove(&items, route.seg(3)) {
                Some(_) => json(
                    StatusCode::OK,
                    project
                        .store
                        .get("conversations", id)
                        .unwrap_or(&Value::Null),
                ),
                None => not_found(&format!("Item with id '{}' not found.", route.seg(3))),
            }
        }
        (_, ["responses" | "conversations", ..]) => method_not_allowed(),
        _ => not_found(&format!("Resource not found: {}", request.path)),
    }
}

/// `input` (a string, or items) as stored items: messages get ids and typed content parts.
fn input_items(input: &Value) -> Vec<Value> {
    let items = match input {
        Value::String(text) => vec![json!({"type": "message", "role": "user", "content": text})],
        Value::Array(items) => items.clone(),
        _ => Vec::new(),
    };
    items
        .into_iter()
        .map(|mut item| {
            if item.get("role").is_some() {
                item["type"] = json!("message");
                if let Some(text) = item["content"].as_str() {
                    let kind = if item["role"] == "assistant" {
                        "output_text"
                    } else {
                        "input_text"
                    };
                    item["content"] = json!([{"type": kind, "text": text}]);
                }
                item["status"] = json!("completed");
            }
            if item.get("id").is_none() {
                item["id"] = json!(new_id("msg_"));
            }
            item
        })
        .collect()
}

/// Appends items to a conversation; returns them as stored.
fn add_items(project: &mut Project, conversation: &str, items: &[Value]) -> Vec<Value> {
    let collection = format!("conversations/{conversation}/items");
    items
        .iter()
        .map(|item| {
            let mut fields = item.as_object().cloned().unwrap_or_default();
            let id = fields
                .remove("id")
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| new_id("msg_"));
            let object = fields
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("message")
                .to_string();
            project.store.insert(&collection, &id, &object, fields)
        })
        .collect()
}

/// Every string a person wrote in these items or objects (`text`, string `content`, `input`).
fn texts(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("text" | "content" | "input", Value::String(text)) => out.push(text.clone()),
                    ("metadata", _) => {}
                    _ => texts(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| texts(item, out)),
        _ => {}
    }
}

fn joined_texts<'v>(values: impl IntoIterator<Item = &'v Value>) -> String {
    let mut out = Vec::new();
    for value in values {
        texts(value, &mut out);
    }
    out.join(" | ")
}

/// Creates a response (stored unless `store: false`) with fresh usage, counted in the ledger once
/// the answer is built (JSON) or fully handed over (SSE).
fn create_response(
    project: &mut Project,
    flavor: &Flavor,
    body: &Value,
    body_len: usize,
    meter: &Arc<Meter>,
) -> Response<MockBody> {
    let references = if flavor.agents {
        match project.check_references(body) {
            Ok(references) => Some(references),
            Err(response) => return *response,
        }
    } else {
        None
    };
    let mut details = Vec::new();
    if let Some(previous) = body["previous_response_id"].as_str() {
        if !project.store.contains("responses", previous) {
            return not_found(&format!(
                "Previous response with id '{previous}' not found."
            ));
        }
        let earlier: Vec<&Value> = project
            .store
            .all(&format!("responses/{previous}/input_items"))
            .collect();
        details.push(format!("Earlier input: {}", joined_texts(earlier)));
    }
    let conversation = match &body["conversation"] {
        Value::String(id) => Some(id.clone()),
        Value::Object(c) => c.get("id").and_then(Value::as_str).map(str::to_string),
        _ => None,
    };
    if let Some(id) = &conversation {
        if !project.store.contains("conversations", id) {
            return not_found(&format!("Conversation with id '{id}' not found."));
        }
        let items: Vec<&Value> = project
            .store
            .all(&format!("conversations/{id}/items"))
            .collect();
        details.push(format!("Conversation so far: {}", joined_texts(items)));
    }
    let agent = if flavor.agents {
        body["agent"]["name"]
            .as_str()
            .and_then(|name| project.agent_named(name))
    } else {
        None
    };
    let instructions = body["instructions"]
        .as_str()
        .map(str::to_string)
        .or(agent.as_ref().map(|a| a.instructions.clone()))
        .filter(|i| !i.is_empty());
    if let Some(instructions) = &instructions {
        details.push(format!("Instructions: {instructions}"));
    }
    if let Some(references) = &references {
        details.extend(project.describe(references));
    }
    let items = input_items(&body["input"]);
    let mut content = vec![output_text(flavor.reply)];
    if !details.is_empty() {
        content.push(output_text(&details.join("\n")));
    }
    let output = json!({"id": new_id("msg_"), "type": "message", "status": "completed",
                        "role": "assistant", "content": content});
    let model = body
        .get("model")
        .cloned()
        .or(agent.as_ref().map(|a| a.model.clone()))
        .unwrap_or(Value::Null);
    let stored = body["store"] != false;
    let mut fields = Map::new();
    fields.insert("status".into(), json!("completed"));
    let model_name = model.as_str().unwrap_or_default().to_string();
    fields.insert("model".into(), model);
    fields.insert("output".into(), json!([output]));
    let drawn = meter.draw(body_len);
    fields.insert("usage".into(), drawn.responses());
    fields.insert(
        "previous_response_id".into(),
        body["previous_response_id"].clone(),
    );
    fields.insert(
        "conversation".into(),
        conversation
            .as_ref()
            .map_or(Value::Null, |id| json!({"id": id})),
    );
    fields.insert("agent".into(), body["agent"].clone());
    fields.insert("instructions".into(), json!(instructions));
    fields.insert(
        "metadata".into(),
        body.get("metadata").cloned().unwrap_or(json!({})),
    );
    fields.insert(
        "tools".into(),
        body.get("tools").cloned().unwrap_or(json!([])),
    );
    fields.insert("store".into(), json!(stored));
    fields.insert("background".into(), json!(body["background"] == true));
    fields.insert("parallel_tool_calls".into(), json!(true));
    fields.insert("tool_choice".into(), json!("auto"));
    fields.insert("text".into(), json!({"format": {"type": "text"}}));
    fields.insert("error".into(), Value::Null);
    fields.insert("incomplete_details".into(), Value::Null);
    fields.insert("created_at".into(), json!(now()));
    let id = new_id("resp_");
    let mut response = Value::Object(fields.clone());
    response["id"] = json!(id);
    response["object"] = json!("response");
    if stored {
        response = project.store.insert("responses", &id, "response", fields);
        for item in &items {
            let mut item = item.as_object().cloned().unwrap_or_default();
            let item_id = item
                .remove("id")
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            project.store.insert(
                &format!("responses/{id}/input_items"),
                &item_id,
                "message",
                item,
            );
        }
    }
    if let Some(conversation) = &conversation {
        let mut added = items.clone();
        added.push(response["output"][0].clone());
        add_items(project, conversation, &added);
    }
    if body["stream"] == true {
        let meter = meter.clone();
        sse::stream_then(
            stream_events(flavor, &response),
            flavor.stream_delay,
            move || meter.record(&model_name, &drawn),
        )
    } else if body["background"] == true && stored {
        // Answered as Azure does: queued, its usage on a later read of the finished response.
        let mut queued = response.clone();
        queued["status"] = json!("queued");
        queued["output"] = json!([]);
        queued["usage"] = Value::Null;
        json(StatusCode::OK, &queued)
    } else {
        meter.record(&model_name, &drawn);
        json(StatusCode::OK, &response)
    }
}

fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": []})
}

/// The events of a streamed response, as Azure sends them (no `[DONE]` on this API).
fn stream_events(flavor: &Flavor, response: &Value) -> Vec<String> {
    let mut sequence = 0;
    let mut events = Vec::new();
    let mut push = |kind: &str, mut data: Value| {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(sequence);
        sequence += 1;
        events.push(sse::event(kind, &data));
    };
    let mut started = response.clone();
    started["status"] = json!("in_progress");
    started["output"] = json!([]);
    started["usage"] = Value::Null;
    push("response.created", json!({"response": started}));
    push("response.in_progress", json!({"response": started}));
    let item = &response["output"][0];
    let item_id = item["id"].clone();
    let mut open_item = item.clone();
    open_item["status"] = json!("in_progress");
    open_item["content"] = json!([]);
    push(
        "response.output_item.added",
        json!({"output_index": 0, "item": open_item}),
    );
    for (index, part) in item["content"].as_array().into_iter().flatten().enumerate() {
        let text = part["text"].as_str().unwrap_or_default();
        push(
            "response.content_part.added",
            json!({"item_id": item_id, "output_index": 0, "content_index": index,
                   "part": output_text("")}),
        );
        for piece in split(text, flavor.stream_chunks) {
            push(
                "response.output_text.delta",
                json!({"item_id": item_id, "output_index": 0, "content_index": index, "delta": piece}),
            );
        }
        push(
            "response.output_text.done",
            json!({"item_id": item_id, "output_index": 0, "content_index": index, "text": text}),
        );
        push(
            "response.content_part.done",
            json!({"item_id": item_id, "output_index": 0, "content_index": index, "part": part}),
        );
    }
    push(
        "response.output_item.done",
        json!({"output_index": 0, "item": item}),
    );
    push("response.completed", json!({"response": response}));
    events
}

/// `text` in at most `n` pieces, split between words.
pub fn split(text: &str, n: usize) -> Vec<String> {
    let words: Vec<&str> = text.split_inclusive(' ').collect();
    let per = words.len().div_ceil(n.max(1)).max(1);
    words.chunks(per).map(|c| c.concat()).collect()
}
