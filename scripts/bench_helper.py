#!/usr/bin/env python3
"""Helpers of scripts/bench.sh (standard library only).

  bench_helper.py pattern-file PATH BYTES          write /bytes/N's bytes (tapir's pattern) to PATH
  bench_helper.py wrk FILE                         parse wrk --latency output -> JSON
  bench_helper.py h2load FILE                      parse h2load output -> JSON
  bench_helper.py smoltcp FILE                     parse smoltcp's benchmark output -> JSON (MB/s)
  bench_helper.py idle HOST PORT COUNT READYFILE   open COUNT idle keep-alive connections
  bench_helper.py report RESULTS OUTDIR            table, report.json and scaling.svg

Every parse prints one JSON object on stdout; a missing figure is null.
"""

import json
import os
import re
import resource
import selectors
import socket
import sys
import time

PATTERN = b"tapir-bytes-0123456789\n"


def pattern_file(path, n):
    n = int(n)
    block = PATTERN * (4 * 1024 * 1024 // len(PATTERN))  # a whole number of patterns
    with open(path, "wb") as f:
        left = n
        while left > 0:
            chunk = block[: min(left, len(block))]
            f.write(chunk)
            left -= len(chunk)


def seconds(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text.strip())
    if not m:
        return None
    value = float(m.group(1))
    return value * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(2)]


def parse_wrk(path):
    text = open(path, errors="replace").read()
    out = {"rps": None, "p50_ms": None, "p99_ms": None, "requests": None, "errors": 0}
    m = re.search(r"Requests/sec:\s+([0-9.]+)", text)
    if m:
        out["rps"] = float(m.group(1))
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(r"^\s+%s(?:\.000)?%%\s+(\S+)" % pct, text, re.M)
        if m and seconds(m.group(1)) is not None:
            out[key] = seconds(m.group(1)) * 1e3
    m = re.search(r"(\d+) requests in", text)
    if m:
        out["requests"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["errors"] = sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        out["errors"] += int(m.group(1))
        out["non2xx"] = int(m.group(1))
        out["rps"] = None  # not the page asked for: no figure
    return out


def parse_h2load(path):
    text = open(path, errors="replace").read()
    out = {"rps": None, "succeeded": None, "failed": None, "seconds": None}
    m = re.search(r"finished in ([0-9.]+(?:us|ms|s|m)), ([0-9.]+) req/s", text)
    if m:
        out["seconds"] = seconds(m.group(1))
        out["rps"] = float(m.group(2))
    m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed", text)
    if m:
        out["succeeded"] = int(m.group(1))
        out["failed"] = int(m.group(2))
    m = re.search(r"status codes: (\d+) 2xx", text)
    if m:
        out["status_2xx"] = int(m.group(1))
    if not out["succeeded"] or out["failed"] or out.get("status_2xx", 1) == 0:
        out["rps"] = None  # failures or no 2xx answers: no figure
    return out


def parse_smoltcp(path):
    text = open(path, errors="replace").read()
    m = re.search(r"throughput: ([0-9.]+) Gbps", text)
    return {"mbps": float(m.group(1)) * 1e9 / 8 / 1e6 if m else None}


def idle(host, port, count, ready_file, tls="0", sources="", hold="120"):
    """Opens `count` connections, makes one request on each (so each is an idle keep-alive
    connection, past the server's request-head timeout), then holds them until killed (at
    most `hold` seconds). `tls` "1": HTTPS (HTTP/1.1, no ALPN, certificate not checked).
    `sources`: comma-separated local addresses, used in turn (one address has about 64,000
    ports towards one server port: 100,000 connections need two)."""
    count = int(count)
    port = int(port)
    use_tls = tls == "1"
    addrs = [a for a in sources.split(",") if a]
    want = count + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
    ctx = None
    if use_tls:
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    request = b"GET /bytes/100 HTTP/1.1\r\nHost: bench\r\n\r\n"
    sel = selectors.DefaultSelector()
    conns = []
    done = 0
    failed = 0
    opened = 0
    batch = 500
    deadline = time.monotonic() + 90 + count / 500
    while done + failed < count and time.monotonic() < deadline:
        # entry: [socket, received bytes, stage] with stage "connect", "tls", "sent"
        pending = {}
        for _ in range(min(batch, count - done - failed)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            if addrs:
                s.bind((addrs[opened % len(addrs)], 0))
            opened += 1
            try:
                s.connect((host, port))
            except BlockingIOError:
                pass
            except OSError:
                s.close()
                failed += 1
                continue
            pending[s.fileno()] = [s, b"", "connect"]
            sel.register(s, selectors.EVENT_WRITE)
        batch_deadline = time.monotonic() + 30
        while pending and time.monotonic() < batch_deadline:
            for key, ev in sel.select(timeout=1):
                entry = pending.get(key.fd)
                if entry is None:
                    continue
                s = entry[0]

                def drop():
                    nonlocal failed
                    sel.unregister(s)
                    s.close()
                    del pending[key.fd]
                    failed += 1

                if entry[2] == "connect":
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        drop()
                        continue
                    if use_tls:
                        s = ctx.wrap_socket(s, do_handshake_on_connect=False)
                        entry[0] = s
                        entry[2] = "tls"
                    else:
                        s.send(request)
                        entry[2] = "sent"
                        sel.modify(s, selectors.EVENT_READ)
                        continue
                if entry[2] == "tls":
                    try:
                        s.do_handshake()
                    except ssl.SSLWantReadError:
                        sel.modify(s, selectors.EVENT_READ)
                        continue
                    except ssl.SSLWantWriteError:
                        sel.modify(s, selectors.EVENT_WRITE)
                        continue
                    except OSError:
                        drop()
                        continue
                    s.send(request)
                    entry[2] = "sent"
                    sel.modify(s, selectors.EVENT_READ)
                    continue
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError as e:
                    if use_tls and isinstance(e, (ssl.SSLWantReadError, ssl.SSLWantWriteError)):
                        continue
                    data = b""
                if not data:
                    drop()
                    continue
                entry[1] += data
                head, sep, body = entry[1].partition(b"\r\n\r\n")
                if sep:
                    m = re.search(rb"(?i)content-length:\s*(\d+)", head)
                    if m and len(body) >= int(m.group(1)):
                        sel.unregister(s)
                        conns.append(s)
                        del pending[key.fd]
                        done += 1
        for entry in pending.values():
            sel.unregister(entry[0])
            entry[0].close()
            failed += 1
    with open(ready_file + ".tmp", "w") as f:
        json.dump({"open": done, "failed": failed}, f)
    os.rename(ready_file + ".tmp", ready_file)
    # Hold them, idle, until the script kills us.
    end = time.monotonic() + float(hold)
    while time.monotonic() < end:
        time.sleep(1)


def fmt(value, unit):
    if value is None:
        return "n/a"
    if unit in ("req/s", "conn/s"):
        return f"{value:,.0f}"
    if unit in ("MB/s", "MiB", "KiB/conn"):
        return f"{value:,.1f}"
    return f"{value:,.3f}"


def svg_scaling(rows, path):
    """req/s against concurrent connections (log x), tapir and nginx."""
    pts = {"tapir": [], "nginx": []}
    for r in rows:
        if r.get("series") == "scaling" and r.get("tapir") is not None:
            pts["tapir"].append((r["connections"], r["tapir"]))
        if r.get("series") == "scaling" and r.get("baseline") is not None:
            pts["nginx"].append((r["connections"], r["baseline"]))
    width, height = 720, 440
    left, right, top, bottom = 90, 30, 50, 70
    xs = sorted({x for series in pts.values() for x, _ in series}) or [1, 10]
    ymax = max([y for series in pts.values() for _, y in series] or [1.0])
    import math

    lo, hi = math.log10(min(xs)), math.log10(max(xs))
    if hi == lo:
        hi = lo + 1
    # A round top for the y axis.
    mag = 10 ** math.floor(math.log10(ymax)) if ymax > 0 else 1
    ytop = math.ceil(ymax / mag) * mag

    def px(x):
        return left + (math.log10(x) - lo) / (hi - lo) * (width - left - right)

    def py(y):
        return height - bottom - y / ytop * (height - top - bottom)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="24" text-anchor="middle" font-size="15">'
        "HTTP/1.1 keep-alive req/s vs concurrent connections (wrk, /bytes/100)</text>",
    ]
    for i in range(6):
        y = ytop * i / 5
        out.append(
            f'<line x1="{left}" y1="{py(y):.1f}" x2="{width - right}" y2="{py(y):.1f}" stroke="#ddd"/>'
        )
        out.append(
            f'<text x="{left - 8}" y="{py(y) + 4:.1f}" text-anchor="end">{y:,.0f}</text>'
        )
    for x in xs:
        out.append(
            f'<line x1="{px(x):.1f}" y1="{top}" x2="{px(x):.1f}" y2="{height - bottom}" stroke="#eee"/>'
        )
        out.append(
            f'<text x="{px(x):.1f}" y="{height - bottom + 18}" text-anchor="middle">{x:,}</text>'
        )
    out.append(
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="black"/>'
    )
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="black"/>')
    out.append(
        f'<text x="{(left + width - right) / 2}" y="{height - 25}" text-anchor="middle">'
        "concurrent connections (log scale)</text>"
    )
    out.append(
        f'<text x="20" y="{(top + height - bottom) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 20 {(top + height - bottom) / 2})">requests/s</text>'
    )
    colours = {"tapir": "#d62728", "nginx": "#1f77b4"}
    labels = {"tapir": "tapir (TAP, userspace stack)", "nginx": "nginx, 1 worker (veth)"}
    for k, (name, series) in enumerate(pts.items()):
        series.sort()
        if series:
            d = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in series)
            out.append(
                f'<polyline points="{d}" fill="none" stroke="{colours[name]}" stroke-width="2"/>'
            )
            for x, y in series:
                out.append(
                    f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" fill="{colours[name]}"/>'
                )
        ly = top + 10 + 18 * k
        out.append(
            f'<line x1="{width - right - 220}" y1="{ly}" x2="{width - right - 195}" y2="{ly}" '
            f'stroke="{colours[name]}" stroke-width="2"/>'
        )
        out.append(f'<text x="{width - right - 188}" y="{ly + 4}">{labels[name]}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


LOWER_IS_BETTER = ("ms", "MiB", "KiB/conn")


def better(unit):
    """Which way a figure in `unit` is better: times and memory lower, rates higher."""
    return "lower" if unit in LOWER_IS_BETTER else "higher"


def report(results, outdir):
    rows = [json.loads(line) for line in open(results) if line.strip()]
    meta = rows[0] if rows and rows[0].get("kind") == "meta" else {}
    figures = [r for r in rows if r.get("kind") == "figure"]
    for r in figures:
        t, b = r.get("tapir"), r.get("baseline")
        r["ratio"] = (t / b) if (t is not None and b) else None
        r.setdefault("better", better(r["unit"]))
    doc = dict(meta)
    doc.pop("kind", None)
    doc["figures"] = [{k: v for k, v in r.items() if k != "kind"} for r in figures]
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "report.json"), "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    svg_scaling(figures, os.path.join(outdir, "scaling.svg"))
    w1 = max([len(r["figure"]) for r in figures] + [6])
    w3 = max([len(r["baseline_name"]) for r in figures] + [8])
    head = f"{'figure':<{w1}}  {'unit':<8}  {'better':<6}  {'tapir':>12}  {'baseline':<{w3}}  {'baseline':>12}  {'ratio':>7}"
    print(head)
    print("-" * len(head))
    for r in figures:
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.3f}"
        print(
            f"{r['figure']:<{w1}}  {r['unit']:<8}  {r['better']:<6}  {fmt(r.get('tapir'), r['unit']):>12}  "
            f"{r['baseline_name']:<{w3}}  {fmt(r.get('baseline'), r['unit']):>12}  {ratio:>7}"
        )


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "pattern-file":
        pattern_file(*args)
    elif cmd == "wrk":
        print(json.dumps(parse_wrk(*args)))
    elif cmd == "h2load":
        print(json.dumps(parse_h2load(*args)))
    elif cmd == "smoltcp":
        print(json.dumps(parse_smoltcp(*args)))
    elif cmd == "idle":
        idle(*args)
    elif cmd == "report":
        report(*args)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
