//! Contract 0.2 through real components: stop orders a guest places, the
//! account view it reads, and the ids it picks.

use std::sync::{Arc, Mutex};

use rust_decimal::Decimal;
use stratbox::bar::Bar;
use stratbox::broker::{Commission, PaperBroker};
use stratbox::engine::{Engine, Event};
use stratbox::risk::RiskLimits;
use stratbox::runtime::{Clock, Runtime, RuntimeConfig};
use stratbox_tests::MISBEHAVE_WASM;

const DAY: i64 = 86_400_000;

fn bar(day: i64, [open, high, low, close]: [&str; 4]) -> Bar {
    let d = |s: &str| s.parse::<Decimal>().unwrap();
    Bar {
        symbol: "X".into(),
        time: day * DAY,
        open: d(open),
        high: d(high),
        low: d(low),
        close: d(close),
        volume: d("100"),
    }
}

/// Runs misbehave with `params` over `bars` on the paper broker, one bar
/// per call, and returns every event.
fn run(params: &[(&str, &str)], bars: &[Bar], setup: impl FnOnce(&mut Engine)) -> Vec<Event> {
    let runtime = Runtime::new(RuntimeConfig { max_restarts: 0, ..RuntimeConfig::default() }).unwrap();
    let plugin = runtime.load_named(MISBEHAVE_WASM).unwrap();
    let params: Vec<_> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let strategy = runtime.instantiate(&plugin, &params, Clock::virtual_at(0)).unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let broker = PaperBroker::new(Commission::default());
    let mut engine = Engine::new(Box::new(strategy), Box::new(broker), RiskLimits::default(), Decimal::from(1000))
        .with_events(move |e| sink.lock().unwrap().push(e));
    setup(&mut engine);
    engine.run(bars, 1).unwrap();
    events.lock().unwrap().clone()
}

fn fills(events: &[Event]) -> Vec<(i64, Decimal)> {
    events
        .iter()
        .filter_map(|e| if let Event::Filled { fill, .. } = e { Some((fill.time, fill.price)) } else { None })
        .collect()
}

/// A buy stop at 12 placed on day 0, worked by hand:
/// - day 1 (high 11.5) does not reach it;
/// - day 2 reaches it intrabar (open 11 < 12 ≤ high 12.5): fills at 12;
/// - had day 2 opened at 13, through the stop, it fills at the open, 13.
#[test]
fn a_stop_a_guest_places_fills_by_the_documented_rule() {
    let placed = [bar(0, ["10", "10", "10", "10"]), bar(1, ["11", "11.5", "10.5", "11"])];
    let params = [("mode", "stop"), ("at", "0"), ("price", "12"), ("qty", "2")];
    let intrabar = [placed[0].clone(), placed[1].clone(), bar(2, ["11", "12.5", "10.8", "12.2"])];
    assert_eq!(fills(&run(&params, &intrabar, |_| {})), [(2 * DAY, Decimal::from(12))]);
    let gap = [placed[0].clone(), placed[1].clone(), bar(2, ["13", "14", "12.5", "13.5"])];
    assert_eq!(fills(&run(&params, &gap, |_| {})), [(2 * DAY, Decimal::from(13))]);
    let never = [placed[0].clone(), placed[1].clone(), bar(2, ["11", "11.9", "10", "11"])];
    assert!(fills(&run(&params, &never, |_| {})).is_empty());
}

/// The account a guest reads is the engine's, as of the start of the call.
#[test]
fn a_guest_reads_its_own_cash_equity_and_position() {
    let bars = [bar(0, ["10", "10", "10", "10"]), bar(1, ["11", "11", "11", "11"])];
    let events = run(&[("mode", "account")], &bars, |engine| {
        engine.adopt_position("X".into(), Decimal::from(3), Decimal::from(10));
    });
    let seen: Vec<String> = events
        .iter()
        .filter_map(|e| if let Event::Notified { message, .. } = e { Some(message.clone()) } else { None })
        .collect();
    let value = |text: &str| {
        let (m, s) = text.split_once("e-").unwrap();
        Decimal::from_i128_with_scale(m.parse().unwrap(), s.parse().unwrap())
    };
    let read: Vec<[Decimal; 3]> = seen
        .iter()
        .map(|line| {
            let words: Vec<&str> = line.split(' ').collect();
            [value(words[1]), value(words[3]), value(words[5])]
        })
        .collect();
    // Day 0: nothing marked yet, so the position is at its average price.
    // Day 1: as of the start of the call, marked at day 0's close.
    let d = Decimal::from;
    assert_eq!(read, [[d(1000), d(1030), d(3)], [d(1000), d(1030), d(3)]], "{seen:?}");
}

/// An id reused within an instance's lifetime is refused, clearly; the
/// first order under it stands.
#[test]
fn a_reused_order_id_is_refused() {
    let bars: Vec<Bar> = (0..3).map(|day| bar(day, ["10", "10", "10", "10"])).collect();
    let events = run(&[("mode", "reuse")], &bars, |_| {});
    let reasons: Vec<&str> = events
        .iter()
        .filter_map(|e| if let Event::Rejected { reason, .. } = e { Some(reason.as_str()) } else { None })
        .collect();
    assert_eq!(reasons.len(), 2, "{events:?}");
    assert!(reasons.iter().all(|r| r.contains("order id 1 was already used")), "{reasons:?}");
    assert_eq!(fills(&events).len(), 1);
}

/// `stratbox plugin check` finds what crash recovery cannot survive: a
/// strategy that decides from WASI randomness acts differently once
/// restored from its saved state; the SMA does not.
#[test]
fn plugin_check_tells_a_deterministic_strategy_from_one_that_is_not() {
    let ibm = stratbox_tests::data("IBM.csv");
    let ibm = ibm.to_str().unwrap();
    let check = |path: &str, extra: &[&str]| {
        let mut args = vec!["plugin", "check", path, "--data", ibm];
        args.extend_from_slice(extra);
        let (code, out) = stratbox_tests::cli(&args);
        (code.unwrap(), out)
    };
    let (code, out) = check(stratbox_tests::SMA_CROSSOVER_WASM, &[]);
    assert_eq!(code, std::process::ExitCode::SUCCESS, "{out}");
    assert!(out.starts_with("deterministic: 3270 bars") && out.contains("restore at bar 1600"), "{out}");

    let (code, out) = check(MISBEHAVE_WASM, &["--param", "mode=random"]);
    assert_eq!(code, std::process::ExitCode::FAILURE, "{out}");
    assert!(out.starts_with("NOT deterministic: thing ") && out.contains("coin"), "{out}");

    let (code, out) = check(MISBEHAVE_WASM, &["--param", "mode=ok", "--format", "json"]);
    assert_eq!(code, std::process::ExitCode::SUCCESS, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["difference"], serde_json::Value::Null);
}

/// A strategy may pin its build: `plugin inspect` prints the SHA-256, and
/// any other build is refused at start.
#[test]
fn a_pinned_build_runs_and_any_other_is_refused() {
    let (code, out) = stratbox_tests::cli(&["plugin", "inspect", MISBEHAVE_WASM, "--format", "json"]);
    assert_eq!(code.unwrap(), std::process::ExitCode::SUCCESS);
    let sha256 = serde_json::from_str::<serde_json::Value>(&out).unwrap()["sha256"].as_str().unwrap().to_string();
    assert_eq!(sha256.len(), 64);
    let dir = tempfile::tempdir().unwrap();
    let run = |pin: &str| {
        let config = dir.path().join(format!("{pin}.toml"));
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[feed]\nkind = \"replay\"\ndata = \"bundled:IBM\"\nsymbol = \"IBM\"\npace_ms = 0\n\n\
             [[strategy]]\nname = \"pinned\"\nplugin = {MISBEHAVE_WASM:?}\nsha256 = \"{pin}\"\n"
        );
        std::fs::write(&config, text).unwrap();
        stratbox_tests::cli(&["run", "--config", config.to_str().unwrap(), "--exit-when-done"]).0
    };
    run(&sha256).expect("the pinned build runs");
    let wrong = "0".repeat(64);
    let err = run(&wrong).expect_err("another build is refused").to_string();
    assert!(err.contains(&format!("is build {sha256}, but the config pins {wrong}")), "{err}");
}
