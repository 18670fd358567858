"""Protocol conformance: every Autobahn fuzzingclient case against wsecho's defaults.

Starts the wsecho binary on free loopback ports (otherwise default settings), runs the cases
with kosoku against ws://127.0.0.1:PORT/echo, reads the suite's index.json and prints a table
per case group, the failing cases with the suite's reason, and `conformance: N passed, N failed`.
A case passes when its behaviour is OK, NON-STRICT or INFORMATIONAL and its close behaviour OK or
INFORMATIONAL; anything else fails, UNIMPLEMENTED included (groups 12 and 13, permessage-deflate).
Then Python websockets' client, which offers permessage-deflate and compresses what it sends,
echoes large compressible messages through the same server. The server is stopped whatever
happens; every wait is bounded. Exit 1 if any case or the websockets check failed. Run it with
the Python of tests/conformance/.venv (kosoku and websockets, pinned).

With --tls (WSECHO_BINARY then a build with the `tls` feature), wsecho runs with a certificate
made for the run, and the cases go through wss: kosoku itself cannot speak TLS (its tungstenite
is built without it), so it talks ws:// to a relay here that carries every byte, both ways, over
a TLS connection (Python's ssl, OpenSSL) to wsecho's wss port.

Usage: run.py WSECHO_BINARY KOSOKU_BINARY REPORT_DIR [--tls]
"""

import asyncio
import ssl

from websockets.sync.client import connect

import json
import re
import shutil
import subprocess
import sys
import threading
from collections import defaultdict
from pathlib import Path

PASSING_BEHAVIOR = {"OK", "NON-STRICT", "INFORMATIONAL"}
PASSING_CLOSE = {"OK", "INFORMATIONAL"}
START_TIMEOUT = 20  # seconds for wsecho to say where it listens
SUITE_TIMEOUT = 900  # seconds for each part of the suite (about 15 s and 90 s here)
# The suite in two parts, each with its own report: groups 12 and 13 (permessage-deflate,
# 216 cases of 1000 messages of up to 128 KiB each) run four at a time, as the client's
# compressing is most of their time; the rest one at a time, as timing matters to some.
PARTS = [("", ["-x", "12.*", "-x", "13.*"]), ("deflate", ["-i", "12.*", "-i", "13.*", "-p", "4"])]


def start_wsecho(binary, extra_args=()):
    """Run wsecho with its defaults on free ports; return (process, ws port)."""
    process = subprocess.Popen(
        [binary, "--http", "127.0.0.1:0", "--ws", "127.0.0.1:0", "--policy-port", "0", *extra_args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={"RUST_LOG": "warn,wsecho::server=info"},
        cwd=Path(__file__).resolve().parents[2],
    )
    found = {}
    log = []

    def read_log():
        for line in process.stderr:
            log.append(line.rstrip())
            match = re.search(r"WebSocket: wss?://[^\s/]+:(\d+)/", line)
            if match and "port" not in found:
                found["port"] = int(match.group(1))
                ready.set()
        ready.set()  # the process ended

    ready = threading.Event()
    threading.Thread(target=read_log, daemon=True).start()
    if not ready.wait(START_TIMEOUT) or "port" not in found:
        process.kill()
        raise SystemExit(f"conformance: wsecho did not start: {' / '.join(log[-3:])}")
    return process, found["port"]


def make_certificate(folder):
    """A self-signed certificate for localhost, made now by the openssl command."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


def start_tls_relay(target_port, cert):
    """Accept plain TCP on a free loopback port and carry each connection, byte for byte, over
    TLS to target_port (verified against `cert`); return the relay's port."""
    context = ssl.create_default_context(cafile=str(cert))
    started = threading.Event()
    found = {}

    async def pipe(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def carry(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(
                "127.0.0.1", target_port, ssl=context, server_hostname="localhost")
        except (OSError, ssl.SSLError):
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))

    async def serve():
        server = await asyncio.start_server(carry, "127.0.0.1", 0)
        found["port"] = server.sockets[0].getsockname()[1]
        started.set()
        await server.serve_forever()

    threading.Thread(target=lambda: asyncio.run(serve()), daemon=True).start()
    if not started.wait(START_TIMEOUT):
        raise SystemExit("conformance: the TLS relay did not start")
    return found["port"]


def compressed_echoes(url):
    """Python websockets' client (permessage-deflate offered and used, as by default) sends big
    compressible messages and a small one; None if each came back as sent, else what went wrong."""
    messages = ["compressible text, ünïcode ✓ " * 40_000, bytes(range(256)) * 4096, "small"]
    with connect(url, max_size=None, open_timeout=10, close_timeout=10) as client:
        agreed = client.response.headers.get("Sec-WebSocket-Extensions", "")
        if not agreed.startswith("permessage-deflate"):
            return f"permessage-deflate was not agreed (Sec-WebSocket-Extensions: {agreed!r})"
        for message in messages:
            client.send(message)
            echo = client.recv(timeout=10)
            if echo != message:
                return f"a {len(message)}-long message came back different ({len(echo)} long)"
    return None


def verdict(result):
    passed = result["behavior"] in PASSING_BEHAVIOR and result["behaviorClose"] in PASSING_CLOSE
    return "passed" if passed else "failed"


def case_key(case_id):
    return tuple(int(part) for part in case_id.split("."))


def reason(result):
    """The suite's own words for a failure, from the case's report file."""
    try:
        details = json.loads((result["folder"] / result["reportfile"]).read_text())
    except (OSError, ValueError, KeyError):
        return "no case report"
    return f"{details.get('result', '')} / {details.get('resultClose', '')}"


def main():
    tls = sys.argv[4:] == ["--tls"]
    if len(sys.argv) != 4 and not tls:
        raise SystemExit(__doc__)
    wsecho, kosoku, report_dir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    shutil.rmtree(report_dir, ignore_errors=True)
    name = "conformance over wss" if tls else "conformance"
    if tls:
        cert, key = make_certificate(report_dir / "tls")
        server, port = start_wsecho(wsecho, ["--tls-cert", str(cert), "--tls-key", str(key)])
    else:
        server, port = start_wsecho(wsecho)
    try:
        url = f"ws://127.0.0.1:{port}/echo"
        if tls:
            url = f"ws://127.0.0.1:{start_tls_relay(port, cert)}/echo"
            print(f"{name}: kosoku speaks ws:// to {url}, a relay to wss://localhost:{port}/echo")
        print(f"{name}: running the Autobahn fuzzingclient cases against {url}", flush=True)
        # kosoku exits 1 whenever a case fails: judge from index.json instead.
        for part, selection in PARTS:
            subprocess.run(
                [kosoku, url, "-o", str(report_dir / part), *selection],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=SUITE_TIMEOUT,
                check=False,
            )
        try:
            websockets_failure = compressed_echoes(url)
        except Exception as error:  # noqa: BLE001 (any failure is the finding)
            websockets_failure = f"{type(error).__name__}: {error}"
    except subprocess.TimeoutExpired:
        print(f"{name}: the suite did not finish within {SUITE_TIMEOUT} s")
        websockets_failure = "not run"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()

    results = {}
    for part, _ in PARTS:
        index_file = report_dir / part / "index.json"
        if not index_file.exists():
            print(f"{name}: no {index_file} was written")
            print(f"{name}: 0 passed, 1 failed")
            return 1
        (part_results,) = json.loads(index_file.read_text()).values()
        for result in part_results.values():
            result["folder"] = report_dir / part
        results.update(part_results)

    counts = defaultdict(lambda: defaultdict(int))
    failures = []
    for case_id in sorted(results, key=case_key):
        outcome = verdict(results[case_id])
        counts[case_id.split(".")[0]][outcome] += 1
        if outcome == "failed":
            failures.append(case_id)

    print()
    print("| group | cases | passed | failed |")
    print("|---|---:|---:|---:|")
    totals = defaultdict(int)
    for group in sorted(counts, key=int):
        row = counts[group]
        cases = sum(row.values())
        print(f"| {group}.x | {cases} | {row['passed']} | {row['failed']} |")
        for outcome, n in row.items():
            totals[outcome] += n
        totals["cases"] += cases
    print(f"| all | {totals['cases']} | {totals['passed']} | {totals['failed']} |")
    print()
    for case_id in failures:
        result = results[case_id]
        print(
            f"FAILED {case_id}: behavior {result['behavior']}, close {result['behaviorClose']}: "
            f"{reason(result)}"
        )
    print(f"HTML reports: {report_dir / 'index.html'}, {report_dir / 'deflate' / 'index.html'}")
    print(f"{name}: {totals['passed']} passed, {totals['failed']} failed")
    if websockets_failure:
        print(f"{name}: Python websockets with compression: FAILED: {websockets_failure}")
    else:
        print(f"{name}: Python websockets with compression: big compressible messages echoed")
    return 1 if failures or websockets_failure else 0


if __name__ == "__main__":
    sys.exit(main())
