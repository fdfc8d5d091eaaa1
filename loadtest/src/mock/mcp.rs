//! A small MCP server (streamable HTTP) in the mock: `initialize` opens a session (`Mcp-Session-Id`),
//! later calls must carry it; `tools/call` answers as SSE when the client accepts it; `GET` opens an
//! SSE stream; `DELETE` ends the session.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};

use super::{MockBody, MockRequest, json};

pub const SESSION: &str = "mock-mcp-session-1";

fn sse(events: Vec<String>) -> Response<MockBody> {
    let frames = events
        .into_iter()
        .map(|e| Ok::<_, Infallible>(Frame::data(Bytes::from(e))));
    let mut response =
        Response::new(StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        "text/event-stream".parse().unwrap(),
    );
    response
        .headers_mut()
        .insert("mcp-session-id", SESSION.parse().unwrap());
    response
}

pub fn answer(request: &MockRequest) -> Response<MockBody> {
    let (headers, body) = (request.headers, request.body);
    let session_ok = headers.get("mcp-session-id").and_then(|v| v.to_str().ok()) == Some(SESSION);
    let accepts_sse = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    match *request.method {
        Method::GET if session_ok && accepts_sse => {
            return sse(vec![
                "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"hello\"}}\n\n".into(),
            ]);
        }
        Method::DELETE if session_ok => return json(StatusCode::OK, &json!({})),
        Method::GET | Method::DELETE => {
            return json(
                StatusCode::BAD_REQUEST,
                &json!({"error": "missing or unknown Mcp-Session-Id"}),
            );
        }
        _ => {}
    }
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let method = request.get("method").and_then(Value::as_str).unwrap_or("");
    if method == "initialize" {
        let mut response = json(
            StatusCode::OK,
            &json!({"jsonrpc": "2.0", "id": id, "result": {
                "protocolVersion": "2025-06-18",
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "mock-mcp", "version": "1.0.0"},
            }}),
        );
        response
            .headers_mut()
            .insert("mcp-session-id", SESSION.parse().unwrap());
        return response;
    }
    if !session_ok {
        return json(
            StatusCode::BAD_REQUEST,
            &json!({"error": "missing or unknown Mcp-Session-Id"}),
        );
    }
    let result = match method {
        "tools/list" => {
            json!({"tools": [{"name": "echo", "description": "Echoes its input", "inputSchema": {"type": "object"}}]})
        }
        "tools/call" => {
            json!({"content": [{"type": "text", "text": request.pointer("/params/arguments/text").cloned().unwrap_or(Value::Null)}]})
        }
        _ => json!({}),
    };
    let message = json!({"jsonrpc": "2.0", "id": id, "result": result});
    if accepts_sse && method == "tools/call" {
        sse(vec![format!("event: message\ndata: {message}\n\n")])
    } else {
        json(StatusCode::OK, &message)
    }
}
