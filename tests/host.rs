//! Host mode end to end: the embedded default config, the HTTP listener on
//! loopback, and a misbehaving strategy next to a healthy one.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use stratbox::config::{Config, EMBEDDED_DEFAULT};
use stratbox::engine::{RunOptions, run_host};
use stratbox_tests::output::{Captured, get};
use stratbox_tests::{MISBEHAVE_WASM, PATIENCE};

fn options() -> RunOptions {
    RunOptions { listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))), pace_ms: Some(0), exit_when_done: false }
}

/// Polls `/health` until `done` holds (at most [`PATIENCE`]); returns the last answer.
async fn health_when(addr: &str, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (_, health) = get(addr, "/health").await;
        if done(&health) || Instant::now() > deadline {
            return health;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_default_trades_and_serves_health() {
    let config = Config::embedded_default().unwrap();
    let out = Captured::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let probe = {
        let out = out.clone();
        async move {
            out.wait_for("still serving").await;
            let addr = out.listen_addr().await;
            // The feed has handed out every bar; the engine may still be
            // working through the last ones in its queue.
            health_when(&addr, |h| h["strategies"][0]["bars"].as_u64() >= Some(3270)).await;
            let (status, health) = get(&addr, "/health").await;
            let (missing, _) = get(&addr, "/nope").await;
            stop.send(()).unwrap();
            (status, health, missing)
        }
    };
    let host = run_host(config, options(), async { stopped.await.unwrap() }, out.clone());
    let (reports, (status, health, missing)) = tokio::join!(host, probe);
    let reports = reports.unwrap();

    assert_eq!(status, 200);
    assert_eq!(missing, 404);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["feed_done"], true);
    assert_eq!(health["strategies"][0]["name"], "sma");
    assert_eq!(health["strategies"][0]["bars"], 3270);

    let report = &reports[0];
    assert_eq!(report.bars, 3270);
    assert!(report.fills.len() > 100, "the demo trades: {} fills", report.fills.len());
    let text = out.text();
    assert!(text.contains("order #1: buy 10 AAPL"), "{text}");
    assert!(text.contains("fill  #1: buy 10 AAPL @"), "{text}");
    assert!(text.contains("pnl: realized"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_strategy_fails_alone_while_the_others_trade() {
    // The deadline applies to the SMA too: 2 s leaves its calls room on a
    // slow or busy machine and still stops the loop. The feed does not wait
    // on the stuck strategy: the SMA sees every bar at the feed's pace.
    let text = format!(
        "{EMBEDDED_DEFAULT}\n[limits]\ncall_timeout_ms = 2000\n[runtime]\nmax_restarts = 1\nrestart_backoff_ms = 1\n\n\
         [[strategy]]\nname = \"stuck\"\nplugin = {MISBEHAVE_WASM:?}\nparams = {{ mode = \"loop\" }}\n"
    );
    let config = Config::parse(&text, "test.toml").unwrap();
    let out = Captured::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let probe = {
        let out = out.clone();
        async move {
            out.wait_for("still serving").await;
            let addr = out.listen_addr().await;
            let stuck_failed = |h: &serde_json::Value| {
                h["strategies"]
                    .as_array()
                    .is_some_and(|all| all.iter().any(|s| s["name"] == "stuck" && s["state"] == "failed"))
            };
            health_when(&addr, stuck_failed).await;
            let (_, health) = get(&addr, "/health").await;
            stop.send(()).unwrap();
            health
        }
    };
    // Paced at 1 ms a bar, which the SMA keeps up with: at full speed
    // (`pace_ms = 0`) it is itself often full, and loses the batches that
    // come while the stuck one has a free slot (see the README).
    let paced = RunOptions { pace_ms: Some(1), ..options() };
    let host = run_host(config, paced, async { stopped.await.unwrap() }, out.clone());
    let (reports, health) = tokio::join!(host, probe);
    let reports = reports.unwrap();

    assert_eq!(health["status"], "degraded");
    let stuck = health["strategies"].as_array().unwrap().iter().find(|s| s["name"] == "stuck").unwrap().clone();
    assert_eq!(stuck["state"], "failed");
    assert_eq!(stuck["restarts"], 1);
    assert!(stuck["error"].as_str().unwrap().contains("deadline"), "{stuck}");
    let sma = reports.iter().find(|r| r.strategy == "sma-crossover").unwrap();
    assert_eq!(sma.bars, 3270, "the healthy strategy saw every bar");
    assert!(sma.fills.len() > 100);
    assert!(out.text().contains("strategy stopped"), "{}", out.text());
}

#[tokio::test]
async fn a_taken_port_is_a_clear_error() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let options = RunOptions { listen: Some(addr), ..options() };
    let err = run_host(Config::embedded_default().unwrap(), options, std::future::pending(), Captured::default())
        .await
        .expect_err("the port is in use");
    assert!(err.to_string().contains(&format!("cannot listen on {addr}")), "{err}");
}

/// A quarantined strategy's open orders are canceled, unless the config
/// says to leave them; `flatten` also closes its position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_strategy_s_orders_are_canceled_unless_left() {
    for (policy, canceled) in [("cancel", true), ("leave", false)] {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[feed]\nkind = \"replay\"\ndata = \"bundled:IBM\"\nsymbol = \"IBM\"\n\n\
             [runtime]\nmax_restarts = 0\non_failure = \"{policy}\"\n\n\
             [[strategy]]\nname = \"doomed\"\nplugin = {MISBEHAVE_WASM:?}\n\
             params = {{ mode = \"stop-then-trap\", at = \"952041600000\", price = 1000 }}\n"
        );
        let config = Config::parse(&text, "test.toml").unwrap();
        let out = Captured::default();
        let options = RunOptions { exit_when_done: true, ..options() };
        let reports = run_host(config, options, std::future::pending(), out.clone()).await.unwrap();
        let text = out.text();
        assert!(text.contains("order #3: buy 1 IBM (stop 1000)"), "{text}");
        assert!(text.contains("quarantined after 1 faults"), "{text}");
        assert_eq!(text.contains("canceled #3"), canceled, "{policy}: {text}");
        assert_eq!(reports[0].open_orders, u64::from(!canceled), "{policy}");
    }
    for (policy, position) in [("cancel", 1), ("flatten", 0)] {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[feed]\nkind = \"replay\"\ndata = \"bundled:IBM\"\nsymbol = \"IBM\"\n\n\
             [runtime]\nmax_restarts = 0\non_failure = \"{policy}\"\n\n\
             [[strategy]]\nname = \"doomed\"\nplugin = {MISBEHAVE_WASM:?}\n\
             params = {{ mode = \"buy-then-trap\", at = \"952041600000\" }}\n"
        );
        let config = Config::parse(&text, "test.toml").unwrap();
        let out = Captured::default();
        let options = RunOptions { exit_when_done: true, ..options() };
        let reports = run_host(config, options, std::future::pending(), out.clone()).await.unwrap();
        let text = out.text();
        assert!(text.contains("fill  #3: buy 1 IBM"), "{text}");
        assert!(text.contains("asked to trap once filled"), "{text}");
        assert_eq!(text.contains("order #w1: sell 1 IBM"), position == 0, "{policy}: {text}");
        assert_eq!(reports[0].final_position, Decimal::from(position), "{policy}: {text}");
    }
}
