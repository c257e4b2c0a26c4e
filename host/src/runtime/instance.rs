//! One running strategy: a `Store`, its instance, and how it recovers from faults.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use wasmtime::{Store, StoreLimitsBuilder, Trap};

use super::bindings::{self, guest, types as wit};
use super::convert::{self, MAX_ACTIONS_PER_CALL};
use super::host_impl::HostState;
use super::sandbox::{Clock, StoreData};
use super::{EPOCH_TICK, ParamKind, ParamSpec, Plugin, PluginInfo, RuntimeConfig, RuntimeError};
use crate::bar::{Bar, Millis};
use crate::order::{Action, Fill, IntentId};
use crate::strategy::{Fault, Strategy, StrategyError};

/// Limits and recovery policy copied from the runtime config.
#[derive(Debug, Clone)]
struct Policy {
    timeout: Duration,
    deadline_ticks: u64,
    memory_limit: usize,
    log_bytes_per_call: usize,
    max_restarts: u32,
    backoff: Duration,
}

impl Policy {
    fn new(config: &RuntimeConfig) -> Self {
        let ticks = config.call_timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos()).max(1);
        Self {
            timeout: config.call_timeout,
            // One extra tick: the first may come at any moment after arming.
            deadline_ticks: u64::try_from(ticks).unwrap_or(u64::MAX - 1) + 1,
            memory_limit: config.memory_limit,
            log_bytes_per_call: config.log_bytes_per_call,
            max_restarts: config.max_restarts,
            backoff: config.restart_backoff,
        }
    }
}

/// A live instance of a plugin.
struct Live {
    store: Store<StoreData>,
    bindings: bindings::Plugin,
}

fn new_live(pre: &bindings::PluginPre<StoreData>, host: HostState, policy: &Policy) -> wasmtime::Result<Live> {
    let limits = StoreLimitsBuilder::new()
        .memory_size(policy.memory_limit)
        .instances(16)
        .tables(16)
        .memories(4)
        .table_elements(100_000)
        .trap_on_grow_failure(true)
        .build();
    let mut store = Store::new(pre.engine(), StoreData::new(host, limits, policy.log_bytes_per_call));
    store.limiter(|data| &mut data.limits);
    store.epoch_deadline_trap();
    store.set_epoch_deadline(policy.deadline_ticks);
    let bindings = pre.instantiate(&mut store)?;
    Ok(Live { store, bindings })
}

fn classify(error: &wasmtime::Error, policy: &Policy) -> Fault {
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Fault::Deadline { timeout_ms: policy.timeout.as_millis() as u64 },
        _ => Fault::Trap { message: format!("{error:#}") },
    }
}

/// Instantiates a throwaway instance and reads the plugin's self-description.
pub(super) fn describe(
    pre: &bindings::PluginPre<StoreData>,
    label: &str,
    config: &RuntimeConfig,
) -> Result<PluginInfo, RuntimeError> {
    let policy = Policy::new(config);
    let host = HostState {
        strategy: Arc::from(label),
        clock: Clock::virtual_at(0),
        positions: HashMap::new(),
        params: HashMap::new(),
        output: None,
    };
    let start_err =
        |e: wasmtime::Error| RuntimeError::Start { plugin: label.into(), message: classify(&e, &policy).to_string() };
    let mut live = new_live(pre, host, &policy).map_err(start_err)?;
    let info = live.bindings.stratbox_strategy_strategy().call_describe(&mut live.store).map_err(start_err)?;
    let bad = |message: String| RuntimeError::Start { plugin: label.into(), message };
    if info.params.len() > 256 {
        return Err(bad(format!("declares {} parameters; at most 256 are allowed", info.params.len())));
    }
    let mut params: Vec<ParamSpec> = Vec::with_capacity(info.params.len());
    for p in info.params {
        if params.iter().any(|q| q.key == p.key) {
            return Err(bad(format!("declares parameter `{}` twice", p.key)));
        }
        params.push(ParamSpec {
            key: p.key,
            kind: match p.kind {
                wit::ParamKind::Integer => ParamKind::Integer,
                wit::ParamKind::Decimal => ParamKind::Decimal,
                wit::ParamKind::Text => ParamKind::Text,
                wit::ParamKind::Boolean => ParamKind::Boolean,
            },
            default: p.default,
            description: p.description,
        });
    }
    Ok(PluginInfo { name: info.name, version: info.version, description: info.description, params })
}

/// A sandboxed strategy. Faults restart it from its `InstancePre`; after
/// too many it is marked failed and every call returns an error.
pub struct WasmStrategy {
    plugin: Arc<Plugin>,
    policy: Policy,
    /// Parameters as given, passed to `init` on every (re)start.
    params: Vec<wit::Param>,
    resolved: HashMap<String, String>,
    clock: Clock,
    live: Option<Live>,
    restarts: u32,
    failure: Option<String>,
    /// Reused guest bars, so a batch allocates nothing on the host side.
    scratch: Vec<wit::Bar>,
}

impl WasmStrategy {
    pub(super) fn start(
        plugin: Arc<Plugin>,
        params: Vec<(String, String)>,
        resolved: HashMap<String, String>,
        clock: Clock,
        config: &RuntimeConfig,
    ) -> Result<Self, RuntimeError> {
        let mut strategy = Self {
            policy: Policy::new(config),
            params: params.into_iter().map(|(key, value)| wit::Param { key, value }).collect(),
            resolved,
            clock,
            live: None,
            restarts: 0,
            failure: None,
            scratch: Vec::new(),
            plugin,
        };
        let live = strategy.boot(HashMap::new()).map_err(|e| match e {
            BootError::Init(message) => RuntimeError::Init { plugin: strategy.plugin.label.clone(), message },
            BootError::Fault(fault) => {
                RuntimeError::Start { plugin: strategy.plugin.label.clone(), message: fault.to_string() }
            }
        })?;
        strategy.live = Some(live);
        Ok(strategy)
    }

    /// How many times this strategy was restarted after a fault.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// Why the strategy was stopped for good, if it was.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    fn boot(&self, positions: HashMap<Arc<str>, Decimal>) -> Result<Live, BootError> {
        let host = HostState {
            strategy: Arc::from(self.plugin.label.as_str()),
            clock: self.clock.clone(),
            positions,
            params: self.resolved.clone(),
            output: None,
        };
        let mut live =
            new_live(&self.plugin.pre, host, &self.policy).map_err(|e| BootError::Fault(classify(&e, &self.policy)))?;
        let guest = live.bindings.stratbox_strategy_strategy();
        match guest.call_init(&mut live.store, &self.params) {
            Ok(Ok(())) => Ok(live),
            Ok(Err(message)) => Err(BootError::Init(message)),
            Err(e) => Err(BootError::Fault(classify(&e, &self.policy))),
        }
    }

    /// Readies the instance for one call: re-arms the deadline, refills the
    /// output budget.
    fn arm(&mut self) -> Result<&mut Live, StrategyError> {
        let failed =
            |reason: &str| StrategyError::Failed { strategy: self.plugin.label.clone(), reason: reason.into() };
        let live = match (&self.failure, self.live.as_mut()) {
            (Some(reason), _) => return Err(failed(reason)),
            (None, None) => return Err(failed("not running")),
            (None, Some(live)) => live,
        };
        live.store.set_epoch_deadline(self.policy.deadline_ticks);
        live.store.data().output.reset();
        Ok(live)
    }

    /// Drops the faulted store and restarts, or marks the strategy failed.
    fn fault(&mut self, call: &'static str, fault: Fault) -> StrategyError {
        let strategy = self.plugin.label.clone();
        tracing::error!(%strategy, call, %fault, "strategy fault");
        let positions = self.live.take().map(|l| l.store.into_data().host.positions).unwrap_or_default();
        if self.restarts >= self.policy.max_restarts {
            let reason = format!("{fault} in {call}, after {} restarts", self.restarts);
            self.failure = Some(reason.clone());
            return StrategyError::Failed { strategy, reason };
        }
        self.restarts += 1;
        if !self.clock.is_virtual() {
            // Back off in wall time only when trading live; a backtest has
            // no wall time to wait for.
            let delay = self.policy.backoff.saturating_mul(1 << (self.restarts - 1).min(8));
            std::thread::sleep(delay.min(Duration::from_secs(30)));
        }
        match self.boot(positions) {
            Ok(live) => {
                self.live = Some(live);
                tracing::warn!(%strategy, restarts = self.restarts, "strategy restarted");
                StrategyError::Restarted { strategy, call, fault, restarts: self.restarts }
            }
            Err(e) => {
                let reason = format!("{fault} in {call}; restart failed: {e}");
                self.failure = Some(reason.clone());
                StrategyError::Failed { strategy, reason }
            }
        }
    }

    fn settle<R>(&mut self, call: &'static str, result: wasmtime::Result<R>) -> Result<R, StrategyError> {
        result.map_err(|e| {
            let fault = classify(&e, &self.policy);
            self.fault(call, fault)
        })
    }

    fn actions(&mut self, call: &'static str, raw: Vec<wit::Action>) -> Result<Vec<Action>, StrategyError> {
        if raw.len() > MAX_ACTIONS_PER_CALL {
            let message = format!("returned {} actions; at most {MAX_ACTIONS_PER_CALL} are allowed", raw.len());
            return Err(self.fault(call, Fault::Contract { message }));
        }
        let converted: Result<Vec<_>, _> = raw.into_iter().map(convert::action_from_wit).collect();
        converted.map_err(|e| self.fault(call, Fault::Contract { message: e.0 }))
    }

    fn unrepresentable(&self, message: String) -> StrategyError {
        StrategyError::Unrepresentable { strategy: self.plugin.label.clone(), message }
    }
}

enum BootError {
    Init(String),
    Fault(Fault),
}

impl std::fmt::Display for BootError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BootError::Init(message) => write!(f, "init refused: {message}"),
            BootError::Fault(fault) => write!(f, "{fault}"),
        }
    }
}

impl Strategy for WasmStrategy {
    fn name(&self) -> &str {
        &self.plugin.label
    }

    fn on_bars(&mut self, bars: &[Bar]) -> Result<Vec<(usize, Action)>, StrategyError> {
        let Some(last) = bars.last() else { return Ok(Vec::new()) };
        if self.scratch.len() < bars.len() {
            self.scratch.resize_with(bars.len(), convert::empty_bar);
        }
        for (bar, slot) in bars.iter().zip(&mut self.scratch) {
            convert::bar_into_wit(bar, slot)
                .map_err(|e| StrategyError::Unrepresentable { strategy: self.plugin.label.clone(), message: e.0 })?;
        }
        self.clock.set(last.time);
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = self.arm().map(|live| {
            live.bindings.stratbox_strategy_strategy().call_on_bars(&mut live.store, &scratch[..bars.len()])
        });
        std::mem::swap(&mut self.scratch, &mut scratch);
        let raw = self.settle("on-bars", result?)?;
        if raw.len() > MAX_ACTIONS_PER_CALL {
            let message = format!("returned {} actions; at most {MAX_ACTIONS_PER_CALL} are allowed", raw.len());
            return Err(self.fault("on-bars", Fault::Contract { message }));
        }
        let mut out = Vec::with_capacity(raw.len());
        for wit::BarAction { bar, action } in raw {
            let index = bar as usize;
            if index >= bars.len() {
                let message = format!("action refers to bar {index} of a batch of {}", bars.len());
                return Err(self.fault("on-bars", Fault::Contract { message }));
            }
            let action = convert::action_from_wit(action)
                .map_err(|e| self.fault("on-bars", Fault::Contract { message: e.0 }))?;
            out.push((index, action));
        }
        // Actions apply in bar order, whatever order the guest listed them in.
        out.sort_by_key(|(index, _)| *index);
        Ok(out)
    }

    fn on_fill(&mut self, fill: &Fill) -> Result<Vec<Action>, StrategyError> {
        let wit_fill = convert::fill_to_wit(fill).map_err(|e| self.unrepresentable(e.0))?;
        let live = self.arm()?;
        let result = live.bindings.stratbox_strategy_strategy().call_on_fill(&mut live.store, &wit_fill);
        let raw = self.settle("on-fill", result)?;
        self.actions("on-fill", raw)
    }

    fn on_reject(&mut self, intent_id: IntentId, symbol: &str, reason: &str) -> Result<Vec<Action>, StrategyError> {
        let rejection = wit::Rejection { intent: intent_id, symbol: symbol.into(), reason: reason.into() };
        let live = self.arm()?;
        let result = live.bindings.stratbox_strategy_strategy().call_on_reject(&mut live.store, &rejection);
        let raw = self.settle("on-reject", result)?;
        self.actions("on-reject", raw)
    }

    fn on_signal(&mut self, source: &str, payload: &str, time: Millis) -> Result<Vec<Action>, StrategyError> {
        let signal = wit::Signal { source: source.into(), payload: payload.into(), time };
        let live = self.arm()?;
        let result = live.bindings.stratbox_strategy_strategy().call_on_signal(&mut live.store, &signal);
        let raw = self.settle("on-signal", result)?;
        self.actions("on-signal", raw)
    }

    fn save_state(&mut self) -> Result<Vec<u8>, StrategyError> {
        let live = self.arm()?;
        let result = live.bindings.stratbox_strategy_strategy().call_save_state(&mut live.store);
        self.settle("save-state", result)
    }

    fn load_state(&mut self, state: &[u8]) -> Result<(), StrategyError> {
        let live = self.arm()?;
        let result = live.bindings.stratbox_strategy_strategy().call_load_state(&mut live.store, state);
        self.settle("load-state", result)?.map_err(|message| StrategyError::Refused {
            strategy: self.plugin.label.clone(),
            call: "load-state",
            message,
        })
    }

    fn set_position(&mut self, symbol: &Arc<str>, qty: Decimal) {
        if let Some(live) = self.live.as_mut() {
            live.store.data_mut().host.positions.insert(symbol.clone(), qty);
        }
    }
}

/// Keeps `guest` referenced: the generated module holds the export types.
#[allow(dead_code)]
type GuestExports = guest::Guest;
