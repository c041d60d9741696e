"""edge.storage reads /proc/self/mountinfo to find a mounted filesystem stored in a target."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from edge.storage import _unescape, mounted_in
from tests.conftest import mounted_ext4


def _kernel_escape(path: str) -> str:
    """How the kernel writes a path in mountinfo (seq_path with " \\t\\n\\\\"): those four as octal escapes."""
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in path)


@given(st.text(alphabet=st.sampled_from("ab/ \t\n\\0178"), max_size=40))
def test_unescape_reverses_the_kernels_escapes(path):
    assert _unescape(_kernel_escape(path)) == path


def test_a_mount_point_with_every_escaped_character_is_named_exactly(tmp_path):
    """A real mount at a path holding a space, a tab, a newline and a backslash: the kernel escapes all
    four in mountinfo, and the refusal names the directory as it is."""
    mnt = str(tmp_path / "a b\tc\nd\\e")
    with mounted_ext4(str(tmp_path / "fs.img"), mnt) as loop:
        raw = open("/proc/self/mountinfo").read()
        assert _kernel_escape(mnt) in raw  # (the kernel does escape them)
        assert mounted_in(loop) == mnt
        assert mounted_in(str(tmp_path / "fs.img")) == mnt
    assert mounted_in(str(tmp_path / "fs.img")) is None
    assert not os.path.ismount(mnt)
