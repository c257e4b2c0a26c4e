//! Router throughput and latency against the fake Alpaca on loopback:
//! each order is persisted, sent over HTTP, acknowledged and recorded.
//!
//! `cargo bench -p stratbox-tests --bench router` (release profile).

use std::sync::Arc;
use std::time::{Duration, Instant};

use stratbox::broker::{AlpacaBroker, AlpacaCredentials};
use stratbox::router::{Routed, Router, RouterConfig};
use stratbox::store::Store;
use stratbox_tests::fake::FakeVenue;

const ORDERS: u64 = 4000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

async fn run(concurrency: u64) {
    let venue = FakeVenue::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("bench.db")).unwrap());
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let broker = Arc::new(AlpacaBroker::new(
        client,
        &venue.url,
        AlpacaCredentials { key_id: "k".into(), secret_key: "s".into() },
    ));
    // The client-side limit is lifted: this measures the router, not Alpaca's quota.
    let config = RouterConfig { requests_per_minute: u32::MAX / 2, ..RouterConfig::default() };
    let router = Arc::new(Router::new(broker, store, config));
    let intent = stratbox_tests::market_buy(1);

    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (router, intent) = (router.clone(), intent.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for n in 0..ORDERS / concurrency {
                let t = Instant::now();
                let routed = router
                    .submit(&format!("bench-{worker}"), stratbox::order::OrderRef::new(1, n + 1), &intent, 0)
                    .await
                    .unwrap();
                assert!(matches!(routed, Routed::Accepted { .. }));
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let posts = venue.state.lock().unwrap().order_posts;
    assert_eq!(posts as u64, ORDERS);
    println!(
        "concurrency {concurrency:>2}: {ORDERS} orders in {:.3} s = {:>6.0} orders/s, p50 {:>7.1} µs, p99 {:>7.1} µs",
        elapsed.as_secs_f64(),
        ORDERS as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e6,
        percentile(&latencies, 0.99).as_secs_f64() * 1e6,
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        run(1).await;
        run(8).await;
    });
}
