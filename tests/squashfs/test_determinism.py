"""Same tree in, same bytes out: whatever order entries arrive in and however many threads compress."""

from __future__ import annotations

import hashlib
import random

from edge.squashfs import Tree, WriterOptions, walk_directory, write_image
from tests.squashfs.helpers import make_rich_tree


def sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_entry_order_and_threads_do_not_change_the_image(tmp_path):
    src = str(tmp_path / "src")
    make_rich_tree(src, big=True)
    entries = list(walk_directory(src))
    digests = set()
    for seed, workers in ((0, 1), (1, 2), (2, 4), (3, 2)):
        shuffled = entries[:1] + random.Random(seed).sample(entries[1:], len(entries) - 1)
        out = tmp_path / f"img{seed}.sqfs"
        write_image(Tree.from_entries(shuffled), out, WriterOptions(workers=workers))
        digests.add(sha(out))
    assert len(digests) == 1


def test_hard_link_roles_do_not_change_the_image(tmp_path):
    """Which name a source reports as the file and which as the link must not matter."""
    from edge.squashfs import BytesContent, Entry, Kind

    a = [Entry("x", Kind.FILE, content=BytesContent(b"data")), Entry("y", Kind.HARDLINK, target="x")]
    b = [Entry("y", Kind.FILE, content=BytesContent(b"data")), Entry("x", Kind.HARDLINK, target="y")]
    write_image(Tree.from_entries(a), tmp_path / "a.sqfs")
    write_image(Tree.from_entries(b), tmp_path / "b.sqfs")
    assert sha(tmp_path / "a.sqfs") == sha(tmp_path / "b.sqfs")


def test_mtime_clamp(tmp_path):
    src = str(tmp_path / "src")
    make_rich_tree(src)
    out = tmp_path / "c.sqfs"
    write_image(Tree.from_entries(walk_directory(src)), out, WriterOptions(mtime=1_600_000_100))
    from edge.squashfs import SquashfsImage

    with SquashfsImage(out) as img:
        assert img.superblock.mkfs_time == 1_600_000_100
        times = {i.mtime for _, i in img.walk()}
    assert max(times) == 1_600_000_100  # newer ones clamped
    assert min(times) == 1_600_000_000  # older ones kept
