//! Webhooks into a host running in-process on paper: a Standard Webhooks
//! order route places market, limit, stop and stop-limit orders once each,
//! and a signal for two strategies reaches each of them once.

use std::time::Duration;

use stratbox::config::{Config, EMBEDDED_DEFAULT};
use stratbox::engine::{RunOptions, run_host};
use stratbox::webhook::Secret;
use stratbox_tests::MISBEHAVE_WASM;
use stratbox_tests::output::Captured;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

async fn post_signed(url: &str, id: &str, body: &str) -> u16 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let signature = Secret::parse(SECRET).unwrap().sign(id, now, body.as_bytes());
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", signature)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_orders_and_signals_reach_their_strategies_once() {
    let dir = tempfile::tempdir().unwrap();
    let strategies = format!(
        "name = \"bot\"\nplugin = {MISBEHAVE_WASM:?}\nparams = {{ mode = \"quiet\" }}\n\n[[strategy]]\nname = \"bot2\"\nplugin = {MISBEHAVE_WASM:?}\nparams = {{ mode = \"quiet\" }}"
    );
    let text = EMBEDDED_DEFAULT
        .replace("name = \"sma\"\nplugin = \"sma-crossover\"\nparams = { fast = 5, slow = 20, qty = 10 }", &strategies)
        + &format!(
            "\n[store]\npath = {:?}\n\n[[webhook]]\nname = \"orders\"\nkind = \"standard\"\naction = \"order\"\nstrategies = [\"bot\"]\nsecrets = [{SECRET:?}]\n\n[[webhook]]\nname = \"news\"\nkind = \"standard\"\naction = \"signal\"\nstrategies = [\"bot\", \"bot2\"]\nsecrets = [{SECRET:?}]\n",
            dir.path().join("host.db").display().to_string()
        );
    let config = Config::parse(&text, "test.toml").unwrap();
    let out = Captured::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let probe = {
        let out = out.clone();
        async move {
            let addr = out.listen_addr().await;
            let (orders, news) = (format!("http://{addr}/webhooks/orders"), format!("http://{addr}/webhooks/news"));
            let mut statuses = Vec::new();
            for _ in 0..3 {
                statuses
                    .push(post_signed(&orders, "msg_market", r#"{"symbol": "AAPL", "side": "buy", "qty": "3"}"#).await);
            }
            let limit = r#"{"symbol": "AAPL", "side": "buy", "qty": 1, "type": "limit", "limit_price": "1"}"#;
            statuses.push(post_signed(&orders, "msg_limit", limit).await);
            // Stops far from the market: placed, never triggered.
            let stop_order = r#"{"symbol": "AAPL", "side": "sell", "qty": 1, "type": "stop", "stop_price": "1.25"}"#;
            statuses.push(post_signed(&orders, "msg_stop", stop_order).await);
            let stop_limit = r#"{"symbol": "AAPL", "side": "buy", "qty": 1, "type": "stop_limit", "stop_price": 99999, "limit_price": "100000"}"#;
            statuses.push(post_signed(&orders, "msg_stop_limit", stop_limit).await);
            statuses.push(post_signed(&news, "msg_news", r#"{"headline": "hello"}"#).await);
            statuses.push(post_signed(&news, "msg_news", r#"{"headline": "hello"}"#).await);
            out.wait_for("limit 1").await;
            out.wait_for("stop_limit 99999/100000").await;
            out.wait_for("stop 1.25").await;
            out.wait_for("[bot2]").await;
            // Let a few more bars pass so the market order fills at the next open.
            tokio::time::sleep(Duration::from_millis(400)).await;
            stop.send(()).unwrap();
            statuses
        }
    };
    let options = RunOptions { listen: Some("127.0.0.1:0".parse().unwrap()), pace_ms: Some(5), exit_when_done: false };
    let (reports, statuses) =
        tokio::join!(run_host(config, options, async { stopped.await.unwrap() }, out.clone()), probe);
    assert_eq!(statuses, [202, 200, 200, 202, 202, 202, 202, 200]);
    let reports = reports.unwrap();
    let bot = reports.iter().find(|r| r.fills.iter().any(|f| f.qty == 3.into())).expect("the market order filled");
    assert_eq!(bot.fills.len(), 1, "one fill: the limit order at 1 and the stops never fill");
    let text = out.text();
    for strategy in ["bot", "bot2"] {
        let heard = text.lines().filter(|l| l.starts_with(&format!("[{strategy}]")) && l.contains("hello")).count();
        assert_eq!(heard, 1, "{strategy} heard the signal once:\n{text}");
    }
    assert_eq!(text.matches("limit 1").count(), 1, "{text}");
    assert_eq!(text.matches("stop 1.25").count(), 1, "{text}");
    assert_eq!(text.matches("stop_limit 99999/100000").count(), 1, "{text}");
}
