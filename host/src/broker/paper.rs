//! A simulated broker that fills against the bars it is shown.
//!
//! Fill model ("next open"): an order placed while bar *i* is processed is
//! matched against the next bar of its symbol. Market orders fill at that
//! bar's open. A buy limit fills if the bar trades at or below the limit, at
//! the better of open and limit; sells mirror it. IOC and FOK orders get that
//! one bar and expire otherwise; DAY and GTC orders rest until filled or
//! canceled (daily bars have no intraday session to end).

use rust_decimal::Decimal;
use serde::Deserialize;

use super::{Execution, ExecutionError, ExecutionEvent};
use crate::bar::Bar;
use crate::order::{Fill, IntentId, Order, OrderType, Side, TimeInForce};

/// Commission charged per fill: a fixed amount plus a fraction of notional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Commission {
    #[serde(default)]
    pub per_order: Decimal,
    /// Fraction of `qty × price`, e.g. 0.0005 for 5 basis points.
    #[serde(default)]
    pub rate: Decimal,
}

impl Commission {
    pub fn charge(&self, qty: Decimal, price: Decimal) -> Decimal {
        self.per_order + self.rate * qty * price
    }
}

#[derive(Debug, Default)]
pub struct PaperBroker {
    open: Vec<Order>,
    commission: Commission,
}

impl PaperBroker {
    pub fn new(commission: Commission) -> Self {
        Self { open: Vec::new(), commission }
    }

    fn fill_price(order: &Order, bar: &Bar) -> Option<Decimal> {
        match (order.intent.order_type, order.intent.side) {
            (OrderType::Market, _) => Some(bar.open),
            (OrderType::Limit { price }, Side::Buy) => (bar.low <= price).then(|| bar.open.min(price)),
            (OrderType::Limit { price }, Side::Sell) => (bar.high >= price).then(|| bar.open.max(price)),
        }
    }
}

impl Execution for PaperBroker {
    fn submit(&mut self, order: Order) -> Result<(), ExecutionError> {
        if self.open.iter().any(|o| o.intent_id == order.intent_id) {
            return Err(ExecutionError::Rejected { reason: format!("duplicate order id {}", order.intent_id) });
        }
        self.open.push(order);
        Ok(())
    }

    fn cancel(&mut self, intent_id: IntentId) -> bool {
        let before = self.open.len();
        self.open.retain(|o| o.intent_id != intent_id);
        self.open.len() != before
    }

    fn on_bar(&mut self, bar: &Bar, events: &mut Vec<ExecutionEvent>) {
        if self.open.is_empty() {
            return;
        }
        let commission = self.commission;
        self.open.retain(|order| {
            if *order.intent.symbol != *bar.symbol || order.placed_at >= bar.time {
                return true;
            }
            match Self::fill_price(order, bar) {
                Some(price) => {
                    events.push(ExecutionEvent::Filled {
                        fill: Fill {
                            intent_id: order.intent_id,
                            symbol: order.intent.symbol.clone(),
                            side: order.intent.side,
                            qty: order.intent.qty,
                            price,
                            commission: commission.charge(order.intent.qty, price),
                            time: bar.time,
                        },
                    });
                    false
                }
                None if matches!(order.intent.time_in_force, TimeInForce::Ioc | TimeInForce::Fok) => {
                    events.push(ExecutionEvent::Expired {
                        intent_id: order.intent_id,
                        symbol: order.intent.symbol.clone(),
                        reason: "limit not reached on the next bar".into(),
                    });
                    false
                }
                None => true,
            }
        });
    }

    fn open_exposure(&self, symbol: &str) -> Decimal {
        self.open.iter().filter(|o| *o.intent.symbol == *symbol).map(|o| o.intent.side.sign() * o.intent.qty).sum()
    }

    fn open_orders(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::OrderIntent;

    fn bar(time: i64, open: i64, low: i64, high: i64) -> Bar {
        Bar {
            symbol: "X".into(),
            time,
            open: open.into(),
            high: high.into(),
            low: low.into(),
            close: open.into(),
            volume: Decimal::ZERO,
        }
    }

    fn order(id: u64, side: Side, order_type: OrderType, tif: TimeInForce) -> Order {
        Order {
            intent_id: crate::order::OrderRef::new(1, id),
            intent: OrderIntent { symbol: "X".into(), side, qty: Decimal::from(2), order_type, time_in_force: tif },
            placed_at: 0,
        }
    }

    #[test]
    fn market_orders_fill_at_the_next_open_with_commission() {
        let mut b = PaperBroker::new(Commission { per_order: Decimal::ONE, rate: Decimal::new(1, 2) });
        b.submit(order(1, Side::Buy, OrderType::Market, TimeInForce::Gtc)).unwrap();
        let mut events = Vec::new();
        b.on_bar(&bar(0, 10, 9, 11), &mut events);
        assert!(events.is_empty(), "an order never fills on the bar it was placed at");
        b.on_bar(&bar(1, 12, 11, 13), &mut events);
        let [ExecutionEvent::Filled { fill }] = events.as_slice() else { panic!("{events:?}") };
        assert_eq!((fill.price, fill.qty, fill.time), (Decimal::from(12), Decimal::from(2), 1));
        assert_eq!(fill.commission, Decimal::new(124, 2));
        assert_eq!(b.open_exposure("X"), Decimal::ZERO);
    }

    #[test]
    fn limits_fill_at_the_better_price_or_rest() {
        let mut b = PaperBroker::default();
        b.submit(order(1, Side::Buy, OrderType::Limit { price: 9.into() }, TimeInForce::Gtc)).unwrap();
        b.submit(order(2, Side::Sell, OrderType::Limit { price: 20.into() }, TimeInForce::Ioc)).unwrap();
        assert_eq!(b.open_exposure("X"), Decimal::ZERO);
        let mut events = Vec::new();
        b.on_bar(&bar(1, 10, 9, 11), &mut events);
        assert!(matches!(&events[0], ExecutionEvent::Filled { fill } if fill.price == Decimal::from(9)));
        assert!(matches!(&events[1], ExecutionEvent::Expired { intent_id: crate::order::OrderRef { lifetime: 1, id: 2 }, .. }));
        assert!(!b.cancel(crate::order::OrderRef::new(1, 1)) && b.open.is_empty());
    }

    #[test]
    fn cancel_and_duplicates() {
        let mut b = PaperBroker::default();
        b.submit(order(7, Side::Sell, OrderType::Market, TimeInForce::Day)).unwrap();
        assert!(b.submit(order(7, Side::Sell, OrderType::Market, TimeInForce::Day)).is_err());
        assert_eq!(b.open_exposure("X"), Decimal::from(-2));
        assert!(b.cancel(crate::order::OrderRef::new(1, 7)));
        assert!(!b.cancel(crate::order::OrderRef::new(1, 7)));
    }
}
