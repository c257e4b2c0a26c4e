//! Binance's kline streams: `wss://stream.binance.com:9443/stream?streams=
//! btcusdt@kline_1m/ethusdt@kline_1m`, one combined connection for every
//! symbol.
//!
//! Nothing is sent: the streams are named in the URL (lowercase symbols).
//! Each message is `{"stream", "data": {"e": "kline", "s", "k": {"t", "o",
//! "h", "l", "c", "v", "x", ...}}}` with prices as strings; a kline updates
//! many times while it is open and is taken once `x` (closed) is true. The
//! server pings every 20 seconds (the socket answers), and a connection
//! lasts at most 24 hours, after which it is closed and reconnected.

use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use serde::Deserialize;

use crate::bar::{Bar, Millis};
use crate::stream::{Protocol, Socket, StreamError};

const VENUE: &str = "binance";

pub struct BinanceKlineStream {
    url: String,
    symbols: Vec<Arc<str>>,
}

impl BinanceKlineStream {
    /// The stream of `symbols`' `interval` klines from `base` (a `ws(s)://`
    /// host, e.g. `wss://stream.binance.com:9443`).
    pub fn new(base: &str, symbols: Vec<Arc<str>>, interval: &str) -> Self {
        let streams: Vec<String> = symbols.iter().map(|s| format!("{}@kline_{interval}", s.to_lowercase())).collect();
        let url = format!("{}/stream?streams={}", base.trim_end_matches('/'), streams.join("/"));
        Self { url, symbols }
    }
}

#[derive(Deserialize)]
struct Envelope {
    data: Event,
}

#[derive(Deserialize)]
struct Event {
    e: String,
    #[serde(default)]
    k: Option<Kline>,
}

#[derive(Deserialize)]
struct Kline {
    t: Millis,
    s: String,
    o: Decimal,
    h: Decimal,
    l: Decimal,
    c: Decimal,
    v: Decimal,
    x: bool,
}

impl Protocol for BinanceKlineStream {
    type Item = Bar;

    fn venue(&self) -> &'static str {
        VENUE
    }

    fn url(&self) -> &str {
        &self.url
    }

    async fn handshake(&self, _socket: &mut Socket, _limit: Duration) -> Result<(), StreamError> {
        Ok(())
    }

    fn items(&self, message: &[u8]) -> Result<Vec<Bar>, StreamError> {
        let envelope: Envelope = serde_json::from_slice(message).map_err(|e| StreamError::Malformed {
            message: crate::runtime::bounded(&format!("{e}: {}", crate::venue::excerpt(message))),
        })?;
        let Some(k) = envelope.data.k.filter(|k| envelope.data.e == "kline" && k.x) else { return Ok(Vec::new()) };
        let Some(symbol) = self.symbols.iter().find(|s| s.eq_ignore_ascii_case(&k.s)) else { return Ok(Vec::new()) };
        if k.v.is_sign_negative() && !k.v.is_zero() {
            return Err(StreamError::Malformed { message: format!("kline volume {} is negative", k.v) });
        }
        let bar = Bar { symbol: symbol.clone(), time: k.t, open: k.o, high: k.h, low: k.l, close: k.c, volume: k.v };
        Ok(vec![bar])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> BinanceKlineStream {
        BinanceKlineStream::new("wss://stream.binance.com:9443/", vec![Arc::from("BTCUSDT")], "1m")
    }

    fn message(closed: bool, symbol: &str) -> Vec<u8> {
        format!(
            r#"{{"stream":"btcusdt@kline_1m","data":{{"e":"kline","E":1672515782136,"s":"{symbol}","k":{{
            "t":1672515780000,"T":1672515839999,"s":"{symbol}","i":"1m","f":100,"L":200,"o":"16500.10",
            "c":"16510.00","h":"16520.55","l":"16490.01","v":"12.345","n":100,"x":{closed},"q":"1.0",
            "V":"5","Q":"0.5","B":"0"}}}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn the_url_names_every_stream() {
        assert_eq!(stream().url(), "wss://stream.binance.com:9443/stream?streams=btcusdt@kline_1m");
    }

    #[test]
    fn a_kline_is_taken_once_closed() {
        assert!(stream().items(&message(false, "BTCUSDT")).unwrap().is_empty());
        assert!(stream().items(&message(true, "ETHUSDT")).unwrap().is_empty());
        let bars = stream().items(&message(true, "BTCUSDT")).unwrap();
        assert_eq!(bars.len(), 1);
        assert_eq!((bars[0].time, bars[0].high.to_string()), (1_672_515_780_000, "16520.55".to_string()));
        for bad in [&b"{}"[..], b"[1,2]", br#"{"data":{"e":"kline","k":{"t":"soon"}}}"#] {
            assert!(matches!(stream().items(bad), Err(StreamError::Malformed { .. })));
        }
    }
}
