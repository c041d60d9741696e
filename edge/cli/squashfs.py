"""``edge squashfs``: create, list, extract and inspect squashfs images."""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from typing import Any

from edge.errors import UsageError
from edge.progress import Progress, human_bytes
from edge.squashfs import SquashfsError, SquashfsImage, Tree, WriterOptions, parse_block_size, walk_directory, write_image
from edge.squashfs import format as fmt
from edge.squashfs.compressors import LZO1X_999, WRITABLE, describe, make_codec
from edge.squashfs.extract import extract, long_line
from edge.squashfs.walker import file_ids

from .output import print_json, print_table
from .units import parse_processors


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("squashfs", help="create, list, extract and inspect squashfs images",
                       description="Create, list, extract and inspect squashfs 4.0 images (writes zstd, xz, gzip; also reads lz4, lzo, lzma).")
    s = p.add_subparsers(dest="squashfs_command", metavar="ACTION")
    s.required = True

    c = s.add_parser("create", help="build an image from a directory",
                     description="Build a reproducible squashfs image from a directory. The same tree always gives "
                                 "the same bytes; timestamps are clamped to --mtime or $SOURCE_DATE_EPOCH.")
    c.add_argument("src", metavar="SRC", help="directory to pack")
    c.add_argument("out", metavar="OUT", help="image file to write (replaced atomically)")
    c.add_argument("--comp", choices=WRITABLE, default="zstd", help="compressor (default: zstd)")
    c.add_argument("--level", type=int, help="compression level (zstd 1-22, default 15; xz 0-9, default 6; gzip 1-9, default 9)")
    c.add_argument("--block-size", default="128K", help="data block size, 4K to 1M (default: 128K)")
    c.add_argument("--no-fragments", action="store_true", help="do not pack small files into shared fragment blocks")
    c.add_argument("--always-fragments", action="store_true", help="also pack the tails of files larger than a block")
    c.add_argument("--no-dedup", action="store_true", help="store identical files twice")
    c.add_argument("--no-xattrs", action="store_true", help="drop extended attributes")
    c.add_argument("--no-exports", action="store_true", help="omit the NFS export table")
    c.add_argument("--mtime", type=int, metavar="EPOCH",
                   help="clamp every timestamp to EPOCH and use it as the image time (default: $SOURCE_DATE_EPOCH)")
    c.add_argument("--processors", type=parse_processors, default=0, metavar="N", help="compression threads (default: one per CPU)")
    c.add_argument("--json", action="store_true", help="print the result as JSON")
    c.set_defaults(func=cmd_create)

    ls = s.add_parser("ls", help="list the files in an image",
                      description="List every path in an image, in directory order.")
    ls.add_argument("image", metavar="IMAGE")
    ls.add_argument("-l", "--long", action="store_true", help="long listing, the format of 'unsquashfs -lln'")
    ls.add_argument("--json", action="store_true", help="print entries as JSON")
    ls.set_defaults(func=cmd_ls)

    x = s.add_parser("extract", help="extract an image into a directory",
                     description="Extract an image into DEST (created if missing; must be empty). Owners, device "
                                 "nodes and trusted.* xattrs are restored when running as root.")
    x.add_argument("image", metavar="IMAGE")
    x.add_argument("dest", metavar="DEST")
    x.add_argument("--json", action="store_true", help="print a summary as JSON")
    x.set_defaults(func=cmd_extract)

    i = s.add_parser("info", help="show the superblock, counts and (with --layout) the physical layout",
                     description="Show an image's superblock, compression and entry counts. With --layout, show "
                                 "where every data block, fragment block, metadata block and table lies.")
    i.add_argument("image", metavar="IMAGE")
    i.add_argument("--layout", action="store_true", help="include the per-file physical layout and table locations")
    i.add_argument("--json", action="store_true", help="print as JSON")
    i.set_defaults(func=cmd_info)


def _mtime_from(args: argparse.Namespace) -> int | None:
    if args.mtime is not None:
        return args.mtime
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env:
        try:
            return int(env)
        except ValueError:
            raise UsageError(f"SOURCE_DATE_EPOCH={env!r} is not an integer") from None
    return None


def cmd_create(args: argparse.Namespace) -> int:
    if not os.path.isdir(args.src):
        raise UsageError(f"{args.src}: not a directory")
    try:
        options = WriterOptions(
            compressor=args.comp,
            level=args.level,
            block_size=parse_block_size(args.block_size),
            fragments=not args.no_fragments,
            always_fragments=args.always_fragments,
            dedup=not args.no_dedup,
            xattrs=not args.no_xattrs,
            exportable=not args.no_exports,
            mtime=_mtime_from(args),
            workers=args.processors,
        )
        options.validate()
        make_codec(options.compressor, options.block_size, options.level)
    except SquashfsError as exc:
        raise UsageError(str(exc)) from None
    start = time.monotonic()
    # an earlier image at OUT inside SRC is not packed into the new one (as mksquashfs leaves its output out)
    tree = Tree.from_entries(walk_directory(args.src, xattrs=options.xattrs, exclude=file_ids(args.out)))
    with Progress(f"writing {os.path.basename(args.out)}") as bar:
        result = write_image(tree, args.out, options, progress=bar.update)
    elapsed = time.monotonic() - start
    info = dataclasses.asdict(result) | {"image": args.out, "seconds": round(elapsed, 3),
                                          "compressor": options.compressor, "block_size": options.block_size}
    if args.json:
        print_json(info)
    else:
        print(f"{args.out}: {human_bytes(result.image_size)} ({result.files} files, {result.directories} directories, "
              f"{result.symlinks} symlinks, {result.devices} devices; {result.duplicates} duplicates, "
              f"{result.fragments} fragment blocks) in {elapsed:.1f}s")
        for skipped in result.skipped_xattrs[:10]:
            print(f"warning: xattr not representable in squashfs: {skipped}")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    with SquashfsImage(args.image) as img:
        if args.json:
            out = []
            for path, inode in img.walk():
                item: dict[str, Any] = {"path": "/" + path, "mode": f"{inode.mode:o}", "uid": inode.uid,
                                        "gid": inode.gid, "mtime": inode.mtime, "size": inode.size,
                                        "inode": inode.number, "nlink": inode.nlink}
                if inode.is_symlink:
                    item["target"] = inode.target
                out.append(item)
            print_json(out)
        else:
            for path, inode in img.walk():
                print(long_line(path, inode) if args.long else "/" + path)
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    with SquashfsImage(args.image) as img, Progress(f"extracting {os.path.basename(args.image)}") as bar:
        result = extract(img, args.dest, progress=bar.update)
    if args.json:
        print_json(dataclasses.asdict(result))
    else:
        print(f"{args.dest}: {result.files} files ({human_bytes(result.bytes)}), {result.directories} directories, "
              f"{result.symlinks} symlinks, {result.hardlinks} hard links, {result.specials} special files")
        for warning in result.warnings:
            print(f"warning: {warning}")
    return 0


_FLAG_NAMES = {
    fmt.FLAG_UNCOMPRESSED_INODES: "uncompressed-inodes",
    fmt.FLAG_UNCOMPRESSED_DATA: "uncompressed-data",
    fmt.FLAG_CHECK: "check",
    fmt.FLAG_UNCOMPRESSED_FRAGMENTS: "uncompressed-fragments",
    fmt.FLAG_NO_FRAGMENTS: "no-fragments",
    fmt.FLAG_ALWAYS_FRAGMENTS: "always-fragments",
    fmt.FLAG_DUPLICATES: "duplicates-removed",
    fmt.FLAG_EXPORTABLE: "exportable",
    fmt.FLAG_UNCOMPRESSED_XATTRS: "uncompressed-xattrs",
    fmt.FLAG_NO_XATTRS: "no-xattrs",
    fmt.FLAG_COMPRESSOR_OPTIONS: "compressor-options",
    fmt.FLAG_UNCOMPRESSED_IDS: "uncompressed-ids",
}


def image_info(img: SquashfsImage, with_layout: bool = False) -> dict[str, Any]:
    sb = img.superblock
    counts = {"files": 0, "directories": 0, "symlinks": 0, "devices": 0, "fifos": 0, "sockets": 0, "hardlinks": 0}
    seen: set[int] = set()
    data_bytes = 0
    xattr_entries = 0
    for _, inode in img.walk():
        if inode.number in seen:
            counts["hardlinks"] += 1
            continue
        seen.add(inode.number)
        t = inode.basic_type
        key = {fmt.T_FILE: "files", fmt.T_DIR: "directories", fmt.T_SYMLINK: "symlinks", fmt.T_CHRDEV: "devices",
               fmt.T_BLKDEV: "devices", fmt.T_FIFO: "fifos", fmt.T_SOCKET: "sockets"}[t]
        counts[key] += 1
        if inode.is_file:
            data_bytes += inode.size
        if inode.xattr != fmt.INVALID_XATTR:
            xattr_entries += 1
    info: dict[str, Any] = {
        "image": img.name,
        "bytes_used": sb.bytes_used,
        "file_size": img.file_size,
        "compressor": sb.compressor_name,
        "compression_level": img.codec.level,
        **({"lz4_hc": img.codec.lz4_hc} if img.codec.name == "lz4" else {}),
        **({"lzo_algorithm": img.codec.lzo_algorithm} if img.codec.name == "lzo" else {}),
        "block_size": sb.block_size,
        "mkfs_time": sb.mkfs_time,
        "flags": [name for bit, name in _FLAG_NAMES.items() if sb.flags & bit],
        "inode_count": sb.inode_count,
        "fragment_count": sb.fragment_count,
        "id_count": sb.id_count,
        "inodes_with_xattrs": xattr_entries,
        "uncompressed_file_bytes": data_bytes,
        "counts": counts,
        "tables": {
            "inode_table": sb.inode_table,
            "directory_table": sb.directory_table,
            "fragment_table": sb.fragment_table,
            "export_table": None if sb.export_table == fmt.NO_TABLE else sb.export_table,
            "id_table": sb.id_table,
            "xattr_id_table": None if sb.xattr_id_table == fmt.NO_TABLE else sb.xattr_id_table,
        },
    }
    if with_layout:
        info["layout"] = dataclasses.asdict(img.layout())
    return info


def cmd_info(args: argparse.Namespace) -> int:
    with SquashfsImage(args.image) as img:
        info = image_info(img, args.layout)
    if args.json:
        print_json(info)
        return 0
    c = info["counts"]
    print_table([
        ("image", info["image"]),
        ("size", f"{info['bytes_used']} bytes used ({human_bytes(info['bytes_used'])}), file {info['file_size']} bytes"),
        ("compressor", describe(info["compressor"], info["compression_level"], info.get("lz4_hc", False),
                                info.get("lzo_algorithm", LZO1X_999))),
        ("block size", info["block_size"]),
        ("created", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(info["mkfs_time"]))),
        ("flags", ", ".join(info["flags"]) or "-"),
        ("inodes", info["inode_count"]),
        ("entries", ", ".join(f"{v} {k}" for k, v in c.items())),
        ("file data", f"{info['uncompressed_file_bytes']} bytes uncompressed"),
        ("fragments", info["fragment_count"]),
        ("uid/gid ids", info["id_count"]),
    ] + [(name.replace("_", " "), value if value is not None else "-") for name, value in info["tables"].items()])
    if args.layout:
        lay = info["layout"]
        print()
        print(f"{'offset':>12} {'stored':>8} {'size':>8}  what")
        print(f"{0:>12} {fmt.SUPERBLOCK_SIZE:>8} {'':>8}  superblock")
        if lay["compressor_options"]:
            off, size = lay["compressor_options"]
            print(f"{off:>12} {size:>8} {'':>8}  compressor options")
        rows = []
        for f in lay["files"]:
            for n, b in enumerate(f["blocks"]):
                if b["stored_size"]:
                    rows.append((b["offset"], b["stored_size"], b["size"], f"/{f['path']} block {n}" + ("" if b["compressed"] else " (stored)")))
        for n, b in enumerate(lay["fragments"]):
            rows.append((b["offset"], b["stored_size"], "", f"fragment block {n}" + ("" if b["compressed"] else " (stored)")))
        for t in lay["tables"]:
            for n, b in enumerate(t["metadata_blocks"]):
                rows.append((b["offset"], b["stored_size"] + 2, b["size"], f"{t['name']} metadata block {n}"))
            if t["index"] is not None:
                rows.append((t["index"], t["end"] - t["index"], "", f"{t['name']} index"))
        for off, stored, size, what in sorted(rows, key=lambda r: r[0]):
            print(f"{off:>12} {stored:>8} {size!s:>8}  {what}")
        print()
        for f in lay["files"]:
            frag = f" fragment {f['fragment']}@{f['fragment_offset']}+{f['fragment_size']}" if f["fragment"] is not None else ""
            print(f"/{f['path']}: {f['size']} bytes, {len(f['blocks'])} blocks{frag}")
    return 0
