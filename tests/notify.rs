//! Notifications against local receivers on loopback that check the
//! payload shapes and signatures and fail on request: every notification
//! arrives exactly once in the end, 410 disables a sink, other 4XX drop.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use stratbox::notify::{Notifier, SinkConfig, SinkKind, SmtpTls};
use stratbox::store::Store;
use stratbox::webhook::{Secret, verify};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Default)]
struct Receiver {
    /// What arrived, per route: the JSON body (or form) as text.
    got: HashMap<String, Vec<String>>,
    /// Statuses to answer next, per route, with an optional Retry-After.
    faults: HashMap<String, VecDeque<(u16, Option<u64>)>>,
}

type Shared = Arc<Mutex<Receiver>>;

fn fault(state: &Shared, route: &str) -> Option<Response> {
    let (status, retry_after) = state.lock().unwrap().faults.get_mut(route)?.pop_front()?;
    let mut response = (StatusCode::from_u16(status).unwrap(), "nope").into_response();
    if let Some(s) = retry_after {
        response.headers_mut().insert("retry-after", s.to_string().parse().unwrap());
    }
    Some(response)
}

fn record(state: &Shared, route: &str, body: String) {
    state.lock().unwrap().got.entry(route.into()).or_default().push(body);
}

async fn slack(State(s): State<Shared>, body: String) -> Response {
    if let Some(f) = fault(&s, "slack") {
        return f;
    }
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(json["text"].is_string(), "{body}");
    record(&s, "slack", body);
    (StatusCode::OK, "ok").into_response()
}

async fn discord(State(s): State<Shared>, body: String) -> Response {
    if let Some(f) = fault(&s, "discord") {
        return f;
    }
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(json["content"].as_str().unwrap().chars().count() <= 2000);
    record(&s, "discord", body);
    StatusCode::NO_CONTENT.into_response()
}

async fn signed_json(State(s): State<Shared>, headers: HeaderMap, body: String) -> Response {
    if let Some(f) = fault(&s, "json") {
        return f;
    }
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    if verify(
        &[Secret::parse(SECRET).unwrap()],
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
        body.as_bytes(),
        now,
    )
    .is_err()
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(json["type"].is_string() && json["timestamp"].is_string() && json.get("data").is_some(), "{body}");
    record(&s, "json", format!("{} {}", h("webhook-id").unwrap(), body));
    StatusCode::OK.into_response()
}

async fn twilio(State(s): State<Shared>, Path(sid): Path<String>, headers: HeaderMap, body: String) -> Response {
    if let Some(f) = fault(&s, "twilio") {
        return f;
    }
    let expected =
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{sid}:stratbox-tests")));
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({"code": 20003, "message": "Authenticate", "status": 401})),
        )
            .into_response();
    }
    assert!(body.contains("To=%2B15550100") && body.contains("From=%2B15550199") && body.contains("Body="), "{body}");
    record(&s, "twilio", body);
    (StatusCode::CREATED, axum::Json(serde_json::json!({"sid": "SM1", "status": "queued"}))).into_response()
}

async fn receiver(listener: tokio::net::TcpListener, state: Shared) {
    let app = Router::new()
        .route("/slack", post(slack))
        .route("/discord", post(discord))
        .route("/json", post(signed_json))
        .route("/2010-04-01/Accounts/{sid}/Messages.json", post(twilio))
        .with_state(state);
    axum::serve(listener, app).await.unwrap();
}

fn sink(name: &str, kind: SinkKind, url: String, events: &[&str]) -> SinkConfig {
    SinkConfig {
        name: name.into(),
        kind,
        url,
        events: events.iter().map(|s| s.to_string()).collect(),
        templates: Default::default(),
        secret: (kind == SinkKind::Json).then(|| SECRET.into()),
        account_sid: Some("AC123".into()),
        auth_token_env: Some("CARGO_PKG_NAME".into()),
        from: Some("+15550199".into()),
        to: Some("+15550100".into()),
        subject: None,
        tls: SmtpTls::default(),
        username: None,
        password_env: None,
        ca_file: None,
    }
}

/// Pumps and delivers with a clock stepping `step` ms a round.
async fn drive(notifier: &Notifier, rounds: usize, step: i64, start: i64) {
    for round in 0..rounds as i64 {
        notifier.pump().unwrap();
        notifier.deliver_due(start + round * step).await.unwrap();
    }
}

#[tokio::test]
async fn every_notification_arrives_once_despite_throttling_errors_and_gone_sinks() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state: Shared = Arc::default();
    tokio::spawn(receiver(listener, state.clone()));
    {
        let mut s = state.lock().unwrap();
        s.faults.insert("slack".into(), VecDeque::from([(429, Some(1)), (503, None)]));
        s.faults.insert("discord".into(), VecDeque::from([(500, None), (400, None)]));
        s.faults.insert("json".into(), VecDeque::from([(502, None)]));
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("n.db")).unwrap());
    for (kind, data) in [
        ("order.filled", r#"{"symbol":"AAPL","qty":"10"}"#),
        ("risk.halted", r#"{"drift":"7"}"#),
        ("order.rejected", r#"{"reason":"x"}"#),
    ] {
        store.append_event(1_000, kind, Some("alpaca"), data).unwrap();
    }
    let mut slack_sink = sink("slack", SinkKind::Slack, format!("{base}/slack"), &["order.*"]);
    slack_sink.templates.insert("order.filled".into(), "Filled {{ data.qty }} {{ data.symbol }}".into());
    let sinks = vec![
        slack_sink,
        sink("discord", SinkKind::Discord, format!("{base}/discord"), &[]),
        sink("json", SinkKind::Json, format!("{base}/json"), &[]),
        sink("sms", SinkKind::Twilio, base.clone(), &["risk.halted"]),
    ];
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    let mut notifier = Notifier::new(sinks, store.clone(), client).unwrap();
    notifier.base_backoff = Duration::from_millis(100);
    drive(&notifier, 20, 2_000, 1_000).await;

    let s = state.lock().unwrap();
    let slack = &s.got["slack"];
    assert_eq!(slack.len(), 2, "order.* only, once each: {slack:?}");
    assert!(slack.iter().any(|b| b.contains("Filled 10 AAPL")), "the template was used: {slack:?}");
    assert_eq!(s.got["discord"].len(), 2, "one of three dropped on a 400");
    assert_eq!(notifier.dropped.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(s.got["json"].len(), 3);
    let mut ids: Vec<&str> = s.got["json"].iter().map(|b| b.split(' ').next().unwrap()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 3, "stable, distinct delivery ids");
    assert_eq!(s.got["twilio"].len(), 1);
    assert!(s.got["twilio"][0].contains("risk.halted"));
}

#[tokio::test]
async fn a_gone_sink_is_disabled_and_a_down_receiver_gets_everything_later() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener); // down for now
    let gone_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone_base = format!("http://{}", gone_listener.local_addr().unwrap());
    let gone_state: Shared = Arc::default();
    gone_state.lock().unwrap().faults.insert("slack".into(), VecDeque::from([(410, None)]));
    tokio::spawn(receiver(gone_listener, gone_state.clone()));

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("n.db")).unwrap());
    for n in 0..3 {
        store.append_event(1_000, "order.filled", None, &format!(r#"{{"n":{n}}}"#)).unwrap();
    }
    let sinks = vec![
        sink("later", SinkKind::Json, format!("http://{addr}/json"), &[]),
        sink("gone", SinkKind::Slack, format!("{gone_base}/slack"), &[]),
    ];
    let client = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().unwrap();
    let mut notifier = Notifier::new(sinks.clone(), store.clone(), client.clone()).unwrap();
    notifier.base_backoff = Duration::from_millis(100);
    drive(&notifier, 3, 1_000, 1_000).await;
    assert!(gone_state.lock().unwrap().got.is_empty());
    let disabled = store.events_after(0, 100).unwrap().into_iter().filter(|e| e.kind == "sink.disabled").count();
    assert_eq!(disabled, 1, "410 disables the sink once");

    // The host restarts and the receiver comes up on its address.
    drop(notifier);
    let state: Shared = Arc::default();
    tokio::spawn(receiver(tokio::net::TcpListener::bind(addr).await.unwrap(), state.clone()));
    let mut notifier = Notifier::new(sinks, store.clone(), client).unwrap();
    notifier.base_backoff = Duration::from_millis(100);
    drive(&notifier, 10, 60_000, 10_000).await;
    let got = state.lock().unwrap().got.get("json").cloned().unwrap_or_default();
    assert_eq!(got.len(), 4, "three fills and the sink.disabled event, once each: {got:?}");
}

#[tokio::test]
async fn a_hanging_sink_holds_up_only_itself_and_is_not_hammered() {
    // Accepts connections and never answers, counting them.
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang_url = format!("http://{}/slack", hang.local_addr().unwrap());
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn({
        let connections = connections.clone();
        async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = hang.accept().await {
                connections.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(socket);
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state: Shared = Arc::default();
    tokio::spawn(receiver(listener, state.clone()));

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("n.db")).unwrap());
    for n in 0..5 {
        store.append_event(1_000, "order.filled", None, &format!(r#"{{"n":{n}}}"#)).unwrap();
    }
    let sinks = vec![
        sink("stuck", SinkKind::Slack, hang_url, &[]),
        sink("ok", SinkKind::Discord, format!("{base}/discord"), &[]),
    ];
    let client = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let mut notifier = Notifier::new(sinks, store.clone(), client).unwrap();
    notifier.base_backoff = Duration::from_secs(10);
    // One round: the healthy sink gets everything while the stuck one
    // times out once; the stuck one's other four wait with it.
    notifier.pump().unwrap();
    notifier.deliver_due(1_000).await.unwrap();
    assert_eq!(state.lock().unwrap().got["discord"].len(), 5);
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Rounds before its retry time leave it alone.
    for round in 1..5 {
        notifier.deliver_due(1_000 + round * 1_000).await.unwrap();
    }
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 1, "held, not hammered");
    let waiting = store.due_notifications(i64::MAX / 2, 100).unwrap();
    assert_eq!(waiting.len(), 5);
    assert!(waiting.iter().all(|n| n.sink == "stuck"));
    let order: Vec<&str> = waiting.iter().map(|n| n.data.as_str()).collect();
    assert_eq!(order, [r#"{"n":0}"#, r#"{"n":1}"#, r#"{"n":2}"#, r#"{"n":3}"#, r#"{"n":4}"#], "kept in order");
}
