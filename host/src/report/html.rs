//! A backtest report as one self-contained HTML page: the charts inline,
//! the statistics, and the trades. Nothing in it asks for the network.

use std::fmt::Write as _;

use super::Report;
use super::stats::{Statistics, Trade};

/// Most trades listed; the rest are counted.
const TRADE_ROWS: usize = 5_000;

/// Escapes text for HTML content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "–".into(), |v| format!("{:.2}%", v * 100.0))
}

fn ratio(value: Option<f64>) -> String {
    value.map_or_else(|| "–".into(), |v| format!("{v:.3}"))
}

/// The page for `report`, with `svg` (from [`super::chart::charts`]).
pub fn page(report: &Report, stats: &Statistics, trades: &[Trade], svg: &str) -> String {
    let symbols = report.symbols.iter().map(|s| s.symbol.as_str()).collect::<Vec<_>>().join(", ");
    let title = escape(&crate::runtime::bounded(&format!("{} on {symbols}", report.strategy)));
    let mut html = String::with_capacity(svg.len() + 64 * 1024);
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Backtest: {title}</title>\n\
         <style>body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:1em 0}}\
         td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:right}}th{{background:#f4f4f4}}\
         td:first-child,th:first-child{{text-align:left}}</style>\n</head>\n<body>\n<h1>Backtest: {title}</h1>\n"
    );
    let rows = [
        ("Bars", report.bars.to_string()),
        ("Starting cash", report.starting_cash.to_string()),
        ("Final equity", report.final_equity.round_dp(4).to_string()),
        ("Total return", percent(Some(stats.total_return))),
        ("Annualised return", percent(stats.annual_return)),
        ("Max drawdown", format!("{} ({})", report.max_drawdown.round_dp(4), percent(Some(stats.max_drawdown_pct)))),
        ("Sharpe ratio", ratio(stats.sharpe)),
        ("Sortino ratio", ratio(stats.sortino)),
        ("Trades (closed)", stats.trades.to_string()),
        ("Trades still open", stats.open_trades.to_string()),
        ("Win rate", percent(stats.win_rate)),
        ("Profit factor", ratio(stats.profit_factor)),
        ("Exposure time", percent(Some(stats.exposure))),
        ("Fills", report.fills.len().to_string()),
        ("Commission", report.commission.round_dp(4).to_string()),
    ];
    html.push_str("<h2>Summary</h2>\n<table id=\"summary\">\n");
    for (label, value) in rows {
        let _ = writeln!(html, "<tr><th>{label}</th><td>{}</td></tr>", escape(&value));
    }
    html.push_str("</table>\n<h2>Charts</h2>\n");
    // The SVG document's own XML declaration does not belong inside HTML.
    let svg = svg.find("<svg").map_or(svg, |at| &svg[at..]);
    html.push_str(svg);
    let _ = writeln!(html, "\n<h2>Trades</h2>\n<table id=\"trades\">");
    html.push_str("<tr><th>Symbol</th><th>Side</th><th>Opened</th><th>Closed</th><th>Quantity</th><th>PnL</th></tr>\n");
    for t in trades.iter().take(TRADE_ROWS) {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&t.symbol),
            t.side,
            escape(&t.opened),
            escape(&t.closed),
            t.qty,
            t.pnl.round_dp(4)
        );
    }
    html.push_str("</table>\n");
    if trades.len() > TRADE_ROWS {
        let _ = writeln!(html, "<p>The first {TRADE_ROWS} of {} trades.</p>", trades.len());
    }
    html.push_str("</body>\n</html>\n");
    html
}
