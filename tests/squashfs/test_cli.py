"""The `edge squashfs` commands as a user runs them: output, --json, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import require_tool, run
from tests.squashfs.helpers import make_rich_tree

EDGE = [sys.executable, "-m", "edge"]


def edge(*args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(EDGE + list(args), capture_output=True, text=True, env=env)


@pytest.fixture()
def tree(tmp_path):
    src = tmp_path / "src"
    make_rich_tree(str(src))
    return src


def test_create_ls_info_extract(tmp_path, tree):
    image = tmp_path / "a.sqfs"
    r = edge("squashfs", "create", str(tree), str(image), "--comp", "xz", "--block-size", "64K", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["compressor"] == "xz" and info["block_size"] == 65536 and info["image_size"] == os.path.getsize(image)
    r = edge("squashfs", "info", str(image), "--json")
    meta = json.loads(r.stdout)
    assert meta["compressor"] == "xz" and meta["block_size"] == 65536
    assert meta["counts"]["hardlinks"] == 2 and meta["counts"]["symlinks"] == 3
    r = edge("squashfs", "ls", str(image))
    assert "/small.txt" in r.stdout.splitlines()
    r = edge("squashfs", "info", str(image), "--layout", "--json")
    layout = json.loads(r.stdout)["layout"]
    assert {t["name"] for t in layout["tables"]} >= {"inode table", "directory table", "id table"}
    r = edge("squashfs", "extract", str(image), str(tmp_path / "x"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "x" / "small.txt").read_bytes() == b"hello squashfs\n"


def test_an_image_written_inside_its_source_tree_is_not_packed_into_the_next_one(tmp_path, tree):
    """`edge squashfs create SRC SRC/img.sqfs` run twice gives the same image both times, without
    img.sqfs in it (as mksquashfs leaves its own output out), checked with unsquashfs."""
    unsquashfs = require_tool("unsquashfs")
    image = tree / "img.sqfs"
    mtime = ["--mtime", "1600000000"]
    assert edge("squashfs", "create", str(tree), str(image), *mtime).returncode == 0
    first = image.read_bytes()
    r = edge("squashfs", "create", str(tree), str(image), *mtime)
    assert r.returncode == 0, r.stderr
    assert image.read_bytes() == first
    listing = run(unsquashfs, "-l", "-d", "", str(image)).stdout.splitlines()
    assert "/small.txt" in listing and "/img.sqfs" not in listing


def test_source_date_epoch_is_honoured(tmp_path, tree):
    env = dict(os.environ, SOURCE_DATE_EPOCH="1600000005")
    assert edge("squashfs", "create", str(tree), str(tmp_path / "a.sqfs"), env=env).returncode == 0
    assert edge("squashfs", "create", str(tree), str(tmp_path / "b.sqfs"), "--mtime", "1600000005").returncode == 0
    assert (tmp_path / "a.sqfs").read_bytes() == (tmp_path / "b.sqfs").read_bytes()
    info = json.loads(edge("squashfs", "info", str(tmp_path / "a.sqfs"), "--json").stdout)
    assert info["mkfs_time"] == 1600000005


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["squashfs", "info", "/nonexistent.sqfs"], 3, "No such file"),
        (["squashfs", "info", "/etc/hostname"], 4, "not a squashfs image"),
        (["squashfs", "create", "/nonexistent", "/tmp/x.sqfs"], 2, "not a directory"),
        (["squashfs", "create", ".", "/tmp/x.sqfs", "--block-size", "3000"], 2, "power of two"),
        (["squashfs", "create", ".", "/tmp/x.sqfs", "--comp", "zstd", "--level", "30"], 2, "out of range"),
        (["squashfs", "create", ".", "/tmp/x.sqfs", "--comp", "lz4"], 2, "invalid choice"),
        (["squashfs"], 2, "required"),
    ],
)
def test_errors_are_one_line_with_distinct_codes(args, code, message):
    r = edge(*args)
    assert r.returncode == code
    lines = r.stderr.strip().splitlines()
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert len([ln for ln in lines if "error" in ln]) == 1


def test_truncated_image_is_a_clean_error(tmp_path, tree):
    image = tmp_path / "a.sqfs"
    assert edge("squashfs", "create", str(tree), str(image)).returncode == 0
    data = image.read_bytes()
    bad = tmp_path / "bad.sqfs"
    bad.write_bytes(data[: len(data) // 2])
    r = edge("squashfs", "ls", str(bad))
    assert r.returncode == 4 and "truncated" in r.stderr and "Traceback" not in r.stderr


def test_help_everywhere():
    for args in (["--help"], ["squashfs", "--help"], ["squashfs", "create", "--help"], ["squashfs", "info", "--help"]):
        r = edge(*args)
        assert r.returncode == 0 and "usage:" in r.stdout
