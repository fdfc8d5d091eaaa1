//! Threads, their messages and runs. A run is answered at once: it adds the agent's reply to the
//! thread (first part "Hello from the mock agent.", then a part telling what the run could see —
//! the agent's instructions, the files and vector stores reachable from the agent, the thread, its
//! messages and the run request), so a run of another attendee's agent, or over another
//! attendee's files, shows in the reply. `POST /threads/runs` creates the thread too, and when
//! streamed starts with `thread.created`, as Azure does.

use std::sync::Arc;

use http::{Method, Response, StatusCode};
use serde_json::{Map, Value, json};

use super::{Project, References, deleted, fields_of, list, merge, method_not_allowed};
use crate::mock::path::Route;
use crate::mock::store::{new_id, now};
use crate::mock::usage::Meter;
use crate::mock::{MockBody, MockRequest, Refused, json, not_found, sse};

/// The first part of every reply.
pub const AGENT_REPLY: &str = "Hello from the mock agent.";

pub fn answer(
    project: &mut Project,
    request: &MockRequest,
    route: &Route,
    meter: &Arc<Meter>,
) -> Response<MockBody> {
    let body = match request.json() {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let shape = route.shape();
    let thread = route.seg(0);
    let creates_thread_and_run = shape == ["runs"] && request.method == Method::POST;
    if !shape.is_empty() && !creates_thread_and_run && !project.store.contains("threads", thread) {
        return not_found(&format!("No thread found with id '{thread}'."));
    }
    let streaming = body["stream"] == true;
    let messages = format!("threads/{thread}/messages");
    let runs = format!("threads/{thread}/runs");
    match (request.method, shape.as_slice()) {
        (&Method::POST, ["runs"]) => create_thread_and_run(project, &body, streaming, meter),
        (&Method::POST, []) => match create_thread(project, &body) {
            Ok(thread) => json(StatusCode::OK, &thread),
            Err(response) => *response,
        },
        (&Method::GET, []) => list(&project.store, "threads", request.query, |_| true),
        (&Method::GET, [_]) => json(
            StatusCode::OK,
            &project
                .store
                .get("threads", thread)
                .cloned()
                .unwrap_or_default(),
        ),
        (&Method::POST, [_]) => {
            if let Err(response) = project.check_references(&body) {
                return *response;
            }
            let object = project
                .store
                .get_mut("threads", thread)
                .expect("checked above");
            merge(object, fields_of(&body));
            json(StatusCode::OK, object)
        }
        (&Method::DELETE, [_]) => {
            project.store.remove("threads", thread);
            deleted(thread, "thread")
        }
        (&Method::GET, [_, "messages"]) => list(&project.store, &messages, request.query, |m| {
            crate::mock::path::query_param(request.query, "run_id").is_none_or(|r| m["run_id"] == r)
        }),
        (&Method::POST, [_, "messages"]) => {
            if let Err(response) = project.check_references(&body) {
                return *response;
            }
            json(StatusCode::OK, &add_message(project, thread, &body, None))
        }
        (&Method::GET, [_, "messages", _]) => {
            object_or_404(project, &messages, route.seg(2), "message")
        }
        (&Method::POST, [_, "messages", _]) => {
            update(project, &messages, route.seg(2), "message", &body)
        }
        (&Method::DELETE, [_, "messages", _]) => {
            match project.store.remove(&messages, route.seg(2)) {
                Some(_) => deleted(route.seg(2), "thread.message"),
                None => not_found(&format!("No message found with id '{}'.", route.seg(2))),
            }
        }
        (&Method::GET, [_, "runs"]) => list(&project.store, &runs, request.query, |_| true),
        (&Method::POST, [_, "runs"]) => {
            let checked = project
                .check_references(&body)
                .and_then(|_| run_agent(project, &body).map(|_| ()));
            if let Err(response) = checked {
                return *response;
            }
            run(project, thread, &body, None, streaming, meter)
        }
        (&Method::GET, [_, "runs", _])
        | (&Method::POST, [_, "runs", _] | [_, "runs", _, "submit_tool_outputs"]) => {
            match project.store.get_mut(&runs, route.seg(2)) {
                Some(run) => {
                    if request.method == Method::POST
                        && shape.len() == 3
                        && let Some(metadata) = body.get("metadata")
                    {
                        run["metadata"] = metadata.clone();
                    }
                    answer_run(meter, run)
                }
                None => not_found(&format!("No run found with id '{}'.", route.seg(2))),
            }
        }
        (&Method::POST, [_, "runs", _, "cancel"]) => {
            match project.store.get_mut(&runs, route.seg(2)) {
                Some(run) => {
                    run["status"] = json!("cancelled");
                    answer_run(meter, run)
                }
                None => not_found(&format!("No run found with id '{}'.", route.seg(2))),
            }
        }
        (&Method::GET, [_, "runs", _, "steps"]) => list(
            &project.store,
            &format!("{runs}/{}/steps", route.seg(2)),
            request.query,
            |_| true,
        ),
        (&Method::GET, [_, "runs", _, "steps", _]) => object_or_404(
            project,
            &format!("{runs}/{}/steps", route.seg(2)),
            route.seg(4),
            "run step",
        ),
        (_, [] | [_] | [_, "messages" | "runs"] | [_, "messages" | "runs", _]) => {
            method_not_allowed()
        }
        _ => not_found(&format!("Resource not found: {}", request.path)),
    }
}

/// A run answered alone: its usage goes into the ledger the first time.
fn answer_run(meter: &Meter, run: &Value) -> Response<MockBody> {
    meter.record_run(run);
    json(StatusCode::OK, run)
}

fn object_or_404(project: &Project, collection: &str, id: &str, what: &str) -> Response<MockBody> {
    match project.store.get(collection, id) {
        Some(object) => json(StatusCode::OK, object),
        None => not_found(&format!("No {what} found with id '{id}'.")),
    }
}

/// Updates an object's `metadata` (the only field Azure lets change on messages and runs).
fn update(
    project: &mut Project,
    collection: &str,
    id: &str,
    what: &str,
    body: &Value,
) -> Response<MockBody> {
    match project.store.get_mut(collection, id) {
        Some(object) => {
            if let Some(metadata) = body.get("metadata") {
                object["metadata"] = metadata.clone();
            }
            json(StatusCode::OK, object)
        }
        None => not_found(&format!("No {what} found with id '{id}'.")),
    }
}

/// The agent a run names (`assistant_id`, or `agent_id`); 404 if it names one that does not exist.
fn run_agent(project: &Project, body: &Value) -> Result<Option<super::Agent>, Refused> {
    let named = body["assistant_id"].as_str().or(body["agent_id"].as_str());
    match named {
        None => Ok(None),
        Some(id) => project
            .agent(id)
            .map(Some)
            .ok_or_else(|| Box::new(not_found(&format!("No assistant found with id '{id}'.")))),
    }
}

/// A thread with its `messages`, after checking every reference in the request.
fn create_thread(project: &mut Project, body: &Value) -> Result<Value, Refused> {
    project.check_references(body)?;
    let mut fields = Map::new();
    fields.insert(
        "tool_resources".into(),
        body.get("tool_resources").cloned().unwrap_or(json!({})),
    );
    fields.insert(
        "metadata".into(),
        body.get("metadata").cloned().unwrap_or(json!({})),
    );
    let thread = project.store.create("threads", "thread_", "thread", fields);
    let id = thread["id"].as_str().unwrap_or_default().to_string();
    for message in body["messages"].as_array().into_iter().flatten() {
        add_message(project, &id, message, None);
    }
    Ok(thread)
}

/// Adds a message as Azure stores it: text content as parts, attachments kept.
fn add_message(
    project: &mut Project,
    thread: &str,
    body: &Value,
    run: Option<(&str, &Value)>,
) -> Value {
    let content = match &body["content"] {
        Value::String(text) => vec![text_part(text)],
        Value::Array(parts) => parts
            .iter()
            .map(|part| match (&part["type"], &part["text"]) {
                (Value::String(kind), Value::String(text)) if kind == "text" => text_part(text),
                _ => part.clone(),
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut fields = Map::new();
    fields.insert("thread_id".into(), json!(thread));
    fields.insert(
        "role".into(),
        body.get("role").cloned().unwrap_or(json!("user")),
    );
    fields.insert("content".into(), Value::Array(content));
    fields.insert(
        "attachments".into(),
        body.get("attachments").cloned().unwrap_or(json!([])),
    );
    fields.insert(
        "metadata".into(),
        body.get("metadata").cloned().unwrap_or(json!({})),
    );
    fields.insert("status".into(), json!("completed"));
    fields.insert("run_id".into(), run.map_or(Value::Null, |(r, _)| json!(r)));
    fields.insert(
        "assistant_id".into(),
        run.map_or(Value::Null, |(_, a)| a.clone()),
    );
    project.store.create(
        &format!("threads/{thread}/messages"),
        "msg_",
        "thread.message",
        fields,
    )
}

fn text_part(text: &str) -> Value {
    json!({"type": "text", "text": {"value": text, "annotations": []}})
}

fn create_thread_and_run(
    project: &mut Project,
    body: &Value,
    streaming: bool,
    meter: &Arc<Meter>,
) -> Response<MockBody> {
    if let Err(response) = project
        .check_references(body)
        .and_then(|_| run_agent(project, body).map(|_| ()))
    {
        return *response;
    }
    let thread = match create_thread(project, body.get("thread").unwrap_or(&json!({}))) {
        Ok(thread) => thread,
        Err(response) => return *response,
    };
    let id = thread["id"].as_str().unwrap_or_default().to_string();
    run(project, &id, body, Some(thread), streaming, meter)
}

/// Runs the agent on the thread: the reply message, a run step, and the run, completed, with
/// fresh usage. Answered as Azure does: queued (no usage yet), or streamed up to
/// `thread.run.completed` (with usage, counted once the stream was handed over).
fn run(
    project: &mut Project,
    thread: &str,
    body: &Value,
    created_thread: Option<Value>,
    streaming: bool,
    meter: &Arc<Meter>,
) -> Response<MockBody> {
    let agent = run_agent(project, body).ok().flatten();
    for message in body["additional_messages"].as_array().into_iter().flatten() {
        add_message(project, thread, message, None);
    }
    let seen = what_the_run_sees(project, thread, body, agent.as_ref());
    let run_id = new_id("run_");
    let assistant_id = agent.as_ref().map_or(Value::Null, |a| json!(a.id));
    let instructions = body["instructions"]
        .as_str()
        .map(str::to_string)
        .or(agent.as_ref().map(|a| a.instructions.clone()))
        .unwrap_or_default()
        + body["additional_instructions"].as_str().unwrap_or_default();
    let mut reply = vec![text_part(AGENT_REPLY)];
    let mut details = Vec::new();
    if !instructions.is_empty() {
        details.push(format!("Instructions: {instructions}"));
    }
    details.extend(seen);
    if !details.is_empty() {
        reply.push(text_part(&details.join("\n")));
    }
    let message = add_message(
        project,
        thread,
        &json!({"role": "assistant", "content": reply}),
        Some((&run_id, &assistant_id)),
    );
    let mut step = Map::new();
    step.insert("type".into(), json!("message_creation"));
    step.insert("status".into(), json!("completed"));
    step.insert("run_id".into(), json!(run_id));
    step.insert("thread_id".into(), json!(thread));
    step.insert("assistant_id".into(), assistant_id.clone());
    step.insert(
        "step_details".into(),
        json!({"type": "message_creation", "message_creation": {"message_id": message["id"]}}),
    );
    let step = project.store.create(
        &format!("threads/{thread}/runs/{run_id}/steps"),
        "step_",
        "thread.run.step",
        step,
    );
    let mut fields = Map::new();
    fields.insert("thread_id".into(), json!(thread));
    fields.insert("assistant_id".into(), assistant_id);
    fields.insert("status".into(), json!("completed"));
    fields.insert(
        "model".into(),
        body.get("model")
            .cloned()
            .or(agent.as_ref().map(|a| a.model.clone()))
            .unwrap_or(Value::Null),
    );
    fields.insert("instructions".into(), json!(instructions));
    for (key, default) in [
        ("tools", json!([])),
        ("tool_resources", json!({})),
        ("metadata", json!({})),
    ] {
        fields.insert(key.into(), body.get(key).cloned().unwrap_or(default));
    }
    fields.insert("started_at".into(), json!(now()));
    fields.insert("completed_at".into(), json!(now()));
    let drawn = meter.draw(body.to_string().len());
    fields.insert("usage".into(), drawn.plain());
    let run = project.store.insert(
        &format!("threads/{thread}/runs"),
        &run_id,
        "thread.run",
        fields,
    );
    let mut queued = run.clone();
    queued["status"] = json!("queued");
    queued["completed_at"] = Value::Null;
    queued["usage"] = Value::Null;
    if !streaming {
        return json(StatusCode::OK, &queued);
    }
    let meter = meter.clone();
    let mut events = run_events(created_thread, &queued, &run, &step, &message);
    if let Some(kept) = project.run_streams_end_after {
        // The stream ends with the run at work (as Azure's does at `requires_action`): its
        // usage is only on a later read of the run.
        events.truncate(kept);
        return sse::stream_then(events, Default::default(), || {});
    }
    sse::stream_then(events, Default::default(), move || meter.record_run(&run))
}

/// What a run can read: the files and vector stores reachable from its agent, its thread, the
/// thread's messages and the run request itself.
fn what_the_run_sees(
    project: &Project,
    thread: &str,
    body: &Value,
    agent: Option<&super::Agent>,
) -> Vec<String> {
    let mut references = References::of(body);
    if let Some(agent) = agent {
        references.extend(References::of(&agent.object));
    }
    if let Some(thread) = project.store.get("threads", thread) {
        references.extend(References::of(thread));
    }
    for message in project.store.all(&format!("threads/{thread}/messages")) {
        references.extend(References::of(message));
    }
    project.describe(&references)
}

fn run_events(
    created_thread: Option<Value>,
    queued: &Value,
    run: &Value,
    step: &Value,
    message: &Value,
) -> Vec<String> {
    let mut events = Vec::new();
    if let Some(thread) = created_thread {
        events.push(sse::event("thread.created", &thread));
    }
    let mut in_progress = queued.clone();
    in_progress["status"] = json!("in_progress");
    events.push(sse::event("thread.run.created", queued));
    events.push(sse::event("thread.run.queued", queued));
    events.push(sse::event("thread.run.in_progress", &in_progress));
    let mut step_in_progress = step.clone();
    step_in_progress["status"] = json!("in_progress");
    events.push(sse::event("thread.run.step.created", &step_in_progress));
    let mut empty = message.clone();
    empty["status"] = json!("in_progress");
    empty["content"] = json!([]);
    events.push(sse::event("thread.message.created", &empty));
    events.push(sse::event("thread.message.in_progress", &empty));
    for (index, part) in message["content"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let delta = json!({"id": message["id"], "object": "thread.message.delta",
            "delta": {"content": [{"index": index, "type": "text", "text": {"value": part["text"]["value"]}}]}});
        events.push(sse::event("thread.message.delta", &delta));
    }
    events.push(sse::event("thread.message.completed", message));
    events.push(sse::event("thread.run.step.completed", step));
    events.push(sse::event("thread.run.completed", run));
    events.push("event: done\ndata: [DONE]\n\n".to_string());
    events
}
