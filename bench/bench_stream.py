#!/usr/bin/env python3
"""Streamed installs (issue #5): time to updated when the device applies a delta while it downloads.

The issue's "time to updated" adds delta bytes / 1 MB/s to the apply wall time,
as if the device downloaded first and applied after.  Edge's applier (and
``edge install URL``) streams instead: it reads the delta over HTTP Range
requests and recompresses blocks while the rest arrives.  This benchmark
measures that, for real: every delta is served by a loopback HTTP server that
sends at most LINK bytes/s (a strict cap: after a stall it does not burst to
catch up), and the clock runs from the command's start until the verified
image is on disk.

Contenders, on the security pair (bench/rootfs.py) for each image flavour:
- Edge, smallest delta (the default) — ``edge delta apply OLD URL``;
- Edge, ``--link-speed LINK`` delta (changed blocks shipped ready-compressed when
  recompressing them on the device would hold the install up);
- xdelta3 -9, decoding from the stream: ``curl URL | xdelta3 -d -s OLD``;
- the full image (download only), at the faster link.

It also computes the floor of the issue's *sequential* formula for this pair on
this machine: the smallest ``delta bytes / link + rebuild time`` any choice of
shipped or rebuilt blocks can reach, from Edge's own ops and the rebuild rate
its apply measured, so a missed formula target can be told apart from a
missing optimisation.

    .venv/bin/python bench/bench_stream.py [--flavours edge-zstd19,...] [--links 1M,12.5M] [--runs 3]
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import rootfs as rf  # noqa: E402
from bench.bench_delta import FLAVOURS, same  # noqa: E402
from bench.measure import timed  # noqa: E402
from bench.report import machine_line, update_section  # noqa: E402
from edge.cli.units import parse_rate  # noqa: E402
from edge.delta import format as dfmt  # noqa: E402

EDGE = str(rf.EDGE)
PAIR = "security"
CHUNK = 16 << 10


class ThrottledHandler(http.server.BaseHTTPRequestHandler):
    """Files of the server's directory with single Range support, sent at most ``server.rate`` bytes/s."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # noqa: D401 - quiet
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        path = os.path.join(self.server.root, self.path.lstrip("/"))  # type: ignore[attr-defined]
        if not os.path.isfile(path):
            self.send_error(404)
            return
        size = os.path.getsize(path)
        start, end = 0, size
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if m:
            start = int(m.group(1))
            end = min(size, int(m.group(2)) + 1) if m.group(2) else size
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(end - start))
        self.end_headers()
        if head:
            return
        rate = self.server.rate  # type: ignore[attr-defined]
        due = time.monotonic()
        with open(path, "rb") as fh:
            fh.seek(start)
            left = end - start
            while left:
                chunk = fh.read(min(CHUNK, left))
                now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
                try:
                    self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    return
                # strict cap: a reader that stalled gets no credit for the time it did not read
                due = max(due, now) + len(chunk) / rate
                left -= len(chunk)


class Server:
    def __init__(self, root: Path) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ThrottledHandler)
        self.httpd.root = str(root)  # type: ignore[attr-defined]
        self.httpd.rate = 1e6  # type: ignore[attr-defined]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def streamed(cmd: list[str], out: Path, new: Path | None, runs: int, shell: bool = False) -> tuple[float, bool]:
    """Median wall seconds of ``cmd`` over ``runs`` runs, and whether every run produced ``new``."""
    walls, ok = [], True
    for _ in range(runs):
        out.unlink(missing_ok=True)
        for state in out.parent.glob(out.name + ".edge-apply"):
            state.unlink()
        start = time.monotonic()
        proc = subprocess.run(cmd if not shell else " ".join(cmd), shell=shell, capture_output=True, text=True)
        walls.append(time.monotonic() - start)
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd} failed ({proc.returncode}): {proc.stderr[-2000:]!r}")
        ok = ok and (new is None or same(out, new))
    out.unlink(missing_ok=True)
    return median(walls), ok


def sequential_floor(delta: Path, link: float, rebuild_rate: float) -> dict:
    """The smallest ``bytes / link + rebuild seconds`` over every choice of BLOCKS ops shipped or rebuilt.

    Separable: an op is shipped exactly when its extra bytes cost less link time than its rebuild.
    Patch sizes are Edge's (0.975x the content bound on this pair), so this is the floor for
    deltas of Edge's content efficiency; rebuild is charged at the measured rate, other apply
    work (hashing, writing, interpreter start) at zero.
    """
    base = 0
    seconds = 0.0
    with open(delta, "rb") as fh:
        reader = dfmt.DeltaReader(fh, str(delta))
        reader.preamble()
        base = reader.pos
        while True:
            before = reader.pos
            op = reader.op()
            if op is None:
                break
            size = reader.pos - before
            if isinstance(op, dfmt.Blocks) and dfmt.BLOCK_COMPRESSED in op.flags:
                seconds += min(size / link + op.content_len / rebuild_rate, op.length / link)
            else:
                seconds += size / link
    return {"seconds": seconds + base / link, "rebuild_rate": rebuild_rate}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flavours", default=",".join(FLAVOURS))
    ap.add_argument("--links", default="1M,12.5M", help="link speeds in bytes/s (decimal units)")
    ap.add_argument("--runs", type=int, default=3, help="streamed runs per contender (median reported)")
    ap.add_argument("--no-write", action="store_true", help="print only, do not update docs/benchmarks.md")
    args = ap.parse_args(argv)
    flavours = [f for f in args.flavours.split(",") if f]
    links = [parse_rate(x) for x in args.links.split(",") if x]
    curl = shutil.which("curl")
    if curl is None:
        print("error: curl is needed (apt-get install curl)", file=sys.stderr)
        return 2
    a, b = rf.PAIRS[PAIR]
    work = Path(tempfile.mkdtemp(prefix="edge-bench-stream-", dir="/var/tmp"))
    server = Server(work)
    rows: list[dict] = []
    floors: dict[str, dict] = {}
    ok = True
    try:
        for flavour in flavours:
            tool, comp, level = FLAVOURS[flavour]
            old, new = rf.image(a, tool, comp, level), rf.image(b, tool, comp, level)
            shutil.copyfile(new, work / "full.sqfs")
            out = work / "out.img"
            made = {}
            timed([EDGE, "delta", "make", str(old), str(new), "-o", str(work / "edge.delta")])
            timed(["xdelta3", "-9", "-e", "-f", "-s", str(old), str(new), str(work / "x.vcdiff")])
            # sequential formula, measured locally: apply wall time (median of runs) and the rebuild rate
            walls = []
            for _ in range(args.runs):
                out.unlink(missing_ok=True)
                wall, _, proc = timed([EDGE, "delta", "apply", str(old), str(work / "edge.delta"), "-o", str(out), "--json"])
                walls.append(wall)
            applied = json.loads(proc.stdout)
            out.unlink(missing_ok=True)
            xwalls = []
            for _ in range(args.runs):
                out.unlink(missing_ok=True)
                xwalls.append(timed(["xdelta3", "-d", "-f", "-s", str(old), str(work / "x.vcdiff"), str(out)])[0])
            out.unlink(missing_ok=True)
            seq = {"edge_bytes": (work / "edge.delta").stat().st_size, "edge_apply": median(walls),
                   "x_bytes": (work / "x.vcdiff").stat().st_size, "x_apply": median(xwalls),
                   "rebuild_rate": applied["rebuild_rate"]}
            for link in links:
                server.httpd.rate = link  # type: ignore[attr-defined]
                name = f"edge-{link:g}.delta"
                wall, _, proc = timed([EDGE, "delta", "make", str(old), str(new), "-o", str(work / name),
                                       "--link-speed", f"{link:g}", "--json"])
                made[link] = json.loads(proc.stdout)
                contenders = [
                    ("Edge (smallest delta)", work / "edge.delta",
                     [EDGE, "delta", "apply", str(old), server.url("edge.delta"), "-o", str(out)], False),
                    (f"Edge --link-speed {link / 1e6:g}M", work / name,
                     [EDGE, "delta", "apply", str(old), server.url(name), "-o", str(out)], False),
                    ("xdelta3 -9 (curl | xdelta3 -d)", work / "x.vcdiff",
                     [curl, "-sf", server.url("x.vcdiff"), "|", "xdelta3", "-d", "-c", "-s", str(old), ">", str(out)], True),
                ]
                if link >= 5e6:  # 58 s per run at 1 MB/s: only at the faster link
                    contenders.append(("full image (download only)", work / "full.sqfs",
                                       [curl, "-sf", "-o", str(out), server.url("full.sqfs")], False))
                for label, path, cmd, shell in contenders:
                    print(f"   {flavour} {link / 1e6:g} MB/s {label} ...", file=sys.stderr, flush=True)
                    wall, good = streamed(cmd, out, new, args.runs, shell=shell)
                    ok = ok and good
                    rows.append({"flavour": flavour, "link": link, "label": label, "bytes": path.stat().st_size,
                                 "seconds": wall, "ok": good,
                                 "shipped": made[link]["shipped_ops"] if "link-speed" in label else None})
                floors[f"{flavour}@{link:g}"] = {**sequential_floor(work / "edge.delta", link, applied["rebuild_rate"]),
                                                 "x_formula": seq["x_bytes"] / link + seq["x_apply"],
                                                 "edge_formula": seq["edge_bytes"] / link + seq["edge_apply"]}
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)
    md = report(flavours, links, rows, floors, args.runs)
    print(md)
    if not args.no_write:
        update_section("delta-stream", md)
    return 0 if ok else 1


READING = (
    "Reading: the issue's formula adds the apply to the download as if one ran after the other; Edge's applier "
    "overlaps them, so the streamed time is what a device on that link sees. Under the formula, zstd-19 images cannot "
    "reach 0.4x on this machine with any mix of shipped and rebuilt blocks (the floor above): byte-exact level-19 "
    "recompression runs at about 5 MB/s per core, so rebuilding the 45 MB of changed content takes longer than the "
    "time 0.4x leaves after the patches have downloaded, and shipping those blocks compressed costs more link time than "
    "rebuilding them. At 12.5 MB/s the smallest delta is paced by "
    "recompression (2-4x slower than xdelta3); `--link-speed` ships most changed blocks ready-compressed and brings "
    "Edge to xdelta3's time, but not below it: the compressed changed blocks are about as large as xdelta3's delta.")


def report(flavours: list[str], links: list[float], rows: list[dict], floors: dict, runs: int) -> str:
    lines = ["## Streamed installs: time to updated while the delta downloads", ""]
    lines.append(
        "Security pair (bookworm minbase+python3 before/after `apt-get upgrade` from bookworm-security). Each delta is "
        "served by a loopback HTTP server capped at the link speed (strict cap, no catch-up burst after a stall); the "
        "time runs from the command's start (interpreter start included) until the image is written and verified; "
        f"median of {runs} runs. Edge applies while it downloads (`edge delta apply OLD URL`, the same streaming code "
        "as `edge install URL`); xdelta3 decodes from a pipe (`curl URL | xdelta3 -d -c -s OLD`). Every result was "
        "compared byte for byte with the new image.")
    lines.append("")
    lines.append("| image | link | contender | delta bytes | shipped ops | time to updated s | vs xdelta3 | ok |")
    lines.append("|---|---|---|---:|---:|---:|---:|---|")
    for flavour in flavours:
        for link in links:
            sel = [r for r in rows if r["flavour"] == flavour and r["link"] == link]
            x = next((r for r in sel if r["label"].startswith("xdelta3")), None)
            for r in sel:
                rel = f"{r['seconds'] / x['seconds']:.3f}x" if x else "-"
                shipped = "-" if r["shipped"] is None else str(r["shipped"])
                lines.append(f"| {flavour} | {link / 1e6:g} MB/s | {r['label']} | {r['bytes']:,} | {shipped} | "
                             f"{r['seconds']:.2f} | {rel} | {'ok' if r['ok'] else 'MISMATCH'} |")
    lines.append("")
    lines.append("Issue #5's target, time to updated <= 0.4x xdelta3's on the security pair, two ways:")
    lines.append("")
    for flavour in flavours:
        for link in links:
            if link != 1e6:
                continue
            sel = [r for r in rows if r["flavour"] == flavour and r["link"] == link]
            x = next(r for r in sel if r["label"].startswith("xdelta3"))
            best = min((r for r in sel if r["label"].startswith("Edge")), key=lambda r: r["seconds"])
            f = floors[f"{flavour}@{link:g}"]
            lines.append(
                f"- {flavour}: streamed (measured) {best['label']} {best['seconds']:.2f} s vs xdelta3 {x['seconds']:.2f} s "
                f"= **{best['seconds'] / x['seconds']:.3f}x** ({'PASS' if best['seconds'] <= 0.4 * x['seconds'] else 'MISS'}); "
                f"sequential formula (delta bytes / 1 MB/s + apply wall) {f['edge_formula']:.2f} s vs xdelta3 "
                f"{f['x_formula']:.2f} s = **{f['edge_formula'] / f['x_formula']:.3f}x** "
                f"({'PASS' if f['edge_formula'] <= 0.4 * f['x_formula'] else 'MISS'}); the formula's floor here is "
                f"{f['seconds']:.2f} s = {f['seconds'] / f['x_formula']:.3f}x (best mix of shipped and rebuilt blocks, "
                f"rebuild at the measured {f['rebuild_rate'] / 1e6:.1f} MB/s, all other apply work free).")
    lines += ["", READING, "", machine_line(), "", "Reproduce:", "", "```", ".venv/bin/python bench/bench_stream.py", "```"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
