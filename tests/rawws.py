"""The client side of WebSocket in plain Python, for the test and measuring scripts that must
send exactly what they mean (fragments, oversized or broken frames): masked frames out, frames
in, and the upgrade request. Standard library only."""

import struct

KEY = b"\x01\x02\x03\x04"
UPGRADE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def frame(opcode, payload, fin=True):
    """One masked client frame."""
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        head = bytes([first, 0x80 | n])
    elif n <= 0xFFFF:
        head = bytes([first, 0x80 | 126]) + struct.pack(">H", n)
    else:
        head = bytes([first, 0x80 | 127]) + struct.pack(">Q", n)
    # XOR as one big integer: fast enough for megabytes.
    mask = (KEY * (n // 4 + 1))[:n]
    masked = int.from_bytes(payload, "little") ^ int.from_bytes(mask, "little")
    return head + KEY + masked.to_bytes(n, "little")


def upgrade_request(path="/echo", host="127.0.0.1", extra=""):
    """An upgrade request head; `extra` is more header lines, each ending in CRLF."""
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {UPGRADE_KEY}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode()


def read_head(sock):
    """An HTTP answer head, read a byte at a time so nothing after it is taken."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            break
        head += byte
    return head


def read_frame(sock):
    """The next frame: (opcode, payload). A server's is never masked; a masked one (a raw TCP
    echo sending ours back) is unmasked."""
    def exactly(n):
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise EOFError("the connection closed")
            data += chunk
        return data

    head = exactly(2)
    n = head[1] & 0x7F
    if n == 126:
        n = struct.unpack(">H", exactly(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", exactly(8))[0]
    if not head[1] & 0x80:
        return head[0] & 0x0F, exactly(n)
    key = exactly(4)
    payload = exactly(n)
    return head[0] & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(payload))
