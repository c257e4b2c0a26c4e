//! How an engine's events are told: a line of output for each, and a
//! journal record for those notifications use.

use super::Event;
use crate::bar::format_time;

/// The journal line for an engine event, if it is one notifications use.
pub(super) fn journal_line(strategy: &str, event: &Event) -> Option<(&'static str, serde_json::Value)> {
    Some(match event {
        Event::OrderPlaced { intent_id, intent, .. } => (
            "order.submitted",
            serde_json::json!({ "strategy": strategy, "intent": label(*intent_id), "symbol": &*intent.symbol,
                "side": intent.side.to_string(), "qty": intent.qty.to_string(), "type": intent.order_type.to_string() }),
        ),
        Event::Filled { fill, position } => (
            "order.filled",
            serde_json::json!({ "strategy": strategy, "intent": label(fill.intent_id), "symbol": &*fill.symbol,
                "side": fill.side.to_string(), "qty": fill.qty.to_string(), "price": fill.price.to_string(), "position": position.to_string() }),
        ),
        Event::Rejected { intent_id, symbol, reason, .. } => (
            "order.rejected",
            serde_json::json!({ "strategy": strategy, "intent": label(*intent_id), "symbol": &**symbol, "reason": reason }),
        ),
        Event::Canceled { intent_id, .. } => {
            ("order.canceled", serde_json::json!({ "strategy": strategy, "intent": label(*intent_id) }))
        }
        Event::Notified { level, message, .. } => (
            "strategy.notify",
            serde_json::json!({ "strategy": strategy, "level": format!("{level:?}").to_lowercase(), "message": message }),
        ),
        Event::StrategyRestarted { error } => {
            ("strategy.trapped", serde_json::json!({ "strategy": strategy, "error": error }))
        }
        Event::Pnl { .. } => return None,
    })
}

/// How an order is shown: the strategy's own by its id, as `#n`, a webhook
/// order's as `#wn`.
fn label(order: crate::order::OrderRef) -> String {
    if order.is_external() { format!("w{}", order.id) } else { order.id.to_string() }
}

/// One line of output for an event.
pub(super) fn describe(strategy: &str, event: &Event) -> String {
    match event {
        Event::OrderPlaced { intent_id, intent, time } => format!(
            "[{strategy}] {}  order #{}: {} {} {} ({})\n",
            format_time(*time),
            label(*intent_id),
            intent.side,
            intent.qty,
            intent.symbol,
            intent.order_type
        ),
        Event::Filled { fill, position } => format!(
            "[{strategy}] {}  fill  #{}: {} {} {} @ {}  → position {position}\n",
            format_time(fill.time),
            label(fill.intent_id),
            fill.side,
            fill.qty,
            fill.symbol,
            fill.price
        ),
        Event::Rejected { intent_id, symbol, reason, time } => {
            format!("[{strategy}] {}  rejected #{} ({symbol}): {reason}\n", format_time(*time), label(*intent_id))
        }
        Event::Canceled { intent_id, time } => {
            format!("[{strategy}] {}  canceled #{}\n", format_time(*time), label(*intent_id))
        }
        Event::Notified { level, message, time } => {
            format!("[{strategy}] {}  {level:?}: {message}\n", format_time(*time))
        }
        Event::StrategyRestarted { error } => format!("[{strategy}] {error}\n"),
        Event::Pnl { time, realized, unrealized, equity } => format!(
            "[{strategy}] {}  pnl: realized {} unrealized {} equity {}\n",
            format_time(*time),
            realized.round_dp(2),
            unrealized.round_dp(2),
            equity.round_dp(2)
        ),
    }
}
