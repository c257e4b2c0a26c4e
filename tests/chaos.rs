//! The host as a real process against a fake Alpaca with every fault on
//! (lost answers, dropped connections, hangs, 429s, 5XXs, revoked keys,
//! fills that land between the sync's reads), killed with SIGKILL at random
//! points many times, then restarted and finally stopped with SIGTERM.
//!
//! A strategy that orders on every bar keeps the router busy. At the end:
//! every order it decided reached the venue exactly once; every fill was
//! recorded and told exactly once; every bar was seen once, in order;
//! positions equal the broker's; nothing was ever taken for drift; and the
//! host stopped cleanly when asked.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use stratbox::order::{OrderRef, OrderStatus};
use stratbox::router::client_order_id;
use stratbox::store::Store;
use stratbox_tests::MISBEHAVE_WASM;
use stratbox_tests::fake::{FakeVenue, OrderFault, alpaca_bar, alpaca_time};
use stratbox_tests::process::{HostProcess, alpaca_feed, listening_address, wait_until, write_host_config};

const BARS: i64 = 40;
const KILLS: u64 = 8;
const INSTANCE: &str = "bot@alpaca";

/// A small, seeded generator, so a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn write_config(dir: &Path, url: &str) -> PathBuf {
    let sections = format!(
        r#"{feed}[broker]
kind = "alpaca"
base_url = "{url}"
sync_every_ms = 60
drift_threshold = "0"
timeout_ms = 2000

[[strategy]]
name = "bot"
plugin = {MISBEHAVE_WASM:?}
params = {{ mode = "churn", qty = 1 }}
"#,
        feed = alpaca_feed(url, 30)
    );
    write_host_config(dir, &sections)
}

/// The plugin's saved state: bars seen, last bar time, bars out of order
/// or repeated, fills heard of, signals heard of.
fn strategy_state(store: &Store) -> Option<[u64; 5]> {
    let saved = store.strategy_state(INSTANCE).ok()??;
    let word = |i: usize| u64::from_le_bytes(saved.state[i * 8..i * 8 + 8].try_into().unwrap());
    (saved.state.len() == 40).then(|| [word(0), word(1), word(2), word(3), word(4)])
}

fn random_fault(rng: &mut Rng) -> OrderFault {
    match rng.below(6) {
        0 => OrderFault::AcceptThen500,
        1 => OrderFault::AcceptThenDrop,
        2 => OrderFault::AcceptThenHang(Duration::from_secs(5)),
        3 => OrderFault::Status { code: 429, retry_after: Some(1) },
        4 => OrderFault::Status { code: 503, retry_after: None },
        _ => OrderFault::Status { code: 401, retry_after: None },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_promise_holds_across_faults_and_kills() {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("chaos seed {seed}");
    let mut rng = Rng(seed);
    let venue = FakeVenue::start().await;
    {
        let mut s = venue.state.lock().unwrap();
        for minute in 0..BARS {
            s.alpaca_bars.push(("AAPL".into(), alpaca_bar(minute, "10")));
        }
        s.visible_bars = Some(4);
        s.auto_fill = Some("10".into());
        // Fills land a few requests after the order: between the sync's reads.
        s.fill_after_requests = Some(3);
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &venue.url);
    let spawn = || HostProcess::spawn(env!("CARGO_BIN_EXE_stratbox-under-test"), &config, Stdio::null());

    let mut visible = 4;
    for round in 0..KILLS {
        {
            let mut s = venue.state.lock().unwrap();
            for _ in 0..rng.below(4) {
                s.order_faults.push_back(random_fault(&mut rng));
            }
            // Sometimes the key is revoked for a few requests.
            if rng.below(3) == 0 {
                s.revoked = 1 + rng.below(6) as usize;
            }
            visible = (visible + 2 + rng.below(5) as usize).min(BARS as usize);
            s.visible_bars = Some(visible);
        }
        let mut host = spawn();
        tokio::time::sleep(Duration::from_millis(150 + rng.below(1200))).await;
        host.kill();
        let s = venue.state.lock().unwrap();
        let orders: Vec<String> =
            s.orders.iter().map(|o| format!("{}:{}:{}", o["client_order_id"], o["side"], o["status"])).collect();
        eprintln!(
            "round {round}: killed with {} orders at the venue: {orders:?} positions {:?}",
            orders.len(),
            s.positions
        );
    }

    // The last run, with no new faults: it settles everything.
    venue.state.lock().unwrap().visible_bars = Some(BARS as usize);
    let mut host = spawn();
    let store = Arc::new(Store::open(&dir.path().join("host.db")).unwrap());
    wait_until("every bar to be committed", Duration::from_secs(180), || {
        strategy_state(&store).is_some_and(|s| s[0] >= BARS as u64)
    })
    .await;
    wait_until("every order to fill and be told", Duration::from_secs(180), || {
        let orders =
            (1..=BARS as u64).map(|n| store.order(&client_order_id(INSTANCE, OrderRef::new(1, n))).ok().flatten());
        let filled = orders.into_iter().all(|o| o.is_some_and(|o| o.status == OrderStatus::Filled));
        filled && store.undelivered_fills("alpaca").is_ok_and(|f| f.is_empty())
    })
    .await;
    // Let a sync compare positions after the last fill.
    tokio::time::sleep(Duration::from_millis(500)).await;
    host.signal("TERM");
    let status = host.wait_for_exit(Duration::from_secs(60)).expect("the host stops on SIGTERM");
    assert!(status.success(), "a graceful stop exits 0: {status}");

    let s = venue.state.lock().unwrap();
    // Every decided order reached the venue exactly once, and nothing else did.
    let mut at_venue: Vec<&str> = s.orders.iter().map(|o| o["client_order_id"].as_str().unwrap()).collect();
    at_venue.sort_unstable();
    let mut decided: Vec<String> = (1..=BARS as u64).map(|n| client_order_id(INSTANCE, OrderRef::new(1, n))).collect();
    decided.sort_unstable();
    assert_eq!(at_venue, decided, "seed {seed}: each decided order at the venue exactly once");
    // One lifetime: every restart restored the committed state.
    assert_eq!(store.last_lifetime(INSTANCE).unwrap(), 1, "seed {seed}: no instance started afresh");
    let mut ids = store.order_ids(INSTANCE, 1).unwrap();
    ids.sort_unstable();
    assert_eq!(ids, (1..=BARS as u64).collect::<Vec<_>>(), "one order per bar, none decided twice");

    // Every bar seen once, in order; every fill told once.
    let [seen, last, disorder, fills, _] = strategy_state(&store).unwrap();
    assert_eq!((seen, disorder), (BARS as u64, 0), "seed {seed}: bars seen once, in order");
    assert_eq!(last as i64, alpaca_time(BARS - 1));
    assert_eq!(fills, BARS as u64, "seed {seed}: each fill told exactly once");
    for n in 1..=BARS as u64 {
        let (qty, _) = store.filled(&client_order_id(INSTANCE, OrderRef::new(1, n))).unwrap();
        assert_eq!(qty, Decimal::ONE, "seed {seed}: intent {n}'s fill recorded once");
    }

    // Positions equal the broker's, and nothing was ever taken for drift.
    let venue_qty: Decimal =
        s.positions.iter().map(|p| p["qty"].as_str().unwrap().parse::<Decimal>().unwrap()).sum::<Decimal>();
    let local_qty: Decimal = store.positions("alpaca").unwrap().iter().map(|p| p.qty).sum();
    assert_eq!((local_qty, venue_qty), (Decimal::ZERO, Decimal::ZERO), "seed {seed}");
    let kinds: Vec<String> = store.events_after(0, 1_000_000).unwrap().into_iter().map(|e| e.kind).collect();
    let false_drift = kinds.iter().filter(|k| *k == "position.corrected").count();
    assert_eq!(false_drift, 0, "seed {seed}: no correction without a foreign trade");
    let drift_halts = store
        .events_after(0, 1_000_000)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "risk.halted" && e.data.contains("drift"));
    assert_eq!(drift_halts.count(), 0, "seed {seed}");
    assert!(!kinds.iter().any(|k| k == "order.lost"), "seed {seed}: no order given up on");
}

/// A venue with a position nobody placed: with a threshold of 0, the host
/// halts; the halt outlives a kill, shows in `/health`, and stops every
/// order. (Orders decided before a halt and sent after it are refused at
/// the send: see the router's unit tests.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halt_survives_a_restart_and_stops_every_order() {
    let venue = FakeVenue::start().await;
    {
        let mut s = venue.state.lock().unwrap();
        for minute in 0..6 {
            s.alpaca_bars.push(("AAPL".into(), alpaca_bar(minute, "10")));
        }
        s.visible_bars = Some(0);
        s.auto_fill = Some("10".into());
        s.positions = vec![serde_json::json!({"symbol": "MSFT", "qty": "3", "avg_entry_price": "400", "side": "long"})];
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &venue.url);
    let store = Arc::new(Store::open(&dir.path().join("host.db")).unwrap());
    let halted =
        || store.events_after(0, 1000).unwrap().iter().any(|e| e.kind == "risk.halted" && e.data.contains("drift"));
    let mut host = HostProcess::spawn(env!("CARGO_BIN_EXE_stratbox-under-test"), &config, Stdio::null());
    wait_until("the drift halt", Duration::from_secs(120), halted).await;
    host.kill();

    // Bars arrive while the host is down; the next run decides orders on them.
    venue.state.lock().unwrap().visible_bars = Some(6);
    let out = dir.path().join("second.out");
    let mut host = HostProcess::spawn(
        env!("CARGO_BIN_EXE_stratbox-under-test"),
        &config,
        Stdio::from(std::fs::File::create(&out).unwrap()),
    );
    let address = listening_address(&out).await;
    // The strategy decides an order on each bar; the risk checks refuse
    // each (at the decision, or at the send if decided before the halt).
    // (The journal is written behind the commit of each input, so the
    // refusal may land a moment after the state that saw it.)
    let refused = || store.events_after(0, 1000).unwrap().into_iter().filter(|e| e.kind == "order.rejected").count();
    wait_until("the strategy to see every bar, its orders refused", Duration::from_secs(120), || {
        strategy_state(&store).is_some_and(|s| s[0] == 6) && refused() >= 1
    })
    .await;
    let health: serde_json::Value = reqwest::get(format!("{address}/health")).await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["venues"][0]["venue"], "alpaca", "{health}");
    assert_eq!(health["venues"][0]["state"], "halted", "{health}");
    assert_eq!(health["venues"][0]["reason"]["kind"], "drift", "{health}");
    assert_eq!(venue.state.lock().unwrap().order_posts, 0, "no order reached a halted venue");

    // An operator lifts the halt while the host runs; it takes the change
    // at its next sync, and orders on new bars go out.
    let (result, out) = stratbox_tests::cli(&["venue", "resume", "alpaca", "--config", config.to_str().unwrap()]);
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(out.trim(), "alpaca is now active");
    let health = || async {
        let health: serde_json::Value = reqwest::get(format!("{address}/health")).await.unwrap().json().await.unwrap();
        health["venues"][0]["state"] == "active"
    };
    let start = std::time::Instant::now();
    while !health().await {
        assert!(start.elapsed() < Duration::from_secs(120), "the host never took the resume");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    {
        let mut s = venue.state.lock().unwrap();
        for minute in 6..8 {
            s.alpaca_bars.push(("AAPL".into(), alpaca_bar(minute, "10")));
        }
        s.visible_bars = Some(8);
    }
    wait_until("orders after the halt is lifted", Duration::from_secs(120), || {
        venue.state.lock().unwrap().order_posts >= 1
    })
    .await;
    host.kill();
    let kinds: Vec<String> = store.events_after(0, 1000).unwrap().into_iter().map(|e| e.kind).collect();
    assert!(kinds.contains(&"risk.resumed".to_string()), "{kinds:?}");
}

/// SIGTERM stops a host that trades on a venue: it drains and commits,
/// then exits 0, whatever it was doing; a second signal exits at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_trading_host_cleanly() {
    let venue = FakeVenue::start().await;
    {
        let mut s = venue.state.lock().unwrap();
        for minute in 0..BARS {
            s.alpaca_bars.push(("AAPL".into(), alpaca_bar(minute, "10")));
        }
        s.auto_fill = Some("10".into());
        s.fill_after_requests = Some(2);
        // Still retrying an order when the signal comes.
        s.order_faults.push_back(OrderFault::Status { code: 429, retry_after: Some(30) });
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &venue.url);
    let store = Arc::new(Store::open(&dir.path().join("host.db")).unwrap());
    for signals in ["TERM", "INT", "TERM TERM"] {
        let out = dir.path().join("run.out");
        let mut host = HostProcess::spawn(
            env!("CARGO_BIN_EXE_stratbox-under-test"),
            &config,
            Stdio::from(std::fs::File::create(&out).unwrap()),
        );
        listening_address(&out).await;
        wait_until("a committed input", Duration::from_secs(120), || strategy_state(&store).is_some()).await;
        for signal in signals.split(' ') {
            host.signal(signal);
        }
        let status = host.wait_for_exit(Duration::from_secs(60)).unwrap_or_else(|| panic!("{signals}: still running"));
        let expected =
            if signals.contains(' ') { [Some(0), Some(130)].contains(&status.code()) } else { status.success() };
        assert!(expected, "{signals}: {status}");
    }
    // Whatever the stops interrupted, each order went out once.
    let s = venue.state.lock().unwrap();
    let mut ids: Vec<&str> = s.orders.iter().map(|o| o["client_order_id"].as_str().unwrap()).collect();
    let sent = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), sent, "no order sent twice");
}

/// Webhooks into a live host, killed with SIGKILL three times while
/// deliveries pour in: a sender that retries until it hears 202 or 200
/// (the delivery was taken before) finds every delivery acted on by the
/// strategy exactly once, each in the commit of its own input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_webhook_is_acted_on_exactly_once_across_kills() {
    const N: usize = 240;
    let venue = FakeVenue::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &venue.url);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        "\n[[webhook]]\nname = \"tv\"\nkind = \"tradingview\"\naction = \"signal\"\nstrategies = [\"bot\"]\n\
         passphrase = \"tv-pass\"\nper_minute = 6000000\n",
    );
    std::fs::write(&config, text).unwrap();
    let store = Arc::new(Store::open(&dir.path().join("host.db")).unwrap());
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let alert = |n: usize| format!(r#"{{"passphrase": "tv-pass", "ticker": "AAPL", "timenow": "n-{n}"}}"#);

    let mut next = 0;
    for life in 0..4 {
        let out = dir.path().join(format!("life-{life}.out"));
        let mut host = HostProcess::spawn(
            env!("CARGO_BIN_EXE_stratbox-under-test"),
            &config,
            Stdio::from(std::fs::File::create(&out).unwrap()),
        );
        let url = format!("{}/webhooks/tradingview/tv", listening_address(&out).await);
        // The last life takes the rest; the others die part way.
        let until = if life == 3 { N } else { (next + N / 4).min(N) };
        let kill_at = next + (until - next) / 2;
        while next < until {
            if life < 3 && next == kill_at {
                host.kill();
                break;
            }
            let response = client.post(&url).header("content-type", "application/json").body(alert(next)).send().await;
            match response.map(|r| r.status().as_u16()) {
                Ok(202 | 200) => next += 1,
                Ok(503) => tokio::time::sleep(Duration::from_millis(20)).await,
                Ok(other) => panic!("delivery {next}: {other}"),
                Err(error) => panic!("delivery {next}: {error}"),
            }
        }
        if life == 3 {
            wait_until("every delivery to be acted on", Duration::from_secs(120), || {
                strategy_state(&store).is_some_and(|s| s[4] >= N as u64)
                    && store.waiting_deliveries(0, 10).is_ok_and(|w| w.is_empty())
            })
            .await;
            host.signal("TERM");
            let status = host.wait_for_exit(Duration::from_secs(60)).expect("the host stops on SIGTERM");
            assert!(status.success(), "{status}");
        }
    }
    let signals = strategy_state(&store).unwrap()[4];
    assert_eq!(signals, N as u64, "each accepted delivery acted on exactly once");
}

/// A burst of market orders on Binance, which fills them as it takes them,
/// with a drift threshold of 0 and a kill in the middle: no fill is ever
/// taken for drift (the sync never overlaps a send), and the holdings end
/// equal to the broker's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_binance_orders_is_never_drift() {
    use stratbox_tests::fake::BINANCE_SECRET;
    const KLINES: i64 = 30;
    let venue = FakeVenue::start().await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let start = (now / 60_000 - KLINES - 2) * 60_000;
    {
        let rows: Vec<_> = (0..KLINES)
            .map(|i| {
                let open = start + i * 60_000;
                serde_json::json!([open, "100", "101", "99", "100.5", "10", open + 59_999, "15", 3, "5", "7", "0"])
            })
            .collect();
        let mut s = venue.state.lock().unwrap();
        s.binance_klines.insert("BTCUSDT".into(), rows);
        s.binance_balances = vec![("USDT".into(), "100000".into())];
    }
    let dir = tempfile::tempdir().unwrap();
    let sections = format!(
        r#"[feed]
kind = "binance"
base_url = "{url}"
symbols = ["BTCUSDT"]
timeframe = "1m"
poll_ms = 30
delay_ms = 0
backfill_minutes = {backfill}

[broker]
kind = "binance"
base_url = "{url}"
quote_asset = "USDT"
sync_every_ms = 50
drift_threshold = "0"
timeout_ms = 5000

[[strategy]]
name = "bot"
plugin = {MISBEHAVE_WASM:?}
params = {{ mode = "churn", qty = 1 }}
"#,
        url = venue.url,
        backfill = KLINES + 5,
    );
    let config = write_host_config(dir.path(), &sections);
    let spawn = || {
        let keys = [("BINANCE_API_KEY", "test-key"), ("BINANCE_API_SECRET", BINANCE_SECRET)];
        HostProcess::spawn_with(env!("CARGO_BIN_EXE_stratbox-under-test"), &config, Stdio::null(), &keys)
    };
    let store = Arc::new(Store::open(&dir.path().join("host.db")).unwrap());
    let bot = |store: &Store| store.strategy_state("bot@binance").ok().flatten().map(|s| s.state);
    let seen = |store: &Store| bot(store).map_or(0, |s| u64::from_le_bytes(s[..8].try_into().unwrap()));

    let host = spawn();
    wait_until("a few orders", Duration::from_secs(120), || venue.state.lock().unwrap().binance_orders.len() >= 5)
        .await;
    drop(host);
    let _host = spawn();
    wait_until("every kline and order settled", Duration::from_secs(120), || {
        let settled = (1..=KLINES as u64).all(|n| {
            store
                .order(&client_order_id("bot@binance", OrderRef::new(1, n)))
                .ok()
                .flatten()
                .is_some_and(|o| o.status == OrderStatus::Filled)
        });
        seen(&store) == KLINES as u64 && settled
    })
    .await;
    // Let a sync compare holdings after the last fill.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let kinds: Vec<String> = store.events_after(0, 1_000_000).unwrap().into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds.iter().filter(|k| *k == "position.corrected").count(), 0, "{kinds:?}");
    assert!(!kinds.iter().any(|k| k == "risk.halted"), "{kinds:?}");
    let s = venue.state.lock().unwrap();
    let mut ids: Vec<&str> = s.binance_orders.iter().map(|o| o["clientOrderId"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), KLINES as usize, "each decided order sent exactly once");
    let held: Decimal = store.positions("binance").unwrap().iter().map(|p| p.qty).sum();
    let theirs: Decimal =
        s.binance_balances.iter().filter(|(a, _)| a != "USDT").map(|(_, f)| f.parse::<Decimal>().unwrap()).sum();
    assert_eq!(held, theirs, "holdings equal the broker's");
}
