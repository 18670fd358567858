"""Python `websockets` (asyncio) serving wsecho's /chat protocol (see README), for the fanout
bench: one room, a broadcast is `websockets.broadcast()` (never waits on a slow client), the
message encoded once.

Run: python websockets_chat.py PORT
"""

import asyncio
import json
import sys

import chat_room
from websockets.asyncio.server import broadcast, serve

names = {}  # connection -> name


def to_all(message, except_=None):
    broadcast([c for c in names if c is not except_], json.dumps(message))


async def chat(websocket):
    try:
        async for data in websocket:
            reply, news = chat_room.answer(names, websocket, data)
            if reply is not None:
                await websocket.send(json.dumps(reply))
            if news is not None:
                to_all(*news)
    finally:
        news = chat_room.left(names, websocket)
        if news is not None:
            to_all(*news)


async def main(port):
    async with serve(chat, "127.0.0.1", port, max_size=16 << 20):
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
