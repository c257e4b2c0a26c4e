//! The result of a backtest, for people (text), for tools (JSON), and
//! to look at (`--report`: an HTML page or SVG charts, with statistics).

mod chart;
mod curve;
mod html;
mod stats;

use std::fmt::Write as _;
use std::path::Path;

pub use self::curve::{Curve, Point};
pub use self::stats::{Statistics, Trade, statistics, trades};

use rust_decimal::Decimal;
use serde::Serialize;

use crate::bar::format_time;
use crate::order::{Fill, Side};

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot draw the charts")]
    Chart(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot write {path}")]
    Io { path: String, source: std::io::Error },
    #[error("--report {path}: name a file ending in .html (the page) or .svg (the charts)")]
    Kind { path: String },
}

/// Writes `report` to `path`: the whole page for `.html`, the charts for
/// `.svg`; returns the statistics it shows.
pub fn write_report(path: &Path, report: &Report, curve: &Curve) -> Result<Statistics, ReportError> {
    let name = path.display().to_string();
    let extension = path.extension().map(|e| e.to_ascii_lowercase());
    let html = match extension.as_ref().and_then(|e| e.to_str()) {
        Some("html" | "htm") => true,
        Some("svg") => false,
        _ => return Err(ReportError::Kind { path: name }),
    };
    let (trades, open) = trades(&report.fills);
    let stats = statistics(curve, &trades, open, report.starting_cash, report.max_drawdown_pct);
    let svg = chart::charts(curve, &report.fills)?;
    let text = if html { html::page(report, &stats, &trades, &svg) } else { svg };
    std::fs::write(path, text).map_err(|source| ReportError::Io { path: name, source })?;
    Ok(stats)
}

/// One fill as reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FillRecord {
    /// RFC 3339, UTC.
    pub time: String,
    pub symbol: String,
    pub side: Side,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub qty: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub price: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub commission: Decimal,
}

impl From<&Fill> for FillRecord {
    fn from(fill: &Fill) -> Self {
        Self {
            time: format_time(fill.time),
            symbol: fill.symbol.to_string(),
            side: fill.side,
            qty: fill.qty,
            price: fill.price,
            commission: fill.commission,
        }
    }
}

/// A backtest's outcome. Its JSON form is a stable interface: fields may be
/// added, never renamed or removed. Money is exact, as JSON numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub strategy: String,
    pub symbol: String,
    pub bars: u64,
    /// Orders that passed the risk checks and reached the broker.
    pub orders: u64,
    /// Intents refused by the risk checks or the broker.
    pub rejected: u64,
    pub fills: Vec<FillRecord>,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub realized_pnl: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub unrealized_pnl: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub commission: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub max_drawdown: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub max_drawdown_pct: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub final_position: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub starting_cash: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub final_equity: Decimal,
    /// Orders still open at the end (e.g. placed on the last bar).
    pub open_orders: u64,
    /// Each symbol's part, in the order the symbols were first seen (with
    /// several, `symbol` and `final_position` are the first one's).
    pub symbols: Vec<SymbolReport>,
    /// With `--report`: returns, ratios and trades (see [`Statistics`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statistics: Option<Statistics>,
}

/// One symbol's part of a backtest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SymbolReport {
    pub symbol: String,
    pub fills: u64,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub realized_pnl: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub unrealized_pnl: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub final_position: Decimal,
}

impl Report {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let several = self.symbols.len() > 1;
        let on = if several {
            self.symbols.iter().map(|s| s.symbol.as_str()).collect::<Vec<_>>().join(", ")
        } else {
            self.symbol.clone()
        };
        let _ = writeln!(out, "backtest of {} on {on} ({} bars)", self.strategy, self.bars);
        for f in &self.fills {
            let symbol = if several { format!("{:<8} ", f.symbol) } else { String::new() };
            let _ = writeln!(out, "  {}  {symbol}{:<4} {} @ {}", f.time, f.side, f.qty, f.price);
        }
        let pct = (self.max_drawdown_pct * Decimal::ONE_HUNDRED).round_dp(2);
        let rows = [
            ("orders", self.orders.to_string()),
            ("rejected", self.rejected.to_string()),
            ("fills", self.fills.len().to_string()),
            ("open orders", self.open_orders.to_string()),
            ("realized pnl", self.realized_pnl.round_dp(4).to_string()),
            ("unrealized pnl", self.unrealized_pnl.round_dp(4).to_string()),
            ("commission", self.commission.round_dp(4).to_string()),
            ("max drawdown", format!("{} ({pct}%)", self.max_drawdown.round_dp(4))),
            ("final position", self.final_position.to_string()),
            ("final equity", self.final_equity.round_dp(4).to_string()),
        ];
        for (label, value) in rows {
            let _ = writeln!(out, "{label:>16}: {value}");
        }
        if several {
            let _ = writeln!(
                out,
                "\n  {:<10} {:>6} {:>16} {:>16} {:>10}",
                "symbol", "fills", "realized", "unrealized", "position"
            );
            for s in &self.symbols {
                let _ = writeln!(
                    out,
                    "  {:<10} {:>6} {:>16} {:>16} {:>10}",
                    s.symbol,
                    s.fills,
                    s.realized_pnl.round_dp(4),
                    s.unrealized_pnl.round_dp(4),
                    s.final_position
                );
            }
        }
        out
    }
}
