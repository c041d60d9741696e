"""Content patches (edge/delta/patches.py): zstd with a dictionary and bsdiff, chosen per op."""

from __future__ import annotations

import json
import struct

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.delta import CorruptDeltaError
from edge.delta import format as dfmt
from edge.delta.patches import (
    BSDIFF_CLEAR_WIN,
    BSDIFF_MAX_RATIO,
    BSDIFF_MIN_RATIO,
    QUICK_LEVEL,
    control_limit,
    decode_bsdiff,
    encode_bsdiff,
    make_patch,
    read_patch,
)
from tests.delta.helpers import code_blob


@st.composite
def edited(draw) -> tuple[bytes, bytes]:
    """(reference, new content): random bytes, then spliced, overwritten and shifted pieces."""
    ref = draw(st.binary(min_size=1, max_size=4000))
    data = bytearray(ref)
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "delete", "overwrite", "add"]))
        piece = draw(st.binary(min_size=1, max_size=64))
        if kind == "insert":
            data[at:at] = piece
        elif kind == "delete":
            del data[at : at + len(piece)]
        elif kind == "overwrite":
            data[at : at + len(piece)] = piece
        else:  # small arithmetic change of a run, as when addresses move
            for i in range(at, min(len(data), at + len(piece))):
                data[i] = (data[i] + piece[0]) & 0xFF
    return ref, bytes(data)


@settings(max_examples=150, deadline=None)
@given(edited())
def test_bsdiff_payload_round_trips(pair):
    ref, data = pair
    payload = encode_bsdiff(data, ref, 3)
    if payload is None:  # only when the control stream is over the applier's bound
        import bsdiff4.core

        assert len(bsdiff4.core.diff(ref, data)[0]) > control_limit(len(data))
        return
    assert decode_bsdiff(payload, len(data), ref) == data


@settings(max_examples=150, deadline=None)
@given(edited(), st.booleans(), st.sampled_from([3, 19]))
def test_make_patch_keeps_the_smallest_tried_and_it_decodes(pair, with_ref, level):
    ref, data = pair
    ref = ref if with_ref else b""
    enc, payload = make_patch(data, ref, level)
    assert read_patch(enc, payload, len(data), ref) == data
    if not ref:
        assert enc == dfmt.ENC_ZSTD
        return
    d = zstandard.ZstdCompressionDict(ref, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    # (every frame of a delta carries zstd's content checksum)
    quick = len(zstandard.ZstdCompressor(level=min(level, QUICK_LEVEL), dict_data=d, write_checksum=True).compress(data))
    full = len(zstandard.ZstdCompressor(level=level, dict_data=d, write_checksum=True).compress(data))
    assert len(payload) <= quick  # never worse than the quick dictionary patch
    if enc == dfmt.ENC_BSDIFF and len(payload) < BSDIFF_CLEAR_WIN * quick:
        return  # a clear bsdiff win: the full-level dictionary patch was not tried
    assert len(payload) <= full
    if not BSDIFF_MIN_RATIO * len(data) <= quick < BSDIFF_MAX_RATIO * len(data):
        assert enc == dfmt.ENC_ZSTD_DICT  # bsdiff is only tried where the content is mostly the reference's


def test_relocated_code_is_carried_by_bsdiff_at_a_fraction_of_the_dictionary_patch():
    old = code_blob(1, 40_000)
    new = code_blob(1, 40_000, shift=0x40, insert_at=20_000)
    enc, payload = make_patch(new, old, 19)
    _, dict_only = make_patch(new, old, 19, bsdiff=False)
    assert enc == dfmt.ENC_BSDIFF
    assert len(payload) * 1.8 < len(dict_only)  # measured: 8,871 vs 18,112 bytes
    assert read_patch(enc, payload, len(new), old) == new


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_damaged_bsdiff_payloads_fail_cleanly(data):
    old = code_blob(2, 3000)
    new = code_blob(2, 3000, shift=0x40, insert_at=1500)
    payload = bytearray(encode_bsdiff(new, old, 3) or b"")
    assert payload
    how = data.draw(st.sampled_from(["flip", "truncate", "extend"]))
    if how == "flip":
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(payload) - 1))
            payload[i] ^= 1 << data.draw(st.integers(0, 7))
    elif how == "truncate":
        del payload[data.draw(st.integers(0, len(payload) - 1)) :]
    else:
        payload += data.draw(st.binary(min_size=1, max_size=16))
    try:
        out = decode_bsdiff(bytes(payload), len(new), old)
    except CorruptDeltaError:
        return
    assert len(out) == len(new)  # a damage the streams cannot show (e.g. in a diff byte): the op hash catches it


def _payload(control: bytes, diff: bytes, extra: bytes) -> bytes:
    z = zstandard.ZstdCompressor(level=1)
    c, d, e = z.compress(control), z.compress(diff), z.compress(extra)
    return dfmt.varint(len(c)) + dfmt.varint(len(d)) + c + d + e


def test_hostile_bsdiff_streams_are_refused_before_allocating():
    ref = b"r" * 100
    # a control stream claiming far more tuples than the output could use
    huge = zstandard.ZstdCompressor(level=1).compress(bytes(24 * 1_000_000))
    with pytest.raises(CorruptDeltaError, match="more than"):
        decode_bsdiff(dfmt.varint(len(huge)) + dfmt.varint(0) + huge, 100, ref)
    # negative lengths, lengths past the output, a reference position that overflows: refused by the patcher
    for tuples in [[(-1, 0, 0)], [(0, -5, 0)], [(200, 0, 0)], [(0, 200, 0)], [(0, 0, -(1 << 62))] * 3 + [(100, 0, 0)]]:
        control = b"".join(_offt(v) for t in tuples for v in t)
        diff = bytes(min(100, sum(max(t[0], 0) for t in tuples)))
        extra = bytes(min(100, sum(max(t[1], 0) for t in tuples)))
        with pytest.raises(CorruptDeltaError, match="does not apply"):
            decode_bsdiff(_payload(control, diff, extra), 100, ref)
    # streams that do not cover the output exactly
    with pytest.raises(CorruptDeltaError, match="does not apply"):
        decode_bsdiff(_payload(_offt(10) + _offt(0) + _offt(0), bytes(10), b""), 100, ref)
    with pytest.raises(CorruptDeltaError, match="whole tuples"):
        decode_bsdiff(_payload(bytes(23), b"", b""), 0, ref)
    with pytest.raises(CorruptDeltaError, match="do not fit"):
        decode_bsdiff(dfmt.varint(1000) + dfmt.varint(0) + b"xx", 10, ref)
    assert control_limit(100) < 24 * 1_000_000


def _offt(v: int) -> bytes:
    """bsdiff's integer encoding: 63-bit magnitude, little-endian, sign in the top bit."""
    return struct.pack("<Q", abs(v) | (1 << 63 if v < 0 else 0))


def test_reader_accepts_bsdiff_and_version_1_deltas_and_refuses_unknown_encodings():
    op = dfmt.Patch(0, 10, 5, dfmt.ENC_BSDIFF, b"payload", bytes(32))
    import io

    got = dfmt.DeltaReader(io.BytesIO(dfmt.encode_op(op)), "d").op()
    assert got == op
    bad = bytearray(dfmt.encode_op(op))
    bad[bad.index(dfmt.ENC_BSDIFF, 3)] = 9
    with pytest.raises(CorruptDeltaError, match="patch encoding 9 is unknown"):
        dfmt.DeltaReader(io.BytesIO(bytes(bad)), "d").op()
    header = dfmt.Header("generic", 1, "0" * 64, 1, "1" * 64, 0, version=2)
    pre = dfmt.encode_preamble(header, None)
    assert struct.unpack("<I", pre[8:12])[0] == 2
    old_header = json.loads(header.to_json())  # (as a version 1 delta was written: no header_sha256)
    del old_header[dfmt.HEADER_SHA256]
    old_header["format"] = 1
    raw = json.dumps(old_header, sort_keys=True, separators=(",", ":")).encode()
    v1 = dfmt.PREAMBLE.pack(dfmt.MAGIC, 1, len(raw)) + raw + pre[dfmt.PREAMBLE.size + len(header.to_json()):]
    hdr, _, _ = dfmt.DeltaReader(io.BytesIO(v1), "d").preamble()
    assert hdr.source_sha256 == "0" * 64


def test_runs_of_one_byte_do_not_reach_bsdiff(monkeypatch):
    """bsdiff's search is quadratic on runs of one byte (4 MB of zeros took minutes): such content
    patches to almost nothing with a dictionary and never goes to bsdiff."""
    import edge.delta.patches as patches

    def no_bsdiff(*args):
        raise AssertionError("bsdiff was tried")

    monkeypatch.setattr(patches, "encode_bsdiff", no_bsdiff)
    ref = bytes(4 << 20)
    data = bytearray(ref)
    data[1000:1008] = b"12345678"
    enc, payload = patches.make_patch(bytes(data), ref, 19)
    assert enc == dfmt.ENC_ZSTD_DICT and read_patch(enc, payload, len(data), ref) == data


def test_content_with_long_zero_runs_does_not_reach_bsdiff(monkeypatch):
    """A changed block followed by megabytes of zeros (a sparse disk image in a file): the quick patch
    is a few percent of the content, inside bsdiff's range, but the zero run would make bsdiff quadratic."""
    import random

    import edge.delta.patches as patches

    def no_bsdiff(*args):
        raise AssertionError("bsdiff was tried")

    monkeypatch.setattr(patches, "encode_bsdiff", no_bsdiff)
    rnd = random.Random(5)
    ref = rnd.randbytes(128 << 10) + bytes(4 << 20)
    data = rnd.randbytes(128 << 10) + bytes(4 << 20)
    enc, payload = patches.make_patch(data, ref, 19)
    assert enc == dfmt.ENC_ZSTD_DICT and read_patch(enc, payload, len(data), ref) == data


def _preamble(version: int) -> bytes:
    return dfmt.encode_preamble(dfmt.Header("generic", 1, "0" * 64, 1, "1" * 64, 1, version=version), None)


def test_target_referencing_patches_need_format_3():
    """A patch op with target extents (op 6) reads back as written from a format-3 delta; a format-2
    delta cannot hold one (an older Edge would not know it), and the generator writes format 2
    whenever no op needs 3, so older devices keep taking those deltas."""
    import io

    op = dfmt.Patch(7, 100, 50, dfmt.ENC_ZSTD_DICT, b"frame", bytes(32), ((0, 10), (4096, 300)))
    assert dfmt.encode_op(op)[0] == dfmt.OP_PATCH_TARGET and op.reference_len == 410
    reader = dfmt.DeltaReader(io.BytesIO(_preamble(3) + dfmt.encode_op(op)), "d")
    assert reader.preamble()[0].version == 3 and reader.op() == op
    reader = dfmt.DeltaReader(io.BytesIO(_preamble(2) + dfmt.encode_op(op)), "d")
    reader.preamble()
    with pytest.raises(CorruptDeltaError, match="unknown op type 6"):
        reader.op()
    plain = dfmt.Patch(7, 100, 50, dfmt.ENC_ZSTD_DICT, b"frame", bytes(32))
    assert dfmt.format_version([plain, dfmt.Copy(0, 5)]) == 2 and dfmt.format_version([plain, op]) == 3
    mixed = _preamble(3)[:8] + struct.pack("<I", 2) + _preamble(3)[12:]
    with pytest.raises(CorruptDeltaError, match="header says format 3, the preamble 2"):
        dfmt.DeltaReader(io.BytesIO(mixed), "d").preamble()


@pytest.mark.parametrize("targets, message", [
    ((), "names no target extent"),
    (((0, dfmt.MAX_OP_REFERENCE - 99),), "patch reference of .* exceeds the limit"),
    (tuple((i, 1) for i in range(dfmt.MAX_TARGET_EXTENTS + 1)), "extent count 65 exceeds the limit of 64"),
])
def test_hostile_target_extents_are_refused_before_anything_is_read(targets, message):
    import io

    raw = (bytes([dfmt.OP_PATCH_TARGET]) + dfmt.varint(0) + dfmt.varint(100) + dfmt.varint(len(targets))
           + b"".join(dfmt.varint(o) + dfmt.varint(n) for o, n in targets) + dfmt.varint(5) + bytes([dfmt.ENC_ZSTD_DICT])
           + dfmt.varint(1) + b"x" + bytes(32))
    reader = dfmt.DeltaReader(io.BytesIO(_preamble(3) + raw), "d")
    reader.preamble()
    with pytest.raises(CorruptDeltaError, match=message):
        reader.op()


@settings(max_examples=200, deadline=None)
@given(src=st.integers(0, 1 << 40), src_len=st.integers(0, 1 << 20), length=st.integers(0, dfmt.MAX_OP_CONTENT),
       enc=st.sampled_from(dfmt.PATCH_ENCODINGS), patch=st.binary(max_size=64),
       targets=st.lists(st.tuples(st.integers(0, 1 << 40), st.integers(0, 1 << 20)), max_size=8))
def test_patch_ops_round_trip_through_the_reader(src, src_len, length, enc, patch, targets):
    import io

    op = dfmt.Patch(src, src_len, length, enc, patch, bytes(range(32)), tuple(targets))
    reader = dfmt.DeltaReader(io.BytesIO(dfmt.encode_op(op) + dfmt.END), "d")
    assert reader.op() == op and reader.op() is None
