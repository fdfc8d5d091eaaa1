//! The mock's object store: JSON objects in named collections (`assistants`,
//! `threads/{id}/messages`…), in creation order, with Azure-shaped random ids and OpenAI-style
//! cursor lists (`limit`, `order` — newest first by default —, `after`, `before`, `first_id`,
//! `last_id`, `has_more`). Lists are never filtered by caller: upstream Azure does not know
//! attendees, so an unfiltered list the proxy passes on shows everyone's objects.

use serde_json::{Map, Value, json};

use super::path::query_param;

/// An id with Azure's shape: `prefix` and 24 random alphanumerics, so ids never collide across
/// tests or mocks.
pub fn new_id(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut id = String::with_capacity(prefix.len() + 24);
    id.push_str(prefix);
    for _ in 0..2 {
        // 12 base-62 digits use 72 of a v4 uuid's 122 random bits.
        let mut random = uuid::Uuid::new_v4().as_u128();
        for _ in 0..12 {
            id.push(ALPHABET[(random % ALPHABET.len() as u128) as usize] as char);
            random /= ALPHABET.len() as u128;
        }
    }
    id
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

struct Entry {
    collection: String,
    value: Value,
}

/// Objects in creation order.
#[derive(Default)]
pub struct Store {
    entries: Vec<Entry>,
}

/// Why a list request was refused.
#[derive(Debug, PartialEq)]
pub struct BadCursor(pub String);

impl Store {
    /// Stores a new object with a fresh `prefix…` id, `object` and `created_at`.
    pub fn create(
        &mut self,
        collection: &str,
        prefix: &str,
        object: &str,
        fields: Map<String, Value>,
    ) -> Value {
        self.insert(collection, &new_id(prefix), object, fields)
    }

    /// Stores a new object under a given id (agents are named by their callers).
    pub fn insert(
        &mut self,
        collection: &str,
        id: &str,
        object: &str,
        mut fields: Map<String, Value>,
    ) -> Value {
        fields.insert("id".into(), json!(id));
        fields.insert("object".into(), json!(object));
        fields.entry("created_at").or_insert_with(|| json!(now()));
        let value = Value::Object(fields);
        self.entries.push(Entry {
            collection: collection.to_string(),
            value: value.clone(),
        });
        value
    }

    pub fn get(&self, collection: &str, id: &str) -> Option<&Value> {
        self.position(collection, id)
            .map(|i| &self.entries[i].value)
    }

    pub fn get_mut(&mut self, collection: &str, id: &str) -> Option<&mut Value> {
        self.position(collection, id)
            .map(|i| &mut self.entries[i].value)
    }

    pub fn contains(&self, collection: &str, id: &str) -> bool {
        self.position(collection, id).is_some()
    }

    /// Removes the object and every collection below it (`{collection}/{id}/…`).
    pub fn remove(&mut self, collection: &str, id: &str) -> Option<Value> {
        let position = self.position(collection, id)?;
        let removed = self.entries.remove(position).value;
        let below = format!("{collection}/{id}/");
        self.entries.retain(|e| !e.collection.starts_with(&below));
        Some(removed)
    }

    /// The collection's objects in creation order.
    pub fn all(&self, collection: &str) -> impl Iterator<Item = &Value> + use<'_> {
        let collection = collection.to_string();
        self.entries
            .iter()
            .filter(move |e| e.collection == collection)
            .map(|e| &e.value)
    }

    fn position(&self, collection: &str, id: &str) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.collection == collection && e.value["id"] == id)
    }

    /// One page of the collection's objects that pass `keep`, as the OpenAI list APIs answer.
    pub fn list(
        &self,
        collection: &str,
        query: &str,
        keep: impl Fn(&Value) -> bool,
    ) -> Result<Value, BadCursor> {
        let values: Vec<&Value> = self.all(collection).filter(|v| keep(v)).collect();
        list_page(&values, query)
    }
}

/// A page of `values` (given in creation order) for `limit`, `order`, `after` and `before`.
pub fn list_page(values: &[&Value], query: &str) -> Result<Value, BadCursor> {
    let limit = query_param(query, "limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, 100);
    let mut ordered: Vec<&Value> = values.to_vec();
    if query_param(query, "order") != Some("asc") {
        ordered.reverse();
    }
    let find = |cursor: &str| {
        ordered
            .iter()
            .position(|v| v["id"] == cursor)
            .ok_or_else(|| BadCursor(format!("No object found with id '{cursor}'.")))
    };
    let mut start = 0;
    let mut end = ordered.len();
    if let Some(after) = query_param(query, "after").filter(|a| !a.is_empty()) {
        start = find(after)? + 1;
    }
    if let Some(before) = query_param(query, "before").filter(|b| !b.is_empty()) {
        end = find(before)?;
    }
    let window: &[&Value] = if start < end {
        &ordered[start..end]
    } else {
        &[]
    };
    // `before` pages towards the start: the page is the window's last `limit` items.
    let page: Vec<Value> = if query_param(query, "before").is_some() && window.len() > limit {
        window[window.len() - limit..]
            .iter()
            .map(|v| (*v).clone())
            .collect()
    } else {
        window.iter().take(limit).map(|v| (*v).clone()).collect()
    };
    let has_more = window.len() > page.len();
    Ok(json!({
        "object": "list",
        "data": page,
        "first_id": page.first().map(|v| v["id"].clone()),
        "last_id": page.last().map(|v| v["id"].clone()),
        "has_more": has_more,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(page: &Value) -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["id"].as_str().unwrap().to_string())
            .collect()
    }

    fn store_of(n: usize) -> (Store, Vec<String>) {
        let mut store = Store::default();
        let created = (0..n)
            .map(|_| {
                store.create("assistants", "asst_", "assistant", Map::new())["id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        (store, created)
    }

    #[test]
    fn ids_have_azure_shapes_and_do_not_repeat() {
        let a = new_id("asst_");
        assert!(a.starts_with("asst_") && a.len() == 29, "{a}");
        assert!(a[5..].chars().all(|c| c.is_ascii_alphanumeric()));
        let all: std::collections::HashSet<String> = (0..2000).map(|_| new_id("file-")).collect();
        assert_eq!(all.len(), 2000);
    }

    #[test]
    fn lists_default_to_newest_first_and_page_with_after() {
        let (store, created) = store_of(5);
        let first = store.list("assistants", "limit=2", |_| true).unwrap();
        assert_eq!(ids(&first), [created[4].clone(), created[3].clone()]);
        assert_eq!(first["has_more"], true);
        assert_eq!(first["first_id"], created[4].as_str());
        assert_eq!(first["last_id"], created[3].as_str());
        let next = store
            .list(
                "assistants",
                &format!("limit=2&after={}", created[3]),
                |_| true,
            )
            .unwrap();
        assert_eq!(ids(&next), [created[2].clone(), created[1].clone()]);
        let last = store
            .list(
                "assistants",
                &format!("limit=2&after={}", created[1]),
                |_| true,
            )
            .unwrap();
        assert_eq!(ids(&last), [created[0].clone()]);
        assert_eq!(last["has_more"], false);
    }

    #[test]
    fn ascending_lists_and_before_cursors() {
        let (store, created) = store_of(5);
        let asc = store
            .list("assistants", "order=asc&limit=3", |_| true)
            .unwrap();
        assert_eq!(ids(&asc), created[..3]);
        let before = store
            .list(
                "assistants",
                &format!("order=asc&limit=2&before={}", created[4]),
                |_| true,
            )
            .unwrap();
        assert_eq!(ids(&before), created[2..4]);
        assert_eq!(before["has_more"], true);
    }

    #[test]
    fn an_unknown_cursor_is_refused_and_empty_lists_have_null_ids() {
        let (store, _) = store_of(2);
        assert!(
            store
                .list("assistants", "after=asst_gone", |_| true)
                .is_err()
        );
        let empty = store.list("files", "", |_| true).unwrap();
        assert_eq!(empty["data"], json!([]));
        assert!(empty["first_id"].is_null() && empty["last_id"].is_null());
        assert_eq!(empty["has_more"], false);
    }

    #[test]
    fn removing_an_object_removes_what_lives_below_it() {
        let mut store = Store::default();
        let thread = store.create("threads", "thread_", "thread", Map::new());
        let id = thread["id"].as_str().unwrap();
        store.create(
            &format!("threads/{id}/messages"),
            "msg_",
            "thread.message",
            Map::new(),
        );
        assert!(store.remove("threads", id).is_some());
        assert_eq!(store.all(&format!("threads/{id}/messages")).count(), 0);
        assert!(store.remove("threads", id).is_none());
    }
}
