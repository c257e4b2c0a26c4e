//! `stratbox plugin check`: does a strategy keep the determinism its crash
//! recovery relies on?
//!
//! The strategy runs twice over the same bars on the paper broker: once
//! straight through, and once stopped halfway, its state saved, and a new
//! instance restored from that state to finish. The two runs must do the
//! same things in the same order (orders with their ids, cancels,
//! rejections, fills, notifications); the first difference is reported.
//! Both runs see the same batches, so this checks what survives a restore;
//! `backtest --batch` with other sizes checks independence of batching.

use std::sync::{Arc, Mutex};

use rust_decimal::Decimal;
use serde::Serialize;

use crate::bar::Bar;
use crate::broker::{Commission, PaperBroker};
use crate::engine::{Engine, EngineError, Event};
use crate::risk::RiskLimits;
use crate::runtime::{Clock, Plugin, Runtime, RuntimeError};
use crate::strategy::StrategyError;

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("the strategy stopped: {0}")]
    Engine(#[from] EngineError),
    #[error("the strategy could not save its state halfway: {0}")]
    Save(#[source] StrategyError),
    #[error("the strategy faulted in save-state halfway")]
    SaveFaulted,
    #[error("a new instance refused the saved state: {0}")]
    Restore(#[source] StrategyError),
}

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    pub bars: usize,
    /// Things the strategy did in the straight run.
    pub events: usize,
    /// The bar before which the second run was saved and restored.
    pub restored_at: usize,
    /// The first difference, if the runs differed.
    pub difference: Option<String>,
}

impl CheckReport {
    pub fn is_deterministic(&self) -> bool {
        self.difference.is_none()
    }
}

/// One line per thing the strategy did, in order.
fn line(event: &Event) -> Option<String> {
    Some(match event {
        Event::OrderPlaced { intent_id, intent, time } => format!(
            "{time} order {intent_id}: {} {} {} ({}, {:?})",
            intent.side, intent.qty, intent.symbol, intent.order_type, intent.time_in_force
        ),
        Event::Rejected { intent_id, reason, time, .. } => format!("{time} rejected {intent_id}: {reason}"),
        Event::Filled { fill, .. } => format!("{} fill {}: {} @ {}", fill.time, fill.intent_id, fill.qty, fill.price),
        Event::Canceled { intent_id, time } => format!("{time} canceled {intent_id}"),
        Event::Notified { level, message, time } => format!("{time} {level:?}: {message}"),
        Event::StrategyRestarted { error } => format!("restarted: {error}"),
        Event::Pnl { .. } => return None,
    })
}

fn engine(strategy: Box<dyn crate::strategy::Strategy>, lines: Arc<Mutex<Vec<String>>>) -> Engine {
    let broker = Box::new(PaperBroker::new(Commission::default()));
    Engine::new(strategy, broker, RiskLimits::default(), Decimal::from(1_000_000)).with_events(move |event| {
        if let Some(line) = line(&event) {
            lines.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(line);
        }
    })
}

/// Runs the check; see the module docs.
pub fn check(
    runtime: &Runtime,
    plugin: &Arc<Plugin>,
    params: &[(String, String)],
    bars: &[Bar],
    batch: usize,
) -> Result<CheckReport, CheckError> {
    let batch = batch.max(1);
    let start = bars.first().map_or(0, |b| b.time);
    let straight = Arc::new(Mutex::new(Vec::new()));
    let mut first = engine(Box::new(runtime.instantiate(plugin, params, Clock::virtual_at(start))?), straight.clone());
    first.run(bars, batch)?;

    // Halfway, at a batch boundary: both runs see the same batches, so a
    // difference comes from the save and restore alone.
    let restored_at = bars.len() / 2 / batch * batch;
    let resumed = Arc::new(Mutex::new(Vec::new()));
    let mut second = engine(Box::new(runtime.instantiate(plugin, params, Clock::virtual_at(start))?), resumed.clone());
    second.run(&bars[..restored_at], batch)?;
    let state = second.save_state()?.ok_or(CheckError::SaveFaulted)?;
    let time = bars.get(restored_at).map_or(start, |b| b.time);
    let mut fresh = runtime.instantiate(plugin, params, Clock::virtual_at(time))?;
    crate::strategy::Strategy::load_state(&mut fresh, &state).map_err(CheckError::Restore)?;
    drop(second.replace_strategy(Box::new(fresh), true));
    second.run(&bars[restored_at..], batch)?;

    let (a, b) = (straight.lock().map(|l| l.clone()), resumed.lock().map(|l| l.clone()));
    let (a, b) = (a.unwrap_or_default(), b.unwrap_or_default());
    let difference = a.iter().zip(&b).position(|(x, y)| x != y).map(|at| (at, a.get(at), b.get(at))).or_else(|| {
        (a.len() != b.len()).then(|| {
            let at = a.len().min(b.len());
            (at, a.get(at), b.get(at))
        })
    });
    let none = "(nothing)".to_string();
    let difference = difference.map(|(at, x, y)| {
        format!(
            "thing {} differs: straight through {}; saved and restored at bar {restored_at}: {}",
            at + 1,
            crate::runtime::bounded(x.unwrap_or(&none)),
            crate::runtime::bounded(y.unwrap_or(&none))
        )
    });
    Ok(CheckReport { bars: bars.len(), events: a.len(), restored_at, difference })
}
