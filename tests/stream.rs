//! Alpaca's trade updates stream, against the fake venue: a fill the venue
//! pushes reaches its strategy without waiting for a sync; a stream lost
//! while an order fills is backfilled by the sync that follows its
//! reconnection, and the fill is recorded once however often it is heard;
//! bad messages are skipped without dropping the stream.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use stratbox_tests::MISBEHAVE_WASM;
use stratbox_tests::fake::{FakeVenue, Fault, alpaca_bar, alpaca_time};
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
    spawn(dir, &write_host_config(dir, &sections), &[]).await
}

/// Fills the buyer has heard of, by `/health`.
async fn fills(client: &reqwest::Client, addr: &str) -> u64 {
    strategy(&health(client, addr).await, "buyer").and_then(|s| s["fills"].as_u64()).unwrap_or(0)
}

/// Waits for the buyer's order to be working at the venue, and for a sync
/// since it was taken (positions, the order, the account: several trading
/// reads): after that the next sync is ten minutes away.
async fn order_working(venue: &FakeVenue) {
    until("the buyer's order and a sync after it", Duration::from_secs(60), async || {
        let s = venue.state.lock().unwrap();
        s.orders.len() == 1 && s.trading_requests >= s.order_taken_at + 3
    })
    .await;
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

/// A host polling the fake Alpaca's bars every ten minutes and streaming
/// them, with a strategy that only counts what it sees.
async fn bar_host(venue: &FakeVenue, dir: &std::path::Path) -> (HostProcess, String) {
    {
        let mut s = venue.state.lock().unwrap();
        for minute in 0..40 {
            s.alpaca_bars.push(("AAPL".into(), alpaca_bar(minute, "10")));
        }
    }
    let feed = alpaca_feed(&venue.url, 50).replace("poll_ms = 50", "poll_ms = 600000");
    let sections =
        format!("{feed}[[strategy]]\nname = \"watcher\"\nplugin = {MISBEHAVE_WASM:?}\nparams = {{ mode = \"ok\" }}\n");
    spawn(dir, &write_host_config(dir, &sections), &[]).await
}

async fn bars_seen(client: &reqwest::Client, addr: &str) -> u64 {
    strategy(&health(client, addr).await, "watcher").and_then(|s| s["bars"].as_u64()).unwrap_or(0)
}

/// Waits until the bar stream listens: connected, and trusted since the
/// poll that followed its connection went through.
async fn bar_stream_synced(client: &reqwest::Client, addr: &str) {
    until("the bar stream", Duration::from_secs(60), async || {
        health(client, addr).await["feeds"]["alpaca"]["stream"] == "listening"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_bars_arrive_between_polls_once_and_gaps_are_backfilled() {
    let client = reqwest::Client::new();
    let venue = FakeVenue::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_host, addr) = bar_host(&venue, dir.path()).await;
    until("the backfill", Duration::from_secs(60), async || bars_seen(&client, &addr).await == 40).await;
    bar_stream_synced(&client, &addr).await;

    // A new bar comes by the stream: no poll asked for it.
    let polls = venue.requests_to("/v2/stocks/bars");
    venue.publish_bar("AAPL", 40, "11");
    until("the streamed bar", Duration::from_secs(20), async || bars_seen(&client, &addr).await == 41).await;
    assert_eq!(venue.requests_to("/v2/stocks/bars"), polls, "delivered by the stream alone");

    // The stream goes down and is refused; two bars close meanwhile. Once
    // it is back, the poll after its connection delivers them, once.
    venue.state.lock().unwrap().bar_stream_refuse = true;
    venue.drop_bar_streams();
    until("the bar stream to be refused", Duration::from_secs(30), async || {
        let now = health(&client, &addr).await;
        let error = now["feeds"]["alpaca"]["stream_error"]["message"].as_str().unwrap_or_default().to_string();
        now["feeds"]["alpaca"]["stream"] == "down" && error.contains("402 auth failed")
    })
    .await;
    venue.publish_bar("AAPL", 41, "12");
    venue.publish_bar("AAPL", 42, "13");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(bars_seen(&client, &addr).await, 41, "neither streamed nor polled yet");

    // It is back, but the poll after its connection fails: until a poll
    // goes through, a streamed bar may follow a gap (41 and 42), so it
    // waits for the poll rather than being delivered first.
    venue.fail_next(Fault::Status { code: 500, retry_after: None });
    venue.state.lock().unwrap().bar_stream_refuse = false;
    until("the failed poll after reconnecting", Duration::from_secs(60), async || {
        health(&client, &addr).await["feeds"]["alpaca"]["last_error"].is_object()
    })
    .await;
    assert_eq!(health(&client, &addr).await["feeds"]["alpaca"]["stream"], "down", "not trusted before a poll");
    venue.publish_bar("AAPL", 43, "14");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(bars_seen(&client, &addr).await, 41, "a streamed bar never jumps a gap");

    // The next connection's poll goes through: 41, 42 and 43, once each.
    venue.drop_bar_streams();
    until("the backfilled bars", Duration::from_secs(30), async || bars_seen(&client, &addr).await == 44).await;
    bar_stream_synced(&client, &addr).await;

    // Heard again, older, of another symbol, malformed: nothing more.
    let mut again = alpaca_bar(42, "13");
    again["T"] = "b".into();
    again["S"] = "AAPL".into();
    let mut older = alpaca_bar(30, "1");
    older["T"] = "b".into();
    older["S"] = "AAPL".into();
    let mut other = alpaca_bar(44, "1");
    other["T"] = "b".into();
    other["S"] = "MSFT".into();
    for message in [
        serde_json::json!([again]).to_string(),
        serde_json::json!([older]).to_string(),
        serde_json::json!([other]).to_string(),
        "[{\"T\":\"b\",\"S\":\"AAPL\"}]".to_string(),
        "not json".to_string(),
    ] {
        venue.push_bar_message(message.as_bytes());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(bars_seen(&client, &addr).await, 44);
    let connections = venue.state.lock().unwrap().bar_stream_connections;
    venue.publish_bar("AAPL", 44, "15");
    until("the next streamed bar", Duration::from_secs(20), async || bars_seen(&client, &addr).await == 45).await;
    assert_eq!(venue.state.lock().unwrap().bar_stream_connections, connections, "bad messages do not drop the stream");
}

/// Kline `i` of BTCUSDT from `start`, as Binance's REST answers it.
fn kline(start: i64, i: i64) -> Value {
    let open = start + i * 60_000;
    serde_json::json!([open, "100", "101", "99", "100.5", "10", open + 59_999, "15", 3, "5", "7", "0"])
}

/// Serves `n` closed one-minute klines of BTCUSDT ending a few minutes ago;
/// returns the first's open time.
fn binance_klines(venue: &FakeVenue, n: i64) -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let start = (now / 60_000 - n - 5) * 60_000;
    venue.state.lock().unwrap().binance_klines.insert("BTCUSDT".into(), (0..n).map(|i| kline(start, i)).collect());
    start
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binance_klines_stream_once_closed_and_are_backfilled_after_a_drop() {
    const KLINES: i64 = 30;
    let client = reqwest::Client::new();
    let venue = FakeVenue::start().await;
    let start = binance_klines(&venue, KLINES);
    let kline = |i: i64| kline(start, i);
    let dir = tempfile::tempdir().unwrap();
    let sections = format!(
        "[feed]\nkind = \"binance\"\nbase_url = \"{url}\"\nsymbols = [\"BTCUSDT\"]\ntimeframe = \"1m\"\n\
         poll_ms = 600000\ndelay_ms = 0\nbackfill_minutes = 60\n\n\
         [[strategy]]\nname = \"watcher\"\nplugin = {MISBEHAVE_WASM:?}\nparams = {{ mode = \"ok\" }}\n",
        url = venue.url,
    );
    let (_host, addr) = spawn(dir.path(), &write_host_config(dir.path(), &sections), &[]).await;
    until("the backfill", Duration::from_secs(60), async || bars_seen(&client, &addr).await == KLINES as u64).await;
    until("the kline stream", Duration::from_secs(60), async || {
        health(&client, &addr).await["feeds"]["binance"]["stream"] == "listening"
    })
    .await;
    let polls = venue.requests_to("/api/v3/klines");

    // Streamed, open and then closed: taken once, closed, with no poll.
    venue.publish_kline("BTCUSDT", kline(KLINES));
    until("the streamed kline", Duration::from_secs(20), async || bars_seen(&client, &addr).await == 31).await;
    assert_eq!(venue.requests_to("/api/v3/klines"), polls, "delivered by the stream alone");

    // Binance closes the connection (as it does after 24 hours) and a kline
    // closes before the host is back: the poll after reconnecting brings it.
    venue.drop_kline_streams();
    venue.publish_kline("BTCUSDT", kline(KLINES + 1));
    until("the backfilled kline", Duration::from_secs(30), async || bars_seen(&client, &addr).await == 32).await;
    assert!(venue.state.lock().unwrap().kline_stream_connections >= 2);
    assert!(venue.requests_to("/api/v3/klines") > polls, "the reconnection polled");

    // The same kline again, and garbage: nothing more.
    let name = "btcusdt@kline_1m";
    for message in [b"{\"stream\":1}".to_vec(), b"not json".to_vec()] {
        venue.push_kline_message(name, &message);
    }
    let again = kline(KLINES + 1);
    venue.state.lock().unwrap().binance_klines.get_mut("BTCUSDT").unwrap().pop();
    venue.publish_kline("BTCUSDT", again);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(bars_seen(&client, &addr).await, 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binance_execution_reports_bring_fills_before_any_sync() {
    use stratbox_tests::fake::BINANCE_SECRET;
    const KLINES: i64 = 10;
    let client = reqwest::Client::new();
    let venue = FakeVenue::start().await;
    let start = binance_klines(&venue, KLINES);
    {
        let mut s = venue.state.lock().unwrap();
        s.binance_balances = vec![("USDT".into(), "100000".into())];
        // The venue's clock is well ahead: the stream's signed subscription
        // must use the offset the broker measured, as its requests do.
        s.binance_clock_skew_ms = 30_000;
    }
    let dir = tempfile::tempdir().unwrap();
    // A buy stop at 200, far above the market: it waits at the venue.
    let sections = format!(
        "[feed]\nkind = \"binance\"\nbase_url = \"{url}\"\nsymbols = [\"BTCUSDT\"]\ntimeframe = \"1m\"\n\
         poll_ms = 600000\ndelay_ms = 0\nbackfill_minutes = 60\n\n\
         [broker]\nkind = \"binance\"\nbase_url = \"{url}\"\nsync_every_ms = 600000\n\n\
         [risk]\nallowed_symbols = [\"BTCUSDT\"]\n\n\
         [[strategy]]\nname = \"buyer\"\nplugin = {MISBEHAVE_WASM:?}\n\
         params = {{ mode = \"stop\", price = 200, at = \"{at}\" }}\n",
        url = venue.url,
        at = start + 5 * 60_000,
    );
    let config = write_host_config(dir.path(), &sections);
    let env = [("BINANCE_API_KEY", "fake-binance-key"), ("BINANCE_API_SECRET", BINANCE_SECRET)];
    let (_host, addr) = spawn(dir.path(), &config, &env).await;
    until("the stop to wait at the venue", Duration::from_secs(60), async || {
        venue.state.lock().unwrap().binance_orders.len() == 1
    })
    .await;
    fills_arrive_by_the_stream(&client, &addr, "binance", || venue.fill_binance_open_orders(), ("BTCUSDT", 1)).await;
    assert_eq!(venue.state.lock().unwrap().user_stream_connections, 1);
}

/// Starts the real binary on `config` with `env`; returns it and its address.
async fn spawn(dir: &std::path::Path, config: &std::path::Path, env: &[(&str, &str)]) -> (HostProcess, String) {
    let out = dir.join("out.txt");
    let file = Stdio::from(std::fs::File::create(&out).unwrap());
    let host = HostProcess::spawn_with(env!("CARGO_BIN_EXE_stratbox-under-test"), config, file, env);
    let addr = listening_address(&out).await;
    (host, addr)
}

/// Once `venue`'s order stream listens, `fill` fills the orders waiting at
/// the venue; the buyer must hear all of them (and hold `position` of
/// `symbol`) long before the next sync, ten minutes away.
async fn fills_arrive_by_the_stream(
    client: &reqwest::Client,
    addr: &str,
    venue: &str,
    fill: impl FnOnce(),
    (symbol, position): (&str, u64),
) {
    until("the order stream", Duration::from_secs(30), async || {
        health(client, addr).await["sync"][venue]["stream"] == "listening"
    })
    .await;
    // The sync that follows an accepted order is 200 ms behind it; one that
    // lands after `fill` would only make the fill come sooner, never fail.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(fills(client, addr).await, 0);
    fill();
    let heard = async || fills(client, addr).await == position;
    let took = until("the pushed fills", Duration::from_secs(20), heard).await;
    assert!(took < Duration::from_secs(20), "syncs are ten minutes apart: {took:?}");
    let now = health(client, addr).await;
    assert_eq!(strategy(&now, "buyer").unwrap()["positions"][symbol], position.to_string(), "{now:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kalshi_fills_pushed_on_the_websocket_are_read_and_settled_before_any_sync() {
    use rsa::pkcs8::EncodePrivateKey as _;
    let client = reqwest::Client::new();
    let venue = FakeVenue::start().await;
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    {
        let mut s = venue.state.lock().unwrap();
        s.kalshi_public_key = Some(key.to_public_key());
        s.kalshi_balance = 1_000_000;
        // The book is empty: a market order rests until the test fills it.
        s.kalshi_rest_market = true;
    }
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("kalshi.pem");
    std::fs::write(&pem, key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).unwrap().as_bytes()).unwrap();
    // Five closed one-minute candles of one market; the strategy buys one
    // contract on each.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let candles = (1..=5)
        .map(|i| {
            let end = (now / 60 - 10 + i) * 60;
            serde_json::json!({"end_period_ts": end, "volume": i, "price": {"open": 40, "high": 50, "low": 30, "close": 45}})
        })
        .collect();
    venue.state.lock().unwrap().kalshi_candles.insert(("KXTEST".into(), "KXTEST-1".into()), candles);
    let sections = format!(
        "[feed]\nkind = \"kalshi\"\nbase_url = \"{url}\"\ntimeframe = \"1\"\npoll_ms = 600000\ndelay_ms = 0\n\
         backfill_minutes = 60\nmarkets = [{{ series = \"KXTEST\", ticker = \"KXTEST-1\" }}]\n\n\
         [broker]\nkind = \"kalshi\"\nbase_url = \"{url}\"\nsync_every_ms = 600000\n\n\
         [risk]\nmax_position = 100\nallowed_symbols = [\"KXTEST-1\"]\n\n\
         [[strategy]]\nname = \"buyer\"\nplugin = {MISBEHAVE_WASM:?}\nparams = {{ mode = \"buy\" }}\n",
        url = venue.url,
    );
    let config = write_host_config(dir.path(), &sections);
    let env = [("KALSHI_API_KEY_ID", "fake-key-id"), ("KALSHI_PRIVATE_KEY_PATH", pem.to_str().unwrap())];
    let (_host, addr) = spawn(dir.path(), &config, &env).await;
    until("the orders to rest at the venue", Duration::from_secs(60), async || {
        venue.state.lock().unwrap().kalshi_orders.iter().filter(|o| o["status"] == "resting").count() == 5
    })
    .await;
    fills_arrive_by_the_stream(&client, &addr, "kalshi", || venue.fill_kalshi_resting(), ("KXTEST-1", 5)).await;
    assert_eq!(venue.state.lock().unwrap().fill_stream_connections, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kalshi_bars_built_from_streamed_trades_arrive_between_polls_once() {
    use rsa::pkcs8::EncodePrivateKey as _;
    let client = reqwest::Client::new();
    let venue = FakeVenue::start().await;
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    venue.state.lock().unwrap().kalshi_public_key = Some(key.to_public_key());
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("kalshi.pem");
    std::fs::write(&pem, key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).unwrap().as_bytes()).unwrap();
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    // Three traded minutes, long closed, for the backfill.
    for minute in 1..=3 {
        venue.publish_kalshi_trade("KXTEST", "KXTEST-1", 40 + minute, 1, (now() / 60 - 10 + minute) * 60 + 5);
    }
    let sections = format!(
        "[feed]\nkind = \"kalshi\"\nbase_url = \"{url}\"\ntimeframe = \"1\"\npoll_ms = 600000\ndelay_ms = 0\n\
         backfill_minutes = 60\nmarkets = [{{ series = \"KXTEST\", ticker = \"KXTEST-1\" }}]\n\n\
         [[strategy]]\nname = \"watcher\"\nplugin = {MISBEHAVE_WASM:?}\nparams = {{ mode = \"ok\" }}\n",
        url = venue.url,
    );
    let config = write_host_config(dir.path(), &sections);
    let env = [("KALSHI_API_KEY_ID", "fake-key-id"), ("KALSHI_PRIVATE_KEY_PATH", pem.to_str().unwrap())];
    let (_host, addr) = spawn(dir.path(), &config, &env).await;
    until("the backfill", Duration::from_secs(60), async || bars_seen(&client, &addr).await == 3).await;
    let listening = async || health(&client, &addr).await["feeds"]["kalshi"]["stream"] == "listening";
    until("the trade stream", Duration::from_secs(60), listening).await;

    // Trades of the first minute the stream heard whole (it subscribed
    // before now), then one of the next minute, which closes it.
    let minute = (now() + 3) / 60 * 60 + 60;
    let polls = venue.requests_to("/trade-api/v2/series/KXTEST/markets/KXTEST-1/candlesticks");
    for (cents, second) in [(41, 1), (47, 20), (38, 40)] {
        venue.publish_kalshi_trade("KXTEST", "KXTEST-1", cents, 2, minute + second);
    }
    assert_eq!(bars_seen(&client, &addr).await, 3, "the minute is still open");
    venue.publish_kalshi_trade("KXTEST", "KXTEST-1", 44, 1, minute + 61);
    let took = until("the streamed bar", Duration::from_secs(20), async || bars_seen(&client, &addr).await == 4).await;
    assert!(took < Duration::from_secs(20), "the next poll is ten minutes away: {took:?}");
    let candles = "/trade-api/v2/series/KXTEST/markets/KXTEST-1/candlesticks";
    assert_eq!(venue.requests_to(candles), polls, "no poll brought it");

    // The stream drops and comes back, trusted again once the poll that
    // follows its reconnection went through; nothing is delivered twice.
    venue.drop_kalshi_trade_streams();
    until("the reconnection", Duration::from_secs(60), async || {
        venue.state.lock().unwrap().trade_stream_connections == 2
    })
    .await;
    until("the stream again", Duration::from_secs(60), listening).await;
    assert_eq!(bars_seen(&client, &addr).await, 4, "delivered once");
}
