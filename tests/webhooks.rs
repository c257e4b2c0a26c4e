//! Inbound webhooks over real HTTP on loopback: every refused form gets its
//! status and leaves no trace; accepted deliveries act once, restarts and
//! retries included.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use stratbox::api::{Access, ApiToken, AppState, Sessions, app};
use stratbox::config::{Config, EMBEDDED_DEFAULT, WebhookAction, WebhookConfig, WebhookKind};
use stratbox::engine::{HostStatus, Instances, RunOptions, run_host};
use stratbox::order::OrderType;
use stratbox::store::Store;
use stratbox::webhook::{Handed, Inbound, Secret, WebhookIntake, run_dispatcher};
use stratbox_tests::MISBEHAVE_WASM;
use stratbox_tests::output::Captured;
use tokio::sync::mpsc;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const TS: i64 = 1_614_265_330;
const BODY: &str = r#"{"test": 2432232314}"#;
const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
const ALERT: &str = r#"{"passphrase": "tv-pass", "ticker": "AAPL", "time": "2024-01-02T14:30:00Z", "strategy": {"order_action": "buy", "order_contracts": "5", "order_id": "Long"}}"#;

fn route(name: &str, kind: WebhookKind, action: WebhookAction) -> WebhookConfig {
    let tradingview = kind == WebhookKind::Tradingview;
    WebhookConfig {
        name: name.into(),
        kind,
        action,
        strategies: vec!["bot".into()],
        secrets: if tradingview { Vec::new() } else { vec![SECRET.into()] },
        secrets_env: None,
        passphrase: tradingview.then(|| "tv-pass".into()),
        passphrase_env: None,
        allow_ips: Vec::new(),
        max_body_bytes: 1024,
        per_minute: 6000,
        unauthenticated_per_minute: 6000,
        dedup_window_secs: 86_400,
        body_dedup_window_secs: 30,
    }
}

struct Server {
    url: String,
    store: Arc<Store>,
    intake: Arc<WebhookIntake>,
    dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

fn wall_clock() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn fixed_clock() -> i64 {
    TS * 1000
}

async fn serve(routes: Vec<WebhookConfig>, now_secs: i64) -> Server {
    let clock = if now_secs == TS { fixed_clock } else { wall_clock };
    serve_at(routes, clock, tempfile::tempdir().unwrap(), |_| {}).await
}

async fn serve_at(
    routes: Vec<WebhookConfig>,
    clock: fn() -> i64,
    dir: tempfile::TempDir,
    tune: impl FnOnce(&mut WebhookIntake),
) -> Server {
    let store = Arc::new(Store::open(&dir.path().join("hooks.db")).unwrap());
    let mut intake = WebhookIntake::new(&routes, store.clone()).unwrap();
    intake.now = clock;
    tune(&mut intake);
    let intake = Arc::new(intake);
    let state = AppState {
        status: Arc::new(RwLock::new(HostStatus::default())),
        gate: None,
        webhooks: Some(intake.clone()),
        instances: Instances::default(),
        access: Access { token: ApiToken::Open, sessions: Sessions::default() },
        ledger: None,
        metrics: stratbox::metrics::Metrics::detached(),
        tape: Arc::default(),
        journal: Some(store.clone()),
        closing: tokio::sync::watch::channel(false).1,
        snapshots: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app(state).into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    Server { url, store, intake, dir, task }
}

/// What waits in the store's inbox, oldest first.
fn waiting(store: &Store) -> Vec<Inbound> {
    store.waiting_deliveries(0, 100_000).unwrap().iter().map(|i| Inbound::decode(i).unwrap()).collect()
}

async fn post(url: &str, headers: &[(&str, &str)], body: impl Into<reqwest::Body>) -> (u16, String) {
    let (status, _, body) = post_full(url, headers, body).await;
    (status, body)
}

/// Status, `Retry-After` and body.
async fn post_full(url: &str, headers: &[(&str, &str)], body: impl Into<reqwest::Body>) -> (u16, Option<u64>, String) {
    let mut request = reqwest::Client::new().post(url).body(body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
    (response.status().as_u16(), retry_after, response.text().await.unwrap())
}

fn signed<'a>(id: &'a str, ts: &'a str, sig: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("content-type", "application/json"),
        ("webhook-id", id),
        ("webhook-timestamp", ts),
        ("webhook-signature", sig),
    ]
}

/// Posts a Standard Webhook `body` as delivery `id`, signed at `TS`.
async fn post_signed(url: &str, id: &str, body: &str) -> (u16, Option<u64>, String) {
    let signature = Secret::parse(SECRET).unwrap().sign(id, TS, body.as_bytes());
    post_full(url, &signed(id, &TS.to_string(), &signature), body.to_string()).await
}

/// Waits (bounded, generously) for `done` to hold.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(120), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs the dispatcher from `store` into a channel of one: a consumer that
/// takes a delivery only when the test asks for it is a slow strategy.
fn dispatch_into(server: &Server) -> (mpsc::Receiver<Inbound>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(1);
    let task = tokio::spawn(run_dispatcher(server.store.clone(), server.intake.waker(), false, move |_, inbound| {
        let tx = tx.clone();
        async move { if tx.send(inbound).await.is_ok() { Handed::Over } else { Handed::Closed } }
    }));
    (rx, tokio::spawn(async move { task.await.unwrap().unwrap() }))
}

#[tokio::test]
async fn standard_webhooks_accept_the_vector_once_and_refuse_every_bad_form() {
    let s = serve(vec![route("alerts", WebhookKind::Standard, WebhookAction::Signal)], TS).await;
    let url = format!("{}/webhooks/alerts", s.url);
    let ts = TS.to_string();

    assert_eq!(post(&url, &signed(ID, &ts, SIGNATURE), BODY).await.0, 202);
    let stored = Inbound::Signal { route: "alerts".into(), strategy: "bot".into(), payload: BODY.into() };
    assert_eq!(waiting(&s.store), std::slice::from_ref(&stored), "accepted means in the store, payload included");

    // A retry of the same delivery is acknowledged but does nothing.
    let (status, body) = post(&url, &signed(ID, &ts, SIGNATURE), BODY).await;
    assert_eq!((status, body.contains("duplicate")), (200, true));

    let other_secret = Secret::parse("whsec_c2VjcmV0LW9uZQ==").unwrap().sign(ID, TS, BODY.as_bytes());
    let stale = (TS - 301).to_string();
    let future = (TS + 301).to_string();
    let not_json_sig = Secret::parse(SECRET).unwrap().sign("msg_2", TS, b"not json");
    let cases = [
        (signed(ID, &ts, SIGNATURE), r#"{"test": 2432232315}"#, 401),
        (signed(ID, &ts, &other_secret), BODY, 401),
        (signed(ID, &stale, SIGNATURE), BODY, 401),
        (signed(ID, &future, SIGNATURE), BODY, 401),
        (vec![("content-type", "application/json")], BODY, 401),
        (signed("msg_2", &ts, &not_json_sig), "not json", 400),
        (
            vec![
                ("content-type", "text/xml"),
                ("webhook-id", ID),
                ("webhook-timestamp", &ts),
                ("webhook-signature", SIGNATURE),
            ],
            BODY,
            415,
        ),
    ];
    for (headers, body, expected) in cases {
        assert_eq!(post(&url, &headers, body).await.0, expected, "{headers:?} {body}");
    }
    assert_eq!(post(&url, &signed(ID, &ts, SIGNATURE), "x".repeat(2000)).await.0, 413);
    assert_eq!(post(&format!("{}/webhooks/nope", s.url), &signed(ID, &ts, SIGNATURE), BODY).await.0, 404);
    assert_eq!(waiting(&s.store), [stored], "nothing refused reached the store");
    assert_eq!(
        s.intake.refused.load(std::sync::atomic::Ordering::Relaxed),
        9,
        "seven bad forms, one oversized, one unknown route"
    );
}

#[tokio::test]
async fn tradingview_alerts_need_the_passphrase_and_act_once() {
    let s = serve(vec![route("tv", WebhookKind::Tradingview, WebhookAction::Order)], 0).await;
    let url = format!("{}/webhooks/tradingview/tv", s.url);
    let json = [("content-type", "application/json")];
    for _ in 0..3 {
        let status = post(&url, &json, ALERT).await.0;
        assert!(status == 202 || status == 200, "{status}");
    }
    let orders = waiting(&s.store);
    assert_eq!(orders.len(), 1, "three deliveries, one order: {orders:?}");
    let Inbound::Order { strategy, order, .. } = &orders[0] else { panic!("not an order") };
    assert_eq!((strategy.as_str(), order.symbol.as_str(), order.qty), ("bot", "AAPL", 5.into()));

    let wrong = ALERT.replace("tv-pass", "guess");
    let no_size = ALERT.replace(r#""order_contracts": "5", "#, "");
    let cases = [
        (&json[..], wrong.as_str(), 401),
        (&[("content-type", "text/plain")][..], "buy AAPL now", 400),
        (&[("content-type", "application/xml")][..], ALERT, 415),
        (&json[..], no_size.as_str(), 422),
    ];
    for (headers, body, expected) in cases {
        assert_eq!(post(&url, headers, body.to_string()).await.0, expected, "{body}");
    }
    assert_eq!(waiting(&s.store).len(), 1);
}

#[tokio::test]
async fn allowlists_and_rate_limits_refuse_before_reading() {
    let mut allow = route("tv", WebhookKind::Tradingview, WebhookAction::Signal);
    allow.allow_ips = vec!["10.0.0.1".parse().unwrap()];
    let mut slow = route("slow", WebhookKind::Tradingview, WebhookAction::Signal);
    // Bursts of one, then one every ten seconds: slow enough that no token
    // comes back while the test posts, however slow the machine.
    slow.per_minute = 6;
    let s = serve(vec![allow, slow], 0).await;
    let json = [("content-type", "application/json")];
    assert_eq!(post(&format!("{}/webhooks/tradingview/tv", s.url), &json, ALERT).await.0, 403);
    let mut statuses = Vec::new();
    for i in 0..8 {
        let body = ALERT.replace("14:30:00Z", &format!("14:3{i}:00Z"));
        let (status, retry_after, _) = post_full(&format!("{}/webhooks/tradingview/slow", s.url), &json, body).await;
        assert_eq!(status == 429, retry_after.is_some_and(|secs| secs >= 1), "a 429 says when: {status}");
        statuses.push(status);
    }
    assert_eq!(statuses.iter().filter(|&&s| s == 202).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|&&s| s == 429).count(), 7, "{statuses:?}");
    assert_eq!(waiting(&s.store).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tradingview_order_delivered_three_times_fills_once_on_paper() {
    let dir = tempfile::tempdir().unwrap();
    let text = EMBEDDED_DEFAULT.replace(
        "name = \"sma\"\nplugin = \"sma-crossover\"\nparams = { fast = 5, slow = 20, qty = 10 }",
        &format!("name = \"bot\"\nplugin = {MISBEHAVE_WASM:?}\nparams = {{ mode = \"quiet\" }}"),
    ) + &format!(
        "\n[store]\npath = {:?}\n\n[[webhook]]\nname = \"tv\"\nkind = \"tradingview\"\naction = \"order\"\nstrategies = [\"bot\"]\npassphrase = \"tv-pass\"\n",
        dir.path().join("host.db").display().to_string()
    );
    let config = Config::parse(&text, "test.toml").unwrap();
    let out = Captured::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let probe = {
        let out = out.clone();
        async move {
            let addr = out.listen_addr().await;
            let url = format!("http://{addr}/webhooks/tradingview/tv");
            let mut statuses = Vec::new();
            for _ in 0..3 {
                statuses.push(post(&url, &[("content-type", "application/json")], ALERT).await.0);
            }
            // The order fills at the next bar's open; then a few more bars pass.
            out.wait_for("fill  #w").await;
            stop.send(()).unwrap();
            statuses
        }
    };
    let options = RunOptions { listen: Some("127.0.0.1:0".parse().unwrap()), pace_ms: Some(5), exit_when_done: false };
    let (reports, statuses) =
        tokio::join!(run_host(config, options, async { stopped.await.unwrap() }, out.clone()), probe);
    let report = &reports.unwrap()[0];
    assert_eq!(statuses.iter().filter(|&&s| s == 202).count(), 1, "{statuses:?}");
    assert_eq!(report.fills.len(), 1, "one fill for three deliveries");
    assert_eq!((report.fills[0].qty, report.final_position), (5.into(), 5.into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_against_a_slow_strategy_loses_nothing_and_acts_on_nothing_twice() {
    const N: usize = 3_000;
    let mut hooks = route("burst", WebhookKind::Standard, WebhookAction::Signal);
    hooks.per_minute = u32::MAX;
    let s = serve_at(vec![hooks], fixed_clock, tempfile::tempdir().unwrap(), |i| i.capacity = 64).await;
    let url = format!("{}/webhooks/burst", s.url);
    let (mut rx, _dispatcher) = dispatch_into(&s);
    // The strategy takes nothing until the inbox has been full at least
    // once, so the busy path is exercised whatever the machine's speed.
    let was_full = Arc::new(AtomicBool::new(false));
    let got = Arc::new(Mutex::new(Vec::new()));
    let consumer = tokio::spawn({
        let (was_full, got) = (was_full.clone(), got.clone());
        async move {
            while !was_full.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            while let Some(inbound) = rx.recv().await {
                let Inbound::Signal { payload, .. } = inbound else { panic!("not a signal") };
                got.lock().unwrap().push(payload);
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
    });
    let busy = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for lane in 0..16 {
        let (url, was_full, busy) = (url.clone(), was_full.clone(), busy.clone());
        senders.push(tokio::spawn(async move {
            for n in (lane..N).step_by(16) {
                let (id, body) = (format!("msg_{n}"), format!(r#"{{"n": {n}}}"#));
                loop {
                    match post_signed(&url, &id, &body).await {
                        (202, _, _) => break,
                        (503, retry_after, _) => {
                            assert!(retry_after.is_some_and(|s| s >= 1), "a 503 says when to retry");
                            busy.fetch_add(1, Ordering::SeqCst);
                            was_full.store(true, Ordering::SeqCst);
                            // Sooner than asked, to keep the test short; the
                            // answer is the same either way.
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        other => panic!("delivery {n}: {other:?} before it was ever accepted"),
                    }
                }
            }
        }));
    }
    for sender in senders {
        sender.await.unwrap();
    }
    wait_until("every delivery to reach the strategy", || got.lock().unwrap().len() >= N).await;
    assert!(busy.load(Ordering::SeqCst) > 0, "the inbox was never full");
    // Everything handed over is gone from the inbox; nothing else comes.
    wait_until("the inbox to empty", || waiting(&s.store).is_empty()).await;
    let mut payloads = got.lock().unwrap().clone();
    assert_eq!(payloads.len(), N, "none twice");
    payloads.sort();
    payloads.dedup();
    assert_eq!(payloads.len(), N, "every one, once");
    // Retries of accepted deliveries, now, change nothing.
    for n in [0, N / 2, N - 1] {
        let (status, _, body) = post_signed(&url, &format!("msg_{n}"), &format!(r#"{{"n": {n}}}"#)).await;
        assert_eq!((status, body.contains("duplicate")), (200, true));
    }
    consumer.abort();
}

#[tokio::test]
async fn accepted_deliveries_outlive_the_process_and_are_handed_over_once() {
    const N: usize = 300;
    let hooks = route("alerts", WebhookKind::Standard, WebhookAction::Signal);
    // First life: accepts 300 and never hands any over.
    let s = serve_at(vec![hooks.clone()], fixed_clock, tempfile::tempdir().unwrap(), |_| {}).await;
    let url = format!("{}/webhooks/alerts", s.url);
    for n in 0..N {
        assert_eq!(post_signed(&url, &format!("msg_{n}"), &format!(r#"{{"n": {n}}}"#)).await.0, 202);
    }
    s.task.abort();
    let dir = s.dir;
    drop((s.intake, s.store));

    // Second life: hands 100 over, then its strategy's queue closes.
    let s = serve_at(vec![hooks.clone()], fixed_clock, dir, |_| {}).await;
    let url = format!("{}/webhooks/alerts", s.url);
    for n in [0, 150, N - 1] {
        let (status, _, body) = post_signed(&url, &format!("msg_{n}"), &format!(r#"{{"n": {n}}}"#)).await;
        assert_eq!((status, body.contains("duplicate")), (200, true), "a retry after the restart does nothing");
    }
    let handed = Arc::new(Mutex::new(Vec::new()));
    let taken = handed.clone();
    run_dispatcher(s.store.clone(), s.intake.waker(), false, move |_, inbound| {
        let mut taken = taken.lock().unwrap();
        let result = if taken.len() < 100 {
            taken.push(inbound);
            Handed::Over
        } else {
            Handed::Closed
        };
        async move { result }
    })
    .await
    .unwrap();
    assert_eq!(waiting(&s.store).len(), N - 100, "handed over means done; the rest wait");
    s.task.abort();
    let dir = s.dir;
    drop((s.intake, s.store));

    // Third life: the rest, oldest first.
    let s = serve_at(vec![hooks], fixed_clock, dir, |_| {}).await;
    let (mut rx, dispatcher) = dispatch_into(&s);
    while handed.lock().unwrap().len() < N {
        let inbound = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await.unwrap().unwrap();
        handed.lock().unwrap().push(inbound);
    }
    wait_until("the inbox to empty", || waiting(&s.store).is_empty()).await;
    dispatcher.abort();
    let handed = handed.lock().unwrap();
    let payloads: Vec<String> = handed
        .iter()
        .map(|i| match i {
            Inbound::Signal { payload, .. } => payload.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    let expected: Vec<String> = (0..N).map(|n| format!(r#"{{"n": {n}}}"#)).collect();
    assert_eq!(payloads, expected, "each once, in the order accepted");
}

#[tokio::test]
async fn refused_requests_spend_their_own_budget_and_every_429_says_when() {
    let mut standard = route("alerts", WebhookKind::Standard, WebhookAction::Signal);
    let mut tv = route("tv", WebhookKind::Tradingview, WebhookAction::Signal);
    for r in [&mut standard, &mut tv] {
        r.per_minute = 60; // bursts of 6
        r.unauthenticated_per_minute = 60;
    }
    let s = serve(vec![standard, tv], TS).await;
    let url = format!("{}/webhooks/alerts", s.url);
    let tv_url = format!("{}/webhooks/tradingview/tv", s.url);
    let json = [("content-type", "application/json")];
    // A stranger who knows the URLs: bad signatures, wrong passphrases,
    // oversized and unreadable bodies.
    let mut strangers = Vec::new();
    for n in 0..20 {
        let bad_signature = signed(ID, "1614265330", "v1,AAAA");
        strangers.push(post_full(&url, &bad_signature, format!(r#"{{"n": {n}}}"#)).await);
        let body = match n % 3 {
            0 => ALERT.replace("tv-pass", "guess"),
            1 => "x".repeat(5000),
            _ => "not json".to_string(),
        };
        strangers.push(post_full(&tv_url, &json, body).await);
    }
    for (status, retry_after, body) in &strangers {
        assert!([401, 413, 400, 429].contains(status), "{status} {body}");
        assert_eq!(*status == 429, retry_after.is_some_and(|s| s >= 1), "{status} {retry_after:?}");
    }
    assert!(strangers.iter().filter(|r| r.0 == 429).count() >= 20, "strangers are throttled");
    // The real sender's budget is untouched.
    for n in 0..6 {
        assert_eq!(post_signed(&url, &format!("msg_{n}"), BODY).await.0, 202, "delivery {n}");
        let alert = ALERT.replace("14:30:00Z", &format!("14:3{n}:00Z"));
        assert_eq!(post(&tv_url, &json, alert).await.0, 202, "alert {n}");
    }
    let (status, retry_after, _) = post_signed(&url, "msg_6", BODY).await;
    assert_eq!(status, 429);
    assert!(retry_after.is_some_and(|s| (1..=2).contains(&s)), "{retry_after:?}");
    assert_eq!(waiting(&s.store).len(), 12);
}

#[tokio::test]
async fn standard_order_routes_place_validated_orders() {
    let s = serve(vec![route("orders", WebhookKind::Standard, WebhookAction::Order)], TS).await;
    let url = format!("{}/webhooks/orders", s.url);
    let limit = r#"{"symbol": "AAPL", "side": "sell", "qty": "2.5", "type": "limit", "limit_price": "190.25"}"#;
    assert_eq!(post_signed(&url, "msg_1", limit).await.0, 202);
    assert_eq!(post_signed(&url, "msg_2", r#"{"symbol": "AAPL", "side": "buy", "qty": 3}"#).await.0, 202);
    let stop = r#"{"symbol": "AAPL", "side": "sell", "qty": 1, "type": "stop", "stop_price": "181.5"}"#;
    assert_eq!(post_signed(&url, "msg_3", stop).await.0, 202);
    let stop_limit = r#"{"symbol": "AAPL", "side": "buy", "qty": 1, "type": "stop_limit", "stop_price": "101.5", "limit_price": 102}"#;
    assert_eq!(post_signed(&url, "msg_4", stop_limit).await.0, 202);
    let bad = [
        (r#"{"symbol": "AAPL", "side": "buy", "qty": 1, "type": "stop"}"#, 422),
        (r#"{"symbol": "AAPL", "side": "buy", "qty": 1, "type": "stop", "stop_price": "-1"}"#, 422),
        (r#"{"symbol": "AAPL", "side": "buy", "qty": 1, "stop_price": 5}"#, 422),
        (r#"{"symbol": "AAPL", "side": "buy", "qty": 1, "type": "stop_limit", "stop_price": 5}"#, 422),
        (r#"{"symbol": "AAPL", "side": "hold", "qty": 1}"#, 422),
        (r#"{"symbol": "AAPL", "side": "buy", "qty": "-1"}"#, 422),
        (r#"{"symbol": "AAPL", "side": "buy", "qty": 1, "type": "limit"}"#, 422),
        (r#"{"symbol": "AAPL", "side": "buy", "qty": 1, "type": "limit", "limit_price": 0}"#, 422),
        (r#"{"symbol": "<script>", "side": "buy", "qty": 1}"#, 422),
        (r#"{"symbol": "AAPL", "side": "buy", "qty": 1, "extra": true}"#, 422),
        (r#"{"symbol": "AAPL", "side": "buy", "qty": 1, "qty": 1000}"#, 422),
        (r#"{"side": "buy", "qty": 1}"#, 422),
        ("[1, 2]", 400),
        ("{", 400),
    ];
    for (n, (body, expected)) in bad.iter().enumerate() {
        let (status, _, text) = post_signed(&url, &format!("msg_bad_{n}"), body).await;
        assert_eq!(status, *expected, "{body}: {text}");
    }
    let orders = waiting(&s.store);
    assert_eq!(orders.len(), 4, "{orders:?}");
    let Inbound::Order { order, strategy, .. } = &orders[0] else { panic!("{orders:?}") };
    assert_eq!(strategy, "bot");
    assert_eq!(
        (order.qty, order.order_type),
        ("2.5".parse().unwrap(), OrderType::Limit { price: "190.25".parse().unwrap() })
    );
    let Inbound::Order { order, .. } = &orders[1] else { panic!("{orders:?}") };
    assert_eq!((order.qty, order.order_type), (3.into(), OrderType::Market));
    let types: Vec<String> = orders.iter().map(|o| format!("{o:?}")).collect();
    assert!(types[2].contains("Stop { stop: 181.5 }") && types[3].contains("StopLimit { stop: 101.5, limit: 102 }"));

    // The config takes such a route, for one strategy only.
    let config = |strategies: &str| {
        format!(
            "{EMBEDDED_DEFAULT}\n[[webhook]]\nname = \"o\"\nkind = \"standard\"\naction = \"order\"\nstrategies = {strategies}\nsecrets = [{SECRET:?}]\n"
        )
    };
    assert!(Config::parse(&config("[\"sma\"]"), "c.toml").is_ok());
    let error = Config::parse(&config("[\"sma\", \"sma\"]"), "c.toml").unwrap_err().to_string();
    assert!(error.contains("exactly one strategy"), "{error}");
}

static TV_CLOCK: AtomicI64 = AtomicI64::new(1_700_000_000_000);

fn tv_clock() -> i64 {
    TV_CLOCK.load(Ordering::SeqCst)
}

#[tokio::test]
async fn tradingview_dedup_keys_expire_and_timenow_makes_them_exact() {
    let hooks = route("tv", WebhookKind::Tradingview, WebhookAction::Order);
    let s = serve_at(vec![hooks], tv_clock, tempfile::tempdir().unwrap(), |_| {}).await;
    let url = format!("{}/webhooks/tradingview/tv", s.url);
    let json = [("content-type", "application/json")];
    let t0 = tv_clock();
    let at = |secs: i64| TV_CLOCK.store(t0 + secs * 1000, Ordering::SeqCst);
    let send = |body: String| {
        let url = url.clone();
        async move { post(&url, &json, body).await.0 }
    };
    // No timenow: the body's hash, for a short window only.
    assert_eq!(send(ALERT.into()).await, 202);
    at(10);
    assert_eq!(send(ALERT.into()).await, 200, "a retry moments later");
    at(120);
    assert_eq!(send(ALERT.into()).await, 202, "the same text firing minutes later acts again");
    // With timenow: one firing is one key, whatever else changes, for a day.
    let fired = |timenow: &str, close: &str| {
        ALERT.replace(r#""ticker""#, &format!(r#""timenow": "{timenow}", "close": {close}, "ticker""#))
    };
    at(200);
    assert_eq!(send(fired("2024-01-02T14:30:07Z", "1")).await, 202);
    at(3_600);
    assert_eq!(send(fired("2024-01-02T14:30:07Z", "2")).await, 200, "the same firing an hour later");
    assert_eq!(send(fired("2024-01-02T14:30:08Z", "1")).await, 202, "another firing of the same text");
    assert_eq!(waiting(&s.store).len(), 4);
    // Old keys are pruned.
    assert_eq!(s.store.delivery_keys().unwrap(), 3, "the first body key expired and was replaced");
    at(90_000);
    assert_eq!(s.store.prune_delivery_keys(tv_clock()).unwrap(), 3);
    assert_eq!(s.store.delivery_keys().unwrap(), 0);
    assert_eq!(send(fired("2024-01-02T14:30:07Z", "1")).await, 202, "past the window, a key is new");
}

#[tokio::test]
async fn webhook_secrets_can_come_from_variables_named_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("hooks.db")).unwrap());
    let lookup = |var: &str| match var {
        "HOOK_SECRETS" => Ok(format!("whsec_c2VjcmV0LW9uZQ==, {SECRET}")),
        "TV_PASS" => Ok("tv-pass".to_string()),
        "BLANK" => Ok(String::new()),
        "BAD_SECRETS" => Ok("whsec_ok? not-one".to_string()),
        _ => Err(std::env::VarError::NotPresent),
    };
    let mut standard = route("alerts", WebhookKind::Standard, WebhookAction::Signal);
    (standard.secrets, standard.secrets_env) = (Vec::new(), Some("HOOK_SECRETS".into()));
    let mut tv = route("tv", WebhookKind::Tradingview, WebhookAction::Signal);
    (tv.passphrase, tv.passphrase_env) = (None, Some("TV_PASS".into()));
    let intake = WebhookIntake::with_env(&[standard.clone(), tv.clone()], store.clone(), &lookup).unwrap();
    drop(intake);
    for (var, expected) in [("UNSET_VAR", "UNSET_VAR"), ("BLANK", "BLANK"), ("BAD_SECRETS", "BAD_SECRETS")] {
        let mut r = standard.clone();
        r.secrets_env = Some(var.into());
        let error = WebhookIntake::with_env(&[r], store.clone(), &lookup).err().expect("refused");
        assert!(error.to_string().contains(expected), "{error}");
        assert!(!error.to_string().contains("whsec_ok"), "no secret in messages: {error}");
        let mut r = tv.clone();
        r.passphrase_env = Some(var.into());
        if var != "BAD_SECRETS" {
            let error = WebhookIntake::with_env(&[r], store.clone(), &lookup).err().expect("refused");
            assert!(error.to_string().contains(expected), "{error}");
        }
    }
    // In the config: exactly one of the plain and the variable form.
    let hook = |keys: &str| {
        format!("{EMBEDDED_DEFAULT}\n[[webhook]]\nname = \"h\"\naction = \"signal\"\nstrategies = [\"sma\"]\n{keys}\n")
    };
    let cases = [
        ("kind = \"standard\"\nsecrets_env = \"S\"", None),
        ("kind = \"tradingview\"\npassphrase_env = \"P\"", None),
        ("kind = \"standard\"", Some("webhook[0].secrets`: required")),
        ("kind = \"tradingview\"", Some("webhook[0].passphrase`: required")),
        (&format!("kind = \"standard\"\nsecrets = [{SECRET:?}]\nsecrets_env = \"S\""), Some("not both")),
        ("kind = \"tradingview\"\npassphrase = \"p\"\npassphrase_env = \"P\"", Some("not both")),
        ("kind = \"tradingview\"\npassphrase = \"p\"\nsecrets_env = \"S\"", Some("not used by tradingview")),
        ("kind = \"standard\"\nsecrets_env = \"S\"\ndedup_window_secs = 60", Some("dedup_window_secs")),
        ("kind = \"tradingview\"\npassphrase = \"p\"\nbody_dedup_window_secs = 0", Some("body_dedup_window_secs")),
    ];
    for (keys, expected) in cases {
        let result = Config::parse(&hook(keys), "c.toml");
        match expected {
            None => assert!(result.is_ok(), "{keys}: {result:?}"),
            Some(text) => {
                let error = result.unwrap_err().to_string();
                assert!(error.contains(text), "{keys}: {error}");
            }
        }
    }
}
