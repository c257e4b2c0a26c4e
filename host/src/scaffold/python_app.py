"""{{name}}: a stratbox strategy in Python, on stratbox:strategy@0.2.0.

componentize-py finds the exported interface's free functions here (the
`Strategy` class) and the `instance` resource in `strategy.py`, the module
named after the interface.
"""

from wit_world import exports
from wit_world.imports import types


class Strategy(exports.Strategy):
    def describe(self) -> types.Info:
        return types.Info(
            name="{{name}}",
            version="0.1.0",
            description="buys a run of rising closes, sells a run of falling ones",
            params=[
                types.ParamSpec("run", types.ParamValue_Integer(3), "closes in a row that make a signal"),
                types.ParamSpec("qty", types.ParamValue_Decimal(types.Decimal(1, 0)), "quantity bought"),
            ],
        )
