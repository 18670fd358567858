"""The two memory attacks of issue #10, against any wsecho binary at its default settings:

  python3 tests/soak/attacks.py target/release/wsecho

1. 100 clients each start a 15 MiB message in 1 MiB fragments and never finish it.
2. 4 clients each send a 16 MiB message and never read its echo.

Prints the server's RSS before, at the peak (VmHWM) and after each attack. Plain Python, no
packages: the clients speak just enough WebSocket (tests/rawws.py).
"""

import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rawws import frame, read_head, upgrade_request  # noqa: E402

MIB = 1 << 20


def upgraded(port, receive_buffer=None):
    sock = socket.socket()
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect(("127.0.0.1", port))
    sock.sendall(upgrade_request())
    head = read_head(sock)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def memory(pid):
    status = open(f"/proc/{pid}/status").read()
    field = lambda name: int(re.search(rf"^{name}:\s+(\d+)", status, re.M).group(1)) // 1024
    return field("VmRSS"), field("VmHWM")


def run(binary, attack):
    server = subprocess.Popen([binary, "--http", "127.0.0.1:0", "--ws", "127.0.0.1:0",
                               "--policy-port", "0", "--max-per-address", "1000"],
                              stderr=subprocess.PIPE, text=True)
    port = None
    while port is None:
        found = re.search(r"WebSocket: ws://127\.0\.0\.1:(\d+)/", server.stderr.readline())
        port = found and int(found.group(1))
    threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()
    before = memory(server.pid)[0]
    held = attack(port)
    time.sleep(1)
    rss, peak = memory(server.pid)
    for sock in held:
        sock.close()
    time.sleep(2)
    after = memory(server.pid)[0]
    server.terminate()
    server.wait()
    return before, peak, rss, after


def unfinished_messages(port):
    fragment_first = frame(0x2, bytes(MIB), fin=False)
    fragment_more = frame(0x0, bytes(MIB), fin=False)
    clients = [upgraded(port) for _ in range(100)]

    def send(sock):
        try:
            sock.sendall(fragment_first)
            for _ in range(14):
                sock.sendall(fragment_more)
        except OSError:
            pass  # closed by the server (1013): the budget is full

    threads = [threading.Thread(target=send, args=(sock,)) for sock in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return clients


def never_reading(port):
    message = frame(0x2, bytes(16 * MIB), fin=True)
    clients = [upgraded(port, receive_buffer=4096) for _ in range(4)]
    for sock in clients:
        sock.settimeout(5)
        try:
            sock.sendall(message)
        except OSError:
            pass
    return clients


def main():
    binary = sys.argv[1]
    for name, attack in [("100 unfinished 15 MiB messages", unfinished_messages),
                         ("4 clients sending 16 MiB, never reading", never_reading)]:
        before, peak, rss, after = run(binary, attack)
        print(f"{name}: RSS {before} MiB before, peak {peak} MiB, {rss} MiB under attack, "
              f"{after} MiB after the attackers left")


if __name__ == "__main__":
    main()
