"""Protocol conformance: every Autobahn fuzzingclient case against wsecho's defaults.

Starts the wsecho binary on free loopback ports (otherwise default settings), runs the cases
with kosoku against ws://127.0.0.1:PORT/echo, reads the suite's index.json and prints a table
per case group, the failing cases with the suite's reason, and `conformance: N passed, N failed,
N skipped`. A case passes when its behaviour is OK, NON-STRICT or INFORMATIONAL and its close
behaviour OK or INFORMATIONAL. Groups 12 and 13 test permessage-deflate, which wsecho does not
implement: their UNIMPLEMENTED cases are counted as skipped (and shown), never as passed.
The server is stopped whatever happens; every wait is bounded. Exit 1 if any case failed.

Usage: run.py WSECHO_BINARY KOSOKU_BINARY REPORT_DIR
"""

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
DEFLATE_GROUPS = {"12", "13"}  # permessage-deflate
START_TIMEOUT = 20  # seconds for wsecho to say where it listens
SUITE_TIMEOUT = 900  # seconds for all 517 cases (about 15 s here)


def start_wsecho(binary):
    """Run wsecho with its defaults on free ports; return (process, ws port)."""
    process = subprocess.Popen(
        [binary, "--http", "127.0.0.1:0", "--ws", "127.0.0.1:0", "--policy-port", "0"],
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
            match = re.search(r"WebSocket: ws://[^\s/]+:(\d+)/", line)
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


def verdict(case_id, result):
    group = case_id.split(".")[0]
    if result["behavior"] == "UNIMPLEMENTED" and group in DEFLATE_GROUPS:
        return "unimplemented"
    passed = result["behavior"] in PASSING_BEHAVIOR and result["behaviorClose"] in PASSING_CLOSE
    return "passed" if passed else "failed"


def case_key(case_id):
    return tuple(int(part) for part in case_id.split("."))


def reason(report_dir, result):
    """The suite's own words for a failure, from the case's report file."""
    try:
        details = json.loads((report_dir / result["reportfile"]).read_text())
    except (OSError, ValueError, KeyError):
        return "no case report"
    return f"{details.get('result', '')} / {details.get('resultClose', '')}"


def main():
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    wsecho, kosoku, report_dir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    shutil.rmtree(report_dir, ignore_errors=True)
    server, port = start_wsecho(wsecho)
    try:
        url = f"ws://127.0.0.1:{port}/echo"
        print(f"conformance: running the Autobahn fuzzingclient cases against {url}", flush=True)
        # kosoku exits 1 whenever anything is UNIMPLEMENTED: judge from index.json instead.
        subprocess.run(
            [kosoku, url, "-o", str(report_dir)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=SUITE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        print(f"conformance: the suite did not finish within {SUITE_TIMEOUT} s")
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()

    index_file = report_dir / "index.json"
    if not index_file.exists():
        print("conformance: no index.json was written")
        print("conformance: 0 passed, 1 failed")
        return 1
    (results,) = json.loads(index_file.read_text()).values()

    counts = defaultdict(lambda: defaultdict(int))
    failures = []
    for case_id in sorted(results, key=case_key):
        outcome = verdict(case_id, results[case_id])
        counts[case_id.split(".")[0]][outcome] += 1
        if outcome == "failed":
            failures.append(case_id)

    print()
    print("| group | cases | passed | failed | unimplemented |")
    print("|---|---:|---:|---:|---:|")
    totals = defaultdict(int)
    for group in sorted(counts, key=int):
        row = counts[group]
        cases = sum(row.values())
        print(f"| {group}.x | {cases} | {row['passed']} | {row['failed']} | {row['unimplemented']} |")
        for outcome, n in row.items():
            totals[outcome] += n
        totals["cases"] += cases
    print(
        f"| all | {totals['cases']} | {totals['passed']} | {totals['failed']} "
        f"| {totals['unimplemented']} |"
    )
    print()
    for case_id in failures:
        result = results[case_id]
        print(
            f"FAILED {case_id}: behavior {result['behavior']}, close {result['behaviorClose']}: "
            f"{reason(report_dir, result)}"
        )
    print(f"HTML report: {report_dir / 'index.html'}")
    print("conformance: unimplemented = permessage-deflate (12.x, 13.x), counted as skipped")
    print(
        f"conformance: {totals['passed']} passed, {totals['failed']} failed, "
        f"{totals['unimplemented']} skipped"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
