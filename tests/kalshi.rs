//! Kalshi trading against a fake that verifies each RSA-PSS signature.

use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::json;
use stratbox::broker::{Broker, KalshiBroker, KalshiCredentials, OrderStatus};
use stratbox::order::{OrderIntent, OrderType, Side, TimeInForce};
use stratbox::router::{Routed, Router, RouterConfig};
use stratbox::store::Store;
use stratbox::venue::VenueError;
use stratbox_tests::fake::{FakeVenue, OrderFault};

fn keys() -> (KalshiCredentials, rsa::RsaPublicKey) {
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let public = key.to_public_key();
    (KalshiCredentials::from_key("fake-key-id".into(), key), public)
}

fn broker(url: &str, credentials: KalshiCredentials) -> Arc<dyn Broker> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    Arc::new(KalshiBroker::new(client, url, credentials))
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
        .submit("wx@kalshi", 1, &intent("3", OrderType::Limit { price: "0.456".parse().unwrap() }), 1)
        .await
        .unwrap();
    let Routed::Accepted { order } = limit else { panic!("{limit:?}") };
    assert_eq!((order.status, order.qty), (OrderStatus::Accepted, Decimal::from(3)));
    assert_eq!(venue.state.lock().unwrap().kalshi_orders[0]["yes_price"], 46, "dollars become cents");

    venue.fail_next_order(OrderFault::AcceptThen500);
    let market = router.submit("wx@kalshi", 2, &intent("2", OrderType::Market), 2).await.unwrap();
    assert!(matches!(&market, Routed::Accepted { order } if order.status == OrderStatus::Filled), "{market:?}");
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
    assert!(matches!(&err, VenueError::Rejected { status: 401, .. }), "{err}");
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
