//! Bars from `/iserver/marketdata/history`, polled.
//!
//! The endpoint counts back from `startTime` (the end of the window, UTC,
//! `YYYYMMDD-HH:mm:ss`) over `period` (`30min`, `8h`, `5d`…) in bars of
//! `bar` (`1min` … `1d`), at most 1,000 a request; a longer window is read
//! in pieces. Bars open at `t` (epoch ms). What came before `start` is
//! dropped here and what was delivered already is dropped by the poller,
//! so bars are delivered exactly once, by cursor, as for the other venues.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rust_decimal::Decimal;
use serde::Deserialize;

use super::gateway::IbkrGateway;
use super::wire::{VENUE, malformed};
use crate::bar::{Bar, Millis};
use crate::feed::{BarSource, FeedError};

const ENDPOINT: &str = "/iserver/marketdata/history";
const MINUTE: Millis = 60_000;
const HOUR: Millis = 60 * MINUTE;
const DAY: Millis = 24 * HOUR;

/// The `bar` values the endpoint takes below a week, with their length.
const BAR_SIZES: [(&str, Millis); 13] = [
    ("1min", MINUTE),
    ("2min", 2 * MINUTE),
    ("3min", 3 * MINUTE),
    ("5min", 5 * MINUTE),
    ("10min", 10 * MINUTE),
    ("15min", 15 * MINUTE),
    ("30min", 30 * MINUTE),
    ("1h", HOUR),
    ("2h", 2 * HOUR),
    ("3h", 3 * HOUR),
    ("4h", 4 * HOUR),
    ("8h", 8 * HOUR),
    ("1d", DAY),
];

/// Polls bars of the configured symbols through the gateway.
pub struct IbkrHistory {
    gateway: Arc<IbkrGateway>,
    symbols: Vec<Arc<str>>,
    bar: &'static str,
    bar_ms: Millis,
    /// Whether the gateway was seen serving delayed data (said once).
    warned_delayed: AtomicBool,
}

#[derive(Deserialize)]
struct History {
    #[serde(default)]
    data: Vec<WireBar>,
    /// `S…`/`R…` real time, `D…` delayed: without a market data
    /// subscription the gateway serves what IBKR offers delayed.
    #[serde(default, rename = "mdAvailability")]
    availability: Option<String>,
    /// Volumes are in units of this many shares where it is given.
    #[serde(default, rename = "volumeFactor", deserialize_with = "super::wire::decimal_opt")]
    volume_factor: Option<Decimal>,
}

/// A bar; an empty window is answered with a placeholder without `t`.
#[derive(Deserialize)]
struct WireBar {
    #[serde(default)]
    t: Option<Millis>,
    #[serde(default, deserialize_with = "super::wire::decimal_opt")]
    o: Option<Decimal>,
    #[serde(default, deserialize_with = "super::wire::decimal_opt")]
    h: Option<Decimal>,
    #[serde(default, deserialize_with = "super::wire::decimal_opt")]
    l: Option<Decimal>,
    #[serde(default, deserialize_with = "super::wire::decimal_opt")]
    c: Option<Decimal>,
    #[serde(default, deserialize_with = "super::wire::decimal_opt")]
    v: Option<Decimal>,
}

impl IbkrHistory {
    /// Bars of `bar` (e.g. `1min`) for `symbols`.
    pub fn new(gateway: Arc<IbkrGateway>, symbols: &[String], bar: &str) -> Result<Self, FeedError> {
        let Some(&(bar, bar_ms)) = BAR_SIZES.iter().find(|(name, _)| *name == bar) else {
            let known: Vec<&str> = BAR_SIZES.iter().map(|(name, _)| *name).collect();
            return Err(FeedError::Config {
                message: format!("ibkr bar `{}` is not one of {}", crate::runtime::bounded(bar), known.join(", ")),
            });
        };
        let symbols = symbols.iter().map(|s| Arc::from(s.as_str())).collect();
        Ok(Self { gateway, symbols, bar, bar_ms, warned_delayed: AtomicBool::new(false) })
    }

    /// The pieces `[start, end)` is read in, latest first, each as
    /// `(end, period)`: under a day's bars a piece spans at most 8 hours
    /// (at most 480 bars), in minutes for minute bars only, as the
    /// endpoint's step sizes allow; daily bars go by whole days, 1,000 at most.
    fn pieces(&self, start: Millis, end: Millis) -> Vec<(Millis, String)> {
        let mut pieces = Vec::new();
        let mut to = end;
        while to > start {
            let span = to - start;
            let (span, period) = if self.bar_ms >= DAY {
                let days = ceil_div(span, DAY).min(1000);
                (days * DAY, format!("{days}d"))
            } else if span <= 30 * MINUTE && self.bar_ms == MINUTE {
                // Minute periods take minute bars only (the step-size table).
                let minutes = ceil_div(span, MINUTE).max(1);
                (minutes * MINUTE, format!("{minutes}min"))
            } else {
                let hours = ceil_div(span, HOUR).min(8);
                (hours * HOUR, format!("{hours}h"))
            };
            pieces.push((to, period));
            to -= span;
        }
        pieces
    }

    async fn fetch_symbol(&self, symbol: &Arc<str>, start: Millis, end: Millis) -> Result<Vec<Bar>, FeedError> {
        let conid = self.gateway.conid(symbol).await?;
        let mut bars = Vec::new();
        for (to, period) in self.pieces(start, end) {
            let query = [
                ("conid", conid.clone()),
                ("period", period),
                ("bar", self.bar.to_string()),
                ("startTime", gateway_time(to)),
                ("outsideRth", self.gateway.config.outside_rth.to_string()),
            ];
            let (status, body) = self.gateway.call(reqwest::Method::GET, ENDPOINT, &query, None).await?;
            if !(200..300).contains(&status) {
                return Err(super::wire::failure(ENDPOINT, status, &body).into());
            }
            if let Some(said) = super::wire::error_text(&body) {
                return Err(crate::venue::VenueError::Rejected {
                    venue: VENUE,
                    endpoint: ENDPOINT.into(),
                    status,
                    code: None,
                    message: said,
                }
                .into());
            }
            let history: History = crate::venue::json(VENUE, ENDPOINT, &body)?;
            if history.availability.as_deref().is_some_and(|a| a.starts_with('D'))
                && !self.warned_delayed.swap(true, Ordering::Relaxed)
            {
                tracing::warn!(venue = VENUE, %symbol, "the gateway serves delayed bars: no market data subscription for this contract");
            }
            let factor = history.volume_factor.filter(|f| *f > Decimal::ZERO).unwrap_or(Decimal::ONE);
            for w in history.data {
                let Some(time) = w.t else { continue };
                if time < start {
                    continue;
                }
                let (Some(open), Some(high), Some(low), Some(close)) = (w.o, w.h, w.l, w.c) else {
                    return Err(malformed(ENDPOINT, &body, format!("bar at {time} lacks a price")).into());
                };
                let volume = w.v.unwrap_or_default();
                if (volume.is_sign_negative() && !volume.is_zero()) || low > high {
                    return Err(malformed(ENDPOINT, &body, format!("bar at {time} is impossible")).into());
                }
                bars.push(Bar { symbol: symbol.clone(), time, open, high, low, close, volume: volume * factor });
            }
        }
        Ok(bars)
    }
}

/// `span / unit`, rounded up, for a positive `span`.
fn ceil_div(span: Millis, unit: Millis) -> Millis {
    (span + unit - 1) / unit
}

/// A time as the gateway takes it: `YYYYMMDD-HH:mm:ss`, UTC.
fn gateway_time(time: Millis) -> String {
    let format = time::macros::format_description!("[year][month][day]-[hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(time.div_euclid(1000))
        .ok()
        .and_then(|at| at.format(&format).ok())
        .unwrap_or_else(|| "19700101-00:00:00".into())
}

#[async_trait::async_trait]
impl BarSource for IbkrHistory {
    fn name(&self) -> &str {
        VENUE
    }

    fn symbols(&self) -> &[Arc<str>] {
        &self.symbols
    }

    fn period(&self) -> Duration {
        Duration::from_millis(self.bar_ms as u64)
    }

    async fn fetch(&self, start: Millis, end: Millis) -> Result<Vec<Bar>, FeedError> {
        let mut bars = Vec::new();
        for symbol in &self.symbols {
            bars.extend(self.fetch_symbol(symbol, start, end).await?);
        }
        Ok(bars)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_window_answers_a_placeholder_bar() {
        let answer: History =
            serde_json::from_str(r#"{"symbol":"AAPL","points":0,"data":[{"o":0.0,"c":0.0,"h":0.0,"l":0.0,"v":0.0}]}"#)
                .unwrap();
        assert_eq!(answer.data.len(), 1);
        assert!(answer.data[0].t.is_none());
    }

    #[test]
    fn gateway_times_are_utc_in_its_own_format() {
        assert_eq!(gateway_time(1_700_000_000_000), "20231114-22:13:20");
        assert_eq!(gateway_time(0), "19700101-00:00:00");
    }
}
