//! {{name}}: a stratbox strategy.
//!
//! Rule: after `run` closes in a row higher than the one before, buy `qty`;
//! after `run` closes in a row lower, sell what was bought. One position per
//! symbol, long only. Replace it with your own rules.

use stratbox_sdk::{
    Action, BarAction, Bars, Decimal, Error, Fill, Info, Level, Order, ParamValue, Params, Rejection, Side, Strategy,
    export_strategy, host,
};

struct Streak {
    run: u32,
    qty: Decimal,
    /// Per symbol: last close (mantissa, scale), the streak (+ up, - down),
    /// and whether it holds (or has asked for) a position.
    symbols: Vec<(String, i64, u8, i32, bool)>,
    /// The id of the next order: never reused, so it is saved with the state.
    next_id: u64,
}

impl Strategy for Streak {
    fn describe() -> Info {
        Info::new("{{name}}", "0.1.0", "buys a run of rising closes, sells a run of falling ones")
            .param("run", ParamValue::Integer(3), "closes in a row that make a signal")
            .param("qty", ParamValue::Decimal(Decimal::new(1, 0)), "quantity bought")
    }

    fn create(params: &Params) -> Result<Self, Error> {
        let run = params.integer("run")?;
        let run = u32::try_from(run).ok().filter(|r| (1..=1000).contains(r));
        let run = run.ok_or_else(|| Error::invalid_param("run", "must be between 1 and 1000"))?;
        let qty = params.decimal("qty")?;
        if qty.mantissa <= 0 {
            return Err(Error::invalid_param("qty", "must be positive"));
        }
        Ok(Streak { run, qty, symbols: Vec::new(), next_id: 1 })
    }

    fn restore(params: &Params, state: &[u8]) -> Result<Self, Error> {
        let mut strategy = Self::create(params)?;
        strategy.decode(state).ok_or_else(|| Error::IncompatibleState("not a {{name}} state".into()))?;
        Ok(strategy)
    }

    fn on_bars(&mut self, bars: &Bars, out: &mut Vec<BarAction>) {
        for bar in bars.iter() {
            let at = match self.symbols.iter().position(|s| s.0 == bar.symbol) {
                Some(at) => at,
                None => {
                    self.symbols.push((bar.symbol.to_string(), bar.close.mantissa, bar.close.scale, 0, false));
                    continue;
                }
            };
            let (_, last, scale, streak, long) = &mut self.symbols[at];
            // Compare at one scale: prices of a symbol share one within a batch,
            // but may differ between batches.
            let (a, b) = same_scale((*last, *scale), (bar.close.mantissa, bar.close.scale));
            *streak = match b.cmp(&a) {
                std::cmp::Ordering::Greater => (*streak).max(0) + 1,
                std::cmp::Ordering::Less => (*streak).min(0) - 1,
                std::cmp::Ordering::Equal => 0,
            };
            (*last, *scale) = (bar.close.mantissa, bar.close.scale);
            let side = match (*streak, *long) {
                (s, false) if s >= self.run as i32 => Side::Buy,
                (s, true) if s <= -(self.run as i32) => Side::Sell,
                _ => continue,
            };
            *long = side == Side::Buy;
            let id = self.next_id;
            self.next_id += 1;
            out.push(bar.act(Action::Submit(Order::market(id, bar.symbol, side, self.qty))));
        }
    }

    fn on_fill(&mut self, fill: &Fill) -> Vec<Action> {
        let cash = host::account().cash;
        host::log(Level::Info, &format!("order {} filled; cash now {}e-{}", fill.order, cash.mantissa, cash.scale));
        Vec::new()
    }

    fn on_reject(&mut self, rejection: &Rejection) -> Vec<Action> {
        // Undo the intended position: the order never happened.
        if let Some(s) = self.symbols.iter_mut().find(|s| s.0 == rejection.symbol) {
            s.4 = !s.4;
        }
        vec![Action::notify(Level::Warning, format!("order {} refused: {}", rejection.order, rejection.reason))]
    }

    fn save_state(&self) -> Vec<u8> {
        let mut out = b"STRK".to_vec();
        out.extend_from_slice(&self.next_id.to_le_bytes());
        for (symbol, last, scale, streak, long) in &self.symbols {
            out.extend_from_slice(&(symbol.len() as u32).to_le_bytes());
            out.extend_from_slice(symbol.as_bytes());
            out.extend_from_slice(&last.to_le_bytes());
            out.push(*scale);
            out.extend_from_slice(&streak.to_le_bytes());
            out.push(u8::from(*long));
        }
        out
    }
}

impl Streak {
    fn decode(&mut self, state: &[u8]) -> Option<()> {
        let mut rest = state.strip_prefix(b"STRK")?;
        let mut take = |n: usize| -> Option<&[u8]> {
            let (head, tail) = rest.split_at_checked(n)?;
            rest = tail;
            Some(head)
        };
        self.next_id = u64::from_le_bytes(take(8)?.try_into().ok()?);
        let mut symbols = Vec::new();
        while let Some(len) = take(4) {
            let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
            let symbol = String::from_utf8(take(len)?.to_vec()).ok()?;
            let last = i64::from_le_bytes(take(8)?.try_into().ok()?);
            let scale = take(1)?[0];
            let streak = i32::from_le_bytes(take(4)?.try_into().ok()?);
            let long = take(1)?[0] == 1;
            symbols.push((symbol, last, scale, streak, long));
        }
        self.symbols = symbols;
        Some(())
    }
}

/// Two prices as mantissas at the larger of their scales.
fn same_scale(a: (i64, u8), b: (i64, u8)) -> (i128, i128) {
    let scale = a.1.max(b.1);
    let at = |(m, s): (i64, u8)| i128::from(m) * 10_i128.pow(u32::from(scale - s));
    (at(a), at(b))
}

export_strategy!(Streak);
