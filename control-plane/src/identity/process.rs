//! Running a developer tool (`az`, `azd`, `pwsh`) for a token: with a deadline, and in a process
//! group of its own, so that a tool that hangs (on a prompt, on a network that never answers) is
//! killed with every process it started once the deadline passes or the request is abandoned.
//! One hung tool must never hold up token refreshes for long. `ToolRunner` is also the
//! `azure_identity` executor of the Azure CLI and Azure Developer CLI steps (which would otherwise
//! wait on their child forever).

use std::ffi::OsStr;
use std::io;
use std::process::{Output, Stdio};
use std::time::Duration;

use async_trait::async_trait;
use azure_identity::Executor;

/// How long a tool may take to print a token.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct ToolRunner {
    pub timeout: Duration,
}

impl Default for ToolRunner {
    fn default() -> Self {
        Self {
            timeout: TOOL_TIMEOUT,
        }
    }
}

impl ToolRunner {
    /// Runs `program` to completion and returns its output; `TimedOut` after the deadline, by which
    /// time the program and everything it started have been killed.
    pub async fn output(
        &self,
        program: &OsStr,
        args: &[&OsStr],
        envs: &[(&str, &str)],
    ) -> io::Result<Output> {
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        command.process_group(0);
        let child = command.spawn()?;
        let mut group = ProcessGroup(child.id());
        let waited = tokio::time::timeout(self.timeout, child.wait_with_output()).await;
        match waited {
            Ok(output) => {
                // It ended by itself: whatever it left running was meant to outlive it.
                group.0 = None;
                output
            }
            Err(_) => {
                drop(group);
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no answer within {} s: the tool was stopped",
                        self.timeout.as_secs_f64()
                    ),
                ))
            }
        }
    }
}

/// Kills the whole process group of a tool still running when it is dropped.
struct ProcessGroup(Option<u32>);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(id) = self.0.and_then(|id| libc::pid_t::try_from(id).ok()) {
            // SAFETY: a plain syscall. The group was made for this tool (`process_group(0)`), and a
            // group id is not reused while any process of the group is left.
            unsafe {
                libc::killpg(id, libc::SIGKILL);
            }
        }
    }
}

#[async_trait]
impl Executor for ToolRunner {
    async fn run(&self, program: &OsStr, args: &[&OsStr]) -> io::Result<Output> {
        self.output(program, args, &[]).await
    }
}
