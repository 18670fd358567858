"""make bench's HTTP carrier modes: wsecho's sessions over HTTP (streaming and long-polling)
beside its plain WebSocket, and socket.io (npm) with only its HTTP long-polling transport, all
driven by one Node.js load client (peers/http_load.js). wsecho's ways are driven as lean
clients would drive them: npm ws for the WebSocket, and for the HTTP carrier Node's http for the
down responses and requests written by hand on kept-alive sockets for the up ones (Node's
http.request cost 235 µs of the client's CPU per round trip, 70% of the round trip, so the rtt
row measured Node rather than the server); socket.io's way is its own client's:

- http-rtt: one client, one 32-byte echo at a time: round trips/s, p50 and p99;
- http-fanout: 1000 members in the chat room (wsecho's /chat; socket.io's peer,
  peers/socketio_chat.js, does the same work: parse the JSON, stamp it, serialise once, emit
  to the room), 10 of them each saying 10 messages/s, open loop: 100,000 deliveries/s offered,
  as in the WebSocket fanout mode. Deliveries/s counts what members heard within the run.
"""

import re
import subprocess
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parents[1]
WSECHO = ROOT / "target" / "release" / "wsecho"
CAP = 10000

SERVERS = {
    # The page port is the one the harness waits on; 1000 members each hold a page connection
    # (their down request) besides the ones their posts use.
    "wsecho": lambda port: [str(WSECHO), "--http", f"127.0.0.1:{port}", "--ws", "127.0.0.1:0",
                            "--policy-port", "0", "--max-connections", str(CAP),
                            "--max-per-address", str(2 * CAP), "--max-page-connections", str(CAP)],
    "socketio": lambda port: ["node", str(BENCH / "peers" / "socketio_chat.js"), str(port)],
}
# The ways each server is reached, each reported as a row of its own.
KINDS = {"wsecho": ["wsecho-ws", "wsecho-stream", "wsecho-poll"], "socketio": ["socketio-polling"]}
MODES = [
    ("http-rtt", ["rtt"], ["msgs_per_s", "p50_us", "p99_us"]),
    ("http-fanout", ["fanout", "--members", "1000", "--talkers", "10", "--rate", "10"],
     ["deliveries_per_s", "p50_us", "p99_us", "lost"]),
]

MISS_NOTES = {
    "http fanout deliveries/s >= socket.io polling": "a delivery to a session is kept in memory "
        "and, while the member's stream waits, written to it by the broadcasting thread (when "
        "they come faster, they gather for 25 ms and the carrier's thread writes them "
        "together); socket.io appends to a buffer in one process and a poll takes the lot. The "
        "rounds spread by about the size of the gap.",
    "http long-polling fanout >= socket.io polling": "each poll takes what gathered since the "
        "last, as socket.io's does; see the row below for the rest.",
    "http rtt p50 <= 2x wsecho's WebSocket": "a round trip over HTTP is a POST (the client's "
        "request, the server's page thread, the handler's thread, a 204) and a record down the "
        "open stream: two threads woken in the server where a WebSocket round trip wakes one, "
        "and on a host where waking a thread is dear that shows; the WebSocket row's rounds "
        "spread the most.",
}


def load(kind, args, port, pid, seconds):
    command = ["node", str(BENCH / "peers" / "http_load.js"), kind, *args[:1], str(port),
               *args[1:], "--seconds", str(seconds), "--pid", str(pid)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240 + seconds)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip()[-500:])
    return {key: float(value) for key, value in re.findall(r"(\w+)=([\d.]+|nan)", done.stdout)}


def run(name, results, seconds, start, stop):
    """Start `name`, run every mode through each of its kinds, stop it."""
    for kind in KINDS[name]:
        process, port = start(name, SERVERS)
        try:
            for mode, args, fields in MODES:
                try:
                    figures = load(kind, args, port, process.pid, seconds)
                except (RuntimeError, subprocess.TimeoutExpired) as error:
                    print(f"bench:   {kind} {mode}: failed: {error}", flush=True)
                    continue
                for field in fields + ["client_cpu", "server_cpu"]:
                    if field in figures:
                        results.setdefault(kind, {}).setdefault(mode, {}).setdefault(field, []).append(figures[field])
                shown = " ".join(f"{f}={figures.get(f, float('nan')):g}" for f in fields)
                print(f"bench:   {kind} {mode}: {shown}", flush=True)
                time.sleep(1)
        finally:
            stop(process)


def section(out, results, cell):
    """The HTTP carrier's tables, if its modes ran."""
    kinds = [k for ks in KINDS.values() for k in ks if k in results]
    if not kinds:
        return
    out("## Over HTTP (sessions for networks that break WebSocket)\n")
    out("One Node.js load client (`tests/bench/peers/http_load.js`) drives every way in: "
        "wsecho's plain WebSocket (npm `ws`), its HTTP carrier streaming and long-polling (what a "
        "page uses where a proxy breaks WebSocket; the down responses through Node's `http`, the "
        "up requests written by hand on kept-alive sockets, since `http.request` alone took 70% "
        "of a round trip), and socket.io's HTTP long-polling (npm `socket.io` and its client, "
        "polling only: `tests/bench/peers/socketio_chat.js`, the same chat work). rtt: one "
        "client, one 32-byte echo at a time. fanout: 1000 members in "
        "the chat room, 10 of them each saying 10 messages/s, open loop (100,000 deliveries/s "
        "offered, as in the WebSocket fanout mode); deliveries/s counts what members heard "
        "within the run, latency is from the say leaving the client to each member hearing it, "
        "and lost is what never came.\n")
    out("| way | rtt msg/s | rtt p50 µs | rtt p99 µs | fanout deliveries/s | fanout p50 µs "
        "| fanout p99 µs | fanout lost |")
    out("|---|" + "---:|" * 7)
    for kind in kinds:
        rtt, fanout = results[kind].get("http-rtt", {}), results[kind].get("http-fanout", {})
        out(f"| {kind} | {cell(rtt.get('msgs_per_s', []), 0)} | {cell(rtt.get('p50_us', []), 0)} "
            f"| {cell(rtt.get('p99_us', []), 0)} | {cell(fanout.get('deliveries_per_s', []), 0)} "
            f"| {cell(fanout.get('p50_us', []), 0)} | {cell(fanout.get('p99_us', []), 0)} "
            f"| {cell(fanout.get('lost', []), 0)} |")
    out("")


def targets(get, ratio):
    return [
        ("http long-polling fanout >= socket.io polling",
         ratio(get("wsecho-poll", "http-fanout", "deliveries_per_s"),
               get("socketio-polling", "http-fanout", "deliveries_per_s")), ">=", 1.0),
        ("http fanout deliveries/s >= socket.io polling",
         ratio(get("wsecho-stream", "http-fanout", "deliveries_per_s"),
               get("socketio-polling", "http-fanout", "deliveries_per_s")), ">=", 1.0),
        ("http rtt p50 <= 2x wsecho's WebSocket",
         ratio(get("wsecho-stream", "http-rtt", "p50_us"), get("wsecho-ws", "http-rtt", "p50_us")),
         "<=", 2.0),
    ]
