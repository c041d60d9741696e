"""lz4 and lzo images (read through the system liblz4 / liblzo2): options as mksquashfs writes them,
hostile options and blocks, and the native codecs' bounds."""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.squashfs import SquashfsError, SquashfsImage
from edge.squashfs import format as fmt
from edge.squashfs import native
from edge.squashfs.compressors import Codec, CodecError, codec_for_image
from tests.conftest import require_tool
from tests.squashfs.test_hypothesis import flip_bits_and_exercise

MKSQUASHFS_VARIANTS = {
    ("lz4",): dict(name="lz4", lz4_hc=False, level=1),
    ("lz4", "-Xhc"): dict(name="lz4", lz4_hc=True, level=12),
    ("lzo",): dict(name="lzo", lzo_algorithm=4, level=8),
    ("lzo", "-Xcompression-level", "2"): dict(name="lzo", lzo_algorithm=4, level=2),
    ("lzo", "-Xalgorithm", "lzo1x_1"): dict(name="lzo", lzo_algorithm=0, level=0),
    ("lzo", "-Xalgorithm", "lzo1x_1_12"): dict(name="lzo", lzo_algorithm=2, level=0),
}


def _tree(root: str) -> str:
    os.makedirs(os.path.join(root, "d"))
    with open(os.path.join(root, "d", "text"), "w") as fh:
        fh.write("".join(f"line {i} of a text file\n" for i in range(20000)))
    with open(os.path.join(root, "noise"), "wb") as fh:
        fh.write(os.urandom(70000))  # a block that lz4/lzo cannot shrink: stored uncompressed
    for i in range(30):
        with open(os.path.join(root, "d", f"small{i}"), "w") as fh:
            fh.write("tail " * i)
    os.symlink("d/text", os.path.join(root, "link"))
    return root


@functools.cache
def _images() -> dict[tuple[str, ...], bytes]:
    mk = require_tool("mksquashfs")
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = _tree(os.path.join(tmp, "src"))
        for variant in MKSQUASHFS_VARIANTS:
            image = os.path.join(tmp, "img")
            subprocess.run([mk, src, image, "-noappend", "-quiet", "-no-progress", "-b", "64K", "-comp", *variant],
                           check=True, capture_output=True)
            out[variant] = open(image, "rb").read()
    return out


@pytest.mark.parametrize("variant", list(MKSQUASHFS_VARIANTS), ids=lambda v: "-".join(v))
def test_codec_and_options_match_what_mksquashfs_wrote(tmp_path, variant):
    """The codec read from the image has mksquashfs' settings, and writing its options back gives
    the bytes mksquashfs stored (or none, where mksquashfs stores none)."""
    path = tmp_path / "img"
    path.write_bytes(_images()[variant])
    with SquashfsImage(str(path)) as img:
        for field, value in MKSQUASHFS_VARIANTS[variant].items():
            assert getattr(img.codec, field) == value, field
        assert img.codec.options() == img.compressor_options
        # every compressed data block comes back byte for byte from the codec (mksquashfs' calls)
        lay = img.layout()
        checked = 0
        with open(path, "rb") as fh:
            for f in lay.files:
                for b in f.blocks:
                    if b.compressed and b.stored_size:
                        fh.seek(b.offset)
                        raw = fh.read(b.stored_size)
                        plain = img.codec.decompress(raw, img.superblock.block_size)
                        assert img.codec.compress(plain) == raw
                        checked += 1
        assert checked > 0


@pytest.mark.parametrize("name, options, message", [
    ("lz4", b"\x02\x00\x00\x00\x00\x00\x00\x00", "stream version 2, not 1"),
    ("lz4", b"\x01\x00\x00\x00\x04\x00\x00\x00", "unknown flags 0x4"),
    ("lz4", b"\x01\x00\x00\x00\x01\x00\x00\x00\x05\x00\x00\x00", "unknown flags 0x1"),  # v2 without NON_DEFAULT
    ("lz4", b"\x01\x00\x00\x00\x03\x00\x00\x00\x0d\x00\x00\x00", "compression level 13 .* outside 1..12"),
    ("lz4", b"\x01\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00", "acceleration 0 .* outside 1..65537"),
    ("lz4", b"\x01\x00", "truncated"),
    ("lzo", b"\x09\x00\x00\x00\x00\x00\x00\x00", "algorithm 9"),
    ("lzo", b"\x04\x00\x00\x00\x0a\x00\x00\x00", "level 10 .* outside 1..9"),
    ("lzo", b"\x01\x00\x00\x00\x03\x00\x00\x00", "without levels"),
    ("lzo", b"\x04\x00\x00", "truncated"),
])
def test_bad_compressor_options_name_the_image_and_field(name, options, message):
    comp = fmt.COMP_LZ4 if name == "lz4" else fmt.COMP_LZO
    with pytest.raises(SquashfsError, match=f"^img.sqfs: .*{message}"):
        codec_for_image(comp, 131072, options, "img.sqfs")


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(["lz4", "lzo"]), options=st.binary(max_size=16))
def test_any_options_give_a_codec_or_a_squashfs_error(name, options):
    comp = fmt.COMP_LZ4 if name == "lz4" else fmt.COMP_LZO
    try:
        codec = codec_for_image(comp, 131072, options, "img")
    except SquashfsError:
        return
    if name == "lz4":
        assert 1 <= codec.level <= (12 if codec.lz4_hc else 65537)
    else:
        assert 0 <= codec.lzo_algorithm <= 4 and (codec.level == 0) == (codec.lzo_algorithm != 4)
    assert codec.compress(b"abc" * 1000)  # the settings are usable


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(["lz4", "lzo"]), data=st.binary(max_size=4096), limit=st.integers(0, 70000))
def test_hostile_blocks_raise_codec_error_and_stay_within_the_limit(name, data, limit):
    codec = Codec(name=name, level=1 if name == "lz4" else 8, block_size=65536)
    try:
        out = codec.decompress(data, limit)
    except CodecError as exc:
        assert name in str(exc)
        return
    assert len(out) <= limit


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=20000) | st.text(max_size=5000).map(str.encode),
       variant=st.sampled_from([("lz4", False, 1), ("lz4", False, 8), ("lz4", True, 12), ("lz4", True, 4),
                                ("lzo", 0, 0), ("lzo", 1, 0), ("lzo", 2, 0), ("lzo", 3, 0), ("lzo", 4, 1),
                                ("lzo", 4, 9)]))
def test_compressed_blocks_inflate_back(data, variant):
    name, mode, level = variant
    codec = (Codec(name, level, 65536, lz4_hc=mode) if name == "lz4" else Codec(name, level, 65536, lzo_algorithm=mode))
    packed = codec.compress(data)  # (20 KB always fits the 64 KiB output limit)
    assert codec.decompress(packed, len(data)) == data
    if data:
        with pytest.raises(CodecError):
            codec.decompress(packed, len(data) - 1)  # one byte less room than it needs


@pytest.mark.parametrize("name", ["lz4", "lzo"])
def test_blocks_past_the_output_limit_come_back_as_they_are(name):
    """mksquashfs limits the output to the block size and stores a block that does not fit raw."""
    codec = Codec(name, 1 if name == "lz4" else 8, 4096)
    noise = os.urandom(4096)
    assert codec.compress(noise) == noise
    lib = native.SystemLz4(False, 1) if name == "lz4" else native.SystemLzo(4, 8)
    assert lib.compress(noise, 4096) == b""
    assert codec.decompress(lib.compress(noise, 8192), 4096) == noise  # with room it does compress


@settings(max_examples=400, deadline=4000)
@given(variant=st.sampled_from(list(MKSQUASHFS_VARIANTS)), data=st.data())
def test_bit_flips_in_lz4_and_lzo_images_only_raise_squashfs_error(variant, data):
    flip_bits_and_exercise(_images()[variant], data)


def test_without_the_system_library_images_and_deltas_are_refused_with_what_to_install(tmp_path, monkeypatch):
    """A device without liblz4 (it is a separate Debian package) says so instead of failing on the first block."""
    from edge.delta import CannotReproduceError, apply_delta, make_delta

    old, new = tmp_path / "old.sqfs", tmp_path / "new.sqfs"
    old.write_bytes(_images()[("lz4",)])
    with open(_tree(str(tmp_path / "src")) + "/d/text", "a") as fh:
        fh.write("one more line\n")
    subprocess.run([require_tool("mksquashfs"), str(tmp_path / "src"), str(new), "-noappend", "-quiet", "-no-progress",
                    "-b", "64K", "-comp", "lz4"], check=True, capture_output=True)
    make_delta(str(old), str(new), str(tmp_path / "d"))

    def missing() -> str:
        raise native.NativeUnavailable("system liblz4 not found (test)")

    monkeypatch.setattr(native, "liblz4_version", missing)
    with pytest.raises(SquashfsError, match=r"old.sqfs: lz4 images need the system library .*install liblz4-1"):
        SquashfsImage(str(old))
    with pytest.raises(CannotReproduceError, match="cannot read the source slot's lz4 blocks .*send a full bundle"):
        apply_delta(str(old), str(tmp_path / "d"), str(tmp_path / "t.img"))
    assert not (tmp_path / "t.img").exists()
