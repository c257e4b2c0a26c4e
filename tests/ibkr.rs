//! Interactive Brokers through a fake Client Portal gateway that serves
//! HTTPS with its own self-signed certificate, as the real one does: the
//! certificate is trusted only as configured; orders carry `cOID` and a
//! lost answer is found by it, not resent; the gateway's questions are
//! answered by the policy; a lost session halts the venue until it is
//! back; contract ids are searched once; and, end to end, the host polls
//! bars, trades and reconciles through the gateway.

use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use stratbox::broker::{Broker, OrderRequest, OrderStatus};
use stratbox::order::{OrderIntent, OrderRef, OrderType, Side, TimeInForce};
use stratbox::reconcile::Reconciler;
use stratbox::risk::{RiskGate, TradingState};
use stratbox::router::{Routed, Router, RouterConfig};
use stratbox::store::Store;
use stratbox::venue::VenueError;
use stratbox::venues::ibkr::{IbkrBroker, IbkrConfig, IbkrGateway};
use stratbox_tests::fake::{FakeGateway, IBKR_ACCOUNT, OrderFault};
use stratbox_tests::process::{HostProcess, health, listening_address, strategy, write_host_config};

const AAPL: i64 = 265_598;

/// A gateway and a store, the gateway's certificate written to `ca.pem`.
struct Setup {
    fake: FakeGateway,
    store: Arc<Store>,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Self {
        let fake = FakeGateway::start(true).await;
        fake.add_contract("AAPL", AAPL);
        // IBKR allows a read of the live orders every 5 s; most tests pace
        // both sides faster (one keeps the real pace).
        fake.set_live_orders_pace(Duration::from_millis(100));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), &fake.ca_pem).unwrap();
        let store = Arc::new(Store::open(&dir.path().join("ibkr.db")).unwrap());
        Self { fake, store, dir }
    }

    fn config(&self) -> IbkrConfig {
        IbkrConfig {
            gateway: self.fake.url.clone(),
            account: IBKR_ACCOUNT.into(),
            ca_file: Some(self.dir.path().join("ca.pem").display().to_string()),
            confirm: vec!["o163".into()],
            tickle_every_ms: 1_000,
            orders_every_ms: 100,
            ..IbkrConfig::default()
        }
    }

    fn gateway(&self, config: IbkrConfig) -> Arc<IbkrGateway> {
        Arc::new(IbkrGateway::new(config, Duration::from_secs(10), self.store.clone()).unwrap())
    }

    fn broker(&self) -> Arc<dyn Broker> {
        Arc::new(IbkrBroker::new(self.gateway(self.config())))
    }

    fn router(&self, broker: Arc<dyn Broker>, gate: RiskGate) -> Router {
        let config = RouterConfig { base_backoff: Duration::from_millis(5), ..RouterConfig::default() };
        Router::new(broker, self.store.clone(), config).with_gate(gate)
    }
}

fn intent(qty: i64, order_type: OrderType) -> OrderIntent {
    OrderIntent {
        symbol: "AAPL".into(),
        side: Side::Buy,
        qty: Decimal::from(qty),
        order_type,
        time_in_force: TimeInForce::Day,
    }
}

fn limit(price: &str) -> OrderType {
    OrderType::Limit { price: price.parse().unwrap() }
}

#[tokio::test]
async fn the_gateway_certificate_is_trusted_only_as_configured() {
    let setup = Setup::new().await;
    // Neither the CA file nor loopback trust: the TLS handshake fails and
    // nothing is sent.
    let untrusted = IbkrConfig { ca_file: None, ..setup.config() };
    let broker = IbkrBroker::new(setup.gateway(untrusted));
    let err = broker.account().await.unwrap_err();
    assert!(matches!(err, VenueError::Unreachable { .. }), "{err}");
    assert_eq!(setup.fake.tickles(), 0);

    // Trusting the gateway on loopback, explicitly, works without the file.
    let loopback = IbkrConfig { ca_file: None, trust_loopback_gateway: true, ..setup.config() };
    let account = IbkrBroker::new(setup.gateway(loopback)).account().await.unwrap();
    assert!(account.cash > Decimal::ZERO);
    // And so does the CA file.
    IbkrBroker::new(setup.gateway(setup.config())).account().await.unwrap();

    // Loopback trust is refused for a gateway elsewhere, before connecting.
    let far = IbkrConfig {
        gateway: "https://gateway.example.com:5000/v1/api".into(),
        ca_file: None,
        trust_loopback_gateway: true,
        ..setup.config()
    };
    let refused = IbkrGateway::new(far, Duration::from_secs(1), setup.store.clone()).err().unwrap();
    assert!(refused.to_string().contains("not on loopback"), "{refused}");
    // A CA file that is not there is named.
    let missing = IbkrConfig { ca_file: Some("/nonexistent/ca.pem".into()), ..setup.config() };
    let refused = IbkrGateway::new(missing, Duration::from_secs(1), setup.store.clone()).err().unwrap();
    assert!(refused.to_string().contains("/nonexistent/ca.pem"), "{refused}");
}

#[tokio::test]
async fn orders_carry_the_client_id_and_a_lost_answer_is_found_not_resent() {
    let setup = Setup::new().await;
    // At IBKR's own pace for the live orders, on both sides.
    setup.fake.set_live_orders_pace(Duration::from_secs(5));
    let paced = IbkrConfig { orders_every_ms: 5_000, ..setup.config() };
    let router = setup.router(Arc::new(IbkrBroker::new(setup.gateway(paced))), RiskGate::default());

    let placed = router.submit("s@ibkr", OrderRef::new(1, 1), &intent(10, limit("150.25")), 1).await.unwrap();
    let Routed::Accepted { order, .. } = placed else { panic!("{placed:?}") };
    assert_eq!((order.status, order.qty), (OrderStatus::Accepted, Decimal::from(10)));
    let live = setup.fake.live_orders();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0]["order_ref"], order.client_order_id.as_str(), "cOID comes back as order_ref");

    // The gateway takes the next order and the answer is lost: the router
    // finds it by cOID (past the gateway's first, empty, snapshot) and
    // does not place it again.
    setup.fake.fail_next_order(OrderFault::AcceptThen500);
    let lost = router.submit("s@ibkr", OrderRef::new(1, 2), &intent(5, OrderType::Market), 2).await.unwrap();
    assert!(matches!(&lost, Routed::Accepted { order, .. } if order.qty == Decimal::from(5)), "{lost:?}");
    assert_eq!(setup.fake.order_posts(), 2, "found, not resent");
    assert_eq!(setup.fake.live_orders().len(), 2);

    // Fill-or-kill has no Client Portal form: refused before sending.
    let fok = OrderIntent { time_in_force: TimeInForce::Fok, ..intent(1, limit("1")) };
    let refused = router.submit("s@ibkr", OrderRef::new(1, 3), &fok, 3).await.unwrap();
    assert!(matches!(&refused, Routed::Rejected { reason, .. } if reason.contains("fill-or-kill")), "{refused:?}");
    assert_eq!(setup.fake.order_posts(), 2);
}

#[tokio::test]
async fn questions_are_confirmed_by_policy_and_any_other_refuses_the_order() {
    let setup = Setup::new().await;
    let router = setup.router(setup.broker(), RiskGate::default());

    // A known warning, twice in a row: both confirmed, the order placed.
    setup.fake.ask_next_order("o163", "The following order exceeds the price percentage limit");
    setup.fake.ask_next_order("o163", "Are you sure?");
    let placed = router.submit("s@ibkr", OrderRef::new(1, 1), &intent(1, limit("999")), 1).await.unwrap();
    assert!(matches!(placed, Routed::Accepted { .. }), "{placed:?}");
    assert!(setup.fake.replies().iter().all(|(_, confirmed)| *confirmed));
    assert_eq!(setup.fake.replies().len(), 2);

    // Anything else is declined, the order refused naming the question,
    // and nothing is placed.
    setup.fake.ask_next_order("o354", "You are trying to submit an order without having market data");
    let refused = router.submit("s@ibkr", OrderRef::new(1, 2), &intent(1, OrderType::Market), 2).await.unwrap();
    let Routed::Rejected { reason, .. } = &refused else { panic!("{refused:?}") };
    assert!(reason.contains("o354") && reason.contains("market data") && reason.contains("ibkr.confirm"), "{reason}");
    assert_eq!(setup.fake.replies().last().map(|(_, c)| *c), Some(false), "declined at the gateway");
    assert_eq!(setup.fake.live_orders().len(), 1);
}

#[tokio::test]
async fn a_lost_session_halts_the_venue_until_it_is_back() {
    let setup = Setup::new().await;
    let broker = setup.broker();
    let gate = RiskGate::persistent(setup.store.clone(), &["ibkr"]).unwrap();
    let reconciler = Reconciler::new(broker.clone(), setup.store.clone(), gate.clone(), Decimal::ZERO);
    let router = setup.router(broker, gate.clone());
    reconciler.sync(1).await.unwrap();
    let accounts_reads = setup.fake.requests_to("GET", "/v1/api/iserver/accounts");
    assert_eq!(accounts_reads, 1, "{:?}", setup.fake.requests());

    setup.fake.set_authenticated(false);
    // The session check runs once a second here.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let failed = reconciler.sync(2).await.unwrap_err();
    assert!(failed.source.to_string().contains("log in"), "{}", failed.source);
    let halted = gate.trading("ibkr");
    assert_eq!(halted.state, TradingState::Halted);
    assert!(halted.reason.unwrap().to_string().contains("log in"));
    // New orders wait while it is down: nothing reaches the gateway.
    let held = router.submit("s@ibkr", OrderRef::new(1, 1), &intent(1, limit("100")), 3).await.unwrap();
    assert!(matches!(held, Routed::Held { .. }), "{held:?}");
    assert_eq!(setup.fake.order_posts(), 0);

    // Logged in again: a new session, prepared again, and trading resumes.
    setup.fake.set_authenticated(true);
    reconciler.sync(4).await.unwrap();
    assert_eq!(gate.state("ibkr"), TradingState::Active);
    assert_eq!(setup.fake.requests_to("GET", "/v1/api/iserver/accounts"), 2, "the new session read its accounts");
    assert!(setup.fake.tickles() >= 2);
}

#[tokio::test]
async fn contract_ids_are_searched_once_and_outlive_a_restart() {
    let setup = Setup::new().await;
    let router = setup.router(setup.broker(), RiskGate::default());
    for n in 1..=3 {
        router.submit("s@ibkr", OrderRef::new(1, n), &intent(1, limit("100")), n as i64).await.unwrap();
    }
    assert_eq!(setup.fake.searches(), 1);
    // A new gateway over the same store (a restart) does not search again.
    let again = setup.router(setup.broker(), RiskGate::default());
    again.submit("s@ibkr", OrderRef::new(1, 4), &intent(1, limit("100")), 4).await.unwrap();
    assert_eq!(setup.fake.searches(), 1);
    // An unknown symbol is refused with the gateway's word for it.
    let unknown = OrderRequest {
        client_order_id: "x".into(),
        symbol: "NOPE".into(),
        side: Side::Buy,
        qty: Decimal::ONE,
        order_type: OrderType::Market,
        time_in_force: TimeInForce::Day,
    };
    let err = setup.broker().submit(&unknown).await.unwrap_err();
    assert!(matches!(&err, VenueError::Rejected { message, .. } if message.contains("NOPE")), "{err}");
}

#[tokio::test]
async fn sync_reads_fills_positions_and_cash_from_the_portfolio() {
    let setup = Setup::new().await;
    let broker = setup.broker();
    let gate = RiskGate::persistent(setup.store.clone(), &["ibkr"]).unwrap();
    let reconciler = Reconciler::new(broker.clone(), setup.store.clone(), gate.clone(), Decimal::ONE_HUNDRED);
    let router = setup.router(broker.clone(), gate);
    router.submit("s@ibkr", OrderRef::new(1, 1), &intent(10, limit("150")), 1).await.unwrap();
    setup.fake.fill_part_of_open_orders("4", "149.5");
    let report = reconciler.sync(2).await.unwrap();
    assert_eq!(report.fills.len(), 1, "{report:?}");
    assert_eq!((report.fills[0].qty, report.fills[0].price), (Decimal::from(4), "149.5".parse().unwrap()));
    setup.fake.fill_open_orders("151.0");
    let report = reconciler.sync(3).await.unwrap();
    assert_eq!(report.fills.len(), 1, "{report:?}");
    assert_eq!(report.fills[0].qty, Decimal::from(6));
    // The same state read again records nothing.
    assert!(reconciler.sync(4).await.unwrap().fills.is_empty());
    assert!(broker.open_orders().await.unwrap().is_empty());
    let positions = broker.positions().await.unwrap();
    assert_eq!(positions.len(), 1);
    assert_eq!((positions[0].symbol.as_str(), positions[0].qty), ("AAPL", Decimal::from(10)));
    assert!(report.corrections.is_empty(), "the fills explain the position: {report:?}");
}

/// Minute bars of the last `n` minutes, closing at `close`, in the fake.
fn publish_recent_bars(fake: &FakeGateway, n: i64) -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let first = (now / 60_000 - n) * 60_000;
    for i in 0..n {
        fake.publish_bar(AAPL, first + i * 60_000, "10", "10", "10", "10", "100");
    }
    first
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_polls_bars_trades_and_halts_through_the_gateway() {
    let setup = Setup::new().await;
    let first = publish_recent_bars(&setup.fake, 30);
    let sections = format!(
        "[feed]\nkind = \"ibkr\"\nsymbols = [\"AAPL\"]\ntimeframe = \"1min\"\npoll_ms = 200\ndelay_ms = 0\n\
         backfill_minutes = 60\n\n[broker]\nkind = \"ibkr\"\nsync_every_ms = 300\n\n\
         [ibkr]\ngateway = \"{gateway}\"\naccount = \"{IBKR_ACCOUNT}\"\ntrust_loopback_gateway = true\n\
         tickle_every_ms = 1000\norders_every_ms = 100\n\n\
         [[strategy]]\nname = \"buyer\"\nplugin = {plugin:?}\nparams = {{ mode = \"buy\", at = \"{at}\" }}\n",
        gateway = setup.fake.url,
        plugin = stratbox_tests::MISBEHAVE_WASM,
        at = first + 5 * 60_000,
    );
    let dir = setup.dir.path();
    let config = write_host_config(dir, &sections);
    let out = std::fs::File::create(dir.join("out.txt")).unwrap();
    let _host = HostProcess::spawn(env!("CARGO_BIN_EXE_stratbox-under-test"), &config, out.into());
    let addr = listening_address(&dir.join("out.txt")).await;
    let client = reqwest::Client::new();
    let until = async |what: &str, check: &dyn Fn(&serde_json::Value) -> bool| {
        let started = std::time::Instant::now();
        loop {
            let now = health(&client, &addr).await;
            if check(&now) {
                return now;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "timed out waiting for {what}: {now:#}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    until("the buyer's order", &|_| setup.fake.live_orders().len() == 1).await;
    setup.fake.fill_open_orders("10.0");
    let filled = until("the fill", &|h| strategy(h, "buyer").is_some_and(|s| s["fills"] == 1)).await;
    assert_eq!(strategy(&filled, "buyer").unwrap()["positions"]["AAPL"], "1", "{filled:#}");

    setup.fake.set_authenticated(false);
    let halted = until("the halt", &|h| h["venues"][0]["state"] == "halted").await;
    assert!(halted["venues"][0]["reason"].to_string().contains("log in"), "{halted:#}");
    setup.fake.set_authenticated(true);
    until("trading to resume", &|h| h["venues"][0]["state"] == "active").await;
    assert_eq!(setup.fake.order_posts(), 1, "one order, placed once");
}

#[tokio::test]
async fn under_every_fault_each_order_is_placed_once_and_each_fill_recorded_once() {
    use stratbox_tests::fake::Fault;
    let setup = Setup::new().await;
    // Answers that hang past this are lost; the rest have room on a busy machine.
    let gateway = Arc::new(IbkrGateway::new(setup.config(), Duration::from_secs(2), setup.store.clone()).unwrap());
    let broker: Arc<dyn Broker> = Arc::new(IbkrBroker::new(gateway));
    let gate = RiskGate::persistent(setup.store.clone(), &["ibkr"]).unwrap();
    let reconciler = Reconciler::new(broker.clone(), setup.store.clone(), gate.clone(), Decimal::ONE_HUNDRED);
    let router = setup.router(broker.clone(), gate);
    let faults = [
        OrderFault::AcceptThenDrop,
        OrderFault::AcceptThen500,
        OrderFault::AcceptThenHang(Duration::from_secs(6)),
        OrderFault::Status { code: 503, retry_after: None },
        OrderFault::Status { code: 429, retry_after: Some(0) },
    ];
    let placed = faults.len();
    for (n, fault) in faults.into_iter().enumerate() {
        setup.fake.fail_next_order(fault.clone());
        let routed = router.submit("s@ibkr", OrderRef::new(1, n as u64 + 1), &intent(2, limit("100")), 1).await;
        assert!(matches!(routed, Ok(Routed::Accepted { .. })), "{fault:?}: {routed:?}");
        assert_eq!(setup.fake.live_orders().len(), n + 1, "{fault:?} placed the order once");
    }
    // Reads fail, then succeed; fills are recorded once however often read.
    setup.fake.fill_part_of_open_orders("1", "99");
    setup.fake.fail_next(Fault::Status { code: 500, retry_after: None });
    assert!(reconciler.sync(2).await.is_err());
    // Twice: the first lands on the cache invalidation, whose answer is not read.
    setup.fake.fail_next(Fault::Malformed);
    setup.fake.fail_next(Fault::Malformed);
    assert!(reconciler.sync(2).await.is_err());
    let first = reconciler.sync(3).await.unwrap();
    setup.fake.fill_open_orders("101");
    let second = reconciler.sync(4).await.unwrap();
    let third = reconciler.sync(5).await.unwrap();
    assert_eq!((first.fills.len(), second.fills.len(), third.fills.len()), (placed, placed, 0));
    let bought: Decimal = first.fills.iter().chain(&second.fills).map(|f| f.qty).sum();
    assert_eq!(bought, Decimal::from(2 * placed as i64));
    assert!(third.corrections.is_empty(), "{third:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_comes_between_a_question_and_its_reply() {
    use stratbox::feed::BarSource as _;
    use stratbox::venues::ibkr::IbkrHistory;
    // The gateway drops an unanswered question at the next other request;
    // the feed polls the same gateway all the while.
    let setup = Setup::new().await;
    let gateway = setup.gateway(setup.config());
    let router = setup.router(Arc::new(IbkrBroker::new(gateway.clone())), RiskGate::default());
    let history = Arc::new(IbkrHistory::new(gateway, &["AAPL".to_string()], "1min").unwrap());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (history, stop) = (history.clone(), stop.clone());
        tokio::spawn(async move {
            let mut polls = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
                history.fetch(now as i64 - 600_000, now as i64).await.unwrap();
                polls += 1;
            }
            polls
        })
    };
    for n in 1..=10 {
        setup.fake.ask_next_order("o163", "The following order exceeds the price percentage limit");
        let placed = router.submit("s@ibkr", OrderRef::new(1, n), &intent(1, limit("999")), n as i64).await.unwrap();
        assert!(matches!(placed, Routed::Accepted { .. }), "{placed:?}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(poller.await.unwrap() > 10, "the feed kept polling");
    assert_eq!(setup.fake.order_posts(), 10, "no question was dropped, so no order was sent again");
    assert_eq!(setup.fake.replies().len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_killed_mid_run_places_every_order_once_through_the_gateway() {
    use stratbox_tests::process::wait_until;
    const BARS: i64 = 40;
    let setup = Setup::new().await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let first = (now / 60_000 - BARS - 1) * 60_000;
    // A zig-zag that crosses every few bars, published a bar at a time.
    let closes = ["10", "12", "14", "16", "14", "12", "10", "8"];
    let publish = |i: i64| {
        let close = closes[(i % 8) as usize];
        setup.fake.publish_bar(AAPL, first + i * 60_000, close, close, close, close, "100");
    };
    (0..8).for_each(publish);
    let sections = format!(
        "[feed]\nkind = \"ibkr\"\nsymbols = [\"AAPL\"]\ntimeframe = \"1min\"\npoll_ms = 40\ndelay_ms = 0\n\
         backfill_minutes = 60\n\n[broker]\nkind = \"ibkr\"\nsync_every_ms = 100\ndrift_threshold = \"100\"\n\
         timeout_ms = 2000\n\n[ibkr]\ngateway = \"{gateway}\"\naccount = \"{IBKR_ACCOUNT}\"\n\
         trust_loopback_gateway = true\norders_every_ms = 100\n\n\
         [[strategy]]\nname = \"sma\"\nplugin = \"sma-crossover\"\nparams = {{ fast = 2, slow = 4, qty = 1 }}\n",
        gateway = setup.fake.url,
    );
    let config = write_host_config(setup.dir.path(), &sections);
    let spawn = || HostProcess::spawn(env!("CARGO_BIN_EXE_stratbox-under-test"), &config, std::process::Stdio::null());
    let fill = || setup.fake.fill_open_orders("12");

    // First run: bars appear one at a time, orders fill as they come; it
    // is killed once it has traded.
    let mut host = spawn();
    let mut shown = 8;
    wait_until("the first orders", Duration::from_secs(120), || {
        if shown < 24 {
            publish(shown);
            shown += 1;
        }
        fill();
        setup.fake.order_posts() >= 3
    })
    .await;
    host.kill();
    let before = setup.fake.order_posts();

    // Second run: the rest.
    let mut host = spawn();
    (shown..BARS).for_each(publish);
    let store = Store::open(&setup.dir.path().join("host.db")).unwrap();
    wait_until("every bar, order and fill", Duration::from_secs(120), || {
        fill();
        let done =
            store.strategy_state("sma@ibkr").ok().flatten().is_some_and(|s| s.last_bar == first + (BARS - 1) * 60_000);
        let idle = store.queued_orders("ibkr").is_ok_and(|q| q.is_empty())
            && store.open_orders("ibkr").is_ok_and(|o| o.is_empty());
        done && idle
    })
    .await;
    host.kill();

    let live = setup.fake.live_orders();
    assert!(live.len() > before, "the second run traded too");
    assert_eq!(setup.fake.order_posts(), live.len(), "every order was placed exactly once: {live:#?}");
    let mut refs: Vec<&str> = live.iter().map(|o| o["order_ref"].as_str().unwrap()).collect();
    refs.sort_unstable();
    refs.dedup();
    assert_eq!(refs.len(), live.len(), "one cOID per order");
    let held: Decimal = live
        .iter()
        .map(|o| {
            let qty: Decimal = o["filledQuantity"].to_string().parse().unwrap();
            if o["side"] == "BUY" { qty } else { -qty }
        })
        .sum();
    let local: Decimal = store.positions("ibkr").unwrap().iter().map(|p| p.qty).sum();
    assert_eq!(local, held, "the host's position is the gateway's");
    assert!(held <= Decimal::ONE, "long-only, one lot: the restarted strategy did not buy twice");
}

#[tokio::test]
async fn an_order_that_ended_in_an_earlier_session_is_read_from_its_executions() {
    let setup = Setup::new().await;
    let broker = setup.broker();
    let gate = RiskGate::persistent(setup.store.clone(), &["ibkr"]).unwrap();
    let reconciler = Reconciler::new(broker.clone(), setup.store.clone(), gate.clone(), Decimal::ONE_HUNDRED);
    let router = setup.router(broker.clone(), gate);
    let placed = router.submit("s@ibkr", OrderRef::new(1, 1), &intent(10, limit("150")), 1).await.unwrap();
    let Routed::Accepted { order, .. } = placed else { panic!("{placed:?}") };
    // It fills in two parts while the host is not looking; then the
    // gateway's day ends: the order's status answers 503 and the live
    // orders no longer list it.
    setup.fake.fill_part_of_open_orders("4", "149");
    setup.fake.fill_open_orders("151");
    setup.fake.new_session();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let report = reconciler.sync(2).await.unwrap();
    assert_eq!(report.fills.len(), 1, "{report:?}");
    let fill = &report.fills[0];
    assert_eq!((fill.qty, fill.price), (Decimal::TEN, "150.2".parse().unwrap()), "4 at 149 and 6 at 151");
    let stored = setup.store.order(&order.client_order_id).unwrap().unwrap();
    assert_eq!(stored.status, OrderStatus::Filled);
    assert_eq!(stored.venue_order_id.as_deref(), Some(order.venue_order_id.as_str()), "its id is kept");
    assert!(reconciler.sync(3).await.unwrap().fills.is_empty(), "recorded once");
    // A lookup before a resend finds it the same way: it is not sent again.
    let found = broker.order_by_client_id("AAPL", &order.client_order_id).await.unwrap();
    assert_eq!(found.map(|o| o.filled_qty), Some(Decimal::TEN));
    // Fractions of a share never leave.
    let fraction = OrderRequest {
        client_order_id: "f".into(),
        symbol: "AAPL".into(),
        side: Side::Buy,
        qty: "0.5".parse().unwrap(),
        order_type: OrderType::Market,
        time_in_force: TimeInForce::Day,
    };
    let err = broker.submit(&fraction).await.unwrap_err();
    assert!(err.to_string().contains("whole number of shares"), "{err}");
    assert_eq!(setup.fake.order_posts(), 1);
}
