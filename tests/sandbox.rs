//! A strategy sees only the contract, is stopped when it misbehaves, and
//! never takes the host down. Uses the `misbehave` test plugin.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rust_decimal::Decimal;
use stratbox::bar::Bar;
use stratbox::broker::PaperBroker;
use stratbox::engine::{Engine, Event};
use stratbox::feed::{CsvLimits, load_csv};
use stratbox::order::{Action, Fill};
use stratbox::risk::RiskLimits;
use stratbox::runtime::{Budget, Clock, Plugin, Rates, Runtime, RuntimeConfig, WasmStrategy};
use stratbox::strategy::{Breaches, Fault, Rejection, Strategy, StrategyError};
use stratbox_tests::{MISBEHAVE_WASM, PATIENCE, SMA_CROSSOVER_WASM, data};

fn runtime(config: RuntimeConfig) -> Runtime {
    Runtime::new(RuntimeConfig { max_instances: 8, restart_backoff: Duration::ZERO, ..config }).unwrap()
}

/// The default config with a deadline no well-behaved call comes near: only
/// the deadline test depends on a deadline firing.
fn roomy() -> RuntimeConfig {
    RuntimeConfig { budget: budget(|b| b.call_timeout = PATIENCE), ..Default::default() }
}

/// The default budget, changed by `change`.
fn budget(change: impl FnOnce(&mut Budget)) -> Budget {
    let mut budget = Budget::default();
    change(&mut budget);
    budget
}

fn misbehave(runtime: &Runtime) -> Arc<Plugin> {
    runtime.load("misbehave", &std::fs::read(MISBEHAVE_WASM).unwrap()).unwrap()
}

fn start(runtime: &Runtime, plugin: &Arc<Plugin>, params: &[(&str, &str)]) -> WasmStrategy {
    let params: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    runtime.instantiate(plugin, &params, Clock::virtual_at(0)).unwrap()
}

fn ibm() -> Vec<Bar> {
    load_csv(&data("IBM.csv"), "IBM", CsvLimits::default()).unwrap()
}

fn notes(actions: &[(usize, Action)]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|(_, a)| match a {
            Action::Notify { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn an_infinite_loop_is_stopped_by_the_deadline_and_the_host_goes_on() {
    // Every call here shares the deadline, and the well-behaved ones (the
    // restarted instance, the SMA) must finish within it on a slow or busy
    // machine: 2 s is far more than they need, and the loop is still stopped.
    let rt = runtime(RuntimeConfig {
        budget: budget(|b| b.call_timeout = Duration::from_secs(2)),
        max_restarts: 1,
        ..Default::default()
    });
    let plugin = misbehave(&rt);
    let bars = ibm();
    let at = bars[3].time.to_string();
    let mut looping = start(&rt, &plugin, &[("mode", "loop"), ("at", &at)]);

    let err = looping.on_bars(&bars[..5]).unwrap_err();
    assert!(
        matches!(&err, StrategyError::Restarted { fault: Fault::Deadline { timeout_ms: 2000 }, restarts: 1, .. }),
        "{err}"
    );
    // The restarted instance works again on later bars.
    looping.on_bars(&bars[5..10]).unwrap();
    // A second loop exceeds max_restarts: the strategy is marked failed.
    let err = looping.on_bars(&bars[..5]).unwrap_err();
    assert!(matches!(&err, StrategyError::Failed { reason, .. } if reason.contains("deadline")), "{err}");
    assert!(matches!(looping.on_bars(&bars[5..6]), Err(StrategyError::Failed { .. })));

    // The runtime and other strategies are unaffected.
    let sma = rt.load("sma", &std::fs::read(SMA_CROSSOVER_WASM).unwrap()).unwrap();
    let mut engine = Engine::new(
        Box::new(start(&rt, &sma, &[])),
        Box::new(PaperBroker::default()),
        RiskLimits::default(),
        Decimal::from(100_000),
    );
    engine.run(&bars, 128).unwrap();
    assert!(engine.counts().fills > 100);
}

#[test]
fn a_trap_restarts_the_strategy_until_it_is_marked_failed() {
    let rt = runtime(RuntimeConfig { max_restarts: 2, ..roomy() });
    let plugin = misbehave(&rt);
    let bars = ibm();
    let mut trapping = start(&rt, &plugin, &[("mode", "trap")]);
    for expected in 1..=2 {
        let err = trapping.on_bars(&bars[..2]).unwrap_err();
        let StrategyError::Restarted { fault: Fault::Trap { message }, restarts, call, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!((*restarts, *call), (expected, "on-bars"));
        // Briefly: the trap and the guest's panic message, no backtrace.
        assert!(message.contains("unreachable"), "{message}");
        assert!(message.contains(&format!("asked to trap at {}", bars[0].time)), "{message}");
        assert!(!message.contains("backtrace") && message.lines().count() == 1, "{message}");
        assert!(message.len() < 2 * stratbox::runtime::MAX_GUEST_TEXT, "{message}");
    }
    assert!(matches!(trapping.on_bars(&bars[..2]), Err(StrategyError::Failed { .. })));
    assert_eq!(trapping.restarts(), 2);
    assert!(trapping.failure().is_some());
}

#[test]
fn the_engine_reports_a_restart_and_keeps_trading() {
    let rt = runtime(RuntimeConfig { max_restarts: 1, ..roomy() });
    let plugin = misbehave(&rt);
    let bars = ibm();
    let at = bars[10].time.to_string();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let strategy = start(&rt, &plugin, &[("mode", "trap"), ("at", &at)]);
    let mut engine =
        Engine::new(Box::new(strategy), Box::new(PaperBroker::default()), RiskLimits::default(), Decimal::from(1000))
            .with_events(move |e| sink.lock().unwrap().push(e));
    engine.run(&bars[..40], 4).unwrap();
    assert_eq!(engine.counts().restarts, 1);
    assert_eq!(engine.counts().bars, 40);
    let events = events.lock().unwrap();
    assert!(events.iter().any(|e| matches!(e, Event::StrategyRestarted { error } if error.contains("trapped"))));
    drop(events);
    // The fresh instance saw every bar after the lost batch (bars 8..12).
    let state = engine.strategy_mut().save_state().unwrap();
    assert_eq!(u64::from_le_bytes(state[..8].try_into().unwrap()), 28, "bars seen, the first word of the state");
}

#[test]
fn memory_is_capped_per_store() {
    let rt = runtime(RuntimeConfig { budget: budget(|b| b.memory = 16 << 20), max_restarts: 0, ..roomy() });
    let plugin = misbehave(&rt);
    let mut hog = start(&rt, &plugin, &[("mode", "oom")]);
    let err = hog.on_bars(&ibm()[..1]).unwrap_err();
    assert!(
        matches!(&err, StrategyError::Failed { reason, .. } if reason.starts_with("ran out of its 16 MiB of memory")),
        "{err}"
    );
    assert_eq!(hog.breaches(), Breaches { memory: 1, ..Breaches::default() });
    // A well-behaved instance of the same plugin still starts.
    let mut ok = start(&rt, &plugin, &[]);
    assert_eq!(notes(&ok.on_bars(&ibm()[..3]).unwrap()), vec!["seen 3"]);
}

#[test]
fn output_over_the_budget_is_dropped_without_a_trap() {
    // 100 KB on each of stdout and stderr per bar: the 1 KiB budget is
    // exceeded about 200 times over in each call. Writing it takes time, so
    // the deadline is out of the way: this test is about the budget.
    let rt = runtime(RuntimeConfig { budget: budget(|b| b.log_bytes_per_call = 1024), max_restarts: 0, ..roomy() });
    let plugin = misbehave(&rt);
    let mut chatty = start(&rt, &plugin, &[("mode", "spam"), ("spam", "100000")]);
    chatty.on_bars(&ibm()[..2]).unwrap();
    chatty.on_bars(&ibm()[2..3]).unwrap();
}

#[test]
fn the_sandbox_has_no_files_no_environment_and_virtual_time() {
    let rt = runtime(roomy());
    let plugin = misbehave(&rt);
    let mut probe = start(&rt, &plugin, &[("mode", "probe")]);
    let bars = ibm();
    let seen = notes(&probe.on_bars(&bars[..1]).unwrap());
    let line = &seen[0];
    assert!(line.contains("fs=Err("), "no directory is preopened: {line}");
    assert!(line.contains("env=0 args=0"), "no environment or arguments: {line}");
    let time = bars[0].time;
    assert!(line.contains(&format!("wall_ms={time} host_now={time}")), "clocks follow the bars: {line}");
}

#[test]
fn risk_checks_decide_what_reaches_the_broker() {
    let rt = runtime(roomy());
    let plugin = misbehave(&rt);
    let bars = ibm();
    let risk = RiskLimits {
        max_position: Some(Decimal::from(5)),
        max_order_notional: Some(Decimal::from(10_000)),
        allowed_symbols: Some(vec!["IBM".into()]),
    };
    let run = |params: &[(&str, &str)]| {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let mut engine = Engine::new(
            Box::new(start(&rt, &plugin, params)),
            Box::new(PaperBroker::default()),
            risk.clone(),
            Decimal::from(100_000),
        )
        .with_events(move |e| sink.lock().unwrap().push(e));
        engine.run(&bars[..20], 5).unwrap();
        let events = events.lock().unwrap().clone();
        (engine.counts(), engine.portfolio().qty("IBM"), events)
    };

    let (counts, position, _) = run(&[("mode", "buy")]);
    assert_eq!(position, Decimal::from(5), "buys stop at the position limit");
    assert_eq!((counts.orders, counts.rejected), (5, 15));

    let (counts, position, events) = run(&[("mode", "buy"), ("symbol", "MSFT")]);
    assert_eq!((counts.orders, counts.rejected, position), (0, 20, Decimal::ZERO));
    let rejected = events
        .iter()
        .filter(|e| matches!(e, Event::Rejected { reason, .. } if reason.contains("not in the allowed symbols")))
        .count();
    assert_eq!(rejected, 20);
    // The strategy hears about each rejection through on-reject.
    let told = events
        .iter()
        .filter(|e| matches!(e, Event::Notified { message, .. } if message.starts_with("rejected")))
        .count();
    assert_eq!(told, 20);

    let (counts, _, _) = run(&[("mode", "buy"), ("qty", "100")]);
    assert_eq!(counts.orders, 0, "100 shares of IBM exceed both limits");
}

#[test]
fn absurd_quantities_are_refused_without_limits_configured() {
    let rt = runtime(roomy());
    let plugin = misbehave(&rt);
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let strategy = start(&rt, &plugin, &[("mode", "buy"), ("qty", &i64::MAX.to_string())]);
    let mut engine =
        Engine::new(Box::new(strategy), Box::new(PaperBroker::default()), RiskLimits::default(), Decimal::from(1000))
            .with_events(move |e| sink.lock().unwrap().push(e));
    engine.run(&ibm()[..10], 3).unwrap();
    assert_eq!((engine.counts().orders, engine.counts().rejected), (0, 10));
    let events = events.lock().unwrap();
    assert!(events.iter().all(|e| !matches!(e, Event::Rejected { reason, .. } if !reason.contains("host maximum"))));
}

/// Runs `f` on its own thread and fails the test if it does not return
/// within [`PATIENCE`]: a guest stuck in a host call would hold it forever.
fn within_patience<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(PATIENCE).unwrap_or_else(|_| panic!("{what} did not return: a guest blocked the host"))
}

/// `std::thread::sleep` is a WASI timer and a blocking `poll`: no wasm runs
/// while it waits, so the epoch deadline cannot stop it. The host's timers
/// are ready at once, so an hour's sleep in every call returns at once.
#[test]
fn a_guest_sleeping_in_wasi_does_not_hold_the_host() {
    let bars = ibm();
    let strategy = within_patience("a backtest of a sleeping strategy", move || {
        let rt = runtime(roomy());
        let plugin = misbehave(&rt);
        let mut sleeper = start(&rt, &plugin, &[("mode", "sleep")]);
        for chunk in bars.chunks(512) {
            sleeper.on_bars(chunk).unwrap();
        }
        sleeper.restarts()
    });
    assert_eq!(strategy, 0, "sleeping is not a fault; it just does not wait");
}

/// A guest that waits for time to pass by reading the clock spins in wasm,
/// where the deadline stops it (in a backtest the clock does not move).
#[test]
fn a_guest_spinning_on_the_clock_is_stopped_by_the_deadline() {
    let err = within_patience("a spinning strategy", || {
        let rt = runtime(RuntimeConfig {
            budget: budget(|b| b.call_timeout = Duration::from_millis(200)),
            max_restarts: 0,
            ..roomy()
        });
        let plugin = misbehave(&rt);
        let mut spinner = start(&rt, &plugin, &[("mode", "wait")]);
        spinner.on_bars(&ibm()[..3]).unwrap_err()
    });
    assert!(matches!(&err, StrategyError::Failed { reason, .. } if reason.contains("deadline")), "{err}");
}

/// Strategies replaying side by side, on their own threads, each have their
/// own clock: one's progress never moves the time another reads mid-call.
#[test]
fn each_strategy_reads_its_own_replay_clock() {
    let rt = Arc::new(runtime(roomy()));
    let plugin = misbehave(&rt);
    let bars = Arc::new(ibm());
    let replay = Clock::virtual_at(bars[0].time);
    let params = [("mode".to_string(), "probe".to_string())];
    let threads: Vec<_> = [0, 1500]
        .into_iter()
        .map(|from| {
            let mut probe = rt.instantiate(&plugin, &params, replay.own()).unwrap();
            let bars = bars.clone();
            std::thread::spawn(move || {
                for bar in &bars[from..from + 1000] {
                    let note = notes(&probe.on_bars(std::slice::from_ref(bar)).unwrap()).remove(0);
                    assert!(note.contains(&format!("host_now={}", bar.time)), "{note}");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

/// Guest-supplied text reaches errors (and so logs, the journal and
/// `/health`) cut to a documented size, with a marker.
#[test]
fn huge_guest_text_is_cut_before_it_reaches_an_error() {
    let rt = runtime(RuntimeConfig { max_restarts: 0, ..roomy() });
    let plugin = misbehave(&rt);
    let params = [("mode".to_string(), "refuse-long".to_string())];
    let refused = rt.instantiate(&plugin, &params, Clock::virtual_at(0)).err().expect("refused").to_string();
    assert!(refused.len() < 2 * stratbox::runtime::MAX_GUEST_TEXT, "{} bytes", refused.len());
    assert!(refused.contains("more bytes cut]"), "{refused}");

    let mut shouting = start(&rt, &plugin, &[("mode", "long-symbol")]);
    let err = shouting.on_bars(&ibm()[..1]).unwrap_err().to_string();
    assert!(err.len() < 2 * stratbox::runtime::MAX_GUEST_TEXT, "{} bytes", err.len());
    assert!(err.contains("invalid symbol") && err.contains("(1048576 bytes)"), "{err}");
}

/// A fault in `save-state` (called after every live input, and before a
/// swap) restarts the instance in the open: counted and reported like a
/// fault in any other call.
#[test]
fn a_fault_in_save_state_is_a_counted_restart() {
    let rt = runtime(RuntimeConfig { max_restarts: 3, ..roomy() });
    let plugin = misbehave(&rt);
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let mut engine = Engine::new(
        Box::new(start(&rt, &plugin, &[("mode", "trap-save")])),
        Box::new(PaperBroker::default()),
        RiskLimits::default(),
        Decimal::from(100_000),
    )
    .with_events(move |e| sink.lock().unwrap().push(e));
    engine.on_bars(&ibm()[..3]).unwrap();
    assert_eq!(engine.save_state().unwrap(), None, "no state from a faulted call");
    assert_eq!(engine.counts().restarts, 1);
    let events = events.lock().unwrap();
    let restarted = events.iter().find_map(|e| match e {
        Event::StrategyRestarted { error } => Some(error.clone()),
        _ => None,
    });
    let restarted = restarted.expect("the restart is reported");
    assert!(restarted.contains("save-state") && restarted.contains("asked to trap in save-state"), "{restarted}");
}

/// Hostile guests that end their own call: each is a fault, reported in one
/// line, and the strategy restarts and works again.
#[test]
fn recursion_exit_and_a_giant_state_are_faults_the_strategy_survives() {
    let rt = runtime(RuntimeConfig { max_restarts: 5, ..roomy() });
    let plugin = misbehave(&rt);
    let bars = ibm();
    let at = bars[1].time.to_string();
    // A Rust guest's stack lives in its linear memory, first: running off
    // its end is an out-of-bounds access (a native stack overflow would
    // read `call stack exhausted`).
    for (mode, expected) in [("recurse", "out of bounds memory access"), ("exit", "Exited with i32 exit status")] {
        let mut hostile = start(&rt, &plugin, &[("mode", mode), ("at", &at)]);
        let err = hostile.on_bars(&bars[..2]).unwrap_err();
        let StrategyError::Restarted { fault, .. } = &err else { panic!("{mode}: {err}") };
        let text = fault.to_string();
        assert!(text.contains(expected) && text.lines().count() == 1, "{mode}: {text}");
        hostile.on_bars(&bars[2..4]).unwrap();
    }
    let mut hoarder = start(&rt, &plugin, &[("mode", "big-state")]);
    hoarder.on_bars(&bars[..2]).unwrap();
    let err = hoarder.save_state().unwrap_err();
    assert!(matches!(&err, StrategyError::Restarted { fault: Fault::State { limit: 16777216 }, .. }), "{err}");
    assert_eq!(hoarder.breaches().state, 1);
}

/// Ten thousand strings that all point at one buffer of 1 MiB would be
/// 10 GB on the host if each were copied: the bytes a call may hand over
/// are capped, and going past the cap is a fault of its own kind.
#[test]
fn strings_aliasing_one_buffer_are_stopped_at_the_bytes_per_call() {
    let rt = runtime(RuntimeConfig { max_restarts: 5, ..roomy() });
    let plugin = misbehave(&rt);
    let bars = ibm();
    let at = bars[0].time.to_string();
    let mut hostile = start(&rt, &plugin, &[("mode", "alias"), ("at", &at)]);
    let err = hostile.on_bars(&bars[..1]).unwrap_err();
    assert!(
        matches!(&err, StrategyError::Restarted { fault: Fault::Output { limit }, .. } if *limit == Budget::default().bytes_per_call),
        "{err}"
    );
    assert_eq!(hostile.breaches(), Breaches { output: 1, ..Breaches::default() });
    hostile.on_bars(&bars[1..3]).unwrap();
}

/// Limits per minute throttle a strategy rather than fault it: over its CPU
/// time it sits bars out, over its log bytes its lines are dropped, over its
/// orders they are refused, and it hears of the refusals.
#[test]
fn budgets_per_minute_throttle_without_a_fault() {
    let tight = Rates { cpu: Duration::from_millis(1), log_bytes: 2_000, orders: 3 };
    let rt = runtime(roomy());
    let plugin = misbehave(&rt);
    let bars = ibm();
    let within = |rates| Budget { per_minute: Some(rates), ..roomy().budget };
    let params = |mode: &str, extra: (&str, &str)| -> Vec<(String, String)> {
        vec![("mode".into(), mode.into()), (extra.0.into(), extra.1.into())]
    };

    let mut busy = rt
        .instantiate_within(&plugin, &params("slow", ("work", "2000000")), Clock::virtual_at(0), &within(tight))
        .unwrap();
    for chunk in bars[..20].chunks(2) {
        busy.on_bars(chunk).unwrap();
    }
    let b = busy.breaches();
    assert!(b.cpu >= 5, "{b:?}");
    assert_eq!(Breaches { cpu: 0, ..b }, Breaches::default());
    assert_eq!(busy.restarts(), 0);

    let mut chatty = rt
        .instantiate_within(&plugin, &params("spam", ("spam", "10000")), Clock::virtual_at(0), &within(tight))
        .unwrap();
    chatty.on_bars(&bars[..3]).unwrap();
    assert!(chatty.breaches().log > 0, "{:?}", chatty.breaches());
    assert_eq!(chatty.restarts(), 0);

    let buyer =
        rt.instantiate_within(&plugin, &params("buy", ("qty", "1")), Clock::virtual_at(0), &within(tight)).unwrap();
    let refusals = Arc::new(Mutex::new(Vec::new()));
    let seen = refusals.clone();
    let mut engine =
        Engine::new(Box::new(buyer), Box::new(PaperBroker::default()), RiskLimits::default(), Decimal::from(1_000_000))
            .with_order_rate(3)
            .with_events(move |event| {
                if let Event::Rejected { reason, .. } = event {
                    seen.lock().unwrap().push(reason);
                }
            });
    engine.run(&bars[..10], 1).unwrap();
    assert_eq!(engine.counts().orders, 3);
    assert_eq!(engine.breaches().orders, 7);
    let refusals = refusals.lock().unwrap();
    assert_eq!(refusals.len(), 7);
    assert!(refusals[0].contains("3 orders per minute"), "{}", refusals[0]);
}

/// The circuit breaker counts faults within a window: rare faults restart
/// the strategy each time, a burst quarantines it.
#[test]
fn faults_are_counted_within_a_window() {
    let bars = ibm();
    let burst = runtime(RuntimeConfig { max_restarts: 2, fault_window: Duration::from_secs(3600), ..roomy() });
    let plugin = misbehave(&burst);
    let mut trapping = start(&burst, &plugin, &[("mode", "trap")]);
    for _ in 0..2 {
        assert!(matches!(trapping.on_bars(&bars[..1]), Err(StrategyError::Restarted { .. })));
    }
    let err = trapping.on_bars(&bars[..1]).unwrap_err();
    assert!(
        matches!(&err, StrategyError::Failed { reason, .. } if reason.contains("quarantined after 3 faults within 3600 s")),
        "{err}"
    );

    // With a short window, faults spread out never add up.
    let rare = runtime(RuntimeConfig { max_restarts: 2, fault_window: Duration::from_millis(50), ..roomy() });
    let plugin = misbehave(&rare);
    let mut trapping = start(&rare, &plugin, &[("mode", "trap")]);
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(60));
        assert!(matches!(trapping.on_bars(&bars[..1]), Err(StrategyError::Restarted { .. })));
    }
    assert_eq!(trapping.restarts(), 6);
}

/// Every export runs under the deadline, not only `on-bars`: a strategy
/// that spins in any of them loses the call and restarts (or, in
/// `create`, fails to start), and each is counted as a deadline breach.
#[test]
fn a_loop_in_any_export_is_stopped_by_the_deadline() {
    let rt = runtime(RuntimeConfig {
        // Long enough for a normal `create` on a slow, busy machine.
        budget: budget(|b| b.call_timeout = Duration::from_millis(500)),
        max_restarts: 10,
        ..roomy()
    });
    let plugin = misbehave(&rt);
    let params = |mode: &str| vec![("mode".to_string(), mode.to_string())];
    let deadline = |err: &StrategyError| {
        matches!(err, StrategyError::Restarted { fault: Fault::Deadline { timeout_ms: 500 }, .. })
    };

    let err = rt.instantiate(&plugin, &params("loop-create"), Clock::virtual_at(0)).err().expect("refused");
    assert!(err.to_string().contains("exceeded its 500 ms deadline"), "{err}");

    let fill = Fill {
        intent_id: stratbox::order::OrderRef { lifetime: 1, id: 1 },
        symbol: "IBM".into(),
        side: stratbox::order::Side::Buy,
        qty: Decimal::ONE,
        price: Decimal::ONE,
        commission: Decimal::ZERO,
        time: 0,
    };
    let rejection = Rejection { order: 1, symbol: "IBM".into(), reason: "no".into() };
    type Call<'a> = &'a dyn Fn(&mut WasmStrategy) -> StrategyError;
    let calls: [(&str, Call); 4] = [
        ("loop-fill", &|s| s.on_fills(std::slice::from_ref(&fill)).unwrap_err()),
        ("loop-reject", &|s| s.on_rejects(std::slice::from_ref(&rejection)).unwrap_err()),
        ("loop-signal", &|s| s.on_signal("tv", "{}", 0).unwrap_err()),
        ("loop-save", &|s| s.save_state().unwrap_err()),
    ];
    for (mode, call) in calls {
        let mut strategy = rt.instantiate(&plugin, &params(mode), Clock::virtual_at(0)).unwrap();
        let err = call(&mut strategy);
        assert!(deadline(&err), "{mode}: {err}");
        assert_eq!(strategy.breaches().deadline, 1, "{mode}");
    }

    // `restore` spins: the running instance is kept, the fault counted.
    let mut strategy = rt.instantiate(&plugin, &params("loop-restore"), Clock::virtual_at(0)).unwrap();
    let err = strategy.load_state(&[0; 40]).unwrap_err();
    assert!(deadline(&err), "{err}");
    assert_eq!(strategy.breaches().deadline, 1);
}

/// One action past the cap, and WASI handles opened and never closed: each
/// is a fault of its own kind, and the strategy restarts.
#[test]
fn too_many_actions_and_leaked_handles_are_faults() {
    let rt = runtime(RuntimeConfig { max_restarts: 5, ..roomy() });
    let plugin = misbehave(&rt);
    let bars = ibm();
    let mut many = start(&rt, &plugin, &[("mode", "many")]);
    let err = many.on_bars(&bars[..1]).unwrap_err();
    assert!(
        matches!(&err, StrategyError::Restarted { fault: Fault::Actions { count: 10_001, limit: 10_000 }, .. }),
        "{err}"
    );
    assert_eq!(many.breaches().actions, 1);

    let mut leaky = start(&rt, &plugin, &[("mode", "leak")]);
    let err = leaky.on_bars(&bars[..1]).unwrap_err();
    assert!(matches!(&err, StrategyError::Restarted { fault: Fault::Handles { limit: 10_000 }, .. }), "{err}");
    assert_eq!(leaky.breaches().handles, 1);
}
