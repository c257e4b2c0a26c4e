//! What a host started in-process writes, readable while it runs, and a
//! minimal HTTP GET for its API.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::PATIENCE;

/// Output the host writes, readable while it runs.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    /// Waits (up to [`PATIENCE`]) until the output contains `needle`, and returns it.
    pub async fn wait_for(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let text = self.text();
            if text.contains(needle) {
                return text;
            }
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {needle:?}; output so far:\n{text}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The `host:port` the host says it listens on.
    pub async fn listen_addr(&self) -> String {
        let text = self.wait_for("http://").await;
        let start = text.find("http://").unwrap_or_default() + "http://".len();
        text[start..].split_whitespace().next().unwrap_or_default().to_string()
    }
}

/// GETs `path` from `addr`; returns the status and the JSON body (null if none).
pub async fn get(addr: &str, path: &str) -> (u16, serde_json::Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect to the host");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send a request");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read the response");
    let status = response.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}
