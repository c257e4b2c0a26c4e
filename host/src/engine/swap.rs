//! Hot swap: a strategy whose plugin is a `.wasm` file is replaced, without
//! a restart, when a new build of that file lands.
//!
//! A watcher polls each file. Once a change has settled (the same size and
//! modification time on two polls, so a half-copied file is never read), it
//! compiles the new build, checks it against the contract and the
//! strategy's parameters, and starts an instance. The engine's thread then
//! moves the old instance's state into it with `save-state`/`load-state`
//! between two inputs and drops the old one. Any failure leaves the old
//! instance running and journals `strategy.swap_failed`; success journals
//! `strategy.swapped`. A strategy that has failed is revived by a swap.
//!
//! A new build is then on probation (see `probation`): if it faults within
//! its first inputs, the old one is put back, hears those inputs again and
//! continues its lifetime, and `strategy.rolled_back` is journaled.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::Digest as _;
use tokio::sync::mpsc;

use super::Engine;
use super::live::EngineInput;
use crate::runtime::{Budget, Clock, Runtime, RuntimeError, read_plugin};
use crate::strategy::Strategy;

/// A started instance of a new build, on its way to an engine.
pub struct Replacement {
    pub strategy: Box<dyn Strategy>,
    /// SHA-256 of the new build, in hex.
    pub sha256: String,
}

impl std::fmt::Debug for Replacement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replacement").field("strategy", &self.strategy.name()).field("sha256", &self.sha256).finish()
    }
}

/// Why a swap did not happen; the old instance keeps running.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    #[error(transparent)]
    Load(#[from] RuntimeError),
    #[error("the running instance could not save its state: {message}")]
    Save { message: String },
    #[error("the new build refused the running instance's state: {message}")]
    Restore { message: String },
}

/// Moves the running strategy's state into `next` and puts it in place.
/// A failed engine has no running instance: `saved` (the state persisted
/// after its last good input) is loaded instead, if there is one.
///
/// Returns the instance it replaced, for its probation, unless that one
/// had failed (there is nothing to go back to). Called on the engine's
/// thread, between inputs.
pub(super) fn swap(
    engine: &mut Engine,
    next: Replacement,
    failed: bool,
    saved: Option<Vec<u8>>,
) -> Result<Option<Box<dyn Strategy>>, SwapError> {
    let mut strategy = next.strategy;
    let state = if failed {
        saved
    } else {
        // Through the engine: a fault here restarts the running instance in
        // the open, counted, never behind the engine's back.
        let saved = engine.save_state().map_err(|e| SwapError::Save { message: e.to_string() })?;
        let state = saved.ok_or_else(|| SwapError::Save {
            message: "the running instance faulted in save-state and was restarted".into(),
        })?;
        Some(state)
    };
    let continues = state.is_some();
    if let Some(state) = state {
        strategy.load_state(&state).map_err(|e| SwapError::Restore { message: e.to_string() })?;
    }
    let old = engine.replace_strategy(strategy, continues);
    Ok((!failed).then_some(old))
}

/// Size and modification time: what changes when a file is rewritten.
pub(super) type Stamp = (u64, Option<SystemTime>);

/// What each new build of a strategy starts with.
#[derive(Debug, Clone)]
pub(super) struct Setup {
    pub params: Vec<(String, String)>,
    /// The build the config pins, if it does: any other is refused.
    pub pin: Option<String>,
    pub budget: Budget,
}

/// An instance's [`Setup`], shared by everything that starts builds of it
/// (the file watcher, the control API), so a new `NAME.toml` reaches all.
pub(super) type SharedSetup = Arc<std::sync::RwLock<Setup>>;

/// The current value of `setup`.
pub(super) fn setup_now(setup: &SharedSetup) -> Setup {
    setup.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
}

/// A strategy whose plugin file is watched.
pub(super) struct Watched {
    pub name: String,
    pub path: PathBuf,
    pub setup: SharedSetup,
    pub input: mpsc::Sender<EngineInput>,
    /// The build last started or refused, so one bad file is reported once.
    pub sha256: String,
    stamp: Option<Stamp>,
    settling: Option<Stamp>,
}

impl Watched {
    pub fn new(
        name: String,
        path: PathBuf,
        setup: SharedSetup,
        input: mpsc::Sender<EngineInput>,
        sha256: String,
    ) -> Self {
        let stamp = stamp_of(&path);
        Self { name, path, setup, input, sha256, stamp, settling: None }
    }
}

pub(super) fn stamp_of(path: &std::path::Path) -> Option<Stamp> {
    std::fs::metadata(path).ok().map(|m| (m.len(), m.modified().ok()))
}

/// Polls every `every` until the task is aborted. Started builds go to the
/// engine; `refused` hears of each build that could not be started.
/// Files of strategies added while the host runs arrive on `added`; those
/// of strategies that ended are forgotten.
pub(super) async fn watch(
    runtime: Arc<Runtime>,
    clock: Clock,
    mut added: mpsc::UnboundedReceiver<Watched>,
    every: Duration,
    refused: impl Fn(&Watched, &str, &SwapError) + Send + 'static,
) {
    let mut watched: Vec<Watched> = Vec::new();
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        while let Ok(w) = added.try_recv() {
            watched.push(w);
        }
        watched.retain(|w| !w.input.is_closed());
        for w in &mut watched {
            let stamp = stamp_of(&w.path);
            if stamp.is_none() || stamp == w.stamp {
                // Missing (mid-rename) or unchanged.
                w.settling = None;
                continue;
            }
            if w.settling != stamp {
                w.settling = stamp;
                continue;
            }
            w.stamp = stamp;
            w.settling = None;
            let (runtime, clock, path, setup) = (runtime.clone(), clock.clone(), w.path.clone(), setup_now(&w.setup));
            let known = w.sha256.clone();
            let loaded = tokio::task::spawn_blocking(move || load(&runtime, clock, &path, &setup, &known)).await;
            match loaded {
                Ok(Ok(None)) => {} // touched, not changed
                Ok(Ok(Some(replacement))) => {
                    w.sha256 = replacement.sha256.clone();
                    // An error means the engine has stopped.
                    let _ = w.input.send(EngineInput::Swap { replacement, reply: None }).await;
                }
                Ok(Err((sha256, error))) => {
                    refused(w, &sha256, &error);
                    w.sha256 = sha256;
                }
                Err(join) => {
                    refused(w, "", &SwapError::Load(RuntimeError::Engine { message: join.to_string() }));
                }
            }
        }
    }
}

/// Reads, checks and starts the build at `path`, unless it is `known`.
fn load(
    runtime: &Runtime,
    clock: Clock,
    path: &std::path::Path,
    setup: &Setup,
    known: &str,
) -> Result<Option<Replacement>, (String, SwapError)> {
    let bytes = read_plugin(path, runtime.config().max_plugin_bytes).map_err(|e| (String::new(), e.into()))?;
    let sha256 = hex::encode(sha2::Sha256::digest(&bytes));
    if sha256 == known {
        return Ok(None);
    }
    start_build(runtime, clock, &path.display().to_string(), &bytes, setup)
        .map(Some)
        .map_err(|e| (sha256, SwapError::Load(e)))
}

/// Checks and starts the build `bytes` (called `label`) with `setup`: the
/// pin first, then compiling, the contract and the parameters.
pub(super) fn start_build(
    runtime: &Runtime,
    clock: Clock,
    label: &str,
    bytes: &[u8],
    setup: &Setup,
) -> Result<Replacement, RuntimeError> {
    let sha256 = hex::encode(sha2::Sha256::digest(bytes));
    // A pinned strategy refuses another build before compiling anything.
    if let Some(pin) = &setup.pin
        && !pin.trim().eq_ignore_ascii_case(&sha256)
    {
        let pinned = pin.chars().take(64).collect();
        return Err(RuntimeError::PinMismatch { plugin: label.into(), found: sha256, pinned });
    }
    let plugin = runtime.load(label, bytes)?;
    let strategy = runtime.instantiate_within(&plugin, &setup.params, clock.own(), &setup.budget)?;
    Ok(Replacement { strategy: Box::new(strategy), sha256 })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rust_decimal::Decimal;

    use super::*;
    use crate::bar::{Bar, Millis};
    use crate::broker::PaperBroker;
    use crate::order::{Action, Fill};
    use crate::risk::RiskLimits;
    use crate::strategy::{Account, Fault, Rejection, StrategyError};

    /// A strategy whose `save-state` faults (and, as a sandboxed one does,
    /// restarts itself), or that refuses any state it is given.
    struct Faulty {
        save_faults: bool,
    }

    impl Strategy for Faulty {
        fn name(&self) -> &str {
            "faulty"
        }
        fn on_bars(&mut self, _: &[Bar]) -> Result<Vec<(usize, Action)>, StrategyError> {
            Ok(Vec::new())
        }
        fn on_fills(&mut self, _: &[Fill]) -> Result<Vec<Action>, StrategyError> {
            Ok(Vec::new())
        }
        fn on_rejects(&mut self, _: &[Rejection]) -> Result<Vec<Action>, StrategyError> {
            Ok(Vec::new())
        }
        fn on_signal(&mut self, _: &str, _: &str, _: Millis) -> Result<Vec<Action>, StrategyError> {
            Ok(Vec::new())
        }
        fn save_state(&mut self) -> Result<Vec<u8>, StrategyError> {
            if self.save_faults {
                let fault = Fault::Trap { message: "boom".into() };
                return Err(StrategyError::Restarted {
                    strategy: "faulty".into(),
                    call: "save-state",
                    fault,
                    restarts: 1,
                    fresh: true,
                });
            }
            Ok(b"state".to_vec())
        }
        fn load_state(&mut self, _: &[u8]) -> Result<(), StrategyError> {
            Ok(())
        }
        fn set_position(&mut self, _: &Arc<str>, _: Decimal) {}
        fn set_account(&mut self, _: Account) {}
    }

    fn engine(save_faults: bool) -> Engine {
        let strategy = Box::new(Faulty { save_faults });
        Engine::new(strategy, Box::new(PaperBroker::default()), RiskLimits::default(), Decimal::from(1000))
    }

    /// The running instance faulted and restarted while saving for a swap:
    /// the swap is refused, and the restart is counted, with the new
    /// lifetime a fresh instance starts.
    #[test]
    fn a_fault_while_saving_for_a_swap_is_counted_and_refuses_the_swap() {
        let mut engine = engine(true);
        let lifetime = engine.lifetime();
        let next = Replacement { strategy: Box::new(Faulty { save_faults: false }), sha256: "new".into() };
        let err = swap(&mut engine, next, false, None).err().expect("refused");
        assert!(matches!(&err, SwapError::Save { message } if message.contains("restarted")), "{err}");
        assert_eq!(engine.counts().restarts, 1);
        assert_eq!(engine.lifetime(), lifetime + 1);
    }

    #[test]
    fn a_clean_swap_continues_the_lifetime() {
        let mut engine = engine(false);
        let lifetime = engine.lifetime();
        let next = Replacement { strategy: Box::new(Faulty { save_faults: false }), sha256: "new".into() };
        swap(&mut engine, next, false, None).unwrap();
        assert_eq!((engine.counts().restarts, engine.lifetime()), (0, lifetime));
    }
}
