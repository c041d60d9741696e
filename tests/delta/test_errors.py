"""Everything that can be wrong with a source or a delta gives a clear error, never a wrong image reported as good."""

from __future__ import annotations

import hashlib
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
    TruncatedDeltaError,
    apply_delta,
    make_delta,
)
from edge.delta import format as dfmt
from tests.delta.helpers import base_entries, op_spans, write


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
    new = dfmt.seal_header(header)  # (a header made so, not a damaged one)
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


def test_not_a_delta(tmp_path, pair):
    old, _, _, raw = pair
    (tmp_path / "x").write_bytes(b"hello world, not a delta")
    with pytest.raises(CorruptDeltaError, match="not an Edge delta"):
        apply_delta(old, str(tmp_path / "x"), str(tmp_path / "t"))


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


def test_a_cut_inside_an_op_names_the_op(tmp_path, pair, capsys):
    """A delta cut short inside op k: apply and info both say op k and the byte where the stream ended."""
    from edge.cli import main

    old, _, _, raw = pair
    spans = op_spans(raw)
    assert len(spans) >= 3
    for k in sorted({0, len(spans) // 2, len(spans) - 1}):
        start, end = spans[k]
        for at in sorted({start, start + 1, end - 1}):
            cut = tmp_path / f"cut-{at}.delta"
            cut.write_bytes(raw[:at])
            with pytest.raises(TruncatedDeltaError, match=rf"^{cut}: truncated: .* \(op {k}, at byte \d+\)$"):
                apply_delta(old, str(cut), str(tmp_path / "t.img"), state_path=str(tmp_path / "state"))
            assert main(["delta", "info", str(cut)]) != 0
            assert f"(op {k}, at byte" in capsys.readouterr().err


def test_hostile_lengths_are_refused_without_allocating(tmp_path, pair):
    old, _, _, raw = pair
    magic, version, _ = dfmt.PREAMBLE.unpack_from(raw)
    ops_at = _ops_start(raw)
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


@pytest.mark.parametrize("kind", ["a directory", "a character device", "a FIFO", "a link to a character device"])
def test_a_target_that_is_not_a_file_or_block_device_is_refused(tmp_path, pair, kind):
    """-o /dev/null or a FIFO ended in 'edge: error: Invalid argument' (fsync of the first checkpoint)
    and -o DIR in a message about --state; each is now named for what it is, exit 10, nothing made."""
    from tests.conftest import run_edge

    old, _, delta, _ = pair
    target = {"a directory": str(tmp_path / "dir"), "a character device": "/dev/null",
              "a FIFO": str(tmp_path / "fifo"), "a link to a character device": str(tmp_path / "link")}[kind]
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    os.symlink("/dev/null", tmp_path / "link")
    before = sorted(os.listdir(tmp_path))
    r = run_edge("delta", "apply", old, delta, "-o", target, check=False)
    shown = kind.replace("a link to ", "")
    assert r.returncode == 10 and r.stderr == (f"edge: error: {target} is {shown}: an image is written to a regular "
                                               f"file or a block device (nothing was written)\n"), r.stderr
    assert sorted(os.listdir(tmp_path)) == before and os.listdir(tmp_path / "dir") == []


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


def _changed_block_pair(tmp) -> tuple[str, str, int, int]:
    """zstd-19 images where one big file changed in its first block: (old, new, that block's offset
    in old, in new)."""
    from dataclasses import replace

    import random

    from edge.squashfs import BytesContent, Entry, Kind, SquashfsImage
    from tests.delta.helpers import text_blob

    big = Entry("usr/share/doc/big.txt", Kind.FILE, content=BytesContent(text_blob(random.Random(5), 300_000)))
    base = base_entries(11, files=30) + [big]
    data = bytearray(big.content.data)  # type: ignore[union-attr]
    data[1000:1008] = b"CHANGED!"
    changed = [replace(e, content=BytesContent(bytes(data))) if e is big else e for e in base]
    old = write(base, os.path.join(tmp, "old.sqfs"), compressor="zstd", level=19)
    new = write(changed, os.path.join(tmp, "new.sqfs"), compressor="zstd", level=19)
    first = [next(f for f in SquashfsImage(p).layout().files if f.path == big.path).blocks[0] for p in (old, new)]
    assert all(b.compressed for b in first)
    return old, new, first[0].offset, first[1].offset


@pytest.mark.parametrize("side", ["old", "new"])
def test_a_block_that_does_not_decompress_is_named_and_worked_around(tmp_path, side):
    """A damaged image (a zstd frame whose magic is gone) given to `delta make`: the delta is still
    squashfs-aware and applies to exactly the given NEW; the output names the file and the block's
    offset. A damaged new block travels as stored bytes; a damaged old block is not used as a
    reference (the device, hashing the same bytes, would fail on it too). It used to fail the
    whole make with "does not decompress"."""
    from tests.conftest import run_edge

    images = {}
    images["old"], images["new"], *offsets = _changed_block_pair(str(tmp_path))
    offset = offsets[0] if side == "old" else offsets[1]
    with open(images[side], "r+b") as fh:
        fh.seek(offset)
        assert fh.read(4) == b"\x28\xb5\x2f\xfd"  # a zstd frame
        fh.seek(offset)
        fh.write(bytes(4))
    delta = str(tmp_path / "d.delta")
    r = run_edge("delta", "make", images["old"], images["new"], "-o", delta, "--json")
    result = json.loads(r.stdout)
    assert result["kind"] == "squashfs" and result["damaged_block_count"] >= 1
    assert result["unreproducible_blocks"] == 0  # every other block rebuilds; the damaged one is counted once
    assert any(m.startswith(f"{images[side]}: block at offset {offset} does not decompress") for m in result["damaged_blocks"])
    plain = run_edge("delta", "make", images["old"], images["new"], "-o", delta).stdout
    assert f"damaged: {images[side]}: block at offset {offset}" in plain
    target = str(tmp_path / "t.img")
    apply_delta(images["old"], delta, target)
    assert open(target, "rb").read() == open(images["new"], "rb").read()


def test_a_squashfs_image_that_does_not_open_gets_a_byte_level_delta_and_says_why(tmp_path, pair):
    old, new, _, _ = pair
    cut = str(tmp_path / "new.sqfs")
    open(cut, "wb").write(open(new, "rb").read()[: os.path.getsize(new) // 2])
    result = make_delta(old, cut, str(tmp_path / "d.delta"))
    assert result.kind == "generic" and result.generic_because is not None
    assert result.generic_because.startswith(f"{cut}: truncated")
    apply_delta(old, str(tmp_path / "d.delta"), str(tmp_path / "t.img"))
    assert open(tmp_path / "t.img", "rb").read() == open(cut, "rb").read()
    # a file that does not claim to be squashfs is an ordinary byte-level delta: nothing to explain
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"not an image" * 1000)
    assert make_delta(old, str(plain), str(tmp_path / "d2.delta")).generic_because is None


def _ops_start(raw: bytes) -> int:
    _, _, hlen = dfmt.PREAMBLE.unpack_from(raw)
    (slen,) = struct.unpack_from("<I", raw, dfmt.PREAMBLE.size + hlen)
    return dfmt.PREAMBLE.size + hlen + 4 + slen


def test_info_refuses_what_apply_would_refuse_at_the_end(tmp_path, pair):
    """`delta info` reads the whole delta: bytes after END, an op count or target size the ops do not
    add up to, and ops that do not hash to the header's ops_sha256 are named before anyone applies it."""
    from edge.cli.delta import delta_info

    _, _, delta, raw = pair
    assert delta_info(delta)["op_count"] > 0
    (tmp_path / "g").write_bytes(raw + b"garbage")
    with pytest.raises(CorruptDeltaError, match=f"data after the end of the delta \\(at byte {len(raw)}\\)"):
        delta_info(str(tmp_path / "g"))

    def more_ops(h):
        h["op_count"] += 1

    (tmp_path / "c").write_bytes(_rewrite_header(raw, more_ops))
    with pytest.raises(CorruptDeltaError, match="ended after (\\d+) of \\d+ ops"):
        delta_info(str(tmp_path / "c"))

    def other_ops_hash(h):
        h["ops_sha256"] = "00" * 32

    (tmp_path / "h").write_bytes(_rewrite_header(raw, other_ops_hash))
    with pytest.raises(CorruptDeltaError, match="do not hash to the ops_sha256 in its header"):
        delta_info(str(tmp_path / "h"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_info_refuses_any_bit_flip_in_the_ops(tmp_path_factory, pair, data):
    from edge.cli.delta import delta_info

    _, _, _, raw = pair
    pos = data.draw(st.integers(_ops_start(raw), len(raw) - 1))
    mutant = bytearray(raw)
    mutant[pos] ^= 1 << data.draw(st.integers(0, 7))
    path = tmp_path_factory.mktemp("info-flip") / "d.delta"
    path.write_bytes(mutant)
    with pytest.raises(CorruptDeltaError):
        delta_info(str(path))


def _frames(raw: bytes) -> list[tuple[str, int, int, bytes]]:
    """(what, op index, the op's first byte in the delta, frame) for the sample and every zstd frame the
    ops carry (a bsdiff patch: its three streams), read with the format's own reader."""
    reader = dfmt.DeltaReader(io.BytesIO(raw), "d")
    _, _, sample = reader.preamble()
    out = [("sample", -1, -1, sample)] if sample else []
    index = 0
    while True:
        at = reader.pos
        op = reader.op()
        if op is None:
            return out
        kind = dfmt.op_name(op)
        if isinstance(op, dfmt.Literal) and op.encoding == dfmt.ENC_ZSTD:
            out.append((kind, index, at, op.data))
        elif isinstance(op, (dfmt.Blocks, dfmt.Patch)) and op.encoding in (dfmt.ENC_ZSTD, dfmt.ENC_ZSTD_DICT):
            out.append((kind, index, at, op.patch))
        elif isinstance(op, (dfmt.Blocks, dfmt.Patch)) and op.encoding == dfmt.ENC_BSDIFF:
            lengths = dfmt.DeltaReader(io.BytesIO(op.patch), "bsdiff")
            clen, dlen = lengths.varint("c"), lengths.varint("d")
            body = op.patch[lengths.pos :]
            out += [(kind, index, at, body[:clen]), (kind, index, at, body[clen : clen + dlen]), (kind, index, at, body[clen + dlen :])]
        index += 1


def test_every_zstd_frame_of_a_delta_carries_zstds_checksum(pair, target_referencing_pair):
    """So that the device's decoder finds a damaged frame at its op (zstd checks it while decoding)."""
    import zstandard

    kinds = set()
    for raw in (pair[3], target_referencing_pair[3]):
        for what, _, _, frame in _frames(raw):
            assert zstandard.get_frame_parameters(frame).has_checksum, what
            kinds.add(what)
    assert {"sample", "blocks", "patch"} <= kinds


def _apply_error(old: str, new: str, mutant: bytes, tmp) -> DeltaError | None:
    """The error applying ``mutant`` gives, or None when it gave exactly the new image."""
    path = os.path.join(tmp, "mutant.delta")
    with open(path, "wb") as fh:
        fh.write(mutant)
    target = os.path.join(tmp, "t.img")
    try:
        apply_delta(old, path, target)
    except DeltaError as exc:
        return exc
    assert open(target, "rb").read() == open(new, "rb").read(), "a wrong image was reported as good"
    return None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_damaged_sample_is_a_damaged_delta_not_a_device_that_cannot_reproduce(tmp_path_factory, pair, data):
    """Before the sample carried zstd's checksum, a flipped bit in its literals decoded to other plain
    bytes, whose hash then said "this device cannot reproduce …; send a full bundle"."""
    old, new, _, raw = pair
    start = _ops_start(raw) - len(_frames(raw)[0][3])
    pos = data.draw(st.integers(start, _ops_start(raw) - 1))
    mutant = bytearray(raw)
    mutant[pos] ^= 1 << data.draw(st.integers(0, 7))
    err = _apply_error(old, new, bytes(mutant), str(tmp_path_factory.mktemp("sample")))
    if err is not None:  # (a flip zstd does not see, e.g. in an unused header bit, changes nothing)
        assert isinstance(err, CorruptDeltaError) and "mutant.delta: the sample block is damaged" in str(err), err


def _flip_in_frame(raw: bytes, frame: bytes, at: int, offset: int, bit: int) -> bytes:
    mutant = bytearray(raw)
    mutant[raw.index(frame, at) + offset] ^= 1 << bit
    return bytes(mutant)


def _names_the_op(err: DeltaError | None, what: str, index: int, at: int) -> bool:
    return isinstance(err, CorruptDeltaError) and any(
        f"mutant.delta: {what} op {index} (at byte {at}): {cause}" in str(err) for cause in ("zstd frame", "bsdiff"))


def test_a_damaged_frame_is_named_by_its_op_and_offset(tmp_path, pair, target_referencing_pair):
    """The middle byte of every frame of some size flipped: the error names the delta, the op and
    where the op starts in the delta (before, most were "a compressed op does not decompress")."""
    tried = 0
    for old, new, _, raw in (pair, target_referencing_pair):
        for what, index, at, frame in _frames(raw):
            if what == "sample" or len(frame) < 64:
                continue
            err = _apply_error(old, new, _flip_in_frame(raw, frame, at, len(frame) // 2, 3), str(tmp_path))
            assert _names_the_op(err, what, index, at), (what, index, err)
            tried += 1
    assert tried >= 5


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_flip_in_a_frame_is_named_by_its_op_or_changes_nothing(tmp_path_factory, pair, target_referencing_pair, data):
    old, new, _, raw = (pair, target_referencing_pair)[data.draw(st.integers(0, 1), label="pair")]
    frames = [f for f in _frames(raw) if f[0] != "sample"]
    what, index, at, frame = frames[data.draw(st.integers(0, len(frames) - 1), label="frame")]
    offset = data.draw(st.integers(0, len(frame) - 1), label="offset")
    err = _apply_error(old, new, _flip_in_frame(raw, frame, at, offset, data.draw(st.integers(0, 7))),
                       str(tmp_path_factory.mktemp("frame")))
    # (a flip zstd does not see leaves the exact image; in the frame header a flip may instead announce
    # another size, refused by the op's length check)
    assert err is None or _names_the_op(err, what, index, at) or (
        isinstance(err, CorruptDeltaError) and f"op {index} " in str(err)), err


def test_a_target_hash_that_differs_late_is_shown_so_that_it_differs(tmp_path, pair):
    """A header whose target hash differs from the image's only in its last digit: the message shows
    both hashes far enough to tell them apart (it used to show the same 16 digits twice)."""
    old, new, _, raw = pair
    real = hashlib.sha256(open(new, "rb").read()).hexdigest()
    wrong = real[:-1] + ("0" if real[-1] != "0" else "1")

    def late(h):
        h["target"]["sha256"] = wrong

    (tmp_path / "d").write_bytes(_rewrite_header(raw, late))
    with pytest.raises(DeltaError) as info:
        apply_delta(old, str(tmp_path / "d"), str(tmp_path / "t.img"))
    assert f"hashes to {real}, expected {wrong}; the target has been marked invalid" in str(info.value)


def test_info_refuses_a_damaged_sample(tmp_path, pair):
    """`delta info` checks the sample as apply does first (the ops_sha256 it checks starts after it)."""
    from edge.cli.delta import delta_info

    _, _, _, raw = pair
    start = _ops_start(raw) - len(_frames(raw)[0][3])
    mutant = bytearray(raw)
    mutant[(start + _ops_start(raw)) // 2] ^= 0x10
    (tmp_path / "d").write_bytes(mutant)
    with pytest.raises(CorruptDeltaError, match="the sample block is damaged"):
        delta_info(str(tmp_path / "d"))


def _header_span(raw: bytes) -> tuple[int, int]:
    _, _, hlen = dfmt.PREAMBLE.unpack_from(raw)
    return dfmt.PREAMBLE.size, dfmt.PREAMBLE.size + hlen


def _unsealed(raw: bytes) -> bytes:
    """The delta as Edge wrote it before headers carried their hash."""
    start, end = _header_span(raw)
    obj = json.loads(raw[start:end])
    del obj[dfmt.HEADER_SHA256]
    header = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    magic, version, _ = dfmt.PREAMBLE.unpack_from(raw)
    return dfmt.PREAMBLE.pack(magic, version, len(header)) + header + raw[end:]


def test_the_generator_seals_its_header(pair):
    _, _, _, raw = pair
    start, end = _header_span(raw)
    obj = json.loads(raw[start:end])
    claimed = obj.pop(dfmt.HEADER_SHA256)
    assert claimed == hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_damaged_header_is_a_damaged_delta_before_anything_is_believed(tmp_path_factory, pair, data):
    """A flip in the header's JSON used to read as what the header then said: a source slot that is "not
    the image this delta was made from", a device that "cannot reproduce zstd level 18", a target marked
    invalid after a whole apply. Now it is the delta's damaged header, before the source is read."""
    old, _, _, raw = pair
    start, end = _header_span(raw)
    mutant = bytearray(raw)
    pos = data.draw(st.integers(start, end - 1), label="pos")
    mutant[pos] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    tmp = tmp_path_factory.mktemp("header")
    (tmp / "d").write_bytes(mutant)
    with pytest.raises(CorruptDeltaError) as info:
        apply_delta(old, str(tmp / "d"), str(tmp / "t.img"))
    assert str(info.value).startswith(f"{tmp / 'd'}: delta header is "), str(info.value)  # (damaged or malformed)
    assert not (tmp / "t.img").exists()


def test_a_delta_made_before_the_header_hash_still_applies(tmp_path, pair):
    old, new, _, raw = pair
    (tmp_path / "d").write_bytes(_unsealed(raw))
    apply_delta(old, str(tmp_path / "d"), str(tmp_path / "t.img"))
    assert (tmp_path / "t.img").read_bytes() == open(new, "rb").read()


def test_a_damaged_preamble_version_is_told_from_a_newer_format(tmp_path, pair):
    old, _, _, raw = pair
    _, version, _ = dfmt.PREAMBLE.unpack_from(raw)
    other = min(v for v in dfmt.READABLE_VERSIONS if v != version)
    (tmp_path / "d").write_bytes(raw[:8] + struct.pack("<I", other) + raw[12:])
    with pytest.raises(CorruptDeltaError, match=rf"the header says format {version}, the preamble {other}; "
                                                rf"the delta is damaged"):
        apply_delta(old, str(tmp_path / "d"), str(tmp_path / "t.img"))

    def newer(h):
        h["format"] = 99

    for name, delta in (("newer", _rewrite_header(raw, newer)), ("unsealed", _unsealed(raw))):
        (tmp_path / name).write_bytes(delta[:8] + struct.pack("<I", 99) + delta[12:])
        with pytest.raises(CorruptDeltaError, match="version 99 is not supported .* update Edge on this device"):
            apply_delta(old, str(tmp_path / name), str(tmp_path / "t.img"))
    (tmp_path / "sealed").write_bytes(raw[:8] + struct.pack("<I", 99) + raw[12:])
    with pytest.raises(CorruptDeltaError, match=f"the header says format {version}, the preamble 99; the delta is damaged"):
        apply_delta(old, str(tmp_path / "sealed"), str(tmp_path / "t.img"))


def test_a_damaged_name_of_the_header_hash_is_not_an_old_delta(tmp_path, pair):
    """A flip in the key "header_sha256" itself leaves a header without it: it is still refused, since
    the deltas made before the hash hold only fields Edge knew then."""
    old, _, _, raw = pair
    start, end = _header_span(raw)
    at = raw.index(dfmt.HEADER_SHA256.encode(), start, end) + 6  # the "_" of "header_sha256"
    mutant = bytearray(raw)
    mutant[at] ^= 0x01
    (tmp_path / "d").write_bytes(mutant)
    with pytest.raises(CorruptDeltaError, match=r"delta header is damaged: it has no header_sha256 and a field "
                                                r"'header\^sha256'"):
        apply_delta(old, str(tmp_path / "d"), str(tmp_path / "t.img"))


def test_a_sealed_header_may_carry_a_field_a_newer_edge_added(tmp_path, pair):
    old, new, _, raw = pair

    def newer(h):
        h["hint"] = {"anything": [1, 2]}

    (tmp_path / "d").write_bytes(_rewrite_header(raw, newer))
    apply_delta(old, str(tmp_path / "d"), str(tmp_path / "t.img"))
    assert (tmp_path / "t.img").read_bytes() == open(new, "rb").read()
