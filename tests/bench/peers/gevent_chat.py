"""gevent + gevent-websocket (the original post's stack) serving wsecho's /chat protocol (see
README), for the fanout bench: one room, a broadcast is a loop over the members, the message
encoded once.

Run: python gevent_chat.py PORT
"""

import json
import sys

import chat_room
from gevent import pywsgi
from geventwebsocket.exceptions import WebSocketError
from geventwebsocket.handler import WebSocketHandler

names = {}  # websocket -> name


def to_all(message, except_=None):
    text = json.dumps(message)
    for client in list(names):
        if client is not except_:
            try:
                client.send(text)
            except WebSocketError:
                names.pop(client, None)


def chat(environ, start_response):
    ws = environ.get("wsgi.websocket")
    if ws is None:
        start_response("426 Upgrade Required", [("Content-Type", "text/plain")])
        return [b"WebSocket only\n"]
    try:
        while True:
            data = ws.receive()
            if data is None:
                break
            reply, news = chat_room.answer(names, ws, data)
            if reply is not None:
                ws.send(json.dumps(reply))
            if news is not None:
                to_all(*news)
    except WebSocketError:
        pass
    finally:
        news = chat_room.left(names, ws)
        if news is not None:
            to_all(*news)
    return []


if __name__ == "__main__":
    server = pywsgi.WSGIServer(("127.0.0.1", int(sys.argv[1])), chat, handler_class=WebSocketHandler, log=None)
    server.serve_forever()
