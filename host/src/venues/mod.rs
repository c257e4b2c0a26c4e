//! The venues, one folder each: a venue's market data, its orders, its
//! streams, its wire vocabulary (error bodies, statuses, signing) and how
//! it is set up from the config (`plan.rs`) live together. What they share
//! lives outside: HTTP and the one mapping of failures in [`crate::venue`],
//! WebSockets in [`crate::stream`], polling in [`crate::feed`], routing and
//! reconciliation in [`crate::router`] and [`crate::reconcile`]. Each venue
//! implements the capabilities ([`crate::feed::BarSource`],
//! [`crate::broker::Broker`], [`crate::stream::Protocol`]); the rest of the
//! host sees only those, and [`Venue`], the list a new venue joins with
//! one line.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::broker::{Broker, OrderNews};
use crate::config::{BrokerConfig, Config, FeedConfig};
use crate::feed::{BarSource, FeedError, MarketData, PollSchedule};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::stream::Update;
use crate::venue::VenueError;

/// Declares the venues: each line names a venue and its folder, whose
/// `plan` module sets up its feed and broker from the config.
macro_rules! venues {
    ($($(#[$doc:meta])* $variant:ident => $module:ident,)+) => {
        $(pub mod $module;)+

        /// A venue the host reads bars from or trades on, by its config name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Venue {
            $($(#[$doc])* $variant,)+
        }

        impl Venue {
            pub const ALL: &[Venue] = &[$(Venue::$variant,)+];

            /// Its name in the config (`kind`), the store, metrics and logs.
            pub fn name(self) -> &'static str {
                match self {
                    $(Venue::$variant => stringify!($module),)+
                }
            }

            /// What is missing from `[feed]` for this venue, if anything.
            pub(crate) fn check_feed(self, feed: &FeedConfig) -> Result<(), String> {
                match self {
                    $(Venue::$variant => $module::plan::check_feed(feed),)+
                }
            }

            pub(crate) fn plan_feed(self, setup: &FeedSetup<'_>) -> Result<PlannedFeed, SetupError> {
                match self {
                    $(Venue::$variant => $module::plan::feed(setup),)+
                }
            }

            pub(crate) fn plan_broker(self, setup: &BrokerSetup<'_>) -> Result<PlannedBroker, SetupError> {
                match self {
                    $(Venue::$variant => $module::plan::broker(setup),)+
                }
            }

            /// How fast and in what windows `data download` may read it.
            pub(crate) fn history_limits(self) -> HistoryLimits {
                match self {
                    $(Venue::$variant => $module::plan::HISTORY,)+
                }
            }

            /// A reader of one symbol's past bars, for `data download`.
            pub(crate) fn history(self, setup: &HistorySetup<'_>) -> Result<Box<dyn BarSource>, SetupError> {
                match self {
                    $(Venue::$variant => $module::plan::history(setup),)+
                }
            }
        }
    };
}

venues! {
    /// US stocks: bars polled and streamed, orders with streamed updates.
    Alpaca => alpaca,
    /// Binance spot: klines polled and streamed, orders with execution reports.
    Binance => binance,
    /// Kalshi event contracts: candles polled and built from trades, orders with streamed fills.
    Kalshi => kalshi,
    /// Interactive Brokers through the Client Portal gateway, polled.
    Ibkr => ibkr,
}

impl Venue {
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.name() == name)
    }

    /// Every venue's name, for messages: `alpaca, binance, ...`.
    pub fn names() -> String {
        Self::ALL.iter().map(|v| v.name()).collect::<Vec<_>>().join(", ")
    }
}

impl std::fmt::Display for Venue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a venue could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Feed(#[from] FeedError),
    #[error(transparent)]
    Venue(#[from] VenueError),
    #[error("{venue}: {message}")]
    Config { venue: Venue, message: String },
    #[error(transparent)]
    Gateway(#[from] ibkr::GatewaySetupError),
    #[error("cannot build the HTTP client")]
    Client { source: reqwest::Error },
}

/// What the venues are reached through: one HTTP client for all, and each
/// venue's own session where its feed and broker must share one (the
/// Interactive Brokers gateway), made by the venue on first use.
pub(crate) struct Connections {
    pub client: reqwest::Client,
    pub timeout: Duration,
    pub config: Config,
    pub store: Option<Arc<Store>>,
    sessions: Mutex<HashMap<Venue, Arc<dyn Any + Send + Sync>>>,
}

impl Connections {
    pub fn new(config: &Config, store: Option<&Arc<Store>>) -> Result<Self, SetupError> {
        let timeout = Duration::from_millis(config.broker.timeout_ms.max(1));
        let client =
            reqwest::Client::builder().timeout(timeout).build().map_err(|source| SetupError::Client { source })?;
        Ok(Self { client, timeout, config: config.clone(), store: store.cloned(), sessions: Mutex::default() })
    }

    /// `venue`'s shared session, made with `make` the first time.
    pub fn session<T: Send + Sync + 'static>(
        &self,
        venue: Venue,
        make: impl FnOnce() -> Result<T, SetupError>,
    ) -> Result<Arc<T>, SetupError> {
        let mut sessions = self
            .sessions
            .lock()
            .map_err(|_| SetupError::Config { venue, message: "the sessions lock was poisoned".into() })?;
        if let Some(session) = sessions.get(&venue).and_then(|s| s.clone().downcast::<T>().ok()) {
            return Ok(session);
        }
        let session = Arc::new(make()?);
        sessions.insert(venue, session.clone());
        Ok(session)
    }

    /// The store, which every live venue needs.
    pub fn store(&self, venue: Venue) -> Result<Arc<Store>, SetupError> {
        self.store.clone().ok_or(SetupError::Config { venue, message: "a live venue needs the store".into() })
    }
}

/// What a venue's feed is planned from.
pub(crate) struct FeedSetup<'a> {
    pub feed: &'a FeedConfig,
    pub connections: &'a Connections,
    pub metrics: &'a Arc<Metrics>,
    /// When to poll, unless the venue knows better.
    pub schedule: &'a dyn Fn(Duration) -> PollSchedule,
}

/// A venue's feed, ready to run.
pub(crate) struct PlannedFeed {
    pub feed: Box<dyn MarketData>,
    pub description: String,
}

/// What a venue's broker is planned from.
pub(crate) struct BrokerSetup<'a> {
    pub broker: &'a BrokerConfig,
    pub connections: &'a Connections,
}

/// Starts a venue's stream of order updates (once the host is up).
pub(crate) type StartStream = Box<dyn FnOnce() -> mpsc::Receiver<Update<OrderNews>> + Send>;

/// A venue's broker, and its order updates stream when it has one and it is on.
pub(crate) struct PlannedBroker {
    pub broker: Arc<dyn Broker>,
    pub stream: Option<StartStream>,
}

/// Where a venue's REST API is: the configured `base_url`, else its own.
pub(crate) fn base_url(configured: &Option<String>, default: &str) -> String {
    configured.clone().unwrap_or_else(|| default.to_string())
}

/// What one `data download` of a symbol is planned from.
pub(crate) struct HistorySetup<'a> {
    pub client: &'a reqwest::Client,
    /// The venue's market-data API, when not its own.
    pub base_url: Option<&'a str>,
    pub symbol: &'a str,
    /// Minutes per bar: 1, 5, 15, 60 or 1440.
    pub minutes: u32,
    /// Alpaca: `iex` or `sip`.
    pub alpaca_feed: &'a str,
}

/// How `data download` paces a venue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HistoryLimits {
    /// Requests a minute, well inside the venue's published limit.
    pub per_minute: u32,
    /// Most bars one request returns.
    pub page: i64,
}
