//! The mock over HTTP: it resolves paths as Azure's front ends do, routes in any case, and makes
//! every object kind and reference observable.

use serde_json::{Value, json};

use super::{MockAzure, MockConfig, UsageLedger, UsageTotals};
use crate::stack::raw_request;

const PROJECT: &str = "/api/projects/hack";

struct Client {
    mock: MockAzure,
}

impl Client {
    async fn start() -> Self {
        Self {
            mock: MockAzure::start(MockConfig::default()).await.unwrap(),
        }
    }

    /// `method target` with an optional JSON body, sent byte for byte; (status, JSON body).
    async fn call(&self, method: &str, target: &str, body: Option<Value>) -> (u16, Value) {
        let headers: &[(&str, &str)] = if body.is_some() {
            &[("content-type", "application/json")]
        } else {
            &[]
        };
        let reply = raw_request(
            self.mock.addr,
            method,
            target,
            headers,
            body.map(|b| b.to_string().into_bytes()),
        )
        .await;
        (reply.status.as_u16(), reply.json())
    }

    async fn create(&self, path: &str, body: Value) -> Value {
        let (status, object) = self
            .call("POST", &format!("{PROJECT}{path}"), Some(body))
            .await;
        assert_eq!(status, 200, "POST {path}: {object}");
        object
    }

    async fn upload(&self, name: &str, content: &str) -> String {
        let form = reqwest::multipart::Form::new()
            .text("purpose", "assistants")
            .part(
                "file",
                reqwest::multipart::Part::bytes(content.as_bytes().to_vec())
                    .file_name(name.to_string()),
            );
        let file: Value = reqwest::Client::new()
            .post(format!("{}{PROJECT}/files", self.mock.endpoint()))
            .multipart(form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(file["filename"], name);
        file["id"].as_str().unwrap().to_string()
    }
}

fn id(object: &Value) -> String {
    object["id"].as_str().unwrap().to_string()
}

fn texts(messages: &Value) -> String {
    messages.to_string()
}

#[tokio::test]
async fn dot_segments_reach_the_object_they_resolve_to() {
    let c = Client::start().await;
    let mine = id(&c.create("/assistants", json!({"name": "mine"})).await);
    let theirs = id(&c
        .create(
            "/assistants",
            json!({"instructions": "secret", "name": "theirs"}),
        )
        .await);
    for dots in ["..", "%2e%2e", "%2E%2e", ".%2e", "%2e."] {
        let (status, object) = c
            .call(
                "GET",
                &format!("{PROJECT}/assistants/{mine}/{dots}/{theirs}"),
                None,
            )
            .await;
        assert_eq!(
            (status, object["instructions"].as_str()),
            (200, Some("secret")),
            "{dots}"
        );
    }
    let (status, list) = c
        .call("GET", &format!("{PROJECT}/assistants/{mine}/.."), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        2,
        "the unfiltered list"
    );
    let (status, object) = c
        .call(
            "GET",
            &format!("{PROJECT}/threads/runs/../../assistants/{theirs}"),
            None,
        )
        .await;
    assert_eq!(
        (status, object["id"].as_str()),
        (200, Some(theirs.as_str()))
    );
    let (status, _) = c
        .call("GET", &format!("{PROJECT}//assistants%2f{theirs}"), None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = c
        .call("GET", &format!("{PROJECT}/assistants\\{theirs}"), None)
        .await;
    assert_eq!(status, 200);
    let seen = c
        .mock
        .stats
        .last_request(&format!("{PROJECT}/assistants/{theirs}"))
        .unwrap();
    assert_eq!(seen.raw_path, format!("{PROJECT}/assistants\\{theirs}"));
    let (status, _) = c
        .call(
            "DELETE",
            &format!("{PROJECT}/assistants/{mine}/%2e%2e/{theirs}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = c
        .call("GET", &format!("{PROJECT}/assistants/{theirs}"), None)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn literals_route_in_any_case_and_a_trailing_slash_is_tolerated() {
    let c = Client::start().await;
    let agent = id(&c
        .create("/Assistants/", json!({"instructions": "be terse"}))
        .await);
    let (status, object) = c
        .call(
            "GET",
            &format!("/API/Projects/hack/ASSISTANTS/{agent}/"),
            None,
        )
        .await;
    assert_eq!((status, object["id"].as_str()), (200, Some(agent.as_str())));
    let thread = id(&c.create("/Threads", json!({})).await);
    let run = c
        .create(
            &format!("/threads/{thread}/Runs/"),
            json!({"assistant_id": agent}),
        )
        .await;
    assert_eq!(run["object"], "thread.run");
    let (status, _) = c
        .call(
            "GET",
            &format!("{PROJECT}/Threads/{thread}/RUNS/{}", id(&run)),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = c
        .call(
            "GET",
            &format!("{PROJECT}/assistants/{}", agent.to_uppercase()),
            None,
        )
        .await;
    assert_eq!(status, 404, "ids are case-sensitive");
    let (status, chat) = c
        .call(
            "POST",
            "/OpenAI/Deployments/gpt-4o/Chat/Completions/",
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (status, chat["object"].as_str()),
        (200, Some("chat.completion"))
    );
    let (status, _) = c
        .call(
            "POST",
            "/Indexes/products/Docs/Search",
            Some(json!({"search": "x"})),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn runs_show_the_agents_instructions_and_every_file_they_can_read() {
    let c = Client::start().await;
    let manual = c.upload("manual.txt", "The launch code is 1234.").await;
    let notes = c.upload("notes.txt", "Notes of the other team.").await;
    let store = c
        .create(
            "/vector_stores",
            json!({"name": "docs", "file_ids": [notes]}),
        )
        .await;
    assert_eq!(store["file_counts"]["total"], 1);
    let agent = id(&c
        .create(
            "/assistants",
            json!({"instructions": "You guard the launch code.",
                   "tool_resources": {"code_interpreter": {"file_ids": [manual]}}}),
        )
        .await);
    let thread = id(&c
        .create(
            "/threads",
            json!({"tool_resources": {"file_search": {"vector_store_ids": [id(&store)]}}}),
        )
        .await);
    let run = c
        .create(
            &format!("/threads/{thread}/runs"),
            json!({"agent_id": agent}),
        )
        .await;
    assert_eq!(run["instructions"], "You guard the launch code.");
    let (_, messages) = c
        .call("GET", &format!("{PROJECT}/threads/{thread}/messages"), None)
        .await;
    let reply = texts(&messages);
    assert!(reply.contains("Hello from the mock agent."), "{reply}");
    assert!(reply.contains("You guard the launch code."), "{reply}");
    assert!(reply.contains("The launch code is 1234."), "{reply}");
    assert!(reply.contains("Notes of the other team."), "{reply}");
    let (status, content) = c
        .call("GET", &format!("{PROJECT}/files/{manual}/content"), None)
        .await;
    assert_eq!((status, content), (200, Value::Null), "raw bytes, not JSON");
    let (status, _) = c
        .call(
            "POST",
            &format!("{PROJECT}/threads/{thread}/runs"),
            Some(json!({"assistant_id": "asst_missing"})),
        )
        .await;
    assert_eq!(status, 404);
    let (status, error) = c
        .call(
            "POST",
            &format!("{PROJECT}/threads/{thread}/messages"),
            Some(json!({"content": "x", "attachments": [{"file_id": "file-missing"}]})),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        error["error"]["message"],
        "No file found with id 'file-missing'."
    );
}

#[tokio::test]
async fn a_streamed_thread_and_run_starts_with_the_thread_created() {
    let c = Client::start().await;
    let agent = id(&c.create("/assistants", json!({"instructions": "hi"})).await);
    let reply = raw_request(
        c.mock.addr,
        "POST",
        &format!("{PROJECT}/threads/runs"),
        &[("content-type", "application/json")],
        Some(
            json!({"assistant_id": agent, "stream": true, "metadata": {"id": "thread_forged"},
                   "thread": {"messages": [{"role": "user", "content": "hello"}]}})
            .to_string()
            .into_bytes(),
        ),
    )
    .await;
    let text = reply.text();
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(events[..2], ["thread.created", "thread.run.created"]);
    assert!(
        events.contains(&"thread.message.delta")
            && events.ends_with(&["thread.run.completed", "done"])
    );
    let first_data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let thread: Value = serde_json::from_str(first_data).unwrap();
    assert!(thread["id"].as_str().unwrap().starts_with("thread_"));
    assert!(
        first_data.starts_with(r#"{"metadata":"#),
        "the client's metadata comes before the real id: {first_data}"
    );
    let (status, _) = c
        .call("GET", &format!("{PROJECT}/threads/{}", id(&thread)), None)
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn agents_are_named_by_their_creator_and_reposting_a_name_adds_a_version() {
    let c = Client::start().await;
    let body = json!({"name": "helper", "definition": {"kind": "prompt", "model": "gpt-4o", "instructions": "v1"}});
    let agent = c.create("/agents", body).await;
    assert_eq!(agent["id"], "helper");
    let again = c
        .create(
            "/agents",
            json!({"name": "helper", "definition": {"instructions": "hijacked"}}),
        )
        .await;
    assert_eq!(again["versions"]["latest"]["version"], "2");
    let (_, agent) = c
        .call("GET", &format!("{PROJECT}/agents/helper"), None)
        .await;
    assert_eq!(
        agent["versions"]["latest"]["definition"]["instructions"],
        "hijacked"
    );
    let version = c
        .create(
            "/agents/helper/versions",
            json!({"definition": {"instructions": "v3"}}),
        )
        .await;
    assert_eq!(version["version"], "3");
    let (_, versions) = c
        .call("GET", &format!("{PROJECT}/agents/helper/versions"), None)
        .await;
    assert_eq!(versions["data"].as_array().unwrap().len(), 3);
    let thread = id(&c.create("/threads", json!({})).await);
    let run = c
        .create(
            &format!("/threads/{thread}/runs"),
            json!({"agent_id": "helper"}),
        )
        .await;
    assert_eq!(run["instructions"], "v3");
    let (status, _) = c
        .call("DELETE", &format!("{PROJECT}/agents/helper"), None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = c
        .call("GET", &format!("{PROJECT}/agents/helper"), None)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn vector_stores_take_files_one_by_one_and_in_batches() {
    let c = Client::start().await;
    let (a, b, d) = (
        c.upload("a.txt", "a").await,
        c.upload("b.txt", "b").await,
        c.upload("d.txt", "d").await,
    );
    let store = id(&c.create("/vector_stores", json!({"file_ids": [a]})).await);
    let added = c
        .create(
            &format!("/vector_stores/{store}/files"),
            json!({"file_id": b}),
        )
        .await;
    assert_eq!(
        (added["id"].as_str(), added["vector_store_id"].as_str()),
        (Some(b.as_str()), Some(store.as_str()))
    );
    let batch = c
        .create(
            &format!("/vector_stores/{store}/file_batches"),
            json!({"file_ids": [d]}),
        )
        .await;
    assert!(id(&batch).starts_with("vsfb_"));
    let (_, files) = c
        .call(
            "GET",
            &format!("{PROJECT}/vector_stores/{store}/files?order=asc"),
            None,
        )
        .await;
    let ids: Vec<&str> = files["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [a.as_str(), b.as_str(), d.as_str()]);
    let (_, batch_files) = c
        .call(
            "GET",
            &format!(
                "{PROJECT}/vector_stores/{store}/file_batches/{}/files",
                id(&batch)
            ),
            None,
        )
        .await;
    assert_eq!(batch_files["data"][0]["id"], d.as_str());
    let (status, _) = c
        .call(
            "POST",
            &format!("{PROJECT}/vector_stores/{store}/files"),
            Some(json!({"file_id": "file-missing"})),
        )
        .await;
    assert_eq!(status, 404);
    let (_, listed) = c
        .call("GET", &format!("{PROJECT}/files?purpose=assistants"), None)
        .await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 3);
    let (_, none) = c
        .call("GET", &format!("{PROJECT}/files?purpose=batch"), None)
        .await;
    assert_eq!(none["data"], json!([]));
}

#[tokio::test]
async fn model_responses_are_stored_unless_asked_not_to_and_continue_with_earlier_input() {
    let c = Client::start().await;
    let (status, first) = c
        .call(
            "POST",
            "/openai/v1/responses",
            Some(json!({"model": "gpt-4o", "input": "my secret plan"})),
        )
        .await;
    assert_eq!(status, 200);
    let first_id = id(&first);
    assert!(first_id.starts_with("resp_"));
    let (status, got) = c
        .call("GET", &format!("/openai/v1/responses/{first_id}"), None)
        .await;
    assert_eq!((status, &got["output"]), (200, &first["output"]));
    let (status, next) = c
        .call(
            "POST",
            "/openai/v1/responses",
            Some(json!({"model": "gpt-4o", "input": "go on", "previous_response_id": first_id})),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        next.to_string().contains("Earlier input: my secret plan"),
        "{next}"
    );
    let (_, items) = c
        .call(
            "GET",
            &format!("/openai/v1/responses/{first_id}/input_items"),
            None,
        )
        .await;
    assert_eq!(items["data"][0]["content"][0]["text"], "my secret plan");
    let (status, _) = c
        .call(
            "POST",
            &format!("/openai/v1/responses/{first_id}/cancel"),
            None,
        )
        .await;
    assert_eq!(status, 400, "only background responses can be cancelled");

    let (_, unstored) = c
        .call(
            "POST",
            "/openai/v1/responses",
            Some(json!({"model": "gpt-4o", "input": "x", "store": false})),
        )
        .await;
    let (status, _) = c
        .call(
            "GET",
            &format!("/openai/v1/responses/{}", id(&unstored)),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = c
        .call(
            "POST",
            "/openai/v1/responses",
            Some(json!({"model": "gpt-4o", "input": "x", "previous_response_id": id(&unstored)})),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = c
        .call("DELETE", &format!("/openai/v1/responses/{first_id}"), None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = c
        .call("GET", &format!("/openai/v1/responses/{first_id}"), None)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn streamed_responses_send_created_deltas_and_completed_with_usage() {
    let c = Client::start().await;
    let reply = raw_request(
        c.mock.addr,
        "POST",
        "/openai/v1/responses",
        &[],
        Some(
            json!({"model": "gpt-4o", "input": "hi", "stream": true})
                .to_string()
                .into_bytes(),
        ),
    )
    .await;
    let text = reply.text();
    let data: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(data[0]["type"], "response.created");
    let id = data[0]["response"]["id"].as_str().unwrap();
    assert!(
        data.iter()
            .any(|d| d["type"] == "response.output_text.delta")
    );
    let last = data.last().unwrap();
    assert_eq!(last["type"], "response.completed");
    let usage = &last["response"]["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["input_tokens"].as_u64().unwrap() + usage["output_tokens"].as_u64().unwrap()
    );
    assert_eq!(
        c.mock.stats.usage_total().total_tokens,
        usage["total_tokens"].as_u64().unwrap()
    );
    let (status, _) = c
        .call("GET", &format!("/openai/v1/responses/{id}"), None)
        .await;
    assert_eq!(status, 200, "a streamed response is stored too");
}

#[tokio::test]
async fn agent_responses_see_the_agent_the_conversation_and_the_files() {
    let c = Client::start().await;
    c.create(
        "/agents",
        json!({"name": "guide", "definition": {"instructions": "Speak like a pirate."}}),
    )
    .await;
    let file = c.upload("map.txt", "X marks the spot.").await;
    let conversation = c
        .create(
            "/openai/v1/conversations",
            json!({"items": [{"role": "user", "content": "earlier words"}]}),
        )
        .await;
    let conversation = id(&conversation);
    let response = c
        .create(
            "/openai/v1/responses",
            json!({"agent": {"type": "agent_reference", "name": "guide"}, "conversation": {"id": conversation},
                   "input": [{"role": "user", "content": [{"type": "input_file", "file_id": file}]}]}),
        )
        .await;
    let text = response.to_string();
    for expected in ["Speak like a pirate.", "earlier words", "X marks the spot."] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    let (_, items) = c
        .call(
            "GET",
            &format!("{PROJECT}/openai/v1/conversations/{conversation}/items?order=asc"),
            None,
        )
        .await;
    assert_eq!(
        items["data"].as_array().unwrap().len(),
        3,
        "earlier, input, output"
    );
    let (status, _) = c
        .call(
            "POST",
            &format!("{PROJECT}/openai/v1/responses"),
            Some(json!({"conversation": "conv_missing", "input": "x"})),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = c
        .call(
            "DELETE",
            &format!("{PROJECT}/openai/v1/conversations/{conversation}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = c
        .call(
            "GET",
            &format!("{PROJECT}/openai/v1/conversations/{conversation}/items"),
            None,
        )
        .await;
    assert_eq!(status, 404);
}

/// `data:` values of an event stream, in order (`[DONE]` as a string).
fn sse_data(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or_else(|_| json!(d)))
        .collect()
}

/// The totals one `usage` object (either shape) adds to the ledger.
fn totals_of(usage: &Value) -> UsageTotals {
    let count = |a: &str, b: &str| usage[a].as_u64().or(usage[b].as_u64()).unwrap_or(0);
    let detail = |a: &str, b: &str, field: &str| {
        usage[a][field]
            .as_u64()
            .or(usage[b][field].as_u64())
            .unwrap_or(0)
    };
    UsageTotals {
        requests: 1,
        prompt_tokens: count("prompt_tokens", "input_tokens"),
        completion_tokens: count("completion_tokens", "output_tokens"),
        total_tokens: usage["total_tokens"].as_u64().unwrap(),
        cached_tokens: detail(
            "prompt_tokens_details",
            "input_tokens_details",
            "cached_tokens",
        ),
        reasoning_tokens: detail(
            "completion_tokens_details",
            "output_tokens_details",
            "reasoning_tokens",
        ),
    }
}

fn sum(totals: impl IntoIterator<Item = UsageTotals>) -> UsageTotals {
    totals
        .into_iter()
        .fold(UsageTotals::default(), |a, b| UsageTotals {
            requests: a.requests + b.requests,
            prompt_tokens: a.prompt_tokens + b.prompt_tokens,
            completion_tokens: a.completion_tokens + b.completion_tokens,
            total_tokens: a.total_tokens + b.total_tokens,
            cached_tokens: a.cached_tokens + b.cached_tokens,
            reasoning_tokens: a.reasoning_tokens + b.reasoning_tokens,
        })
}

impl Client {
    async fn post(&self, target: &str, body: Value) -> crate::stack::RawReply {
        raw_request(
            self.mock.addr,
            "POST",
            target,
            &[("content-type", "application/json")],
            Some(body.to_string().into_bytes()),
        )
        .await
    }
}

#[tokio::test]
async fn json_answers_report_varying_usage_and_the_ledger_adds_it_up() {
    let c = Client::start().await;
    let mut chat = Vec::new();
    for i in 0..8 {
        let body = json!({"messages": [{"role": "user", "content": "hi ".repeat(i * 5)}]});
        let reply = c
            .post("/openai/deployments/gpt-4o/chat/completions", body)
            .await;
        let usage = reply.json()["usage"].clone();
        assert_eq!(
            usage["total_tokens"].as_u64().unwrap(),
            usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap(),
            "{usage}"
        );
        assert!(usage["prompt_tokens_details"]["cached_tokens"].is_u64());
        assert!(usage["completion_tokens_details"]["reasoning_tokens"].is_u64());
        chat.push(totals_of(&usage));
    }
    let distinct: std::collections::HashSet<_> = chat.iter().map(|t| t.total_tokens).collect();
    assert!(distinct.len() > 4, "numbers vary: {chat:?}");
    assert!(chat.iter().any(|t| t.cached_tokens > 0), "{chat:?}");
    assert!(chat.iter().any(|t| t.reasoning_tokens > 0), "{chat:?}");
    assert!(
        chat.iter()
            .any(|t| t.cached_tokens == 0 && t.reasoning_tokens == 0)
    );

    let v1 = c
        .post(
            "/openai/v1/chat/completions",
            json!({"model": "gpt-4o-mini", "messages": []}),
        )
        .await
        .json();
    let completion = c
        .post(
            "/openai/deployments/instruct/completions",
            json!({"prompt": "Say hi"}),
        )
        .await
        .json();
    assert_eq!(completion["object"], "text_completion");
    let embeddings = c
        .post(
            "/openai/deployments/embed/embeddings",
            json!({"input": ["a", "b"]}),
        )
        .await
        .json();
    let usage = &embeddings["usage"];
    assert_eq!(usage.as_object().unwrap().len(), 2, "{usage}");
    assert_eq!(usage["prompt_tokens"], usage["total_tokens"]);

    let stats = &c.mock.stats;
    assert_eq!(stats.usage_for("gpt-4o"), sum(chat.iter().copied()));
    assert_eq!(stats.usage_for("gpt-4o-mini"), totals_of(&v1["usage"]));
    assert_eq!(stats.usage_for("instruct"), totals_of(&completion["usage"]));
    assert_eq!(stats.usage_for("embed"), totals_of(&embeddings["usage"]));
    assert_eq!(stats.usage_for("nothing"), UsageTotals::default());
    let ledger = stats.usage_ledger();
    assert_eq!(ledger.total, sum(ledger.by_model.values().copied()));
    assert_eq!(ledger.total.requests, 11);

    let requests = stats.total();
    let (status, over_http) = c.call("GET", "/_mock/usage", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_value::<UsageLedger>(over_http.clone()).unwrap(),
        ledger
    );
    assert_eq!(
        over_http["by_model"]["embed"]["prompt_tokens"],
        embeddings["usage"]["prompt_tokens"]
    );
    assert_eq!(
        stats.total(),
        requests,
        "reading the ledger is not a request"
    );
}

#[tokio::test]
async fn streams_carry_usage_only_when_asked_like_azure() {
    let c = Client::start().await;
    for (path, object) in [
        (
            "/openai/deployments/gpt-4o/chat/completions",
            "chat.completion.chunk",
        ),
        ("/openai/deployments/gpt-4o/completions", "text_completion"),
    ] {
        let before = c.mock.stats.usage_total();
        let body = json!({"messages": [{"role": "user", "content": "Hi"}], "prompt": "Hi", "stream": true});
        let text = c.post(path, body.clone()).await.text();
        assert!(!text.contains("usage"), "{text}");
        let data = sse_data(&text);
        assert_eq!(data[0]["choices"], json!([]));
        assert!(data[0]["prompt_filter_results"].is_array());
        assert_eq!(data[1]["object"], object);
        assert_eq!(data.last().unwrap(), "[DONE]");
        assert_eq!(c.mock.stats.usage_total(), before, "nothing reported");

        let mut body = body;
        body["stream_options"] = json!({"include_usage": true});
        let text = c.post(path, body).await.text();
        let data = sse_data(&text);
        let (done, data) = data.split_last().unwrap();
        let (last, chunks) = data.split_last().unwrap();
        assert_eq!(done, "[DONE]");
        assert_eq!(chunks[0]["prompt_filter_results"][0]["prompt_index"], 0);
        for chunk in chunks {
            assert!(
                chunk["usage"].is_null() && chunk.get("usage").is_some(),
                "{chunk}"
            );
            assert!(chunk["choices"].is_array());
        }
        assert_eq!(
            chunks.last().unwrap()["choices"][0]["finish_reason"],
            "stop"
        );
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["object"], object);
        let reported = totals_of(&last["usage"]);
        assert!(reported.total_tokens > 0);
        assert_eq!(
            c.mock.stats.usage_total(),
            sum([before, reported]),
            "{path}"
        );
    }
}

/// Azure streams generated chunks as they are generated, and the usage chunk as soon as the
/// finish chunk: a proxy that asks for usage must not make a stream look longer.
#[tokio::test]
async fn the_usage_chunk_follows_the_finish_chunk_without_the_generation_delay() {
    // Long enough that the client's own scheduling (chunks are timed where they are read) cannot
    // pass for either gap below.
    let delay = std::time::Duration::from_millis(400);
    let mock = MockAzure::start(MockConfig {
        stream_chunks: 2,
        stream_chunk_delay: delay,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let response = reqwest::Client::new()
        .post(format!(
            "{}/openai/deployments/gpt-4o/chat/completions",
            mock.endpoint()
        ))
        .json(
            &json!({"messages": [{"role": "user", "content": "Hi"}], "stream": true,
                      "stream_options": {"include_usage": true}}),
        )
        .send()
        .await
        .unwrap();
    // Each data line and when it arrived.
    let mut lines: Vec<(std::time::Instant, Value)> = Vec::new();
    let mut pending = String::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = futures_util::StreamExt::next(&mut body).await {
        let at = std::time::Instant::now();
        pending.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            lines.extend(sse_data(&line).into_iter().map(|data| (at, data)));
        }
    }
    let at = |pick: &dyn Fn(&Value) -> bool| lines.iter().position(|(_, d)| pick(d)).unwrap();
    let finish = at(&|d| d["choices"][0]["finish_reason"] == "stop");
    let usage = at(&|d| d["usage"].is_object());
    assert_eq!(usage, finish + 1, "{lines:?}");
    // The finish chunk was generated after the content before it…
    assert!(lines[finish].0 - lines[finish - 1].0 >= delay / 2);
    // …the usage chunk was not.
    assert!(
        lines[usage].0 - lines[finish].0 < delay / 2,
        "the usage chunk came {:?} after the finish chunk",
        lines[usage].0 - lines[finish].0
    );
}

#[tokio::test]
async fn responses_report_usage_stored_or_not_as_json_and_as_a_stream() {
    let c = Client::start().await;
    let mut reported = Vec::new();
    for store in [true, false] {
        let response = c
            .post(
                "/openai/v1/responses",
                json!({"model": "gpt-4.1", "input": "hello there", "store": store}),
            )
            .await
            .json();
        let usage = &response["usage"];
        assert!(
            usage["input_tokens_details"]["cached_tokens"].is_u64(),
            "{usage}"
        );
        assert!(usage["output_tokens_details"]["reasoning_tokens"].is_u64());
        reported.push(totals_of(usage));

        let text = c
            .post(
                "/openai/v1/responses",
                json!({"model": "gpt-4.1", "input": "hi", "store": store, "stream": true}),
            )
            .await
            .text();
        let data = sse_data(&text);
        assert!(data[0]["response"]["usage"].is_null());
        let completed = data.last().unwrap();
        assert_eq!(completed["type"], "response.completed");
        reported.push(totals_of(&completed["response"]["usage"]));
        // Reading a stored response again reports nothing new.
        if store {
            let id = completed["response"]["id"].as_str().unwrap();
            let (status, again) = c
                .call("GET", &format!("/openai/v1/responses/{id}"), None)
                .await;
            assert_eq!(
                (status, &again["usage"]),
                (200, &completed["response"]["usage"])
            );
        }
    }
    assert_ne!(reported[0], reported[2], "numbers vary");
    assert_eq!(c.mock.stats.usage_for("gpt-4.1"), sum(reported));
}

#[tokio::test]
async fn a_runs_usage_is_reported_when_completed_and_counted_once() {
    let c = Client::start().await;
    let agent = id(&c
        .create(
            "/assistants",
            json!({"model": "gpt-4o", "instructions": "be brief"}),
        )
        .await);
    let thread = id(&c.create("/threads", json!({})).await);
    let runs = format!("{PROJECT}/threads/{thread}/runs");
    let queued = c
        .create(
            &format!("/threads/{thread}/runs"),
            json!({"assistant_id": agent}),
        )
        .await;
    assert_eq!(queued["status"], "queued");
    assert!(queued["usage"].is_null(), "{queued}");
    assert_eq!(c.mock.stats.usage_total(), UsageTotals::default());
    let (_, run) = c
        .call("GET", &format!("{runs}/{}", id(&queued)), None)
        .await;
    assert_eq!(run["status"], "completed");
    let first = totals_of(&run["usage"]);
    assert!(first.total_tokens > 0);
    let (_, again) = c
        .call("GET", &format!("{runs}/{}", id(&queued)), None)
        .await;
    assert_eq!(again["usage"], run["usage"]);
    let (_, list) = c.call("GET", &runs, None).await;
    assert_eq!(list["data"][0]["usage"], run["usage"]);
    assert_eq!(
        c.mock.stats.usage_for("gpt-4o"),
        first,
        "read three times, counted once"
    );

    let text = c
        .post(
            &format!("{PROJECT}/threads/runs"),
            json!({"assistant_id": agent, "stream": true,
                   "thread": {"messages": [{"role": "user", "content": "hi"}]}}),
        )
        .await
        .text();
    let events: Vec<(&str, Value)> = text
        .split("\n\n")
        .filter_map(|e| {
            let (name, data) = e.strip_prefix("event: ")?.split_once("\ndata: ")?;
            Some((name, serde_json::from_str(data).unwrap_or(Value::Null)))
        })
        .collect();
    for (name, data) in &events {
        if name.starts_with("thread.run.") && !name.starts_with("thread.run.step") {
            assert_eq!(
                data["usage"].is_null(),
                *name != "thread.run.completed",
                "{name}: {data}"
            );
        }
    }
    let (_, completed) = events
        .iter()
        .find(|(name, _)| *name == "thread.run.completed")
        .unwrap();
    let second = totals_of(&completed["usage"]);
    assert_ne!(first, second, "numbers vary");
    let (_, read) = c
        .call(
            "GET",
            &format!(
                "{PROJECT}/threads/{}/runs/{}",
                completed["thread_id"].as_str().unwrap(),
                id(completed)
            ),
            None,
        )
        .await;
    assert_eq!(read["usage"], completed["usage"]);
    assert_eq!(c.mock.stats.usage_for("gpt-4o"), sum([first, second]));

    c.create(
        "/agents",
        json!({"name": "guide", "definition": {"model": "gpt-4o-mini", "instructions": "x"}}),
    )
    .await;
    let response = c
        .create(
            "/openai/v1/responses",
            json!({"agent": {"type": "agent_reference", "name": "guide"}, "input": "hi"}),
        )
        .await;
    assert_eq!(
        c.mock.stats.usage_for("gpt-4o-mini"),
        totals_of(&response["usage"])
    );
    assert_eq!(c.mock.stats.usage_total().requests, 3);
}
