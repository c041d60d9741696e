"""Docker archives and OCI layouts at their edges: links inside archives, several images, platforms, broken blobs."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile

import pytest

from edge.build.archive import Archive
from edge.build.blobs import BlobCache
from edge.build.errors import SourceError
from edge.build.images import DockerArchive, OciLayout, platform_matches
from edge.build.sample import write_oci_layout, write_rootfs
from tests.build.helpers import tar_bytes


@pytest.fixture
def cache(tmp_path):
    with BlobCache(str(tmp_path)) as c:
        yield c


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def outer_tar(path, members: list[tuple[str, bytes | None, str]]) -> None:
    """(name, data, symlink or hardlink target) -> a tar archive."""
    with tarfile.open(path, "w") as tar:
        for name, data, link in members:
            info = tarfile.TarInfo(name)
            if link.startswith("sym:"):
                info.type, info.linkname = tarfile.SYMTYPE, link[4:]
            elif link.startswith("hard:"):
                info.type, info.linkname = tarfile.LNKTYPE, link[5:]
            else:
                info.size = len(data or b"")
            tar.addfile(info, io.BytesIO(data) if data is not None and not link else None)


def test_archive_follows_links_inside_only(tmp_path, cache):
    path = tmp_path / "a.tar"
    outer_tar(path, [("./dir/real.tar", b"payload", ""), ("id/layer.tar", None, "sym:../dir/real.tar"),
                     ("hard", None, "hard:dir/real.tar"), ("escape", None, "sym:../../etc/passwd")])
    archive = Archive(str(path), cache, "archive")
    for name in ("dir/real.tar", "id/layer.tar", "hard"):
        loc = archive.locate(name)
        assert loc is not None and path.read_bytes()[loc.start:loc.start + loc.length] == b"payload"
    assert archive.locate("missing") is None
    with pytest.raises(SourceError, match="escape links outside the archive"):
        archive.locate("escape")


def docker_archive(path, images: list[tuple[list[str], list[bytes], bool]]) -> list[str]:
    """A docker-save style archive; returns the image IDs. Each image: (tags, layer tars, gzip the layers)."""
    members: list[tuple[str, bytes | None, str]] = []
    manifest = []
    ids = []
    for tags, layers, compress in images:
        names = []
        for layer in layers:
            stored = gzip.compress(layer, mtime=0) if compress else layer
            name = f"{hashlib.sha256(stored).hexdigest()}.tar"
            members.append((name, stored, ""))
            names.append(name)
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": [sha(layer) for layer in layers]}}).encode()
        config_name = f"{hashlib.sha256(config).hexdigest()}.json"
        members.append((config_name, config, ""))
        manifest.append({"Config": config_name, "RepoTags": tags, "Layers": names})
        ids.append(sha(config))
    members.append(("manifest.json", json.dumps(manifest).encode(), ""))
    outer_tar(path, members)
    return ids


def test_docker_archive_with_several_images_and_gzip_layers(tmp_path, cache):
    one = tar_bytes([("etc/one", "file", {"data": b"1"})])
    two = tar_bytes([("etc/two", "file", {"data": b"2"})])
    path = tmp_path / "multi.tar"
    ids = docker_archive(path, [(["docker.io/library/app:1.0"], [one], True), (["localhost/other:latest"], [two], False)])
    with pytest.raises(SourceError, match=r"holds several images \(docker.io/library/app:1.0, localhost/other:latest\)"):
        DockerArchive(str(path), cache, ref=None, written="multi.tar")
    for ref, image_id in (("app:1.0", ids[0]), ("app", ids[0]), ("1.0", ids[0]), ("other", ids[1])):
        selection = DockerArchive(str(path), cache, ref=ref, written="multi.tar").select("x86_64")
        assert selection.digest == image_id, ref
    selection = DockerArchive(str(path), cache, ref="app", written="multi.tar").select("x86_64")
    (layer,) = selection.layers
    view = cache.uncompressed(layer.location.path, layer.location.start, layer.location.length, label=layer.label,
                              diff_id=layer.diff_id)
    assert view.compression == "gzip" and view.plain_digest == sha(one)


def test_docker_layer_not_matching_its_diff_id(tmp_path, cache):
    layer = tar_bytes([("etc/x", "file", {"data": b"x"})])
    path = tmp_path / "bad.tar"
    docker_archive(path, [(["a:1"], [layer], False)])
    data = bytearray(path.read_bytes())
    at = data.find(b"etc/x")
    data[at:at + 5] = b"etc/y"  # a changed layer (its tar checksum fixed up is not needed: the digest catches it first)
    path.write_bytes(bytes(data))
    (ref,) = DockerArchive(str(path), cache, ref=None, written="bad.tar").select("x86_64").layers
    with pytest.raises(SourceError, match=f"layer {ref.diff_id} .*does not match diff_id {ref.diff_id}"):
        cache.uncompressed(ref.location.path, ref.location.start, ref.location.length, label=ref.label, diff_id=ref.diff_id)


@pytest.fixture
def layout(tmp_path):
    roots = {}
    for arch in ("x86_64", "aarch64"):
        roots[arch] = str(tmp_path / f"root-{arch}")
        write_rootfs(roots[arch], arch)
    path = tmp_path / "oci"
    write_oci_layout(str(path), roots, ref="multi")
    return path


def test_oci_platform_selection(layout, cache):
    oci = OciLayout(str(layout), cache, ref="multi", written="oci")
    assert oci.select("x86_64").platform == "linux/amd64"
    assert oci.select("aarch64").platform == "linux/arm64/v8"
    assert platform_matches({"os": "linux", "architecture": "arm64"}, "aarch64")
    assert not platform_matches({"os": "linux", "architecture": "arm", "variant": "v7"}, "aarch64")
    assert not platform_matches({"os": "windows", "architecture": "amd64"}, "x86_64")
    assert not platform_matches({"architecture": "arm64", "variant": "v9"}, "aarch64")


def test_oci_several_refs_need_a_choice(layout, cache):
    index = json.loads((layout / "index.json").read_text())
    twin = dict(index["manifests"][0], annotations={"org.opencontainers.image.ref.name": "other"})
    index["manifests"].append(twin)
    (layout / "index.json").write_text(json.dumps(index))
    with pytest.raises(SourceError, match=r"holds several images \(multi, other\); choose one with source.ref"):
        OciLayout(str(layout), cache, ref=None, written="oci").select("x86_64")
    assert OciLayout(str(layout), cache, ref="other", written="oci").select("x86_64").platform == "linux/amd64"


def test_oci_corrupt_or_missing_blobs(layout, cache):
    index = json.loads((layout / "index.json").read_text())
    top = layout / "blobs/sha256" / index["manifests"][0]["digest"].split(":")[1]
    nested = json.loads(top.read_bytes())
    manifest_blob = layout / "blobs/sha256" / nested["manifests"][0]["digest"].split(":")[1]
    original = manifest_blob.read_bytes()
    manifest_blob.write_bytes(original.replace(b'"schemaVersion":2', b'"schemaVersion":3'))
    with pytest.raises(SourceError, match="manifest sha256:[0-9a-f]{64} does not match its digest"):
        OciLayout(str(layout), cache, ref="multi", written="oci").select("aarch64")
    os.unlink(manifest_blob)
    with pytest.raises(SourceError, match=r"manifest sha256:[0-9a-f]{64} is missing \(no blobs/sha256/"):
        OciLayout(str(layout), cache, ref="multi", written="oci").select("aarch64")
    (layout / "index.json").write_text('{"manifests": "nope"}')
    with pytest.raises(SourceError, match="index.json has no 'manifests' list"):
        OciLayout(str(layout), cache, ref=None, written="oci").select("x86_64")
    (layout / "index.json").write_text("{not json")
    with pytest.raises(SourceError, match="index.json: not valid JSON"):
        OciLayout(str(layout), cache, ref=None, written="oci")
