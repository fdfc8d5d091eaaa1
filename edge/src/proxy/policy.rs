//! Reading a JSON body once when a rule needs it (the v1 API's `model`, the event's token cap,
//! object references), and the checks made on it. Only the fields the rules need are read, into a
//! borrowed struct; every other field is skipped without being built, so inspecting a body costs
//! about its own size. A body a rule must read is JSON whatever its content type claims: a rule
//! cannot be dodged by calling it `text/plain`.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

use super::errors::ProxyError;
use crate::body::{EdgeBody, ReadError, read_to_bytes};

/// The whole body, refused (413) past `limit` bytes.
pub async fn read_body(body: EdgeBody, limit: usize) -> Result<Bytes, ProxyError> {
    read_to_bytes(body, limit).await.map_err(|e| match e {
        ReadError::TooLarge(limit) => ProxyError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body is larger than the {limit} bytes this proxy inspects"),
        ),
        ReadError::Failed(_) => ProxyError::bad_request("The request body could not be read"),
    })
}

/// The fields of a model call (or a run) the edge looks at. Duplicate fields are refused by the
/// parser, so the edge and the upstream cannot read two different values.
#[derive(Debug, Default, Deserialize)]
pub struct ModelCall<'a> {
    #[serde(borrow, default)]
    pub model: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "present")]
    pub max_tokens: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub max_completion_tokens: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub max_output_tokens: Option<Value>,
    /// Present when a Responses call names an agent.
    #[serde(default)]
    pub agent: Option<IgnoredAny>,
    #[serde(default)]
    pub store: Option<bool>,
    /// The name `POST /agents` gives the agent it creates (other APIs' `name`s that are not
    /// strings are not refused here).
    #[serde(default, deserialize_with = "string_or_none")]
    pub name: Option<String>,
}

/// A field that is there, even as `null` (which `Option` alone would read as absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

fn string_or_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        _ => None,
    })
}

/// Parses the fields rules need; the body must be one JSON object.
pub fn inspect(bytes: &[u8]) -> Result<ModelCall<'_>, ProxyError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ProxyError::bad_request(
            "Invalid JSON in request body: expected a JSON object",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        if e.is_data() {
            ProxyError::bad_request(format!("Invalid request body: {e}"))
        } else {
            ProxyError::bad_request("Invalid JSON in request body")
        }
    })
}

/// The field the token cap is sent in when the caller named none.
pub type CapField = &'static str;

/// The event's per-request token cap (0: none) against every field clients use to ask for tokens:
/// a value above the cap is refused, a value that is not a whole number is refused, and a call that
/// asks for nothing gets the cap as its limit (in `absent_field`), so no call runs uncapped.
/// Returns the body to send (the same bytes, or with the cap added).
pub fn apply_token_cap(
    bytes: Bytes,
    call: &ModelCall<'_>,
    cap: u32,
    absent_field: Option<CapField>,
) -> Result<Bytes, ProxyError> {
    if cap == 0 {
        return Ok(bytes);
    }
    let fields = [
        ("max_tokens", &call.max_tokens),
        ("max_completion_tokens", &call.max_completion_tokens),
        ("max_output_tokens", &call.max_output_tokens),
    ];
    let mut asked = false;
    for (field, value) in fields {
        // `null` is refused too: with the cap added beside it, the upstream could read either.
        let Some(value) = value.as_ref() else {
            continue;
        };
        let requested = value.as_u64().ok_or_else(|| {
            ProxyError::bad_request(format!("{field} must be a whole number of tokens"))
        })?;
        if requested > u64::from(cap) {
            return Err(ProxyError::bad_request(format!(
                "{field} exceeds the event max token cap of {cap}"
            )));
        }
        asked = true;
    }
    match absent_field {
        Some(field) if !asked => Ok(insert_field(&bytes, field, cap)),
        _ => Ok(bytes),
    }
}

/// `{"field":value,…}` from `{…}` (the body was checked to be an object).
fn insert_field(bytes: &[u8], field: &str, value: u32) -> Bytes {
    let open = bytes.iter().position(|b| *b == b'{').unwrap_or(0);
    let rest = &bytes[open + 1..];
    let empty = rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
    let mut out = BytesMut::with_capacity(bytes.len() + field.len() + 16);
    out.extend_from_slice(&bytes[..=open]);
    out.extend_from_slice(format!("\"{field}\":{value}").as_bytes());
    if !empty {
        out.extend_from_slice(b",");
    }
    out.extend_from_slice(rest);
    out.freeze()
}

/// The v1 API names the deployment in the body's `model`.
pub fn model_of<'a>(call: &'a ModelCall<'_>) -> Result<&'a str, ProxyError> {
    call.model
        .as_deref()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            ProxyError::bad_request("model: required, the name of the deployment to call")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn capped(body: &str, cap: u32, field: Option<CapField>) -> Result<String, String> {
        let bytes = Bytes::from(body.to_string());
        let call = inspect(&bytes).map_err(|e| e.message)?;
        apply_token_cap(bytes.clone(), &call, cap, field)
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .map_err(|e| e.message)
    }

    #[test]
    fn token_cap_applies_to_every_token_field() {
        assert_eq!(
            capped(r#"{"max_completion_tokens": 500}"#, 100, None).unwrap_err(),
            "max_completion_tokens exceeds the event max token cap of 100"
        );
        assert!(capped(r#"{"max_completion_tokens": 500}"#, 0, None).is_ok());
        assert!(capped(r#"{"max_tokens": 50}"#, 100, Some("max_tokens")).is_ok());
    }

    #[test]
    fn a_call_without_a_limit_gets_the_cap_and_odd_values_are_refused() {
        let sent = capped(
            r#"{"model":"gpt","messages":[]}"#,
            100,
            Some("max_completion_tokens"),
        )
        .unwrap();
        let value: Value = serde_json::from_str(&sent).unwrap();
        assert_eq!(value["max_completion_tokens"], 100);
        assert_eq!(value["model"], "gpt");
        let sent = capped(" { } ", 7, Some("max_output_tokens")).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&sent).unwrap()["max_output_tokens"],
            7
        );
        for odd in [
            r#"{"max_tokens": 1.5}"#,
            r#"{"max_tokens": "50"}"#,
            r#"{"max_tokens": -1}"#,
            r#"{"max_tokens": null}"#,
        ] {
            assert_eq!(
                capped(odd, 100, Some("max_tokens")).unwrap_err(),
                "max_tokens must be a whole number of tokens",
                "{odd}"
            );
        }
    }

    #[test]
    fn bodies_must_be_one_unambiguous_object() {
        assert!(inspect(br#"["gpt"]"#).is_err());
        assert!(inspect(br#"{"max_tokens": 1, "max_tokens": 100000}"#).is_err());
        assert!(inspect(br#"{"model": "a", "model": "b"}"#).is_err());
        assert!(inspect(b"{").is_err());
        assert_eq!(
            inspect(br#"{"model":"gpt","x":[1,{"y":2}]}"#)
                .unwrap()
                .model
                .unwrap(),
            "gpt"
        );
    }

    proptest! {
        /// Whatever the bytes, inspection answers (never panics), and a capped body that passes
        /// is still JSON and asks for at most the cap.
        #[test]
        fn inspection_never_panics_and_the_cap_holds(body in "\\PC{0,64}", cap in 1u32..1000) {
            let bytes = Bytes::from(body);
            if let Ok(call) = inspect(&bytes)
                && let Ok(sent) = apply_token_cap(bytes.clone(), &call, cap, Some("max_tokens"))
            {
                let value: Value = serde_json::from_slice(&sent).unwrap();
                let asked = ["max_tokens", "max_completion_tokens", "max_output_tokens"]
                    .iter()
                    .filter_map(|f| value.get(*f).and_then(Value::as_u64))
                    .max();
                prop_assert!(asked.is_some_and(|n| n <= u64::from(cap)));
            }
        }
    }
}
