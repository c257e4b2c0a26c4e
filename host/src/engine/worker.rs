//! An engine's own thread: it takes inputs one at a time, journals and
//! prints what happens, saves the strategy's state after each input, and
//! carries out hot swaps between inputs.

use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;

use super::event_text::{describe, journal_line};
use super::latency::Latencies;
use super::live::{EngineInput, LiveError};
use super::output::Lines;
use super::probation::Probation;
use super::routed::{RouteOutbox, RouteRequest};
use super::status::{HostStatus, LastError, PluginName, StrategyStatus};
use super::swap::swap;
use super::{Engine, EngineError};
use crate::bar::{Millis, now_ms};
use crate::config::PausedBars;
use crate::control::{Command, ControlError, InstanceState};

/// Bar batches a paused instance holds with `paused_bars = "queue"`.
const MAX_HELD_BATCHES: usize = 10_000;
use crate::journal::Journal;
use crate::report::Report;
use crate::store::{OrderRecord, Store, Told};

/// Where an engine thread reports: the terminal, `/health`, the journal.
pub(super) struct Outputs {
    /// The feed's symbols the instance hears, for `/health`.
    pub subscription: super::fanout::Subscription,
    /// Where events go for notifications, when there is a store.
    pub journal: Option<Journal>,
    pub lines: Lines,
    pub status: Arc<RwLock<HostStatus>>,
    /// Where a strategy that keeps no state (the paper broker) marks a
    /// webhook delivery done once it has acted on it.
    pub inbox: Option<Arc<Store>>,
    /// Bars the feed dropped because this engine's queue was full.
    pub dropped: Arc<std::sync::atomic::AtomicU64>,
    /// What happens when it fails, while it is paused, after a swap.
    pub policy: crate::config::InstancePolicy,
    /// Set while the strategy has failed, so the feed skips this engine.
    pub retired: Arc<std::sync::atomic::AtomicBool>,
    /// Where the engine times its calls into the strategy.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// How a live strategy's decisions are kept: after every input, the
/// orders it placed and its state are committed together, then the orders
/// go to the router. A crash loses neither half without the other.
pub(super) struct Persist {
    pub store: Arc<Store>,
    /// `name@venue`.
    pub instance: String,
    pub venue: &'static str,
    /// Time of the last bar batch the saved state reflects.
    pub watermark: Millis,
    /// What the engine's [`super::RoutedExecution`] asked for during the input.
    pub outbox: RouteOutbox,
    pub route: mpsc::UnboundedSender<RouteRequest>,
}

impl Persist {
    /// Commits the input's orders and the fills it told the strategy of
    /// with `state` (if the strategy could save it), then hands the orders
    /// to the router.
    fn commit(&self, engine: &Engine, state: Option<Vec<u8>>, told: &[String], inbox: Option<i64>) {
        let requests = std::mem::take(&mut *self.outbox.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        let now = now_ms();
        let orders: Vec<OrderRecord> = requests
            .iter()
            .filter_map(|request| match request {
                RouteRequest::Submit { order, .. } => Some(OrderRecord::for_intent(
                    self.venue,
                    &self.instance,
                    order.intent_id,
                    &order.intent,
                    crate::order::OrderStatus::Queued,
                    now,
                )),
                RouteRequest::Cancel { .. } => None,
            })
            .collect();
        let state = state.as_deref().map(|s| (s, self.watermark));
        let webhooks: &[i64] = inbox.as_slice();
        let told =
            (!told.is_empty() || !webhooks.is_empty()).then_some(Told { venue: self.venue, fills: told, webhooks });
        if let Err(error) = self.store.commit_input(&self.instance, state, engine.lifetime(), &orders, told, now) {
            // The router still persists each order before sending it.
            tracing::error!(instance = %self.instance, %error, "cannot commit an input");
        }
        for request in requests {
            if self.route.send(request).is_err() {
                tracing::error!(instance = %self.instance, "the router has stopped; order not sent");
            }
        }
    }
}

/// An engine's journal lines, held per input and queued when it ends.
type Pending = Arc<std::sync::Mutex<Vec<(&'static str, serde_json::Value)>>>;

/// Queues the journal lines of the input just handled. A strategy that
/// keeps no state (the paper broker) marks the webhook delivery it acted on
/// done in the same transaction as those lines: a crash before it hands
/// the delivery over again after the restart (to a fresh instance), so
/// nothing accepted is lost, and a crash after it finds it done.
fn flush(journal: Option<&Journal>, pending: &Pending, store: Option<&Store>, done: Option<i64>) {
    let lines = std::mem::take(&mut *pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    let done = done.zip(store);
    match journal {
        Some(journal) => journal.record_input(lines, done),
        None => {
            if let Some((id, store)) = done
                && let Err(error) = store.delivery_done(id)
            {
                tracing::error!(%error, id, "cannot mark a webhook delivery done");
            }
        }
    }
}

/// The first 12 hex digits of a build's SHA-256, for output lines.
fn short(sha256: &str) -> &str {
    sha256.get(..12).unwrap_or(sha256)
}

/// Starts the thread of `engine`, running the build `sha256`; it ends when
/// every sender of `rx` is gone and returns the final report.
pub(super) fn spawn_engine(
    name: String,
    symbol: String,
    engine: Engine,
    sha256: String,
    mut rx: mpsc::Receiver<EngineInput>,
    mut persist: Option<Persist>,
    outputs: Outputs,
) -> Result<std::thread::JoinHandle<Report>, LiveError> {
    let retired = outputs.retired.clone();
    let crate::config::InstancePolicy { on_failure, paused_bars, probation_inputs } = outputs.policy;
    let Outputs {
        journal,
        lines,
        status,
        inbox: inbox_store,
        dropped: bars_dropped_by_feed,
        subscription,
        metrics,
        ..
    } = outputs;
    let held_lost = bars_dropped_by_feed.clone();
    let tag = name.clone();
    let event_lines = lines.clone();
    let pending = Pending::default();
    let event_pending = pending.clone();
    let mut engine = engine.with_call_metrics(metrics, &name).with_events(move |event| {
        event_lines.send(describe(&tag, &event));
        // The journal feeds notifications; trading only queues for it, once
        // the input is handled.
        if let Some(line) = journal_line(&tag, &event) {
            event_pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(line);
        }
    });
    let flush_journal = journal.clone();
    let flush = move |done: Option<i64>| flush(flush_journal.as_ref(), &pending, inbox_store.as_deref(), done);
    let dropped = journal.clone();
    let lag_journal = journal.clone();
    let note = move |kind: &str, data: serde_json::Value| {
        if let Some(journal) = &journal {
            journal.record(kind, &data);
        }
    };
    let status_name = name.clone();
    let mut reported_drops = 0;
    let mut last_error: Option<LastError> = None;
    // A paper engine's orders and fills, for the API (a venue's are stored).
    let paper = persist.is_none().then(super::SharedLedger::default);
    let mut update = move |engine: &Engine,
                           latencies: &Latencies,
                           sha256: &str,
                           swaps: u32,
                           state: InstanceState,
                           error: Option<String>| {
        let c = engine.counts();
        let latency = latencies.summary();
        // Falling behind is journaled when it starts, and the state says so
        // while it goes on.
        let bars_dropped = bars_dropped_by_feed.load(std::sync::atomic::Ordering::Relaxed);
        let lagging = bars_dropped > reported_drops;
        if lagging {
            let data = serde_json::json!({ "strategy": status_name, "bars_dropped": bars_dropped });
            if let Some(journal) = &lag_journal
                && reported_drops == 0
            {
                journal.record("strategy.lagging", &data);
            }
            tracing::warn!(strategy = %status_name, bars_dropped, "strategy is falling behind its feed");
            reported_drops = bars_dropped;
        }
        let state = if lagging && state == InstanceState::Running { InstanceState::Lagging } else { state };
        if let Some(message) = &error
            && last_error.as_ref().is_none_or(|last| &last.message != message)
        {
            last_error = Some(LastError { message: message.clone(), at_ms: crate::bar::now_ms() });
        }
        if let Some(ledger) = &paper {
            ledger.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).follow(engine);
        }
        let plugin = engine.plugin().map(|(name, version)| PluginName { name: name.into(), version: version.into() });
        if let Ok(mut s) = status.write() {
            s.journal_dropped = dropped.as_ref().map_or(0, Journal::dropped);
            s.set(StrategyStatus {
                name: status_name.clone(),
                state,
                plugin,
                sha256: sha256.into(),
                swaps,
                restarts: c.restarts,
                bars: c.bars,
                orders: c.orders,
                fills: c.fills,
                bars_dropped,
                breaches: engine.breaches(),
                latency,
                positions: engine
                    .portfolio()
                    .positions()
                    .filter(|(_, qty)| !qty.is_zero())
                    .map(|(symbol, qty)| (symbol.to_string(), qty.to_string()))
                    .collect(),
                realized_pnl: engine.portfolio().realized_pnl.to_string(),
                unrealized_pnl: engine.portfolio().unrealized_pnl().to_string(),
                error,
                last_error: last_error.clone(),
                paper: paper.clone(),
                symbols: subscription.names(),
            });
        }
    };
    std::thread::Builder::new()
        .name("stratbox-engine".into())
        .spawn(move || {
            let mut sha256 = sha256;
            let mut swaps = 0;
            // Why the strategy stopped; a failed engine waits for a swap.
            let mut failure: Option<String> = None;
            let mut latencies = Latencies::default();
            // Paused by an operator: inputs the strategy must hear wait here.
            let mut paused = false;
            let mut held = std::collections::VecDeque::new();
            // The build a swap replaced, until the new one has proved itself.
            let mut probation: Option<Probation> = None;
            // Removed by an operator: it ends once no order of its is open.
            let mut removed = false;
            update(&engine, &latencies, &sha256, swaps, InstanceState::Running, None);
            note("strategy.started", serde_json::json!({ "strategy": name, "sha256": sha256 }));
            loop {
                let next = if paused { None } else { held.pop_front() };
                let Some(input) = next.or_else(|| rx.blocking_recv()) else { break };
                // Lines of an input that ended early (a failed strategy's).
                flush(None);
                // Venue fills this input tells the strategy of, and its
                // webhook inbox row.
                let mut told = Vec::new();
                let mut inbox = None;
                let mut result = match input {
                    EngineInput::Control { command: Command::Pause, reply } => {
                        let answer = if failure.is_some() {
                            let message = "the instance is quarantined; resume releases it".to_string();
                            Err(ControlError::Conflict { message })
                        } else {
                            paused = true;
                            note("strategy.paused", serde_json::json!({ "strategy": name }));
                            update(&engine, &latencies, &sha256, swaps, InstanceState::Paused, None);
                            Ok(InstanceState::Paused)
                        };
                        let _ = reply.send(answer);
                        continue;
                    }
                    EngineInput::Control { command: Command::Remove { on_remove }, reply } => {
                        let done = engine.quarantine(on_remove);
                        let data = serde_json::json!({ "strategy": name, "on_remove": on_remove,
                            "orders_canceled": done.canceled, "positions_closing": done.closing });
                        note("strategy.removed", data);
                        lines.send(format!("[{name}] removed\n"));
                        (failure, removed) = (Some("removed by an operator".into()), true);
                        update(&engine, &latencies, &sha256, swaps, InstanceState::Removed, None);
                        let _ = reply.send(Ok(InstanceState::Removed));
                        if let Some(p) = &persist {
                            // Its cancels and closing orders go out.
                            p.commit(&engine, None, &[], None);
                        }
                        flush(None);
                        if engine.open_orders() == 0 {
                            break;
                        }
                        continue;
                    }
                    EngineInput::Control { command: Command::Resume, reply } if failure.is_some() => {
                        if let Err(error) = engine.revive() {
                            let message = crate::runtime::bounded(&error.to_string());
                            let _ = reply.send(Err(ControlError::Conflict { message }));
                            continue;
                        }
                        note("strategy.released", serde_json::json!({ "strategy": name }));
                        lines.send(format!("[{name}] released by an operator\n"));
                        (failure, paused) = (None, false);
                        retired.store(false, std::sync::atomic::Ordering::Relaxed);
                        let _ = reply.send(Ok(InstanceState::Running));
                        Ok(())
                    }
                    EngineInput::Control { command: Command::Resume, reply } => {
                        if paused {
                            note("strategy.resumed", serde_json::json!({ "strategy": name }));
                        }
                        paused = false;
                        let _ = reply.send(Ok(InstanceState::Running));
                        // What happened meanwhile, told now.
                        engine.deliver_feedback()
                    }
                    EngineInput::Swap { replacement: next, reply } => {
                        let revived = failure.is_some();
                        // A failed instance cannot save; it resumes from its last saved state.
                        let saved = match (&persist, revived) {
                            (Some(p), true) => p.store.strategy_state(&p.instance).ok().flatten().map(|s| s.state),
                            _ => None,
                        };
                        let to = next.sha256.clone();
                        // The instance's pause: the new build was compiled and
                        // started elsewhere; only the state moves here.
                        let began = std::time::Instant::now();
                        let swapped = swap(&mut engine, next, revived, saved);
                        let pause_us = began.elapsed().as_micros() as u64;
                        if let Err(error) = &swapped {
                            let data =
                                serde_json::json!({ "strategy": name, "sha256": to, "error": error.to_string() });
                            note("strategy.swap_failed", data);
                            lines.send(format!("[{name}] swap to build {} refused: {error}\n", short(&to)));
                            if let Some(reply) = reply {
                                let _ = reply.send(Err(error.to_string()));
                            }
                            continue;
                        }
                        if let Some(reply) = reply {
                            let _ = reply.send(Ok(()));
                        }
                        let data = serde_json::json!({ "strategy": name, "from": sha256, "to": to, "revived": revived,
                            "pause_us": pause_us });
                        note("strategy.swapped", data);
                        lines.send(format!(
                            "[{name}] swapped build {} for {} (paused {pause_us} µs)\n",
                            short(&sha256),
                            short(&to)
                        ));
                        let from = std::mem::replace(&mut sha256, to);
                        swaps += 1;
                        probation = swapped
                            .ok()
                            .flatten()
                            .and_then(|old| Probation::start(&mut engine, old, &from, probation_inputs));
                        failure = None;
                        retired.store(false, std::sync::atomic::Ordering::Relaxed);
                        Ok(())
                    }
                    EngineInput::Executed { events, fill_ids } if failure.is_some() => {
                        // Fills still move the position a revived instance starts from.
                        let _ = engine.on_execution(events);
                        if let Some(p) = &persist {
                            p.commit(&engine, None, &fill_ids, None);
                        }
                        continue;
                    }
                    EngineInput::Missed { fill_ids, .. } if failure.is_some() => {
                        if let Some(p) = &persist {
                            p.commit(&engine, None, &fill_ids, None);
                        }
                        continue;
                    }
                    EngineInput::Bars { bars: batch, .. } if failure.is_some() => {
                        // Orders it left, or that close its position, still
                        // fill; once none is open the feed stops feeding it.
                        engine.on_bars_unattended(&batch, true);
                        if engine.open_orders() == 0 {
                            retired.store(true, std::sync::atomic::Ordering::Relaxed);
                            if removed {
                                break;
                            }
                        }
                        continue;
                    }
                    _ if failure.is_some() => continue,
                    input @ EngineInput::Bars { .. } if paused && paused_bars == PausedBars::Queue => {
                        held.push_back(input);
                        // Bounded: past the cap the oldest batch is lost, counted.
                        let bars_held = held.iter().filter(|i| matches!(i, EngineInput::Bars { .. })).count();
                        if bars_held > MAX_HELD_BATCHES
                            && let Some(at) = held.iter().position(|i| matches!(i, EngineInput::Bars { .. }))
                            && let Some(EngineInput::Bars { bars, .. }) = held.remove(at)
                        {
                            held_lost.fetch_add(bars.len() as u64, std::sync::atomic::Ordering::Relaxed);
                        }
                        continue;
                    }
                    EngineInput::Bars { bars: batch, .. } if paused => {
                        engine.on_bars_unattended(&batch, false);
                        // Skipped for good: a restart must not hand them to it.
                        let time = batch.last().map_or(Millis::MIN, |b| b.time);
                        if let Some(p) = &mut persist
                            && time > p.watermark
                        {
                            p.watermark = time;
                            if let Err(error) = p.store.pass_bars(&p.instance, time) {
                                tracing::warn!(instance = %p.instance, %error, "cannot record bars a paused strategy skipped");
                            }
                        }
                        // Its book follows the market meanwhile, and `/health` shows it.
                        update(&engine, &latencies, &sha256, swaps, InstanceState::Paused, None);
                        continue;
                    }
                    input @ (EngineInput::Executed { .. }
                    | EngineInput::Missed { .. }
                    | EngineInput::Signal { .. }
                    | EngineInput::Intent { .. })
                        if paused =>
                    {
                        held.push_back(input);
                        continue;
                    }
                    EngineInput::Bars { bars: batch, sent } => {
                        let time = batch.last().map_or(Millis::MIN, |b| b.time);
                        match &mut persist {
                            // Already reflected in the restored state: a batch
                            // the feed delivers again after a crash.
                            Some(p) if time <= p.watermark => continue,
                            Some(p) => p.watermark = time,
                            None => {}
                        }
                        let result = engine.on_bars(&batch);
                        latencies.record(sent.elapsed());
                        result
                    }
                    EngineInput::Executed { events, fill_ids } => {
                        told = fill_ids;
                        engine.on_execution(events)
                    }
                    EngineInput::Missed { fills, fill_ids } => {
                        told = fill_ids;
                        engine.on_missed_fills(fills)
                    }
                    EngineInput::Signal { source, payload, time, inbox: row } => {
                        inbox = row;
                        engine.on_signal(&source, &payload, time)
                    }
                    EngineInput::Intent { intent, inbox: row } => {
                        inbox = row;
                        engine.submit_external(intent)
                    }
                };
                let faulted = matches!(result, Err(EngineError::Strategy(_)));
                if let Some(old) = Probation::judge(&mut probation, &mut engine, faulted) {
                    // The new build faulted on probation: the old one returns
                    // and hears what the new one heard.
                    let why = match &result {
                        Err(e) => e.to_string(),
                        Ok(()) => "it faulted and was restarted".to_string(),
                    };
                    let (old_sha256, replayed) = old.roll_back(&mut engine);
                    let from = std::mem::replace(&mut sha256, old_sha256);
                    let data = serde_json::json!({ "strategy": name, "from": from, "to": sha256, "error": why });
                    note("strategy.rolled_back", data);
                    lines.send(format!("[{name}] build {} rolled back to {}: {why}\n", short(&from), short(&sha256)));
                    if replayed.is_err() {
                        // The old build faulted hearing them again: it fails as any would.
                        result = replayed;
                    } else {
                        let error =
                            Some(format!("build {} rolled back: {}", short(&from), crate::runtime::bounded(&why)));
                        update(&engine, &latencies, &sha256, swaps, InstanceState::Running, error);
                        if let Some(p) = &persist {
                            // The old build's state from now on, not the new one's.
                            let state = engine.save_state().ok().flatten();
                            p.commit(&engine, state, &told, inbox);
                            flush(None);
                        } else {
                            flush(inbox);
                        }
                        continue;
                    }
                }
                if let Err(EngineError::Strategy(e)) = result {
                    let done = engine.quarantine(on_failure);
                    let data = serde_json::json!({ "strategy": name, "error": e.to_string(),
                        "orders_canceled": done.canceled, "positions_closing": done.closing });
                    note("strategy.failed", data);
                    lines.send(format!("strategy stopped: {e}\n"));
                    update(&engine, &latencies, &sha256, swaps, InstanceState::Failed, Some(e.to_string()));
                    failure = Some(e.to_string());
                    retired.store(engine.open_orders() == 0, std::sync::atomic::Ordering::Relaxed);
                    // Orders placed before the failure still go out.
                    match &persist {
                        Some(p) => {
                            p.commit(&engine, None, &told, inbox);
                            flush(None);
                        }
                        None => flush(inbox),
                    }
                    continue;
                }
                // Live strategies resume from here after a restart.
                if let Some(p) = &persist {
                    let state = match engine.save_state() {
                        Ok(state) => state,
                        Err(error) => {
                            tracing::warn!(instance = %p.instance, %error, "save-state failed");
                            None
                        }
                    };
                    p.commit(&engine, state, &told, inbox);
                    flush(None);
                } else {
                    flush(inbox);
                }
                update(&engine, &latencies, &sha256, swaps, InstanceState::Running, None);
            }
            flush(None);
            let state = match (&failure, removed) {
                (_, true) => InstanceState::Removed,
                (Some(_), false) => InstanceState::Failed,
                (None, false) => InstanceState::Stopped,
            };
            update(&engine, &latencies, &sha256, swaps, state, failure);
            engine.report(&symbol)
        })
        .map_err(|e| LiveError::Thread { message: e.to_string() })
}
