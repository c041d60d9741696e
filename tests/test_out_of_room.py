"""Writing to a filesystem without room: the error names the file being written (it said only "No
space left on device"), and no temporary file is left. (An apply refused for want of room:
tests/delta/test_limits.py.)"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root, run_edge


@contextlib.contextmanager
def _small_tmpfs(where: Path, size: str = "256k") -> Iterator[Path]:
    require_root()
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("room")
    for name, size in (("old", 10), ("new", 1_500_000)):
        (d / name / "etc").mkdir(parents=True)
        (d / name / "etc" / "data").write_bytes(os.urandom(size))
        run_edge("squashfs", "create", str(d / name), str(d / f"{name}.sqfs"), "--mtime", "1700000000")
    run_edge("keys", "ca", "init", str(d / "ca"))
    run_edge("keys", "issue", "--ca", str(d / "ca"), "--name", "release", "-o", str(d / "keys"))
    return d


@pytest.mark.parametrize("command", ["squashfs create", "delta make", "bundle create"])
def test_an_output_without_room_is_named(inputs, tmp_path, command):
    d = inputs
    with _small_tmpfs(tmp_path / "small") as small:
        out = small / "out"
        args = {"squashfs create": ["squashfs", "create", str(d / "new"), str(out), "--mtime", "1700000000"],
                "delta make": ["delta", "make", str(d / "old.sqfs"), str(d / "new.sqfs"), "-o", str(out)],
                "bundle create": ["bundle", "create", str(d / "new.sqfs"), "--key", str(d / "keys" / "release.key"),
                                  "--cert", str(d / "keys" / "release.crt"), "--compatible", "edge,test",
                                  "--version", "1.0.0", "-o", str(out)]}[command]
        result = run_edge(*args, check=False)
        assert result.returncode == 3, result.stderr
        assert result.stderr.splitlines() == [f"edge: error: {out}: No space left on device"]
        assert os.listdir(small) == []  # neither the output nor its temporary file

