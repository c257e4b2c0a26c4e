//! Starts a planned engine on its thread and joins it to everything that
//! reaches it: the feed, the control API, the venue desk and the hot-swap
//! watcher. The same at start and for a strategy added while the host runs.

use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::mpsc;

use super::fanout::{FeedTap, Subscription, Taps};
use super::instances::Instances;
use super::lane::Lane;
use super::live::{EngineInput, LiveError};
use super::output::Lines;
use super::plan::{EnginePlanner, PlannedEngine};
use super::routed::Lanes;
use super::status::HostStatus;
use super::swap::{SharedSetup, Watched};
use super::worker::{Outputs, spawn_engine};
use crate::config::{InstancePolicy, StrategyConfig};
use crate::journal::Journal;
use crate::report::Report;
use crate::store::Store;

/// Inputs one engine's queue holds; past that the feed drops its bars.
const QUEUE_DEPTH: usize = 64;

/// Everything a started engine is joined to.
#[derive(Clone)]
pub(super) struct Launcher {
    pub taps: Taps,
    pub instances: Instances,
    /// The venue desk's lanes, on a live venue.
    pub lanes: Option<Lanes>,
    /// The hot-swap watcher, when plugin files are watched.
    pub watch: Option<mpsc::UnboundedSender<Watched>>,
    pub threads: Arc<Mutex<Vec<std::thread::JoinHandle<Report>>>>,
    pub journal: Option<Journal>,
    pub lines: Lines,
    pub status: Arc<RwLock<HostStatus>>,
    pub inbox: Option<Arc<Store>>,
    pub policy: InstancePolicy,
    pub symbol: String,
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Launcher {
    /// Starts `planned` and returns its input queue.
    pub fn launch(&self, planned: PlannedEngine) -> Result<mpsc::Sender<EngineInput>, LiveError> {
        let PlannedEngine { name, engine, persist, sha256, plugin, setup, symbols } = planned;
        let (tx, rx) = mpsc::channel::<EngineInput>(QUEUE_DEPTH);
        let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let retired = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let subscription = Subscription::new(&symbols);
        let outputs = Outputs {
            subscription: subscription.clone(),
            journal: self.journal.clone(),
            lines: self.lines.clone(),
            status: self.status.clone(),
            inbox: self.inbox.clone(),
            dropped: dropped.clone(),
            retired: retired.clone(),
            policy: self.policy,
            metrics: self.metrics.clone(),
        };
        let thread = spawn_engine(name.clone(), self.symbol.clone(), engine, sha256.clone(), rx, persist, outputs)?;
        if let Ok(mut threads) = self.threads.lock() {
            threads.push(thread);
        }
        if let Ok(mut taps) = self.taps.write() {
            taps.push(FeedTap { input: tx.clone(), dropped, retired, symbols: subscription.clone() });
        }
        let setup: SharedSetup = Arc::new(RwLock::new(setup));
        if let Some(lanes) = &self.lanes
            && let Ok(mut lanes) = lanes.write()
        {
            lanes.insert(name.clone(), Lane::new(tx.clone()));
        }
        if let Some(watch) = &self.watch
            && is_plugin_file(&plugin)
        {
            let _ = watch.send(Watched::new(name.clone(), plugin.into(), setup.clone(), tx.clone(), sha256));
        }
        self.instances.insert(&name, tx.clone(), setup, subscription);
        Ok(tx)
    }

    /// Lets go of every engine, so each ends once its queue is drained.
    pub fn release(&self) {
        self.instances.clear();
        if let Ok(mut taps) = self.taps.write() {
            taps.clear();
        }
        if let Some(lanes) = &self.lanes
            && let Ok(mut lanes) = lanes.write()
        {
            lanes.clear();
        }
    }

    /// The engines started so far, to be joined.
    pub fn threads(&self) -> Vec<std::thread::JoinHandle<Report>> {
        self.threads.lock().map(|mut t| std::mem::take(&mut *t)).unwrap_or_default()
    }
}

/// Plans and launches strategies while the host runs.
#[derive(Clone)]
pub(super) struct Starter {
    pub planner: EnginePlanner,
    pub launcher: Launcher,
}

impl Starter {
    /// Starts `spec`'s strategy, unless an instance of its name runs.
    pub fn add(&self, spec: &StrategyConfig) -> Result<String, LiveError> {
        let planned = self.planner.plan(spec)?;
        if self.launcher.instances.contains(&planned.name) {
            return Err(LiveError::Setup { message: format!("an instance named `{}` already runs", planned.name) });
        }
        let name = planned.name.clone();
        self.launcher.launch(planned)?;
        Ok(name)
    }
}

/// Whether a `[[strategy]] plugin` names a file (watched for hot swaps)
/// rather than a bundled plugin.
pub(super) fn is_plugin_file(plugin: &str) -> bool {
    plugin.ends_with(".wasm") || plugin.contains(['/', '\\'])
}
