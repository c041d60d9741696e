"""Everything that can be wrong with a source or a delta gives a clear error, never a wrong image reported as good."""

from __future__ import annotations

import io
import json
import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.delta import (
    CannotReproduceError,
    CorruptDeltaError,
    DeltaError,
    SourceMismatchError,
    apply_delta,
    make_delta,
)
from edge.delta import format as dfmt
from tests.delta.helpers import base_entries, write


def test_wrong_source_image_is_refused_before_writing(tmp_path, pair):
    old, new, delta, _ = pair
    other = write(base_entries(99, files=40, big=1), str(tmp_path / "other.sqfs"))
    target = tmp_path / "t.img"
    with pytest.raises(SourceMismatchError, match="not the image this delta was made from"):
        apply_delta(other, delta, str(target))
    assert not target.exists()


def test_corrupted_source_slot_is_refused(tmp_path, pair):
    old, new, delta, _ = pair
    bad = bytearray(open(old, "rb").read())
    bad[len(bad) // 2] ^= 0x40
    (tmp_path / "bad.sqfs").write_bytes(bad)
    with pytest.raises(SourceMismatchError):
        apply_delta(str(tmp_path / "bad.sqfs"), delta, str(tmp_path / "t.img"))


def test_short_source_is_refused(tmp_path, pair):
    old, new, delta, _ = pair
    (tmp_path / "short").write_bytes(open(old, "rb").read()[:1000])
    with pytest.raises(SourceMismatchError, match="bytes; the delta was made from"):
        apply_delta(str(tmp_path / "short"), delta, str(tmp_path / "t.img"))


def _rewrite_header(raw: bytes, change) -> bytes:
    magic, version, hlen = dfmt.PREAMBLE.unpack_from(raw)
    header = json.loads(raw[dfmt.PREAMBLE.size : dfmt.PREAMBLE.size + hlen])
    change(header)
    new = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    return dfmt.PREAMBLE.pack(magic, version, len(new)) + new + raw[dfmt.PREAMBLE.size + hlen :]


def test_device_that_cannot_reproduce_the_compressor_stops_before_writing(tmp_path, pair):
    old, new, delta, raw = pair

    def other_level(h):
        h["codec"]["level"] = 18  # this device would compress differently than the image's maker

    (tmp_path / "d1").write_bytes(_rewrite_header(raw, other_level))
    with pytest.raises(CannotReproduceError, match="cannot reproduce zstd level 18 .* send a full bundle"):
        apply_delta(old, str(tmp_path / "d1"), str(tmp_path / "t.img"))
    assert not (tmp_path / "t.img").exists()

    def missing_impl(h):
        h["codec"]["impl"] = "zstd-from-the-future"
        h["codec"]["impl_version"] = "zstd-from-the-future 9.9"

    (tmp_path / "d2").write_bytes(_rewrite_header(raw, missing_impl))
    with pytest.raises(CannotReproduceError, match="zstd-from-the-future 9.9, which is not available here; send a full bundle"):
        apply_delta(old, str(tmp_path / "d2"), str(tmp_path / "t.img"))
    assert not (tmp_path / "t.img").exists()


def test_not_a_delta_and_unsupported_version(tmp_path, pair):
    old, _, _, raw = pair
    (tmp_path / "x").write_bytes(b"hello world, not a delta")
    with pytest.raises(CorruptDeltaError, match="not an Edge delta"):
        apply_delta(old, str(tmp_path / "x"), str(tmp_path / "t"))
    (tmp_path / "v").write_bytes(raw[:8] + struct.pack("<I", 99) + raw[12:])
    with pytest.raises(CorruptDeltaError, match="version 99 is not supported"):
        apply_delta(old, str(tmp_path / "v"), str(tmp_path / "t"))


def test_trailing_garbage_is_refused(tmp_path, pair):
    old, _, _, raw = pair
    (tmp_path / "g").write_bytes(raw + b"garbage")
    with pytest.raises(CorruptDeltaError, match="data after the end"):
        apply_delta(old, str(tmp_path / "g"), str(tmp_path / "t"))


def _outcome(old: str, new: str, delta_bytes: bytes, tmp) -> str:
    path = os.path.join(tmp, "mutant.delta")
    target = os.path.join(tmp, "t.img")
    for p in (target, target + ".edge-apply"):
        if os.path.exists(p):
            os.unlink(p)
    with open(path, "wb") as fh:
        fh.write(delta_bytes)
    try:
        apply_delta(old, path, target)
    except DeltaError:
        # whatever was written never looks like a squashfs image
        if os.path.exists(target):
            assert open(target, "rb").read(4) != b"hsqs"
        return "error"
    assert open(target, "rb").read() == open(new, "rb").read(), "a wrong image was reported as good"
    return "ok"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_bit_flips_never_yield_a_wrong_image(tmp_path_factory, pair, data):
    old, new, _, raw = pair
    mutant = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        mutant[pos] ^= 1 << data.draw(st.integers(0, 7))
    _outcome(old, new, bytes(mutant), str(tmp_path_factory.mktemp("flip")))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_truncated_deltas_always_fail(tmp_path_factory, pair, data):
    old, new, _, raw = pair
    cut = data.draw(st.integers(0, len(raw) - 1))
    assert _outcome(old, new, raw[:cut], str(tmp_path_factory.mktemp("cut"))) == "error"


def test_hostile_lengths_are_refused_without_allocating(tmp_path, pair):
    old, _, _, raw = pair
    magic, version, hlen = dfmt.PREAMBLE.unpack_from(raw)
    (slen,) = struct.unpack_from("<I", raw, dfmt.PREAMBLE.size + hlen)
    ops_at = dfmt.PREAMBLE.size + hlen + 4 + slen
    huge = bytes([dfmt.OP_LITERAL]) + dfmt.varint(1 << 40)
    (tmp_path / "h").write_bytes(raw[:ops_at] + huge)
    with pytest.raises(CorruptDeltaError, match="exceeds the limit"):
        apply_delta(old, str(tmp_path / "h"), str(tmp_path / "t"))
    (tmp_path / "h2").write_bytes(dfmt.PREAMBLE.pack(magic, version, 1 << 30) + b"{}")
    with pytest.raises(CorruptDeltaError, match="header length"):
        apply_delta(old, str(tmp_path / "h2"), str(tmp_path / "t"))


def test_missing_inputs_are_input_errors(tmp_path, pair):
    """A missing source image or delta file exits 3, like every missing input (docs/cli.md), for
    `delta make` and `delta apply` alike, with one line naming the file."""
    from tests.conftest import run_edge

    old, new, delta, _ = pair
    missing = str(tmp_path / "nope")
    for args in (("make", missing, new, "-o", str(tmp_path / "d")), ("apply", missing, delta, "-o", str(tmp_path / "o")),
                 ("apply", old, missing, "-o", str(tmp_path / "o")), ("info", missing)):
        r = run_edge("delta", *args, check=False)
        assert r.returncode == 3 and r.stderr.strip() == f"edge: error: {missing}: No such file or directory", (args, r.stderr)


@pytest.fixture(scope="module")
def target_referencing_pair(tmp_path_factory):
    """(old file, new file, delta path, delta bytes): a generic format-3 delta in which new content
    repeats, so patches refer to target bytes written before them (the first 4 KiB among them)."""
    import random

    tmp = tmp_path_factory.mktemp("tref")
    rnd = random.Random(21)
    a = rnd.randbytes(1 << 20)
    blob = rnd.randbytes(96 << 10)
    (tmp / "a").write_bytes(a)
    (tmp / "b").write_bytes(blob + a[: 600_000] + blob + a[600_000 :] + blob[:50_000])
    delta = str(tmp / "d.delta")
    make_delta(str(tmp / "a"), str(tmp / "b"), delta)
    raw = open(delta, "rb").read()
    assert dfmt.OP_PATCH_TARGET in raw and raw[8] == 3  # (checked properly below, through the reader)
    return str(tmp / "a"), str(tmp / "b"), delta, raw


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_bit_flips_in_target_references_never_yield_a_wrong_image(tmp_path_factory, target_referencing_pair, data):
    old, new, _, raw = target_referencing_pair
    reader = dfmt.DeltaReader(io.BytesIO(raw), "d")
    reader.preamble()
    ops_at = reader.pos
    heads = []  # where each target-referencing op's fields (extents among them) are encoded
    while True:
        at = reader.pos
        op = reader.op()
        if op is None:
            break
        if isinstance(op, dfmt.Patch) and op.targets:
            heads.append((at, at + 1 + 8 * (2 + 2 * len(op.targets))))
    assert heads, "the fixture made no target-referencing patch"
    mutant = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 3))):
        if data.draw(st.booleans()):  # half the flips land in those fields
            lo, hi = data.draw(st.sampled_from(heads))
            pos = data.draw(st.integers(lo, min(hi, len(raw)) - 1))
        else:
            pos = data.draw(st.integers(ops_at, len(raw) - 1))
        mutant[pos] ^= 1 << data.draw(st.integers(0, 7))
    _outcome(old, new, bytes(mutant), str(tmp_path_factory.mktemp("tflip")))
