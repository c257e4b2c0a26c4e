//! From a fill at the venue to the strategy hearing of it, on the real
//! binary against the fake Alpaca: with the trade updates stream, and with
//! polling alone at the default sync interval (5 s).
//!
//! A strategy buys on each of 40 bars; the orders stay working until the
//! bench fills them one at a time and times how long each takes to reach
//! the strategy (the host's `fill #` line, printed as the engine hands the
//! fill to the strategy's `on-fills`).
//!
//! `cargo bench -p stratbox-tests --bench fill_latency`

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use stratbox_tests::MISBEHAVE_WASM;
use stratbox_tests::fake::{FakeVenue, alpaca_bar};
use stratbox_tests::process::{HostProcess, alpaca_feed, listening_address, write_host_config};

const BINARY: &str = env!("CARGO_BIN_EXE_stratbox-under-test");

fn fills_heard(out: &Path) -> usize {
    std::fs::read_to_string(out).unwrap_or_default().matches("  fill  #").count()
}

/// Milliseconds from each fill at the venue to the strategy, `rounds` of them.
async fn measure(stream: bool, rounds: usize) -> Vec<f64> {
    let venue = FakeVenue::start().await;
    {
        let mut s = venue.state.lock().unwrap();
        for minute in 0..40 {
            s.alpaca_bars.push(("AAPL".into(), alpaca_bar(minute, "10")));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let sections = format!(
        "{feed}[broker]\nkind = \"alpaca\"\nbase_url = \"{url}\"\nstream = {stream}\n\n\
         [risk]\nmax_position = 1000\n\n\
         [[strategy]]\nname = \"buyer\"\nplugin = {MISBEHAVE_WASM:?}\nparams = {{ mode = \"buy\" }}\n",
        feed = alpaca_feed(&venue.url, 50),
        url = venue.url,
    );
    let config = write_host_config(dir.path(), &sections);
    let out = dir.path().join("out.txt");
    let _host = HostProcess::spawn(BINARY, &config, Stdio::from(std::fs::File::create(&out).unwrap()));
    listening_address(&out).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while venue.state.lock().unwrap().orders.len() < rounds {
        assert!(Instant::now() < deadline, "the strategy did not order");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut took = Vec::new();
    for _ in 0..rounds {
        let before = fills_heard(&out);
        let started = Instant::now();
        assert!(venue.fill_oldest_open_order("10"));
        while fills_heard(&out) == before {
            assert!(started.elapsed() < Duration::from_secs(30), "a fill was never heard");
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        took.push(started.elapsed().as_secs_f64() * 1000.0);
        // Fills land at random points of the sync interval.
        tokio::time::sleep(Duration::from_millis(37)).await;
    }
    took
}

fn report(name: &str, mut took: Vec<f64>) {
    took.sort_by(f64::total_cmp);
    let at = |p: f64| took[((took.len() - 1) as f64 * p).round() as usize];
    let mean = took.iter().sum::<f64>() / took.len() as f64;
    println!(
        "{name:<28} n={:<3} mean {mean:>8.1} ms  p50 {:>8.1}  p90 {:>8.1}  max {:>8.1}",
        took.len(),
        at(0.5),
        at(0.9),
        at(1.0)
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    report("stream (trade_updates)", measure(true, 40).await);
    report("polling (sync every 5 s)", measure(false, 12).await);
}
