"""User-space instructions per unit of work, counted by valgrind's callgrind: a figure the
noise of a shared machine cannot move (the same binary and inputs give the same count).

The server runs under callgrind while one client drives it a fixed number of times, one unit
at a time, each answered before the next; it is run twice (SMALL and BIG units) and the
difference of the totals, divided by BIG - SMALL, is the cost of one unit with start-up and
shutdown taken out. A unit is an echo of a 32-byte masked text frame (plain, compressed or over
TLS), an echo of a 64 KiB binary message (stream), or a whole wss connection (TLS handshake,
upgrade, one echo, close). Every thread of the server is counted (an async runtime's too). With
a build that has symbols, `callgrind_annotate` splits the same difference by function: the
profile of where an echo's instructions go. Standard library only.
"""

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import rawws  # noqa: E402  (tests/rawws.py)

SMALL, BIG = 1000, 3000
MESSAGE = b"x" * 32
FRAME = rawws.frame(0x1, MESSAGE)
STREAM_FRAME = rawws.frame(0x2, b"\xa5" * 65536)  # as `wsload stream` sends
DEFLATE_OFFER = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"


def compressed_frame(message):
    """`message` as a browser sends it on a connection with permessage-deflate: compressed on
    its own (the server asks for client_no_context_takeover), the sync flush's 00 00 ff ff
    taken off, RSV1 set."""
    deflate = zlib.compressobj(wbits=-15)
    data = deflate.compress(message) + deflate.flush(zlib.Z_SYNC_FLUSH)
    plain = rawws.frame(0x1, data[:-4])
    return bytes([plain[0] | 0x40]) + plain[1:]


COMPRESSED_FRAME = compressed_frame(MESSAGE)


@dataclass(frozen=True)
class Load:
    """What the client does for one unit: send `frame` and read its echo; on a connection of
    its own (`per_connection`: the handshakes are the unit) or all on one; over TLS or not;
    offering permessage-deflate or not. `units` are the (SMALL, BIG) counts of the two runs."""
    frame: bytes = FRAME
    tls: bool = False
    compressed: bool = False
    per_connection: bool = False
    units: tuple = (SMALL, BIG)


# A row's label is the server's name and then one of these (none: the plain echo).
LOADS = {
    "": Load(),
    "compressed": Load(frame=COMPRESSED_FRAME, compressed=True),
    "wss": Load(tls=True),
    "stream": Load(frame=STREAM_FRAME, units=(100, 300)),
    "wss stream": Load(frame=STREAM_FRAME, tls=True, units=(100, 300)),
    "wss connection": Load(tls=True, per_connection=True, units=(20, 60)),
}


def load_of(label):
    """The Load a row's label names: "wsecho wss stream" -> LOADS["wss stream"]."""
    return LOADS[label.partition(" ")[2]]


def stop(process, patience=10):
    """Ask `process` to stop, and kill it if it has not after `patience` seconds. SIGTERM: a
    background job (nohup make bench &) starts with SIGINT ignored, and a server without a
    handler of its own would never hear it."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=patience)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def connect(port, load, server, deadline):
    """A connection to the server, upgraded (over TLS with a TLS load); retried until the
    server listens or `deadline` passes (valgrind starts slowly)."""
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the server did not listen under valgrind")
            time.sleep(0.1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if load.tls:
        # The bench's own certificate, on loopback: nothing to check it against.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        sock = context.wrap_socket(sock, server_hostname="localhost")
    sock.sendall(rawws.upgrade_request(extra=DEFLATE_OFFER if load.compressed else ""))
    head = rawws.read_head(sock)
    if load.compressed and b"permessage-deflate" not in head:
        raise RuntimeError("the server did not accept permessage-deflate")
    return sock


def drive(port, load, units, server):
    """`units` units of `load` against the server on `port`, one after another."""
    deadline = time.monotonic() + 60
    sock = None
    for _ in range(units):
        if sock is None:
            sock = connect(port, load, server, deadline)
        sock.sendall(load.frame)
        rawws.read_frame(sock)
        if load.per_connection:
            sock.close()
            sock = None
    if sock is not None:
        sock.close()


def total(command, port, units, load, by_function=False):
    """The server's whole instruction count for a run of `units` units of `load`; with
    `by_function`, also {function: instructions} (callgrind_annotate's self cost)."""
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "callgrind.out")
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--trace-children=yes", f"--callgrind-out-file={out}",
             *command],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "RUST_LOG": "warn"})
        try:
            drive(port, load, units, server)
            time.sleep(0.5)
        finally:
            stop(server, patience=60)  # valgrind takes its time to write its counts
        functions = {}
        if by_function:
            annotated = subprocess.run(["callgrind_annotate", "--auto=no", "--threshold=100", out],
                                       capture_output=True, text=True, check=True).stdout
            for line in annotated.splitlines():
                found = re.match(r"\s*([\d,]+) \([ \d.]+%\)\s+(\S.*?)(?: \[.*\])?$", line)
                if found and "PROGRAM TOTALS" not in line:
                    name = found.group(2).split(":", 1)[-1]
                    functions[name] = functions.get(name, 0) + int(found.group(1).replace(",", ""))
        with open(out) as data:
            lines = data.read().splitlines()
        for line in lines:
            found = re.match(r"(?:totals|summary): (\d+)", line)
            if found:
                return int(found.group(1)), functions
    raise RuntimeError(f"callgrind wrote no total (exit {server.returncode}; the file ends "
                       f"{lines[-3:]})")


def per_unit(command_for_port, free_port, load=LOADS[""], by_function=False):
    """Instructions per unit of `load` (by default a plain 32-byte echo) of the server
    `command_for_port(port)` starts; and with `by_function`, the same per function, biggest
    first."""
    runs = []
    for units in load.units:
        # Once more if valgrind fails: a count, unlike a time, is the same when it works.
        for attempt in (1, 2):
            port = free_port()
            try:
                runs.append(total(command_for_port(port), port, units, load, by_function))
                break
            except RuntimeError as error:
                if attempt == 2:
                    raise
                print(f"bench:   instructions: trying again after: {error}", flush=True)
    (small, small_functions), (big, big_functions) = runs
    spread = load.units[1] - load.units[0]
    functions = sorted(((name, (count - small_functions.get(name, 0)) / spread)
                        for name, count in big_functions.items()), key=lambda f: -f[1])
    return (big - small) / spread, functions


def count(rows, free_port):
    """Count each row, (label, command_for_port, by_function): ({label: instructions per
    unit}, the profile of the row counted by function). A label is a server's name, then the
    load (LOADS): "wsecho wss stream". A row that fails is left out."""
    counts, profile = {}, []
    for label, command, by_function in rows:
        print(f"bench: instructions: {label} under callgrind", flush=True)
        try:
            counts[label], functions = per_unit(command, free_port, load_of(label), by_function)
        except (RuntimeError, OSError, subprocess.SubprocessError) as error:
            print(f"bench:   instructions: {label}: failed: {error}", flush=True)
            continue
        if by_function:
            profile = functions
        print(f"bench:   instructions: {label}: {counts[label]:.0f} per unit", flush=True)
    return counts, profile


# The loads of the second table: a 64 KiB message, and a whole wss connection.
HEAVY = {"stream": "stream (64 KiB echo)", "wss stream": "wss stream (64 KiB echo)",
         "wss connection": "wss connection"}


def section(out, counts, profile):
    """BENCHMARKS.md's section: the counts, compressed beside plain, and the profile."""
    if not counts:
        return
    out("## Instructions per echo\n")
    out(f"User-space instructions per 32-byte echo, counted by `valgrind --tool=callgrind` "
        f"(every thread of the server): {SMALL} and {BIG} round trips, one at a time, the "
        "difference of the two totals divided by the difference of the counts (start-up and "
        "shutdown cancel out). A count, not a time: the same build and inputs give the same "
        "figure on a busy machine. Compressed: the client offers permessage-deflate, as every "
        "browser does, and sends each message compressed on its own (as a browser's 32-byte "
        "message is: one fixed-Huffman block); the server inflates it, and replies as it "
        "chooses (wsecho uncompressed, Python websockets compressed). tokio-tungstenite has no "
        "permessage-deflate. wss: the same plain echo over TLS (rustls with ring for wsecho and "
        "tokio-tungstenite alike; the client is Python's ssl).\n")
    out("| server | plain | vs the floor | compressed | compressed vs plain | wss | wss vs plain |")
    out("|---|---:|---:|---:|---:|---:|---:|")
    floor = counts.get("raw-tcp", float("nan"))
    for name in [n for n in counts if " " not in n]:
        plain = counts[name]
        cells = []
        for kind in ("compressed", "wss"):
            other = counts.get(f"{name} {kind}", float("nan"))
            cells += [f"{other:.0f}", f"{other / plain:.2f}x"] if other == other else ["n/a", "n/a"]
        out(f"| {name} | {plain:.0f} | {plain / floor:.1f}x | " + " | ".join(cells) + " |")
    out("")
    heavy = list(dict.fromkeys(label.partition(" ")[0] for label in counts
                               if label.partition(" ")[2] in HEAVY))
    if heavy:
        messages, connections = LOADS["stream"].units, LOADS["wss connection"].units
        out("Where a time cannot tell two servers apart, what each does can: instructions per "
            f"64 KiB binary message echoed (stream: {messages[0]} and {messages[1]} messages, "
            "one at a time, as `wsload stream` sends them), plain and over wss, and per wss "
            f"connection (TLS handshake, upgrade, one 32-byte echo and close: {connections[0]} "
            f"and {connections[1]} connections, one after another; the thread or task each "
            "connection starts is counted too).\n")
        out("| server | " + " | ".join(HEAVY.values()) + " |")
        out("|---|" + "---:|" * len(HEAVY))
        for name in heavy:
            cells = [counts.get(f"{name} {kind}", float("nan")) for kind in HEAVY]
            out(f"| {name} | " + " | ".join(f"{c:,.0f}" if c == c else "n/a" for c in cells)
                + " |")
        out("")
    if profile:
        shown = [f for f in profile if f[1] >= 10][:20]
        out("Where wsecho's plain echo's go (self cost per echo by function, from a build with "
            "symbols: `target/profile/release/wsecho`; functions under 10 left out):\n")
        out("| instructions | function |")
        out("|---:|---|")
        for name, instructions in shown:
            out(f"| {instructions:.0f} | `{name}` |")
        out("")


def targets(counts):
    plain = counts.get("wsecho", float("nan"))
    return [
        ("instructions per echo <= 1163", plain, "<=", 1163),
        ("instructions per compressed echo <= 3x plain",
         counts.get("wsecho compressed", float("nan")) / plain, "<=", 3.0),
    ]
