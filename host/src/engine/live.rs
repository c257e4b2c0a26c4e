//! Host mode: a feed, one engine thread per strategy, and the HTTP listener.
//!
//! Guest calls run on each strategy's own OS thread, so a slow or trapped
//! strategy never blocks tokio's workers, the API or the other strategies.

use std::future::{Future, IntoFuture};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;

use super::{Engine, EngineError, Event};
use crate::api::{AppState, app};
use crate::bar::{Bar, format_time};
use crate::broker::PaperBroker;
use crate::config::{BrokerConfig, Config, FeedConfig};
use crate::feed::{CsvLimits, FeedError, MarketData, ReplayFeed, load_source};
use crate::report::Report;
use crate::runtime::{Clock, Runtime, RuntimeError};

/// Batches queued per strategy before the feed waits for it.
const QUEUE_DEPTH: usize = 64;

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
}

/// What `/health` reports.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostStatus {
    /// `ok` while every strategy runs, `degraded` once one has failed.
    pub status: String,
    pub feed_done: bool,
    pub strategies: Vec<StrategyStatus>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StrategyStatus {
    pub name: String,
    /// `running`, `failed` or `stopped`.
    pub state: String,
    pub restarts: u32,
    pub bars: u64,
    pub orders: u64,
    pub fills: u64,
    pub error: Option<String>,
}

impl HostStatus {
    /// Replaces the entry of `status.name`, adding it if new.
    pub fn set(&mut self, status: StrategyStatus) {
        match self.strategies.iter_mut().find(|s| s.name == status.name) {
            Some(slot) => *slot = status,
            None => self.strategies.push(status),
        }
        let failed = self.strategies.iter().any(|s| s.state == "failed");
        self.status = if failed { "degraded" } else { "ok" }.into();
    }
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

/// Runs the host until `shutdown` resolves (or the feed ends, if asked).
/// Prints orders, fills and running PnL to `out`, and returns each
/// strategy's report.
pub async fn run_host(
    config: Config,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
    out: impl Write + Send + 'static,
) -> Result<Vec<Report>, LiveError> {
    let runtime = Runtime::new(config.runtime.to_runtime())?;
    let FeedConfig { data, symbol, pace_ms, .. } = &config.feed;
    let bars = load_source(data, symbol, CsvLimits::default())?;
    let first_time = bars.first().map_or(0, |b| b.time);
    let pace = Duration::from_millis(options.pace_ms.unwrap_or(*pace_ms));
    let BrokerConfig { starting_cash, commission, .. } = config.broker.clone();

    // Start every strategy before anything runs: a bad one stops the host
    // before it trades.
    let mut engines = Vec::new();
    for spec in &config.strategies {
        let plugin = runtime.load_named(&spec.plugin)?;
        let name = spec.name.clone().unwrap_or_else(|| plugin.info.name.clone());
        let strategy = runtime.instantiate(&plugin, &spec.params(), Clock::virtual_at(first_time))?;
        let engine =
            Engine::new(Box::new(strategy), Box::new(PaperBroker::new(commission)), config.risk.clone(), starting_cash);
        engines.push((name, engine));
    }

    let listen = options.listen.unwrap_or(config.server.listen);
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|source| LiveError::Listen { addr: listen, source })?;
    let local = listener.local_addr().map_err(|source| LiveError::Listen { addr: listen, source })?;
    let status = Arc::new(RwLock::new(HostStatus { status: "ok".into(), ..HostStatus::default() }));
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, app(AppState { status: status.clone() }))
            .with_graceful_shutdown(async {
                let _ = server_stopped.await;
            })
            .into_future(),
    );

    let (lines, printer) = printer(out);
    let _ = lines.send(format!(
        "stratbox listening on http://{local} (GET /health); replaying {data} as {symbol}, {} bars\n",
        bars.len()
    ));

    let mut feeds = Vec::new();
    let mut threads = Vec::new();
    for (name, engine) in engines {
        let (tx, rx) = mpsc::channel::<Arc<[Bar]>>(QUEUE_DEPTH);
        feeds.push(tx);
        let thread = spawn_engine(name, symbol.clone(), engine, rx, lines.clone(), status.clone())?;
        threads.push(thread);
    }

    let mut feed = ReplayFeed::new(bars, pace);
    let feed_status = status.clone();
    let mut feed_task = tokio::spawn(async move {
        while let Some(batch) = feed.next_batch().await? {
            let batch: Arc<[Bar]> = batch.into();
            for tx in &feeds {
                // A closed queue means that strategy has stopped; the others go on.
                let _ = tx.send(batch.clone()).await;
            }
        }
        if let Ok(mut s) = feed_status.write() {
            s.feed_done = true;
        }
        Ok::<(), FeedError>(())
    });

    tokio::pin!(shutdown);
    tokio::select! {
        () = &mut shutdown => feed_task.abort(),
        result = &mut feed_task => {
            match result {
                Ok(Ok(())) => { let _ = lines.send("feed finished\n".into()); }
                Ok(Err(e)) => { let _ = lines.send(format!("feed stopped: {e}\n")); }
                Err(e) => { let _ = lines.send(format!("feed task ended: {e}\n")); }
            }
            if !options.exit_when_done {
                let _ = lines.send("still serving; press Ctrl-C to stop\n".into());
                shutdown.await;
            }
        }
    }

    let mut reports = Vec::new();
    for thread in threads {
        let report = tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(|e| LiveError::Thread { message: e.to_string() })?
            .map_err(|_| LiveError::Thread { message: "an engine thread panicked".into() })?;
        let _ = lines.send(format!("\n{}", report.to_text()));
        reports.push(report);
    }
    let _ = stop_server.send(());
    drop(lines);
    let _ = printer.await;
    match server.await {
        Ok(Err(source)) => Err(LiveError::Serve { source }),
        _ => Ok(reports),
    }
}

/// Writes lines to `out` from a task, so engines never wait on the terminal.
fn printer(mut out: impl Write + Send + 'static) -> (mpsc::UnboundedSender<String>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let task = tokio::task::spawn_blocking(move || {
        while let Some(line) = rx.blocking_recv() {
            if out.write_all(line.as_bytes()).and_then(|()| out.flush()).is_err() {
                break;
            }
        }
    });
    (tx, task)
}

fn spawn_engine(
    name: String,
    symbol: String,
    engine: Engine,
    mut rx: mpsc::Receiver<Arc<[Bar]>>,
    lines: mpsc::UnboundedSender<String>,
    status: Arc<RwLock<HostStatus>>,
) -> Result<std::thread::JoinHandle<Report>, LiveError> {
    let tag = name.clone();
    let event_lines = lines.clone();
    let mut engine = engine.with_events(move |event| {
        let _ = event_lines.send(describe(&tag, &event));
    });
    let update = move |engine: &Engine, state: &str, error: Option<String>| {
        let c = engine.counts();
        if let Ok(mut s) = status.write() {
            s.set(StrategyStatus {
                name: name.clone(),
                state: state.into(),
                restarts: c.restarts,
                bars: c.bars,
                orders: c.orders,
                fills: c.fills,
                error,
            });
        }
    };
    std::thread::Builder::new()
        .name("stratbox-engine".into())
        .spawn(move || {
            update(&engine, "running", None);
            while let Some(batch) = rx.blocking_recv() {
                if let Err(EngineError::Strategy(e)) = engine.on_bars(&batch) {
                    let _ = lines.send(format!("strategy stopped: {e}\n"));
                    update(&engine, "failed", Some(e.to_string()));
                    return engine.report(&symbol);
                }
                update(&engine, "running", None);
            }
            update(&engine, "stopped", None);
            engine.report(&symbol)
        })
        .map_err(|e| LiveError::Thread { message: e.to_string() })
}

/// One line of output for an event.
fn describe(strategy: &str, event: &Event) -> String {
    match event {
        Event::OrderPlaced { intent_id, intent, time } => format!(
            "[{strategy}] {}  order #{intent_id}: {} {} {} ({})\n",
            format_time(*time),
            intent.side,
            intent.qty,
            intent.symbol,
            intent.order_type
        ),
        Event::Filled { fill, position } => format!(
            "[{strategy}] {}  fill  #{}: {} {} {} @ {}  → position {position}\n",
            format_time(fill.time),
            fill.intent_id,
            fill.side,
            fill.qty,
            fill.symbol,
            fill.price
        ),
        Event::Rejected { intent_id, symbol, reason, time } => {
            format!("[{strategy}] {}  rejected #{intent_id} ({symbol}): {reason}\n", format_time(*time))
        }
        Event::Canceled { intent_id, time } => format!("[{strategy}] {}  canceled #{intent_id}\n", format_time(*time)),
        Event::Notified { level, message, time } => {
            format!("[{strategy}] {}  {level:?}: {message}\n", format_time(*time))
        }
        Event::StrategyRestarted { error } => format!("[{strategy}] {error}\n"),
        Event::Pnl { time, realized, unrealized, equity } => format!(
            "[{strategy}] {}  pnl: realized {} unrealized {} equity {}\n",
            format_time(*time),
            realized.round_dp(2),
            unrealized.round_dp(2),
            equity.round_dp(2)
        ),
    }
}
