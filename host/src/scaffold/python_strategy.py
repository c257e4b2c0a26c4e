"""The `instance` resource of {{name}}: one value per strategy instance.

Rule: after `run` closes in a row higher than the one before, buy `qty`;
after `run` closes in a row lower, sell it. Long only, one position per
symbol. Keep every import at the top of a module: the component is
pre-initialised at build time, and WASI (print, files, clocks) traps.
"""

import json
from typing import List

from componentize_py_types import Err
from wit_world.exports import strategy
from wit_world.imports import host, types


def _invalid(key: str, message: str) -> Err:
    return Err(types.Error_InvalidParam(types.InvalidParam(key=key, message=message)))


class Instance(strategy.Instance):
    def __init__(self, run: int, qty: types.Decimal, memory: dict):
        self.run = run
        self.qty = qty
        # Per symbol: [last close as (mantissa, scale), streak, long].
        self.memory = memory

    @classmethod
    def _settings(cls, params: List[types.Param]):
        values = {p.key: p.value for p in params}
        run = values["run"].value
        qty = values["qty"].value
        if not 1 <= run <= 1000:
            raise _invalid("run", "must be between 1 and 1000")
        if qty.mantissa <= 0:
            raise _invalid("qty", "must be positive")
        return run, qty

    @classmethod
    def create(cls, params: List[types.Param]) -> "Instance":
        run, qty = cls._settings(params)
        return cls(run, qty, {"next_id": 1, "symbols": {}})

    @classmethod
    def restore(cls, params: List[types.Param], state: bytes) -> "Instance":
        run, qty = cls._settings(params)
        try:
            memory = json.loads(state)
        except ValueError:
            raise Err(types.Error_IncompatibleState("not a {{name}} state")) from None
        return cls(run, qty, memory)

    def on_bars(self, bars: types.Bars) -> List[types.BarAction]:
        actions = []
        symbols = self.memory["symbols"]
        for i, close in enumerate(bars.close):
            s = bars.symbol[i]
            name, scale = bars.symbols[s], bars.price_scale[s]
            seen = symbols.get(name)
            if seen is None:
                symbols[name] = [close, scale, 0, False]
                continue
            last, last_scale, streak, long = seen
            # Compare at one scale: exact integers, no floats.
            top = max(scale, last_scale)
            a, b = last * 10 ** (top - last_scale), close * 10 ** (top - scale)
            streak = max(streak, 0) + 1 if b > a else min(streak, 0) - 1 if b < a else 0
            side = None
            if not long and streak >= self.run:
                side, long = types.Side.BUY, True
            elif long and streak <= -self.run:
                side, long = types.Side.SELL, False
            symbols[name] = [close, scale, streak, long]
            if side is not None:
                order_id = self.memory["next_id"]
                self.memory["next_id"] = order_id + 1
                order = types.Order(order_id, name, side, self.qty, types.OrderType_Market(), types.TimeInForce.GTC)
                actions.append(types.BarAction(i, types.Action_Submit(order)))
        return actions

    def on_fills(self, fills: List[types.Fill]) -> List[types.Action]:
        cash = host.account().cash
        for fill in fills:
            host.log(types.Level.INFO, f"order {fill.order} filled; cash now {cash.mantissa}e-{cash.scale}")
        return []

    def on_rejects(self, rejections: List[types.Rejection]) -> List[types.Action]:
        actions = []
        for rejection in rejections:
            # Undo the intended position: the order never happened.
            seen = self.memory["symbols"].get(rejection.symbol)
            if seen is not None:
                seen[3] = not seen[3]
            message = f"order {rejection.order} refused: {rejection.reason}"
            actions.append(types.Action_Notify(types.Notification(types.Level.WARNING, message)))
        return actions

    def on_signal(self, signal: types.Signal) -> List[types.Action]:
        return []

    def save_state(self) -> bytes:
        return json.dumps(self.memory, sort_keys=True).encode()
