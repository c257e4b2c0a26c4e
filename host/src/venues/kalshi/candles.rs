//! Kalshi market candlesticks:
//! `GET /trade-api/v2/series/{series}/markets/{ticker}/candlesticks`.
//!
//! Prices are YES-contract prices in cents (`open`) or, in newer answers,
//! dollar strings (`open_dollars`); both become dollars. A period without a
//! trade has no prices and yields no bar.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use serde::Deserialize;

use crate::bar::{Bar, Millis};
use crate::feed::{BarSource, FeedError};
use crate::venue::{VenueError, get_ok, json};

const VENUE: &str = "kalshi";
/// Most candlesticks Kalshi returns for one request; a longer range is
/// asked for in pieces of at most this many periods.
const MAX_CANDLES: i64 = 5000;

/// A market and the series it belongs to, both part of the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KalshiMarket {
    pub series: String,
    pub ticker: String,
}

#[derive(Debug, Clone)]
pub struct KalshiCandlesConfig {
    /// e.g. `https://api.elections.kalshi.com`.
    pub base_url: String,
    pub markets: Vec<KalshiMarket>,
    /// Minutes per candle: 1, 60 or 1440.
    pub period_minutes: u32,
}

pub struct KalshiCandles {
    client: reqwest::Client,
    config: KalshiCandlesConfig,
    symbols: Vec<Arc<str>>,
}

impl KalshiCandles {
    pub fn new(client: reqwest::Client, config: KalshiCandlesConfig) -> Result<Self, FeedError> {
        if ![1, 60, 1440].contains(&config.period_minutes) {
            return Err(FeedError::Config {
                message: format!("kalshi period_interval must be 1, 60 or 1440, got {}", config.period_minutes),
            });
        }
        let symbols = config.markets.iter().map(|m| Arc::from(m.ticker.as_str())).collect();
        Ok(Self { client, config, symbols })
    }
}

#[derive(Deserialize)]
struct Answer {
    candlesticks: Vec<Candle>,
}

#[derive(Deserialize)]
struct Candle {
    end_period_ts: i64,
    price: Prices,
    #[serde(default)]
    volume: Option<serde_json::Value>,
    /// The volume as a fixed-point string, which newer answers send
    /// alongside (or instead of) the legacy integer.
    #[serde(default)]
    volume_fp: Option<String>,
}

#[derive(Deserialize)]
struct Prices {
    open: Option<i64>,
    high: Option<i64>,
    low: Option<i64>,
    close: Option<i64>,
    open_dollars: Option<String>,
    high_dollars: Option<String>,
    low_dollars: Option<String>,
    close_dollars: Option<String>,
}

/// Parses a candlesticks answer for `ticker`, whose candles span `period`.
pub fn parse_candles(body: &[u8], ticker: &Arc<str>, period: Duration, endpoint: &str) -> Result<Vec<Bar>, FeedError> {
    let answer: Answer = json(VENUE, endpoint, body)?;
    let bad = |message: String| {
        FeedError::from(VenueError::Malformed { venue: VENUE, endpoint: endpoint.into(), body: String::new(), message })
    };
    let dollars = |cents: Option<i64>, text: &Option<String>, what: &str| -> Result<Option<Decimal>, FeedError> {
        match (text, cents) {
            (Some(text), _) => {
                Decimal::from_str(text).map(Some).map_err(|_| bad(format!("{what}_dollars `{text}` is not a decimal")))
            }
            (None, Some(cents)) => Ok(Some(Decimal::new(cents, 2))),
            (None, None) => Ok(None),
        }
    };
    let mut bars = Vec::new();
    for candle in answer.candlesticks {
        let p = &candle.price;
        let prices = (
            dollars(p.open, &p.open_dollars, "open")?,
            dollars(p.high, &p.high_dollars, "high")?,
            dollars(p.low, &p.low_dollars, "low")?,
            dollars(p.close, &p.close_dollars, "close")?,
        );
        let (Some(open), Some(high), Some(low), Some(close)) = prices else { continue };
        let volume = match (&candle.volume_fp, &candle.volume) {
            (Some(s), _) => Decimal::from_str(s).map_err(|_| bad(format!("volume_fp `{s}` is not a decimal")))?,
            (None, v) => match v {
                None | Some(serde_json::Value::Null) => Decimal::ZERO,
                Some(serde_json::Value::String(s)) => {
                    Decimal::from_str(s).map_err(|_| bad(format!("volume `{s}` is not a decimal")))?
                }
                Some(v) => v.as_i64().map(Decimal::from).ok_or_else(|| bad(format!("volume `{v}` is not a number")))?,
            },
        };
        // The bar is stamped with its open time, like every other feed.
        let time = candle.end_period_ts.saturating_mul(1000).saturating_sub(period.as_millis() as i64);
        bars.push(Bar { symbol: ticker.clone(), time, open, high, low, close, volume });
    }
    Ok(bars)
}

#[async_trait::async_trait]
impl BarSource for KalshiCandles {
    fn name(&self) -> &str {
        VENUE
    }

    fn symbols(&self) -> &[Arc<str>] {
        &self.symbols
    }

    fn period(&self) -> Duration {
        Duration::from_secs(u64::from(self.config.period_minutes) * 60)
    }

    async fn fetch(&self, start: Millis, end: Millis) -> Result<Vec<Bar>, FeedError> {
        let mut bars = Vec::new();
        let period = i64::from(self.config.period_minutes) * 60;
        for (market, ticker) in self.config.markets.iter().zip(&self.symbols) {
            let endpoint = format!("/trade-api/v2/series/{}/markets/{}/candlesticks", market.series, market.ticker);
            let url = format!("{}{endpoint}", self.config.base_url.trim_end_matches('/'));
            // Candles are keyed by their end: the first one opening at or
            // after `start` ends a period later.
            for (from, to) in chunks(start.div_euclid(1000) + period, end.div_euclid(1000), period) {
                let query = [
                    ("start_ts", from.to_string()),
                    ("end_ts", to.to_string()),
                    ("period_interval", self.config.period_minutes.to_string()),
                ];
                let body =
                    get_ok(VENUE, &endpoint, self.client.get(&url).query(&query), super::orders::error_body).await?;
                bars.extend(parse_candles(&body, ticker, self.period(), &endpoint)?);
            }
        }
        Ok(bars)
    }
}

/// Splits `[start, end]` (seconds, both inclusive, as Kalshi reads
/// `start_ts` and `end_ts`) into ranges that each hold at most
/// [`MAX_CANDLES`] period ends.
fn chunks(start: i64, end: i64, period: i64) -> Vec<(i64, i64)> {
    let period = period.max(1);
    let mut ranges = Vec::new();
    if start > end {
        return ranges;
    }
    let mut from = start;
    loop {
        // The first period end at or after `from`, then MAX_CANDLES - 1 more.
        let first_end = from.saturating_add(period - 1).div_euclid(period).saturating_mul(period);
        let to = first_end.saturating_add((MAX_CANDLES - 1).saturating_mul(period)).min(end);
        ranges.push((from, to));
        if to >= end {
            return ranges;
        }
        from = to + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fixed_point_volume() {
        let body = br#"{"candlesticks": [{"end_period_ts": 120, "volume_fp": "12.00",
            "price": {"open_dollars": "0.45", "high_dollars": "0.5", "low_dollars": "0.4", "close_dollars": "0.46"}}]}"#;
        let bars = parse_candles(body, &Arc::from("T"), Duration::from_secs(60), "/c").unwrap();
        assert_eq!((bars[0].volume, bars[0].time), (Decimal::from(12), 60_000));
    }

    #[test]
    fn a_long_range_is_split_under_the_cap() {
        assert_eq!(chunks(0, 59, 60), vec![(0, 59)]);
        let minute = 60;
        let ranges = chunks(30, 12_000 * minute, minute);
        assert_eq!(ranges.len(), 3);
        assert_eq!(ranges.first().map(|r| r.0), Some(30));
        assert_eq!(ranges.last().map(|r| r.1), Some(12_000 * minute));
        for (i, (from, to)) in ranges.iter().enumerate() {
            let ends = to.div_euclid(minute) - (from + minute - 1).div_euclid(minute) + 1;
            assert!(ends <= MAX_CANDLES, "{ends} period ends in one request");
            if let Some(next) = ranges.get(i + 1) {
                assert_eq!(next.0, to + 1, "no gap and no overlap");
            }
        }
    }
}
