"""User-space instructions per echo, counted by valgrind's callgrind: a figure the noise of a
shared machine cannot move (the same binary and inputs give the same count).

The server runs under callgrind while one client sends a fixed number of 32-byte masked text
frames, one at a time, each answered before the next; it is run twice (SMALL and BIG round
trips) and the difference of the totals, divided by BIG - SMALL, is the cost of one echo with
start-up and shutdown taken out. Every thread of the server is counted (an async runtime's
too). With a build that has symbols, `callgrind_annotate` splits the same difference by
function: the profile of where an echo's instructions go. Standard library only.
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import rawws  # noqa: E402  (tests/rawws.py)

SMALL, BIG = 1000, 3000
MESSAGE = b"x" * 32
FRAME = rawws.frame(0x1, MESSAGE)
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


def total(command, port, echoes, by_function=False, compressed=False, tls=False):
    """The server's whole instruction count for a run with `echoes` round trips; with
    `by_function`, also {function: instructions} (callgrind_annotate's self cost); with
    `compressed`, each message compressed as a browser sends it; with `tls`, over TLS (wss:
    the handshake is start-up, and cancels out)."""
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "callgrind.out")
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--trace-children=yes", f"--callgrind-out-file={out}",
             *command],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "RUST_LOG": "warn"})
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError("the server did not listen under valgrind")
                    time.sleep(0.1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls:
                # The bench's own certificate, on loopback: nothing to check it against.
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                sock = context.wrap_socket(sock, server_hostname="localhost")
            sock.sendall(rawws.upgrade_request(extra=DEFLATE_OFFER if compressed else ""))
            head = rawws.read_head(sock)
            if compressed and b"permessage-deflate" not in head:
                raise RuntimeError("the server did not accept permessage-deflate")
            frame = COMPRESSED_FRAME if compressed else FRAME
            for _ in range(echoes):
                sock.sendall(frame)
                rawws.read_frame(sock)
            sock.close()
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


def per_echo(command_for_port, free_port, by_function=False, compressed=False, tls=False):
    """Instructions per 32-byte echo of the server `command_for_port(port)` starts; and with
    `by_function`, the same per function, biggest first; with `compressed`, of an echo whose
    message the client compressed (permessage-deflate); with `tls`, over wss."""
    runs = []
    for echoes in (SMALL, BIG):
        # Once more if valgrind fails: a count, unlike a time, is the same when it works.
        for attempt in (1, 2):
            port = free_port()
            try:
                runs.append(total(command_for_port(port), port, echoes, by_function, compressed,
                                  tls))
                break
            except RuntimeError as error:
                if attempt == 2:
                    raise
                print(f"bench:   instructions: trying again after: {error}", flush=True)
    (small, small_functions), (big, big_functions) = runs
    functions = sorted(((name, (count - small_functions.get(name, 0)) / (BIG - SMALL))
                        for name, count in big_functions.items()), key=lambda f: -f[1])
    return (big - small) / (BIG - SMALL), functions


def count(rows, free_port):
    """Count each row, (label, command_for_port, by_function): ({label: instructions per echo},
    the profile of the row counted by function). A label ending in " compressed" or " wss" is
    that kind of echo. A row that fails is left out."""
    counts, profile = {}, []
    for label, command, by_function in rows:
        print(f"bench: instructions: {label} under callgrind", flush=True)
        compressed, tls = label.endswith(" compressed"), label.endswith(" wss")
        try:
            counts[label], functions = per_echo(command, free_port, by_function, compressed, tls)
        except (RuntimeError, OSError, subprocess.SubprocessError) as error:
            print(f"bench:   instructions: {label}: failed: {error}", flush=True)
            continue
        if by_function:
            profile = functions
        print(f"bench:   instructions: {label}: {counts[label]:.0f} per echo", flush=True)
    return counts, profile


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
