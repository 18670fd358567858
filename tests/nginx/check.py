"""make nginx-test (part of make test): deploy/nginx.conf run by real nginx (Debian's package)
on free loopback ports, in front of two wsecho instances, with a certificate made here:

- the page and /config.json over https (the WebSocket port left for the page to infer), and
  /metrics kept off the public side;
- the instances' WebSocket ports are Unix sockets, as the file shows;
- echo over wss through nginx, the page's Origin accepted (Host kept), `Origin: null` refused;
- the instances' logs name the client from X-Forwarded-For (--trusted-proxy);
- one instance stopped: its clients get 1001, the other's keep echoing, new clients reach it.

  python3 check.py BINARY            (standard library only)
  python3 check.py --serve BINARY [--redis URL]
                                     the same stack (its instances sharing the chat room
                                     through Redis at URL), kept up until stdin closes; its
                                     page URL and the instances' own page ports printed
                                     (tests/browser/run.js opens it in Chromium)
"""

import http.client
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from rawws import frame, read_frame, read_head, upgrade_request  # noqa: E402

PATIENCE = 10


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port):
    """Wait until something listens on `port` (a TCP port, or a Unix socket's path)."""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        try:
            if isinstance(port, int):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            else:
                with socket.socket(socket.AF_UNIX) as probe:
                    probe.connect(str(port))
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nginx: nothing listens on {port}")


class Wsecho:
    def __init__(self, binary, http_port, ws_socket, extra=()):
        self.http_port = http_port
        self.process = subprocess.Popen(
            [binary, "--http", f"127.0.0.1:{http_port}", "--ws", f"unix:{ws_socket}",
             "--policy-port", "0", "--trusted-proxy", "127.0.0.1", *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, env={"RUST_LOG": "info"})
        self.log = []
        threading.Thread(target=lambda: self.log.extend(self.process.stderr), daemon=True).start()
        wait_for_port(ws_socket)
        wait_for_port(http_port)


def next_data_or_close(sock):
    while True:
        opcode, payload = read_frame(sock)
        if opcode in (0x1, 0x2, 0x8):
            return opcode, payload


def wss(context, port, origin):
    raw = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)
    sock = context.wrap_socket(raw, server_hostname="localhost")
    origin_line = f"Origin: {origin}\r\n" if origin else ""
    sock.sendall(upgrade_request("/echo", f"localhost:{port}", origin_line))
    return sock, read_head(sock).decode(errors="replace")


class Stack:
    """nginx with deploy/nginx.conf on a free port, in front of two wsecho instances."""

    def __init__(self, binary, extra=()):
        self.work, self.port, self.first, self.second, self.proxy = start_stack(binary, extra)

    def stop(self):
        self.proxy.terminate()
        self.proxy.wait(PATIENCE)
        for instance in (self.first, self.second):
            if instance.process.poll() is None:
                instance.process.terminate()
                instance.process.wait(PATIENCE)
        log = self.work / "error.log"
        errors = log.read_text() if log.exists() else ""
        shutil.rmtree(self.work, ignore_errors=True)
        return errors


def start_stack(binary, extra=()):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    for tool in (nginx, "openssl"):
        if not shutil.which(tool):
            sys.exit(f"nginx-test: {tool} not found: apt-get install nginx-light openssl "
                     "(.ci/run does)")
    work = Path(tempfile.mkdtemp(prefix="wsecho-nginx-"))
    # Run as root, nginx's workers are another user: they must reach their temp folders.
    work.chmod(0o755)
    port, a, b = free_port(), (free_port(), work / "ws-1.sock"), (free_port(), work / "ws-2.sock")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(work / "key.pem"), "-out", str(work / "cert.pem")],
        check=True, capture_output=True)
    site = (ROOT / "deploy" / "nginx.conf").read_text()
    for old, new in [("127.0.0.1:8081;", f"127.0.0.1:{a[0]};"), ("127.0.0.1:8082;", f"127.0.0.1:{b[0]};"),
                     ("unix:/run/wsecho/ws-1.sock", f"unix:{a[1]}"),
                     ("unix:/run/wsecho/ws-2.sock", f"unix:{b[1]}"),
                     ("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;"),
                     ("/etc/ssl/certs/wsecho.pem", str(work / "cert.pem")),
                     ("/etc/ssl/private/wsecho.key", str(work / "key.pem"))]:
        assert old in site, f"deploy/nginx.conf no longer has {old}"
        site = site.replace(old, new)
    (work / "wsecho.conf").write_text(site)
    main_conf(work, work / "wsecho.conf")

    first, second = Wsecho(binary, *a, extra), Wsecho(binary, *b, extra)
    proxy = subprocess.Popen([nginx, "-c", str(work / "nginx.conf"), "-p", str(work),
                              "-e", str(work / "error.log")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for_port(port)
    return work, port, first, second, proxy


def worker_user():
    """nginx's `user` line: as root, root (the instances run as root and made the sockets);
    otherwise none (the workers are this user anyway)."""
    return "user root;\n" if os.geteuid() == 0 else ""


def main_conf(work, site):
    """`work`/nginx.conf: what a distribution's nginx.conf does for a site file (`site`, a path
    or a glob, included in http {}), with everything nginx writes kept in `work`."""
    temp = "".join(f"    {kind}_temp_path {work}/{kind};\n"
                   for kind in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"])
    path = work / "nginx.conf"
    path.write_text(
        # The workers as the user running the test, who made the sockets (mode 0660): as
        # root, nginx would otherwise run them as nobody.
        f"daemon off;\n{worker_user()}pid {work}/nginx.pid;\nerror_log {work}/error.log warn;\n"
        f"events {{ worker_connections 256; }}\n"
        f"http {{\n    access_log off;\n{temp}    include {site};\n}}\n")
    return path


def serve(binary, extra):
    stack = Stack(binary, extra)
    instances = " ".join(str(i.http_port) for i in (stack.first, stack.second))
    print(f"instances: {instances}", flush=True)
    print(f"nginx: https://localhost:{stack.port}/", flush=True)
    sys.stdin.read()
    stack.stop()
    return 0


def main():
    if sys.argv[1] == "--serve":
        return serve(sys.argv[2], sys.argv[3:])
    stack = Stack(sys.argv[1])
    work, port, first, second = stack.work, stack.port, stack.first, stack.second
    failures = []

    def check(condition, what):
        if not condition:
            failures.append(what)

    try:
        context = ssl.create_default_context(cafile=str(work / "cert.pem"))

        def get(path):
            connection = http.client.HTTPSConnection("localhost", port, context=context,
                                                     timeout=PATIENCE)
            connection.sock = context.wrap_socket(
                socket.create_connection(("127.0.0.1", port), timeout=PATIENCE),
                server_hostname="localhost")
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()

        status, page = get("/")
        check(status == 200 and page == (ROOT / "www" / "index.html").read_bytes(),
              f"the page over https: {status}")
        status, config = get("/config.json")
        check(status == 200 and b'"wsPort":null' in config, f"/config.json: {config!r}")
        check(get("/metrics")[0] == 404, "/metrics is public")

        origin = f"https://localhost:{port}"
        clients = []
        for n in range(6):
            sock, head = wss(context, port, origin)
            check(head.startswith("HTTP/1.1 101"), f"wss upgrade through nginx: {head!r}")
            sock.sendall(frame(0x1, f"hello {n}".encode()))
            check(next_data_or_close(sock) == (0x1, f"hello {n}".encode()), "echo over wss")
            clients.append(sock)
        _, head = wss(context, port, "null")
        check(head.startswith("HTTP/1.1 403"), f"Origin: null accepted: {head!r}")
        time.sleep(0.2)
        for name, instance in [("first", first), ("second", second)]:
            via = [line for line in instance.log if re.search(r"open 127\.0\.0\.1 via 127\.0\.0\.1:", line)]
            check(via, f"the {name} instance's log does not name the forwarded client")

        # The first instance stops: its clients hear 1001; the second's keep echoing.
        first.process.send_signal(signal.SIGTERM)
        check(first.process.wait(PATIENCE) == 0, "the stopped instance's exit status")
        going_away = echoing = 0
        for n, sock in enumerate(clients):
            try:
                sock.sendall(frame(0x1, b"still there?"))
            except OSError:
                pass
            opcode, payload = next_data_or_close(sock)
            if opcode == 0x8:
                check(struct.unpack(">H", payload[:2])[0] == 1001, f"close {payload!r}")
                going_away += 1
            else:
                check(payload == b"still there?", f"echo after the stop: {payload!r}")
                echoing += 1
        check(going_away > 0 and echoing > 0 and going_away + echoing == 6,
              f"{going_away} clients got 1001, {echoing} kept echoing")
        for n in range(4):
            sock, head = wss(context, port, origin)
            check(head.startswith("HTTP/1.1 101"), f"a new client after the stop: {head!r}")
            sock.sendall(frame(0x1, b"new"))
            check(next_data_or_close(sock) == (0x1, b"new"), "a new client's echo")
            sock.close()
    finally:
        errors = stack.stop()
    for failure in failures:
        print(f"nginx: {failure}")
    if failures and errors:
        print(f"nginx: its error log:\n{errors}")
    print(f"nginx: {'page, wss echo, Origin, forwarded logs and failover as expected' if not failures else 'FAILED'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
