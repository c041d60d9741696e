"""Damaged inputs at the command line: a one-line error, a typed exit code, no traceback or warning.

The API-level tests check the exceptions; these run the real ``edge`` commands a user runs on a
damaged squashfs image, delta and bundle (byte flips, truncation, extreme values, inserted bytes) and
check what reaches the terminal.  An exit code of 70 is Edge's "internal error" (a bug).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import run_edge

EXIT_INTERNAL = 70


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("damaged-inputs")
    for name, extra in (("old", b""), ("new", b"a changed line\n" * 300)):
        tree = d / f"tree-{name}"
        (tree / "etc").mkdir(parents=True)
        (tree / "etc" / "os-release").write_bytes(b"NAME=edge\n" + extra)
        (tree / "usr" / "bin").mkdir(parents=True)
        (tree / "usr" / "bin" / "tool").write_bytes(hashlib.sha256(name.encode()).digest() * 9000 + extra)
        (tree / "usr" / "bin" / "same").write_bytes(bytes(range(256)) * 2000)
        run_edge("squashfs", "create", str(tree), str(d / f"{name}.sqfs"), "--mtime", "1700000000")
    run_edge("delta", "make", str(d / "old.sqfs"), str(d / "new.sqfs"), "-o", str(d / "p.delta"))
    run_edge("keys", "ca", "init", str(d / "ca"))
    run_edge("keys", "issue", "--ca", str(d / "ca"), "--name", "release", "-o", str(d / "keys"))
    run_edge("bundle", "create", str(d / "new.sqfs"), "--key", str(d / "keys" / "release.key"),
             "--cert", str(d / "keys" / "release.crt"), "--compatible", "edge,test", "--version", "1.0.0",
             "--delta-from", str(d / "old.sqfs"), "--chunk-size", "4K", "-o", str(d / "b.edgeb"))
    return {"dir": d, "old": d / "old.sqfs", "new": d / "new.sqfs", "delta": d / "p.delta", "bundle": d / "b.edgeb",
            "root": d / "ca" / "root.crt"}


KINDS = ("flip", "truncate", "overwrite", "insert")


@st.composite
def damage(draw: st.DrawFn, size: int, kind: str) -> tuple[str, int, bytes]:
    """(kind, offset, bytes): flip bits at an offset, cut the file there, overwrite or insert bytes."""
    offset = draw(st.integers(0, size - 1))
    if kind == "flip":
        return kind, offset, bytes([draw(st.integers(1, 255))])
    if kind == "truncate":
        return kind, offset, b""
    if kind == "overwrite":
        return kind, offset, draw(st.sampled_from([b"\xff" * 8, b"\x00" * 8, b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00"]))
    return kind, offset, draw(st.binary(min_size=1, max_size=64))


def _damaged(original: bytes, how: tuple[str, int, bytes]) -> bytes:
    kind, offset, data = how
    out = bytearray(original)
    if kind == "flip":
        out[offset] ^= data[0]
    elif kind == "truncate":
        del out[offset:]
    elif kind == "overwrite":
        out[offset : offset + len(data)] = data
    else:
        out[offset:offset] = data
    return bytes(out)


def _check_output(args: list[str]) -> int:
    result = run_edge(*args, check=False)
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr, result.stderr
    assert result.returncode != EXIT_INTERNAL, result.stderr
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("edge: error: "), result.stderr
    return result.returncode


SETTINGS = settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _damaged_copy(inputs: dict[str, Path], which: str, kind: str, data: st.DataObject) -> Path:
    """A copy of ``inputs[which]`` with one damage of ``kind`` drawn from ``data``."""
    original = inputs[which].read_bytes()
    path = inputs["dir"] / f"damaged-{os.getpid()}-{inputs[which].name}"
    path.write_bytes(_damaged(original, data.draw(damage(len(original), kind))))
    return path


@pytest.mark.parametrize("kind", KINDS)
@SETTINGS
@given(data=st.data())
def test_damaged_squashfs_image(inputs, kind, data):
    image = _damaged_copy(inputs, "new", kind, data)
    out = inputs["dir"] / f"extract-{os.getpid()}"
    for args in (["squashfs", "info", str(image)], ["squashfs", "ls", "-l", str(image)],
                 ["squashfs", "extract", str(image), str(out)]):
        _check_output(args)
    shutil.rmtree(out, ignore_errors=True)


@pytest.mark.parametrize("kind", KINDS)
@SETTINGS
@given(data=st.data())
def test_damaged_delta(inputs, kind, data):
    delta = _damaged_copy(inputs, "delta", kind, data)
    target = inputs["dir"] / f"target-{os.getpid()}.img"
    _check_output(["delta", "info", str(delta)])
    code = _check_output(["delta", "apply", str(inputs["old"]), str(delta), "-o", str(target)])
    if code == 0:  # only when the damage left the delta meaning the same thing
        assert target.read_bytes() == inputs["new"].read_bytes()
    for leftover in inputs["dir"].glob(f"target-{os.getpid()}.img*"):  # the image and any checkpoint
        leftover.unlink()


@pytest.mark.parametrize("kind", KINDS)
@SETTINGS
@given(data=st.data())
def test_damaged_bundle(inputs, kind, data):
    bundle = _damaged_copy(inputs, "bundle", kind, data)
    _check_output(["bundle", "inspect", str(bundle)])
    code = _check_output(["bundle", "verify", str(bundle), "--keyring", str(inputs["root"]), "--board", "edge,test"])
    # a bundle is signed and hashed from its first byte to its last: any damage is refused
    assert code != 0


def _compressed_blocks(image: Path) -> list[tuple[int, int]]:
    """(offset, stored size) of the image's compressed data and fragment blocks."""
    from edge.squashfs import SquashfsImage

    layout = SquashfsImage(str(image)).layout()
    blocks = [b for f in layout.files for b in f.blocks] + list(layout.fragments)
    return [(b.offset, b.stored_size) for b in blocks if b.compressed and b.stored_size]


@pytest.mark.parametrize("side", ["old", "new"])
@pytest.mark.parametrize("kind", KINDS)
@SETTINGS
@given(data=st.data())
def test_a_delta_to_or_from_a_damaged_image_reproduces_its_bytes(inputs, side, kind, data):
    """`delta make` turns bytes into bytes: with either image damaged (anywhere, or inside one of its
    compressed blocks) it still makes a delta (squashfs-aware where the damage allows, byte-level
    where the image does not open), and that delta applied to the given OLD gives exactly the given
    NEW. A block that did not decompress used to fail the whole make."""
    from edge.delta import apply_delta, make_delta

    original = inputs[side].read_bytes()
    if data.draw(st.booleans(), label="inside a compressed block"):
        offset, size = data.draw(st.sampled_from(_compressed_blocks(inputs[side])))
        how = data.draw(damage(size, kind))
        how = (how[0], offset + how[1], how[2])
    else:
        how = data.draw(damage(len(original), kind))
    damaged = inputs["dir"] / f"damaged-{os.getpid()}-{inputs[side].name}"
    damaged.write_bytes(_damaged(original, how))
    old, new = (damaged, inputs["new"]) if side == "old" else (inputs["old"], damaged)
    delta, target = inputs["dir"] / f"dd-{os.getpid()}.delta", inputs["dir"] / f"dd-{os.getpid()}.img"
    for leftover in (target, Path(f"{target}.edge-apply")):
        leftover.unlink(missing_ok=True)
    result = make_delta(str(old), str(new), str(delta))
    assert result.kind in ("squashfs", "generic")
    apply_delta(str(old), str(delta), str(target))
    assert target.read_bytes() == new.read_bytes()


@pytest.mark.parametrize("name", ["two\nlines.sqfs", "cr\rreturn.sqfs", "esc\x1b[2Jclear.sqfs", "sep\u2028ar.sqfs"])
def test_a_name_with_control_characters_stays_on_one_line(tmp_path, name):
    """An error naming a file is one line even when the name holds a newline, and a terminal escape in
    it is shown escaped, not sent to the terminal; --json keeps the name as it is."""
    missing = tmp_path / name
    result = run_edge("squashfs", "info", str(missing), "--json", check=False)
    assert result.returncode == 3
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "\x1b" not in result.stderr and "\r" not in result.stderr
    shown = name.encode("unicode_escape").decode()  # \n, \r, \x1b, \u2028: as Python writes them
    assert f"{shown}: No such file or directory" in result.stderr
    assert json.loads(result.stdout)["error"]["message"] == f"{missing}: No such file or directory"


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_one_line_leaves_no_line_break_and_no_control_character(text):
    import unicodedata

    from edge.cli import one_line

    shown = one_line(text)
    assert len(shown.splitlines()) <= 1
    assert not any(unicodedata.category(c) == "Cc" for c in shown)
    if not any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in text):
        assert shown == text  # plain text is left as it is


@pytest.mark.parametrize("args", [["squashfs", "info", "--json"], ["squashfs", "ls"], ["delta", "info", "--json"]])
def test_a_full_stdout_is_one_error_line(inputs, args):
    """stdout on a full disk (/dev/full): exit 3 and one line, also with --json, whose error object
    cannot be written either (that ended in two tracebacks)."""
    import subprocess
    import sys

    target = inputs["delta"] if args[0] == "delta" else inputs["new"]
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "edge", *args, str(target)], stdout=full,
                                stderr=subprocess.PIPE, text=True, env=dict(os.environ, EDGE_NO_PROGRESS="1"))
    assert result.returncode == 3, result.stderr
    assert result.stderr.splitlines() == ["edge: error: standard output: No space left on device"], result.stderr
