"""The `instance` resource: maps the contract onto `sma_crossover.SmaState`.

Nothing here reads a clock, randomness or a file: the component is built with
`--stub-wasi`, so any WASI call traps. Every module is imported at the top, so
the imports happen when componentize-py pre-initialises the component, not
during a call.
"""

from typing import List

from componentize_py_types import Err
from wit_world.exports import strategy
from wit_world.imports import host, types

import app
from sma_crossover import BUY, ParamError, SmaState, StateError

_MARKET = types.OrderType_Market()


def _side(side):
    return types.Side.BUY if side == BUY else types.Side.SELL


def _params(params: List[types.Param]):
    """The windows and quantity, with defaults for any not given."""
    fast, slow, qty = app.DEFAULT_FAST, app.DEFAULT_SLOW, app.DEFAULT_QTY
    for param in params:
        key, value = param.key, param.value
        if key in ("fast", "slow"):
            if not isinstance(value, types.ParamValue_Integer):
                raise ParamError(key, "expects an integer")
            if key == "fast":
                fast = value.value
            else:
                slow = value.value
        elif key == "qty":
            if isinstance(value, types.ParamValue_Integer):
                qty = types.Decimal(value.value, 0)
            elif isinstance(value, types.ParamValue_Decimal):
                qty = value.value
            else:
                raise ParamError(key, "expects a decimal")
        else:
            raise ParamError(key, "unknown parameter")
    return fast, slow, qty


def _invalid(e: ParamError):
    return Err(types.Error_InvalidParam(types.InvalidParam(key=e.key, message=e.message)))


class Instance(strategy.Instance):
    def __init__(self, state: SmaState):
        self.state = state

    @classmethod
    def create(cls, params: List[types.Param]) -> "Instance":
        try:
            fast, slow, qty = _params(params)
            state = SmaState(fast, slow, qty.mantissa, qty.scale)
        except ParamError as e:
            raise _invalid(e) from None
        host.log(types.Level.INFO, f"{app.NAME} ready: fast={fast} slow={slow}")
        return cls(state)

    @classmethod
    def restore(cls, params: List[types.Param], state: bytes) -> "Instance":
        try:
            fast, slow, qty = _params(params)
        except ParamError as e:
            raise _invalid(e) from None
        try:
            restored = SmaState.decode(state)
        except StateError as e:
            raise Err(types.Error_IncompatibleState(str(e))) from None
        # The saved windows and quantity win: the rolling sums were built
        # with them, and a restore continues the saved instance.
        saved = (restored.fast, restored.slow, restored.qty)
        if saved != (fast, slow, (qty.mantissa, qty.scale)):
            host.log(
                types.Level.WARNING,
                f"restored with the saved fast={saved[0]} slow={saved[1]} qty={saved[2][0]}e-{saved[2][1]}, "
                f"not the given fast={fast} slow={slow} qty={qty.mantissa}e-{qty.scale}",
            )
        return cls(restored)

    def on_bars(self, bars: types.Bars) -> List[types.BarAction]:
        state = self.state
        orders = state.on_bars(bars.symbols, bars.price_scale, bars.symbol, bars.close)
        if not orders:
            return []
        qty = types.Decimal(*state.qty)
        return [
            types.BarAction(
                bar=index,
                action=types.Action_Submit(
                    types.Order(
                        id=order_id,
                        symbol=symbol,
                        side=_side(side),
                        qty=qty,
                        order_type=_MARKET,
                        time_in_force=types.TimeInForce.GTC,
                    )
                ),
            )
            for index, order_id, symbol, side in orders
        ]

    def on_fills(self, fills: List[types.Fill]) -> List[types.Action]:
        for fill in fills:
            self.state.on_fill(fill.order)
        return []

    def on_rejects(self, rejections: List[types.Rejection]) -> List[types.Action]:
        for rejection in rejections:
            if self.state.on_reject(rejection.order) is not None:
                host.log(types.Level.WARNING, f"order {rejection.order} refused: {rejection.reason}")
        return []

    def on_signal(self, signal: types.Signal) -> List[types.Action]:
        host.log(types.Level.DEBUG, f"ignoring signal from {signal.source}")
        return []

    def save_state(self) -> bytes:
        return self.state.encode()
