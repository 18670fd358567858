"""make deploy-test (part of make test): docs/operating.md's "Deploy" walkthrough, followed
command by command, so that it cannot rot. Paths and ports are swapped for a scratch folder and
free ones; nginx and redis-server are the real ones (Debian's packages, installed by .ci/run);
`systemd-analyze verify` checks the unit; where the walkthrough asks systemctl to start the
instances, this starts them with the unit's own ExecStart line. A command it does not know
fails the test: teach it here when the walkthrough changes.

Then it checks what the walkthrough promises: health and /config.json over https through nginx
(the walkthrough's own curl lines), an echo over wss, and two chat clients on the two instances
(nginx alternates them) hearing each other through Redis.

  python3 tests/deploy/walkthrough.py BINARY    (the tls,redis build: target/full/release/wsecho)
"""

import json
import os
import re
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "nginx"))
from rawws import frame, read_frame, read_head, upgrade_request  # noqa: E402
from check import free_port, main_conf, wait_for_port  # noqa: E402

PATIENCE = 10
DOC = ROOT / "docs" / "operating.md"


def walkthrough():
    """The walkthrough's commands, in order (comments and blank lines left out)."""
    text = DOC.read_text()
    found = re.search(r"<!-- walkthrough -->\n```sh\n(.*?)```\n<!-- end of walkthrough -->", text, re.S)
    if not found:
        sys.exit("deploy: docs/operating.md has no walkthrough between its markers")
    return [line for line in found.group(1).splitlines() if line.strip() and not line.startswith("#")]


class Scratch:
    """Where the walkthrough's system paths and ports go in this run."""

    def __init__(self, binary):
        self.binary = Path(binary).resolve()
        self.work = Path(tempfile.mkdtemp(prefix="wsecho-deploy-"))
        # Run as root, nginx's workers are another user: they must reach their files.
        self.work.chmod(0o755)
        for folder in ["bin", "ssl", "units", "sites", "run", "nginx"]:
            (self.work / folder).mkdir()
            (self.work / folder).chmod(0o755)
        self.nginx_port = free_port()
        self.pages = {"1": free_port(), "2": free_port()}
        self.redis_port = free_port()
        self.paths = {
            "/usr/local/bin/wsecho": str(self.work / "bin" / "wsecho"),
            "/etc/ssl/private/wsecho.key": str(self.work / "ssl" / "wsecho.key"),
            "/etc/ssl/certs/wsecho.pem": str(self.work / "ssl" / "wsecho.pem"),
            "/etc/systemd/system/": str(self.work / "units") + "/",
            "/etc/nginx/sites-enabled/": str(self.work / "sites") + "/",
            "/run/wsecho/": str(self.work / "run") + "/",
            "redis://127.0.0.1:6379": f"redis://127.0.0.1:{self.redis_port}",
            "https://localhost/": f"https://localhost:{self.nginx_port}/",
        }
        self.processes = []
        self.logs = {}

    def swap(self, text):
        for old, new in self.paths.items():
            text = text.replace(old, new)
        return text

    def start(self, name, command):
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True,
                                   env={"RUST_LOG": "info", "PATH": os.environ["PATH"]})
        lines = self.logs.setdefault(name, [])
        threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True).start()
        self.processes.append(process)
        return process

    def stop(self):
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(PATIENCE)
                except subprocess.TimeoutExpired:
                    process.kill()
        shutil.rmtree(self.work, ignore_errors=True)


def run(command, what):
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        sys.exit(f"deploy: {what} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    return done


def start_instances(scratch, names):
    unit = (scratch.work / "units" / "wsecho@.service").read_text()
    exec_start = next(line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("ExecStart="))
    scratch.start("redis", ["redis-server", "--port", str(scratch.redis_port), "--bind", "127.0.0.1",
                            "--save", "", "--appendonly", "no"])
    wait_for_port(scratch.redis_port)
    for name in names:
        number = name.removeprefix("wsecho@")
        line = exec_start.replace("%i", number)
        line = line.replace(f"127.0.0.1:808{number}", f"127.0.0.1:{scratch.pages[number]}")
        scratch.start(name, shlex.split(line))
        wait_for_port(scratch.pages[number])
        wait_for_port(scratch.work / "run" / f"ws-{number}.sock")


def follow(scratch):
    """Each command of the walkthrough, as this machine can run it."""
    for line in walkthrough():
        words = shlex.split(line)
        swapped = shlex.split(scratch.swap(line))
        if words[:2] == ["cargo", "build"]:
            # The binary this test was given is that build (make test builds it so).
            if "--locked" not in words or "tls,redis" not in line:
                sys.exit(f"deploy: the walkthrough's build is not the one tested: {line}")
        elif words[:2] == ["install", "-m"] and words[3] == "target/release/wsecho":
            shutil.copy(scratch.binary, swapped[4])
            os.chmod(swapped[4], 0o755)
        elif words[0] == "openssl":
            run(swapped, "the certificate")
            os.chmod(scratch.paths["/etc/ssl/private/wsecho.key"], 0o644)
        elif words[:2] == ["apt-get", "install"]:
            for package, tool in {"redis-server": "redis-server", "nginx-light": "nginx"}.items():
                if package in words and not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists()):
                    sys.exit(f"deploy: {tool} not found: apt-get install {package} (.ci/run does)")
        elif words[:2] == ["systemd-analyze", "verify"]:
            unit = scratch.work / "units" / "check" / Path(words[2]).name
            unit.parent.mkdir(exist_ok=True)
            unit.write_text(scratch.swap((ROOT / words[2]).read_text()))
            done = run(["systemd-analyze", "verify", str(unit)], "systemd-analyze verify")
            if done.stderr.strip():
                sys.exit(f"deploy: systemd-analyze verify warns: {done.stderr.strip()}")
        elif words[:3] == ["install", "-m", "644"]:
            text = (ROOT / words[3]).read_text()
            if words[3] == "deploy/nginx.conf":
                for old, number in [("127.0.0.1:8081;", "1"), ("127.0.0.1:8082;", "2")]:
                    text = text.replace(old, f"127.0.0.1:{scratch.pages[number]};")
                text = text.replace("listen 443 ssl;", f"listen 127.0.0.1:{scratch.nginx_port} ssl;")
            Path(swapped[4]).write_text(scratch.swap(text))
        elif words == ["systemctl", "daemon-reload"]:
            pass
        elif words[:3] == ["systemctl", "enable", "--now"]:
            start_instances(scratch, words[3:])
        elif words == ["nginx", "-t"]:
            # Debian's nginx.conf includes sites-enabled in http {}.
            conf = main_conf(scratch.work / "nginx", f"{scratch.work}/sites/*")
            run(["nginx", "-t", "-c", str(conf), "-p", str(scratch.work / "nginx")], "nginx -t")
        elif words == ["systemctl", "reload", "nginx"]:
            conf = scratch.work / "nginx" / "nginx.conf"
            scratch.start("nginx", ["nginx", "-c", str(conf), "-p", str(scratch.work / "nginx")])
            wait_for_port(scratch.nginx_port)
        elif words[0] == "curl":
            answer = run(swapped, line).stdout
            if line.endswith("/healthz") and answer.strip() != "ok":
                sys.exit(f"deploy: {line} answered {answer!r}")
            if line.endswith("/config.json") and json.loads(answer).get("wsPort") is not None:
                sys.exit(f"deploy: through nginx the page must infer its WebSocket port: {answer}")
        else:
            sys.exit(f"deploy: the walkthrough has a command this test does not know: {line}")


def wss(scratch, path):
    context = ssl.create_default_context(cafile=scratch.paths["/etc/ssl/certs/wsecho.pem"])
    raw = socket.create_connection(("127.0.0.1", scratch.nginx_port), timeout=PATIENCE)
    sock = context.wrap_socket(raw, server_hostname="localhost")
    origin = f"Origin: https://localhost:{scratch.nginx_port}\r\n"
    sock.sendall(upgrade_request(path, f"localhost:{scratch.nginx_port}", origin))
    head = read_head(sock).decode(errors="replace")
    if not head.startswith("HTTP/1.1 101"):
        sys.exit(f"deploy: wss {path} through nginx: {head!r}")
    return sock


def say(sock, message):
    sock.sendall(frame(0x1, json.dumps(message).encode()))


def hear(sock, kind):
    """The next chat message of type `kind` (others skipped)."""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        try:
            opcode, payload = read_frame(sock)
        except OSError:  # the socket's own timeout (PATIENCE)
            break
        if opcode == 0x1:
            message = json.loads(payload)
            if message.get("type") == kind:
                return message
    sys.exit(f"deploy: no {kind} message within {PATIENCE} s (are the instances sharing Redis?)")


def check_it_works(scratch):
    echo = wss(scratch, "/echo")
    echo.sendall(frame(0x1, b"over wss"))
    if read_frame(echo) != (0x1, b"over wss"):
        sys.exit("deploy: no echo over wss through nginx")
    echo.close()
    # nginx alternates the WebSocket upstream: ann and bob land on different instances.
    ann, bob = wss(scratch, "/chat"), wss(scratch, "/chat")
    say(ann, {"type": "join", "name": "ann"})
    hear(ann, "welcome")
    say(bob, {"type": "join", "name": "bob"})
    hear(bob, "welcome")
    say(ann, {"type": "say", "text": "hello from instance to instance"})
    said = hear(bob, "said")
    if said.get("text") != "hello from instance to instance":
        sys.exit(f"deploy: bob heard {said}")
    opened = {name: sum("/chat" in line and " open " in line for line in scratch.logs.get(name, []))
              for name in ["wsecho@1", "wsecho@2"]}
    if sorted(opened.values()) != [1, 1]:
        sys.exit(f"deploy: the two chat clients were not on the two instances: {opened}")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    scratch = Scratch(sys.argv[1])
    try:
        follow(scratch)
        check_it_works(scratch)
    finally:
        scratch.stop()
    print("deploy: the walkthrough's commands, https through nginx, wss, and one chat room across "
          "two instances as expected")


if __name__ == "__main__":
    main()
