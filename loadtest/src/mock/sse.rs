//! Server-sent events as Azure streams them. Objects are written with their client-supplied
//! `metadata` first: the worst case for a proxy that looks for the first `"id":"` in the raw text,
//! since whatever a client puts in its metadata then comes before the real ids.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::MockBody;

/// `event: {name}` and its data, as one SSE message.
pub fn event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {}\n\n", metadata_first(data))
}

/// JSON text of `value` in which every object lists `metadata` before its other keys.
pub fn metadata_first(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by_key(|k| (k.as_str() != "metadata", k.as_str()));
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        serde_json::to_string(k).unwrap_or_default(),
                        metadata_first(&map[k])
                    )
                })
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(metadata_first).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

/// A `text/event-stream` response sending `messages`, waiting `delay` before each after the first,
/// then calling `sent` once every message has been handed over (not if the reader left).
pub fn stream_then(
    messages: Vec<String>,
    delay: Duration,
    sent: impl FnOnce() + Send + 'static,
) -> Response<MockBody> {
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    tokio::spawn(async move {
        for (i, message) in messages.into_iter().enumerate() {
            if i > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if tx
                .send(Ok(Frame::data(Bytes::from(message))))
                .await
                .is_err()
            {
                return;
            }
        }
        sent();
    });
    let mut response = Response::new(StreamBody::new(ReceiverStream::new(rx)).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        "text/event-stream; charset=utf-8".parse().unwrap(),
    );
    headers.insert(http::header::CACHE_CONTROL, "no-cache".parse().unwrap());
    headers.insert("x-mock-upstream", "azure-openai".parse().unwrap());
    response
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn metadata_comes_first_at_every_level_and_the_json_stays_equal() {
        let value = json!({"id": "run_1", "thread_id": "thread_1", "metadata": {"id": "x"},
                           "nested": {"z": 1, "metadata": null}, "list": [{"b": 1, "metadata": {}}]});
        let text = metadata_first(&value);
        assert!(
            text.starts_with(r#"{"metadata":{"id":"x"},"id":"run_1""#),
            "{text}"
        );
        assert!(
            text.contains(r#""nested":{"metadata":null,"z":1}"#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), value);
        assert_eq!(
            event("thread.run.created", &json!({"a": 1})),
            "event: thread.run.created\ndata: {\"a\":1}\n\n"
        );
    }
}
