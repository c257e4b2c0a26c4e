//! Pre-trade risk checks: the host, not the strategy, decides what trades.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::bar::Millis;
use crate::order::OrderIntent;
use crate::store::{Store, StoreError, VenueStateRecord};

/// Limits from config; an absent limit is not enforced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskLimits {
    /// Largest absolute position per symbol, counting open orders.
    pub max_position: Option<Decimal>,
    /// Largest `qty × price` of one order.
    pub max_order_notional: Option<Decimal>,
    /// Symbols strategies may trade; absent means any.
    pub allowed_symbols: Option<Vec<String>>,
}

/// Why an intent was refused before reaching a broker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RiskViolation {
    #[error("symbol {symbol} is not in the allowed symbols")]
    SymbolNotAllowed { symbol: String },
    #[error("position in {symbol} would reach {would_be}, beyond the limit of ±{limit}")]
    PositionLimit { symbol: String, would_be: Decimal, limit: Decimal },
    #[error("order notional {notional} exceeds the limit of {limit}")]
    NotionalLimit { notional: Decimal, limit: Decimal },
    #[error("the {what} of a {order_type} order must be positive, got {price}")]
    NonPositivePrice { order_type: &'static str, what: &'static str, price: Decimal },
    #[error("no price is known for {symbol}, so its notional cannot be checked")]
    NoPrice { symbol: String },
    #[error("trading on {venue} is halted")]
    Halted { venue: String },
    #[error("{venue} accepts only orders that reduce a position")]
    ReducingOnly { venue: String },
}

/// Whether a venue may take new orders.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TradingState {
    #[default]
    Active,
    /// Only orders that bring a position closer to zero.
    Reducing,
    /// No new orders at all.
    Halted,
}

impl TradingState {
    fn as_str(self) -> &'static str {
        match self {
            TradingState::Active => "active",
            TradingState::Reducing => "reducing",
            TradingState::Halted => "halted",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [TradingState::Active, TradingState::Reducing, TradingState::Halted].into_iter().find(|s| s.as_str() == text)
    }
}

/// Why a venue was halted. Only an `unauthorized` halt lifts itself (at
/// the first sync the venue answers again); the others stay, across
/// restarts, until an operator lifts them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HaltReason {
    /// Positions differed from the broker's by more than the threshold.
    Drift { drift: Decimal, threshold: Decimal },
    /// The venue refused the host's credentials.
    Unauthorized { message: String },
    /// An operator halted trading.
    Operator { note: String },
}

impl HaltReason {
    /// Whether the halt lifts by itself once the venue takes the host's
    /// credentials again.
    pub fn lifts_itself(&self) -> bool {
        matches!(self, HaltReason::Unauthorized { .. })
    }
}

impl std::fmt::Display for HaltReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HaltReason::Drift { drift, threshold } => {
                write!(f, "position drift {drift} above the threshold of {threshold}")
            }
            HaltReason::Unauthorized { message } => write!(f, "the venue refused the credentials: {message}"),
            HaltReason::Operator { note } => write!(f, "halted by an operator: {note}"),
        }
    }
}

/// A venue's trading state, why, and since when (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VenueTrading {
    pub venue: String,
    pub state: TradingState,
    pub reason: Option<HaltReason>,
    pub since: Millis,
}

impl VenueTrading {
    fn active(venue: &str) -> Self {
        Self { venue: venue.into(), state: TradingState::Active, reason: None, since: 0 }
    }
}

/// Trading state per venue, shared by the reconciler and the router (which
/// set it) and by everything that places orders (which obeys it). With a
/// store, every change is persisted and journaled (`risk.halted`,
/// `risk.resumed`) before it takes effect in memory, so a restart keeps it.
#[derive(Clone, Default)]
pub struct RiskGate {
    states: Arc<RwLock<HashMap<String, VenueTrading>>>,
    store: Option<Arc<Store>>,
}

impl std::fmt::Debug for RiskGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RiskGate").field("venues", &self.venues()).finish_non_exhaustive()
    }
}

impl RiskGate {
    /// A gate that keeps its states in `store`, starting from what the
    /// store holds for `venues`.
    pub fn persistent(store: Arc<Store>, venues: &[&str]) -> Result<Self, StoreError> {
        let gate = Self { states: Arc::default(), store: Some(store) };
        for venue in venues {
            // Known, and listed, as active until a halt is stored.
            gate.put(VenueTrading::active(venue));
            gate.reload(venue)?;
        }
        Ok(gate)
    }

    /// Takes the stored state of `venue` (an operator may have changed it
    /// from outside the process). Returns the state now in force.
    pub fn reload(&self, venue: &str) -> Result<TradingState, StoreError> {
        let Some(store) = &self.store else { return Ok(self.state(venue)) };
        let Some(record) = store.venue_state(venue)? else { return Ok(self.state(venue)) };
        let state = TradingState::parse(&record.state)
            .ok_or_else(|| StoreError::Corrupt { what: "trading state", value: record.state.clone() })?;
        let reason = match &record.reason {
            Some(text) => Some(
                serde_json::from_str(text)
                    .map_err(|_| StoreError::Corrupt { what: "halt reason", value: text.clone() })?,
            ),
            None => None,
        };
        self.put(VenueTrading { venue: venue.into(), state, reason, since: record.since });
        Ok(state)
    }

    pub fn state(&self, venue: &str) -> TradingState {
        self.trading(venue).state
    }

    /// The full trading state of `venue`.
    pub fn trading(&self, venue: &str) -> VenueTrading {
        match self.states.read() {
            Ok(states) => states.get(venue).cloned().unwrap_or_else(|| VenueTrading::active(venue)),
            Err(_) => VenueTrading { state: TradingState::Halted, ..VenueTrading::active(venue) },
        }
    }

    /// Every venue whose state was ever set, by name.
    pub fn venues(&self) -> Vec<VenueTrading> {
        let mut all: Vec<VenueTrading> = self.states.read().map(|s| s.values().cloned().collect()).unwrap_or_default();
        all.sort_by(|a, b| a.venue.cmp(&b.venue));
        all
    }

    /// Sets a state in memory only (tests, and venues without a store).
    pub fn set(&self, venue: &str, state: TradingState) {
        self.put(VenueTrading { state, ..VenueTrading::active(venue) });
    }

    fn put(&self, trading: VenueTrading) {
        if let Ok(mut states) = self.states.write() {
            states.insert(trading.venue.clone(), trading);
        }
    }

    /// Halts `venue` for `reason`. A halt that would lift itself never
    /// replaces one that would not. Returns whether anything changed. The
    /// halt takes effect even if the store cannot record it.
    pub fn halt(&self, venue: &str, reason: HaltReason, now: Millis) -> Result<bool, StoreError> {
        let current = self.trading(venue);
        if current.state == TradingState::Halted {
            let keep = match &current.reason {
                Some(existing) => !existing.lifts_itself() || reason.lifts_itself(),
                None => true,
            };
            if keep {
                return Ok(false);
            }
        }
        let next = VenueTrading { venue: venue.into(), state: TradingState::Halted, reason: Some(reason), since: now };
        let data = serde_json::json!({ "venue": venue, "reason": next.reason, "why": next.reason.as_ref().map(ToString::to_string) });
        self.put(next.clone());
        self.persist(&next, "risk.halted", &data)?;
        Ok(true)
    }

    /// Lifts a halt of `venue` (or a reducing-only state): by an operator,
    /// or by `reason_lifts` when only a self-lifting halt should go.
    pub fn resume(&self, venue: &str, now: Millis, by: &str) -> Result<bool, StoreError> {
        let current = self.trading(venue);
        if current.state == TradingState::Active {
            return Ok(false);
        }
        let next = VenueTrading { since: now, ..VenueTrading::active(venue) };
        let data = serde_json::json!({ "venue": venue, "by": by, "was": current.reason });
        self.put(next.clone());
        self.persist(&next, "risk.resumed", &data)?;
        Ok(true)
    }

    /// Lifts the halt of `venue` if it lifts itself (an authentication
    /// failure that has passed); any other halt stays.
    pub fn recovered(&self, venue: &str, now: Millis) -> Result<bool, StoreError> {
        match self.trading(venue).reason {
            Some(reason) if reason.lifts_itself() => self.resume(venue, now, "recovery"),
            _ => Ok(false),
        }
    }

    fn persist(&self, trading: &VenueTrading, kind: &str, data: &serde_json::Value) -> Result<(), StoreError> {
        let Some(store) = &self.store else { return Ok(()) };
        let reason = trading.reason.as_ref().map(|r| serde_json::to_string(r).unwrap_or_default());
        let record = VenueStateRecord {
            venue: trading.venue.clone(),
            state: trading.state.as_str().into(),
            reason,
            since: trading.since,
        };
        store.set_venue_state(&record, kind, &data.to_string())
    }

    /// Checks an order that would move a position from `before` to `after`.
    /// A halt that lifts itself (refused credentials) lets orders be
    /// decided: the router holds them until it lifts.
    pub fn check(&self, venue: &str, before: Decimal, after: Decimal) -> Result<(), RiskViolation> {
        let trading = self.trading(venue);
        if trading.reason.as_ref().is_some_and(HaltReason::lifts_itself) {
            return Ok(());
        }
        match trading.state {
            TradingState::Active => Ok(()),
            TradingState::Reducing
                if after.abs() < before.abs()
                    && (after.is_zero() || after.is_sign_positive() == before.is_sign_positive()) =>
            {
                Ok(())
            }
            TradingState::Reducing => Err(RiskViolation::ReducingOnly { venue: venue.into() }),
            TradingState::Halted => Err(RiskViolation::Halted { venue: venue.into() }),
        }
    }
}

impl RiskLimits {
    /// Checks one intent. `exposure` is the current position plus the signed
    /// quantity of open orders in the symbol; `last_price` its latest price.
    pub fn check(
        &self,
        intent: &OrderIntent,
        exposure: Decimal,
        last_price: Option<Decimal>,
    ) -> Result<(), RiskViolation> {
        let order_type = intent.order_type;
        for (what, price) in [("limit price", order_type.limit_price()), ("stop price", order_type.stop_price())] {
            if let Some(price) = price.filter(|p| *p <= Decimal::ZERO) {
                return Err(RiskViolation::NonPositivePrice { order_type: order_type.name(), what, price });
            }
        }
        if let Some(allowed) = &self.allowed_symbols
            && !allowed.iter().any(|s| **s == *intent.symbol)
        {
            return Err(RiskViolation::SymbolNotAllowed { symbol: intent.symbol.to_string() });
        }
        if let Some(limit) = self.max_position {
            let would_be = exposure + intent.side.sign() * intent.qty;
            if would_be.abs() > limit {
                return Err(RiskViolation::PositionLimit { symbol: intent.symbol.to_string(), would_be, limit });
            }
        }
        if let Some(limit) = self.max_order_notional {
            // A limit (or a stop-limit's limit) bounds the price; a stop is
            // where a stop order starts trading; a market order trades near
            // the last price.
            let price = order_type.reference_price().or(last_price);
            let price = price.ok_or_else(|| RiskViolation::NoPrice { symbol: intent.symbol.to_string() })?;
            let notional = intent.qty.checked_mul(price).unwrap_or(Decimal::MAX);
            if notional > limit {
                return Err(RiskViolation::NotionalLimit { notional, limit });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::{OrderType, Side};

    fn buy(symbol: &str, qty: i64) -> OrderIntent {
        OrderIntent::market(symbol.into(), Side::Buy, Decimal::from(qty))
    }

    #[test]
    fn a_venue_never_halted_is_listed_as_active() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("g.db")).unwrap());
        let gate = RiskGate::persistent(store, &["alpaca"]).unwrap();
        let venues = gate.venues();
        assert_eq!(venues.len(), 1, "the operator can see, and halt, it");
        assert_eq!((venues[0].venue.as_str(), venues[0].state), ("alpaca", TradingState::Active));
    }

    #[test]
    fn the_gate_halts_or_only_reduces() {
        let gate = RiskGate::default();
        let d = Decimal::from;
        assert!(gate.check("alpaca", d(0), d(5)).is_ok());
        gate.set("alpaca", TradingState::Reducing);
        assert!(gate.check("alpaca", d(5), d(2)).is_ok());
        assert!(gate.check("alpaca", d(5), d(0)).is_ok());
        assert!(gate.check("alpaca", d(5), d(6)).is_err());
        assert!(gate.check("alpaca", d(5), d(-1)).is_err(), "flipping short is not reducing");
        gate.set("alpaca", TradingState::Halted);
        assert!(matches!(gate.check("alpaca", d(5), d(0)), Err(RiskViolation::Halted { .. })));
        assert!(gate.check("binance", d(0), d(1)).is_ok(), "venues are independent");
    }

    #[test]
    fn a_halt_outlives_the_process_and_only_an_auth_halt_lifts_itself() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("g.db")).unwrap());
        let gate = RiskGate::persistent(store.clone(), &["alpaca"]).unwrap();
        let auth = HaltReason::Unauthorized { message: "401".into() };
        assert!(gate.halt("alpaca", auth.clone(), 5).unwrap());
        assert!(!gate.halt("alpaca", auth.clone(), 6).unwrap(), "halted once");
        let drift = HaltReason::Drift { drift: 2.into(), threshold: 0.into() };
        assert!(gate.halt("alpaca", drift.clone(), 7).unwrap(), "a drift halt replaces an auth halt");
        assert!(!gate.halt("alpaca", auth, 8).unwrap(), "and is not replaced by one");
        assert!(!gate.recovered("alpaca", 9).unwrap(), "a drift halt does not lift itself");

        // A new process over the same file is still halted, for the same reason.
        let restarted = RiskGate::persistent(store.clone(), &["alpaca"]).unwrap();
        let trading = restarted.trading("alpaca");
        assert_eq!((trading.state, trading.reason, trading.since), (TradingState::Halted, Some(drift), 7));
        assert!(restarted.resume("alpaca", 10, "operator").unwrap());
        assert_eq!(RiskGate::persistent(store.clone(), &["alpaca"]).unwrap().state("alpaca"), TradingState::Active);
        let kinds: Vec<String> = store.events_after(0, 10).unwrap().into_iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["risk.halted", "risk.halted", "risk.resumed"]);
    }

    /// An operator's change made through another connection (another
    /// process) takes effect at the next reload.
    #[test]
    fn a_change_from_another_process_is_taken_at_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        let host = RiskGate::persistent(Arc::new(Store::open(&path).unwrap()), &["alpaca"]).unwrap();
        host.halt("alpaca", HaltReason::Drift { drift: 1.into(), threshold: 0.into() }, 1).unwrap();
        let operator = RiskGate::persistent(Arc::new(Store::open(&path).unwrap()), &["alpaca"]).unwrap();
        assert_eq!(operator.state("alpaca"), TradingState::Halted);
        assert!(operator.resume("alpaca", 2, "operator").unwrap());
        assert_eq!(host.state("alpaca"), TradingState::Halted, "not until it reloads");
        assert_eq!(host.reload("alpaca").unwrap(), TradingState::Active);
        assert!(host.check("alpaca", Decimal::ZERO, Decimal::ONE).is_ok());
    }

    #[test]
    fn no_limits_allow_everything() {
        assert!(RiskLimits::default().check(&buy("X", 1_000_000), Decimal::ZERO, None).is_ok());
    }

    #[test]
    fn enforces_each_limit() {
        let limits = RiskLimits {
            max_position: Some(Decimal::from(10)),
            max_order_notional: Some(Decimal::from(1000)),
            allowed_symbols: Some(vec!["AAPL".into()]),
        };
        let px = Some(Decimal::from(50));
        assert!(limits.check(&buy("AAPL", 5), Decimal::from(5), px).is_ok());
        assert!(matches!(
            limits.check(&buy("MSFT", 1), Decimal::ZERO, px),
            Err(RiskViolation::SymbolNotAllowed { .. })
        ));
        assert!(matches!(
            limits.check(&buy("AAPL", 6), Decimal::from(5), px),
            Err(RiskViolation::PositionLimit { .. })
        ));
        assert!(matches!(limits.check(&buy("AAPL", 1), Decimal::ZERO, None), Err(RiskViolation::NoPrice { .. })));
        let big = OrderIntent { order_type: OrderType::Limit { price: Decimal::from(500) }, ..buy("AAPL", 3) };
        assert!(matches!(limits.check(&big, Decimal::ZERO, px), Err(RiskViolation::NotionalLimit { .. })));
        // A stop is valued at its stop, a stop-limit at its limit.
        let stop = OrderIntent { order_type: OrderType::Stop { stop: Decimal::from(400) }, ..buy("AAPL", 3) };
        assert!(
            matches!(limits.check(&stop, Decimal::ZERO, px), Err(RiskViolation::NotionalLimit { notional, .. }) if notional == Decimal::from(1200))
        );
        let stop_limit = |stop: i64, limit: i64| OrderIntent {
            order_type: OrderType::StopLimit { stop: Decimal::from(stop), limit: Decimal::from(limit) },
            ..buy("AAPL", 3)
        };
        assert!(limits.check(&stop_limit(400, 300), Decimal::ZERO, px).is_ok(), "3 × 300 is within 1000");
        assert!(matches!(
            limits.check(&stop_limit(300, 400), Decimal::ZERO, px),
            Err(RiskViolation::NotionalLimit { .. })
        ));
        // Selling down from a long position is within the limit.
        let sell = OrderIntent { side: Side::Sell, ..buy("AAPL", 10) };
        assert!(limits.check(&sell, Decimal::from(10), px).is_ok());
    }

    #[test]
    fn prices_must_be_positive_whatever_the_limits() {
        let with = |order_type| OrderIntent { order_type, ..buy("AAPL", 1) };
        let (zero, one) = (Decimal::ZERO, Decimal::ONE);
        let bad = [
            (OrderType::Limit { price: zero }, "limit price"),
            (OrderType::Stop { stop: -one }, "stop price"),
            (OrderType::StopLimit { stop: one, limit: zero }, "limit price"),
            (OrderType::StopLimit { stop: zero, limit: one }, "stop price"),
        ];
        for (order_type, named) in bad {
            let err = RiskLimits::default().check(&with(order_type), zero, None).unwrap_err();
            assert!(matches!(err, RiskViolation::NonPositivePrice { what, .. } if what == named), "{order_type}");
        }
        assert_eq!(
            RiskLimits::default().check(&with(OrderType::Stop { stop: -one }), zero, None).unwrap_err().to_string(),
            "the stop price of a stop order must be positive, got -1"
        );
        // Any positive pair is a valid stop-limit: a buy's limit may be below its stop.
        assert!(
            RiskLimits::default().check(&with(OrderType::StopLimit { stop: 2.into(), limit: one }), zero, None).is_ok()
        );
    }
}
