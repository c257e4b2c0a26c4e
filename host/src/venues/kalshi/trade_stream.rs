//! Kalshi bars from its WebSocket market data: the `trade` channel of
//! `wss://api.elections.kalshi.com/trade-api/ws/v2`, signed as the fill
//! stream is.
//!
//! Kalshi streams trades, not candles; its REST candle's price is the
//! trades' own (first, highest, lowest, last YES price in the period, the
//! contracts traded as volume, no bar for a period without a trade). So a
//! period's bar is built here from its trades and handed on once a trade
//! of a later period shows it closed. Only periods that began after the
//! subscription (with a margin for the venue's clock) are built, since
//! those are the only ones whose every trade was heard; the rest, and any
//! period without a later trade, come from the candles poll as before.
//! After a reconnection everything starts over.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rust_decimal::Decimal;
use serde::Deserialize;

use super::orders::KalshiCredentials;
use crate::bar::{Bar, Millis, now_ms};
use super::socket::{self, malformed};
use crate::stream::{Protocol, Socket, StreamError};

const VENUE: &str = "kalshi";
/// How far the venue's clock may be ahead of ours.
const CLOCK_MARGIN: Millis = 2_000;

pub struct KalshiTradeStream {
    url: String,
    credentials: KalshiCredentials,
    tickers: Vec<Arc<str>>,
    period: Millis,
    building: Mutex<Building>,
}

#[derive(Default)]
struct Building {
    /// The first period every trade of which is heard on this connection.
    complete_from: Millis,
    /// The open period's bar per market.
    open: HashMap<Arc<str>, Bar>,
}

#[derive(Deserialize)]
struct Trade {
    market_ticker: String,
    #[serde(default)]
    yes_price: Option<i64>,
    #[serde(default)]
    yes_price_dollars: Option<String>,
    #[serde(default)]
    count: Option<i64>,
    #[serde(default)]
    count_fp: Option<String>,
    /// Seconds since the epoch.
    ts: i64,
}

impl KalshiTradeStream {
    /// Bars of `period` for `tickers` from the stream at `url`.
    pub fn new(url: String, credentials: KalshiCredentials, tickers: Vec<Arc<str>>, period: Duration) -> Self {
        let period = (period.as_millis() as Millis).max(1_000);
        Self { url, credentials, tickers, period, building: Mutex::default() }
    }

    /// Starts over: the periods before the next whole one may have trades
    /// this connection did not hear.
    fn restart(&self, now: Millis) {
        if let Ok(mut building) = self.building.lock() {
            let start = (now + CLOCK_MARGIN).div_euclid(self.period) * self.period;
            *building = Building { complete_from: start + self.period, open: HashMap::new() };
        }
    }

    /// Takes one trade; returns the bar it closed, if any.
    fn trade(&self, trade: Trade) -> Result<Option<Bar>, StreamError> {
        let Some(symbol) = self.tickers.iter().find(|t| ***t == *trade.market_ticker) else { return Ok(None) };
        let price = match (&trade.yes_price_dollars, trade.yes_price) {
            (Some(text), _) => Decimal::from_str(text)
                .map_err(|_| malformed(format!("yes_price_dollars `{text}` is not a decimal")))?,
            (None, Some(cents)) => Decimal::new(cents, 2),
            (None, None) => return Err(malformed("a trade without its price".into())),
        };
        let count = match (&trade.count_fp, trade.count) {
            (Some(text), _) => {
                Decimal::from_str(text).map_err(|_| malformed(format!("count_fp `{text}` is not a decimal")))?
            }
            (None, Some(count)) => Decimal::from(count),
            (None, None) => return Err(malformed("a trade without its count".into())),
        };
        if price <= Decimal::ZERO || count <= Decimal::ZERO {
            return Err(malformed(format!("a trade of {count} at {price}")));
        }
        let at = trade.ts.saturating_mul(1000);
        let start = at.div_euclid(self.period) * self.period;
        let mut building = self.building.lock().map_err(|_| malformed("the bar builder was poisoned".into()))?;
        if start < building.complete_from {
            return Ok(None);
        }
        let fresh = || Bar {
            symbol: symbol.clone(),
            time: start,
            open: price,
            high: price,
            low: price,
            close: price,
            volume: count,
        };
        let closed = match building.open.get_mut(symbol) {
            None => {
                building.open.insert(symbol.clone(), fresh());
                None
            }
            Some(bar) if bar.time == start => {
                bar.high = bar.high.max(price);
                bar.low = bar.low.min(price);
                bar.close = price;
                bar.volume += count;
                None
            }
            Some(bar) if bar.time < start => Some(std::mem::replace(bar, fresh())),
            // Older than the period being built: that period was handed on
            // (or never built); the candles poll has the truth for it.
            Some(_) => None,
        };
        Ok(closed)
    }
}

impl Protocol for KalshiTradeStream {
    type Item = Bar;

    fn venue(&self) -> &'static str {
        VENUE
    }

    fn url(&self) -> &str {
        &self.url
    }

    fn request(&self) -> Result<tokio_tungstenite::tungstenite::handshake::client::Request, StreamError> {
        socket::request(&self.credentials, &self.url)
    }

    async fn handshake(&self, socket: &mut Socket, limit: Duration) -> Result<(), StreamError> {
        let tickers: Vec<&str> = self.tickers.iter().map(|t| &**t).collect();
        socket::subscribe(socket, limit, "trade", serde_json::json!({ "market_tickers": tickers })).await?;
        self.restart(now_ms());
        Ok(())
    }

    fn items(&self, message: &[u8]) -> Result<Vec<Bar>, StreamError> {
        #[derive(Deserialize)]
        struct Envelope {
            #[serde(rename = "type")]
            kind: String,
            #[serde(default)]
            msg: Option<serde_json::Value>,
        }
        let envelope: Envelope = serde_json::from_slice(message)
            .map_err(|e| malformed(format!("{e}: {}", crate::venue::excerpt(message))))?;
        if envelope.kind != "trade" {
            return Ok(Vec::new());
        }
        let trade: Trade =
            serde_json::from_value(envelope.msg.unwrap_or_default()).map_err(|e| malformed(format!("a trade: {e}")))?;
        Ok(self.trade(trade)?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(now: Millis) -> KalshiTradeStream {
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap();
        let credentials = KalshiCredentials::from_key("id".into(), key);
        let s = KalshiTradeStream::new(
            "ws://127.0.0.1:1/trade-api/ws/v2".into(),
            credentials,
            vec![Arc::from("T")],
            Duration::from_secs(60),
        );
        s.restart(now);
        s
    }

    fn trade(cents: i64, count: i64, ts: i64) -> Vec<u8> {
        serde_json::json!({"type": "trade", "sid": 2, "msg": {"trade_id": "x", "market_ticker": "T",
            "yes_price": cents, "no_price": 100 - cents, "count": count, "taker_side": "yes", "ts": ts}})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_period_becomes_a_bar_once_a_later_trade_closes_it() {
        // Subscribed at 10:00:30: 10:00 was heard in part; 10:01 is the first whole period.
        let s = stream(36_030_000);
        assert!(s.items(&trade(40, 1, 36_040)).unwrap().is_empty(), "a partly heard period is left to the poll");
        for (cents, count, ts) in [(41, 2, 36_060), (45, 1, 36_070), (39, 3, 36_100), (42, 1, 36_119)] {
            assert!(s.items(&trade(cents, count, ts)).unwrap().is_empty());
        }
        let bars = s.items(&trade(50, 1, 36_185)).unwrap();
        assert_eq!(bars.len(), 1);
        let bar = &bars[0];
        assert_eq!(bar.time, 36_060_000);
        let d = |t: &str| t.parse::<Decimal>().unwrap();
        assert_eq!((bar.open, bar.high, bar.low, bar.close), (d("0.41"), d("0.45"), d("0.39"), d("0.42")));
        assert_eq!(bar.volume, Decimal::from(7));
        // A late trade of a period already handed on changes nothing.
        assert!(s.items(&trade(10, 9, 36_110)).unwrap().is_empty());
        // Other markets, other messages and bad trades.
        let other = br#"{"type":"trade","msg":{"market_ticker":"U","yes_price":5,"count":1,"ts":36300}}"#;
        assert!(s.items(other).unwrap().is_empty());
        assert!(s.items(br#"{"type":"subscribed","msg":{"channel":"trade","sid":2}}"#).unwrap().is_empty());
        for bad in [
            &b"nope"[..],
            br#"{"type":"trade","msg":{"market_ticker":"T","count":1,"ts":36300}}"#,
            br#"{"type":"trade","msg":{"market_ticker":"T","yes_price":5,"count":-1,"ts":36300}}"#,
        ] {
            assert!(matches!(s.items(bad), Err(StreamError::Malformed { .. })));
        }
    }
}
