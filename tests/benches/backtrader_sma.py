"""The SMA crossover in backtrader, end to end, for the side-by-side in
BENCHMARKS.md: read a CSV of one-minute bars written `YYYY-MM-DD HH:MM:SS`,
run fast/slow SMA crossover long-only on the default broker, print the
wall time and the final value.

    pip install --target /tmp/btlib backtrader
    PYTHONPATH=/tmp/btlib python3 tests/benches/backtrader_sma.py bars.csv [fast slow]
"""
import sys
import time

import backtrader as bt


class SmaCross(bt.Strategy):
    params = dict(fast=5, slow=20, qty=10)

    def __init__(self):
        fast = bt.ind.SMA(period=self.p.fast)
        slow = bt.ind.SMA(period=self.p.slow)
        self.cross = bt.ind.CrossOver(fast, slow)

    def next(self):
        if self.cross > 0 and not self.position:
            self.buy(size=self.p.qty)
        elif self.cross < 0 and self.position:
            self.close()


def main():
    path = sys.argv[1]
    fast, slow = (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 3 else (5, 20)
    started = time.perf_counter()
    cerebro = bt.Cerebro(stdstats=False)
    data = bt.feeds.GenericCSVData(
        dataname=path, dtformat="%Y-%m-%d %H:%M:%S", timeframe=bt.TimeFrame.Minutes,
        datetime=0, open=1, high=2, low=3, close=4, volume=5, openinterest=-1)
    cerebro.adddata(data)
    cerebro.addstrategy(SmaCross, fast=fast, slow=slow)
    cerebro.broker.setcash(100_000)
    cerebro.run(preload=True, runonce=True)
    elapsed = time.perf_counter() - started
    print(f"backtrader {bt.__version__}: {elapsed:.2f} s, final value {cerebro.broker.getvalue():.2f}")


if __name__ == "__main__":
    main()
