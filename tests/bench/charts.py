"""The charts of BENCHMARKS.md, drawn with matplotlib (in the bench's virtualenv) from the
figures tests/bench/run.py measured: one chart per mode, every server's median as a bar with
the spread of the rounds (min to max) as a whisker, wsecho in its own colour; and the paced
mode's latency percentiles side by side.

Usage: charts.py RESULTS_JSON OUT_DIR    (writes OUT_DIR/MODE.png, prints the files it wrote)
"""

import json
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# What several modes chart alike.
ROUND_TRIP = [("p50_us", "p50 µs", "lower"), ("p99_us", "p99 µs", "lower")]
DELIVERY = [("deliveries_per_s", "deliveries/s", "higher"), ("p99_us", "delivery p99 µs", "lower")]
STREAM = [("mb_per_s", "MB/s", "higher")]
HANDSHAKES = [("per_s", "handshakes/s", "higher")]
IDLE = [("rss_per_conn_kib", "KiB RSS per connection", "lower")]

# mode: (title, [(field, axis label, which way is better)])
CHARTS = {
    "rtt": ("Round trip, one connection", ROUND_TRIP),
    "conc100": ("100 connections ping-pong", [("msgs_per_s", "messages/s", "higher"), ("p99_us", "p99 µs", "lower")]),
    "conc1000": ("1000 connections ping-pong", [("msgs_per_s", "messages/s", "higher"), ("p99_us", "p99 µs", "lower")]),
    "stream": ("64 KiB messages, 16 in flight", STREAM),
    "handshake": ("Connect, upgrade, close", HANDSHAKES),
    "idle": ("Idle connections", IDLE),
    "fanout": ("Chat room, 1000 members, 100 broadcasts/s", DELIVERY),
    "fanout500": ("Chat room, 1000 members, 500 broadcasts/s", DELIVERY),
    "fanout-max": ("Chat room: the highest rate sustained with every delivery made and p99 < 100 ms",
                   [("deliveries_per_s", "deliveries/s", "higher")]),
    "wss-rtt": ("wss: round trip, one connection", ROUND_TRIP),
    "wss-stream": ("wss: 64 KiB messages, 16 in flight", STREAM),
    "wss-handshake": ("wss: connect, TLS, upgrade, close", HANDSHAKES),
    "wss-idle": ("wss: idle connections", IDLE),
    "wss-fanout": ("wss: chat room, 1000 members, 100 broadcasts/s", DELIVERY),
    "run-conc": ("A program per connection (cat), 100 connections",
                 [("msgs_per_s", "round trips/s", "higher"), ("p99_us", "p99 µs", "lower")]),
    "deflate": ("64 KiB compressible text, sent compressed (permessage-deflate)",
                [("mb_per_s", "MB/s", "higher"), ("server_cpu_ms_per_mb", "server CPU ms per MB", "lower")]),
}
WSECHO = "#1f6feb"
OTHERS = "#9aa4b2"


def spread(values):
    return statistics.median(values), min(values), max(values)


def bars(axis, results, mode, field, label, better):
    names = [s for s in results if results[s].get(mode, {}).get(field)]
    if not names:
        return False
    medians, lows, highs = zip(*(spread(results[s][mode][field]) for s in names))
    errors = [[m - lo for m, lo in zip(medians, lows)], [hi - m for m, hi in zip(medians, highs)]]
    colours = [WSECHO if s.startswith("wsecho") else OTHERS for s in names]
    axis.barh(names, medians, xerr=errors, color=colours, capsize=3)
    axis.invert_yaxis()
    axis.set_xlabel(f"{label} ({better} is better)")
    if max(highs) > 50 * max(min(medians), 1e-9):
        axis.set_xscale("log")
    for y, (value, high) in enumerate(zip(medians, highs)):
        axis.annotate(f"{value:,.0f}" if value >= 100 else f"{value:.1f}", (high, y),
                      xytext=(5, 0), textcoords="offset points", va="center", fontsize=8)
    axis.margins(x=0.15)
    return True


def main():
    results = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    for mode, (title, fields) in CHARTS.items():
        figure, axes = plt.subplots(1, len(fields), figsize=(5.5 * len(fields), 3.2), squeeze=False)
        drawn = [bars(axes[0][i], results, mode, *field) for i, field in enumerate(fields)]
        if not any(drawn):
            plt.close(figure)
            continue
        figure.suptitle(f"{title}: median of the rounds, whiskers min to max")
        figure.tight_layout()
        figure.savefig(out / f"{mode}.png", dpi=90)
        plt.close(figure)
        print(out / f"{mode}.png")
    names = [s for s in results if results[s].get("paced", {}).get("p50_us")]
    if names:
        figure, axis = plt.subplots(figsize=(8, 3.4))
        width = 0.8 / 3
        for i, (field, label) in enumerate([("p50_us", "p50"), ("p99_us", "p99"), ("max_us", "max")]):
            medians = [statistics.median(results[s]["paced"][field]) for s in names]
            positions = [x + (i - 1) * width for x in range(len(names))]
            axis.bar(positions, medians, width, label=label)
        axis.set_xticks(range(len(names)), names)
        axis.set_yscale("log")
        axis.set_ylabel("latency µs (log)")
        axis.legend()
        axis.set_title("Paced: 1000 connections, 10 messages/s each: latency percentiles")
        figure.tight_layout()
        figure.savefig(out / "paced.png", dpi=90)
        plt.close(figure)
        print(out / "paced.png")


if __name__ == "__main__":
    main()
