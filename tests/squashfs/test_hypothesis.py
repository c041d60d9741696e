"""Property tests: random trees round-trip; mutated or truncated images only ever raise SquashfsError."""

from __future__ import annotations

import hashlib
import io
import stat
import tracemalloc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.squashfs import BytesContent, Entry, Kind, SquashfsError, SquashfsImage, Tree, WriterOptions, write_image

NAMES = st.text(alphabet="abcdeé_.-0", min_size=1, max_size=6).filter(lambda n: n not in (".", ".."))
XATTR_NAMES = st.sampled_from(["user.a", "user.bb", "trusted.t", "security.capability", "security.selinux"])


@st.composite
def trees(draw):
    entries: list[Entry] = []
    dirs = [""]
    files: list[str] = []
    used: set[str] = {""}
    blob = draw(st.binary(min_size=0, max_size=2000))
    for _ in range(draw(st.integers(1, 25))):
        parent = draw(st.sampled_from(dirs))
        name = draw(NAMES)
        path = f"{parent}/{name}" if parent else name
        if path in used:
            continue
        used.add(path)
        kind = draw(st.sampled_from(list(Kind)))
        meta = dict(
            mode=draw(st.integers(0, 0o7777)),
            uid=draw(st.sampled_from([0, 1, 1000, 65534, 2**31])),
            gid=draw(st.sampled_from([0, 5, 1000])),
            mtime=draw(st.integers(0, 2**32 - 1)),
            xattrs=tuple(sorted(draw(st.dictionaries(XATTR_NAMES, st.binary(max_size=40), max_size=3)).items())),
        )
        if kind is Kind.DIR:
            entries.append(Entry(path, kind, **meta))
            dirs.append(path)
        elif kind is Kind.FILE:
            size = draw(st.sampled_from([0, 1, 100, 4095, 4096, 4097, 9000, 20000]))
            pattern = draw(st.sampled_from(["zeros", "blob", "counter"]))
            if pattern == "zeros":
                data = bytes(size)
            elif pattern == "blob":
                data = (blob or b"x") * (size // max(len(blob), 1) + 1)
                data = data[:size]
            else:
                data = b"".join(i.to_bytes(4, "little") for i in range(size // 4 + 1))[:size]
            entries.append(Entry(path, kind, content=BytesContent(data), **meta))
            files.append(path)
        elif kind is Kind.HARDLINK:
            if not files:
                continue
            entries.append(Entry(path, kind, target=draw(st.sampled_from(files))))
        elif kind is Kind.SYMLINK:
            entries.append(Entry(path, kind, target=draw(st.text(min_size=1, max_size=300).filter(lambda t: "\0" not in t)), **meta))
        elif kind in (Kind.CHAR, Kind.BLOCK):
            entries.append(Entry(path, kind, major=draw(st.integers(0, 4095)), minor=draw(st.integers(0, 2**20 - 1)), **meta))
        else:
            entries.append(Entry(path, kind, **meta))
    return entries


OPTIONS = st.builds(
    WriterOptions,
    compressor=st.sampled_from(["zstd", "xz", "gzip"]),
    level=st.just(None),
    block_size=st.sampled_from([4096, 8192, 131072]),
    fragments=st.booleans(),
    always_fragments=st.booleans(),
    dedup=st.booleans(),
    workers=st.sampled_from([1, 2]),
    compress_metadata=st.booleans(),
)


def expected(tree: Tree) -> dict[str, tuple]:
    out = {}
    for path, node in tree.walk():
        target = node
        while target.entry.kind is Kind.HARDLINK:
            target = tree.get(target.entry.target)
        t = target.entry
        content = hashlib.sha256(t.content.data).hexdigest() if t.kind is Kind.FILE else ""
        out[path] = (t.kind.value, t.mode, t.uid, t.gid, t.mtime, content,
                     t.target if t.kind is Kind.SYMLINK else "", (t.major, t.minor), tuple(sorted(t.xattrs)), id(target))
    return out


def actual(img: SquashfsImage, ids: dict[str, int]) -> dict[str, tuple]:
    kinds = {stat.S_IFDIR: "dir", stat.S_IFREG: "file", stat.S_IFLNK: "symlink", stat.S_IFCHR: "char",
             stat.S_IFBLK: "block", stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket"}
    by_inode: dict[int, int] = {}
    out = {}
    for path, i in img.walk():
        content = hashlib.sha256(img.read_file(i)).hexdigest() if i.is_file else ""
        dev = i.major_minor if kinds[stat.S_IFMT(i.mode)] in ("char", "block") else (0, 0)
        out[path] = (kinds[stat.S_IFMT(i.mode)], stat.S_IMODE(i.mode), i.uid, i.gid, i.mtime, content,
                     i.target, dev, tuple(sorted(img.xattrs(i))), by_inode.setdefault(i.number, ids[path]))
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=trees(), options=OPTIONS)
def test_random_trees_round_trip(entries, options):
    tree = Tree.from_entries(entries)
    want = expected(tree)
    buf = io.BytesIO()
    write_image(tree, buf, options)
    buf.seek(0)
    with SquashfsImage(buf, name="random") as img:
        got = actual(img, {p: v[-1] for p, v in want.items()})
    assert got == want


# ------------------------------------------------------------------ hostile images
def _sample_image() -> bytes:
    entries = [
        Entry("", Kind.DIR, mode=0o755),
        Entry("a", Kind.FILE, content=BytesContent(b"hello" * 3000), xattrs=(("user.x", b"1"),)),
        Entry("b/c", Kind.FILE, content=BytesContent(bytes(range(256)) * 40)),
        Entry("b/d", Kind.SYMLINK, target="../a"),
        Entry("b/e", Kind.HARDLINK, target="a"),
        Entry("f", Kind.CHAR, major=1, minor=3),
        Entry("small", Kind.FILE, content=BytesContent(b"tail")),
    ] + [Entry(f"many/n{i}", Kind.FILE, content=BytesContent(b"x" * i)) for i in range(60)]
    out = {}
    for comp in ("zstd", "xz", "gzip"):
        buf = io.BytesIO()
        write_image(Tree.from_entries(entries), buf, WriterOptions(compressor=comp, block_size=4096))
        out[comp] = buf.getvalue()
    buf = io.BytesIO()
    write_image(Tree.from_entries(entries), buf, WriterOptions(block_size=4096, compress_metadata=False))
    out["plain"] = buf.getvalue()  # uncompressed metadata: mutations reach the parsers directly
    return out


SAMPLES = _sample_image()


def exercise(data: bytes) -> None:
    """Everything a user can do with an image; only SquashfsError may escape."""
    try:
        with SquashfsImage(io.BytesIO(data), name="mutant") as img:
            for _, inode in img.walk():
                img.xattrs(inode)
                if inode.is_file:
                    for _ in img.iter_file(inode):
                        pass
            img.layout()
    except SquashfsError:
        pass


@settings(max_examples=1000, deadline=2000)
@given(comp=st.sampled_from(["zstd", "xz", "gzip", "plain"]), data=st.data())
def test_bit_flips_only_raise_squashfs_error(comp, data):
    flip_bits_and_exercise(SAMPLES[comp], data)


def flip_bits_and_exercise(image: bytes, data: st.DataObject) -> None:
    """Flip 1-8 random bits of the image's used bytes; only SquashfsError may escape, within 64 MiB."""
    image = bytearray(image)
    used = int.from_bytes(image[40:48], "little")
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, used - 1))
        image[pos] ^= 1 << data.draw(st.integers(0, 7))
    tracemalloc.start()
    try:
        exercise(bytes(image))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20


@settings(max_examples=200, deadline=2000)
@given(comp=st.sampled_from(["zstd", "xz", "gzip"]), data=st.data())
def test_truncation_only_raises_squashfs_error(comp, data):
    image = SAMPLES[comp]
    used = int.from_bytes(image[40:48], "little")
    exercise(image[: data.draw(st.integers(0, used - 1))])


@settings(max_examples=1500, deadline=2000)
@given(comp=st.sampled_from(["zstd", "plain"]), data=st.data())
def test_random_word_overwrites_in_tables_only_raise_squashfs_error(comp, data):
    """Overwrite aligned 4/8-byte words in the metadata area with extreme values."""
    image = bytearray(SAMPLES[comp])
    inode_table = int.from_bytes(image[64:72], "little")
    used = int.from_bytes(image[40:48], "little")
    for _ in range(data.draw(st.integers(1, 4))):
        width = data.draw(st.sampled_from([2, 4, 8]))
        pos = data.draw(st.integers(min(inode_table, used - width), used - width))
        value = data.draw(st.sampled_from([0, 1, 2**(8 * width) - 1, 2**(8 * width - 1), 0x8000, 8192, 8193]))
        image[pos : pos + width] = value.to_bytes(width, "little")
    exercise(bytes(image))
