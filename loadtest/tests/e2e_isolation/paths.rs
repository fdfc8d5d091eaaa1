//! Paths a front end would resolve elsewhere, on every route family, and other spellings of a
//! route (case, one trailing slash), which must be authorised exactly like the route.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{
    Client, Objects, Stack, assert_invalid_path, assert_unauthorized, unreached, unreached_target,
};

/// `..` as a front end decodes it.
const DOT_DOT: [&str; 9] = [
    "..", "%2e%2e", "%2E%2e", "%2e%2E", "%2E%2E", ".%2e", "%2e.", ".%2E", "%2E.",
];
/// `.` as a front end decodes it.
const DOT: [&str; 3] = [".", "%2e", "%2E"];
/// What a front end turns into `/`.
const SEPARATORS: [&str; 5] = ["%2f", "%2F", "%5c", "%5C", "\\"];
const CONTROL: [&str; 5] = ["%00", "%0a", "%0A", "%09", "%0d"];

/// Non-canonical paths under `base` built around the caller's `own` id and the victim's `target`:
/// each would reach `target` (or the unfiltered list) once a front end resolved it.
fn hostile_paths(base: &str, own: &str, target: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for dots in DOT_DOT {
        paths.push(format!("{base}/{own}/{dots}/{target}"));
        paths.push(format!("{base}/{own}/{dots}"));
    }
    for dot in DOT {
        paths.push(format!("{base}/{dot}/{target}"));
        paths.push(format!("{base}/{target}/{dot}"));
        paths.push(format!("{base}/{own}/{dot}/"));
    }
    paths.push(format!("{base}//{target}"));
    paths.push(format!("/{base}/{target}"));
    paths.push(format!("{base}/{own}//{target}"));
    paths.push(format!("{base}/{target}//"));
    for separator in SEPARATORS {
        paths.push(format!("{base}/{own}{separator}..{separator}{target}"));
        paths.push(format!("{base}{separator}{target}"));
    }
    paths.push(format!("{base}/{target};x=1"));
    paths.push(format!("{base};/{target}"));
    for control in CONTROL {
        paths.push(format!("{base}/{target}{control}"));
    }
    paths
}

/// Ids that differ from `target` by a character outside `[A-Za-z0-9_-]`.
fn foreign_alphabet_ids(target: &str) -> Vec<String> {
    [
        "~", ".x", "%20", "+1", "%C3%A9", ":x", "@x", "'", "%27", "%22", ",x", "!", "*", "$", "(1)",
    ]
    .iter()
    .map(|suffix| format!("{target}{suffix}"))
    .collect()
}

/// Sends `method path` as `key`; it must be a 400 about the path that never reached upstream.
async fn refused_path(stack: &Stack, client: &Client, method: &str, path: &str, key: &str) {
    let body = (method == "POST").then(|| json!({}));
    let reply = unreached(stack.mock(), client, method, path, key, body.as_ref()).await;
    assert_invalid_path(&reply, method, path);
}

#[tokio::test(flavor = "multi_thread")]
async fn non_canonical_paths_to_foundry_objects_are_refused_before_upstream() {
    let stack = Stack::start().await;
    let client = stack.client();
    let a = Objects::create(&client, &stack.a, "A").await;
    let b = Objects::create(&client, &stack.b, "B").await;
    let families = [
        ("/assistants", &b.assistant, &a.assistant),
        ("/agents", &b.agent, &a.agent),
        ("/threads", &b.thread, &a.thread),
        ("/files", &b.file, &a.file),
        ("/vector_stores", &b.vector_store, &a.vector_store),
        ("/openai/v1/conversations", &b.conversation, &a.conversation),
        ("/openai/v1/responses", &b.model_response, &a.model_response),
        ("/openai/v1/responses", &b.agent_response, &a.agent_response),
    ];
    for (base, own, target) in families {
        for path in hostile_paths(base, own, target) {
            refused_path(&stack, &client, "GET", &path, &stack.b).await;
        }
        for dots in DOT_DOT {
            let path = format!("{base}/{own}/{dots}/{target}");
            refused_path(&stack, &client, "DELETE", &path, &stack.b).await;
            refused_path(&stack, &client, "POST", &path, &stack.b).await;
        }
        for id in foreign_alphabet_ids(target) {
            refused_path(&stack, &client, "GET", &format!("{base}/{id}"), &stack.b).await;
        }
        // The owner gets no further with such a path.
        refused_path(
            &stack,
            &client,
            "GET",
            &format!("{base}/{target}/."),
            &stack.a,
        )
        .await;
        refused_path(
            &stack,
            &client,
            "GET",
            &format!("{base}/{own}/../{target}"),
            &stack.a,
        )
        .await;
    }

    let nested = [
        format!("/threads/{}/messages/../../{}/messages", b.thread, a.thread),
        format!("/threads/{}/runs/..%2f..%2f{}/runs", b.thread, a.thread),
        format!("/threads/{}/messages/%2e%2e/%2e%2e/{}", b.thread, a.thread),
        format!("/threads/runs/../../assistants/{}", a.assistant),
        format!("/threads/runs/%2e%2e/%2e%2e/assistants/{}", a.assistant),
        format!("/threads/{}/runs/.", b.thread),
        format!("/threads/{}/runs/%2e", b.thread),
        format!("/threads/{}/runs/./", b.thread),
        format!("/files/{}/../{}/content", b.file, a.file),
        format!("/files/{}/content/../../{}/content", b.file, a.file),
        format!(
            "/vector_stores/{}/files/../../{}/files",
            b.vector_store, a.vector_store
        ),
        format!(
            "/vector_stores/{}/file_batches/%2e%2e/%2e%2e/{}",
            b.vector_store, a.vector_store
        ),
        format!(
            "/openai/v1/conversations/{}/items/../../{}/items",
            b.conversation, a.conversation
        ),
        format!(
            "/openai/v1/responses/{}/input_items/../../{}",
            b.model_response, a.model_response
        ),
        format!(
            "/openai/v1/responses/{}/../../deployments/secret/chat/completions",
            a.model_response
        ),
        format!("/agents/{}/versions/../../{}", b.agent, a.agent),
        format!("/agents/{}/versions/..%5c..%5c{}", b.agent, a.agent),
        format!(
            "/openai/v1/responses/{}/../../deployments/secret/chat/completions",
            b.model_response
        ),
        format!(
            "/openai/v1/responses/{}/%2e%2e/%2e%2e/deployments/gpt-4o/chat/completions",
            b.model_response
        ),
        format!(
            "/openai/v1/responses/{}/../../../../api/projects/hack/assistants",
            b.model_response
        ),
    ];
    for path in &nested {
        for method in ["GET", "POST", "DELETE"] {
            refused_path(&stack, &client, method, path, &stack.b).await;
        }
    }
    // A run on a path that only resolves to `…/runs` must not run another's agent either.
    let body = json!({"assistant_id": a.assistant});
    for path in [
        format!("/threads/{}/runs/.", b.thread),
        format!("/threads/{}/runs/%2E", b.thread),
    ] {
        let reply = unreached(stack.mock(), &client, "POST", &path, &stack.b, Some(&body)).await;
        assert_invalid_path(&reply, "POST", &path);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn non_canonical_paths_to_models_search_mcp_and_inference_are_refused_before_upstream() {
    let stack = Stack::start().await;
    let client = stack.client();
    let chat = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let paths = [
        "/openai/deployments/gpt-4o/../secret/chat/completions",
        "/openai/deployments/gpt-4o/%2e%2e/secret/chat/completions",
        "/openai/deployments/gpt-4o/chat/completions/../../../../api/projects/hack/assistants",
        "/openai/deployments/gpt-4o/chat/completions/%2E%2E/%2e%2e/%2e%2e/%2e%2e/api/projects/hack/assistants",
        "/openai/deployments/gpt-4o%2f..%2fsecret/chat/completions",
        "/openai/deployments/gpt-4o%5C..%5Csecret/chat/completions",
        "/openai/deployments/gpt-4o\\..\\secret/chat/completions",
        "/openai/deployments/gpt-4o/chat%2fcompletions",
        "/openai/deployments/gpt-4o/./chat/completions",
        "/openai/deployments//gpt-4o/chat/completions",
        "/openai/deployments/gpt-4o;v=1/chat/completions",
        "/openai/deployments/gpt-4o%00/chat/completions",
        "/openai/v1/chat/completions/..",
        "/openai/v1/./chat/completions",
        "/openai/v1/chat/completions/..%2f..%2f..%2fapi%2fprojects%2fhack%2fassistants",
        "/indexes/products/../secret/docs/search",
        "/indexes/products/%2e%2e/secret/docs/search",
        "/indexes/products/docs/search/..%2f..%2f..%2fsecret%2fdocs%2fsearch",
        "/indexes/products/docs//search",
        "/indexes/products\\..\\secret/docs/search",
        "/indexes('products')/docs/../../indexes('secret')/docs/search.post.search",
        "/indexes('products')/docs/search.post.search/%2e%2e/%2e%2e/%2e%2e/x",
        "/mcp/docs/../../x",
        "/mcp/docs/%2e%2e/%2e%2e/x",
        "/mcp/docs/.%2E/.%2E/x",
        "/mcp/docs/..",
        "/mcp/docs/a/..%2f..%2f..%2fx",
        "/mcp/docs//x",
        "/mcp/docs\\..\\..\\x",
        "/mcp/docs/x;y",
        "/mcp/docs/x%0a",
        "/chat/completions/..",
        "/./chat/completions",
        "/chat/../chat/completions",
        "/chat%2fcompletions",
        "/chat/completions%00",
        "/embeddings/.",
        "/info/..",
    ];
    for path in paths {
        for key in [&stack.a, &stack.b] {
            let reply = unreached(stack.mock(), &client, "POST", path, key, Some(&chat)).await;
            assert_invalid_path(&reply, "POST", path);
        }
    }
    // Above `/api/v1` itself.
    for target in [
        "/api/v1/../v1/openai/deployments/gpt-4o/chat/completions",
        "/api/%2e/v1/openai/deployments/gpt-4o/chat/completions",
        "/api//v1/openai/deployments/gpt-4o/chat/completions",
        "/api/v1%2fopenai/deployments/gpt-4o/chat/completions",
    ] {
        let reply =
            unreached_target(stack.mock(), &client, "POST", target, &stack.a, Some(&chat)).await;
        assert!(
            !reply.status.is_success(),
            "POST {target}: {} {}",
            reply.status,
            reply.text()
        );
    }
    // The canonical spellings still work.
    for (path, body) in [
        ("/openai/deployments/gpt-4o/chat/completions", &chat),
        ("/indexes/products/docs/search", &json!({"search": "x"})),
        (
            "/mcp/docs",
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}),
        ),
        (
            "/chat/completions",
            &json!({"model": "Phi-4", "messages": []}),
        ),
    ] {
        let reply = client.raw("POST", path, &stack.a, Some(body)).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "POST {path}: {}",
            reply.text()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn other_spellings_of_a_route_are_authorised_like_the_route() {
    let stack = Stack::start().await;
    let client = stack.client();
    let a = Objects::create(&client, &stack.a, "A").await;
    let b = Objects::create(&client, &stack.b, "B").await;
    let mock = stack.mock();

    for path in [
        format!("/Assistants/{}", a.assistant),
        format!("/ASSISTANTS/{}/", a.assistant),
        format!("/assistants/{}/", a.assistant),
    ] {
        let (status, assistant) = client.json("GET", &path, &stack.a, None).await;
        assert_eq!(status, StatusCode::OK, "the owner, GET {path}: {assistant}");
        assert_eq!(assistant["id"], a.assistant.as_str());
        let reply = unreached(mock, &client, "GET", &path, &stack.b, None).await;
        assert_unauthorized(&reply, "agent", &format!("B: GET {path}"));
    }
    let run = json!({"assistant_id": b.assistant});
    for path in [
        format!("/threads/{}/Runs", a.thread),
        format!("/Threads/{}/RUNS/", a.thread),
        format!("/threads/{}/Messages", a.thread),
    ] {
        let reply = unreached(mock, &client, "POST", &path, &stack.b, Some(&run)).await;
        assert_unauthorized(&reply, "thread", &format!("B: POST {path}"));
    }
    let theirs = json!({"assistant_id": a.assistant, "thread": {"messages": [{"role": "user", "content": "hi"}]}});
    for path in [
        "/threads/runs/".to_string(),
        "/Threads/Runs".to_string(),
        format!("/threads/{}/runs/", b.thread),
        format!("/Threads/{}/Runs", b.thread),
    ] {
        let reply = unreached(mock, &client, "POST", &path, &stack.b, Some(&theirs)).await;
        assert_unauthorized(&reply, "agent", &format!("B runs A's agent: POST {path}"));
    }
    for (path, kind) in [
        (
            format!("/OpenAI/V1/Responses/{}", a.model_response),
            "response",
        ),
        (
            format!("/openai/v1/RESPONSES/{}/", a.agent_response),
            "response",
        ),
        (format!("/Files/{}/Content", a.file), "file"),
        (
            format!("/Vector_Stores/{}/Files", a.vector_store),
            "vector store",
        ),
        (
            format!("/openai/v1/Conversations/{}/Items", a.conversation),
            "conversation",
        ),
        (format!("/Agents/{}", a.agent), "agent"),
    ] {
        let reply = unreached(mock, &client, "GET", &path, &stack.b, None).await;
        assert_unauthorized(&reply, kind, &format!("B: GET {path}"));
    }

    let own = json!({"assistant_id": b.assistant, "thread": {"messages": [{"role": "user", "content": "hi"}]}});
    let (status, run) = client
        .json("POST", "/threads/runs/", &stack.b, Some(&own))
        .await;
    assert_eq!(status, StatusCode::OK, "B runs their own agent: {run}");
    let (status, _) = client
        .json(
            "POST",
            &format!("/Threads/{}/Runs/", b.thread),
            &stack.b,
            Some(&json!({"assistant_id": b.assistant})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}
