//! The training workload of the edge's profile-guided build (`scripts/build-edge-pgo.sh`) runs
//! through against the current edge: every call it makes answers as it expects. A change to the
//! edge that breaks it fails here, not in a profile-guided build. And it refuses to pass for a
//! profile that was not written.

use std::process::{Command, Output};

use aiproxy_loadtest::stack::{ScratchDir, bin_path};

fn workload(extra: &[&str]) -> (Output, String) {
    let output = Command::new(bin_path("aiproxy-pgo-workload"))
        .arg("--edge")
        .arg(bin_path("aiproxy-edge"))
        .args(["--chat-calls", "400"])
        .args(extra)
        .output()
        .expect("run aiproxy-pgo-workload");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output, text)
}

#[test]
fn the_training_workload_runs_through_against_the_current_edge() {
    let (output, text) = workload(&[]);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("workload done"), "{text}");
}

#[test]
fn an_edge_that_writes_no_profile_fails_the_training_run() {
    // The test build of the edge is not instrumented: it writes nothing when it exits.
    let dir = ScratchDir::new("pgo-profile");
    let profile_dir = dir.path().join("raw");
    let (output, text) = workload(&["--profile-dir", profile_dir.to_str().unwrap()]);
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("the edge wrote no profile"), "{text}");
}

#[test]
fn a_profile_folder_holding_an_earlier_profile_is_refused() {
    // An earlier run's file would otherwise pass for the profile this run's edge never wrote.
    let dir = ScratchDir::new("pgo-profile");
    std::fs::write(dir.path().join("edge-1.profraw"), b"stale").unwrap();
    let (output, text) = workload(&["--profile-dir", dir.path().to_str().unwrap()]);
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("already holds profiles"), "{text}");
}
