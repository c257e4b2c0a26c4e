//! A hostile neighbour: a strategy that burns its CPU on every bar, under
//! its deadline, must not slow the strategies beside it. The feed hands each
//! batch over without waiting; the slow one falls behind alone, and what it
//! could not take is counted.

use std::process::Stdio;
use std::time::Duration;

use std::io::BufRead;

use stratbox_tests::MISBEHAVE_WASM;
use stratbox_tests::process::{HostProcess, listening_address, wait_until, write_host_config};

async fn health(client: &reqwest::Client, addr: &str) -> serde_json::Value {
    match client.get(format!("{addr}/health")).send().await {
        Ok(response) => response.json().await.unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    }
}

/// A replay of AAPL to the SMA ("calm") and, beside it, the misbehaving
/// strategy `name` with `params` (a TOML inline table).
fn beside_the_sma(name: &str, params: &str) -> String {
    format!(
        "[feed]\nkind = \"replay\"\ndata = \"bundled:AAPL\"\nsymbol = \"AAPL\"\npace_ms = 1\n\n\
         [[strategy]]\nname = \"calm\"\nplugin = \"sma-crossover\"\n\n\
         [[strategy]]\nname = \"{name}\"\nplugin = {MISBEHAVE_WASM:?}\nparams = {params}\n"
    )
}

fn strategy<'a>(health: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    health["strategies"].as_array()?.iter().find(|s| s["name"] == name)
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

/// The host's resident memory, in bytes.
fn resident(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches(" kB");
    kb.trim().parse::<u64>().unwrap() * 1024
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
    let rss = resident(host.id());
    assert!(rss < 400 << 20, "the host holds {} MiB after the flood", rss >> 20);
    let log = std::fs::read_to_string(dir.path().join("host.log")).unwrap();
    assert!(log.contains("notifications over the per-call budget were dropped"), "{log}");
    host.signal("TERM");
    drop(reader);
    let status = host.wait_for_exit(Duration::from_secs(30)).expect("the host stops on SIGTERM");
    assert!(status.success() || status.code() == Some(1), "{status}");
}
