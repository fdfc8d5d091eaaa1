//! The official Python SDKs work unchanged against the edge: `openai` (Azure and v1 clients,
//! streaming, Responses) and `azure-ai-agents` (agents, threads, streamed runs, isolation).
//! scripts/test.sh installs the SDK; without it this test fails and says so.

use std::time::Duration;

use aiproxy_loadtest::mock::MockConfig;
use aiproxy_loadtest::stack::Scenario;

#[tokio::test(flavor = "multi_thread")]
async fn openai_python_sdk_works_unchanged() {
    let s = Scenario::start(MockConfig {
        stream_chunks: 4,
        stream_chunk_delay: Duration::from_millis(20),
        ..Default::default()
    })
    .await;
    run_python(
        "openai_sdk_check.py",
        &[
            ("AIPROXY_EDGE_API", s.edge.api_base()),
            ("AIPROXY_KEY", s.key.clone()),
            ("AIPROXY_DEPLOYMENT", "gpt-4o".into()),
        ],
        "openai SDK checks passed",
    )
    .await;
}

/// Runs one of the SDK check scripts; scripts/test.sh installs the SDKs.
async fn run_python(script: &str, env: &[(&str, String)], success: &str) {
    let python = std::env::var("AIPROXY_PYTHON").unwrap_or_else(|_| "python3".into());
    let path = format!("{}/tests/sdk/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut command = tokio::process::Command::new(&python);
    command.arg(&path);
    for var in [
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "AZURE_OPENAI_API_KEY",
        "AZURE_OPENAI_ENDPOINT",
    ] {
        command.env_remove(var);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command
        .env("NO_PROXY", "127.0.0.1,localhost")
        .output()
        .await
        .unwrap_or_else(|e| panic!("could not run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains(success),
        "{script} failed (are the SDKs installed? scripts/test.sh installs them)\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_ai_agents_sdk_and_openai_responses_work_unchanged() {
    let s = Scenario::start(MockConfig::default()).await;
    let agent = s
        .admin
        .create_resource(serde_json::json!({"friendly_name": "Agents", "deployment_name": "agents",
            "model_type": "Foundry_Agent", "endpoint_url": format!("{}/api/projects/hack", s.mock.endpoint()),
            "key": aiproxy_loadtest::stack::UPSTREAM_KEY}))
        .await;
    let (_, mut event) = s.admin.get(&format!("/events/{}", s.event_id)).await;
    event["resource_ids"] = serde_json::json!([s.resource_id, agent]);
    s.admin.put(&format!("/events/{}", s.event_id), event).await;
    let other_key = s.admin.add_attendee(&s.event_id, "attendee-2").await;
    s.admin.wait_edges_acked(1, Duration::from_secs(5)).await;
    run_python(
        "agents_sdk_check.py",
        &[
            ("AIPROXY_EDGE_API", s.edge.api_base()),
            ("AIPROXY_KEY", s.key.clone()),
            ("AIPROXY_OTHER_KEY", other_key),
        ],
        "agents SDK checks passed",
    )
    .await;
}
