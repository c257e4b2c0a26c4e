//! Alpaca stock bars: `GET {data_url}/v2/stocks/bars`, paginated.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use serde::Deserialize;

use crate::bar::{Bar, Millis, format_time};
use crate::feed::{BarSource, FeedError};
use crate::venue::{ErrorBody, Means, VenueError, get_ok, json, required};

const VENUE: &str = "alpaca";
const ENDPOINT: &str = "/v2/stocks/bars";
/// 9999-12-31T23:59:59Z, the last time RFC 3339 can write.
const LAST_TIME: Millis = 253_402_300_799_000;

/// Key pair read from `APCA_API_KEY_ID` and `APCA_API_SECRET_KEY`, as
/// Alpaca's own SDKs do.
#[derive(Clone)]
pub struct AlpacaCredentials {
    pub key_id: String,
    pub secret_key: String,
}

impl AlpacaCredentials {
    pub fn from_env() -> Result<Self, FeedError> {
        Self::from_lookup(|var| std::env::var(var).ok())
    }

    /// Reads the pair through `lookup`, which maps a variable name to its value.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, FeedError> {
        Ok(Self {
            key_id: required("APCA_API_KEY_ID", &lookup)?,
            secret_key: required("APCA_API_SECRET_KEY", &lookup)?,
        })
    }
}

impl std::fmt::Debug for AlpacaCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlpacaCredentials").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

/// Where and what to poll.
#[derive(Debug, Clone)]
pub struct AlpacaBarsConfig {
    /// e.g. `https://data.alpaca.markets`; tests point it at a fake server.
    pub data_url: String,
    pub symbols: Vec<String>,
    /// `1Min`, `5Min`, `15Min`, `1Hour` or `1Day`.
    pub timeframe: String,
    /// `iex` (free) or `sip`.
    pub feed: String,
    /// Bars per page, at most 10,000.
    pub page_limit: u32,
}

/// Polls Alpaca's multi-symbol bars endpoint.
pub struct AlpacaBars {
    client: reqwest::Client,
    config: AlpacaBarsConfig,
    credentials: AlpacaCredentials,
    period: Duration,
    symbols: Vec<Arc<str>>,
}

impl AlpacaBars {
    pub fn new(
        client: reqwest::Client,
        config: AlpacaBarsConfig,
        credentials: AlpacaCredentials,
    ) -> Result<Self, FeedError> {
        let period = timeframe_period(&config.timeframe).ok_or_else(|| FeedError::Config {
            message: format!("alpaca timeframe `{}` is not one of 1Min, 5Min, 15Min, 1Hour, 1Day", config.timeframe),
        })?;
        let symbols = config.symbols.iter().map(|s| Arc::from(s.as_str())).collect();
        Ok(Self { client, config, credentials, period, symbols })
    }
}

fn timeframe_period(timeframe: &str) -> Option<Duration> {
    let minutes = match timeframe {
        "1Min" => 1,
        "5Min" => 5,
        "15Min" => 15,
        "1Hour" => 60,
        "1Day" => 1440,
        _ => return None,
    };
    Some(Duration::from_secs(minutes * 60))
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    bars: Option<BTreeMap<String, Vec<WireBar>>>,
    next_page_token: Option<String>,
}

/// A bar as Alpaca writes it, in a page of bars and on the stream alike.
#[derive(Deserialize)]
pub(super) struct WireBar {
    t: String,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    o: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    h: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    l: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    c: Decimal,
    /// A number, not an integer: crypto volumes are fractional.
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    v: Decimal,
}

/// A time as Alpaca's data API takes it: RFC 3339 in whole seconds, since
/// "fractions of a second are not accepted". Rounded down, so nothing at
/// or after `time` is missed; the poller drops what it already delivered.
pub fn query_time(time: Millis) -> String {
    format_time(time.div_euclid(1000).saturating_mul(1000))
}

/// Parses one page of bars; exposed for the fixture tests.
pub fn parse_page(body: &[u8], symbols: &[Arc<str>]) -> Result<(Vec<Bar>, Option<String>), FeedError> {
    let page: Page = json(VENUE, ENDPOINT, body)?;
    let mut bars = Vec::new();
    for (symbol, wire) in page.bars.unwrap_or_default() {
        // Share the configured symbol's allocation; ignore ones not asked for.
        let Some(symbol) = symbols.iter().find(|s| ***s == *symbol) else {
            tracing::warn!(venue = VENUE, %symbol, "ignoring bars for a symbol that was not requested");
            continue;
        };
        for w in wire {
            let at = w.t.clone();
            let bar = bar_from_wire(symbol, w).map_err(|message| {
                FeedError::from(VenueError::Malformed { venue: VENUE, endpoint: ENDPOINT.into(), body: at, message })
            })?;
            bars.push(bar);
        }
    }
    Ok((bars, page.next_page_token.filter(|t| !t.is_empty())))
}

/// `w` as a bar of `symbol`; what is wrong with it otherwise.
pub(super) fn bar_from_wire(symbol: &Arc<str>, w: WireBar) -> Result<Bar, String> {
    let time = time::OffsetDateTime::parse(&w.t, &time::format_description::well_known::Rfc3339)
        .map_err(|_| format!("bar time `{}` is not RFC 3339", crate::runtime::bounded(&w.t)))?;
    if w.v.is_sign_negative() && !w.v.is_zero() {
        return Err(format!("bar volume {} is negative", w.v));
    }
    Ok(Bar {
        symbol: symbol.clone(),
        time: (time.unix_timestamp_nanos() / 1_000_000) as Millis,
        open: w.o,
        high: w.h,
        low: w.l,
        close: w.c,
        volume: w.v,
    })
}

#[async_trait::async_trait]
impl BarSource for AlpacaBars {
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
        let url = format!("{}{ENDPOINT}", self.config.data_url.trim_end_matches('/'));
        let symbols = self.config.symbols.join(",");
        let start = query_time(start);
        // Alpaca's `end` includes bars opening at it; the one opening at
        // `end` has not closed by then, so stop a moment before.
        // (No `end` at all past what RFC 3339 can write.)
        let end = (end <= LAST_TIME).then(|| query_time(end.saturating_sub(1)));
        let limit = self.config.page_limit.clamp(1, 10_000).to_string();
        let mut bars = Vec::new();
        let mut token: Option<String> = None;
        // A venue that keeps returning tokens cannot hold the feed forever.
        for _ in 0..10_000 {
            let mut query = vec![
                ("symbols", symbols.as_str()),
                ("timeframe", self.config.timeframe.as_str()),
                ("start", start.as_str()),
                ("limit", limit.as_str()),
                ("feed", self.config.feed.as_str()),
            ];
            if let Some(end) = &end {
                query.push(("end", end.as_str()));
            }
            if let Some(token) = &token {
                query.push(("page_token", token.as_str()));
            }
            let request = self
                .client
                .get(&url)
                .query(&query)
                .header("APCA-API-KEY-ID", &self.credentials.key_id)
                .header("APCA-API-SECRET-KEY", &self.credentials.secret_key);
            let body = get_ok(VENUE, ENDPOINT, request, |status, body| ErrorBody {
                // The data API answers 403 for keys without access to the feed.
                means: (status == 403).then_some(Means::Unauthorized),
                ..super::orders::error_body(status, body)
            })
            .await?;
            let (page, next) = parse_page(&body, &self.symbols)?;
            bars.extend(page);
            match next {
                Some(next) => token = Some(next),
                None => return Ok(bars),
            }
        }
        Err(VenueError::Malformed {
            venue: VENUE,
            endpoint: ENDPOINT.into(),
            body: String::new(),
            message: "pagination did not end after 10,000 pages".into(),
        }
        .into())
    }
}
