//! The host as a real process taking TradingView alerts, killed with
//! SIGKILL while deliveries are coming in and restarted on the same store:
//! every delivery accepted with 202 and not yet acted on by its strategy is
//! handed over after the restart, and no delivery reaches the strategy
//! twice. (On the paper broker a row is done once its strategy has acted on
//! it; the live-venue case, exactly once, is in `chaos.rs`.)

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stratbox::store::Store;
use stratbox::webhook::Inbound;
use stratbox_tests::MISBEHAVE_WASM;
use stratbox_tests::process::{HostProcess, listening_address};

/// Starts the host and waits (bounded) for the address it listens on.
async fn launch(config: &Path, log: &Path) -> (HostProcess, String) {
    let out = Stdio::from(std::fs::File::create(log).unwrap());
    let env = [("TV_PASSPHRASE", "tv-pass")];
    let host = HostProcess::spawn_with(env!("CARGO_BIN_EXE_stratbox-under-test"), config, out, &env);
    let address = listening_address(log).await;
    (host, format!("{address}/webhooks/tradingview/tv"))
}

fn write_config(dir: &Path) -> PathBuf {
    let sections = format!(
        r#"[feed]
kind = "replay"
data = "bundled:AAPL"
symbol = "AAPL"
pace_ms = 2

[[strategy]]
name = "bot"
plugin = {MISBEHAVE_WASM:?}
params = {{ mode = "quiet" }}

[[webhook]]
name = "tv"
kind = "tradingview"
action = "signal"
strategies = ["bot"]
passphrase_env = "TV_PASSPHRASE"
per_minute = 6000000
"#
    );
    stratbox_tests::process::write_host_config(dir, &sections)
}

fn alert(n: usize) -> String {
    format!(r#"{{"passphrase": "tv-pass", "ticker": "AAPL", "timenow": "n-{n}"}}"#)
}

/// The delivery number in a payload or journal line: its `timenow`.
fn number(text: &str) -> Option<usize> {
    let rest = text.split("n-").nth(1)?;
    rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
}

/// How many times each delivery reached the strategy, by its journal.
fn signals_seen(store: &Store) -> HashMap<usize, usize> {
    let mut seen = HashMap::new();
    for line in store.events_after(0, 1_000_000).unwrap() {
        if line.kind == "strategy.notify" && line.data.contains("signal tv") {
            *seen.entry(number(&line.data).expect("a numbered signal")).or_default() += 1;
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_accepted_before_a_kill_reach_the_strategy_once_after_it() {
    const N: usize = 400;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let (mut host, url) = launch(&config, &dir.path().join("first.log")).await;

    // Senders post deliveries side by side; the host dies under them.
    let accepted = Arc::new(Mutex::new(BTreeSet::new()));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut senders = Vec::new();
    for lane in 0..4 {
        let (url, accepted, client) = (url.clone(), accepted.clone(), client.clone());
        senders.push(tokio::spawn(async move {
            for n in (lane..N).step_by(4) {
                let response = client.post(&url).header("content-type", "application/json").body(alert(n)).send().await;
                match response.map(|r| r.status().as_u16()) {
                    Ok(202) => {
                        accepted.lock().unwrap().insert(n);
                    }
                    Ok(503) => {}
                    Ok(other) => panic!("delivery {n}: {other}"),
                    Err(_) => return, // the host is gone
                }
            }
        }));
    }
    let start = Instant::now();
    while accepted.lock().unwrap().len() < N / 2 {
        assert!(start.elapsed() < Duration::from_secs(60), "too few deliveries accepted");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    host.kill();
    for sender in senders {
        sender.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();

    // Between lives: what waits in the inbox, and what the strategy saw.
    let db = dir.path().join("host.db");
    let (waiting, before) = {
        let store = Store::open(&db).unwrap();
        let waiting: BTreeSet<usize> = store
            .waiting_deliveries(0, 1_000_000)
            .unwrap()
            .iter()
            .map(|item| match Inbound::decode(item).unwrap() {
                Inbound::Signal { payload, .. } => number(&payload).unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        (waiting, signals_seen(&store))
    };
    assert!(before.values().all(|&n| n == 1), "no delivery twice before the kill: {before:?}");
    assert!(waiting.iter().all(|n| !before.contains_key(n)), "waiting means not yet acted on");

    // Second life: the inbox drains into the strategy.
    let (mut host, url) = launch(&config, &dir.path().join("second.log")).await;
    let start = Instant::now();
    let seen = loop {
        let seen = signals_seen(&Store::open(&db).unwrap());
        if waiting.iter().all(|n| seen.contains_key(n)) {
            break seen;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "deliveries left waiting: {waiting:?} {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // A sender retrying an accepted delivery now changes nothing.
    for &n in accepted.iter().take(5) {
        let response =
            client.post(&url).header("content-type", "application/json").body(alert(n)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "delivery {n} again");
    }
    host.kill();
    assert!(seen.values().all(|&n| n == 1), "no delivery reached the strategy twice: {seen:?}");
    let accounted = accepted.iter().filter(|n| seen.contains_key(n) || waiting.contains(n)).count();
    eprintln!(
        "{} accepted, {} waiting at the kill, {} seen by the strategy, {} accepted and accounted for",
        accepted.len(),
        waiting.len(),
        seen.len(),
        accounted
    );
}
