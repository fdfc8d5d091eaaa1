//! References to objects inside request bodies: refused when they name another attendee's
//! object, honoured when they name the caller's own.

use std::time::Duration;

use aiproxy_loadtest::stack::{ControlPlaneOptions, UPSTREAM_KEY, create_postgres_database};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{
    API_VERSION, Objects, PROJECT, Stack, assert_bad_request, assert_unauthorized, unreached,
};

/// One request naming an object in its body.
struct BodyReference {
    what: String,
    path: String,
    body: Value,
    kind: &'static str,
}

fn case(what: &str, path: &str, body: Value, kind: &'static str) -> BodyReference {
    BodyReference {
        what: what.to_string(),
        path: path.to_string(),
        body,
        kind,
    }
}

/// Requests on `caller`'s own containers that reference `named`'s objects in their bodies.
fn body_references(caller: &Objects, named: &Objects) -> Vec<BodyReference> {
    let (c, n) = (caller, named);
    let mut cases = tool_resource_references(c, n);
    cases.extend(attachment_references(c, n));
    cases.extend(agent_and_vector_store_references(c, n));
    cases.extend(response_references(c, n));
    cases.extend(chat_references(n));
    cases
}

/// Puts `tool_resources` where a request carries them.
type Wrap<'a> = Box<dyn Fn(&Value) -> Value + 'a>;

/// Every `tool_resources` field, in every request that carries `tool_resources`.
fn tool_resource_references(c: &Objects, n: &Objects) -> Vec<BodyReference> {
    let fields = [
        (
            "code_interpreter.file_ids",
            json!({"code_interpreter": {"file_ids": [n.file]}}),
            "file",
        ),
        (
            "file_search.vector_store_ids",
            json!({"file_search": {"vector_store_ids": [n.vector_store]}}),
            "vector store",
        ),
        (
            "file_search.vector_stores[].file_ids",
            json!({"file_search": {"vector_stores": [{"file_ids": [n.file]}]}}),
            "file",
        ),
    ];
    let runs = format!("/threads/{}/runs", c.thread);
    let assistant = format!("/assistants/{}", c.assistant);
    let containers: [(&str, &str, Wrap); 6] = [
        (
            "assistant create",
            "/assistants",
            Box::new(|t| json!({"model": "gpt-4o", "tool_resources": t})),
        ),
        (
            "assistant update",
            &assistant,
            Box::new(|t| json!({"tool_resources": t})),
        ),
        (
            "thread create",
            "/threads",
            Box::new(|t| json!({"tool_resources": t})),
        ),
        (
            "run create",
            &runs,
            Box::new(|t| json!({"assistant_id": c.assistant, "tool_resources": t})),
        ),
        (
            "create thread and run",
            "/threads/runs",
            Box::new(|t| json!({"assistant_id": c.assistant, "tool_resources": t})),
        ),
        (
            "create thread and run, thread",
            "/threads/runs",
            Box::new(|t| json!({"assistant_id": c.assistant, "thread": {"tool_resources": t}})),
        ),
    ];
    let mut cases = Vec::new();
    for (request, path, wrap) in &containers {
        for (field, tool_resources, kind) in &fields {
            cases.push(case(
                &format!("{request} tool_resources.{field}"),
                path,
                wrap(tool_resources),
                kind,
            ));
        }
    }
    cases
}

/// Files attached to messages or shown in them, wherever messages are written.
fn attachment_references(c: &Objects, n: &Objects) -> Vec<BodyReference> {
    let attachments = json!([{"file_id": n.file, "tools": [{"type": "file_search"}]}]);
    let message = json!({"role": "user", "content": "read this", "attachments": attachments});
    let messages = format!("/threads/{}/messages", c.thread);
    vec![
        case(
            "message attachments[].file_id",
            &messages,
            message.clone(),
            "file",
        ),
        case(
            "message content[].image_file.file_id",
            &messages,
            json!({"role": "user", "content": [{"type": "image_file", "image_file": {"file_id": n.file}}]}),
            "file",
        ),
        case(
            "run additional_messages[].attachments[].file_id",
            &format!("/threads/{}/runs", c.thread),
            json!({"assistant_id": c.assistant, "additional_messages": [message]}),
            "file",
        ),
        case(
            "thread create messages[].attachments[].file_id",
            "/threads",
            json!({"messages": [message]}),
            "file",
        ),
        case(
            "create thread and run thread.messages[].attachments[].file_id",
            "/threads/runs",
            json!({"assistant_id": c.assistant, "thread": {"messages": [message]}}),
            "file",
        ),
    ]
}

/// The agent a run runs, an agent name taken again, and files put into vector stores.
fn agent_and_vector_store_references(c: &Objects, n: &Objects) -> Vec<BodyReference> {
    let runs = format!("/threads/{}/runs", c.thread);
    vec![
        case(
            "run assistant_id",
            &runs,
            json!({"assistant_id": n.assistant}),
            "agent",
        ),
        case(
            "run agent_id",
            &runs,
            json!({"agent_id": n.assistant}),
            "agent",
        ),
        case(
            "create thread and run assistant_id",
            "/threads/runs",
            json!({"assistant_id": n.assistant}),
            "agent",
        ),
        case(
            "agent create with a name in use",
            "/agents",
            json!({"name": n.agent, "definition": {"kind": "prompt", "model": "gpt-4o", "instructions": "mine now"}}),
            "agent",
        ),
        case(
            "vector store create file_ids",
            "/vector_stores",
            json!({"name": "mine", "file_ids": [n.file]}),
            "file",
        ),
        case(
            "vector store file file_id",
            &format!("/vector_stores/{}/files", c.vector_store),
            json!({"file_id": n.file}),
            "file",
        ),
        case(
            "vector store file batch file_ids",
            &format!("/vector_stores/{}/file_batches", c.vector_store),
            json!({"file_ids": [n.file]}),
            "file",
        ),
    ]
}

/// What a Responses call continues from, runs, or reads.
fn response_references(c: &Objects, n: &Objects) -> Vec<BodyReference> {
    let agent = json!({"type": "agent_reference", "name": c.agent});
    let responses = "/openai/v1/responses";
    vec![
        case(
            "agent response agent_reference",
            responses,
            json!({"agent": {"type": "agent_reference", "name": n.agent}, "input": "hi"}),
            "agent",
        ),
        case(
            "agent response conversation (string)",
            responses,
            json!({"agent": agent, "conversation": n.conversation, "input": "hi"}),
            "conversation",
        ),
        case(
            "agent response conversation {id}",
            responses,
            json!({"agent": agent, "conversation": {"id": n.conversation}, "input": "hi"}),
            "conversation",
        ),
        case(
            "agent response previous_response_id",
            responses,
            json!({"agent": agent, "previous_response_id": n.agent_response, "input": "go on"}),
            "response",
        ),
        case(
            "agent response tools[].vector_store_ids",
            responses,
            json!({"agent": agent, "input": "hi",
                   "tools": [{"type": "file_search", "vector_store_ids": [n.vector_store]}]}),
            "vector store",
        ),
        case(
            "agent response input[] file_id",
            responses,
            json!({"agent": agent, "input": [{"type": "message", "role": "user",
                   "content": [{"type": "input_file", "file_id": n.file}]}]}),
            "file",
        ),
        case(
            "model response previous_response_id",
            responses,
            json!({"model": "gpt-4o", "previous_response_id": n.model_response, "input": "go on"}),
            "response",
        ),
    ]
}

/// A chat message's `file` part, on each chat route of a model: the v1 API, a deployment's
/// chat, and its `extensions/chat` (which no other rule reads the body of).
fn chat_references(n: &Objects) -> Vec<BodyReference> {
    let body = |model: Option<&str>| {
        let mut body = json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "Summarise this file"},
            {"type": "file", "file": {"file_id": n.file}}]}]});
        if let Some(model) = model {
            body["model"] = json!(model);
        }
        body
    };
    vec![
        case(
            "v1 chat file part",
            "/openai/v1/chat/completions",
            body(Some("gpt-4o")),
            "file",
        ),
        case(
            "deployment chat file part",
            "/openai/deployments/gpt-4o/chat/completions",
            body(None),
            "file",
        ),
        case(
            "deployment extensions chat file part",
            "/openai/deployments/gpt-4o/extensions/chat/completions",
            body(None),
            "file",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn references_in_bodies_are_confined_to_the_callers_objects() {
    let stack = Stack::start().await;
    let client = stack.client();
    let a = Objects::create(&client, &stack.a, "A").await;
    let b = Objects::create(&client, &stack.b, "B").await;
    for case in body_references(&b, &a) {
        let reply = unreached(
            stack.mock(),
            &client,
            "POST",
            &case.path,
            &stack.b,
            Some(&case.body),
        )
        .await;
        assert_unauthorized(
            &reply,
            case.kind,
            &format!("B names A's object in {}", case.what),
        );
    }
    for case in body_references(&b, &b) {
        let (status, answer) = client
            .json("POST", &case.path, &stack.b, Some(&case.body))
            .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "B names their own object in {}: {answer}",
            case.what
        );
        assert!(
            !answer.to_string().contains(" of A"),
            "B's own request showed A's secrets, {}: {answer}",
            case.what
        );
    }
    // A referencing name in another case, in ASCII or through a letter whose case mapping is
    // ASCII, is refused before anything is sent: a case-insensitive upstream would read it.
    let b_messages = format!("/threads/{}/messages", b.thread);
    for name in ["File_Id", "f\u{131}le_id", "\u{fb01}le_id"] {
        let file = Value::Object([(name.to_string(), json!(a.file))].into_iter().collect());
        for (path, body) in [
            (
                "/openai/v1/chat/completions",
                json!({"model": "gpt-4o", "messages": [{"role": "user",
                       "content": [{"type": "file", "file": file}]}]}),
            ),
            (
                b_messages.as_str(),
                json!({"role": "user", "content": "read this", "attachments": [file]}),
            ),
        ] {
            let reply = unreached(stack.mock(), &client, "POST", path, &stack.b, Some(&body)).await;
            assert_bad_request(&reply, "case-sensitive", &format!("{name} in {path}"));
        }
    }
    // A's secrets never reached B: B's thread holds only B's words.
    let (_, messages) = client
        .json(
            "GET",
            &format!("/threads/{}/messages?limit=100", b.thread),
            &stack.b,
            None,
        )
        .await;
    assert!(!messages.to_string().contains(" of A"), "{messages}");
}

/// Ids in bodies are held to the rule ids in paths are: an id no path could name (a NUL, a space,
/// a dot, 257 characters) is a 400 that reaches neither the upstream nor the control plane. On
/// Postgres, which refuses a NUL in text, such ids once went to the database as ownership
/// lookups; its refusals came back as failures, and three of them opened the edge's breaker on
/// the control plane: every attendee's Foundry calls failed and daily request caps went
/// unchecked while an attacker kept it open.
#[tokio::test(flavor = "multi_thread")]
async fn ids_no_path_could_name_are_refused_before_any_lookup() {
    let stack = Stack::start_with(ControlPlaneOptions {
        database_url: Some(create_postgres_database()),
        // Upstream keys in a shared database are encrypted with a key of the operator's.
        extra_env: vec![(
            "AIPROXY_ENCRYPTION_KEY".into(),
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into(),
        )],
    })
    .await;
    let client = stack.client();
    let a = Objects::create(&client, &stack.a, "A").await;
    let messages = format!("/threads/{}/messages", a.thread);
    let message = |file_id: &str| {
        json!({"role": "user", "content": "read this",
               "attachments": [{"file_id": file_id, "tools": [{"type": "file_search"}]}]})
    };
    let not_an_id = "an id is 1 to 256 letters, digits, '_' and '-'";
    let long = "f".repeat(257);
    for bad in ["file\u{0}1", "file 1", "file.1", long.as_str()] {
        // More than the breaker's three failures in a row, for each.
        for _ in 0..4 {
            let reply = unreached(
                stack.mock(),
                &client,
                "POST",
                &messages,
                &stack.a,
                Some(&message(bad)),
            )
            .await;
            assert_eq!(
                (reply.status, reply.error_message()),
                (StatusCode::BAD_REQUEST, format!("file_id: {not_an_id}")),
                "{bad:?}"
            );
        }
    }
    let reply = unreached(
        stack.mock(),
        &client,
        "POST",
        "/agents",
        &stack.a,
        Some(&json!({"name": "agent\u{0}1", "definition": {"kind": "prompt", "model": "gpt-4o"}})),
    )
    .await;
    assert_eq!(
        (reply.status, reply.error_message()),
        (StatusCode::BAD_REQUEST, format!("name: {not_an_id}"))
    );
    // The edge's calls to the control plane still go through: A's own file is looked up and
    // honoured, a new object is recorded, a model call is answered.
    let (status, answer) = client
        .json("POST", &messages, &stack.a, Some(&message(&a.file)))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    client
        .created("/threads", &stack.a, json!({"messages": []}))
        .await;
    let answer = stack
        .s
        .call(
            "gpt-4o",
            "chat/completions",
            json!({"messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(answer.status(), StatusCode::OK);
}

/// `POST /agents` under a name that exists adds a version to that agent upstream, whoever made it.
/// An agent made outside the proxy (the organiser's) keeps its definition and stays nobody's
/// here; of two attendees choosing one new name at once, one gets the agent and the other a 403
/// before anything reaches the upstream, so the agent holds exactly the winner's definition.
#[tokio::test(flavor = "multi_thread")]
async fn an_agent_name_is_held_by_one_attendee_and_never_taken_from_outside_the_proxy() {
    let stack = Stack::start().await;
    let client = stack.client();
    let named = |name: &str, instructions: &str| json!({"name": name, "definition": {"kind": "prompt", "model": "gpt-4o", "instructions": instructions}});
    // Made in the portal, not through the proxy.
    let organisers = format!(
        "organiser-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let made = reqwest::Client::new()
        .post(format!(
            "{}{PROJECT}/agents?{API_VERSION}",
            stack.mock().endpoint()
        ))
        .header("api-key", UPSTREAM_KEY)
        .json(&named(&organisers, "the organiser's"))
        .send()
        .await
        .expect("mock reachable");
    assert_eq!(made.status(), StatusCode::OK);
    let before = upstream_agent(&stack, &organisers).await;
    for key in [&stack.a, &stack.a, &stack.b] {
        let (status, answer) = client
            .json(
                "POST",
                "/agents",
                key,
                Some(&named(&organisers, "an attendee's")),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    }
    assert_eq!(upstream_agent(&stack, &organisers).await, before);
    let (status, _) = client
        .json("GET", &format!("/agents/{organisers}"), &stack.a, None)
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "still nobody's through the proxy"
    );

    for round in 0..5 {
        let name = format!(
            "race-{round}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let (for_a, for_b) = (named(&name, "A's"), named(&name, "B's"));
        let (a, b) = tokio::join!(
            client.json("POST", "/agents", &stack.a, Some(&for_a)),
            client.json("POST", "/agents", &stack.b, Some(&for_b)),
        );
        let (winner, loser) = match (a.0, b.0) {
            (StatusCode::OK, StatusCode::FORBIDDEN) => ("A's", &stack.b),
            (StatusCode::FORBIDDEN, StatusCode::OK) => ("B's", &stack.a),
            other => panic!(
                "round {round}: one create must win, the other be refused: {other:?} {a:?} {b:?}"
            ),
        };
        let held = upstream_agent(&stack, &name).await;
        assert_eq!(
            held["versions"]["latest"]["definition"]["instructions"], winner,
            "round {round}: {held}"
        );
        let (status, _) = client
            .json("GET", &format!("/agents/{name}"), loser, None)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    // A name is given back when the agent is not made: anyone may take it afterwards.
    let name = format!("back-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    stack.mock().fail_with(Some(500));
    let (status, answer) = client
        .json("POST", "/agents", &stack.a, Some(&named(&name, "A's")))
        .await;
    stack.mock().fail_with(None);
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{answer}");
    let (status, answer) = client
        .json("POST", "/agents", &stack.b, Some(&named(&name, "B's")))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

/// An attendee's two creates of one new name overlap (a client that retries): the first one's
/// upstream create fails only after the second made the agent. The failing call wrote the name's
/// record, but the agent exists upstream, so the name stays the attendee's.
#[tokio::test(flavor = "multi_thread")]
async fn a_late_failure_does_not_take_a_name_from_its_attendees_agent() {
    let stack = Stack::start().await;
    let client = stack.client();
    let name = format!("retry-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let body = json!({"name": name, "definition": {"kind": "prompt", "model": "gpt-4o",
                      "instructions": "A's"}});
    let mut held = stack.mock().hold_next(
        http::Method::POST,
        &format!("{PROJECT}/agents"),
        StatusCode::INTERNAL_SERVER_ERROR,
    );
    let first = tokio::spawn({
        let body = body.clone();
        let key = stack.a.clone();
        async move { client.json("POST", "/agents", &key, Some(&body)).await }
    });
    assert!(
        held.arrived(Duration::from_secs(10)).await,
        "the first create reached the upstream"
    );
    let (status, answer) = client.json("POST", "/agents", &stack.a, Some(&body)).await;
    assert_eq!(status, StatusCode::OK, "the second create: {answer}");
    held.answer();
    let (status, answer) = first.await.unwrap();
    assert_eq!(
        status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "the first create, answered as upstream failed it: {answer}"
    );
    let (status, answer) = client
        .json("GET", &format!("/agents/{name}"), &stack.a, None)
        .await;
    assert_eq!(status, StatusCode::OK, "A's agent is still A's: {answer}");
    let (status, answer) = client.json("POST", "/agents", &stack.b, Some(&body)).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the name is not free: {answer}"
    );
}

/// The agent named `name` as the upstream holds it (read past the proxy).
async fn upstream_agent(stack: &Stack, name: &str) -> Value {
    reqwest::Client::new()
        .get(format!(
            "{}{PROJECT}/agents/{name}?{API_VERSION}",
            stack.mock().endpoint()
        ))
        .header("api-key", UPSTREAM_KEY)
        .send()
        .await
        .expect("mock reachable")
        .json()
        .await
        .expect("an agent")
}
