//! The dashboard at `/`, in a real browser and over plain HTTP: headless
//! Chromium signs in with the token, sees fills arrive, pauses and resumes
//! an instance and swaps in a build uploaded from the page, with no console
//! error; the sign-in, the session cookie and the checks against other
//! sites' pages are tried by hand; and an open page never holds the host
//! past SIGTERM.

use std::process::Stdio;
use std::time::{Duration, Instant};

use sha2::Digest as _;
use stratbox_tests::process::{HostProcess, health, listening_address, strategy, write_host_config};
use stratbox_tests::{SMA_CROSSOVER_WASM, with_custom_section};

const TOKEN: &str = "correct-horse-battery-staple";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A replay of the bundled AAPL bars with the SMA, a webhook route and a
/// notification sink at `sink_url` (so the page has intake, an outbox and a
/// journal to show).
fn sections(pace_ms: u64, sink_url: &str) -> String {
    format!(
        "[feed]\nkind = \"replay\"\ndata = \"bundled:AAPL\"\nsymbol = \"AAPL\"\npace_ms = {pace_ms}\n\n\
         [[strategy]]\nname = \"sma\"\nplugin = \"sma-crossover\"\nparams = {{ fast = 5, slow = 20, qty = 10 }}\n\n\
         [[webhook]]\nname = \"news\"\nkind = \"standard\"\naction = \"signal\"\nstrategies = [\"sma\"]\nsecrets = [{SECRET:?}]\n\n\
         [[sink]]\nname = \"backend\"\nkind = \"json\"\nurl = {sink_url:?}\nsecret = {SECRET:?}\n"
    )
}

/// A notification sink that takes everything; returns its URL.
async fn sink() -> String {
    let app = axum::Router::new().route("/hook", axum::routing::post(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// Starts the real binary on `sections` with the token set; returns it
/// and the address it listens on.
async fn host(dir: &std::path::Path, sections: &str) -> (HostProcess, String) {
    let config = write_host_config(dir, sections);
    let out = dir.join("out.txt");
    let file = Stdio::from(std::fs::File::create(&out).unwrap());
    let host = HostProcess::spawn_with(
        env!("CARGO_BIN_EXE_stratbox-under-test"),
        &config,
        file,
        &[("STRATBOX_API_TOKEN", TOKEN)],
    );
    let addr = listening_address(&out).await;
    (host, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_an_operator_signs_in_sees_fills_pauses_and_swaps() {
    let chromium = stratbox_tests::browser::chromium().expect("a browser for the test");
    let dir = tempfile::tempdir().unwrap();
    let (mut host, addr) = host(dir.path(), &sections(20, &sink().await)).await;

    // A new build of the SMA: the same code, another SHA-256.
    let sma = std::fs::read(SMA_CROSSOVER_WASM).unwrap();
    let build = with_custom_section(&sma, "stratbox-test", b"swapped from the dashboard");
    let build_path = dir.path().join("sma-next.wasm");
    std::fs::write(&build_path, &build).unwrap();
    let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");

    let said =
        browser_check(&chromium, &addr, &["--token", TOKEN, "--instance", "sma"], &build_path, &screenshot).await;
    for step in ["login form shown", "token not in document.cookie", "fills appear", "pause", "screenshot"] {
        assert!(said.contains(step), "{said}");
    }

    // The host agrees with what the page showed: the uploaded build runs.
    let client = reqwest::Client::new();
    let now = health(&client, &addr).await;
    let sma = strategy(&now, "sma").unwrap();
    assert_eq!(sma["sha256"], hex(&sha2::Sha256::digest(&build)), "{now}");
    assert_eq!(sma["state"], "running", "{now}");
    assert_eq!(sma["swaps"], 1, "{now}");
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000);

    host.signal("TERM");
    assert!(host.wait_for_exit(Duration::from_secs(30)).is_some_and(|s| s.success()));
}

/// Runs `dashboard_check.py` against `addr` with `args`; panics with what it
/// said if it fails, else returns it.
async fn browser_check(
    chromium: &std::path::Path,
    addr: &str,
    args: &[&str],
    build: &std::path::Path,
    screenshot: &std::path::Path,
) -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboard_check.py");
    let mut check = std::process::Command::new("python3");
    check
        .arg(&script)
        .args(["--url", addr])
        .args(args)
        .arg("--swap-wasm")
        .arg(build)
        .arg("--screenshot")
        .arg(screenshot)
        .arg("--chromium")
        .arg(chromium)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let output = tokio::task::spawn_blocking(move || check.output()).await.unwrap().expect("python3 runs");
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the browser check failed:\n{said}");
    said
}

/// With no token on loopback, the page is open; against a live venue (a
/// fake Alpaca) its buttons halt and resume trading, and a build uploaded
/// from the page replaces a strategy trading there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_an_open_page_halts_and_resumes_a_live_venue() {
    use stratbox_tests::MISBEHAVE_WASM;
    use stratbox_tests::fake::{FakeVenue, alpaca_bar};
    let chromium = stratbox_tests::browser::chromium().expect("a browser for the test");
    let venue = FakeVenue::start().await;
    {
        let mut s = venue.state.lock().unwrap();
        for minute in 0..40 {
            s.alpaca_bars.push(("AAPL".into(), alpaca_bar(minute, "10")));
        }
        s.auto_fill = Some("10".into());
    }
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("buyer.wasm");
    std::fs::copy(MISBEHAVE_WASM, &plugin).unwrap();
    let sections = format!(
        "{feed}[broker]\nkind = \"alpaca\"\nbase_url = \"{url}\"\nsync_every_ms = 200\n\n\
         [risk]\nmax_position = 1000\n\n\
         [[strategy]]\nname = \"buyer\"\nplugin = {plugin:?}\nparams = {{ mode = \"buy\" }}\n",
        feed = stratbox_tests::process::alpaca_feed(&venue.url, 50),
        url = venue.url,
    );
    let config = write_host_config(dir.path(), &sections);
    let out = dir.path().join("out.txt");
    let file = Stdio::from(std::fs::File::create(&out).unwrap());
    let _host = HostProcess::spawn(env!("CARGO_BIN_EXE_stratbox-under-test"), &config, file);
    let addr = listening_address(&out).await;
    let build = with_custom_section(&std::fs::read(MISBEHAVE_WASM).unwrap(), "stratbox-test", b"from the page");
    let build_path = dir.path().join("buyer-next.wasm");
    std::fs::write(&build_path, &build).unwrap();
    let screenshot = dir.path().join("venue.png");
    let args = ["--instance", "buyer", "--venue", "alpaca"];
    let said = browser_check(&chromium, &addr, &args, &build_path, &screenshot).await;
    for step in ["fills appear", "halt", "venue resume", "screenshot"] {
        assert!(said.contains(step), "{said}");
    }
    assert!(!said.contains("login form"), "no token, no sign-in: {said}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The session cookie's `name=value`, from a sign-in's answer.
fn session_of(response: &reqwest::Response) -> String {
    let set = response.headers()["set-cookie"].to_str().unwrap();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    assert!(!set.contains(TOKEN), "{set}");
    set.split(';').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_sessions_and_other_sites_pages_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let (_host, addr) = host(dir.path(), &sections(20, &sink().await)).await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    // Not signed in: the sign-in form, and the API refuses.
    let page = client.get(format!("{addr}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    let page = page.text().await.unwrap();
    assert!(page.contains("form id=\"login\"") && !page.contains("id=\"instances\""), "{page}");
    assert_eq!(client.get(format!("{addr}/api/v1/dashboard")).send().await.unwrap().status(), 401);
    assert_eq!(client.get(format!("{addr}/api/v1/events")).send().await.unwrap().status(), 401);

    // A wrong token, an empty form, a malformed one and an oversized one:
    // no cookie, and nothing else changes.
    let sign_in = |body: String| {
        client
            .post(format!("{addr}/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", &addr)
            .body(body)
    };
    for (body, status) in [
        ("token=correct-horse-battery-stapl".to_string(), 401),
        ("token=".to_string(), 401),
        ("nothing=here".to_string(), 422),
        (format!("token={}", "x".repeat(10_000)), 413),
    ] {
        let response = sign_in(body).send().await.unwrap();
        assert_eq!(response.status(), status);
        assert!(response.headers().get("set-cookie").is_none());
    }
    // Another site's page cannot sign a browser in.
    let foreign = sign_in(format!("token={TOKEN}")).header("origin", "https://evil.example").send().await.unwrap();
    assert_eq!(foreign.status(), 403);

    let signed = sign_in(format!("token={TOKEN}")).send().await.unwrap();
    assert_eq!(signed.status(), 303);
    assert_eq!(signed.headers()["location"], "/");
    let cookie = session_of(&signed);
    let page = client.get(format!("{addr}/")).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("id=\"instances\""), "{page}");
    let snapshot: serde_json::Value = client
        .get(format!("{addr}/api/v1/dashboard"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for key in ["host", "orders", "fills", "positions", "charts"] {
        assert!(snapshot.get(key).is_some(), "{key} missing from {snapshot}");
    }
    assert!(snapshot["host"]["sinks"]["backend"].is_object(), "{snapshot}");
    assert!(snapshot["host"]["webhooks"]["news"].is_object(), "{snapshot}");

    // With the cookie alone a change needs the page's header, and never
    // comes from another site's page.
    let pause = || client.post(format!("{addr}/api/v1/instances/sma/pause")).header("cookie", &cookie);
    assert_eq!(pause().send().await.unwrap().status(), 403);
    let foreign = pause().header("x-stratbox-request", "1").header("origin", "https://evil.example");
    assert_eq!(foreign.send().await.unwrap().status(), 403);
    let cross = pause().header("x-stratbox-request", "1").header("sec-fetch-site", "cross-site");
    assert_eq!(cross.send().await.unwrap().status(), 403);
    let paused = pause().header("x-stratbox-request", "1").header("origin", &addr).send().await.unwrap();
    assert_eq!(paused.status(), 200);
    // A forged cookie is nobody.
    let forged = format!("stratbox_session={}", "ab".repeat(32));
    let response = client.get(format!("{addr}/api/v1/dashboard")).header("cookie", forged).send().await.unwrap();
    assert_eq!(response.status(), 401);

    // Signing out ends the session.
    let out = client.post(format!("{addr}/logout")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(out.status(), 303);
    assert!(out.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    let after = client.get(format!("{addr}/api/v1/dashboard")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(after.status(), 401);
    // The bearer token works as before.
    let bearer = client.get(format!("{addr}/api/v1/dashboard")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(bearer.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_pages_push_changes_and_never_hold_the_host_past_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (mut host, addr) = host(dir.path(), &sections(20, &sink().await)).await;
    let client = reqwest::Client::new();

    // Three pages listening; each hears snapshots that move, and the
    // journal's lines.
    let mut streams = Vec::new();
    for _ in 0..3 {
        let response = client.get(format!("{addr}/api/v1/events")).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        streams.push(response);
    }
    let mut first = streams.remove(0);
    let mut text = String::new();
    let started = Instant::now();
    let bars_in = |text: &str| -> Vec<u64> {
        text.split("\"bars\":").skip(1).filter_map(|rest| rest.split([',', '}']).next()?.parse().ok()).collect()
    };
    while bars_in(&text).iter().collect::<std::collections::BTreeSet<_>>().len() < 3 || !text.contains("event: journal")
    {
        assert!(started.elapsed() < Duration::from_secs(60), "no moving snapshots:\n{text}");
        let chunk = tokio::time::timeout(Duration::from_secs(30), first.chunk()).await.unwrap().unwrap().unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("event: snapshot"), "{text}");
    // At most one snapshot per push interval.
    let snapshots = text.matches("event: snapshot").count() as u128;
    assert!(snapshots <= started.elapsed().as_millis() / 400 + 2, "{snapshots} in {:?}", started.elapsed());

    // SIGTERM with the pages still open: the host stops in its grace period
    // and every stream ends.
    host.signal("TERM");
    let stopped = Instant::now();
    let status = tokio::task::spawn_blocking(move || host.wait_for_exit(Duration::from_secs(30))).await.unwrap();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    // The streams ended because the host told them to, not by its 10 s
    // backstop for connections left open (which logs a warning).
    let log = std::fs::read_to_string(dir.path().join("host.log")).unwrap_or_default();
    assert!(!log.contains("connections still open"), "the backstop closed the pages:\n{log}");
    assert!(stopped.elapsed() < Duration::from_secs(30), "{:?}", stopped.elapsed());
    streams.push(first);
    for mut stream in streams {
        let ended =
            tokio::time::timeout(Duration::from_secs(10), async { while let Ok(Some(_)) = stream.chunk().await {} });
        ended.await.expect("the stream ends with the host");
    }
}
