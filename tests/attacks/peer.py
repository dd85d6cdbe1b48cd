"""A hand-driven TCP/IP peer for attack tests, built on scapy.

It sends raw Ethernet frames from the kernel side of the namespace's TAP device to tapir
and watches what tapir sends back. It uses an address of its own (not the kernel's) that
it answers ARP for itself, so the kernel never sees these connections and never resets
them. Everything stays inside the test's namespace.
"""

import json
import random
import threading
import time
import urllib.request

from scapy.all import ARP, IP, TCP, Ether, Raw, conf, get_if_hwaddr  # noqa: F401

conf.verb = 0

IFACE = "tap0"
TAPIR = "10.7.0.2"
BCAST = "ff:ff:ff:ff:ff:ff"


def stats():
    """tapir's /stats counters, fetched through the kernel's own TCP."""
    with urllib.request.urlopen("http://%s/stats" % TAPIR, timeout=10) as r:
        return json.loads(r.read())


def http_get(path, timeout=10):
    """Status and body of a GET through the kernel's TCP (the legitimate client)."""
    with urllib.request.urlopen("http://%s%s" % (TAPIR, path), timeout=timeout) as r:
        return r.status, r.read()


def pattern(n):
    """The first n bytes of the built-in /bytes/N pattern."""
    p = b"tapir-bytes-0123456789\n"
    return (p * (n // len(p) + 1))[:n]


def wait_until(pred, timeout, step=0.02):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


class Peer:
    """A host at `ip` on the TAP's kernel side, speaking through raw frames."""

    def __init__(self, ip="10.7.0.66"):
        self.ip = ip
        self.mac = get_if_hwaddr(IFACE)
        self.sock = conf.L2socket(iface=IFACE)
        self.lock = threading.Lock()
        self.conns = {}
        self.frames = []  # every IPv4/ARP frame from tapir (Ether packets)
        self.tapir_mac = None
        self.sniffer = None
        self._stop = False
        self._thread = threading.Thread(target=self._rx, daemon=True)
        self._rxsock = conf.L2listen(iface=IFACE)
        self._thread.start()
        self.resolve()

    def close(self):
        self._stop = True
        self._thread.join(2)

    def _rx(self):
        while not self._stop:
            try:
                p = self._rxsock.recv()
            except Exception:
                continue
            if p is None or Ether not in p:
                continue
            if p[Ether].src == self.mac:
                continue  # our own frame (outgoing)
            self._handle(p)

    def _handle(self, p):
        if ARP in p:
            a = p[ARP]
            if a.op == 1 and a.pdst == self.ip:
                self.send_l2(
                    Ether(dst=a.hwsrc, src=self.mac)
                    / ARP(op=2, hwsrc=self.mac, psrc=self.ip, hwdst=a.hwsrc, pdst=a.psrc)
                )
            # Only a reply to this peer's own request: a reply addressed to someone else
            # (the ARP spoofer's forged ones, sniffed on the same device) is no answer.
            if a.op == 2 and a.psrc == TAPIR and a.pdst == self.ip:
                self.tapir_mac = a.hwsrc
            with self.lock:
                self.frames.append(p)
            return
        if IP not in p or p[IP].src != TAPIR:
            return
        with self.lock:
            self.frames.append(p)
        if TCP in p and p[IP].dst == self.ip:
            c = self.conns.get((p[TCP].dport, p[TCP].sport))
            if c is not None:
                c.on_segment(p)

    def send_l2(self, frame):
        with self.lock:
            self.sock.send(frame)

    def send(self, ip_packet):
        """Sends an IP packet to tapir's MAC."""
        self.send_l2(Ether(dst=self.tapir_mac, src=self.mac) / ip_packet)

    def resolve(self):
        for _ in range(50):
            # A request to tapir also teaches tapir our MAC.
            self.send_l2(
                Ether(dst=BCAST, src=self.mac)
                / ARP(op=1, hwsrc=self.mac, psrc=self.ip, pdst=TAPIR)
            )
            if wait_until(lambda: self.tapir_mac is not None, 0.2):
                return
        raise AssertionError("tapir did not answer ARP for %s" % TAPIR)

    def tcp_from_tapir(self, pred=lambda p: True):
        """Every TCP segment tapir sent that `pred` accepts, whoever it was addressed to
        (the device is shared with the kernel-side clients running alongside)."""
        with self.lock:
            return [p for p in self.frames if TCP in p and pred(p)]

    def tcp_to_me(self, pred=lambda p: True):
        """The TCP segments tapir sent to this peer's address that `pred` accepts. Matching on
        ports alone is not enough: curl, running alongside, picks its ports from the same
        range as these scenarios' random ones."""
        return self.tcp_from_tapir(lambda p: p[IP].dst == self.ip and pred(p))

    def clear(self):
        with self.lock:
            self.frames.clear()

    def connect(self, dport=80, **kw):
        c = Conn(self, dport, **kw)
        c.handshake()
        return c


class Conn:
    """One TCP connection driven by hand. Segments from tapir are collected in order and
    acknowledged automatically (with `window` as our receive window)."""

    def __init__(self, peer, dport, sport=None, mss=None, window=65535, ip_options=None):
        self.peer = peer
        self.dport = dport
        self.sport = sport or random.randint(20000, 60000)
        self.mss = mss
        self.window = window
        self.ip_options = ip_options
        self.iss = random.randint(0, 2**32 - 1)
        self.snd_nxt = (self.iss + 1) % 2**32
        self.rcv_nxt = None
        self.data = bytearray()
        self.fin = False
        self.reset = False
        self.synack = threading.Event()
        self.segments = []  # (time, seq, len, flags, window) of every segment from tapir
        self.accept_data = True
        self.ooo = {}  # out-of-order segments from tapir, by sequence number
        peer.conns[(self.sport, dport)] = self

    def ip(self):
        if self.ip_options is not None:
            return IP(src=self.peer.ip, dst=TAPIR, options=self.ip_options)
        return IP(src=self.peer.ip, dst=TAPIR)

    def seg(self, flags="A", seq=None, ack=None, payload=b"", window=None, options=None):
        t = TCP(
            sport=self.sport,
            dport=self.dport,
            flags=flags,
            seq=self.snd_nxt if seq is None else seq % 2**32,
            ack=(self.rcv_nxt or 0) if ack is None else ack % 2**32,
            window=self.window if window is None else window,
            options=options or [],
        )
        p = self.ip() / t
        if payload:
            p = p / Raw(payload)
        return p

    def handshake(self, timeout=3):
        opts = [("MSS", self.mss)] if self.mss else []
        for _ in range(3):
            self.peer.send(self.seg("S", seq=self.iss, ack=0, options=opts))
            if self.synack.wait(timeout / 3):
                return
        raise AssertionError("no SYN-ACK from tapir on port %d" % self.dport)

    def send_data(self, payload, offset=0, flags="PA"):
        """Sends payload at snd_nxt + offset (does not move snd_nxt)."""
        self.peer.send(self.seg(flags, seq=self.snd_nxt + offset, payload=payload))

    def advance(self, n):
        self.snd_nxt = (self.snd_nxt + n) % 2**32

    def write(self, payload, chunk=1000):
        for i in range(0, len(payload), chunk):
            self.send_data(payload[i : i + chunk])
            self.advance(len(payload[i : i + chunk]))

    def ack_now(self):
        self.peer.send(self.seg("A"))

    def on_segment(self, p):
        t = p[TCP]
        payload = bytes(t[Raw].load) if Raw in t else b""
        flags = str(t.flags)
        self.segments.append((time.time(), t.seq, len(payload), flags, t.window))
        if "R" in flags:
            self.reset = True
            return
        if "S" in flags and "A" in flags:
            if self.rcv_nxt is None:
                self.rcv_nxt = (t.seq + 1) % 2**32
            self.synack.set()
            self.ack_now()
            return
        if self.rcv_nxt is None:
            return
        if payload and self.accept_data:
            ahead = (t.seq - self.rcv_nxt) % 2**32
            if 0 < ahead < 2**31:
                self.ooo[t.seq] = payload  # a gap before it: keep for later
            else:
                self._take(t.seq, payload)
            while self.ooo:
                usable = [q for q in self.ooo if (self.rcv_nxt - q) % 2**32 < 2**31]
                if not usable:
                    break
                for q in usable:
                    self._take(q, self.ooo.pop(q))
        if "F" in flags and (t.seq + len(payload)) % 2**32 == self.rcv_nxt and not self.fin:
            self.fin = True
            self.rcv_nxt = (self.rcv_nxt + 1) % 2**32
        if payload or "F" in flags:
            self.ack_now()

    def _take(self, seq, payload):
        skip = (self.rcv_nxt - seq) % 2**32
        if skip < len(payload):
            self.data += payload[skip:]
            self.rcv_nxt = (self.rcv_nxt + len(payload) - skip) % 2**32

    def response(self, timeout=10):
        """Waits for one complete HTTP response with Content-Length; returns (head, body)."""

        def complete():
            head, sep, body = bytes(self.data).partition(b"\r\n\r\n")
            if not sep:
                return False
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    return len(body) >= int(line.split(b":")[1])
            return False

        if not wait_until(complete, timeout):
            raise AssertionError("no complete response; got %d bytes: %r" % (len(self.data), bytes(self.data[:300])))
        head, _, body = bytes(self.data).partition(b"\r\n\r\n")
        return head.decode("latin-1"), body

    def close(self):
        """Sends FIN and waits for tapir's FIN."""
        self.peer.send(self.seg("FA"))
        self.advance(1)
        return wait_until(lambda: self.fin or self.reset, 5)
