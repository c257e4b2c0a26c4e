//! From an event at the venue to the strategy, on the real binary against
//! the fake Alpaca, with the venue's streams and with polling alone:
//! 1. fills: a strategy buys on each of 40 bars; the orders stay working
//!    until the bench fills them one at a time and times how long each takes
//!    to reach the strategy (the host's `fill #` line, printed as the engine
//!    hands the fill to `on-fills`); polling at the default sync interval (5 s);
//! 2. bars: the bench publishes a bar just after a poll boundary (every 5 s
//!    here, standing for the minute) and times it to the strategy's
//!    `on-bars` (its notification); polling waits the default 2 s after
//!    each boundary for the venue to publish.
//!
//! `cargo bench -p stratbox-tests --bench stream_latency`

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use stratbox_tests::MISBEHAVE_WASM;
use stratbox_tests::fake::{FakeVenue, alpaca_bar, alpaca_time};
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
        "{name:<34} n={:<3} mean {mean:>8.1} ms  p50 {:>8.1}  p90 {:>8.1}  max {:>8.1}",
        took.len(),
        at(0.5),
        at(0.9),
        at(1.0)
    );
}

fn bars_heard(out: &Path) -> usize {
    std::fs::read_to_string(out).unwrap_or_default().matches("seen ").count()
}

/// Milliseconds from each bar published at the venue to the strategy.
async fn measure_bars(stream: bool, rounds: i64) -> Vec<f64> {
    let venue = FakeVenue::start().await;
    {
        let mut s = venue.state.lock().unwrap();
        for minute in 0..40 {
            s.alpaca_bars.push(("AAPL".into(), alpaca_bar(minute, "10")));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let backfill = (now - alpaca_time(0)) / 60_000 + 10;
    let sections = format!(
        "[feed]\nkind = \"alpaca\"\nbase_url = \"{url}\"\nsymbols = [\"AAPL\"]\ntimeframe = \"1Min\"\n\
         poll_ms = 5000\ndelay_ms = 2000\nbackfill_minutes = {backfill}\nstream = {stream}\n\n\
         [[strategy]]\nname = \"watcher\"\nplugin = {MISBEHAVE_WASM:?}\nparams = {{ mode = \"ok\" }}\n",
        url = venue.url,
    );
    let config = write_host_config(dir.path(), &sections);
    let out = dir.path().join("out.txt");
    let _host = HostProcess::spawn(BINARY, &config, Stdio::from(std::fs::File::create(&out).unwrap()));
    listening_address(&out).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while bars_heard(&out) == 0 {
        assert!(Instant::now() < deadline, "no backfill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut took = Vec::new();
    for minute in 40..40 + rounds {
        // Just after a boundary, as a venue publishes a bar as it closes.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        tokio::time::sleep(Duration::from_millis(5000 - now % 5000 + 20)).await;
        let before = bars_heard(&out);
        let started = Instant::now();
        venue.publish_bar("AAPL", minute, "11");
        while bars_heard(&out) == before {
            assert!(started.elapsed() < Duration::from_secs(30), "a bar was never heard");
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        took.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    took
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    report("fills: stream (trade_updates)", measure(true, 40).await);
    report("fills: polling (sync every 5 s)", measure(false, 12).await);
    report("bars: stream", measure_bars(true, 10).await);
    report("bars: polling (2 s after close)", measure_bars(false, 5).await);
}
