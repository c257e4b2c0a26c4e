//! Host mode: a feed, one engine thread per strategy, and the HTTP listener.
//!
//! Guest calls run on each strategy's own OS thread, so a slow or trapped
//! strategy never blocks tokio's workers, the API or the other strategies.

use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;

use super::dropin;
use super::fanout::{FeedMeter, Taps, spawn_feed};
use super::instances::Instances;
use super::launcher::{Launcher, Starter};
use super::output::{Lines, printer};
use super::plan::{Connections, EnginePlanner, FeedPlan, plan_engines, plan_feed, plan_venue, startup_sync};
use super::routed::{Lanes, VenueDesk};
use super::status::HostStatus;
use super::swap::{Replacement, SwapError, Watched, watch};
use crate::api::{Access, ApiToken, AppState, Ledger, Sessions, TOKEN_VARIABLE, app};
use crate::bar::{Bar, Millis, format_time, now_ms};
use crate::broker::ExecutionEvent;
use crate::config::{BrokerKind, Config, FeedKind};
use crate::control::{Command, ControlError, InstanceState};
use crate::feed::FeedError;
use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::notify::{Notifier, NotifyError};
use crate::order::{Fill, OrderIntent};
use crate::report::Report;
use crate::runtime::{Runtime, RuntimeError};
use crate::store::{Store, StoreError};
use crate::venue::VenueError;
use crate::webhook::{Handed, Inbound, WebhookError, WebhookIntake, run_dispatcher};

/// Journal lines the trading path may queue before lines are dropped (and
/// counted) rather than waited for.
const JOURNAL_QUEUE: usize = 65_536;

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Feed(#[from] FeedError),
    #[error("cannot listen on {addr}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("the HTTP server stopped")]
    Serve { source: std::io::Error },
    #[error("an engine thread could not be started or joined: {message}")]
    Thread { message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Venue(#[from] VenueError),
    #[error(transparent)]
    Notify(#[from] NotifyError),
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    #[error(transparent)]
    DropIn(#[from] super::DropInError),
    #[error("{message}")]
    Setup { message: String },
    #[error(transparent)]
    VenueSetup(#[from] crate::venues::SetupError),
    #[error("symbol `{symbol}` is not one the feed polls")]
    UnknownSymbol { symbol: String },
}

/// Options of `stratbox run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Overrides `[server] listen`.
    pub listen: Option<SocketAddr>,
    /// Overrides the replay pace.
    pub pace_ms: Option<u64>,
    /// Stop when the feed ends instead of waiting for Ctrl-C.
    pub exit_when_done: bool,
}

/// What an engine thread is fed.
#[derive(Debug)]
pub enum EngineInput {
    /// An operator's request, answered on `reply`.
    Control { command: Command, reply: tokio::sync::oneshot::Sender<Result<InstanceState, ControlError>> },
    /// A batch from the feed, and when the feed handed it over.
    Bars { bars: Arc<[Bar]>, sent: std::time::Instant },
    /// Fills and expiries from a live venue, with the venue's ids of the
    /// fills, to be marked told once the input is committed.
    Executed { events: Vec<ExecutionEvent>, fill_ids: Vec<String> },
    /// Fills the strategy was not told of before a restart (or that
    /// happened while the host was down). The position already holds
    /// them; only the strategy hears of them.
    Missed { fills: Vec<Fill>, fill_ids: Vec<String> },
    /// An external signal for `on-signal`.
    Signal {
        source: String,
        payload: String,
        time: Millis,
        /// Its webhook inbox row, marked done with the input's commit.
        inbox: Option<i64>,
    },
    /// An order from outside the strategy (a webhook in `order` mode).
    Intent {
        intent: OrderIntent,
        /// Its webhook inbox row, marked done with the input's commit.
        inbox: Option<i64>,
    },
    /// A new build of the strategy's plugin, started and ready to take over.
    Swap {
        replacement: Replacement,
        /// Told whether the swap took, when someone waits for it.
        reply: Option<tokio::sync::oneshot::Sender<Result<(), String>>>,
    },
}

/// Runs the host until `shutdown` resolves (or the feed ends, if asked).
/// Prints orders, fills and running PnL to `out`, and returns each
/// strategy's report.
pub async fn run_host(
    config: Config,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
    out: impl Write + Send + 'static,
) -> Result<Vec<Report>, LiveError> {
    tokio::pin!(shutdown);
    let live = config.feed.kind != FeedKind::Replay
        || config.broker.kind != BrokerKind::Paper
        || !config.webhooks.is_empty()
        || !config.sinks.is_empty()
        || !config.price_alerts.is_empty();
    let runtime_config = crate::runtime::RuntimeConfig {
        compile_cache: config.compile_cache(live),
        ..config.runtime.to_runtime(config.budget())
    };
    let runtime = Arc::new(Runtime::new(runtime_config)?);
    let store = if live { Some(Arc::new(Store::open(std::path::Path::new(&config.store.path))?)) } else { None };
    let connections = Connections::new(&config, store.as_ref())?;
    let client = connections.client.clone();
    let (journal, journal_writer) = match &store {
        Some(store) => {
            let (journal, writer) = Journal::start(store.clone(), JOURNAL_QUEUE)
                .map_err(|e| LiveError::Thread { message: format!("cannot start the journal writer: {e}") })?;
            (Some(journal), Some(writer))
        }
        None => (None, None),
    };
    let status = Arc::new(RwLock::new(HostStatus { status: "ok".into(), ..HostStatus::default() }));
    let metrics = Metrics::new(status.clone());
    let tape = Arc::new(crate::tape::Tape::default());
    if let Some(journal) = &journal {
        metrics.watch_journal(journal.dropped_counter());
    }
    let notifier = match &store {
        Some(store) if !config.sinks.is_empty() => {
            metrics.watch_outbox(store.clone(), config.sinks.iter().map(|s| s.name.clone()).collect());
            Some(Notifier::new(config.sinks.clone(), store.clone(), client.clone())?.with_metrics(metrics.clone()))
        }
        _ => None,
    };
    // Read webhook secrets now: an unset variable stops the start.
    let webhooks = match &store {
        Some(store) if !config.webhooks.is_empty() => {
            metrics.tally.expect_routes(&config.webhooks.iter().map(|w| w.name.clone()).collect::<Vec<_>>());
            Some(Arc::new(WebhookIntake::new(&config.webhooks, store.clone())?.with_metrics(metrics.clone())))
        }
        _ => None,
    };
    let venue = match &store {
        Some(store) => plan_venue(&config, &connections, store)?,
        None => None,
    };
    if let Some(v) = &venue {
        metrics.watch_gate(v.gate.clone());
    }
    let FeedPlan { mut feed, clock, symbol, description } = plan_feed(&config, &options, &connections, &metrics)?;
    if let Some(v) = &venue
        && startup_sync(&v.reconciler, &metrics.tally, &mut shutdown).await.is_none()
    {
        tracing::info!("stopped during the startup sync");
        return Ok(Vec::new());
    }
    // Start every strategy before anything runs: a bad one stops the host
    // before it trades.
    let (route_tx, route_rx) = mpsc::unbounded_channel();
    let planner = EnginePlanner {
        runtime: runtime.clone(),
        clock: clock.clone(),
        risk: config.risk.clone(),
        broker: config.broker.clone(),
        budget: config.budget(),
        venue: venue.as_ref().map(|v| (v.gate.clone(), v.venue)),
        store: store.clone(),
        route_tx,
        feed_symbols: config.feed.symbols(),
    };
    // Strategies dropped into the plugins folder start with the configured ones.
    let dropped = match &config.plugins {
        Some(plugins) => dropin::scan(&plugins.dir)?,
        None => Vec::new(),
    };
    let dropped_names: Vec<String> = dropped.iter().filter_map(|s| s.name.clone()).collect();
    for name in &dropped_names {
        if config.strategies.iter().any(|s| s.name.as_ref() == Some(name)) {
            let message = format!("`{name}` is both a configured strategy and a file in the plugins folder");
            return Err(LiveError::Setup { message });
        }
    }
    let specs: Vec<_> = config.strategies.iter().chain(&dropped).cloned().collect();
    let engines = plan_engines(&specs, &planner)?;
    // The feed's cursor may be ahead of what a strategy committed (it moves
    // once a batch is queued): deliver again from the earliest point a
    // strategy has not committed; each skips what its state reflects.
    let committed = engines.iter().filter_map(|e| e.persist.as_ref()).map(|p| p.watermark);
    if let Some(earliest) = committed.filter(|&w| w > Millis::MIN).min() {
        feed.rewind_to(earliest)?;
    }

    let listen = options.listen.unwrap_or(config.server.listen);
    let variable = std::env::var(TOKEN_VARIABLE).ok();
    let token = ApiToken::resolve(variable, config.server.api_token.as_deref(), listen)
        .map_err(|e| LiveError::Setup { message: e.to_string() })?;
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|source| LiveError::Listen { addr: listen, source })?;
    let local = listener.local_addr().map_err(|source| LiveError::Listen { addr: listen, source })?;
    let gate_view = venue.as_ref().map(|v| v.gate.clone());
    let instances = Instances::default();
    let api = match &token {
        ApiToken::Open => "control API /api/v1 open on loopback, no token set",
        ApiToken::Bearer { .. } => "control API /api/v1 with a bearer token",
    };
    let dispatch_from = webhooks.as_ref().zip(store.clone()).map(|(w, store)| (store, w.waker()));
    let (stop_server, closing_rx) = tokio::sync::watch::channel(false);
    let server_stopped = closing_rx.clone();
    let server = tokio::spawn(
        axum::serve(
            listener,
            app(AppState {
                status: status.clone(),
                webhooks,
                gate: gate_view,
                instances: instances.clone(),
                access: Access { token, sessions: Sessions::default() },
                metrics: metrics.clone(),
                tape: tape.clone(),
                journal: store.clone(),
                closing: closing_rx,
                snapshots: Arc::default(),
                ledger: store
                    .clone()
                    .zip(venue.as_ref().map(|v| v.venue))
                    .map(|(store, venue)| Ledger { store, venue }),
            })
            .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let mut stopped = server_stopped;
            let _ = stopped.wait_for(|closing| *closing).await;
        })
        .into_future(),
    );

    let (lines, printer) = printer(out);
    lines.send(format!("stratbox listening on http://{local} (GET /health; {api}); {description}\n"));

    let (watch_tx, watch_rx) = mpsc::unbounded_channel();
    let launcher = Launcher {
        taps: Taps::default(),
        instances: instances.clone(),
        lanes: venue.as_ref().map(|_| Lanes::default()),
        watch: (config.runtime.watch_ms > 0).then_some(watch_tx),
        threads: Arc::default(),
        journal: journal.clone(),
        lines: lines.clone(),
        status: status.clone(),
        inbox: store.clone(),
        policy: config.runtime.instance_policy(),
        symbol: symbol.clone(),
        metrics: metrics.clone(),
    };
    let mut by_name = HashMap::new();
    for planned in engines {
        let name = planned.name.clone();
        by_name.insert(name, launcher.launch(planned)?);
    }
    let watcher = (config.runtime.watch_ms > 0).then(|| {
        let every = Duration::from_millis(config.runtime.watch_ms);
        tokio::spawn(watch(
            runtime.clone(),
            clock.clone(),
            watch_rx,
            every,
            refusal_reporter(journal.clone(), lines.clone()),
        ))
    });
    let starter = Arc::new(Starter { planner: planner.clone(), launcher: launcher.clone() });
    instances.start_with(&starter, config.plugins.as_ref().map(|p| p.dir.clone()));
    let folder = config.plugins.clone().filter(|p| p.watch && config.runtime.watch_ms > 0).map(|plugins| {
        let every = Duration::from_millis(config.runtime.watch_ms);
        let starter = starter.clone();
        let reporting = dropin::Reporting { journal: journal.clone(), lines: lines.clone() };
        tokio::spawn(dropin::watch_dir(plugins, every, starter, instances.clone(), dropped_names, reporting))
    });
    // Deliveries left in the inbox by a crash are handed over first. Engines
    // mark each done: live ones in the commit of the input it became, paper
    // ones once they have acted on it.
    let dispatcher = dispatch_from.map(|(store, wake)| tokio::spawn(dispatch(store, wake, by_name.clone())));
    let notifier = notifier.map(|n| tokio::spawn(Arc::new(n).run(Duration::from_millis(250))));
    let alerts = PriceWatch::new(config.price_alerts.clone(), journal.clone());
    let desk = match (venue, store) {
        (Some(v), Some(store)) => {
            let desk = VenueDesk {
                router: v.router,
                reconciler: v.reconciler,
                store,
                venue: v.venue,
                engines: launcher.lanes.clone().unwrap_or_default(),
                sync_every: Duration::from_millis(config.broker.sync_every_ms.max(100)),
                metrics: metrics.clone(),
                updates: v.stream.map(|start| start()),
            };
            Some(tokio::spawn(desk.run(route_rx)))
        }
        _ => None,
    };
    // Engines end when every sender of their input is gone.
    drop(by_name);

    let meter = FeedMeter {
        metrics: metrics.clone(),
        feed: config.feed.name(),
        live: config.feed.kind != FeedKind::Replay,
        tape: tape.clone(),
    };
    let (stop_feed, mut feed_task) = spawn_feed(feed, alerts, launcher.taps.clone(), status.clone(), meter);
    tokio::select! {
        () = &mut shutdown => {
            let _ = stop_feed.send(());
            if let Ok(Err(e)) = (&mut feed_task).await {
                lines.send(format!("feed stopped: {e}\n"));
            }
        }
        result = &mut feed_task => {
            match result {
                Ok(Ok(())) => lines.send("feed finished\n".into()),
                Ok(Err(e)) => { lines.send(format!("feed stopped: {e}\n")); }
                Err(e) => { lines.send(format!("feed task ended: {e}\n")); }
            }
            if !options.exit_when_done {
                lines.send("still serving; press Ctrl-C to stop\n".into());
                shutdown.await;
            }
        }
    }

    let running = Running {
        feeders: [dispatcher, watcher, folder, notifier, desk].into_iter().flatten().collect(),
        starter,
        launcher,
        journal,
        journal_writer,
        lines,
        printer,
        stop_server,
        server,
    };
    running.stop().await
}

/// What runs once the host is up, in the order a graceful stop ends it.
struct Running {
    /// Tasks that feed the engines or act for them, aborted first: the
    /// webhook dispatcher, the swap watcher, the notifier and the venue
    /// desk. Each is safe to drop at any await (its work is in the store
    /// before it acts), and dropping them drops their senders to the engines.
    feeders: Vec<tokio::task::JoinHandle<()>>,
    /// What reaches the engines (the control API, the feed's taps, the
    /// desk's lanes), let go after the feeders, and their threads.
    launcher: Launcher,
    /// What starts instances while the host runs (the control API holds
    /// it weakly).
    starter: Arc<Starter>,
    journal: Option<Journal>,
    journal_writer: Option<std::thread::JoinHandle<()>>,
    lines: Lines,
    printer: tokio::task::JoinHandle<()>,
    /// Stops the listener and ends long-lived responses.
    stop_server: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// The feed has stopped: stops what feeds the engines, lets each engine
    /// drain its queue and commit (waiting at most [`SHUTDOWN_GRACE`]),
    /// flushes the journal, then stops the listener. Returns each
    /// strategy's report.
    async fn stop(self) -> Result<Vec<Report>, LiveError> {
        let Running { feeders, launcher, starter, journal, journal_writer, lines, printer, stop_server, server } = self;
        for task in feeders {
            task.abort();
            let _ = task.await;
        }
        drop(starter);
        launcher.release();
        let threads = launcher.threads();
        drop(launcher);
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        let mut reports = Vec::new();
        for thread in threads {
            let joined = tokio::task::spawn_blocking(move || thread.join());
            match tokio::time::timeout_at(deadline, joined).await {
                Ok(Ok(Ok(report))) => {
                    lines.send(format!("\n{}", report.to_text()));
                    reports.push(report);
                }
                Ok(Ok(Err(_))) => return Err(LiveError::Thread { message: "an engine thread panicked".into() }),
                Ok(Err(e)) => return Err(LiveError::Thread { message: e.to_string() }),
                Err(_) => {
                    // A guest stuck past its deadline (e.g. blocked in a host
                    // call): what it committed is safe; the process exits anyway.
                    tracing::error!("an engine did not stop within {SHUTDOWN_GRACE:?}; leaving it");
                    lines.send(format!("an engine did not stop within {SHUTDOWN_GRACE:?}\n"));
                }
            }
        }
        // The engines and the feed are gone; flush what they journaled.
        drop(journal);
        if let Some(writer) = journal_writer {
            let flushed = tokio::task::spawn_blocking(move || writer.join());
            if tokio::time::timeout_at(deadline + SHUTDOWN_GRACE, flushed).await.is_err() {
                tracing::error!("the journal writer did not finish in time");
            }
        }
        let _ = stop_server.send(true);
        drop(lines);
        let _ = printer.await;
        // Requests in flight get a grace period; a client that holds its
        // connection open past it does not hold the host.
        let mut server = server;
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
            Ok(Ok(Err(source))) => Err(LiveError::Serve { source }),
            Ok(_) => Ok(reports),
            Err(_) => {
                tracing::warn!("connections still open {SHUTDOWN_GRACE:?} after the stop; closing them");
                server.abort();
                Ok(reports)
            }
        }
    }
}

/// How long a graceful stop waits for the engines to drain and commit.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs the feed on its own task, handing each batch to every engine, until
/// it ends or the returned sender fires. A closed engine queue (a stopped
/// strategy) is skipped; the others go on.
/// Hands accepted webhook deliveries from the store's inbox to the engines
/// they name, oldest first, and marks each done once its engine's queue
/// has it (see `webhook::run_dispatcher`).
async fn dispatch(
    store: Arc<Store>,
    wake: Arc<tokio::sync::Notify>,
    engines: HashMap<String, mpsc::Sender<EngineInput>>,
) {
    let hand = |id: i64, delivery: Inbound| {
        let inbox = Some(id);
        let engine = engines.get(delivery.strategy()).cloned();
        async move {
            let Some(engine) = engine else { return Handed::NoStrategy };
            let input = match delivery {
                Inbound::Signal { route, payload, .. } => {
                    EngineInput::Signal { source: route, payload, time: now_ms(), inbox }
                }
                Inbound::Order { order, .. } => {
                    let market = OrderIntent::market(Arc::from(order.symbol.as_str()), order.side, order.qty);
                    let intent = OrderIntent { order_type: order.order_type, ..market };
                    EngineInput::Intent { intent, inbox }
                }
            };
            match engine.send(input).await {
                Ok(()) => Handed::Over,
                Err(_) => Handed::Closed,
            }
        }
    };
    // A store error pauses the handovers, never ends them: what was
    // accepted waits in the store meanwhile.
    while let Err(error) = run_dispatcher(store.clone(), wake.clone(), true, &hand).await {
        tracing::error!(%error, "webhook dispatcher paused; accepted deliveries wait in the store");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Journals `price.crossed` when a close crosses a configured level.
pub(super) struct PriceWatch {
    alerts: Vec<(crate::config::PriceAlert, Option<std::cmp::Ordering>)>,
    journal: Option<Journal>,
}

impl PriceWatch {
    fn new(alerts: Vec<crate::config::PriceAlert>, journal: Option<Journal>) -> Self {
        Self { alerts: alerts.into_iter().map(|a| (a, None)).collect(), journal }
    }

    /// Compares each close with the levels; a change of side is a crossing.
    pub(super) fn observe(&mut self, bars: &[Bar]) {
        let Some(journal) = &self.journal else { return };
        for bar in bars {
            for (alert, side) in self.alerts.iter_mut().filter(|(a, _)| *a.symbol == *bar.symbol) {
                let now = bar.close.cmp(&alert.level);
                if now == std::cmp::Ordering::Equal {
                    continue;
                }
                if side.is_some_and(|before| before != now) {
                    let direction = if now == std::cmp::Ordering::Greater { "up" } else { "down" };
                    let data = serde_json::json!({ "symbol": alert.symbol, "level": alert.level.to_string(),
                        "close": bar.close.to_string(), "direction": direction, "bar": format_time(bar.time) });
                    journal.record("price.crossed", &data);
                }
                *side = Some(now);
            }
        }
    }
}

/// What the swap watcher does with a build it could not start: journal
/// `strategy.swap_failed` and say so. Started builds are reported by the
/// engine once the swap is done.
fn refusal_reporter(journal: Option<Journal>, lines: Lines) -> impl Fn(&Watched, &str, &SwapError) + Send + 'static {
    move |watched, sha256, error| {
        let data = serde_json::json!({ "strategy": watched.name, "sha256": sha256, "error": error.to_string() });
        if let Some(journal) = &journal {
            journal.record("strategy.swap_failed", &data);
        }
        lines.send(format!("[{}] new build of {} refused: {error}\n", watched.name, watched.path.display()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_close_crossing_a_level_is_journaled_once_per_crossing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("w.db")).unwrap());
        let alert = crate::config::PriceAlert { symbol: "X".into(), level: 100.into() };
        let (journal, writer) = Journal::start(store.clone(), 16).unwrap();
        let mut watch = PriceWatch::new(vec![alert], Some(journal));
        let bar = |close: i64| Bar {
            symbol: "X".into(),
            time: close,
            open: close.into(),
            high: close.into(),
            low: close.into(),
            close: close.into(),
            volume: 0.into(),
        };
        // Below, touching (ignored), still below, above, above, below.
        for close in [90, 100, 95, 101, 120, 99] {
            watch.observe(&[bar(close)]);
        }
        drop(watch);
        writer.join().unwrap();
        let lines = store.events_after(0, 10).unwrap();
        let directions: Vec<String> = lines
            .iter()
            .map(|e| {
                serde_json::from_str::<serde_json::Value>(&e.data).unwrap()["direction"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(directions, vec!["up", "down"]);
        assert!(lines.iter().all(|e| e.kind == "price.crossed"));
    }
}
