//! Reading a JSON body once when a rule needs it (the v1 API's `model`, the event's token cap),
//! and the checks made on it. Other bodies stream through untouched.

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::Value;

use super::errors::ProxyError;

pub async fn read_json(body: Incoming, limit: usize) -> Result<(Bytes, Value), ProxyError> {
    let bytes = read_bytes(body, limit).await?;
    let value = parse_json(&bytes)?;
    Ok((bytes, value))
}

/// The whole body, refused (413) past `limit` bytes.
pub async fn read_bytes(body: Incoming, limit: usize) -> Result<Bytes, ProxyError> {
    let bytes = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                ProxyError::new(
                    http::StatusCode::PAYLOAD_TOO_LARGE,
                    format!("Request body is larger than the {limit} bytes this proxy inspects"),
                )
            } else {
                ProxyError::bad_request("The request body could not be read")
            }
        })?
        .to_bytes();
    Ok(bytes)
}

pub fn parse_json(bytes: &[u8]) -> Result<Value, ProxyError> {
    serde_json::from_slice(bytes)
        .map_err(|_| ProxyError::bad_request("Invalid JSON in request body"))
}

/// The event's per-request token cap (0: none) against every field clients use to ask for tokens.
pub fn check_token_cap(body: &Value, cap: u32) -> Result<(), ProxyError> {
    if cap == 0 {
        return Ok(());
    }
    for field in ["max_tokens", "max_completion_tokens", "max_output_tokens"] {
        if let Some(requested) = body.get(field).and_then(Value::as_u64)
            && requested > u64::from(cap)
        {
            return Err(ProxyError::bad_request(format!(
                "{field} exceeds the event max token cap of {cap}"
            )));
        }
    }
    Ok(())
}

/// The v1 API names the deployment in the body's `model`.
pub fn model_of(body: &Value) -> Result<&str, ProxyError> {
    body.get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            ProxyError::bad_request("model: required, the name of the deployment to call")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_cap_applies_to_every_token_field() {
        let body: Value = serde_json::json!({"max_completion_tokens": 500});
        let err = check_token_cap(&body, 100).unwrap_err();
        assert_eq!(
            err.message,
            "max_completion_tokens exceeds the event max token cap of 100"
        );
        assert!(check_token_cap(&body, 0).is_ok());
        assert!(check_token_cap(&serde_json::json!({"max_tokens": 50}), 100).is_ok());
    }
}
