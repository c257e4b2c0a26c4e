//! A real SMTP server for the email tests: `smtp_server.py` on aiosmtpd,
//! installed from PyPI into the target directory on first use.

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};

/// The aiosmtpd release the tests are written against.
const AIOSMTPD: &str = "aiosmtpd==1.4.6";

/// How the server behaves.
#[derive(Debug, Default, Clone)]
pub struct SmtpOptions {
    /// Offer STARTTLS with a fresh self-signed certificate for 127.0.0.1.
    pub starttls: bool,
    /// Refuse mail before STARTTLS.
    pub require_tls: bool,
    /// Require AUTH with this user and password.
    pub login: Option<(String, String)>,
    /// Replies to give DATA, in order, before accepting anything.
    pub faults: Vec<String>,
}

/// A running server; killed when dropped.
pub struct SmtpServer {
    child: Child,
    pub port: u16,
    /// The PEM certificate clients must trust, when STARTTLS is offered.
    pub ca_file: Option<PathBuf>,
    messages: mpsc::Receiver<serde_json::Value>,
    _dir: tempfile::TempDir,
}

impl SmtpServer {
    pub fn start(options: SmtpOptions) -> anyhow::Result<Self> {
        let deps = crate::python::pip_install(AIOSMTPD)?;
        let dir = tempfile::tempdir()?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("smtp_server.py");
        let mut command = Command::new("python3");
        command.arg(&script).env("PYTHONPATH", &deps).env("PYTHONDONTWRITEBYTECODE", "1");
        let mut ca_file = None;
        if options.starttls {
            let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
            let (cert, private) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            std::fs::write(&cert, key.cert.pem())?;
            std::fs::write(&private, key.key_pair.serialize_pem())?;
            command.arg("--cert").arg(&cert).arg("--key").arg(&private);
            ca_file = Some(cert);
        }
        if options.require_tls {
            command.arg("--require-tls");
        }
        if let Some((user, password)) = &options.login {
            command.arg("--login").arg(format!("{user}:{password}"));
        }
        for fault in &options.faults {
            command.arg("--fault").arg(fault);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting python3 with the SMTP test server")?;
        let stdout = child.stdout.take().context("taking the server's stdout")?;
        let (port_tx, port_rx) = mpsc::channel();
        let (message_tx, messages) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line.strip_prefix("listening ") {
                    let _ = port_tx.send(port.trim().parse::<u16>().ok());
                } else if let Ok(message) = serde_json::from_str(&line) {
                    let _ = message_tx.send(message);
                }
            }
        });
        let port = match port_rx.recv_timeout(crate::PATIENCE) {
            Ok(Some(port)) => port,
            other => {
                let _ = child.kill();
                bail!("the SMTP test server did not start: {other:?}");
            }
        };
        Ok(Self { child, port, ca_file, messages, _dir: dir })
    }

    /// The messages accepted within `wait`, at most `count`.
    pub fn received(&self, count: usize, wait: Duration) -> Vec<serde_json::Value> {
        let deadline = std::time::Instant::now() + wait;
        let mut got = Vec::new();
        while got.len() < count {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.messages.recv_timeout(left) {
                Ok(message) => got.push(message),
                Err(_) => break,
            }
        }
        got
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        if let Some(stdin) = self.child.stdin.as_mut() {
            let _ = stdin.flush();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
