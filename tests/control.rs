//! The control API on a running host, over real HTTP: a bearer token,
//! pause and resume, the release of a quarantined instance, halts, and
//! errors that say what went wrong and nothing more.

use std::process::Stdio;
use std::time::Duration;

use sha2::Digest as _;
use stratbox::config::Config;
use stratbox::engine::{RunOptions, run_host};
use stratbox_tests::output::Captured;
use stratbox_tests::process::{HostProcess, health, listening_address, strategy, wait_until, write_host_config};
use stratbox_tests::{MISBEHAVE_WASM, SMA_CROSSOVER_WASM, with_custom_section};

const TOKEN: &str = "correct-horse-battery-staple";

/// The SMA, an instance that notes each batch it sees, and one that traps
/// once, at 2000-07-24 (bar 101): quarantined at once (`max_restarts = 0`).
fn sections() -> String {
    format!(
        "[feed]\nkind = \"replay\"\ndata = \"bundled:AAPL\"\nsymbol = \"AAPL\"\npace_ms = 10\n\n\
         [runtime]\nmax_restarts = 0\n\n\
         [[strategy]]\nname = \"calm\"\nplugin = \"sma-crossover\"\n\n\
         [[strategy]]\nname = \"watched\"\nplugin = {MISBEHAVE_WASM:?}\nparams = {{ mode = \"ok\" }}\n\n\
         [[strategy]]\nname = \"doomed\"\nplugin = {MISBEHAVE_WASM:?}\nparams = {{ mode = \"trap\", at = \"964396800000\" }}\n"
    )
}

/// Lines the `watched` instance printed from its calls: one per batch.
fn calls(out: &std::path::Path) -> usize {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("[watched]") && l.contains("seen"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_pauses_resumes_and_releases_instances_with_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_host_config(dir.path(), &sections());
    let out = dir.path().join("out.txt");
    let file = Stdio::from(std::fs::File::create(&out).unwrap());
    let _host = HostProcess::spawn_with(
        env!("CARGO_BIN_EXE_stratbox-under-test"),
        &config,
        file,
        &[("STRATBOX_API_TOKEN", TOKEN)],
    );
    let addr = listening_address(&out).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
    let post = |path: &str, token: Option<&str>| {
        let request = client.post(format!("{addr}{path}"));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    };

    // Without the token, or with a wrong one: 401 and no detail. `/health`
    // stays open.
    for token in [None, Some("wrong-token-of-some-length"), Some("correct-horse-battery-stapl")] {
        let response = post("/api/v1/instances/calm/pause", token).send().await.unwrap();
        assert_eq!(response.status(), 401, "{token:?}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], "missing or wrong bearer token");
    }
    let listed = client.get(format!("{addr}/api/v1/instances")).send().await.unwrap();
    assert_eq!(listed.status(), 401);
    assert_eq!(client.get(format!("{addr}/health")).send().await.unwrap().status(), 200);

    // The quarantined instance: a pause is refused (409), a resume releases it.
    wait_until("doomed to be quarantined", Duration::from_secs(60), || {
        std::fs::read_to_string(&out).unwrap_or_default().contains("asked to trap at 964396800000")
    })
    .await;
    let refused = post("/api/v1/instances/doomed/pause", Some(TOKEN)).send().await.unwrap();
    assert_eq!(refused.status(), 409);
    let failed = client.get(format!("{addr}/api/v1/instances/doomed")).bearer_auth(TOKEN).send().await.unwrap();
    let failed: serde_json::Value = failed.json().await.unwrap();
    assert_eq!(failed["state"], "failed", "{failed}");
    let released = post("/api/v1/instances/doomed/resume", Some(TOKEN)).send().await.unwrap();
    assert_eq!(released.status(), 200);
    let released: serde_json::Value = released.json().await.unwrap();
    assert_eq!(released["state"], "running");
    let before = strategy(&health(&client, &addr).await, "doomed").unwrap()["bars"].as_u64().unwrap();
    wait_until("the released instance to see bars again", Duration::from_secs(30), || {
        std::fs::read_to_string(&out).unwrap_or_default().contains("released by an operator")
    })
    .await;
    let client2 = client.clone();
    let addr2 = addr.clone();
    let mut grown = false;
    for _ in 0..1200 {
        let h = health(&client2, &addr2).await;
        if strategy(&h, "doomed").is_some_and(|s| s["bars"].as_u64().unwrap_or(0) > before && s["state"] == "running") {
            grown = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(grown, "the released instance trades on");

    // Pause: no more calls while paused; resume: calls again.
    let paused = post("/api/v1/instances/watched/pause", Some(TOKEN)).send().await.unwrap();
    assert_eq!(paused.status(), 200);
    // Lines already decided reach the file through a printer: give it room.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = calls(&out);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(calls(&out), during, "a paused instance is not called");
    let state = client.get(format!("{addr}/api/v1/instances/watched")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(state.json::<serde_json::Value>().await.unwrap()["state"], "paused");
    assert_eq!(post("/api/v1/instances/watched/resume", Some(TOKEN)).send().await.unwrap().status(), 200);
    wait_until("the resumed instance to be called", Duration::from_secs(30), || calls(&out) > during).await;

    // A build uploaded in the request: refused with 422 when it is not a
    // component or does not take the instance's parameters, swapped in
    // when it is good.
    let swap = |name: &str, body: Vec<u8>| post(&format!("/api/v1/instances/{name}/swap"), Some(TOKEN)).body(body);
    let garbage = swap("watched", b"\0asm garbage".to_vec()).send().await.unwrap();
    assert_eq!(garbage.status(), 422);
    let error = garbage.json::<serde_json::Value>().await.unwrap()["error"].as_str().unwrap().to_string();
    assert!(error.contains("not a WebAssembly component"), "{error}");
    let sma = swap("watched", std::fs::read(SMA_CROSSOVER_WASM).unwrap()).send().await.unwrap();
    assert_eq!(sma.status(), 422);
    assert!(sma.json::<serde_json::Value>().await.unwrap()["error"].as_str().unwrap().contains("unknown parameter"));
    let next = with_custom_section(&std::fs::read(MISBEHAVE_WASM).unwrap(), "stratbox-test", b"uploaded");
    let swapped = swap("watched", next.clone()).send().await.unwrap();
    assert_eq!(swapped.status(), 200);
    let sha256: String = sha2::Sha256::digest(&next).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(swapped.json::<serde_json::Value>().await.unwrap()["sha256"], sha256.as_str());
    let now = strategy(&health(&client, &addr).await, "watched").unwrap().clone();
    assert_eq!(now["sha256"], sha256.as_str(), "{now}");
    assert_eq!(now["swaps"], 1);
    assert_eq!(swap("nobody", next.clone()).send().await.unwrap().status(), 404);
    // Oversized bodies are refused from their length, before any is read.
    assert!(announce(&addr, "/api/v1/instances/watched/swap", (64 << 20) + 2).await.starts_with("HTTP/1.1 413"));

    // A new instance while the host runs: a bundled plugin by name.
    let add = |body: serde_json::Value| client.post(format!("{addr}/api/v1/instances")).bearer_auth(TOKEN).json(&body);
    let sma = serde_json::json!({ "name": "sma2", "plugin": "sma-crossover", "params": { "fast": 3, "slow": 9 } });
    let added = add(sma.clone()).send().await.unwrap();
    assert_eq!(added.status(), 201);
    let mut trading = false;
    for _ in 0..2400 {
        if strategy(&health(&client, &addr).await, "sma2").is_some_and(|s| s["bars"].as_u64().unwrap_or(0) > 3) {
            trading = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(trading, "the added instance sees bars");
    assert_eq!(add(sma).send().await.unwrap().status(), 409, "the name runs already");
    for (body, expected) in [
        (serde_json::json!({ "name": "x", "plugin": "../x.wasm" }), "plugins folder"),
        (serde_json::json!({ "name": "bad name!", "plugin": "sma-crossover" }), "a name is"),
        (serde_json::json!({ "name": "y", "plugin": "no-such-plugin" }), "no bundled plugin"),
        (serde_json::json!({ "name": "z", "plugin": "sma-crossover", "params": { "nope": 1 } }), "nope"),
    ] {
        let refused = add(body.clone()).send().await.unwrap();
        assert_eq!(refused.status(), 422, "{body}");
        let error = refused.json::<serde_json::Value>().await.unwrap()["error"].as_str().unwrap().to_string();
        assert!(error.contains(expected), "{body}: {error}");
    }

    // Removal: a bad policy is refused, a good one stops the instance for
    // good; it is listed as removed and takes no more requests.
    let delete = |query: &str| client.delete(format!("{addr}/api/v1/instances/watched{query}")).bearer_auth(TOKEN);
    assert_eq!(delete("?on_remove=explode").send().await.unwrap().status(), 400);
    let removed = delete("?on_remove=leave").send().await.unwrap();
    assert_eq!(removed.status(), 200);
    assert_eq!(removed.json::<serde_json::Value>().await.unwrap()["state"], "removed");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen = calls(&out);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(calls(&out), seen, "a removed instance is not called");
    let listed = client.get(format!("{addr}/api/v1/instances/watched")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(listed.json::<serde_json::Value>().await.unwrap()["state"], "removed");
    assert_eq!(post("/api/v1/instances/watched/pause", Some(TOKEN)).send().await.unwrap().status(), 404);
    assert!(std::fs::read_to_string(&out).unwrap().contains("[watched] removed"));

    // Positions per instance; the paper host has no venue book.
    let read = |path: &str| client.get(format!("{addr}/api/v1/{path}")).bearer_auth(TOKEN).send();
    let positions = read("positions").await.unwrap().json::<serde_json::Value>().await.unwrap();
    assert!(positions["venue"].is_null() && positions["instances"]["calm"].is_object(), "{positions}");

    // Unknown names: 404, with the name and nothing else.
    let missing = post("/api/v1/instances/nobody/pause", Some(TOKEN)).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.json::<serde_json::Value>().await.unwrap()["error"], "no instance named `nobody`");
    // The paper broker has no venue to halt: 409. A malformed body: 400.
    assert_eq!(post("/api/v1/halt", Some(TOKEN)).send().await.unwrap().status(), 409);
    let garbage = post("/api/v1/halt", Some(TOKEN)).header("content-type", "application/json").body("{not json");
    let garbage = garbage.send().await.unwrap();
    assert_eq!(garbage.status(), 400);
    assert!(garbage.json::<serde_json::Value>().await.unwrap()["error"].is_string());
    assert!(announce(&addr, "/api/v1/halt", 1 << 20).await.starts_with("HTTP/1.1 413"));

    // On the paper broker the engines keep the book: the SMA's fills and
    // working orders are listed all the same, newest fill first.
    let get = |path: &str| client.get(format!("{addr}{path}")).bearer_auth(TOKEN).send();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let fills = loop {
        let fills: serde_json::Value = get("/api/v1/fills?instance=calm&limit=3").await.unwrap().json().await.unwrap();
        if fills["fills"].as_array().is_some_and(|f| f.len() == 3) {
            break fills;
        }
        assert!(std::time::Instant::now() < deadline, "{fills}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(fills["venue"], "paper");
    let times: Vec<i64> = fills["fills"].as_array().unwrap().iter().map(|f| f["time_ms"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");
    assert!(fills["fills"].as_array().unwrap().iter().all(|f| f["instance"] == "calm" && f["symbol"] == "AAPL"));
    let none: serde_json::Value = get("/api/v1/fills?instance=watched").await.unwrap().json().await.unwrap();
    assert_eq!(none["fills"], serde_json::json!([]), "the quiet instance never traded");
    let orders: serde_json::Value = get("/api/v1/orders").await.unwrap().json().await.unwrap();
    assert_eq!(orders["venue"], "paper");
    assert!(orders["orders"].is_array(), "{orders}");
    assert_eq!(get("/api/v1/fills?limit=many").await.unwrap().status(), 400);
}

/// Sends only the head of a POST announcing a body of `length` bytes, and
/// returns the start of the answer: a server that judges the length alone
/// answers at once. (Sending such a body would race the server's early
/// answer and its closing of the connection.)
async fn announce(addr: &str, path: &str, length: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = addr.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0; 1024];
    let read = tokio::time::timeout(Duration::from_secs(15), stream.read(&mut answer)).await.unwrap().unwrap();
    String::from_utf8_lossy(&answer[..read]).into_owned()
}

/// With no token, the host will not listen anywhere but loopback.
#[tokio::test]
async fn no_token_off_loopback_is_refused_at_start() {
    let text = format!("[server]\nlisten = \"0.0.0.0:0\"\n\n{}", sections());
    let config = Config::parse(&text, "test.toml").unwrap();
    let err = run_host(config, RunOptions::default(), std::future::pending(), Captured::default()).await.unwrap_err();
    let err = err.to_string();
    assert!(err.contains("STRATBOX_API_TOKEN") && err.contains("0.0.0.0"), "{err}");
}

/// `stratbox ctl` speaks to a running host: each answer printed as JSON,
/// each refusal an exit status of 1 with the host's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ctl_command_drives_a_running_host() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_host_config(dir.path(), &sections());
    let out = dir.path().join("out.txt");
    let file = Stdio::from(std::fs::File::create(&out).unwrap());
    let binary = env!("CARGO_BIN_EXE_stratbox-under-test");
    let _host = HostProcess::spawn_with(binary, &config, file, &[("STRATBOX_API_TOKEN", TOKEN)]);
    let addr = listening_address(&out).await;
    let ctl = |token: &str, args: &[&str]| {
        let output = std::process::Command::new(binary)
            .args(["ctl", "--url", &addr])
            .args(args)
            .env("STRATBOX_API_TOKEN", token)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, listed, _) = ctl(TOKEN, &["--format", "json", "list"]);
    assert_eq!(code, Some(0));
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let names: Vec<&str> =
        listed["instances"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.contains(&"calm"));
    let (code, paused, _) = ctl(TOKEN, &["--format", "json", "pause", "calm"]);
    assert_eq!(code, Some(0));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&paused).unwrap()["state"], "paused");
    let (code, _, refused) = ctl("not-the-token-at-all", &["resume", "calm"]);
    assert_eq!(code, Some(1));
    assert!(refused.contains("the host refused (401): missing or wrong bearer token"), "{refused}");
    let (code, _, refused) = ctl(TOKEN, &["halt"]);
    assert_eq!(code, Some(1));
    assert!(refused.contains("(409)") && refused.contains("no live venue"), "{refused}");
    let (code, resumed, _) = ctl(TOKEN, &["resume", "calm"]);
    assert_eq!(code, Some(0), "{resumed}");
}

/// With `paused_bars = "queue"` a paused instance is frozen, not skipped:
/// on resume it sees every bar that came meanwhile, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_instance_may_queue_its_bars_and_see_them_all_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let sections = format!(
        "[feed]\nkind = \"replay\"\ndata = \"bundled:AAPL\"\nsymbol = \"AAPL\"\npace_ms = 1\n\n\
         [runtime]\npaused_bars = \"queue\"\n\n\
         [[strategy]]\nname = \"watched\"\nplugin = {MISBEHAVE_WASM:?}\nparams = {{ mode = \"ok\" }}\n"
    );
    let config = write_host_config(dir.path(), &sections);
    let out = dir.path().join("out.txt");
    let file = Stdio::from(std::fs::File::create(&out).unwrap());
    let _host = HostProcess::spawn_with(env!("CARGO_BIN_EXE_stratbox-under-test"), &config, file, &[]);
    let addr = listening_address(&out).await;
    let client = reqwest::Client::new();
    let post = |path: &str| client.post(format!("{addr}/api/v1/instances/watched/{path}")).send();
    assert_eq!(post("pause").await.unwrap().status(), 200);
    let text = || std::fs::read_to_string(&out).unwrap_or_default();
    wait_until("the feed to finish", Duration::from_secs(60), || text().contains("feed finished")).await;
    let before = calls(&out);
    assert!(!text().contains("seen 3270"), "paused before the end");
    assert_eq!(post("resume").await.unwrap().status(), 200);
    wait_until("every bar, seen after the resume", Duration::from_secs(60), || text().contains("seen 3270")).await;
    assert!(calls(&out) > before);
}

/// `stratbox ctl` over the whole control surface, against a host trading a
/// fake Alpaca with a watched plugins folder: a build and its parameters
/// uploaded into the folder go live, an instance is added by name, and the
/// venue's orders, fills and positions read back, as tables and as JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_uploads_adds_and_reads_the_venue_of_a_live_host() {
    use stratbox_tests::fake::{FakeVenue, alpaca_bar, alpaca_time};
    let venue = FakeVenue::start().await;
    {
        let mut s = venue.state.lock().unwrap();
        for minute in 0..40 {
            s.alpaca_bars.push(("AAPL".into(), alpaca_bar(minute, "10")));
        }
        s.auto_fill = Some("10".into());
        // The rest once the uploaded strategy runs: a strategy added while
        // the host runs hears the bars from then on.
        s.visible_bars = Some(1);
    }
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let sections = format!(
        "{feed}[broker]\nkind = \"alpaca\"\nbase_url = \"{url}\"\nsync_every_ms = 100\n\n\
         [runtime]\nwatch_ms = 20\n\n[plugins]\ndir = {plugins:?}\n",
        feed = stratbox_tests::process::alpaca_feed(&venue.url, 50),
        url = venue.url,
    );
    let config = write_host_config(dir.path(), &sections);
    let out = dir.path().join("out.txt");
    let file = Stdio::from(std::fs::File::create(&out).unwrap());
    let binary = env!("CARGO_BIN_EXE_stratbox-under-test");
    let env = [("STRATBOX_API_TOKEN", TOKEN), ("STRATBOX_LOG_FORMAT", "json"), ("RUST_LOG", "info")];
    let _host = HostProcess::spawn_with(binary, &config, file, &env);
    let addr = listening_address(&out).await;
    let ctl = |args: &[&str]| {
        let output = std::process::Command::new(binary)
            .args(["ctl"])
            .args(args)
            .env("STRATBOX_URL", &addr)
            .env("STRATBOX_API_TOKEN", TOKEN)
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (output.status.code(), text(&output.stdout), text(&output.stderr))
    };
    let json = |args: &[&str]| {
        let (code, stdout, stderr) = ctl(&[&["--format", "json"], args].concat());
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap()
    };

    // Refused uploads leave nothing in the folder.
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm not really").unwrap();
    let (code, _, refused) = ctl(&["upload", garbage.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(refused.contains("(422)"), "{refused}");
    let bad_toml = dir.path().join("buyer.toml");
    std::fs::write(&bad_toml, "params = { mode = \"buy\" }\nsurprise = 1\n").unwrap();
    let (code, _, refused) = ctl(&["upload", bad_toml.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(refused.contains("(422)") && refused.contains("surprise"), "{refused}");
    let (code, _, refused) = ctl(&["upload", MISBEHAVE_WASM, "--as", "..%2Fescape.wasm"]);
    assert_eq!(code, Some(1));
    assert!(refused.contains("(422)") && refused.contains("not a plugin file name"), "{refused}");
    assert_eq!(std::fs::read_dir(&plugins).unwrap().count(), 0, "nothing was written");

    // Its parameters first, then the build: the watched folder starts it.
    std::fs::write(&bad_toml, format!("params = {{ mode = \"buy\", at = \"{}\" }}\n", alpaca_time(5))).unwrap();
    let (code, placed, stderr) = ctl(&["upload", bad_toml.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(placed.contains("buyer.toml"), "a table: {placed}");
    let placed = json(&["upload", MISBEHAVE_WASM, "--as", "buyer.wasm"]);
    assert_eq!(placed["replaced"], false);
    let digest = sha2::Sha256::digest(std::fs::read(MISBEHAVE_WASM).unwrap());
    assert_eq!(placed["sha256"], digest.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let shown = || std::fs::read_to_string(&out).unwrap_or_default();
    wait_until("the upload to start", Duration::from_secs(60), || shown().contains("[buyer] started")).await;
    venue.state.lock().unwrap().visible_bars = None;
    let started = tokio::time::timeout(Duration::from_secs(60), async {
        while venue.state.lock().unwrap().orders.len() != 1 {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    });
    assert!(started.await.is_ok(), "the uploaded strategy never bought: {}", shown());

    // One more, by name, with parameters.
    let added = json(&["add", "trend", "sma-crossover", "--param", "fast=3", "--param", "slow=9", "--param", "qty=2"]);
    assert_eq!(added["state"], "running");
    let (code, _, refused) = ctl(&["add", "trend", "sma-crossover"]);
    assert_eq!(code, Some(1));
    assert!(refused.contains("(409)"), "{refused}");
    let (code, table, _) = ctl(&["list"]);
    assert_eq!(code, Some(0));
    assert!(table.lines().any(|h| h.starts_with("name ") && h.contains("state")), "a table: {table}");
    assert!(table.contains("buyer") && table.contains("trend"), "{table}");

    wait_until("the fill to be recorded", Duration::from_secs(60), || {
        let (_, fills, _) = ctl(&["--format", "json", "fills", "--instance", "buyer"]);
        serde_json::from_str::<serde_json::Value>(&fills)
            .is_ok_and(|f| f["fills"].as_array().is_some_and(|f| f.len() == 1))
    })
    .await;
    let fills = json(&["fills", "--instance", "buyer"]);
    assert_eq!(fills["fills"][0]["qty"], "1");
    assert_eq!(json(&["fills", "--instance", "trend"])["fills"], serde_json::json!([]));
    let positions = json(&["positions"]);
    assert_eq!(positions["instances"]["buyer"]["AAPL"], "1", "{positions}");
    assert_eq!(positions["venue"]["positions"][0]["qty"], "1", "{positions}");
    assert_eq!(json(&["orders"])["orders"], serde_json::json!([]), "filled, so not working");
    let (code, table, _) = ctl(&["positions"]);
    assert_eq!(code, Some(0));
    assert!(table.contains("venue") && table.contains("buyer"), "{table}");

    // Halt and resume trading, venue by venue.
    let halted = json(&["halt", "alpaca", "--note", "lunch"]);
    assert_eq!(halted[0]["state"], "halted", "{halted}");
    let resumed = json(&["resume-trading", "alpaca"]);
    assert_eq!(resumed[0]["state"], "active", "{resumed}");

    // The scrape shows the venue's side: orders by outcome, routing time,
    // fills and the trading state.
    let scrape = reqwest::get(format!("{addr}/metrics")).await.unwrap().text().await.unwrap();
    let sample =
        |prefix: &str| scrape.lines().find_map(|l| l.strip_prefix(prefix)).and_then(|v| v.trim().parse::<f64>().ok());
    assert!(sample("stratbox_orders_total{venue=\"alpaca\",outcome=\"accepted\"} ") >= Some(1.0), "{scrape}");
    assert!(sample("stratbox_router_request_seconds_count{venue=\"alpaca\"} ") >= Some(1.0), "{scrape}");
    assert!(sample("stratbox_fills_total{venue=\"alpaca\"} ") >= Some(1.0), "{scrape}");
    assert_eq!(sample("stratbox_venue_trading_state{venue=\"alpaca\"} "), Some(0.0), "{scrape}");
    assert!(sample("stratbox_feed_poll_seconds_count{feed=\"alpaca\"} ") >= Some(1.0), "{scrape}");

    // Logs were JSON, one object a line, and each order's lines name the
    // order and its instance.
    let log = std::fs::read_to_string(config.with_file_name("host.log")).unwrap();
    let lines: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).expect(l)).collect();
    let routed = lines.iter().find(|l| l["fields"]["message"] == "order routed").expect("an order was logged");
    assert_eq!(routed["span"]["instance"], "buyer@alpaca", "{routed}");
    assert!(routed["span"]["client_order_id"].as_str().is_some_and(|c| !c.is_empty()), "{routed}");
    assert_eq!(routed["fields"]["outcome"], "accepted", "{routed}");
}
