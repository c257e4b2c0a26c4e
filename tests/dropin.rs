//! Strategies dropped into a folder while the host runs: a new file starts
//! an instance, a replaced one is hot-swapped with its state, a bad one is
//! refused while the rest trade on, and a removed one stops its instance.

use std::path::Path;
use std::time::{Duration, Instant};

use stratbox::config::Config;
use stratbox::engine::{RunOptions, run_host};
use stratbox_tests::output::{Captured, get};
use stratbox_tests::{MISBEHAVE_WASM, PATIENCE, with_custom_section};

/// Writes `bytes` to `dir/name` the way a deploy should: aside, then renamed.
fn deploy(dir: &Path, name: &str, bytes: &[u8]) {
    let aside = dir.join(format!(".{name}.part"));
    std::fs::write(&aside, bytes).unwrap();
    std::fs::rename(&aside, dir.join(name)).unwrap();
}

async fn instance(addr: &str, name: &str) -> serde_json::Value {
    let (_, health) = get(addr, "/health").await;
    let all = health["strategies"].as_array().cloned().unwrap_or_default();
    all.into_iter().find(|s| s["name"] == name).unwrap_or_default()
}

async fn wait_instance(addr: &str, name: &str, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let now = instance(addr, name).await;
        if done(&now) {
            return now;
        }
        assert!(Instant::now() < deadline, "{name}: timed out; last: {now}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A replay host whose plugins folder, checked every 20 ms, holds `name`
/// (`wasm`, in `ok` mode): the folder and the config.
fn watched_folder(dir: &Path, name: &str, wasm: &[u8]) -> (std::path::PathBuf, Config) {
    let plugins = dir.join("strategies");
    std::fs::create_dir(&plugins).unwrap();
    deploy(&plugins, &format!("{name}.toml"), b"params = { mode = \"ok\" }\n");
    deploy(&plugins, &format!("{name}.wasm"), wasm);
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[feed]\nkind = \"replay\"\ndata = \"bundled:AAPL\"\nsymbol = \"AAPL\"\n\n\
         [runtime]\nwatch_ms = 20\n\n[plugins]\ndir = {:?}\n",
        plugins.display()
    );
    (plugins, Config::parse(&text, "test.toml").unwrap())
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_dropped_replaced_and_removed_start_swap_and_stop_instances() {
    let dir = tempfile::tempdir().unwrap();
    let misbehave = std::fs::read(MISBEHAVE_WASM).unwrap();
    let (plugins, config) = watched_folder(dir.path(), "first", &misbehave);
    let out = Captured::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let next = with_custom_section(&misbehave, "stratbox-test", b"second build");
    let probe = {
        let (out, plugins, misbehave, next) = (out.clone(), plugins.clone(), misbehave.clone(), next.clone());
        async move {
            let addr = out.listen_addr().await;
            // There at start, from the folder.
            wait_instance(&addr, "first", |s| s["bars"].as_u64().unwrap_or(0) > 5).await;
            // Dropped in while running, with its params beside it.
            std::fs::write(plugins.join("second.toml"), "params = { mode = \"ok\" }\n").unwrap();
            deploy(&plugins, "second.wasm", &misbehave);
            out.wait_for("[second] started from").await;
            wait_instance(&addr, "second", |s| s["bars"].as_u64().unwrap_or(0) > 5).await;
            // Garbage is refused, and the others go on.
            deploy(&plugins, "third.wasm", b"\0asm not really");
            out.wait_for("third.wasm refused").await;
            // A new build of a dropped-in file is swapped in.
            deploy(&plugins, "second.wasm", &next);
            let swapped = wait_instance(&addr, "second", |s| s["sha256"] == sha256(&next)).await;
            // Removing a file stops its instance.
            std::fs::remove_file(plugins.join("first.wasm")).unwrap();
            let removed = wait_instance(&addr, "first", |s| s["state"] == "removed").await;
            // The control API starts another instance of a file in the folder.
            let client = reqwest::Client::new();
            let body = serde_json::json!({ "name": "extra", "plugin": "second.wasm", "params": { "mode": "ok" } });
            let added = client.post(format!("http://{addr}/api/v1/instances")).json(&body).send().await.unwrap();
            assert_eq!(added.status(), 201);
            wait_instance(&addr, "extra", |s| s["sha256"] == sha256(&next) && s["bars"].as_u64().unwrap_or(0) > 2)
                .await;
            let third = instance(&addr, "third").await;
            let second = instance(&addr, "second").await;
            stop.send(()).unwrap();
            (swapped, removed, third, second)
        }
    };
    let options = RunOptions { listen: Some("127.0.0.1:0".parse().unwrap()), pace_ms: Some(10), exit_when_done: false };
    let host = run_host(config, options, async { stopped.await.unwrap() }, out.clone());
    let (reports, (swapped, removed, third, second)) = tokio::join!(host, probe);
    reports.unwrap();
    assert_eq!(swapped["swaps"], 1, "{swapped}");
    assert_eq!(removed["state"], "removed", "{removed}");
    assert!(third.is_null(), "the refused file runs nothing: {third}");
    assert_eq!(second["state"], "running", "{second}");
    let text = out.text();
    assert!(text.contains("third.wasm refused") && text.contains("not a WebAssembly component"), "{text}");
    assert!(text.contains("[first] removed"), "{text}");
}

/// Without a `[[strategy]]`, a plugins folder is enough; a file in it named
/// like a configured strategy is refused at start.
#[test]
fn a_plugins_folder_may_stand_alone_but_not_shadow_a_configured_strategy() {
    let text =
        "[feed]\nkind = \"replay\"\ndata = \"bundled:AAPL\"\nsymbol = \"AAPL\"\n\n[plugins]\ndir = \"strategies\"\n";
    Config::parse(text, "test.toml").unwrap();
    let err = Config::parse(&text.replace("[plugins]\ndir = \"strategies\"\n", ""), "test.toml").unwrap_err();
    assert!(err.to_string().contains("[plugins] dir"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_in_file_named_like_a_configured_strategy_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sma.wasm"), std::fs::read(MISBEHAVE_WASM).unwrap()).unwrap();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[feed]\nkind = \"replay\"\ndata = \"bundled:AAPL\"\nsymbol = \"AAPL\"\n\n\
         [plugins]\ndir = {:?}\n\n[[strategy]]\nname = \"sma\"\nplugin = \"sma-crossover\"\n",
        dir.path().display()
    );
    let config = Config::parse(&text, "test.toml").unwrap();
    let err = run_host(config, RunOptions::default(), std::future::pending(), Captured::default()).await.unwrap_err();
    assert!(err.to_string().contains("both a configured strategy and a file"), "{err}");
}

/// An instance hears only the symbols it names, whether the config, its
/// `NAME.toml` or the control API names them; a symbol the feed does not
/// poll is refused, not silently never heard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_instance_hears_only_its_symbols() {
    use std::process::Stdio;
    use stratbox_tests::fake::{FakeVenue, alpaca_bar};
    use stratbox_tests::process::{HostProcess, alpaca_feed, health, listening_address, strategy, write_host_config};
    let venue = FakeVenue::start().await;
    {
        let mut s = venue.state.lock().unwrap();
        for minute in 0..12 {
            s.alpaca_bars.push(("AAPL".into(), alpaca_bar(minute, "10")));
        }
        for minute in 0..5 {
            s.alpaca_bars.push(("MSFT".into(), alpaca_bar(minute, "20")));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::write(plugins.join("msft.toml"), "params = { mode = \"ok\" }\nsymbols = [\"MSFT\"]\n").unwrap();
    deploy(&plugins, "msft.wasm", &std::fs::read(MISBEHAVE_WASM).unwrap());
    let feed = alpaca_feed(&venue.url, 50).replace("symbols = [\"AAPL\"]", "symbols = [\"AAPL\", \"MSFT\"]");
    let sections = format!(
        "{feed}[plugins]\ndir = {plugins:?}\n\n\
         [[strategy]]\nname = \"everything\"\nplugin = {MISBEHAVE_WASM:?}\nparams = {{ mode = \"ok\" }}\n\n\
         [[strategy]]\nname = \"apple\"\nplugin = {MISBEHAVE_WASM:?}\nparams = {{ mode = \"ok\" }}\nsymbols = [\"AAPL\"]\n"
    );
    // Refused at start: a symbol the feed does not poll.
    let stray = sections.replace("symbols = [\"AAPL\"]\n", "symbols = [\"TSLA\"]\n");
    let err = Config::parse(&stray, "test.toml").unwrap_err().to_string();
    assert!(err.contains("symbol `TSLA` is not one the feed polls"), "{err}");

    let config = write_host_config(dir.path(), &sections);
    let out = dir.path().join("out.txt");
    let file = Stdio::from(std::fs::File::create(&out).unwrap());
    let _host = HostProcess::spawn(env!("CARGO_BIN_EXE_stratbox-under-test"), &config, file);
    let addr = listening_address(&out).await;
    let client = reqwest::Client::new();
    let bars = |h: &serde_json::Value, name: &str| strategy(h, name).map_or(0, |s| s["bars"].as_u64().unwrap_or(0));
    let deadline = Instant::now() + PATIENCE;
    let seen = loop {
        let now = health(&client, &addr).await;
        if bars(&now, "everything") == 17 && bars(&now, "apple") == 12 && bars(&now, "msft") == 5 {
            break now;
        }
        assert!(Instant::now() < deadline, "{now}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(strategy(&seen, "apple").unwrap()["bars_dropped"], 0);
    assert_eq!(strategy(&seen, "apple").unwrap()["symbols"], serde_json::json!(["AAPL"]));
    assert_eq!(strategy(&seen, "msft").unwrap()["symbols"], serde_json::json!(["MSFT"]));
    assert!(strategy(&seen, "everything").unwrap()["symbols"].is_null(), "all of the feed's");

    // Through the API: a stray symbol is refused, a good one heard.
    let add = |body: serde_json::Value| client.post(format!("{addr}/api/v1/instances")).json(&body).send();
    let refused = add(serde_json::json!({ "name": "stray", "plugin": "sma-crossover", "symbols": ["TSLA"] }));
    let refused = refused.await.unwrap();
    assert_eq!(refused.status(), 422);
    assert!(refused.text().await.unwrap().contains("TSLA"));
    let added = add(serde_json::json!({ "name": "late", "plugin": "sma-crossover", "symbols": ["MSFT"] }));
    assert_eq!(added.await.unwrap().status(), 201);
    venue.state.lock().unwrap().alpaca_bars.push(("MSFT".into(), alpaca_bar(5, "21")));
    venue.state.lock().unwrap().alpaca_bars.push(("AAPL".into(), alpaca_bar(12, "11")));
    let deadline = Instant::now() + PATIENCE;
    loop {
        let now = health(&client, &addr).await;
        // Each engine reports on its own: wait for all three.
        if bars(&now, "everything") == 19 && bars(&now, "apple") == 13 && bars(&now, "late") >= 1 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = health(&client, &addr).await;
            assert_eq!(bars(&now, "late"), 1, "only MSFT's new bar: {now}");
            break;
        }
        assert!(Instant::now() < deadline, "{now}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A changed `NAME.toml` gives its running instance the new settings,
/// keeping its state (a swap to the same build); settings the plugin or
/// the feed refuse leave it running as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_toml_reconfigures_its_instance_and_a_bad_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (plugins, config) = watched_folder(dir.path(), "bot", &std::fs::read(MISBEHAVE_WASM).unwrap());
    let out = Captured::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let probe = {
        let (out, plugins) = (out.clone(), plugins.clone());
        async move {
            let addr = out.listen_addr().await;
            let calm = wait_instance(&addr, "bot", |s| s["bars"].as_u64().unwrap_or(0) > 5).await;
            assert_eq!(calm["orders"], 0);
            // Refused: a parameter the plugin does not take, a symbol the
            // feed does not poll, a file that is not TOML.
            for bad in ["params = { mode = \"ok\", nonsense = 1 }\n", "symbols = [\"TSLA\"]\n", "params = {\n"] {
                deploy(&plugins, "bot.toml", bad.as_bytes());
                let seen = out.text().matches("refused, it runs on as it was").count();
                let deadline = Instant::now() + PATIENCE;
                while out.text().matches("refused, it runs on as it was").count() == seen {
                    assert!(Instant::now() < deadline, "{bad} was not refused: {}", out.text());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            let still = instance(&addr, "bot").await;
            // Taken: it now buys on every bar, and carries on its count of bars.
            deploy(&plugins, "bot.toml", b"params = { mode = \"buy\", qty = 1 }\n");
            out.wait_for("[bot] took its new settings").await;
            let buying = wait_instance(&addr, "bot", |s| s["orders"].as_u64().unwrap_or(0) > 3).await;
            stop.send(()).unwrap();
            (still, buying)
        }
    };
    let options = RunOptions { listen: Some("127.0.0.1:0".parse().unwrap()), pace_ms: Some(10), exit_when_done: false };
    let host = run_host(config, options, async { stopped.await.unwrap() }, out.clone());
    let (reports, (still, buying)) = tokio::join!(host, probe);
    reports.unwrap();
    let text = out.text();
    assert_eq!(
        (still["state"].as_str(), still["orders"].as_u64(), still["swaps"].as_u64()),
        (Some("running"), Some(0), Some(0)),
        "{still}"
    );
    assert_eq!(buying["swaps"], 1, "{buying}");
    assert!(text.contains("nonsense") && text.contains("TSLA"), "each refusal says why: {text}");
    // The same instance carried on: its order ids are its count of bars,
    // and the first is past the bars it saw before, not 1 as a fresh start's.
    let filled: Vec<u64> =
        text.lines().filter_map(|l| l.split("filled ").nth(1)?.split_whitespace().next()?.parse().ok()).collect();
    let before = still["bars"].as_u64().unwrap();
    assert!(filled.first().is_some_and(|first| *first > before), "{filled:?} after {before} bars");
}
