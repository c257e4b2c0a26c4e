//! `stratbox data download` as a user runs it: the real binary against the
//! fake venues on loopback, through throttling, passing failures and
//! SIGKILL at random points; the files must equal the venue's bars, and
//! `backtest` must read them as written.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stratbox_tests::cli;
use stratbox_tests::fake::{FakeVenue, Fault};

const BINARY: &str = env!("CARGO_BIN_EXE_stratbox-under-test");
/// 2024-01-01T00:00:00Z.
const T0: i64 = 1_704_067_200_000;
const MINUTE: i64 = 60_000;

fn kline(minute: i64) -> Value {
    let open = T0 + minute * MINUTE;
    let close = format!("{}.{:02}", 100 + minute % 37, minute % 100);
    json!([
        open,
        "100.00",
        "140.00",
        "90.00",
        close,
        format!("{}", 5 + minute % 11),
        open + MINUTE - 1,
        "1",
        3,
        "1",
        "1",
        "0"
    ])
}

/// The rows a file must hold for these klines: time and close.
fn expected_rows(klines: &[Value]) -> Vec<(String, String)> {
    klines
        .iter()
        .map(|k| (stratbox::bar::format_time(k[0].as_i64().unwrap()), k[4].as_str().unwrap().to_string()))
        .collect()
}

fn file_rows(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("time,open,high,low,close,volume"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 6, "a whole row: {l}");
            (f[0].to_string(), f[4].to_string())
        })
        .collect()
}

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(BINARY);
    command
        .args(["data", "download"])
        .args(args)
        .env("APCA_API_KEY_ID", "test-key")
        .env("APCA_API_SECRET_KEY", "test-secret")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    command
}

/// Runs a download to its end, off the runtime that serves the fake.
async fn download(args: &[&str]) -> Output {
    let mut command = command(args);
    tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap()
}

fn minutes(n: i64) -> String {
    (T0 + n * MINUTE).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binance_history_survives_a_429_and_reads_back_in_a_backtest() {
    let venue = FakeVenue::start().await;
    let (btc, eth): (Vec<_>, Vec<_>) = ((0..12_000).map(kline).collect(), (0..3_000).map(kline).collect());
    {
        let mut s = venue.state.lock().unwrap();
        s.binance_klines.insert("BTCUSDT".into(), btc.clone());
        s.binance_klines.insert("ETHUSDT".into(), eth.clone());
        // Throttled in the middle of the first symbol, for one second.
        s.faults_after = 3;
        s.faults.push_back(Fault::Status { code: 429, retry_after: Some(1) });
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bars");
    let out_s = out.to_str().unwrap();
    let to = minutes(12_000);
    let args =
        ["--venue", "binance", "--symbols", "BTCUSDT,ETHUSDT", "--from", "2024-01-01", "--to", &to, "--out", out_s];
    let args: Vec<&str> = args.into_iter().chain(["--url", &venue.url]).collect();
    let started = Instant::now();
    let output = download(&args).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(started.elapsed() >= Duration::from_secs(1), "the Retry-After was waited out");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("BTCUSDT.csv: 12000 new bars") && stdout.contains("ETHUSDT.csv: 3000 new bars"),
        "{stdout}"
    );
    assert_eq!(file_rows(&out.join("BTCUSDT.csv")), expected_rows(&btc));
    assert_eq!(file_rows(&out.join("ETHUSDT.csv")), expected_rows(&eth));
    let requests = venue.requests();
    assert!(requests.iter().all(|r| r.contains("limit=1000") && r.contains("interval=1m")), "{requests:?}");
    // One request a window of 999 up to --to for each symbol (most of
    // ETHUSDT's find nothing), and the throttled one asked again.
    assert_eq!(requests.len(), 13 + 13 + 1, "{requests:#?}");

    // Again: nothing to fetch, nothing changed.
    let before = std::fs::read(out.join("BTCUSDT.csv")).unwrap();
    let again = download(&args).await;
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("BTCUSDT.csv: 0 new bars"));
    assert_eq!(std::fs::read(out.join("BTCUSDT.csv")).unwrap(), before);
    assert_eq!(venue.requests().len(), requests.len(), "a complete download asks for nothing");

    // A later --to extends the files from where they end.
    let to = minutes(12_500);
    let later: Vec<&str> = args.iter().map(|a| if a.starts_with("17") { to.as_str() } else { a }).collect();
    venue.state.lock().unwrap().binance_klines.insert("BTCUSDT".into(), (0..12_500).map(kline).collect());
    let extended = download(&later).await;
    assert!(extended.status.success(), "{}", String::from_utf8_lossy(&extended.stderr));
    assert_eq!(file_rows(&out.join("BTCUSDT.csv")), expected_rows(&(0..12_500).map(kline).collect::<Vec<_>>()));
    let first_new = &venue.requests()[requests.len()];
    assert!(first_new.contains(&format!("startTime={}", minutes(12_000))), "{first_new}");

    // backtest reads the folder as it is: two symbols, every bar.
    let folder = out_s.to_string();
    let (result, text) = tokio::task::spawn_blocking(move || {
        cli(&["backtest", "--strategy", "sma-crossover", "--data", &folder, "--format", "json"])
    })
    .await
    .unwrap();
    result.unwrap();
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["bars"], 12_500 + 3_000, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_killed_at_random_points_ends_with_every_bar_once() {
    const BARS: i64 = 40_000;
    let venue = FakeVenue::start().await;
    let klines: Vec<Value> = (0..BARS).map(kline).collect();
    {
        let mut s = venue.state.lock().unwrap();
        s.binance_klines.insert("BTCUSDT".into(), klines.clone());
        s.bars_delay = Some(Duration::from_millis(15));
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bars");
    let file = out.join("BTCUSDT.csv");
    let to = minutes(BARS);
    let args = [
        "--venue",
        "binance",
        "--symbols",
        "BTCUSDT",
        "--from",
        "2024-01-01T00:00:00Z",
        "--to",
        &to,
        "--out",
        out.to_str().unwrap(),
        "--url",
        &venue.url,
    ];
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    eprintln!("seed {seed}");
    let mut random = move |below: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % below.max(1)
    };
    let mut kills = 0;
    for round in 0..4 {
        let rows_now = std::fs::read_to_string(&file).map_or(0, |t| t.lines().count() as u64);
        // Somewhere in what is left, at least one window on.
        let target = rows_now + 1 + random((BARS as u64).saturating_sub(rows_now).saturating_sub(6_000));
        let mut child = command(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            let rows = std::fs::read_to_string(&file).map_or(0, |t| t.lines().count() as u64);
            if rows >= target || Instant::now() > deadline {
                child.kill().unwrap();
                child.wait().unwrap();
                kills += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if round == 1 {
            // As if killed in the middle of a write: a torn row at the end.
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new().append(true).open(&file).unwrap();
            f.write_all(b"2024-02-01T00:00:00Z,1.5,2").unwrap();
        }
    }
    assert_eq!(kills, 4, "every round was killed before it finished");
    let pages_before = venue.requests().len();
    let last = download(&args).await;
    assert!(last.status.success(), "{}", String::from_utf8_lossy(&last.stderr));
    let (rows, expected) = (file_rows(&file), expected_rows(&klines));
    let first_difference = rows.iter().zip(&expected).position(|(a, b)| a != b);
    assert!(
        rows.len() == expected.len() && first_difference.is_none(),
        "after {kills} kills: {} rows for {}, first difference at {first_difference:?}: {:?}",
        rows.len(),
        expected.len(),
        first_difference.map(|i| &rows[i.saturating_sub(2)..(i + 3).min(rows.len())])
    );
    // Each run redoes at most the one request it was killed in.
    let pages = venue.requests().len();
    let starts: Vec<String> = venue
        .requests()
        .iter()
        .filter_map(|r| r.split("startTime=").nth(1).map(|t| t.split('&').next().unwrap_or_default().to_string()))
        .collect();
    assert!(pages <= 41 + kills + 1, "{pages} pages for 41 after {kills} kills (resumed, not restarted): {starts:?}");
    assert!(pages_before < pages || kills == 0, "the last run had work left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpaca_and_kalshi_history_page_within_their_caps_and_retry_passing_failures() {
    let venue = FakeVenue::start().await;
    let alpaca = |minute: i64| {
        let t = stratbox::bar::format_time(T0 + minute * MINUTE);
        json!({"t": t, "o": 10, "h": 11, "l": 9, "c": 10 + minute % 7, "v": 100, "n": 1, "vw": 10})
    };
    let kalshi = |minute: i64| {
        json!({"end_period_ts": (T0 + (minute + 1) * MINUTE) / 1000, "volume": 3,
               "price": {"open": 40, "high": 50, "low": 30, "close": 41 + minute % 9}})
    };
    {
        let mut s = venue.state.lock().unwrap();
        for minute in 0..7_000 {
            s.alpaca_bars.push(("AAPL".into(), alpaca(minute)));
            s.alpaca_bars.push(("MSFT".into(), alpaca(minute)));
        }
        s.kalshi_candles.insert(("KXHIGHNY".into(), "KXHIGHNY-24JAN01-T60".into()), (0..7_000).map(kalshi).collect());
        s.faults.push_back(Fault::Status { code: 503, retry_after: None });
        s.faults.push_back(Fault::Status { code: 429, retry_after: Some(0) });
    }
    let dir = tempfile::tempdir().unwrap();
    let to = minutes(7_000);
    let out = dir.path().join("stocks");
    let output = download(&[
        "--venue",
        "alpaca",
        "--symbols",
        "AAPL,MSFT",
        "--timeframe",
        "1Min",
        "--from",
        "2024-01-01",
        "--to",
        &to,
        "--out",
        out.to_str().unwrap(),
        "--url",
        &venue.url,
    ])
    .await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for symbol in ["AAPL", "MSFT"] {
        let rows = file_rows(&out.join(format!("{symbol}.csv")));
        assert_eq!(rows.len(), 7_000);
        assert_eq!(rows[6_999], (stratbox::bar::format_time(T0 + 6_999 * MINUTE), "16".into()));
    }
    let alpaca_requests = venue.requests();
    // One page a symbol, the first asked three times.
    assert_eq!(alpaca_requests.len(), 2 + 2, "{alpaca_requests:#?}");
    assert!(alpaca_requests.iter().all(|r| r.contains("end=") && r.contains("symbols=")));

    let out = dir.path().join("events");
    let output = download(&[
        "--venue",
        "kalshi",
        "--symbols",
        "KXHIGHNY-24JAN01-T60",
        "--from",
        "2024-01-01",
        "--to",
        &to,
        "--out",
        out.to_str().unwrap(),
        "--url",
        &venue.url,
        "--format",
        "json",
    ])
    .await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report[0]["added"], 7_000);
    let rows = file_rows(&out.join("KXHIGHNY-24JAN01-T60.csv"));
    assert_eq!(rows[0], (stratbox::bar::format_time(T0), "0.41".into()));
    assert_eq!(rows.len(), 7_000, "the fake refuses any request over 5,000 candles");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_holding_other_bars_is_never_mixed_into() {
    let venue = FakeVenue::start().await;
    venue.state.lock().unwrap().binance_klines.insert("BTCUSDT".into(), (0..100).map(kline).collect());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bars");
    let out_s = out.to_str().unwrap();
    let to = minutes(100);
    let run = |timeframe: &'static str, from: &'static str| {
        let (to, out_s, url) = (to.clone(), out_s.to_string(), venue.url.clone());
        async move {
            download(&[
                "--venue",
                "binance",
                "--symbols",
                "BTCUSDT",
                "--timeframe",
                timeframe,
                "--from",
                from,
                "--to",
                &to,
                "--out",
                &out_s,
                "--url",
                &url,
            ])
            .await
        }
    };
    assert!(run("1m", "2024-01-01T00:30:00Z").await.status.success());
    let held = std::fs::read(out.join("BTCUSDT.csv")).unwrap();
    let refusals = [
        (run("5m", "2024-01-01T00:30:00Z").await, "holds BTCUSDT binance 1m bars; this download asks for binance 5m"),
        (run("1m", "2024-01-01").await, "starts at 2024-01-01T00:30:00Z"),
        (run("7m", "2024-01-01").await, "timeframe `7m`"),
        (run("1m", "2024-02-01").await, "is not before --to"),
        (run("1m", "yesterday").await, "`yesterday` is not a date"),
    ];
    for (output, expected) in refusals {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains(expected), "{expected}: {stderr}");
    }
    assert_eq!(std::fs::read(out.join("BTCUSDT.csv")).unwrap(), held, "nothing written by a refused run");

    // A file the command did not write is left alone.
    std::fs::write(out.join("ETHUSDT.csv"), "Date,Close\n2024-01-01,1\n").unwrap();
    venue.state.lock().unwrap().binance_klines.insert("ETHUSDT".into(), (0..100).map(kline).collect());
    let output = command(&["--venue", "binance", "--symbols", "ETHUSDT,../x", "--from", "2024-01-01", "--out", out_s])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot name a file"));
    let output = download(&[
        "--venue",
        "binance",
        "--symbols",
        "ETHUSDT",
        "--from",
        "2024-01-01",
        "--to",
        &to,
        "--out",
        out_s,
        "--url",
        &venue.url,
    ])
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("was not written by `stratbox data download`"), "{stderr}");
    assert_eq!(std::fs::read_to_string(out.join("ETHUSDT.csv")).unwrap(), "Date,Close\n2024-01-01,1\n");
}
