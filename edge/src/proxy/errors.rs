//! Client-facing errors: `{"error":{"code":"<status name>","message":…,"status":<int>}}` with a
//! message a person can act on. Never includes a key or token.

use http::{HeaderValue, Response, StatusCode, header};
use serde_json::json;

use crate::body::{EdgeBody, full};

#[derive(Debug)]
pub struct ProxyError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<i64>,
    /// The request surely never reached an upstream (no connection): safe to send elsewhere.
    pub not_delivered: bool,
}

impl ProxyError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
            not_delivered: false,
        }
    }

    pub fn not_delivered(mut self) -> Self {
        self.not_delivered = true;
        self
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn with_retry_after(mut self, secs: i64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn into_response(self) -> Response<EdgeBody> {
        let retry_after = self.retry_after;
        let mut response = json_response(
            self.status,
            &json!({"error": {
                "code": self.status.canonical_reason().unwrap_or("Error"),
                "message": self.message,
                "status": self.status.as_u16(),
            }}),
        );
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}

pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<EdgeBody> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
