//! Redis and Postgres servers of a test's own, for tests that kill or stop them. The machine's
//! shared servers (Redis on 6379, the Postgres cluster on 5432) serve every other test running
//! at the same time, so a fault test never touches them: it starts a private server on a free
//! loopback port with its data in a scratch dir, and does what it likes to that one.

use std::path::PathBuf;
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::stack::{ScratchDir, free_addr};

async fn wait_port(port: u16, what: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on 127.0.0.1:{port} within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `redis-server` child on a free port, no persistence. `kill` is SIGKILL; `restore` starts a
/// new, empty server on the same port (as a restarted cache node comes back).
pub struct PrivateRedis {
    pub port: u16,
    password: Option<String>,
    child: Option<Child>,
    dir: ScratchDir,
}

impl PrivateRedis {
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A server that requires `password` (`--requirepass`): a secret in the Redis URL.
    pub async fn start_with_password(password: &str) -> Self {
        Self::start_with(Some(password.to_string())).await
    }

    async fn start_with(password: Option<String>) -> Self {
        let mut redis = Self {
            port: free_addr().port(),
            password,
            child: None,
            dir: ScratchDir::new("redis"),
        };
        redis.restore().await;
        redis
    }

    /// `redis://[:password@]127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// SIGKILL: connections cut as by a crash.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill redis-server");
        }
    }

    /// Starts the server (again) on its port.
    pub async fn restore(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        let log = std::fs::File::create(self.dir.path().join("redis.log")).expect("redis log");
        let mut cmd = Command::new("redis-server");
        if let Some(password) = &self.password {
            cmd.args(["--requirepass", password]);
        }
        let child = cmd
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
            ])
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is needed (scripts/test.sh installs it)");
        self.child = Some(child);
        wait_port(self.port, "redis-server", Duration::from_secs(10)).await;
    }

    /// Keys held now (`DBSIZE`); `None` while it is down.
    pub fn key_count(&self) -> Option<u64> {
        let mut cmd = StdCommand::new("redis-cli");
        cmd.args(["-p", &self.port.to_string()]);
        if let Some(password) = &self.password {
            cmd.env("REDISCLI_AUTH", password);
        }
        let output = cmd.arg("DBSIZE").output().ok()?;
        String::from_utf8_lossy(&output.stdout).trim().parse().ok()
    }
}

/// A Postgres cluster of its own: `initdb` into a scratch dir, `pg_ctl start`/`stop` on a free
/// port, its socket in the same dir, trust authentication on loopback. Run as the `postgres`
/// user when the test runs as root (Postgres refuses to run as root). Stopped on drop.
pub struct PrivatePostgres {
    pub port: u16,
    bin: PathBuf,
    dir: ScratchDir,
    as_postgres_user: bool,
}

impl PrivatePostgres {
    pub async fn start() -> Self {
        let as_postgres_user = crate::process::is_root();
        let dir = ScratchDir::new("pg");
        if as_postgres_user {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path()))
            .await;
        }
        let pg = Self {
            port: free_addr().port(),
            bin: postgres_bin_dir(),
            dir,
            as_postgres_user,
        };
        let data = pg.data_dir();
        run(pg
            .command("initdb")
            .args(["--auth=trust", "--username=postgres", "--no-sync", "-D"])
            .arg(&data))
        .await;
        pg.resume().await;
        pg
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl stop -m fast`: sessions are ended, the server is gone until `resume`.
    pub async fn stop(&self) {
        run(self
            .command("pg_ctl")
            .args(["stop", "-m", "fast", "-w", "-D"])
            .arg(self.data_dir()))
        .await;
    }

    /// `pg_ctl start` on the same port and data; returns once it accepts connections.
    pub async fn resume(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        run(self
            .command("pg_ctl")
            .args(["start", "-w", "-t", "30", "-o", &options, "-l"])
            .arg(self.dir.path().join("postgres.log"))
            .arg("-D")
            .arg(self.data_dir()))
        .await;
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        let mut cmd = if self.as_postgres_user {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        };
        cmd.stdin(Stdio::null());
        cmd
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let program = self.bin.join("pg_ctl");
        let mut cmd = if self.as_postgres_user {
            let mut cmd = StdCommand::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            StdCommand::new(program)
        };
        let _ = cmd
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.data_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` (Debian's layout), or `$AIPROXY_PG_BIN_DIR`.
fn postgres_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("AIPROXY_PG_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .expect("no /usr/lib/postgresql/*/bin/pg_ctl: install the Postgres server (scripts/test.sh does), or set AIPROXY_PG_BIN_DIR")
}

async fn run(cmd: &mut Command) {
    let output = cmd
        .output()
        .await
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"));
    assert!(
        output.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
