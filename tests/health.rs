//! `/health` on a host trading a fake Alpaca, with faults on: each feed's
//! newest bar and last error, each venue's sync state and last error, and
//! each sink's deliveries and last error, kept after the fault has passed.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use stratbox_tests::fake::{FakeVenue, Fault, alpaca_bar};
use stratbox_tests::process::{HostProcess, alpaca_feed, health, listening_address, write_host_config};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Polls `/health` until `holds` is true of it; panics with the last answer.
async fn health_until(client: &reqwest::Client, addr: &str, what: &str, holds: impl Fn(&Value) -> bool) -> Value {
    let started = std::time::Instant::now();
    loop {
        let now = health(client, addr).await;
        if holds(&now) {
            return now;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "timed out waiting for {what}; /health:\n{now:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_names_the_last_error_of_each_feed_venue_and_sink() {
    let venue = FakeVenue::start().await;
    {
        let mut s = venue.state.lock().unwrap();
        for minute in 0..40 {
            s.alpaca_bars.push(("AAPL".into(), alpaca_bar(minute, "10")));
        }
    }
    // A sink that is down: every delivery is answered 503.
    let attempts = Arc::new(AtomicU64::new(0));
    let down = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let attempts = attempts.clone();
            move || async move {
                attempts.fetch_add(1, Ordering::Relaxed);
                (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, down).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let sections = format!(
        "{feed}[broker]\nkind = \"alpaca\"\nbase_url = \"{url}\"\nsync_every_ms = 100\n\n\
         [[strategy]]\nname = \"sma\"\nplugin = \"sma-crossover\"\n\n\
         [[sink]]\nname = \"backend\"\nkind = \"json\"\nurl = {sink_url:?}\nsecret = {SECRET:?}\n",
        feed = alpaca_feed(&venue.url, 50),
        url = venue.url,
    );
    let config = write_host_config(dir.path(), &sections);
    let out = dir.path().join("out.txt");
    let _host = HostProcess::spawn(
        env!("CARGO_BIN_EXE_stratbox-under-test"),
        &config,
        Stdio::from(std::fs::File::create(&out).unwrap()),
    );
    let addr = listening_address(&out).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();

    // Calm: synced, bars arriving, nothing failed yet; every sink listed.
    let calm = health_until(&client, &addr, "a sync and a bar", |h| {
        h["sync"]["alpaca"]["state"] == "synced" && h["feeds"]["alpaca"]["last_bar_ms"].is_i64()
    })
    .await;
    assert_eq!(calm["status"], "ok", "{calm:#}");
    assert!(calm["sync"]["alpaca"]["last_sync_ms"].is_i64(), "{calm:#}");
    assert!(calm["sync"]["alpaca"]["last_error"].is_null(), "{calm:#}");
    assert!(calm["feeds"]["alpaca"]["last_error"].is_null(), "{calm:#}");
    assert!(calm["sinks"]["backend"].is_object(), "{calm:#}");

    // The bars endpoint answers 500 once: the feed's last error says so,
    // and stays after the feed recovers.
    venue.fail_next(Fault::Status { code: 500, retry_after: None });
    let failed =
        health_until(&client, &addr, "the feed's error", |h| h["feeds"]["alpaca"]["last_error"].is_object()).await;
    let message = failed["feeds"]["alpaca"]["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("500"), "{message}");
    assert!(failed["feeds"]["alpaca"]["last_error"]["at_ms"].is_i64());

    // The key is refused for a few trading requests: the sync fails, the
    // host reports it degraded and names the error, then syncs again.
    venue.state.lock().unwrap().revoked = 3;
    let failing = health_until(&client, &addr, "a failed sync", |h| h["sync"]["alpaca"]["state"] == "failing").await;
    assert_eq!(failing["status"], "degraded", "{failing:#}");
    let message = failing["sync"]["alpaca"]["last_error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("401") || message.to_lowercase().contains("unauthorized"), "{message}");
    let again =
        health_until(&client, &addr, "a sync after the fault", |h| h["sync"]["alpaca"]["state"] == "synced").await;
    assert_eq!(again["sync"]["alpaca"]["last_error"]["message"], message.as_str(), "kept after recovery");

    // The refused key halted trading, which is journaled and notified: the
    // sink that is down is retried, and its last error is the 503.
    let retried = health_until(&client, &addr, "a retried delivery", |h| {
        h["sinks"]["backend"]["retried"].as_u64().is_some_and(|n| n > 0)
    })
    .await;
    let sink = &retried["sinks"]["backend"];
    assert_eq!(sink["last_error"]["message"], "HTTP 503", "{sink}");
    assert_eq!(sink["sent"], 0, "{sink}");
    assert!(sink["pending"].as_u64().is_some_and(|n| n > 0), "{sink}");
    assert_eq!(sink["disabled"], false, "{sink}");
    assert!(attempts.load(Ordering::Relaxed) > 0);
}
