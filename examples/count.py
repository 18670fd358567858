#!/usr/bin/env python3
"""A program per connection for `wsecho --run '/count=python3 examples/count.py'`.

wsecho starts it for each WebSocket connection to /count: what it prints, line by line, goes
to the browser; each message the browser sends arrives as a line on stdin. The request is in
the environment, CGI-style (QUERY_STRING, REMOTE_ADDR, HTTP_ORIGIN, ...). It greets the client,
counts to three, then answers each line until the client leaves (stdin ends).
"""

import os
import sys
import time

name = os.environ.get("QUERY_STRING") or "stranger"
print(f"hello {name}, from {os.environ.get('REMOTE_ADDR', '?')}", flush=True)
for n in range(1, 4):
    print(n, flush=True)
    time.sleep(0.2)
for number, line in enumerate(sys.stdin, 1):
    print(f"{number}: {line.rstrip()}", flush=True)
