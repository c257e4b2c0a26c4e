//! Daily or intraday bars from CSV files: a time column and open, high,
//! low, close and volume, in any order, among any other columns.
//!
//! Column names are matched case-insensitively. The time column is the
//! first of `timestamp`, `datetime`, `date`, `time` or `open_time` (Binance)
//! found; a file with both a `date` and a `time` column (and neither of the
//! first two) has them joined. Prices and volume may also be `o`, `h`, `l`,
//! `c`, `v` or `vol`. How the time is written is detected or given (see
//! [`super::timestamp`]).

use std::io::Read;
use std::str::FromStr;
use std::sync::Arc;

use rust_decimal::Decimal;

use super::FeedError;
use super::timestamp::{TimeParser, TimeSpec};
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

/// The names each price and volume column may have.
pub(super) const VALUE_COLUMNS: [(&str, &[&str]); 5] = [
    ("open", &["open", "o"]),
    ("high", &["high", "h"]),
    ("low", &["low", "l"]),
    ("close", &["close", "c"]),
    ("volume", &["volume", "vol", "v"]),
];

/// The names a time column may have, in the order they are preferred.
pub(super) const TIME_COLUMNS: [&str; 5] = ["timestamp", "datetime", "date", "time", "open_time"];

/// Where a file keeps its time: one column, or a date and a time column.
enum TimeColumns {
    One { at: usize },
    Split { date: usize, time: usize },
}

impl TimeColumns {
    fn find(headers: &[String]) -> Option<Self> {
        let at = |name: &str| headers.iter().position(|h| h == name);
        if at("timestamp").is_none()
            && at("datetime").is_none()
            && let (Some(date), Some(time)) = (at("date"), at("time"))
        {
            return Some(Self::Split { date, time });
        }
        TIME_COLUMNS.iter().find_map(|name| at(name)).map(|at| Self::One { at })
    }
}

/// Reads a CSV file of bars for `symbol`, its time layout detected, in UTC.
pub fn load_csv(path: &std::path::Path, symbol: &str, limits: CsvLimits) -> Result<Vec<Bar>, FeedError> {
    load_bars(path, symbol, limits, &TimeSpec::default())
}

/// Reads a bar file for `symbol`, its times read as `time` says: Parquet
/// if its name ends in `.parquet` or `.pq`, CSV otherwise.
pub fn load_bars(
    path: &std::path::Path,
    symbol: &str,
    limits: CsvLimits,
    time: &TimeSpec,
) -> Result<Vec<Bar>, FeedError> {
    let mut bars: Vec<Bar> = Vec::new();
    read_file(path, symbol, limits, time, &mut |bar| {
        bars.push(bar);
        true
    })?;
    Ok(bars)
}

/// Whether `path` names a Parquet file.
pub fn is_parquet(path: &std::path::Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet") || e.eq_ignore_ascii_case("pq"))
}

/// Opens `path` within `limits` and reads its bars, in the format its name says.
fn read_file(
    path: &std::path::Path,
    symbol: &str,
    limits: CsvLimits,
    time: &TimeSpec,
    emit: &mut dyn FnMut(Bar) -> bool,
) -> Result<(), FeedError> {
    let name = path.display().to_string();
    let io = |source| FeedError::Io { path: name.clone(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    if size > limits.max_bytes {
        return Err(FeedError::TooLarge { path: name, size, limit: limits.max_bytes });
    }
    if is_parquet(path) {
        return super::parquet::read_parquet(file, &name, symbol, time, emit).map(drop);
    }
    let mut file = Some(file);
    let mut open = || -> Result<Box<dyn Read>, FeedError> {
        let file = match file.take() {
            Some(file) => file,
            None => std::fs::File::open(path).map_err(io)?,
        };
        // `take` guards against a file that grows while it is read.
        Ok(Box::new(file.take(limits.max_bytes + 1)))
    };
    read_csv(&mut open, &name, symbol, time, emit)
}

/// Parses CSV bars from any reader; `origin` names it in errors.
///
/// Rows must be in strictly increasing time. Every row is checked before any
/// bar is returned, so a bad file yields an error and never a partial series.
pub fn parse_csv(input: impl Read, origin: &str, symbol: &str) -> Result<Vec<Bar>, FeedError> {
    parse_csv_as(input, origin, symbol, &TimeSpec::default())
}

/// [`parse_csv`], with times read as `time` says.
pub fn parse_csv_as(mut input: impl Read, origin: &str, symbol: &str, time: &TimeSpec) -> Result<Vec<Bar>, FeedError> {
    let mut text = Vec::new();
    input.read_to_end(&mut text).map_err(|source| FeedError::Io { path: origin.to_string(), source })?;
    let mut open = || -> Result<Box<dyn Read + '_>, FeedError> { Ok(Box::new(text.as_slice())) };
    let mut bars: Vec<Bar> = Vec::new();
    read_csv(&mut open, origin, symbol, time, &mut |bar| {
        bars.push(bar);
        true
    })?;
    Ok(bars)
}

/// Reads `path` on a thread of its own and hands its bars over in chunks
/// of `chunk` through a channel that holds `ahead` chunks: parsing runs
/// ahead of the engine on another core, and memory stays bounded whatever
/// the file's size. A bad row ends the stream with its error, after the
/// bars before it.
pub fn stream_bars(
    path: &std::path::Path,
    symbol: &str,
    limits: CsvLimits,
    time: &TimeSpec,
    chunk: usize,
    ahead: usize,
) -> std::sync::mpsc::Receiver<Result<Vec<Bar>, FeedError>> {
    let (tx, rx) = std::sync::mpsc::sync_channel(ahead.max(1));
    let (path, symbol, time, chunk) = (path.to_path_buf(), symbol.to_string(), time.clone(), chunk.max(1));
    let spawned = std::thread::Builder::new().name("stratbox-bars".into()).spawn({
        let tx = tx.clone();
        move || {
            let mut pending = Vec::with_capacity(chunk);
            let read = read_file(&path, &symbol, limits, &time, &mut |bar| {
                pending.push(bar);
                if pending.len() < chunk {
                    return true;
                }
                // The receiver has gone (the run ended): stop reading.
                tx.send(Ok(std::mem::replace(&mut pending, Vec::with_capacity(chunk)))).is_ok()
            });
            let _ = match read {
                Ok(_) if pending.is_empty() => Ok(()),
                Ok(_) => tx.send(Ok(pending)),
                Err(error) => tx.send(Err(error)),
            };
        }
    });
    if let Err(source) = spawned {
        let _ = tx.send(Err(FeedError::Io { path: "a bar reader thread".into(), source }));
    }
    rx
}

/// What reading rows needs from the header, and what the rows before said.
struct Rows<'a> {
    origin: &'a str,
    spec: &'a TimeSpec,
    times: TimeColumns,
    /// Where open, high, low, close and volume are.
    index: [usize; 5],
    columns: usize,
    parser: Option<TimeParser>,
    joined: String,
    symbol: Arc<str>,
    previous: Option<Millis>,
}

impl<'a> Rows<'a> {
    fn new(origin: &'a str, spec: &'a TimeSpec, symbol: &str, headers: &[&str]) -> Result<Self, FeedError> {
        if headers.iter().all(|h| h.is_empty()) {
            return Err(FeedError::Empty { path: origin.to_string() });
        }
        let names: Vec<String> =
            headers.iter().map(|h| h.trim_start_matches('\u{feff}').trim().to_ascii_lowercase()).collect();
        let missing = |column: &'static str| FeedError::Header {
            path: origin.to_string(),
            column,
            found: crate::runtime::bounded(&headers.join(",")),
        };
        let times = TimeColumns::find(&names).ok_or_else(|| missing("date"))?;
        let mut index = [0usize; 5];
        for (slot, (column, aliases)) in index.iter_mut().zip(VALUE_COLUMNS) {
            *slot = names.iter().position(|h| aliases.contains(&h.as_str())).ok_or_else(|| missing(column))?;
        }
        Ok(Self {
            origin,
            spec,
            times,
            index,
            columns: headers.len(),
            parser: None,
            joined: String::new(),
            symbol: Arc::from(symbol),
            previous: None,
        })
    }

    fn error(&self, line: u64, message: String) -> FeedError {
        FeedError::Row { path: self.origin.to_string(), line, message }
    }

    /// The bar of the row on `line`, whose fields `field` gives, checked
    /// on its own and against the row before.
    fn bar<'r>(&mut self, line: u64, field: impl Fn(usize) -> &'r str + Copy) -> Result<Bar, FeedError> {
        let bad = |message| FeedError::Row { path: self.origin.to_string(), line, message };
        let time = {
            // The time as written: one field, or a date and a time joined.
            let when: &str = match self.times {
                TimeColumns::One { at } => field(at),
                TimeColumns::Split { date, time } => {
                    self.joined.clear();
                    self.joined.push_str(field(date));
                    self.joined.push(' ');
                    self.joined.push_str(field(time));
                    &self.joined
                }
            };
            let parser = match &mut self.parser {
                Some(parser) => Ok(parser),
                None => TimeParser::detect(self.spec, when).map(|detected| self.parser.insert(detected)),
            };
            parser.and_then(|parser| parser.parse(when))
        };
        let values = [0, 1, 2, 3, 4].map(|i| parse_number(VALUE_COLUMNS[i].0, field(self.index[i])));
        let bar = checked_bar(&self.symbol, time.map_err(bad)?, values).map_err(bad)?;
        // The time as written, so the reader finds it in the file.
        let written = || match self.times {
            TimeColumns::One { at } => field(at).to_string(),
            TimeColumns::Split { date, time } => format!("{} {}", field(date), field(time)),
        };
        follows(self.previous, bar.time, written).map_err(bad)?;
        self.previous = Some(bar.time);
        Ok(bar)
    }
}

/// Parses rows with the `csv` crate (quoted fields and all), checking
/// each, and hands each bar after the first `skip` to `emit` until it
/// answers `false`; returns how many rows it read.
fn read_rows(
    input: impl Read,
    origin: &str,
    symbol: &str,
    time: &TimeSpec,
    skip: usize,
    emit: &mut dyn FnMut(Bar) -> bool,
) -> Result<usize, FeedError> {
    let mut reader = ::csv::ReaderBuilder::new().trim(::csv::Trim::All).from_reader(input);
    let row_error = |line: u64, message: String| FeedError::Row { path: origin.to_string(), line, message };
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => return Err(row_error(1, e.to_string())),
    };
    let mut rows = Rows::new(origin, time, symbol, &headers.iter().collect::<Vec<_>>())?;
    let mut count = 0;
    let mut record = ::csv::StringRecord::new();
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(row_error(line, e.to_string())),
        }
        let line = record.position().map_or(line, |p| p.line());
        let record = &record;
        let bar = rows.bar(line, |i| record.get(i).unwrap_or(""))?;
        count += 1;
        if count > skip && !emit(bar) {
            return Ok(count);
        }
    }
    if count == 0 {
        return Err(FeedError::Empty { path: origin.to_string() });
    }
    Ok(count)
}

/// How far [`read_plain`] got.
enum Plain {
    /// Every row, or as many as `emit` wanted.
    Read,
    /// A quote, after this many rows: plain splitting cannot read it.
    Quoted { rows: usize },
}

/// Reads rows the way nearly every bar file is written (no quotes), a line
/// at a time split on commas, with no per-row allocation: several times
/// faster than the general reader, and stopping at the first quote so the
/// caller can hand the file to the general reader instead.
fn read_plain(
    input: impl Read,
    origin: &str,
    symbol: &str,
    time: &TimeSpec,
    emit: &mut dyn FnMut(Bar) -> bool,
) -> Result<Plain, FeedError> {
    let mut input = std::io::BufReader::with_capacity(1 << 18, input);
    let io = |source| FeedError::Io { path: origin.to_string(), source };
    let mut text = String::new();
    let mut line = 0u64;
    let mut header = String::new();
    // The header: the first line that is not empty.
    while header.trim().is_empty() {
        header.clear();
        line += 1;
        if std::io::BufRead::read_line(&mut input, &mut header).map_err(io)? == 0 {
            return Err(FeedError::Empty { path: origin.to_string() });
        }
    }
    if header.contains('"') {
        return Ok(Plain::Quoted { rows: 0 });
    }
    let names: Vec<&str> = header.trim_end_matches(['\n', '\r']).split(',').map(str::trim).collect();
    let mut rows = Rows::new(origin, time, symbol, &names)?;
    // Each field's byte range in the row, kept from row to row.
    let mut fields: Vec<(usize, usize)> = Vec::with_capacity(rows.columns);
    let mut count = 0;
    loop {
        text.clear();
        line += 1;
        match std::io::BufRead::read_line(&mut input, &mut text) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(rows.error(line, "the row is not valid UTF-8".into()));
            }
            Err(source) => return Err(io(source)),
        }
        let row = text.trim_end_matches(['\n', '\r']);
        if row.is_empty() {
            continue;
        }
        if row.contains('"') {
            return Ok(Plain::Quoted { rows: count });
        }
        fields.clear();
        let mut start = 0;
        for (at, _) in row.match_indices(',').chain(std::iter::once((row.len(), ""))) {
            fields.push((start, at));
            start = at + 1;
        }
        if fields.len() != rows.columns {
            let message = format!("found a row with {} fields, but the header has {}", fields.len(), rows.columns);
            return Err(rows.error(line, message));
        }
        let fields = &fields;
        let bar = rows.bar(line, |i| fields.get(i).map_or("", |&(a, b)| row[a..b].trim()))?;
        count += 1;
        if !emit(bar) {
            return Ok(Plain::Read);
        }
    }
    if count == 0 {
        return Err(FeedError::Empty { path: origin.to_string() });
    }
    Ok(Plain::Read)
}

/// Reads CSV rows: plainly while the file allows, then (from a quote on)
/// again with the general reader, which skips the rows already handed out.
fn read_csv<'f>(
    open: &mut dyn FnMut() -> Result<Box<dyn Read + 'f>, FeedError>,
    origin: &str,
    symbol: &str,
    time: &TimeSpec,
    emit: &mut dyn FnMut(Bar) -> bool,
) -> Result<(), FeedError> {
    match read_plain(open()?, origin, symbol, time, emit)? {
        Plain::Read => Ok(()),
        Plain::Quoted { rows } => read_rows(open()?, origin, symbol, time, rows, emit).map(drop),
    }
}

pub(super) fn parse_number(column: &str, text: &str) -> Result<Decimal, String> {
    if let Some(value) = plain_decimal(text.as_bytes()) {
        return Ok(value);
    }
    Decimal::from_str_exact(text)
        .or_else(|_| Decimal::from_scientific(text))
        .or_else(|_| Decimal::from_str(text))
        .map_err(|_| format!("{column} `{}` is not a decimal number", crate::runtime::bounded(text)))
}

/// A bar of `symbol` at `time` from its five values (open, high, low,
/// close, volume), each read or refused, checked as a whole.
pub(super) fn checked_bar(
    symbol: &Arc<str>,
    time: Millis,
    values: [Result<Decimal, String>; 5],
) -> Result<Bar, String> {
    let [open, high, low, close, volume] = values;
    let bar = Bar { symbol: symbol.clone(), time, open: open?, high: high?, low: low?, close: close?, volume: volume? };
    check_bar(&bar)?;
    Ok(bar)
}

/// Refuses a row whose `time` does not come after the previous row's;
/// `written` gives the time as the file writes it, for the message.
pub(super) fn follows(previous: Option<Millis>, time: Millis, written: impl FnOnce() -> String) -> Result<(), String> {
    match previous {
        Some(prev) if time <= prev => {
            let what = if time == prev { "repeats" } else { "goes back before" };
            let (this, prev) = (crate::runtime::bounded(&written()), crate::bar::format_time(prev));
            Err(format!("timestamp {this} {what} the previous row's {prev}"))
        }
        _ => Ok(()),
    }
}

/// `[-]digits[.digits]` of at most 18 digits, as nearly every file writes
/// its numbers, read directly: the same value and scale as
/// `Decimal::from_str_exact` gives; `None` for anything else.
pub(super) fn plain_decimal(text: &[u8]) -> Option<Decimal> {
    let (negative, digits) = match text.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut mantissa: i64 = 0;
    let mut seen = 0;
    let mut scale = None;
    for (i, &b) in digits.iter().enumerate() {
        match b {
            b'0'..=b'9' if seen < 18 => {
                mantissa = mantissa * 10 + i64::from(b - b'0');
                seen += 1;
            }
            b'.' if scale.is_none() && i + 1 < digits.len() && i > 0 => scale = Some((digits.len() - i - 1) as u32),
            _ => return None,
        }
    }
    Some(Decimal::new(if negative { -mantissa } else { mantissa }, scale.unwrap_or(0)))
}

/// Largest price or volume accepted, so exact arithmetic on them cannot overflow.
const MAX_VALUE: Decimal = Decimal::from_parts(0xa4c6_8000, 0x38d7e, 0, false, 0); // 1e15

pub(super) fn check_bar(bar: &Bar) -> Result<(), String> {
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
    fn reads_the_files_vendors_and_exchanges_write() {
        // pandas' to_csv: an index named `datetime`, seconds, extra columns.
        let pandas = "datetime,open,high,low,close,volume,adj close\n\
                      2017-04-19 09:00:00,10,11,9,10.5,100,10.4\n2017-04-19 09:01:00,10.5,11,10,10,50,9.9\n";
        let bars = parse(pandas).unwrap();
        assert_eq!(bars.iter().map(|b| b.time).collect::<Vec<_>>(), [1_492_592_400_000, 1_492_592_460_000]);
        // A Binance kline dump: epoch milliseconds under `open_time`.
        let binance = "open_time,open,high,low,close,volume,close_time,quote_volume,count\n\
                       1492592400000,10,11,9,10.5,100,1492592459999,1000,7\n";
        assert_eq!(parse(binance).unwrap()[0].time, 1_492_592_400_000);
        // Epoch seconds, short column names, upper case.
        let short = "TIMESTAMP,O,H,L,C,V\n1492592400,10,11,9,10.5,100\n";
        assert_eq!(parse(short).unwrap()[0].close, Decimal::new(105, 1));
        // Separate date and time columns are joined.
        let split = "Date,Time,Open,High,Low,Close,Volume\n2017-04-19,09:00:00,10,11,9,10.5,100\n";
        assert_eq!(parse(split).unwrap()[0].time, 1_492_592_400_000);
        // In a zone, with a pattern.
        let us = "Date,Open,High,Low,Close,Volume\n04/19/2017 05:00,10,11,9,10.5,100\n";
        let spec = TimeSpec::new(Some("%m/%d/%Y %H:%M"), Some("America/New_York")).unwrap();
        assert_eq!(parse_csv_as(us.as_bytes(), "t.csv", "X", &spec).unwrap()[0].time, 1_492_592_400_000);
    }

    #[test]
    fn a_row_written_another_way_is_named_by_its_line() {
        let mixed = "timestamp,open,high,low,close,volume\n2017-04-19 09:00:00,10,11,9,10.5,100\n\
                     1492592460,10,11,9,10.5,100\n";
        let err = parse(mixed).unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("YYYY-MM-DD HH:MM:SS"), "{err}");
        let unknown = "timestamp,open,high,low,close,volume\n19.04.2017,10,11,9,10.5,100\n";
        let err = parse(unknown).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("--time-format"), "{err}");
        let huge = format!("date,open,high,low,close,volume\n2017-04-19,{},11,9,10.5,100\n", "9".repeat(100_000));
        assert!(parse(&huge).unwrap_err().to_string().len() < 2_000, "a hostile field is not echoed whole");
    }

    #[test]
    fn plain_decimals_read_as_the_general_parser_reads_them() {
        for text in ["0", "1", "-1", "12.5", "0.000001", "100.10", "-0.0", "123456789012345678", "99999999.9999999999"]
        {
            let expected = Decimal::from_str_exact(text).unwrap();
            let got = plain_decimal(text.as_bytes()).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(
                (got, got.scale(), got.to_string()),
                (expected, expected.scale(), expected.to_string()),
                "{text}"
            );
        }
        for other in ["", "-", ".5", "5.", "1.2.3", "1e5", "+1", " 1", "1 ", "1234567890123456789", "--1", "NaN"] {
            assert_eq!(plain_decimal(other.as_bytes()), None, "{other}");
        }
    }

    #[test]
    fn quoted_files_and_files_that_quote_later_read_whole() {
        let quoted = "\"Date\",\"Open\",\"High\",\"Low\",\"Close\",\"Volume\"\n\"2000-03-01\",1,2,1,2,\"3\"\n";
        assert_eq!(parse(quoted).unwrap().len(), 1);
        let later =
            "Date,Open,High,Low,Close,Volume\n2000-03-01,1,2,1,2,3\n2000-03-02,1,2,1,2,\"4\"\n2000-03-03,1,2,1,2,5\n";
        let bars = parse(later).unwrap();
        assert_eq!(bars.iter().map(|b| b.volume).collect::<Vec<_>>(), [3, 4, 5].map(Decimal::from));
        let ragged = parse("Date,Open,High,Low,Close,Volume\n2000-03-01,1,2,1,2\n").unwrap_err().to_string();
        assert!(ragged.contains("line 2") && ragged.contains("5 fields"), "{ragged}");
        let crlf =
            parse("Date,Open,High,Low,Close,Volume\r\n2000-03-01,1,2,1,2,3\r\n\r\n2000-03-02,1,2,1,2,3\r\n").unwrap();
        assert_eq!(crlf.len(), 2);
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
