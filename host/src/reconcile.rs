//! Keeping the host in step with the broker, which is the truth.
//!
//! A sync, run at startup and every few seconds, asks the venue about every
//! order the host thinks is open and records fills from the growth of each
//! order's filled quantity (so a fill is applied once, however often it is
//! seen), then compares positions. A position that still differs is adopted
//! from the broker and journaled as a correction; if the unexplained drift
//! passes the configured threshold, new orders on that venue are halted.
//!
//! Positions are compared only on a consistent view. The venue's positions
//! are read before and after the orders; a symbol whose position moved in
//! between had a fill the order pass may or may not have seen, so it is
//! left for the next sync rather than called drift. The desk never sends an
//! order while a sync runs, so nothing of ours can fill unseen otherwise.
//!
//! An order whose fate is unknown (`pending`, `unknown`) and that the venue
//! does not have is never given up on: the sync reports it, and the desk
//! sends it again through the router.

use std::sync::Arc;

use rust_decimal::Decimal;

use crate::bar::Millis;
use crate::broker::{Broker, OrderKey, VenueOrder, VenuePosition};
use crate::order::OrderStatus;
use crate::risk::{HaltReason, RiskGate};
use crate::store::{FillRecord, OrderRecord, PositionRecord, Store, StoreError};
use crate::venue::VenueError;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Venue(#[from] VenueError),
}

/// A sync that stopped part way. What it did before it stopped (fills
/// recorded, orders settled) is kept in the store and in `report`, so the
/// strategies hear of it now rather than after a restart.
#[derive(Debug, thiserror::Error)]
#[error("the sync with the broker stopped part way")]
pub struct SyncFailed {
    pub report: SyncReport,
    #[source]
    pub source: ReconcileError,
}

/// A position adopted from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Correction {
    pub symbol: String,
    pub local: Decimal,
    pub venue: Decimal,
}

/// What one sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub fills: Vec<FillRecord>,
    pub orders_updated: usize,
    pub corrections: Vec<Correction>,
    /// Orders that ended without (fully) filling: client order id and status.
    pub ended: Vec<(String, OrderStatus)>,
    /// Orders whose fate was unknown and that the venue does not have:
    /// the desk's to send again.
    pub unresolved: Vec<OrderRecord>,
    /// Symbols whose position moved while the sync read it: compared next time.
    pub unsettled: Vec<String>,
    /// Open orders at the venue the host did not place.
    pub foreign_orders: Vec<String>,
    /// Sum of the absolute position corrections.
    pub drift: Decimal,
    /// The account's cash as the broker reports it.
    pub cash: Decimal,
    pub halted: bool,
}

pub struct Reconciler {
    broker: Arc<dyn Broker>,
    store: Arc<Store>,
    gate: RiskGate,
    /// Drift above which the venue is halted.
    drift_threshold: Decimal,
}

impl Reconciler {
    pub fn new(broker: Arc<dyn Broker>, store: Arc<Store>, gate: RiskGate, drift_threshold: Decimal) -> Self {
        Self { broker, store, gate, drift_threshold }
    }

    pub fn venue(&self) -> &'static str {
        self.broker.venue()
    }

    /// One full sync. Refused credentials halt the venue until a sync
    /// succeeds again, which lifts that halt.
    pub async fn sync(&self, now: Millis) -> Result<SyncReport, SyncFailed> {
        let mut report = SyncReport::default();
        match self.sync_into(now, &mut report).await {
            Ok(()) => match self.gate.recovered(self.venue(), now) {
                Ok(_) => Ok(report),
                Err(error) => Err(SyncFailed { report, source: error.into() }),
            },
            Err(source) => {
                if let ReconcileError::Venue(error) = &source
                    && error.is_unauthorized()
                {
                    let reason = HaltReason::Unauthorized { message: error.to_string() };
                    if let Err(error) = self.gate.halt(self.venue(), reason, now) {
                        tracing::error!(%error, "cannot record the halt");
                    }
                }
                Err(SyncFailed { report, source })
            }
        }
    }

    /// Settles one order's state as the venue pushed it (a stream update),
    /// as a sync would settle it when read. An update about an order this
    /// host did not place is left to the sync, which journals it; one older
    /// than what is recorded (less filled, or open while the order has
    /// ended) changes nothing.
    pub fn apply(&self, remote: &VenueOrder, now: Millis) -> Result<SyncReport, ReconcileError> {
        let mut report = SyncReport::default();
        let Some(local) = self.store.order(&remote.client_order_id)? else { return Ok(report) };
        let stale = remote.filled_qty < local.filled_qty || (local.status.is_final() && !remote.status.is_final());
        if local.venue != self.venue() || stale {
            return Ok(report);
        }
        self.settle(&local, remote, now, &mut report)?;
        Ok(report)
    }

    /// Settles an order the venue says changed, reading its state first.
    pub async fn refresh(&self, symbol: &str, venue_order_id: &str, now: Millis) -> Result<SyncReport, ReconcileError> {
        match self.broker.order_by_venue_id(symbol, venue_order_id).await? {
            Some(remote) => self.apply(&remote, now),
            None => Ok(SyncReport::default()),
        }
    }

    async fn sync_into(&self, now: Millis, report: &mut SyncReport) -> Result<(), ReconcileError> {
        let venue = self.venue();
        // An operator may have halted or resumed the venue from outside.
        self.gate.reload(venue)?;
        let before = self.broker.positions().await?;
        for local in self.store.open_orders(venue)? {
            let key = OrderKey {
                symbol: &local.symbol,
                client_order_id: &local.client_order_id,
                venue_order_id: local.venue_order_id.as_deref(),
            };
            let remote = self.broker.lookup(&key).await?;
            match remote {
                Some(remote) => self.settle(&local, &remote, now, report)?,
                // Never sent, or sent and lost on the way: send it again.
                None if local.status.is_unresolved() => report.unresolved.push(local),
                None => {
                    // The venue acknowledged it once; it is not given up on.
                    tracing::warn!(venue, client_order_id = %local.client_order_id, "an accepted order is missing at the venue");
                }
            }
        }
        for remote in self.broker.open_orders().await? {
            if self.store.order(&remote.client_order_id)?.is_none() {
                self.journal(
                    now,
                    "order.foreign",
                    serde_json::json!({ "client_order_id": remote.client_order_id, "symbol": remote.symbol }),
                )?;
                report.foreign_orders.push(remote.client_order_id);
            }
        }
        let after = self.broker.positions().await?;
        self.compare_positions(&before, &after, now, report)?;
        report.cash = self.broker.account().await?.cash;
        if report.drift > self.drift_threshold {
            let reason = HaltReason::Drift { drift: report.drift, threshold: self.drift_threshold };
            self.gate.halt(venue, reason, now)?;
            report.halted = true;
            tracing::error!(venue, drift = %report.drift, "position drift above the threshold: trading halted");
        }
        Ok(())
    }

    /// Records the fill implied by growth in `remote`'s filled quantity and
    /// the order's new state.
    fn settle(
        &self,
        local: &OrderRecord,
        remote: &VenueOrder,
        now: Millis,
        report: &mut SyncReport,
    ) -> Result<(), ReconcileError> {
        if let Some(fill) = record_implied_fill(&self.store, self.venue(), local, remote, now)? {
            report.fills.push(fill);
        }
        if remote.status != local.status || local.venue_order_id.as_deref() != Some(remote.venue_order_id.as_str()) {
            self.store.update_order(&local.client_order_id, remote.status, Some(&remote.venue_order_id), now)?;
            report.orders_updated += 1;
            if matches!(remote.status, OrderStatus::Canceled | OrderStatus::Expired | OrderStatus::Rejected) {
                report.ended.push((local.client_order_id.clone(), remote.status));
                self.journal(
                    now,
                    &format!("order.{}", remote.status.as_str()),
                    serde_json::json!({ "client_order_id": local.client_order_id }),
                )?;
            }
        }
        Ok(())
    }

    /// Adopts the broker's position where it differs from ours, for every
    /// symbol whose position stood still from `before` to `after`.
    fn compare_positions(
        &self,
        before: &[VenuePosition],
        after: &[VenuePosition],
        now: Millis,
        report: &mut SyncReport,
    ) -> Result<(), ReconcileError> {
        let venue = self.venue();
        let local = self.store.positions(venue)?;
        let qty_in = |positions: &[VenuePosition], symbol: &str| {
            positions.iter().find(|p| p.symbol == symbol).map_or(Decimal::ZERO, |p| p.qty)
        };
        let mut symbols: Vec<&str> = before
            .iter()
            .chain(after)
            .map(|p| p.symbol.as_str())
            .chain(local.iter().map(|p| p.symbol.as_str()))
            .collect();
        symbols.sort_unstable();
        symbols.dedup();
        for symbol in symbols {
            let theirs_qty = qty_in(after, symbol);
            if qty_in(before, symbol) != theirs_qty {
                report.unsettled.push(symbol.into());
                continue;
            }
            let ours_qty = local.iter().find(|p| p.symbol == symbol).map_or(Decimal::ZERO, |p| p.qty);
            if ours_qty == theirs_qty {
                continue;
            }
            let truth = PositionRecord {
                venue: venue.into(),
                symbol: symbol.into(),
                qty: theirs_qty,
                avg_price: after.iter().find(|p| p.symbol == symbol).map_or(Decimal::ZERO, |p| p.avg_price),
            };
            let data =
                serde_json::json!({ "symbol": symbol, "local": ours_qty.to_string(), "venue": theirs_qty.to_string() });
            self.store.correct_position(&truth, now, &data.to_string())?;
            tracing::warn!(venue, symbol, local = %ours_qty, broker = %theirs_qty, "position corrected to the broker's");
            report.drift += (theirs_qty - ours_qty).abs();
            report.corrections.push(Correction { symbol: symbol.into(), local: ours_qty, venue: theirs_qty });
        }
        Ok(())
    }

    fn journal(&self, now: Millis, kind: &str, data: serde_json::Value) -> Result<(), StoreError> {
        self.store.append_event(now, kind, Some(self.venue()), &data.to_string()).map(|_| ())
    }
}

/// Records the fill implied by growth in `remote`'s filled quantity beyond
/// what the store holds for `local`, with its position, once: the
/// cumulative quantity names the slice, so whoever sees the same state
/// again (the router, from an order's answer; the sync, from a lookup)
/// records nothing new. Returns the fill if it was new.
pub(crate) fn record_implied_fill(
    store: &Store,
    venue: &str,
    local: &OrderRecord,
    remote: &VenueOrder,
    now: Millis,
) -> Result<Option<FillRecord>, StoreError> {
    let (filled, notional) = store.filled(&local.client_order_id)?;
    if remote.filled_qty <= filled {
        return Ok(None);
    }
    let qty = remote.filled_qty - filled;
    // The venue reports an average over all fills; this slice's price is
    // what the average implies beyond the fills already recorded.
    let Some(avg) = remote.filled_avg_price else {
        tracing::warn!(client_order_id = %local.client_order_id, "filled without an average price; retrying next sync");
        return Ok(None);
    };
    let fill = FillRecord {
        venue: venue.into(),
        fill_id: format!("{}@{}", remote.venue_order_id, remote.filled_qty.normalize()),
        client_order_id: local.client_order_id.clone(),
        symbol: local.symbol.clone(),
        side: local.side,
        qty,
        price: (avg * remote.filled_qty - notional) / qty,
        commission: Decimal::ZERO,
        time: now,
    };
    Ok(store.record_fill(&fill)?.then_some(fill))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::scripted::{Book, ScriptedBroker, unauthorized, unknown};
    use crate::order::{OrderIntent, Side};
    use crate::risk::TradingState;
    use crate::router::{Routed, Router, RouterConfig};

    struct Desk {
        _dir: tempfile::TempDir,
        store: Arc<Store>,
        broker: Arc<ScriptedBroker>,
        gate: RiskGate,
        reconciler: Reconciler,
        router: Router,
    }

    fn desk() -> Desk {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("r.db")).unwrap());
        let broker = Arc::new(ScriptedBroker::default());
        let gate = RiskGate::persistent(store.clone(), &["scripted"]).unwrap();
        let reconciler = Reconciler::new(broker.clone(), store.clone(), gate.clone(), Decimal::ZERO);
        let config = RouterConfig {
            max_attempts: 2,
            base_backoff: std::time::Duration::from_millis(1),
            ..RouterConfig::default()
        };
        let router = Router::new(broker.clone(), store.clone(), config).with_gate(gate.clone());
        Desk { _dir: dir, store, broker, gate, reconciler, router }
    }

    fn buy(qty: i64) -> OrderIntent {
        OrderIntent::market("AAPL".into(), Side::Buy, Decimal::from(qty))
    }

    fn local_qty(store: &Store) -> Decimal {
        store.positions("scripted").unwrap().iter().map(|p| p.qty).sum()
    }

    /// A fill that lands at any point while a sync reads the venue is
    /// recorded once and never taken for drift.
    #[tokio::test]
    async fn fills_landing_mid_sync_are_never_drift() {
        // Land the fill right after the n-th lookup, for every n a sync makes.
        for landing in 0..3 {
            let d = desk();
            for intent in 1..=3 {
                let routed =
                    d.router.submit("s@scripted", crate::order::OrderRef::new(1, intent), &buy(1), 1).await.unwrap();
                assert!(matches!(routed, Routed::Accepted { .. }));
            }
            let mut lookups = 0;
            d.broker.after_lookup(move |book: &mut Book, _| {
                if lookups == landing {
                    for coid in book.orders.iter().map(|o| o.client_order_id.clone()).collect::<Vec<_>>() {
                        book.fill(&coid, Decimal::ONE, Decimal::from(10));
                    }
                }
                lookups += 1;
            });
            for _ in 0..3 {
                let report = d.reconciler.sync(2).await.unwrap();
                assert!(report.corrections.is_empty(), "landing {landing}: {report:?}");
                assert!(!report.halted);
            }
            assert_eq!(d.gate.state("scripted"), TradingState::Active, "landing {landing}");
            assert_eq!(local_qty(&d.store), Decimal::from(3), "landing {landing}: each fill recorded once");
            let kinds: Vec<String> = d.store.events_after(0, 100).unwrap().into_iter().map(|e| e.kind).collect();
            assert!(!kinds.iter().any(|k| k == "position.corrected" || k == "risk.halted"), "{kinds:?}");
        }
    }

    #[tokio::test]
    async fn real_drift_still_halts_and_the_halt_outlives_the_reconciler() {
        let d = desk();
        // Someone else bought on the account.
        d.broker.book.lock().unwrap().positions.push(VenuePosition {
            symbol: "AAPL".into(),
            qty: Decimal::from(5),
            avg_price: Decimal::from(10),
        });
        let report = d.reconciler.sync(3).await.unwrap();
        assert_eq!((report.drift, report.halted), (Decimal::from(5), true));
        assert_eq!(local_qty(&d.store), Decimal::from(5), "the broker's position is adopted");
        // A new gate over the same store, as after a restart.
        let restarted = RiskGate::persistent(d.store.clone(), &["scripted"]).unwrap();
        assert_eq!(restarted.state("scripted"), TradingState::Halted);
        assert!(matches!(restarted.trading("scripted").reason, Some(HaltReason::Drift { .. })));
        // A sync that succeeds does not lift a drift halt.
        d.reconciler.sync(4).await.unwrap();
        assert_eq!(d.gate.state("scripted"), TradingState::Halted);
    }

    /// An order whose fate is unknown, however old, is looked up and sent
    /// again if the venue lacks it; it is never expired.
    #[tokio::test]
    async fn an_order_of_unknown_fate_is_resent_never_given_up() {
        for status in [OrderStatus::Pending, OrderStatus::Unknown] {
            let d = desk();
            let record = OrderRecord::for_intent(
                "scripted",
                "s@scripted",
                crate::order::OrderRef::new(1, 8),
                &buy(2),
                status,
                1,
            );
            d.store.insert_order(&record).unwrap();
            // An hour later, the venue still lacks it.
            let report = d.reconciler.sync(3_600_000).await.unwrap();
            assert_eq!(report.unresolved.len(), 1);
            assert_eq!(d.store.order(&record.client_order_id).unwrap().unwrap().status, status, "not expired");
            let routed = d.router.route(report.unresolved[0].clone(), 3_600_001).await.unwrap();
            assert!(matches!(routed, Routed::Accepted { .. }), "{routed:?}");
            assert_eq!(d.broker.book.lock().unwrap().submitted, vec![record.client_order_id.clone()]);
            let kinds: Vec<String> = d.store.events_after(0, 100).unwrap().into_iter().map(|e| e.kind).collect();
            assert!(!kinds.contains(&"order.lost".to_string()), "{kinds:?}");
        }
    }

    /// An order the router gave up on (every attempt timed out) that did
    /// land is found by the sync and settled, not sent again.
    #[tokio::test]
    async fn an_order_that_landed_after_all_is_settled_not_resent() {
        let d = desk();
        d.broker.book.lock().unwrap().fill_at = Some(Decimal::from(10));
        // The venue took the request, but the answer was lost and the
        // router gave up for now: the order is `unknown` in the store.
        {
            let request = crate::broker::OrderRequest {
                client_order_id: crate::router::client_order_id("s@scripted", crate::order::OrderRef::new(1, 1)),
                symbol: "AAPL".into(),
                side: Side::Buy,
                qty: Decimal::ONE,
                order_type: crate::order::OrderType::Market,
                time_in_force: crate::order::TimeInForce::Day,
            };
            Broker::submit(&*d.broker, &request).await.unwrap();
        }
        let record = OrderRecord::for_intent(
            "scripted",
            "s@scripted",
            crate::order::OrderRef::new(1, 1),
            &buy(1),
            OrderStatus::Unknown,
            1,
        );
        d.store.insert_order(&record).unwrap();
        let report = d.reconciler.sync(2).await.unwrap();
        assert!(report.unresolved.is_empty());
        assert_eq!(report.fills.len(), 1);
        assert_eq!(d.broker.book.lock().unwrap().submitted.len(), 1, "sent once");
        assert_eq!(d.store.order(&record.client_order_id).unwrap().unwrap().status, OrderStatus::Filled);
    }

    /// What a sync recorded before it failed is reported with the failure.
    #[tokio::test]
    async fn a_failed_sync_still_reports_the_fills_it_recorded() {
        let d = desk();
        d.router.submit("s@scripted", crate::order::OrderRef::new(1, 1), &buy(1), 1).await.unwrap();
        // It fills at the venue; the sync's read after the lookup (open orders) fails.
        let coid = crate::router::client_order_id("s@scripted", crate::order::OrderRef::new(1, 1));
        d.broker.book.lock().unwrap().fill(&coid, Decimal::ONE, Decimal::from(10));
        let broker = d.broker.clone();
        d.broker.after_lookup(move |_, _| broker.read_errors.lock().unwrap().push_back(unknown()));
        let failed = d.reconciler.sync(3).await.unwrap_err();
        assert_eq!(failed.report.fills.len(), 1, "{failed:?}");
        assert_eq!(local_qty(&d.store), Decimal::ONE);
    }

    /// An answer that already reports the order filled is recorded by the
    /// router; the sync then sees the same state and records nothing more.
    #[tokio::test]
    async fn a_fill_in_the_order_answer_is_recorded_once() {
        let d = desk();
        d.broker.book.lock().unwrap().fill_at = Some(Decimal::from(10));
        let routed = d.router.submit("s@scripted", crate::order::OrderRef::new(1, 1), &buy(1), 1).await.unwrap();
        assert!(matches!(&routed, Routed::Accepted { fill: Some(f), .. } if f.qty == Decimal::ONE), "{routed:?}");
        let report = d.reconciler.sync(2).await.unwrap();
        assert!(report.fills.is_empty(), "{report:?}");
        assert!(report.corrections.is_empty());
        assert_eq!(local_qty(&d.store), Decimal::ONE);
        let coid = crate::router::client_order_id("s@scripted", crate::order::OrderRef::new(1, 1));
        assert_eq!(d.store.order(&coid).unwrap().unwrap().status, OrderStatus::Filled);
    }

    #[tokio::test]
    async fn refused_credentials_halt_until_a_sync_succeeds() {
        let d = desk();
        d.broker.read_errors.lock().unwrap().push_back(unauthorized());
        let failed = d.reconciler.sync(2).await.unwrap_err();
        assert!(matches!(failed.source, ReconcileError::Venue(VenueError::Unauthorized { .. })));
        assert_eq!(d.gate.state("scripted"), TradingState::Halted);
        d.reconciler.sync(3).await.unwrap();
        assert_eq!(d.gate.state("scripted"), TradingState::Active, "lifted once the venue answers");
    }
}
