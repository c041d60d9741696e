"""Loop-mount our images with the Linux kernel's squashfs driver and compare with the source tree."""

from __future__ import annotations

import contextlib
import os
import subprocess

import pytest

from edge.squashfs import Tree, WriterOptions, walk_directory, write_image
from edge.treediff import differences, snapshot
from tests.conftest import require_root, run
from tests.squashfs.helpers import make_rich_tree


@contextlib.contextmanager
def mounted(image, where):
    require_root()
    os.makedirs(where, exist_ok=True)
    run("mount", "-t", "squashfs", "-o", "loop,ro", str(image), str(where))
    try:
        yield str(where)
    finally:
        subprocess.run(["umount", str(where)], check=False)


@pytest.mark.parametrize(
    "opts",
    [dict(), dict(compressor="xz", block_size=1 << 20), dict(compressor="gzip", fragments=False, block_size=4096)],
    ids=["zstd", "xz-1M", "gzip-4k-nofrag"],
)
def test_kernel_mount_equals_source(tmp_path, opts):
    src = str(tmp_path / "src")
    make_rich_tree(src, big=True)
    image = tmp_path / "img.sqfs"
    write_image(Tree.from_entries(walk_directory(src)), image, WriterOptions(**opts))
    with mounted(image, tmp_path / "mnt") as mnt:
        assert differences(snapshot(src), snapshot(mnt)) == []
        # the kernel's lookup through the directory index finds every name in a big directory
        for name in ("f0000", "f0150", "f0299"):
            assert os.path.exists(os.path.join(mnt, "many", name))
