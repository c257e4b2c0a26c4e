//! Kalshi from the config: candles polled (and built from streamed trades
//! when a key is set), orders signed with RSA-PSS and their fills streamed.

use std::sync::Arc;

use super::socket::PATH as STREAM_PATH;
use super::{
    KalshiBroker, KalshiCandles, KalshiCandlesConfig, KalshiCredentials, KalshiFillStream, KalshiMarket,
    KalshiTradeStream,
};
use crate::config::FeedConfig;
use crate::feed::{BarSource as _, PolledFeed};
use crate::stream::{Timings, ws_url};
use crate::venues::{
    BrokerSetup, FeedSetup, HistoryLimits, HistorySetup, PlannedBroker, PlannedFeed, SetupError, Venue, base_url,
};

pub(crate) fn check_feed(feed: &FeedConfig) -> Result<(), String> {
    if feed.markets.is_empty() {
        return Err("key `feed.markets`: list at least one { series, ticker }".into());
    }
    Ok(())
}

pub(crate) fn feed(setup: &FeedSetup<'_>) -> Result<PlannedFeed, SetupError> {
    let feed = setup.feed;
    let minutes = feed.timeframe.as_deref().unwrap_or("1").parse().map_err(|_| SetupError::Config {
        venue: Venue::Kalshi,
        message: "key `feed.timeframe`: Kalshi takes minutes per candle: 1, 60 or 1440".into(),
    })?;
    let markets =
        feed.markets.iter().map(|m| KalshiMarket { series: m.series.clone(), ticker: m.ticker.clone() }).collect();
    let base = base_url(&feed.base_url, super::REST_URL);
    let config = KalshiCandlesConfig { base_url: base.clone(), markets, period_minutes: minutes };
    let source = KalshiCandles::new(setup.connections.client.clone(), config)?;
    let period = source.period();
    let store = setup.connections.store(Venue::Kalshi)?;
    let mut polled = PolledFeed::new(source, store, (setup.schedule)(period)).with_metrics(setup.metrics.clone());
    // Kalshi's WebSocket needs a key, which the candles do not.
    let credentials = match KalshiCredentials::from_env() {
        Ok(credentials) => Some(credentials),
        Err(error) if feed.stream => {
            tracing::warn!(%error, "no Kalshi key: candles are polled, not built from streamed trades");
            None
        }
        Err(_) => None,
    };
    let streamed = feed.stream && credentials.is_some();
    if let Some(credentials) = credentials.filter(|_| feed.stream) {
        let url = feed.stream_url.clone().unwrap_or_else(|| ws_url(&base, STREAM_PATH));
        let tickers = feed.markets.iter().map(|m| Arc::from(m.ticker.as_str())).collect();
        let protocol = KalshiTradeStream::new(url, credentials, tickers, period);
        polled = polled.with_stream(crate::stream::spawn(protocol, Timings::default()));
    }
    let how = if streamed { "streaming trades and polling candlesticks" } else { "polling candlesticks" };
    let tickers: Vec<&str> = feed.markets.iter().map(|m| m.ticker.as_str()).collect();
    Ok(PlannedFeed { feed: Box::new(polled), description: format!("{how} of Kalshi {}", tickers.join(", ")) })
}

pub(crate) fn broker(setup: &BrokerSetup<'_>) -> Result<PlannedBroker, SetupError> {
    let config = setup.broker;
    let base = base_url(&config.base_url, super::REST_URL);
    let credentials = KalshiCredentials::from_env()?;
    let mut stream: Option<crate::venues::StartStream> = None;
    if config.stream {
        let url = config.stream_url.clone().unwrap_or_else(|| ws_url(&base, STREAM_PATH));
        let protocol = KalshiFillStream::new(url, credentials.clone());
        stream = Some(Box::new(move || crate::stream::spawn(protocol, Timings::default())));
    }
    let broker = Arc::new(KalshiBroker::new(setup.connections.client.clone(), &base, credentials));
    Ok(PlannedBroker { broker, stream })
}

/// The basic tier reads 20 a second; a request returns 5,000 candles.
pub(crate) const HISTORY: HistoryLimits = HistoryLimits { per_minute: 600, page: 5_000 };

/// A symbol is `SERIES:TICKER`, or a ticker whose series is the part
/// before its first dash, as Kalshi names them.
pub(crate) fn history(setup: &HistorySetup<'_>) -> Result<Box<dyn crate::feed::BarSource>, SetupError> {
    let symbol = setup.symbol;
    let (series, ticker) = match symbol.split_once(':') {
        Some((series, ticker)) => (series, ticker),
        None => (symbol.split('-').next().unwrap_or(symbol), symbol),
    };
    let market = KalshiMarket { series: series.into(), ticker: ticker.into() };
    let config = KalshiCandlesConfig {
        base_url: setup.base_url.unwrap_or(super::REST_URL).to_string(),
        markets: vec![market],
        period_minutes: setup.minutes,
    };
    Ok(Box::new(KalshiCandles::new(setup.client.clone(), config)?))
}
