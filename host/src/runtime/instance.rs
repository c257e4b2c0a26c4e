//! One running strategy: a `Store`, the component in it, the strategy
//! instance (a resource) it made, and how it recovers from faults.

use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use wasmtime::component::ResourceAny;
use wasmtime::{Store, Trap};

use super::bindings::{self, guest, types as wit};
use super::budget::{Budget, LogRate, thread_cpu_time};
use super::convert::{self, Columns, NotifyBudget};
use super::host_impl::HostState;
use super::sandbox::{Clock, OverBudget, StoreData};
use super::{EPOCH_TICK, ParamSpec, ParamValue, Plugin, PluginInfo, RuntimeConfig, RuntimeError};
use crate::bar::{Bar, Millis};
use crate::order::{Action, Fill};
use crate::rate_limit::RateLimiter;
use crate::strategy::{Account, Breaches, Fault, Rejection, Strategy, StrategyError};

/// One instance's budget and recovery policy.
#[derive(Debug, Clone)]
struct Policy {
    budget: Budget,
    deadline_ticks: u64,
    max_restarts: u32,
    fault_window: Duration,
    backoff: Duration,
    /// See [`RuntimeConfig::unmetered`].
    unmetered: bool,
}

impl Policy {
    fn new(config: &RuntimeConfig, budget: &Budget) -> Self {
        let ticks = budget.call_timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos()).max(1);
        Self {
            budget: budget.clone(),
            // One extra tick: the first may come at any moment after arming.
            deadline_ticks: u64::try_from(ticks).unwrap_or(u64::MAX - 1) + 1,
            max_restarts: config.max_restarts,
            fault_window: config.fault_window,
            backoff: config.restart_backoff,
            unmetered: config.unmetered,
        }
    }
}

/// What wasmtime says when a guest hands over more than its hostcall fuel
/// (the type is private to wasmtime; `tests/sandbox.rs` pins the text).
const FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

/// What wasmtime says when a store holds more handles than allowed.
const HANDLES_EXHAUSTED: &str = "store handle limit exceeded";

/// A component instantiated in its own store.
struct Component {
    store: Store<StoreData>,
    bindings: bindings::Plugin,
}

impl Component {
    fn new(
        pre: &bindings::PluginPre<StoreData>,
        host: HostState,
        policy: &Policy,
        log_rate: Option<Arc<LogRate>>,
    ) -> wasmtime::Result<Self> {
        let mut store = Store::new(pre.engine(), StoreData::new(host, &policy.budget, log_rate));
        if policy.unmetered {
            store.set_hostcall_fuel(usize::MAX);
        } else {
            store.limiter(|data| &mut data.limits);
            store.set_max_component_handles(policy.budget.handles);
            store.set_hostcall_fuel(policy.budget.bytes_per_call);
            store.epoch_deadline_trap();
            store.set_epoch_deadline(policy.deadline_ticks);
        }
        let bindings = pre.instantiate(&mut store)?;
        Ok(Self { store, bindings })
    }
}

/// The exported `instance` resource's functions.
fn guest(bindings: &bindings::Plugin) -> guest::GuestInstance<'_> {
    bindings.stratbox_strategy_strategy().instance()
}

/// A live strategy instance: the resource, in the store that holds it.
struct Live {
    component: Component,
    instance: ResourceAny,
}

/// What a failed call amounts to, briefly: the trap (not wasmtime's
/// backtrace of it) and what the guest wrote to stderr during the call,
/// where a Rust guest's panic message goes.
fn classify(error: &wasmtime::Error, policy: &Policy, last_words: Option<String>) -> Fault {
    if let Some(over) = error.downcast_ref::<OverBudget>() {
        return Fault::Memory { limit_mib: over.limit >> 20 };
    }
    let what = match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => {
            return Fault::Deadline { timeout_ms: policy.budget.call_timeout.as_millis() as u64 };
        }
        Some(Trap::StackOverflow) => return Fault::Stack,
        Some(trap) => trap.to_string(),
        None if error.root_cause().to_string().contains(FUEL_EXHAUSTED) => {
            return Fault::Output { limit: policy.budget.bytes_per_call };
        }
        None if error.root_cause().to_string().contains(HANDLES_EXHAUSTED) => {
            return Fault::Handles { limit: policy.budget.handles };
        }
        None => error.root_cause().to_string(),
    };
    let what = convert::bounded(what.lines().next().unwrap_or_default());
    let message = match last_words {
        Some(words) => format!("{what}; the guest wrote: {words}"),
        None => what,
    };
    Fault::Trap { message }
}

/// What the guest in `live` wrote to stderr in the current call.
fn last_words(live: Option<&Live>) -> Option<String> {
    live.and_then(|l| l.component.store.data().output.last_words())
}

/// Describes a strategy's refusal to start, e.g. `invalid parameter fast: …`.
fn refusal(error: wit::Error) -> String {
    let text = match error {
        wit::Error::InvalidParam(wit::InvalidParam { key, message }) => format!("invalid parameter `{key}`: {message}"),
        wit::Error::IncompatibleState(message) => format!("incompatible state: {message}"),
        wit::Error::Other(message) => message,
    };
    convert::bounded(&text)
}

/// Instantiates the component and reads its self-description; needs no
/// strategy instance.
pub(super) fn describe(
    pre: &bindings::PluginPre<StoreData>,
    label: &str,
    config: &RuntimeConfig,
) -> Result<PluginInfo, RuntimeError> {
    let policy = Policy::new(config, &config.budget);
    let host = HostState::new(Arc::from(label), Clock::virtual_at(0));
    let start_err = |e: wasmtime::Error, words| RuntimeError::Start {
        plugin: label.into(),
        message: classify(&e, &policy, words).to_string(),
    };
    let mut component = Component::new(pre, host, &policy, None).map_err(|e| start_err(e, None))?;
    let info = component
        .bindings
        .stratbox_strategy_strategy()
        .call_describe(&mut component.store)
        .map_err(|e| start_err(e, component.store.data().output.last_words()))?;
    let bad = |message: String| RuntimeError::Start { plugin: label.into(), message };
    if info.params.len() > 256 {
        return Err(bad(format!("declares {} parameters; at most 256 are allowed", info.params.len())));
    }
    let mut params: Vec<ParamSpec> = Vec::with_capacity(info.params.len());
    for p in info.params {
        if params.iter().any(|q| q.key == p.key) {
            return Err(bad(format!("declares parameter `{}` twice", p.key)));
        }
        let default = convert::param_from_wit(p.default)
            .map_err(|e| bad(format!("parameter `{}` has an invalid default: {e}", p.key)))?;
        if p.key.is_empty() || p.key.len() > 64 || p.key.chars().any(char::is_control) {
            return Err(bad(format!("declares a parameter named {:?}", convert::bounded(&p.key))));
        }
        let description = convert::bounded(&p.description);
        params.push(ParamSpec { key: p.key, kind: default.kind(), default, description });
    }
    if info.name.is_empty() || info.name.len() > 64 || info.name.chars().any(char::is_control) {
        return Err(bad(format!("calls itself {:?}; a name is 1 to 64 printable bytes", convert::bounded(&info.name))));
    }
    Ok(PluginInfo {
        name: info.name,
        version: convert::bounded(&info.version),
        description: convert::bounded(&info.description),
        params,
    })
}

/// A sandboxed strategy instance. A fault drops its store and restores the
/// last state it saved into a fresh one (or, with none, creates it anew);
/// after too many faults it is marked failed and every call returns an error.
pub struct WasmStrategy {
    plugin: Arc<Plugin>,
    policy: Policy,
    /// Every declared parameter, passed to `create` and `restore`.
    params: Vec<wit::Param>,
    clock: Clock,
    live: Option<Live>,
    restarts: u32,
    /// When the faults within the fault window happened.
    recent_faults: std::collections::VecDeque<std::time::Instant>,
    failure: Option<String>,
    /// What the instance last saved or was restored from; a restart
    /// restores it.
    last_state: Option<Vec<u8>>,
    /// Reused bar columns, so a batch allocates nothing on the host side.
    columns: Columns,
    /// CPU time per minute, in host mode.
    cpu: Option<RateLimiter>,
    /// The thread's CPU time when the current call began.
    call_began: Duration,
    /// Log and notification bytes per minute, in host mode.
    log_rate: Option<Arc<LogRate>>,
    breaches: Breaches,
}

impl WasmStrategy {
    pub(super) fn start(
        plugin: Arc<Plugin>,
        params: Vec<(String, ParamValue)>,
        clock: Clock,
        config: &RuntimeConfig,
        budget: &Budget,
    ) -> Result<Self, RuntimeError> {
        let label = plugin.label.clone();
        let params = params
            .into_iter()
            .map(|(key, value)| {
                convert::param_to_wit(&value)
                    .map(|value| wit::Param { key: key.clone(), value })
                    .map_err(|e| RuntimeError::Param { plugin: label.clone(), message: format!("`{key}`: {e}") })
            })
            .collect::<Result<_, _>>()?;
        let rates = budget.per_minute;
        let mut strategy = Self {
            policy: Policy::new(config, budget),
            params,
            clock,
            live: None,
            restarts: 0,
            recent_faults: std::collections::VecDeque::new(),
            failure: None,
            last_state: None,
            columns: Columns::default(),
            cpu: rates.map(|r| RateLimiter::per_minute(r.cpu.as_micros().try_into().unwrap_or(u64::MAX))),
            call_began: Duration::ZERO,
            log_rate: rates.map(|r| Arc::new(LogRate::per_minute(r.log_bytes))),
            breaches: Breaches::default(),
            plugin,
        };
        let live = strategy.boot(None, Vec::new()).map_err(|e| match e {
            BootError::Refused(message) => RuntimeError::Init { plugin: label.clone(), message },
            BootError::Fault(fault) => RuntimeError::Start { plugin: label.clone(), message: fault.to_string() },
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

    /// Starts a store and, in it, an instance: restored from `state`, or
    /// created afresh.
    fn boot(&self, state: Option<&[u8]>, positions: Vec<(Arc<str>, Decimal)>) -> Result<Live, BootError> {
        let mut host = HostState::new(Arc::from(self.plugin.label.as_str()), self.clock.clone());
        host.positions = positions;
        let fault = |e: wasmtime::Error, words| BootError::Fault(classify(&e, &self.policy, words));
        let mut component =
            Component::new(&self.plugin.pre, host, &self.policy, self.log_rate.clone()).map_err(|e| fault(e, None))?;
        let made = match state {
            Some(state) => guest(&component.bindings).call_restore(&mut component.store, &self.params, state),
            None => guest(&component.bindings).call_create(&mut component.store, &self.params),
        };
        let made = made.map_err(|e| fault(e, component.store.data().output.last_words()))?;
        match made {
            Ok(instance) => Ok(Live { component, instance }),
            Err(error) => Err(BootError::Refused(refusal(error))),
        }
    }

    /// Readies the instance for one call: re-arms the deadline, refills the
    /// output budget, notes the CPU time.
    fn arm(&mut self) -> Result<&mut Live, StrategyError> {
        if self.cpu.is_some() {
            self.call_began = thread_cpu_time();
        }
        let failed =
            |reason: &str| StrategyError::Failed { strategy: self.plugin.label.clone(), reason: reason.into() };
        let live = match (&self.failure, self.live.as_mut()) {
            (Some(reason), _) => return Err(failed(reason)),
            (None, None) => return Err(failed("not running")),
            (None, Some(live)) => live,
        };
        if !self.policy.unmetered {
            live.component.store.set_epoch_deadline(self.policy.deadline_ticks);
            live.component.store.set_hostcall_fuel(self.policy.budget.bytes_per_call);
        }
        live.component.store.data().output.reset();
        Ok(live)
    }

    /// Drops the faulted store and restarts, or marks the strategy failed.
    fn fault(&mut self, call: &'static str, fault: Fault) -> StrategyError {
        let strategy = self.plugin.label.clone();
        fault.count_in(&mut self.breaches);
        tracing::error!(%strategy, call, %fault, "strategy fault");
        let host = self.live.take().map(|l| l.component.store.into_data().host);
        let positions = host.map(|h| h.positions).unwrap_or_default();
        // The circuit breaker: faults within the window, this one included.
        let now = std::time::Instant::now();
        let window = self.policy.fault_window;
        self.recent_faults.retain(|at| now.duration_since(*at) < window);
        self.recent_faults.push_back(now);
        if self.recent_faults.len() > self.policy.max_restarts as usize {
            let (faults, secs) = (self.recent_faults.len(), window.as_secs());
            let reason = format!("{fault} in {call}; quarantined after {faults} faults within {secs} s");
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
        let restored = match self.last_state.as_deref() {
            Some(state) => self.boot(Some(state), positions.clone()),
            None => Err(BootError::Refused("no saved state".into())),
        };
        let (booted, fresh) = match restored {
            Ok(live) => (Ok(live), false),
            Err(BootError::Refused(why)) => {
                if self.last_state.is_some() {
                    tracing::warn!(%strategy, %why, "saved state refused on restart; starting afresh");
                }
                (self.boot(None, positions), true)
            }
            Err(e @ BootError::Fault(_)) => (Err(e), false),
        };
        match booted {
            Ok(live) => {
                self.live = Some(live);
                tracing::warn!(%strategy, restarts = self.restarts, fresh, "strategy restarted");
                StrategyError::Restarted { strategy, call, fault, restarts: self.restarts, fresh }
            }
            Err(e) => {
                let reason = format!("{fault} in {call}; restart failed: {e}");
                self.failure = Some(reason.clone());
                StrategyError::Failed { strategy, reason }
            }
        }
    }

    fn charge_cpu(&mut self) {
        if let Some(cpu) = &self.cpu {
            let used = thread_cpu_time().saturating_sub(self.call_began);
            cpu.charge(used.as_micros().try_into().unwrap_or(u64::MAX));
        }
    }

    /// Charges the call's CPU time and turns a failed call into a fault.
    fn settle<R>(&mut self, call: &'static str, result: wasmtime::Result<R>) -> Result<R, StrategyError> {
        self.charge_cpu();
        result.map_err(|e| {
            let fault = classify(&e, &self.policy, last_words(self.live.as_ref()));
            self.fault(call, fault)
        })
    }

    fn actions(&mut self, call: &'static str, raw: Vec<wit::Action>) -> Result<Vec<Action>, StrategyError> {
        self.check_count(call, raw.len())?;
        let converted: Result<Vec<_>, _> = raw.into_iter().map(convert::action_from_wit).collect();
        let mut actions = converted.map_err(|e| self.fault(call, Fault::Contract { message: e.0 }))?;
        let mut budget = self.notify_budget();
        actions.retain(|action| budget.admit(action));
        self.report_dropped(call, &budget);
        Ok(actions)
    }

    fn check_count(&mut self, call: &'static str, count: usize) -> Result<(), StrategyError> {
        let limit = self.policy.budget.actions_per_call;
        if count > limit {
            return Err(self.fault(call, Fault::Actions { count, limit }));
        }
        Ok(())
    }

    /// The notifications one call may make: a per-call cap, and in host mode
    /// the log bytes per minute.
    fn notify_budget(&self) -> NotifyBudget {
        NotifyBudget::new(self.log_rate.clone())
    }

    fn report_dropped(&self, call: &'static str, budget: &NotifyBudget) {
        if budget.dropped > 0 {
            let (strategy, dropped) = (&self.plugin.label, budget.dropped);
            tracing::warn!(%strategy, call, dropped, "notifications over the per-call budget were dropped");
        }
    }

    fn unrepresentable(&self, message: String) -> StrategyError {
        StrategyError::Unrepresentable { strategy: self.plugin.label.clone(), message }
    }
}

enum BootError {
    /// The strategy refused its parameters or state.
    Refused(String),
    Fault(Fault),
}

impl std::fmt::Display for BootError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BootError::Refused(message) => write!(f, "refused to start: {message}"),
            BootError::Fault(fault) => write!(f, "{fault}"),
        }
    }
}

impl Strategy for WasmStrategy {
    fn name(&self) -> &str {
        &self.plugin.label
    }

    fn plugin(&self) -> Option<(&str, &str)> {
        Some((&self.plugin.info.name, &self.plugin.info.version))
    }

    fn on_bars(&mut self, bars: &[Bar]) -> Result<Vec<(usize, Action)>, StrategyError> {
        let Some(last) = bars.last() else { return Ok(Vec::new()) };
        if let Some(cpu) = &self.cpu
            && !cpu.has_room()
        {
            // Over its CPU time for the minute: it sits this batch out, and
            // falls behind alone.
            self.breaches.cpu += 1;
            if self.breaches.cpu.is_power_of_two() {
                let (strategy, skipped) = (&self.plugin.label, self.breaches.cpu);
                tracing::warn!(%strategy, skipped, "strategy used its CPU time for the minute; bars skipped");
            }
            return Ok(Vec::new());
        }
        let mut columns = std::mem::take(&mut self.columns);
        if let Err(e) = columns.fill(bars) {
            self.columns = columns;
            return Err(self.unrepresentable(e.0));
        }
        self.clock.set(last.time);
        let result = self.arm().map(|live| {
            guest(&live.component.bindings).call_on_bars(&mut live.component.store, live.instance, &columns.bars)
        });
        self.columns = columns;
        let raw = self.settle("on-bars", result?)?;
        self.check_count("on-bars", raw.len())?;
        let mut out = Vec::with_capacity(raw.len());
        let mut budget = self.notify_budget();
        for wit::BarAction { bar, action } in raw {
            let index = bar as usize;
            if index >= bars.len() {
                let message = format!("action refers to bar {index} of a batch of {}", bars.len());
                return Err(self.fault("on-bars", Fault::Contract { message }));
            }
            let action = convert::action_from_wit(action)
                .map_err(|e| self.fault("on-bars", Fault::Contract { message: e.0 }))?;
            if budget.admit(&action) {
                out.push((index, action));
            }
        }
        self.report_dropped("on-bars", &budget);
        // Actions apply in bar order, whatever order the guest listed them in.
        out.sort_by_key(|(index, _)| *index);
        Ok(out)
    }

    fn on_fills(&mut self, fills: &[Fill]) -> Result<Vec<Action>, StrategyError> {
        let wit_fills: Vec<wit::Fill> =
            fills.iter().map(convert::fill_to_wit).collect::<Result<_, _>>().map_err(|e| self.unrepresentable(e.0))?;
        let live = self.arm()?;
        let result =
            guest(&live.component.bindings).call_on_fills(&mut live.component.store, live.instance, &wit_fills);
        let raw = self.settle("on-fills", result)?;
        self.actions("on-fills", raw)
    }

    fn on_rejects(&mut self, rejections: &[Rejection]) -> Result<Vec<Action>, StrategyError> {
        let wit_rejections: Vec<wit::Rejection> = rejections
            .iter()
            .map(|r| wit::Rejection { order: r.order, symbol: r.symbol.to_string(), reason: r.reason.clone() })
            .collect();
        let live = self.arm()?;
        let result =
            guest(&live.component.bindings).call_on_rejects(&mut live.component.store, live.instance, &wit_rejections);
        let raw = self.settle("on-rejects", result)?;
        self.actions("on-rejects", raw)
    }

    fn on_signal(&mut self, source: &str, payload: &str, time: Millis) -> Result<Vec<Action>, StrategyError> {
        let signal = wit::Signal { source: source.into(), payload: payload.into(), time };
        let live = self.arm()?;
        let result = guest(&live.component.bindings).call_on_signal(&mut live.component.store, live.instance, &signal);
        let raw = self.settle("on-signal", result)?;
        self.actions("on-signal", raw)
    }

    fn save_state(&mut self) -> Result<Vec<u8>, StrategyError> {
        let limit = self.policy.budget.state_bytes;
        let live = self.arm()?;
        // The state is lifted within its own cap, so an oversized one is
        // refused before the host allocates it.
        live.component.store.set_hostcall_fuel(limit.saturating_add(64));
        let result = guest(&live.component.bindings).call_save_state(&mut live.component.store, live.instance);
        let state = match result {
            Err(e) if e.root_cause().to_string().contains(FUEL_EXHAUSTED) => {
                self.charge_cpu();
                return Err(self.fault("save-state", Fault::State { limit }));
            }
            result => self.settle("save-state", result)?,
        };
        if state.len() > limit {
            return Err(self.fault("save-state", Fault::State { limit }));
        }
        self.last_state = Some(state.clone());
        Ok(state)
    }

    fn load_state(&mut self, state: &[u8]) -> Result<(), StrategyError> {
        let params = std::mem::take(&mut self.params);
        let live = self.arm()?;
        let result = guest(&live.component.bindings).call_restore(&mut live.component.store, &params, state);
        self.params = params;
        let made = self.settle("restore", result)?;
        let instance = made.map_err(|error| StrategyError::Refused {
            strategy: self.plugin.label.clone(),
            call: "restore",
            message: refusal(error),
        })?;
        let Some(live) = self.live.as_mut() else {
            return Err(StrategyError::Failed { strategy: self.plugin.label.clone(), reason: "not running".into() });
        };
        let old = std::mem::replace(&mut live.instance, instance);
        let dropped = old.resource_drop(&mut live.component.store);
        self.settle("instance drop", dropped)?;
        self.last_state = Some(state.to_vec());
        Ok(())
    }

    fn set_position(&mut self, symbol: &Arc<str>, qty: Decimal) {
        if let Some(live) = self.live.as_mut() {
            live.component.store.data_mut().host.set_position(symbol, qty);
        }
    }

    fn set_account(&mut self, account: Account) {
        if let Some(live) = self.live.as_mut() {
            live.component.store.data_mut().host.account = account;
        }
    }

    fn revive(&mut self) -> Result<bool, StrategyError> {
        if self.failure.is_none() && self.live.is_some() {
            return Ok(false);
        }
        let positions = self.live.take().map(|l| l.component.store.into_data().host.positions).unwrap_or_default();
        let restored = match self.last_state.clone() {
            Some(state) => self.boot(Some(&state), positions.clone()).map(|live| (live, false)),
            None => Err(BootError::Refused("no saved state".into())),
        };
        let booted = match restored {
            Ok(booted) => Ok(booted),
            Err(BootError::Refused(_)) => self.boot(None, positions).map(|live| (live, true)),
            Err(e) => Err(e),
        };
        let (live, fresh) = booted.map_err(|e| StrategyError::Failed {
            strategy: self.plugin.label.clone(),
            reason: format!("release failed: {e}"),
        })?;
        self.live = Some(live);
        self.failure = None;
        self.recent_faults.clear();
        tracing::info!(strategy = %self.plugin.label, fresh, "strategy released");
        Ok(fresh)
    }

    fn breaches(&self) -> Breaches {
        let log = self.log_rate.as_ref().map_or(0, |rate| rate.flooded());
        Breaches { log, ..self.breaches }
    }
}

#[cfg(test)]
mod tests;
