//! Binance spot trading against a fake that checks every signature.

use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::json;
use stratbox::broker::OrderRequest;
use stratbox::broker::{BinanceBroker, BinanceCredentials, Broker, OrderStatus};
use stratbox::order::{OrderIntent, OrderRef, OrderType, Side, TimeInForce};
use stratbox::router::{Routed, Router, RouterConfig};
use stratbox::store::Store;
use stratbox::venue::VenueError;
use stratbox_tests::fake::{BINANCE_SECRET, FakeVenue, OrderFault, binance_default_filters};

fn binance(url: &str, secret: &str) -> BinanceBroker {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let keys = BinanceCredentials { api_key: "fake-key".into(), secret: secret.into() };
    BinanceBroker::new(client, url, keys, "USDT")
}

fn broker(url: &str, secret: &str) -> Arc<dyn Broker> {
    Arc::new(binance(url, secret))
}

fn request(id: &str, qty: &str, order_type: OrderType) -> OrderRequest {
    OrderRequest {
        client_order_id: id.into(),
        symbol: "BTCUSDT".into(),
        side: Side::Buy,
        qty: dec(qty),
        order_type,
        time_in_force: TimeInForce::Gtc,
    }
}

/// Replaces the fake's `LOT_SIZE` filter.
fn set_lot_size(venue: &FakeVenue, min: &str, step: &str) {
    let mut filters = binance_default_filters();
    filters[1] = json!({"filterType": "LOT_SIZE", "minQty": min, "maxQty": "9000", "stepSize": step});
    venue.state.lock().unwrap().binance_filters = filters;
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
    let routed =
        router.submit("grid@binance", OrderRef::new(1, 1), &intent("0.0123456", OrderType::Market), 1).await.unwrap();
    let Routed::Accepted { order, .. } = routed else { panic!("{routed:?}") };
    assert_eq!(order.qty, dec("0.012"), "rounded down to the 0.001 step");
    assert_eq!((order.status, order.filled_avg_price), (OrderStatus::Filled, Some(dec("100.5"))));

    let limit = router
        .submit("grid@binance", OrderRef::new(1, 2), &intent("1", OrderType::Limit { price: dec("99.999") }), 2)
        .await
        .unwrap();
    let Routed::Accepted { order, .. } = limit else { panic!("{limit:?}") };
    assert_eq!(order.status, OrderStatus::Accepted);
    let placed = venue.state.lock().unwrap().binance_orders[1]["price"].clone();
    assert_eq!(placed, "99.99", "a buy limit is rounded down to the tick");
}

#[tokio::test]
async fn a_wrong_secret_is_refused_by_the_venue() {
    let venue = FakeVenue::start().await;
    let err = broker(&venue.url, "not-the-secret").open_orders().await.unwrap_err();
    assert!(matches!(&err, VenueError::Unauthorized { status: 401, .. }), "bad credentials halt, not reject: {err}");
}

#[tokio::test]
async fn a_lost_answer_is_found_by_client_order_id() {
    let venue = FakeVenue::start().await;
    venue.fail_next_order(OrderFault::AcceptThen500);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("b.db")).unwrap());
    let config = RouterConfig { base_backoff: Duration::from_millis(5), ..RouterConfig::default() };
    let router = Router::new(broker(&venue.url, BINANCE_SECRET), store, config);
    let routed = router.submit("grid@binance", OrderRef::new(1, 1), &intent("1", OrderType::Market), 1).await.unwrap();
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

#[tokio::test]
async fn quantities_count_steps_from_the_minimum() {
    let venue = FakeVenue::start().await;
    set_lot_size(&venue, "0.0015", "0.001");
    let order = broker(&venue.url, BINANCE_SECRET).submit(&request("c1", "0.0123", OrderType::Market)).await.unwrap();
    assert_eq!(order.qty, dec("0.0115"), "(qty - minQty) % stepSize == 0, as the venue checks");
    assert_eq!((order.filled_qty, order.filled_avg_price), (dec("0.0115"), Some(dec("100.5"))), "from the answer");
}

#[tokio::test]
async fn orders_the_filters_forbid_are_refused_before_sending() {
    let venue = FakeVenue::start().await;
    let broker = broker(&venue.url, BINANCE_SECRET);
    let cases = [
        ("0.0004", OrderType::Market, "LOT_SIZE minimum"),
        ("150", OrderType::Market, "MARKET_LOT_SIZE maximum"),
        ("0.005", OrderType::Limit { price: dec("100") }, "minimum notional"),
        ("0.005", OrderType::Market, "minimum notional"),
        ("1", OrderType::Limit { price: dec("0.001") }, "price"),
    ];
    for (i, (qty, order_type, reason)) in cases.into_iter().enumerate() {
        let err = broker.submit(&request(&format!("c{i}"), qty, order_type)).await.unwrap_err();
        assert!(
            matches!(&err, VenueError::Rejected { code: None, message, .. } if message.contains(reason)),
            "{qty} {order_type:?}: {err}"
        );
    }
    assert_eq!(venue.state.lock().unwrap().order_posts, 0, "nothing the venue would refuse was sent");
    assert!(venue.requests_to("/api/v3/avgPrice") >= 1, "a market order's value is taken at the average price");
}

#[tokio::test]
async fn filters_are_fetched_again_after_a_filter_failure_and_after_their_ttl() {
    let venue = FakeVenue::start().await;
    let broker = broker(&venue.url, BINANCE_SECRET);
    broker.submit(&request("c1", "0.015", OrderType::Market)).await.unwrap();
    // The venue tightens its lot size while we hold the old filters.
    set_lot_size(&venue, "0.01", "0.01");
    let order = broker.submit(&request("c2", "0.015", OrderType::Market)).await.unwrap();
    assert_eq!(order.qty, dec("0.01"), "re-rounded to the new filters after -1013");
    assert_eq!(venue.requests_to("/api/v3/exchangeInfo"), 2);
    assert_eq!(venue.state.lock().unwrap().order_posts, 3, "refused once, then sent again");

    let expiring = binance(&venue.url, BINANCE_SECRET).with_filter_ttl(Duration::ZERO);
    expiring.submit(&request("c3", "0.02", OrderType::Market)).await.unwrap();
    expiring.submit(&request("c4", "0.02", OrderType::Market)).await.unwrap();
    assert_eq!(venue.requests_to("/api/v3/exchangeInfo"), 4, "an expired entry is fetched again");
}

#[tokio::test]
async fn a_skewed_clock_is_measured_and_corrected() {
    let venue = FakeVenue::start().await;
    venue.state.lock().unwrap().binance_clock_skew_ms = 30_000;
    let broker = broker(&venue.url, BINANCE_SECRET);
    let order = broker.submit(&request("c1", "0.02", OrderType::Market)).await.unwrap();
    assert_eq!(order.status, OrderStatus::Filled);
    assert_eq!(venue.requests_to("/api/v3/time"), 1, "measured before the first signed request");
    assert_eq!(venue.requests_to("/api/v3/order"), 1, "so the first order was not refused first");
    // The venue's clock jumps back: the next request is refused with -1021,
    // the offset is measured again and the request sent once more.
    venue.state.lock().unwrap().binance_clock_skew_ms = -20_000;
    assert!(broker.open_orders().await.unwrap().is_empty());
    assert_eq!(venue.requests_to("/api/v3/time"), 2);
    assert_eq!(venue.requests_to("/api/v3/openOrders"), 2, "refused once (-1021), then sent again");
}

#[tokio::test]
async fn an_order_is_found_by_its_venue_id() {
    let venue = FakeVenue::start().await;
    let broker = broker(&venue.url, BINANCE_SECRET);
    let placed = broker.submit(&request("c1", "1", OrderType::Limit { price: dec("99") })).await.unwrap();
    let found = broker.order_by_venue_id("BTCUSDT", &placed.venue_order_id).await.unwrap().unwrap();
    assert_eq!((found.client_order_id.as_str(), found.status), ("c1", OrderStatus::Accepted));
    assert!(broker.order_by_venue_id("BTCUSDT", "999").await.unwrap().is_none());
}

#[tokio::test]
async fn a_clock_that_cannot_be_corrected_is_a_transient_refusal() {
    let venue = FakeVenue::start().await;
    venue.state.lock().unwrap().binance_time_error_ms = 60_000;
    let err = broker(&venue.url, BINANCE_SECRET).submit(&request("c1", "0.02", OrderType::Market)).await.unwrap_err();
    assert!(matches!(&err, VenueError::Transient { status: 400, .. }), "{err}");
    assert!(err.is_retryable(), "-1021 means nothing was done: the order may be sent again");
    assert_eq!(venue.requests_to("/api/v3/time"), 2, "measured, refused, measured again");
    assert!(venue.state.lock().unwrap().binance_orders.is_empty());
}

/// Stops go as `STOP_LOSS`, stop-limits as `STOP_LOSS_LIMIT`, their stop
/// price rounded to the tick as a limit price is (a sell up, a buy down)
/// and held to `PRICE_FILTER`; a stop's value is checked at its stop.
#[tokio::test]
async fn stop_orders_carry_a_stop_price_that_meets_the_price_filter() {
    let venue = FakeVenue::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("b.db")).unwrap());
    let router = Router::new(broker(&venue.url, BINANCE_SECRET), store, RouterConfig::default());
    let stop = OrderIntent { side: Side::Sell, ..intent("0.5", OrderType::Stop { stop: dec("95.551") }) };
    let stop_limit = intent("1", OrderType::StopLimit { stop: dec("101.509"), limit: dec("102.019") });
    for (n, intent) in [(1, stop), (2, stop_limit)] {
        let routed = router.submit("grid@binance", OrderRef::new(1, n), &intent, 1).await.unwrap();
        let Routed::Accepted { order, .. } = routed else { panic!("{routed:?}") };
        assert_eq!(order.status, OrderStatus::Accepted, "a stop waits for its trigger");
    }
    let orders = venue.state.lock().unwrap().binance_orders.clone();
    let wire =
        |o: &serde_json::Value| (o["type"].clone(), o["side"].clone(), o["stopPrice"].clone(), o["price"].clone());
    assert_eq!(wire(&orders[0]), (json!("STOP_LOSS"), json!("SELL"), json!("95.56"), json!("0.00000000")));
    assert_eq!(wire(&orders[1]), (json!("STOP_LOSS_LIMIT"), json!("BUY"), json!("101.5"), json!("102.01")));

    let broker = broker(&venue.url, BINANCE_SECRET);
    let cases = [
        (OrderType::Stop { stop: dec("0.001") }, "stop price 0 is below the minimum 0.01"),
        (OrderType::StopLimit { stop: dec("2000000"), limit: dec("100") }, "stop price 2000000 is above the maximum"),
        (OrderType::Stop { stop: dec("100") }, "minimum notional"),
    ];
    for (order_type, reason) in cases {
        let err = broker.submit(&request("c9", "0.005", order_type)).await.unwrap_err();
        assert!(
            matches!(&err, VenueError::Rejected { code: None, message, .. } if message.contains(reason)),
            "{order_type}: {err}"
        );
    }
    assert_eq!(venue.state.lock().unwrap().order_posts, 2, "nothing the venue would refuse was sent");
    assert_eq!(venue.requests_to("/api/v3/avgPrice"), 0, "a stop is valued at its stop, not the average price");
}

/// The fake Binance holds stop orders to what each type takes.
#[tokio::test]
async fn the_fake_refuses_stop_orders_missing_what_they_need() {
    let venue = FakeVenue::start().await;
    let client = reqwest::Client::new();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    let cases = [
        ("type=STOP_LOSS&quantity=1", -1102),
        ("type=STOP_LOSS&quantity=1&stopPrice=100&timeInForce=GTC", -1106),
        ("type=STOP_LOSS&quantity=1&stopPrice=100&price=100", -1102),
        ("type=STOP_LOSS_LIMIT&quantity=1&stopPrice=100&price=101", -1102),
        ("type=STOP_LOSS_LIMIT&quantity=1&price=101&timeInForce=GTC", -1102),
        ("type=STOP_LOSS_LIMIT&quantity=1&stopPrice=100.001&price=101&timeInForce=GTC", -1013),
        ("type=LIMIT&quantity=1&stopPrice=100&price=101&timeInForce=GTC", -1102),
        ("type=TAKE_PROFIT&quantity=1&stopPrice=100", -1116),
    ];
    for (params, code) in cases {
        let query = format!("symbol=BTCUSDT&side=BUY&{params}&recvWindow=5000&timestamp={now}");
        let signature = stratbox::broker::binance_signature(BINANCE_SECRET, &query);
        let answer = client
            .post(format!("{}/api/v3/order?{query}&signature={signature}", venue.url))
            .header("X-MBX-APIKEY", "fake-key")
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
        assert_eq!(body["code"], code, "{params}: {body}");
    }
    assert!(venue.state.lock().unwrap().binance_orders.is_empty());
}
