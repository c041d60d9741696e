"""Fixtures shared by the delta tests."""

from __future__ import annotations

import pytest

from edge.delta import make_delta
from tests.delta.helpers import base_entries, edit, write


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(old image, new image, delta path, delta bytes): zstd-19 images of a small tree and its edit."""
    tmp = tmp_path_factory.mktemp("pair")
    old = write(base_entries(11, files=30), str(tmp / "old.sqfs"), compressor="zstd", level=19)
    new = write(edit(base_entries(11, files=30), 11), str(tmp / "new.sqfs"), compressor="zstd", level=19)
    delta = str(tmp / "d.delta")
    make_delta(old, new, delta)
    return old, new, delta, open(delta, "rb").read()
