//! Settling after a restart with a backlog: `ORDERS` orders committed as
//! `queued` by strategies before a crash, none sent. The venue desk starts
//! against the fake Alpaca (which fills each order a few requests after
//! taking it) and the clock runs until every order is sent, filled and
//! recorded. What matters besides the total: reconciliation is not held up
//! by the backlog, so the first fill is recorded long before the last
//! order is sent.
//!
//! `cargo bench -p stratbox-tests --bench backlog` (release profile).

use std::sync::Arc;
use std::time::{Duration, Instant};

use stratbox::broker::{AlpacaBroker, AlpacaCredentials, Broker};
use stratbox::engine::VenueDesk;
use stratbox::order::OrderStatus;
use stratbox::reconcile::Reconciler;
use stratbox::risk::RiskGate;
use stratbox::router::{Router, RouterConfig};
use stratbox::store::{OrderRecord, Store};
use stratbox_tests::fake::FakeVenue;

const ORDERS: u64 = 651;

async fn run(sync_every: Duration) {
    let venue = FakeVenue::start().await;
    {
        let mut s = venue.state.lock().unwrap();
        s.auto_fill = Some("10".into());
        s.fill_after_requests = Some(2);
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("backlog.db")).unwrap());
    let intent = stratbox_tests::market_buy(1);
    let queued: Vec<OrderRecord> = (1..=ORDERS)
        .map(|n| {
            OrderRecord::for_intent(
                "alpaca",
                "bench@alpaca",
                stratbox::order::OrderRef::new(1, n),
                &intent,
                OrderStatus::Queued,
                1,
            )
        })
        .collect();
    store.commit_input("bench@alpaca", None, 0, &queued, None, 1).unwrap();

    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let credentials = AlpacaCredentials { key_id: "k".into(), secret_key: "s".into() };
    let broker: Arc<dyn Broker> = Arc::new(AlpacaBroker::new(client, &venue.url, credentials));
    let gate = RiskGate::persistent(store.clone(), &["alpaca"]).unwrap();
    // The client-side limit is lifted: this measures the host, not Alpaca's quota.
    let config = RouterConfig { requests_per_minute: u32::MAX / 2, ..RouterConfig::default() };
    let router = Arc::new(Router::new(broker.clone(), store.clone(), config).with_gate(gate.clone()));
    let reconciler = Arc::new(Reconciler::new(broker, store.clone(), gate, rust_decimal::Decimal::ZERO));
    let desk = VenueDesk {
        router,
        reconciler,
        store: store.clone(),
        venue: "alpaca",
        engines: Default::default(),
        sync_every,
        metrics: stratbox::metrics::Metrics::detached(),
        updates: None,
    };
    let (requests, rx) = tokio::sync::mpsc::unbounded_channel();
    let start = Instant::now();
    let task = tokio::spawn(desk.run(rx));
    let filled = |n: u64| {
        store
            .filled(&stratbox::router::client_order_id("bench@alpaca", stratbox::order::OrderRef::new(1, n)))
            .unwrap()
            .0
    };
    let (mut first_fill, mut all_sent) = (None, None);
    loop {
        if first_fill.is_none() && (1..=ORDERS).any(|n| !filled(n).is_zero()) {
            first_fill = Some(start.elapsed());
        }
        if all_sent.is_none() && venue.state.lock().unwrap().orders.len() as u64 == ORDERS {
            all_sent = Some(start.elapsed());
        }
        if all_sent.is_some() && (1..=ORDERS).all(|n| !filled(n).is_zero()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let settled = start.elapsed();
    task.abort();
    drop(requests);
    let s = venue.state.lock().unwrap();
    assert_eq!(s.order_posts as u64, ORDERS, "each sent once");
    let local: rust_decimal::Decimal = store.positions("alpaca").unwrap().iter().map(|p| p.qty).sum();
    assert_eq!(local, rust_decimal::Decimal::from(ORDERS), "positions equal the broker's");
    let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    println!(
        "sync every {:>5} ms: {ORDERS} queued orders: first fill recorded at {:>7.1} ms, all sent at {:>7.1} ms, \
         all filled and recorded at {:>7.1} ms",
        sync_every.as_millis(),
        ms(first_fill),
        ms(all_sent),
        settled.as_secs_f64() * 1e3,
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        run(Duration::from_millis(250)).await;
        run(Duration::from_millis(1000)).await;
        run(Duration::from_millis(5000)).await;
    });
}
