//! Binance spot from the config: klines polled and streamed, orders signed
//! with the key pair, execution reports over the WebSocket API.

use std::sync::Arc;

use super::{BinanceBroker, BinanceCredentials, BinanceKlineStream, BinanceKlines, BinanceKlinesConfig, BinanceUserStream};
use crate::config::FeedConfig;
use crate::feed::{BarSource as _, PolledFeed};
use crate::stream::{Timings, ws_url};
use crate::venues::{
    BrokerSetup, FeedSetup, HistoryLimits, HistorySetup, PlannedBroker, PlannedFeed, SetupError, Venue, base_url,
};

pub(crate) fn check_feed(feed: &FeedConfig) -> Result<(), String> {
    crate::config::need_symbols(feed)
}

pub(crate) fn feed(setup: &FeedSetup<'_>) -> Result<PlannedFeed, SetupError> {
    let feed = setup.feed;
    let source = BinanceKlines::new(
        setup.connections.client.clone(),
        BinanceKlinesConfig {
            base_url: base_url(&feed.base_url, super::REST_URL),
            symbols: feed.symbols.clone(),
            interval: feed.timeframe.clone().unwrap_or_else(|| "1m".into()),
        },
    )?;
    let period = source.period();
    let store = setup.connections.store(Venue::Binance)?;
    let mut polled = PolledFeed::new(source, store, (setup.schedule)(period)).with_metrics(setup.metrics.clone());
    if feed.stream {
        let base = feed.stream_url.clone().unwrap_or_else(|| match &feed.base_url {
            Some(base) => ws_url(base, ""),
            None => super::STREAM_URL.into(),
        });
        let symbols = feed.symbols.iter().map(|s| Arc::from(s.as_str())).collect();
        let interval = feed.timeframe.as_deref().unwrap_or("1m");
        let protocol = BinanceKlineStream::new(&base, symbols, interval);
        polled = polled.with_stream(crate::stream::spawn(protocol, Timings::default()));
    }
    let how = if feed.stream { "streaming and polling" } else { "polling" };
    let description = format!("{how} Binance klines for {}", feed.symbols.join(", "));
    Ok(PlannedFeed { feed: Box::new(polled), description })
}

pub(crate) fn broker(setup: &BrokerSetup<'_>) -> Result<PlannedBroker, SetupError> {
    let config = setup.broker;
    let base = base_url(&config.base_url, super::REST_URL);
    let credentials = BinanceCredentials::from_env()?;
    let client = setup.connections.client.clone();
    let broker = BinanceBroker::new(client, &base, credentials.clone(), &config.quote_asset);
    let mut stream: Option<crate::venues::StartStream> = None;
    if config.stream {
        let url = config.stream_url.clone().unwrap_or_else(|| match &config.base_url {
            Some(base) => ws_url(base, "/ws-api/v3"),
            None => super::WS_API_URL.into(),
        });
        let protocol = BinanceUserStream::new(url, credentials, broker.clock());
        stream = Some(Box::new(move || crate::stream::spawn(protocol, Timings::default())));
    }
    let broker = Arc::new(broker);
    Ok(PlannedBroker { broker, stream })
}

/// Klines weigh 2 of the 6,000 a minute; a page holds 1,000.
pub(crate) const HISTORY: HistoryLimits = HistoryLimits { per_minute: 1_200, page: 1_000 };

pub(crate) fn history(setup: &HistorySetup<'_>) -> Result<Box<dyn crate::feed::BarSource>, SetupError> {
    let interval = match setup.minutes {
        1 => "1m",
        5 => "5m",
        15 => "15m",
        60 => "1h",
        _ => "1d",
    };
    let config = BinanceKlinesConfig {
        base_url: setup.base_url.unwrap_or(super::REST_URL).to_string(),
        symbols: vec![setup.symbol.to_string()],
        interval: interval.into(),
    };
    Ok(Box::new(BinanceKlines::new(setup.client.clone(), config)?))
}
