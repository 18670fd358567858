"""gevent + gevent-websocket (the original post's stack) serving wsecho's /chat protocol (see
README), for the fanout bench: one room, a broadcast is a loop over the members, the message
encoded once.

Run: python gevent_chat.py PORT
"""

import json
import sys
import time

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
            try:
                request = json.loads(data)
            except ValueError:
                ws.send(json.dumps({"type": "error", "reason": "not JSON"}))
                continue
            name = names.get(ws)
            if request.get("type") == "join" and name is None and isinstance(request.get("name"), str):
                wanted = given = request["name"].strip()
                taken = set(names.values())
                n = 2
                while given in taken:
                    given, n = f"{wanted} {n}", n + 1
                names[ws] = given
                ws.send(json.dumps({"type": "welcome", "name": given, "members": list(names.values())}))
                to_all({"type": "joined", "name": given, "count": len(names)}, ws)
            elif request.get("type") == "say" and name is not None and isinstance(request.get("text"), str):
                to_all({"type": "said", "from": name, "text": request["text"], "at": int(time.time() * 1000)})
            else:
                ws.send(json.dumps({"type": "error", "reason": "bad request"}))
    except WebSocketError:
        pass
    finally:
        name = names.pop(ws, None)
        if name is not None:
            to_all({"type": "left", "name": name, "count": len(names)})
    return []


if __name__ == "__main__":
    server = pywsgi.WSGIServer(("127.0.0.1", int(sys.argv[1])), chat, handler_class=WebSocketHandler, log=None)
    server.serve_forever()
