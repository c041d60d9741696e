"""The blob cache: decompression checked against the real gzip/xz/zstd/bzip2 tools, digests, truncation, bombs."""

from __future__ import annotations

import hashlib
import os

import pytest
import zstandard

from edge.build.blobs import CHUNK, BlobCache, _zstd_stream
from edge.build.errors import SourceError
from tests.conftest import require_tool, run

TOOLS = {"gzip": ("gzip", "-c", "-6"), "xz": ("xz", "-c", "-T1"), "zstd": ("zstd", "-q", "-c"), "bzip2": ("bzip2", "-c")}


@pytest.fixture
def payload(tmp_path):
    data = os.urandom(300_000) + b"compressible text " * 200_000
    path = tmp_path / "payload.tar"
    path.write_bytes(data)
    return path, data


def compress(tool: str, src, dest) -> bytes:
    argv = TOOLS[tool]
    out = run(require_tool(argv[0]), *argv[1:], str(src), text=False).stdout
    dest.write_bytes(out)
    return out


def sha(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_decompresses_what_the_real_tool_wrote(tmp_path, payload, tool):
    src, data = payload
    blob = tmp_path / f"blob.{tool}"
    stored = compress(tool, src, blob)
    with BlobCache(str(tmp_path)) as cache:
        view = cache.uncompressed(str(blob), 0, len(stored), label="layer x", digest=sha(stored), diff_id=sha(data))
        assert view.compression == tool
        with open(view.region.path, "rb") as fh:
            fh.seek(view.region.start)
            assert fh.read(view.region.size) == data
        assert view.stored_digest == sha(stored) and view.plain_digest == sha(data)
        assert cache.stats.decompressed == 1
        # the second request is served from the cache, without reading again
        again = cache.uncompressed(str(blob), 0, len(stored), label="layer x", digest=sha(stored))
        assert again == view and cache.stats.blobs_read == 1


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_concatenated_streams(tmp_path, tool):
    parts = [b"first part\n" * 1000, b"second part\n" * 3000]
    stored = b""
    for i, part in enumerate(parts):
        src = tmp_path / f"p{i}"
        src.write_bytes(part)
        stored += compress(tool, src, tmp_path / f"p{i}.c")
    blob = tmp_path / "multi"
    blob.write_bytes(stored)
    with BlobCache(str(tmp_path)) as cache:
        view = cache.uncompressed(str(blob), 0, len(stored), label="layer", diff_id=sha(b"".join(parts)))
        assert view.region.size == sum(map(len, parts))


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_truncated_stream_is_an_error_naming_the_layer(tmp_path, payload, tool):
    src, _ = payload
    stored = compress(tool, src, tmp_path / "full")
    cut = tmp_path / "cut"
    cut.write_bytes(stored[: len(stored) * 2 // 3])
    with BlobCache(str(tmp_path)) as cache, pytest.raises(SourceError, match=r"layer sha256:1234: (truncated|corrupt)"):
        cache.uncompressed(str(cut), 0, cut.stat().st_size, label="layer sha256:1234")


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_garbage_after_the_stream_is_an_error_but_zero_padding_is_not(tmp_path, tool):
    part = tmp_path / "part"
    part.write_bytes(b"data\n" * 100)
    stored = compress(tool, part, tmp_path / "c")
    padded = tmp_path / "padded"
    padded.write_bytes(stored + bytes(1000))
    garbage = tmp_path / "garbage"
    garbage.write_bytes(stored + b"\x01 not a stream \x02" * 3)
    with BlobCache(str(tmp_path)) as cache:
        assert cache.uncompressed(str(padded), 0, padded.stat().st_size, label="l").region.size == 500
        with pytest.raises(SourceError, match="layer q: "):
            cache.uncompressed(str(garbage), 0, garbage.stat().st_size, label="layer q")


def test_digest_mismatch_names_the_digest(tmp_path):
    blob = tmp_path / "blob"
    blob.write_bytes(b"not what the manifest says")
    wrong = "sha256:" + "ab" * 32
    with BlobCache(str(tmp_path)) as cache, pytest.raises(SourceError, match=f"does not match its digest {wrong}"):
        cache.uncompressed(str(blob), 0, blob.stat().st_size, label=f"layer {wrong}", digest=wrong)


def test_diff_id_mismatch_is_an_error(tmp_path):
    blob = tmp_path / "blob.tar"
    blob.write_bytes(b"x" * 1024)
    wrong = "sha256:" + "cd" * 32
    with BlobCache(str(tmp_path)) as cache, pytest.raises(SourceError, match=f"does not match diff_id {wrong}"):
        cache.uncompressed(str(blob), 0, 1024, label="layer", diff_id=wrong)


def test_malformed_digest_is_refused(tmp_path):
    blob = tmp_path / "blob"
    blob.write_bytes(b"x")
    with BlobCache(str(tmp_path)) as cache, pytest.raises(SourceError, match="not a sha256/sha512 digest"):
        cache.uncompressed(str(blob), 0, 1, label="layer", digest="md5:abc")


def test_uncompressed_blob_is_used_in_place(tmp_path):
    blob = tmp_path / "outer"
    blob.write_bytes(b"HEAD" + b"plain tar bytes" + b"TAIL")
    with BlobCache(str(tmp_path)) as cache:
        view = cache.uncompressed(str(blob), 4, 15, label="layer", diff_id=sha(b"plain tar bytes"))
        assert (view.region.path, view.region.start, view.region.end) == (str(blob), 4, 19)
        assert cache.stats.decompressed == 0 and os.listdir(cache.dir) == []


def test_zstd_bomb_inflates_block_by_block(tmp_path):
    bomb = zstandard.ZstdCompressor(level=19).compress(bytes(64 << 20))
    path = tmp_path / "bomb.zst"
    path.write_bytes(bomb)
    assert len(bomb) < 64 << 10
    largest = 0
    total = 0
    for piece in _zstd_stream(str(path), 0, len(bomb), hashlib.sha256(), "bomb", None):
        largest = max(largest, len(piece))
        total += len(piece)
    assert total == 64 << 20
    assert largest <= 128 << 10  # never more than one zstd block in memory


def test_gzip_output_is_bounded_per_step(tmp_path):
    src = tmp_path / "zeros"
    src.write_bytes(bytes(32 << 20))
    stored = compress("gzip", src, tmp_path / "zeros.gz")
    from edge.build import blobs

    sizes = [len(p) for p in blobs._multistream(iter([stored]), "gzip", "bomb")]
    assert sum(sizes) == 32 << 20 and max(sizes) <= CHUNK


def test_cache_directory_is_removed(tmp_path):
    src = tmp_path / "p"
    src.write_bytes(b"abc" * 1000)
    stored = compress("gzip", src, tmp_path / "p.gz")
    cache = BlobCache(str(tmp_path))
    cache.uncompressed(str(tmp_path / "p.gz"), 0, len(stored), label="l")
    assert os.listdir(cache.dir)
    cache.close()
    assert not os.path.exists(cache.dir)
