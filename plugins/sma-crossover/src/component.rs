//! The WebAssembly component: maps the contract onto [`SmaCrossover`]
//! through the Rust SDK.

use stratbox_sdk::{
    Action, BarAction, Bars, Decimal, Error, Fill, Info, Level, Order, ParamValue, Params, Rejection, Side, Signal,
    Strategy, export_strategy, host,
};

use crate::{Order as Intent, Qty, SmaCrossover, to_fixed};

/// One instance: a crossover per symbol, and the orders it has in flight.
struct Sma {
    fast: usize,
    slow: usize,
    qty: Qty,
    /// One crossover per symbol seen, in order of first appearance.
    symbols: Vec<(String, SmaCrossover)>,
    /// The id the next order gets.
    next_id: u64,
    /// Submitted orders not yet filled or refused.
    pending: Vec<(u64, String, Intent)>,
}

const STATE_MAGIC: &[u8; 4] = b"SMA2";

impl Strategy for Sma {
    fn describe() -> Info {
        Info::new("sma-crossover", env!("CARGO_PKG_VERSION"), "Long-only moving-average crossover on closes")
            .param("fast", ParamValue::Integer(5), "bars in the fast average")
            .param("slow", ParamValue::Integer(20), "bars in the slow average")
            .param("qty", ParamValue::Decimal(Decimal::new(1, 0)), "quantity bought on an up-cross")
    }

    fn create(params: &Params) -> Result<Self, Error> {
        let window = |key: &str| {
            let n = params.integer(key)?;
            usize::try_from(n).map_err(|_| Error::invalid_param(key, format!("must be a positive integer, got {n}")))
        };
        let (fast, slow) = (window("fast")?, window("slow")?);
        let qty = params.decimal("qty")?;
        if qty.mantissa <= 0 {
            return Err(Error::invalid_param("qty", "must be positive"));
        }
        let qty = Qty { mantissa: qty.mantissa, scale: qty.scale };
        // Validate the combination once, before any bar arrives.
        SmaCrossover::new(fast, slow, qty).map_err(|e| Error::invalid_param("fast", e.0))?;
        host::log(Level::Info, &format!("sma-crossover ready: fast={fast} slow={slow}"));
        Ok(Sma { fast, slow, qty, symbols: Vec::new(), next_id: 1, pending: Vec::new() })
    }

    fn restore(_: &Params, state: &[u8]) -> Result<Self, Error> {
        Sma::decode(state).map_err(Error::IncompatibleState)
    }

    fn on_bars(&mut self, bars: &Bars, out: &mut Vec<BarAction>) {
        for bar in bars.iter() {
            let close = to_fixed(bar.close.mantissa, bar.close.scale);
            if let Some(intent) = self.crossover(bar.symbol).on_close(close) {
                out.push(bar.act(self.submit(bar.symbol, intent)));
            }
        }
    }

    fn on_fill(&mut self, fill: &Fill) -> Vec<Action> {
        self.pending.retain(|(id, ..)| *id != fill.order);
        Vec::new()
    }

    fn on_reject(&mut self, rejection: &Rejection) -> Vec<Action> {
        if let Some(at) = self.pending.iter().position(|(id, ..)| *id == rejection.order) {
            let (_, symbol, intent) = self.pending.remove(at);
            self.crossover(&symbol).on_rejected(intent);
            host::log(Level::Warning, &format!("order {} refused: {}", rejection.order, rejection.reason));
        }
        Vec::new()
    }

    fn on_signal(&mut self, signal: &Signal) -> Vec<Action> {
        host::log(Level::Debug, &format!("ignoring signal from {}", signal.source));
        Vec::new()
    }

    fn save_state(&self) -> Vec<u8> {
        self.encode()
    }
}

impl Sma {
    fn crossover(&mut self, symbol: &str) -> &mut SmaCrossover {
        let at = match self.symbols.iter().position(|(s, _)| s == symbol) {
            Some(at) => at,
            None => {
                // Windows and qty were validated in `create`.
                let fresh = SmaCrossover::new(self.fast, self.slow, self.qty)
                    .unwrap_or_else(|e| unreachable!("validated in create: {}", e.0));
                self.symbols.push((symbol.to_string(), fresh));
                self.symbols.len() - 1
            }
        };
        &mut self.symbols[at].1
    }

    fn submit(&mut self, symbol: &str, intent: Intent) -> Action {
        let (side, qty) = match intent {
            Intent::Buy(qty) => (Side::Buy, qty),
            Intent::Sell(qty) => (Side::Sell, qty),
        };
        let id = self.next_id;
        self.next_id += 1;
        self.pending.push((id, symbol.to_string(), intent));
        Action::Submit(Order::market(id, symbol, side, Decimal::new(qty.mantissa, qty.scale)))
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = STATE_MAGIC.to_vec();
        out.extend_from_slice(&(self.fast as u32).to_le_bytes());
        out.extend_from_slice(&(self.slow as u32).to_le_bytes());
        out.extend_from_slice(&self.qty.mantissa.to_le_bytes());
        out.push(self.qty.scale);
        out.extend_from_slice(&self.next_id.to_le_bytes());
        put_len(&mut out, self.symbols.len());
        for (symbol, crossover) in &self.symbols {
            put_bytes(&mut out, symbol.as_bytes());
            put_bytes(&mut out, &crossover.save());
        }
        put_len(&mut out, self.pending.len());
        for (id, symbol, intent) in &self.pending {
            out.extend_from_slice(&id.to_le_bytes());
            put_bytes(&mut out, symbol.as_bytes());
            out.push(matches!(intent, Intent::Buy(_)) as u8);
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut r = crate::Reader::new(bytes.strip_prefix(STATE_MAGIC).ok_or("not an SMA2 state")?);
        let fast = r.u32()? as usize;
        let slow = r.u32()? as usize;
        let qty = Qty { mantissa: r.i64()?, scale: r.u8()? };
        SmaCrossover::new(fast, slow, qty).map_err(|e| e.0)?;
        let next_id = r.u64()?;
        let mut symbols = Vec::new();
        for _ in 0..r.u32()? {
            let symbol = r.string()?;
            let crossover = SmaCrossover::load(r.bytes()?).map_err(|e| e.0)?;
            symbols.push((symbol, crossover));
        }
        let mut pending = Vec::new();
        for _ in 0..r.u32()? {
            let id = r.u64()?;
            let symbol = r.string()?;
            let intent = if r.u8()? == 1 { Intent::Buy(qty) } else { Intent::Sell(qty) };
            pending.push((id, symbol, intent));
        }
        r.finish()?;
        Ok(Sma { fast, slow, qty, symbols, next_id, pending })
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&(len as u32).to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

export_strategy!(Sma);
