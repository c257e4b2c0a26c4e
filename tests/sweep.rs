//! `stratbox sweep`: every combination of a grid backtested on shared bars,
//! the same table whatever the number of workers, shards that merge into
//! the whole, and rows that agree with a plain backtest of their
//! parameters.

use stratbox_tests::{cli, data};

fn sweep(dir: &std::path::Path, name: &str, extra: &[&str]) -> String {
    let out = dir.join(name);
    let ibm = data("IBM.csv");
    let args = [
        &[
            "sweep",
            "--strategy",
            "sma-crossover",
            "--data",
            ibm.to_str().unwrap(),
            "--grid",
            "fast=2..7",
            "--grid",
            "slow=10..30:5",
            "--param",
            "qty=3",
            "--out",
            out.to_str().unwrap(),
        ],
        extra,
    ]
    .concat();
    let (result, printed) = cli(&args);
    result.unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(printed.contains("the best"), "{printed}");
    std::fs::read_to_string(out).unwrap()
}

#[test]
fn a_sweep_is_the_same_on_any_number_of_workers_and_shards_merge_into_it() {
    let dir = tempfile::tempdir().unwrap();
    let one = sweep(dir.path(), "one.csv", &["--jobs", "1"]);
    let two = sweep(dir.path(), "two.csv", &["--jobs", "2"]);
    let many = sweep(dir.path(), "many.csv", &["--jobs", "7"]);
    assert_eq!(one.lines().count(), 1 + 6 * 5, "a header and 30 combinations:\n{one}");
    assert_eq!(one, two, "the same table on 1 and 2 workers");
    assert_eq!(one, many);

    // Three shards, merged, are the whole table.
    let shards: Vec<String> = (0..3).map(|i| format!("shard-{i}.csv")).collect();
    for (i, name) in shards.iter().enumerate() {
        let table = sweep(dir.path(), name, &["--shard", &format!("{i}/3")]);
        assert_eq!(table.lines().count(), 1 + 10);
    }
    let merged = dir.path().join("merged.csv");
    let paths: Vec<String> = shards.iter().map(|s| dir.path().join(s).display().to_string()).collect();
    let args = [
        &["sweep", "merge"],
        &paths.iter().map(String::as_str).collect::<Vec<_>>()[..],
        &["--out", merged.to_str().unwrap()],
    ]
    .concat();
    let (result, _) = cli(&args);
    result.unwrap();
    assert_eq!(std::fs::read_to_string(&merged).unwrap(), one, "the shards merge into the whole");
    // A shard given twice is refused.
    let twice =
        [&["sweep", "merge"], &[paths[0].as_str(), paths[0].as_str()][..], &["--out", merged.to_str().unwrap()]]
            .concat();
    let err = cli(&twice).0.unwrap_err().to_string();
    assert!(err.contains("in two tables"), "{err}");
}

#[test]
fn each_row_is_what_a_backtest_of_its_parameters_gives() {
    let dir = tempfile::tempdir().unwrap();
    let table = sweep(dir.path(), "t.csv", &["--sort-by", "realized-pnl"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(&header[..3], ["index", "fast", "slow"]);
    let best: Vec<&str> = lines.next().unwrap().split(',').collect();
    let realized = header.iter().position(|h| *h == "realized_pnl").unwrap();
    let ibm = data("IBM.csv");
    let (result, out) = cli(&[
        "backtest",
        "--strategy",
        "sma-crossover",
        "--data",
        ibm.to_str().unwrap(),
        "--param",
        &format!("fast={}", best[1]),
        "--param",
        &format!("slow={}", best[2]),
        "--param",
        "qty=3",
        "--format",
        "json",
    ]);
    result.unwrap();
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let expected: rust_decimal::Decimal = report["realized_pnl"].to_string().parse().unwrap();
    assert_eq!(best[realized].parse::<rust_decimal::Decimal>().unwrap(), expected.normalize());
    // Sorted best first.
    let values: Vec<rust_decimal::Decimal> =
        table.lines().skip(1).map(|l| l.split(',').nth(realized).unwrap().parse().unwrap()).collect();
    assert!(values.windows(2).all(|w| w[0] >= w[1]), "{values:?}");
}

#[test]
fn bad_grids_and_parameters_are_refused_clearly() {
    let ibm = data("IBM.csv");
    let run = |grid: &str| {
        let (result, _) =
            cli(&["sweep", "--strategy", "sma-crossover", "--data", ibm.to_str().unwrap(), "--grid", grid]);
        result.unwrap_err().to_string()
    };
    assert!(run("nonsense=1..3").contains("nonsense"), "an unknown parameter is named");
    assert!(run("fast=30..31").contains("combination 0"), "and so is the combination");
}
