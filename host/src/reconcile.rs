//! Keeping the host in step with the broker, which is the truth.
//!
//! A sync, run at startup and every few seconds, asks the venue about every
//! order the host thinks is open and records fills from the growth of each
//! order's filled quantity (so a fill is applied once, however often it is
//! seen), then compares positions. A position that still differs is adopted
//! from the broker and journaled as a correction; if the unexplained drift
//! passes the configured threshold, new orders on that venue are halted.

use std::sync::Arc;

use rust_decimal::Decimal;

use crate::bar::Millis;
use crate::broker::{Broker, OrderStatus, VenueOrder};
use crate::risk::{RiskGate, TradingState};
use crate::store::{FillRecord, OrderRecord, PositionRecord, Store, StoreError};
use crate::venue::VenueError;

/// Orders younger than this that the venue does not know may still be in
/// flight; older ones never arrived.
const IN_FLIGHT_GRACE_MS: Millis = 30_000;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Venue(#[from] VenueError),
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
    pub ended: Vec<(String, String)>,
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

    /// One full sync. Partial progress (fills already recorded) is kept if
    /// a later step fails; the next sync carries on from there.
    pub async fn sync(&self, now: Millis) -> Result<SyncReport, ReconcileError> {
        let venue = self.broker.venue();
        let mut report = SyncReport::default();
        for local in self.store.open_orders(venue)? {
            match self.broker.order_by_client_id(&local.symbol, &local.client_order_id).await? {
                Some(remote) => self.settle(&local, &remote, now, &mut report)?,
                None if now - local.updated > IN_FLIGHT_GRACE_MS => {
                    // It never reached the venue; the strategy's intent is void.
                    self.store.update_order(&local.client_order_id, "expired", None, now)?;
                    self.journal(now, "order.lost", serde_json::json!({ "client_order_id": local.client_order_id }))?;
                    report.orders_updated += 1;
                    report.ended.push((local.client_order_id.clone(), "expired".into()));
                }
                None => {}
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
        self.compare_positions(now, &mut report).await?;
        report.cash = self.broker.account().await?.cash;
        if report.drift > self.drift_threshold {
            self.gate.set(venue, TradingState::Halted);
            report.halted = true;
            self.journal(
                now,
                "risk.halted",
                serde_json::json!({ "drift": report.drift.to_string(), "threshold": self.drift_threshold.to_string() }),
            )?;
            tracing::error!(venue, drift = %report.drift, "position drift above the threshold: trading halted");
        }
        Ok(report)
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
        let (filled, notional) = self.store.filled(&local.client_order_id)?;
        if remote.filled_qty > filled {
            let qty = remote.filled_qty - filled;
            // The venue reports an average over all fills; this slice's price
            // is what the average implies beyond the fills already recorded.
            let Some(avg) = remote.filled_avg_price else {
                tracing::warn!(client_order_id = %local.client_order_id, "filled without an average price; retrying next sync");
                return Ok(());
            };
            let price = (avg * remote.filled_qty - notional) / qty;
            let fill = FillRecord {
                venue: self.broker.venue().into(),
                // The cumulative quantity names the slice, so seeing the same
                // state twice records nothing new.
                fill_id: format!("{}@{}", remote.venue_order_id, remote.filled_qty.normalize()),
                client_order_id: local.client_order_id.clone(),
                symbol: local.symbol.clone(),
                side: local.side,
                qty,
                price,
                commission: Decimal::ZERO,
                time: now,
            };
            if self.store.record_fill(&fill)? {
                report.fills.push(fill);
            }
        }
        if remote.status.as_str() != local.status
            || local.venue_order_id.as_deref() != Some(remote.venue_order_id.as_str())
        {
            self.store.update_order(
                &local.client_order_id,
                remote.status.as_str(),
                Some(&remote.venue_order_id),
                now,
            )?;
            report.orders_updated += 1;
            if matches!(remote.status, OrderStatus::Canceled | OrderStatus::Expired | OrderStatus::Rejected) {
                report.ended.push((local.client_order_id.clone(), remote.status.as_str().into()));
                self.journal(
                    now,
                    &format!("order.{}", remote.status.as_str()),
                    serde_json::json!({ "client_order_id": local.client_order_id }),
                )?;
            }
        }
        Ok(())
    }

    async fn compare_positions(&self, now: Millis, report: &mut SyncReport) -> Result<(), ReconcileError> {
        let venue = self.broker.venue();
        let remote = self.broker.positions().await?;
        let local = self.store.positions(venue)?;
        let mut symbols: Vec<&str> =
            remote.iter().map(|p| p.symbol.as_str()).chain(local.iter().map(|p| p.symbol.as_str())).collect();
        symbols.sort_unstable();
        symbols.dedup();
        for symbol in symbols {
            let ours = local.iter().find(|p| p.symbol == symbol);
            let theirs = remote.iter().find(|p| p.symbol == symbol);
            let (ours_qty, theirs_qty) =
                (ours.map_or(Decimal::ZERO, |p| p.qty), theirs.map_or(Decimal::ZERO, |p| p.qty));
            if ours_qty == theirs_qty {
                continue;
            }
            let truth = PositionRecord {
                venue: venue.into(),
                symbol: symbol.into(),
                qty: theirs_qty,
                avg_price: theirs.map_or(Decimal::ZERO, |p| p.avg_price),
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
        self.store.append_event(now, kind, Some(self.broker.venue()), &data.to_string()).map(|_| ())
    }
}
