//! `aiproxy-pgo-workload`: the training run of the edge's profile-guided build
//! (`scripts/build-edge-pgo.sh`; not the shipped build, see docs/benchmarks.md). Starts the mock upstream in-process, the control plane (the
//! binary beside this one, or in `$AIPROXY_BIN_DIR`) and the given edge binary, built with
//! `-Cprofile-generate`, with `LLVM_PROFILE_FILE` pointing into `--profile-dir`. Then it sends what
//! an event's attendees send, most of it on the paths that carry most of a gateway's calls, on an
//! event with a token cap and a daily request cap, to an edge with one runtime worker (as on its
//! one vCPU in production):
//!
//! - non-streamed chat completions at 32 connections (the bulk), and embeddings;
//! - streamed chat completions (an eighth as many, chunks 10 ms apart), 50 at a time, half of
//!   them asking for the usage chunk;
//! - Azure OpenAI v1 responses, and the Foundry Agent Service (assistants, threads, messages,
//!   runs, deletes) for two attendees, with the other attendee's objects refused;
//! - refusals, a few percent: an unknown key, a `max_tokens` above the cap, an unknown deployment,
//!   a `..` path.
//!
//! Every answer is checked, the refusals only for being refused (a profile taken from calls that
//! went wrong would optimise the wrong code). Then the edge is stopped with SIGTERM, so that it writes its profile on the way out, and
//! the profile is checked to be there. Loopback only, bounded in calls.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use aiproxy_loadtest::load::{self, LoadSpec};
use aiproxy_loadtest::mock::MockConfig;
use aiproxy_loadtest::stack::{
    API_VERSION, ControlPlane, Edge, UPSTREAM_KEY, keyed_mock, model_resource,
};
use anyhow::{Context, ensure};
use bytes::Bytes;
use clap::Parser;
use futures_util::future::join_all;
use http::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "The training workload of the edge's profile-guided build (loopback only)")]
struct Args {
    /// The edge binary: instrumented (`-Cprofile-generate`) for a profile.
    #[arg(long)]
    edge: PathBuf,
    /// Where the edge writes its profile (`*.profraw`); created if missing, and checked to hold
    /// a profile after the run. Without it, the workload runs as a check of the edge's answers
    /// alone (the tests run it so against the current edge).
    #[arg(long)]
    profile_dir: Option<PathBuf>,
    /// Non-streamed chat calls; the other kinds of call are sized from it.
    #[arg(long, default_value_t = 20_000)]
    chat_calls: usize,
}

const AGENTS_API: &str = "api-version=2025-05-15-preview";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.chat_calls >= 100, "--chat-calls must be at least 100");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let profile_dir = match &args.profile_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            let dir = std::fs::canonicalize(dir)?;
            // Otherwise an earlier run's profile would pass for this one's.
            ensure!(
                profiles_in(&dir)? == 0,
                "{} already holds profiles: give an empty folder",
                dir.display()
            );
            Some(dir)
        }
        None => None,
    };
    let started = Instant::now();
    let mock = keyed_mock(MockConfig {
        // Chunks 10 ms apart, as a model's tokens come: the edge waits between them.
        stream_chunk_delay: Duration::from_millis(10),
        ..MockConfig::default()
    })
    .await;
    let cp = ControlPlane::start().await;
    let admin = cp.admin();
    let base = mock.endpoint();
    let model = admin
        .create_resource(model_resource("gpt-4o", &base, ""))
        .await;
    let agents = admin
        .create_resource(
            json!({"friendly_name": "Agents", "deployment_name": "agents",
            "model_type": "Foundry_Agent", "endpoint_url": format!("{base}/api/projects/hack"),
            "key": UPSTREAM_KEY}),
        )
        .await;
    let settings = json!({"max_token_cap": 4096, "daily_request_cap": 1_000_000_000});
    let event = admin.create_open_event(&[model, agents], settings).await;
    let keys = [
        admin.add_attendee(&event, "attendee-1").await,
        admin.add_attendee(&event, "attendee-2").await,
    ];
    let profile_file = match &profile_dir {
        Some(dir) => Some(
            dir.join("edge-%p.profraw")
                .into_os_string()
                .into_string()
                .ok()
                .context("profile dir is not UTF-8")?,
        ),
        None => None,
    };
    // One runtime worker, as the edge runs in production (one vCPU per replica, infra's
    // region.bicep) and in the side-by-side benchmark (pinned to one core): with two, the
    // profile would favour the code of work stealing and cross-thread wake-ups over the single
    // worker's paths.
    let mut env = vec![("TOKIO_WORKER_THREADS", "1")];
    env.extend(
        profile_file
            .iter()
            .map(|f| ("LLVM_PROFILE_FILE", f.as_str())),
    );
    let mut edge = Edge::start_binary(&cp, &args.edge, &env).await;
    let api = edge.api_base();
    let chat_path =
        format!("/openai/deployments/gpt-4o/chat/completions?api-version={API_VERSION}");
    // The attendees' keys reach the edge with the catalog.
    let probe = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8});
    let deadline = Instant::now() + Duration::from_secs(30);
    while edge.chat(&keys[1], "gpt-4o", &probe).await.status() != StatusCode::OK {
        ensure!(Instant::now() < deadline, "the attendee key never worked");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let n = args.chat_calls;
    let chat = Bytes::from_static(
        br#"{"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello in three languages."}],"max_tokens":64,"temperature":0.2}"#,
    );
    bulk(&api, &chat_path, &keys[0], chat.clone(), n, 32, true).await?;
    let embeddings = Bytes::from_static(br#"{"input":["Say hello in three languages."]}"#);
    let embeddings_path =
        format!("/openai/deployments/gpt-4o/embeddings?api-version={API_VERSION}");
    bulk(
        &api,
        &embeddings_path,
        &keys[1],
        embeddings,
        n / 10,
        8,
        true,
    )
    .await?;
    streamed(&api, &chat_path, &keys, n / 8).await?;
    responses(&api, &keys[0], n / 100).await?;
    agents_round_trips(&api, &keys, n / 200).await?;
    refusals(&api, &chat_path, &keys[0], n / 50).await?;

    edge.terminate();
    let status = edge
        .wait_exit(Duration::from_secs(30))
        .await
        .context("the edge did not exit within 30 s of SIGTERM")?;
    ensure!(status.success(), "the edge exited with {status}");
    let Some(profile_dir) = profile_dir else {
        println!("workload done in {:.1} s", started.elapsed().as_secs_f64());
        return Ok(());
    };
    let written = profiles_in(&profile_dir)?;
    ensure!(
        written > 0,
        "the edge wrote no profile into {} (was it built with -Cprofile-generate?)",
        profile_dir.display()
    );
    println!(
        "workload done in {:.1} s: {written} profile file(s) in {}",
        started.elapsed().as_secs_f64(),
        profile_dir.display()
    );
    Ok(())
}

/// The raw profiles (`*.profraw`) in `dir`.
fn profiles_in(dir: &std::path::Path) -> std::io::Result<usize> {
    Ok(std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "profraw"))
        .count())
}

/// `total` POSTs of `body` at `concurrency` connections; every one must answer 2xx (`ok`), or
/// every one must be refused.
async fn bulk(
    api: &str,
    path: &str,
    key: &str,
    body: Bytes,
    total: usize,
    concurrency: usize,
    ok: bool,
) -> anyhow::Result<()> {
    let mut headers = HeaderMap::new();
    headers.insert("api-key", HeaderValue::from_str(key)?);
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let result = load::run(LoadSpec {
        uri: format!("{api}{path}").parse()?,
        headers,
        body,
        concurrency,
        total,
    })
    .await;
    let expected = if ok { result.ok } else { result.failed };
    ensure!(
        expected == total,
        "{path}: {} of {total} calls answered 2xx, expected {}",
        result.ok,
        if ok { total } else { 0 }
    );
    Ok(())
}

/// `calls` streamed chat calls, 50 at a time on keep-alive connections, each read to the end and
/// checked to end with `data: [DONE]`.
async fn streamed(api: &str, chat_path: &str, keys: &[String], calls: usize) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let url = format!("{api}{chat_path}");
    let workers = (0..50).map(|worker| {
        let (http, url, key) = (http.clone(), url.clone(), keys[worker % keys.len()].clone());
        async move {
            for call in (worker..calls).step_by(50) {
                let mut body = json!({"messages": [{"role": "user", "content": "Say hello."}],
                    "max_tokens": 64, "stream": true});
                if call % 2 == 0 {
                    body["stream_options"] = json!({"include_usage": true});
                }
                let response = http
                    .post(&url)
                    .header("api-key", &key)
                    .json(&body)
                    .send()
                    .await?;
                ensure!(
                    response.status() == StatusCode::OK,
                    "streamed call: {}",
                    response.status()
                );
                let text = response.text().await?;
                ensure!(
                    text.trim_end().ends_with("data: [DONE]"),
                    "a stream did not end with [DONE]"
                );
            }
            anyhow::Ok(())
        }
    });
    join_all(workers).await.into_iter().collect()
}

/// One JSON call through the edge; its status and body.
async fn call(
    http: &reqwest::Client,
    api: &str,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<(StatusCode, Value)> {
    let mut request = http
        .request(method, format!("{api}{path}"))
        .header("authorization", format!("Bearer {key}"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

fn expect(result: (StatusCode, Value), status: StatusCode, what: &str) -> anyhow::Result<Value> {
    ensure!(result.0 == status, "{what}: {} {}", result.0, result.1);
    Ok(result.1)
}

/// Azure OpenAI v1 responses: created, then read back.
async fn responses(api: &str, key: &str, rounds: usize) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    for _ in 0..rounds {
        let body = json!({"model": "gpt-4o", "input": "Say hello.", "max_output_tokens": 64});
        let created = call(
            &http,
            api,
            key,
            Method::POST,
            "/openai/v1/responses",
            Some(body),
        )
        .await?;
        let created = expect(created, StatusCode::OK, "create a response")?;
        let id = created["id"].as_str().context("response id")?;
        let path = format!("/openai/v1/responses/{id}");
        expect(
            call(&http, api, key, Method::GET, &path, None).await?,
            StatusCode::OK,
            "read a response",
        )?;
    }
    Ok(())
}

/// The Foundry Agent Service, as an attendee uses it: an assistant, a thread, a message, a run,
/// the messages read back, the thread deleted; the other attendee refused on the way.
async fn agents_round_trips(api: &str, keys: &[String], rounds: usize) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let agents = |path: &str| format!("{path}?{AGENTS_API}");
    for round in 0..rounds {
        let (mine, theirs) = (&keys[round % 2], &keys[(round + 1) % 2]);
        let assistant = json!({"model": "gpt-4o", "name": "helper"});
        let assistant = call(
            &http,
            api,
            mine,
            Method::POST,
            &agents("/assistants"),
            Some(assistant),
        )
        .await?;
        let assistant = expect(assistant, StatusCode::OK, "create an assistant")?;
        let assistant = assistant["id"].as_str().context("assistant id")?;
        let thread = call(
            &http,
            api,
            mine,
            Method::POST,
            &agents("/threads"),
            Some(json!({})),
        )
        .await?;
        let thread = expect(thread, StatusCode::OK, "create a thread")?;
        let thread = thread["id"].as_str().context("thread id")?;
        let messages = agents(&format!("/threads/{thread}/messages"));
        let message = json!({"role": "user", "content": "hi"});
        expect(
            call(
                &http,
                api,
                mine,
                Method::POST,
                &messages,
                Some(message.clone()),
            )
            .await?,
            StatusCode::OK,
            "add a message",
        )?;
        expect(
            call(&http, api, theirs, Method::POST, &messages, Some(message)).await?,
            StatusCode::FORBIDDEN,
            "another attendee's thread",
        )?;
        let run = json!({"assistant_id": assistant});
        let runs = agents(&format!("/threads/{thread}/runs"));
        expect(
            call(&http, api, mine, Method::POST, &runs, Some(run)).await?,
            StatusCode::OK,
            "run",
        )?;
        expect(
            call(&http, api, mine, Method::GET, &messages, None).await?,
            StatusCode::OK,
            "list messages",
        )?;
        // Encoded slashes: a client library would resolve a plain `..` before sending.
        let escape = agents(&format!(
            "/threads/{thread}%2F..%2F..%2Fassistants/{assistant}"
        ));
        let (status, _) = call(&http, api, theirs, Method::GET, &escape, None).await?;
        ensure!(status.is_client_error(), "a `..` path answered {status}");
        let thread = agents(&format!("/threads/{thread}"));
        expect(
            call(&http, api, mine, Method::DELETE, &thread, None).await?,
            StatusCode::OK,
            "delete a thread",
        )?;
    }
    Ok(())
}

/// What the edge refuses: an unknown key, a `max_tokens` above the event's cap, an unknown
/// deployment.
async fn refusals(api: &str, chat_path: &str, key: &str, calls: usize) -> anyhow::Result<()> {
    let chat =
        Bytes::from_static(br#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":64}"#);
    bulk(api, chat_path, "not-a-key", chat.clone(), calls, 8, false).await?;
    let over =
        Bytes::from_static(br#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":100000}"#);
    bulk(api, chat_path, key, over, calls, 8, false).await?;
    let unknown = format!("/openai/deployments/nope/chat/completions?api-version={API_VERSION}");
    bulk(api, &unknown, key, chat, calls, 8, false).await
}
