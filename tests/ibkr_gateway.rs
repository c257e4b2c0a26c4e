//! The fake IBKR Client Portal gateway itself, driven over real HTTPS:
//! its certificate, the accounts-first rule, the orders snapshot quirk,
//! order questions and replies, a lost session, and history validation.

use std::time::Duration;

use serde_json::{Value, json};
use stratbox_tests::fake::{FakeGateway, Fault, IBKR_ACCOUNT, OrderFault};

const AAPL: i64 = 265598;

fn client(ca_pem: Option<&str>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(30)).use_rustls_tls();
    if let Some(pem) = ca_pem {
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

struct Session {
    gateway: FakeGateway,
    http: reqwest::Client,
}

impl Session {
    async fn start() -> Self {
        let gateway = FakeGateway::start(true).await;
        gateway.add_contract("AAPL", AAPL);
        // These read the live orders back to back; one test keeps IBKR's pace.
        gateway.set_live_orders_pace(std::time::Duration::ZERO);
        let http = client(Some(&gateway.ca_pem));
        Self { gateway, http }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.gateway.url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn place(&self, ticket: Value) -> (u16, Value) {
        self.post(&format!("/iserver/account/{IBKR_ACCOUNT}/orders"), json!({"orders": [ticket]})).await
    }
}

fn limit_buy(coid: &str) -> Value {
    json!({"acctId": IBKR_ACCOUNT, "conid": AAPL, "cOID": coid, "orderType": "LMT", "side": "BUY",
        "quantity": 10, "price": 187.5, "tif": "DAY"})
}

#[tokio::test]
async fn https_works_with_the_certificate_and_fails_without_it() {
    let session = Session::start().await;
    assert!(session.gateway.url.starts_with("https://127.0.0.1:") && session.gateway.url.ends_with("/v1/api"));
    let (status, body) = session.post("/iserver/auth/status", json!({})).await;
    assert_eq!((status, &body["authenticated"], &body["connected"]), (200, &json!(true), &json!(true)));
    // The same certificate serves the `localhost` name.
    let localhost = session.gateway.url.replace("127.0.0.1", "localhost");
    let answer = session.http.get(format!("{localhost}/iserver/auth/status")).send().await.unwrap();
    assert_eq!(answer.status(), 200);

    let untrusting = client(None);
    let refused = untrusting.post(format!("{}/tickle", session.gateway.url)).send().await;
    assert!(refused.is_err(), "a client without the certificate must not connect");
    assert_eq!(session.gateway.tickles(), 0);

    let (status, body) = session.get("/no/such/endpoint").await;
    assert_eq!((status, body["error"].as_str()), (404, Some("Not Found")));
}

#[tokio::test]
async fn plain_http_serves_the_same_api() {
    let gateway = FakeGateway::start(false).await;
    let answer = reqwest::Client::new().post(format!("{}/tickle", gateway.url)).send().await.unwrap();
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["iserver"]["authStatus"]["authenticated"], true);
    assert_eq!(gateway.tickles(), 1);
    assert_eq!(gateway.requests(), vec!["POST /v1/api/tickle".to_string()]);
}

#[tokio::test]
async fn trading_and_portfolio_need_their_accounts_read_first() {
    let session = Session::start().await;
    let (status, body) = session.place(limit_buy("early")).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("Please query /iserver/accounts first")));
    assert_eq!(session.get("/iserver/account/orders").await.0, 400);
    assert_eq!(session.get(&format!("/portfolio/{IBKR_ACCOUNT}/positions/0")).await.0, 400);
    assert_eq!(session.gateway.order_posts(), 1);
    assert!(session.gateway.live_orders().is_empty());

    let (status, accounts) = session.get("/iserver/accounts").await;
    assert_eq!((status, &accounts["selectedAccount"]), (200, &json!(IBKR_ACCOUNT)));
    let (status, placed) = session.place(limit_buy("later")).await;
    assert_eq!(status, 200, "{placed}");
    assert_eq!(placed[0]["order_status"], "Submitted");
    assert!(placed[0]["order_id"].is_string());

    session.get("/portfolio/accounts").await;
    session.gateway.set_position("AAPL", AAPL, "5", "180");
    let (status, positions) = session.get(&format!("/portfolio/{IBKR_ACCOUNT}/positions/0")).await;
    assert_eq!((status, &positions[0]["position"], &positions[0]["avgPrice"]), (200, &json!(5.0), &json!(180.0)));
    assert_eq!(session.get(&format!("/portfolio/{IBKR_ACCOUNT}/positions/1")).await.1, json!([]));
    assert_eq!(session.gateway.requests_to("GET", "/portfolio/"), 4);
}

#[tokio::test]
async fn the_first_orders_call_of_a_session_is_an_empty_loading_snapshot() {
    let session = Session::start().await;
    session.get("/iserver/accounts").await;
    session.place(limit_buy("one")).await;
    let (_, first) = session.get("/iserver/account/orders").await;
    assert_eq!(first, json!({"orders": [], "snapshot": false}));
    let (_, second) = session.get("/iserver/account/orders").await;
    assert_eq!(second["snapshot"], true);
    let order = &second["orders"][0];
    assert_eq!(
        (&order["order_ref"], &order["status"], &order["side"]),
        (&json!("one"), &json!("Submitted"), &json!("BUY"))
    );
    assert_eq!((&order["totalSize"], &order["remainingQuantity"]), (&json!(10.0), &json!(10.0)));
    assert_eq!(session.gateway.live_orders()[0]["orderId"], order["orderId"]);

    // Partly, then wholly filled.
    session.gateway.fill_part_of_open_orders("4", "187");
    let id = order["orderId"].as_i64().unwrap();
    let (_, status) = session.get(&format!("/iserver/account/order/status/{id}")).await;
    assert_eq!((&status["cum_fill"], &status["size"], &status["side"]), (&json!("4.0"), &json!("6.0"), &json!("B")));
    session.gateway.fill_open_orders("188");
    let (_, filled) = session.get("/iserver/account/orders?filters=filled").await;
    assert_eq!((&filled["orders"][0]["status"], &filled["orders"][0]["avgPrice"]), (&json!("Filled"), &json!("187.6")));

    // A new session: accounts again, and the quirk again.
    session.gateway.set_authenticated(false);
    session.gateway.set_authenticated(true);
    assert_eq!(session.get("/iserver/account/orders").await.0, 400);
    session.get("/iserver/accounts").await;
    assert_eq!(session.get("/iserver/account/orders").await.1["snapshot"], false);
    // The order filled in the old session is no longer served.
    assert_eq!(session.get("/iserver/account/orders").await.1["orders"], json!([]));
    assert_eq!(session.get(&format!("/iserver/account/order/status/{id}")).await.0, 503);
}

#[tokio::test]
async fn questions_hold_an_order_until_each_is_confirmed() {
    let session = Session::start().await;
    session.get("/iserver/accounts").await;
    session.gateway.ask_next_order("o163", "price exceeds the Percentage constraint of 3%");
    session.gateway.ask_next_order("o354", "You are submitting an order without market data");
    let (_, first) = session.place(limit_buy("asked")).await;
    assert_eq!((&first[0]["messageIds"], &first[0]["isSuppressed"]), (&json!(["o163"]), &json!(false)));
    assert!(session.gateway.live_orders().is_empty());
    let first_id = first[0]["id"].as_str().unwrap().to_string();
    let (_, second) = session.post(&format!("/iserver/reply/{first_id}"), json!({"confirmed": true})).await;
    assert_eq!(second[0]["message"], json!(["You are submitting an order without market data"]));
    let second_id = second[0]["id"].as_str().unwrap().to_string();
    assert_eq!(session.post(&format!("/iserver/reply/{first_id}"), json!({"confirmed": true})).await.0, 503);
    // The stale reply above discarded the held order, as the docs say any other request does.
    assert_eq!(session.post(&format!("/iserver/reply/{second_id}"), json!({"confirmed": true})).await.0, 503);
    assert!(session.gateway.live_orders().is_empty());

    session.gateway.ask_next_order("o163", "price exceeds the Percentage constraint of 3%");
    let (_, asked) = session.place(limit_buy("asked")).await;
    let reply = asked[0]["id"].as_str().unwrap().to_string();
    let (status, taken) = session.post(&format!("/iserver/reply/{reply}"), json!({"confirmed": true})).await;
    assert_eq!((status, &taken[0]["order_status"]), (200, &json!("Submitted")));
    assert_eq!(session.gateway.live_orders().len(), 1);
    assert_eq!(session.gateway.replies().last(), Some(&(reply, true)));
    assert_eq!(session.post("/iserver/reply/whatever", json!({"confirmed": "yes"})).await.0, 400);

    // Declined: discarded. A cOID already used: refused.
    session.gateway.ask_next_order("o163", "price exceeds the Percentage constraint of 3%");
    let (_, asked) = session.place(limit_buy("declined")).await;
    let reply = asked[0]["id"].as_str().unwrap();
    let (_, declined) = session.post(&format!("/iserver/reply/{reply}"), json!({"confirmed": false})).await;
    assert!(declined["error"].is_string());
    let (status, duplicate) = session.place(limit_buy("asked")).await;
    assert!(status == 200 && duplicate["error"].as_str().unwrap().contains("already registered"));
    assert_eq!(session.gateway.live_orders().len(), 1);
}

#[tokio::test]
async fn order_tickets_are_checked_as_the_reference_types_them() {
    let session = Session::start().await;
    session.get("/iserver/accounts").await;
    let mut no_price = limit_buy("a");
    no_price.as_object_mut().unwrap().remove("price");
    let mut text_quantity = limit_buy("b");
    text_quantity["quantity"] = json!("10");
    let mut lowercase_side = limit_buy("c");
    lowercase_side["side"] = json!("buy");
    for ticket in [no_price, text_quantity, lowercase_side] {
        assert_eq!(session.place(ticket).await.0, 400);
    }
    let (status, _) = session.post("/iserver/account/U0000000/orders", json!({"orders": [limit_buy("d")]})).await;
    assert_eq!(status, 400);

    session.gateway.fail_next_order(OrderFault::AcceptThen500);
    assert_eq!(session.place(limit_buy("e")).await.0, 500);
    assert_eq!(session.gateway.live_orders().len(), 1, "the order landed all the same");

    let id = session.gateway.live_orders()[0]["orderId"].as_i64().unwrap();
    let path = format!("/iserver/account/{IBKR_ACCOUNT}/order/{id}");
    let (_, cancelled) = session.call(reqwest::Method::DELETE, &path, None).await;
    assert_eq!((&cancelled["msg"], &cancelled["order_id"]), (&json!("Request was submitted"), &json!(id)));
    assert_eq!(session.gateway.live_orders()[0]["status"], "Cancelled");
    let unknown = format!("/iserver/account/{IBKR_ACCOUNT}/order/1");
    assert_eq!(session.call(reqwest::Method::DELETE, &unknown, None).await.1["error"], "OrderID 1 doesn't exist");
}

#[tokio::test]
async fn a_lost_session_answers_401_on_iserver_but_still_tickles() {
    let session = Session::start().await;
    session.gateway.set_authenticated(false);
    assert_eq!(session.get("/iserver/accounts").await.0, 401);
    assert_eq!(session.get("/iserver/secdef/search?symbol=AAPL").await.0, 401);
    let (status, auth) = session.get("/iserver/auth/status").await;
    assert_eq!((status, &auth["authenticated"]), (200, &json!(false)));
    let (status, tickle) = session.post("/tickle", json!({})).await;
    assert_eq!((status, &tickle["iserver"]["authStatus"]["authenticated"]), (200, &json!(false)));
    assert_eq!(session.gateway.tickles(), 1);

    session.gateway.set_authenticated(true);
    let (status, found) = session.get("/iserver/secdef/search?symbol=AAPL").await;
    assert_eq!(
        (status, &found[0]["conid"], &found[0]["sections"][0]["secType"]),
        (200, &json!("265598"), &json!("STK"))
    );
    assert_eq!(session.post("/iserver/secdef/search", json!({"symbol": "NOPE"})).await.1, json!([]));
    assert_eq!(session.gateway.searches(), 3);
}

#[tokio::test]
async fn history_is_validated_and_served_for_the_window_asked() {
    let session = Session::start().await;
    let minute = 60_000;
    // 2024-01-02 14:30 UTC onwards, one bar a minute.
    let open = 1_704_205_800_000_i64;
    for i in 0..1200 {
        let price = format!("{}", 100 + i % 7);
        session.gateway.publish_bar(AAPL, open + i * minute, &price, &price, &price, &price, "1000");
    }
    for bad in [
        "period=2x&bar=1min",
        "period=31min&bar=1min",
        "period=1d&bar=7min",
        "period=1min&bar=5min",
        "period=15y&bar=1d",
        "bar=1min",
        "period=1d&bar=1min&startTime=2024-01-02T15:00:00",
        "period=1d&bar=1min&outsideRth=yes",
    ] {
        let (status, body) = session.get(&format!("/iserver/marketdata/history?conid={AAPL}&{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    assert_eq!(session.get("/iserver/marketdata/history?conid=1&period=1d&bar=1min").await.0, 400);

    let (status, body) = session
        .get(&format!("/iserver/marketdata/history?conid={AAPL}&period=1h&bar=1min&startTime=20240102-15:30:00"))
        .await;
    assert_eq!(status, 200, "{body}");
    let data = body["data"].as_array().unwrap();
    assert_eq!((data.len(), &body["points"], &body["barLength"]), (60, &json!(60), &json!(60)));
    assert_eq!((data[0]["t"].as_i64(), data[59]["t"].as_i64()), (Some(open), Some(open + 59 * minute)));
    assert_eq!(
        (&data[0]["o"], &body["symbol"], &body["startTime"]),
        (&json!(100.0), &json!("AAPL"), &json!("20240102-14:30:00"))
    );

    let (_, day) = session
        .get(&format!("/iserver/marketdata/history?conid={AAPL}&period=1d&bar=1min&startTime=20240103-14:30:00"))
        .await;
    let data = day["data"].as_array().unwrap();
    assert_eq!(data.len(), 1000, "at most 1000 points");
    assert_eq!(data[999]["t"].as_i64(), Some(open + 1199 * minute), "the latest ones");
}

#[tokio::test]
async fn faults_spoil_the_next_answers() {
    let session = Session::start().await;
    session.gateway.fail_next(Fault::Status { code: 503, retry_after: Some(2) });
    let answer = session.http.get(format!("{}/iserver/accounts", session.gateway.url)).send().await.unwrap();
    assert_eq!((answer.status().as_u16(), answer.headers()["retry-after"].to_str().unwrap()), (503, "2"));
    session.gateway.fail_next(Fault::Malformed);
    assert_eq!(session.get("/iserver/accounts").await, (200, Value::Null));
    assert_eq!(session.get("/iserver/accounts?b=2&a=1").await.0, 200);
    assert_eq!(session.gateway.requests().last().map(String::as_str), Some("GET /v1/api/iserver/accounts?a=1&b=2"));

    session.gateway.fail_next_order(OrderFault::AcceptThenDrop);
    let dropped = session.http.post(format!("{}/iserver/account/{IBKR_ACCOUNT}/orders", session.gateway.url));
    let dropped = dropped.json(&json!({"orders": [limit_buy("dropped")]})).send().await;
    assert!(dropped.is_err() || dropped.unwrap().text().await.is_err(), "the answer must not arrive whole");
    session.gateway.fail_next_order(OrderFault::Status { code: 429, retry_after: None });
    assert_eq!(session.place(limit_buy("throttled")).await.0, 429);
    assert_eq!((session.gateway.order_posts(), session.gateway.live_orders().len()), (2, 1));
    assert_eq!(session.gateway.requests_to("POST", "/iserver/account/"), 2);
}

#[tokio::test]
async fn the_live_orders_may_be_read_once_every_five_seconds() {
    let session = Session::start().await;
    session.gateway.set_live_orders_pace(std::time::Duration::from_secs(5));
    session.get("/iserver/accounts").await;
    assert_eq!(session.get("/iserver/account/orders").await.0, 200);
    assert_eq!(session.get("/iserver/account/orders").await.0, 429, "too soon");
}
