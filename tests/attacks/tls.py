"""Hostile TLS clients on HOST:443, one scenario per run; prints `open N` once all are
connected, then one result line per kind:

    python3 tls.py HOST N LIMIT

Kinds, N connections each, all at once:
  header  a TLS record header announcing an 18 KB handshake record, then silence (paf #64)
  header16k  the same announcing 16 KB (a legal size), then silence
  hello   a complete ClientHello, then silence (a half-open handshake)
  full    the 18 KB record header followed by 18 KB of garbage (closed at once)

For each kind: `KIND: cut C of N, last T s, alerts A` where T is the longest time until
the server closed (from the moment everything was sent) and A counts TLS alerts received.
"""

import os
import resource
import select
import socket
import ssl
import sys
import time

host, n, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 3 * n + 100)), hard))

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE


def client_hello():
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


HEADER = b"\x16\x03\x01" + (18 * 1024).to_bytes(2, "big")
kinds = {
    "header": lambda: HEADER,
    "header16k": lambda: b"\x16\x03\x01\x40\x00",
    "hello": client_hello,
    "full": lambda: HEADER + os.urandom(18 * 1024),
}
conns = {}
for kind, payload in kinds.items():
    for _ in range(n):
        s = socket.create_connection((host, 443), timeout=10)
        s.sendall(payload())
        s.setblocking(False)
        conns[s.fileno()] = {"sock": s, "kind": kind, "sent": time.time(), "cut": None, "data": b""}
print("open", len(conns), flush=True)
poller = select.poll()
for fd in conns:
    poller.register(fd, select.POLLIN)
live = set(conns)
start = time.time()
while live and time.time() - start < limit:
    for fd, _ in poller.poll(100):
        c = conns[fd]
        try:
            b = c["sock"].recv(65536)
        except BlockingIOError:
            continue
        except ConnectionResetError:
            b = b""
        if b:
            c["data"] += b
            continue
        c["cut"] = time.time() - c["sent"]
        poller.unregister(fd)
        live.discard(fd)
for kind in kinds:
    mine = [c for c in conns.values() if c["kind"] == kind]
    cut = [c["cut"] for c in mine if c["cut"] is not None]
    # An alert record (0x15) anywhere at a record boundary is hard to find without
    # parsing; count connections whose last bytes hold an alert record header.
    alerts = sum(1 for c in mine if b"\x15\x03\x03\x00\x02" in c["data"] or c["data"][:1] == b"\x15")
    print("%s: cut %d of %d, last %.2f s, alerts %d" % (kind, len(cut), len(mine), max(cut) if cut else -1, alerts), flush=True)
for c in conns.values():
    c["sock"].close()
