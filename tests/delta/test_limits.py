"""Hostile headers, references and checkpoints: refused with CorruptDeltaError, bounded, or recovered from."""

from __future__ import annotations

import hashlib
import json
import io
import os
import struct
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.delta import CorruptDeltaError, DeltaError, apply_delta, make_delta
from edge.errors import UsageError
from edge.delta import format as dfmt
from edge.delta.apply import compressor_memory, rebuild_threads
from edge.delta.blocks import read_reference
from edge.delta.make import _check_limits
from edge.squashfs import format as sqfmt
from edge.squashfs.compressors import Codec
from tests.delta.helpers import op_spans
from tests.delta.test_errors import _rewrite_header


def _header(raw: bytes) -> dict:
    _, _, hlen = dfmt.PREAMBLE.unpack_from(raw)
    return json.loads(raw[dfmt.PREAMBLE.size : dfmt.PREAMBLE.size + hlen])


@pytest.mark.parametrize("field, value, message", [
    ("block_size", 8, "not a squashfs block size"),
    ("block_size", 3 << 20, "not a squashfs block size"),
    ("block_size", 1 << 40, "not a squashfs block size"),
    ("block_size", 100_000, "not a squashfs block size"),
    ("source_block_size", 1 << 60, "not a squashfs block size"),
    ("level", 99, "outside zstd's levels 1..22"),
    ("level", 10**30, "outside zstd's levels"),
    ("level", -1, "not a non-negative integer"),
    ("level", "19", "not a non-negative integer"),
    ("gzip_window", 99, "outside 8..15"),
    ("xz_dict_size", 1, "outside 8 KiB"),
    ("name", "lz5", "codec.name='lz5' is not one of"),
    ("lz4_hc", "yes", "codec.lz4_hc is not true or false"),
    ("lzo_algorithm", 7, "codec.lzo_algorithm=7 is not one of 0..4"),
    ("gzip_strategies", 32, "codec.gzip_strategies=32 has bits past the 5 gzip strategies"),
    ("gzip_strategies", "filtered", "codec.gzip_strategies is not a non-negative integer"),
    ("xz_filters", 1 << 40, "has bits past the 6 xz BCJ filters"),
    ("xz_filters", -1, "codec.xz_filters is not a non-negative integer"),
    ("impl", ["zstandard"], "codec.impl is not a string"),
])
def test_codec_fields_out_of_range_are_refused_before_anything_is_done(tmp_path, pair, field, value, message):
    old, _, _, raw = pair

    def change(h):
        h["codec"][field] = value

    (tmp_path / "d").write_bytes(_rewrite_header(raw, change))
    with pytest.raises(CorruptDeltaError, match=message):
        apply_delta(old, str(tmp_path / "d"), str(tmp_path / "t.img"))
    assert not (tmp_path / "t.img").exists()


@pytest.mark.parametrize("body, message", [
    (b'{"format": NaN}', "holds NaN"),
    (b'{"format": 2, "op_count": Infinity}', "holds Infinity"),
    (b"[" * 100_000 + b"]" * 100_000, "malformed"),
    (b'"just a string"', "not a JSON object"),
    (b'[1, 2]', "not a JSON object"),
])
def test_malformed_header_json_is_a_delta_error(body, message):
    with pytest.raises(CorruptDeltaError, match=message):
        dfmt.Header.from_json(body)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["format", "kind", "source", "target", "op_count", "codec", "sample_sha256",
                                        "stats", "ops_sha256", "generator"]), json_values),
       st.dictionaries(st.sampled_from(["name", "impl", "level", "block_size", "gzip_window", "xz_dict_size",
                                        "source_compressor", "source_block_size", "lz4_hc", "lzo_algorithm",
                                        "gzip_strategies", "xz_filters"]),
                       json_values | st.sampled_from(["lz4", "lzo"])))
def test_any_header_json_parses_or_is_refused_with_a_delta_error(top, codec):
    good = {"format": 2, "kind": "squashfs", "source": {"size": 1, "sha256": "0" * 64},
            "target": {"size": 1, "sha256": "1" * 64}, "op_count": 1,
            "codec": {"name": "zstd", "impl": "zstandard", "level": 19, "block_size": 131072}}
    good.update(top)
    if isinstance(good.get("codec"), dict):
        good["codec"] = {**good["codec"], **codec}
    try:
        header = dfmt.Header.from_json(json.dumps(good).encode())
    except CorruptDeltaError:
        return
    assert dfmt.Header.from_json(dfmt.seal_header(good)) == header  # (a sealed header reads the same)
    c = header.codec
    if c and c.get("name"):  # whatever was accepted is inside the ranges the applier relies on
        assert dfmt.MIN_BLOCK_SIZE <= c["block_size"] <= dfmt.MAX_BLOCK_SIZE
        lo, hi = dfmt.CODEC_LEVELS[c["name"]]
        assert lo <= c["level"] <= hi
        assert 0 <= c.get("gzip_strategies", 0) < 32 and 0 <= c.get("xz_filters", 0) < 64
        assert isinstance(c.get("lz4_hc", False), bool) and 0 <= c.get("lzo_algorithm", 4) <= 4
        if c["name"] == "lz4" and c.get("lz4_hc"):
            assert c["level"] <= 12
        if c["name"] == "lzo":
            assert (c["level"] == 0) == (c.get("lzo_algorithm", 4) != 4)


def test_blocks_ops_need_the_sample_check(tmp_path, pair):
    old, _, _, raw = pair

    def no_sample(h):
        h["sample_sha256"] = None

    (tmp_path / "d").write_bytes(_rewrite_header(raw, no_sample))
    with pytest.raises(CorruptDeltaError, match="without a sample block"):
        apply_delta(old, str(tmp_path / "d"), str(tmp_path / "t.img"))


def test_raw_literal_must_hold_exactly_its_length():
    op = bytes([dfmt.OP_LITERAL]) + dfmt.varint(10) + bytes([dfmt.ENC_RAW]) + dfmt.varint(4000) + bytes(4000)
    with pytest.raises(CorruptDeltaError, match="raw literal holds 4000 bytes for 10 target bytes"):
        dfmt.DeltaReader(io.BytesIO(op)).op()


def test_a_long_metadata_chain_is_refused_at_the_limit_not_at_its_end():
    block = sqfmt.U16.pack(8192 | sqfmt.METADATA_UNCOMPRESSED) + bytes(8192)
    chain_blocks = 4096  # a 32 MiB reference
    read = [0]

    def pread(offset: int, size: int) -> bytes:
        read[0] += size
        return block[(offset % len(block)) : (offset % len(block)) + size]

    codec = Codec("zstd", 19, 131072)
    with pytest.raises(CorruptDeltaError, match="reference exceeds 1048576 bytes"):
        read_reference((dfmt.SourceChain(0, chain_blocks * len(block)),), pread, codec, limit=1 << 20)
    assert read[0] <= (1 << 20) + 2 * len(block)


def test_holes_past_the_limit_are_refused_before_they_are_made():
    codec = Codec("zstd", 19, 1 << 20)
    holes = tuple(dfmt.SourceBlock(0, 0, 1 << 20) for _ in range(64))
    with pytest.raises(CorruptDeltaError, match="reference exceeds"):
        read_reference(holes, lambda o, n: b"", codec, limit=4 << 20)


def test_rebuild_threads_keep_compressor_state_bounded():
    big = Codec("zstd", 19, 1 << 20)
    small = Codec("zstd", 19, 128 << 10)
    assert compressor_memory(big) > 8 << 20  # zstd 19's tables for 1 MiB blocks
    assert rebuild_threads(big, 8) == 1
    assert rebuild_threads(small, 2) == 2
    assert rebuild_threads(small, 64) < 64
    assert rebuild_threads(None, 3) == 3
    assert rebuild_threads(Codec("xz", 9, 1 << 20), 4) == 1


def test_generator_refuses_ops_the_applier_would_refuse():
    too_long = dfmt.encode_op(dfmt.Literal(dfmt.MAX_OP_CONTENT + 1, dfmt.ENC_ZSTD, b"x"))
    with pytest.raises(DeltaError, match="the applier would refuse"):
        _check_limits([too_long])
    _check_limits([dfmt.encode_op(dfmt.Literal(3, dfmt.ENC_RAW, b"abc"))])


def test_the_header_names_the_ops(tmp_path, pair):
    old, new, delta, raw = pair
    other = str(tmp_path / "d3.delta")
    make_delta(old, new, other, level=3)
    a, b = _header(raw), _header(open(other, "rb").read())
    assert a["ops_sha256"] != b["ops_sha256"]  # same images, same header otherwise: the checkpoint id differs
    _, _, hlen = dfmt.PREAMBLE.unpack_from(raw)
    (slen,) = struct.unpack_from("<I", raw, dfmt.PREAMBLE.size + hlen)
    assert hashlib.sha256(raw[dfmt.PREAMBLE.size + hlen + 4 + slen:]).hexdigest() == a["ops_sha256"]


def _interrupted(old: str, delta: str, target: str, state: str) -> dict:
    """Apply until the second checkpoint, then stop as a power cut would; the checkpoint left behind."""
    seen = []

    class Cut(Exception):
        pass

    def hook(st):
        seen.append(st)
        if len(seen) == 2:
            raise Cut

    with pytest.raises(Cut):
        apply_delta(old, delta, target, state_path=state, on_checkpoint=hook, checkpoint_bytes=1)
    return json.load(open(state))


@pytest.mark.parametrize("damage", [
    lambda s, other: s.update(op="Infinity"),
    lambda s, other: s.update(op=-1),
    lambda s, other: s.update(delta_pos=s["delta_pos"] + 1),
    lambda s, other: s.update(target_pos=s["target_pos"] + 4096),
    lambda s, other: s.update(head="zz"),
    lambda s, other: s.update(delta=other),  # another delta's checkpoint, same header id
])
def test_a_checkpoint_that_does_not_fit_restarts_the_apply(tmp_path, pair, damage):
    old, new, delta, _ = pair
    other = str(tmp_path / "other.delta")
    make_delta(old, new, other, level=3)
    target, state = str(tmp_path / "t.img"), str(tmp_path / "t.state")
    saved = _interrupted(old, other, target, state)
    # the state now belongs to `other`; point it at `delta` (as two deltas with one header id would) and damage it
    raw = open(delta, "rb").read()
    saved["delta"] = dfmt.header_id(raw[dfmt.PREAMBLE.size : dfmt.PREAMBLE.size + dfmt.PREAMBLE.unpack_from(raw)[2]])
    damage(saved, saved["delta"])
    with open(state, "w") as fh:
        json.dump(saved, fh)
    result = apply_delta(old, delta, target, state_path=state)
    assert open(target, "rb").read() == open(new, "rb").read()
    assert result.sha256 == hashlib.sha256(open(new, "rb").read()).hexdigest()
    assert not os.path.exists(state)


def test_a_target_filesystem_without_room_is_refused_before_writing(tmp_path, pair):
    old, new, delta, _ = pair
    small = tmp_path / "small"
    small.mkdir()
    size = os.path.getsize(new)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size // 2}", "tmpfs", str(small)], check=True)
    try:
        with pytest.raises(DeltaError, match=f"the image needs {size} bytes and its filesystem has room for"):
            apply_delta(old, delta, str(small / "t.img"), state_path=str(tmp_path / "state"))
        assert os.listdir(small) == []  # the empty target it had created is not left behind
        (small / "t.img").write_bytes(b"mine")  # a target that was there before stays as it was
        with pytest.raises(DeltaError, match="its filesystem has room for"):
            apply_delta(old, delta, str(small / "t.img"), state_path=str(tmp_path / "state"))
        assert (small / "t.img").read_bytes() == b"mine"
    finally:
        subprocess.run(["umount", str(small)], check=True)


@pytest.mark.parametrize("text, expected", [("16M", 16 << 20), ("1G", 1 << 30), ("64k", 64 << 10), ("65536", 65536),
                                            ("2MiB", 2 << 20)])
def test_checkpoint_every_takes_sizes(text, expected):
    from edge.cli.units import parse_size
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["0", "-5M", "lots", "", "1T"])
def test_checkpoint_every_refuses_what_is_not_a_size(tmp_path, pair, capsys, text):
    from edge.cli import main
    old, _, delta, _ = pair
    with pytest.raises(SystemExit) as exit_:
        main(["delta", "apply", old, delta, "-o", str(tmp_path / "t"), f"--checkpoint-every={text}"])
    assert exit_.value.code == 2
    assert "--checkpoint-every" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


def test_a_cut_download_after_a_resume_keeps_the_checkpoint(tmp_path, pair):
    from edge.delta import TruncatedDeltaError
    old, new, delta, raw = pair
    target, state = str(tmp_path / "t.img"), str(tmp_path / "t.state")
    saved = _interrupted(old, delta, target, state)
    cut = tmp_path / "cut.delta"  # the same delta, as far as a download got before the link dropped again
    at = (saved["delta_pos"] + len(raw)) // 2
    cut.write_bytes(raw[:at])
    # the error names the op the stream ended in, counted from the delta's first op, not from the resume
    index = next(i for i, (start, end) in enumerate(op_spans(raw)) if start < at < end or start == at)
    assert saved["op"] > 0  # (so an index counted from the resume would name another op)
    with pytest.raises(TruncatedDeltaError, match=rf"truncated: .* \(op {index}, at byte \d+\)$"):
        apply_delta(old, str(cut), target, state_path=state)
    kept = json.load(open(state))
    assert kept["status"] == "applying" and kept["op"] >= saved["op"]  # not thrown away by a restart
    result = apply_delta(old, delta, target, state_path=state)
    assert result.resumed_at_op == kept["op"]
    assert open(target, "rb").read() == open(new, "rb").read()


def test_make_refuses_to_replace_a_device_node_or_fifo(tmp_path, pair):
    old, new, _, _ = pair
    node = str(tmp_path / "null")
    os.mknod(node, 0o666 | 0o020000, os.makedev(1, 3))  # a character device, as /dev/null
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    for out in (node, fifo, str(tmp_path)):
        with pytest.raises(UsageError, match="not a regular file"):
            make_delta(old, new, out)
    assert os.path.exists(node) and not os.path.isfile(node)
    with pytest.raises(UsageError, match="does not exist"):
        make_delta(old, new, str(tmp_path / "no" / "such" / "d.delta"))


def test_a_damaged_new_image_gets_a_byte_level_delta_that_reproduces_it(tmp_path, pair):
    """A corrupt compressed block in NEW (the squashfs planner cannot decompress it): the delta still
    turns OLD into exactly those bytes, through the generic path."""
    old, new, _, _ = pair
    img = bytearray(open(new, "rb").read())
    img[96 + 200 : 96 + 216] = bytes(16)  # inside the first data block
    bad = tmp_path / "bad.sqfs"
    bad.write_bytes(img)
    result = make_delta(old, str(bad), str(tmp_path / "d.delta"))
    apply_delta(old, str(tmp_path / "d.delta"), str(tmp_path / "t.img"))
    assert open(tmp_path / "t.img", "rb").read() == bytes(img)
    assert result.kind in ("generic", "squashfs")


def test_apply_of_1mib_zstd19_blocks_stays_under_64mib(tmp_path):
    """The heaviest compressor state there is (zstd 19 with 1 MiB blocks: 17 MiB) next to the largest
    references (10 MiB): `edge delta apply` peaked at 68 MiB before the rebuild context was freed
    between ops and dictionary patches were decoded against the reference in place."""
    import random
    import subprocess
    import sys

    from edge.delta import make_delta
    from edge.squashfs import BytesContent, Entry, Kind, Tree, WriterOptions, write_image

    rnd = random.Random(3)
    words = [bytes(rnd.choice(b"abcdefghijklmnop") for _ in range(rnd.randint(2, 9))) for _ in range(3000)]
    base = bytearray(b" ".join(rnd.choice(words) for _ in range(14_000_000 // 5))[:14_000_000])

    def image(path: str, seed: int) -> str:
        data = bytearray(base)
        e = random.Random(seed)
        for _ in range(len(data) // 20_000):
            p = e.randrange(len(data) - 8)
            data[p : p + 8] = e.randbytes(8)
        entries = [Entry("", Kind.DIR, mode=0o755, mtime=1), Entry("big.txt", Kind.FILE, mtime=1, content=BytesContent(bytes(data)))]
        write_image(Tree.from_entries(entries), path, WriterOptions(level=19, block_size=1 << 20, mtime=1))
        return path

    old, new = image(str(tmp_path / "old.sqfs"), 1), image(str(tmp_path / "new.sqfs"), 2)
    delta = str(tmp_path / "d.delta")
    result = make_delta(old, new, delta)
    assert result.ops.get("blocks", 0) >= 3
    out = str(tmp_path / "out.img")
    # a small parent runs the command: a child forked from pytest itself would count pytest's pages
    # (ru_maxrss spans the time before exec)
    launcher = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL); "
                "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    proc = subprocess.run([sys.executable, "-c", launcher, sys.executable, "-m", "edge", "delta", "apply", old, delta,
                           "-o", out], capture_output=True, text=True, check=True)
    rc, peak_kib = map(int, proc.stdout.split())
    assert rc == 0, proc.stderr
    assert open(out, "rb").read() == open(new, "rb").read()
    assert peak_kib < 64 << 10, f"peak RSS {peak_kib >> 10} MiB"
