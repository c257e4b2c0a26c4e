//! Kalshi trading against a fake that verifies each RSA-PSS signature.

use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::json;
use stratbox::broker::OrderRequest;
use stratbox::broker::{Broker, KalshiBroker, KalshiCredentials, OrderStatus};
use stratbox::order::{OrderIntent, OrderRef, OrderType, Side, TimeInForce};
use stratbox::router::{Routed, Router, RouterConfig};
use stratbox::store::Store;
use stratbox::venue::VenueError;
use stratbox_tests::fake::{FakeVenue, KALSHI_FILL_CENTS, OrderFault};

fn keys() -> (KalshiCredentials, rsa::RsaPublicKey) {
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let public = key.to_public_key();
    (KalshiCredentials::from_key("fake-key-id".into(), key), public)
}

fn kalshi(url: &str, credentials: KalshiCredentials) -> KalshiBroker {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    KalshiBroker::new(client, url, credentials)
}

fn broker(url: &str, credentials: KalshiCredentials) -> Arc<dyn Broker> {
    Arc::new(kalshi(url, credentials))
}

/// A fake Kalshi that trusts the returned credentials.
async fn venue_and_keys() -> (FakeVenue, KalshiCredentials) {
    let venue = FakeVenue::start().await;
    let (credentials, public) = keys();
    venue.state.lock().unwrap().kalshi_public_key = Some(public);
    (venue, credentials)
}

fn request(id: &str, qty: i64, order_type: OrderType) -> OrderRequest {
    OrderRequest {
        client_order_id: id.into(),
        symbol: "KXHIGHNY-24JAN01-T60".into(),
        side: Side::Buy,
        qty: Decimal::from(qty),
        order_type,
        time_in_force: TimeInForce::Gtc,
    }
}

fn intent(qty: &str, order_type: OrderType) -> OrderIntent {
    OrderIntent {
        symbol: "KXHIGHNY-24JAN01-T60".into(),
        side: Side::Buy,
        qty: qty.parse().unwrap(),
        order_type,
        time_in_force: TimeInForce::Gtc,
    }
}

#[tokio::test]
async fn signed_orders_are_accepted_and_a_lost_answer_is_found() {
    let venue = FakeVenue::start().await;
    let (credentials, public) = keys();
    venue.state.lock().unwrap().kalshi_public_key = Some(public);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("k.db")).unwrap());
    let config = RouterConfig { base_backoff: Duration::from_millis(5), ..RouterConfig::default() };
    let router = Router::new(broker(&venue.url, credentials), store, config);

    let limit = router
        .submit("wx@kalshi", OrderRef::new(1, 1), &intent("3", OrderType::Limit { price: "0.456".parse().unwrap() }), 1)
        .await
        .unwrap();
    let Routed::Accepted { order, .. } = limit else { panic!("{limit:?}") };
    assert_eq!((order.status, order.qty), (OrderStatus::Accepted, Decimal::from(3)));
    assert_eq!(venue.state.lock().unwrap().kalshi_orders[0]["yes_price"], 46, "dollars become cents");

    venue.fail_next_order(OrderFault::AcceptThen500);
    let market = router.submit("wx@kalshi", OrderRef::new(1, 2), &intent("2", OrderType::Market), 2).await.unwrap();
    assert!(matches!(&market, Routed::Accepted { order, .. } if order.status == OrderStatus::Filled), "{market:?}");
    let s = venue.state.lock().unwrap();
    assert_eq!((s.order_posts, s.kalshi_orders.len()), (2, 2), "the lost answer was looked up, not resent");
}

#[tokio::test]
async fn a_wrong_key_is_refused_and_fractions_never_leave() {
    let venue = FakeVenue::start().await;
    let (_, public) = keys();
    let (other, _) = keys();
    venue.state.lock().unwrap().kalshi_public_key = Some(public);
    let broker = broker(&venue.url, other);
    let err = broker.account().await.unwrap_err();
    assert!(matches!(&err, VenueError::Unauthorized { status: 401, .. }), "bad credentials halt, not reject: {err}");
    let order = stratbox::broker::OrderRequest {
        client_order_id: "c".into(),
        symbol: "T".into(),
        side: Side::Buy,
        qty: "0.5".parse().unwrap(),
        order_type: OrderType::Market,
        time_in_force: TimeInForce::Gtc,
    };
    let err = broker.submit(&order).await.unwrap_err();
    assert!(err.to_string().contains("whole number of contracts"), "{err}");
    assert_eq!(venue.state.lock().unwrap().order_posts, 0, "refused before sending");
}

#[tokio::test]
async fn positions_and_balance() {
    let venue = FakeVenue::start().await;
    let (credentials, public) = keys();
    {
        let mut s = venue.state.lock().unwrap();
        s.kalshi_public_key = Some(public);
        s.kalshi_balance = 123_456;
        s.kalshi_positions = vec![
            json!({"ticker": "A", "position": 4}),
            json!({"ticker": "B", "position": -2}),
            json!({"ticker": "C", "position": 0}),
        ];
    }
    let broker = broker(&venue.url, credentials);
    let positions = broker.positions().await.unwrap();
    assert_eq!(
        positions.iter().map(|p| (p.symbol.as_str(), p.qty)).collect::<Vec<_>>(),
        vec![("A", Decimal::from(4)), ("B", Decimal::from(-2))]
    );
    assert_eq!(broker.account().await.unwrap().cash, "1234.56".parse::<Decimal>().unwrap());
}

#[tokio::test]
async fn a_market_order_is_priced_from_its_fill_cost_not_its_yes_price() {
    let (venue, credentials) = venue_and_keys().await;
    let order = broker(&venue.url, credentials).submit(&request("c1", 2, OrderType::Market)).await.unwrap();
    assert_eq!(venue.state.lock().unwrap().kalshi_orders[0]["yes_price"], 99, "the fake's cap is not the price");
    assert_eq!(order.status, OrderStatus::Filled);
    assert_eq!(order.filled_qty, Decimal::from(2), "the executed count comes from the answer");
    assert_eq!(order.filled_avg_price, Some(Decimal::new(KALSHI_FILL_CENTS, 2)), "taker_fill_cost / fill_count");
}

#[tokio::test]
async fn every_page_of_orders_and_positions_is_read() {
    let (venue, credentials) = venue_and_keys().await;
    {
        let mut s = venue.state.lock().unwrap();
        s.kalshi_page_cap = 2;
        s.kalshi_positions = (1..=5).map(|i| json!({"ticker": format!("P{i}"), "position": i})).collect();
    }
    venue.add_kalshi_resting("KXHIGHNY-24JAN01-T60", 5);
    let broker = broker(&venue.url, credentials);
    assert_eq!(broker.open_orders().await.unwrap().len(), 5);
    assert_eq!(broker.positions().await.unwrap().len(), 5);
    assert!(venue.requests().iter().any(|r| r.contains("cursor=4")), "cursors were followed");
}

#[tokio::test]
async fn a_scan_that_cannot_finish_is_an_error_not_a_miss() {
    let (venue, credentials) = venue_and_keys().await;
    venue.state.lock().unwrap().kalshi_page_cap = 1;
    venue.add_kalshi_resting("KXHIGHNY-24JAN01-T60", 4);
    let ticker = "KXHIGHNY-24JAN01-T60";
    let short = kalshi(&venue.url, credentials.clone()).with_max_pages(3);
    let err = short.order_by_client_id(ticker, "ours").await.unwrap_err();
    assert!(err.to_string().contains("gave up after 3 pages"), "{err}");
    let full = kalshi(&venue.url, credentials);
    assert!(full.order_by_client_id(ticker, "ours").await.unwrap().is_none(), "read to the end: truly absent");
    assert_eq!(full.order_by_client_id(ticker, "other-k-4").await.unwrap().unwrap().venue_order_id, "k-4");
}

#[tokio::test]
async fn an_order_is_found_by_its_venue_id_in_one_request() {
    let (venue, credentials) = venue_and_keys().await;
    venue.add_kalshi_resting("T", 3);
    let broker = broker(&venue.url, credentials);
    let before = venue.requests().len();
    let found = broker.order_by_venue_id("T", "k-2").await.unwrap().unwrap();
    assert_eq!((found.client_order_id.as_str(), found.status), ("other-k-2", OrderStatus::Accepted));
    assert_eq!(venue.requests().len(), before + 1);
    assert!(broker.order_by_venue_id("T", "k-9").await.unwrap().is_none());
}

#[tokio::test]
async fn the_venues_error_code_is_kept() {
    let (venue, credentials) = venue_and_keys().await;
    venue.fail_next_order(OrderFault::RefuseNamed {
        status: 400,
        code: "market_closed".into(),
        message: "the market is closed".into(),
    });
    let err = broker(&venue.url, credentials).submit(&request("c1", 1, OrderType::Market)).await.unwrap_err();
    assert!(
        matches!(&err, VenueError::Rejected { status: 400, code: Some(c), .. } if c.to_string() == "market_closed"),
        "{err}"
    );
    assert!(err.to_string().contains("market_closed"), "{err}");
}

/// Kalshi has no stop orders: one is refused before anything is sent, and
/// the refusal is final and names the order type.
#[tokio::test]
async fn stop_orders_are_refused_before_reaching_kalshi() {
    let (venue, credentials) = venue_and_keys().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("k.db")).unwrap());
    let config = RouterConfig { base_backoff: Duration::from_millis(5), ..RouterConfig::default() };
    let router = Router::new(broker(&venue.url, credentials.clone()), store.clone(), config);
    let stop = OrderType::Stop { stop: "0.40".parse().unwrap() };
    let routed = router.submit("wx@kalshi", OrderRef::new(1, 1), &intent("3", stop), 1).await.unwrap();
    let Routed::Rejected { reason, client_order_id } = routed else { panic!("{routed:?}") };
    assert!(reason.contains("no stop orders"), "{reason}");
    assert_eq!(store.order(&client_order_id).unwrap().unwrap().status, OrderStatus::Rejected);

    let stop_limit = OrderType::StopLimit { stop: "0.40".parse().unwrap(), limit: "0.45".parse().unwrap() };
    let err = broker(&venue.url, credentials).submit(&request("c2", 1, stop_limit)).await.unwrap_err();
    assert!(matches!(&err, VenueError::Rejected { venue: "kalshi", .. }), "{err}");
    assert!(err.to_string().contains("stop_limit"), "{err}");
    let s = venue.state.lock().unwrap();
    assert_eq!((s.order_posts, s.kalshi_orders.len()), (0, 0), "nothing reached the venue");
    assert!(!s.requests.iter().any(|r| r.starts_with("POST")), "{:?}", s.requests);
}
