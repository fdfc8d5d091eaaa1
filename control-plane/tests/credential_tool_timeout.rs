//! The command-line credential steps (`az`, `azd`, `pwsh`) give up after their deadline and kill
//! the tool with everything it started. The tools here are fakes that hang (shell scripts in a
//! temporary folder put first on PATH). One test function: the steps find their tool through the
//! process environment, so nothing here runs concurrently.

#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use aiproxy_control_plane::identity::chain::{CredentialStep, StepError};
use aiproxy_control_plane::identity::powershell::AzurePowerShellStep;
use aiproxy_control_plane::identity::process::ToolRunner;
use aiproxy_control_plane::identity::steps::{AzureCliStep, AzureDeveloperCliStep};

/// A tool that records its pid and its child's, then waits on a child that sleeps for a minute.
fn write_hanging_tool(dir: &Path, name: &str) {
    let script = format!(
        "#!/bin/sh\necho $$ > '{dir}/{name}.pid'\nsleep 60 &\necho $! > '{dir}/{name}.child'\nwait\n",
        dir = dir.display()
    );
    let path = dir.join(name);
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Alive: the process exists and is not a zombie.
fn alive(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

async fn assert_gone(dir: &Path, name: &str) {
    for file in [format!("{name}.pid"), format!("{name}.child")] {
        let pid = std::fs::read_to_string(dir.join(&file))
            .unwrap_or_else(|_| panic!("{name} never started ({file} missing)"));
        let deadline = Instant::now() + Duration::from_secs(3);
        while alive(&pid) {
            assert!(
                Instant::now() < deadline,
                "{file} ({}) still runs",
                pid.trim()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hung_tools_are_stopped_at_the_deadline_with_what_they_started() {
    let dir = std::env::temp_dir().join(format!("aiproxy-tools-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    for tool in ["az", "azd", "pwsh"] {
        write_hanging_tool(&dir, tool);
    }
    // SAFETY: this test binary has a single test, so no other thread reads the environment.
    unsafe {
        std::env::set_var(
            "PATH",
            format!("{}:/usr/local/bin:/usr/bin:/bin", dir.display()),
        );
    }
    let runner = ToolRunner {
        timeout: Duration::from_millis(500),
    };
    let steps: Vec<(&str, Box<dyn CredentialStep>)> = vec![
        (
            "az",
            Box::new(AzureCliStep {
                runner: runner.clone(),
            }),
        ),
        (
            "azd",
            Box::new(AzureDeveloperCliStep {
                runner: runner.clone(),
            }),
        ),
        ("pwsh", Box::new(AzurePowerShellStep { runner })),
    ];
    for (tool, step) in steps {
        let started = Instant::now();
        let result = tokio::time::timeout(
            Duration::from_secs(10),
            step.get_token("https://cognitiveservices.azure.com/.default", None),
        )
        .await
        .unwrap_or_else(|_| panic!("{tool}: the step waited on a hung tool"));
        let Err(StepError::Unavailable(reason)) = result else {
            panic!("{tool}: expected the step to be unavailable, got {result:?}");
        };
        assert!(reason.contains("0.5 s"), "{tool}: {reason}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{tool}: {:?}",
            started.elapsed()
        );
        assert_gone(&dir, tool).await;
    }
    let _ = std::fs::remove_dir_all(dir);
}
