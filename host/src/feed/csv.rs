//! Daily or intraday bars from CSV files with a `Date,Open,High,Low,Close,Volume` header.

use std::io::Read;
use std::str::FromStr;
use std::sync::Arc;

use rust_decimal::Decimal;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

use super::FeedError;
use crate::bar::{Bar, Millis};

/// Bounds on what a CSV file may contain.
#[derive(Debug, Clone, Copy)]
pub struct CsvLimits {
    /// Largest file accepted, in bytes.
    pub max_bytes: u64,
}

impl Default for CsvLimits {
    fn default() -> Self {
        Self { max_bytes: 1 << 30 }
    }
}

const COLUMNS: [&str; 6] = ["date", "open", "high", "low", "close", "volume"];

/// Reads a CSV file of bars for `symbol`.
pub fn load_csv(path: &std::path::Path, symbol: &str, limits: CsvLimits) -> Result<Vec<Bar>, FeedError> {
    let name = path.display().to_string();
    let io = |source| FeedError::Io { path: name.clone(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    if size > limits.max_bytes {
        return Err(FeedError::TooLarge { path: name, size, limit: limits.max_bytes });
    }
    // `take` guards against a file that grows while it is read.
    parse_csv(file.take(limits.max_bytes + 1), &name, symbol)
}

/// Parses CSV bars from any reader; `origin` names it in errors.
///
/// Rows must be in strictly increasing time. Every row is checked before any
/// bar is returned, so a bad file yields an error and never a partial series.
pub fn parse_csv(input: impl Read, origin: &str, symbol: &str) -> Result<Vec<Bar>, FeedError> {
    let mut reader = ::csv::ReaderBuilder::new().trim(::csv::Trim::All).from_reader(input);
    let row_error = |line: u64, message: String| FeedError::Row { path: origin.to_string(), line, message };

    let headers = match reader.headers() {
        Ok(h) if h.iter().any(|f| !f.is_empty()) => h.clone(),
        Ok(_) => return Err(FeedError::Empty { path: origin.to_string() }),
        Err(e) => return Err(row_error(1, e.to_string())),
    };
    let mut index = [0usize; 6];
    for (slot, column) in index.iter_mut().zip(COLUMNS) {
        *slot = headers.iter().position(|h| h.trim_start_matches('\u{feff}').eq_ignore_ascii_case(column)).ok_or_else(
            || FeedError::Header {
                path: origin.to_string(),
                column,
                found: headers.iter().collect::<Vec<_>>().join(","),
            },
        )?;
    }

    let symbol: Arc<str> = Arc::from(symbol);
    let mut bars: Vec<Bar> = Vec::new();
    let mut record = ::csv::StringRecord::new();
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(row_error(line, e.to_string())),
        }
        let line = record.position().map_or(line, |p| p.line());
        let field = |i: usize| record.get(index[i]).unwrap_or("");
        let time = parse_time(field(0)).map_err(|m| row_error(line, m))?;
        let [open, high, low, close, volume] = [1, 2, 3, 4, 5].map(|i| parse_number(COLUMNS[i], field(i)));
        let bar = Bar {
            symbol: symbol.clone(),
            time,
            open: open.map_err(|m| row_error(line, m))?,
            high: high.map_err(|m| row_error(line, m))?,
            low: low.map_err(|m| row_error(line, m))?,
            close: close.map_err(|m| row_error(line, m))?,
            volume: volume.map_err(|m| row_error(line, m))?,
        };
        check_bar(&bar).map_err(|m| row_error(line, m))?;
        if let Some(prev) = bars.last()
            && bar.time <= prev.time
        {
            let what = if bar.time == prev.time { "repeats" } else { "goes back before" };
            return Err(row_error(
                line,
                format!("timestamp {} {what} the previous row's {}", field(0), crate::bar::format_time(prev.time)),
            ));
        }
        bars.push(bar);
    }
    if bars.is_empty() {
        return Err(FeedError::Empty { path: origin.to_string() });
    }
    Ok(bars)
}

/// Accepts `YYYY-MM-DD` (midnight UTC) or an RFC 3339 timestamp.
fn parse_time(text: &str) -> Result<Millis, String> {
    let date_only = format_description!("[year]-[month]-[day]");
    let utc = if let Ok(date) = time::Date::parse(text, date_only) {
        date.midnight().assume_utc()
    } else {
        time::OffsetDateTime::parse(text, &Rfc3339)
            .map_err(|_| format!("date `{text}` is neither YYYY-MM-DD nor RFC 3339"))?
    };
    Ok((utc.unix_timestamp_nanos() / 1_000_000) as Millis)
}

fn parse_number(column: &str, text: &str) -> Result<Decimal, String> {
    Decimal::from_str_exact(text)
        .or_else(|_| Decimal::from_scientific(text))
        .or_else(|_| Decimal::from_str(text))
        .map_err(|_| format!("{column} `{text}` is not a decimal number"))
}

/// Largest price or volume accepted, so exact arithmetic on them cannot overflow.
const MAX_VALUE: Decimal = Decimal::from_parts(0xa4c6_8000, 0x38d7e, 0, false, 0); // 1e15

fn check_bar(bar: &Bar) -> Result<(), String> {
    if [bar.open, bar.high, bar.low, bar.close, bar.volume].iter().any(|v| *v > MAX_VALUE) {
        return Err(format!("values above {MAX_VALUE} are not accepted"));
    }
    if bar.open <= Decimal::ZERO || bar.high <= Decimal::ZERO || bar.low <= Decimal::ZERO || bar.close <= Decimal::ZERO
    {
        return Err("prices must be positive".to_string());
    }
    if bar.volume < Decimal::ZERO {
        return Err("volume must not be negative".to_string());
    }
    if bar.high < bar.low || bar.high < bar.open.max(bar.close) || bar.low > bar.open.min(bar.close) {
        return Err(format!(
            "inconsistent prices: high {} and low {} must bound open {} and close {}",
            bar.high, bar.low, bar.open, bar.close
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Bar>, FeedError> {
        parse_csv(text.as_bytes(), "t.csv", "X")
    }

    #[test]
    fn parses_rows_exactly() {
        let bars = parse("Date,Open,High,Low,Close,Volume\n2000-03-01,118.56,132.06,118.5,130.31,9616100\n2000-03-02,127.0,127.94,120.69,122.0,2779100\n").unwrap();
        assert_eq!(bars.len(), 2);
        assert_eq!(bars[0].time, 951_868_800_000);
        assert_eq!(bars[0].close, Decimal::new(13031, 2));
        assert_eq!(bars[1].open.to_string(), "127.0");
    }

    #[test]
    fn accepts_reordered_columns_and_rfc3339() {
        let bars = parse("close,volume,date,open,high,low\n10,5,2024-01-02T14:30:00Z,9,11,8\n").unwrap();
        assert_eq!(bars[0].time, 1_704_205_800_000);
        assert_eq!(bars[0].open, Decimal::from(9));
    }

    #[test]
    fn names_the_line_of_a_bad_row() {
        let err = parse("Date,Open,High,Low,Close,Volume\n2000-03-01,1,2,1,2,3\n2000-03-02,1,x,1,2,3\n").unwrap_err();
        assert_eq!(err.to_string(), "t.csv, line 3: high `x` is not a decimal number");
    }

    #[test]
    fn refuses_backwards_and_duplicate_times() {
        let back = parse("Date,Open,High,Low,Close,Volume\n2000-03-02,1,2,1,2,3\n2000-03-01,1,2,1,2,3\n").unwrap_err();
        assert!(back.to_string().contains("line 3") && back.to_string().contains("goes back"), "{back}");
        let dup = parse("Date,Open,High,Low,Close,Volume\n2000-03-02,1,2,1,2,3\n2000-03-02,1,2,1,2,3\n").unwrap_err();
        assert!(dup.to_string().contains("repeats"), "{dup}");
    }

    #[test]
    fn refuses_empty_input_and_missing_columns() {
        assert!(matches!(parse(""), Err(FeedError::Empty { .. })));
        assert!(matches!(parse("Date,Open,High,Low,Close,Volume\n"), Err(FeedError::Empty { .. })));
        let err = parse("Date,Open,High,Low,Volume\n2000-03-01,1,2,1,3\n").unwrap_err();
        assert!(err.to_string().contains("lacks column `close`"), "{err}");
    }

    #[test]
    fn refuses_hostile_values() {
        for row in [
            "2000-03-01,NaN,2,1,2,3",
            "2000-03-01,1,2,1,2,-3",
            "2000-03-01,-1,2,1,2,3",
            "2000-03-01,1,2,3,2,3",
            "2000-13-01,1,2,1,2,3",
            "2000-03-01,1,2,1,99999999999999999999999999999999,3",
            "2000-03-01,1,2e15,1,2,3",
            "2000-03-01,1,2",
        ] {
            let text = format!("Date,Open,High,Low,Close,Volume\n{row}\n");
            let err = parse(&text).unwrap_err();
            assert!(err.to_string().contains("line 2"), "{row}: {err}");
        }
    }

    #[test]
    fn refuses_oversized_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.csv");
        std::fs::write(&path, "Date,Open,High,Low,Close,Volume\n2000-03-01,1,2,1,2,3\n").unwrap();
        let err = load_csv(&path, "X", CsvLimits { max_bytes: 10 }).unwrap_err();
        assert!(matches!(err, FeedError::TooLarge { .. }), "{err}");
        let missing = load_csv(&dir.path().join("nope.csv"), "X", CsvLimits::default()).unwrap_err();
        assert!(missing.to_string().contains("nope.csv"), "{missing}");
    }
}
