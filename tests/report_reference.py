"""An independent check of a backtest report, for tests/report.rs.

Recomputes the statistics with numpy from the bars and the report's
fills alone (daily equity: cash plus position at each day's last close,
after that bar's fills), parses the HTML page with the standard
library's parser, and parses the SVG as XML. Prints one JSON object.

    python3 report_reference.py BARS.csv REPORT.json PAGE.html CHARTS.svg
"""
import csv
import json
import sys
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from html.parser import HTMLParser

import numpy as np


def reference(bars_path, report):
    fills = {}
    for f in report["fills"]:
        fills.setdefault(f["time"], []).append(f)
    cash = float(report["starting_cash"])
    qty = 0.0
    days, times, exposed = [], [], 0
    with open(bars_path) as f:
        for row in csv.DictReader(f):
            day = row["Date"]
            stamp = day + "T00:00:00Z"
            for fill in fills.get(stamp, []):
                signed = float(fill["qty"]) * (1 if fill["side"] == "buy" else -1)
                qty += signed
                cash -= signed * float(fill["price"]) + float(fill["commission"])
            exposed += qty != 0
            days.append(cash + qty * float(row["Close"]))
            times.append(datetime.fromisoformat(day).replace(tzinfo=timezone.utc))
    equity = np.array([float(report["starting_cash"])] + days)
    returns = equity[1:] / equity[:-1] - 1
    years = (times[-1] - times[0]).total_seconds() / (365.25 * 86400)
    downside = np.sqrt(np.mean(np.minimum(returns, 0) ** 2))
    # Round trips from the fills: flat to flat (the SMA never flips).
    pnls, position, flow = [], 0.0, 0.0
    for f in report["fills"]:
        signed = float(f["qty"]) * (1 if f["side"] == "buy" else -1)
        position += signed
        flow -= signed * float(f["price"]) + float(f["commission"])
        if position == 0:
            pnls.append(flow)
            flow = 0.0
    pnls = np.array(pnls)
    return {
        "total_return": equity[-1] / equity[0] - 1,
        "annual_return": (equity[-1] / equity[0]) ** (1 / years) - 1,
        "sharpe": returns.mean() / returns.std(ddof=1) * np.sqrt(252),
        "sortino": returns.mean() / downside * np.sqrt(252),
        "trades": len(pnls),
        "win_rate": float((pnls > 0).mean()),
        "profit_factor": pnls[pnls > 0].sum() / -pnls[pnls < 0].sum(),
        "exposure": exposed / len(days),
    }


class Tables(HTMLParser):
    """The summary table's rows, the trades table's row count, and whether
    the page has an inline SVG; fails on mismatched tags."""

    def __init__(self):
        super().__init__()
        self.stack, self.summary, self.trades, self.svg = [], {}, 0, 0
        self.table, self.cells, self.text = None, [], ""

    def handle_starttag(self, tag, attrs):
        if tag not in ("meta", "br", "img", "input", "link"):
            self.stack.append(tag)
        if tag == "table":
            self.table = dict(attrs).get("id")
        elif tag == "svg":
            self.svg += 1
        elif tag == "tr":
            self.cells = []
        elif tag in ("td", "th"):
            self.text = ""

    def handle_startendtag(self, tag, attrs):
        pass

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            raise ValueError(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        self.stack.pop()
        if tag in ("td", "th"):
            self.cells.append(self.text)
        elif tag == "tr" and self.table == "summary":
            self.summary[self.cells[0]] = self.cells[1]
        elif tag == "tr" and self.table == "trades" and self.cells[0] != "Symbol":
            self.trades += 1

    def handle_data(self, data):
        self.text += data


def main():
    bars, report_path, page, charts = sys.argv[1:5]
    report = json.load(open(report_path))
    tables = Tables()
    tables.feed(open(page).read())
    tables.close()
    if tables.stack:
        raise ValueError(f"unclosed tags: {tables.stack}")
    root = ET.parse(charts).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    strokes = {}
    for line in root.iter(ns + "polyline"):
        strokes[line.get("stroke")] = strokes.get(line.get("stroke"), 0) + 1
    print(json.dumps({
        "reference": reference(bars, report),
        "summary": tables.summary,
        "trade_rows": tables.trades,
        "inline_svgs": tables.svg,
        "svg_strokes": strokes,
        "svg_texts": [t.text for t in root.iter(ns + "text")],
        "svg_polygons": sum(1 for _ in root.iter(ns + "polygon")),
    }))


main()
