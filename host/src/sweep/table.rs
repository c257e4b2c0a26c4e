//! A sweep's table: one row per combination, sorted by a metric, written
//! as CSV (or JSON), read back and merged across shards.

use std::io::{Read, Write};
use std::str::FromStr;

use rust_decimal::Decimal;

/// The columns after the parameters, in order.
const STATS: [&str; 10] = [
    "bars",
    "orders",
    "fills",
    "realized_pnl",
    "unrealized_pnl",
    "commission",
    "max_drawdown",
    "max_drawdown_pct",
    "final_equity",
    "return_pct",
];

/// What one combination's backtest came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub bars: u64,
    pub orders: u64,
    pub fills: u64,
    pub realized_pnl: Decimal,
    pub unrealized_pnl: Decimal,
    pub commission: Decimal,
    pub max_drawdown: Decimal,
    pub max_drawdown_pct: Decimal,
    pub final_equity: Decimal,
    /// Final equity against the starting cash, in percent.
    pub return_pct: Decimal,
}

impl Stats {
    fn cells(&self) -> [String; 10] {
        [
            self.bars.to_string(),
            self.orders.to_string(),
            self.fills.to_string(),
            self.realized_pnl.normalize().to_string(),
            self.unrealized_pnl.normalize().to_string(),
            self.commission.normalize().to_string(),
            self.max_drawdown.normalize().to_string(),
            self.max_drawdown_pct.round_dp(8).normalize().to_string(),
            self.final_equity.normalize().to_string(),
            self.return_pct.normalize().to_string(),
        ]
    }

    fn from_cells(cells: &[&str]) -> Option<Self> {
        let int = |i: usize| cells.get(i)?.parse::<u64>().ok();
        let dec = |i: usize| Decimal::from_str(cells.get(i)?).ok();
        Some(Self {
            bars: int(0)?,
            orders: int(1)?,
            fills: int(2)?,
            realized_pnl: dec(3)?,
            unrealized_pnl: dec(4)?,
            commission: dec(5)?,
            max_drawdown: dec(6)?,
            max_drawdown_pct: dec(7)?,
            final_equity: dec(8)?,
            return_pct: dec(9)?,
        })
    }
}

/// One combination: its number in the grid, its parameters, its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub index: usize,
    pub params: Vec<(String, String)>,
    pub stats: Stats,
}

/// What the table is sorted by, best first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Metric {
    #[default]
    FinalEquity,
    ReturnPct,
    RealizedPnl,
    /// Lowest first.
    MaxDrawdown,
    /// Lowest first.
    MaxDrawdownPct,
    Fills,
}

impl Metric {
    fn key(self, stats: &Stats) -> Decimal {
        match self {
            Metric::FinalEquity => stats.final_equity,
            Metric::ReturnPct => stats.return_pct,
            Metric::RealizedPnl => stats.realized_pnl,
            Metric::MaxDrawdown => -stats.max_drawdown,
            Metric::MaxDrawdownPct => -stats.max_drawdown_pct,
            Metric::Fills => Decimal::from(stats.fills),
        }
    }
}

/// Best first by `metric`; ties by the combination's number, so the order
/// is total and does not depend on how the rows were computed.
pub(super) fn sort(rows: &mut [Row], metric: Metric) {
    rows.sort_by(|a, b| metric.key(&b.stats).cmp(&metric.key(&a.stats)).then(a.index.cmp(&b.index)));
}

/// Why a table could not be written, read or merged.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("cannot write the table")]
    Write(#[from] std::io::Error),
    #[error("cannot write the table")]
    Csv(#[from] csv::Error),
    #[error("{origin}: {message}")]
    Malformed { origin: String, message: String },
    #[error("{origin}: its columns differ from the first table's")]
    Columns { origin: String },
    #[error("combination {index} is in two tables: were the shards run with the same grid?")]
    Duplicate { index: usize },
}

/// Writes `rows` as CSV, or as JSON when `json`.
pub fn write_table(rows: &[Row], keys: &[String], json: bool, out: &mut impl Write) -> Result<(), TableError> {
    if json {
        let objects: Vec<serde_json::Value> = rows
            .iter()
            .map(|row| {
                let mut object = serde_json::Map::new();
                object.insert("index".into(), row.index.into());
                for (key, value) in &row.params {
                    object.insert(key.clone(), value.clone().into());
                }
                for (name, cell) in STATS.iter().zip(row.stats.cells()) {
                    let number = serde_json::from_str::<serde_json::Value>(&cell).unwrap_or(cell.into());
                    object.insert((*name).into(), number);
                }
                serde_json::Value::Object(object)
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&objects).unwrap_or_default())?;
        return Ok(());
    }
    let mut writer = csv::Writer::from_writer(out);
    let header: Vec<&str> = ["index"].into_iter().chain(keys.iter().map(String::as_str)).chain(STATS).collect();
    writer.write_record(&header)?;
    for row in rows {
        let mut record = vec![row.index.to_string()];
        record.extend(row.params.iter().map(|(_, v)| v.clone()));
        record.extend(row.stats.cells());
        writer.write_record(&record)?;
    }
    writer.flush()?;
    Ok(())
}

/// Reads a CSV table [`write_table`] wrote: its parameter names and rows.
pub fn read_table(input: impl Read, origin: &str) -> Result<(Vec<String>, Vec<Row>), TableError> {
    let malformed = |message: String| TableError::Malformed { origin: origin.to_string(), message };
    let mut reader = csv::Reader::from_reader(input);
    let header: Vec<String> =
        reader.headers().map_err(|e| malformed(e.to_string()))?.iter().map(String::from).collect();
    let params = header.len().checked_sub(1 + STATS.len()).ok_or_else(|| malformed("too few columns".into()))?;
    if header.first().map(String::as_str) != Some("index") || header[1 + params..] != STATS {
        return Err(malformed("not a sweep table (expected index, the parameters, then the statistics)".into()));
    }
    let keys = header[1..1 + params].to_vec();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| malformed(e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let cells: Vec<&str> = record.iter().collect();
        let bad = || malformed(format!("line {line} is not a row of this table"));
        let index = cells.first().and_then(|c| c.parse().ok()).ok_or_else(bad)?;
        let values = cells.get(1..1 + params).ok_or_else(bad)?;
        let stats = Stats::from_cells(cells.get(1 + params..).ok_or_else(bad)?).ok_or_else(bad)?;
        let params = keys.iter().cloned().zip(values.iter().map(|v| v.to_string())).collect();
        rows.push(Row { index, params, stats });
    }
    Ok((keys, rows))
}

/// Joins shards' tables into one sorted by `metric`: the table a single
/// run of the whole grid writes.
pub fn merge(
    tables: Vec<(String, Vec<String>, Vec<Row>)>,
    metric: Metric,
) -> Result<(Vec<String>, Vec<Row>), TableError> {
    let mut keys: Option<Vec<String>> = None;
    let mut all = Vec::new();
    for (origin, these, rows) in tables {
        match &keys {
            Some(first) if *first != these => return Err(TableError::Columns { origin }),
            Some(_) => {}
            None => keys = Some(these),
        }
        all.extend(rows);
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(row) = all.iter().find(|row| !seen.insert(row.index)) {
        return Err(TableError::Duplicate { index: row.index });
    }
    sort(&mut all, metric);
    Ok((keys.unwrap_or_default(), all))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(index: usize, equity: i64) -> Row {
        let d = Decimal::from;
        Row {
            index,
            params: vec![("fast".into(), index.to_string())],
            stats: Stats {
                bars: 10,
                orders: 2,
                fills: 2,
                realized_pnl: d(equity - 100),
                unrealized_pnl: Decimal::ZERO,
                commission: Decimal::new(15, 1),
                max_drawdown: d(index as i64),
                max_drawdown_pct: Decimal::new(index as i64, 3),
                final_equity: d(equity),
                return_pct: d(equity - 100),
            },
        }
    }

    #[test]
    fn a_table_round_trips_and_shards_merge_into_the_whole() {
        let keys = vec!["fast".to_string()];
        let mut whole = vec![row(0, 105), row(1, 110), row(2, 105), row(3, 90)];
        sort(&mut whole, Metric::FinalEquity);
        assert_eq!(whole.iter().map(|r| r.index).collect::<Vec<_>>(), [1, 0, 2, 3], "ties by number");
        let shard = |rows: Vec<Row>| {
            let mut text = Vec::new();
            write_table(&rows, &keys, false, &mut text).unwrap();
            let (k, r) = read_table(text.as_slice(), "shard").unwrap();
            ("shard".to_string(), k, r)
        };
        let (_, merged) = merge(
            vec![shard(vec![row(0, 105), row(2, 105)]), shard(vec![row(1, 110), row(3, 90)])],
            Metric::FinalEquity,
        )
        .unwrap();
        assert_eq!(merged, whole);
        assert!(matches!(
            merge(vec![shard(vec![row(0, 105)]), shard(vec![row(0, 105)])], Metric::FinalEquity),
            Err(TableError::Duplicate { index: 0 })
        ));
        let mut by_drawdown = whole.clone();
        sort(&mut by_drawdown, Metric::MaxDrawdown);
        assert_eq!(by_drawdown[0].index, 0, "lowest drawdown first");
    }

    #[test]
    fn a_file_that_is_not_a_table_is_refused() {
        for bad in ["", "a,b\n1,2\n", "index,fast\n1,2\n"] {
            assert!(read_table(bad.as_bytes(), "x.csv").is_err(), "{bad:?}");
        }
        let mut text = Vec::new();
        write_table(&[row(0, 1)], &["fast".to_string()], false, &mut text).unwrap();
        let broken = String::from_utf8(text).unwrap() + "7,x,1,1,1,y,1,1,1,1,1,1\n";
        let err = read_table(broken.as_bytes(), "x.csv").unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");
    }
}
