"""make bench's wss modes: the same load over TLS (wss://), for the servers that speak it with
rustls or its equal: wsecho (its `tls` build, `--tls-cert`/`--tls-key`), tokio-tungstenite with
tokio-rustls (ring, the same rustls version as wsecho's), and Node ws behind node's own https.
The load client speaks TLS with rustls too (`wsload --ca`), trusting a certificate made for the
run by `openssl` (P-256, for localhost and 127.0.0.1).

- wss-idle: 5000 connections held after one echo each: the server's RSS per connection;
- wss-rtt, wss-stream, wss-handshake: as their plain modes (a handshake here includes TLS's);
- wss-fanout: each server's chat room, 1000 members, 10 talkers x 10 messages/s (100,000
  deliveries/s offered), as the plain fanout mode.
"""

import subprocess
from pathlib import Path

from fanout import per_offered_in

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parents[1]
FOLDER = ROOT / "target" / "bench" / "wss"
CERT, KEY = FOLDER / "cert.pem", FOLDER / "key.pem"
WSECHO_FULL = ROOT / "target" / "full" / "release" / "wsecho"
PEERS_BUILD = ROOT / "target" / "bench-peers" / "release"
CAP = 10000


def wsecho(port):
    return [str(WSECHO_FULL), "--ws", f"127.0.0.1:{port}", "--http", "127.0.0.1:0",
            "--policy-port", "0", "--max-connections", str(CAP), "--max-per-address",
            str(2 * CAP), "--tls-cert", str(CERT), "--tls-key", str(KEY)]


SERVERS = {
    "wsecho": wsecho,
    "tokio-tungstenite": lambda port: [str(PEERS_BUILD / "tokio-echo"), str(port), str(CERT), str(KEY)],
    "node-ws": lambda port: ["node", str(BENCH / "peers" / "ws_echo.js"), str(port), str(CERT), str(KEY)],
}
CHAT_SERVERS = {
    "wsecho": wsecho,
    "tokio-tungstenite": lambda port: [str(PEERS_BUILD / "tokio-chat"), str(port), str(CERT), str(KEY)],
    "node-ws": lambda port: ["node", str(BENCH / "peers" / "ws_chat.js"), str(port), str(CERT), str(KEY)],
}
IDLE_FIELDS = ["rss_per_conn_kib", "threads_per_conn", "mem_available_drop_kib"]
MODES = [
    ("wss-idle", ["idle", "--connections", "5000"], IDLE_FIELDS),
    ("wss-rtt", ["rtt"], ["p50_us", "p99_us"]),
    ("wss-stream", ["stream"], ["mb_per_s"]),
    ("wss-handshake", ["handshake"], ["per_s"]),
]
FANOUT = [("wss-fanout", ["fanout", "--connections", "1000", "--rate", "10"],
           ["deliveries_per_s", "p50_us", "p99_us", "max_us", "expected", "delivered"])]
NAMES = [m for m, _, _ in MODES + FANOUT]

MISS_NOTES = {
    "wss-idle <= 32 KiB RSS per connection": "besides the plain connection's cost, rustls's "
        "session (about 7 KiB of heap once the handshake is done, 4 KiB of it the buffer "
        "records arrive in) and the deeper stack the handshake touched; glibc's per-thread "
        "cache of freed blocks is kept to blocks up to 64 bytes (it held 8 KiB).",
    "wss-rtt p50 <= tokio-tungstenite's": "both run rustls with ring; a round trip is two "
        "records' encryption and decryption besides the plain work.",
    "wss-rtt p99 <= tokio-tungstenite's": "the slowest 1% of round trips is set by what else "
        "the two shared cores run when a round trip comes, and the rounds spread more than the "
        "gap (both servers run rustls with ring). What each server does per echo, the "
        "instruction counts settle: see 'wss' under Instructions per echo.",
    "wss-stream >= tokio-tungstenite": "both servers read each 64 KiB message whole before "
        "echoing it. What was wsecho's own (0.65x in this bench): on AMD EPYC `rep movsb` "
        "copies about 30 times slower where malloc puts same-sized blocks, and rustls copies "
        "every 16 KiB record into one; wsecho now runs with glibc's "
        "`x86_rep_movsb_threshold` raised (src/bin/wsecho/tunables.rs), and its server spends "
        "less CPU per message than tokio-tungstenite's. The instruction counts settle what the "
        "server does: see 'wss stream' under Instructions per echo.",
    "wss-handshakes/s >= tokio-tungstenite": "a TLS handshake's ECDHE and signature dominate, "
        "the same for both (ring), and the rounds spread more than the gap. Measured outside "
        "the bench (2026-12-07, /proc/PID/stat), the server's CPU per handshake was the same "
        "for both, about 300 µs (wsecho 195 in user space and 106 in the kernel, "
        "tokio-tungstenite 187 and 128), and the load client's about 350 µs: the handshakes "
        "are made one after another, so the client's share sets most of the rate. wsecho's "
        "fewer instructions per connection (see 'wss connection' under Instructions per echo, "
        "counted under callgrind) did not show as less CPU time in that run.",
    "wss-fanout deliveries/s >= tokio-tungstenite": "each delivery is encrypted once per member.",
    "wss-fanout p99 <= tokio-tungstenite's": "each delivery is encrypted once per member, in the "
        "room's pass.",
}


def certificate():
    """Make the run's certificate and key (once)."""
    if CERT.exists() and KEY.exists():
        return
    FOLDER.mkdir(parents=True, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    # An end entity: rustls refuses a CA certificate as the server's own.
                    "-addext", "basicConstraints=critical,CA:FALSE",
                    "-keyout", str(KEY), "-out", str(CERT)],
                   check=True, capture_output=True)


def run(name, modes, results, seconds, run_modes):
    """Run `name`'s wss modes through run.py's `run_modes`: its echo, then its chat room for
    wss-fanout, each started over TLS."""
    for servers, path, wanted in [(SERVERS, "/echo", MODES), (CHAT_SERVERS, "/chat", FANOUT)]:
        chosen = [(mode, [*args, "--ca", str(CERT)], fields)
                  for mode, args, fields in wanted if mode in modes]
        if chosen and name in servers:
            run_modes(name, chosen, servers, path, results, seconds, scheme="wss")


def section(out, results, servers, cell):
    ran = {mode for s in results for mode, fields in results[s].items() if fields}
    if not ran & set(NAMES):
        return
    out("## Over TLS (wss)\n")
    out("The same load over wss:// for the servers that speak it: wsecho's `tls` build, "
        "tokio-tungstenite with tokio-rustls (rustls with ring, the same version as wsecho's) "
        "and Node ws behind node's https; the load client speaks rustls too (TLS 1.3; after "
        "the handshake it keeps the record layer itself, so that its stream mode's one thread "
        "can seal messages and write them as the socket takes them). A handshake "
        "includes TLS's (ECDHE P-256, ECDSA); idle is 5000 connections held after one echo; "
        "fanout is the chat room at 100,000 deliveries/s offered.\n")
    out("| server | rtt p50 µs | rtt p99 µs | stream MB/s | handshakes/s | idle KiB/conn "
        "| fanout deliveries/s | fanout p99 µs |")
    out("|---|" + "---:|" * 7)
    columns = [("wss-rtt", "p50_us", 1), ("wss-rtt", "p99_us", 1), ("wss-stream", "mb_per_s", 0),
               ("wss-handshake", "per_s", 0), ("wss-idle", "rss_per_conn_kib", 1),
               ("wss-fanout", "deliveries_per_s", 0), ("wss-fanout", "p99_us", 0)]
    for s in servers:
        if any(results[s].get(mode) for mode in NAMES):
            out(f"| {s} | " + " | ".join(cell(results[s][mode].get(f, []), d)
                                         for mode, f, d in columns) + " |")
    out("")


def targets(get, ratio):
    tokio = "tokio-tungstenite"

    def against(mode, field):
        return ratio(get("wsecho", mode, field), get(tokio, mode, field))

    return [
        ("wss-rtt p50 <= tokio-tungstenite's", against("wss-rtt", "p50_us"), "<=", 1.0),
        ("wss-rtt p99 <= tokio-tungstenite's", against("wss-rtt", "p99_us"), "<=", 1.0),
        ("wss-stream >= tokio-tungstenite", against("wss-stream", "mb_per_s"), ">=", 1.0),
        ("wss-handshakes/s >= tokio-tungstenite", against("wss-handshake", "per_s"), ">=", 1.0),
        ("wss-idle <= 32 KiB RSS per connection", get("wsecho", "wss-idle", "rss_per_conn_kib"), "<=", 32.0),
        ("wss-idle <= tokio-tungstenite's", against("wss-idle", "rss_per_conn_kib"), "<=", 1.0),
        ("wss-fanout deliveries/s >= tokio-tungstenite",
         ratio(per_offered_in(get, ratio, "wsecho", "wss-fanout"),
               per_offered_in(get, ratio, tokio, "wss-fanout")), ">=", 1.0),
        ("wss-fanout p99 <= tokio-tungstenite's", against("wss-fanout", "p99_us"), "<=", 1.0),
    ]
