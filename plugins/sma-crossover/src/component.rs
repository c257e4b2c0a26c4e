//! The WebAssembly component glue: maps the contract onto [`SmaCrossover`].

use std::cell::RefCell;

use crate::{Order, Qty, SmaCrossover, to_fixed};

wit_bindgen::generate!({
    path: "../../wit",
    world: "plugin",
});

use exports::stratbox::strategy::strategy::Guest;
use stratbox::strategy::host::{LogLevel, log};
use stratbox::strategy::types::{
    Action, Bar, BarAction, Decimal, Fill, Info, OrderIntent, OrderType, Param, ParamKind, ParamSpec, Rejection, Side,
    Signal, TimeInForce,
};

const DEFAULT_FAST: usize = 5;
const DEFAULT_SLOW: usize = 20;

/// Everything the strategy remembers between calls.
struct State {
    fast: usize,
    slow: usize,
    qty: Qty,
    /// One crossover per symbol seen, in order of first appearance.
    symbols: Vec<(String, SmaCrossover)>,
    /// Intent number the host will give the next submit.
    next_intent: u64,
    /// Submitted intents not yet filled or refused.
    pending: Vec<(u64, String, Order)>,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

struct Component;

impl Guest for Component {
    fn describe() -> Info {
        let spec = |key: &str, kind, default: &str, description: &str| ParamSpec {
            key: key.to_string(),
            kind,
            default: default.to_string(),
            description: description.to_string(),
        };
        Info {
            name: "sma-crossover".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Long-only moving-average crossover on closes".to_string(),
            params: vec![
                spec("fast", ParamKind::Integer, "5", "bars in the fast average"),
                spec("slow", ParamKind::Integer, "20", "bars in the slow average"),
                spec("qty", ParamKind::Decimal, "1", "quantity bought on an up-cross"),
            ],
        }
    }

    fn init(params: Vec<Param>) -> Result<(), String> {
        let mut fast = DEFAULT_FAST;
        let mut slow = DEFAULT_SLOW;
        let mut qty = Qty { mantissa: 1, scale: 0 };
        for Param { key, value } in params {
            match key.as_str() {
                "fast" => fast = parse_window(&key, &value)?,
                "slow" => slow = parse_window(&key, &value)?,
                "qty" => qty = crate::parse_qty(&value).map_err(|e| format!("qty: {e}"))?,
                other => return Err(format!("unknown parameter `{other}`")),
            }
        }
        // Validate the combination once, before any bar arrives.
        SmaCrossover::new(fast, slow, qty).map_err(|e| e.0)?;
        log(LogLevel::Info, &format!("sma-crossover ready: fast={fast} slow={slow}"));
        STATE.with_borrow_mut(|state| {
            *state = Some(State { fast, slow, qty, symbols: Vec::new(), next_intent: 1, pending: Vec::new() })
        });
        Ok(())
    }

    fn on_bars(bars: Vec<Bar>) -> Vec<BarAction> {
        with_state(|state| {
            let mut actions = Vec::new();
            for (index, bar) in bars.into_iter().enumerate() {
                let close = to_fixed(bar.close.mantissa, bar.close.scale);
                let Some(order) = state.crossover(&bar.symbol).on_close(close) else {
                    continue;
                };
                let action = state.submit(bar.symbol, order);
                actions.push(BarAction { bar: index as u32, action });
            }
            actions
        })
        .unwrap_or_default()
    }

    fn on_fill(fill: Fill) -> Vec<Action> {
        with_state(|state| state.pending.retain(|(intent, ..)| *intent != fill.intent));
        Vec::new()
    }

    fn on_reject(rejection: Rejection) -> Vec<Action> {
        with_state(|state| {
            let at = state.pending.iter().position(|(intent, ..)| *intent == rejection.intent)?;
            let (_, symbol, order) = state.pending.remove(at);
            state.crossover(&symbol).on_rejected(order);
            log(LogLevel::Warn, &format!("intent {} refused: {}", rejection.intent, rejection.reason));
            Some(())
        });
        Vec::new()
    }

    fn on_signal(signal: Signal) -> Vec<Action> {
        log(LogLevel::Debug, &format!("ignoring signal from {}", signal.source));
        Vec::new()
    }

    fn save_state() -> Vec<u8> {
        with_state(|state| state.encode()).unwrap_or_default()
    }

    fn load_state(bytes: Vec<u8>) -> Result<(), String> {
        let state = State::decode(&bytes)?;
        STATE.with_borrow_mut(|slot| *slot = Some(state));
        Ok(())
    }
}

impl State {
    fn crossover(&mut self, symbol: &str) -> &mut SmaCrossover {
        let at = match self.symbols.iter().position(|(s, _)| s == symbol) {
            Some(at) => at,
            None => {
                // Windows and qty were validated in `init`.
                let fresh = SmaCrossover::new(self.fast, self.slow, self.qty)
                    .unwrap_or_else(|e| unreachable!("validated in init: {}", e.0));
                self.symbols.push((symbol.to_string(), fresh));
                self.symbols.len() - 1
            }
        };
        &mut self.symbols[at].1
    }

    fn submit(&mut self, symbol: String, order: Order) -> Action {
        let (side, qty) = match order {
            Order::Buy(qty) => (Side::Buy, qty),
            Order::Sell(qty) => (Side::Sell, qty),
        };
        self.pending.push((self.next_intent, symbol.clone(), order));
        self.next_intent += 1;
        Action::Submit(OrderIntent {
            symbol,
            side,
            qty: Decimal { mantissa: qty.mantissa, scale: qty.scale },
            order_type: OrderType::Market,
            time_in_force: TimeInForce::Gtc,
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = b"SMAP".to_vec();
        out.extend_from_slice(&(self.fast as u32).to_le_bytes());
        out.extend_from_slice(&(self.slow as u32).to_le_bytes());
        out.extend_from_slice(&self.qty.mantissa.to_le_bytes());
        out.push(self.qty.scale);
        out.extend_from_slice(&self.next_intent.to_le_bytes());
        put_len(&mut out, self.symbols.len());
        for (symbol, crossover) in &self.symbols {
            put_bytes(&mut out, symbol.as_bytes());
            put_bytes(&mut out, &crossover.save());
        }
        put_len(&mut out, self.pending.len());
        for (intent, symbol, order) in &self.pending {
            out.extend_from_slice(&intent.to_le_bytes());
            put_bytes(&mut out, symbol.as_bytes());
            out.push(matches!(order, Order::Buy(_)) as u8);
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut r = crate::Reader::new(bytes.strip_prefix(b"SMAP").ok_or("not an SMAP state")?);
        let fast = r.u32()? as usize;
        let slow = r.u32()? as usize;
        let qty = Qty { mantissa: r.i64()?, scale: r.u8()? };
        SmaCrossover::new(fast, slow, qty).map_err(|e| e.0)?;
        let next_intent = r.u64()?;
        let mut symbols = Vec::new();
        for _ in 0..r.u32()? {
            let symbol = r.string()?;
            let crossover = SmaCrossover::load(r.bytes()?).map_err(|e| e.0)?;
            symbols.push((symbol, crossover));
        }
        let mut pending = Vec::new();
        for _ in 0..r.u32()? {
            let intent = r.u64()?;
            let symbol = r.string()?;
            let order = if r.u8()? == 1 { Order::Buy(qty) } else { Order::Sell(qty) };
            pending.push((intent, symbol, order));
        }
        r.finish()?;
        Ok(Self { fast, slow, qty, symbols, next_intent, pending })
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&(len as u32).to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> Option<R> {
    STATE.with_borrow_mut(|state| match state {
        Some(state) => Some(f(state)),
        None => {
            log(LogLevel::Error, "called before init");
            None
        }
    })
}

fn parse_window(key: &str, value: &str) -> Result<usize, String> {
    value.parse::<usize>().map_err(|_| format!("{key} must be a positive integer, got `{value}`"))
}

export!(Component);
