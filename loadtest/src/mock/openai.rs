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
use super::store::{new_id, now};
use super::usage::Drawn;
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
        return responses::answer(&mut objects, &flavor, request, &route, &stats.usage);
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
    let meter = &stats.usage;
    let streamed = parsed.get("stream").and_then(Value::as_bool) == Some(true);
    let include_usage = parsed
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let kind = match operation.as_str() {
        "chat/completions" | "extensions/chat/completions" => Kind::Chat,
        "completions" => Kind::Completions,
        "embeddings" | "images/embeddings" => {
            let drawn = Drawn {
                completion: 0,
                cached: 0,
                reasoning: 0,
                ..meter.draw(request.body.len())
            };
            meter.record(&deployment, &drawn);
            return json(StatusCode::OK, &embeddings(&deployment, &parsed, &drawn));
        }
        "info" => {
            return json(
                StatusCode::OK,
                &json!({"model_name": deployment, "model_type": "chat-completion", "model_provider_name": "MockProvider"}),
            );
        }
        other => {
            return json(
                StatusCode::OK,
                &json!({"mock": "generic", "deployment": deployment, "operation": other, "bytes_received": request.body.len()}),
            );
        }
    };
    let drawn = match kind {
        // Legacy completions report the three counts only: no details to count.
        Kind::Completions => Drawn {
            cached: 0,
            reasoning: 0,
            ..meter.draw(request.body.len())
        },
        _ => meter.draw(request.body.len()),
    };
    if streamed {
        return stream_completion(config, stats, kind, deployment, include_usage, drawn);
    }
    meter.record(&deployment, &drawn);
    let answer = match kind {
        Kind::Chat => json!({
            "id": new_id("chatcmpl-"), "object": "chat.completion", "created": now(), "model": deployment,
            "system_fingerprint": null,
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": null,
                         "message": {"role": "assistant", "content": MOCK_REPLY}}],
            "usage": drawn.chat(),
        }),
        Kind::Completions => json!({
            "id": new_id("cmpl-"), "object": "text_completion", "created": now(), "model": deployment,
            "choices": [{"index": 0, "text": MOCK_REPLY, "finish_reason": "stop", "logprobs": null}],
            "usage": drawn.plain(),
        }),
    };
    json(StatusCode::OK, &answer)
}

/// The two APIs that stream chunks of a completion.
#[derive(Clone, Copy)]
enum Kind {
    Chat,
    Completions,
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

fn embeddings(deployment: &str, request: &Value, drawn: &Drawn) -> Value {
    let inputs = match request.get("input") {
        Some(Value::Array(items)) => items.len().max(1),
        _ => 1,
    };
    let data: Vec<Value> = (0..inputs)
        .map(
            |i| json!({"object": "embedding", "index": i, "embedding": [0.0125, -0.25, 0.5, 0.75]}),
        )
        .collect();
    json!({"object": "list", "data": data, "model": deployment, "usage": drawn.embeddings()})
}

/// Azure's first chunk: the prompt's content filter results, no choices.
fn prompt_filter_chunk() -> Value {
    let safe = json!({"filtered": false, "severity": "safe"});
    json!({
        "choices": [], "created": 0, "id": "", "model": "", "object": "",
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {
            "hate": safe, "self_harm": safe, "sexual": safe, "violence": safe}}],
    })
}

/// A streamed chat completion or completion, as Azure OpenAI sends it: the prompt filter chunk,
/// the content, the finish chunk, the chunk delay apart; with `include_usage`, `"usage": null` on
/// each of them and, right after the finish chunk, a last chunk with no choices and the usage
/// (counted once it has been handed over); then `data: [DONE]`.
fn stream_completion(
    config: &MockConfig,
    stats: &Arc<MockStats>,
    kind: Kind,
    deployment: String,
    include_usage: bool,
    drawn: Drawn,
) -> Response<MockBody> {
    let (id, object) = match kind {
        Kind::Chat => (new_id("chatcmpl-"), "chat.completion.chunk"),
        Kind::Completions => (new_id("cmpl-"), "text_completion"),
    };
    let created = now();
    let chunk = |choice: Value| {
        let mut chunk = json!({"id": id, "object": object, "created": created, "model": deployment,
                               "choices": [choice]});
        if let Kind::Chat = kind {
            chunk["system_fingerprint"] = json!("fp_mock");
        }
        chunk
    };
    let pieces = responses::split(MOCK_REPLY, config.stream_chunks);
    let mut events: Vec<Value> = vec![prompt_filter_chunk()];
    for (i, piece) in pieces.iter().enumerate() {
        events.push(chunk(match kind {
            Kind::Chat if i == 0 => json!({"index": 0, "finish_reason": null, "logprobs": null,
                                           "delta": {"role": "assistant", "content": piece}}),
            Kind::Chat => json!({"index": 0, "finish_reason": null, "logprobs": null,
                                 "delta": {"content": piece}}),
            Kind::Completions => json!({"index": 0, "finish_reason": null, "logprobs": null,
                                        "text": piece}),
        }));
    }
    events.push(chunk(match kind {
        Kind::Chat => json!({"index": 0, "finish_reason": "stop", "logprobs": null, "delta": {}}),
        Kind::Completions => {
            json!({"index": 0, "finish_reason": "stop", "logprobs": null, "text": ""})
        }
    }));
    // Events that are generated, each after the chunk delay; the usage chunk is not: Azure sends
    // it as soon as the finish chunk, the generation being over.
    let generated = events.len();
    if include_usage {
        for event in &mut events {
            event["usage"] = Value::Null;
        }
        let mut last = chunk(Value::Null);
        last["choices"] = json!([]);
        last["usage"] = match kind {
            Kind::Chat => drawn.chat(),
            Kind::Completions => drawn.plain(),
        };
        events.push(last);
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
            if i > 0 && i < generated && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let frame = Frame::data(Bytes::from(format!("data: {event}\n\n")));
            if tx.send(Ok(frame)).await.is_err() {
                return;
            }
        }
        if include_usage {
            stats.usage.record(&deployment, &drawn);
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
