"""make bench: wsecho against the floor for its design and the servers a user would pick instead.

Installs every server from the package registries (cargo, PyPI, npm), then runs rounds: in
each round, mode by mode, every server is started in turn (the order rotates), measured by our
load client (target/release/wsload) and stopped. One SCHED_IDLE busy loop per core keeps idle
vCPUs from sleeping (their wake-up would otherwise dominate one-connection round trips), and
the rtt modes run the client on one CPU and the server on another (see PLACED_MODES).
Prints medians with min-max over the rounds and ratios, checks the targets (targets.py), and writes
BENCHMARKS.md with the machine, the date and the command.

The wss modes (wss.py) run rtt, stream, handshakes, idle and fanout over TLS.

The http modes (http_carrier.py) run wsecho's sessions over HTTP and socket.io's long-polling.

The fanout modes (fanout.py) run each server's chat room instead of its echo, at 100,000 and
500,000 deliveries/s offered, and find the highest rate each sustains; `wsecho-redis` is
wsecho's chat room shared through Redis.

Usage: python3 tests/bench/run.py [--rounds N] [--seconds S] [--servers a,b,...]
                                  [--modes m,...] [--no-write]
"""

import argparse
import checks as wsecho_checks
import fanout
import http_carrier
import instructions
import targets
import wss
from instructions import stop
from targets import WSECHO_CAP, median, ratio
import json
import datetime
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "tests" / "bench"
BUILD = ROOT / "target" / "bench"
CHARTS = BENCH / "charts"
VENV = BENCH / ".venv"
WSLOAD = ROOT / "target" / "release" / "wsload"
WSECHO = ROOT / "target" / "release" / "wsecho"
# wsecho with symbols (the release profile, not stripped), for the instruction profile.
WSECHO_SYMBOLS = ROOT / "target" / "profile" / "release" / "wsecho"
TOKIO = ROOT / "target" / "bench-peers" / "release" / "tokio-echo"
# wsecho runs with its defaults but the caps (WSECHO_CAP, in targets.py).
SERVERS = {
    "wsecho": lambda port: [str(WSECHO), "--ws", f"127.0.0.1:{port}", "--http", "127.0.0.1:0",
                            "--policy-port", "0", "--max-connections", str(WSECHO_CAP),
                            "--max-per-address", str(2 * WSECHO_CAP)],
    "raw-tcp": lambda port: [str(BUILD / "tcp_echo"), str(port)],
    "tokio-tungstenite": lambda port: [str(TOKIO), str(port)],
    "gevent": lambda port: [str(VENV / "bin" / "python"), str(BENCH / "peers" / "gevent_echo.py"), str(port)],
    "websockets": lambda port: [str(VENV / "bin" / "python"), str(BENCH / "peers" / "websockets_echo.py"), str(port)],
    "node-ws": lambda port: ["node", str(BENCH / "peers" / "ws_echo.js"), str(port)],
}
PEERS = ["tokio-tungstenite", "gevent", "websockets", "node-ws"]

# The servers that speak permessage-deflate, for the deflate mode (a client that compresses:
# 64 KiB of compressible text per message). Node ws's echo turns it on (its default is off).
DEFLATE_SERVERS = {name: SERVERS[name] for name in ["wsecho", "websockets", "node-ws"]}
DEFLATE = ("deflate", ["deflate"], ["mb_per_s", "server_cpu_ms_per_mb"])

# Programs per connection: wsecho's --run against websocketd (Debian's package), each serving
# `cat` on every path, so each line comes back as it went. handshake: connect, upgrade (which
# starts the program), close; conc: 100 connections each with its own program.
RUN_SERVERS = {
    "wsecho": lambda port: [*SERVERS["wsecho"](port), "--run", "/echo=cat"],
    "websocketd": lambda port: ["websocketd", "--address", "127.0.0.1", "--port", str(port),
                                "--loglevel", "error", "cat"],
}
RUN = [("run-handshake", ["handshake"], ["per_s"]),
       ("run-conc", ["conc", "--connections", "100"], ["msgs_per_s", "p50_us", "p99_us"])]

# (name, wsload arguments, reported fields). idle runs first, on a fresh server.
MODES = [
    ("idle", ["idle", "--connections", "5000"], ["rss_per_conn_kib", "threads_per_conn",
                                                  "mem_available_drop_kib", "kernel_stack_kib",
                                                  "slab_kib", "page_tables_kib"]),
    ("rtt", ["rtt"], ["p50_us", "p99_us"]),
    ("conc100", ["conc", "--connections", "100"], ["msgs_per_s", "p50_us", "p99_us"]),
    ("conc1000", ["conc", "--connections", "1000"], ["msgs_per_s", "p50_us", "p99_us"]),
    ("paced", ["paced", "--connections", "1000"], ["p50_us", "p99_us", "max_us"]),
    ("stream", ["stream"], ["mb_per_s"]),
    ("handshake", ["handshake"], ["per_s"]),
]

ALL_MODES = [m for m, _, _ in MODES + fanout.MODES + [DEFLATE] + RUN]

def sh(command, **kwargs):
    print("bench:", " ".join(str(c) for c in command), flush=True)
    subprocess.run(command, check=True, **kwargs)


def missing_programs(servers, modes):
    """The system programs the chosen servers and modes need that are not on PATH, each with the
    Debian package that provides it; the bench installs its crates and npm/PyPI packages itself,
    but not these."""
    needed = {"cargo": "rustup", "rustc": "rustup", "node": "nodejs", "npm": "npm", "openssl": "openssl"}
    if "wsecho-redis" in servers:
        needed["redis-server"] = "redis-server"
    if "websocketd" in servers:
        needed["websocketd"] = "websocketd"
    if "instructions" in modes:
        needed["valgrind"] = "valgrind"
    return {program: package for program, package in needed.items() if shutil.which(program) is None}


def install():
    """Build and install every server and the load client (idempotent)."""
    sh(["cargo", "build", "--release", "--quiet", "--workspace", "--bins"], cwd=ROOT)
    sh(["cargo", "build", "--release", "--quiet", "--bins", "--all-features", "--target-dir",
        str(ROOT / "target" / "full")], cwd=ROOT)
    sh(["cargo", "build", "--release", "--quiet", "--bin", "wsecho", "--target-dir",
        str(ROOT / "target" / "profile")], cwd=ROOT,
       env={**os.environ, "CARGO_PROFILE_RELEASE_STRIP": "false", "CARGO_PROFILE_RELEASE_DEBUG": "1"})
    BUILD.mkdir(parents=True, exist_ok=True)
    wss.certificate()
    tcp_echo = BUILD / "tcp_echo"
    source = BENCH / "peers" / "tcp_echo.rs"
    if not tcp_echo.exists() or tcp_echo.stat().st_mtime < source.stat().st_mtime:
        sh(["rustc", "-O", "--edition", "2021", "-o", str(tcp_echo), str(source)])
    sh(["cargo", "build", "--release", "--quiet", "--manifest-path",
        str(BENCH / "peers" / "tokio-echo" / "Cargo.toml"),
        "--target-dir", str(ROOT / "target" / "bench-peers")])
    if not (VENV / "bin" / "python").exists():
        sh([sys.executable, "-m", "venv", str(VENV)])
    sh([str(VENV / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
        "-r", str(BENCH / "requirements.txt")])
    if not (BENCH / "node_modules" / "socket.io-client").exists():
        sh(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=BENCH)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_listening(port, process, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.0005)
    raise RuntimeError(f"not listening on {port} after {timeout} s")


def start(name, servers=SERVERS):
    port = free_port()
    process = subprocess.Popen(servers[name](port), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "RUST_LOG": "warn"})
    try:
        wait_listening(port, process)
    except Exception:
        stop(process)
        raise
    return process, port


# The load client copies with vector loads and stores, never `rep movsb`, as wsecho itself does
# (src/bin/wsecho/tunables.rs): on AMD EPYC `rep movsb` is about 30 times slower where malloc
# places same-sized blocks, and the client's TLS records and 64 KiB messages hit it (it made the
# client the bottleneck of the stream modes). The servers run as their users get them.
CLIENT_ENV = {**os.environ, "GLIBC_TUNABLES": "glibc.cpu.x86_rep_movsb_threshold=1073741824"}


# A round trip on one connection (the rtt modes, plain and wss) is measured with the load client
# on one CPU and every thread of the server on another. Left to the scheduler, the pair lands
# either on one CPU (a round trip of about 6 µs here: two context switches) or across two (about
# 43 µs: two wake-ups from one CPU to the other) and keeps that placement for the whole run, so
# each round's p50 was one or the other by lot, for every server alike (2026-12-07, five rounds:
# tokio-tungstenite 10 µs in one, raw TCP 6.4 in two, wsecho 6.7 in one, all others 42 to 47).
# Across two CPUs is where a real deployment puts it: the client is elsewhere.
PLACED_MODES = {"rtt"}


def cpus_to_place():
    """(the client's CPU, the server's CPU), or None on a host with one CPU to use."""
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else None


def set_process_cpus(pid, cpus):
    """Set the CPUs of every thread of process `pid`; threads it starts later inherit them.
    The list of threads is read again until it holds none not yet set: a thread can be
    starting (from one not yet set) while the list is read, as when the server is new."""
    done = set()
    for _ in range(100):
        try:
            tasks = {int(task.name) for task in Path(f"/proc/{pid}/task").iterdir()}
        except FileNotFoundError:
            return  # the server ended: the mode reports its failure, as for any server
        if tasks <= done:
            return
        for task in tasks - done:
            try:
                os.sched_setaffinity(task, cpus)
            except ProcessLookupError:
                pass  # the thread ended meanwhile
        done |= tasks


def wsload(args, port, pid, seconds, path="/echo", scheme="ws"):
    command = [str(WSLOAD), *args, f"{scheme}://127.0.0.1:{port}{path}", "--pid", str(pid),
               "--seconds", str(seconds)]
    placed = cpus_to_place() if args[0] in PLACED_MODES else None
    if placed:
        command = ["taskset", "-c", str(placed[0]), *command]
        set_process_cpus(pid, {placed[1]})
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120 + seconds,
                              env=CLIENT_ENV)
    finally:
        if placed:
            set_process_cpus(pid, os.sched_getaffinity(0))
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip())
    return {key: float(value) for key, value in re.findall(r"(\w+)=([\d.]+|nan)", done.stdout)}


def busy_loops():
    """One lowest-priority spinner per core: they run only when a core would otherwise idle."""
    return [subprocess.Popen(["chrt", "-i", "0", "sh", "-c", "while :; do :; done"])
            for _ in range(os.cpu_count() or 1)]


def run_modes(name, modes, servers, path, results, seconds, scheme="ws"):
    """Start `name` from `servers`, run each mode against it (at `path`, over `scheme`), stop
    it."""
    process, port = start(name, servers)
    try:
        for mode, args, fields in modes:
            try:
                figures = wsload(args, port, process.pid, seconds, path, scheme)
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                print(f"bench:   {name} {mode}: failed: {error}", flush=True)
                continue
            for field in fields + ["client_cpu", "server_cpu"]:
                if field in figures:
                    results[name][mode].setdefault(field, []).append(figures[field])
            # Let the mode's connections wind down before the next one is measured.
            time.sleep(1)
            shown = " ".join(f"{f}={figures.get(f, float('nan')):g}" for f in fields)
            print(f"bench:   {name} {mode}: {shown} "
                  f"client_cpu={figures.get('client_cpu', 0):.2f}", flush=True)
    finally:
        stop(process)


def measure(servers, rounds, seconds, modes):
    """results[server][mode][field] = [value per round]; plus client CPU shares.

    Mode by mode, every server in turn (the order rotates each round), each started afresh for
    the mode: a ratio then compares figures taken a minute apart at most, where server by
    server they were several minutes apart, on a shared host whose speed drifts over minutes
    by more than the gaps the targets judge. The http modes go kind by kind instead
    (http_carrier.run): their target compares two of wsecho's kinds, measured back to back."""
    echo_modes = [m for m in MODES if m[0] in modes]
    fanout_modes = [m for m in fanout.MODES if m[0] in modes]
    deflate = [DEFLATE] if DEFLATE[0] in modes else []
    run = [r for r in RUN if "run" in modes]
    results = {s: {m: {} for m in [*ALL_MODES, *wss.NAMES, "fanout-max"]} for s in servers}
    for round_number in range(rounds):
        order = servers[round_number % len(servers):] + servers[:round_number % len(servers)]
        print(f"bench: round {round_number + 1}/{rounds}: {', '.join(order)}", flush=True)
        for chosen, table, path in [(echo_modes, SERVERS, "/echo"),
                                    (fanout_modes, fanout.SERVERS, "/chat"),
                                    (deflate, DEFLATE_SERVERS, "/echo"),
                                    (run, RUN_SERVERS, "/echo")]:
            for mode in chosen:
                for name in order:
                    if name in table:
                        run_modes(name, [mode], table, path, results, seconds)
        for mode in wss.NAMES:
            if mode in modes:
                for name in order:
                    wss.run(name, [mode], results, seconds, run_modes)
        if "http" in modes:
            for name in order:
                if name in http_carrier.SERVERS:
                    http_carrier.run(name, results, seconds, start, stop)
    if "fanout-max" in modes:
        fanout.highest_rates(servers, results, seconds, start, stop, wsload)
    return results


def count_instructions(servers):
    """Instructions per echo (instructions.py) of wsecho (a build with symbols, profiled by
    function), the floor, tokio-tungstenite and Python websockets; of an echo whose message the
    client compressed, for wsecho and Python websockets (tokio-tungstenite's tungstenite has no
    permessage-deflate); over wss, for wsecho and tokio-tungstenite; and, for those two, per 64
    KiB message (plain and wss) and per wss connection. Outside the rounds: counts do not vary
    with the machine's load."""
    symbols = lambda port: [str(WSECHO_SYMBOLS), *SERVERS["wsecho"](port)[1:]]  # noqa: E731
    rows = [("wsecho", symbols, True), ("raw-tcp", SERVERS["raw-tcp"], False),
            ("tokio-tungstenite", SERVERS["tokio-tungstenite"], False),
            ("websockets", SERVERS["websockets"], False),
            ("wsecho compressed", symbols, False),
            ("websockets compressed", SERVERS["websockets"], False),
            ("wsecho wss", wss.SERVERS["wsecho"], False),
            ("tokio-tungstenite wss", wss.SERVERS["tokio-tungstenite"], False),
            ("wsecho stream", SERVERS["wsecho"], False),
            ("tokio-tungstenite stream", SERVERS["tokio-tungstenite"], False),
            ("wsecho wss stream", wss.SERVERS["wsecho"], False),
            ("tokio-tungstenite wss stream", wss.SERVERS["tokio-tungstenite"], False),
            ("wsecho wss connection", wss.SERVERS["wsecho"], False),
            ("tokio-tungstenite wss connection", wss.SERVERS["tokio-tungstenite"], False)]
    return instructions.count([row for row in rows if row[0].split()[0] in servers], free_port)


def cell(values, digits=1):
    if not values:
        return "failed"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def draw_charts(results):
    """The charts, one PNG per mode, in tests/bench/charts/ (charts.py, in the bench's venv)."""
    BUILD.mkdir(parents=True, exist_ok=True)
    figures = BUILD / "results.json"
    figures.write_text(json.dumps(results))
    drawn = subprocess.run([str(VENV / "bin" / "python"), str(BENCH / "charts.py"), str(figures),
                            str(CHARTS)], capture_output=True, text=True)
    if drawn.returncode != 0:
        print(f"bench: charts not drawn: {drawn.stderr.strip()}", flush=True)
        return []
    return [Path(line) for line in drawn.stdout.split()]


def mode_table(out, results, servers, mode, headings, fields):
    """One mode's figures, a row for each server that ran it: `fields` are (name, digits)."""
    out("| server | " + " | ".join(headings) + " |")
    out("|---|" + "---:|" * len(headings))
    for s in servers:
        if results[s][mode]:
            out(f"| {s} | " + " | ".join(cell(results[s][mode].get(f, []), d) for f, d in fields)
                + " |")
    out("")


def report(results, checks, servers, rounds, seconds, command, counted=({}, []), charts=()):
    rust_peer = "tokio-tungstenite"
    lines = []
    out = lines.append
    ran = {mode for s in results for mode, fields in results[s].items() if fields}
    out("# wsecho benchmarks\n")
    out(f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC with `{command}`.")
    out(f"Machine: {machine()}.")
    out(f"{rounds} rounds; in each, mode by mode, every server in turn (rotating order), each "
        "started afresh for the mode, so that the figures a ratio compares are taken about a "
        f"minute apart; {seconds} s per mode; "
        "figures are medians over the rounds with (min–max). Load from our own client "
        "(`target/release/wsload`, epoll, one thread); one SCHED_IDLE busy loop per core ran "
        "throughout; in the rtt modes (plain and wss) the client ran on one CPU and every "
        "thread of the server on another, as a remote client would be (left to the scheduler, "
        "a pair sometimes shared one CPU for a whole run, a round trip of 6 µs instead of 43). "
        "wsecho runs with default settings except `--max-connections "
        f"{WSECHO_CAP} --max-per-address {2 * WSECHO_CAP}` (the idle mode holds 5000 connections "
        "from one address; the default caps are 1024, and 64 per address).\n")
    if charts:
        out("## Charts\n")
        out("wsecho in blue; each bar is the median of the rounds, its whisker the spread (min "
            "to max). The tables below have the figures.\n")
        for chart in charts:
            out(f"![{chart.stem}]({chart.relative_to(ROOT)})\n")
        out("## Figures\n")
    out("| server | rtt p50 µs | rtt p99 µs | conc100 msg/s | conc100 p99 µs | conc1000 msg/s "
        "| conc1000 p99 µs | paced p50 µs | paced p99 µs | paced max µs | stream MB/s "
        "| handshakes/s | idle KiB/conn | threads/conn |")
    out("|---|" + "---:|" * 13)
    columns = [("rtt", "p50_us", 1), ("rtt", "p99_us", 1), ("conc100", "msgs_per_s", 0),
               ("conc100", "p99_us", 0), ("conc1000", "msgs_per_s", 0), ("conc1000", "p99_us", 0),
               ("paced", "p50_us", 1), ("paced", "p99_us", 1), ("paced", "max_us", 0),
               ("stream", "mb_per_s", 0), ("handshake", "per_s", 0),
               ("idle", "rss_per_conn_kib", 1), ("idle", "threads_per_conn", 2)]
    for s in servers:
        if any(results[s][mode] for mode, _, _ in MODES):
            out(f"| {s} | " + " | ".join(cell(results[s][mode].get(f, []), d) for mode, f, d in columns) + " |")
    out("")
    if "idle" in ran:
        out("What an idle connection costs the host (5000 held after one echo each), KiB per "
            "connection: the server's RSS, and the growth of the host's own counts in "
            "`/proc/meminfo`: the drop in MemAvailable, KernelStack (a kernel stack per thread), "
            "Slab (sockets, and each thread's task_struct) and PageTables. The host counts "
            "include the load client's end of each connection, which is the same whatever the "
            "server.\n")
        mode_table(out, results, servers, "idle",
                   ["RSS", "MemAvailable drop", "KernelStack", "Slab", "PageTables"],
                   [("rss_per_conn_kib", 1), ("mem_available_drop_kib", 1),
                    ("kernel_stack_kib", 1), ("slab_kib", 1), ("page_tables_kib", 2)])
    cpu = ", ".join(f"{mode} {median(results['wsecho'][mode].get('client_cpu', [])):.2f}"
                    for mode, _, _ in MODES + fanout.MODES + [DEFLATE]
                    if "wsecho" in results and mode in ran)
    out(f"Load client CPU share (cores) against wsecho, by mode: {cpu}.\n")
    fanout.section(out, results, servers, mode_table)
    wss.section(out, results, servers, cell)
    if "deflate" in ran:
        out("Deflate: one connection offering permessage-deflate, as browsers do, sending 64 KiB "
            "messages of compressible text (JSON-like lines, about 10 to 1) compressed, 16 in "
            "flight; MB/s of the text echoed, and the server's CPU time per MB. wsecho inflates "
            "and replies uncompressed (in stored blocks); Python websockets and Node ws (its "
            "`perMessageDeflate` turned on) compress their replies too.\n")
        mode_table(out, results, servers, "deflate", ["MB/s", "server CPU ms per MB"],
                   [("mb_per_s", 0), ("server_cpu_ms_per_mb", 2)])

    if "run-conc" in ran or "run-handshake" in ran:
        out("Programs per connection: wsecho `--run /echo=cat` against Debian's websocketd "
            "serving `cat`: a process per connection, each text message a line on its stdin, "
            "each line it prints a message. Handshakes/s (connect, upgrade and program start, "
            "close and program end, one after another), and 100 connections each with its own "
            "program, 32-byte lines as fast as they come back.\n")
        out("| server | handshakes/s (program started) | round trips/s, 100 programs | p50 µs | p99 µs |")
        out("|---|---:|---:|---:|---:|")
        for s in servers:
            if results[s]["run-handshake"] or results[s]["run-conc"]:
                out(f"| {s} | {cell(results[s]['run-handshake'].get('per_s', []), 0)} | "
                    f"{cell(results[s]['run-conc'].get('msgs_per_s', []), 0)} | "
                    f"{cell(results[s]['run-conc'].get('p50_us', []), 0)} | "
                    f"{cell(results[s]['run-conc'].get('p99_us', []), 0)} |")
        out("")

    http_carrier.section(out, results, cell)

    counts, profile = counted
    instructions.section(out, counts, profile)

    targets.section(out, results, checks, counts, rounds, ran, PEERS)
    w = "wsecho"
    get = targets.getter(results, median)
    out(f"Ratios against tokio-tungstenite (async, for the record): conc100 "
        f"{ratio(get(w, 'conc100', 'msgs_per_s'), get(rust_peer, 'conc100', 'msgs_per_s')):.2f}x, "
        f"conc1000 {ratio(get(w, 'conc1000', 'msgs_per_s'), get(rust_peer, 'conc1000', 'msgs_per_s')):.2f}x, "
        f"stream {ratio(get(w, 'stream', 'mb_per_s'), get(rust_peer, 'stream', 'mb_per_s')):.2f}x.")
    out(f"Holding {WSECHO_CAP} connections: {checks.get('held_rss_per_conn_kib', float('nan')):.1f} KiB "
        f"RSS each; binary {checks.get('binary_kib', 0):.0f} KiB; start to listening "
        f"{checks.get('start_ms', float('nan')):.1f} ms (median of 10).\n")
    return "\n".join(lines)


def machine():
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} × {model}, {memory:.0f} GiB, Linux {platform.release()}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--servers", default=",".join([*SERVERS, "wsecho-redis", "websocketd", "socketio"]))
    parser.add_argument("--modes", default=",".join([*(m for m, _, _ in MODES + fanout.MODES + [DEFLATE]), "fanout-max", *wss.NAMES, "run", "http", "instructions"]),
                        help="which modes to run (default: all)")
    parser.add_argument("--no-write", action="store_true", help="print, but do not write BENCHMARKS.md")
    parser.add_argument("--baseline", metavar="BINARY",
                        help="also measure this wsecho binary (an earlier build) as wsecho-baseline, "
                             "in the same rounds, for paired before/after figures")
    options = parser.parse_args()
    servers = options.servers.split(",")
    if options.baseline:
        baseline = str(Path(options.baseline).resolve())
        SERVERS["wsecho-baseline"] = lambda port: [baseline, *SERVERS["wsecho"](port)[1:]]
        servers.append("wsecho-baseline")
    unknown = set(servers) - set(SERVERS) - set(fanout.SERVERS) - set(RUN_SERVERS) - set(http_carrier.SERVERS)
    if unknown:
        raise SystemExit(f"bench: unknown servers {sorted(unknown)}; known: {', '.join(SERVERS)}")
    missing = missing_programs(servers, options.modes.split(","))
    if missing:
        raise SystemExit(f"bench: {', '.join(missing)} not found; install them first (Debian: "
                         f"apt-get install {' '.join(sorted(set(missing.values())))}), or leave out "
                         f"the servers and modes that need them with --servers and --modes")
    install()
    # First, on a quiet machine: counts do not depend on the load, but valgrind is slow.
    counted = count_instructions(servers) if "instructions" in options.modes.split(",") else ({}, [])
    redis = None
    if "wsecho-redis" in servers:
        port = free_port()
        redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
        fanout.REDIS["url"] = f"redis://127.0.0.1:{port}"
        wait_listening(port, redis)
    spinners = busy_loops()
    try:
        results = measure(servers, options.rounds, options.seconds, options.modes.split(","))
        checks = (wsecho_checks.run(SERVERS["wsecho"], WSECHO_CAP, start, wsload, free_port, wait_listening)
                  if "wsecho" in servers and "idle" in options.modes.split(",") else {})
    finally:
        for spinner in spinners:
            spinner.kill()
        if redis:
            stop(redis)
    command = "make bench" if len(sys.argv) == 1 else "python3 tests/bench/run.py " + " ".join(sys.argv[1:])
    charts = [] if options.no_write else draw_charts(results)
    text = report(results, checks, servers, options.rounds, options.seconds, command, counted,
                  charts)
    print(text)
    if not options.no_write:
        (ROOT / "BENCHMARKS.md").write_text(text + "\n")
        print("bench: wrote BENCHMARKS.md")


if __name__ == "__main__":
    main()
