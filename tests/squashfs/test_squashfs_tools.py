"""Cross-checks against squashfs-tools from Debian: our images read by unsquashfs, mksquashfs images read by us."""

from __future__ import annotations

import hashlib
import os

import pytest

from edge.squashfs import SquashfsImage, Tree, WriterOptions, walk_directory, write_image
from edge.squashfs.extract import extract, long_line
from edge.treediff import differences, snapshot
from tests.conftest import require_tool, run
from tests.squashfs.helpers import make_rich_tree

ENV_UTC = dict(os.environ, TZ="UTC")


def unsquashfs_listing(image) -> list[str]:
    out = run(require_tool("unsquashfs"), "-lln", str(image), env=ENV_UTC).stdout
    lines = []
    for line in out.splitlines():
        # "... squashfs-root/path" -> "... /path"; the root alone -> "/"
        head, sep, rest = line.partition(" squashfs-root")
        lines.append(head + " /" + rest.lstrip("/") if sep else line)
    return lines


def our_listing(image) -> list[str]:
    os.environ["TZ"] = "UTC"
    import time

    time.tzset()
    with SquashfsImage(image) as img:
        return [long_line(p, i) for p, i in img.walk()]


@pytest.fixture(scope="module")
def rich_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("rich") / "src"
    make_rich_tree(str(root), big=True)
    return str(root)


@pytest.mark.parametrize(
    "opts",
    [
        dict(compressor="zstd", level=15),
        dict(compressor="zstd", level=3, fragments=False),
        dict(compressor="xz"),
        dict(compressor="gzip", block_size=4096),
        dict(compressor="zstd", level=1, block_size=1 << 20, always_fragments=True),
        dict(compressor="gzip", level=1, compress_metadata=False, exportable=False, dedup=False),
    ],
    ids=["zstd15", "zstd3-nofrag", "xz", "gzip-4k", "zstd1-1M-tails", "gzip-plain-meta"],
)
def test_our_images_match_unsquashfs(tmp_path, rich_tree, opts):
    image = tmp_path / "ours.sqfs"
    write_image(Tree.from_entries(walk_directory(rich_tree)), image, WriterOptions(**opts))
    # listing: unsquashfs -lln equals ours line for line
    assert unsquashfs_listing(image) == our_listing(image)
    # extraction by unsquashfs equals the source tree: content, modes, owners, mtimes, xattrs, links, devices
    dest = tmp_path / "x"
    run(require_tool("unsquashfs"), "-q", "-n", "-d", str(dest), str(image))
    assert differences(snapshot(rich_tree), snapshot(str(dest))) == []


def mksquashfs(src: str, image, *args: str) -> None:
    run(require_tool("mksquashfs"), src, str(image), "-noappend", "-quiet", "-no-progress", *args)


@pytest.mark.parametrize(
    "args",
    [
        ("-comp", "zstd"),
        ("-comp", "zstd", "-Xcompression-level", "19", "-no-fragments"),
        ("-comp", "xz"),
        ("-comp", "xz", "-Xdict-size", "50%", "-b", "256K"),
        ("-comp", "gzip"),
        ("-comp", "gzip", "-Xcompression-level", "3", "-always-use-fragments", "-b", "16K"),
        ("-comp", "zstd", "-no-exports", "-no-xattrs", "-noI", "-noD", "-noF"),
        ("-comp", "lz4"),
        ("-comp", "lz4", "-Xhc", "-b", "1M"),
        ("-comp", "lzo"),
        ("-comp", "lzo", "-Xalgorithm", "lzo1x_1_15", "-always-use-fragments", "-b", "4K"),
    ],
    ids=["zstd", "zstd19-nofrag", "xz", "xz-dict-256k", "gzip", "gzip3-tails-16k", "zstd-uncompressed",
         "lz4", "lz4hc-1m", "lzo", "lzo1x_1_15-tails-4k"],
)
def test_we_read_mksquashfs_images(tmp_path, rich_tree, args):
    image = tmp_path / "theirs.sqfs"
    mksquashfs(rich_tree, image, *args)
    assert our_listing(image) == unsquashfs_listing(image)
    ref = tmp_path / "ref"
    run(require_tool("unsquashfs"), "-q", "-n", "-d", str(ref), str(image))
    ours = tmp_path / "ours"
    with SquashfsImage(image) as img:
        extract(img, ours)
    assert differences(snapshot(str(ref)), snapshot(str(ours))) == []


def test_layout_accounts_for_every_byte_of_a_mksquashfs_image(tmp_path, rich_tree):
    """The physical layout covers the image exactly once: no gaps, no overlaps."""
    image = tmp_path / "theirs.sqfs"
    mksquashfs(rich_tree, image, "-comp", "zstd")
    check_layout_tiles_image(image)


def test_layout_accounts_for_every_byte_of_our_image(tmp_path, rich_tree):
    image = tmp_path / "ours.sqfs"
    write_image(Tree.from_entries(walk_directory(rich_tree)), image)
    check_layout_tiles_image(image)


def check_layout_tiles_image(image) -> None:
    with SquashfsImage(image) as img:
        lay = img.layout()
        spans = [lay.superblock]
        if lay.compressor_options:
            spans.append(lay.compressor_options)
        seen = set()
        for f in lay.files:
            for b in f.blocks:
                if b.stored_size and b.offset not in seen:  # duplicates share blocks
                    spans.append((b.offset, b.stored_size))
                    seen.add(b.offset)
        spans += [(b.offset, b.stored_size) for b in lay.fragments]
        for t in lay.tables:
            spans += [(b.offset, b.stored_size + 2) for b in t.metadata_blocks]
            if t.index is not None:
                spans.append((t.index, t.end - t.index))
        spans.sort()
        pos = 0
        for off, size in spans:
            assert off == pos, f"gap or overlap at {pos} (next span starts at {off})"
            pos = off + size
        assert pos == lay.size == img.superblock.bytes_used
        # and every data block's bytes decompress to the file's content
        for f in lay.files[:50]:
            inode = img.lookup(f.path)
            content = img.read_file(inode)
            assert hashlib.sha256(content).digest() == hashlib.sha256(b"".join(img.iter_file(inode))).digest()


def test_unsquashfs_accepts_large_directories_and_index(tmp_path):
    """A directory listing spanning several metadata blocks gets an index; unsquashfs and the kernel agree."""
    src = tmp_path / "src"
    (src / "big").mkdir(parents=True)
    for i in range(3000):
        (src / "big" / f"entry-with-a-longish-name-{i:05d}").write_bytes(b"")
    image = tmp_path / "big.sqfs"
    write_image(Tree.from_entries(walk_directory(src)), image)
    with SquashfsImage(image) as img:
        big = img.lookup("big")
        assert big.index_count > 0
        assert len(img.listdir(big)) == 3000
    assert unsquashfs_listing(image) == our_listing(image)
