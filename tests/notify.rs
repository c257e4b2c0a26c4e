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
use stratbox::notify::{Notifier, NotifyError, SinkConfig, SinkKind, SmtpTls, TRUNCATED};
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
        url_env: None,
        events: events.iter().map(|s| s.to_string()).collect(),
        templates: Default::default(),
        secret: (kind == SinkKind::Json).then(|| SECRET.into()),
        secret_env: None,
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
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
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
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
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
    let client = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().unwrap();
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

/// Data of what a route received, in arrival order, parsed as JSON.
fn received(state: &Shared, route: &str) -> Vec<serde_json::Value> {
    let s = state.lock().unwrap();
    s.got.get(route).into_iter().flatten().map(|b| serde_json::from_str(b).unwrap()).collect()
}

#[tokio::test]
async fn a_retried_notification_is_never_overtaken_by_later_ones() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state: Shared = Arc::default();
    // Every few attempts fail, with and without Retry-After.
    state.lock().unwrap().faults.insert(
        "discord".into(),
        VecDeque::from([(503, None), (429, Some(3)), (500, None), (503, Some(1)), (502, None)]),
    );
    tokio::spawn(receiver(listener, state.clone()));
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("n.db")).unwrap());
    let mut d = sink("d", SinkKind::Discord, format!("{base}/discord"), &[]);
    d.templates.insert("order.filled".into(), "{{ data.n }}".into());
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let mut notifier = Notifier::new(vec![d], store.clone(), client).unwrap();
    notifier.base_backoff = Duration::from_millis(500);
    // New lines keep arriving (time-stamped as they happen) while the
    // first ones are held for a retry.
    let mut now = 1_000;
    for n in 0..12 {
        store.append_event(now, "order.filled", None, &format!(r#"{{"n":{n}}}"#)).unwrap();
        notifier.pump().unwrap();
        notifier.deliver_due(now).await.unwrap();
        now += 700;
    }
    for _ in 0..100 {
        notifier.deliver_due(now).await.unwrap();
        now += 1_000;
    }
    let got: Vec<String> = received(&state, "discord").iter().map(|b| b["content"].as_str().unwrap().into()).collect();
    let expected: Vec<String> = (0..12).map(|n| n.to_string()).collect();
    assert_eq!(got, expected, "once each, in journal order");
}

#[tokio::test]
async fn a_sink_disabled_by_410_stays_disabled_after_a_restart_until_its_url_changes() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state: Shared = Arc::default();
    state.lock().unwrap().faults.insert("slack".into(), VecDeque::from([(410, None)]));
    tokio::spawn(receiver(listener, state.clone()));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.db");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let gone = vec![sink("team", SinkKind::Slack, format!("{base}/slack"), &["order.*"])];
    {
        let store = Arc::new(Store::open(&path).unwrap());
        store.append_event(1_000, "order.filled", None, r#"{"n":0}"#).unwrap();
        let notifier = Notifier::new(gone.clone(), store.clone(), client.clone()).unwrap();
        drive(&notifier, 3, 1_000, 1_000).await;
    }
    assert!(received(&state, "slack").is_empty());
    // A second lifetime over the same file: the endpoint would answer 200
    // now, but a 410 is final for that URL.
    {
        let store = Arc::new(Store::open(&path).unwrap());
        store.append_event(5_000, "order.filled", None, r#"{"n":1}"#).unwrap();
        let notifier = Notifier::new(gone.clone(), store.clone(), client.clone()).unwrap();
        drive(&notifier, 3, 1_000, 5_000).await;
    }
    assert!(received(&state, "slack").is_empty(), "still disabled after the restart");
    // A third lifetime with a new URL for the sink: it is back.
    let store = Arc::new(Store::open(&path).unwrap());
    store.append_event(9_000, "order.filled", None, r#"{"n":2}"#).unwrap();
    let moved = vec![sink("team", SinkKind::Slack, format!("{base}/slack?v=2"), &["order.*"])];
    let notifier = Notifier::new(moved, store.clone(), client).unwrap();
    drive(&notifier, 3, 1_000, 9_000).await;
    let got = received(&state, "slack");
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0]["text"].as_str().unwrap().contains("\"n\": 2"), "{got:?}");
}

#[tokio::test]
async fn unset_or_empty_secret_variables_stop_the_notifier_at_start_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("n.db")).unwrap());
    let lookup = |var: &str| match var {
        "EMPTY" => Ok(" ".to_string()),
        "GOOD_SECRET" => Ok(SECRET.to_string()),
        "BAD_SECRET" => Ok("not-a-whsec".to_string()),
        _ => Err(std::env::VarError::NotPresent),
    };
    let client = reqwest::Client::new();
    let with = |edit: &dyn Fn(&mut SinkConfig)| {
        let mut s = sink("s", SinkKind::Twilio, "http://127.0.0.1:9".into(), &[]);
        edit(&mut s);
        Notifier::with_env(vec![s], store.clone(), client.clone(), &lookup).err()
    };
    type Edit<'a> = &'a dyn Fn(&mut SinkConfig);
    let cases: [(Edit, &str); 6] = [
        (&|s| s.auth_token_env = Some("TWILIO_TOKEN_UNSET".into()), "TWILIO_TOKEN_UNSET"),
        (&|s| s.auth_token_env = Some("EMPTY".into()), "EMPTY"),
        (
            &|s| {
                s.kind = SinkKind::Slack;
                s.url_env = Some("SLACK_URL_UNSET".into());
            },
            "SLACK_URL_UNSET",
        ),
        (
            &|s| {
                s.kind = SinkKind::Json;
                s.secret = None;
                s.secret_env = Some("JSON_SECRET_UNSET".into());
            },
            "JSON_SECRET_UNSET",
        ),
        (
            &|s| {
                s.kind = SinkKind::Json;
                s.secret = None;
                s.secret_env = Some("BAD_SECRET".into());
            },
            "BAD_SECRET",
        ),
        (
            &|s| {
                s.kind = SinkKind::Discord;
                s.url_env = Some("EMPTY".into());
            },
            "EMPTY",
        ),
    ];
    for (edit, var) in cases {
        let error = with(edit).expect("refused at start");
        assert!(error.to_string().contains(var), "{error}");
        assert!(matches!(error, NotifyError::Env { .. } | NotifyError::EmptyEnv { .. } | NotifyError::Secret { .. }));
        assert!(!error.to_string().contains("not-a-whsec"), "a secret's value is never shown: {error}");
    }
    let ok = with(&|s| {
        s.kind = SinkKind::Json;
        s.secret = None;
        s.secret_env = Some("GOOD_SECRET".into());
    });
    assert!(ok.is_none(), "{ok:?}");
}

#[tokio::test]
async fn urls_and_secrets_from_variables_are_used_for_delivery() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state: Shared = Arc::default();
    tokio::spawn(receiver(listener, state.clone()));
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("n.db")).unwrap());
    store.append_event(1_000, "order.filled", None, r#"{"n":0}"#).unwrap();
    let (json_url, slack_url) = (format!("{base}/json"), format!("{base}/slack"));
    let lookup = |var: &str| match var {
        "HOOK_URL" => Ok(json_url.clone()),
        "HOOK_SECRET" => Ok(SECRET.to_string()),
        "SLACK_URL" => Ok(slack_url.clone()),
        _ => Err(std::env::VarError::NotPresent),
    };
    let mut json = sink("json", SinkKind::Json, String::new(), &[]);
    (json.url_env, json.secret, json.secret_env) = (Some("HOOK_URL".into()), None, Some("HOOK_SECRET".into()));
    let mut slack = sink("slack", SinkKind::Slack, String::new(), &[]);
    slack.url_env = Some("SLACK_URL".into());
    let notifier = Notifier::with_env(vec![json, slack], store, reqwest::Client::new(), &lookup).unwrap();
    drive(&notifier, 2, 1_000, 1_000).await;
    let s = state.lock().unwrap();
    assert_eq!(s.got.get("json").map(Vec::len), Some(1), "signed with the secret from the variable");
    assert_eq!(s.got.get("slack").map(Vec::len), Some(1));
}

#[tokio::test]
async fn chat_text_is_escaped_mentions_are_off_and_cuts_are_marked() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state: Shared = Arc::default();
    tokio::spawn(receiver(listener, state.clone()));
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("n.db")).unwrap());
    let hostile = "@everyone <!channel> <@123> a & b <https://evil.example|click>";
    let long = format!("{hostile} {}", "é🦀".repeat(3_000));
    for message in [hostile, long.as_str()] {
        let data = serde_json::json!({ "message": message }).to_string();
        store.append_event(1_000, "strategy.notify", None, &data).unwrap();
    }
    let mut sinks = Vec::new();
    for (name, kind, route) in
        [("slack", SinkKind::Slack, "slack"), ("discord", SinkKind::Discord, "discord"), ("sms", SinkKind::Twilio, "")]
    {
        let mut s = sink(name, kind, format!("{base}/{route}"), &[]);
        if kind == SinkKind::Twilio {
            s.url = base.clone();
        }
        s.templates.insert("strategy.notify".into(), "{{ data.message }}".into());
        sinks.push(s);
    }
    let notifier = Notifier::new(sinks, store, reqwest::Client::new()).unwrap();
    drive(&notifier, 2, 1_000, 1_000).await;

    let slack = received(&state, "slack");
    assert_eq!(slack.len(), 2);
    let text = slack[0]["text"].as_str().unwrap();
    assert_eq!(text, "@everyone &lt;!channel&gt; &lt;@123&gt; a &amp; b &lt;https://evil.example|click&gt;");
    assert!(!slack[1]["text"].as_str().unwrap().contains('<'));

    let discord = received(&state, "discord");
    assert_eq!(discord.len(), 2);
    for body in &discord {
        assert_eq!(body["allowed_mentions"], serde_json::json!({ "parse": [] }), "{body}");
    }
    assert_eq!(discord[0]["content"].as_str().unwrap(), hostile, "short text is sent as it is");
    let cut = discord[1]["content"].as_str().unwrap();
    assert_eq!(cut.chars().count(), 2000);
    assert!(cut.ends_with(TRUNCATED) && long.starts_with(cut.trim_end_matches(TRUNCATED)), "{cut}");

    let sms = state.lock().unwrap().got["twilio"].clone();
    assert_eq!(sms.len(), 2);
    assert!(!sms[0].contains("truncated"), "{}", sms[0]);
    assert!(sms[1].contains("truncated"), "the SMS cut is marked: {}", &sms[1][sms[1].len() - 80..]);
}
