//! Backtests of the real SMA crossover plugin against an independent
//! reference implementation of its rules, on the bundled daily bars.

use std::str::FromStr;

use rust_decimal::Decimal;
use stratbox::bar::format_time;
use stratbox::broker::{Commission, PaperBroker};
use stratbox::engine::Engine;
use stratbox::feed::{CsvLimits, load_csv};
use stratbox::report::Report;
use stratbox::risk::RiskLimits;
use stratbox::runtime::{Budget, Clock, Runtime, RuntimeConfig};
use stratbox::strategy::Strategy;
use stratbox_tests::{PATIENCE, SMA_CROSSOVER_WASM, cli, data};

#[derive(Debug, Clone, PartialEq)]
struct RefFill {
    time: String,
    side: &'static str,
    qty: Decimal,
    price: Decimal,
}

/// The rules of the issue, written plainly: SMAs recomputed from scratch
/// with exact decimal division, a cross needs the last non-zero difference
/// of the other sign, and an order fills at the next bar's open.
fn reference(csv: &str, fast: usize, slow: usize, qty: Decimal) -> Vec<RefFill> {
    let rows: Vec<(String, Decimal, Decimal)> = csv
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            (f[0].to_string(), Decimal::from_str(f[1]).unwrap(), Decimal::from_str(f[4]).unwrap())
        })
        .collect();
    let sma = |i: usize, n: usize| rows[i + 1 - n..=i].iter().map(|r| r.2).sum::<Decimal>() / Decimal::from(n);
    let mut fills = Vec::new();
    let mut last_sign = 0;
    let mut long = false;
    let mut pending: Option<&'static str> = None;
    for (i, (date, open, _)) in rows.iter().enumerate() {
        if let Some(side) = pending.take() {
            fills.push(RefFill { time: format!("{date}T00:00:00Z"), side, qty, price: *open });
        }
        if i + 1 < slow {
            continue;
        }
        let d = sma(i, fast) - sma(i, slow);
        let sign = if d > Decimal::ZERO {
            1
        } else if d < Decimal::ZERO {
            -1
        } else {
            0
        };
        if sign == 0 {
            continue;
        }
        if last_sign == -1 && sign == 1 && !long {
            pending = Some("buy");
            long = true;
        } else if last_sign == 1 && sign == -1 && long {
            pending = Some("sell");
            long = false;
        }
        last_sign = sign;
    }
    fills
}

fn realized(fills: &[RefFill]) -> Decimal {
    fills.iter().map(|f| if f.side == "sell" { f.price * f.qty } else { -f.price * f.qty }).sum::<Decimal>()
        + if fills.len() % 2 == 1 { fills.last().map_or(Decimal::ZERO, |f| f.price * f.qty) } else { Decimal::ZERO }
}

/// A runtime as a backtest has: no restarts, a deadline no call comes near.
fn runtime() -> Runtime {
    let budget = Budget { call_timeout: PATIENCE, ..Default::default() };
    Runtime::new(RuntimeConfig { max_restarts: 0, max_instances: 8, budget, ..Default::default() }).unwrap()
}

fn backtest(file: &str, params: &[(&str, &str)], batch: usize) -> Report {
    let runtime = runtime();
    let bytes = std::fs::read(SMA_CROSSOVER_WASM).unwrap();
    let plugin = runtime.load(SMA_CROSSOVER_WASM, &bytes).unwrap();
    let symbol = file.trim_end_matches(".csv");
    let bars = load_csv(&data(file), symbol, CsvLimits::default()).unwrap();
    let params: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let strategy = runtime.instantiate(&plugin, &params, Clock::virtual_at(bars[0].time)).unwrap();
    let mut engine = Engine::new(
        Box::new(strategy),
        Box::new(PaperBroker::default()),
        RiskLimits::default(),
        Decimal::from(100_000),
    );
    engine.run(&bars, batch).unwrap();
    engine.report(symbol)
}

fn assert_matches_reference(file: &str, fast: usize, slow: usize, qty: &str) {
    let qty_dec = Decimal::from_str(qty).unwrap();
    let report = backtest(file, &[("fast", &fast.to_string()), ("slow", &slow.to_string()), ("qty", qty)], 256);
    let csv = std::fs::read_to_string(data(file)).unwrap();
    let expected = reference(&csv, fast, slow, qty_dec);
    assert!(expected.len() > 20, "{file}: the reference should trade, got {} fills", expected.len());
    let got: Vec<RefFill> = report
        .fills
        .iter()
        .map(|f| RefFill {
            time: f.time.clone(),
            side: if f.side == stratbox::order::Side::Buy { "buy" } else { "sell" },
            qty: f.qty,
            price: f.price,
        })
        .collect();
    assert_eq!(got, expected, "{file} fast={fast} slow={slow}: fills differ from the reference");
    // Closed round trips give the realized PnL (no commission by default).
    let closed: Vec<RefFill> = expected[..expected.len() - expected.len() % 2].to_vec();
    assert_eq!(report.realized_pnl, realized(&closed), "{file}: realized pnl");
    let position = if expected.len() % 2 == 1 { qty_dec } else { Decimal::ZERO };
    assert_eq!(report.final_position, position);
    assert_eq!(report.bars as usize, csv.lines().count() - 1);
}

#[test]
fn ibm_with_default_params_matches_the_reference() {
    assert_matches_reference("IBM.csv", 5, 20, "1");
}

#[test]
fn other_windows_and_symbols_match_the_reference() {
    assert_matches_reference("IBM.csv", 10, 30, "3");
    assert_matches_reference("AAPL.csv", 3, 7, "0.5");
    assert_matches_reference("GOOG.csv", 20, 50, "2");
}

#[test]
fn results_do_not_depend_on_the_batch_size() {
    let one = backtest("MSFT.csv", &[], 1);
    for batch in [7, 256, 100_000] {
        assert_eq!(backtest("MSFT.csv", &[], batch), one, "batch {batch}");
    }
}

#[test]
fn the_report_has_the_documented_numbers() {
    let report = backtest("IBM.csv", &[], 64);
    let first = &report.fills[0];
    assert_eq!(first.side, stratbox::order::Side::Buy, "long-only: the first fill buys");
    assert!(first.time.ends_with("T00:00:00Z"), "daily bars fill at midnight UTC: {}", first.time);
    assert_eq!(report.orders, report.fills.len() as u64 + report.open_orders);
    assert!(report.max_drawdown > Decimal::ZERO && report.max_drawdown_pct < Decimal::ONE);
    assert_eq!(report.final_equity, report.starting_cash + report.realized_pnl + report.unrealized_pnl);
}

#[test]
fn state_saved_mid_run_resumes_identically() {
    let runtime = runtime();
    let plugin = runtime.load("sma", &std::fs::read(SMA_CROSSOVER_WASM).unwrap()).unwrap();
    let bars = load_csv(&data("AAPL.csv"), "AAPL", CsvLimits::default()).unwrap();
    let fresh = || Box::new(runtime.instantiate(&plugin, &[], Clock::virtual_at(0)).unwrap());
    let engine_for = |strategy: Box<dyn Strategy>| {
        Engine::new(
            strategy,
            Box::new(PaperBroker::new(Commission::default())),
            RiskLimits::default(),
            Decimal::from(100_000),
        )
    };
    let mut whole = engine_for(fresh());
    whole.run(&bars, 50).unwrap();
    let whole = whole.report("AAPL");

    // Split just after a fill, where no order is in flight.
    let fill_bars: Vec<usize> =
        whole.fills.iter().map(|f| bars.iter().position(|b| format_time(b.time) == f.time).unwrap()).collect();
    let split = fill_bars.windows(2).find(|w| w[0] > 1000 && w[1] > w[0] + 2).map(|w| w[0] + 1).unwrap();

    let mut first = engine_for(fresh());
    first.run(&bars[..split], 50).unwrap();
    let state = first.strategy_mut().save_state().unwrap();

    let mut second = fresh();
    second.load_state(&state).unwrap();
    assert_eq!(second.save_state().unwrap(), state, "load-state then save-state round-trips exactly");
    assert!(second.load_state(b"garbage").is_err(), "a corrupt state is refused");
    second.load_state(&state).unwrap();

    let mut resumed = engine_for(second);
    resumed.run(&bars[split..], 50).unwrap();
    let key = |f: &stratbox::report::FillRecord| (f.time.clone(), f.side, f.price);
    let after_split: Vec<_> = whole.fills.iter().filter(|f| f.time >= format_time(bars[split].time)).map(key).collect();
    let got: Vec<_> = resumed.report("AAPL").fills.iter().map(key).collect();
    assert!(!got.is_empty());
    assert_eq!(got, after_split);
}

#[test]
fn the_cli_prints_stable_json() {
    let path = data("IBM.csv");
    let (result, out) =
        cli(&["backtest", "--strategy", SMA_CROSSOVER_WASM, "--data", path.to_str().unwrap(), "--format", "json"]);
    result.unwrap();
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    for key in ["bars", "orders", "realized_pnl", "final_position", "fills", "unrealized_pnl", "max_drawdown"] {
        assert!(json.get(key).is_some(), "missing {key} in {out}");
    }
    assert_eq!(json["bars"], 3270);
    let fill = &json["fills"][0];
    assert_eq!(fill["side"], "buy");
    assert!(fill["price"].is_number() && fill["qty"].is_number() && fill["time"].is_string(), "{fill}");
    // The bundled name resolves to the same plugin and the same result.
    let (bundled, out2) =
        cli(&["backtest", "--strategy", "sma-crossover", "--data", path.to_str().unwrap(), "--format", "json"]);
    bundled.unwrap();
    let json2: serde_json::Value = serde_json::from_str(&out2).unwrap();
    assert_eq!(json2["fills"], json["fills"]);
}

/// The same bars written as vendors and exchanges write them (wall-clock
/// times in New York, epoch milliseconds, RFC 3339 with an offset) give
/// the same backtest; a zone that does not exist is a clear error.
#[test]
fn the_same_bars_in_any_common_time_layout_trade_the_same() {
    let source = std::fs::read_to_string(data("IBM.csv")).unwrap();
    let rows: Vec<&str> = source.lines().skip(1).take(400).collect();
    let dir = tempfile::tempdir().unwrap();
    // Each day's bar at 16:00 in New York, which is 20:00 or 21:00 UTC.
    let zone = jiff::tz::TimeZone::get("America/New_York").unwrap();
    let mut layouts: Vec<(&str, String, Vec<&str>)> = vec![
        ("wall-clock.csv", "datetime,open,high,low,close,volume,adj close\n".into(), vec!["--tz", "America/New_York"]),
        ("epoch.csv", "open_time,o,h,l,c,v\n".into(), vec![]),
        ("rfc3339.csv", "Timestamp,Open,High,Low,Close,Volume\n".into(), vec!["--tz", "Asia/Tokyo"]),
    ];
    for row in &rows {
        let (date, rest) = row.split_once(',').unwrap();
        let civil: jiff::civil::DateTime = format!("{date}T16:00:00").parse().unwrap();
        let zoned = civil.to_zoned(zone.clone()).unwrap();
        layouts[0].1.push_str(&format!("{date} 16:00:00,{rest},0\n"));
        layouts[1].1.push_str(&format!("{},{rest}\n", zoned.timestamp().as_millisecond()));
        layouts[2].1.push_str(&format!("{},{rest}\n", zoned.strftime("%Y-%m-%dT%H:%M:%S%:z")));
    }
    let mut reports = Vec::new();
    for (name, text, flags) in &layouts {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let args = [
            &[
                "backtest",
                "--strategy",
                "sma-crossover",
                "--data",
                path.to_str().unwrap(),
                "--symbol",
                "IBM",
                "--format",
                "json",
            ],
            &flags[..],
        ]
        .concat();
        let (result, out) = cli(&args);
        result.unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut json: serde_json::Value = serde_json::from_str(&out).unwrap();
        json.as_object_mut().unwrap().remove("symbol");
        reports.push(json);
    }
    assert_eq!(reports[0]["bars"], 400);
    assert!(reports[0]["fills"].as_array().is_some_and(|f| !f.is_empty()));
    assert_eq!(reports[0], reports[1], "wall-clock in New York and epoch ms agree");
    assert_eq!(reports[0], reports[2], "an offset wins over --tz");
    let first_fill = reports[0]["fills"][0]["time"].as_str().unwrap().to_string();
    assert!(first_fill.ends_with("T20:00:00Z") || first_fill.ends_with("T21:00:00Z"), "{first_fill}");

    let path = dir.path().join("wall-clock.csv");
    let (result, _) =
        cli(&["backtest", "--strategy", "sma-crossover", "--data", path.to_str().unwrap(), "--tz", "Nowhere/Special"]);
    let err = result.unwrap_err().to_string();
    assert!(err.contains("`Nowhere/Special` is not an IANA time zone"), "{err}");
}

/// Several files are one backtest: the symbols' bars merge in time order,
/// the SMA trades each as it would alone, and the report breaks the profit
/// down per symbol. A folder means its CSV files.
#[test]
fn a_backtest_over_several_symbols_trades_each_as_alone_and_reports_each() {
    let json = |args: &[&str]| -> serde_json::Value {
        let (result, out) = cli(&[&["backtest", "--strategy", "sma-crossover", "--format", "json"], args].concat());
        result.unwrap_or_else(|e| panic!("{args:?}: {e}"));
        serde_json::from_str(&out).unwrap()
    };
    let (ibm, msft) = (data("IBM.csv"), data("MSFT.csv"));
    let (ibm, msft) = (ibm.to_str().unwrap(), msft.to_str().unwrap());
    let pair = json(&["--data", ibm, "--data", msft]);
    let alone = [json(&["--data", ibm]), json(&["--data", msft])];
    assert_eq!(pair["bars"], alone[0]["bars"].as_u64().unwrap() + alone[1]["bars"].as_u64().unwrap());
    let symbols = pair["symbols"].as_array().unwrap();
    assert_eq!(symbols.len(), 2, "{symbols:?}");
    for (single, name) in alone.iter().zip(["IBM", "MSFT"]) {
        let part = symbols.iter().find(|s| s["symbol"] == name).unwrap();
        let fills: Vec<&serde_json::Value> =
            pair["fills"].as_array().unwrap().iter().filter(|f| f["symbol"] == name).collect();
        let single_fills: Vec<&serde_json::Value> = single["fills"].as_array().unwrap().iter().collect();
        assert_eq!(fills, single_fills, "{name} trades as it would alone");
        assert_eq!(part["fills"], single_fills.len());
        assert_eq!(part["realized_pnl"], single["realized_pnl"], "{name}");
        assert_eq!(part["final_position"], single["final_position"], "{name}");
    }
    let times: Vec<&str> = pair["fills"].as_array().unwrap().iter().map(|f| f["time"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "fills in time order");

    // A folder of the two is the same backtest.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(ibm, dir.path().join("IBM.csv")).unwrap();
    std::fs::copy(msft, dir.path().join("MSFT.csv")).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not bars").unwrap();
    let folder = json(&["--data", dir.path().to_str().unwrap()]);
    assert_eq!(folder["fills"], pair["fills"]);

    // Refused: one symbol twice, --symbol with several files, an empty folder.
    for (args, needle) in [
        (vec!["--data", ibm, "--data", ibm], "two files hold symbol IBM"),
        (vec!["--data", ibm, "--data", msft, "--symbol", "X"], "--symbol names the one file"),
        (vec!["--data", dir.path().join("empty").to_str().unwrap()], "cannot read"),
    ] {
        if args.iter().any(|a| a.ends_with("empty")) {
            std::fs::create_dir_all(dir.path().join("empty")).unwrap();
        }
        let (result, _) = cli(&[&["backtest", "--strategy", "sma-crossover"], &args[..]].concat());
        let err = result.unwrap_err().to_string();
        assert!(err.contains(needle) || err.contains("holds no .csv"), "{args:?}: {err}");
    }
}
