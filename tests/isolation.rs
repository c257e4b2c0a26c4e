//! A hostile neighbour: a strategy that burns its CPU on every bar, under
//! its deadline, must not slow the strategies beside it. The feed hands each
//! batch over without waiting; the slow one falls behind alone, and what it
//! could not take is counted.

use std::process::Stdio;
use std::time::Duration;

use std::io::BufRead;

use stratbox_tests::MISBEHAVE_WASM;
use stratbox_tests::process::{
    HostProcess, health, listening_address, memory_of, strategy, wait_until, write_host_config,
};

/// A replay of AAPL to the SMA ("calm") and, beside it, the misbehaving
/// strategy `name` with `params` (a TOML inline table).
fn beside_the_sma(name: &str, params: &str) -> String {
    format!(
        "[feed]\nkind = \"replay\"\ndata = \"bundled:AAPL\"\nsymbol = \"AAPL\"\npace_ms = 1\n\n\
         [[strategy]]\nname = \"calm\"\nplugin = \"sma-crossover\"\n\n\
         [[strategy]]\nname = \"{name}\"\nplugin = {MISBEHAVE_WASM:?}\nparams = {params}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_strategy_falls_behind_alone() {
    let dir = tempfile::tempdir().unwrap();
    let sections = beside_the_sma("slow", "{ mode = \"slow\", work = 30000000 }");
    let config = write_host_config(dir.path(), &sections);
    let out = dir.path().join("out.txt");
    let mut host = HostProcess::spawn(
        env!("CARGO_BIN_EXE_stratbox-under-test"),
        &config,
        Stdio::from(std::fs::File::create(&out).unwrap()),
    );
    let addr = listening_address(&out).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();

    // The calm strategy sees all 3,270 bars at the feed's pace (about 3 s),
    // while the slow one, at tens of milliseconds a bar, could not have.
    let mut last = serde_json::Value::Null;
    let mut seen = |h: serde_json::Value| {
        let done = strategy(&h, "calm").is_some_and(|s| s["bars"] == 3270);
        last = h;
        done
    };
    let start = std::time::Instant::now();
    loop {
        let h = health(&client, &addr).await;
        if seen(h) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(90), "the calm strategy was held back: {last}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let slow = strategy(&last, "slow").unwrap();
    assert!(slow["bars"].as_u64().unwrap() < 3270, "{slow}");
    assert!(slow["bars_dropped"].as_u64().unwrap() > 0, "{slow}");
    assert!(slow["bars"].as_u64().unwrap() + slow["bars_dropped"].as_u64().unwrap() <= 3270, "{slow}");
    // (Its state reads `lagging` only while it is still losing bars, which
    // may have ended by now.)
    // Replay on the paper broker keeps no store, so the log says it.
    wait_until("the slow strategy to be reported lagging", Duration::from_secs(30), || {
        std::fs::read_to_string(dir.path().join("host.log")).unwrap_or_default().contains("falling behind")
    })
    .await;

    // It still stops on SIGTERM within its grace period.
    host.signal("TERM");
    let status = host.wait_for_exit(Duration::from_secs(30)).expect("the host stops on SIGTERM");
    assert!(status.success(), "{status}");
}

/// A strategy within the contract's limits (10,000 actions of 4 KiB) that
/// notifies as much as it can, with the host's output a pipe nobody reads:
/// memory stays bounded, and the strategy beside it keeps its pace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_flood_costs_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let sections = beside_the_sma("flood", "{ mode = \"flood\" }");
    let config = write_host_config(dir.path(), &sections);
    let (reader, writer) = std::io::pipe().unwrap();
    let mut host = HostProcess::spawn(env!("CARGO_BIN_EXE_stratbox-under-test"), &config, Stdio::from(writer));
    // Read the first line for the address, then never read again.
    let mut reader = std::io::BufReader::new(reader);
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    let addr = first.split("listening on ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().to_string();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();

    let start = std::time::Instant::now();
    loop {
        let h = health(&client, &addr).await;
        let all = |s: &serde_json::Value| s["bars"].as_u64().unwrap_or(0) + s["bars_dropped"].as_u64().unwrap_or(0);
        // The flooding one may fall behind and lose bars; it is done when
        // it has seen or lost every one.
        if strategy(&h, "calm").is_some_and(|s| s["bars"] == 3270)
            && strategy(&h, "flood").is_some_and(|s| all(s) == 3270)
        {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(90), "the strategies did not finish: {h}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss = memory_of(host.id(), "VmRSS");
    assert!(rss < 400 << 20, "the host holds {} MiB after the flood", rss >> 20);
    let log = std::fs::read_to_string(dir.path().join("host.log")).unwrap();
    assert!(log.contains("notifications over the per-call budget were dropped"), "{log}");
    host.signal("TERM");
    drop(reader);
    let status = host.wait_for_exit(Duration::from_secs(30)).expect("the host stops on SIGTERM");
    assert!(status.success() || status.code() == Some(1), "{status}");
}

/// One hostile strategy, run beside the SMA in a host of its own.
struct Hostile {
    /// Its parameters, a TOML inline table.
    params: &'static str,
    /// Its own limits, a TOML inline table.
    limits: &'static str,
    /// The breach `/health` must count; `None` for one the sandbox makes
    /// harmless without a breach, which must then see every bar.
    breach: Option<&'static str>,
}

/// The host stays up, reports the cause briefly under its kind, keeps its
/// memory bounded and stops on SIGTERM; the SMA beside it sees every bar.
/// Its latency beside each case is measured by `benches/neighbour.rs`.
async fn beside_the_sma_the_host_holds(name: &str, case: Hostile) {
    let dir = tempfile::tempdir().unwrap();
    let sections = format!(
        "{}limits = {}\n\n[runtime]\nrestart_backoff_ms = 10\n",
        beside_the_sma(name, case.params),
        case.limits
    );
    let config = write_host_config(dir.path(), &sections);
    let out = dir.path().join("out.txt");
    let mut host = HostProcess::spawn(
        env!("CARGO_BIN_EXE_stratbox-under-test"),
        &config,
        Stdio::from(std::fs::File::create(&out).unwrap()),
    );
    let addr = listening_address(&out).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let count = |s: &serde_json::Value, key: &str| s[key].as_u64().unwrap_or(0);
    let start = std::time::Instant::now();
    let last = loop {
        let h = health(&client, &addr).await;
        let calm_done = strategy(&h, "calm").is_some_and(|s| count(s, "bars") == 3270);
        let hostile_done = strategy(&h, name).is_some_and(|s| match case.breach {
            Some(kind) => count(&s["breaches"], kind) > 0,
            None => count(s, "bars") + count(s, "bars_dropped") == 3270,
        });
        if calm_done && hostile_done {
            break h;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "{name}: not done: {h}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let hostile = strategy(&last, name).unwrap();
    let breaches = hostile["breaches"].as_object().unwrap();
    match case.breach {
        Some(kind) => assert!(count(&hostile["breaches"], kind) > 0, "{name}: {hostile}"),
        None => assert!(breaches.values().all(|v| v == 0), "{name} was harmless: {hostile}"),
    }
    if let Some(error) = hostile["error"].as_str() {
        assert!(error.len() <= 1024 && !error.contains('\n'), "{name}: the cause is brief: {error}");
    }
    let calm = strategy(&last, "calm").unwrap();
    assert_eq!(count(calm, "bars_dropped"), 0, "{name}: the SMA lost nothing: {calm}");
    let peak = memory_of(host.id(), "VmHWM");
    assert!(peak < 512 << 20, "{name}: the host peaked at {} MiB", peak >> 20);
    host.signal("TERM");
    let status = host.wait_for_exit(Duration::from_secs(30)).expect("the host stops on SIGTERM");
    assert!(status.success(), "{name}: {status}");
}

macro_rules! hostile {
    ($($test:ident: $name:literal, $params:literal, $limits:literal, $breach:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            let case = Hostile { params: $params, limits: $limits, breach: $breach };
            beside_the_sma_the_host_holds($name, case).await;
        }
    )*};
}

hostile! {
    a_loop_in_on_bars: "loop", "{ mode = \"loop\" }", "{}", Some("deadline");
    spinning_on_the_clock: "wait", "{ mode = \"wait\" }", "{}", Some("deadline");
    sleeping_in_wasi: "sleep", "{ mode = \"sleep\" }", "{}", None;
    a_panic: "trap", "{ mode = \"trap\" }", "{}", Some("trap");
    process_exit: "exit", "{ mode = \"exit\" }", "{}", Some("trap");
    deep_recursion: "recurse", "{ mode = \"recurse\" }", "{}", Some("trap");
    memory_growth: "oom", "{ mode = \"oom\" }", "{}", Some("memory");
    strings_aliasing_one_buffer: "alias", "{ mode = \"alias\" }", "{}", Some("output");
    a_huge_symbol: "long", "{ mode = \"long-symbol\" }", "{}", Some("contract");
    printing_without_end: "spam", "{ mode = \"spam\", spam = 100000 }", "{}", Some("log");
    notifying_without_end: "flood", "{ mode = \"flood\" }", "{}", Some("log");
    burning_cpu_under_the_deadline: "slow", "{ mode = \"slow\", work = 30000000 }", "{ cpu_ms_per_minute = 300 }", Some("cpu");
    ordering_without_end: "buy", "{ mode = \"buy\" }", "{ orders_per_minute = 5 }", Some("orders");
    probing_the_sandbox: "probe", "{ mode = \"probe\" }", "{}", None;
}
