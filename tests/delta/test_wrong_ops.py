"""Deltas whose ops are well formed but wrong: a real delta with one field of an op changed, or an op
removed, repeated or moved. Every byte still parses, so only the applier's own checks stand between
such a delta and a wrong image.

The apply must end with the exact new image or a one-line DeltaError that names the delta (or the
target it marked invalid), and never blame the source slot: the source matched the delta's hash before
the first op, so whatever an op finds wrong there is the delta's fault.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.delta import CannotReproduceError, CorruptDeltaError, DeltaError, SourceMismatchError, apply_delta
from edge.delta import format as dfmt
from edge.fsutil import HEAD_HELD_BACK

pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")  # (a falsifying example's patch bytes)


@pytest.fixture(scope="module")
def parsed(pair):
    """(old image, new image's bytes, header, sample frame, ops) of the shared zstd-19 pair's delta."""
    old, new, _, raw = pair
    reader = dfmt.DeltaReader(io.BytesIO(raw), "d")
    header, _, sample = reader.preamble()
    ops = list(iter(reader.op, None))
    assert {type(op) for op in ops} >= {dfmt.Copy, dfmt.Blocks, dfmt.Literal}  # (what the changes below reach)
    with open(new, "rb") as fh:
        return old, fh.read(), header, sample, ops


def _encode(header: dfmt.Header, sample: bytes, ops: list[dfmt.Op], op_count: int | None = None) -> bytes:
    body = b"".join(dfmt.encode_op(op) for op in ops) + dfmt.END
    header = dataclasses.replace(header, op_count=len(ops) if op_count is None else op_count,
                                 ops_sha256=hashlib.sha256(body).hexdigest())
    return dfmt.encode_preamble(header, sample) + body


def _number(data: st.DataObject, value: int, source_size: int) -> int:
    return data.draw(st.sampled_from([0, 1, value + 1, max(0, value - 1), value * 2, value + 4096, source_size,
                                      source_size + 1, 1 << 40, (1 << 63) - 1])
                     | st.integers(0, source_size + 8192), label="number")


def _change_field(data: st.DataObject, op: dfmt.Op, source_size: int) -> dfmt.Op:
    name = data.draw(st.sampled_from([f.name for f in dataclasses.fields(op)]), label="field")
    value = getattr(op, name)
    if name == "encoding":
        new = data.draw(st.sampled_from((dfmt.ENC_RAW, dfmt.ENC_ZSTD) if isinstance(op, dfmt.Literal)
                                        else dfmt.PATCH_ENCODINGS))
    elif name == "mode":
        new = 1 - value
    elif isinstance(value, int):
        new = _number(data, value, source_size)
    elif isinstance(value, bytes):
        new = data.draw(st.sampled_from([b"", value[: len(value) // 2], value + b"\0"]) | st.binary(min_size=len(value),
                                                                                                  max_size=len(value)))
        if name == "sha256":
            new = data.draw(st.binary(min_size=32, max_size=32))
    else:  # sources, flags or target extents
        items = list(value)
        how = data.draw(st.sampled_from(["drop", "repeat", "change", "reverse"]))
        if items and how == "drop":
            del items[data.draw(st.integers(0, len(items) - 1))]
        elif items and how == "repeat":
            items.insert(data.draw(st.integers(0, len(items))), data.draw(st.sampled_from(items)))
        elif items and how == "change":
            i = data.draw(st.integers(0, len(items) - 1))
            item = items[i]
            if isinstance(item, int):  # a block flag (the reader refuses 3: see below)
                items[i] = data.draw(st.sampled_from([dfmt.BLOCK_COMPRESSED, dfmt.BLOCK_STORED, dfmt.BLOCK_SPARSE]))
            else:
                part = data.draw(st.sampled_from([f.name for f in dataclasses.fields(item)]))
                items[i] = dataclasses.replace(item, **{part: _number(data, getattr(item, part), source_size)})
        else:
            items.reverse()
        new = tuple(items)
    return dataclasses.replace(op, **{name: new})


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_delta_with_wrong_ops_gives_the_image_or_a_one_line_error_that_blames_the_delta(parsed, data):
    old, new_image, header, sample, ops = parsed
    ops = list(ops)
    for _ in range(data.draw(st.integers(1, 2), label="changes")):
        i = data.draw(st.integers(0, len(ops) - 1), label="op")
        how = data.draw(st.sampled_from(["field", "field", "field", "drop", "repeat", "swap"]), label="how")
        if how == "field":
            ops[i] = _change_field(data, ops[i], header.source_size)
        elif how == "drop" and len(ops) > 1:
            del ops[i]
        elif how == "repeat":
            ops.insert(i, ops[i])
        else:
            j = data.draw(st.integers(0, len(ops) - 1), label="with")
            ops[i], ops[j] = ops[j], ops[i]
    op_count = data.draw(st.sampled_from([None, header.op_count]), label="op_count")
    with tempfile.TemporaryDirectory() as tmp:
        delta, target = os.path.join(tmp, "x.delta"), os.path.join(tmp, "t.img")
        with open(delta, "wb") as fh:
            fh.write(_encode(header, sample, ops, op_count))
        try:
            apply_delta(old, delta, target)
        except DeltaError as exc:
            message = str(exc)
            assert "\n" not in message and message.startswith((delta + ":", target + ":")), message
            assert not isinstance(exc, SourceMismatchError), message
            with open(target, "rb") as fh:  # (the apply opened it after the source check)
                head = fh.read(HEAD_HELD_BACK)
            assert head == bytes(len(head)), "a failed apply left a readable image"
        else:
            with open(target, "rb") as fh:
                assert fh.read() == new_image


def _first(ops: list[dfmt.Op], kind: type, test=lambda op: True) -> int:
    return next(i for i, op in enumerate(ops) if isinstance(op, kind) and test(op))


def test_a_source_block_of_the_wrong_size_is_the_delta_s_fault(tmp_path, parsed):
    old, _, header, sample, ops = parsed
    i = _first(ops, dfmt.Blocks, lambda op: any(isinstance(s, dfmt.SourceBlock) and s.word for s in op.sources))
    op = ops[i]
    j = next(k for k, s in enumerate(op.sources) if isinstance(s, dfmt.SourceBlock) and s.word)
    sources = list(op.sources)
    sources[j] = dataclasses.replace(sources[j], plain=sources[j].plain - 1)
    changed = list(ops)
    changed[i] = dataclasses.replace(op, sources=tuple(sources))
    (tmp_path / "x.delta").write_bytes(_encode(header, sample, changed))
    with pytest.raises(CorruptDeltaError, match=rf"x\.delta: blocks op {i} \(at byte \d+\): source block at "
                                                rf"{sources[j].offset} holds \d+ bytes, the delta expects "
                                                rf"{sources[j].plain}; the delta is damaged$"):
        apply_delta(old, str(tmp_path / "x.delta"), str(tmp_path / "t.img"))


def test_a_copy_past_the_source_names_the_op(tmp_path, parsed):
    old, _, header, sample, ops = parsed
    i = _first(ops, dfmt.Copy)
    changed = list(ops)
    changed[i] = dataclasses.replace(ops[i], src=header.source_size - ops[i].length + 1)
    (tmp_path / "x.delta").write_bytes(_encode(header, sample, changed))
    with pytest.raises(CorruptDeltaError, match=rf"x\.delta: copy op {i} \(at byte \d+\) reads source bytes "
                                                rf"\d+\.\.{header.source_size + 1}, past the source image's "
                                                rf"{header.source_size}; the delta is damaged$"):
        apply_delta(old, str(tmp_path / "x.delta"), str(tmp_path / "t.img"))


@pytest.mark.parametrize("mode, flag, message", [
    (dfmt.MODE_DATA, 3, "block flag 3 is unknown"),
    (dfmt.MODE_METADATA, 3, "block flag 3 is unknown"),
    (dfmt.MODE_METADATA, dfmt.BLOCK_SPARSE, "a metadata block cannot be a hole"),
])
def test_block_flags_that_mean_nothing_are_refused_where_they_are_read(mode, flag, message):
    op = dfmt.Blocks(mode, (), 4096, (dfmt.BLOCK_STORED, flag), dfmt.ENC_RAW, bytes(4096), 4100, bytes(32))
    raw = dfmt.encode_op(op)
    after_flags = 2 + 1 + 2 + 1 + 1  # op type and mode, no sources, content length 4096, 2 flags, their byte
    assert raw[after_flags - 1] == dfmt.pack_flags(op.flags)[0]
    with pytest.raises(CorruptDeltaError, match=rf"^d: {message} \(op 0, at byte {after_flags}\)$"):
        dfmt.DeltaReader(io.BytesIO(raw), "d").op()


def test_the_flags_a_generator_writes_still_read(parsed):
    _, _, _, _, ops = parsed
    for op in ops:
        assert dfmt.DeltaReader(io.BytesIO(dfmt.encode_op(op)), "d").op() == op


def test_a_rebuild_that_does_not_match_points_to_the_check_that_tells_why(tmp_path, parsed):
    """Rebuilt blocks that miss their op's hash may be a damaged delta or a device that compresses
    differently; the message names the command that tells which, and that command does."""
    from edge.cli.delta import delta_info

    old, _, header, sample, ops = parsed
    i = _first(ops, dfmt.Blocks, lambda op: dfmt.BLOCK_COMPRESSED in op.flags)
    changed = list(ops)
    changed[i] = dataclasses.replace(ops[i], sha256=bytes(32))
    made = b"".join(dfmt.encode_op(op) for op in ops) + dfmt.END
    damaged = dataclasses.replace(header, ops_sha256=hashlib.sha256(made).hexdigest())  # (damage leaves it as made)
    delta = tmp_path / "x.delta"
    delta.write_bytes(dfmt.encode_preamble(damaged, sample) + b"".join(dfmt.encode_op(op) for op in changed) + dfmt.END)
    with pytest.raises(CannotReproduceError, match=rf"blocks op {i} rebuilt .*; `edge delta info {delta}` tells "
                                                   rf"which: .*; send a full bundle$"):
        apply_delta(old, str(delta), str(tmp_path / "t.img"))
    with pytest.raises(CorruptDeltaError, match="do not hash to the ops_sha256 in its header: the delta is damaged"):
        delta_info(str(delta))
