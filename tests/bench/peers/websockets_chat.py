"""Python `websockets` (asyncio) serving wsecho's /chat protocol (see README), for the fanout
bench: one room, a broadcast is `websockets.broadcast()` (never waits on a slow client), the
message encoded once.

Run: python websockets_chat.py PORT
"""

import asyncio
import json
import sys
import time

from websockets.asyncio.server import broadcast, serve

names = {}  # connection -> name


def to_all(message, except_=None):
    broadcast([c for c in names if c is not except_], json.dumps(message))


async def chat(websocket):
    try:
        async for data in websocket:
            try:
                request = json.loads(data)
            except ValueError:
                await websocket.send(json.dumps({"type": "error", "reason": "not JSON"}))
                continue
            name = names.get(websocket)
            if request.get("type") == "join" and name is None and isinstance(request.get("name"), str):
                wanted = given = request["name"].strip()
                taken = set(names.values())
                n = 2
                while given in taken:
                    given, n = f"{wanted} {n}", n + 1
                names[websocket] = given
                await websocket.send(json.dumps({"type": "welcome", "name": given, "members": list(names.values())}))
                to_all({"type": "joined", "name": given, "count": len(names)}, websocket)
            elif request.get("type") == "say" and name is not None and isinstance(request.get("text"), str):
                to_all({"type": "said", "from": name, "text": request["text"], "at": int(time.time() * 1000)})
            else:
                await websocket.send(json.dumps({"type": "error", "reason": "bad request"}))
    finally:
        name = names.pop(websocket, None)
        if name is not None:
            to_all({"type": "left", "name": name, "count": len(names)})


async def main(port):
    async with serve(chat, "127.0.0.1", port, max_size=16 << 20):
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
