"""Digests in error messages are abbreviated, but never so far that two different ones read alike."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edge.errors import short_digests

HEX = st.text("0123456789abcdef", min_size=64, max_size=64)


@given(HEX, st.data())
def test_two_different_digests_never_read_alike(a, data):
    # b shares a prefix of any length with a, then differs
    keep = data.draw(st.integers(0, 63))
    other = data.draw(st.sampled_from([c for c in "0123456789abcdef" if c != a[keep]]))
    b = a[:keep] + other + data.draw(st.text("0123456789abcdef", min_size=63 - keep, max_size=63 - keep))
    sa, sb = short_digests(a, b)
    assert sa != sb
    for short, full in ((sa, a), (sb, b)):
        assert full.startswith(short.removesuffix("…"))
        assert short == full or (short.endswith("…") and len(short) - 1 >= 16)
    if keep < 12:
        assert (sa, sb) == (a[:16] + "…", b[:16] + "…")  # the usual case keeps the usual length

