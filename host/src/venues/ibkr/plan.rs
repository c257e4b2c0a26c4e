//! Interactive Brokers from the config: one gateway session, shared by
//! the bars poller and the broker, both polled.

use std::sync::Arc;

use super::{IbkrBroker, IbkrGateway, IbkrHistory};
use crate::config::FeedConfig;
use crate::feed::{BarSource as _, PolledFeed};
use crate::venues::{
    BrokerSetup, Connections, FeedSetup, HistoryLimits, HistorySetup, PlannedBroker, PlannedFeed, SetupError, Venue,
};

pub(crate) fn check_feed(feed: &FeedConfig) -> Result<(), String> {
    crate::config::need_symbols(feed)
}

/// The gateway session of the `[ibkr]` section, made once.
fn gateway(connections: &Connections) -> Result<Arc<IbkrGateway>, SetupError> {
    connections.session(Venue::Ibkr, || {
        let config = connections.config.ibkr.clone().ok_or(SetupError::Config {
            venue: Venue::Ibkr,
            message: "the gateway and account go in an `[ibkr]` section".into(),
        })?;
        Ok(IbkrGateway::new(config, connections.timeout, connections.store(Venue::Ibkr)?)?)
    })
}

pub(crate) fn feed(setup: &FeedSetup<'_>) -> Result<PlannedFeed, SetupError> {
    let feed = setup.feed;
    let bar = feed.timeframe.as_deref().unwrap_or("1min");
    let source = IbkrHistory::new(gateway(setup.connections)?, &feed.symbols, bar)?;
    let period = source.period();
    let store = setup.connections.store(Venue::Ibkr)?;
    let polled = PolledFeed::new(source, store, (setup.schedule)(period)).with_metrics(setup.metrics.clone());
    let description = format!("polling Interactive Brokers {bar} bars for {}", feed.symbols.join(", "));
    Ok(PlannedFeed { feed: Box::new(polled), description })
}

/// Polled only: the gateway's WebSocket is not used (yet).
pub(crate) fn broker(setup: &BrokerSetup<'_>) -> Result<PlannedBroker, SetupError> {
    Ok(PlannedBroker { broker: Arc::new(IbkrBroker::new(gateway(setup.connections)?)), stream: None })
}

/// The gateway allows 5 history requests at once and 10 a second overall.
pub(crate) const HISTORY: HistoryLimits = HistoryLimits { per_minute: 300, page: 1_000 };

/// Downloads go through a logged-in gateway and its `[ibkr]` section,
/// which `data download` does not take.
pub(crate) fn history(_: &HistorySetup<'_>) -> Result<Box<dyn crate::feed::BarSource>, SetupError> {
    Err(SetupError::Config {
        venue: Venue::Ibkr,
        message: "`data download` cannot reach the Client Portal gateway yet; run the host with an ibkr feed".into(),
    })
}
