"""A source file that changes size between the listing and the packing is an error, not an image
whose content is neither the old file nor the new one."""

from __future__ import annotations

import os

import pytest

from edge.squashfs import Entry, Kind, SquashfsError, Tree, WriterOptions, write_image
from edge.squashfs.tree import FileContent
from tests.conftest import run_edge


def _image(tmp_path, content: FileContent):
    tree = Tree.from_entries([Entry("", Kind.DIR, mode=0o755, mtime=1), Entry("f", Kind.FILE, content=content, mtime=1)])
    return write_image(tree, str(tmp_path / "out.sqfs"), WriterOptions(mtime=1))


def test_a_file_cut_after_it_was_listed_is_an_error(tmp_path):
    """Listed at 3 MiB, 1 MiB when read: the missing part used to be read as a hole (zeros), and the
    image said 3 MiB. (Measured with a real truncate during 'edge squashfs create' of a 100 MB file:
    exit 0 and an image whose file matched neither version.)"""
    path = tmp_path / "f"
    path.write_bytes(os.urandom(1 << 20))
    with pytest.raises(SquashfsError, match=r"file changed size while being read \(3145728 bytes when listed, 1048576 now\)"):
        _image(tmp_path, FileContent(path, size=3 << 20))
    assert not (tmp_path / "out.sqfs").exists()


def test_a_file_grown_after_it_was_listed_is_an_error(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(os.urandom(300_000))
    with pytest.raises(SquashfsError, match=r"\(200000 bytes when listed, 300000 now\)"):
        _image(tmp_path, FileContent(path, size=200_000))


def test_a_hole_to_the_end_is_still_a_hole(tmp_path):
    """Data, then a hole to the end of the file: not a change of size."""
    path = tmp_path / "f"
    with open(path, "wb") as fh:
        fh.write(b"data" * 1000)
        fh.truncate(8 << 20)
    _image(tmp_path, FileContent(path))
    out = tmp_path / "x"
    run_edge("squashfs", "extract", str(tmp_path / "out.sqfs"), str(out))
    assert (out / "f").read_bytes() == path.read_bytes()
    assert os.stat(out / "f").st_blocks * 512 < 1 << 20  # extracted sparse: the hole was kept as a hole
