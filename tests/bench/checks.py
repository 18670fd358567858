"""make bench's checks of wsecho alone, after the rounds: its stripped binary's size, the time
from start to listening, holding as many connections as its cap, and the answer past the cap
(503 to every connection over it, the process alive).
"""

import socket
import statistics
import subprocess
import time
from pathlib import Path

from instructions import stop


def run(command, cap, start, wsload, free_port, wait_listening):
    """wsecho alone (`command(port)` starts it with a cap of `cap`): binary size, start to
    listening, `cap` connections held, then 503 past the cap."""
    checks = {"binary_kib": Path(command(0)[0]).stat().st_size / 1024}
    starts = []
    for _ in range(10):
        port = free_port()
        began = time.monotonic()
        process = subprocess.Popen(command(port), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_listening(port, process)
            starts.append((time.monotonic() - began) * 1000)
        finally:
            stop(process)
    checks["start_ms"] = statistics.median(starts)
    process, port = start("wsecho")
    try:
        held = wsload(["idle", "--connections", str(cap)], port, process.pid, 1)
        checks["held"] = held.get("connections", 0)
        checks["held_rss_per_conn_kib"] = held.get("rss_per_conn_kib", float("nan"))
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        print(f"bench: holding {cap} connections failed: {error}")
        checks["held"] = 0
    # (wsload has exited, so its connections are closing; open more than the cap at once.)
    time.sleep(2)
    sockets, statuses = [], []
    began = time.monotonic()
    try:
        for _ in range(cap + 20):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            sockets.append(sock)
        # Which ones are past the cap depends on how fast the server finished the handshakes
        # of the first (one address may hold only a quarter of the cap in its openings at a
        # time): every answer counts.
        for sock in sockets:
            statuses.append(sock.recv(64)[9:12].decode(errors="replace"))
    except OSError as error:
        print(f"bench: past-the-cap check: {error}")
    finally:
        for sock in sockets:
            sock.close()
    took = time.monotonic() - began
    checks["past_cap_503"] = statuses.count("503")
    checks["alive"] = process.poll() is None
    print(f"bench: {len(statuses)} connections at once against a cap of {cap}, answered "
          f"within {took:.1f} s: {statuses.count('101')} upgraded, {statuses.count('503')} refused "
          f"with 503; the server {'is alive' if checks['alive'] else f'exited with {process.returncode}'}",
          flush=True)
    if took > 30:
        # These clients never answer a ping: past the ping interval (30 s) and its second
        # chance, the first of them are closed, and their places go to the last.
        print("bench: the past-the-cap check took longer than the ping interval, so it does not "
              "show the cap; was the machine busy?", flush=True)
    stop(process)
    return checks
