"""wsecho's /chat protocol (see README) as both Python peers of the fanout bench speak it, apart
from their I/O: what one client message calls for, and what a leaving member tells the rest.
`names` maps each member's connection to its name."""

import json
import time


def answer(names, client, data):
    """What `data` from `client` calls for: (a reply to it alone, or None; and news for the
    room as (message, the connection to leave out), or None). A join updates `names`."""
    try:
        request = json.loads(data)
    except ValueError:
        return {"type": "error", "reason": "not JSON"}, None
    name = names.get(client)
    if request.get("type") == "join" and name is None and isinstance(request.get("name"), str):
        wanted = given = request["name"].strip()
        taken = set(names.values())
        n = 2
        while given in taken:
            given, n = f"{wanted} {n}", n + 1
        names[client] = given
        welcome = {"type": "welcome", "name": given, "members": list(names.values())}
        return welcome, ({"type": "joined", "name": given, "count": len(names)}, client)
    if request.get("type") == "say" and name is not None and isinstance(request.get("text"), str):
        said = {"type": "said", "from": name, "text": request["text"], "at": int(time.time() * 1000)}
        return None, (said, None)
    return {"type": "error", "reason": "bad request"}, None


def left(names, client):
    """News for the room when `client` goes, or None if it never joined."""
    name = names.pop(client, None)
    return None if name is None else ({"type": "left", "name": name, "count": len(names)}, None)
