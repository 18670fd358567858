"""make metrics-test (part of make test): known traffic against the release binary, then its
/metrics parsed by prometheus_client's own text parser, every count checked. Also /healthz.

  python check.py BINARY
"""

import re
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rawws import frame, read_frame, read_head, upgrade_request  # noqa: E402

PATIENCE = 10


def start(binary):
    server = subprocess.Popen(
        [binary, "--http", "127.0.0.1:0", "--ws", "127.0.0.1:0", "--policy-port", "0",
         "--handshake-timeout", "0.5", "--max-per-address", "8",
         "--memory-budget", "1000000", "--max-message-size", "1000000"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={"RUST_LOG": "info"})
    http = ws = None
    deadline = time.monotonic() + PATIENCE
    while ws is None and time.monotonic() < deadline:
        line = server.stderr.readline()
        found = re.search(r"page: http://([0-9.:]+)/", line)
        http = http or (found and found.group(1))
        found = re.search(r"WebSocket: ws://127\.0\.0\.1:(\d+)/", line)
        ws = found and int(found.group(1))
    if ws is None:
        sys.exit("metrics: wsecho did not start")
    return server, http, ws


def connect(port, path="/echo", extra=""):
    sock = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)
    sock.sendall(upgrade_request(path, f"127.0.0.1:{port}", extra))
    return sock, read_head(sock)


def upgraded(port, path="/echo"):
    sock, head = connect(port, path)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def close(sock, code=1000):
    sock.sendall(frame(0x8, struct.pack(">H", code)))
    while read_frame(sock)[0] != 0x8:
        pass
    sock.close()


def get(http, path):
    try:
        with urllib.request.urlopen(f"http://{http}{path}", timeout=PATIENCE) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def metrics(http):
    status, text = get(http, "/metrics")
    assert status == 200, status
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            samples[key] = sample.value
    return samples


def main():
    server, http, ws = start(sys.argv[1])
    failures = []

    def expect(samples, name, labels, value):
        got = samples.get((name, tuple(sorted(labels.items()))))
        if got != value:
            failures.append(f"{name}{labels}: expected {value}, got {got}")

    try:
        assert get(http, "/healthz") == (200, "ok\n")
        # Three echo sessions of two messages each (5 and 300 bytes), closed with 1000.
        for _ in range(3):
            sock = upgraded(ws)
            for payload in (b"hello", b"x" * 300):
                sock.sendall(frame(0x2, payload))
                assert read_frame(sock) == (0x2, payload)
            close(sock)
        # Held open while /metrics is read: two on /echo, one on /chat.
        held = [upgraded(ws), upgraded(ws), upgraded(ws, "/chat")]
        # Refused: a wrong path, a foreign Origin, a head that does not arrive in time.
        assert connect(ws, "/nowhere")[1].startswith(b"HTTP/1.1 404")
        assert connect(ws, extra="Origin: http://elsewhere.test\r\n")[1].startswith(b"HTTP/1.1 403")
        slow = socket.create_connection(("127.0.0.1", ws), timeout=PATIENCE)
        slow.sendall(b"GET /echo HTTP/1.1\r\n")
        assert read_head(slow).startswith(b"HTTP/1.1 408")
        # A message the 1 MB memory budget has no room for: 1013.
        big = upgraded(ws)
        big.sendall(frame(0x2, b"a" * 600_000, fin=False))
        bigger = upgraded(ws)
        bigger.sendall(frame(0x2, b"b" * 600_000, fin=False))
        opcode, payload = read_frame(bigger)
        assert (opcode, payload[:2]) == (0x8, struct.pack(">H", 1013)), (opcode, payload)
        bigger.close()
        big.close()
        # One address over --max-per-address 8 (3 held + 5 more = 8): 503.
        more = [upgraded(ws) for _ in range(5)]
        assert connect(ws)[1].startswith(b"HTTP/1.1 503")
        for sock in more:
            close(sock)

        # Wait (bounded) until every connection closed above has ended on the server too.
        deadline = time.monotonic() + PATIENCE
        while True:
            samples = metrics(http)
            done = samples.get(("wsecho_open_connections", (("route", "/echo"),))) == 2.0
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        expect(samples, "wsecho_open_connections", {"route": "/echo"}, 2)
        expect(samples, "wsecho_open_connections", {"route": "/chat"}, 1)
        expect(samples, "wsecho_connections_total", {"route": "/echo"}, 3 + 2 + 2 + 5)
        expect(samples, "wsecho_connections_total", {"route": "/chat"}, 1)
        for reason in ("path", "origin", "timeout", "memory", "per_address"):
            expect(samples, "wsecho_refusals_total", {"reason": reason}, 1)
        expect(samples, "wsecho_closes_total", {"code": "1000", "by": "client"}, 3 + 5)
        expect(samples, "wsecho_messages_received_total", {}, 6)
        expect(samples, "wsecho_received_bytes_total", {}, 3 * 305)
        expect(samples, "wsecho_messages_sent_total", {}, 6)
        expect(samples, "wsecho_sent_bytes_total", {}, 3 * 305)
        expect(samples, "wsecho_memory_budget_bytes", {}, 1_000_000)
        expect(samples, "wsecho_build_info", {"version": "0.1.0"}, 1)
        if ("wsecho_page_requests_total", ()) not in samples:
            failures.append("no wsecho_page_requests_total")
        for sock in held:
            sock.close()
    finally:
        server.terminate()
        server.wait(PATIENCE)
    for failure in failures:
        print(f"metrics: {failure}")
    print(f"metrics: {'every count as expected' if not failures else 'FAILED'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
