//! The host as a real process against a fake Alpaca on loopback, killed
//! with SIGKILL mid-run and restarted: no order is sent twice, no fill is
//! lost, and positions end equal to the broker's.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use stratbox::order::OrderRef;
use stratbox::order::OrderStatus;
use stratbox::store::{OrderRecord, Store};
use stratbox_tests::fake::{FakeVenue, alpaca_bar, alpaca_time};
use stratbox_tests::process::{HostProcess, alpaca_feed, health, listening_address, strategy, write_host_config};
use stratbox_tests::{MISBEHAVE_WASM, market_buy};

const BARS: i64 = 48;

fn spawn_host(config: &Path) -> HostProcess {
    spawn_host_writing(config, Stdio::null())
}

fn spawn_host_writing(config: &Path, stdout: Stdio) -> HostProcess {
    HostProcess::spawn(env!("CARGO_BIN_EXE_stratbox-under-test"), config, stdout)
}

/// Waits (bounded, generously: the machine may be slow) for `done` to hold.
async fn wait_until(what: &str, done: impl FnMut() -> bool) {
    stratbox_tests::process::wait_until(what, Duration::from_secs(120), done).await;
}

fn write_config(dir: &Path, url: &str) -> std::path::PathBuf {
    let sections = format!(
        r#"{feed}[broker]
kind = "alpaca"
base_url = "{url}"
sync_every_ms = 100
drift_threshold = "100"
timeout_ms = 2000

[[strategy]]
name = "sma"
plugin = "sma-crossover"
params = {{ fast = 2, slow = 4, qty = 1 }}
"#,
        feed = alpaca_feed(url, 40)
    );
    write_host_config(dir, &sections)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_host_restarts_without_duplicates_or_lost_fills() {
    let venue = FakeVenue::start().await;
    {
        let mut s = venue.state.lock().unwrap();
        // A zig-zag that crosses every few bars.
        let closes = [10, 12, 14, 16, 14, 12, 10, 8];
        for minute in 0..BARS {
            s.alpaca_bars.push(("AAPL".into(), alpaca_bar(minute, &closes[(minute % 8) as usize].to_string())));
        }
        s.visible_bars = Some(8);
        s.auto_fill = Some("100".into());
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &venue.url);
    let reveal = |n: usize| venue.state.lock().unwrap().visible_bars = Some(n);
    let orders = || venue.state.lock().unwrap().orders.len();

    // First run: bars appear a few at a time; kill it once it has traded.
    let mut host = spawn_host(&config);
    let mut shown = 8;
    wait_until("the first orders", || {
        shown = (shown + 1).min(24);
        reveal(shown);
        orders() >= 3
    })
    .await;
    host.kill();
    let before_restart = orders();

    // Second run: the rest of the bars.
    let mut host = spawn_host(&config);
    reveal(BARS as usize);
    let store = Arc::new(Store::open(&dir.path().join("host.db")).unwrap());
    wait_until("every bar to be processed", || {
        store.strategy_state("sma@alpaca").ok().flatten().is_some_and(|s| s.last_bar == alpaca_time(BARS - 1))
    })
    .await;
    // Let the last orders go out and their fills be recorded: the strategy
    // may have decided orders on its last bars that the desk has not yet
    // sent, so the venue's list alone does not say the host is done.
    wait_until("the last orders to be sent and their fills recorded", || {
        let idle = store.queued_orders("alpaca").is_ok_and(|q| q.is_empty())
            && store.open_orders("alpaca").is_ok_and(|o| o.is_empty());
        let s = venue.state.lock().unwrap();
        idle && s.orders.iter().all(|o| {
            let coid = o["client_order_id"].as_str().unwrap();
            store.filled(coid).map(|(qty, _)| qty.to_string() == o["qty"].as_str().unwrap()).unwrap_or(false)
        })
    })
    .await;
    host.kill();

    let s = venue.state.lock().unwrap();
    let journal: Vec<String> =
        store.events_after(0, 10_000).unwrap().iter().map(|e| format!("{} {}", e.kind, e.data)).collect();
    let fills = store.recent_fills("alpaca", 1000).unwrap();
    // What to look at when an assertion below fails.
    let seen = format!(
        "before the restart: {before_restart}\norders: {:#?}\nvenue positions: {:?}\nrequests: {:?}\nlocal fills: {fills:#?}\njournal: {journal:#?}",
        s.orders, s.positions, s.requests
    );
    assert!(s.orders.len() > before_restart, "the second run traded too\n{seen}");
    assert_eq!(s.order_posts, s.orders.len(), "every order was sent exactly once");
    let mut ids: Vec<&str> = s.orders.iter().map(|o| o["client_order_id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), s.orders.len(), "client order ids are unique across the restart");
    // Long-only and restored from its saved state: never more than one lot.
    let venue_qty: Decimal = s.positions.iter().map(|p| p["qty"].as_str().unwrap().parse::<Decimal>().unwrap()).sum();
    assert!(venue_qty <= Decimal::ONE, "position {venue_qty}: the restarted strategy did not buy twice");
    let local_qty: Decimal = store.positions("alpaca").unwrap().iter().map(|p| p.qty).sum();
    assert_eq!(local_qty, venue_qty, "positions equal the broker's\n{seen}");
    // Orders alternate buy, sell, buy, ... across the restart.
    let sides: Vec<&str> = s.orders.iter().map(|o| o["side"].as_str().unwrap()).collect();
    assert!(sides.windows(2).all(|w| w[0] != w[1]), "{sides:?}\n{seen}");
}

/// A fake Alpaca with eight flat AAPL bars that fills every order at once.
async fn flat_venue() -> FakeVenue {
    let venue = FakeVenue::start().await;
    {
        let mut s = venue.state.lock().unwrap();
        for minute in 0..8 {
            s.alpaca_bars.push(("AAPL".into(), alpaca_bar(minute, "10")));
        }
        s.auto_fill = Some("10".into());
    }
    venue
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_committed_before_a_crash_but_never_sent_goes_out_once_after_it() {
    let venue = flat_venue().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &venue.url);
    // The crash: the engine committed its decision (the order, queued for
    // the router) and the process died before the router saw it.
    let intent = market_buy(1);
    let queued = OrderRecord::for_intent("alpaca", "sma@alpaca", OrderRef::new(1, 1), &intent, OrderStatus::Queued, 1);
    {
        let store = Store::open(&dir.path().join("host.db")).unwrap();
        store.commit_input("sma@alpaca", None, 0, std::slice::from_ref(&queued), None, 1).unwrap();
    }

    let mut host = spawn_host(&config);
    let store = Arc::new(Store::open(&dir.path().join("host.db")).unwrap());
    wait_until("the queued order to be filled and settled by a sync", || {
        store.filled(&queued.client_order_id).is_ok_and(|(qty, _)| qty == Decimal::ONE)
            && store.order(&queued.client_order_id).is_ok_and(|o| o.is_some_and(|o| o.status == OrderStatus::Filled))
    })
    .await;
    host.kill();

    let s = venue.state.lock().unwrap();
    let sent: Vec<&serde_json::Value> =
        s.orders.iter().filter(|o| o["client_order_id"] == queued.client_order_id.as_str()).collect();
    assert_eq!(sent.len(), 1, "sent once");
    assert_eq!(s.order_posts, s.orders.len(), "no order was sent twice");
    // Never tried before, so sent without asking the venue first.
    let first = s.requests.iter().position(|r| r.contains(&queued.client_order_id) || r == "POST /v2/orders");
    assert_eq!(first.map(|i| s.requests[i].as_str()), Some("POST /v2/orders"), "{:?}", s.requests);
    assert_eq!(store.order(&queued.client_order_id).unwrap().unwrap().status, OrderStatus::Filled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_the_strategy_never_heard_of_reaches_it_once_after_a_restart() {
    let venue = flat_venue().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &venue.url);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "name = \"sma\"\nplugin = \"sma-crossover\"\nparams = { fast = 2, slow = 4, qty = 1 }",
        &format!("name = \"bot\"\nplugin = {MISBEHAVE_WASM:?}\nparams = {{ mode = \"quiet\" }}"),
    );
    std::fs::write(&config, text).unwrap();
    // Before the crash: the strategy's intent 1 was sent and accepted; it
    // filled while the host was down, so nothing told the strategy.
    let intent = market_buy(1);
    let mut order =
        OrderRecord::for_intent("alpaca", "bot@alpaca", OrderRef::new(1, 1), &intent, OrderStatus::Accepted, 1);
    let body = serde_json::json!({ "client_order_id": order.client_order_id, "symbol": "AAPL", "qty": "1",
        "side": "buy", "type": "market", "time_in_force": "day" });
    let sent: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/v2/orders", venue.url))
        .header("apca-api-key-id", "k")
        .header("apca-api-secret-key", "s")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    order.venue_order_id = sent["id"].as_str().map(String::from);
    let store = Arc::new(Store::open(&dir.path().join("host.db")).unwrap());
    store.insert_order(&order).unwrap();
    // The strategy that placed it, saved (the plugin's state is five
    // counters) in the lifetime it placed order 1 in.
    store.commit_input("bot@alpaca", Some((&[0; 40], 0)), 1, &[], None, 1).unwrap();

    let heard = |out: &Path| std::fs::read_to_string(out).unwrap_or_default().matches("Info: filled 1").count();
    let first = dir.path().join("first.out");
    let mut host = spawn_host_writing(&config, Stdio::from(std::fs::File::create(&first).unwrap()));
    wait_until("the strategy to hear of the fill", || heard(&first) == 1).await;
    wait_until("the fill to be marked told", || store.undelivered_fills("alpaca").unwrap().is_empty()).await;
    host.kill();
    assert_eq!(store.filled(&order.client_order_id).unwrap().0, Decimal::ONE);

    // Told once: the next start does not tell it again.
    let second = dir.path().join("second.out");
    let before = venue.state.lock().unwrap().trading_requests;
    let mut host = spawn_host_writing(&config, Stdio::from(std::fs::File::create(&second).unwrap()));
    wait_until("the second host to start", || {
        std::fs::read_to_string(&second).unwrap_or_default().contains("listening")
    })
    .await;
    // Missed fills are handed over before the desk's first sync: once it
    // has synced a few times, a second telling would have been queued long
    // since. (Showing that something does not happen needs some wait.)
    wait_until("a few syncs", || venue.state.lock().unwrap().trading_requests >= before + 12).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    host.kill();
    assert_eq!(heard(&second), 0, "{}", std::fs::read_to_string(&second).unwrap());
    assert_eq!(heard(&first), 1);
}

/// Two strategies on one venue each keep their own book: after a kill and
/// a restart, each starts from the fills of its own orders, not from the
/// venue's whole position (which holds both).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_instance_restarts_with_its_own_position_not_the_venues() {
    let venue = flat_venue().await;
    let dir = tempfile::tempdir().unwrap();
    let at = alpaca_time(2);
    let sections = format!(
        "{feed}[broker]\nkind = \"alpaca\"\nbase_url = \"{url}\"\nsync_every_ms = 100\ntimeout_ms = 2000\n\n\
         [[strategy]]\nname = \"three\"\nplugin = {MISBEHAVE_WASM:?}\nparams = {{ mode = \"buy\", qty = 3, at = \"{at}\" }}\n\n\
         [[strategy]]\nname = \"two\"\nplugin = {MISBEHAVE_WASM:?}\nparams = {{ mode = \"buy\", qty = 2, at = \"{at}\" }}\n",
        feed = alpaca_feed(&venue.url, 40),
        url = venue.url
    );
    let config = write_host_config(dir.path(), &sections);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let books = |h: &serde_json::Value| {
        let of = |name| strategy(h, name).map(|s| s["positions"]["AAPL"].as_str().unwrap_or("0").to_string());
        (of("three"), of("two"))
    };
    let mut last = serde_json::Value::Null;
    for run in ["first", "after the restart"] {
        let out = dir.path().join(format!("out-{}.txt", run.len()));
        let mut host = spawn_host_writing(&config, Stdio::from(std::fs::File::create(&out).unwrap()));
        let addr = listening_address(&out).await;
        let started = std::time::Instant::now();
        loop {
            last = health(&client, &addr).await;
            if books(&last) == (Some("3".into()), Some("2".into())) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "{run}: {last}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The control API reads the venue's book and each instance's fills.
        let api = |path: &str| {
            let url = format!("{addr}/api/v1/{path}");
            let client = client.clone();
            async move { client.get(url).send().await.unwrap().json::<serde_json::Value>().await.unwrap() }
        };
        let fills = api("fills?instance=three").await;
        let bought: Decimal = fills["fills"]
            .as_array()
            .unwrap()
            .iter()
            .inspect(|f| assert_eq!(f["instance"], "three", "{fills}"))
            .map(|f| f["qty"].as_str().unwrap().parse::<Decimal>().unwrap())
            .sum();
        assert_eq!(bought, Decimal::from(3), "{fills}");
        let positions = api("positions").await;
        assert_eq!(positions["venue"]["positions"][0]["qty"], "5", "{positions}");
        assert_eq!(positions["instances"]["two"]["AAPL"], "2", "{positions}");
        // Working orders (status syncs may lag the fills), by instance.
        let orders = api("orders?instance=two").await;
        assert_eq!(orders["venue"], "alpaca");
        assert!(orders["orders"].as_array().unwrap().iter().all(|o| o["instance"] == "two"), "{orders}");
        host.kill();
    }
    let store = Store::open(&dir.path().join("host.db")).unwrap();
    let venue_position = store.positions("alpaca").unwrap();
    assert_eq!(venue_position[0].qty, Decimal::from(5), "the venue holds both: {last}");
    assert_eq!(venue.state.lock().unwrap().order_posts, 2, "one order each, never again");
}

/// Bars that played past a paused instance (`paused_bars = "skip"`) are
/// skipped for good: a host killed and restarted does not hand them to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bars_skipped_while_paused_are_not_replayed_after_a_crash() {
    let venue = FakeVenue::start().await;
    {
        let mut s = venue.state.lock().unwrap();
        for minute in 0..30 {
            s.alpaca_bars.push(("AAPL".into(), alpaca_bar(minute, "10")));
        }
        s.visible_bars = Some(5);
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &venue.url);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "name = \"sma\"\nplugin = \"sma-crossover\"\nparams = { fast = 2, slow = 4, qty = 1 }",
        &format!("name = \"bot\"\nplugin = {MISBEHAVE_WASM:?}\nparams = {{ mode = \"ok\" }}"),
    );
    std::fs::write(&config, text).unwrap();
    let out = dir.path().join("out.txt");
    let mut host = spawn_host_writing(&config, Stdio::from(std::fs::File::create(&out).unwrap()));
    let addr = listening_address(&out).await;
    let store = Arc::new(Store::open(&dir.path().join("host.db")).unwrap());
    let saved = |store: &Store| store.strategy_state("bot@alpaca").ok().flatten();
    let seen_at = |minute: i64| saved(&store).is_some_and(|s| s.last_bar == alpaca_time(minute));
    wait_until("the first five bars", || seen_at(4)).await;
    let paused = reqwest::Client::new().post(format!("{addr}/api/v1/instances/bot/pause")).send().await.unwrap();
    assert_eq!(paused.status(), 200);
    venue.state.lock().unwrap().visible_bars = Some(15);
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while strategy(&health(&client, &addr).await, "bot").is_none_or(|s| s["bars"] != 15) {
        assert!(std::time::Instant::now() < deadline, "ten bars never played past the paused instance");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    host.kill();

    // Restarted (running, not paused): it hears the bars from the 16th on.
    let _host = spawn_host(&config);
    venue.state.lock().unwrap().visible_bars = None;
    wait_until("the rest of the bars", || seen_at(29)).await;
    let state = saved(&store).unwrap().state;
    let word = |i: usize| u64::from_le_bytes(state[i * 8..i * 8 + 8].try_into().unwrap());
    assert_eq!(word(0), 5 + 15, "bars it saw: the first five and the last fifteen");
    assert_eq!(word(2), 0, "none out of order or twice");
}
