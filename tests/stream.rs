//! Alpaca's trade updates stream, against the fake venue: a fill the venue
//! pushes reaches its strategy without waiting for a sync; a stream lost
//! while an order fills is backfilled by the sync that follows its
//! reconnection, and the fill is recorded once however often it is heard;
//! bad messages are skipped without dropping the stream.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use stratbox_tests::MISBEHAVE_WASM;
use stratbox_tests::fake::{FakeVenue, alpaca_bar, alpaca_time};
use stratbox_tests::process::{HostProcess, alpaca_feed, health, listening_address, strategy, write_host_config};

/// A host trading the fake Alpaca with syncs ten minutes apart, so anything
/// heard sooner came by the stream; its one strategy buys at minute 5.
async fn host(venue: &FakeVenue, dir: &std::path::Path, stream: bool) -> (HostProcess, String) {
    {
        let mut s = venue.state.lock().unwrap();
        for minute in 0..40 {
            s.alpaca_bars.push(("AAPL".into(), alpaca_bar(minute, "10")));
        }
    }
    let sections = format!(
        "{feed}[broker]\nkind = \"alpaca\"\nbase_url = \"{url}\"\nsync_every_ms = 600000\nstream = {stream}\n\n\
         [[strategy]]\nname = \"buyer\"\nplugin = {MISBEHAVE_WASM:?}\nparams = {{ mode = \"buy\", at = \"{at}\" }}\n",
        feed = alpaca_feed(&venue.url, 50),
        url = venue.url,
        at = alpaca_time(5),
    );
    let config = write_host_config(dir, &sections);
    let out = dir.join("out.txt");
    let file = Stdio::from(std::fs::File::create(&out).unwrap());
    let host = HostProcess::spawn(env!("CARGO_BIN_EXE_stratbox-under-test"), &config, file);
    let addr = listening_address(&out).await;
    (host, addr)
}

/// Fills the buyer has heard of, by `/health`.
async fn fills(client: &reqwest::Client, addr: &str) -> u64 {
    strategy(&health(client, addr).await, "buyer").and_then(|s| s["fills"].as_u64()).unwrap_or(0)
}

/// Waits for the buyer's order to be working at the venue, and for the sync
/// that follows an accepted order to be over.
async fn order_working(venue: &FakeVenue) {
    let started = Instant::now();
    while venue.state.lock().unwrap().orders.len() != 1 {
        assert!(started.elapsed() < Duration::from_secs(60), "the buyer never ordered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
}

async fn until(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_fill_reaches_the_strategy_before_any_sync() {
    let client = reqwest::Client::new();
    // With the stream: heard at once.
    let venue = FakeVenue::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_host, addr) = host(&venue, dir.path(), true).await;
    order_working(&venue).await;
    assert_eq!(fills(&client, &addr).await, 0);
    venue.fill_open_orders("10.5");
    let took = until("the pushed fill", Duration::from_secs(30), async || fills(&client, &addr).await == 1).await;
    // The next sync is ten minutes away.
    assert!(took < Duration::from_secs(20), "{took:?}");
    let now = health(&client, &addr).await;
    assert_eq!(now["sync"]["alpaca"]["stream"], "listening", "{now:#}");
    assert_eq!(strategy(&now, "buyer").unwrap()["positions"]["AAPL"], "1", "{now:#}");

    // Without it, the same fill waits for the sync.
    let quiet = FakeVenue::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_host, addr) = host(&quiet, dir.path(), false).await;
    order_working(&quiet).await;
    quiet.fill_open_orders("10.5");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fills(&client, &addr).await, 0, "no stream, no sync yet: not heard");
    assert_eq!(quiet.state.lock().unwrap().stream_connections, 0);
    assert!(health(&client, &addr).await["sync"]["alpaca"]["stream"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_missed_while_the_stream_was_down_is_backfilled_once() {
    let client = reqwest::Client::new();
    let venue = FakeVenue::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_host, addr) = host(&venue, dir.path(), true).await;
    order_working(&venue).await;
    let connections = venue.state.lock().unwrap().stream_connections;
    assert_eq!(connections, 1);

    // The venue drops the stream and refuses it back for a while; the
    // order fills meanwhile.
    venue.state.lock().unwrap().stream_refuse = true;
    venue.drop_streams();
    until("a refused reconnection", Duration::from_secs(30), async || {
        venue.state.lock().unwrap().stream_connections > connections
    })
    .await;
    venue.fill_open_orders("10.5");
    let down = until("the stream to be reported down", Duration::from_secs(30), async || {
        health(&client, &addr).await["sync"]["alpaca"]["stream"] == "down"
    })
    .await;
    assert_eq!(fills(&client, &addr).await, 0, "down {down:?}: neither streamed nor synced yet");
    let error = health(&client, &addr).await["sync"]["alpaca"]["stream_error"]["message"].clone();
    assert!(error.as_str().is_some_and(|e| e.contains("authorization")), "{error}");

    // Back: the sync after reconnecting brings the fill in, once.
    venue.state.lock().unwrap().stream_refuse = false;
    until("the backfilled fill", Duration::from_secs(30), async || fills(&client, &addr).await == 1).await;
    let now = health(&client, &addr).await;
    assert_eq!(now["sync"]["alpaca"]["stream"], "listening", "{now:#}");

    // The same fill pushed again, an older state of the order, garbage and
    // an oversized message: nothing more is recorded, and the stream stays.
    let order: Value = venue.state.lock().unwrap().orders[0].clone();
    let update = |event: &str, order: &Value| {
        serde_json::json!({"stream": "trade_updates", "data": {"event": event, "order": order}})
            .to_string()
            .into_bytes()
    };
    let mut older = order.clone();
    older["status"] = "new".into();
    older["filled_qty"] = "0".into();
    older["filled_avg_price"] = Value::Null;
    let connections = venue.state.lock().unwrap().stream_connections;
    for message in [
        update("fill", &order),
        update("new", &older),
        b"{not json".to_vec(),
        br#"{"stream":"trade_updates","data":{"event":"fill","order":{"side":"sideways"}}}"#.to_vec(),
        update("fill", &order),
    ] {
        venue.push_stream_message(&message);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let now = health(&client, &addr).await;
    let buyer = strategy(&now, "buyer").unwrap();
    assert_eq!(buyer["fills"], 1, "{now:#}");
    assert_eq!(buyer["positions"]["AAPL"], "1", "{now:#}");
    assert_eq!(venue.state.lock().unwrap().stream_connections, connections, "bad messages do not drop the stream");
    // A message over the host's 1 MiB limit ends that connection; it comes back.
    venue.push_stream_message(&vec![b' '; 2 << 20]);
    until("a reconnection after the oversized message", Duration::from_secs(30), async || {
        venue.state.lock().unwrap().stream_connections > connections
    })
    .await;
    until("the stream to listen again", Duration::from_secs(30), async || {
        health(&client, &addr).await["sync"]["alpaca"]["stream"] == "listening"
    })
    .await;
    assert_eq!(fills(&client, &addr).await, 1);
}
