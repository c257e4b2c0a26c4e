//! Hot swap in a running host: a new build of a strategy's `.wasm` file
//! takes over between two inputs with the old instance's state, bad builds
//! are refused while the old instance keeps trading, a failed strategy is
//! revived, and every step goes out as a notification.
//!
//! A swap has to land mid-run, so the bars come slowly ([`PACE_MS`]: over a
//! minute for the whole file) and each test stops its host once it has seen
//! what it needs, rather than racing the feed to its end.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use sha2::Digest as _;
use stratbox::bar::format_time;
use stratbox::config::{Config, EMBEDDED_DEFAULT};
use stratbox::engine::{RunOptions, run_host};
use stratbox::feed::{CsvLimits, load_csv};
use stratbox_tests::output::{Captured, get};
use stratbox_tests::{MISBEHAVE_WASM, PATIENCE, SMA_CROSSOVER_WASM, data, with_custom_section};

/// Milliseconds between bars in the swapping runs: 3270 bars take over a
/// minute, far longer than loading a new build takes on any machine.
const PACE_MS: u64 = 20;

/// Replaces `path` the way a deploy should: write aside, then rename.
fn deploy(path: &Path, bytes: &[u8]) {
    let aside = path.with_extension("tmp");
    std::fs::write(&aside, bytes).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

fn sha256(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The embedded default with its SMA loaded from `plugin` and swaps
/// checked every 20 ms.
fn sma_config(plugin: &Path) -> Config {
    let text = EMBEDDED_DEFAULT.replace("plugin = \"sma-crossover\"", &format!("plugin = {:?}", plugin.display()))
        + "\n[runtime]\nwatch_ms = 20\n";
    Config::parse(&text, "test.toml").unwrap()
}

fn options(pace_ms: u64, exit_when_done: bool) -> RunOptions {
    RunOptions { listen: Some("127.0.0.1:0".parse().unwrap()), pace_ms: Some(pace_ms), exit_when_done }
}

/// The strategy's entry in `/health`; null until its engine has started.
async fn health_of(addr: &str, name: &str) -> serde_json::Value {
    let (_, health) = get(addr, "/health").await;
    let strategies = health["strategies"].as_array().cloned().unwrap_or_default();
    strategies.into_iter().find(|s| s["name"] == name).unwrap_or_default()
}

/// Polls `/health` until `done` holds for the strategy (at most [`PATIENCE`]).
async fn wait_health(addr: &str, name: &str, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let health = health_of(addr, name).await;
        if done(&health) {
            return health;
        }
        assert!(Instant::now() < deadline, "timed out; last health: {health}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until `done` holds (at most [`PATIENCE`]).
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_build_takes_over_mid_run_with_its_state_and_the_trades_do_not_change() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("sma.wasm");
    let original = std::fs::read(SMA_CROSSOVER_WASM).unwrap();
    std::fs::write(&plugin, &original).unwrap();

    // Without a swap, as fast as it goes.
    let reference = run_host(sma_config(&plugin), options(0, true), std::future::pending(), Captured::default());
    let reference = reference.await.unwrap().remove(0);
    assert!(reference.fills.len() > 100, "{} fills", reference.fills.len());

    let out = Captured::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let next = with_custom_section(&original, "stratbox-test", b"build 2");
    let probe = {
        let (out, plugin, next) = (out.clone(), plugin.clone(), next.clone());
        async move {
            let addr = out.listen_addr().await;
            wait_health(&addr, "sma", |h| h["bars"].as_u64().unwrap_or(0) >= 100).await;
            deploy(&plugin, b"\0asm but not really");
            out.wait_for("refused").await;
            deploy(&plugin, &next);
            out.wait_for("swapped build").await;
            wait_until("a fill after the swap", || {
                let text = out.text();
                text.find("swapped build").is_some_and(|at| text[at..].contains("fill  #"))
            })
            .await;
            let health = health_of(&addr, "sma").await;
            stop.send(()).unwrap();
            health
        }
    };
    let host = run_host(sma_config(&plugin), options(PACE_MS, false), async { stopped.await.unwrap() }, out.clone());
    let (reports, health) = tokio::join!(host, probe);
    let report = reports.unwrap().remove(0);

    assert_eq!(health["swaps"], 1);
    assert_eq!(health["sha256"], sha256(&next));
    assert_eq!(health["state"], "running");
    let text = out.text();
    assert!(text.contains("[sma] new build of"), "the bad build was refused: {text}");
    let swapped_at = text.find("swapped build").unwrap();
    assert!(text[swapped_at..].contains("fill  #"), "the new build traded after the swap");
    // The host stopped early: compare the bars it got to the same bars without a swap.
    let bars = load_csv(&data("AAPL.csv"), "AAPL", CsvLimits::default()).unwrap();
    assert!(report.bars > 100 && report.bars <= reference.bars, "{} bars", report.bars);
    let last = format_time(bars[report.bars as usize - 1].time);
    let expected: Vec<_> = reference.fills.iter().filter(|f| f.time <= last).cloned().collect();
    assert_eq!(report.fills, expected, "the state moved over: the same trades as without a swap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_build_starts_from_the_old_ones_state() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("counter.wasm");
    let original = std::fs::read(MISBEHAVE_WASM).unwrap();
    std::fs::write(&plugin, &original).unwrap();
    // In `ok` mode the plugin notifies `seen N` after each batch, N being
    // the bars it has seen: a count that lives in its saved state.
    let text = EMBEDDED_DEFAULT.replace(
        "name = \"sma\"\nplugin = \"sma-crossover\"\nparams = { fast = 5, slow = 20, qty = 10 }",
        &format!("name = \"counter\"\nplugin = {:?}\nparams = {{ mode = \"ok\" }}", plugin.display()),
    ) + "\n[runtime]\nwatch_ms = 20\n";
    let out = Captured::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let probe = {
        let out = out.clone();
        async move {
            let addr = out.listen_addr().await;
            wait_health(&addr, "counter", |h| h["bars"].as_u64().unwrap_or(0) >= 100).await;
            deploy(&plugin, &with_custom_section(&original, "stratbox-test", b"build 2"));
            let text = out.wait_for("swapped build").await;
            let swapped_at = text.find("swapped build").unwrap();
            let bars_before = text[..swapped_at].matches("Info: seen").count() as u64;
            let seen_after = || out.text()[swapped_at..].lines().find(|l| l.contains("Info: seen")).map(str::to_string);
            wait_until("a count after the swap", || seen_after().is_some()).await;
            let after = seen_after().unwrap();
            stop.send(()).unwrap();
            (bars_before, after)
        }
    };
    let config = Config::parse(&text, "test.toml").unwrap();
    let host = run_host(config, options(PACE_MS, false), async { stopped.await.unwrap() }, out.clone());
    let (reports, (bars_before, after)) = tokio::join!(host, probe);
    reports.unwrap();
    let seen: u64 = after.rsplit(' ').next().unwrap().trim().parse().unwrap();
    assert!(bars_before >= 100);
    assert!(seen > bars_before, "the count went on from {bars_before} instead of restarting: {after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_strategy_is_revived_by_a_good_build_and_every_step_is_notified() {
    let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver_addr = listener.local_addr().unwrap();
    let app = Router::new().route(
        "/events",
        post({
            let received = received.clone();
            move |body: String| async move {
                received.lock().unwrap().push(serde_json::from_str(&body).unwrap());
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("bot.wasm");
    let original = std::fs::read(MISBEHAVE_WASM).unwrap();
    std::fs::write(&plugin, &original).unwrap();
    let bars = load_csv(&data("AAPL.csv"), "AAPL", CsvLimits::default()).unwrap();
    let text = EMBEDDED_DEFAULT.replace(
        "name = \"sma\"\nplugin = \"sma-crossover\"\nparams = { fast = 5, slow = 20, qty = 10 }",
        &format!(
            "name = \"bot\"\nplugin = {:?}\nparams = {{ mode = \"trap\", at = {} }}",
            plugin.display(),
            bars[40].time
        ),
    ) + &format!(
        "\n[runtime]\nwatch_ms = 20\nmax_restarts = 0\n\n[store]\npath = {:?}\n\n\
         [[sink]]\nname = \"ops\"\nkind = \"json\"\nurl = \"http://{receiver_addr}/events\"\n\
         secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\nevents = [\"strategy.*\"]\n",
        dir.path().join("host.db").display()
    );
    let config = Config::parse(&text, "test.toml").unwrap();
    let out = Captured::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let next = with_custom_section(&original, "stratbox-test", b"fixed");
    let probe = {
        let (out, received, next) = (out.clone(), received.clone(), next.clone());
        async move {
            let addr = out.listen_addr().await;
            wait_health(&addr, "bot", |h| h["state"] == "failed").await;
            deploy(&plugin, b"garbage");
            out.wait_for("refused").await;
            // Valid, but it does not take this strategy's parameters.
            deploy(&plugin, &std::fs::read(SMA_CROSSOVER_WASM).unwrap());
            wait_until("the second refusal", || out.text().matches("refused").count() >= 2).await;
            let still_failed = health_of(&addr, "bot").await;
            deploy(&plugin, &next);
            let revived = wait_health(&addr, "bot", |h| h["state"] == "running").await;
            let bars_then = revived["bars"].as_u64().unwrap();
            wait_health(&addr, "bot", |h| h["bars"].as_u64().unwrap_or(0) > bars_then + 50).await;
            wait_until("the swap's notification", || {
                received.lock().unwrap().iter().any(|e| e["type"] == "strategy.swapped")
            })
            .await;
            stop.send(()).unwrap();
            (still_failed, revived)
        }
    };
    let host = run_host(config, options(PACE_MS, false), async { stopped.await.unwrap() }, out.clone());
    let (reports, (still_failed, revived)) = tokio::join!(host, probe);
    reports.unwrap();

    assert_eq!(still_failed["state"], "failed", "refused builds change nothing: {still_failed}");
    assert_eq!(still_failed["sha256"], sha256(&original));
    assert_eq!(revived["swaps"], 1);
    assert_eq!(revived["sha256"], sha256(&next));
    let events = received.lock().unwrap().clone();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["strategy.started", "strategy.failed", "strategy.swap_failed", "strategy.swap_failed", "strategy.swapped"],
        "{events:?}"
    );
    let refusals: Vec<&str> = events[2..4].iter().map(|e| e["data"]["error"].as_str().unwrap()).collect();
    assert!(refusals[0].contains("not a WebAssembly component"), "{refusals:?}");
    assert!(refusals[1].contains("unknown parameter"), "{refusals:?}");
    assert_eq!(events[4]["data"]["revived"], true);
    assert_eq!(events[4]["data"]["from"], sha256(&original));
    assert_eq!(events[4]["data"]["to"], sha256(&next));
}

/// A new build that faults on its first bars is rolled back: the build it
/// replaced, kept aside during the probation, takes over again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_build_that_faults_at_once_is_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("bot.wasm");
    let original = std::fs::read(MISBEHAVE_WASM).unwrap();
    std::fs::write(&plugin, &original).unwrap();
    let text = EMBEDDED_DEFAULT.replace(
        "name = \"sma\"\nplugin = \"sma-crossover\"\nparams = { fast = 5, slow = 20, qty = 10 }",
        &format!("name = \"bot\"\nplugin = {:?}\nparams = {{ mode = \"trap-restored\" }}", plugin.display()),
    ) + "\n[runtime]\nwatch_ms = 20\n";
    let config = Config::parse(&text, "test.toml").unwrap();
    let out = Captured::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // The same code, another build: it breaks once restored, as a swap does.
    let next = with_custom_section(&original, "stratbox-test", b"breaks");
    let probe = {
        let (out, next, original) = (out.clone(), next.clone(), original.clone());
        async move {
            let addr = out.listen_addr().await;
            wait_health(&addr, "bot", |h| h["bars"].as_u64().unwrap_or(0) > 20).await;
            deploy(&plugin, &next);
            out.wait_for("rolled back").await;
            let back = wait_health(&addr, "bot", |h| h["sha256"] == sha256(&original)).await;
            let bars_then = back["bars"].as_u64().unwrap();
            let later = wait_health(&addr, "bot", |h| h["bars"].as_u64().unwrap_or(0) > bars_then + 50).await;
            stop.send(()).unwrap();
            later
        }
    };
    let host = run_host(config, options(PACE_MS, false), async { stopped.await.unwrap() }, out.clone());
    let (reports, later) = tokio::join!(host, probe);
    reports.unwrap();
    assert_eq!(later["state"], "running", "{later}");
    assert_eq!(later["sha256"], sha256(&original), "the old build runs again: {later}");
    assert_eq!(later["swaps"], 1);
    let text = out.text();
    let short = |bytes: &[u8]| sha256(bytes)[..12].to_string();
    assert!(text.contains(&format!("build {} rolled back to {}", short(&next), short(&original))), "{text}");
    assert!(text.contains("asked to trap"), "the new build's fault is named: {text}");
}
