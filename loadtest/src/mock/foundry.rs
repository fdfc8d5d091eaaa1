//! A Foundry project endpoint in the mock (`/api/projects/{project}/…`): agents and assistants,
//! threads with messages and runs (SSE when asked), files (multipart), vector stores, conversations
//! and agent responses, each with create / get / update / delete and paginated lists
//! (`limit`, `after`, `first_id`, `last_id`, `has_more`).

use std::convert::Infallible;
use std::sync::Mutex;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Map, Value, json};

use super::{MockBody, json};

const COLLECTIONS: [(&str, &str, &str); 7] = [
    ("assistants", "asst_", "assistant"),
    ("agents", "agent_", "agent"),
    ("threads", "thread_", "thread"),
    ("files", "file-", "file"),
    ("vector_stores", "vs_", "vector_store"),
    ("openai/v1/conversations", "conv_", "conversation"),
    ("openai/v1/responses", "resp_", "response"),
];

/// Every object the mock project holds, in creation order, keyed by collection.
#[derive(Default)]
pub struct FoundryObjects {
    items: Vec<(String, Value)>,
    counter: u64,
}

impl FoundryObjects {
    fn create(
        &mut self,
        collection: &str,
        prefix: &str,
        object: &str,
        mut fields: Map<String, Value>,
    ) -> Value {
        self.counter += 1;
        fields.insert("id".into(), json!(format!("{prefix}{:04}", self.counter)));
        fields.insert("object".into(), json!(object));
        fields.insert("created_at".into(), json!(self.counter));
        let value = Value::Object(fields);
        self.items.push((collection.to_string(), value.clone()));
        value
    }

    fn get(&self, collection: &str, id: &str) -> Option<&Value> {
        self.items
            .iter()
            .find(|(c, v)| c == collection && v["id"] == id)
            .map(|(_, v)| v)
    }

    fn list(&self, collection: &str, query: &str) -> Value {
        let mut limit = 20usize;
        let mut after: Option<String> = None;
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("limit", v)) => limit = v.parse().unwrap_or(20),
                Some(("after", v)) => after = Some(v.to_string()),
                _ => {}
            }
        }
        let all: Vec<&Value> = self
            .items
            .iter()
            .filter(|(c, _)| c == collection)
            .map(|(_, v)| v)
            .collect();
        let start = after
            .and_then(|a| {
                all.iter()
                    .position(|v| v["id"] == a.as_str())
                    .map(|i| i + 1)
            })
            .unwrap_or(0);
        let page: Vec<Value> = all
            .iter()
            .skip(start)
            .take(limit)
            .map(|v| (*v).clone())
            .collect();
        let has_more = start + page.len() < all.len();
        json!({"object": "list", "data": page, "first_id": page.first().map(|v| v["id"].clone()),
               "last_id": page.last().map(|v| v["id"].clone()), "has_more": has_more})
    }
}

fn not_found(what: &str) -> Response<MockBody> {
    json(
        StatusCode::NOT_FOUND,
        &json!({"error": {"code": "not_found", "message": format!("No {what} found")}}),
    )
}

fn sse(events: Vec<(String, Value)>) -> Response<MockBody> {
    let mut frames: Vec<Result<Frame<Bytes>, Infallible>> = events
        .into_iter()
        .map(|(name, data)| {
            Ok(Frame::data(Bytes::from(format!(
                "event: {name}\ndata: {data}\n\n"
            ))))
        })
        .collect();
    frames.push(Ok(Frame::data(Bytes::from_static(
        b"event: done\ndata: [DONE]\n\n",
    ))));
    let mut response =
        Response::new(StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        "text/event-stream".parse().unwrap(),
    );
    response
}

fn run_events(run: &Value, message: &Value) -> Vec<(String, Value)> {
    let mut done = run.clone();
    done["status"] = json!("completed");
    vec![
        ("thread.run.created".into(), run.clone()),
        ("thread.message.created".into(), message.clone()),
        (
            "thread.message.delta".into(),
            json!({"id": message["id"], "object": "thread.message.delta",
            "delta": {"content": [{"index": 0, "type": "text", "text": {"value": "Hello from the mock agent."}}]}}),
        ),
        ("thread.message.completed".into(), message.clone()),
        ("thread.run.completed".into(), done),
    ]
}

pub fn answer(
    objects: &Mutex<FoundryObjects>,
    parts: &http::request::Parts,
    body: &Bytes,
) -> Response<MockBody> {
    let path = parts.uri.path();
    let Some(rest) = path
        .strip_prefix("/api/projects/")
        .and_then(|r| r.split_once('/'))
        .map(|(_, r)| r)
    else {
        return not_found(path);
    };
    let query = parts.uri.query().unwrap_or("");
    let Some(&(collection, prefix, object)) = COLLECTIONS
        .iter()
        .find(|(c, _, _)| rest == *c || rest.starts_with(&format!("{c}/")))
    else {
        return not_found(rest);
    };
    let tail: Vec<&str> = rest[collection.len()..]
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let fields = request.as_object().cloned().unwrap_or_default();
    let streaming = request.get("stream").and_then(Value::as_bool) == Some(true);
    let mut objects = objects.lock().unwrap();
    match (&parts.method, tail.as_slice()) {
        (&Method::POST, ["runs"]) if collection == "threads" => {
            let thread = objects.create("threads", "thread_", "thread", Map::new());
            run(&mut objects, &thread["id"], streaming)
        }
        (&Method::POST, []) if collection == "files" => {
            let file = objects.create("files", prefix, object, Map::new());
            let mut file = file;
            file["bytes"] = json!(body.len());
            file["purpose"] = json!("assistants");
            json(StatusCode::OK, &file)
        }
        (&Method::POST, []) => json(
            StatusCode::OK,
            &objects.create(collection, prefix, object, fields),
        ),
        (&Method::GET, []) => json(StatusCode::OK, &objects.list(collection, query)),
        (&Method::GET, [id]) => match objects.get(collection, id) {
            Some(v) => json(StatusCode::OK, v),
            None => not_found(object),
        },
        (&Method::POST, [id]) => {
            let Some(position) = objects
                .items
                .iter()
                .position(|(c, v)| c == collection && v["id"] == *id)
            else {
                return not_found(object);
            };
            let entry = &mut objects.items[position].1;
            for (k, v) in fields {
                entry[k] = v;
            }
            json(StatusCode::OK, entry)
        }
        (&Method::DELETE, [id]) => {
            let before = objects.items.len();
            objects
                .items
                .retain(|(c, v)| !(c == collection && v["id"] == *id));
            if objects.items.len() == before {
                return not_found(object);
            }
            json(
                StatusCode::OK,
                &json!({"id": id, "object": format!("{object}.deleted"), "deleted": true}),
            )
        }
        (_, [id, "messages"]) if collection == "threads" => {
            if objects.get("threads", id).is_none() {
                return not_found("thread");
            }
            let messages = format!("threads/{id}/messages");
            if parts.method == Method::POST {
                let text = request.get("content").cloned().unwrap_or(json!(""));
                let mut message = Map::new();
                message.insert("thread_id".into(), json!(id));
                message.insert(
                    "role".into(),
                    request.get("role").cloned().unwrap_or(json!("user")),
                );
                message.insert(
                    "content".into(),
                    json!([{"type": "text", "text": {"value": text, "annotations": []}}]),
                );
                json(
                    StatusCode::OK,
                    &objects.create(&messages, "msg_", "thread.message", message),
                )
            } else {
                json(StatusCode::OK, &objects.list(&messages, query))
            }
        }
        (&Method::POST, [id, "runs"]) if collection == "threads" => {
            if objects.get("threads", id).is_none() {
                return not_found("thread");
            }
            run(&mut objects, &json!(id), streaming)
        }
        (&Method::GET, [_, "items"]) if collection == "openai/v1/conversations" => json(
            StatusCode::OK,
            &json!({"object": "list", "data": [], "first_id": null, "last_id": null, "has_more": false}),
        ),
        _ => not_found(rest),
    }
}

fn run(objects: &mut FoundryObjects, thread_id: &Value, streaming: bool) -> Response<MockBody> {
    let mut fields = Map::new();
    fields.insert("thread_id".into(), thread_id.clone());
    fields.insert("status".into(), json!("queued"));
    let run = objects.create(
        &format!("threads/{}/runs", thread_id.as_str().unwrap_or("")),
        "run_",
        "thread.run",
        fields,
    );
    let mut message = Map::new();
    message.insert("thread_id".into(), thread_id.clone());
    message.insert("role".into(), json!("assistant"));
    message.insert("content".into(), json!([{"type": "text", "text": {"value": "Hello from the mock agent.", "annotations": []}}]));
    let messages = format!("threads/{}/messages", thread_id.as_str().unwrap_or(""));
    let message = objects.create(&messages, "msg_", "thread.message", message);
    if streaming {
        sse(run_events(&run, &message))
    } else {
        json(StatusCode::OK, &run)
    }
}
