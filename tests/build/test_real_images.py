"""Images made by tools we did not write: umoci OCI layouts and skopeo docker archives, built and checked with unsquashfs.

The OCI layout gets four layers from umoci: a base tree (owners, modes,
xattrs, hard links, a device, a fifo, symlinks, a real x86_64 ELF /bin/sh),
a layer deleting ``/etc/b`` (``.wh.b``), one replacing ``/opt`` with an opaque
directory (``.wh..wh..opq``) and one rewriting ``/etc/a`` (which breaks its
hard link).  skopeo turns it into a docker-save archive.  Each image Edge
builds is extracted with the real unsquashfs and compared file by file with
the expected merged tree (built by hand with cp/rm) and with umoci's own
unpacked root filesystem.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess

import pytest

from edge.build.pipeline import build
from edge.build.recipe import load_recipe
from edge.build.sample import minimal_elf
from edge.treediff import differences, snapshot
from tests.build.helpers import drop_edge_info, image_tree, make_board, write_recipe
from tests.conftest import require_root, require_tool, run

T = 1_650_000_000


def set_times(root, t: int) -> None:
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (t, t), follow_symlinks=False)
    os.utime(root, (t, t))


def make_base_tree(src) -> None:
    os.makedirs(src / "etc")
    os.makedirs(src / "usr/bin")
    os.makedirs(src / "sbin")
    os.makedirs(src / "opt/old")
    os.makedirs(src / "opt/keep")
    os.makedirs(src / "home/user")
    os.makedirs(src / "var/empty")
    (src / "etc/a").write_bytes(b"version 1\n")
    os.chmod(src / "etc/a", 0o640)
    os.chown(src / "etc/a", 1000, 2000)
    os.setxattr(src / "etc/a", "user.edge", b"kept through layers")
    os.link(src / "etc/a", src / "etc/a.hard")
    (src / "etc/b").write_bytes(b"deleted by a whiteout\n")
    os.mknod(src / "etc/null", 0o666 | 0o020000, os.makedev(1, 3))
    os.mkfifo(src / "etc/fifo")
    (src / "usr/bin/sh").write_bytes(minimal_elf("x86_64"))
    os.chmod(src / "usr/bin/sh", 0o755)
    (src / "usr/bin/su").write_bytes(b"setuid\n")
    os.chmod(src / "usr/bin/su", 0o4755)
    os.symlink("usr/bin", src / "bin")
    os.symlink("../usr/bin/sh", src / "sbin/init")
    os.symlink("/nonexistent/absolute/target", src / "etc/dangling")
    (src / "opt/old/f").write_bytes(b"hidden by the opaque layer\n")
    (src / "opt/keep/k").write_bytes(b"hidden too\n")
    os.chown(src / "home/user", 1000, 1000)
    os.chmod(src / "home/user", 0o750)
    os.chmod(src / "var/empty", 0o700)
    (src / ("etc/ünïcödé " + "x" * 150)).write_bytes(b"a long utf-8 name\n")
    set_times(src, T)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """The umoci OCI layout, skopeo's docker archive of it, umoci's unpacked rootfs and the expected tree."""
    require_root()
    umoci = require_tool("umoci")
    skopeo = require_tool("skopeo")
    base = tmp_path_factory.mktemp("real")
    src, newopt = base / "src", base / "newopt"
    make_base_tree(src)
    os.makedirs(newopt / "new")
    (newopt / "new/file").write_bytes(b"only this survives in /opt\n")
    os.chmod(newopt, 0o711)
    set_times(newopt, T + 100)
    a2 = base / "a-v2"
    a2.write_bytes(b"version 2\n")
    os.utime(a2, (T + 200, T + 200))
    oci = base / "oci"
    run(umoci, "init", "--layout", str(oci))
    run(umoci, "new", "--image", f"{oci}:base")
    run(umoci, "insert", "--image", f"{oci}:base", str(src), "/")
    run(umoci, "insert", "--image", f"{oci}:base", "--whiteout", "/etc/b")
    run(umoci, "insert", "--image", f"{oci}:base", "--opaque", str(newopt), "/opt")
    run(umoci, "insert", "--image", f"{oci}:base", str(a2), "/etc/a")
    # the expected merged tree, made the plain way
    expected = base / "expected"
    run("cp", "-a", str(src), str(expected))
    os.unlink(expected / "etc/b")
    shutil.rmtree(expected / "opt")
    run("cp", "-a", str(newopt), str(expected / "opt"))
    os.unlink(expected / "etc/a")
    run("cp", "-a", str(a2), str(expected / "etc/a"))
    os.utime(expected / "etc", (T, T))
    os.utime(expected, (T, T))  # rm/cp above touched the directories they changed
    # umoci's own application of the layers
    bundle = base / "bundle"
    run(umoci, "unpack", "--image", f"{oci}:base", str(bundle))
    archive = base / "docker.tar"
    run(skopeo, "--insecure-policy", "copy", "--quiet", f"oci:{oci}:base", f"docker-archive:{archive}:edge/base:v1")
    return {"oci": oci, "archive": archive, "expected": str(expected), "umoci_rootfs": str(bundle / "rootfs"), "base": base}


@pytest.fixture(scope="module")
def boards(tmp_path_factory):
    return make_board(tmp_path_factory.mktemp("boards"), "testbox", "x86_64")


def build_one(tmp_path, boards, source: str, name="r") -> dict:
    recipe = write_recipe(tmp_path / f"{name}.yaml", f"""\
        name: real
        version: 1.0.0
        boards: [testbox]
        source: {source}
        source_date_epoch: {T + 1000}
    """)
    result = build(load_recipe(recipe, env={}), outdir=str(tmp_path / f"out-{name}"), bsp_paths=[boards])
    (board,) = result.boards
    return {"image": board.image, "metadata": board.metadata, "result": result}


def compare(image, reference: str, dest) -> list[str]:
    want = snapshot(reference)
    got = drop_edge_info(image_tree(image, dest), want)
    return differences(want, got)


def test_umoci_layout_matches_the_expected_tree_and_umoci_unpack(tmp_path, images, boards):
    built = build_one(tmp_path, boards, f"{{oci: {images['oci']}, ref: base}}")
    assert compare(built["image"], images["expected"], tmp_path / "x1") == []
    assert compare(built["image"], images["umoci_rootfs"], tmp_path / "x2") == []
    tree = snapshot(images["expected"])
    assert "etc/b" not in tree and "opt/old" not in tree and tree["etc/a.hard"].link_group == ""  # the fixture means it
    index = json.loads((images["oci"] / "index.json").read_text())
    assert built["metadata"]["source_digest"] == index["manifests"][0]["digest"]
    assert built["result"].layers_applied == 4


def test_skopeo_docker_archive_gives_the_same_image(tmp_path, images, boards):
    from_oci = build_one(tmp_path, boards, f"{{oci: {images['oci']}}}", "oci")
    from_docker = build_one(tmp_path, boards, f"{{docker-archive: {images['archive']}}}", "docker")
    assert compare(from_docker["image"], images["expected"], tmp_path / "x") == []
    # the same tree gives the same bytes, whatever container format carried it
    assert from_docker["metadata"]["sha256"] == from_oci["metadata"]["sha256"]
    manifest = json.loads(subprocess.run(["tar", "-xOf", str(images["archive"]), "manifest.json"], capture_output=True, check=True).stdout)
    config_name = manifest[0]["Config"]
    config = subprocess.run(["tar", "-xOf", str(images["archive"]), config_name], capture_output=True, check=True).stdout
    assert from_docker["metadata"]["source_digest"] == f"sha256:{hashlib.sha256(config).hexdigest()}"
    assert from_docker["result"].blobs.decompressed == 0  # uncompressed layers are read in place inside the archive


def test_docker_archive_by_tag_and_compressed(tmp_path, images, boards):
    gz = tmp_path / "docker.tar.gz"
    gz.write_bytes(gzip.compress(images["archive"].read_bytes(), mtime=0))
    plain = build_one(tmp_path, boards, f"{{docker-archive: {images['archive']}, ref: 'edge/base:v1'}}", "tag")
    packed = build_one(tmp_path, boards, f"{{docker-archive: {gz}, ref: v1}}", "gz")
    assert packed["metadata"]["sha256"] == plain["metadata"]["sha256"]
    with pytest.raises(Exception, match=r"no image tagged 'v2' \(tags: .*edge/base:v1"):
        build_one(tmp_path, boards, f"{{docker-archive: {images['archive']}, ref: v2}}", "v2")


def test_oci_layout_as_a_tarball(tmp_path, images, boards):
    tarball = tmp_path / "oci.tar"
    run("tar", "-C", str(images["oci"]), "-cf", str(tarball), ".")
    from_dir = build_one(tmp_path, boards, f"{{oci: {images['oci']}, ref: base}}", "dir")
    from_tar = build_one(tmp_path, boards, f"{{oci: {tarball}, ref: base}}", "tar")
    assert from_tar["metadata"]["sha256"] == from_dir["metadata"]["sha256"]


def test_corrupt_layer_names_its_digest(tmp_path, images, boards):
    oci = tmp_path / "oci"
    shutil.copytree(images["oci"], oci)
    index = json.loads((oci / "index.json").read_text())
    manifest = json.loads((oci / "blobs/sha256" / index["manifests"][0]["digest"].split(":")[1]).read_text())
    layer = manifest["layers"][0]["digest"]
    blob = oci / "blobs/sha256" / layer.split(":")[1]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    recipe = write_recipe(tmp_path / "r.yaml", f"name: x\nversion: 1.0.0\nboards: [testbox]\nsource: {{oci: {oci}}}\n")
    result = subprocess.run([shutil.which("edge") or os.path.join(os.path.dirname(os.sys.executable), "edge"),
                             "build", recipe, "-o", str(tmp_path / "out"), "--bsp-path", boards],
                            capture_output=True, text=True)
    assert result.returncode == 6, result.stderr
    assert f"layer {layer}" in result.stderr and "\n" not in result.stderr.strip()
    assert os.listdir(tmp_path / "out") == []  # nothing half-written


def test_truncated_layer_names_its_digest(tmp_path, images, boards):
    oci = tmp_path / "oci"
    shutil.copytree(images["oci"], oci)
    blobs = oci / "blobs/sha256"
    index = json.loads((oci / "index.json").read_text())
    manifest = json.loads((blobs / index["manifests"][0]["digest"].split(":")[1]).read_text())
    layer = manifest["layers"][0]["digest"]
    blob = blobs / layer.split(":")[1]
    blob.write_bytes(blob.read_bytes()[:-40])
    recipe = load_recipe(write_recipe(tmp_path / "r.yaml", f"name: x\nversion: 1.0.0\nboards: [testbox]\nsource: {{oci: {oci}}}\n"), env={})
    from edge.build.errors import SourceError

    with pytest.raises(SourceError, match=f"layer 0 {layer} has {blob.stat().st_size} bytes, its descriptor says"):
        build(recipe, outdir=str(tmp_path / "out"), bsp_paths=[boards])
    # without a size in the descriptor, the cut gzip stream itself is the error
    del manifest["layers"][0]["size"]
    data = json.dumps(manifest).encode()
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    index["manifests"][0].update(digest=f"sha256:{digest}", size=len(data))
    (oci / "index.json").write_text(json.dumps(index))
    with pytest.raises(SourceError, match=f"layer {layer}: truncated gzip stream"):
        build(recipe, outdir=str(tmp_path / "out"), bsp_paths=[boards])
