//! The Azure OpenAI surface of the mock: deployment operations, the v1 API (model in the body),
//! the model inference API (model in a header), and stored Responses and conversations
//! (`responses`). Literal segments match in any case, one trailing slash is tolerated.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::responses::{self, Flavor};
use super::{Hang, MockBody, MockConfig, MockRequest, MockStats, json};

/// Text the mock streams back, split into `stream_chunks` pieces.
pub const MOCK_REPLY: &str = "Hello from the mock Azure OpenAI upstream.";

pub async fn answer(
    config: &MockConfig,
    stats: &Arc<MockStats>,
    request: &MockRequest<'_>,
) -> Response<MockBody> {
    let route = request.route();
    let stored_objects = if route.starts_with(&["openai", "v1", "responses"])
        || route.starts_with(&["openai", "v1", "conversations"])
    {
        Some(route.skip(2))
    } else if route.starts_with(&["openai", "responses"]) {
        Some(route.skip(1))
    } else {
        None
    };
    if let Some(route) = stored_objects {
        let flavor = Flavor {
            reply: MOCK_REPLY,
            agents: false,
            stream_chunks: config.stream_chunks,
            stream_delay: config.stream_chunk_delay,
        };
        let mut objects = stats.openai.lock().unwrap();
        return responses::answer(&mut objects, &flavor, request, &route);
    }
    let parsed: Value = serde_json::from_slice(request.body).unwrap_or(Value::Null);
    let shape = route.shape();
    let (deployment, operation) = if route.starts_with(&["openai", "deployments"])
        && route.len() > 3
    {
        (route.seg(2).to_string(), shape[3..].join("/"))
    } else if route.starts_with(&["openai", "v1"]) && route.len() > 2 {
        let model = parsed
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        (model, shape[2..].join("/"))
    } else if let Some(op) = inference_operation(&shape) {
        // The Azure AI model inference API: the model comes in a header.
        match request
            .headers
            .get("azureml-model-deployment")
            .and_then(|v| v.to_str().ok())
        {
            Some(model) => (model.to_string(), op.to_string()),
            None => {
                return json(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": {"code": "400", "message": "missing azureml-model-deployment"}}),
                );
            }
        }
    } else {
        return not_found(request.path);
    };
    match operation.as_str() {
        "info" => json(
            StatusCode::OK,
            &json!({"model_name": deployment, "model_type": "chat-completion", "model_provider_name": "MockProvider"}),
        ),
        "images/embeddings" => json(StatusCode::OK, &embeddings(&deployment, &parsed)),
        "chat/completions" | "extensions/chat/completions" => {
            if parsed.get("stream").and_then(Value::as_bool) == Some(true) {
                let include_usage = parsed
                    .pointer("/stream_options/include_usage")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                stream_chat(config, stats, deployment, include_usage)
            } else {
                json(StatusCode::OK, &chat_completion(&deployment))
            }
        }
        "completions" => json(
            StatusCode::OK,
            &json!({
                "id": "cmpl-mock", "object": "text_completion", "created": now(), "model": deployment,
                "choices": [{"index": 0, "text": MOCK_REPLY, "finish_reason": "stop", "logprobs": null}],
                "usage": usage(),
            }),
        ),
        "embeddings" => json(StatusCode::OK, &embeddings(&deployment, &parsed)),
        other => json(
            StatusCode::OK,
            &json!({"mock": "generic", "deployment": deployment, "operation": other, "bytes_received": request.body.len()}),
        ),
    }
}

/// `chat/completions`, `embeddings`, `images/embeddings`, `info`, optionally under `models`.
fn inference_operation(shape: &[&str]) -> Option<&'static str> {
    let shape = match shape.first() {
        Some(&"models") => &shape[1..],
        _ => shape,
    };
    let op = shape.join("/");
    [
        "chat/completions",
        "embeddings",
        "images/embeddings",
        "info",
    ]
    .into_iter()
    .find(|o| *o == op)
}

fn not_found(path: &str) -> Response<MockBody> {
    json(
        StatusCode::NOT_FOUND,
        &json!({"error": {"code": "404", "message": format!("mock has no {path}")}}),
    )
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn usage() -> Value {
    json!({"prompt_tokens": 5, "completion_tokens": 8, "total_tokens": 13})
}

fn chat_completion(deployment: &str) -> Value {
    json!({
        "id": "chatcmpl-mock", "object": "chat.completion", "created": now(), "model": deployment,
        "system_fingerprint": null,
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": null,
                     "message": {"role": "assistant", "content": MOCK_REPLY}}],
        "usage": usage(),
    })
}

fn embeddings(deployment: &str, request: &Value) -> Value {
    let inputs = match request.get("input") {
        Some(Value::Array(items)) => items.len().max(1),
        _ => 1,
    };
    let data: Vec<Value> = (0..inputs)
        .map(
            |i| json!({"object": "embedding", "index": i, "embedding": [0.0125, -0.25, 0.5, 0.75]}),
        )
        .collect();
    json!({"object": "list", "data": data, "model": deployment, "usage": {"prompt_tokens": 3, "total_tokens": 3}})
}

fn chunk(deployment: &str, delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": now(), "model": deployment,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}],
    })
}

fn stream_chat(
    config: &MockConfig,
    stats: &Arc<MockStats>,
    deployment: String,
    include_usage: bool,
) -> Response<MockBody> {
    let pieces = responses::split(MOCK_REPLY, config.stream_chunks);
    let mut events: Vec<Value> = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        let delta = if i == 0 {
            json!({"role": "assistant", "content": piece})
        } else {
            json!({"content": piece})
        };
        events.push(chunk(&deployment, delta, None));
    }
    events.push(chunk(&deployment, json!({}), Some("stop")));
    if include_usage {
        events.push(json!({
            "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": now(), "model": deployment,
            "choices": [], "usage": usage(),
        }));
    }
    let delay = config.stream_chunk_delay;
    let stall = config.hang == Some(Hang::AfterFirstChunk);
    stats.streams_started.fetch_add(1, Ordering::Relaxed);
    let stats = stats.clone();
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    tokio::spawn(async move {
        for (i, event) in events.iter().enumerate() {
            if i == 1 && stall {
                // Silent but open until the reader goes away.
                stats.hung.fetch_add(1, Ordering::Relaxed);
                tx.closed().await;
                return;
            }
            if i > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let frame = Frame::data(Bytes::from(format!("data: {event}\n\n")));
            if tx.send(Ok(frame)).await.is_err() {
                return;
            }
        }
        let _ = tx
            .send(Ok(Frame::data(Bytes::from_static(b"data: [DONE]\n\n"))))
            .await;
        // Counted once the last byte has been handed to hyper.
        stats.streams_finished.fetch_add(1, Ordering::Relaxed);
    });
    let mut response = Response::new(StreamBody::new(ReceiverStream::new(rx)).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        "text/event-stream; charset=utf-8".parse().unwrap(),
    );
    headers.insert(http::header::CACHE_CONTROL, "no-cache".parse().unwrap());
    headers.insert("x-mock-upstream", "azure-openai".parse().unwrap());
    headers.insert("apim-request-id", "mock-request-id".parse().unwrap());
    response
}
