//! Alpaca from the config: bars polled (and, for minute bars, streamed),
//! orders through the trading API with its trade updates stream.

use std::sync::Arc;
use std::time::Duration;

use super::{AlpacaBarStream, AlpacaBars, AlpacaBarsConfig, AlpacaBroker, AlpacaCredentials, AlpacaTradeStream};
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
    let source = AlpacaBars::new(
        setup.connections.client.clone(),
        AlpacaBarsConfig {
            data_url: base_url(&feed.base_url, super::DATA_URL),
            symbols: feed.symbols.clone(),
            timeframe: feed.timeframe.clone().unwrap_or_else(|| "1Min".into()),
            feed: feed.alpaca_feed.clone(),
            page_limit: 10_000,
        },
        AlpacaCredentials::from_env()?,
    )?;
    let period = source.period();
    let store = setup.connections.store(Venue::Alpaca)?;
    let mut polled = PolledFeed::new(source, store, (setup.schedule)(period)).with_metrics(setup.metrics.clone());
    // The stream carries minute bars only.
    let streamed = feed.stream && period == Duration::from_secs(60);
    if streamed {
        let url = feed.stream_url.clone().unwrap_or_else(|| match &feed.base_url {
            Some(base) => ws_url(base, &format!("/v2/{}", feed.alpaca_feed)),
            None => format!("{}/v2/{}", super::DATA_STREAM_URL, feed.alpaca_feed),
        });
        let symbols = feed.symbols.iter().map(|s| Arc::from(s.as_str())).collect();
        let protocol = AlpacaBarStream::new(url, AlpacaCredentials::from_env()?, symbols);
        polled = polled.with_stream(crate::stream::spawn(protocol, Timings::default()));
    }
    let how = if streamed { "streaming and polling" } else { "polling" };
    Ok(PlannedFeed { feed: Box::new(polled), description: format!("{how} Alpaca bars for {}", feed.symbols.join(", ")) })
}

pub(crate) fn broker(setup: &BrokerSetup<'_>) -> Result<PlannedBroker, SetupError> {
    let config = setup.broker;
    let base = base_url(&config.base_url, super::TRADING_URL);
    let credentials = AlpacaCredentials::from_env()?;
    let mut stream: Option<crate::venues::StartStream> = None;
    if config.stream {
        let url = config.stream_url.clone().unwrap_or_else(|| ws_url(&base, "/stream"));
        let protocol = AlpacaTradeStream::new(url, credentials.clone());
        stream = Some(Box::new(move || crate::stream::spawn(protocol, Timings::default())));
    }
    let broker = Arc::new(AlpacaBroker::new(setup.connections.client.clone(), &base, credentials));
    Ok(PlannedBroker { broker, stream })
}

/// The free plan allows 200 requests a minute; a page holds 10,000 bars.
pub(crate) const HISTORY: HistoryLimits = HistoryLimits { per_minute: 180, page: 10_000 };

pub(crate) fn history(setup: &HistorySetup<'_>) -> Result<Box<dyn crate::feed::BarSource>, SetupError> {
    let timeframe = match setup.minutes {
        1 => "1Min",
        5 => "5Min",
        15 => "15Min",
        60 => "1Hour",
        _ => "1Day",
    };
    let config = AlpacaBarsConfig {
        data_url: setup.base_url.unwrap_or(super::DATA_URL).to_string(),
        symbols: vec![setup.symbol.to_string()],
        timeframe: timeframe.into(),
        feed: setup.alpaca_feed.to_string(),
        page_limit: 10_000,
    };
    Ok(Box::new(AlpacaBars::new(setup.client.clone(), config, AlpacaCredentials::from_env()?)?))
}
