"""The component's entry module: the strategy's description.

componentize-py looks here (the module named on its command line) for a
`Strategy` class implementing the exported interface's free functions, and in
the module named after the interface, `strategy.py`, for the `Instance`
resource.
"""

from wit_world import exports
from wit_world.imports import types

NAME = "sma-crossover-py"
VERSION = "0.1.0"

DEFAULT_FAST = 5
DEFAULT_SLOW = 20
DEFAULT_QTY = types.Decimal(mantissa=1, scale=0)


class Strategy(exports.Strategy):
    def describe(self) -> types.Info:
        return types.Info(
            name=NAME,
            version=VERSION,
            description="Long-only moving-average crossover on closes, in Python",
            params=[
                types.ParamSpec("fast", types.ParamValue_Integer(DEFAULT_FAST), "bars in the fast average"),
                types.ParamSpec("slow", types.ParamValue_Integer(DEFAULT_SLOW), "bars in the slow average"),
                types.ParamSpec("qty", types.ParamValue_Decimal(DEFAULT_QTY), "quantity bought on an up-cross"),
            ],
        )
