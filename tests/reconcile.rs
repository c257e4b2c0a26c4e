//! Reconciliation against the fake Alpaca API: fills applied exactly once,
//! positions changed behind the host's back adopted and journaled, and a
//! halt when drift passes the threshold.

use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::json;
use stratbox::broker::{AlpacaBroker, AlpacaCredentials, Broker};
use stratbox::order::OrderIntent;
use stratbox::order::OrderRef;
use stratbox::reconcile::Reconciler;
use stratbox::risk::{RiskGate, TradingState};
use stratbox::router::{Routed, Router, RouterConfig};
use stratbox::store::Store;
use stratbox_tests::fake::FakeVenue;

fn broker(url: &str) -> Arc<dyn Broker> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    Arc::new(AlpacaBroker::new(client, url, AlpacaCredentials { key_id: "k".into(), secret_key: "s".into() }))
}

fn dec(text: &str) -> Decimal {
    text.parse().unwrap()
}

fn buy(qty: i64) -> OrderIntent {
    stratbox_tests::market_buy(qty)
}

/// Fills the venue's order `index` up to `filled` at average `avg`, and
/// moves the venue's position to match.
fn venue_fills(venue: &FakeVenue, index: usize, filled: &str, avg: &str, status: &str) {
    let mut s = venue.state.lock().unwrap();
    let order = &mut s.orders[index];
    order["filled_qty"] = json!(filled);
    order["filled_avg_price"] = json!(avg);
    order["status"] = json!(status);
    s.positions = vec![json!({"symbol": "AAPL", "qty": filled, "avg_entry_price": avg, "side": "long"})];
}

#[tokio::test]
async fn fills_are_applied_once_however_often_they_are_seen() {
    let venue = FakeVenue::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("host.db");
    let store = Arc::new(Store::open(&path).unwrap());
    let router = Router::new(broker(&venue.url), store.clone(), RouterConfig::default());
    let Routed::Accepted { order, .. } =
        router.submit("sma@alpaca", OrderRef::new(1, 1), &buy(3), 1_000).await.unwrap()
    else {
        panic!()
    };

    let reconciler = Reconciler::new(broker(&venue.url), store.clone(), RiskGate::default(), Decimal::ONE);
    venue_fills(&venue, 0, "1", "100", "partially_filled");
    let first = reconciler.sync(2_000).await.unwrap();
    assert_eq!(first.fills.len(), 1);
    assert_eq!((first.fills[0].qty, first.fills[0].price), (dec("1"), dec("100")));
    assert!(first.corrections.is_empty(), "the fill explains the venue's position");
    assert_eq!(first.cash, dec("100000"), "cash is read from the account");

    // Seen again: nothing new.
    assert!(reconciler.sync(3_000).await.unwrap().fills.is_empty());

    // The rest fills; the average implies the second slice's price.
    venue_fills(&venue, 0, "3", "101", "filled");
    let second = reconciler.sync(4_000).await.unwrap();
    assert_eq!((second.fills[0].qty, second.fills[0].price), (dec("2"), dec("101.5")));
    let record = store.order(&order.client_order_id).unwrap().unwrap();
    assert_eq!((record.status.as_str(), record.filled_qty), ("filled", dec("3")));
    let position = &store.positions("alpaca").unwrap()[0];
    assert_eq!((position.qty, position.avg_price), (dec("3"), dec("101")));

    // A restart (a new store handle on the same file) changes nothing.
    drop(reconciler);
    let reopened = Arc::new(Store::open(&path).unwrap());
    let after_restart = Reconciler::new(broker(&venue.url), reopened.clone(), RiskGate::default(), Decimal::ONE);
    let report = after_restart.sync(5_000).await.unwrap();
    assert!(report.fills.is_empty() && report.corrections.is_empty(), "{report:?}");
    assert_eq!(reopened.filled(&order.client_order_id).unwrap(), (dec("3"), dec("303")));
}

#[tokio::test]
async fn a_position_changed_behind_the_hosts_back_is_adopted_and_halts_past_the_threshold() {
    let venue = FakeVenue::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("host.db")).unwrap());
    let gate = RiskGate::persistent(store.clone(), &["alpaca"]).unwrap();
    let reconciler = Reconciler::new(broker(&venue.url), store.clone(), gate.clone(), dec("5"));

    // Someone bought 3 MSFT by hand: within the threshold.
    venue.state.lock().unwrap().positions =
        vec![json!({"symbol": "MSFT", "qty": "3", "avg_entry_price": "400", "side": "long"})];
    let report = reconciler.sync(1_000).await.unwrap();
    assert_eq!(report.drift, dec("3"));
    assert!(!report.halted);
    assert_eq!(gate.state("alpaca"), TradingState::Active);
    assert_eq!(store.positions("alpaca").unwrap()[0].qty, dec("3"));

    // Then 10 more, and a foreign open order appears: past the threshold.
    {
        let mut s = venue.state.lock().unwrap();
        s.positions = vec![json!({"symbol": "MSFT", "qty": "13", "avg_entry_price": "401", "side": "long"})];
        s.orders.push(
            json!({"id": "manual-1", "client_order_id": "by-hand", "symbol": "MSFT", "qty": "1", "filled_qty": "0",
            "filled_avg_price": null, "side": "sell", "status": "new"}),
        );
    }
    let report = reconciler.sync(2_000).await.unwrap();
    assert_eq!((report.drift, report.halted), (dec("10"), true));
    assert_eq!(report.foreign_orders, vec!["by-hand".to_string()]);
    assert_eq!(gate.state("alpaca"), TradingState::Halted);
    let kinds: Vec<String> = store.events_after(0, 100).unwrap().into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec!["position.corrected", "order.foreign", "position.corrected", "risk.halted"]);
    assert!(gate.check("alpaca", Decimal::ZERO, Decimal::ONE).is_err(), "new orders are refused");
}

/// However long the venue was unreachable, an order whose fate is unknown
/// is never expired: the sync finds the venue lacks it, and the router sends
/// it, once.
#[tokio::test]
async fn an_order_the_venue_never_received_is_sent_again_never_expired() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let venue = FakeVenue::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("host.db")).unwrap());
    let config = RouterConfig { max_attempts: 2, base_backoff: Duration::from_millis(5), ..RouterConfig::default() };
    let router = Router::new(broker(&dead), store.clone(), config.clone());
    assert!(router.submit("sma@alpaca", OrderRef::new(1, 1), &buy(1), 1_000).await.is_err());

    let reconciler = Reconciler::new(broker(&venue.url), store.clone(), RiskGate::default(), Decimal::ONE);
    reconciler.sync(2_000).await.unwrap();
    // An hour later, the venue still lacks it.
    let report = reconciler.sync(3_600_000).await.unwrap();
    assert_eq!(report.unresolved.len(), 1);
    assert_eq!(store.open_orders("alpaca").unwrap().len(), 1, "never given up on");
    assert!(!store.events_after(0, 10).unwrap().iter().any(|e| e.kind == "order.lost"));

    let router = Router::new(broker(&venue.url), store.clone(), config);
    let routed = router.route(report.unresolved[0].clone(), 3_600_001).await.unwrap();
    assert!(matches!(routed, Routed::Accepted { .. }), "{routed:?}");
    let s = venue.state.lock().unwrap();
    assert_eq!((s.order_posts, s.orders.len()), (1, 1), "sent once");
}
