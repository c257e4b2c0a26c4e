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

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_dropped_replaced_and_removed_start_swap_and_stop_instances() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("strategies");
    std::fs::create_dir(&plugins).unwrap();
    let misbehave = std::fs::read(MISBEHAVE_WASM).unwrap();
    std::fs::write(plugins.join("first.toml"), "params = { mode = \"ok\" }\n").unwrap();
    deploy(&plugins, "first.wasm", &misbehave);
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[feed]\nkind = \"replay\"\ndata = \"bundled:AAPL\"\nsymbol = \"AAPL\"\n\n\
         [runtime]\nwatch_ms = 20\n\n[plugins]\ndir = {:?}\n",
        plugins.display()
    );
    let config = Config::parse(&text, "test.toml").unwrap();
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
