"""Unit tests of the rules under CPython: `python3 -m unittest` in this folder.

They mirror the Rust crate's tests (`plugins/sma-crossover/src`), and check
the crosses against SMAs recomputed from scratch with exact fractions.
"""

import random
import unittest
from fractions import Fraction

from sma_crossover import BUY, SELL, Crossover, ParamError, SmaState, StateError, to_fixed


def crosses(fast, slow, closes):
    x = Crossover(fast, slow)
    out = []
    for i, c in enumerate(closes):
        # Hold a position both ways so every cross shows as an order.
        x.long = x.last_sign == 1
        order = x.on_close(c)
        if order is not None:
            out.append((i, "up" if order == BUY else "down"))
    return out


def direct(fast, slow, closes):
    """Crosses from SMAs recomputed at every bar, as exact fractions."""
    out, last = [], 0
    for i in range(slow - 1, len(closes)):
        d = Fraction(sum(closes[i + 1 - fast : i + 1]), fast) - Fraction(sum(closes[i + 1 - slow : i + 1]), slow)
        s = (d > 0) - (d < 0)
        if s:
            if last == -1 and s == 1:
                out.append((i, "up"))
            if last == 1 and s == -1:
                out.append((i, "down"))
            last = s
    return out


class Rules(unittest.TestCase):
    def test_rejects_bad_windows(self):
        for fast, slow in [(0, 5), (5, 5), (6, 5), (2, 10_001)]:
            with self.assertRaises(ParamError):
                SmaState(fast, slow, 1, 0)
        SmaState(1, 2, 1, 0)

    def test_rejects_non_positive_qty(self):
        for mantissa in (0, -1):
            with self.assertRaises(ParamError) as e:
                SmaState(1, 2, mantissa, 0)
            self.assertEqual(e.exception.key, "qty")

    def test_rolling_sums_match_direct_sums(self):
        closes = [(i * 37 % 101) * 1000 for i in range(200)]
        x = Crossover(3, 7)
        for i, c in enumerate(closes):
            x.on_close(c)
            self.assertEqual(x.sum_fast, sum(closes[max(0, i - 2) : i + 1]))
            self.assertEqual(x.sum_slow, sum(closes[max(0, i - 6) : i + 1]))

    def test_earliest_cross_is_at_index_slow(self):
        closes = [c * 10**9 for c in (30, 20, 10, 40, 50)]
        self.assertEqual(crosses(1, 3, closes), [(3, "up")])

    def test_zero_difference_keeps_the_previous_sign(self):
        self.assertEqual(crosses(1, 2, [20, 10, 10, 10, 30, 30, 5]), [(4, "up"), (6, "down")])

    def test_no_cross_without_a_previous_nonzero_sign(self):
        self.assertEqual(crosses(2, 4, [7] * 50), [])

    def test_buys_when_flat_and_sells_when_long(self):
        x = Crossover(1, 2)
        self.assertEqual([x.on_close(c) for c in (20, 10, 30, 5, 40)], [None, None, BUY, SELL, BUY])

    def test_a_rejected_buy_leaves_it_flat(self):
        x = Crossover(1, 2)
        x.on_close(20)
        x.on_close(10)
        self.assertEqual(x.on_close(30), BUY)
        x.on_rejected(BUY)
        self.assertFalse(x.long)
        # Flat, so the next down-cross sells nothing.
        self.assertIsNone(x.on_close(5))

    def test_a_rejected_sell_stays_long(self):
        x = Crossover(1, 2)
        for c in (20, 10, 30):
            x.on_close(c)
        self.assertEqual(x.on_close(5), SELL)
        x.on_rejected(SELL)
        self.assertTrue(x.long)

    def test_crosses_match_exact_fractions(self):
        rng = random.Random(7)
        for _ in range(300):
            fast = rng.randint(1, 5)
            slow = fast + rng.randint(1, 7)
            closes = [rng.randrange(50) for _ in range(rng.randrange(400))]
            found = crosses(fast, slow, closes)
            self.assertEqual(found, direct(fast, slow, closes), (fast, slow, closes))
            for a, b in zip(found, found[1:]):
                self.assertNotEqual(a[1], b[1])

    def test_huge_closes_stay_exact(self):
        rng = random.Random(11)
        for _ in range(100):
            fast = rng.randint(1, 3)
            slow = fast + rng.randint(1, 4)
            closes = [(1 << 90) + rng.randrange(-1, 3) for _ in range(200)]
            self.assertEqual(crosses(fast, slow, closes), direct(fast, slow, closes))


class FixedPoint(unittest.TestCase):
    def test_conversion(self):
        self.assertEqual(to_fixed(12345, 2), 123_450_000_000)
        self.assertEqual(to_fixed(-5, 0), -5_000_000_000)
        self.assertEqual(to_fixed(15_000_000_005, 10), 1_500_000_001)  # half rounds up
        self.assertEqual(to_fixed(-15, 10), -2)  # and away from zero
        self.assertEqual(to_fixed(-14, 10), -1)
        self.assertEqual(to_fixed(2**63 - 1, 255), 0)

    def test_matches_the_wide_computation(self):
        rng = random.Random(3)
        for _ in range(5000):
            mantissa = rng.randrange(-(2**63), 2**63)
            scale = rng.randrange(30)
            if scale <= 9:
                want = mantissa * 10 ** (9 - scale)
            else:
                q = Fraction(mantissa, 10 ** (scale - 9))
                want = int(abs(q) + Fraction(1, 2)) * (1 if mantissa >= 0 else -1)
            self.assertEqual(to_fixed(mantissa, scale), want, (mantissa, scale))


class State(unittest.TestCase):
    def run_batch(self, state, closes, symbols=("AAA", "BBB")):
        names = list(symbols)
        return state.on_bars(names, bytes([2] * len(names)), [i % len(names) for i in range(len(closes))], closes)

    def test_round_trips_mid_stream(self):
        rng = random.Random(5)
        closes = [rng.randrange(9000, 11000) for _ in range(600)]
        whole = SmaState(4, 9, 25, 1)
        expected = self.run_batch(whole, closes)
        resumed = SmaState(4, 9, 25, 1)
        got = self.run_batch(resumed, closes[:301])
        # Leave an order pending across the save.
        pending_id = got[-1][1]
        data = resumed.encode()
        restored = SmaState.decode(data)
        self.assertEqual(restored.encode(), data)
        self.assertIn(pending_id, restored.pending)
        # Bar indexes restart at 0 in the second batch.
        got += [(i + 301, *rest) for i, *rest in self.run_batch(restored, closes[301:], ("BBB", "AAA"))]
        self.assertEqual(got, expected)
        self.assertEqual(list(restored.symbols), ["AAA", "BBB"])

    def test_order_ids_count_from_one(self):
        state = SmaState(1, 2, 1, 0)
        orders = state.on_bars(["X"], bytes([0]), [0] * 5, [20, 10, 30, 5, 40])
        self.assertEqual([(i, oid, side) for i, oid, _, side in orders], [(2, 1, BUY), (3, 2, SELL), (4, 3, BUY)])
        self.assertEqual(list(state.pending), [1, 2, 3])
        state.on_fill(2)
        self.assertEqual(state.on_reject(3), ("X", BUY))
        self.assertIsNone(state.on_reject(3))
        self.assertFalse(state.symbols["X"].long)
        self.assertEqual(list(state.pending), [1])

    def test_decode_rejects_garbage(self):
        good = SmaState(2, 3, 1, 0)
        good.on_bars(["X"], bytes([0]), [0] * 4, [1, 2, 3, 4])
        data = good.encode()
        for bad in [b"", b"SMPY", b"SMA1" + data[4:], data[:-1], data + b"\0", data[:4] + b"\x02" + data[5:]]:
            with self.assertRaises(StateError):
                SmaState.decode(bad)


if __name__ == "__main__":
    unittest.main()
