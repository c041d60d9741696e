"""Scale: trees of 100k+ entries (one huge directory too) and files larger than 4 GiB."""

from __future__ import annotations

import os

from edge.squashfs import BytesContent, Entry, Kind, SquashfsImage, Tree, walk_directory, write_image
from edge.squashfs import format as fmt
from tests.conftest import require_tool, run
from tests.squashfs.test_kernel_mount import mounted


def test_hundred_thousand_entries(tmp_path):
    entries = [Entry(f"flat/f{i:06d}", Kind.FILE, content=BytesContent(str(i).encode())) for i in range(60_000)]
    entries += [Entry(f"nested/d{i // 500}/f{i}", Kind.FILE, content=BytesContent(b"n" * (i % 7))) for i in range(50_000)]
    image = tmp_path / "big.sqfs"
    result = write_image(Tree.from_entries(entries), image)
    assert result.inode_count == 110_000 + 1 + 1 + 1 + 100  # files, root, flat, nested, d0..d99
    with SquashfsImage(image) as img:
        flat = img.lookup("flat")
        assert flat.type == fmt.T_LDIR and flat.size > 0xFFFF and flat.index_count > 10
        assert sum(1 for _ in img.walk()) == result.inode_count
        assert img.read_file(img.lookup("flat/f059999")) == b"59999"
    listing = run(require_tool("unsquashfs"), "-lln", str(image)).stdout.splitlines()
    assert len(listing) == result.inode_count
    with mounted(image, tmp_path / "mnt") as mnt:
        names = os.listdir(os.path.join(mnt, "flat"))
        assert len(names) == 60_000
        # lookups go through the directory index: check names spread over the whole listing
        for i in (0, 1, 12_345, 30_000, 59_999):
            with open(os.path.join(mnt, "flat", f"f{i:06d}")) as fh:
                assert fh.read() == str(i)


def test_file_larger_than_4_gib(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    size = (5 << 30) + 12345
    marks = {0: b"start", (4 << 30) + 100: b"past four gib", size - 7: b"the end"}
    with open(src / "huge", "wb") as fh:
        fh.truncate(size)
        for off, data in marks.items():
            fh.seek(off)
            fh.write(data)
    image = tmp_path / "huge.sqfs"
    result = write_image(Tree.from_entries(walk_directory(src)), image)
    assert result.sparse_blocks > 40_000  # holes were never read, never stored
    assert os.path.getsize(image) < 1 << 20
    with SquashfsImage(image) as img:
        inode = img.lookup("huge")
        assert inode.type == fmt.T_LFILE and inode.size == size
    out = run(require_tool("unsquashfs"), "-lln", str(image)).stdout
    assert f" {size} " in out
    with mounted(image, tmp_path / "mnt") as mnt:
        path = os.path.join(mnt, "huge")
        assert os.path.getsize(path) == size
        with open(path, "rb") as fh:
            for off, data in marks.items():
                fh.seek(off)
                assert fh.read(len(data)) == data
            fh.seek(3 << 30)
            assert fh.read(4096) == bytes(4096)
