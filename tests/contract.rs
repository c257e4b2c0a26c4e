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
