//! The event engine: bars → strategy → risk → broker → fills → portfolio.
//!
//! One engine drives one strategy. Bars arrive in batches; the strategy sees
//! a whole batch at once and tags each action with the bar that caused it,
//! and the engine then replays the batch bar by bar: the broker matches open
//! orders against the bar, the portfolio marks to its close, and the actions
//! of that bar pass the risk checks. Fills and rejections reach the strategy
//! after the batch, so results do not depend on the batch size as long as a
//! strategy tracks its own pending orders (as the contract asks).

mod dropin;
mod event_text;
mod fanout;
mod instances;
mod lane;
mod latency;
mod launcher;
mod ledger;
mod live;
mod output;
mod plan;
mod probation;
mod quarantine;
mod routed;
mod status;
mod swap;
mod worker;

pub use self::dropin::{DropInError, Placed, PluginsConfig};
pub use self::instances::Instances;
pub use self::lane::Lane;
pub use self::ledger::{PaperLedger, SharedLedger};
pub use self::live::{EngineInput, LiveError, RunOptions, run_host};
pub use self::probation::PROBATION_INPUTS;
pub use self::routed::{RouteRequest, RoutedExecution, VenueDesk};
pub use self::status::{HostStatus, LastError, PluginName, StrategyStatus};
pub use self::swap::{Replacement, SwapError};

use std::collections::HashSet;
use std::sync::Arc;

use rust_decimal::Decimal;

use crate::bar::{Bar, Millis};
use crate::broker::{Execution, ExecutionEvent};
use crate::order::{Action, Fill, IntentId, Level, Order, OrderIntent, OrderRef};
use crate::portfolio::Portfolio;
use crate::rate_limit::RateLimiter;
use crate::report::{FillRecord, Report};
use crate::risk::{RiskGate, RiskLimits};
use crate::strategy::{Account, Breaches, Rejection, Strategy, StrategyError};

use self::probation::Heard;

/// Rounds of fill/rejection feedback allowed after one batch, so two
/// callbacks cannot ping-pong forever.
const MAX_FEEDBACK_ROUNDS: usize = 16;

/// Largest quantity one order may have; with prices capped at 1e15 this
/// keeps every exact sum in the portfolio far from overflow.
pub const MAX_ORDER_QTY: Decimal = Decimal::from_parts(0xd4a5_1000, 0xe8, 0, false, 0); // 1e12

/// Something that happened, for printing, logging and notifications.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    OrderPlaced {
        intent_id: IntentId,
        intent: OrderIntent,
        time: Millis,
    },
    Rejected {
        intent_id: IntentId,
        symbol: Arc<str>,
        reason: String,
        time: Millis,
    },
    Filled {
        fill: Fill,
        position: Decimal,
    },
    Canceled {
        intent_id: IntentId,
        time: Millis,
    },
    Notified {
        level: Level,
        message: String,
        time: Millis,
    },
    StrategyRestarted {
        error: String,
    },
    /// Profit after a fill or periodically.
    Pnl {
        time: Millis,
        realized: Decimal,
        unrealized: Decimal,
        equity: Decimal,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Strategy(#[from] StrategyError),
}

/// Running totals of an engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub bars: u64,
    pub orders: u64,
    pub rejected: u64,
    pub fills: u64,
    pub restarts: u32,
}

/// What quarantining a strategy did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quarantined {
    /// Open orders of its own that were canceled.
    pub canceled: usize,
    /// Positions a closing order was placed for.
    pub closing: usize,
}

pub struct Engine {
    strategy: Box<dyn Strategy>,
    broker: Box<dyn Execution>,
    risk: RiskLimits,
    /// A live venue's trading state, set by the reconciler.
    gate: Option<(RiskGate, &'static str)>,
    /// The strategy's orders per minute, in host mode (the meter and its
    /// rate), and how many orders it was refused.
    order_rate: Option<(RateLimiter, u64)>,
    orders_over_rate: u64,
    portfolio: Portfolio,
    /// The running instance's lifetime (see [`OrderRef`]).
    lifetime: u32,
    /// Order ids the running instance has used in its lifetime.
    used_ids: HashSet<u64>,
    /// The last id given to an external order.
    last_external: u64,
    bars: u64,
    orders: u64,
    rejected: u64,
    restarts: u32,
    fills: Vec<Fill>,
    last_time: Millis,
    /// Feedback for the strategy, delivered after each batch.
    pending_fills: Vec<Fill>,
    pending_rejects: Vec<(IntentId, Arc<str>, String)>,
    execution_events: Vec<ExecutionEvent>,
    events: Box<dyn FnMut(Event) + Send>,
    /// What a swapped-in build on probation was told (see `probation`).
    transcript: Option<probation::Transcript>,
    /// Equity and exposure bar by bar, for a backtest's report.
    curve: Option<crate::report::Curve>,
    /// Where each call into the strategy is timed, and under which name.
    call_metrics: Option<(Arc<crate::metrics::Metrics>, String)>,
}

impl Engine {
    pub fn new(
        strategy: Box<dyn Strategy>,
        broker: Box<dyn Execution>,
        risk: RiskLimits,
        starting_cash: Decimal,
    ) -> Self {
        Self {
            strategy,
            broker,
            risk,
            gate: None,
            order_rate: None,
            orders_over_rate: 0,
            portfolio: Portfolio::new(starting_cash),
            lifetime: 1,
            used_ids: HashSet::new(),
            last_external: 0,
            bars: 0,
            orders: 0,
            rejected: 0,
            restarts: 0,
            fills: Vec::new(),
            last_time: Millis::MIN,
            pending_fills: Vec::new(),
            pending_rejects: Vec::new(),
            execution_events: Vec::new(),
            events: Box::new(|_| {}),
            transcript: None,
            curve: None,
            call_metrics: None,
        }
    }

    /// Obeys `gate`'s state for `venue` (halted, reducing) on every order.
    pub fn with_gate(mut self, gate: RiskGate, venue: &'static str) -> Self {
        self.gate = Some((gate, venue));
        self
    }

    /// Refuses the strategy's orders past `per_minute` in any minute (orders
    /// from outside it, webhooks, are not counted).
    pub fn with_order_rate(mut self, per_minute: u64) -> Self {
        self.order_rate = Some((RateLimiter::per_minute(per_minute), per_minute));
        self
    }

    /// Times every call into the strategy into `metrics`, as `instance`.
    pub fn with_call_metrics(mut self, metrics: Arc<crate::metrics::Metrics>, instance: &str) -> Self {
        self.call_metrics = Some((metrics, instance.to_string()));
        self
    }

    /// Sends every event to `sink` as it happens.
    pub fn with_events(mut self, sink: impl FnMut(Event) + Send + 'static) -> Self {
        self.events = Box::new(sink);
        self
    }

    pub fn portfolio(&self) -> &Portfolio {
        &self.portfolio
    }

    /// The running plugin's name and version.
    pub fn plugin(&self) -> Option<(&str, &str)> {
        self.strategy.plugin()
    }

    pub fn strategy_mut(&mut self) -> &mut dyn Strategy {
        self.strategy.as_mut()
    }

    /// Records equity and exposure at every bar from now on, for
    /// [`Engine::curve`].
    pub fn record_curve(&mut self) {
        self.curve.get_or_insert_with(crate::report::Curve::new);
    }

    pub fn curve(&self) -> Option<&crate::report::Curve> {
        self.curve.as_ref()
    }

    fn observe(&mut self, bar: &Bar) {
        if let Some(curve) = &mut self.curve {
            curve.observe(bar, self.portfolio.equity(), self.portfolio.is_exposed());
        }
    }

    /// Runs `bars` through the engine in batches of `batch`.
    pub fn run(&mut self, bars: &[Bar], batch: usize) -> Result<(), EngineError> {
        for chunk in bars.chunks(batch.max(1)) {
            self.on_bars(chunk)?;
        }
        Ok(())
    }

    /// Processes one batch of bars in time order.
    pub fn on_bars(&mut self, bars: &[Bar]) -> Result<(), EngineError> {
        let Some(last) = bars.last() else { return Ok(()) };
        let heard = || Heard::Bars { bars: bars.to_vec() };
        let actions = self.call_heard("on-bars", heard, |s| s.on_bars(bars))?.unwrap_or_default();
        let mut actions = actions.into_iter().peekable();
        for (index, bar) in bars.iter().enumerate() {
            self.last_time = bar.time;
            self.match_orders(bar);
            self.portfolio.mark(bar);
            self.observe(bar);
            while let Some((_, action)) = actions.next_if(|(i, _)| *i == index) {
                self.apply(action, bar.time);
            }
        }
        self.bars += bars.len() as u64;
        self.last_time = last.time;
        self.feedback()
    }

    /// Plays bars past a strategy that is not being called (paused or
    /// quarantined): its orders still fill and the portfolio follows. What
    /// it would be told waits for [`Engine::deliver_feedback`], unless
    /// `forget` (a quarantined strategy hears nothing).
    pub fn on_bars_unattended(&mut self, bars: &[Bar], forget: bool) {
        for bar in bars {
            self.last_time = bar.time;
            self.match_orders(bar);
            self.portfolio.mark(bar);
            self.observe(bar);
        }
        self.bars += bars.len() as u64;
        if forget {
            self.pending_fills.clear();
            self.pending_rejects.clear();
        }
    }

    /// Tells the strategy what happened while it was not being called.
    pub fn deliver_feedback(&mut self) -> Result<(), EngineError> {
        self.feedback()
    }

    /// Releases a quarantined strategy (see [`Strategy::revive`]).
    pub fn revive(&mut self) -> Result<(), EngineError> {
        if self.strategy.revive()? {
            self.new_lifetime();
        }
        Ok(())
    }

    /// Orders still open at the broker, the strategy's and external ones.
    pub fn open_orders(&self) -> usize {
        self.broker.open_orders().len()
    }

    /// The open orders in full, where the execution keeps them (paper).
    pub fn working_orders(&self) -> Vec<Order> {
        self.broker.working()
    }

    /// Every fill so far, in order.
    pub fn fills(&self) -> &[Fill] {
        &self.fills
    }

    /// Delivers an external signal to the strategy and applies its actions.
    pub fn on_signal(&mut self, source: &str, payload: &str, time: Millis) -> Result<(), EngineError> {
        let heard = || Heard::Signal { source: source.into(), payload: payload.into(), time };
        let actions = self.call_heard("on-signal", heard, |s| s.on_signal(source, payload, time))?.unwrap_or_default();
        for action in actions {
            self.apply(action, time);
        }
        self.feedback()
    }

    /// The running instance's state. A fault in `save-state` restarts the
    /// instance like a fault in any call, counted and reported (and a fresh
    /// instance starts a new lifetime), and yields `None`.
    pub fn save_state(&mut self) -> Result<Option<Vec<u8>>, EngineError> {
        self.call("save-state", |s| s.save_state())
    }

    /// [`Engine::call`] for an input the strategy is told: kept in the
    /// transcript while a new build is on probation, with whether it faulted.
    fn call_heard<R>(
        &mut self,
        callback: &'static str,
        heard: impl FnOnce() -> Heard,
        f: impl FnOnce(&mut dyn Strategy) -> Result<R, StrategyError>,
    ) -> Result<Option<R>, EngineError> {
        if let Some(transcript) = &mut self.transcript {
            transcript.hear(heard());
        }
        let result = self.call(callback, f);
        if !matches!(result, Ok(Some(_)))
            && let Some(transcript) = &mut self.transcript
        {
            transcript.faulted();
        }
        result
    }

    /// Calls the strategy (its `callback`, as metrics name it); a restart
    /// is reported and yields `None`.
    fn call<R>(
        &mut self,
        callback: &'static str,
        f: impl FnOnce(&mut dyn Strategy) -> Result<R, StrategyError>,
    ) -> Result<Option<R>, EngineError> {
        let account = Account { cash: self.portfolio.cash, equity: self.portfolio.equity() };
        self.strategy.set_account(account);
        let started = self.call_metrics.as_ref().map(|_| std::time::Instant::now());
        let result = f(self.strategy.as_mut());
        if let (Some((metrics, instance)), Some(started)) = (&self.call_metrics, started) {
            metrics.guest_call(instance, callback, started.elapsed());
        }
        match result {
            Ok(result) => Ok(Some(result)),
            Err(error @ StrategyError::Restarted { fresh, .. }) => {
                if fresh {
                    // No saved state to restore: a new lifetime.
                    self.new_lifetime();
                }
                self.restarts += 1;
                (self.events)(Event::StrategyRestarted { error: error.to_string() });
                Ok(None)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Applies fills and expiries reported from outside the bar loop (a
    /// live venue), then lets the strategy react.
    pub fn on_execution(&mut self, events: Vec<ExecutionEvent>) -> Result<(), EngineError> {
        for event in events {
            self.broker.on_event(&event);
            self.apply_execution(event, self.last_time);
        }
        self.feedback()
    }

    /// Tells the strategy of fills it missed across a restart, whose
    /// effect on the position was adopted from the store already.
    pub fn on_missed_fills(&mut self, fills: Vec<Fill>) -> Result<(), EngineError> {
        self.fills.extend(fills.iter().cloned());
        self.pending_fills.extend(fills);
        self.feedback()
    }

    /// Takes a position as the broker reports it, before trading starts.
    pub fn adopt_position(&mut self, symbol: Arc<str>, qty: Decimal, avg_price: Decimal) {
        self.portfolio.set_position(&symbol, qty, avg_price);
        self.strategy.set_position(&symbol, qty);
    }

    /// Places an order that did not come from the strategy (a webhook alert
    /// in `order` mode): the same risk checks, its own intent numbers.
    pub fn submit_external(&mut self, intent: OrderIntent) -> Result<(), EngineError> {
        self.last_external += 1;
        self.place(OrderRef::new(OrderRef::EXTERNAL, self.last_external), intent, self.last_time);
        self.feedback()
    }

    /// Puts `strategy` in place of the running one, between inputs (a hot
    /// swap), and returns the old one. The new one is told the positions.
    /// With `continues` (it restored the old one's state) it carries on the
    /// old instance's lifetime, so it hears about orders in flight;
    /// otherwise it starts a new one, like a fresh instance.
    pub fn replace_strategy(&mut self, mut strategy: Box<dyn Strategy>, continues: bool) -> Box<dyn Strategy> {
        for (symbol, qty) in self.portfolio.positions() {
            strategy.set_position(symbol, qty);
        }
        if !continues {
            self.new_lifetime();
        }
        std::mem::replace(&mut self.strategy, strategy)
    }

    /// The running instance's lifetime, committed with its state.
    pub fn lifetime(&self) -> u32 {
        self.lifetime
    }

    /// Continues lifetime `lifetime`, whose orders used `ids`: after a
    /// restart that restored the state saved in it.
    pub fn continue_lifetime(&mut self, lifetime: u32, ids: impl IntoIterator<Item = u64>) {
        self.lifetime = lifetime.max(1);
        self.used_ids = ids.into_iter().collect();
    }

    /// Starts the lifetime after `last`: for an instance created afresh
    /// when earlier lifetimes (up to `last`) placed orders.
    pub fn start_lifetime_after(&mut self, last: u32) {
        self.lifetime = last.saturating_add(1).max(1);
        self.used_ids.clear();
    }

    fn new_lifetime(&mut self) {
        self.start_lifetime_after(self.lifetime);
    }

    /// Continues external numbering after `last`, e.g. from the store.
    pub fn resume_external_after(&mut self, last: u64) {
        self.last_external = self.last_external.max(last);
    }

    fn match_orders(&mut self, bar: &Bar) {
        self.broker.on_bar(bar, &mut self.execution_events);
        for event in std::mem::take(&mut self.execution_events) {
            self.apply_execution(event, bar.time);
        }
    }

    fn apply_execution(&mut self, event: ExecutionEvent, time: Millis) {
        {
            match event {
                ExecutionEvent::Filled { fill } => {
                    let position = self.portfolio.apply(&fill);
                    self.strategy.set_position(&fill.symbol, position);
                    (self.events)(Event::Filled { fill: fill.clone(), position });
                    (self.events)(Event::Pnl {
                        time: fill.time,
                        realized: self.portfolio.realized_pnl,
                        unrealized: self.portfolio.unrealized_pnl(),
                        equity: self.portfolio.equity(),
                    });
                    self.fills.push(fill.clone());
                    self.pending_fills.push(fill);
                }
                ExecutionEvent::Expired { intent_id, symbol, reason } => {
                    self.reject(intent_id, symbol, reason, time);
                }
            }
        }
    }

    fn reject(&mut self, intent_id: IntentId, symbol: Arc<str>, reason: String, time: Millis) {
        self.rejected += 1;
        (self.events)(Event::Rejected { intent_id, symbol: symbol.clone(), reason: reason.clone(), time });
        self.pending_rejects.push((intent_id, symbol, reason));
    }

    fn apply(&mut self, action: Action, time: Millis) {
        match action {
            Action::Submit { id, intent } => {
                let order = OrderRef::new(self.lifetime, id);
                if self.used_ids.insert(id) {
                    self.place(order, intent, time);
                } else {
                    let reason = format!("order id {id} was already used by this strategy instance");
                    self.reject(order, intent.symbol, reason, time);
                }
            }
            Action::Cancel { id } => {
                let order = OrderRef::new(self.lifetime, id);
                if self.broker.cancel(order) {
                    (self.events)(Event::Canceled { intent_id: order, time });
                }
            }
            Action::Notify { level, message } => (self.events)(Event::Notified { level, message, time }),
        }
    }

    /// Checks an intent against the host's limits and hands it to the broker.
    fn place(&mut self, intent_id: IntentId, intent: OrderIntent, time: Millis) {
        {
            if let Some((meter, per_minute)) = &self.order_rate
                && intent_id.lifetime != OrderRef::EXTERNAL
                && !meter.take_amount(1)
            {
                let reason = format!("over the strategy's budget of {per_minute} orders per minute");
                self.orders_over_rate += 1;
                self.reject(intent_id, intent.symbol, reason, time);
                return;
            }
            if intent.qty > MAX_ORDER_QTY {
                let reason = format!("quantity {} exceeds the host maximum of {MAX_ORDER_QTY}", intent.qty);
                self.reject(intent_id, intent.symbol, reason, time);
                return;
            }
            let exposure = self.portfolio.qty(&intent.symbol) + self.broker.open_exposure(&intent.symbol);
            let last_price = self.portfolio.last_close(&intent.symbol);
            let gated = match &self.gate {
                Some((gate, venue)) => gate.check(venue, exposure, exposure + intent.side.sign() * intent.qty),
                None => Ok(()),
            };
            if let Err(violation) = gated.and_then(|()| self.risk.check(&intent, exposure, last_price)) {
                self.reject(intent_id, intent.symbol, violation.to_string(), time);
                return;
            }
            let order = Order { intent_id, intent: intent.clone(), placed_at: time };
            match self.broker.submit(order) {
                Ok(()) => {
                    self.orders += 1;
                    (self.events)(Event::OrderPlaced { intent_id, intent, time });
                }
                Err(e) => self.reject(intent_id, intent.symbol, e.to_string(), time),
            }
        }
    }

    /// Whether the running instance placed `order`, so should hear of it.
    fn is_own(&self, order: IntentId) -> bool {
        order.lifetime == self.lifetime
    }

    /// Tells the strategy about fills and rejections since the last call.
    fn feedback(&mut self) -> Result<(), EngineError> {
        for _ in 0..MAX_FEEDBACK_ROUNDS {
            if self.pending_fills.is_empty() && self.pending_rejects.is_empty() {
                return Ok(());
            }
            let time = self.last_time;
            // Fills of an earlier lifetime's orders only move the position.
            let mut fills = std::mem::take(&mut self.pending_fills);
            fills.retain(|fill| self.is_own(fill.intent_id));
            if !fills.is_empty() {
                let heard = || Heard::Fills { fills: fills.clone() };
                for action in self.call_heard("on-fills", heard, |s| s.on_fills(&fills))?.unwrap_or_default() {
                    self.apply(action, time);
                }
            }
            let rejections: Vec<Rejection> = std::mem::take(&mut self.pending_rejects)
                .into_iter()
                .filter(|(order, ..)| self.is_own(*order))
                .map(|(order, symbol, reason)| Rejection { order: order.id, symbol, reason })
                .collect();
            if !rejections.is_empty() {
                let heard = || Heard::Rejects { rejections: rejections.clone() };
                for action in self.call_heard("on-rejects", heard, |s| s.on_rejects(&rejections))?.unwrap_or_default() {
                    self.apply(action, time);
                }
            }
        }
        tracing::warn!(strategy = self.strategy.name(), "feedback did not settle; the rest waits for the next batch");
        Ok(())
    }

    /// How often the strategy broke its limits, by cause.
    pub fn breaches(&self) -> Breaches {
        let own = Breaches { orders: self.orders_over_rate, ..Breaches::default() };
        self.strategy.breaches().plus(own)
    }

    pub fn counts(&self) -> Counts {
        Counts {
            bars: self.bars,
            orders: self.orders,
            rejected: self.rejected,
            fills: self.fills.len() as u64,
            restarts: self.restarts,
        }
    }

    /// Summarises the run so far.
    pub fn report(&self, symbol: &str) -> Report {
        let p = &self.portfolio;
        Report {
            strategy: self.strategy.name().to_string(),
            symbol: symbol.to_string(),
            bars: self.bars,
            orders: self.orders,
            rejected: self.rejected,
            fills: self.fills.iter().map(FillRecord::from).collect(),
            realized_pnl: p.realized_pnl,
            unrealized_pnl: p.unrealized_pnl(),
            commission: p.commission,
            max_drawdown: p.max_drawdown,
            max_drawdown_pct: p.max_drawdown_pct,
            final_position: p.qty(symbol),
            starting_cash: p.starting_cash,
            final_equity: p.equity(),
            open_orders: self.broker.open_orders().len() as u64,
            symbols: p
                .by_symbol()
                .into_iter()
                .map(|s| crate::report::SymbolReport {
                    symbol: s.symbol.to_string(),
                    fills: s.fills,
                    realized_pnl: s.realized_pnl,
                    unrealized_pnl: s.unrealized_pnl,
                    final_position: s.position,
                })
                .collect(),
            statistics: None,
        }
    }
}
