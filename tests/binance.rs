//! Binance spot trading against a fake that checks every signature.

use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use stratbox::broker::{BinanceBroker, BinanceCredentials, Broker, OrderStatus};
use stratbox::order::{OrderIntent, OrderType, Side, TimeInForce};
use stratbox::router::{Routed, Router, RouterConfig};
use stratbox::store::Store;
use stratbox::venue::VenueError;
use stratbox_tests::fake::{BINANCE_SECRET, FakeVenue, OrderFault};

fn broker(url: &str, secret: &str) -> Arc<dyn Broker> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    let keys = BinanceCredentials { api_key: "fake-key".into(), secret: secret.into() };
    Arc::new(BinanceBroker::new(client, url, keys, "USDT"))
}

fn dec(text: &str) -> Decimal {
    text.parse().unwrap()
}

fn intent(qty: &str, order_type: OrderType) -> OrderIntent {
    OrderIntent {
        symbol: "BTCUSDT".into(),
        side: Side::Buy,
        qty: dec(qty),
        order_type,
        time_in_force: TimeInForce::Gtc,
    }
}

#[tokio::test]
async fn signed_orders_are_rounded_accepted_and_priced() {
    let venue = FakeVenue::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("b.db")).unwrap());
    let router = Router::new(broker(&venue.url, BINANCE_SECRET), store, RouterConfig::default());
    let routed = router.submit("grid@binance", 1, &intent("0.0123456", OrderType::Market), 1).await.unwrap();
    let Routed::Accepted { order } = routed else { panic!("{routed:?}") };
    assert_eq!(order.qty, dec("0.012"), "rounded down to the 0.001 step");
    assert_eq!((order.status, order.filled_avg_price), (OrderStatus::Filled, Some(dec("100.5"))));

    let limit =
        router.submit("grid@binance", 2, &intent("1", OrderType::Limit { price: dec("99.999") }), 2).await.unwrap();
    let Routed::Accepted { order } = limit else { panic!("{limit:?}") };
    assert_eq!(order.status, OrderStatus::Accepted);
    let placed = venue.state.lock().unwrap().binance_orders[1]["price"].clone();
    assert_eq!(placed, "99.99", "a buy limit is rounded down to the tick");
}

#[tokio::test]
async fn a_wrong_secret_is_refused_by_the_venue() {
    let venue = FakeVenue::start().await;
    let err = broker(&venue.url, "not-the-secret").open_orders().await.unwrap_err();
    assert!(matches!(&err, VenueError::Rejected { status: 401, code: Some(-1022), .. }), "{err}");
}

#[tokio::test]
async fn a_lost_answer_is_found_by_client_order_id() {
    let venue = FakeVenue::start().await;
    venue.fail_next_order(OrderFault::AcceptThen500);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("b.db")).unwrap());
    let config = RouterConfig { base_backoff: Duration::from_millis(5), ..RouterConfig::default() };
    let router = Router::new(broker(&venue.url, BINANCE_SECRET), store, config);
    let routed = router.submit("grid@binance", 1, &intent("1", OrderType::Market), 1).await.unwrap();
    assert!(matches!(routed, Routed::Accepted { .. }), "{routed:?}");
    let s = venue.state.lock().unwrap();
    assert_eq!((s.order_posts, s.binance_orders.len()), (1, 1));
}

#[tokio::test]
async fn balances_become_positions_and_cash() {
    let venue = FakeVenue::start().await;
    venue.state.lock().unwrap().binance_balances =
        vec![("USDT".into(), "1500.25".into()), ("BTC".into(), "0.5".into()), ("ETH".into(), "0.00000000".into())];
    let broker = broker(&venue.url, BINANCE_SECRET);
    let positions = broker.positions().await.unwrap();
    assert_eq!(positions.len(), 1);
    assert_eq!((positions[0].symbol.as_str(), positions[0].qty), ("BTCUSDT", dec("0.5")));
    assert_eq!(broker.account().await.unwrap().cash, dec("1500.25"));
    assert!(broker.order_by_client_id("BTCUSDT", "nope").await.unwrap().is_none());
}

#[test]
fn missing_credentials_name_the_variable() {
    let err = BinanceCredentials::from_lookup(|_| None).err().expect("missing");
    assert_eq!(err.to_string(), "missing credentials: set the environment variable BINANCE_API_KEY");
}
