"""The SMA crossover rules in plain Python, with no WebAssembly bindings.

The same rules as the Rust plugin (`plugins/sma-crossover`), to the bar:

- Closes become integers in units of 10^-9 (`to_fixed`), rounding half away
  from zero when a price has more than 9 decimals.
- A cross is a change in the sign of `SMA_fast - SMA_slow`, computed exactly
  as the sign of `sum_fast * slow - sum_slow * fast`. A zero difference keeps
  the previous sign; there is no cross before `slow` closes, nor without an
  earlier non-zero sign.
- Long only: flat and an up-cross buys `qty`; long and a down-cross sells it.
  The position is the one the strategy intends: a refused order undoes it.
- One crossover per symbol, in order of first appearance.

Python integers are unbounded, so every sum and product is exact, as the Rust
plugin's i128 arithmetic is within its limits.

This module is imported by `app.py` (the component) and by the unit tests,
which run it under CPython.
"""

FIXED_SCALE = 9
MAX_WINDOW = 10_000

BUY = 0
SELL = 1

_POW10 = [10**k for k in range(39)]


class ParamError(Exception):
    """A parameter out of range: `key` and a message."""

    def __init__(self, key, message):
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


class StateError(Exception):
    """Saved state this build cannot read."""


def to_fixed(mantissa, scale):
    """`mantissa x 10^-scale` in units of 10^-9, rounding half away from zero."""
    if scale <= FIXED_SCALE:
        return mantissa * _POW10[FIXED_SCALE - scale]
    divisor = _POW10[min(scale - FIXED_SCALE, 38)]
    q, r = divmod(abs(mantissa), divisor)
    if 2 * r >= divisor:
        q += 1
    return -q if mantissa < 0 else q


def check_windows(fast, slow):
    if fast < 1 or fast >= slow:
        raise ParamError("fast", f"windows must satisfy 1 <= fast < slow, got fast={fast} slow={slow}")
    if slow > MAX_WINDOW:
        raise ParamError("slow", f"slow window {slow} exceeds the maximum of {MAX_WINDOW}")


def check_qty(mantissa, scale):
    if mantissa <= 0:
        raise ParamError("qty", "qty must be positive")
    if not 0 <= scale <= 28:
        raise ParamError("qty", f"scale {scale} is outside 0..=28")


class Crossover:
    """Rolling sums of the last `fast` and `slow` closes of one symbol, the
    intended position, and the sign of the last non-zero difference."""

    __slots__ = ("fast", "slow", "ring", "slot", "seen", "sum_fast", "sum_slow", "last_sign", "long")

    def __init__(self, fast, slow):
        self.fast = fast
        self.slow = slow
        # Close number n lives at n % slow.
        self.ring = [0] * slow
        self.slot = 0
        self.seen = 0
        self.sum_fast = 0
        self.sum_slow = 0
        self.last_sign = 0
        self.long = False

    def on_close(self, close):
        """Adds a close (fixed-point units); returns BUY, SELL or None."""
        slot = self.slot
        fast = self.fast
        slow = self.slow
        ring = self.ring
        seen = self.seen
        if seen >= slow:
            self.sum_slow -= ring[slot]
        if seen >= fast:
            # Close number seen - fast, `fast` slots behind this one.
            self.sum_fast -= ring[slot - fast]
        ring[slot] = close
        self.sum_slow += close
        self.sum_fast += close
        seen += 1
        self.seen = seen
        self.slot = 0 if slot + 1 == slow else slot + 1
        if seen < slow:
            return None
        d = self.sum_fast * slow - self.sum_slow * fast
        if d == 0:
            return None
        sign = 1 if d > 0 else -1
        previous = self.last_sign
        self.last_sign = sign
        if previous == -1 and sign == 1:
            if not self.long:
                self.long = True
                return BUY
        elif previous == 1 and sign == -1:
            if self.long:
                self.long = False
                return SELL
        return None

    def on_rejected(self, side):
        """Undoes the intended position change of a refused order."""
        self.long = side == SELL

    def closes(self):
        """The closes still in the window, oldest first."""
        filled = min(self.seen, self.slow)
        return [self.ring[(self.seen - back) % self.slow] for back in range(filled, 0, -1)]

    @classmethod
    def from_closes(cls, fast, slow, seen, closes, last_sign, long):
        self = cls(fast, slow)
        if len(closes) != min(seen, slow):
            raise StateError(f"{len(closes)} closes saved for {seen} seen with slow={slow}")
        self.seen = seen
        self.slot = seen % slow
        first = seen - len(closes)
        for k, close in enumerate(closes):
            self.ring[(first + k) % slow] = close
        for back, close in enumerate(reversed(closes), start=1):
            self.sum_slow += close
            if back <= fast:
                self.sum_fast += close
        self.last_sign = last_sign
        self.long = long
        return self


class SmaState:
    """Everything an instance remembers between calls."""

    def __init__(self, fast, slow, qty_mantissa, qty_scale):
        check_windows(fast, slow)
        check_qty(qty_mantissa, qty_scale)
        self.fast = fast
        self.slow = slow
        self.qty = (qty_mantissa, qty_scale)
        # One crossover per symbol, in order of first appearance.
        self.symbols = {}
        # The id of the next order; ids start at 1 and are never reused.
        self.next_id = 1
        # Submitted orders not yet filled or refused: id -> (symbol, side),
        # in submission order.
        self.pending = {}

    def crossover(self, symbol):
        x = self.symbols.get(symbol)
        if x is None:
            x = self.symbols[symbol] = Crossover(self.fast, self.slow)
        return x

    def on_bars(self, symbols, price_scale, symbol, close):
        """Runs a batch; returns (bar index, order id, symbol, side) per order."""
        # Crossovers are made on a symbol's first bar, not its first listing.
        per_symbol = [None] * len(symbols)
        factors = []
        for scale in price_scale:
            factors.append(_POW10[FIXED_SCALE - scale] if scale <= FIXED_SCALE else None)
        orders = []
        for i in range(len(close)):
            s = symbol[i]
            factor = factors[s]
            fixed = close[i] * factor if factor is not None else to_fixed(close[i], price_scale[s])
            x = per_symbol[s]
            if x is None:
                x = per_symbol[s] = self.crossover(symbols[s])
            side = x.on_close(fixed)
            if side is not None:
                order_id = self.next_id
                self.next_id += 1
                self.pending[order_id] = (symbols[s], side)
                orders.append((i, order_id, symbols[s], side))
        return orders

    def on_fill(self, order_id):
        self.pending.pop(order_id, None)

    def on_reject(self, order_id):
        """Returns the refused order's (symbol, side), or None if unknown."""
        refused = self.pending.pop(order_id, None)
        if refused is not None:
            symbol, side = refused
            self.crossover(symbol).on_rejected(side)
        return refused

    # The state: "SMPY", a format version, then fields in little-endian order;
    # closes and counters as LEB128 varints (signed ones zigzag-encoded).
    MAGIC = b"SMPY"
    VERSION = 1

    def encode(self):
        out = bytearray(self.MAGIC)
        out.append(self.VERSION)
        _uvar(out, self.fast)
        _uvar(out, self.slow)
        _svar(out, self.qty[0])
        out.append(self.qty[1])
        _uvar(out, self.next_id)
        _uvar(out, len(self.symbols))
        for name, x in self.symbols.items():
            _text(out, name)
            out.append(1 if x.long else 0)
            out.append(x.last_sign & 0xFF)
            _uvar(out, x.seen)
            for close in x.closes():
                _svar(out, close)
        _uvar(out, len(self.pending))
        for order_id, (name, side) in self.pending.items():
            _uvar(out, order_id)
            _text(out, name)
            out.append(side)
        return bytes(out)

    @classmethod
    def decode(cls, data):
        r = _Reader(data)
        if r.take(4) != cls.MAGIC:
            raise StateError("not an sma-crossover-py state")
        version = r.byte()
        if version != cls.VERSION:
            raise StateError(f"state format {version} is newer than this build reads ({cls.VERSION})")
        fast, slow = r.uvar(), r.uvar()
        mantissa, scale = r.svar(), r.byte()
        try:
            state = cls(fast, slow, mantissa, scale)
        except ParamError as e:
            raise StateError(f"saved parameters are invalid: {e}") from None
        state.next_id = r.uvar()
        for _ in range(r.uvar()):
            name = r.text()
            if name in state.symbols:
                raise StateError(f"symbol {name!r} saved twice")
            long = r.byte()
            sign = r.byte()
            if long > 1 or sign not in (0, 1, 0xFF):
                raise StateError(f"invalid flags {long}, {sign} for {name!r}")
            seen = r.uvar()
            closes = [r.svar() for _ in range(min(seen, slow))]
            state.symbols[name] = Crossover.from_closes(
                fast, slow, seen, closes, sign - 256 if sign == 0xFF else sign, bool(long)
            )
        for _ in range(r.uvar()):
            order_id = r.uvar()
            name = r.text()
            side = r.byte()
            if side not in (BUY, SELL) or order_id >= state.next_id or order_id in state.pending:
                raise StateError(f"invalid pending order {order_id}")
            state.pending[order_id] = (name, side)
        if r.pos != len(data):
            raise StateError(f"{len(data) - r.pos} trailing bytes in state")
        return state


def _uvar(out, n):
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def _svar(out, n):
    _uvar(out, (n << 1) if n >= 0 else ((-n << 1) - 1))


def _text(out, s):
    b = s.encode()
    _uvar(out, len(b))
    out += b


class _Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise StateError("state is truncated")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def byte(self):
        return self.take(1)[0]

    def uvar(self):
        n = shift = 0
        while True:
            b = self.byte()
            n |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return n
            if shift > 140:
                raise StateError("varint too long")

    def svar(self):
        z = self.uvar()
        return (z >> 1) if not z & 1 else -((z + 1) >> 1)

    def text(self):
        raw = self.take(self.uvar())
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise StateError("state holds invalid UTF-8") from None
