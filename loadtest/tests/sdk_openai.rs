//! The official Python SDKs work unchanged against the edge: `openai` (Azure and v1 clients,
//! streaming, Responses) and `azure-ai-agents` (agents, threads, streamed runs, isolation).
//! scripts/test.sh installs the SDK; without it this test fails and says so.

use std::time::Duration;

use aiproxy_loadtest::mock::MockConfig;
use aiproxy_loadtest::stack::{Scenario, run_python_check};

#[tokio::test(flavor = "multi_thread")]
async fn openai_python_sdk_works_unchanged() {
    let s = Scenario::start(MockConfig {
        stream_chunks: 4,
        stream_chunk_delay: Duration::from_millis(20),
        ..Default::default()
    })
    .await;
    run_python_check(
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
    run_python_check(
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
