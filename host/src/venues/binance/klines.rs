//! Binance spot klines: `GET /api/v3/klines`, one symbol per request.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;

use crate::bar::{Bar, Millis};
use crate::feed::{BarSource, FeedError};
use crate::venue::{VenueError, get_ok, json};

const VENUE: &str = "binance";
const ENDPOINT: &str = "/api/v3/klines";
/// Binance's maximum klines per request.
const PAGE: usize = 1000;

#[derive(Debug, Clone)]
pub struct BinanceKlinesConfig {
    /// e.g. `https://api.binance.com`.
    pub base_url: String,
    pub symbols: Vec<String>,
    /// `1m`, `5m`, `15m`, `1h`, `1d`, ...
    pub interval: String,
}

pub struct BinanceKlines {
    client: reqwest::Client,
    config: BinanceKlinesConfig,
    period: Duration,
    symbols: Vec<Arc<str>>,
}

impl BinanceKlines {
    pub fn new(client: reqwest::Client, config: BinanceKlinesConfig) -> Result<Self, FeedError> {
        let period = interval_period(&config.interval).ok_or_else(|| FeedError::Config {
            message: format!("binance interval `{}` is not supported", config.interval),
        })?;
        let symbols = config.symbols.iter().map(|s| Arc::from(s.as_str())).collect();
        Ok(Self { client, config, period, symbols })
    }
}

fn interval_period(interval: &str) -> Option<Duration> {
    let (count, unit) = interval.split_at(interval.len().checked_sub(1)?);
    let count: u64 = count.parse().ok()?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    };
    (count > 0).then(|| Duration::from_secs(count * seconds))
}

fn malformed(message: String, body: &str) -> FeedError {
    FeedError::from(VenueError::Malformed {
        venue: VENUE,
        endpoint: ENDPOINT.into(),
        body: body.chars().take(300).collect(),
        message,
    })
}

/// Parses a klines answer; only candles closed by `now` are kept.
pub fn parse_klines(body: &[u8], symbol: &Arc<str>, now: Millis) -> Result<Vec<Bar>, FeedError> {
    let rows: Vec<Vec<serde_json::Value>> = json(VENUE, ENDPOINT, body)?;
    let mut bars = Vec::with_capacity(rows.len());
    for row in rows {
        let text = || serde_json::Value::Array(row.clone()).to_string();
        if row.len() < 7 {
            return Err(malformed(format!("a kline has {} fields, expected 12", row.len()), &text()));
        }
        let int =
            |i: usize| row[i].as_i64().ok_or_else(|| malformed(format!("kline field {i} is not an integer"), &text()));
        let price = |i: usize| {
            row[i]
                .as_str()
                .and_then(|s| Decimal::from_str(s).ok())
                .ok_or_else(|| malformed(format!("kline field {i} is not a decimal string"), &text()))
        };
        let (open_time, close_time) = (int(0)?, int(6)?);
        if close_time >= now {
            // Still open: Binance includes the forming candle last.
            continue;
        }
        bars.push(Bar {
            symbol: symbol.clone(),
            time: open_time,
            open: price(1)?,
            high: price(2)?,
            low: price(3)?,
            close: price(4)?,
            volume: price(5)?,
        });
    }
    Ok(bars)
}

#[async_trait::async_trait]
impl BarSource for BinanceKlines {
    fn name(&self) -> &str {
        VENUE
    }

    fn symbols(&self) -> &[Arc<str>] {
        &self.symbols
    }

    fn period(&self) -> Duration {
        self.period
    }

    async fn fetch(&self, start: Millis, end: Millis) -> Result<Vec<Bar>, FeedError> {
        let url = format!("{}{ENDPOINT}", self.config.base_url.trim_end_matches('/'));
        let mut bars = Vec::new();
        for symbol in &self.symbols {
            let mut from = start;
            for _ in 0..10_000 {
                let query = [
                    ("symbol", symbol.to_string()),
                    ("interval", self.config.interval.clone()),
                    ("startTime", from.to_string()),
                    // Inclusive, on open times: the candle opening at `end` is still open.
                    ("endTime", (end - 1).to_string()),
                    ("limit", PAGE.to_string()),
                ];
                let body =
                    get_ok(VENUE, ENDPOINT, self.client.get(&url).query(&query), super::orders::error_body).await?;
                let rows: Vec<serde_json::Value> = json(VENUE, ENDPOINT, &body)?;
                let full = rows.len() >= PAGE;
                let page = parse_klines(&body, symbol, end)?;
                let last = page.last().map(|b| b.time);
                bars.extend(page);
                let period = self.period.as_millis() as Millis;
                match last {
                    // A full page may have more after it, unless the next
                    // candle (opening a period after the last) closes after `end`.
                    Some(last) if full && last >= from && last + 2 * period <= end => from = last + 1,
                    _ => break,
                }
            }
        }
        Ok(bars)
    }
}
