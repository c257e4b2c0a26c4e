//! Order routing that never loses an order and never sends one twice.
//!
//! Every intent gets a deterministic client order id from its strategy
//! instance and intent number, and is persisted as `pending` before the
//! first request. When the outcome of a request is unknown (a timeout, a
//! dropped connection, a 5XX), the router asks the venue for that client
//! order id and resends only if the venue does not have it. Throttling
//! honours `Retry-After`; other transient failures back off exponentially
//! with jitter. A refusal is final: recorded, journaled, never retried.
//! Refused credentials are not a refusal of the order: the venue is halted
//! until they work again, and the order is kept.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;

use crate::bar::Millis;
use crate::broker::{Broker, OrderRequest, VenueOrder};
use crate::order::{IntentId, OrderIntent, OrderStatus, Side};
use crate::rate_limit::RateLimiter;
use crate::risk::{HaltReason, RiskGate, TradingState};
use crate::store::{FillRecord, OrderRecord, Store, StoreError};
use crate::venue::VenueError;

/// Retry and rate-limit settings for one venue.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Attempts per request before giving up (the order then waits for
    /// reconciliation).
    pub max_attempts: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Client-side limit on requests; Alpaca's trading API allows 200 a minute.
    pub requests_per_minute: u32,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            requests_per_minute: 200,
        }
    }
}

/// What became of an intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed {
    Accepted {
        order: VenueOrder,
        /// What the venue's answer already reported filled, recorded (the
        /// sync would record the same slice, under the same id, once).
        fill: Option<FillRecord>,
    },
    /// The venue refused it, or trading on the venue is halted for good;
    /// the strategy is told and nothing is retried.
    Rejected { client_order_id: String, reason: String },
    /// The intent was routed before (e.g. by a previous run); nothing was sent.
    AlreadyRouted { record: OrderRecord },
    /// Not sent now, and kept: the venue is halted for a reason that lifts
    /// itself (refused credentials). The order goes out once it lifts.
    Held { client_order_id: String, reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The outcome is still unknown after every attempt; the order stays
    /// recorded as `pending` or `unknown`, and the desk looks it up and
    /// resends it after the next sync, for as long as it takes.
    #[error("gave up routing {client_order_id} for now after {attempts} attempts")]
    GaveUp { client_order_id: String, attempts: u32, source: VenueError },
}

/// The client order id of a strategy instance's order: stable across
/// restarts, at most 35 characters of `[a-z0-9-]`, so every venue accepts it
/// (Binance's limit, 36, is the tightest). The lifetime and the id are
/// written out in base 36, so distinct orders never share an id; only the
/// instance name is hashed.
pub fn client_order_id(strategy_instance: &str, order: IntentId) -> String {
    // FNV-1a: fixed, so ids do not change between builds or runs.
    let hash = strategy_instance
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("sb-{:010x}-{}-{}", hash >> 24, base36(u64::from(order.lifetime)), base36(order.id))
}

fn base36(mut n: u64) -> String {
    let mut digits = Vec::with_capacity(13);
    loop {
        digits.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

pub struct Router {
    broker: Arc<dyn Broker>,
    store: Arc<Store>,
    gate: RiskGate,
    limiter: RateLimiter,
    config: RouterConfig,
}

/// Whether the gate lets an order out now.
enum Gate {
    Open,
    Hold { reason: String },
    Refuse { reason: String },
}

impl Router {
    /// A router whose venue is always open, until [`Router::with_gate`].
    pub fn new(broker: Arc<dyn Broker>, store: Arc<Store>, config: RouterConfig) -> Self {
        let gate = RiskGate::default();
        Self { limiter: RateLimiter::new(config.requests_per_minute), broker, store, gate, config }
    }

    /// Obeys (and, on refused credentials, sets) `gate` at every send.
    pub fn with_gate(mut self, gate: RiskGate) -> Self {
        self.gate = gate;
        self
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self.config.base_backoff.saturating_mul(1 << attempt.min(16)).min(self.config.max_backoff);
        // Jitter spreads retries from many hosts; std's random hasher seeds it.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(attempt);
        let fraction = (hasher.finish() % 1000) as f64 / 1000.0;
        ceiling.mul_f64(0.5 + fraction / 2.0)
    }

    /// Routes one approved intent of `strategy_instance`: persisted as
    /// `pending` first if it is new, then as [`Router::route`].
    pub async fn submit(
        &self,
        strategy_instance: &str,
        intent_id: IntentId,
        intent: &OrderIntent,
        now: Millis,
    ) -> Result<Routed, RouterError> {
        let record = OrderRecord::for_intent(
            self.broker.venue(),
            strategy_instance,
            intent_id,
            intent,
            OrderStatus::Queued,
            now,
        );
        if self.store.insert_order(&record)? {
            return self.route(record, now).await;
        }
        match self.store.order(&record.client_order_id)? {
            Some(existing) => self.route(existing, now).await,
            None => self.route(record, now).await,
        }
    }

    /// Carries a stored order forward. A `queued` order is sent; a
    /// `pending` or `unknown` one (a request that may have landed) is looked
    /// up by client order id first and sent only if the venue lacks it; any
    /// other has been routed already. The trading gate is checked at the
    /// moment of every send, so a halt stops orders decided before it.
    pub async fn route(&self, record: OrderRecord, now: Millis) -> Result<Routed, RouterError> {
        let client_order_id = record.client_order_id.clone();
        // Whether an earlier request for it may have reached the venue.
        let tried_before = record.status.is_unresolved();
        let mut outcome_unknown = tried_before;
        if !tried_before && record.status != OrderStatus::Queued {
            return Ok(Routed::AlreadyRouted { record });
        }
        let intent = record.intent();
        let request = OrderRequest {
            client_order_id: client_order_id.clone(),
            symbol: intent.symbol.to_string(),
            side: intent.side,
            qty: intent.qty,
            order_type: intent.order_type,
            time_in_force: intent.time_in_force,
        };
        let mut attempt = 0;
        loop {
            if outcome_unknown {
                if let Some(order) = self.lookup(&request.symbol, &client_order_id).await? {
                    return self.accepted(&record, order, now);
                }
                outcome_unknown = false;
            }
            match self.gate(&intent)? {
                Gate::Open => {}
                Gate::Hold { reason } => return Ok(Routed::Held { client_order_id, reason }),
                Gate::Refuse { reason } => return self.rejected(&client_order_id, reason, now),
            }
            attempt += 1;
            self.limiter.acquire().await;
            // Persisted before anything is sent.
            if attempt == 1 && !tried_before {
                self.store.update_order(&client_order_id, OrderStatus::Pending, None, now)?;
            }
            let error = match self.broker.submit(&request).await {
                Ok(order) => return self.accepted(&record, order, now),
                Err(error) if error.is_unauthorized() => {
                    // Not the order's fault: halt the venue and keep the order.
                    let reason = error.to_string();
                    self.gate.halt(self.broker.venue(), HaltReason::Unauthorized { message: reason.clone() }, now)?;
                    tracing::error!(venue = self.broker.venue(), %error, "credentials refused: trading halted");
                    return Ok(Routed::Held { client_order_id, reason });
                }
                Err(VenueError::Rejected { message, .. }) if attempt > 1 || tried_before => {
                    // A resend refused, e.g. as a duplicate id: an earlier
                    // attempt may have landed after all.
                    if let Some(order) = self.lookup(&request.symbol, &client_order_id).await? {
                        return self.accepted(&record, order, now);
                    }
                    return self.rejected(&client_order_id, message, now);
                }
                Err(VenueError::Rejected { message, .. }) => return self.rejected(&client_order_id, message, now),
                Err(error) => error,
            };
            let wait = match &error {
                VenueError::Throttled { retry_after, .. } => retry_after.unwrap_or_else(|| self.backoff(attempt)),
                // Never reached the venue, or refused for a passing reason
                // without acting on it: the same request may go again.
                error if error.is_retryable() => self.backoff(attempt),
                // Unknown, or an answer we could not read: the order may exist.
                _ => {
                    self.store.update_order(&client_order_id, OrderStatus::Unknown, None, now)?;
                    outcome_unknown = true;
                    self.backoff(attempt)
                }
            };
            tracing::warn!(venue = self.broker.venue(), %client_order_id, attempt, %error, ?wait, "order request failed");
            if attempt >= self.config.max_attempts {
                self.store.append_event(
                    now,
                    "order.unsettled",
                    Some(self.broker.venue()),
                    &serde_json::json!({ "client_order_id": client_order_id, "error": error.to_string() }).to_string(),
                )?;
                return Err(RouterError::GaveUp { client_order_id, attempts: attempt, source: error });
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Whether the venue's trading state lets `intent` out now. A halted
    /// venue refuses it, unless the halt lifts itself, when it is held; a
    /// reducing-only venue takes it only if it brings the venue's position
    /// closer to zero.
    fn gate(&self, intent: &OrderIntent) -> Result<Gate, StoreError> {
        let venue = self.broker.venue();
        let trading = self.gate.trading(venue);
        Ok(match (trading.state, trading.reason) {
            (TradingState::Active, _) => Gate::Open,
            (TradingState::Halted, Some(reason)) if reason.lifts_itself() => Gate::Hold { reason: reason.to_string() },
            (TradingState::Halted, reason) => Gate::Refuse {
                reason: match reason {
                    Some(reason) => format!("trading on {venue} is halted: {reason}"),
                    None => format!("trading on {venue} is halted"),
                },
            },
            (TradingState::Reducing, _) => {
                let held = self
                    .store
                    .positions(venue)?
                    .into_iter()
                    .find(|p| *p.symbol == *intent.symbol)
                    .map_or(Decimal::ZERO, |p| p.qty);
                match self.gate.check(venue, held, held + intent.side.sign() * intent.qty) {
                    Ok(()) => Gate::Open,
                    Err(violation) => Gate::Refuse { reason: violation.to_string() },
                }
            }
        })
    }

    /// Cancels an order at the venue by its venue id.
    pub async fn cancel(&self, symbol: &str, venue_order_id: &str) -> Result<(), VenueError> {
        self.limiter.acquire().await;
        self.broker.cancel(symbol, venue_order_id).await
    }

    /// Asks the venue for an order, retrying transient failures.
    async fn lookup(&self, symbol: &str, client_order_id: &str) -> Result<Option<VenueOrder>, RouterError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.limiter.acquire().await;
            let error = match self.broker.order_by_client_id(symbol, client_order_id).await {
                Ok(found) => return Ok(found),
                Err(error) => error,
            };
            if error.is_unauthorized() {
                let reason = HaltReason::Unauthorized { message: error.to_string() };
                self.gate.halt(self.broker.venue(), reason, crate::bar::now_ms())?;
            }
            if attempt >= self.config.max_attempts || error.is_unauthorized() {
                return Err(RouterError::GaveUp {
                    client_order_id: client_order_id.into(),
                    attempts: attempt,
                    source: error,
                });
            }
            let wait = match &error {
                VenueError::Throttled { retry_after: Some(wait), .. } => *wait,
                _ => self.backoff(attempt),
            };
            tokio::time::sleep(wait).await;
        }
    }

    fn accepted(&self, record: &OrderRecord, order: VenueOrder, now: Millis) -> Result<Routed, RouterError> {
        let venue = self.broker.venue();
        self.store.update_order(&order.client_order_id, OrderStatus::Accepted, Some(&order.venue_order_id), now)?;
        let data = serde_json::json!({ "client_order_id": order.client_order_id, "venue_order_id": order.venue_order_id, "symbol": order.symbol, "qty": order.qty.to_string(), "side": match order.side { Side::Buy => "buy", Side::Sell => "sell" } });
        self.store.append_event(now, "order.accepted", Some(venue), &data.to_string())?;
        // An answer that already reports executions (a market order filled
        // at once) is recorded now; the order's final state is the sync's
        // to set, so an order is never taken off the open list early.
        let fill = crate::reconcile::record_implied_fill(&self.store, venue, record, &order, now)?;
        Ok(Routed::Accepted { order, fill })
    }

    fn rejected(&self, client_order_id: &str, reason: String, now: Millis) -> Result<Routed, RouterError> {
        self.store.update_order(client_order_id, OrderStatus::Rejected, None, now)?;
        let data = serde_json::json!({ "client_order_id": client_order_id, "reason": reason });
        self.store.append_event(now, "order.rejected", Some(self.broker.venue()), &data.to_string())?;
        Ok(Routed::Rejected { client_order_id: client_order_id.into(), reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_order_ids_are_stable_short_and_distinct() {
        use crate::order::OrderRef;
        let a = client_order_id("sma@alpaca", OrderRef::new(1, 1));
        assert_eq!(a, client_order_id("sma@alpaca", OrderRef::new(1, 1)));
        assert_ne!(a, client_order_id("sma@alpaca", OrderRef::new(1, 2)));
        assert_ne!(a, client_order_id("sma@alpaca", OrderRef::new(2, 1)));
        assert_ne!(a, client_order_id("sma@alpaca", OrderRef::new(0, 1)));
        assert_ne!(a, client_order_id("sma2@alpaca", OrderRef::new(1, 1)));
        // Digits cannot run together into another order's id.
        assert_ne!(client_order_id("s", OrderRef::new(1, 11)), client_order_id("s", OrderRef::new(11, 1)),);
        let long = client_order_id(&"x".repeat(500), OrderRef::new(u32::MAX, u64::MAX));
        assert!(long.len() <= 36, "{long}");
        assert!(long.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
        assert_eq!(base36(0), "0");
        assert_eq!(base36(36 * 36 + 35), "10z");
    }

    use crate::broker::scripted::{ScriptedBroker, unauthorized};
    use crate::order::Side;

    fn setup() -> (tempfile::TempDir, Arc<Store>, Arc<ScriptedBroker>, RiskGate, Router) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("r.db")).unwrap());
        let broker = Arc::new(ScriptedBroker::default());
        let gate = RiskGate::persistent(store.clone(), &["scripted"]).unwrap();
        let router = Router::new(broker.clone(), store.clone(), RouterConfig::default()).with_gate(gate.clone());
        (dir, store, broker, gate, router)
    }

    fn queued(store: &Store, id: u64, side: Side) -> OrderRecord {
        let order = OrderIntent::market("AAPL".into(), side, rust_decimal::Decimal::ONE);
        let intent = crate::order::OrderRef::new(1, id);
        let record = OrderRecord::for_intent("scripted", "s@scripted", intent, &order, OrderStatus::Queued, 1);
        store.insert_order(&record).unwrap();
        record
    }

    /// Orders decided before a halt, in any state short of sent, are
    /// checked at the moment they would be sent.
    #[tokio::test]
    async fn a_halt_stops_orders_decided_before_it() {
        let (_dir, store, broker, gate, router) = setup();
        let waiting: Vec<OrderRecord> = (1..=3).map(|n| queued(&store, n, Side::Buy)).collect();
        let unknown = OrderRecord { status: OrderStatus::Unknown, ..queued(&store, 4, Side::Buy) };
        store.update_order(&unknown.client_order_id, OrderStatus::Unknown, None, 1).unwrap();
        gate.halt("scripted", HaltReason::Drift { drift: 1.into(), threshold: 0.into() }, 2).unwrap();
        for record in waiting.into_iter().chain([unknown]) {
            let routed = router.route(record.clone(), 3).await.unwrap();
            assert!(matches!(&routed, Routed::Rejected { reason, .. } if reason.contains("halted")), "{routed:?}");
            assert_eq!(store.order(&record.client_order_id).unwrap().unwrap().status, OrderStatus::Rejected);
        }
        assert!(broker.book.lock().unwrap().submitted.is_empty(), "nothing was sent after the halt");
    }

    #[tokio::test]
    async fn a_reducing_venue_sends_only_orders_that_reduce() {
        let (_dir, store, broker, gate, router) = setup();
        let long = crate::store::PositionRecord {
            venue: "scripted".into(),
            symbol: "AAPL".into(),
            qty: 2.into(),
            avg_price: 1.into(),
        };
        store.correct_position(&long, 1, "{}").unwrap();
        gate.set("scripted", TradingState::Reducing);
        let buy = queued(&store, 1, Side::Buy);
        let sell = queued(&store, 2, Side::Sell);
        assert!(matches!(router.route(buy, 2).await.unwrap(), Routed::Rejected { .. }));
        assert!(matches!(router.route(sell.clone(), 2).await.unwrap(), Routed::Accepted { .. }));
        assert_eq!(broker.book.lock().unwrap().submitted, vec![sell.client_order_id]);
    }

    /// Refused credentials are not a refusal of the order: the venue is
    /// halted, the order kept, and it goes out once the halt lifts.
    #[tokio::test]
    async fn refused_credentials_hold_the_order_and_halt_the_venue() {
        let (_dir, store, broker, gate, router) = setup();
        broker.submit_errors.lock().unwrap().push_back(unauthorized());
        let first = queued(&store, 1, Side::Buy);
        let routed = router.route(first.clone(), 2).await.unwrap();
        assert!(matches!(routed, Routed::Held { .. }), "{routed:?}");
        assert_eq!(gate.state("scripted"), TradingState::Halted);
        let kept = store.order(&first.client_order_id).unwrap().unwrap();
        assert!(!kept.status.is_final(), "kept, not refused: {:?}", kept.status);
        // While halted, later orders wait too, without a request.
        let second = queued(&store, 2, Side::Buy);
        assert!(matches!(router.route(second.clone(), 3).await.unwrap(), Routed::Held { .. }));
        assert_eq!(store.order(&second.client_order_id).unwrap().unwrap().status, OrderStatus::Queued);
        assert!(broker.book.lock().unwrap().submitted.is_empty());

        assert!(gate.recovered("scripted", 4).unwrap());
        for record in [kept, store.order(&second.client_order_id).unwrap().unwrap()] {
            assert!(matches!(router.route(record, 5).await.unwrap(), Routed::Accepted { .. }));
        }
        assert_eq!(broker.book.lock().unwrap().submitted.len(), 2, "each sent once");
    }
}
