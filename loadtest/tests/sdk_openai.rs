//! The official `openai` Python SDK works unchanged against the edge, streaming included.
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
    let python = std::env::var("AIPROXY_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/openai_sdk_check.py");
    let output = tokio::process::Command::new(&python)
        .arg(script)
        .env("AIPROXY_EDGE_API", s.edge.api_base())
        .env("AIPROXY_KEY", &s.key)
        .env("AIPROXY_DEPLOYMENT", "gpt-4o")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("AZURE_OPENAI_API_KEY")
        .env_remove("AZURE_OPENAI_ENDPOINT")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .output()
        .await
        .unwrap_or_else(|e| panic!("could not run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "openai SDK check failed (is the SDK installed? scripts/test.sh installs it)\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("openai SDK checks passed"));
}
