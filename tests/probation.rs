//! Probation after a hot swap, in a running host: a build that faults soon
//! after it is swapped in is rolled back, and the build it replaced hears
//! every input it missed, so it trades as if the swap had never happened.
//!
//! The strategy is the misbehave plugin in `churn` mode: on its n-th bar it
//! places order n, a buy when n is odd and a sell when it is even. Order ids
//! are its count of bars, so an instance that missed a bar, or heard one
//! twice, reuses an id or skips one, and the engine refuses the duplicate.
//! Builds differ by a mark in their data (see `misbehave_build`).

use std::time::{Duration, Instant};

use sha2::Digest as _;
use stratbox::config::{Config, EMBEDDED_DEFAULT};
use stratbox::engine::{RunOptions, run_host};
use stratbox::order::Side;
use stratbox::report::Report;
use stratbox_tests::output::{Captured, get};
use stratbox_tests::{PATIENCE, misbehave_build};

fn sha256(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The embedded default with a churning misbehave plugin loaded from a
/// file, and probation over `probation_inputs` inputs.
fn churn_config(dir: &std::path::Path, probation_inputs: u32) -> Config {
    let plugin = dir.join("bot.wasm");
    std::fs::write(&plugin, misbehave_build("first")).unwrap();
    let text = EMBEDDED_DEFAULT.replace(
        "name = \"sma\"\nplugin = \"sma-crossover\"\nparams = { fast = 5, slow = 20, qty = 10 }",
        &format!("name = \"bot\"\nplugin = {:?}\nparams = {{ mode = \"churn\", qty = 1 }}\nlimits = {{ orders_per_minute = 1000000 }}", plugin.display()),
    ) + &format!("\n[runtime]\nwatch_ms = 0\nprobation_inputs = {probation_inputs}\n");
    Config::parse(&text, "test.toml").unwrap()
}

async fn health_of(addr: &str) -> serde_json::Value {
    let (_, health) = get(addr, "/health").await;
    let strategies = health["strategies"].as_array().cloned().unwrap_or_default();
    strategies.into_iter().find(|s| s["name"] == "bot").unwrap_or_default()
}

/// Polls `/health` until `done` holds for the bot (at most [`PATIENCE`]).
async fn wait_health(addr: &str, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let health = health_of(addr).await;
        if done(&health) {
            return health;
        }
        assert!(Instant::now() < deadline, "timed out; last health: {health}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn bars_of(health: &serde_json::Value) -> u64 {
    health["bars"].as_u64().unwrap_or(0)
}

/// The bot's health once the feed has ended and the bot has played every
/// bar (at most [`PATIENCE`]).
async fn settled(addr: &str) -> serde_json::Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (_, host) = get(addr, "/health").await;
        let before = health_of(addr).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = health_of(addr).await;
        if host["feed_done"] == true && bars_of(&now) == bars_of(&before) {
            return now;
        }
        assert!(Instant::now() < deadline, "the feed never ended; last health: {host}");
    }
}

/// Swaps the bot to `build` through the control API.
async fn swap(addr: &str, build: &[u8]) {
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/api/v1/instances/bot/swap"))
        .body(build.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap_or_default());
}

/// Every bar the instances saw, old and new together, was the next one of
/// the feed, once: one order per bar, none refused, sides alternating.
fn assert_saw_every_bar_once(report: &Report) {
    assert!(report.bars > 1_000, "{report:?}");
    assert_eq!(report.rejected, 0, "an order id was reused or skipped: {report:?}");
    assert_eq!(report.orders, report.bars, "one order per bar");
    let sides: Vec<Side> = report.fills.iter().map(|f| f.side).collect();
    assert!(sides.len() as u64 >= report.bars - 2, "{} fills for {} bars", sides.len(), report.bars);
    assert_eq!(sides.first(), Some(&Side::Buy));
    assert!(sides.windows(2).all(|w| w[0] != w[1]), "sides alternate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_that_traps_on_its_third_bar_is_rolled_back_and_the_old_one_hears_what_it_missed() {
    let dir = tempfile::tempdir().unwrap();
    let config = churn_config(dir.path(), 100);
    let out = Captured::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (first, broken) = (misbehave_build("first"), misbehave_build("trap@3"));
    let probe = {
        let out = out.clone();
        async move {
            let addr = out.listen_addr().await;
            wait_health(&addr, |h| bars_of(h) > 20).await;
            swap(&addr, &broken).await;
            out.wait_for("rolled back").await;
            let back = wait_health(&addr, |h| h["sha256"] == sha256(&first)).await;
            // The feed runs to its end on the old build.
            let last = settled(&addr).await;
            stop.send(()).unwrap();
            (back, last)
        }
    };
    let options = RunOptions { listen: Some("127.0.0.1:0".parse().unwrap()), pace_ms: Some(3), exit_when_done: false };
    let host = run_host(config, options, async { stopped.await.unwrap() }, out.clone());
    let (reports, (back, last)) = tokio::join!(host, probe);
    let reports = reports.unwrap();
    let text = out.text();
    assert_eq!(back["swaps"], 1, "{back}");
    assert_eq!(back["plugin"]["name"], "misbehave", "{back}");
    let last_error = &last["last_error"];
    assert!(last_error["message"].as_str().is_some_and(|m| m.contains("rolled back")), "kept: {last}");
    assert!(last_error["at_ms"].as_i64().is_some_and(|t| t > 1_700_000_000_000), "{last}");
    assert!(text.contains("this build traps on its bar 3"), "the new build's fault is named: {text}");
    assert_eq!(text.matches("rolled back").count(), 1, "{text}");
    assert_eq!(last["bars_dropped"], 0, "{last}");
    assert_saw_every_bar_once(&reports[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_swaps_and_a_rollback_under_load_lose_and_repeat_no_input() {
    let dir = tempfile::tempdir().unwrap();
    let config = churn_config(dir.path(), 20);
    let out = Captured::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let builds: Vec<Vec<u8>> = (0..10)
        .map(|i| if i == 5 { misbehave_build("trap@2") } else { misbehave_build(&format!("build-{i}")) })
        .collect();
    let probe = {
        let out = out.clone();
        let last_build = sha256(&builds[9]);
        async move {
            let addr = out.listen_addr().await;
            for (i, build) in builds.iter().enumerate() {
                // A few bars between swaps, some of them during the last
                // build's probation.
                let before = bars_of(&health_of(&addr).await);
                wait_health(&addr, |h| bars_of(h) >= before + 5).await;
                swap(&addr, build).await;
                if i == 5 {
                    out.wait_for("rolled back").await;
                }
            }
            let done = wait_health(&addr, |h| h["sha256"] == last_build.as_str()).await;
            let last = settled(&addr).await;
            stop.send(()).unwrap();
            (done, last)
        }
    };
    let options = RunOptions { listen: Some("127.0.0.1:0".parse().unwrap()), pace_ms: Some(5), exit_when_done: false };
    let host = run_host(config, options, async { stopped.await.unwrap() }, out.clone());
    let (reports, (done, last)) = tokio::join!(host, probe);
    let reports = reports.unwrap();
    let text = out.text();
    assert_eq!(done["swaps"], 10, "{done}");
    assert_eq!(text.matches("swapped build").count(), 10, "{text}");
    assert_eq!(text.matches("rolled back").count(), 1, "{text}");
    assert_eq!(last["bars_dropped"], 0, "{last}");
    assert_saw_every_bar_once(&reports[0]);
}
