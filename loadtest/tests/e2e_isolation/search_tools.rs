//! The Agent Service's Azure AI Search tool makes the service query an index through one of the
//! project's connections, with the connection's credential: any index of that search service.
//! An attendee's agent, assistant, thread or Responses call may name only the event's own search
//! indexes, through a connection the project really has to that index's service.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{PROJECT, Stack, unreached};

/// `POST path` bodies that name `index` through `connection` (`index_connection_id` or
/// `project_connection_id` as each API spells it).
fn bodies(connection: &str, index: &str) -> Vec<(&'static str, Value)> {
    let classic = json!({"indexes": [{"index_connection_id": connection, "index_name": index,
        "query_type": "simple", "top_k": 5}]});
    let agent_name = format!(
        "searcher-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    vec![
        (
            "/assistants",
            json!({"model": "gpt-4o", "name": "searcher", "tools": [{"type": "azure_ai_search"}],
                   "tool_resources": {"azure_ai_search": classic.clone()}}),
        ),
        (
            "/threads",
            json!({"tool_resources": {"azure_ai_search": classic}}),
        ),
        (
            "/agents",
            json!({"name": agent_name, "definition": {"kind": "prompt", "model": "gpt-4o",
                   "tools": [{"type": "azure_ai_search", "azure_ai_search": {"indexes": [
                       {"project_connection_id": connection, "index_name": index}]}}]}}),
        ),
    ]
}

/// The requests that reached the mock since `before`, as `METHOD path`.
fn sent_since(stack: &Stack, before: u64) -> Vec<String> {
    stack
        .mock()
        .stats
        .requests_since(before)
        .into_iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

fn assert_refused(reply_status: StatusCode, message: &str, why: &str, what: &str) {
    assert_eq!(reply_status, StatusCode::FORBIDDEN, "{what}: {message}");
    assert!(
        message.starts_with(
            "tools: an Azure AI Search tool may query only this event's search indexes"
        ) && message.contains(why)
            && message.ends_with("Available search indexes are: products"),
        "{what}: {message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn search_tools_reach_only_the_events_indexes_through_the_projects_connections() {
    let stack = Stack::start().await;
    let client = stack.client();
    // The event's index `products` is served at the mock's address: one connection of the
    // project goes there, one to another search service.
    let mock = stack.mock();
    mock.add_connection("event-search", "CognitiveSearch", &mock.endpoint());
    mock.add_connection(
        "hr-search",
        "CognitiveSearch",
        "https://hr.search.windows.net",
    );
    let connection = |name: &str| format!("GET {PROJECT}/connections/{name}");

    // Refused after the project was asked where the connection goes: nothing else reaches it.
    for (connection_name, index, why) in [
        (
            "event-search",
            "hr-salaries",
            "the index named is not one of them",
        ),
        (
            "hr-search",
            "products",
            "the index named is not one of them",
        ),
        (
            "no-such-connection",
            "products",
            "this project has no connection of the name given",
        ),
    ] {
        for (path, body) in bodies(connection_name, index) {
            let what = format!("{path} through {connection_name} to {index}");
            let before = mock.stats.total();
            let reply = client.raw("POST", path, &stack.b, Some(&body)).await;
            assert_refused(reply.status, &reply.error_message(), why, &what);
            let reads = sent_since(&stack, before);
            assert!(
                reads.iter().all(|r| *r == connection(connection_name)),
                "{what}: only the connection may be read, got {reads:?}"
            );
        }
    }

    // Refused without a word upstream: another project's connection, an index asset, an index
    // without a connection, names in another case.
    let other_project = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/ai-other/projects/hack/connections/event-search";
    let refused: Vec<(&str, &str, Value, &str)> = vec![
        (
            "another project's connection",
            "/assistants",
            bodies(other_project, "products").remove(0).1,
            "a connection id must be the name of one of this project's connections",
        ),
        (
            "an index asset",
            "/agents",
            json!({"name": "asset-agent", "definition": {"kind": "prompt", "model": "gpt-4o",
                "tools": [{"type": "azure_ai_search", "azure_ai_search": {"indexes": [
                    {"index_asset_id": "azureai://accounts/a/projects/p/indexes/hr/versions/1"}]}}]}}),
            "an index asset (index_asset_id) cannot be checked",
        ),
        (
            "no connection",
            "/assistants",
            json!({"model": "gpt-4o", "tool_resources": {"azure_ai_search": {"indexes": [
                {"index_name": "products"}]}}}),
            "an index named no connection or no index_name",
        ),
        (
            "names in another case",
            "/threads",
            // The first index alone would need its connection (never read yet) read: the
            // second, refused by the body alone, spares that read.
            json!({"Tool_Resources": {"AZURE_AI_SEARCH": {"Indexes": [
                {"Index_Connection_Id": "unread-search", "index_name": "products"},
                {"INDEX_CONNECTION_ID": "event-search"}]}}}),
            "an index named no connection or no index_name",
        ),
    ];
    for (what, path, body, why) in refused {
        let reply = unreached(mock, &client, "POST", path, &stack.b, Some(&body)).await;
        assert_refused(reply.status, &reply.error_message(), why, what);
    }
    // A model's Responses call has no project to hold the connection.
    let response = json!({"model": "gpt-4o", "input": "What do we sell?", "tools": [
        {"type": "azure_ai_search", "azure_ai_search": {"indexes": [
            {"project_connection_id": "event-search", "index_name": "products"}]}}]});
    let reply = unreached(
        mock,
        &client,
        "POST",
        "/openai/v1/responses",
        &stack.b,
        Some(&response),
    )
    .await;
    assert_refused(
        reply.status,
        &reply.error_message(),
        "only an agent project's calls can use it",
        "a model's Responses call",
    );

    // The event's index through the project's connection to it passes, in every API; the
    // connection, read for the first refusal above, is remembered.
    let before = mock.stats.total();
    for (path, body) in bodies("event-search", "products") {
        let (status, answer) = client.json("POST", path, &stack.b, Some(&body)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
        let sent = sent_since(&stack, before);
        assert!(
            sent.contains(&format!("POST {PROJECT}{path}")),
            "{path}: {sent:?}"
        );
    }
    let sent = sent_since(&stack, before);
    assert!(
        !sent.iter().any(|r| r.contains("/connections/")),
        "the connection is remembered: {sent:?}"
    );
    // Other tools' connections are not search indexes: they pass unread.
    let bing = json!({"model": "gpt-4o", "tools": [{"type": "bing_grounding", "bing_grounding":
        {"search_configurations": [{"project_connection_id": "bing", "count": 5}]}}]});
    let before = mock.stats.total();
    let (status, answer) = client
        .json("POST", "/assistants", &stack.b, Some(&bing))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        sent_since(&stack, before),
        vec![format!("POST {PROJECT}/assistants")]
    );

    // A project that cannot say where a connection goes: 502, and nothing is created.
    mock.fail_with(Some(500));
    let (path, body) = bodies("down-search", "products").remove(0);
    let before = mock.stats.total();
    let reply = client.raw("POST", path, &stack.b, Some(&body)).await;
    mock.fail_with(None);
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    assert!(
        reply.error_message().starts_with(
            "Could not read the project's connection 'down-search' of 'agents' to check an Azure AI Search tool: the project answered 500"
        ),
        "{}",
        reply.text()
    );
    assert_eq!(sent_since(&stack, before), vec![connection("down-search")]);
}
