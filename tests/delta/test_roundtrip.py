"""Deltas between many image pairs apply to byte-identical targets."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edge.delta import apply_delta, make_delta
from edge.squashfs.compressors import Codec
from edge.squashfs import BytesContent, Entry, Kind
from tests.conftest import run_edge
from tests.delta.helpers import base_entries, code_blob, edit, mksquashfs_pair, text_blob, write


def roundtrip(tmp, old: str, new: str, **kw) -> tuple[int, object]:
    delta = os.path.join(tmp, "d.delta")
    result = make_delta(old, new, delta, **kw)
    out = os.path.join(tmp, "out.img")
    if os.path.exists(out):
        os.unlink(out)
    apply_delta(old, delta, out)
    assert open(out, "rb").read() == open(new, "rb").read()
    return result.size, result


@pytest.mark.parametrize("comp,level", [("zstd", 19), ("zstd", 3), ("xz", None), ("gzip", None)])
@pytest.mark.parametrize("fragments", [True, False])
def test_edge_images_every_compressor(tmp_path, comp, level, fragments):
    old = write(base_entries(1), str(tmp_path / "old.sqfs"), compressor=comp, level=level, fragments=fragments)
    new = write(edit(base_entries(1), 1), str(tmp_path / "new.sqfs"), compressor=comp, level=level, fragments=fragments)
    size, result = roundtrip(str(tmp_path), old, new)
    assert result.kind == "squashfs" and result.unreproducible_blocks == 0
    assert result.ops.get("blocks", 0) > 0
    assert size < os.path.getsize(new) / 5


@pytest.mark.parametrize("comp", ["zstd", "xz", "gzip", "lz4", "lz4 -Xhc", "lz4 -Xhc -b 64K", "lzo",
                                  "lzo -Xalgorithm lzo1x_1", "lzo -Xalgorithm lzo1x_1_11", "lzo -Xalgorithm lzo1x_1_12",
                                  "lzo -Xalgorithm lzo1x_1_15", "lzo -Xcompression-level 3"])
def test_mksquashfs_images(tmp_path, comp):
    old, new = mksquashfs_pair(str(tmp_path), base_entries(2), edit(base_entries(2), 2), "-comp", *comp.split())
    size, result = roundtrip(str(tmp_path), old, new)
    assert result.kind == "squashfs"
    assert result.unreproducible_blocks == 0, "system libzstd / liblzma / zlib / liblz4 / liblzo2 reproduce mksquashfs blocks"
    assert result.ops.get("blocks", 0) > 0
    assert size < os.path.getsize(tmp_path / "new.sqfs") / 5


def _with_a_program(entries: list[Entry], patched: bool) -> list[Entry]:
    """The tree plus a real x86-64 program (this machine's bash), in the new tree with a few bytes
    patched as a security fix would: xz's BCJ filter wins on most of its blocks."""
    code = bytearray(open("/usr/bin/bash", "rb").read())
    if patched:
        for p in range(4096, len(code), len(code) // 7):
            code[p : p + 6] = b"\x90" * 6
    return [*entries, Entry("usr/bin/bash", Kind.FILE, mode=0o755, content=BytesContent(bytes(code)))]


@pytest.mark.parametrize("options", [
    "-comp xz -Xbcj x86", "-comp xz -Xbcj arm,x86,sparc -Xdict-size 64K", "-comp xz -Xbcj x86 -b 4K",
    "-comp gzip -Xstrategy filtered", "-comp gzip -Xstrategy default,filtered,huffman_only,run_length_encoded,fixed",
    "-comp lzma", "-comp xz -noI -noD -noF -noX", "-comp gzip -noD -noF",
])
def test_mksquashfs_per_block_choices_legacy_lzma_and_stored_images(tmp_path, options):
    """mksquashfs compresses each data block with every -Xbcj filter (xz) or -Xstrategy (gzip) given and
    keeps the smallest; legacy lzma writes the size into its header; -noD/-noI leave blocks stored.
    Every one of these is rebuilt on the device: no block travels as a literal, and the delta applies."""
    old, new = mksquashfs_pair(str(tmp_path), _with_a_program(base_entries(4), patched=False),
                               _with_a_program(edit(base_entries(4), 4), patched=True), *options.split())
    size, result = roundtrip(str(tmp_path), old, new)
    assert result.kind == "squashfs" and result.unreproducible_blocks == 0
    assert result.ops.get("blocks", 0) > 0
    assert size < os.path.getsize(tmp_path / "new.sqfs") / 5
    # format 4 where an older Edge would rebuild these blocks differently (it refuses 4 before writing)
    info = json.loads(run_edge("delta", "info", str(tmp_path / "d.delta"), "--json").stdout)
    assert info["format"] == (4 if options != "-comp gzip -noD -noF" else 2)


def test_the_compressor_library_is_told_apart_when_the_samples_tie(tmp_path):
    """zstd level 19, 4 KiB blocks, stored inode and directory tables, and files whose first blocks are
    runs of one line: every sampled block comes out the same from python-zstandard and the system
    libzstd (which mksquashfs used), so the first library was taken, and the blocks of real text it
    compresses differently travelled as literals. More blocks now decide between libraries that tie."""
    import random

    rnd = random.Random(1)
    entries = [Entry("", Kind.DIR, mode=0o755, mtime=1000)]
    entries += [Entry(f"many/file-{i:04d}", Kind.FILE, content=BytesContent((b"text %d\n" % i) * rnd.randint(700, 3000)))
                for i in range(30)]
    entries.append(Entry("many/file-0015b", Kind.FILE, content=BytesContent(b"header\n" * 600 + text_blob(rnd, 200_000))))
    old, new = mksquashfs_pair(str(tmp_path), entries, edit(entries, 1, changes=4), "-comp", "zstd",
                               "-Xcompression-level", "19", "-b", "4K", "-noI")
    _, result = roundtrip(str(tmp_path), old, new)
    assert result.codec.startswith("libzstd") and result.unreproducible_blocks == 0


def test_libraries_are_scored_on_the_samples_each_on_its_own():
    """The sample blocks of both zstd libraries are compressed together on a pool: each library's count
    is its own; with ``every`` (the first round: only "rebuilds them all" counts) a library stops at its
    first miss; a library that fails to run scores -1."""
    from concurrent.futures import ThreadPoolExecutor

    import random

    from edge.delta.make import _reproduced
    from edge.delta.format import MODE_DATA
    from edge.squashfs.compressors import available_impls

    if available_impls("zstd") != ["zstandard", "libzstd"]:
        pytest.fail(f"both zstd libraries are installed by `make` (python-zstandard, libzstd1): {available_impls('zstd')}")
    ours, system = (Codec("zstd", 19, 128 << 10, impl=impl) for impl in ("zstandard", "libzstd"))
    rnd = random.Random(3)
    plains = [text_blob(rnd, 128 << 10) for _ in range(6)]
    samples = [(MODE_DATA, p, ours.compress(p)) for p in plains]
    theirs = [system.compress(p) for p in plains]
    agree = sum(a == b for (_, _, a), b in zip(samples, theirs))
    assert agree < len(samples)  # 128 KiB of text at level 19: the two libraries' bytes differ
    broken = Codec("zstd", 19, 128 << 10, impl="no-such-library")
    with ThreadPoolExecutor(max_workers=2) as pool:
        assert _reproduced([ours, system, broken], samples, pool) == [len(samples), agree, -1]
        assert _reproduced([system, ours], samples, pool) == [agree, len(samples)]
        first, all_of_them = _reproduced([system, ours], samples, pool, every=True)
        assert first < len(samples) and all_of_them == len(samples)


def test_a_sample_comes_from_a_rebuilt_block_when_the_images_sample_blocks_do_not_serve(tmp_path, monkeypatch):
    """The blocks make_delta samples to identify the compressor may all be damaged; a block that was
    rebuilt and matched then serves as the sample the device checks before writing."""
    import edge.delta.make as make_module

    old = write(base_entries(6), str(tmp_path / "old.sqfs"), compressor="zstd", level=19)
    new = write(edit(base_entries(6), 6), str(tmp_path / "new.sqfs"), compressor="zstd", level=19)
    monkeypatch.setattr(make_module, "_codec_samples", lambda img, fd, **more: [])
    _, result = roundtrip(str(tmp_path), old, new)
    assert result.unreproducible_blocks == 0 and result.ops.get("blocks", 0) > 0
    info = json.loads(run_edge("delta", "info", str(tmp_path / "d.delta"), "--json").stdout)
    assert info["sample_bytes"] > 0


def _sample_of(delta: str) -> bytes:
    from edge.delta.format import DeltaReader
    from edge.delta.patches import unzstd

    with open(delta, "rb") as fh:
        _, _, frame = DeltaReader(fh).preamble()
    return unzstd(frame, 1 << 20)


def test_the_sample_is_cheap_and_tells_the_implementations_apart(tmp_path):
    """The sample (32 KiB of a block the device recompresses before writing anything) is the cheapest
    sampled one on which the system libzstd and python-zstandard disagree: a device with another
    library fails the check. The program that comes first in the image would cost about 17 KB in the
    delta; the cheapest text block compresses the same with both libraries at level 15 (so the check
    would pass on a device that cannot reproduce the blocks)."""
    import random

    rnd = random.Random(9)
    entries = [Entry("", Kind.DIR, mode=0o755, mtime=1000),
               Entry("a/bash", Kind.FILE, content=BytesContent(open("/usr/bin/bash", "rb").read()[:400_000]))]
    entries += [Entry(f"b{i}.txt", Kind.FILE, content=BytesContent(text_blob(rnd, 150_000))) for i in range(6)]
    old, new = mksquashfs_pair(str(tmp_path), entries, edit(entries, 9, changes=3), "-comp", "zstd")
    _, result = roundtrip(str(tmp_path), old, new)
    assert result.codec.startswith("libzstd")
    info = json.loads(run_edge("delta", "info", str(tmp_path / "d.delta"), "--json").stdout)
    assert 0 < info["sample_bytes"] < 8_000
    sample = _sample_of(str(tmp_path / "d.delta"))
    system = Codec(name="zstd", level=15, block_size=131072, impl="libzstd")
    bundled = Codec(name="zstd", level=15, block_size=131072, impl="zstandard")
    assert system.compress(sample) != bundled.compress(sample)


def test_renamed_small_files_are_found_for_their_fragment_blocks(tmp_path):
    """Small files live in fragment blocks; moving a tenth of them to another directory reorders those
    blocks. Their content is found by content (as for whole blocks), so the fragments are patched
    against the old fragments that held them: without that the delta was 14x larger (41,840 B)."""
    import random

    rnd = random.Random(3)
    files = {f"etc/f{i:03d}.conf": rnd.randbytes(1500) for i in range(300)}
    moved = {(f"z/{n}" if i % 10 == 3 else n): d for i, (n, d) in enumerate(files.items())}

    def tree(named: dict[str, bytes]) -> list[Entry]:
        return [Entry("", Kind.DIR, mode=0o755, mtime=1000)] + [Entry(n, Kind.FILE, content=BytesContent(d)) for n, d in named.items()]

    old = write(tree(files), str(tmp_path / "old.sqfs"), compressor="zstd", level=19)
    new = write(tree(moved), str(tmp_path / "new.sqfs"), compressor="zstd", level=19)
    size, result = roundtrip(str(tmp_path), old, new)
    assert result.unreproducible_blocks == 0
    assert size < 6_000


def test_compressor_change_between_versions(tmp_path):
    old = write(base_entries(3), str(tmp_path / "old.sqfs"), compressor="xz")
    new = write(edit(base_entries(3), 3), str(tmp_path / "new.sqfs"), compressor="zstd", level=19)
    roundtrip(str(tmp_path), old, new)


def test_identical_images(tmp_path):
    old = write(base_entries(4), str(tmp_path / "old.sqfs"))
    size, result = roundtrip(str(tmp_path), old, old)
    assert set(result.ops) <= {"copy", "zero"} and size < 1000


def test_non_squashfs_files(tmp_path):
    import random

    rnd = random.Random(5)
    a = rnd.randbytes(3_000_000)
    b = bytearray(a)
    b[100_000:100_010] = b"0123456789"
    b[2_000_000:2_000_000] = rnd.randbytes(5000)  # an insertion shifts everything after it
    (tmp_path / "a.bin").write_bytes(a)
    (tmp_path / "b.bin").write_bytes(bytes(b))
    size, result = roundtrip(str(tmp_path), str(tmp_path / "a.bin"), str(tmp_path / "b.bin"))
    assert result.kind == "generic" and size < 60_000


def _info(delta: str) -> dict:
    """What `edge delta info --json` says of ``delta``."""
    import json

    return json.loads(run_edge("delta", "info", delta, "--json").stdout)


def _encodings(delta: str) -> dict:
    return _info(delta)["patch_encodings"]


@pytest.mark.parametrize("comp,level", [("zstd", 19), ("xz", None)])
def test_relinked_executable_travels_as_bsdiff(tmp_path, comp, level):
    """A library rebuilt with its addresses moved: its blocks are carried by a bsdiff patch (smaller than
    the dictionary patch) and rebuilt byte for byte."""
    lib = "usr/lib/libcode.so.1"
    old_entries = base_entries(6, files=10) + [Entry(lib, Kind.FILE, content=BytesContent(code_blob(6, 120_000)))]
    new_entries = edit(base_entries(6, files=10), 6, changes=2) + [
        Entry(lib, Kind.FILE, content=BytesContent(code_blob(6, 120_000, shift=0x40, insert_at=60_000)))]
    old = write(old_entries, str(tmp_path / "old.sqfs"), compressor=comp, level=level)
    new = write(new_entries, str(tmp_path / "new.sqfs"), compressor=comp, level=level)
    size, result = roundtrip(str(tmp_path), old, new)
    enc = _encodings(str(tmp_path / "d.delta"))
    assert enc["bsdiff"]["ops"] >= 1 and enc["bsdiff"]["content_bytes"] >= 700_000  # the library's blocks
    assert enc["bsdiff"]["patch_bytes"] < 40_000  # a dictionary patch needs 53 KB for this library


def test_non_squashfs_relinked_code_travels_as_bsdiff(tmp_path):
    (tmp_path / "a.bin").write_bytes(code_blob(8, 200_000))
    (tmp_path / "b.bin").write_bytes(code_blob(8, 200_000, shift=0x80, insert_at=10_000))
    size, result = roundtrip(str(tmp_path), str(tmp_path / "a.bin"), str(tmp_path / "b.bin"))
    assert result.kind == "generic" and _encodings(str(tmp_path / "d.delta"))["bsdiff"]["ops"] >= 1


def test_non_squashfs_content_moved_far_at_an_odd_offset(tmp_path):
    """Blocks moved further than any patch window, to offsets that are not 4 KiB aligned, are
    still found (anchored fingerprints at every byte offset) and sent as copies."""
    import random

    rnd = random.Random(7)
    a = rnd.randbytes(20 << 20)
    b = rnd.randbytes((1 << 20) + 3) + a[12 << 20 :] + bytes(10_000) + a[: 8 << 20] + b"tail"
    (tmp_path / "a.bin").write_bytes(a)
    (tmp_path / "b.bin").write_bytes(b)
    size, result = roundtrip(str(tmp_path), str(tmp_path / "a.bin"), str(tmp_path / "b.bin"))
    assert result.kind == "generic" and result.ops.get("copy", 0) >= 2
    assert size < (1 << 20) + 64_000, "moved content was sent again instead of copied"


def _delta_format(delta: str) -> int:
    return _info(delta)["format"]


@pytest.mark.parametrize("first_at", ["start", "middle"])
def test_non_squashfs_new_content_repeated_is_sent_once(tmp_path, first_at):
    """New content that appears twice in the target (in no source window) travels once: the second
    patch refers to the target bytes the first one wrote, also when they sit in the held-back head."""
    import random

    rnd = random.Random(11)
    a = rnd.randbytes(6 << 20)
    blob = rnd.randbytes(300_000)  # new, incompressible
    if first_at == "start":
        b = blob + a[: 3 << 20] + blob + a[3 << 20 :]
    else:
        b = a[: 1 << 20] + blob + a[1 << 20 : 5 << 20] + blob + a[5 << 20 :]
    (tmp_path / "a.bin").write_bytes(a)
    (tmp_path / "b.bin").write_bytes(b)
    size, result = roundtrip(str(tmp_path), str(tmp_path / "a.bin"), str(tmp_path / "b.bin"))
    assert result.kind == "generic" and size < 1.2 * len(blob), "the repeated new content was sent twice"
    assert _delta_format(str(tmp_path / "d.delta")) == 3


def test_target_references_read_back_from_a_block_device(tmp_path):
    """The inactive slot as a real block device (a loop device): the bytes a patch refers to are read
    back through it, the held-back first 4 KiB from memory, and the slot ends up holding the new file."""
    import random
    import subprocess

    rnd = random.Random(14)
    a = rnd.randbytes(2 << 20)
    blob = rnd.randbytes(200_000)
    b = blob + a[: 1 << 20] + blob + a[1 << 20 :]
    (tmp_path / "a.bin").write_bytes(a)
    (tmp_path / "b.bin").write_bytes(b)
    delta = str(tmp_path / "d.delta")
    make_delta(str(tmp_path / "a.bin"), str(tmp_path / "b.bin"), delta)
    assert _delta_format(delta) == 3
    backing = tmp_path / "slot-b.img"
    backing.write_bytes(b"\xa5" * (len(b) + (1 << 20)))  # stale bytes where nothing was written yet
    dev = subprocess.run(["losetup", "--find", "--show", str(backing)], check=True, capture_output=True,
                         text=True).stdout.strip()
    try:
        apply_delta(str(tmp_path / "a.bin"), delta, dev, state_path=str(tmp_path / "state"))
        with open(dev, "rb") as fh:
            assert fh.read(len(b)) == b
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def test_a_delta_without_target_references_stays_format_2(tmp_path):
    """Devices with an older Edge (format 2) still take every delta that does not need format 3."""
    import random

    rnd = random.Random(12)
    a = rnd.randbytes(1 << 20)
    (tmp_path / "a.bin").write_bytes(a)
    (tmp_path / "b.bin").write_bytes(a[:500_000] + b"changed" + a[500_000:])
    roundtrip(str(tmp_path), str(tmp_path / "a.bin"), str(tmp_path / "b.bin"))
    assert _delta_format(str(tmp_path / "d.delta")) == 2


def test_a_resumed_apply_refers_to_target_bytes_written_before_the_interruption(tmp_path):
    import random

    rnd = random.Random(13)
    a = rnd.randbytes(6 << 20)
    blob = rnd.randbytes(400_000)
    b = a[: 1 << 20] + blob + a[1 << 20 : 5 << 20] + blob + a[5 << 20 :]
    (tmp_path / "a.bin").write_bytes(a)
    (tmp_path / "b.bin").write_bytes(b)
    delta, target, state = str(tmp_path / "d.delta"), str(tmp_path / "t.bin"), str(tmp_path / "s.json")
    make_delta(str(tmp_path / "a.bin"), str(tmp_path / "b.bin"), delta)
    assert _delta_format(delta) == 3

    class Die(Exception):
        pass

    def die_past_the_first_blob(st):
        if st["target_pos"] >= (1 << 20) + len(blob):
            raise Die

    with pytest.raises(Die):
        apply_delta(str(tmp_path / "a.bin"), delta, target, state_path=state, checkpoint_bytes=64 << 10,
                    on_checkpoint=die_past_the_first_blob)
    done = apply_delta(str(tmp_path / "a.bin"), delta, target, state_path=state, checkpoint_bytes=64 << 10)
    assert done.resumed_at_op is not None and done.resumed_at_pos < 5 << 20
    assert open(target, "rb").read() == b


def test_a_patch_referring_to_target_bytes_not_yet_written_is_refused(tmp_path):
    import hashlib

    from edge.delta import CorruptDeltaError
    from edge.delta import format as dfmt

    (tmp_path / "a.bin").write_bytes(b"a" * 1000)
    content = b"b" * 1000
    op = dfmt.Patch(0, 1000, 1000, dfmt.ENC_RAW, content, hashlib.sha256(content).digest(), ((0, 500),))
    header = dfmt.Header("generic", 1000, hashlib.sha256(b"a" * 1000).hexdigest(), 1000,
                         hashlib.sha256(content).hexdigest(), 1, version=3)
    (tmp_path / "d.delta").write_bytes(dfmt.encode_preamble(header, None) + dfmt.encode_op(op) + dfmt.END)
    with pytest.raises(CorruptDeltaError, match="refers to target bytes 0..500, not written before it"):
        apply_delta(str(tmp_path / "a.bin"), str(tmp_path / "d.delta"), str(tmp_path / "t.bin"))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000),
       layout=st.lists(st.one_of(st.tuples(st.just("src"), st.integers(0, 15), st.integers(1, 64)),
                                 st.tuples(st.just("new"), st.integers(0, 2), st.integers(1, 64))), min_size=1, max_size=10))
def test_random_pairs_with_repeated_new_content(tmp_path_factory, seed, layout):
    """Targets made of source pieces and a few new pieces that repeat (whole or cut, in any order):
    byte-identical after the apply, whichever earlier target bytes the patches refer to."""
    import random

    rnd = random.Random(seed)
    a = rnd.randbytes(1 << 20)
    news = [rnd.randbytes(64 << 10) for _ in range(3)]
    b = bytearray()
    for kind, which, kib in layout:
        piece = a[which << 16 :] if kind == "src" else news[which]
        b += piece[: kib << 10]
    tmp = tmp_path_factory.mktemp("repeat")
    (tmp / "a").write_bytes(a)
    (tmp / "b").write_bytes(bytes(b))
    roundtrip(str(tmp), str(tmp / "a"), str(tmp / "b"))


_BLOCKS = [bytes([i + 1]) * 7 + os.urandom(4089) for i in range(6)]


@settings(max_examples=60, deadline=None)
@given(pieces=st.lists(st.one_of(st.tuples(st.just("src"), st.integers(0, 5), st.integers(0, 4096)),
                                 st.tuples(st.just("new"), st.binary(min_size=1, max_size=9000)),
                                 st.tuples(st.just("zero"), st.integers(1, 10_000))), max_size=12))
def test_generic_plan_tiles_the_target(tmp_path_factory, pieces):
    """Whatever the target, the plan covers it exactly once, front to back, every copy holds the
    target's bytes at the source offset it names and every zero fill is zeros."""
    from edge.delta.generic_plan import DraftPatch, plan
    from edge.delta.squashfs_plan import DraftCopy, DraftZero

    tmp = tmp_path_factory.mktemp("plan")
    source = b"".join(_BLOCKS) + b"xyz"
    target = bytearray()
    whole: list[int] = []  # target offsets where a whole source block sits
    for piece in pieces:
        if piece[0] == "src":
            start, length = piece[1] * 4096 + piece[2] // 2, piece[2] + 4096
            first = -(-start // 4096)
            for k in range(first, 6):
                if k * 4096 + 4096 <= min(start + length, 6 * 4096):
                    whole.append(len(target) + k * 4096 - start)
            target += source[start : start + length]
        elif piece[0] == "new":
            target += piece[1]
        else:
            target += bytes(piece[1])
    (tmp / "s").write_bytes(source)
    (tmp / "t").write_bytes(bytes(target))
    sfd, tfd = os.open(tmp / "s", os.O_RDONLY), os.open(tmp / "t", os.O_RDONLY)
    try:
        drafts = plan(sfd, len(source), tfd, len(target))
    finally:
        os.close(sfd)
        os.close(tfd)
    pos = 0
    for d in drafts:
        assert d.offset == pos and d.length > 0
        chunk = bytes(target[pos : pos + d.length])
        if isinstance(d, DraftCopy):
            assert source[d.src : d.src + d.length] == chunk
        elif isinstance(d, DraftZero):
            assert chunk == bytes(d.length)
        else:
            assert isinstance(d, DraftPatch) and 0 <= d.src <= d.src + d.src_len <= len(source)
        pos += d.length
    assert pos == len(target)
    # every whole source block that the target holds is copied, wherever it sits
    copies = [(d.offset, d.offset + d.length) for d in drafts if isinstance(d, DraftCopy)]
    for at in whole:
        assert any(lo <= at and at + 4096 <= hi for lo, hi in copies), f"the source block at target offset {at} was not found"


def test_squashfs_to_non_squashfs(tmp_path):
    old = write(base_entries(6), str(tmp_path / "old.sqfs"))
    (tmp_path / "new.bin").write_bytes(open(old, "rb").read()[::-1])
    _, result = roundtrip(str(tmp_path), old, str(tmp_path / "new.bin"))
    assert result.kind == "generic"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), changes=st.integers(0, 12), comp=st.sampled_from(["zstd", "xz", "gzip"]),
       bs=st.sampled_from([4096, 65536, 131072]), fragments=st.booleans(), tails=st.booleans())
@example(seed=4306, changes=3, comp="zstd", bs=4096, fragments=False, tails=False)  # a file truncated, then edited again
def test_random_pairs(tmp_path_factory, seed, changes, comp, bs, fragments, tails):
    tmp = str(tmp_path_factory.mktemp("pair"))
    base = base_entries(seed, files=25)
    opts = dict(compressor=comp, block_size=bs, fragments=fragments, always_fragments=tails and fragments)
    old = write(base, os.path.join(tmp, "old.sqfs"), **opts)
    new = write(edit(base, seed, changes), os.path.join(tmp, "new.sqfs"), **opts)
    _, result = roundtrip(tmp, old, new)
    assert result.unreproducible_blocks == 0


MKSQUASHFS_OPTIONS = ["-comp zstd", "-comp zstd -Xcompression-level 19", "-comp zstd -Xcompression-level 3", "-comp xz",
                      "-comp gzip", "-comp gzip -Xcompression-level 1", "-comp lz4", "-comp lz4 -Xhc", "-comp lzo",
                      "-comp lzo -Xalgorithm lzo1x_1", "-comp lzo -Xalgorithm lzo1x_1_15", "-comp lzo -Xcompression-level 1",
                      "-comp xz -Xbcj x86", "-comp gzip -Xstrategy filtered,huffman_only", "-comp lzma"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), changes=st.integers(0, 10), options=st.sampled_from(MKSQUASHFS_OPTIONS),
       bs=st.sampled_from(["4K", "64K", "128K", "1M"]), frag=st.sampled_from([[], ["-no-fragments"], ["-always-use-fragments"]]),
       dedup=st.booleans())
def test_random_mksquashfs_pairs(tmp_path_factory, seed, changes, options, bs, frag, dedup):
    """Random trees and edits written by the real mksquashfs with every compressor it has: the applied
    image is byte-identical to the new one and every block is rebuilt, none shipped as a literal."""
    tmp = str(tmp_path_factory.mktemp("mkpair"))
    base = base_entries(seed, files=20)
    old, new = mksquashfs_pair(tmp, base, edit(base, seed, changes), *options.split(), "-b", bs, *frag,
                               *([] if dedup else ["-no-duplicates"]))
    _, result = roundtrip(tmp, old, new)
    assert result.kind == "squashfs" and result.unreproducible_blocks == 0


@settings(max_examples=25, deadline=None)
@given(a=st.binary(min_size=0, max_size=30_000), edits=st.lists(st.tuples(st.integers(0, 30_000), st.binary(max_size=300)), max_size=5))
def test_random_generic_pairs(tmp_path_factory, a, edits):
    tmp = tmp_path_factory.mktemp("generic")
    b = bytearray(a)
    for pos, data in edits:
        b[pos:pos] = data
    (tmp / "a").write_bytes(a)
    (tmp / "b").write_bytes(bytes(b))
    roundtrip(str(tmp), str(tmp / "a"), str(tmp / "b"))


def test_apply_streams_a_delta_from_a_url(tmp_path):
    """`edge delta apply OLD URL`: ranged GETs, and a connection dropped mid-delta picks up where it broke."""
    import http.server
    import threading

    from tests.conftest import run_edge
    from tests.rangeserver import RangeHandler

    old = write(base_entries(21), str(tmp_path / "old.sqfs"), compressor="zstd", level=19)
    new = write(edit(base_entries(21), 21), str(tmp_path / "new.sqfs"), compressor="zstd", level=19)
    make_delta(old, new, str(tmp_path / "d.delta"))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    srv.root, srv.requests, srv.drop_after = str(tmp_path), [], os.path.getsize(tmp_path / "d.delta") // 2
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{srv.server_address[1]}"
        out = str(tmp_path / "out.img")
        run_edge("delta", "apply", old, f"{base}/d.delta", "-o", out)
        assert open(out, "rb").read() == open(new, "rb").read()
        assert any(start > 0 for _, start in srv.requests)  # resumed at a byte offset, not from the start
        missing = run_edge("delta", "apply", old, f"{base}/nope.delta", "-o", str(tmp_path / "x.img"), check=False)
        assert missing.returncode != 0 and "HTTP 404" in missing.stderr and "Traceback" not in missing.stderr
        # `delta info URL` reads it the same way, and says what the local file says
        remote = json.loads(run_edge("delta", "info", f"{base}/d.delta", "--json").stdout)
        local = json.loads(run_edge("delta", "info", str(tmp_path / "d.delta"), "--json").stdout)
        assert remote.pop("delta") != local.pop("delta") and remote == local
        assert remote["size"] == os.path.getsize(tmp_path / "d.delta")
        missing = run_edge("delta", "info", f"{base}/nope.delta", check=False)
        assert missing.returncode == 14 and missing.stderr.count("\n") == 1 and "HTTP 404" in missing.stderr
    finally:
        srv.shutdown()


def test_a_url_apply_survives_a_link_that_drops_every_connection(tmp_path):
    """Every answer is cut short of its Content-Length (http.client reports that as end of data):
    the stream reopens at the byte where it broke, each time, and the image comes out right."""
    import http.server
    import threading

    from tests.conftest import run_edge
    from tests.rangeserver import RangeHandler

    old = write(base_entries(23), str(tmp_path / "old.sqfs"), compressor="zstd", level=19)
    new = write(edit(base_entries(23), 23), str(tmp_path / "new.sqfs"), compressor="zstd", level=19)
    make_delta(old, new, str(tmp_path / "d.delta"))
    size = os.path.getsize(tmp_path / "d.delta")
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    srv.root, srv.requests, srv.drop_every = str(tmp_path), [], max(4096, size // 6)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        out = str(tmp_path / "out.img")
        run_edge("delta", "apply", old, f"http://127.0.0.1:{srv.server_address[1]}/d.delta", "-o", out)
        assert open(out, "rb").read() == open(new, "rb").read()
        starts = [start for _, start in srv.requests]
        assert len(starts) >= 6 and starts == sorted(starts)  # reopened forward each time, never from the start again
    finally:
        srv.shutdown()


def test_huge_sparse_files_in_both_images(tmp_path):
    """A file declaring 400,000 blocks (1.6 GB, all holes but the first) in an 8 KiB image: the changed
    first block travels as a small patch (holes neither join the changed run nor fill the reference)."""
    from tests.squashfs.test_hostile import sparse_bomb

    import random

    noise = random.Random(5).randbytes(3000)
    old, new = tmp_path / "old.sqfs", tmp_path / "new.sqfs"
    old.write_bytes(sparse_bomb(400_000, 2, first=b"version 1" + noise))
    new.write_bytes(sparse_bomb(400_000, 2, first=b"version 2" + noise))
    size, result = roundtrip(str(tmp_path), str(old), str(new))
    assert result.kind == "squashfs" and result.ops.get("blocks") == 1
    assert result.op_bytes["blocks"] < 200, "a patch against the old first block, not megabytes of holes"


@pytest.mark.parametrize("comp, change, message", [
    ("lz4 -Xhc", {"lz4_hc": False}, "cannot reproduce lz4 acceleration 12 blocks byte for byte"),
    ("lzo", {"lzo_algorithm": 3, "level": 0}, r"cannot reproduce lzo \(lzo1x_1_15\) blocks byte for byte"),
])
def test_lz4_and_lzo_settings_in_the_header_are_checked_on_the_sample(tmp_path, comp, change, message):
    """A delta whose lz4/lzo settings do not reproduce the image's blocks stops before writing."""
    from edge.delta import CannotReproduceError
    from tests.delta.test_errors import _rewrite_header

    old, _ = mksquashfs_pair(str(tmp_path), base_entries(5), edit(base_entries(5), 5), "-comp", *comp.split())
    make_delta(old, str(tmp_path / "new.sqfs"), str(tmp_path / "d"))
    (tmp_path / "bad").write_bytes(_rewrite_header((tmp_path / "d").read_bytes(), lambda h: h["codec"].update(change)))
    with pytest.raises(CannotReproduceError, match=message + ".*send a full bundle"):
        apply_delta(str(tmp_path / "old.sqfs"), str(tmp_path / "bad"), str(tmp_path / "t.img"))
    assert not (tmp_path / "t.img").exists()
