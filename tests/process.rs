//! The host as a child process, for tests that kill it or ask it to stop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A host process that is killed when the test ends, pass or fail.
/// If the test fails, the end of the host's log is printed.
pub struct HostProcess {
    child: Child,
    log: PathBuf,
}

impl HostProcess {
    /// Starts `binary run --config config` with fake Alpaca credentials.
    /// Its log goes to `host.log` beside the config, appended run after run.
    pub fn spawn(binary: &str, config: &Path, stdout: Stdio) -> Self {
        Self::spawn_with(binary, config, stdout, &[])
    }

    /// As [`HostProcess::spawn`], with more environment variables (another
    /// venue's credentials).
    pub fn spawn_with(binary: &str, config: &Path, stdout: Stdio, env: &[(&str, &str)]) -> Self {
        let log_path = config.with_file_name("host.log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).expect("the log file opens");
        let child = Command::new(binary)
            .args(["run", "--config", config.to_str().expect("a UTF-8 path")])
            .env("APCA_API_KEY_ID", "test-key")
            .env("APCA_API_SECRET_KEY", "test-secret")
            .env("RUST_LOG", std::env::var("STRATBOX_TEST_LOG").unwrap_or_else(|_| "warn".into()))
            .envs(env.iter().copied())
            .stdout(stdout)
            .stderr(log)
            .spawn()
            .expect("the host starts");
        Self { child, log: log_path }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM (or SIGINT), as an operator or a service manager does.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{name} failed");
    }

    /// Waits up to `limit` for the process to exit by itself.
    pub fn wait_for_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail = log.char_indices().rev().nth(6000).map_or(0, |(i, _)| i);
            eprintln!("--- host log ({}) ---\n{}", self.log.display(), &log[tail..]);
        }
    }
}

/// Waits for `done` to hold, up to `limit`; panics naming `what` if it never does.
pub async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Writes `host.toml` in `dir` for a host listening on any loopback port
/// with its store in `host.db` beside it, followed by `sections` (feed,
/// broker, strategies).
pub fn write_host_config(dir: &Path, sections: &str) -> PathBuf {
    let text = format!("[server]\nlisten = \"127.0.0.1:0\"\n\n[store]\npath = \"host.db\"\n\n{sections}");
    let path = dir.join("host.toml");
    std::fs::write(&path, text).expect("the config is written");
    path
}

/// A `[feed]` section polling the fake Alpaca at `url` for AAPL every
/// `poll_ms`, backfilling from before the fake's first bar.
pub fn alpaca_feed(url: &str, poll_ms: u64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let minutes_ago = (now - crate::fake::alpaca_time(0)) / 60_000 + 10;
    format!(
        "[feed]\nkind = \"alpaca\"\nbase_url = \"{url}\"\nsymbols = [\"AAPL\"]\ntimeframe = \"1Min\"\n\
         poll_ms = {poll_ms}\ndelay_ms = 0\nbackfill_minutes = {minutes_ago}\n\n"
    )
}

/// Waits (up to two minutes) for the host's first line of output, written
/// to `out`, and returns the address it listens on (`http://...`).
pub async fn listening_address(out: &Path) -> String {
    let mut address = String::new();
    wait_until("the host to listen", Duration::from_secs(120), || {
        let text = std::fs::read_to_string(out).unwrap_or_default();
        match text.split("listening on ").nth(1).and_then(|rest| rest.split_whitespace().next()) {
            Some(found) => {
                address = found.to_string();
                true
            }
            None => false,
        }
    })
    .await;
    address
}

/// The host's `/health`, or `null` while it does not answer.
pub async fn health(client: &reqwest::Client, addr: &str) -> serde_json::Value {
    match client.get(format!("{addr}/health")).send().await {
        Ok(response) => response.json().await.unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    }
}

/// The entry of strategy `name` in a `/health` answer.
pub fn strategy<'a>(health: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    health["strategies"].as_array()?.iter().find(|s| s["name"] == name)
}

/// A line of `/proc/PID/status` in bytes: `VmRSS` (resident now) or
/// `VmHWM` (the most it has been resident).
pub fn memory_of(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the process is alive");
    let line = status.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':')).expect("the field exists");
    line.trim().trim_end_matches("kB").trim().parse::<u64>().expect("a number of kB") * 1024
}
