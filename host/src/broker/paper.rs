//! A simulated broker that fills against the bars it is shown.
//!
//! Fill model ("next open"), the rules of backtrader's default broker
//! (`BackBroker`, `backtrader/brokers/bbroker.py`, `_try_exec_*`) without
//! slippage: an order placed while bar *i* is processed is first matched
//! against the next bar of its symbol, and fills whole. For a buy (sells
//! mirror it, swapping high and low, above and below):
//!
//! - **Market**: at the bar's open.
//! - **Limit** at L: at the open if the bar opens at or below L, else at L
//!   if its low reaches L.
//! - **Stop** at S: at the open if the bar opens at or above S (a gap
//!   fills at the worse price, max(open, S)), else at S if its high
//!   reaches S. A sell fills at min(open, S) once the low reaches S.
//! - **Stop-limit**, stop S, limit L: triggers as a stop does. On the bar
//!   that triggers it:
//!   - if the bar opened at or beyond S, the limit is tried against the
//!     whole bar, as a limit order (open first, then the range);
//!   - else (S was reached during the bar) it fills at S if L is at or
//!     above S (a sell: at or below); else at L if the bar came back
//!     through L by its close: a buy when the bar closed below its open and
//!     L >= close, a sell when it closed at or above its open and
//!     L <= close. (backtrader's condition for a flat bar, open == close,
//!     differs by side: a sell may fill there, a buy may not. Kept as is.)
//!   - From the next bar on it is a plain limit order at L.
//!
//! IOC and FOK orders get that one bar and expire otherwise (a stop-limit
//! that triggers but does not fill expires too); DAY and GTC orders rest
//! until filled or canceled (daily bars have no intraday session to end).

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

    /// The price an order of `order_type` fills at on `bar`, if it fills. A
    /// stop-limit that `bar` triggers becomes the limit order it sets
    /// working, whether or not it fills on this bar.
    fn fill_price(order_type: &mut OrderType, side: Side, bar: &Bar) -> Option<Decimal> {
        match *order_type {
            OrderType::Market => Some(bar.open),
            OrderType::Limit { price } => limit_fill(side, price, bar),
            OrderType::Stop { stop } => stop_fill(side, stop, bar),
            OrderType::StopLimit { stop, limit } => {
                let (opened_through, reached) = match side {
                    Side::Buy => (bar.open >= stop, bar.high >= stop),
                    Side::Sell => (bar.open <= stop, bar.low <= stop),
                };
                if !reached && !opened_through {
                    return None;
                }
                *order_type = OrderType::Limit { price: limit };
                if opened_through {
                    return limit_fill(side, limit, bar);
                }
                match side {
                    Side::Buy if limit >= stop => Some(stop),
                    Side::Buy => (bar.open > bar.close && limit >= bar.close).then_some(limit),
                    Side::Sell if limit <= stop => Some(stop),
                    Side::Sell => (bar.open <= bar.close && limit <= bar.close).then_some(limit),
                }
            }
        }
    }
}

/// A limit at `limit`: at the open if the bar opens at or better than the
/// limit, else at the limit if the bar's range reaches it.
fn limit_fill(side: Side, limit: Decimal, bar: &Bar) -> Option<Decimal> {
    match side {
        Side::Buy if bar.open <= limit => Some(bar.open),
        Side::Buy => (bar.low <= limit).then_some(limit),
        Side::Sell if bar.open >= limit => Some(bar.open),
        Side::Sell => (bar.high >= limit).then_some(limit),
    }
}

/// A stop at `stop`: at the open if the bar opens at or through the stop
/// (the worse price), else at the stop if the bar's range reaches it.
fn stop_fill(side: Side, stop: Decimal, bar: &Bar) -> Option<Decimal> {
    match side {
        Side::Buy if bar.open >= stop => Some(bar.open),
        Side::Buy => (bar.high >= stop).then_some(stop),
        Side::Sell if bar.open <= stop => Some(bar.open),
        Side::Sell => (bar.low <= stop).then_some(stop),
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
        self.open.retain_mut(|order| {
            if *order.intent.symbol != *bar.symbol || order.placed_at >= bar.time {
                return true;
            }
            match Self::fill_price(&mut order.intent.order_type, order.intent.side, bar) {
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
                        reason: match order.intent.order_type {
                            OrderType::Stop { .. } | OrderType::StopLimit { .. } => "stop not reached on the next bar",
                            _ => "limit not reached on the next bar",
                        }
                        .into(),
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

    fn open_orders(&self) -> Vec<IntentId> {
        self.open.iter().map(|order| order.intent_id).collect()
    }

    fn working(&self) -> Vec<Order> {
        self.open.clone()
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

    /// A bar from decimal strings, in the usual order: open, high, low, close.
    fn ohlc(time: i64, [open, high, low, close]: [&str; 4]) -> Bar {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        Bar {
            symbol: "X".into(),
            time,
            open: d(open),
            high: d(high),
            low: d(low),
            close: d(close),
            volume: Decimal::ZERO,
        }
    }

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn stop(stop: &str) -> OrderType {
        OrderType::Stop { stop: d(stop) }
    }

    fn stop_limit(stop: &str, limit: &str) -> OrderType {
        OrderType::StopLimit { stop: d(stop), limit: d(limit) }
    }

    /// Places one GTC order of `order_type` at time 0 and shows the broker
    /// `bars` (times 1, 2, ...); returns the price and bar time of its fill.
    fn fill_of(side: Side, order_type: OrderType, bars: &[[&str; 4]]) -> Option<(Decimal, i64)> {
        let mut b = PaperBroker::default();
        b.submit(order(1, side, order_type, TimeInForce::Gtc)).unwrap();
        let mut events = Vec::new();
        for (i, prices) in bars.iter().enumerate() {
            b.on_bar(&ohlc(i as i64 + 1, *prices), &mut events);
        }
        match events.as_slice() {
            [] => None,
            [ExecutionEvent::Filled { fill }] => Some((fill.price, fill.time)),
            other => panic!("{other:?}"),
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
        assert!(matches!(
            &events[1],
            ExecutionEvent::Expired { intent_id: crate::order::OrderRef { lifetime: 1, id: 2 }, .. }
        ));
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

    // Stops. Bars are [open, high, low, close].

    #[test]
    fn a_buy_stop_fills_at_the_stop_or_at_a_gap_open() {
        // Opens at 103, above the stop of 101.5: a gap fills at the worse
        // price, max(open, stop) = 103.
        assert_eq!(fill_of(Side::Buy, stop("101.5"), &[["103", "104", "102.5", "103.5"]]), Some((d("103"), 1)));
        // Opens at 100, below the stop; the high of 102 reaches 101.5 during
        // the bar: fills at the stop, 101.5.
        assert_eq!(fill_of(Side::Buy, stop("101.5"), &[["100", "102", "99.5", "101"]]), Some((d("101.5"), 1)));
        // A high of 101.4 never reaches 101.5: no fill, the order rests;
        // the next bar opens at 101.5 exactly, which is at the stop: 101.5.
        let bars = [["100", "101.4", "99", "101"], ["101.5", "101.8", "101", "101.2"]];
        assert_eq!(fill_of(Side::Buy, stop("101.5"), &bars[..1]), None);
        assert_eq!(fill_of(Side::Buy, stop("101.5"), &bars), Some((d("101.5"), 2)));
    }

    #[test]
    fn a_sell_stop_fills_at_the_stop_or_at_a_gap_open() {
        // Opens at 97, below the stop of 98: min(open, stop) = 97.
        assert_eq!(fill_of(Side::Sell, stop("98"), &[["97", "97.5", "96", "97.2"]]), Some((d("97"), 1)));
        // Opens at 99; the low of 97.5 reaches 98 during the bar: 98.
        assert_eq!(fill_of(Side::Sell, stop("98"), &[["99", "99.5", "97.5", "98.2"]]), Some((d("98"), 1)));
        // A low of 98.01 stays above the stop: no fill.
        assert_eq!(fill_of(Side::Sell, stop("98"), &[["99", "99.5", "98.01", "98.5"]]), None);
    }

    #[test]
    fn a_buy_stop_limit_fills_on_its_trigger_bar_when_it_can() {
        // Intrabar trigger (opens at 100 < 101.5, high 102.5 >= 101.5) with
        // the limit 102 at or above the stop: fills at the stop, 101.5.
        let up = ["100", "102.5", "99.5", "102"];
        assert_eq!(fill_of(Side::Buy, stop_limit("101.5", "102"), &[up]), Some((d("101.5"), 1)));
        // Opens through the stop at 101.8: the limit 102 is tested against
        // the open first; 102 >= 101.8, so it fills at the open, 101.8.
        let gap = ["101.8", "103", "101.6", "102.5"];
        assert_eq!(fill_of(Side::Buy, stop_limit("101.5", "102"), &[gap]), Some((d("101.8"), 1)));
        // Opens through both at 103; the low of 101.9 comes back to the
        // limit 102: fills at the limit, 102.
        let gap_above = ["103", "103.5", "101.9", "102.5"];
        assert_eq!(fill_of(Side::Buy, stop_limit("101.5", "102"), &[gap_above]), Some((d("102"), 1)));
        // Limit 101 below the stop 101.5, on a bar that triggers and then
        // falls (open 101 > close 100.5) to a close at or below the limit:
        // the price went back through 101 after the trigger: fills at 101.
        let falls = ["101", "102", "100", "100.5"];
        assert_eq!(fill_of(Side::Buy, stop_limit("101.5", "101"), &[falls]), Some((d("101"), 1)));
    }

    #[test]
    fn a_buy_stop_limit_triggered_but_unfilled_waits_as_a_limit() {
        // Stop 101.5, limit 101. Bar 1 (open 100, high 102) triggers it; it
        // closes above its open, so backtrader takes the low of 99.8 as
        // coming before the trigger: no fill. Bar 2 (low 101.2) does not
        // reach the limit 101. Bar 3 opens at 101.4, above the limit, and its
        // low of 100.7 reaches it: fills at the limit, 101.
        let bars =
            [["100", "102", "99.8", "101.8"], ["101.6", "102", "101.2", "101.5"], ["101.4", "101.6", "100.7", "101"]];
        let order = stop_limit("101.5", "101");
        assert_eq!(fill_of(Side::Buy, order, &bars[..2]), None);
        assert_eq!(fill_of(Side::Buy, order, &bars), Some((d("101"), 3)));
        // Once triggered it is a limit: a later bar below the stop still fills.
        let later = [bars[0], ["100.9", "101.3", "100.5", "101"]];
        assert_eq!(fill_of(Side::Buy, order, &later), Some((d("100.9"), 2)), "opens below the limit: at the open");
        // Never triggered: a bar entirely below the stop fills nothing, even
        // one that trades through the limit.
        assert_eq!(fill_of(Side::Buy, order, &[["100.5", "101.4", "100", "100.2"]]), None);
    }

    #[test]
    fn a_sell_stop_limit_mirrors_it() {
        // Stop 98, limit 97.5 at or below the stop: the low of 97 triggers
        // it during the bar; fills at the stop, 98.
        assert_eq!(fill_of(Side::Sell, stop_limit("98", "97.5"), &[["99", "99.2", "97", "98.2"]]), Some((d("98"), 1)));
        // Opens through the stop at 97.8: limit 97.5 <= open, so at the open, 97.8.
        assert_eq!(
            fill_of(Side::Sell, stop_limit("98", "97.5"), &[["97.8", "98", "97", "97.4"]]),
            Some((d("97.8"), 1))
        );
        // Stop 98, limit 98.5 above the stop. Bar 1 triggers it (low 97.8)
        // and closes below its open (99 > 98.8): no fill on it. Bar 2 opens
        // at 98.2, below the limit, and its high of 98.7 reaches 98.5: 98.5.
        let bars = [["99", "99.1", "97.8", "98.8"], ["98.2", "98.7", "98", "98.6"]];
        assert_eq!(fill_of(Side::Sell, stop_limit("98", "98.5"), &bars[..1]), None);
        assert_eq!(fill_of(Side::Sell, stop_limit("98", "98.5"), &bars), Some((d("98.5"), 2)));
        // The same order on a bar that triggers and closes at or above its
        // open (98.5 <= 98.9) with the limit 98.5 <= close: at the limit, 98.5.
        let rises = ["98.5", "99", "97.9", "98.9"];
        assert_eq!(fill_of(Side::Sell, stop_limit("98", "98.5"), &[rises]), Some((d("98.5"), 1)));
    }

    /// backtrader's trigger-bar rule treats a flat bar (open == close) as
    /// falling for neither side: a sell may fill at its limit there, a buy not.
    #[test]
    fn a_flat_trigger_bar_follows_backtrader_on_each_side() {
        assert_eq!(fill_of(Side::Buy, stop_limit("101.5", "101"), &[["101", "102", "100", "101"]]), None);
        assert_eq!(
            fill_of(Side::Sell, stop_limit("98", "98.5"), &[["98.5", "99", "97.5", "98.5"]]),
            Some((d("98.5"), 1))
        );
    }

    #[test]
    fn ioc_stops_get_one_bar_and_day_stops_rest() {
        let mut b = PaperBroker::default();
        b.submit(order(1, Side::Buy, stop("101.5"), TimeInForce::Ioc)).unwrap();
        b.submit(order(2, Side::Buy, stop_limit("101.5", "101"), TimeInForce::Fok)).unwrap();
        b.submit(order(3, Side::Buy, stop("103"), TimeInForce::Day)).unwrap();
        let mut events = Vec::new();
        // Triggers order 2 (high 101.6), whose limit 101 the rising bar does
        // not give; order 1's stop is reached at 101.5 and fills.
        b.on_bar(&ohlc(1, ["100", "101.6", "99.5", "101.2"]), &mut events);
        let [
            ExecutionEvent::Filled { fill },
            ExecutionEvent::Expired { intent_id: crate::order::OrderRef { id: 2, .. }, reason, .. },
        ] = events.as_slice()
        else {
            panic!("{events:?}")
        };
        assert_eq!((fill.intent_id.id, fill.price), (1, d("101.5")));
        assert_eq!(reason, "limit not reached on the next bar", "triggered, so its limit is what failed");
        assert_eq!(b.open_orders().len(), 1, "the DAY stop rests");
        let mut b = PaperBroker::default();
        b.submit(order(4, Side::Sell, stop("90"), TimeInForce::Ioc)).unwrap();
        events.clear();
        b.on_bar(&ohlc(1, ["100", "101", "99", "100"]), &mut events);
        assert!(
            matches!(&events[..], [ExecutionEvent::Expired { intent_id: crate::order::OrderRef { id: 4, .. }, reason, .. }] if reason == "stop not reached on the next bar")
        );
    }
}
