//! The router against a fake Alpaca trading API on loopback: no order is
//! lost, none is sent twice, refusals are final.

use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use stratbox::broker::{AlpacaBroker, AlpacaCredentials, Broker, OrderStatus};
use stratbox::order::OrderIntent;
use stratbox::order::OrderRef;
use stratbox::router::{Routed, Router, RouterConfig, RouterError, client_order_id};
use stratbox::store::{OrderRecord, Store};
use stratbox::venue::VenueError;
use stratbox_tests::fake::{ALPACA_ORDER_STATUSES, FakeVenue, OrderFault};

struct Setup {
    venue: FakeVenue,
    store: Arc<Store>,
    router: Router,
    _dir: tempfile::TempDir,
}

fn config() -> RouterConfig {
    RouterConfig {
        max_attempts: 4,
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        requests_per_minute: 60_000,
    }
}

/// A broker whose requests time out after `timeout`: generous, so a slow
/// machine never times out a healthy answer, except where a test wants a hang
/// to look like a lost answer.
fn broker_with_timeout(url: &str, timeout: Duration) -> Arc<dyn Broker> {
    let client = reqwest::Client::builder().timeout(timeout).build().unwrap();
    let keys = AlpacaCredentials { key_id: "k".into(), secret_key: "s".into() };
    Arc::new(AlpacaBroker::new(client, url, keys))
}

fn broker(url: &str) -> Arc<dyn Broker> {
    broker_with_timeout(url, Duration::from_secs(30))
}

async fn setup() -> Setup {
    setup_with_timeout(Duration::from_secs(30)).await
}

async fn setup_with_timeout(timeout: Duration) -> Setup {
    let venue = FakeVenue::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("orders.db")).unwrap());
    let router = Router::new(broker_with_timeout(&venue.url, timeout), store.clone(), config());
    Setup { venue, store, router, _dir: dir }
}

fn buy(qty: i64) -> OrderIntent {
    stratbox_tests::market_buy(qty)
}

fn counts(venue: &FakeVenue) -> (usize, usize) {
    let s = venue.state.lock().unwrap();
    (s.order_posts, s.orders.len())
}

#[tokio::test]
async fn an_accepted_order_is_recorded_and_never_sent_again() {
    let t = setup().await;
    let routed = t.router.submit("sma@alpaca", OrderRef::new(1, 1), &buy(10), 1000).await.unwrap();
    let Routed::Accepted { order, .. } = routed else { panic!("{routed:?}") };
    assert_eq!(
        (order.status, order.qty, order.client_order_id.as_str()),
        (OrderStatus::Accepted, Decimal::from(10), client_order_id("sma@alpaca", OrderRef::new(1, 1)).as_str())
    );
    let record = t.store.order(&order.client_order_id).unwrap().unwrap();
    assert_eq!((record.status, record.venue_order_id.as_deref()), (OrderStatus::Accepted, Some("ord-1")));

    // The same intent again (a retry, a restart): nothing is sent.
    let again = t.router.submit("sma@alpaca", OrderRef::new(1, 1), &buy(10), 2000).await.unwrap();
    assert!(matches!(again, Routed::AlreadyRouted { .. }), "{again:?}");
    assert_eq!(counts(&t.venue), (1, 1));
}

#[tokio::test]
async fn a_lost_answer_is_settled_by_lookup_not_by_resending() {
    // The hang outlasts any client timeout; only that case gets a short one.
    for fault in
        [OrderFault::AcceptThen500, OrderFault::AcceptThenDrop, OrderFault::AcceptThenHang(Duration::from_secs(600))]
    {
        let hangs = matches!(fault, OrderFault::AcceptThenHang(_));
        let t = setup_with_timeout(if hangs { Duration::from_secs(2) } else { Duration::from_secs(30) }).await;
        t.venue.fail_next_order(fault.clone());
        let routed = t.router.submit("sma@alpaca", OrderRef::new(1, 7), &buy(3), 1000).await.unwrap();
        assert!(
            matches!(&routed, Routed::Accepted { order, .. } if order.venue_order_id == "ord-1"),
            "{fault:?}: {routed:?}"
        );
        assert_eq!(counts(&t.venue), (1, 1), "{fault:?}: one POST, one order");
        let lookups = t.venue.requests().iter().filter(|r| r.contains("by_client_order_id")).count();
        assert!(lookups >= 1, "{fault:?}: the router asked the venue before deciding");
        assert_eq!(
            t.store.order(&client_order_id("sma@alpaca", OrderRef::new(1, 7))).unwrap().unwrap().status,
            OrderStatus::Accepted
        );
    }
}

#[tokio::test]
async fn an_order_the_venue_never_took_is_sent_again_once() {
    let t = setup().await;
    t.venue.fail_next_order(OrderFault::Status { code: 503, retry_after: None });
    let routed = t.router.submit("sma@alpaca", OrderRef::new(1, 1), &buy(1), 1000).await.unwrap();
    assert!(matches!(routed, Routed::Accepted { .. }));
    assert_eq!(counts(&t.venue), (2, 1), "looked up, found nothing, resent once");
}

#[tokio::test]
async fn throttling_waits_for_retry_after() {
    let t = setup().await;
    t.venue.fail_next_order(OrderFault::Status { code: 429, retry_after: Some(1) });
    let start = std::time::Instant::now();
    let routed = t.router.submit("sma@alpaca", OrderRef::new(1, 1), &buy(1), 1000).await.unwrap();
    assert!(matches!(routed, Routed::Accepted { .. }));
    assert!(start.elapsed() >= Duration::from_millis(950), "Retry-After was honoured");
    assert_eq!(counts(&t.venue), (2, 1));
}

#[tokio::test]
async fn a_refusal_is_final_and_journaled() {
    let t = setup().await;
    t.venue.fail_next_order(OrderFault::Refuse {
        status: 403,
        code: 40310000,
        message: "insufficient buying power".into(),
    });
    let routed = t.router.submit("sma@alpaca", OrderRef::new(1, 2), &buy(1_000_000), 1000).await.unwrap();
    let Routed::Rejected { reason, client_order_id: coid } = routed else { panic!("{routed:?}") };
    assert_eq!(reason, "insufficient buying power");
    assert_eq!(counts(&t.venue), (1, 0), "never retried");
    assert_eq!(t.store.order(&coid).unwrap().unwrap().status, OrderStatus::Rejected);
    let journal = t.store.events_after(0, 10).unwrap();
    assert!(journal.iter().any(|e| e.kind == "order.rejected" && e.data.contains("insufficient buying power")));
}

#[tokio::test]
async fn after_a_crash_a_pending_order_is_looked_up_before_sending() {
    // The previous run persisted the order and sent it, then died.
    let t = setup().await;
    let pending =
        OrderRecord::for_intent("alpaca", "sma@alpaca", OrderRef::new(1, 5), &buy(2), OrderStatus::Pending, 1);
    assert_eq!(pending.client_order_id, client_order_id("sma@alpaca", OrderRef::new(1, 5)));
    assert!(t.store.insert_order(&pending).unwrap());
    t.router.submit("sma@alpaca", OrderRef::new(1, 5), &buy(2), 1000).await.unwrap();
    assert_eq!(counts(&t.venue), (1, 1), "not at the venue yet: sent once");

    // Same again, but this time the venue already has it.
    let coid2 = client_order_id("sma@alpaca", OrderRef::new(1, 6));
    assert!(
        t.store
            .insert_order(&OrderRecord { client_order_id: coid2.clone(), intent: OrderRef::new(1, 6), ..pending })
            .unwrap()
    );
    {
        let mut s = t.venue.state.lock().unwrap();
        s.orders.push(
            serde_json::json!({"id": "ord-x", "client_order_id": coid2, "symbol": "AAPL", "qty": "2", "filled_qty": "2",
            "filled_avg_price": "180.5", "side": "buy", "status": "filled"}),
        );
    }
    let routed = t.router.submit("sma@alpaca", OrderRef::new(1, 6), &buy(2), 1000).await.unwrap();
    assert!(matches!(&routed, Routed::Accepted { order, .. } if order.status == OrderStatus::Filled), "{routed:?}");
    assert_eq!(counts(&t.venue), (1, 2), "no second POST");
    let record = t.store.order(&coid2).unwrap().unwrap();
    assert_eq!(record.status, OrderStatus::Accepted, "the sync sets the final state");
    assert_eq!(record.filled_qty, Decimal::from(2), "what the answer reported filled is recorded at once");
    let Routed::Accepted { fill: Some(fill), .. } = &routed else { panic!("{routed:?}") };
    assert_eq!((fill.qty, fill.price, fill.fill_id.as_str()), (Decimal::from(2), "180.5".parse().unwrap(), "ord-x@2"));
}

#[tokio::test]
async fn an_unreachable_venue_gives_up_without_losing_the_order() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("orders.db")).unwrap());
    let router = Router::new(broker(&url), store.clone(), config());
    let err = router.submit("sma@alpaca", OrderRef::new(1, 1), &buy(1), 1000).await.unwrap_err();
    assert!(matches!(err, RouterError::GaveUp { attempts: 4, .. }), "{err}");
    let record = store.order(&client_order_id("sma@alpaca", OrderRef::new(1, 1))).unwrap().unwrap();
    assert_eq!(record.status, OrderStatus::Pending, "never reached the venue, kept for the next attempt");
}

#[tokio::test]
async fn the_broker_reads_positions_account_and_cancels() {
    let t = setup().await;
    {
        let mut s = t.venue.state.lock().unwrap();
        s.cash = "1234.56".into();
        s.positions = vec![
            serde_json::json!({"symbol": "AAPL", "qty": "5", "avg_entry_price": "180.25", "side": "long"}),
            serde_json::json!({"symbol": "TSLA", "qty": "2", "avg_entry_price": "200", "side": "short"}),
        ];
    }
    let broker = broker(&t.venue.url);
    let positions = broker.positions().await.unwrap();
    assert_eq!(positions[1].qty, Decimal::from(-2), "short positions are negative");
    assert_eq!(broker.account().await.unwrap().cash, "1234.56".parse::<Decimal>().unwrap());
    let Routed::Accepted { order, .. } = t.router.submit("s", OrderRef::new(1, 1), &buy(1), 1).await.unwrap() else {
        panic!()
    };
    assert_eq!(broker.open_orders().await.unwrap().len(), 1);
    broker.cancel("AAPL", &order.venue_order_id).await.unwrap();
    assert!(broker.open_orders().await.unwrap().is_empty());
    assert!(broker.cancel("AAPL", "nope").await.is_err());
}

#[tokio::test]
async fn every_alpaca_order_status_maps_to_what_it_means() {
    use OrderStatus::*;
    let t = setup().await;
    let broker = broker(&t.venue.url);
    let coid = client_order_id("s", OrderRef::new(1, 1));
    t.router.submit("s", OrderRef::new(1, 1), &buy(10), 1).await.unwrap();
    // (status, with nothing filled, with 4 of 10 filled)
    let expected = [
        ("new", Accepted, PartiallyFilled),
        ("partially_filled", PartiallyFilled, PartiallyFilled),
        ("filled", Filled, Filled),
        ("done_for_day", Accepted, PartiallyFilled),
        ("canceled", Canceled, Canceled),
        ("expired", Expired, Expired),
        ("replaced", Canceled, Canceled),
        ("pending_cancel", Accepted, PartiallyFilled),
        ("pending_replace", Accepted, PartiallyFilled),
        ("accepted", Accepted, PartiallyFilled),
        ("pending_new", Accepted, PartiallyFilled),
        ("accepted_for_bidding", Accepted, PartiallyFilled),
        ("stopped", Accepted, PartiallyFilled),
        ("rejected", Rejected, Rejected),
        ("suspended", Accepted, PartiallyFilled),
        ("calculated", Accepted, PartiallyFilled),
    ];
    assert_eq!(expected.map(|e| e.0), ALPACA_ORDER_STATUSES, "every status in the spec is covered");
    for (status, unfilled, part) in expected {
        for (filled, price, want) in [("0", None, unfilled), ("4", Some("180.5"), part)] {
            t.venue.set_alpaca_status(&coid, status, filled, price);
            let order = broker.order_by_client_id("AAPL", &coid).await.unwrap().unwrap();
            assert_eq!(order.status, want, "{status} with {filled} filled");
        }
    }
    t.venue.set_alpaca_status(&coid, "calculated", "10", Some("180.5"));
    assert_eq!(broker.order_by_client_id("AAPL", &coid).await.unwrap().unwrap().status, Filled);
    // The fake lists an order as open exactly when we read it as open.
    t.venue.set_alpaca_status(&coid, "done_for_day", "4", Some("180.5"));
    assert_eq!(broker.open_orders().await.unwrap().len(), 1, "done_for_day resumes the next day");
    t.venue.set_alpaca_status(&coid, "replaced", "0", None);
    assert!(broker.open_orders().await.unwrap().is_empty(), "replaced is final");
    let found = broker.order_by_venue_id("AAPL", "ord-1").await.unwrap().unwrap();
    assert_eq!((found.client_order_id, found.status), (coid, Canceled));
    assert!(broker.order_by_venue_id("AAPL", "nope").await.unwrap().is_none());
}

#[tokio::test]
async fn an_order_answer_carries_its_fills_and_bad_keys_are_unauthorized() {
    let t = setup().await;
    t.venue.state.lock().unwrap().auto_fill = Some("181.25".into());
    let broker = broker(&t.venue.url);
    let order = stratbox::broker::OrderRequest {
        client_order_id: "c1".into(),
        symbol: "AAPL".into(),
        side: stratbox::order::Side::Buy,
        qty: Decimal::from(3),
        order_type: stratbox::order::OrderType::Market,
        time_in_force: stratbox::order::TimeInForce::Day,
    };
    let placed = broker.submit(&order).await.unwrap();
    assert_eq!((placed.filled_qty, placed.filled_avg_price), (Decimal::from(3), Some("181.25".parse().unwrap())));
    t.venue.fail_next_order(OrderFault::Refuse { status: 401, code: 40110000, message: "not authorized".into() });
    let err =
        broker.submit(&stratbox::broker::OrderRequest { client_order_id: "c2".into(), ..order }).await.unwrap_err();
    assert!(matches!(&err, VenueError::Unauthorized { venue: "alpaca", status: 401, .. }), "{err}");
}

/// Stop and stop-limit orders reach Alpaca with their prices as strings,
/// rounded as limit prices are; the fake, like the API, refuses a stop
/// without its `stop_price`.
#[tokio::test]
async fn stop_orders_reach_alpaca_with_their_prices_as_strings() {
    use stratbox::order::{OrderType, Side};
    let t = setup().await;
    let d = |s: &str| s.parse::<Decimal>().unwrap();
    let stop = OrderIntent { side: Side::Sell, order_type: OrderType::Stop { stop: d("181.504") }, ..buy(2) };
    let stop_limit =
        OrderIntent { order_type: OrderType::StopLimit { stop: d("0.95123"), limit: d("0.98767") }, ..buy(1) };
    for (n, intent) in [(1, stop), (2, stop_limit)] {
        let routed = t.router.submit("sma@alpaca", OrderRef::new(1, n), &intent, 1000).await.unwrap();
        assert!(matches!(routed, Routed::Accepted { .. }), "{routed:?}");
    }
    let orders = t.venue.state.lock().unwrap().orders.clone();
    let wire = |o: &serde_json::Value| {
        (o["type"].clone(), o["side"].clone(), o["stop_price"].clone(), o["limit_price"].clone())
    };
    assert_eq!(wire(&orders[0]), ("stop".into(), "sell".into(), "181.50".into(), serde_json::Value::Null));
    assert_eq!(wire(&orders[1]), ("stop_limit".into(), "buy".into(), "0.9512".into(), "0.9877".into()));
    let stored = t.store.order(&client_order_id("sma@alpaca", OrderRef::new(1, 2))).unwrap().unwrap();
    assert_eq!(stored.order_type, OrderType::StopLimit { stop: d("0.95123"), limit: d("0.98767") }, "kept as decided");

    // The fake's own checks: a stop needs its stop price, as a string; a
    // market order takes none.
    let client = reqwest::Client::new();
    for (body, refusal) in [
        (r#"{"symbol": "AAPL", "qty": "1", "side": "buy", "type": "stop", "time_in_force": "day"}"#, "stop_price"),
        (
            r#"{"symbol": "AAPL", "qty": "1", "side": "buy", "type": "stop", "time_in_force": "day", "stop_price": 5}"#,
            "stop_price",
        ),
        (
            r#"{"symbol": "AAPL", "qty": "1", "side": "buy", "type": "stop_limit", "time_in_force": "day", "stop_price": "5"}"#,
            "limit_price",
        ),
        (
            r#"{"symbol": "AAPL", "qty": "1", "side": "buy", "type": "market", "time_in_force": "day", "stop_price": "5"}"#,
            "stop_price",
        ),
    ] {
        let answer = client
            .post(format!("{}/v2/orders", t.venue.url))
            .header("content-type", "application/json")
            .header("APCA-API-KEY-ID", "k")
            .header("APCA-API-SECRET-KEY", "s")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 422, "{body}");
        assert!(answer.text().await.unwrap().contains(refusal), "{body}");
    }
    assert_eq!(counts(&t.venue), (6, 2), "every POST counted, only the two valid ones kept");
}
