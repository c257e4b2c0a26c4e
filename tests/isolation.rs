//! A hostile neighbour: a strategy that burns its CPU on every bar, under
//! its deadline, must not slow the strategies beside it. The feed hands each
//! batch over without waiting; the slow one falls behind alone, and what it
//! could not take is counted.

use std::process::Stdio;
use std::time::Duration;

use std::io::BufRead;

use stratbox_tests::hostile::{Hostile, Run, beside_the_sma, host_turn, hostile, run_beside_the_sma};
use stratbox_tests::process::{
    HostProcess, health, listening_address, memory_of, strategy, wait_until, write_host_config,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_strategy_falls_behind_alone() {
    let _turn = host_turn().await;
    let dir = tempfile::tempdir().unwrap();
    let slow = Hostile { limits: "{}", ..hostile("slow") };
    let sections = beside_the_sma(Some(slow));
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
    let _turn = host_turn().await;
    let dir = tempfile::tempdir().unwrap();
    let sections = beside_the_sma(Some(hostile("flood")));
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

/// The host stays up, reports the cause briefly under its kind, keeps its
/// memory bounded and stops on SIGTERM; the SMA beside it sees every bar.
/// Its latency beside each case is measured by `benches/sandbox.rs`.
async fn beside_the_sma_the_host_holds(name: &str) {
    let case = hostile(name);
    let Run { health, peak, exit } = run_beside_the_sma(env!("CARGO_BIN_EXE_stratbox-under-test"), Some(case)).await;
    let neighbour = strategy(&health, name).unwrap();
    let breaches = neighbour["breaches"].as_object().unwrap();
    match case.breach {
        Some(kind) => assert!(breaches[kind].as_u64().unwrap() > 0, "{name}: {neighbour}"),
        None => assert!(breaches.values().all(|v| v == 0), "{name} was harmless: {neighbour}"),
    }
    if let Some(error) = neighbour["error"].as_str() {
        assert!(error.len() <= 1024 && !error.contains('\n'), "{name}: the cause is brief: {error}");
    }
    let calm = strategy(&health, "calm").unwrap();
    assert_eq!(calm["bars_dropped"], 0, "{name}: the SMA lost nothing: {calm}");
    assert!(peak < 512 << 20, "{name}: the host peaked at {} MiB", peak >> 20);
    let status = exit.expect("the host stops on SIGTERM");
    assert!(status.success(), "{name}: {status}");
}

macro_rules! hostile {
    ($($test:ident: $name:literal;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            beside_the_sma_the_host_holds($name).await;
        }
    )*};
}

hostile! {
    a_loop_in_on_bars: "loop";
    spinning_on_the_clock: "wait";
    sleeping_in_wasi: "sleep";
    a_panic: "trap";
    process_exit: "exit";
    deep_recursion: "recurse";
    memory_growth: "oom";
    strings_aliasing_one_buffer: "alias";
    a_huge_symbol: "long-symbol";
    leaking_wasi_handles: "leak";
    one_action_too_many: "many";
    a_loop_in_on_fills: "loop-fill";
    printing_without_end: "spam";
    notifying_without_end: "flood";
    burning_cpu_under_the_deadline: "slow";
    ordering_without_end: "buy";
    probing_the_sandbox: "probe";
}

/// Every case in the table has its test above.
#[test]
fn every_hostile_case_is_tested() {
    let source = include_str!("isolation.rs");
    for case in stratbox_tests::hostile::CASES {
        assert!(source.contains(&format!(": \"{}\";", case.name)), "{} has no test", case.name);
    }
}
