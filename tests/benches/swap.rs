//! Managing instances while the host runs, measured on the real binary:
//! 1. how long an instance pauses for a hot swap, over 100 swaps through the
//!    control API, and what a neighbour's latency does meanwhile;
//! 2. the time from dropping a `.wasm` into the plugins folder to its first
//!    bar, compiled cold and loaded from the compile cache;
//! 3. how many idle instances one host holds, and their memory.
//!
//! `cargo bench -p stratbox-tests --bench swap`

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use stratbox_tests::process::{HostProcess, health, listening_address, memory_of, strategy, write_host_config};
use stratbox_tests::{SMA_CROSSOVER_WASM, with_custom_section};

const BINARY: &str = env!("CARGO_BIN_EXE_stratbox-under-test");

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn spawn(dir: &Path, sections: &str) -> (HostProcess, std::path::PathBuf) {
    let config = write_host_config(dir, sections);
    let out = dir.join("out.txt");
    let file = Stdio::from(std::fs::File::create(&out).expect("the output file"));
    (HostProcess::spawn_with(BINARY, &config, file, &[]), out)
}

/// Polls `/health` every 2 ms until `done` holds (at most a minute).
async fn until(client: &reqwest::Client, addr: &str, done: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(&health(client, addr).await) {
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn swap_pauses() {
    let dir = tempfile::tempdir().unwrap();
    let sma = std::fs::read(SMA_CROSSOVER_WASM).unwrap();
    let plugin = dir.path().join("sma.wasm");
    std::fs::write(&plugin, &sma).unwrap();
    let sections = format!(
        "[feed]\nkind = \"replay\"\ndata = \"bundled:AAPL\"\nsymbol = \"AAPL\"\npace_ms = 20\n\n\
         [runtime]\nwatch_ms = 0\n\n\
         [[strategy]]\nname = \"swapped\"\nplugin = {plugin:?}\n\n\
         [[strategy]]\nname = \"calm\"\nplugin = \"sma-crossover\"\n"
    );
    let (_host, out) = spawn(dir.path(), &sections);
    let addr = listening_address(&out).await;
    let client = reqwest::Client::new();
    until(&client, &addr, |h| strategy(h, "calm").is_some_and(|s| s["bars"].as_u64() > Some(64))).await;
    let calm_before = strategy(&health(&client, &addr).await, "calm").cloned().unwrap_or_default();
    let mut round_trips = Vec::new();
    for i in 0..100u32 {
        let build = with_custom_section(&sma, "bench", &i.to_le_bytes());
        let started = Instant::now();
        let response = client.post(format!("{addr}/api/v1/instances/swapped/swap")).body(build).send().await.unwrap();
        assert_eq!(response.status(), 200);
        round_trips.push(started.elapsed().as_micros() as u64);
    }
    let calm_after = strategy(&health(&client, &addr).await, "calm").cloned().unwrap_or_default();
    let text = std::fs::read_to_string(&out).unwrap();
    let mut pauses: Vec<u64> =
        text.lines().filter_map(|l| l.split("(paused ").nth(1)?.split(' ').next()?.parse().ok()).collect();
    assert_eq!(pauses.len(), 100, "{text}");
    pauses.sort_unstable();
    round_trips.sort_unstable();
    println!("## hot swap: the instance's pause, 100 swaps of the SMA through the API");
    println!("| | p50 | p99 | max |\n|---|---|---|---|");
    println!(
        "| instance paused (save, restore, replace) | {} µs | {} µs | {} µs |",
        percentile(&pauses, 0.5),
        percentile(&pauses, 0.99),
        pauses[99]
    );
    println!(
        "| API round trip (upload, compile in the child, start, swap) | {:.1} ms | {:.1} ms | {:.1} ms |",
        percentile(&round_trips, 0.5) as f64 / 1e3,
        percentile(&round_trips, 0.99) as f64 / 1e3,
        round_trips[99] as f64 / 1e3
    );
    let latency = |s: &serde_json::Value| {
        format!(
            "p50 {} µs, p99 {} µs, max {} µs (last 64 bars)",
            s["latency"]["p50_us"], s["latency"]["p99_us"], s["latency"]["max_us"]
        )
    };
    println!("\nthe neighbour `calm` before the swaps: {}", latency(&calm_before));
    println!("the neighbour `calm` after the swaps:  {}", latency(&calm_after));
}

async fn drop_to_first_bar() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let sections = format!(
        "[feed]\nkind = \"replay\"\ndata = \"bundled:AAPL\"\nsymbol = \"AAPL\"\npace_ms = 5\n\n\
         [runtime]\nwatch_ms = 25\ncompile_cache = {:?}\n\n[plugins]\ndir = {plugins:?}\n",
        dir.path().join("compiled")
    );
    let (_host, out) = spawn(dir.path(), &sections);
    let addr = listening_address(&out).await;
    let client = reqwest::Client::new();
    let sma = std::fs::read(SMA_CROSSOVER_WASM).unwrap();
    let mut timings: Vec<(&str, u64)> = Vec::new();
    for i in 0..5u32 {
        let build = with_custom_section(&sma, "bench", &i.to_le_bytes());
        for (kind, name) in [("cold", format!("cold{i}")), ("cached", format!("warm{i}"))] {
            let aside = plugins.join(format!(".{name}.tmp"));
            std::fs::write(&aside, &build).unwrap();
            let started = Instant::now();
            std::fs::rename(&aside, plugins.join(format!("{name}.wasm"))).unwrap();
            until(&client, &addr, |h| strategy(h, &name).is_some_and(|s| s["bars"].as_u64() > Some(0))).await;
            timings.push((kind, started.elapsed().as_millis() as u64));
        }
    }
    println!("\n## from a file dropped into the plugins folder to its first bar (watch_ms = 25, a bar every 5 ms)");
    println!("| | median | each |\n|---|---|---|");
    for kind in ["cold", "cached"] {
        let mut each: Vec<u64> = timings.iter().filter(|(k, _)| *k == kind).map(|(_, ms)| *ms).collect();
        let shown = each.iter().map(|ms| format!("{ms}")).collect::<Vec<_>>().join(", ");
        each.sort_unstable();
        println!("| {kind} | {} ms | {shown} ms |", percentile(&each, 0.5));
    }
}

async fn idle_instances() {
    println!("\n## idle instances of the bundled SMA in one host");
    println!("| instances | host RSS | per instance past the first |\n|---|---|---|");
    let mut first = 0u64;
    for n in [1u32, 64, 256, 1024] {
        let dir = tempfile::tempdir().unwrap();
        let mut sections = format!(
            "[feed]\nkind = \"replay\"\ndata = \"bundled:AAPL\"\nsymbol = \"AAPL\"\npace_ms = 600000\n\n\
             [runtime]\nwatch_ms = 0\nmax_instances = {}\n",
            n + 8
        );
        for i in 0..n {
            sections.push_str(&format!("\n[[strategy]]\nname = \"idle{i}\"\nplugin = \"sma-crossover\"\n"));
        }
        let (host, out) = spawn(dir.path(), &sections);
        let addr = listening_address(&out).await;
        let client = reqwest::Client::new();
        until(&client, &addr, |h| {
            h["strategies"]
                .as_array()
                .is_some_and(|s| s.len() == n as usize && s.iter().all(|s| s["state"] == "running"))
        })
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = memory_of(host.id(), "VmRSS");
        if n == 1 {
            first = rss;
        }
        let per =
            if n > 1 { format!("{:.0} KiB", (rss - first) as f64 / f64::from(n - 1) / 1024.0) } else { "-".into() };
        println!("| {n} | {:.1} MiB | {per} |", rss as f64 / f64::from(1 << 20));
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        swap_pauses().await;
        drop_to_first_bar().await;
        idle_instances().await;
    });
}
