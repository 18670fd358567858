"""Python `websockets` (asyncio) echo, with its defaults but for the message size limit,
raised to 16 MiB like wsecho's.

Run: python websockets_echo.py PORT
"""

import asyncio
import sys

from websockets.asyncio.server import serve


async def echo(websocket):
    async for message in websocket:
        await websocket.send(message)


async def main(port):
    async with serve(echo, "127.0.0.1", port, max_size=16 << 20):
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
