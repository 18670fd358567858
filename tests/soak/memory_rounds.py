"""Memory given back after load: six rounds of CONNS (1000) connections, each sending an
unfinished compressed message (70 KB of deflate data, about 240 KB inflated), closed after a
second; the server's RSS while they are held, after each round's close, and after 15 s idle.
Extra NAME=VALUE arguments go to the server's environment (MALLOC_ARENA_MAX=2, say).

  python3 tests/soak/memory_rounds.py target/release/wsecho [NAME=VALUE ...]
"""
import os, socket, subprocess, sys, time, zlib, random
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import rawws
binary = sys.argv[1]
env = dict(os.environ, RUST_LOG="warn", **dict(a.split("=",1) for a in sys.argv[2:]))
with socket.socket() as s:
    s.bind(("127.0.0.1",0)); port = s.getsockname()[1]
server = subprocess.Popen([binary, "--ws", f"127.0.0.1:{port}", "--http", "127.0.0.1:0", "--policy-port", "0",
    "--max-connections", "3000", "--max-per-address", "10000"], env=env, stderr=subprocess.DEVNULL)
def rss():
    for line in open(f"/proc/{server.pid}/status"):
        if line.startswith("VmRSS"): return int(line.split()[1]) / 1024
time.sleep(0.5)
random.seed(1)
words = [("".join(random.choice("abcdefghij") for _ in range(random.randint(2,8)))) for _ in range(500)]
text = " ".join(random.choice(words) for _ in range(40000)).encode()
comp = zlib.compressobj(6, zlib.DEFLATED, -15)
data = comp.compress(text) + comp.flush(zlib.Z_SYNC_FLUSH)
data = data[:70000]
key = os.urandom(4)
masked = bytes(b ^ key[i % 4] for i, b in enumerate(data))
head = bytes([0x41 | 0x00, 0x80 | 127]) + len(data).to_bytes(8, "big") + key  # FIN=0, RSV1, text
frame = head + masked
print(f"baseline {rss():.1f} MiB, compressed {len(data)} bytes of {len(text)}")
for round in range(6):
    socks = []
    for _ in range(int(os.environ.get("CONNS","1000"))):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(rawws.upgrade_request(extra="Sec-WebSocket-Extensions: permessage-deflate\r\n"))
        rawws.read_head(s)
        s.sendall(frame)
        socks.append(s)
    time.sleep(1.0)
    held = rss()
    for s in socks: s.close()
    time.sleep(1.0)
    print(f"round {round+1}: while held {held:.1f} MiB, after close {rss():.1f} MiB", flush=True)
time.sleep(15)
print(f"after 15 s idle {rss():.1f} MiB")
server.terminate(); server.wait()
