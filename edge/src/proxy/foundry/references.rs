//! Object references inside request bodies. Agents, runs, messages, vector stores and responses
//! name other objects by id (`assistant_id`, `file_ids`, `previous_response_id`, an agent by
//! name…); each must be the caller's, exactly like an id in the path. Rather than a list of JSON
//! paths that would miss the next nesting Azure adds, the whole body is walked and every field
//! with a referencing name is taken, wherever it stands. Subtrees that are the caller's own
//! free-form data (`metadata`, JSON schemas of tools and response formats) are not references.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::LazyLock;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::ownership::ObjectKind;
use crate::proxy::canonical::{NOT_AN_ID, is_id};
use crate::proxy::errors::ProxyError;
use crate::proxy::field_names::{self, Prefilter};

/// A reference found in a body.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reference {
    Object(ObjectKind, String),
    /// `agent_id`: an assistant id or a named agent's name.
    AnyAgent(String),
}

/// Field names that reference objects, and what they reference. Every documented field of the
/// agents, assistants, threads, messages, runs, vector stores, conversations and Responses APIs.
const FIELDS: [(&str, Target); 14] = [
    ("assistant_id", Target::Kind(ObjectKind::Assistant)),
    ("agent_id", Target::AnyAgent),
    ("agent_name", Target::Kind(ObjectKind::Agent)),
    ("agent", Target::AgentReference),
    ("thread_id", Target::Kind(ObjectKind::Thread)),
    ("file_id", Target::Kind(ObjectKind::File)),
    ("file_ids", Target::Kind(ObjectKind::File)),
    ("vector_store_id", Target::Kind(ObjectKind::VectorStore)),
    ("vector_store_ids", Target::Kind(ObjectKind::VectorStore)),
    ("previous_response_id", Target::Kind(ObjectKind::Response)),
    ("conversation_id", Target::Kind(ObjectKind::Conversation)),
    ("conversation", Target::ConversationReference),
    ("connected_agent", Target::ConnectedAgent),
    ("container", Target::Container),
];

/// Free-form subtrees: the caller's own labels and JSON schemas, never read as references.
const OPAQUE: [&str; 5] = [
    "metadata",
    "schema",
    "parameters",
    "json_schema",
    "input_schema",
];

/// Deeper than any real body; a deeper one is refused rather than walked.
const MAX_DEPTH: usize = 64;

#[derive(Clone, Copy)]
enum Target {
    Kind(ObjectKind),
    AnyAgent,
    /// `"agent": {"type": "agent_reference", "name": …}` or `"agent": "<name>"`.
    AgentReference,
    /// `"conversation": "<id>"` or `{"id": …}`.
    ConversationReference,
    /// A tool that hands the run to another agent: `{"id": <agent id>, …}`.
    ConnectedAgent,
    /// A code-interpreter container: `{"type": "auto", "file_ids": […]}`, or a container id, which
    /// the proxy does not record and so refuses.
    Container,
}

/// Every reference in the JSON `body`, sorted and without repeats. The body is walked as it is
/// parsed, without building it: only the values of referencing fields are materialised.
pub fn collect(body: &[u8]) -> Result<Vec<Reference>, ProxyError> {
    Ok(collect_at(body, 0)?.into_iter().collect())
}

/// Kept as a set while walking: a body repeating one id a million times costs one entry.
type Found = BTreeSet<Reference>;

/// Every name in [`FIELDS`] holds one of these, in any case (a test checks it).
const NEEDLES: [&str; 4] = ["_id", "agent", "conversation", "container"];

static PREFILTER: LazyLock<Prefilter> = LazyLock::new(|| Prefilter::new(&NEEDLES));

/// The referencing field `name` is in another case, as an upstream that ignores case could read
/// it: in ASCII (`Assistant_Id`), or through letters whose Unicode case mapping is ASCII (see
/// [`field_names`](crate::proxy::field_names)).
fn case_variant_of(name: &str) -> Option<&'static str> {
    let mut fields = FIELDS.iter().map(|(field, _)| *field);
    if name.is_ascii() {
        return fields.find(|field| field.eq_ignore_ascii_case(name));
    }
    let longest = FIELDS
        .iter()
        .map(|(field, _)| field.len())
        .max()
        .unwrap_or(0);
    let folded = field_names::folded(name, longest)?;
    fields.find(|field| *field == folded)
}

/// Whether `body` may hold a referencing field: false only when no name of [`FIELDS`], in any
/// case (see [`case_variant_of`]), can be among its member names, so [`collect`] would find
/// nothing and refuse nothing of the kind (hundreds of instructions where the walk costs
/// thousands). Item references (`item_reference`, an item by `id`) are not looked for: this is
/// for bodies that hold no conversation items (chat).
pub fn may_reference(body: &[u8]) -> bool {
    PREFILTER.may_hold(body)
}

fn collect_at(body: &[u8], depth: usize) -> Result<Found, ProxyError> {
    let mut found = Found::new();
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    Walker::new(&mut found, depth)
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end())
        .map_err(|e| {
            // A refusal raised inside the walk travels as the parser's custom error.
            let message = e.to_string();
            match message.strip_prefix(REFUSAL) {
                Some(refusal) => ProxyError::bad_request(
                    refusal
                        .split(" at line ")
                        .next()
                        .unwrap_or(refusal)
                        .to_string(),
                ),
                None => ProxyError::bad_request("Invalid JSON in request body"),
            }
        })?;
    Ok(found)
}

/// Marks errors of our own inside the parser's error type.
const REFUSAL: &str = "aiproxy-refusal: ";

fn refusal<E: de::Error>(error: ProxyError) -> E {
    E::custom(format!("{REFUSAL}{}", error.message))
}

/// Walks one JSON value, collecting references, without keeping anything else.
struct Walker<'a> {
    found: &'a mut Found,
    depth: usize,
    /// This value is a list of conversation items (`input`, `items`).
    items: bool,
    /// This value is one conversation item.
    item: bool,
}

impl<'a> Walker<'a> {
    fn new(found: &'a mut Found, depth: usize) -> Self {
        Self {
            found,
            depth,
            items: false,
            item: false,
        }
    }

    fn child(&mut self) -> Walker<'_> {
        Walker::new(&mut *self.found, self.depth + 1)
    }
}

impl<'de> DeserializeSeed<'de> for Walker<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        if self.depth > MAX_DEPTH {
            return Err(refusal(ProxyError::bad_request(
                "The request body is nested too deeply",
            )));
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walker<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut elements: A) -> Result<(), A::Error> {
        let items = self.items;
        while elements
            .next_element_seed(Walker {
                item: items,
                ..self.child()
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut fields: A) -> Result<(), A::Error> {
        let (mut keys, mut has_id, mut item_type) = (0usize, false, None::<Value>);
        while let Some(name) = fields.next_key::<Cow<'de, str>>()? {
            keys += 1;
            if OPAQUE.contains(&name.as_ref()) {
                fields.next_value::<IgnoredAny>()?;
            } else if name == "type" {
                let value: Value = fields.next_value()?;
                // An input item that points at a stored item by id: its owner cannot be told.
                if value.as_str() == Some("item_reference") {
                    return Err(refusal(ProxyError::bad_request(ITEM_REFERENCE)));
                }
                item_type = Some(value);
            } else if let Some((_, target)) = FIELDS.iter().find(|(f, _)| *f == name) {
                let value: Value = fields.next_value()?;
                take(*target, &name, &value, self.depth, self.found).map_err(refusal)?;
            } else if let Some(field) = case_variant_of(&name) {
                // A case-insensitive upstream would read `Assistant_Id` as `assistant_id`.
                return Err(refusal(ProxyError::bad_request(format!(
                    "field names are case-sensitive: use {field} rather than {name}"
                ))));
            } else {
                has_id |= name == "id";
                let items = matches!(name.as_ref(), "input" | "items");
                fields.next_value_seed(Walker {
                    items,
                    ..self.child()
                })?;
            }
        }
        // An item given by its id alone (`{"id": …}`, type omitted or null) is a reference too.
        let typed = item_type.is_some_and(|t| !t.is_null());
        if self.item && has_id && !typed && keys <= 2 {
            return Err(refusal(ProxyError::bad_request(ITEM_REFERENCE)));
        }
        Ok(())
    }
}

const ITEM_REFERENCE: &str = "Input items of type item_reference are not supported through the proxy: \
     send the item itself, or continue with previous_response_id or conversation";

/// The references inside a field's value that is itself a tree (an agent reference object).
fn walk(value: &Value, depth: usize, found: &mut Found) -> Result<(), ProxyError> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    found.extend(collect_at(&bytes, depth)?);
    Ok(())
}

fn take(
    target: Target,
    name: &str,
    value: &Value,
    depth: usize,
    all: &mut Found,
) -> Result<(), ProxyError> {
    let malformed = || ProxyError::bad_request(format!("{name}: expected an id or a list of ids"));
    let mut here = Found::new();
    let found = &mut here;
    match (target, value) {
        (_, Value::Null) => {}
        (Target::Kind(kind), Value::String(id)) => {
            found.insert(Reference::Object(kind, id.clone()));
        }
        (Target::Kind(kind), Value::Array(ids)) => {
            for id in ids {
                let id = id.as_str().ok_or_else(malformed)?;
                found.insert(Reference::Object(kind, id.to_string()));
            }
        }
        (Target::AnyAgent, Value::String(id)) => {
            found.insert(Reference::AnyAgent(id.clone()));
        }
        (Target::AgentReference, Value::String(name)) => {
            found.insert(Reference::Object(ObjectKind::Agent, name.clone()));
        }
        (Target::AgentReference, Value::Object(agent)) => {
            // Both `name` and `id` count: upstream may read either.
            let names: Vec<&str> = ["name", "id"]
                .iter()
                .filter_map(|k| agent.get(*k).and_then(Value::as_str))
                .collect();
            if names.is_empty() {
                return Err(ProxyError::bad_request("agent: expected a name"));
            }
            for name in names {
                found.insert(Reference::Object(ObjectKind::Agent, name.to_string()));
            }
            walk(value, depth + 1, found)?;
        }
        (Target::ConnectedAgent, Value::Object(agent)) => {
            let id = agent
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| ProxyError::bad_request("connected_agent: expected an id"))?;
            found.insert(Reference::AnyAgent(id.to_string()));
            walk(value, depth + 1, found)?;
        }
        (Target::Container, Value::Object(_)) => walk(value, depth + 1, found)?,
        (Target::Container, Value::String(_)) => {
            return Err(ProxyError::bad_request(
                "container: container ids are not supported through the proxy; use {\"type\": \"auto\"}",
            ));
        }
        (Target::ConversationReference, Value::String(id)) => {
            found.insert(Reference::Object(ObjectKind::Conversation, id.clone()));
        }
        (Target::ConversationReference, Value::Object(conversation)) => {
            let id = conversation
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| ProxyError::bad_request("conversation: expected an id"))?;
            found.insert(Reference::Object(ObjectKind::Conversation, id.to_string()));
        }
        _ => return Err(malformed()),
    }
    // Held to the path's rule: an id no path could name is nobody's object, and never goes to the
    // control plane (whose database may refuse it as text, which must not look like an outage).
    for reference in here {
        let (Reference::Object(_, id) | Reference::AnyAgent(id)) = &reference;
        if !is_id(id) {
            return Err(ProxyError::bad_request(format!("{name}: {NOT_AN_ID}")));
        }
        all.insert(reference);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refs(body: Value) -> Vec<(String, String)> {
        collect(&serde_json::to_vec(&body).unwrap())
            .unwrap()
            .into_iter()
            .map(|r| match r {
                Reference::Object(k, id) => (k.as_str().to_string(), id),
                Reference::AnyAgent(id) => ("any-agent".to_string(), id),
            })
            .collect()
    }

    #[test]
    fn finds_references_wherever_they_are_nested() {
        let body = json!({
            "assistant_id": "asst_1",
            "agent_id": "asst_2",
            "additional_messages": [{"attachments": [{"file_id": "file-1"}],
                "content": [{"type": "image_file", "image_file": {"file_id": "file-2"}}]}],
            "tool_resources": {"code_interpreter": {"file_ids": ["file-3"]},
                "file_search": {"vector_store_ids": ["vs_1"], "vector_stores": [{"file_ids": ["file-4"]}]}},
            "thread": {"messages": [{"attachments": [{"file_id": "file-5"}]}]},
            "previous_response_id": "resp_1",
            "conversation": {"id": "conv_1"},
            "agent": {"type": "agent_reference", "name": "helper"},
            "tools": [{"type": "file_search", "vector_store_ids": ["vs_2"]}],
            "input": [{"type": "input_file", "file_id": "file-6"}],
            "metadata": {"file_id": "not-a-reference"},
            "response_format": {"json_schema": {"schema": {"properties": {"file_id": {"type": "string"}}}}},
        });
        let found = refs(body);
        for expected in [
            ("assistant", "asst_1"),
            ("any-agent", "asst_2"),
            ("file", "file-1"),
            ("file", "file-2"),
            ("file", "file-3"),
            ("file", "file-4"),
            ("file", "file-5"),
            ("file", "file-6"),
            ("vector_store", "vs_1"),
            ("vector_store", "vs_2"),
            ("response", "resp_1"),
            ("conversation", "conv_1"),
            ("agent", "helper"),
        ] {
            assert!(
                found.contains(&(expected.0.to_string(), expected.1.to_string())),
                "{expected:?} in {found:?}"
            );
        }
        assert_eq!(found.len(), 13, "{found:?}");
        assert_eq!(
            refs(json!({"conversation": "conv_2"})),
            [("conversation".to_string(), "conv_2".to_string())]
        );
    }

    #[test]
    fn the_prefilter_lets_no_referencing_field_past() {
        for (name, _) in FIELDS {
            assert!(
                NEEDLES.iter().any(|n| name.contains(n)),
                "{name} holds no needle"
            );
        }
        let value = |name: &str| match name {
            "agent" | "conversation" => json!("x_1"),
            "connected_agent" => json!({"id": "asst_1"}),
            "container" => json!({"type": "auto", "file_ids": ["file-1"]}),
            _ => json!(["x_1"]),
        };
        for (name, _) in FIELDS {
            let upper = name.to_ascii_uppercase();
            let escaped = format!("\\u{:04x}{}", name.as_bytes()[0], &name[1..]);
            let mut spellings = vec![name.to_string(), upper, escaped];
            // Letters whose case mapping is ASCII, raw and escaped.
            for (ascii, other) in [
                ("i", "\u{131}"),
                ("i", "\u{130}"),
                ("s", "\u{17f}"),
                ("ss", "\u{df}"),
                ("fi", "\u{fb01}"),
            ] {
                if name.contains(ascii) {
                    let escaped: String = other
                        .chars()
                        .map(|c| format!("\\u{:04x}", c as u32))
                        .collect();
                    spellings.push(name.replacen(ascii, other, 1));
                    spellings.push(name.replacen(ascii, &escaped, 1));
                }
            }
            for spelled in spellings {
                // The name first, across the first and second windows' ends (1,024 bytes, then
                // 1,013 more: the name starts `at` + 16 bytes in), or far in.
                for at in (990..1030).chain(2000..2040).chain([0, 9000]) {
                    let tail = serde_json::to_string(&value(name)).unwrap();
                    let body = format!(
                        "{{\"messages\":\"{}\",\"{spelled}\":{tail}}}",
                        "m".repeat(at)
                    );
                    assert!(may_reference(body.as_bytes()), "{spelled} after {at} bytes");
                    // Each is a case the walk takes or refuses.
                    assert!(
                        !matches!(collect(body.as_bytes()), Ok(found) if found.is_empty()),
                        "{spelled} after {at} bytes"
                    );
                }
            }
        }
        for body in [
            json!({"messages": [{"role": "user", "content": "Say hello in three languages."}],
                   "max_tokens": 64, "stream": true}),
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": format!(
                    "data:image/png;base64,{}", "SGVsbG8gd29ybGQ".repeat(10_000))}}]}]}),
        ] {
            assert!(
                !may_reference(&serde_json::to_vec(&body).unwrap()),
                "{body}"
            );
        }
    }

    #[test]
    fn connected_agents_both_agent_keys_and_case_variants_are_references_or_refused() {
        let found = refs(json!({"tools": [{"type": "connected_agent",
            "connected_agent": {"id": "asst_a", "name": "helper", "description": "d"}}],
            "agent": {"name": "mine", "id": "theirs"}}));
        assert!(
            found.contains(&("any-agent".into(), "asst_a".into())),
            "{found:?}"
        );
        assert!(found.contains(&("agent".into(), "mine".into())));
        assert!(found.contains(&("agent".into(), "theirs".into())));
        let refused = |body: Value| {
            collect(&serde_json::to_vec(&body).unwrap())
                .unwrap_err()
                .message
        };
        assert!(refused(json!({"Assistant_Id": "asst_a"})).contains("case-sensitive"));
        for folded in [
            "f\u{131}le_id",
            "F\u{130}LE_ID",
            "a\u{df}istant_id",
            "conver\u{17f}ation",
            "\u{fb01}le_ids",
        ] {
            assert!(
                refused(json!({folded: ["file-1"]})).contains("case-sensitive"),
                "{folded}"
            );
        }
        assert_eq!(case_variant_of("\u{212a}"), None);
        assert_eq!(case_variant_of("a\u{e9}ent"), None);
        assert_eq!(case_variant_of(&"\u{131}".repeat(100_000)), None);
        assert!(
            refused(json!({"tools": [{"type": "code_interpreter", "container": "cntr_a"}]}))
                .starts_with("container")
        );
        assert!(refused(json!({"input": [{"id": "msg_a"}]})).contains("item_reference"));
        assert!(
            refused(json!({"input": [{"type": null, "id": "msg_a"}]})).contains("item_reference")
        );
        // A whole item that carries its id is not a reference.
        assert!(
            collect(
                &serde_json::to_vec(&json!({"input": [{"type": "message", "id": "msg_a",
            "role": "assistant", "content": "hi"}]}))
                .unwrap()
            )
            .is_ok()
        );
        let found = refs(json!({"tools": [{"type": "code_interpreter",
            "container": {"type": "auto", "file_ids": ["file-1"]}}]}));
        assert_eq!(found, [("file".to_string(), "file-1".to_string())]);
    }

    #[test]
    fn malformed_or_unauthorisable_references_are_refused() {
        let refused = |body: Value| {
            collect(&serde_json::to_vec(&body).unwrap())
                .unwrap_err()
                .message
        };
        assert_eq!(
            refused(json!({"file_ids": [1]})),
            "file_ids: expected an id or a list of ids"
        );
        assert!(refused(json!({"assistant_id": {"id": "x"}})).starts_with("assistant_id"));
        assert!(
            refused(json!({"input": [{"type": "item_reference", "id": "msg_1"}]}))
                .contains("item_reference")
        );
        let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(
            collect(deep.as_bytes()).unwrap_err().message,
            "The request body is nested too deeply"
        );
        assert!(collect(b"{\"a\": 1} trailing").is_err());
    }

    #[test]
    fn a_reference_no_path_could_name_is_refused_before_any_lookup() {
        let long = "a".repeat(257);
        for bad in [
            "a\u{0}b",
            "",
            " ",
            "thread_1 ",
            "../thread_1",
            "th\u{e9}",
            "a.b",
            &long,
        ] {
            for body in [
                json!({"thread_id": bad}),
                json!({"file_ids": ["file-1", bad]}),
                json!({"attachments": [{"file_id": bad}]}),
                json!({"agent_id": bad}),
                json!({"agent": {"type": "agent_reference", "name": bad}}),
                json!({"agent": bad}),
                json!({"tools": [{"type": "connected_agent", "connected_agent": {"id": bad}}]}),
                json!({"conversation": {"id": bad}}),
                json!({"previous_response_id": bad}),
            ] {
                let refused = collect(&serde_json::to_vec(&body).unwrap())
                    .expect_err(&body.to_string())
                    .message;
                assert!(refused.ends_with(NOT_AN_ID), "{body}: {refused}");
            }
        }
        assert_eq!(
            refs(json!({"thread_id": "thread_A-1", "agent_id": &"a".repeat(256)})).len(),
            2
        );
    }
}
