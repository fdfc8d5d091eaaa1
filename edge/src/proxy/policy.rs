//! Reading a JSON body once when a rule needs it (the v1 API's `model`, the event's token cap,
//! object references), and the checks made on it. Only the fields the rules need are read, into a
//! borrowed struct; every other field is skipped without being built, so inspecting a body costs
//! about its own size. A body a rule must read is JSON whatever its content type claims: a rule
//! cannot be dodged by calling it `text/plain`.

use std::borrow::Cow;
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::errors::ProxyError;
use crate::body::{EdgeBody, ReadError, read_to_bytes};

/// The whole body, refused (413) past `limit` bytes, and (408) if it does not all arrive within
/// `deadline`: a body the edge must hold whole may not trickle in for ever.
pub async fn read_body(
    body: EdgeBody,
    limit: usize,
    deadline: std::time::Duration,
) -> Result<Bytes, ProxyError> {
    let read = tokio::time::timeout(deadline, read_to_bytes(body, limit))
        .await
        .map_err(|_| {
            ProxyError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "The request body did not arrive within {} s",
                    deadline.as_secs()
                ),
            )
        })?;
    read.map_err(|e| match e {
        ReadError::TooLarge(limit) => ProxyError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body is larger than the {limit} bytes this proxy inspects"),
        ),
        ReadError::Failed(_) => ProxyError::bad_request("The request body could not be read"),
    })
}

/// The fields of a model call (or a run) the edge looks at. A field given twice, or a watched
/// name in another case (`Max_Tokens`: a case-insensitive upstream would read it), is refused, so
/// the edge and the upstream cannot read two different values.
#[derive(Debug, Default)]
pub struct ModelCall<'a> {
    pub model: Option<Cow<'a, str>>,
    pub max_tokens: Option<Value>,
    pub max_completion_tokens: Option<Value>,
    pub max_output_tokens: Option<Value>,
    /// How many answers one call generates (`n`, `best_of`).
    pub n: Option<Value>,
    pub best_of: Option<Value>,
    /// Present when a Responses call names an agent.
    pub agent: bool,
    pub store: Option<bool>,
    /// The name `POST /agents` gives the agent it creates (not a string: none).
    pub name: Option<String>,
    pub stream: Option<bool>,
    /// As sent (an object, normally), where it lies in the body.
    pub stream_options: Option<&'a RawValue>,
    /// The `max_tokens` key as written in the body (`None` if written with escapes).
    pub max_tokens_key: Option<&'a str>,
}

const WATCHED: [&str; 11] = [
    "model",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "n",
    "best_of",
    "agent",
    "store",
    "name",
    "stream",
    "stream_options",
];

impl<'de: 'a, 'a> Deserialize<'de> for ModelCall<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ModelCallVisitor(std::marker::PhantomData))
    }
}

struct ModelCallVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for ModelCallVisitor<'a> {
    type Value = ModelCall<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ModelCall<'a>, A::Error> {
        let mut call = ModelCall::default();
        let mut seen = [false; WATCHED.len()];
        while let Some(FieldName(key)) = map.next_key::<FieldName<'de>>()? {
            let Some(index) = WATCHED.iter().position(|w| w.eq_ignore_ascii_case(&key)) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if WATCHED[index] != key {
                return Err(de::Error::custom(format_args!(
                    "field names are case-sensitive: use {} rather than {key}",
                    WATCHED[index]
                )));
            }
            if std::mem::replace(&mut seen[index], true) {
                return Err(de::Error::custom(format_args!("duplicate field `{key}`")));
            }
            match WATCHED[index] {
                "model" => call.model = map.next_value()?,
                "max_tokens" => {
                    if let Cow::Borrowed(key) = key {
                        call.max_tokens_key = Some(key);
                    }
                    call.max_tokens = Some(map.next_value()?)
                }
                "max_completion_tokens" => call.max_completion_tokens = Some(map.next_value()?),
                "max_output_tokens" => call.max_output_tokens = Some(map.next_value()?),
                "n" => call.n = Some(map.next_value()?),
                "best_of" => call.best_of = Some(map.next_value()?),
                "agent" => call.agent = !map.next_value::<Value>()?.is_null(),
                "store" => call.store = map.next_value()?,
                "stream" => call.stream = map.next_value()?,
                "stream_options" => call.stream_options = Some(map.next_value()?),
                _ => {
                    call.name = match map.next_value::<Value>()? {
                        Value::String(name) => Some(name),
                        _ => None,
                    }
                }
            }
        }
        Ok(call)
    }
}

/// A key as written in the body: borrowed from it (no copy, and its place in the body is known)
/// unless it was written with escapes. (`Cow<str>` itself always deserializes owned.)
struct FieldName<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for FieldName<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Name;
        impl<'de> Visitor<'de> for Name {
            type Value = FieldName<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(FieldName(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(FieldName(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(Name)
    }
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
            let message = e.to_string();
            let message = message.split(" at line ").next().unwrap_or(&message);
            ProxyError::bad_request(format!("Invalid request body: {message}"))
        } else {
            ProxyError::bad_request("Invalid JSON in request body")
        }
    })
}

/// The output-token limit of one API: the field the cap is sent in when the caller named none,
/// and every field that API reads as its limit.
#[derive(Debug, Clone, Copy)]
pub struct CapField {
    pub insert: &'static str,
    pub honoured: &'static [&'static str],
}

impl CapField {
    /// Azure OpenAI chat from API version 2024-09-01, and the v1 API.
    pub const CHAT: CapField = CapField {
        insert: "max_completion_tokens",
        honoured: &["max_completion_tokens", "max_tokens"],
    };
    /// Azure OpenAI chat before 2024-09-01, completions, and the model inference API.
    pub const MAX_TOKENS: CapField = CapField {
        insert: "max_tokens",
        honoured: &["max_tokens"],
    };
    /// The Responses API.
    pub const RESPONSES: CapField = CapField {
        insert: "max_output_tokens",
        honoured: &["max_output_tokens"],
    };
    /// Agent runs.
    pub const RUNS: CapField = CapField {
        insert: "max_completion_tokens",
        honoured: &["max_completion_tokens"],
    };
}

/// The event's per-request token cap (0: none) against every field clients use to ask for tokens,
/// times the answers one call generates (`n`, `best_of`): a value above the cap is refused, a
/// value that is not a whole number is refused, and a call whose API-read limit is missing gets
/// the cap (divided by `n`) as its limit, so no call runs uncapped. Returns the body to send.
pub fn apply_token_cap(
    bytes: Bytes,
    call: &ModelCall<'_>,
    cap: u32,
    limit: Option<CapField>,
) -> Result<Bytes, ProxyError> {
    Ok(match cap_limit(call, cap, limit)? {
        Some((field, value)) => append_field(&bytes, field, &value.to_string()),
        None => bytes,
    })
}

/// The limit the token cap adds to a call (field and value), if it adds one.
fn cap_limit(
    call: &ModelCall<'_>,
    cap: u32,
    limit: Option<CapField>,
) -> Result<Option<(&'static str, u64)>, ProxyError> {
    if cap == 0 {
        return Ok(None);
    }
    let whole = |field: &str, value: &Value| {
        value
            .as_u64()
            .ok_or_else(|| ProxyError::bad_request(format!("{field} must be a whole number")))
    };
    let mut answers = 1u64;
    for (field, value) in [("n", &call.n), ("best_of", &call.best_of)] {
        if let Some(value) = value {
            answers = answers.max(whole(field, value)?.max(1));
        }
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
        let requested = whole(field, value).map_err(|_| {
            ProxyError::bad_request(format!("{field} must be a whole number of tokens"))
        })?;
        if requested.saturating_mul(answers) > u64::from(cap) {
            return Err(ProxyError::bad_request(if answers > 1 {
                format!("{field} times n exceeds the event max token cap of {cap}")
            } else {
                format!("{field} exceeds the event max token cap of {cap}")
            }));
        }
        asked |= limit.is_some_and(|l| l.honoured.contains(&field));
    }
    match limit {
        Some(limit) if !asked => {
            let each = u64::from(cap) / answers;
            if each == 0 {
                return Err(ProxyError::bad_request(format!(
                    "n exceeds the event max token cap of {cap}"
                )));
            }
            Ok(Some((limit.insert, each)))
        }
        _ => Ok(None),
    }
}

/// How a model call's body is prepared for the upstream that will take it.
#[derive(Debug, Clone, Copy)]
pub struct Prepare {
    /// The event's per-call token cap (0: none), and where the API reads its limit.
    pub cap: u32,
    pub limit: Option<CapField>,
    /// The resource wants `max_completion_tokens` (reasoning models refuse `max_tokens`).
    pub rename_max_tokens: bool,
    /// A chat/completions call: a stream gets `stream_options.include_usage` so its usage is
    /// reported.
    pub stream_usage: bool,
}

/// The body to send, and whether the edge asked for the usage chunk the client did not.
pub fn prepare(
    bytes: &Bytes,
    call: &ModelCall<'_>,
    how: Prepare,
) -> Result<(Bytes, bool), ProxyError> {
    let mut edits: Vec<(Range<usize>, Cow<'static, str>)> = Vec::new();
    let mut appended: Vec<(&str, String)> = Vec::new();
    let mut limit = how.limit;
    if how.rename_max_tokens && call.max_tokens.is_some() && call.max_completion_tokens.is_none() {
        let key = call.max_tokens_key.ok_or_else(|| {
            ProxyError::bad_request("max_tokens: write the field name without escapes")
        })?;
        edits.push((span_in(bytes, key), Cow::Borrowed("max_completion_tokens")));
        limit = limit.map(|_| CapField::CHAT);
    }
    if let Some((field, value)) = cap_limit(call, how.cap, limit)? {
        appended.push((field, value.to_string()));
    }
    let mut usage_added = false;
    if how.stream_usage && call.stream == Some(true) {
        const ASKED: &str = r#"{"include_usage":true}"#;
        match call.stream_options {
            None => {
                appended.push(("stream_options", ASKED.to_string()));
                usage_added = true;
            }
            Some(raw) => {
                // Rewritten whole, so the upstream reads one unambiguous `include_usage: true`
                // whatever the client sent (a duplicate, another case, null).
                let mut options = match serde_json::from_str::<Value>(raw.get()) {
                    Ok(Value::Object(options)) => options,
                    _ => serde_json::Map::new(),
                };
                let asked = options.get("include_usage") == Some(&Value::Bool(true))
                    && options
                        .keys()
                        .filter(|k| k.eq_ignore_ascii_case("include_usage"))
                        .count()
                        == 1;
                options.retain(|k, _| !k.eq_ignore_ascii_case("include_usage"));
                options.insert("include_usage".into(), Value::Bool(true));
                let text = Value::Object(options).to_string();
                edits.push((span_in(bytes, raw.get()), Cow::Owned(text)));
                usage_added = !asked;
            }
        }
    }
    if edits.is_empty() && appended.is_empty() {
        return Ok((bytes.clone(), false));
    }
    edits.sort_by_key(|(range, _)| range.start);
    let mut out = BytesMut::with_capacity(bytes.len() + 64);
    let mut at = 0;
    for (range, text) in &edits {
        out.extend_from_slice(&bytes[at..range.start]);
        out.extend_from_slice(text.as_bytes());
        at = range.end;
    }
    out.extend_from_slice(&bytes[at..]);
    let mut out = out.freeze();
    for (field, value) in appended {
        out = append_field(&out, field, &value);
    }
    Ok((out, usage_added))
}

/// Where `part` (a slice of `whole`, as the borrowing parser hands them out) lies in `whole`.
fn span_in(whole: &[u8], part: &str) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
    let start = start.min(whole.len());
    start..(start + part.len()).min(whole.len())
}

/// `{…,"field":value}` from `{…}` (the body was checked to be an object). Appended last, so an
/// upstream that keeps the last of two values keeps the edge's.
fn append_field(bytes: &[u8], field: &str, value: &str) -> Bytes {
    let close = bytes
        .iter()
        .rposition(|b| *b == b'}')
        .unwrap_or(bytes.len());
    let head = &bytes[..close];
    let empty = head.iter().rev().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let mut out = BytesMut::with_capacity(bytes.len() + field.len() + 24);
    out.extend_from_slice(head);
    if !empty {
        out.extend_from_slice(b",");
    }
    out.extend_from_slice(format!("\"{field}\":{value}").as_bytes());
    out.extend_from_slice(&bytes[close..]);
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
        assert!(capped(r#"{"max_tokens": 50}"#, 100, Some(CapField::MAX_TOKENS)).is_ok());
    }

    #[test]
    fn a_call_without_a_limit_gets_the_cap_and_odd_values_are_refused() {
        let sent = capped(
            r#"{"model":"gpt","messages":[]}"#,
            100,
            Some(CapField::CHAT),
        )
        .unwrap();
        let value: Value = serde_json::from_str(&sent).unwrap();
        assert_eq!(value["max_completion_tokens"], 100);
        assert_eq!(value["model"], "gpt");
        let sent = capped(" { } ", 7, Some(CapField::RESPONSES)).unwrap();
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
                capped(odd, 100, Some(CapField::MAX_TOKENS)).unwrap_err(),
                "max_tokens must be a whole number of tokens",
                "{odd}"
            );
        }
    }

    #[test]
    fn a_limit_the_api_does_not_read_gets_the_cap_beside_it_and_n_multiplies() {
        // The inference API reads max_tokens only: max_completion_tokens alone leaves it uncapped.
        let sent = capped(
            r#"{"max_completion_tokens": 1}"#,
            100,
            Some(CapField::MAX_TOKENS),
        )
        .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&sent).unwrap()["max_tokens"],
            100
        );
        // Appended last: an upstream keeping the last of two values keeps the cap.
        assert!(sent.trim_end().ends_with(r#""max_tokens":100}"#), "{sent}");
        assert_eq!(
            capped(
                r#"{"n": 4, "max_tokens": 50}"#,
                100,
                Some(CapField::MAX_TOKENS)
            )
            .unwrap_err(),
            "max_tokens times n exceeds the event max token cap of 100"
        );
        let sent = capped(r#"{"n": 4}"#, 100, Some(CapField::MAX_TOKENS)).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&sent).unwrap()["max_tokens"],
            25
        );
        assert!(capped(r#"{"n": 1000}"#, 100, Some(CapField::MAX_TOKENS)).is_err());
        assert!(capped(r#"{"Max_Tokens": 100000}"#, 100, Some(CapField::MAX_TOKENS)).is_err());
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

    fn prepared(body: &str, how: Prepare) -> Result<(Value, bool), String> {
        let bytes = Bytes::from(body.to_string());
        let call = inspect(&bytes).map_err(|e| e.message)?;
        prepare(&bytes, &call, how)
            .map(|(sent, added)| (serde_json::from_slice(&sent).unwrap(), added))
            .map_err(|e| e.message)
    }

    const PLAIN: Prepare = Prepare {
        cap: 0,
        limit: Some(CapField::CHAT),
        rename_max_tokens: false,
        stream_usage: true,
    };

    #[test]
    fn a_stream_is_asked_for_its_usage_whatever_the_client_sent() {
        // Not asked: added, and the client's stream must lose the usage chunk.
        let (sent, added) = prepared(r#"{"stream":true,"messages":[]}"#, PLAIN).unwrap();
        assert_eq!(
            sent["stream_options"],
            serde_json::json!({"include_usage": true})
        );
        assert!(added);
        // Asked: kept (rewritten canonically), the client keeps the chunk.
        let (sent, added) = prepared(
            r#"{"stream":true,"stream_options":{"include_usage":true,"x":1}}"#,
            PLAIN,
        )
        .unwrap();
        assert_eq!(
            sent["stream_options"],
            serde_json::json!({"include_usage": true, "x": 1})
        );
        assert!(!added);
        // Refused, ambiguous or odd: the upstream still reports usage.
        for odd in [
            r#"{"stream":true,"stream_options":{"include_usage":false}}"#,
            r#"{"stream":true,"stream_options":null}"#,
            r#"{"stream":true,"stream_options":{"Include_Usage":true}}"#,
            r#"{"stream":true,"stream_options":{"include_usage":true,"include_usage":false}}"#,
        ] {
            let (sent, added) = prepared(odd, PLAIN).unwrap();
            assert_eq!(sent["stream_options"]["include_usage"], true, "{odd}");
            assert_eq!(
                sent["stream_options"].as_object().unwrap().len(),
                1,
                "{odd}"
            );
            assert!(added, "{odd}");
        }
        // No stream, or not a chat call: untouched.
        let (sent, added) = prepared(r#"{"stream":false}"#, PLAIN).unwrap();
        assert!(sent.get("stream_options").is_none() && !added);
        let off = Prepare {
            stream_usage: false,
            ..PLAIN
        };
        assert!(
            prepared(r#"{"stream":true}"#, off)
                .unwrap()
                .0
                .get("stream_options")
                .is_none()
        );
        assert!(prepared(r#"{"stream":true,"Stream":false}"#, PLAIN).is_err());
    }

    #[test]
    fn max_tokens_is_renamed_for_reasoning_models_and_still_capped() {
        let rename = Prepare {
            rename_max_tokens: true,
            cap: 100,
            ..PLAIN
        };
        let (sent, _) = prepared(r#"{"messages":[],"max_tokens":50}"#, rename).unwrap();
        assert_eq!(sent["max_completion_tokens"], 50);
        assert!(sent.get("max_tokens").is_none());
        assert!(prepared(r#"{"max_tokens":500}"#, rename).is_err());
        // Both given: left as sent (the upstream decides), both capped.
        let (sent, _) = prepared(r#"{"max_tokens":5,"max_completion_tokens":6}"#, rename).unwrap();
        assert_eq!(
            (
                sent["max_tokens"].as_u64(),
                sent["max_completion_tokens"].as_u64()
            ),
            (Some(5), Some(6))
        );
        // Renamed, asked for usage and capped in one pass.
        let (sent, added) = prepared(
            r#"{"stream":true,"stream_options":{},"max_tokens":7}"#,
            Prepare {
                limit: Some(CapField::MAX_TOKENS),
                ..rename
            },
        )
        .unwrap();
        assert_eq!(sent["max_completion_tokens"], 7);
        assert_eq!(sent["stream_options"]["include_usage"], true);
        assert!(added && sent.get("max_tokens").is_none());
        // An escaped key cannot be renamed in place: refused rather than sent unrenamed.
        assert!(prepared(r#"{"max\u005ftokens":5}"#, rename).is_err());
    }

    proptest! {
        /// Whatever the bytes, inspection answers (never panics), and a capped body that passes
        /// is still JSON and asks for at most the cap.
        #[test]
        fn inspection_never_panics_and_the_cap_holds(body in "\\PC{0,64}", cap in 1u32..1000) {
            let bytes = Bytes::from(body);
            if let Ok(call) = inspect(&bytes)
                && let Ok(sent) = apply_token_cap(bytes.clone(), &call, cap, Some(CapField::MAX_TOKENS))
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
