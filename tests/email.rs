//! Email notifications against a real SMTP server (aiosmtpd) on loopback:
//! STARTTLS with a login, retries on 4XX replies, drops on 5XX, and no
//! plain-text fallback when TLS is required.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use stratbox::notify::{Notifier, SinkConfig, SinkKind, SmtpTls};
use stratbox::store::Store;
use stratbox_tests::PATIENCE;
use stratbox_tests::smtp::{SmtpOptions, SmtpServer};

/// The password the sinks read: cargo sets this variable for every test run.
const PASSWORD_ENV: &str = "CARGO_PKG_NAME";

fn email_sink(name: &str, server: &SmtpServer, tls: SmtpTls, to: &str) -> SinkConfig {
    SinkConfig {
        name: name.into(),
        kind: SinkKind::Email,
        url: format!("smtp://127.0.0.1:{}", server.port),
        url_env: None,
        events: Vec::new(),
        templates: Default::default(),
        secret: None,
        secret_env: None,
        account_sid: None,
        auth_token_env: None,
        from: Some("stratbox <alerts@example.test>".into()),
        to: Some(to.into()),
        subject: None,
        tls,
        username: None,
        password_env: None,
        ca_file: server.ca_file.as_ref().map(|p| p.display().to_string()),
    }
}

/// Pumps and delivers with a clock stepping a minute a round.
async fn drive(notifier: &Notifier, rounds: i64) {
    for round in 0..rounds {
        notifier.pump().unwrap();
        notifier.deliver_due(1_000 + round * 60_000).await.unwrap();
    }
}

fn store_with(events: &[(&str, &str)]) -> (tempfile::TempDir, Arc<Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("n.db")).unwrap());
    for (kind, data) in events {
        store.append_event(1_000, kind, Some("alpaca"), data).unwrap();
    }
    (dir, store)
}

#[tokio::test]
async fn mail_goes_out_over_starttls_with_a_login_and_survives_a_transient_refusal() {
    let password = std::env::var(PASSWORD_ENV).unwrap();
    let server = SmtpServer::start(SmtpOptions {
        starttls: true,
        require_tls: true,
        login: Some(("stratbox".into(), password)),
        faults: vec!["451 4.3.0 Try again later".into()],
    })
    .unwrap();
    let (_dir, store) = store_with(&[
        ("order.filled", r#"{"symbol":"AAPL","qty":"10","price":"187.25"}"#),
        ("risk.halted", r#"{"drift":"7"}"#),
    ]);
    let mut sink = email_sink("mail", &server, SmtpTls::Required, "ops@example.test, Desk <desk@example.test>");
    sink.username = Some("stratbox".into());
    sink.password_env = Some(PASSWORD_ENV.into());
    sink.subject = Some("[{{ kind }}] {{ data.symbol | default('stratbox') }}".into());
    sink.templates.insert("order.filled".into(), "Filled {{ data.qty }} {{ data.symbol }} at {{ data.price }}".into());
    let client = reqwest::Client::new();
    let mut notifier = Notifier::new(vec![sink], store, client).unwrap();
    notifier.base_backoff = Duration::from_millis(100);
    drive(&notifier, 4).await;

    let got = server.received(2, PATIENCE);
    assert_eq!(got.len(), 2, "both events, once each, the first after a 451: {got:?}");
    assert_eq!(notifier.sent.load(Ordering::Relaxed), 2);
    for message in &got {
        assert_eq!(message["tls"], true, "sent only after STARTTLS: {message}");
        assert_eq!(message["login"], "stratbox");
        assert_eq!(message["from"], "alerts@example.test");
        assert_eq!(message["to"], serde_json::json!(["ops@example.test", "desk@example.test"]));
    }
    let filled = got.iter().find(|m| m["data"].as_str().unwrap().contains("Subject: [order.filled] AAPL"));
    let filled = filled.unwrap_or_else(|| panic!("the subject template was used: {got:?}"));
    assert!(filled["data"].as_str().unwrap().contains("Filled 10 AAPL at 187.25"), "{filled}");
    let halted = got.iter().find(|m| m["data"].as_str().unwrap().contains("Subject: [risk.halted] stratbox"));
    assert!(halted.is_some(), "{got:?}");
    drop(server);
    drive(&notifier, 2).await;
    assert_eq!(notifier.sent.load(Ordering::Relaxed), 2, "nothing is sent twice");
}

#[tokio::test]
async fn required_tls_never_falls_back_to_plain_text_and_a_permanent_refusal_is_dropped() {
    let server =
        SmtpServer::start(SmtpOptions { faults: vec!["550 5.7.1 Relaying denied".into()], ..SmtpOptions::default() })
            .unwrap();
    let (_dir, store) = store_with(&[("order.filled", r#"{"n":1}"#), ("order.filled", r#"{"n":2}"#)]);
    let sinks = vec![
        email_sink("strict", &server, SmtpTls::Required, "strict@example.test"),
        email_sink("relay", &server, SmtpTls::Opportunistic, "relay@example.test"),
    ];
    let mut notifier = Notifier::new(sinks, store.clone(), reqwest::Client::new()).unwrap();
    notifier.base_backoff = Duration::from_millis(100);
    drive(&notifier, 3).await;

    let mut got = server.received(1, PATIENCE);
    // Every delivery has ended, and the server logs a message before it
    // accepts it: anything more would already be on its way. A fixed wait is
    // the only way to show that nothing more comes; a slow machine can only
    // make this check miss an extra message, never fail a good run.
    got.extend(server.received(1, Duration::from_secs(1)));
    assert_eq!(got.len(), 1, "one 550 dropped, one delivered, none to the strict sink: {got:?}");
    assert_eq!(got[0]["to"], serde_json::json!(["relay@example.test"]));
    assert_eq!(got[0]["tls"], false, "the server offers no STARTTLS");
    assert_eq!(notifier.dropped.load(Ordering::Relaxed), 1);
    let waiting = store.due_notifications(i64::MAX / 2, 100).unwrap();
    assert_eq!(waiting.iter().filter(|n| n.sink == "strict").count(), 2, "kept for a server that offers TLS");
    assert!(waiting.iter().all(|n| n.sink == "strict"), "{waiting:?}");
}

#[tokio::test]
async fn a_sink_that_can_never_log_in_stops_the_start() {
    let server = SmtpServer::start(SmtpOptions::default()).unwrap();
    let (_dir, store) = store_with(&[]);
    let mut sink = email_sink("mail", &server, SmtpTls::Required, "ops@example.test");
    sink.username = Some("stratbox".into());
    sink.password_env = Some("STRATBOX_TEST_UNSET_SMTP_PASSWORD".into());
    let error = Notifier::new(vec![sink.clone()], store.clone(), reqwest::Client::new()).err().unwrap();
    assert!(error.to_string().contains("STRATBOX_TEST_UNSET_SMTP_PASSWORD"), "{error}");
    assert!(
        matches!(&error, stratbox::notify::NotifyError::Env { source: std::env::VarError::NotPresent, .. }),
        "the cause is kept: {error:?}"
    );

    sink.password_env = Some(PASSWORD_ENV.into());
    sink.ca_file = Some("/nonexistent/ca.pem".into());
    let error = Notifier::new(vec![sink], store, reqwest::Client::new()).err().unwrap();
    assert!(error.to_string().contains("ca_file"), "{error}");
}
