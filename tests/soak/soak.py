"""make soak: mixed honest and hostile traffic against the release build for SOAK_SECONDS
(default 600), sampling the server's RSS, descriptors and threads every 2 s. Writes SOAK.md
and tests/soak/soak.png; exits 1 unless nothing grew, no acknowledged message was lost, nothing panicked,
and the server went back to its idle threads and descriptors once the load stopped.

Honest clients come from 127.0.0.1, floods and slow openers from 127.0.0.2, bad messages from
127.0.0.3, so the per-address cap keeps them apart as it would on the Internet.
"""

import asyncio
import json
import logging
import os
import random
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import websockets  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from rawws import frame, upgrade_request  # noqa: E402
WSECHO = ROOT / "target" / "release" / "wsecho"
SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
SAMPLE_EVERY = 2.0
HOSTILE = "127.0.0.2"
MISBEHAVING = "127.0.0.3"
MAX_MESSAGE = 1 << 20
BUDGET = 48 << 20
ARGS = ["--http", "127.0.0.1:0", "--ws", "127.0.0.1:0", "--policy-port", "0",
        "--max-message-size", str(MAX_MESSAGE), "--memory-budget", str(BUDGET),
        "--max-connections", "600", "--max-per-address", "200", "--handshake-timeout", "3", "--ping-interval", "5"]

counts = {
    "echo messages sent": 0, "echo messages acknowledged": 0, "echo messages lost": 0,
    "echo sessions": 0, "echo sessions closed 1013 (budget full, retried)": 0,
    "abrupt disconnects": 0,
    "chat messages said": 0, "chat deliveries checked": 0, "chat deliveries lost": 0,
    "flood connections": 0, "slow openers": 0,
    "oversized messages (1009 expected)": 0, "oversized answered 1009": 0,
    "invalid UTF-8 (1007 expected)": 0, "invalid UTF-8 answered 1007": 0,
    "budget attacks (1013 expected)": 0, "budget attacks answered 1013": 0,
}
running = True


def start_server():
    server = subprocess.Popen([str(WSECHO), *ARGS], stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "RUST_LOG": "info"})
    ws = None
    while ws is None:
        line = server.stderr.readline()
        if not line:
            sys.exit("soak: wsecho did not start")
        found = re.search(r"WebSocket: ws://([0-9.]+):(\d+)/", line)
        if found:
            ws = (found.group(1), int(found.group(2)))
    return server, ws


def sample(pid):
    status = Path(f"/proc/{pid}/status").read_text()
    field = lambda name: int(re.search(rf"^{name}:\s+(\d+)", status, re.M).group(1))
    return {"rss_mib": field("VmRSS") / 1024, "threads": field("Threads"),
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


async def sampler(pid, samples, started):
    while running:
        samples.append({"t": time.monotonic() - started, **sample(pid)})
        await asyncio.sleep(SAMPLE_EVERY)


async def echo_client(url, rng):
    """Sessions of echoes, each checked byte for byte; some end abruptly."""
    while running:
        try:
            async with websockets.connect(url, max_size=None, ping_interval=None) as ws:
                counts["echo sessions"] += 1
                for _ in range(rng.randint(5, 200)):
                    size = rng.choice([1, 32, 200, 4000, 20000, 70000, 300000])
                    message = (rng.randbytes(size) if rng.random() < 0.5
                               else "".join(rng.choice("aé✓z") for _ in range(size // 2)))
                    await ws.send(message)
                    counts["echo messages sent"] += 1
                    reply = await asyncio.wait_for(ws.recv(), 30)
                    if reply == message:
                        counts["echo messages acknowledged"] += 1
                    else:
                        counts["echo messages lost"] += 1
                    if not running:
                        break
                if rng.random() < 0.3:
                    counts["abrupt disconnects"] += 1
                    ws.transport.abort()
        except websockets.ConnectionClosed as closed:
            # 1013: the budget had no room for a big message just then; it was never
            # acknowledged, so nothing is lost, and the client tries again.
            if closed.rcvd is not None and closed.rcvd.code == 1013:
                counts["echo sessions closed 1013 (budget full, retried)"] += 1
            else:
                counts["echo messages lost"] += 1
                print(f"soak: echo client: {closed!r}", file=sys.stderr)
        except (OSError, websockets.WebSocketException, asyncio.TimeoutError) as error:
            counts["echo messages lost"] += 1
            print(f"soak: echo client: {error!r}", file=sys.stderr)
        await asyncio.sleep(rng.random())


async def chat(url, rng):
    """Three members stay all along and check every message from each other, in order;
    others come and go abruptly."""
    async def member(name):
        async with websockets.connect(url, ping_interval=None) as ws:
            await ws.send(json.dumps({"type": "join", "name": name}))
            expected = {}
            n = 0
            next_say = time.monotonic()
            while running:
                if time.monotonic() >= next_say:
                    n += 1
                    await ws.send(json.dumps({"type": "say", "text": f"{name} {n}"}))
                    counts["chat messages said"] += 1
                    next_say = time.monotonic() + rng.uniform(0.05, 0.5)
                try:
                    event = json.loads(await asyncio.wait_for(ws.recv(), 0.1))
                except asyncio.TimeoutError:
                    continue
                if event.get("type") != "said":
                    continue
                sender, number = event["text"].rsplit(" ", 1)
                if sender == name or not sender.startswith("stay"):
                    continue
                number = int(number)
                if sender in expected and number != expected[sender]:
                    counts["chat deliveries lost"] += 1
                    print(f"soak: {name} got {sender} {number}, expected {expected[sender]}",
                          file=sys.stderr)
                expected[sender] = number + 1
                counts["chat deliveries checked"] += 1

    async def visitor(i):
        while running:
            try:
                async with websockets.connect(url, ping_interval=None) as ws:
                    await ws.send(json.dumps({"type": "join", "name": f"visitor{i}"}))
                    for _ in range(rng.randint(1, 20)):
                        await ws.send(json.dumps({"type": "say", "text": f"visitor{i} hi"}))
                        await asyncio.sleep(0.1)
                    counts["abrupt disconnects"] += 1
                    ws.transport.abort()
            except (OSError, websockets.WebSocketException):
                pass
            await asyncio.sleep(rng.random())

    # The stayers join first, so each sees every message of the others from the start.
    stayers = [asyncio.create_task(member(f"stay{i}")) for i in range(3)]
    await asyncio.sleep(0.5)
    visitors = [asyncio.create_task(visitor(i)) for i in range(5)]
    await asyncio.gather(*stayers)
    await asyncio.gather(*visitors)


async def raw_upgraded(host, port, local=MISBEHAVING):
    reader, writer = await asyncio.open_connection(host, port, local_addr=(local, 0))
    writer.write(upgrade_request())
    await reader.readuntil(b"\r\n\r\n")
    return reader, writer


async def close_code(reader):
    """The code of the close frame the server sends (skipping anything before it)."""
    while True:
        head = await reader.readexactly(2)
        n = head[1] & 0x7F
        if n == 126:
            n = struct.unpack(">H", await reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", await reader.readexactly(8))[0]
        payload = await reader.readexactly(n)
        if head[0] & 0x0F == 0x8:
            return struct.unpack(">H", payload[:2])[0]


async def misbehaving(host, port, rng):
    """Oversized and invalid messages, and unfinished big ones against the budget."""
    oversized = frame(0x2, bytes(MAX_MESSAGE + 1))
    unfinished = frame(0x2, rng.randbytes(MAX_MESSAGE), fin=False)
    while running:
        kind = rng.choice(["oversized", "utf8", "budget"])
        try:
            reader, writer = await raw_upgraded(host, port)
            if kind == "oversized":
                counts["oversized messages (1009 expected)"] += 1
                writer.write(oversized)
                if await asyncio.wait_for(close_code(reader), 10) == 1009:
                    counts["oversized answered 1009"] += 1
            elif kind == "utf8":
                counts["invalid UTF-8 (1007 expected)"] += 1
                writer.write(frame(0x1, b"ok \xff\xfe not utf-8"))
                if await asyncio.wait_for(close_code(reader), 10) == 1007:
                    counts["invalid UTF-8 answered 1007"] += 1
            else:
                # Eight at once each start a 1 MiB message and never finish: past the budget.
                counts["budget attacks (1013 expected)"] += 1
                others = [await raw_upgraded(host, port) for _ in range(60)]
                for _, other in others:
                    other.write(unfinished)
                writer.write(unfinished)
                # The refused hear at once; the rest hold their place until dropped.
                codes = await asyncio.gather(
                    *[asyncio.wait_for(close_code(r), 3) for r, _ in others],
                    return_exceptions=True)
                if 1013 in codes:
                    counts["budget attacks answered 1013"] += 1
                for _, other in others:
                    other.transport.abort()
            writer.transport.abort()
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as error:
            print(f"soak: {kind}: {error!r}", file=sys.stderr)
        await asyncio.sleep(rng.uniform(0.5, 3))


async def flood(host, port, rng):
    """Bursts of connections opened and dropped at once."""
    while running:
        for _ in range(200):
            try:
                _, writer = await asyncio.open_connection(host, port, local_addr=(HOSTILE, 0))
                counts["flood connections"] += 1
                writer.transport.abort()
            except OSError:
                pass
        await asyncio.sleep(rng.uniform(5, 15))


async def slow_opener(host, port, rng):
    """A request head trickled a byte a second, until the server gives up on it."""
    head = b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    while running:
        try:
            reader, writer = await asyncio.open_connection(host, port, local_addr=(HOSTILE, 0))
            counts["slow openers"] += 1
            for byte in head:
                if not running:
                    break
                writer.write(bytes([byte]))
                try:
                    # Anything back (its 408) or the end: the server has given up on it.
                    await asyncio.wait_for(reader.read(256), 1)
                    break
                except asyncio.TimeoutError:
                    pass
            writer.transport.abort()
        except OSError:
            await asyncio.sleep(1)


def plot(samples, path):
    t = [s["t"] for s in samples]
    figure, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
    for axis, key, label in zip(axes, ["rss_mib", "fds", "threads"],
                                ["RSS (MiB)", "open descriptors", "threads"]):
        axis.plot(t, [s[key] for s in samples], linewidth=1)
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    axes[0].axhline(BUDGET / (1 << 20), color="grey", linestyle="--", linewidth=0.8,
                    label="--memory-budget")
    axes[0].legend(loc="upper right")
    axes[-1].set_xlabel("seconds")
    figure.suptitle(f"wsecho under {SECONDS:.0f} s of mixed traffic (make soak)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


async def main():
    global running
    # Writes to a connection the server has cut are expected here, not worth a line each.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    server, (host, port) = start_server()
    log_lines = []
    loop = asyncio.get_running_loop()

    def drain_log():
        for line in server.stderr:
            log_lines.append(line)

    log_reader = loop.run_in_executor(None, drain_log)
    await asyncio.sleep(0.5)
    idle = sample(server.pid)
    samples = []
    started = time.monotonic()
    rng = random.Random(7)
    url = f"ws://{host}:{port}"
    tasks = [asyncio.create_task(sampler(server.pid, samples, started))]
    tasks += [asyncio.create_task(echo_client(f"{url}/echo", random.Random(i))) for i in range(20)]
    tasks += [asyncio.create_task(chat(f"{url}/chat", rng))]
    tasks += [asyncio.create_task(misbehaving(host, port, random.Random(100 + i)))
              for i in range(2)]
    tasks += [asyncio.create_task(flood(host, port, rng))]
    tasks += [asyncio.create_task(slow_opener(host, port, random.Random(200 + i)))
              for i in range(30)]
    await asyncio.sleep(SECONDS)
    running = False
    for task in tasks[1:]:
        try:
            await asyncio.wait_for(task, 30)
        except (asyncio.TimeoutError, Exception) as error:  # a task stuck is reported below
            print(f"soak: a client task did not end: {error!r}", file=sys.stderr)
    # Back to idle: the handshake timeout and the lingers run out within a few seconds.
    settled = None
    for _ in range(30):
        now = sample(server.pid)
        if now["threads"] <= idle["threads"] + 2 and now["fds"] <= idle["fds"] + 2:
            settled = now
            break
        await asyncio.sleep(1)
    final = sample(server.pid)
    tasks[0].cancel()
    server.send_signal(signal.SIGTERM)
    server.wait(10)
    await log_reader

    n = len(samples)
    middle = samples[n // 5: 2 * n // 5] or samples
    last = samples[4 * n // 5:] or samples
    peak = lambda window, key: max(s[key] for s in window)
    checks = [
        ("RSS does not grow (peak of the last fifth <= 1.25 x that of the second fifth + 8 MiB)",
         peak(last, "rss_mib") <= 1.25 * peak(middle, "rss_mib") + 8),
        ("RSS stays within the budget plus the idle process and 600 connections' baseline",
         max(s["rss_mib"] for s in samples) <= idle["rss_mib"] + BUDGET / (1 << 20) + 64),
        ("threads and descriptors back to idle once the load stopped", settled is not None),
        ("no acknowledged echo lost", counts["echo messages lost"] == 0),
        ("no chat message lost or out of order", counts["chat deliveries lost"] == 0),
        ("every oversized message answered 1009",
         counts["oversized answered 1009"] == counts["oversized messages (1009 expected)"]),
        ("every invalid UTF-8 text answered 1007",
         counts["invalid UTF-8 answered 1007"] == counts["invalid UTF-8 (1007 expected)"]),
        ("every budget attack met 1013",
         counts["budget attacks answered 1013"] == counts["budget attacks (1013 expected)"]),
        ("nothing panicked", not any("panicked" in line for line in log_lines)),
    ]
    passed = all(ok for _, ok in checks)
    plot(samples, Path(__file__).parent / "soak.png")
    warnings = sum(" WARN " in line for line in log_lines)
    report = [
        "# Soak", "",
        f"`make soak` ({SECONDS:.0f} s, `SOAK_SECONDS` to change), {time.strftime('%Y-%m-%d')}: "
        f"**{'passed' if passed else 'FAILED'}**.", "",
        f"wsecho {' '.join(ARGS)}", "",
        "Traffic, all at once: 20 echo clients (sessions of 5 to 200 messages of 1 B to 300 KB, "
        "text and binary, every echo compared byte for byte, 30% of sessions cut without a "
        "close); a chat room with 3 members throughout (each checks every message of the others "
        "arrives, in order) and 5 that come and go abruptly; from 127.0.0.2, bursts of 200 "
        "connections dropped at once every 5-15 s, 30 slow openers trickling a head a byte a "
        "second; from 127.0.0.3, two clients sending oversized messages, invalid UTF-8, and "
        "waves of 61 unfinished 1 MiB messages against the budget.", "",
        "![RSS, descriptors and threads over the run](tests/soak/soak.png)", "",
        "| check | result |", "|---|---|",
        *[f"| {name} | {'pass' if ok else 'FAIL'} |" for name, ok in checks], "",
        "| count | |", "|---|---|",
        *[f"| {name} | {value} |" for name, value in counts.items()],
        f"| warnings logged | {warnings} |", "",
        f"Idle before: {idle['rss_mib']:.1f} MiB, {idle['threads']} threads, {idle['fds']} "
        f"descriptors. Peak: {max(s['rss_mib'] for s in samples):.1f} MiB, "
        f"{max(s['threads'] for s in samples)} threads, {max(s['fds'] for s in samples)} "
        f"descriptors. After the load: {final['rss_mib']:.1f} MiB, {final['threads']} threads, "
        f"{final['fds']} descriptors.", "",
    ]
    (ROOT / "SOAK.md").write_text("\n".join(report))
    print("\n".join(report))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
