//! Lists: every attendee sees exactly their own objects, and pages through them coherently.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Client, Objects, Stack, id_of, ids_in};

/// Which of an attendee's objects a list holds.
type IdOf = fn(&Objects) -> &String;

#[tokio::test(flavor = "multi_thread")]
async fn every_list_shows_each_attendee_exactly_their_own_objects() {
    let stack = Stack::start().await;
    let client = stack.client();
    let mut own: [Vec<Objects>; 2] = [Vec::new(), Vec::new()];
    for round in 0..2 {
        own[0].push(Objects::create(&client, &stack.a, &format!("A{round}")).await);
        own[1].push(Objects::create(&client, &stack.b, &format!("B{round}")).await);
    }
    let collections: [(&str, IdOf); 5] = [
        ("/assistants", |o| &o.assistant),
        ("/agents", |o| &o.agent),
        ("/threads", |o| &o.thread),
        ("/files", |o| &o.file),
        ("/vector_stores", |o| &o.vector_store),
    ];
    for (key, objects) in [(&stack.a, &own[0]), (&stack.b, &own[1])] {
        for (path, id) in collections {
            let listed = client.list_all(path, key).await;
            let expected: HashSet<&String> = objects.iter().map(id).collect();
            let seen: HashSet<&String> = listed.iter().collect();
            assert_eq!(seen, expected, "GET {path}");
            assert_eq!(
                listed.len(),
                expected.len(),
                "GET {path} repeats: {listed:?}"
            );
        }
        let purposed = client.list_all("/files?purpose=assistants", key).await;
        let files: HashSet<&String> = objects.iter().map(|o| &o.file).collect();
        assert_eq!(purposed.iter().collect::<HashSet<_>>(), files);
    }
}

/// Pages through `path` (with `query`, limit 20) as `key`; checks each page; returns the ids.
async fn page_through(
    client: &Client,
    path: &str,
    query: &str,
    key: &str,
    own: &HashSet<String>,
) -> Vec<String> {
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..200 {
        let cursor = after
            .as_ref()
            .map(|a| format!("&after={a}"))
            .unwrap_or_default();
        let page_path = format!("{path}?limit=20{query}{cursor}");
        let (status, page) = client.json("GET", &page_path, key, None).await;
        assert_eq!(status, StatusCode::OK, "GET {page_path}: {page}");
        let data = ids_in(&page);
        assert!(data.len() <= 20, "GET {page_path}: {} items", data.len());
        assert!(
            data.iter().all(|id| own.contains(id)),
            "GET {page_path}: a foreign id in {data:?}"
        );
        assert_eq!(
            page["first_id"].as_str(),
            data.first().map(String::as_str),
            "{page_path}"
        );
        assert_eq!(
            page["last_id"].as_str(),
            data.last().map(String::as_str),
            "{page_path}"
        );
        ids.extend(data);
        match page["has_more"].as_bool() {
            Some(true) => {
                after = page["last_id"].as_str().map(str::to_string);
                assert!(
                    after.is_some(),
                    "GET {page_path}: has_more without a cursor: {page}"
                );
            }
            Some(false) => {
                assert_eq!(
                    ids.len(),
                    own.len(),
                    "GET {page_path}: has_more false before the end"
                );
                return ids;
            }
            None => panic!("GET {page_path}: no has_more: {page}"),
        }
    }
    panic!("{path}{query}: still has_more after 200 pages");
}

#[tokio::test(flavor = "multi_thread")]
async fn three_attendees_page_through_exactly_their_own_150_assistants() {
    let stack = Stack::start().await;
    let client = stack.client();
    let c = stack
        .s
        .admin
        .add_attendee(&stack.s.event_id, "attendee-3")
        .await;
    stack
        .s
        .admin
        .wait_edges_acked(1, Duration::from_secs(5))
        .await;
    let keys = [stack.a.clone(), stack.b.clone(), c];
    let mut created: [Vec<String>; 3] = Default::default();
    for i in 0..150 {
        for (who, key) in keys.iter().enumerate() {
            let assistant = client
                .created(
                    "/assistants",
                    key,
                    json!({"model": "gpt-4o", "name": format!("{who}-{i}")}),
                )
                .await;
            created[who].push(id_of(&assistant, "asst_"));
        }
    }
    for (who, key) in keys.iter().enumerate() {
        let own: HashSet<String> = created[who].iter().cloned().collect();
        let ascending = page_through(&client, "/assistants", "&order=asc", key, &own).await;
        assert_eq!(
            ascending, created[who],
            "attendee {who}, order=asc: oldest first, each once"
        );
        let newest_first: Vec<String> = created[who].iter().rev().cloned().collect();
        let default = page_through(&client, "/assistants", "", key, &own).await;
        assert_eq!(
            default, newest_first,
            "attendee {who}, default order: newest first, each once"
        );
        let descending = page_through(&client, "/assistants", "&order=desc", key, &own).await;
        assert_eq!(descending, newest_first, "attendee {who}, order=desc");
    }
}
