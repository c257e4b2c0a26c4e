//! Backtests from Parquet files written the ways pandas, polars and
//! decimal-minded tools write them: the same bars as the CSV give the same
//! report, and a bad file is a clear error naming its row.

use std::path::Path;
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use serde_json::Value;
use stratbox::bar::Bar;
use stratbox::feed::{CsvLimits, FeedError, TimeSpec, load_bars, load_csv};
use stratbox_tests::{cli, data};

/// One column of a file to write.
enum Column {
    I64(Vec<i64>),
    I32(Vec<i32>),
    F64(Vec<f64>),
    Text(Vec<String>),
    /// Optional doubles: `None` is a null.
    MaybeF64(Vec<Option<f64>>),
}

/// Writes `columns` under `schema` (a Parquet message type), `group` rows
/// to a row group.
fn write(path: &Path, schema: &str, columns: Vec<Column>, compression: Compression, group: usize) {
    let schema = Arc::new(parquet::schema::parser::parse_message_type(schema).unwrap());
    let props = Arc::new(WriterProperties::builder().set_compression(compression).build());
    let mut writer = SerializedFileWriter::new(std::fs::File::create(path).unwrap(), schema, props).unwrap();
    let rows = match &columns[0] {
        Column::I64(v) => v.len(),
        Column::I32(v) => v.len(),
        Column::F64(v) => v.len(),
        Column::Text(v) => v.len(),
        Column::MaybeF64(v) => v.len(),
    };
    let mut start = 0;
    while start < rows {
        let end = (start + group).min(rows);
        let mut row_group = writer.next_row_group().unwrap();
        for column in &columns {
            let mut out = row_group.next_column().unwrap().unwrap();
            match column {
                Column::I64(v) => out.typed::<Int64Type>().write_batch(&v[start..end], None, None),
                Column::I32(v) => out.typed::<Int32Type>().write_batch(&v[start..end], None, None),
                Column::F64(v) => out.typed::<DoubleType>().write_batch(&v[start..end], None, None),
                Column::Text(v) => {
                    let bytes: Vec<ByteArray> = v[start..end].iter().map(|s| ByteArray::from(s.as_str())).collect();
                    out.typed::<ByteArrayType>().write_batch(&bytes, None, None)
                }
                Column::MaybeF64(v) => {
                    let levels: Vec<i16> = v[start..end].iter().map(|x| i16::from(x.is_some())).collect();
                    let values: Vec<f64> = v[start..end].iter().flatten().copied().collect();
                    out.typed::<DoubleType>().write_batch(&values, Some(&levels), None)
                }
            }
            .unwrap();
            out.close().unwrap();
        }
        row_group.close().unwrap();
        start = end;
    }
    writer.close().unwrap();
}

fn ibm() -> Vec<Bar> {
    load_csv(&data("IBM.csv"), "IBM", CsvLimits::default()).unwrap()
}

fn f64s(bars: &[Bar], f: impl Fn(&Bar) -> rust_decimal::Decimal) -> Vec<f64> {
    bars.iter().map(|b| f(b).to_string().parse().unwrap()).collect()
}

fn backtest(path: &Path) -> Value {
    let path = path.to_str().unwrap();
    let (result, out) = cli(&["backtest", "--strategy", "sma-crossover", "--data", path, "--format", "json"]);
    result.unwrap();
    serde_json::from_str(&out).unwrap()
}

/// pandas: `df.set_index("Date").to_parquet()` keeps the index as a naive
/// nanosecond timestamp column, doubles for prices, int64 volume, snappy.
#[test]
fn a_pandas_file_backtests_exactly_as_its_csv() {
    let bars = ibm();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("IBM.parquet");
    write(
        &path,
        "message schema { REQUIRED DOUBLE Open; REQUIRED DOUBLE High; REQUIRED DOUBLE Low; REQUIRED DOUBLE Close;
         REQUIRED INT64 Volume; REQUIRED INT64 Date (TIMESTAMP(NANOS,false)); }",
        vec![
            Column::F64(f64s(&bars, |b| b.open)),
            Column::F64(f64s(&bars, |b| b.high)),
            Column::F64(f64s(&bars, |b| b.low)),
            Column::F64(f64s(&bars, |b| b.close)),
            Column::I64(bars.iter().map(|b| b.volume.to_string().parse().unwrap()).collect()),
            Column::I64(bars.iter().map(|b| b.time * 1_000_000).collect()),
        ],
        Compression::SNAPPY,
        1 << 20,
    );
    let read = load_bars(&path, "IBM", CsvLimits::default(), &TimeSpec::default()).unwrap();
    assert_eq!(read.len(), bars.len());
    for (a, b) in read.iter().zip(&bars) {
        assert_eq!((a.time, a.open, a.high, a.low, a.close), (b.time, b.open, b.high, b.low, b.close));
        assert_eq!(a.volume, b.volume);
    }
    same(&backtest(&path), &backtest(&data("IBM.csv")), "report");
}

/// Equal JSON, numbers compared by value: a double keeps no trailing
/// zeros, so `102` from Parquet is the CSV's `102.0`.
fn same(a: &Value, b: &Value, at: &str) {
    use std::str::FromStr as _;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.to_string(), y.to_string());
            let value =
                |t: &str| rust_decimal::Decimal::from_str(t).or_else(|_| rust_decimal::Decimal::from_scientific(t));
            assert_eq!(value(&x).unwrap(), value(&y).unwrap(), "{at}: {x} against {y}");
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}: lengths");
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                same(x, y, &format!("{at}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>(), "{at}: keys");
            for (k, v) in x {
                same(v, &y[k], &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

/// polars: a UTC microsecond `timestamp` column, zstd, small row groups
/// (so reads cross both row groups and batches); a wall-clock timestamp
/// read in a zone; decimals stored as scaled integers; text times.
#[test]
fn polars_and_decimal_files_and_zones_read_as_their_bars() {
    let bars = ibm();
    let dir = tempfile::tempdir().unwrap();
    let utc = dir.path().join("a.parquet");
    write(
        &utc,
        "message m { REQUIRED INT64 timestamp (TIMESTAMP(MICROS,true)); REQUIRED DOUBLE open; REQUIRED DOUBLE high;
         REQUIRED DOUBLE low; REQUIRED DOUBLE close; REQUIRED DOUBLE volume; REQUIRED INT32 ignored; }",
        vec![
            Column::I64(bars.iter().map(|b| b.time * 1_000).collect()),
            Column::F64(f64s(&bars, |b| b.open)),
            Column::F64(f64s(&bars, |b| b.high)),
            Column::F64(f64s(&bars, |b| b.low)),
            Column::F64(f64s(&bars, |b| b.close)),
            Column::F64(f64s(&bars, |b| b.volume)),
            Column::I32(vec![7; bars.len()]),
        ],
        Compression::ZSTD(Default::default()),
        1000,
    );
    let read = load_bars(&utc, "IBM", CsvLimits::default(), &TimeSpec::default()).unwrap();
    assert_eq!(
        read.iter().map(|b| (b.time, b.close)).collect::<Vec<_>>(),
        bars.iter().map(|b| (b.time, b.close)).collect::<Vec<_>>()
    );

    // Scaled integers (DECIMAL(18,4)), text times, a wall-clock zone.
    let scaled = |f: fn(&Bar) -> rust_decimal::Decimal| -> Vec<i64> {
        bars.iter()
            .map(|b| (f(b) * rust_decimal::Decimal::from(10_000)).to_string().parse::<f64>().unwrap() as i64)
            .collect()
    };
    let decimal = dir.path().join("b.pq");
    write(
        &decimal,
        "message m { REQUIRED BYTE_ARRAY Datetime (UTF8); REQUIRED INT64 O (DECIMAL(18,4)); REQUIRED INT64 H (DECIMAL(18,4));
         REQUIRED INT64 L (DECIMAL(18,4)); REQUIRED INT64 C (DECIMAL(18,4)); REQUIRED INT64 V; }",
        vec![
            Column::Text(bars.iter().map(|b| format!("{} 09:30:00", &stratbox::bar::format_time(b.time)[..10])).collect()),
            Column::I64(scaled(|b| b.open)),
            Column::I64(scaled(|b| b.high)),
            Column::I64(scaled(|b| b.low)),
            Column::I64(scaled(|b| b.close)),
            Column::I64(bars.iter().map(|b| b.volume.to_string().parse().unwrap()).collect()),
        ],
        Compression::UNCOMPRESSED,
        500,
    );
    let new_york = TimeSpec::new(None, Some("America/New_York")).unwrap();
    let read = load_bars(&decimal, "IBM", CsvLimits::default(), &new_york).unwrap();
    assert_eq!(read.len(), bars.len());
    // 2000-03-01 09:30 in New York (EST) is 14:30 UTC.
    assert_eq!(read[0].time, bars[0].time + (14 * 60 + 30) * 60_000);
    assert_eq!((read[0].open, read[0].close), (bars[0].open, bars[0].close));
    assert_eq!(read[0].open.to_string(), "102.0000", "a decimal keeps its scale");
}

#[test]
fn a_bad_parquet_file_is_an_error_naming_its_row() {
    let dir = tempfile::tempdir().unwrap();
    let spec = TimeSpec::default();
    let load = |path: &Path| load_bars(path, "X", CsvLimits::default(), &spec).unwrap_err();
    let schema = "message m { REQUIRED INT64 time (TIMESTAMP(MILLIS,true)); REQUIRED DOUBLE open;
        REQUIRED DOUBLE high; REQUIRED DOUBLE low; OPTIONAL DOUBLE close; REQUIRED DOUBLE volume; }";
    let file = |name: &str, times: Vec<i64>, close: Vec<Option<f64>>, high: f64| {
        let path = dir.path().join(name);
        let n = times.len();
        write(
            &path,
            schema,
            vec![
                Column::I64(times),
                Column::F64(vec![1.0; n]),
                Column::F64(vec![high; n]),
                Column::F64(vec![1.0; n]),
                Column::MaybeF64(close),
                Column::F64(vec![5.0; n]),
            ],
            Compression::SNAPPY,
            3,
        );
        path
    };
    let null = file("null.parquet", (0..10).collect(), (0..10).map(|i| (i != 7).then_some(1.0)).collect(), 2.0);
    let text = load(&null).to_string();
    assert!(text.contains("null.parquet, row 8") && text.contains("`close` is null"), "{text}");

    let backwards = file("back.parquet", vec![0, 1, 2, 3, 1, 5], vec![Some(1.0); 6], 2.0);
    let text = load(&backwards).to_string();
    assert!(text.contains("row 5") && text.contains("goes back before"), "{text}");

    let nan = file("nan.parquet", (0..4).collect(), vec![Some(1.0), Some(1.0), Some(f64::NAN), Some(1.0)], 2.0);
    assert!(load(&nan).to_string().contains("row 3: `close` is not a finite number"), "{}", load(&nan));

    let inconsistent = file("low.parquet", (0..4).collect(), vec![Some(1.0); 4], 0.5);
    assert!(load(&inconsistent).to_string().contains("inconsistent prices"));

    let garbage = dir.path().join("garbage.parquet");
    std::fs::write(&garbage, b"PAR1 this is not a parquet file at all PAR1").unwrap();
    assert!(load(&garbage).to_string().contains("not a Parquet file"), "{}", load(&garbage));

    let lacking = dir.path().join("lacking.parquet");
    write(
        &lacking,
        "message m { REQUIRED INT64 time (TIMESTAMP(MILLIS,true)); REQUIRED DOUBLE open; }",
        vec![Column::I64(vec![1]), Column::F64(vec![1.0])],
        Compression::SNAPPY,
        10,
    );
    assert!(matches!(load(&lacking), FeedError::Header { column: "high", .. }), "{}", load(&lacking));

    // Through the command line: one error line, no report.
    let (result, out) =
        cli(&["backtest", "--strategy", "sma-crossover", "--data", null.to_str().unwrap(), "--format", "json"]);
    assert!(result.is_err() && out.is_empty());
}

/// A folder may mix CSV and Parquet files, one symbol each.
#[test]
fn a_folder_of_csv_and_parquet_files_merges() {
    let bars = ibm();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(data("MSFT.csv"), dir.path().join("MSFT.csv")).unwrap();
    write(
        &dir.path().join("IBM.parquet"),
        "message m { REQUIRED INT32 date (DATE); REQUIRED DOUBLE open; REQUIRED DOUBLE high; REQUIRED DOUBLE low;
         REQUIRED DOUBLE close; REQUIRED DOUBLE volume; }",
        vec![
            Column::I32(bars.iter().map(|b| (b.time / 86_400_000) as i32).collect()),
            Column::F64(f64s(&bars, |b| b.open)),
            Column::F64(f64s(&bars, |b| b.high)),
            Column::F64(f64s(&bars, |b| b.low)),
            Column::F64(f64s(&bars, |b| b.close)),
            Column::F64(f64s(&bars, |b| b.volume)),
        ],
        Compression::SNAPPY,
        1 << 20,
    );
    let report = backtest(dir.path());
    let msft = load_csv(&data("MSFT.csv"), "MSFT", CsvLimits::default()).unwrap();
    assert_eq!(report["bars"], bars.len() + msft.len());
    let symbols: Vec<&str> =
        report["symbols"].as_array().unwrap().iter().map(|s| s["symbol"].as_str().unwrap()).collect();
    assert_eq!(symbols, ["IBM", "MSFT"]);
}

/// Files pandas 3.1 (pyarrow) wrote, kept in `tests/test_data`: the first
/// 300 IBM bars saved with their dates as the index (`timestamp[us]`,
/// snappy, dictionary pages), and minutes under an unnamed UTC index
/// (`__index_level_0__`).
#[test]
fn files_pandas_wrote_read_as_their_bars() {
    let fixture = |name: &str| Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data").join(name);
    let read = load_bars(&fixture("IBM_pandas.parquet"), "IBM", CsvLimits::default(), &TimeSpec::default()).unwrap();
    let bars = ibm();
    assert_eq!(read.len(), 300);
    for (a, b) in read.iter().zip(&bars) {
        assert_eq!(
            (a.time, a.open, a.high, a.low, a.close, a.volume),
            (b.time, b.open, b.high, b.low, b.close, b.volume)
        );
    }
    let minutes =
        load_bars(&fixture("minutes_pandas.parquet"), "X", CsvLimits::default(), &TimeSpec::default()).unwrap();
    let seen: Vec<(String, String)> =
        minutes.iter().map(|b| (stratbox::bar::format_time(b.time), b.close.to_string())).collect();
    assert_eq!(
        seen,
        [("2024-01-02T14:30:00Z", "10.75"), ("2024-01-02T14:31:00Z", "10.5"), ("2024-01-02T14:32:00Z", "10.625")]
            .map(|(t, c)| (t.to_string(), c.to_string()))
    );
}
