//! `GET /metrics` on a host replaying bars with a webhook route and a
//! notification sink: the scrape parses as OpenMetrics with the Prometheus
//! project's own parser, and its series are there and move.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use stratbox::config::{Config, EMBEDDED_DEFAULT};
use stratbox::engine::{RunOptions, run_host};
use stratbox::webhook::Secret;
use stratbox_tests::output::Captured;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The parser's release the check is written against.
const PROMETHEUS_CLIENT: &str = "prometheus-client==0.21.1";

/// Every sample of a scrape, parsed by Python's prometheus_client.
fn parse(scrape: &str) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scrape.txt");
    std::fs::write(&path, scrape).unwrap();
    let deps = stratbox_tests::python::pip_install(PROMETHEUS_CLIENT).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("metrics_check.py");
    let output = Command::new("python3")
        .arg(&script)
        .arg(&path)
        .env("PYTHONPATH", &deps)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}\n{scrape}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice::<Value>(&output.stdout).unwrap().as_array().unwrap().clone()
}

/// The value of the sample `name` whose labels include `labels`.
fn value(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .and_then(|s| s["value"].as_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_parses_and_its_series_move_during_a_replay() {
    // A sink that takes every notification.
    let received = Arc::new(AtomicU64::new(0));
    let sink = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let received = received.clone();
            move || async move {
                received.fetch_add(1, Ordering::Relaxed);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, sink).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{EMBEDDED_DEFAULT}\n[store]\npath = {:?}\n\n[[webhook]]\nname = \"news\"\nkind = \"standard\"\naction = \"signal\"\nstrategies = [\"sma\"]\nsecrets = [{SECRET:?}]\n\n[[sink]]\nname = \"backend\"\nkind = \"json\"\nurl = {sink_url:?}\nsecret = {SECRET:?}\n",
        dir.path().join("host.db").display().to_string()
    );
    let config = Config::parse(&text, "test.toml").unwrap();
    let out = Captured::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let probe = {
        let out = out.clone();
        let received = received.clone();
        async move {
            let addr = out.listen_addr().await;
            let client = reqwest::Client::new();
            let scrape = || async {
                let response = client.get(format!("http://{addr}/metrics")).send().await.unwrap();
                let kind = response.headers()["content-type"].to_str().unwrap().to_string();
                assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
                response.text().await.unwrap()
            };
            let first = scrape().await;
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
            let body = r#"{"headline": "hello"}"#;
            let signature = Secret::parse(SECRET).unwrap().sign("msg_1", now, body.as_bytes());
            let signed = client
                .post(format!("http://{addr}/webhooks/news"))
                .header("content-type", "application/json")
                .header("webhook-id", "msg_1")
                .header("webhook-timestamp", now.to_string())
                .header("webhook-signature", signature)
                .body(body);
            assert_eq!(signed.send().await.unwrap().status(), 202);
            let stranger = client.post(format!("http://{addr}/webhooks/no-such-route")).body("{}");
            assert_eq!(stranger.send().await.unwrap().status(), 404);
            // Wait for a fill and a delivered notification.
            let filled = |text: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix("stratbox_instance_fills_total{instance=\"sma\"} "))
                    .is_some_and(|v| v.trim() != "0")
            };
            let waited = tokio::time::timeout(Duration::from_secs(60), async {
                loop {
                    let text = scrape().await;
                    if received.load(Ordering::Relaxed) > 0 && filled(&text) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
            waited.await.expect("a fill, and a notification at the sink");
            tokio::time::sleep(Duration::from_millis(200)).await;
            let second = scrape().await;
            stop.send(()).unwrap();
            (first, second)
        }
    };
    let options = RunOptions { listen: Some("127.0.0.1:0".parse().unwrap()), pace_ms: Some(5), exit_when_done: false };
    let (reports, (first, second)) =
        tokio::join!(run_host(config, options, async { stopped.await.unwrap() }, out.clone()), probe);
    reports.unwrap();

    let (before, after) = (parse(&first), parse(&second));
    let moved = |name: &str, labels: &[(&str, &str)]| {
        let (a, b) = (value(&before, name, labels).unwrap_or(0.0), value(&after, name, labels));
        let b = b.unwrap_or_else(|| panic!("{name} {labels:?} missing from\n{second}"));
        assert!(b > a, "{name} {labels:?} did not move: {a} then {b}");
    };
    moved("stratbox_feed_bars_total", &[("feed", "replay")]);
    moved("stratbox_instance_bars_total", &[("instance", "sma")]);
    moved("stratbox_instance_fills_total", &[("instance", "sma")]);
    moved("stratbox_guest_call_seconds_count", &[("instance", "sma"), ("callback", "on-bars")]);
    moved("stratbox_webhook_requests_total", &[("route", "news"), ("status", "202")]);
    moved("stratbox_webhook_requests_total", &[("route", "(none)"), ("status", "404")]);
    moved("stratbox_outbox_sent_total", &[("sink", "backend")]);
    assert!(value(&after, "stratbox_guest_call_seconds_count", &[("callback", "on-signal")]).is_some());
    assert!(value(&after, "stratbox_outbox_depth", &[("sink", "backend")]).is_some(), "{second}");
    assert_eq!(
        value(&after, "stratbox_instance_breaches_total", &[("instance", "sma"), ("cause", "deadline")]),
        Some(0.0)
    );
    assert_eq!(value(&after, "stratbox_journal_dropped_total", &[]), Some(0.0));
    // A histogram's buckets are cumulative and end in +Inf at the count.
    let count = value(&after, "stratbox_guest_call_seconds_count", &[("instance", "sma"), ("callback", "on-bars")]);
    let inf = value(
        &after,
        "stratbox_guest_call_seconds_bucket",
        &[("instance", "sma"), ("callback", "on-bars"), ("le", "+Inf")],
    );
    assert_eq!(count, inf);
}
