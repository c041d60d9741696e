"""Numbers on the command line: a value out of range is a usage error (exit 2, one line naming the
option), never an "internal error" from deep inside (``--processors -1`` reached ThreadPoolExecutor,
``--level 100`` zstd, ``--slot-size`` with 23 digits ``ftruncate``: each ended in exit 70)."""

from __future__ import annotations

import os

import pytest

from tests.conftest import run_edge


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("numbers")
    for name, text in (("old", "one\n"), ("new", "two\n" * 500)):
        (d / name / "etc").mkdir(parents=True)
        (d / name / "etc" / "f").write_text(text)
        run_edge("squashfs", "create", str(d / name), str(d / f"{name}.sqfs"), "--mtime", "1700000000")
    run_edge("delta", "make", str(d / "old.sqfs"), str(d / "new.sqfs"), "-o", str(d / "p.delta"))
    (d / "recipe.yaml").write_text("name: x\nversion: '1'\nsource: old\n")
    return d


def _usage_error(result, option: str) -> None:
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"argument {option}:" in errors[0], result.stderr


@pytest.mark.parametrize("value", ["-1", "1025", "99999999999999999999999", "two"])
@pytest.mark.parametrize("command", ["squashfs create", "build", "delta make", "delta apply"])
def test_processors_out_of_range(images, tmp_path, command, value):
    d = images
    args = {"squashfs create": ["squashfs", "create", str(d / "new"), str(tmp_path / "o.sqfs")],
            "build": ["build", str(d / "recipe.yaml"), "-o", str(tmp_path / "out")],
            "delta make": ["delta", "make", str(d / "old.sqfs"), str(d / "new.sqfs"), "-o", str(tmp_path / "p")],
            "delta apply": ["delta", "apply", str(d / "old.sqfs"), str(d / "p.delta"), "-o", str(tmp_path / "t")]}
    _usage_error(run_edge(*args[command], "--processors", value, check=False), "--processors")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("value", ["0", "23", "-5", "99999999999999999999999"])
def test_delta_level_out_of_range(images, tmp_path, value):
    d = images
    result = run_edge("delta", "make", str(d / "old.sqfs"), str(d / "new.sqfs"), "-o", str(tmp_path / "p"),
                      "--level", value, check=False)
    _usage_error(result, "--level")
    assert os.listdir(tmp_path) == []


def test_delta_level_in_range_is_used(images, tmp_path):
    d = images
    for level in ("1", "22"):
        out = tmp_path / f"p{level}"
        assert run_edge("delta", "make", str(d / "old.sqfs"), str(d / "new.sqfs"), "-o", str(out), "--level", level,
                        check=False).returncode == 0
        assert run_edge("delta", "apply", str(d / "old.sqfs"), str(out), "-o", str(tmp_path / f"t{level}"),
                        check=False).returncode == 0
        assert (tmp_path / f"t{level}").read_bytes() == (d / "new.sqfs").read_bytes()


@pytest.mark.parametrize("value, code, needle", [("abc", 11, "--slot-size 'abc' is not a size"),
                                                 ("99999999999999999999999", 11, "larger than any file can be"),
                                                 ("1K", 11, "is smaller than the image")])
def test_sim_slot_size_refused(images, tmp_path, value, code, needle):
    result = run_edge("sim", "create", "--board", "x86-64-efi", "--image", str(images / "old.sqfs"),
                      "--slot-size", value, str(tmp_path / "b"), check=False)
    assert result.returncode == code and len(result.stderr.splitlines()) == 1, result.stderr
    assert needle in result.stderr
    assert not (tmp_path / "b").exists()


def test_sim_slot_size_in_gibibytes(images, tmp_path):
    """--slot-size 1G was "block size '1G' is not a size", exit 4 (a squashfs error)."""
    result = run_edge("sim", "create", "--board", "x86-64-efi", "--image", str(images / "old.sqfs"),
                      "--slot-size", "1G", str(tmp_path / "b"), check=False)
    assert result.returncode == 0, result.stderr
    assert os.path.getsize(tmp_path / "b" / "slots" / "B.img") == 1 << 30
