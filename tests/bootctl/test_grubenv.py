"""The GRUB env block against the real grub-editenv (Debian grub-common), both directions, byte for byte."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bsp.bootctl import grubenv
from bsp.bootctl.errors import BootControlError
from bsp.bootctl.grubenv import GrubEnvBlock, GrubEnvError
from tests.conftest import require_tool, run

NAMES = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=12)
# Values: printable text plus the two characters GRUB escapes (backslash, newline); no NUL (C strings).
VALUES = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=40)


def editenv(*args: str) -> subprocess.CompletedProcess[str]:
    return run(require_tool("grub-editenv"), *args)


def editenv_list(path: Path) -> dict[str, str]:
    """``grub-editenv FILE list`` parsed; only for values without newlines."""
    out = {}
    for line in editenv(str(path), "list").stdout.split("\n"):
        if not line:
            continue
        name, _, value = line.partition("=")
        out[name] = value
    return out


def test_create_matches_grub_editenv(tmp_path):
    ref = tmp_path / "ref"
    editenv(str(ref), "create")
    assert bytes(GrubEnvBlock.create()) == ref.read_bytes()
    assert len(ref.read_bytes()) == 1024


def test_our_block_is_listed_by_grub_editenv(tmp_path):
    path = tmp_path / "grubenv"
    variables = {"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "0", "EDGE_TRIAL": "B", "x": "a=b=c"}
    path.write_bytes(grubenv.render(variables))
    assert editenv_list(path) == variables


def test_grub_editenv_block_is_read_by_us(tmp_path):
    path = tmp_path / "grubenv"
    editenv(str(path), "create")
    editenv(str(path), "set", "BOOT_ORDER=A B", "BOOT_A_LEFT=3", "multi=line1\nline2", "back=sl\\ash")
    editenv(str(path), "unset", "BOOT_A_LEFT")
    assert grubenv.parse(path.read_bytes()) == {"BOOT_ORDER": "A B", "multi": "line1\nline2", "back": "sl\\ash"}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.tuples(NAMES, st.one_of(st.none(), VALUES, st.text(alphabet="xy\\\n", min_size=100, max_size=400))),
                    min_size=1, max_size=12))
def test_edit_sequences_byte_equal_to_grub_editenv(tmp_path, ops):
    """Any sequence of set/unset gives the same bytes here and in grub-editenv, including 'too small' failures."""
    path = tmp_path / "ref"
    path.unlink(missing_ok=True)
    editenv(str(path), "create")
    ours = GrubEnvBlock.create()
    for name, value in ops:
        if value is None:
            editenv(str(path), "unset", name)
            ours.unset(name)
        else:
            proc = subprocess.run([require_tool("grub-editenv"), str(path), "set", f"{name}={value}"],
                                  capture_output=True, text=True)
            try:
                ours.set(name, value)
                assert proc.returncode == 0, proc.stderr
            except GrubEnvError:
                assert proc.returncode != 0 and "too small" in proc.stderr
        assert bytes(ours) == path.read_bytes()
    assert GrubEnvBlock(path.read_bytes()).variables() == ours.variables()


@settings(max_examples=200, deadline=None)
@given(variables=st.dictionaries(NAMES, VALUES, max_size=10))
def test_render_parse_round_trip(variables):
    try:
        data = grubenv.render(variables)
    except GrubEnvError:
        assert sum(len(k) + len(grubenv.escape_value(v.encode())) + 2 for k, v in variables.items()) > 1024 - 94
        return
    assert len(data) == 1024
    assert grubenv.parse(data) == variables


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=1100))
def test_hostile_blocks_raise_typed_errors(data):
    try:
        block = GrubEnvBlock(grubenv.SIGNATURE + data)
    except BootControlError:
        return
    variables = block.variables()
    # Whatever parsed re-serialises to a block that parses to the same variables.
    again = GrubEnvBlock.create(max(block.size, 200))
    try:
        again.update(variables)
    except GrubEnvError:
        return
    assert again.variables() == variables


def test_refuses_a_change_that_does_not_fit(tmp_path):
    block = GrubEnvBlock.create()
    block.set("fill", "x" * (1024 - 94 - 6 - 10))
    before = bytes(block)
    with pytest.raises(GrubEnvError, match="too small"):
        block.update({"BOOT_ORDER": "A B", "more": "y" * 20})
    assert bytes(block) == before  # all or nothing


@pytest.mark.parametrize("data, message", [
    (b"not a grub env", "header"),
    (grubenv.SIGNATURE + b"A=1", "newline"),
    (grubenv.SIGNATURE + b"no equals sign\n####", "neither a comment"),
])
def test_malformed_blocks(data, message):
    with pytest.raises(GrubEnvError, match=message):
        GrubEnvBlock(data)


def test_grub_editenv_reads_block_edited_in_place_by_backend(tmp_path):
    """The backend rewrites the file in place (same inode, same size) and grub-editenv reads the result."""
    from bsp.bootctl import make_backend
    path = tmp_path / "grubenv"
    editenv(str(path), "create")
    editenv(str(path), "set", "unrelated=keep me")
    inode = path.stat().st_ino
    backend = make_backend("grub", {"grubenv": str(path), "cmdline": str(tmp_path / "cmdline")})
    backend.set_primary("B", 3)
    assert path.stat().st_ino == inode and path.stat().st_size == 1024
    assert editenv_list(path) == {"unrelated": "keep me", "BOOT_ORDER": "B A", "BOOT_B_LEFT": "3", "EDGE_TRIAL": "B"}
    backend.mark_bad("B")
    assert editenv_list(path) == {"unrelated": "keep me", "BOOT_ORDER": "A", "BOOT_B_LEFT": "0"}
