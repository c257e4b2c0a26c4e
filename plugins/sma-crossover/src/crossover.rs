//! The SMA crossover signal, in exact fixed-point arithmetic.
//!
//! Closes are held as integers in units of 10^-9 ([`FIXED_SCALE`]), so the
//! sign of `SMA_fast − SMA_slow` is computed without rounding: it equals the
//! sign of `sum_fast · slow − sum_slow · fast`.

/// Decimal places of the fixed-point closes.
pub const FIXED_SCALE: u32 = 9;

/// The largest `slow` window accepted. With it, every sum and product of
/// closes built from 64-bit mantissas fits in an `i128`.
pub const MAX_WINDOW: usize = 10_000;

/// A change in the sign of `SMA_fast − SMA_slow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cross {
    Up,
    Down,
}

/// Why a pair of windows was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowError(pub String);

/// Rolling state of the two moving averages, O(slow) in size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crossover {
    fast: usize,
    slow: usize,
    /// The last `slow` closes; close number `n` lives at `n % slow`.
    ring: Vec<i128>,
    /// Where the next close goes: `seen % slow`, kept without dividing.
    slot: usize,
    /// How many closes have been pushed.
    seen: u64,
    sum_fast: i128,
    sum_slow: i128,
    /// Sign of the last non-zero difference, or 0 if there was none.
    last_sign: i8,
}

impl Crossover {
    pub fn new(fast: usize, slow: usize) -> Result<Self, WindowError> {
        if fast == 0 || fast >= slow {
            return Err(WindowError(format!("windows must satisfy 1 <= fast < slow, got fast={fast} slow={slow}")));
        }
        if slow > MAX_WINDOW {
            return Err(WindowError(format!("slow window {slow} exceeds the maximum of {MAX_WINDOW}")));
        }
        Ok(Self { fast, slow, ring: vec![0; slow], slot: 0, seen: 0, sum_fast: 0, sum_slow: 0, last_sign: 0 })
    }

    pub fn fast(&self) -> usize {
        self.fast
    }

    pub fn slow(&self) -> usize {
        self.slow
    }

    /// Adds the next close (in fixed-point units) and reports a cross at it.
    pub fn push(&mut self, close: i128) -> Option<Cross> {
        let slot = self.slot;
        if self.seen >= self.slow as u64 {
            self.sum_slow -= self.ring[slot];
        }
        if self.seen >= self.fast as u64 {
            // Close number `seen - fast`, `fast` slots behind this one.
            let back = if slot >= self.fast { slot - self.fast } else { slot + self.slow - self.fast };
            self.sum_fast -= self.ring[back];
        }
        self.ring[slot] = close;
        self.sum_slow += close;
        self.sum_fast += close;
        self.seen += 1;
        self.slot = if slot + 1 == self.slow { 0 } else { slot + 1 };
        if self.seen < self.slow as u64 {
            return None;
        }
        let sign = self.difference_sign();
        if sign == 0 {
            return None;
        }
        let previous = std::mem::replace(&mut self.last_sign, sign);
        match (previous, sign) {
            (-1, 1) => Some(Cross::Up),
            (1, -1) => Some(Cross::Down),
            _ => None,
        }
    }

    /// Sign of `sum_fast · slow − sum_slow · fast`.
    ///
    /// WebAssembly has no 128-bit multiply, so while both sums are below
    /// 2^47 the products (windows are below 2^14) are formed in `i64`, exactly.
    fn difference_sign(&self) -> i8 {
        const SMALL: i128 = 1 << 47;
        let small = |v: i128| -SMALL < v && v < SMALL;
        if small(self.sum_fast) && small(self.sum_slow) {
            let d = self.sum_fast as i64 * self.slow as i64 - self.sum_slow as i64 * self.fast as i64;
            d.signum() as i8
        } else {
            (self.sum_fast * self.slow as i128 - self.sum_slow * self.fast as i128).signum() as i8
        }
    }

    /// Appends the state to `out`; [`Crossover::decode`] reads it back.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.fast as u32).to_le_bytes());
        out.extend_from_slice(&(self.slow as u32).to_le_bytes());
        out.extend_from_slice(&self.seen.to_le_bytes());
        out.push(self.last_sign as u8);
        for close in &self.ring {
            out.extend_from_slice(&close.to_le_bytes());
        }
    }

    /// Reads a state written by [`Crossover::encode`], returning the rest.
    pub fn decode(bytes: &[u8]) -> Result<(Self, &[u8]), WindowError> {
        let short = || WindowError("state is truncated".to_string());
        let (fast, rest) = take::<4>(bytes).ok_or_else(short)?;
        let (slow, rest) = take::<4>(rest).ok_or_else(short)?;
        let (seen, rest) = take::<8>(rest).ok_or_else(short)?;
        let ([sign], rest) = take::<1>(rest).ok_or_else(short)?;
        let mut state = Self::new(u32::from_le_bytes(fast) as usize, u32::from_le_bytes(slow) as usize)?;
        state.seen = u64::from_le_bytes(seen);
        state.slot = (state.seen % state.slow as u64) as usize;
        state.last_sign = match sign as i8 {
            s @ -1..=1 => s,
            other => return Err(WindowError(format!("invalid sign {other} in state"))),
        };
        let mut rest = rest;
        for slot in state.ring.iter_mut() {
            let (close, tail) = take::<16>(rest).ok_or_else(short)?;
            *slot = i128::from_le_bytes(close);
            rest = tail;
        }
        // The sums are derived from the ring rather than stored.
        let filled = state.seen.min(state.slow as u64) as usize;
        let newest = state.seen as usize;
        for back in 1..=filled {
            let close = state.ring[(newest - back) % state.slow];
            state.sum_slow += close;
            if back <= state.fast {
                state.sum_fast += close;
            }
        }
        Ok((state, rest))
    }
}

fn take<const N: usize>(bytes: &[u8]) -> Option<([u8; N], &[u8])> {
    let (head, tail) = bytes.split_first_chunk::<N>()?;
    Some((*head, tail))
}

/// Converts `mantissa × 10^-scale` to fixed-point units, rounding half away
/// from zero when `scale` exceeds [`FIXED_SCALE`].
pub fn to_fixed(mantissa: i64, scale: u8) -> i128 {
    const POW10: [i64; 10] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000, 1_000_000_000];
    let scale = u32::from(scale);
    let m = i128::from(mantissa);
    if scale <= FIXED_SCALE {
        let factor = POW10[(FIXED_SCALE - scale) as usize];
        // An i64 product avoids a 128-bit multiply when it cannot overflow.
        if mantissa.unsigned_abs() <= (i64::MAX / factor) as u64 {
            i128::from(mantissa * factor)
        } else {
            m * i128::from(factor)
        }
    } else {
        let divisor = 10_i128.pow((scale - FIXED_SCALE).min(38));
        let (q, r) = (m / divisor, m % divisor);
        if r.abs() * 2 >= divisor { q + m.signum() } else { q }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(fast: usize, slow: usize, closes: &[i128]) -> Vec<(usize, Cross)> {
        let mut x = Crossover::new(fast, slow).unwrap();
        closes.iter().enumerate().filter_map(|(i, &c)| x.push(c).map(|cross| (i, cross))).collect()
    }

    /// Plain SMA over a slice, as a rational compared by cross-multiplying.
    fn diff_sign(closes: &[i128], i: usize, fast: usize, slow: usize) -> i128 {
        let sum = |n: usize| closes[i + 1 - n..=i].iter().sum::<i128>();
        (sum(fast) * slow as i128 - sum(slow) * fast as i128).signum()
    }

    #[test]
    fn rejects_bad_windows() {
        assert!(Crossover::new(0, 5).is_err());
        assert!(Crossover::new(5, 5).is_err());
        assert!(Crossover::new(6, 5).is_err());
        assert!(Crossover::new(2, MAX_WINDOW + 1).is_err());
        assert!(Crossover::new(1, 2).is_ok());
    }

    #[test]
    fn rolling_sums_match_direct_sums() {
        let closes: Vec<i128> = (0..200).map(|i| (i * 37 % 101) as i128 * 1000).collect();
        let mut x = Crossover::new(3, 7).unwrap();
        for (i, &c) in closes.iter().enumerate() {
            x.push(c);
            let lo = |n: usize| i.saturating_sub(n - 1);
            assert_eq!(x.sum_fast, closes[lo(3)..=i].iter().sum::<i128>());
            assert_eq!(x.sum_slow, closes[lo(7)..=i].iter().sum::<i128>());
        }
    }

    #[test]
    fn earliest_cross_is_at_index_slow() {
        // Falling then rising: d < 0 at index 2, d > 0 at index 3.
        let closes = [30, 20, 10, 40, 50].map(|c: i128| c * 1_000_000_000);
        assert_eq!(run(1, 3, &closes), vec![(3, Cross::Up)]);
    }

    #[test]
    fn zero_difference_keeps_the_previous_sign() {
        // d: idx1 = -5 (down), idx2 = 0 (flat), idx3 = -? then up.
        let closes = [20, 10, 10, 10, 30, 30, 5];
        let crosses = run(1, 2, &closes);
        // idx1: d=(10*2-30)<0; idx2,3: d=0 keep negative; idx4: up; idx5: d=0; idx6: down.
        assert_eq!(crosses, vec![(4, Cross::Up), (6, Cross::Down)]);
    }

    #[test]
    fn no_cross_without_a_previous_nonzero_sign() {
        // Flat prices: d is always zero, so there is never a cross.
        assert!(run(2, 4, &[7; 50]).is_empty());
    }

    #[test]
    fn fixed_point_conversion() {
        assert_eq!(to_fixed(12345, 2), 123_450_000_000);
        assert_eq!(to_fixed(-5, 0), -5_000_000_000);
        assert_eq!(to_fixed(15_000_000_005, 10), 1_500_000_001); // rounds half up
        assert_eq!(to_fixed(-15, 10), -2);
        assert_eq!(to_fixed(i64::MAX, 255), 0);
    }

    #[test]
    fn state_round_trips_mid_stream() {
        let closes: Vec<i128> = (0..300).map(|i| ((i * 7919) % 503) as i128).collect();
        let mut whole = Crossover::new(4, 9).unwrap();
        let mut resumed = Crossover::new(4, 9).unwrap();
        let mut expected = Vec::new();
        let mut got = Vec::new();
        for (i, &c) in closes.iter().enumerate() {
            expected.push(whole.push(c));
            if i == 150 {
                let mut bytes = Vec::new();
                resumed.encode(&mut bytes);
                let (decoded, rest) = Crossover::decode(&bytes).unwrap();
                assert!(rest.is_empty());
                assert_eq!(decoded, resumed);
                resumed = decoded;
            }
            got.push(resumed.push(c));
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn decode_rejects_garbage() {
        assert!(Crossover::decode(&[]).is_err());
        assert!(Crossover::decode(&[1, 2, 3]).is_err());
        let mut bytes = Vec::new();
        Crossover::new(2, 3).unwrap().encode(&mut bytes);
        assert!(Crossover::decode(&bytes[..bytes.len() - 1]).is_err());
        bytes[16] = 7; // last_sign
        assert!(Crossover::decode(&bytes).is_err());
    }

    proptest! {
        #[test]
        fn huge_closes_take_the_exact_path(
            closes in prop::collection::vec(-1i128..3, 0..200),
            fast in 1usize..4,
            extra in 1usize..5,
        ) {
            // Closes near 2^50 push the sums past the i64 fast path.
            let big: Vec<i128> = closes.iter().map(|c| (1i128 << 50) + c).collect();
            let slow = fast + extra;
            let mut last = 0;
            let mut direct = Vec::new();
            for i in slow - 1..big.len() {
                let s = diff_sign(&big, i, fast, slow);
                if s != 0 {
                    if last == -1 && s == 1 { direct.push((i, Cross::Up)); }
                    if last == 1 && s == -1 { direct.push((i, Cross::Down)); }
                    last = s;
                }
            }
            prop_assert_eq!(run(fast, slow, &big), direct);
        }

        #[test]
        fn fixed_point_matches_the_wide_computation(mantissa in any::<i64>(), scale in 0u8..30) {
            let wide = if u32::from(scale) <= FIXED_SCALE {
                i128::from(mantissa) * 10i128.pow(FIXED_SCALE - u32::from(scale))
            } else {
                let d = 10i128.pow(u32::from(scale) - FIXED_SCALE);
                let (q, r) = (i128::from(mantissa) / d, i128::from(mantissa) % d);
                if r.abs() * 2 >= d { q + i128::from(mantissa.signum()) } else { q }
            };
            prop_assert_eq!(to_fixed(mantissa, scale), wide);
        }

        #[test]
        fn crosses_alternate_and_match_direct_computation(
            closes in prop::collection::vec(0i128..50, 0..400),
            fast in 1usize..6,
            extra in 1usize..8,
        ) {
            let slow = fast + extra;
            let crosses = run(fast, slow, &closes);
            for pair in crosses.windows(2) {
                prop_assert_ne!(pair[0].1, pair[1].1, "crosses must alternate: {:?}", crosses);
            }
            // Recompute each cross from plain sums over the windows.
            let mut last = 0;
            let mut direct = Vec::new();
            for i in slow - 1..closes.len() {
                let s = diff_sign(&closes, i, fast, slow);
                if s != 0 {
                    if last == -1 && s == 1 { direct.push((i, Cross::Up)); }
                    if last == 1 && s == -1 { direct.push((i, Cross::Down)); }
                    last = s;
                }
            }
            prop_assert_eq!(crosses, direct);
        }
    }
}
