"""Build image pairs for delta tests: a base tree and an edited copy."""

from __future__ import annotations

import io
import os
import random
import struct
from dataclasses import replace

from edge.delta import format as dfmt
from edge.squashfs import BytesContent, Entry, Kind, Tree, WriterOptions, write_image
from tests.conftest import require_tool, run
from tests.squashfs.helpers import CAP_NET_RAW

CAP_NET_ADMIN = bytes.fromhex("0100000200100000000000000000000000000000")


def text_blob(rnd: random.Random, size: int) -> bytes:
    words = [b"alpha", b"beta", b"gamma", b"delta", b"epsilon", b"zeta", b"eta", b"theta", b"iota", b"kappa"]
    out = bytearray()
    while len(out) < size:
        out += rnd.choice(words) + rnd.choice([b" ", b"\n", b", "])
    return bytes(out[:size])


def base_entries(seed: int, files: int = 60, big: int = 0) -> list[Entry]:
    rnd = random.Random(seed)
    entries = [Entry("", Kind.DIR, mode=0o755, mtime=1000)]
    for i in range(files):
        size = rnd.choice([0, 10, 500, 3000, 40_000, 200_000, 300_000])
        kind = rnd.random()
        data = text_blob(rnd, size) if kind < 0.6 else rnd.randbytes(size) if kind < 0.8 else bytes(size)
        entries.append(Entry(f"d{i % 7}/f{i}.bin", Kind.FILE, mode=0o644, mtime=1000 + i, content=BytesContent(data)))
    for i in range(big):
        entries.append(Entry(f"big/b{i}", Kind.FILE, content=BytesContent(text_blob(rnd, 3_000_000) + rnd.randbytes(500_000))))
    entries.append(Entry("lib/libfoo.so.1.2.3", Kind.FILE, content=BytesContent(text_blob(rnd, 150_000))))
    entries.append(Entry("lib/libfoo.so.1", Kind.SYMLINK, target="libfoo.so.1.2.3"))
    entries.append(Entry("dev/null", Kind.CHAR, mode=0o666, major=1, minor=3))
    entries.append(Entry("usr/bin/ping", Kind.FILE, mode=0o755, content=BytesContent(b"\x7fELF" + text_blob(rnd, 5000)),
                         xattrs=(("security.capability", CAP_NET_RAW),)))
    return entries


def edit(entries: list[Entry], seed: int, changes: int = 8) -> list[Entry]:
    """A new version: changed, added, removed, renamed files, permission and xattr changes, a version bump."""
    rnd = random.Random(seed + 10_000)
    out = list(entries)
    files = [i for i, e in enumerate(out) if e.kind is Kind.FILE and e.size > 0]
    for _ in range(changes):
        i = rnd.choice(files)
        e = out[i]
        data = bytearray(e.content.data)  # type: ignore[union-attr]
        what = rnd.random()
        if not data:  # an earlier change truncated this file to nothing: give it content again
            data = bytearray(text_blob(rnd, rnd.randint(1, 5000)))
        elif what < 0.4:  # patch some bytes in place
            for _ in range(rnd.randint(1, 20)):
                p = rnd.randrange(len(data))
                data[p : p + 8] = rnd.randbytes(8)
        elif what < 0.7:  # insert in the middle
            p = rnd.randrange(len(data))
            data[p:p] = text_blob(rnd, rnd.randint(1, 5000))
        else:  # truncate or extend
            data = data[: rnd.randrange(len(data))] if rnd.random() < 0.5 else data + text_blob(rnd, 3000)
        out[i] = replace(e, content=BytesContent(bytes(data)))
    # remove one, add two, rename one, chmod one, change an xattr
    victim = rnd.choice(files)
    renamed_from = rnd.choice([i for i in files if i != victim])
    out.append(Entry("new/added.txt", Kind.FILE, content=BytesContent(text_blob(rnd, 70_000))))
    out.append(Entry("new/random.bin", Kind.FILE, content=BytesContent(rnd.randbytes(20_000))))
    e = out[renamed_from]
    out[renamed_from] = replace(e, path=e.path.replace("/f", "/renamed-f"))
    out[victim] = Entry(out[victim].path, Kind.DIR)  # the file became a directory: its content is gone
    chmod = rnd.choice(files)
    out[chmod] = replace(out[chmod], mode=0o600)
    for i, e in enumerate(out):
        if e.path == "usr/bin/ping":
            out[i] = replace(e, xattrs=(("security.capability", CAP_NET_ADMIN),))
        if e.path == "lib/libfoo.so.1.2.3" and e.kind is Kind.FILE:
            out[i] = replace(e, path="lib/libfoo.so.1.2.4", content=BytesContent(e.content.data + b"v4"))  # type: ignore[union-attr]
        if e.path == "lib/libfoo.so.1":
            out[i] = replace(e, target="libfoo.so.1.2.4")
    return out


def write(entries: list[Entry], path: str, **opts) -> str:
    write_image(Tree.from_entries(entries), path, WriterOptions(**opts))
    return path


def write_dir(entries: list[Entry], root: str) -> str:
    """Materialise entries on disk (for mksquashfs)."""
    os.makedirs(root)
    for e in Tree.from_entries(entries).walk():
        path, node = e
        full = os.path.join(root, path)
        en = node.entry
        if path == "":
            continue
        if en.kind is Kind.DIR:
            os.makedirs(full, exist_ok=True)
        elif en.kind is Kind.FILE:
            with open(full, "wb") as fh:
                fh.write(en.content.data)  # type: ignore[union-attr]
        elif en.kind is Kind.SYMLINK:
            os.symlink(en.target, full)
        elif en.kind is Kind.CHAR:
            os.mknod(full, 0o666 | 0o020000, os.makedev(en.major, en.minor))
        if en.kind is not Kind.SYMLINK:
            os.chmod(full, en.mode)
            os.utime(full, (en.mtime, en.mtime))
        for name, value in en.xattrs:
            os.setxattr(full, name, value, follow_symlinks=False)
    return root


def code_blob(seed: int, count: int, shift: int = 0, insert_at: int | None = None) -> bytes:
    """Machine-code-like bytes: 6-byte instructions with absolute 32-bit addresses.

    ``shift`` moves the addresses above a threshold (a quarter of them), as relinking after a change does, and
    ``insert_at`` inserts 37 bytes of new code before that instruction.
    """
    rnd = random.Random(seed)
    out = bytearray()
    for i in range(count):
        if i == insert_at:
            out += random.Random(-seed).randbytes(37)  # its own generator: the code after it stays the same
        opcode = rnd.choice([0xE8, 0xE9, 0x48, 0x8B, 0x89, 0xFF, 0x0F])
        addr = 0x401000 + rnd.randrange(0, 0x80000) * 4
        out += bytes([opcode]) + struct.pack("<I", addr + (shift if addr >= 0x580000 else 0)) + bytes([rnd.choice([0x90, 0xC3, 0x5D])])
    return bytes(out)


def mksquashfs_pair(tmp: str, old: list[Entry], new: list[Entry], *options: str) -> tuple[str, str]:
    """old.sqfs and new.sqfs in ``tmp``, written by the real mksquashfs from the two trees with ``options``."""
    mk = require_tool("mksquashfs")
    images = []
    for name, entries in (("old", old), ("new", new)):
        image = os.path.join(tmp, f"{name}.sqfs")
        run(mk, write_dir(entries, os.path.join(tmp, name)), image, *options, "-noappend", "-quiet", "-no-progress")
        images.append(image)
    return images[0], images[1]


def op_spans(raw: bytes) -> list[tuple[int, int]]:
    """(first byte, end) of every op of a delta, in order: where a cut or a flip lands."""
    reader = dfmt.DeltaReader(io.BytesIO(raw), "d")
    reader.preamble()
    spans = []
    while True:
        start = reader.pos
        if reader.op() is None:
            return spans
        spans.append((start, reader.pos))
