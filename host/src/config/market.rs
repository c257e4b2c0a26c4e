//! `[broker]` and `[feed]`: the paper broker or a venue, and where bars
//! come from. Each venue's own keys are read by its folder's `plan.rs`.

use rust_decimal::Decimal;
use serde::Deserialize;

use crate::broker::Commission;
use crate::venues::Venue;

/// Which broker executes orders: `paper` (simulated fills against the
/// feed's bars) or a venue by name (see [`Venue`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BrokerKind {
    #[default]
    Paper,
    Venue(Venue),
}

impl<'de> Deserialize<'de> for BrokerKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        match (name.as_str(), Venue::from_name(&name)) {
            ("paper", _) => Ok(BrokerKind::Paper),
            (_, Some(venue)) => Ok(BrokerKind::Venue(venue)),
            _ => Err(serde::de::Error::custom(format!(
                "unknown broker `{}`: expected paper, {}",
                crate::runtime::bounded(&name),
                Venue::names()
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    pub kind: BrokerKind,
    /// Cash the paper account starts with. Write money as strings
    /// (`"0.0005"`) to keep it exact; TOML floats are binary.
    pub starting_cash: Decimal,
    pub commission: Commission,
    /// A venue's trading API; defaults to Alpaca's paper API.
    pub base_url: Option<String>,
    /// Client-side limit on order requests.
    pub requests_per_minute: u32,
    /// Time between reconciliations with the broker.
    pub sync_every_ms: u64,
    /// Unexplained position drift (summed absolute quantity) that halts the venue.
    pub drift_threshold: Decimal,
    /// Time allowed for one request.
    pub timeout_ms: u64,
    /// Binance: the asset whose balance is cash.
    pub quote_asset: String,
    /// Hear order updates as the venue pushes them (Alpaca's
    /// `trade_updates`, Binance's user data stream, Kalshi's fills), besides
    /// syncing every `sync_every_ms`.
    pub stream: bool,
    /// The stream's address; by default the venue's, or the `base_url`'s
    /// host with `ws(s)://` and the venue's stream path when that is set.
    pub stream_url: Option<String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            kind: BrokerKind::Paper,
            starting_cash: Decimal::from(100_000),
            commission: Commission::default(),
            base_url: None,
            requests_per_minute: 200,
            sync_every_ms: 5_000,
            drift_threshold: Decimal::ZERO,
            timeout_ms: 10_000,
            quote_asset: "USDT".into(),
            stream: true,
            stream_url: None,
        }
    }
}

/// Where bars come from: `replay` (recorded bars played back as if live)
/// or a venue by name (see [`Venue`]), polled and, where it streams, streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedKind {
    Replay,
    Venue(Venue),
}

impl<'de> Deserialize<'de> for FeedKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        match (name.as_str(), Venue::from_name(&name)) {
            ("replay", _) => Ok(FeedKind::Replay),
            (_, Some(venue)) => Ok(FeedKind::Venue(venue)),
            _ => Err(serde::de::Error::custom(format!(
                "unknown feed `{}`: expected replay, {}",
                crate::runtime::bounded(&name),
                Venue::names()
            ))),
        }
    }
}

/// A Kalshi market: its series and ticker, both part of the URL.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketConfig {
    pub series: String,
    pub ticker: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    pub kind: FeedKind,
    /// Replay: a CSV path, or `bundled:SYMBOL` for data shipped in the binary.
    pub data: Option<String>,
    /// Replay: the symbol the CSV holds.
    pub symbol: Option<String>,
    /// Replay: milliseconds between bars.
    #[serde(default = "default_pace")]
    pub pace_ms: u64,
    /// Replay: how the CSV writes its times, as a strftime pattern;
    /// detected when left out.
    pub time_format: Option<String>,
    /// Replay: the IANA zone of the CSV's wall-clock times (UTC if left out).
    pub tz: Option<String>,
    /// Venues: the market-data API; each venue has a default.
    pub base_url: Option<String>,
    /// Alpaca and Binance: the symbols to poll.
    #[serde(default)]
    pub symbols: Vec<String>,
    /// Kalshi: the markets to poll.
    #[serde(default)]
    pub markets: Vec<MarketConfig>,
    /// Bar length: Alpaca `1Min`, Binance `1m`, Kalshi minutes (`1`, `60`, `1440`).
    pub timeframe: Option<String>,
    /// Alpaca: `iex` (free) or `sip`.
    #[serde(default = "default_alpaca_feed")]
    pub alpaca_feed: String,
    /// Time between polls; defaults to the bar length.
    pub poll_ms: Option<u64>,
    /// Wait after each bar close before polling, so the venue has published.
    #[serde(default = "default_delay")]
    pub delay_ms: u64,
    /// How far back to backfill on the very first start (later starts
    /// resume from the stored cursors).
    #[serde(default = "default_backfill")]
    pub backfill_minutes: u64,
    /// Alpaca (`1Min` bars), Binance and Kalshi (with a key): hear each bar
    /// as it closes over the venue's stream as well as polling (the polls
    /// become the safety net). Kalshi's bars are built from its streamed trades.
    #[serde(default = "default_stream")]
    pub stream: bool,
    /// The bar stream's address; by default Alpaca's
    /// `wss://stream.data.alpaca.markets/v2/{alpaca_feed}` or Binance's
    /// `wss://stream.binance.com:9443`, or the `base_url`'s host with
    /// `ws(s)://` when that is set.
    pub stream_url: Option<String>,
}

fn default_stream() -> bool {
    true
}

fn default_alpaca_feed() -> String {
    "iex".into()
}

fn default_delay() -> u64 {
    2_000
}

fn default_backfill() -> u64 {
    60
}

fn default_pace() -> u64 {
    25
}

impl FeedConfig {
    /// The symbols this feed's bars carry.
    pub fn symbols(&self) -> Vec<String> {
        match self.kind {
            FeedKind::Replay => self.symbol.iter().cloned().collect(),
            // Kalshi names its markets by ticker.
            FeedKind::Venue(_) if !self.markets.is_empty() => self.markets.iter().map(|m| m.ticker.clone()).collect(),
            FeedKind::Venue(_) => self.symbols.clone(),
        }
    }

    /// The feed's name in metrics and logs: its kind.
    pub fn name(&self) -> &'static str {
        match self.kind {
            FeedKind::Replay => "replay",
            FeedKind::Venue(venue) => venue.name(),
        }
    }

    /// Checks that the keys the kind needs are there.
    pub(super) fn validate(&self) -> Result<(), String> {
        let need = |ok: bool, key: &str, what: &str| if ok { Ok(()) } else { Err(format!("key `feed.{key}`: {what}")) };
        match self.kind {
            FeedKind::Replay => {
                need(self.data.is_some(), "data", "a replay needs a CSV path or bundled:SYMBOL")?;
                need(self.symbol.is_some(), "symbol", "a replay needs the symbol its data holds")
            }
            FeedKind::Venue(venue) => venue.check_feed(self),
        }
    }
}

/// The check of a venue whose feed names its symbols in `symbols`.
pub(crate) fn need_symbols(feed: &FeedConfig) -> Result<(), String> {
    if feed.symbols.is_empty() { Err("key `feed.symbols`: list at least one symbol".into()) } else { Ok(()) }
}
