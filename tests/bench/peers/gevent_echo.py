"""The original post's stack: gevent's WSGI server with gevent-websocket, echoing.

Run: python gevent_echo.py PORT
"""

import sys

from gevent import pywsgi
from geventwebsocket.handler import WebSocketHandler


def handle_echo_client(environ, start_response):
    ws = environ.get("wsgi.websocket")
    if ws is None:
        start_response("426 Upgrade Required", [("Content-Type", "text/plain")])
        return [b"WebSocket only\n"]
    while True:
        message = ws.receive()
        if message is None:
            break
        ws.send(message, binary=isinstance(message, (bytes, bytearray)))
    return []


if __name__ == "__main__":
    server = pywsgi.WSGIServer(
        ("127.0.0.1", int(sys.argv[1])), handle_echo_client, handler_class=WebSocketHandler, log=None
    )
    server.serve_forever()
