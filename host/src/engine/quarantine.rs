//! What happens to the open orders and positions of a strategy that is
//! quarantined (failed) or removed: the `FailurePolicy`.

use std::sync::Arc;

use rust_decimal::Decimal;

use super::{Engine, Event, Quarantined};
use crate::config::FailurePolicy;
use crate::order::{OrderIntent, OrderRef, Side};

impl Engine {
    /// Applies `policy` to the open orders and positions of a strategy
    /// that has just been quarantined.
    pub fn quarantine(&mut self, policy: FailurePolicy) -> Quarantined {
        match policy {
            FailurePolicy::Leave => Quarantined::default(),
            FailurePolicy::Cancel => Quarantined { canceled: self.cancel_strategy_orders(), closing: 0 },
            FailurePolicy::Flatten => {
                let canceled = self.cancel_strategy_orders();
                let open: Vec<(Arc<str>, Decimal)> =
                    self.portfolio.positions().filter(|(_, qty)| !qty.is_zero()).map(|(s, q)| (s.clone(), q)).collect();
                for (symbol, qty) in &open {
                    let side = if qty.is_sign_positive() { Side::Sell } else { Side::Buy };
                    self.last_external += 1;
                    let order = OrderRef::new(OrderRef::EXTERNAL, self.last_external);
                    self.place(order, OrderIntent::market(symbol.clone(), side, qty.abs()), self.last_time);
                }
                Quarantined { canceled, closing: open.len() }
            }
        }
    }

    /// Cancels every open order the strategy placed (not those placed from
    /// outside it), as when a quarantined strategy's orders must not trade
    /// on without it; returns how many.
    pub fn cancel_strategy_orders(&mut self) -> usize {
        let time = self.last_time;
        let mut canceled = 0;
        for order in self.broker.open_orders() {
            if !order.is_external() && self.broker.cancel(order) {
                (self.events)(Event::Canceled { intent_id: order, time });
                canceled += 1;
            }
        }
        canceled
    }
}
