//! Host mode end to end: the embedded default config, the HTTP listener on
//! loopback, and a misbehaving strategy next to a healthy one.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stratbox::config::{Config, EMBEDDED_DEFAULT};
use stratbox::engine::{RunOptions, run_host};
use stratbox_tests::MISBEHAVE_WASM;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Output the host writes, readable while it runs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Waits (bounded) until the output contains `needle`.
    async fn wait_for(&self, needle: &str) -> String {
        for _ in 0..1500 {
            let text = self.text();
            if text.contains(needle) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out waiting for {needle:?}; output so far:\n{}", self.text());
    }
}

async fn get(addr: &str, path: &str) -> (u16, serde_json::Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

fn listen_addr(output: &str) -> String {
    let start = output.find("http://").unwrap() + "http://".len();
    output[start..].split_whitespace().next().unwrap().to_string()
}

fn options() -> RunOptions {
    RunOptions { listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))), pace_ms: Some(0), exit_when_done: false }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_default_trades_and_serves_health() {
    let config = Config::embedded_default().unwrap();
    let out = Captured::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let probe = {
        let out = out.clone();
        async move {
            let text = out.wait_for("still serving").await;
            let addr = listen_addr(&text);
            let (status, health) = get(&addr, "/health").await;
            let (missing, _) = get(&addr, "/nope").await;
            stop.send(()).unwrap();
            (status, health, missing)
        }
    };
    let host = run_host(config, options(), async { stopped.await.unwrap() }, out.clone());
    let (reports, (status, health, missing)) = tokio::join!(host, probe);
    let reports = reports.unwrap();

    assert_eq!(status, 200);
    assert_eq!(missing, 404);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["feed_done"], true);
    assert_eq!(health["strategies"][0]["name"], "sma");
    assert_eq!(health["strategies"][0]["bars"], 3270);

    let report = &reports[0];
    assert_eq!(report.bars, 3270);
    assert!(report.fills.len() > 100, "the demo trades: {} fills", report.fills.len());
    let text = out.text();
    assert!(text.contains("order #1: buy 10 AAPL"), "{text}");
    assert!(text.contains("fill  #1: buy 10 AAPL @"), "{text}");
    assert!(text.contains("pnl: realized"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_strategy_fails_alone_while_the_others_trade() {
    let text = format!(
        "{EMBEDDED_DEFAULT}\n[runtime]\ncall_timeout_ms = 100\nmax_restarts = 1\nrestart_backoff_ms = 1\n\n\
         [[strategy]]\nname = \"stuck\"\nplugin = {MISBEHAVE_WASM:?}\nparams = {{ mode = \"loop\" }}\n"
    );
    let config = Config::parse(&text, "test.toml").unwrap();
    let out = Captured::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let probe = {
        let out = out.clone();
        async move {
            let text = out.wait_for("still serving").await;
            let (_, health) = get(&listen_addr(&text), "/health").await;
            stop.send(()).unwrap();
            health
        }
    };
    let host = run_host(config, options(), async { stopped.await.unwrap() }, out.clone());
    let (reports, health) = tokio::join!(host, probe);
    let reports = reports.unwrap();

    assert_eq!(health["status"], "degraded");
    let stuck = health["strategies"].as_array().unwrap().iter().find(|s| s["name"] == "stuck").unwrap().clone();
    assert_eq!(stuck["state"], "failed");
    assert_eq!(stuck["restarts"], 1);
    assert!(stuck["error"].as_str().unwrap().contains("deadline"), "{stuck}");
    let sma = reports.iter().find(|r| r.strategy == "sma-crossover").unwrap();
    assert_eq!(sma.bars, 3270, "the healthy strategy saw every bar");
    assert!(sma.fills.len() > 100);
    assert!(out.text().contains("strategy stopped"), "{}", out.text());
}

#[tokio::test]
async fn a_taken_port_is_a_clear_error() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let options = RunOptions { listen: Some(addr), ..options() };
    let err = run_host(Config::embedded_default().unwrap(), options, std::future::pending(), Captured::default())
        .await
        .expect_err("the port is in use");
    assert!(err.to_string().contains(&format!("cannot listen on {addr}")), "{err}");
}
