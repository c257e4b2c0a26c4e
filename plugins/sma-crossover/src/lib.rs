//! The SMA crossover strategy: long-only, on close prices.
//!
//! The trading rules live in plain Rust ([`SmaCrossover`]) so they are unit
//! tested natively and reused by the host as its native benchmark baseline.
//! The WebAssembly component glue is compiled only for `wasm32`.

pub mod crossover;

#[cfg(target_arch = "wasm32")]
mod component;

pub use crossover::{Cross, Crossover, FIXED_SCALE, WindowError, to_fixed};

/// A quantity as `mantissa × 10^-scale`, the contract's decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qty {
    pub mantissa: i64,
    pub scale: u8,
}

/// The order the strategy wants after a bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Buy(Qty),
    Sell(Qty),
}

/// The crossover rules plus the position they intend to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmaCrossover {
    signal: Crossover,
    qty: Qty,
    /// Whether the strategy holds, or has asked to hold, a long position.
    long: bool,
}

const STATE_MAGIC: &[u8; 4] = b"SMA1";

impl SmaCrossover {
    pub fn new(fast: usize, slow: usize, qty: Qty) -> Result<Self, WindowError> {
        if qty.mantissa <= 0 {
            return Err(WindowError("qty must be positive".to_string()));
        }
        Ok(Self { signal: Crossover::new(fast, slow)?, qty, long: false })
    }

    pub fn is_long(&self) -> bool {
        self.long
    }

    /// Feeds one close (in fixed-point units) and returns the order to place.
    ///
    /// When flat an up-cross buys `qty`; when long a down-cross sells it.
    pub fn on_close(&mut self, close: i128) -> Option<Order> {
        match (self.signal.push(close), self.long) {
            (Some(Cross::Up), false) => {
                self.long = true;
                Some(Order::Buy(self.qty))
            }
            (Some(Cross::Down), true) => {
                self.long = false;
                Some(Order::Sell(self.qty))
            }
            _ => None,
        }
    }

    /// Undoes the intended position change when an order was refused.
    pub fn on_rejected(&mut self, order: Order) {
        self.long = match order {
            Order::Buy(_) => false,
            Order::Sell(_) => true,
        };
    }

    pub fn save(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + 16 * self.signal.slow());
        out.extend_from_slice(STATE_MAGIC);
        out.extend_from_slice(&self.qty.mantissa.to_le_bytes());
        out.push(self.qty.scale);
        out.push(u8::from(self.long));
        self.signal.encode(&mut out);
        out
    }

    pub fn load(bytes: &[u8]) -> Result<Self, WindowError> {
        let rest =
            bytes.strip_prefix(STATE_MAGIC).ok_or_else(|| WindowError("state is not an SMA1 state".to_string()))?;
        let (mantissa, rest) =
            rest.split_first_chunk::<8>().ok_or_else(|| WindowError("state is truncated".to_string()))?;
        let (&[scale, long], rest) =
            rest.split_first_chunk::<2>().ok_or_else(|| WindowError("state is truncated".to_string()))?;
        let (signal, rest) = Crossover::decode(rest)?;
        if !rest.is_empty() {
            return Err(WindowError(format!("{} trailing bytes in state", rest.len())));
        }
        let qty = Qty { mantissa: i64::from_le_bytes(*mantissa), scale };
        let mut strategy = Self::new(signal.fast(), signal.slow(), qty)?;
        strategy.signal = signal;
        strategy.long = match long {
            0 => false,
            1 => true,
            other => return Err(WindowError(format!("invalid position flag {other}"))),
        };
        Ok(strategy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: Qty = Qty { mantissa: 1, scale: 0 };

    #[test]
    fn buys_when_flat_and_sells_when_long() {
        let mut s = SmaCrossover::new(1, 2, ONE).unwrap();
        let orders: Vec<_> = [20, 10, 30, 5, 40].iter().map(|&c| s.on_close(c)).collect();
        assert_eq!(orders, vec![None, None, Some(Order::Buy(ONE)), Some(Order::Sell(ONE)), Some(Order::Buy(ONE))]);
    }

    #[test]
    fn a_rejected_buy_leaves_it_flat() {
        let mut s = SmaCrossover::new(1, 2, ONE).unwrap();
        s.on_close(20);
        s.on_close(10);
        let buy = s.on_close(30).unwrap();
        s.on_rejected(buy);
        assert!(!s.is_long());
        // Flat, so the next down-cross sells nothing.
        assert_eq!(s.on_close(5), None);
    }

    #[test]
    fn state_round_trips_exactly() {
        let mut s = SmaCrossover::new(3, 5, Qty { mantissa: 25, scale: 1 }).unwrap();
        for c in [5, 9, 2, 8, 8, 1, 7, 3, 9] {
            s.on_close(c);
        }
        let bytes = s.save();
        assert_eq!(SmaCrossover::load(&bytes).unwrap(), s);
        assert!(SmaCrossover::load(&bytes[..bytes.len() - 3]).is_err());
        assert!(SmaCrossover::load(b"SMA2").is_err());
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(SmaCrossover::load(&padded).is_err());
    }

    #[test]
    fn rejects_non_positive_qty() {
        assert!(SmaCrossover::new(1, 2, Qty { mantissa: 0, scale: 0 }).is_err());
        assert!(SmaCrossover::new(1, 2, Qty { mantissa: -1, scale: 0 }).is_err());
    }
}

/// Reads the little-endian fields of a saved state, failing on truncation.
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let (head, tail) = self.bytes.split_first_chunk::<N>().ok_or("state is truncated")?;
        self.bytes = tail;
        Ok(*head)
    }

    pub fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }

    pub fn u32(&mut self) -> Result<u32, String> {
        self.take().map(u32::from_le_bytes)
    }

    pub fn u64(&mut self) -> Result<u64, String> {
        self.take().map(u64::from_le_bytes)
    }

    pub fn i64(&mut self) -> Result<i64, String> {
        self.take().map(i64::from_le_bytes)
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = self.u32()? as usize;
        if len > self.bytes.len() {
            return Err("state is truncated".to_string());
        }
        let (head, tail) = self.bytes.split_at(len);
        self.bytes = tail;
        Ok(head)
    }

    pub fn string(&mut self) -> Result<String, String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| "state holds invalid UTF-8".into())
    }

    pub fn finish(self) -> Result<(), String> {
        if self.bytes.is_empty() { Ok(()) } else { Err(format!("{} trailing bytes in state", self.bytes.len())) }
    }
}

#[cfg(test)]
mod parse_tests {
    use super::*;

    #[test]
    fn reader_refuses_truncation_and_trailing_bytes() {
        let mut r = Reader::new(&[5, 0, 0, 0, b'a']);
        assert!(r.bytes().is_err());
        let mut r = Reader::new(&[1, 0, 0, 0, b'a', 9]);
        assert_eq!(r.string().unwrap(), "a");
        assert!(r.finish().is_err());
    }
}
