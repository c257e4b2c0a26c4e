//! Bars from Parquet files, as pandas, polars and NautilusTrader's catalog
//! keep them: the same columns as a CSV (names matched the same way, plus
//! pandas' unnamed index `__index_level_0__` as a last resort for time),
//! read column by column a few thousand rows at a time, so memory stays
//! bounded whatever the file's size.
//!
//! Times may be timestamps (ms, µs or ns; wall-clock ones are read in
//! `--tz`), dates, epoch integers or text in any layout a CSV may use.
//! Prices and volume may be doubles, floats, integers, decimals or text.
//! Doubles become the shortest decimal that reads back as the same double
//! (`100.1`, not `100.099999999999994315658113919198513031005859375`).

use std::fs::File;
use std::sync::Arc;

use parquet::basic::{ConvertedType, LogicalType, TimeUnit, Type as Physical};
use parquet::column::reader::ColumnReader;
use parquet::data_type::{ByteArray, FixedLenByteArray};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::schema::types::ColumnDescriptor;
use rust_decimal::Decimal;
use rust_decimal::prelude::FromPrimitive;

use super::FeedError;
use super::csv::{TIME_COLUMNS, VALUE_COLUMNS, checked_bar, follows, parse_number, plain_decimal};
use super::timestamp::{TimeParser, TimeSpec};
use crate::bar::{Bar, Millis};

/// Rows read from each column at a time.
const BATCH: usize = 4096;

/// One batch of one column's values, as stored.
enum Values {
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bytes(Vec<ByteArray>),
    Fixed(Vec<FixedLenByteArray>),
}

/// What a column's stored values mean.
#[derive(Debug, Clone, Copy)]
enum Meaning {
    /// Since the epoch, `per_milli` to the millisecond; `utc` false for wall-clock.
    Timestamp {
        per_milli: i64,
        utc: bool,
    },
    Date,
    Decimal {
        scale: u32,
    },
    Plain,
}

/// One column the reader needs: where it is and how to read it.
struct Column {
    index: usize,
    name: String,
    meaning: Meaning,
}

impl Column {
    fn new(descriptor: &ColumnDescriptor, index: usize) -> Result<Self, String> {
        let name = descriptor.name().to_string();
        if descriptor.max_rep_level() > 0 {
            return Err(format!("column `{name}` is a list: expected one value a row"));
        }
        let meaning = match (descriptor.logical_type_ref(), descriptor.converted_type()) {
            (Some(LogicalType::Timestamp { is_adjusted_to_u_t_c, unit }), _) => Meaning::Timestamp {
                per_milli: match unit {
                    TimeUnit::MILLIS => 1,
                    TimeUnit::MICROS => 1_000,
                    TimeUnit::NANOS => 1_000_000,
                },
                utc: *is_adjusted_to_u_t_c,
            },
            (_, ConvertedType::TIMESTAMP_MILLIS) => Meaning::Timestamp { per_milli: 1, utc: true },
            (_, ConvertedType::TIMESTAMP_MICROS) => Meaning::Timestamp { per_milli: 1_000, utc: true },
            (Some(LogicalType::Date), _) | (_, ConvertedType::DATE) => Meaning::Date,
            (Some(LogicalType::Decimal { .. }), _) | (_, ConvertedType::DECIMAL) => {
                let scale = u32::try_from(descriptor.type_scale())
                    .ok()
                    .filter(|s| *s <= 28)
                    .ok_or_else(|| format!("column `{name}` has decimal scale {}", descriptor.type_scale()))?;
                Meaning::Decimal { scale }
            }
            _ => Meaning::Plain,
        };
        if descriptor.physical_type() == Physical::INT96 || descriptor.physical_type() == Physical::BOOLEAN {
            return Err(format!("column `{name}` is {}: not a time or a number", descriptor.physical_type()));
        }
        Ok(Self { index, name, meaning })
    }

    /// Reads up to `rows` values; an error comes with the offset of the
    /// row it is about (a null's).
    fn read(&self, reader: &mut ColumnReader, rows: usize) -> Result<Values, (u64, String)> {
        let mut levels = Vec::with_capacity(rows);
        macro_rules! take {
            ($reader:expr, $variant:ident) => {{
                let mut values = Vec::with_capacity(rows);
                let (records, read, _) = $reader
                    .read_records(rows, Some(&mut levels), None, &mut values)
                    .map_err(|e| (0, format!("column `{}`: {e}", self.name)))?;
                if read < records {
                    let null = levels.iter().position(|&l| l == 0).unwrap_or(0) as u64;
                    return Err((null, format!("`{}` is null", self.name)));
                }
                Values::$variant(values)
            }};
        }
        Ok(match reader {
            ColumnReader::Int32ColumnReader(r) => take!(r, I32),
            ColumnReader::Int64ColumnReader(r) => take!(r, I64),
            ColumnReader::FloatColumnReader(r) => take!(r, F32),
            ColumnReader::DoubleColumnReader(r) => take!(r, F64),
            ColumnReader::ByteArrayColumnReader(r) => take!(r, Bytes),
            ColumnReader::FixedLenByteArrayColumnReader(r) => take!(r, Fixed),
            _ => return Err((0, format!("column `{}` is neither a time nor a number", self.name))),
        })
    }

    /// The `i`-th value of `values` as a decimal.
    fn number(&self, values: &Values, i: usize) -> Result<Decimal, String> {
        let bad = || format!("`{}` is not a finite number", self.name);
        let scaled = |unscaled: i128| match self.meaning {
            Meaning::Decimal { scale } => Decimal::try_from_i128_with_scale(unscaled, scale).map_err(|_| bad()),
            _ => Decimal::try_from_i128_with_scale(unscaled, 0).map_err(|_| bad()),
        };
        match values {
            Values::I32(v) => scaled(i128::from(v[i])),
            Values::I64(v) => scaled(i128::from(v[i])),
            Values::F32(v) => Decimal::from_f32(v[i]).ok_or_else(bad),
            Values::F64(v) => double(v[i]).ok_or_else(bad),
            Values::Bytes(v) if matches!(self.meaning, Meaning::Decimal { .. }) => scaled(big_endian(v[i].data())?),
            Values::Fixed(v) => scaled(big_endian(v[i].data())?),
            Values::Bytes(v) => parse_number(&self.name, &String::from_utf8_lossy(v[i].data())),
        }
    }

    /// The `i`-th value of `values` as a time.
    fn time(
        &self,
        values: &Values,
        i: usize,
        spec: &TimeSpec,
        parser: &mut Option<TimeParser>,
    ) -> Result<Millis, String> {
        let text = match (values, self.meaning) {
            (Values::I64(v), Meaning::Timestamp { per_milli, utc }) => {
                let ms = v[i].div_euclid(per_milli);
                return if utc { Ok(ms) } else { spec.wall_clock_to_utc(ms) };
            }
            (Values::I32(v), Meaning::Date) => return spec.wall_clock_to_utc(i64::from(v[i]) * 86_400_000),
            (Values::I64(v), Meaning::Plain) => v[i].to_string(),
            (Values::I32(v), Meaning::Plain) => v[i].to_string(),
            (Values::Bytes(v), Meaning::Plain) => String::from_utf8_lossy(v[i].data()).into_owned(),
            _ => return Err(format!("time column `{}` is not a timestamp, date, integer or text", self.name)),
        };
        let parser = match parser {
            Some(parser) => parser,
            None => parser.insert(TimeParser::detect(spec, &text)?),
        };
        parser.parse(&text)
    }
}

fn len(values: &Values) -> usize {
    match values {
        Values::I32(v) => v.len(),
        Values::I64(v) => v.len(),
        Values::F32(v) => v.len(),
        Values::F64(v) => v.len(),
        Values::Bytes(v) => v.len(),
        Values::Fixed(v) => v.len(),
    }
}

/// A finite double as the shortest decimal that reads back as it (what
/// the writer of `4308.1522` meant; `Decimal::from_f64` gives
/// `4308.152200000001`), an order of magnitude sooner: its shortest text
/// (ryu) read as a plain decimal.
fn double(value: f64) -> Option<Decimal> {
    if !value.is_finite() {
        return None;
    }
    let mut buffer = ryu::Buffer::new();
    match plain_decimal(buffer.format_finite(value).as_bytes()) {
        Some(decimal) => Some(decimal.normalize()),
        // Exponents (below 1e-5 or from 1e16) are rare in bars.
        None => Decimal::from_f64(value),
    }
}

/// A big-endian two's-complement integer of at most 16 bytes.
fn big_endian(bytes: &[u8]) -> Result<i128, String> {
    if bytes.is_empty() || bytes.len() > 16 {
        return Err(format!("a decimal of {} bytes", bytes.len()));
    }
    let fill = if bytes[0] & 0x80 != 0 { 0xff } else { 0 };
    let mut full = [fill; 16];
    full[16 - bytes.len()..].copy_from_slice(bytes);
    Ok(i128::from_be_bytes(full))
}

/// Reads `file`'s bars for `symbol`, checking each as a CSV row is
/// checked, and hands each to `emit` until it answers `false`.
pub(super) fn read_parquet(
    file: File,
    origin: &str,
    symbol: &str,
    spec: &TimeSpec,
    emit: &mut dyn FnMut(Bar) -> bool,
) -> Result<usize, FeedError> {
    let fail = |row: u64, message: String| FeedError::Record { path: origin.to_string(), row, message };
    let reader = SerializedFileReader::new(file).map_err(|e| fail(0, format!("not a Parquet file: {e}")))?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let names: Vec<String> = schema.columns().iter().map(|c| c.name().to_ascii_lowercase()).collect();
    let missing = |column: &'static str| FeedError::Header {
        path: origin.to_string(),
        column,
        found: crate::runtime::bounded(&names.join(",")),
    };
    let at = |name: &str| names.iter().position(|n| n == name);
    let time_at = TIME_COLUMNS
        .iter()
        .find_map(|name| at(name))
        .or_else(|| at("__index_level_0__"))
        .ok_or_else(|| missing("date"))?;
    let mut columns = vec![Column::new(&schema.columns()[time_at], time_at).map_err(|m| fail(0, m))?];
    for (column, aliases) in VALUE_COLUMNS {
        let index = names.iter().position(|n| aliases.contains(&n.as_str())).ok_or_else(|| missing(column))?;
        columns.push(Column::new(&schema.columns()[index], index).map_err(|m| fail(0, m))?);
    }

    let symbol: Arc<str> = Arc::from(symbol);
    let mut parser = None;
    let mut previous: Option<Millis> = None;
    let mut row: u64 = 1;
    let mut count = 0;
    for group in 0..reader.num_row_groups() {
        let group = reader.get_row_group(group).map_err(|e| fail(row, e.to_string()))?;
        let mut rest = usize::try_from(group.metadata().num_rows()).unwrap_or(0);
        let mut readers = columns
            .iter()
            .map(|c| group.get_column_reader(c.index).map_err(|e| fail(row, e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        while rest > 0 {
            let want = rest.min(BATCH);
            let mut batch = Vec::with_capacity(columns.len());
            for (column, reader) in columns.iter().zip(&mut readers) {
                let values = column.read(reader, want).map_err(|(at, m)| fail(row + at, m))?;
                if len(&values) != want {
                    return Err(fail(row, format!("column `{}` ends early", column.name)));
                }
                batch.push(values);
            }
            for i in 0..want {
                let bad = |m: String| fail(row, m);
                let time = columns[0].time(&batch[0], i, spec, &mut parser).map_err(bad)?;
                let values = [1, 2, 3, 4, 5].map(|c| columns[c].number(&batch[c], i));
                let bar = checked_bar(&symbol, time, values).map_err(bad)?;
                follows(previous, time, || crate::bar::format_time(time)).map_err(bad)?;
                previous = Some(time);
                row += 1;
                count += 1;
                if !emit(bar) {
                    return Ok(count);
                }
            }
            rest -= want;
        }
    }
    if count == 0 {
        return Err(FeedError::Empty { path: origin.to_string() });
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_become_their_shortest_decimal() {
        assert_eq!(Decimal::from_f64(100.1).unwrap().to_string(), "100.1");
        assert_eq!(Decimal::from_f64(0.3).unwrap().to_string(), "0.3");
        assert_eq!(Decimal::from_f32(27.35).unwrap().to_string(), "27.35");
        assert!(Decimal::from_f64(f64::NAN).is_none());
    }

    /// A double reads as its shortest round-trip text (Rust's `Display`),
    /// on prices of every size and precision.
    #[test]
    fn doubles_read_as_their_shortest_text() {
        use std::str::FromStr as _;
        let shortest = |value: f64| Decimal::from_str(&format!("{value}")).ok().map(|d| d.normalize());
        let mut seed: u64 = 7;
        for _ in 0..200_000 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let digits = (seed >> 60) as i32 % 9;
            let value = ((seed >> 20) % 100_000_000) as f64 / 10f64.powi(digits);
            assert_eq!(double(value), shortest(value), "{value}");
        }
        for value in [0.0, 1e-7, 123.0, 1e16, 0.1 + 0.2, 4308.1522] {
            assert_eq!(double(value), shortest(value), "{value}");
        }
        assert_eq!(double(4308.1522).unwrap().to_string(), "4308.1522");
        assert_eq!(double(f64::INFINITY), None);
    }

    #[test]
    fn big_endian_decimals_keep_their_sign() {
        assert_eq!(big_endian(&[0x01, 0x00]).unwrap(), 256);
        assert_eq!(big_endian(&[0xff, 0xfe]).unwrap(), -2);
        assert!(big_endian(&[0; 17]).is_err());
    }
}
