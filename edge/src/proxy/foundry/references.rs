//! Object references inside request bodies. Agents, runs, messages, vector stores and responses
//! name other objects by id (`assistant_id`, `file_ids`, `previous_response_id`, an agent by
//! name…); each must be the caller's, exactly like an id in the path. Rather than a list of JSON
//! paths that would miss the next nesting Azure adds, the whole body is walked and every field
//! with a referencing name is taken, wherever it stands. Subtrees that are the caller's own
//! free-form data (`metadata`, JSON schemas of tools and response formats) are not references.

use serde_json::Value;

use crate::ownership::ObjectKind;
use crate::proxy::errors::ProxyError;

/// A reference found in a body.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reference {
    Object(ObjectKind, String),
    /// `agent_id`: an assistant id or a named agent's name.
    AnyAgent(String),
}

/// Field names that reference objects, and what they reference. Every documented field of the
/// agents, assistants, threads, messages, runs, vector stores, conversations and Responses APIs.
const FIELDS: [(&str, Target); 12] = [
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
}

/// Every reference in `body`, sorted and without repeats.
pub fn collect(body: &Value) -> Result<Vec<Reference>, ProxyError> {
    let mut found = Vec::new();
    walk(body, 0, &mut found)?;
    found.sort();
    found.dedup();
    Ok(found)
}

fn walk(value: &Value, depth: usize, found: &mut Vec<Reference>) -> Result<(), ProxyError> {
    if depth > MAX_DEPTH {
        return Err(ProxyError::bad_request(
            "The request body is nested too deeply",
        ));
    }
    match value {
        Value::Array(items) => {
            for item in items {
                walk(item, depth + 1, found)?;
            }
        }
        Value::Object(fields) => {
            // An input item that points at a stored item by id: its owner cannot be told.
            if fields.get("type").and_then(Value::as_str) == Some("item_reference") {
                return Err(ProxyError::bad_request(
                    "Input items of type item_reference are not supported through the proxy: \
                     send the item itself, or continue with previous_response_id or conversation",
                ));
            }
            for (name, field) in fields {
                if OPAQUE.contains(&name.as_str()) {
                    continue;
                }
                match FIELDS.iter().find(|(f, _)| f == name) {
                    Some((_, target)) => take(*target, name, field, depth, found)?,
                    None => walk(field, depth + 1, found)?,
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn take(
    target: Target,
    name: &str,
    value: &Value,
    depth: usize,
    found: &mut Vec<Reference>,
) -> Result<(), ProxyError> {
    let malformed = || ProxyError::bad_request(format!("{name}: expected an id or a list of ids"));
    match (target, value) {
        (_, Value::Null) => {}
        (Target::Kind(kind), Value::String(id)) => {
            found.push(Reference::Object(kind, id.clone()));
        }
        (Target::Kind(kind), Value::Array(ids)) => {
            for id in ids {
                let id = id.as_str().ok_or_else(malformed)?;
                found.push(Reference::Object(kind, id.to_string()));
            }
        }
        (Target::AnyAgent, Value::String(id)) => found.push(Reference::AnyAgent(id.clone())),
        (Target::AgentReference, Value::String(name)) => {
            found.push(Reference::Object(ObjectKind::Agent, name.clone()));
        }
        (Target::AgentReference, Value::Object(agent)) => {
            let name = agent
                .get("name")
                .or_else(|| agent.get("id"))
                .and_then(Value::as_str)
                .ok_or_else(|| ProxyError::bad_request("agent: expected a name"))?;
            found.push(Reference::Object(ObjectKind::Agent, name.to_string()));
            walk(value, depth + 1, found)?;
        }
        (Target::ConversationReference, Value::String(id)) => {
            found.push(Reference::Object(ObjectKind::Conversation, id.clone()));
        }
        (Target::ConversationReference, Value::Object(conversation)) => {
            let id = conversation
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| ProxyError::bad_request("conversation: expected an id"))?;
            found.push(Reference::Object(ObjectKind::Conversation, id.to_string()));
        }
        _ => return Err(malformed()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refs(body: Value) -> Vec<(String, String)> {
        collect(&body)
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
    fn malformed_or_unauthorisable_references_are_refused() {
        assert!(collect(&json!({"file_ids": [1]})).is_err());
        assert!(collect(&json!({"assistant_id": {"id": "x"}})).is_err());
        assert!(collect(&json!({"input": [{"type": "item_reference", "id": "msg_1"}]})).is_err());
        let mut deep = json!("x");
        for _ in 0..100 {
            deep = json!([deep]);
        }
        assert!(collect(&deep).is_err());
    }
}
