"""Malformed and hostile TCP/IP input against `tapir serve`, one scenario per run:

    python3 tcpip.py SCENARIO [ARGS...]

Run inside the test's namespace (tests/tap_attacks.rs does). Each scenario asserts what
tapir must do and prints `fact NAME VALUE` lines the Rust test checks too; it exits
non-zero (with a traceback) when tapir misbehaves.
"""

import random
import sys
import time

from peer import (
    IP,
    TAPIR,
    TCP,
    Ether,
    ARP,
    Raw,
    Peer,
    http_get,
    pattern,
    stats,
    wait_until,
)
from scapy.all import fragment

random.seed(int(time.time()))


def fact(name, value):
    print("fact %s %s" % (name, value), flush=True)


def legit_ok():
    status, body = http_get("/")
    assert status == 200, status
    return body


def flags():
    """Bad checksums and impossible flag combinations make no connection and no answer but
    an RST at most; tapir keeps serving."""
    peer = Peer("10.7.0.61")
    before = stats()
    sent = 0
    combos = ["SF", "SR", "", "FSRPAUEC", "SFPU", "F", "SRA", "SFA"]
    ports = {}
    for combo in combos:
        for _ in range(5):
            sport = random.randint(20000, 60000)
            ports[sport] = combo
            peer.send(IP(src=peer.ip, dst=TAPIR) / TCP(sport=sport, dport=80, flags=combo, seq=random.randint(0, 2**32 - 1)))
            sent += 1
    # A valid SYN whose TCP checksum is wrong, and one whose IP checksum is wrong.
    bad = 0
    for _ in range(20):
        sport = random.randint(20000, 60000)
        ports[sport] = "bad-tcp-checksum"
        peer.send(IP(src=peer.ip, dst=TAPIR) / TCP(sport=sport, dport=80, flags="S", chksum=0xDEAD))
        sport = random.randint(20000, 60000)
        ports[sport] = "bad-ip-checksum"
        peer.send(IP(src=peer.ip, dst=TAPIR, chksum=0xBEEF) / TCP(sport=sport, dport=80, flags="S"))
        bad += 2
    time.sleep(1.0)
    replies = peer.tcp_to_me(lambda p: p[TCP].sport == 80 and p[TCP].dport in ports)
    synacks = [p for p in replies if p[TCP].flags.S]
    assert not synacks, "SYN-ACK to %s" % [ports[p[TCP].dport] for p in synacks]
    others = sorted({"%s->%s" % (ports[p[TCP].dport], p[TCP].flags) for p in replies})
    fact("replies", ",".join(others) or "none")
    legit_ok()
    after = stats()
    fact("bad_checksum_drops", after["drops_bad_checksum"] - before["drops_bad_checksum"])
    assert after["drops_bad_checksum"] - before["drops_bad_checksum"] >= bad, (before, after)
    # Every accepted connection is one the HTTP server saw (the legitimate ones, curl's
    # running alongside included); none came from the raw frames.
    assert after["tcp_accepted"] - before["tcp_accepted"] == after["connections_total"] - before["connections_total"], (before, after)
    fact("sent", sent + bad)
    peer.close()


def retransmit_until_acked(c, data):
    """Like a real sender: resends `data` (at snd_nxt) from where tapir's acknowledgement
    stands until all of it is acknowledged. smoltcp keeps only a few out-of-order ranges
    and may drop out-of-order data, which a real peer would retransmit."""
    base = c.snd_nxt
    for _ in range(20):
        time.sleep(0.2)
        seen = c.peer.tcp_to_me(lambda p: p[TCP].dport == c.sport)
        upto = (seen[-1][TCP].ack - base) % 2**32 if seen else 0
        if len(data) <= upto < 2**31:
            return
        start = upto if upto < len(data) else 0
        for i in range(start, len(data), 500):
            c.send_data(data[i : i + 500], offset=i)
    raise AssertionError("tapir never acknowledged all %d bytes" % len(data))


def overlap():
    """Overlapping, reordered, duplicated and out-of-window segments on a live connection:
    the bytes the server gets are the bytes sent."""
    peer = Peer("10.7.0.62")
    # 1. The same content, cut into random overlapping pieces, shuffled, duplicated, plus
    # garbage far outside the window: the echo must be exact.
    body = bytes(random.getrandbits(8) for _ in range(3000))
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    c = peer.connect()
    c.write(head)
    pieces = []
    pos = 0
    while pos < len(body):
        start = max(0, pos - random.randint(0, 200))
        end = min(len(body), pos + random.randint(50, 400))
        pieces.append((start, end))
        pos = end
    pieces += random.sample(pieces, len(pieces) // 2)
    random.shuffle(pieces)
    for start, end in pieces:
        c.send_data(body[start:end], offset=start)
        if random.random() < 0.3:
            # Out of window, ahead and behind: garbage that must never be delivered.
            c.send_data(b"\xee" * 100, offset=start + 1_000_000)
            c.send_data(b"\xdd" * 100, offset=start - 200_000)
            # In window but acknowledging data tapir never sent.
            c.peer.send(c.seg("PA", seq=c.snd_nxt + len(body), ack=c.rcv_nxt + 5_000_000, payload=b"\xcc" * 10))
    retransmit_until_acked(c, body)
    c.advance(len(body))
    h, got = c.response()
    assert h.startswith("HTTP/1.1 200"), h
    assert got == body, "echo differs: %d bytes back, first difference at %s" % (
        len(got),
        next((i for i, (a, b) in enumerate(zip(got, body)) if a != b), min(len(got), len(body))),
    )
    fact("exact_echo_bytes", len(got))
    fact("pieces", len(pieces))
    c.close()

    # 2. In order, then a retransmission overlapping it with different bytes: the first
    # copy wins (the overlap is already acknowledged).
    first = b"A" * 20
    c = peer.connect()
    c.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n")
    c.send_data(first[:12])
    time.sleep(0.1)
    c.send_data(b"X" * 8 + first[12:], offset=4)
    retransmit_until_acked(c, first)
    c.advance(20)
    h, got = c.response()
    assert got == first, "in-order overlap: %r" % got
    fact("inorder_overlap", got.decode())
    c.close()

    # 3. Out of order with conflicting overlaps: every byte the server gets is one that
    # was sent for that position (no shift, no garbage); report which copy won.
    c = peer.connect()
    c.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n")
    c.send_data(b"B" * 10, offset=10)  # [10, 20) first
    c.send_data(b"Y" * 10, offset=5)  # [5, 15) conflicts on [10, 15)
    time.sleep(0.1)
    c.send_data(b"B" * 10, offset=0)  # fills the hole
    retransmit_until_acked(c, b"B" * 20)
    c.advance(20)
    h, got = c.response()
    assert len(got) == 20, got
    for i, ch in enumerate(got):
        allowed = {ord("B")} | ({ord("Y")} if 5 <= i < 15 else set())
        assert ch in allowed, "byte %d is %r: %r" % (i, chr(ch), got)
    fact("ooo_overlap", got.decode())
    c.close()
    legit_ok()
    peer.close()


def inject(sport_hint=None):
    """RSTs and SYNs with wrong sequence numbers injected into the kernel's live download
    (the kernel's address and port, spoofed). Run while curl downloads; prints what was
    injected. The Rust test checks curl's download completes intact."""
    peer = Peer("10.7.0.63")
    kernel = "10.7.0.1"
    # Learn the connection from the segments tapir sends to the kernel: its port and
    # tapir's view of the sequence numbers (tapir's ACK = the kernel's next sequence).
    deadline = time.time() + 5
    seg = None
    while time.time() < deadline and seg is None:
        segs = peer.tcp_from_tapir(lambda p: p[IP].dst == kernel and p[TCP].sport == 80 and len(p[TCP].payload) > 0)
        if segs:
            seg = segs[-1]
        time.sleep(0.05)
    assert seg is not None, "no download from tapir to the kernel seen"
    kport = seg[TCP].dport
    fact("kernel_port", kport)
    injected = 0
    for round_ in range(10):
        segs = peer.tcp_from_tapir(lambda p: p[IP].dst == kernel and p[TCP].dport == kport)
        last = segs[-1][TCP]
        rcv_nxt = last.ack  # what tapir expects from the kernel next
        tapir_seq = last.seq + len(last.payload)
        win = last.window  # tapir's receive window (unscaled; scaled is bigger)
        base = IP(src=kernel, dst=TAPIR)
        for seq in (rcv_nxt + 1, rcv_nxt + 100, rcv_nxt + max(1, win // 2), rcv_nxt - 1, rcv_nxt + 3_000_000_000):
            peer.send(base / TCP(sport=kport, dport=80, flags="R", seq=seq % 2**32))
            peer.send(base / TCP(sport=kport, dport=80, flags="RA", seq=seq % 2**32, ack=tapir_seq))
            peer.send(base / TCP(sport=kport, dport=80, flags="S", seq=seq % 2**32))
            injected += 3
        time.sleep(0.1)
    fact("injected", injected)
    peer.close()


def fragments():
    """IPv4 fragments: a request cut into tiny fragments (in order and reversed) is
    answered; overlapping fragments and never-completed fragments are dropped without
    harm, and a fragmented request still works afterwards."""
    peer = Peer("10.7.0.64")
    for order in ("forward", "reverse"):
        c = peer.connect()
        req = c.seg("PA", payload=b"GET /bytes/100 HTTP/1.1\r\nHost: x\r\n\r\n")
        frags = fragment(req, fragsize=16)
        assert len(frags) > 2
        if order == "reverse":
            frags = list(reversed(frags))
        c.advance(len(req[Raw].load))
        # Sent again when no answer comes, as a TCP sender retransmits: on a loaded
        # machine a frame can be lost on its way through the namespace's sniffing
        # sockets (the attacks running beside this one load both cores).
        for attempt in range(3):
            for f in frags:
                peer.send(f)
            try:
                h, body = c.response(timeout=4)
                break
            except AssertionError:
                if attempt == 2:
                    raise
        assert h.startswith("HTTP/1.1 200") and body == pattern(100), (h, body)
        fact("fragmented_request_" + order, len(frags))
        c.close()
    # Junk: overlapping fragments with conflicting bytes (teardrop-like), and the first
    # fragments of many datagrams that never complete.
    c = peer.connect()
    req = c.seg("PA", payload=b"GET /bytes/7 HTTP/1.1\r\nHost: x\r\n\r\n")
    frags = fragment(req, fragsize=16)
    evil = frags[1].copy()
    evil[IP].frag = 1  # overlaps the first fragment's bytes 8..16
    evil[Raw].load = b"\xff" * len(evil[Raw].load)
    for f in [frags[0], evil] + frags[1:]:
        peer.send(f)
    c.advance(len(req[Raw].load))
    got = wait_until(lambda: b"\r\n\r\n" in bytes(c.data), 2)
    fact("overlapping_fragments_answered", got)
    if got:
        c.close()
    else:
        # The request never arrived: reset at the sequence number tapir expects.
        peer.send(c.seg("R", seq=c.snd_nxt - len(req[Raw].load)))
    for i in range(300):
        p = IP(src=peer.ip, dst=TAPIR, id=10000 + i, flags="MF", frag=0, proto=6) / Raw(b"\x00" * 64)
        peer.send(p)
    # Never-completed fragments and a fragment at the largest offset.
    peer.send(IP(src=peer.ip, dst=TAPIR, id=999, frag=8191, proto=6) / Raw(b"z" * 64))
    time.sleep(0.5)
    legit_ok()
    # smoltcp has one reassembly buffer; the junk holds it until tapir's reassembly
    # timeout (3 s). A fragmented request is answered again once that passes.
    junk_done = time.time()
    answered = None
    while answered is None and time.time() - junk_done < 10:
        c2 = peer.connect()
        req = c2.seg("PA", payload=b"GET /bytes/50 HTTP/1.1\r\nHost: x\r\n\r\n")
        req[IP].id = random.randint(0, 65535)
        for f in fragment(req, fragsize=24):
            peer.send(f)
        c2.advance(len(req[Raw].load))
        try:
            h, body = c2.response(timeout=1)
            assert body == pattern(50), body
            answered = time.time() - junk_done
            c2.close()
        except AssertionError:
            # Unanswered: reset this attempt (at the sequence number tapir expects, the
            # request never arrived) and try again.
            peer.send(c2.seg("R", seq=c2.snd_nxt - len(req[Raw].load)))
    assert answered is not None, "no fragmented request answered within 10 s of the junk"
    fact("fragmented_after_junk_s", "%.1f" % answered)
    peer.close()


def ipoptions():
    """IP options (record route, timestamp, NOPs, router alert) on every segment of a
    connection: served normally. Malformed options: dropped, no harm."""
    from scapy.all import IPOption_NOP, IPOption_RR, IPOption_Timestamp, IPOption_Router_Alert

    peer = Peer("10.7.0.65")
    opts = [IPOption_NOP(), IPOption_RR(routers=["10.7.0.9"]), IPOption_Router_Alert(), IPOption_Timestamp(flg=0, timestamp=[0])]
    c = peer.connect(ip_options=opts)
    c.write(b"GET /bytes/2000 HTTP/1.1\r\nHost: x\r\n\r\n")
    h, body = c.response()
    assert h.startswith("HTTP/1.1 200") and body == pattern(2000), h
    fact("options_served", len(body))
    c.close()
    # Malformed options: a length that runs past the header, a zero length.
    from scapy.all import checksum

    sports = []
    for raw in (b"\x07\x28\x04" + b"\x00" * 5, b"\x44\x00\x00\x00", b"\x83\xff" + b"\x00" * 6):
        sports.append(random.randint(20000, 60000))
        plain = bytes(IP(src=peer.ip, dst=TAPIR) / TCP(sport=sports[-1], dport=80, flags="S"))
        pkt = bytearray(plain[:20] + raw + plain[20:])
        pkt[0] = 0x40 | ((20 + len(raw)) // 4)
        pkt[2:4] = len(pkt).to_bytes(2, "big")
        pkt[10:12] = b"\x00\x00"
        hlen = 20 + len(raw)
        pkt[10:12] = checksum(bytes(pkt[:hlen])).to_bytes(2, "big")
        peer.send_l2(Ether(dst=peer.tapir_mac, src=peer.mac, type=0x0800) / Raw(bytes(pkt)))
    time.sleep(0.5)
    # smoltcp does not parse IPv4 options, so it skips even malformed ones (Linux would
    # drop these); report whether the SYNs behind them were answered.
    answered = peer.tcp_to_me(lambda p: p[TCP].dport in sports and p[TCP].flags.S)
    fact("malformed_option_syns_answered", len({p[TCP].dport for p in answered}))
    legit_ok()
    peer.close()


def tinymss(size):
    """A download by a peer that announces MSS 64: every segment tapir sends carries at
    most 64 bytes and the body arrives intact."""
    size = int(size)
    peer = Peer("10.7.0.67")
    c = peer.connect(mss=64)
    c.write(b"GET /bytes/%d HTTP/1.1\r\nHost: x\r\n\r\n" % size)
    h, body = c.response(timeout=60)
    assert body == pattern(size), "body differs (%d bytes)" % len(body)
    biggest = max(n for (_, _, n, _, _) in c.segments)
    fact("segments", len([s for s in c.segments if s[2] > 0]))
    fact("largest_segment", biggest)
    assert biggest <= 64, biggest
    c.close()
    peer.close()


def zerowindow(seconds):
    """A client that asks for a large body and then never opens its window: it answers
    every probe with window 0. Prints the probes seen; the Rust test measures tapir's CPU
    meanwhile and checks the connection is freed."""
    seconds = float(seconds)
    peer = Peer("10.7.0.68")
    c = peer.connect()
    c.write(b"GET /bytes/10000000 HTTP/1.1\r\nHost: x\r\n\r\n")
    # Let the first window's worth arrive, then close the window for good.
    wait_until(lambda: len(c.data) > 1000, 3)
    c.window = 0
    c.accept_data = False
    c.ack_now()
    got = len(c.data)
    print("zero-window", flush=True)
    start = time.time()
    n0 = len(c.segments)
    while time.time() - start < seconds and not c.reset and not c.fin:
        time.sleep(0.1)
    probes = len(c.segments) - n0
    fact("bytes_before_zero_window", got)
    fact("segments_during_zero_window", probes)
    fact("ended_by", "reset" if c.reset else "fin" if c.fin else "still-open")
    peer.close()


def arpspoof(count):
    """ARP frames claiming tapir's own address for another MAC, sent to tapir; tapir keeps
    its address, keeps answering ARP for it with its own MAC, and keeps serving."""
    count = int(count)
    peer = Peer("10.7.0.69")
    real = peer.tapir_mac
    fake = "02:66:66:66:66:66"
    for i in range(count):
        peer.send_l2(Ether(dst="ff:ff:ff:ff:ff:ff", src=fake) / ARP(op=1, hwsrc=fake, psrc=TAPIR, pdst=TAPIR))
        peer.send_l2(Ether(dst=real, src=fake) / ARP(op=2, hwsrc=fake, psrc=TAPIR, hwdst=real, pdst=TAPIR))
        peer.send_l2(Ether(dst=real, src=fake) / ARP(op=1, hwsrc=fake, psrc=TAPIR, pdst=peer.ip))
    time.sleep(0.2)
    legit_ok()
    peer.tapir_mac = None
    peer.resolve()
    assert peer.tapir_mac == real, "tapir now answers ARP with %s, not %s" % (peer.tapir_mac, real)
    fact("arp_answer", peer.tapir_mac)
    # No IP traffic went to the fake MAC (ARP replies to requests "from" tapir's own
    # address may: smoltcp answers any request for its address).
    with peer.lock:
        to_fake = [p for p in peer.frames if p[Ether].dst == fake]
    ip_to_fake = [p for p in to_fake if IP in p]
    assert not ip_to_fake, "tapir sent %d IP frames to the spoofed MAC" % len(ip_to_fake)
    fact("arp_replies_to_spoofer", len(to_fake))
    c = peer.connect()
    c.write(b"GET /bytes/10 HTTP/1.1\r\nHost: x\r\n\r\n")
    h, body = c.response()
    assert body == pattern(10)
    c.close()
    fact("spoof_frames", 3 * count)
    peer.close()


def send_for(sock, frames, seconds, rate=None):
    """Sends `frames` round and round on `sock` for `seconds`, as fast as it goes or at most
    `rate` frames per second; prints the count and rate."""
    start = time.time()
    n = 0
    while time.time() - start < seconds:
        for f in frames[n % len(frames) : n % len(frames) + 200]:
            sock.send(f)
        n += 200
        if rate is not None:
            ahead = n / rate - (time.time() - start)
            if ahead > 0:
                time.sleep(ahead)
    fact("syns_sent", n)
    fact("rate", int(n / (time.time() - start)))


def synflood(seconds, src, rate):
    """SYNs from random source ports (and sequence numbers) of an address nobody answers
    for, for `seconds`, at up to `rate` per second."""
    from scapy.all import conf

    seconds = float(seconds)
    peer = Peer("10.7.0.70")
    s = conf.L2socket(iface="tap0")
    frames = [
        bytes(Ether(dst=peer.tapir_mac, src=peer.mac) / IP(src=src, dst=TAPIR) / TCP(sport=random.randint(1024, 65535), dport=80, flags="S", seq=random.randint(0, 2**32 - 1), window=64240))
        for _ in range(4000)
    ]
    print("flooding", flush=True)
    send_for(s, frames, seconds, float(rate))
    print("flood over", flush=True)
    peer.close()


def silentflood(seconds, rate):
    """SYNs at up to `rate` per second from random addresses that never answer: on-link ones
    nobody owns (no ARP reply, so no RST ever comes back) and off-link ones, from random
    ports, with the options a real client sends. Prints `open flood` once it starts."""
    from scapy.all import conf

    seconds, rate = float(seconds), float(rate)
    peer = Peer("10.7.0.71")
    s = conf.L2socket(iface="tap0")
    frames = []
    for i in range(4000):
        if i % 2:
            src = "10.7.0.%d" % random.randint(100, 250)
        else:
            src = "198.18.%d.%d" % (random.randint(0, 255), random.randint(1, 254))
        mac = "02:00:%02x:%02x:%02x:%02x" % tuple(random.randint(0, 255) for _ in range(4))
        opts = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (random.randint(1, 2**31), 0)), ("NOP", None), ("WScale", 7)]
        frames.append(bytes(Ether(dst=peer.tapir_mac, src=mac) / IP(src=src, dst=TAPIR) / TCP(sport=random.randint(1024, 65535), dport=80, flags="S", seq=random.randint(0, 2**32 - 1), window=64240, options=opts)))
    print("open flood", flush=True)
    send_for(s, frames, seconds, rate)
    peer.close()


if __name__ == "__main__":
    name, args = sys.argv[1], sys.argv[2:]
    globals()[name](*args)
    print("done", flush=True)
