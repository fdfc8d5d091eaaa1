//! On Your Data: a chat call's `data_sources` make the Azure OpenAI resource query a search
//! index itself. Authenticated as the resource (its managed identity, or no credential), a data
//! source would let an attendee read any index the resource's identity can; it must be one of
//! the event's own search indexes. With a credential of the caller's own it reaches only what
//! that credential does, and passes.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Stack, unreached};

const CHAT_ROUTES: [&str; 3] = [
    "/openai/v1/chat/completions",
    "/openai/deployments/gpt-4o/chat/completions",
    "/openai/deployments/gpt-4o/extensions/chat/completions",
];

fn chat(path: &str, member: &str, sources: Value) -> Value {
    let mut body = json!({"messages": [{"role": "user", "content": "What do we sell?"}]});
    if path.starts_with("/openai/v1/") {
        body["model"] = json!("gpt-4o");
    }
    body[member] = sources;
    body
}

fn search(endpoint: &str, index: &str, authentication: Value) -> Value {
    json!([{"type": "azure_search", "parameters": {"endpoint": endpoint, "index_name": index,
        "authentication": authentication}}])
}

#[tokio::test(flavor = "multi_thread")]
async fn data_sources_reach_only_the_events_indexes_as_the_resource() {
    let stack = Stack::start().await;
    let client = stack.client();
    // The event's search index `products` is served at the mock's address.
    let granted = stack.mock().endpoint();
    let identity = json!({"type": "system_assigned_managed_identity"});
    let user_identity = json!({"type": "user_assigned_managed_identity",
        "managed_identity_resource_id": "/subscriptions/s/resourceGroups/r/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u"});
    for path in CHAT_ROUTES {
        let refused = [
            (
                "an index outside the event",
                "data_sources",
                search(&granted, "hr-salaries", identity.clone()),
            ),
            (
                "another search service",
                "data_sources",
                search(
                    "https://elsewhere.search.windows.net",
                    "products",
                    identity.clone(),
                ),
            ),
            (
                "a user-assigned identity",
                "data_sources",
                search(
                    "https://elsewhere.search.windows.net",
                    "products",
                    user_identity.clone(),
                ),
            ),
            (
                "no credential",
                "data_sources",
                json!([{"type": "azure_search", "parameters": {
                 "endpoint": "https://elsewhere.search.windows.net", "index_name": "products"}}]),
            ),
            (
                "the 2023 previews' spelling",
                "dataSources",
                json!([{"type": "AzureCognitiveSearch", "parameters": {
                 "endpoint": "https://elsewhere.search.windows.net", "indexName": "products",
                 "authentication": {"type": "SystemAssignedManagedIdentity"}}}]),
            ),
            (
                "a case variant of the member",
                "Data_\u{17f}ources",
                search(&granted, "hr-salaries", identity.clone()),
            ),
        ];
        for (what, member, sources) in refused {
            let body = chat(path, member, sources);
            let reply = unreached(stack.mock(), &client, "POST", path, &stack.b, Some(&body)).await;
            assert_eq!(
                reply.status,
                StatusCode::FORBIDDEN,
                "{path}, {what}: {}",
                reply.text()
            );
            assert!(
                reply.error_message().starts_with("data_sources:")
                    && reply
                        .error_message()
                        .ends_with("Available search indexes are: products"),
                "{path}, {what}: {}",
                reply.text()
            );
        }
        let allowed = [
            (
                "the event's index",
                search(&granted, "products", identity.clone()),
            ),
            (
                "the event's index, user-assigned identity",
                search(
                    &format!("{}/", granted.to_uppercase()),
                    "products",
                    user_identity.clone(),
                ),
            ),
            (
                "the caller's own key",
                search(
                    "https://elsewhere.search.windows.net",
                    "hr-salaries",
                    json!({"type": "api_key", "key": "the attendee's own search key"}),
                ),
            ),
        ];
        // An embedding deployment is the serving resource's own: one the event grants there.
        let embedding = |deployment: &str| {
            json!([{"type": "azure_search", "parameters": {
                "endpoint": "https://elsewhere.search.windows.net", "index_name": "products",
                "authentication": {"type": "api_key", "key": "the attendee's own search key"},
                "embedding_dependency": {"type": "deployment_name", "deployment_name": deployment}}}])
        };
        let body = chat(path, "data_sources", embedding("text-embedding-reserved"));
        let reply = unreached(stack.mock(), &client, "POST", path, &stack.b, Some(&body)).await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{path}: {}",
            reply.text()
        );
        assert!(
            reply.error_message().starts_with(
                "data_sources: an embedding deployment_name must be one of this event's deployments"
            ),
            "{path}: {}",
            reply.text()
        );
        let mut allowed = allowed.to_vec();
        allowed.push((
            "an embedding deployment the event grants",
            embedding("gpt-4o"),
        ));
        for (what, sources) in allowed {
            let body = chat(path, "data_sources", sources);
            let before = stack.mock().stats.total();
            let (status, answer) = client.json("POST", path, &stack.b, Some(&body)).await;
            assert_eq!(status, StatusCode::OK, "{path}, {what}: {answer}");
            assert_eq!(stack.mock().stats.total(), before + 1, "{path}, {what}");
        }
    }
}
