#!/usr/bin/env python3
"""Publish a message a second to a wsecho room, as a Django or Flask backend would: one HTTP
request per message, standard library only.

    echo "$(head -c 24 /dev/urandom | base64)" > token.txt
    cargo run --release -- --publish-token-file token.txt
    python3 examples/publish.py --token-file token.txt --room news

Every browser on ws://127.0.0.1:8087/rooms/news (the page http://127.0.0.1:8080/room.html?room=news
shows them) hears each message once.
"""

import argparse
import json
import time
import urllib.error
import urllib.request


def publish(base, room, token, text):
    """POST /publish/ROOM: the body goes to every member of ROOM; returns how many heard it."""
    request = urllib.request.Request(
        f"{base}/publish/{room}",
        data=text.encode("utf-8"),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain; charset=utf-8"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.load(answer)["members"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--page", default="http://127.0.0.1:8080", help="wsecho's page address")
    parser.add_argument("--room", default="news")
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--count", type=int, default=0, help="stop after this many (0: never)")
    options = parser.parse_args()
    with open(options.token_file, encoding="utf-8") as file:
        token = file.read().strip()
    n = 0
    while options.count == 0 or n < options.count:
        n += 1
        text = f"message {n} at {time.strftime('%H:%M:%S')}"
        try:
            members = publish(options.page, options.room, token, text)
            print(f"{text}: heard by {members}", flush=True)
        except urllib.error.HTTPError as error:
            print(f"refused: HTTP {error.code}: {error.read().decode(errors='replace').strip()}")
            return 1
        time.sleep(1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
