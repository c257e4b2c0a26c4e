//! What host mode runs, planned from the config before anything starts: the
//! feed, the venue (broker, router, reconciler, trading gate), and each
//! strategy's engine restored from the store. A bad plugin, a missing
//! credential or an unreadable store stops the host here, before it trades.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Engine;
use super::live::{LiveError, RunOptions};
use super::routed::{RouteOutbox, RouteRequest, RoutedExecution, VenueDesk};
use super::swap::Setup;
use super::worker::Persist;
use crate::bar::{Millis, now_ms};
use crate::broker::{Execution, PaperBroker};
use crate::config::{BrokerConfig, BrokerKind, Config, FeedKind, StrategyConfig};
use crate::feed::{CsvLimits, MarketData, PollSchedule, ReplayFeed, load_source};
use crate::reconcile::{ReconcileError, Reconciler};
use crate::risk::RiskGate;
use crate::router::{Router, RouterConfig};
use crate::runtime::{Budget, Clock, Runtime};
use crate::store::Store;
pub(super) use crate::venues::Connections;
use crate::venues::{BrokerSetup, FeedSetup, PlannedBroker, PlannedFeed, StartStream};

/// Where bars come from, ready to run.
pub(super) struct FeedPlan {
    pub feed: Box<dyn MarketData>,
    pub clock: Clock,
    /// The symbol reports are about.
    pub symbol: String,
    pub description: String,
}

pub(super) fn plan_feed(
    config: &Config,
    options: &RunOptions,
    connections: &Connections,
    metrics: &Arc<crate::metrics::Metrics>,
) -> Result<FeedPlan, LiveError> {
    let feed = &config.feed;
    let schedule = |period: Duration| PollSchedule {
        every: feed.poll_ms.map_or(period, Duration::from_millis),
        delay: Duration::from_millis(feed.delay_ms),
        backfill_from: now_ms() - (feed.backfill_minutes as i64) * 60_000,
    };
    Ok(match feed.kind {
        FeedKind::Replay => {
            let (data, symbol) = (feed.data.clone().unwrap_or_default(), feed.symbol.clone().unwrap_or_default());
            let time = crate::feed::TimeSpec::new(feed.time_format.as_deref(), feed.tz.as_deref())
                .map_err(crate::feed::FeedError::from)?;
            let bars = load_source(&data, &symbol, CsvLimits::default(), &time)?;
            let first_time = bars.first().map_or(0, |b| b.time);
            let description = format!("replaying {data} as {symbol}, {} bars", bars.len());
            let pace = Duration::from_millis(options.pace_ms.unwrap_or(feed.pace_ms));
            FeedPlan {
                feed: Box::new(ReplayFeed::new(bars, pace)),
                clock: Clock::virtual_at(first_time),
                symbol,
                description,
            }
        }
        FeedKind::Venue(venue) => {
            let setup = FeedSetup { feed, connections, metrics, schedule: &schedule };
            let PlannedFeed { feed: planned, description } = venue.plan_feed(&setup)?;
            let symbol = config.feed.symbols().first().cloned().unwrap_or_default();
            FeedPlan { feed: planned, clock: Clock::System, symbol, description }
        }
    })
}

/// A live venue: its broker, router and reconciler.
pub(super) struct VenuePlan {
    pub venue: &'static str,
    pub router: Arc<Router>,
    pub reconciler: Arc<Reconciler>,
    pub gate: RiskGate,
    /// Starts the venue's order-update stream, when it has one and it is on.
    pub stream: Option<StartStream>,
}

pub(super) fn plan_venue(
    config: &Config,
    connections: &Connections,
    store: &Arc<Store>,
) -> Result<Option<VenuePlan>, LiveError> {
    let broker_config = &config.broker;
    let venue = match broker_config.kind {
        BrokerKind::Paper => return Ok(None),
        BrokerKind::Venue(venue) => venue,
    };
    let PlannedBroker { broker, stream } = venue.plan_broker(&BrokerSetup { broker: broker_config, connections })?;
    let venue = broker.venue();
    // A halt recorded by an earlier run is still in force.
    let gate = RiskGate::persistent(store.clone(), &[venue])?;
    let router_config =
        RouterConfig { requests_per_minute: broker_config.requests_per_minute, ..RouterConfig::default() };
    let router = Arc::new(Router::new(broker.clone(), store.clone(), router_config).with_gate(gate.clone()));
    let reconciler = Arc::new(Reconciler::new(broker, store.clone(), gate.clone(), broker_config.drift_threshold));
    Ok(Some(VenuePlan { venue, router, reconciler, gate, stream }))
}

/// The first sync with the broker, which is the truth: positions are
/// adopted from it before any strategy starts. Retried with backoff while
/// the venue cannot be reached; `None` if `shutdown` came first.
pub(super) async fn startup_sync(
    reconciler: &Reconciler,
    tally: &crate::tally::Tally,
    shutdown: impl Future<Output = ()>,
) -> Option<()> {
    tokio::pin!(shutdown);
    let mut wait = Duration::from_millis(200);
    loop {
        match reconciler.sync(now_ms()).await {
            Ok(report) => {
                let (fills, corrections) = (report.fills.len(), report.corrections.len());
                tracing::info!(venue = reconciler.venue(), fills, corrections, "startup sync done");
                tally.synced(reconciler.venue(), corrections);
                return Some(());
            }
            Err(failed) => {
                let error = &failed.source;
                tally.sync_failed(reconciler.venue(), &error.to_string());
                if let ReconcileError::Venue(venue_error) = error
                    && venue_error.is_unauthorized()
                {
                    // Halted until the credentials work; the host runs meanwhile.
                    tracing::error!(venue = reconciler.venue(), %error, "credentials refused at start: trading halted");
                    return Some(());
                }
                tracing::warn!(venue = reconciler.venue(), %error, ?wait, "startup sync failed; retrying");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = &mut shutdown => return None,
        }
        wait = (wait * 2).min(Duration::from_secs(10));
    }
}

/// A strategy's engine, restored and ready to start on its thread.
pub(super) struct PlannedEngine {
    pub name: String,
    pub engine: Engine,
    /// How a live engine commits its inputs; `None` on the paper broker.
    pub persist: Option<Persist>,
    pub sha256: String,
    /// Where its plugin came from: a bundled name or a file (watched).
    pub plugin: String,
    /// What each new build of it starts with.
    pub setup: Setup,
    /// The feed's symbols it hears; every one when empty.
    pub symbols: Vec<String>,
}

/// What planning one strategy's engine needs, owned, so strategies can be
/// planned at start and added while the host runs (drop-in plugins).
#[derive(Clone)]
pub(super) struct EnginePlanner {
    pub runtime: Arc<Runtime>,
    pub clock: Clock,
    pub risk: crate::risk::RiskLimits,
    pub broker: BrokerConfig,
    /// What every strategy may use unless its own limits say otherwise.
    pub budget: Budget,
    /// The live venue's gate and name, and the store, when trading one.
    pub venue: Option<(RiskGate, &'static str)>,
    pub store: Option<Arc<Store>>,
    pub route_tx: mpsc::UnboundedSender<RouteRequest>,
    /// The symbols the feed polls: an instance may hear only these.
    pub feed_symbols: Vec<String>,
}

impl EnginePlanner {
    /// Refuses a symbol the feed does not poll: it would never be heard.
    pub fn check_symbols(&self, symbols: &[String]) -> Result<(), LiveError> {
        match symbols.iter().find(|s| !self.feed_symbols.contains(s)) {
            Some(stray) => Err(LiveError::UnknownSymbol { symbol: crate::runtime::bounded(stray) }),
            None => Ok(()),
        }
    }

    /// What a new build of `spec`'s instance starts with.
    pub fn setup_of(&self, spec: &StrategyConfig) -> Setup {
        Setup { params: spec.params(), pin: spec.sha256.clone(), budget: spec.limits.over(&self.budget) }
    }

    /// Loads and starts `spec`'s strategy. On a live venue it resumes from
    /// its saved state and order ids, takes its own positions (the fills
    /// of its own orders) and obeys the venue's trading gate.
    pub fn plan(&self, spec: &StrategyConfig) -> Result<PlannedEngine, LiveError> {
        let BrokerConfig { starting_cash, commission, .. } = self.broker.clone();
        self.check_symbols(&spec.symbols)?;
        let plugin = self.runtime.load_named(&spec.plugin)?;
        plugin.check_pin(spec.sha256.as_deref())?;
        let name = spec.name.clone().unwrap_or_else(|| plugin.info.name.clone());
        let sha256 = plugin.sha256.clone();
        let budget = spec.limits.over(&self.budget);
        let strategy = self.runtime.instantiate_within(&plugin, &spec.params(), self.clock.own(), &budget)?;
        let setup = self.setup_of(spec);
        let outbox = RouteOutbox::default();
        let execution: Box<dyn Execution> = match self.venue {
            Some(_) => Box::new(RoutedExecution::new(name.clone(), outbox.clone())),
            None => Box::new(PaperBroker::new(commission)),
        };
        let mut engine = Engine::new(Box::new(strategy), execution, self.risk.clone(), starting_cash);
        if let Some(rates) = budget.per_minute {
            engine = engine.with_order_rate(rates.orders);
        }
        let mut persist = None;
        if let (Some((gate, venue)), Some(store)) = (&self.venue, &self.store) {
            let instance = VenueDesk::instance(&name, venue);
            engine.resume_external_after(store.last_external_intent(&instance)?);
            // A fresh instance starts a new lifetime, so its order ids
            // cannot collide with any routed before.
            engine.start_lifetime_after(store.last_lifetime(&instance)?);
            let mut watermark = Millis::MIN;
            if let Some(saved) = store.strategy_state(&instance)? {
                match engine.strategy_mut().load_state(&saved.state) {
                    Ok(()) => {
                        tracing::info!(%instance, bytes = saved.state.len(), "strategy state restored");
                        watermark = saved.last_bar;
                        engine.continue_lifetime(saved.lifetime, store.order_ids(&instance, saved.lifetime)?);
                    }
                    Err(error) => tracing::warn!(%instance, %error, "saved state refused; starting fresh"),
                }
            }
            // Its own book: the fills of its own orders, never the venue's
            // whole position (other instances', or traded elsewhere).
            for position in store.instance_positions(&instance)? {
                engine.adopt_position(Arc::from(position.symbol.as_str()), position.qty, position.avg_price);
            }
            engine = engine.with_gate(gate.clone(), venue);
            let route = self.route_tx.clone();
            persist = Some(Persist { store: store.clone(), instance, venue, watermark, outbox, route });
        }
        let symbols = spec.symbols.clone();
        Ok(PlannedEngine { name, engine, persist, sha256, plugin: spec.plugin.clone(), setup, symbols })
    }
}

/// Loads and starts every configured strategy (see [`EnginePlanner::plan`]).
pub(super) fn plan_engines(specs: &[StrategyConfig], planner: &EnginePlanner) -> Result<Vec<PlannedEngine>, LiveError> {
    specs.iter().map(|spec| planner.plan(spec)).collect()
}
