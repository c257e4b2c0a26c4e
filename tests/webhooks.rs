//! Inbound webhooks over real HTTP on loopback: every refused form gets its
//! status and leaves no trace; accepted deliveries act once, restarts and
//! retries included.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use stratbox::api::{AppState, app};
use stratbox::config::{Config, EMBEDDED_DEFAULT, WebhookAction, WebhookConfig, WebhookKind};
use stratbox::engine::{HostStatus, RunOptions, run_host};
use stratbox::store::Store;
use stratbox::webhook::{Inbound, Secret, WebhookIntake};
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
    WebhookConfig {
        name: name.into(),
        kind,
        action,
        strategies: vec!["bot".into()],
        secrets: vec![SECRET.into()],
        passphrase: Some("tv-pass".into()),
        allow_ips: Vec::new(),
        max_body_bytes: 1024,
        per_minute: 6000,
    }
}

struct Server {
    url: String,
    queue: mpsc::Receiver<Inbound>,
    intake: Arc<WebhookIntake>,
    _dir: tempfile::TempDir,
    _task: tokio::task::JoinHandle<()>,
}

async fn serve(routes: Vec<WebhookConfig>, now_secs: i64) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("hooks.db")).unwrap());
    let (tx, queue) = mpsc::channel(64);
    let mut intake = WebhookIntake::new(&routes, store, tx);
    intake.now = match now_secs {
        TS => || TS * 1000,
        _ => || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64,
    };
    let intake = Arc::new(intake);
    let state =
        AppState { status: Arc::new(RwLock::new(HostStatus::default())), gate: None, webhooks: Some(intake.clone()) };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app(state).into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    Server { url, queue, intake, _dir: dir, _task: task }
}

async fn post(url: &str, headers: &[(&str, &str)], body: impl Into<reqwest::Body>) -> (u16, String) {
    let mut request = reqwest::Client::new().post(url).body(body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn signed<'a>(id: &'a str, ts: &'a str, sig: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("content-type", "application/json"),
        ("webhook-id", id),
        ("webhook-timestamp", ts),
        ("webhook-signature", sig),
    ]
}

#[tokio::test]
async fn standard_webhooks_accept_the_vector_once_and_refuse_every_bad_form() {
    let mut s = serve(vec![route("alerts", WebhookKind::Standard, WebhookAction::Signal)], TS).await;
    let url = format!("{}/webhooks/alerts", s.url);
    let ts = TS.to_string();

    assert_eq!(post(&url, &signed(ID, &ts, SIGNATURE), BODY).await.0, 202);
    let delivered = s.queue.try_recv().unwrap();
    assert_eq!(
        delivered,
        Inbound::Signal { route: "alerts".into(), strategies: vec!["bot".into()], payload: BODY.into() }
    );

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
    assert!(s.queue.try_recv().is_err(), "nothing refused reached the host");
    assert_eq!(
        s.intake.refused.load(std::sync::atomic::Ordering::Relaxed),
        9,
        "seven bad forms, one oversized, one unknown route"
    );
}

#[tokio::test]
async fn tradingview_alerts_need_the_passphrase_and_act_once() {
    let mut s = serve(vec![route("tv", WebhookKind::Tradingview, WebhookAction::Order)], 0).await;
    let url = format!("{}/webhooks/tradingview/tv", s.url);
    let json = [("content-type", "application/json")];
    for _ in 0..3 {
        let status = post(&url, &json, ALERT).await.0;
        assert!(status == 202 || status == 200, "{status}");
    }
    let Inbound::Order { strategy, order, .. } = s.queue.try_recv().unwrap() else { panic!("not an order") };
    assert_eq!((strategy.as_str(), order.symbol.as_str(), order.qty), ("bot", "AAPL", 5.into()));
    assert!(s.queue.try_recv().is_err(), "three deliveries, one order");

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
    assert!(s.queue.try_recv().is_err());
}

#[tokio::test]
async fn allowlists_and_rate_limits_refuse_before_reading() {
    let mut allow = route("tv", WebhookKind::Tradingview, WebhookAction::Signal);
    allow.allow_ips = vec!["10.0.0.1".parse().unwrap()];
    let mut slow = route("slow", WebhookKind::Tradingview, WebhookAction::Signal);
    slow.per_minute = 60; // bursts of 6
    let mut s = serve(vec![allow, slow], 0).await;
    let json = [("content-type", "application/json")];
    assert_eq!(post(&format!("{}/webhooks/tradingview/tv", s.url), &json, ALERT).await.0, 403);
    let mut statuses = Vec::new();
    for i in 0..8 {
        let body = ALERT.replace("14:30:00Z", &format!("14:3{i}:00Z"));
        statuses.push(post(&format!("{}/webhooks/tradingview/slow", s.url), &json, body).await.0);
    }
    assert_eq!(statuses.iter().filter(|&&s| s == 202).count(), 6, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|&&s| s == 429).count(), 2, "{statuses:?}");
    let mut accepted = 0;
    while s.queue.try_recv().is_ok() {
        accepted += 1;
    }
    assert_eq!(accepted, 6);
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
            // Let a few more bars pass so the order fills at the next open.
            tokio::time::sleep(Duration::from_millis(400)).await;
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
