"""``edge delta``: make, apply and inspect deltas between images."""

from __future__ import annotations

import argparse
import dataclasses
import io
import os

from edge.delta import apply_delta, open_delta
from edge.delta import format as dfmt
from edge.delta.apply import read_sample
from edge.delta.errors import CorruptDeltaError
from edge.progress import Progress, human_bytes
from edge.squashfs.compressors import LZO1X_999, describe

from .output import print_json, print_table
from .units import check_rebuild_rate, parse_processors, parse_rate, parse_size, parse_zstd_level


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("delta", help="make, apply and inspect deltas between images",
                       description="Squashfs-aware block deltas: unchanged compressed blocks are copied from the old "
                                   "image, changed files are patched as plain content and recompressed on the device. "
                                   "Any other pair of files gets a generic byte-level delta.")
    s = p.add_subparsers(dest="delta_command", metavar="ACTION")
    s.required = True

    m = s.add_parser("make", help="make a delta from OLD to NEW",
                     description="Write a delta that turns OLD into NEW. Squashfs images made by Edge or mksquashfs "
                                 "(zstd, xz, gzip, lz4, lzo) get squashfs-aware operations; anything else a generic delta.")
    m.add_argument("old", metavar="OLD",
                   help="the image the devices run now (any file; squashfs images get squashfs-aware ops)")
    m.add_argument("new", metavar="NEW", help="the image they should run after the update")
    m.add_argument("-o", "--output", required=True, metavar="PATCH", help="delta file to write")
    m.add_argument("--level", type=parse_zstd_level, default=19, help="zstd level of the patches (default: 19)")
    m.add_argument("--generic", action="store_true", help="ignore squashfs structure (for comparison)")
    m.add_argument("--processors", type=parse_processors, default=0, metavar="N", help="worker threads (default: one per CPU)")
    m.add_argument("--link-speed", type=parse_rate, metavar="RATE",
                   help="the devices' download speed in bytes/s (e.g. 1M, 12.5M, 500k). With it, changed blocks "
                        "whose recompression on the device would take longer than downloading them are sent "
                        "ready-compressed: a bigger delta that installs sooner. Default: the smallest delta")
    m.add_argument("--rebuild-rate", type=parse_rate, metavar="RATE",
                   help="with --link-speed: plain bytes/s the device recompresses this image's blocks, all cores "
                        "(`edge delta apply --json` on a device reports it as rebuild_rate). Default: this "
                        "machine's rate, measured while checking the blocks")
    m.add_argument("--json", action="store_true", help="print the result as JSON")
    m.set_defaults(func=cmd_make)

    a = s.add_parser("apply", help="apply PATCH to OLD, writing TARGET",
                     description="Apply a delta to OLD (a file or the active slot's block device), writing TARGET "
                                 "front to back. Checks the source's hash first and every op before writing; an "
                                 "interrupted apply resumes from its last checkpoint when run again.")
    a.add_argument("old", metavar="OLD", help="the delta's source image: a file or the active slot's block device "
                                              "(read only)")
    a.add_argument("patch", metavar="PATCH", help="delta file; an http(s) URL streamed with Range requests "
                                                  "(applied while it downloads; a resume downloads only the rest); "
                                                  "or - (or a pipe) read front to back (a resume reads and skips "
                                                  "what was applied)")
    a.add_argument("-o", "--output", required=True, metavar="TARGET", help="file or block device to write")
    a.add_argument("--state", metavar="FILE", help="checkpoint file (default: TARGET.edge-apply, or under "
                                                   "/var/lib/edge for block devices)")
    a.add_argument("--processors", type=parse_processors, default=0, metavar="N", help="recompression threads")
    a.add_argument("--checkpoint-every", type=parse_size, default="16M", metavar="SIZE",
                   help="write a resume checkpoint after this many target bytes (default: 16M)")
    a.add_argument("--json", action="store_true", help="print the result as JSON")
    a.set_defaults(func=cmd_apply)

    i = s.add_parser("info", help="show what a delta contains",
                     description="Show a delta's source and target, compressor, and op counts and bytes by kind. It reads "
                                 "the whole delta and fails (exit 10) on what apply would refuse: a damaged sample block, damaged or "
                                 "truncated ops, ops that do not hash to the header's ops_sha256, bytes after the end.")
    i.add_argument("patch", metavar="PATCH", help="delta file, - for standard input, or an http(s) URL")
    i.add_argument("--json", action="store_true", help="print as JSON")
    i.set_defaults(func=cmd_info)


MAX_NOTES = 5  # damaged blocks listed in the plain output


def cmd_make(args: argparse.Namespace) -> int:
    from edge.delta.make import make_delta  # here: applying a delta does not load the generator and the writer

    check_rebuild_rate(args)
    with Progress("diffing", unit="regions") as bar:
        result = make_delta(args.old, args.new, args.output, level=args.level, workers=args.processors,
                            generic=args.generic, progress=bar.update, link_speed=args.link_speed,
                            rebuild_rate=args.rebuild_rate)
    if args.json:
        print_json(dataclasses.asdict(result))
        return 0
    ratio = result.size / result.target_size if result.target_size else 0
    print(f"{args.output}: {human_bytes(result.size)} ({ratio:.2%} of the {human_bytes(result.target_size)} target), "
          f"{result.kind} delta in {result.seconds:.1f}s")
    for kind in sorted(result.ops):
        print(f"  {kind:8} {result.ops[kind]:6} ops  {human_bytes(result.op_bytes[kind]):>10} in delta  "
              f"{human_bytes(result.target_bytes[kind]):>10} of target")
    if result.generic_because:
        print(f"  a byte-level delta: {result.generic_because}")
    for note in result.damaged_blocks[:MAX_NOTES]:
        print(f"  damaged: {note}")
    if result.damaged_block_count > MAX_NOTES:
        print(f"  … {result.damaged_block_count} damaged blocks in all (--json lists the first "
              f"{len(result.damaged_blocks)})")
    if result.unreproducible_blocks:
        print(f"  {result.unreproducible_blocks} compressed blocks could not be reproduced and are sent as literals")
    if result.estimated_seconds:
        print(f"  for a {args.link_speed / 1e6:g} MB/s link and a device recompressing "
              f"{(result.rebuild_rate or 0) / 1e6:.1f} MB/s: {result.shipped_ops} blocks ops sent ready-compressed, "
              f"estimated time to updated {result.estimated_seconds['before']:.1f}s -> "
              f"{result.estimated_seconds['after']:.1f}s")
    return 0


def _delta_source(patch: str):  # type: ignore[no-untyped-def]
    """A local path as is; an http(s) URL as an opener that starts a ranged download at an offset."""
    from edge.device.source import HttpStream, is_url

    if not is_url(patch):
        return patch

    def open_at(offset: int):  # type: ignore[no-untyped-def]
        stream = HttpStream(patch)
        stream.seek(offset)
        return io.BufferedReader(stream, buffer_size=1 << 16)

    return open_at


def cmd_apply(args: argparse.Namespace) -> int:
    with Progress(f"applying {os.path.basename(args.patch)}") as bar:
        result = apply_delta(args.old, _delta_source(args.patch), args.output, state_path=args.state, progress=bar.update,
                             workers=args.processors, checkpoint_bytes=args.checkpoint_every)
    if args.json:
        print_json(dataclasses.asdict(result))
        return 0
    resumed = f", resumed at op {result.resumed_at_op}" if result.resumed_at_op is not None else ""
    rebuilt = (f", {human_bytes(result.rebuilt_bytes)} recompressed at {result.rebuild_rate / 1e6:.1f} MB/s"
               if result.rebuild_rate else "")
    print(f"{args.output}: {human_bytes(result.size)} written and verified, {result.ops} ops{resumed}, "
          f"{result.seconds:.1f}s (source check {result.source_check_seconds:.2f}s{rebuilt})")
    return 0


def delta_info(path: str) -> dict:
    """What a delta holds, read once front to back (so a pipe, standard input ("-") or an http(s) URL
    will do)."""
    counts: dict[str, dict[str, int]] = {}
    encodings: dict[str, dict[str, int]] = {}  # how the blocks and patch ops carry their content
    target_refs = {"ops": 0, "reference_bytes": 0}  # patch ops that also refer to target bytes written before them
    name = "stdin" if path == "-" else path
    with open_delta(_delta_source(path)) as fh:
        reader = dfmt.DeltaReader(fh, name, hash_ops=True)
        header, _, sample = reader.preamble()
        if sample:
            read_sample(sample, name)  # (what apply checks first, info checks too)
        ops_start = reader.pos
        while True:
            before = reader.pos
            op = reader.op()
            if op is None:
                break
            c = counts.setdefault(dfmt.op_name(op), {"ops": 0, "delta_bytes": 0, "target_bytes": 0})
            c["ops"] += 1
            c["delta_bytes"] += reader.pos - before
            c["target_bytes"] += op.length
            if isinstance(op, (dfmt.Blocks, dfmt.Patch)):
                e = encodings.setdefault(dfmt.ENC_NAMES[op.encoding], {"ops": 0, "patch_bytes": 0, "content_bytes": 0})
                e["ops"] += 1
                e["patch_bytes"] += len(op.patch)
                e["content_bytes"] += op.content_len if isinstance(op, dfmt.Blocks) else op.length
            if isinstance(op, dfmt.Patch) and op.targets:
                target_refs["ops"] += 1
                target_refs["reference_bytes"] += sum(n for _, n in op.targets)
        # what apply would refuse only at the end, after writing the target, info says before anyone applies it
        reader.expect_end()
    reader.check_totals(header, sum(c["ops"] for c in counts.values()), sum(c["target_bytes"] for c in counts.values()))
    assert reader.ops_hash is not None
    if header.ops_sha256 is not None and reader.ops_hash.hexdigest() != header.ops_sha256:
        raise CorruptDeltaError(f"{name}: the ops (bytes {ops_start}..{reader.pos}) do not hash to the ops_sha256 in "
                                f"its header: the delta is damaged")
    return {
        "delta": path,
        "size": reader.pos,  # through END
        "kind": header.kind,
        "source": {"size": header.source_size, "sha256": header.source_sha256},
        "target": {"size": header.target_size, "sha256": header.target_sha256},
        "codec": header.codec,
        "sample_bytes": len(sample),
        "op_count": header.op_count,
        "generator": header.generator,
        "format": header.version,
        "ops": counts,
        "patch_encodings": encodings,
        "patch_target_references": target_refs,
    }


def cmd_info(args: argparse.Namespace) -> int:
    info = delta_info(args.patch)
    if args.json:
        print_json(info)
        return 0
    codec = info["codec"] or {}
    print_table([
        ("delta", f"{info['delta']} ({human_bytes(info['size'])})"),
        ("kind", info["kind"]),
        ("source", f"{info['source']['size']} bytes, sha256 {info['source']['sha256']}"),
        ("target", f"{info['target']['size']} bytes, sha256 {info['target']['sha256']}"),
        ("compressor", f"{describe(codec['name'], codec.get('level', 0), codec.get('lz4_hc', False), codec.get('lzo_algorithm', LZO1X_999))}, "
                       f"{codec.get('impl_version')}" if codec.get("name") else "-"),
        ("ops", info["op_count"]),
        ("generator", f"{info['generator']} (format {info['format']})"),
    ])
    print(f"\n{'kind':8} {'ops':>7} {'delta bytes':>12} {'target bytes':>13}")
    for kind, c in sorted(info["ops"].items()):
        print(f"{kind:8} {c['ops']:>7} {c['delta_bytes']:>12} {c['target_bytes']:>13}")
    if info["patch_encodings"]:
        print(f"\n{'patch':9} {'ops':>6} {'patch bytes':>12} {'content bytes':>14}")
        for enc, c in sorted(info["patch_encodings"].items()):
            print(f"{enc:9} {c['ops']:>6} {c['patch_bytes']:>12} {c['content_bytes']:>14}")
    refs = info["patch_target_references"]
    if refs["ops"]:
        print(f"\n{refs['ops']} patch ops also refer to {refs['reference_bytes']} bytes of the target written before them")
    return 0
