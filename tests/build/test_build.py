"""``edge build`` end to end: boards, sources, overlays, reproducibility, architecture checks, clear failures."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from bsp.boards import BUILTIN_DIR
from edge.build.elfcheck import elf_machine
from edge.build.errors import ArchMismatchError, BuildError, SourceError
from edge.build.pipeline import build
from edge.build.recipe import load_recipe
from edge.build.sample import EPOCH, write_oci_layout, write_rootfs, write_sample
from edge.squashfs import SquashfsImage
from tests.build.helpers import image_tree, listing, make_board, tar_bytes, write_recipe
from tests.conftest import require_tool, run

EDGE = [sys.executable, "-m", "edge"]
REQUIRED_METADATA = {"name", "version", "board", "compatible", "arch", "sha256", "size", "compressor", "level",
                     "block_size", "source_digest", "entry_count", "build_time", "edge_version"}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return write_sample(str(tmp_path_factory.mktemp("sample") / "s"))


@pytest.fixture(scope="module")
def sample_build(sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    return build(load_recipe(sample, env={}), outdir=str(out)), str(out)


@pytest.fixture
def boards(tmp_path):
    base = tmp_path / "boards"
    make_board(base, "testbox", "x86_64")
    make_board(base, "armbox", "aarch64")
    return str(base)


def edge(*args, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(EDGE + list(args), capture_output=True, text=True, **kw)


def read(image: str, path: str) -> bytes:
    with SquashfsImage(image) as img:
        return img.read_file(img.lookup(path))


def sha256_file(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


# ---------------------------------------------------------------- multi-board, multi-arch
def test_every_board_gets_its_architecture_from_one_multi_arch_source(sample_build):
    result, out = sample_build
    assert [b.board for b in result.boards] == ["x86-64-efi", "rpi4", "rpi5", "jetson-orin-nano"]
    for b in result.boards:
        machine = elf_machine(read(b.image, "usr/bin/edge-hello"))
        assert machine == {"x86_64": 62, "aarch64": 183}[b.metadata["arch"]], b.board
        assert b.metadata["source_platform"] == ("linux/amd64" if b.metadata["arch"] == "x86_64" else "linux/arm64/v8")
    # 4 boards, 2 architectures: each architecture's 2 layers merged once; the shared app layer read once
    assert result.layers_applied == 4
    assert result.blobs.blobs_read == 3


def test_outputs_and_metadata(sample_build):
    result, out = sample_build
    names = sorted(os.listdir(out))
    for board in ("x86-64-efi", "rpi4", "rpi5", "jetson-orin-nano"):
        assert {f"sample-1.0.0-{board}.sqfs", f"sample-1.0.0-{board}.json", f"sample-1.0.0-{board}.boot"} <= set(names)
    assert not [n for n in names if n.startswith(".")]  # no staging left behind
    for b in result.boards:
        with open(b.metadata_file) as fh:
            meta = json.load(fh)
        assert meta == b.metadata and REQUIRED_METADATA <= set(meta)
        assert meta["sha256"] == sha256_file(b.image) and meta["size"] == os.path.getsize(b.image)
        assert (meta["compressor"], meta["level"], meta["block_size"]) == ("zstd", 15, 128 * 1024)
        assert meta["build_time"] == EPOCH and meta["version"] == "1.0.0" and meta["name"] == "sample"
        listing_lines = run(require_tool("unsquashfs"), "-lln", b.image).stdout.splitlines()
        assert meta["entry_count"] == len(listing_lines)
        info = json.loads(read(b.image, "usr/lib/edge/image.json"))
        assert info == {k: meta[k] for k in ("name", "version", "board", "compatible", "arch")}
        for f in meta["boot_files"]:
            with open(os.path.join(b.boot_dir, f["partition"], f["path"]), "rb") as fh:
                assert hashlib.sha256(fh.read()).hexdigest() == f["sha256"]


def test_recipe_files_removals_and_whiteouts_reach_the_image(sample_build):
    result, _ = sample_build
    image = result.boards[0].image
    assert read(image, "etc/edge-build-note") == b"built by edge build from a recipe\n"
    assert read(image, "etc/motd").startswith(b"Welcome")  # from the shared app layer
    with SquashfsImage(image) as img:
        paths = {p for p, _ in img.walk()}
    assert "etc/remove-me" not in paths  # the app layer's whiteout
    assert "usr/share/doc" in paths and not any(p.startswith("usr/share/doc/") for p in paths)  # remove: /usr/share/doc/**


def test_raspberry_pi_boot_files_per_slot(sample_build):
    result, _ = sample_build
    rpi4 = next(b for b in result.boards if b.board == "rpi4")
    boot = rpi4.boot_dir
    line = "console=serial0,115200 console=tty1 rootfstype=squashfs ro rootwait quiet"
    with open(os.path.join(boot, "boot-a", "cmdline.txt")) as fh:
        assert fh.read() == f"root=/dev/mmcblk0p5 {line} edge.slot=A\n"
    with open(os.path.join(boot, "boot-b", "cmdline.txt")) as fh:
        assert fh.read() == f"root=/dev/mmcblk0p6 {line} edge.slot=B\n"
    with open(os.path.join(boot, "autoboot", "autoboot.txt")) as fh:
        assert fh.read() == "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n"
    with open(os.path.join(boot, "boot-a", "config.txt")) as fh:
        config = fh.read()
    assert "arm_64bit=1" in config and "@EDGE" not in config and "slot A" in config
    assert sorted(listing(boot)) == ["autoboot", "autoboot/autoboot.txt", "boot-a", "boot-a/cmdline.txt", "boot-a/config.txt",
                                     "boot-b", "boot-b/cmdline.txt", "boot-b/config.txt"]
    assert any("boot partition boot-a and boot-b got no file from the image" in w for w in rpi4.warnings)  # the sample has no kernel
    with SquashfsImage(rpi4.image) as img:  # the board's mount points exist in the read-only image
        assert img.lookup("data").is_dir and img.lookup("boot/autoboot").is_dir


def test_jetson_and_x86_boot_files(sample_build):
    result, _ = sample_build
    jetson = next(b for b in result.boards if b.board == "jetson-orin-nano")
    with open(os.path.join(jetson.boot_dir, "APP_b", "boot", "extlinux", "extlinux.conf")) as fh:
        conf = fh.read()
    assert "      APPEND ${cbootargs} root=PARTLABEL=rootfs-b console=ttyTCU0,115200 rootfstype=squashfs ro rootwait quiet edge.slot=B\n" in conf
    x86 = next(b for b in result.boards if b.board == "x86-64-efi")
    esp = os.path.join(x86.boot_dir, "esp", "EFI", "BOOT")
    with open(os.path.join(esp, "grub.cfg")) as fh:
        cfg = fh.read()
    assert 'set edge_cmdline="console=ttyS0,115200 console=tty0 rootfstype=squashfs ro rootwait quiet"\n' in cfg
    assert 'set edge_root_B="PARTLABEL=rootfs-b"\n' in cfg and 'source "${config_directory}/edge-ab.cfg"' in cfg
    with open(os.path.join(esp, "edge-ab.cfg"), "rb") as a, open(os.path.join(BUILTIN_DIR, "x86-64-efi", "boot", "grub.cfg"), "rb") as b:
        assert a.read() == b.read()
    grubenv = run(require_tool("grub-editenv"), os.path.join(esp, "grubenv"), "list").stdout
    assert grubenv.splitlines() == ["BOOT_ORDER=A B", "BOOT_A_LEFT=3", "BOOT_B_LEFT=3"]


def test_per_slot_paths_on_a_shared_partition(tmp_path, boards):
    root = tmp_path / "rootfs"
    write_rootfs(str(root), "x86_64")
    os.makedirs(root / "boot")
    (root / "boot/vmlinuz").write_bytes(b"a kernel")
    recipe = write_recipe(tmp_path / "r.yaml", "name: k\nversion: 1.0.0\nboards: [testbox]\nsource: {dir: ./rootfs}\n")
    (b,) = build(load_recipe(recipe, env={}), outdir=str(tmp_path / "out"), bsp_paths=[boards]).boards
    assert sorted(listing(b.boot_dir)) == ["esp", "esp/EFI", "esp/EFI/BOOT", "esp/EFI/BOOT/cmdline-A.txt", "esp/EFI/BOOT/cmdline-B.txt",
                                           "esp/EFI/edge", "esp/EFI/edge/A", "esp/EFI/edge/A/vmlinuz", "esp/EFI/edge/B",
                                           "esp/EFI/edge/B/vmlinuz"]
    assert {(f["path"], f["slot"]) for f in b.metadata["boot_files"]} == {
        ("EFI/BOOT/cmdline-A.txt", "A"), ("EFI/BOOT/cmdline-B.txt", "B"), ("EFI/edge/A/vmlinuz", "A"), ("EFI/edge/B/vmlinuz", "B")}
    with open(os.path.join(b.boot_dir, "esp/EFI/BOOT/cmdline-B.txt")) as fh:
        assert fh.read() == "root=PARTLABEL=rootfs-b console=ttyS0,115200 ro edge.slot=B\n"
    assert b.warnings == []


# ---------------------------------------------------------------- reproducibility
def test_two_builds_are_byte_identical(sample, tmp_path):
    recipe = load_recipe(sample, env={})
    build(recipe, outdir=str(tmp_path / "one"))
    build(recipe, outdir=str(tmp_path / "two"), workers=1)
    files = listing(str(tmp_path / "one"))
    assert files == listing(str(tmp_path / "two")) and len(files) > 12
    for rel in files:
        a, b = tmp_path / "one" / rel, tmp_path / "two" / rel
        if a.is_file():
            assert a.read_bytes() == b.read_bytes(), rel


def test_rebuilding_into_the_same_outdir_replaces_the_outputs(sample, tmp_path):
    recipe = load_recipe(sample, env={})
    build(recipe, outdir=str(tmp_path), boards=["rpi4"])
    stale = tmp_path / "sample-1.0.0-rpi4.boot" / "stale-file"
    stale.write_text("from an older build")
    build(recipe, outdir=str(tmp_path), boards=["rpi4"])
    assert not stale.exists()
    assert sorted(os.listdir(tmp_path)) == ["sample-1.0.0-rpi4.boot", "sample-1.0.0-rpi4.json", "sample-1.0.0-rpi4.sqfs"]


@pytest.mark.parametrize("outdir", ["out", "."])
def test_building_into_the_source_folder_does_not_pack_the_last_build(tmp_path, boards, outdir):
    """A directory source that holds the output directory (``-o out``) or is it (``-o .``, with the
    recipe beside the tree), and a --work-dir inside it: the image leaves the build's outputs, its
    staging directory and its layer spool out, so every build gives the bytes of a build written elsewhere."""
    root = tmp_path / "rootfs"
    write_rootfs(str(root), "x86_64")
    os.makedirs(root / "spool")  # the --work-dir folder is the user's, and part of the tree; the spool inside is not
    # (a fixed build time: without one, the two builds' mkfs_time differ when they fall in different seconds)
    recipe = load_recipe(write_recipe(root / "r.yaml", "name: k\nversion: 1.0.0\nboards: [testbox]\nsource: {dir: .}\n"
                                      f"source_date_epoch: {EPOCH}\n"), env={})
    (elsewhere,) = build(recipe, outdir=str(tmp_path / "elsewhere"), bsp_paths=[boards]).boards
    reference = open(elsewhere.image, "rb").read()
    for _ in range(2):  # the second build finds the first one's outputs in the tree
        (inside,) = build(recipe, outdir=str(root / outdir), bsp_paths=[boards], work_dir=str(root / "spool")).boards
        assert open(inside.image, "rb").read() == reference
    with SquashfsImage(inside.image) as img:
        paths = {path for path, _ in img.walk()}
    assert {"r.yaml", "spool"} <= paths
    assert not any(p == "out" or p.startswith(("out/", "k-1.0.0", ".edge-build", "spool/")) for p in paths)


# ---------------------------------------------------------------- source types
@pytest.fixture(scope="module")
def x86_rootfs(tmp_path_factory):
    root = tmp_path_factory.mktemp("x86") / "rootfs"
    write_rootfs(str(root), "x86_64")
    return str(root)


def test_directory_and_tarball_sources_give_the_same_image(tmp_path, x86_rootfs, boards):
    tar = require_tool("tar")
    archive = tmp_path / "rootfs.tar"
    run(tar, "--numeric-owner", "--xattrs", "--format=posix", "-C", x86_rootfs, "-cf", str(archive), ".")
    sources = {"dir": f"{{dir: {x86_rootfs}}}", "tar": f"{{tar: {archive}}}"}
    for ext, tool in ((".gz", "gzip"), (".xz", "xz"), (".zst", "zstd"), (".bz2", "bzip2")):
        packed = tmp_path / f"rootfs.tar{ext}"
        packed.write_bytes(run(require_tool(tool), "-c", str(archive), text=False).stdout)
        sources[ext] = f"{{tar: {packed}}}"
    digests = {}
    for key, source in sources.items():
        recipe = write_recipe(tmp_path / "r.yaml", f"name: s\nversion: 1.0.0\nboards: [testbox]\nsource: {source}\nsource_date_epoch: {EPOCH}\n")
        (b,) = build(load_recipe(recipe, env={}), outdir=str(tmp_path / key.strip(".")), bsp_paths=[boards]).boards
        digests[key] = b.metadata["sha256"]
        if key != "dir":
            packed = archive if key == "tar" else tmp_path / f"rootfs.tar{key}"
            assert b.metadata["source_digest"] == f"sha256:{sha256_file(str(packed))}"
    assert len(set(digests.values())) == 1, digests


def test_hostile_tar_source_never_escapes(tmp_path, boards):
    evil = tmp_path / "evil.tar"
    evil.write_bytes(tar_bytes([("bin/sh", "file", {"data": b"#!x"}), ("../../etc/evil", "file", {"data": b"pwned"})]))
    recipe = write_recipe(tmp_path / "r.yaml", "name: s\nversion: 1.0.0\nboards: [testbox]\nsource: {tar: ./evil.tar}\narch_check: false\n")
    out = tmp_path / "out"
    proc = edge("build", recipe, "-o", str(out), "--bsp-path", boards)
    assert proc.returncode == 6 and "climbs out of the root" in proc.stderr and "'../../etc/evil'" in proc.stderr
    assert os.listdir(out) == []
    # absolute names are anchored at the image root, and absolute link targets are kept as text, never followed
    anchored = tmp_path / "abs.tar"
    anchored.write_bytes(tar_bytes([("/etc/abs", "file", {"data": b"inside"}), ("/etc/link", "symlink", {"target": "/etc/shadow"}),
                                    ("/etc/link2", "symlink", {"target": "../../../../etc/passwd"})]))
    recipe = write_recipe(tmp_path / "r2.yaml", "name: s\nversion: 1.0.0\nboards: [testbox]\nsource: {tar: ./abs.tar}\narch_check: false\n")
    (b,) = build(load_recipe(recipe, env={}), outdir=str(out), bsp_paths=[boards]).boards
    tree = image_tree(b.image, tmp_path / "x")
    assert tree["etc/abs"].type == "file" and tree["etc/link"].digest == "/etc/shadow" and tree["etc/link2"].digest == "../../../../etc/passwd"


# ---------------------------------------------------------------- overlays, files, remove
def test_overlays_files_and_removals_in_order(tmp_path, x86_rootfs, boards):
    overlay = tmp_path / "overlay"
    os.makedirs(overlay / "etc/app")
    (overlay / "etc/app/config").write_text("from the overlay\n")
    (overlay / "etc/hostname").write_text("overridden\n")
    os.chown(overlay / "etc/app/config", 1234, 1234)
    os.chmod(overlay, 0o700)  # the overlay folder's own mode must not become the image root's
    single = tmp_path / "motd"
    single.write_text("single file\n")
    layer = tmp_path / "layer.tar.gz"
    layer.write_bytes(gzip.compress(tar_bytes([("etc/.wh.group", "file", {}), ("srv/data", "file", {"data": b"d", "uid": 42})]), mtime=0))
    recipe = write_recipe(tmp_path / "r.yaml", f"""\
        name: o
        version: 1.0.0
        boards: [testbox]
        source: {{dir: {x86_rootfs}}}
        overlays:
          - ./overlay
          - {{src: ./motd, dest: /etc/motd, mode: 0600}}
          - {{src: ./layer.tar.gz}}
        files:
          - {{path: /etc/hostname, content: "from files\\n", owner: "5:6"}}
          - {{path: /var/cache/app, type: dir, mode: 0750}}
          - {{path: /usr/bin/busybox, type: symlink, target: edge-hello}}
        remove: [/etc/os-release, "/usr/share/doc/**/README*", /nothing/*]
        source_date_epoch: {EPOCH}
    """)
    (b,) = build(load_recipe(recipe, env={}), outdir=str(tmp_path / "out"), bsp_paths=[boards]).boards
    tree = image_tree(b.image, tmp_path / "x")
    assert (tree["etc/app/config"].uid, tree["etc/app/config"].gid) == (0, 0)  # directory overlays are root-owned by default
    assert tree[""].mode == 0o755
    assert tree["etc/motd"].mode == 0o600
    assert "etc/group" not in tree and tree["srv/data"].uid == 42  # the tarball overlay is a layer: whiteouts, its owners
    assert read(b.image, "etc/hostname") == b"from files\n" and tree["etc/hostname"].uid == 5
    assert tree["var/cache/app"].mode == 0o750 and tree["usr/bin/busybox"].digest == "edge-hello"
    assert "etc/os-release" not in tree and "usr/share/doc/edge-sample/README" not in tree
    assert "usr/share/doc/edge-sample" in tree
    assert b.warnings[0] == "remove /nothing/*: nothing matched"
    assert max(n.mtime for n in tree.values() if n.mtime is not None) <= EPOCH


# ---------------------------------------------------------------- architecture checks
def test_arch_mismatch_fails_with_a_clear_message(tmp_path, x86_rootfs):
    recipe = write_recipe(tmp_path / "r.yaml", f"name: a\nversion: 1.0.0\nboards: [rpi4]\nsource: {{dir: {x86_rootfs}}}\n")
    proc = edge("build", recipe, "-o", str(tmp_path / "out"))
    assert proc.returncode == 5
    assert proc.stderr.strip() == ("edge: error: board rpi4 runs aarch64 binaries, but /bin/sh (/usr/bin/edge-hello) is an ELF for "
                                   "x86_64 (e_machine 62); build the source for aarch64 or choose a board of that architecture")
    assert os.listdir(tmp_path / "out") == []
    assert edge("build", recipe, "-o", str(tmp_path / "out"), "--no-arch-check").returncode == 0


def test_image_config_architecture_is_checked(tmp_path, boards):
    umoci = require_tool("umoci")
    rootfs = tmp_path / "rootfs"
    write_rootfs(str(rootfs), "aarch64")
    oci = tmp_path / "oci"
    run(umoci, "init", "--layout", str(oci))
    run(umoci, "new", "--image", f"{oci}:img")
    run(umoci, "insert", "--rootless", "--image", f"{oci}:img", str(rootfs), "/")
    run(umoci, "config", "--image", f"{oci}:img", "--architecture", "amd64")
    recipe = write_recipe(tmp_path / "r.yaml", f"name: a\nversion: 1.0.0\nboards: [armbox]\nsource: {{oci: {oci}}}\n")
    with pytest.raises(ArchMismatchError, match=r"board armbox runs aarch64 \(arm64\), but the source image is for amd64"):
        build(load_recipe(recipe, env={}), outdir=str(tmp_path / "out"), bsp_paths=[boards])
    run(umoci, "config", "--image", f"{oci}:img", "--architecture", "arm64")
    (b,) = build(load_recipe(recipe, env={}), outdir=str(tmp_path / "out"), bsp_paths=[boards]).boards
    assert [c.arch for c in b.checked_binaries] == ["aarch64", "aarch64"]


def test_multi_arch_index_without_the_boards_platform(tmp_path, boards):
    rootfs = tmp_path / "rootfs"
    write_rootfs(str(rootfs), "x86_64")
    write_oci_layout(str(tmp_path / "oci"), {"x86_64": str(rootfs)})
    recipe = write_recipe(tmp_path / "r.yaml", "name: a\nversion: 1.0.0\nboards: [armbox, testbox]\nsource: {oci: ./oci, ref: sample}\n")
    with pytest.raises(SourceError, match=r"no linux/arm64 image for this board's aarch64 \(the index has: linux/amd64\)"):
        build(load_recipe(recipe, env={}), outdir=str(tmp_path / "out"), bsp_paths=[boards])
    other = write_recipe(tmp_path / "r2.yaml", "name: a\nversion: 1.0.0\nboards: [testbox]\nsource: {oci: ./oci, ref: other}\n")
    with pytest.raises(SourceError, match=r"no image tagged 'other' \(refs: sample\)"):
        build(load_recipe(other, env={}), outdir=str(tmp_path / "out"), bsp_paths=[boards])


def test_init_from_the_kernel_command_line_is_checked(tmp_path, boards):
    root = tmp_path / "rootfs"
    write_rootfs(str(root), "x86_64")
    (root / "usr/bin/other-init").write_bytes(b"plain text, not a program\n")
    (root / "opt").mkdir()
    (root / "opt/init.sh").write_text("#!/usr/bin/edge-hello\nexec something\n")
    base = "name: i\nversion: 1.0.0\nboards: [testbox]\nsource: {dir: ./rootfs}\n"
    recipe = write_recipe(tmp_path / "r.yaml", base + "kernel_cmdline: init=/usr/bin/other-init\n")
    with pytest.raises(BuildError, match=r"/usr/bin/other-init \(/usr/bin/other-init\) is neither an ELF executable nor a #! script"):
        build(load_recipe(recipe, env={}), outdir=str(tmp_path / "out"), bsp_paths=[boards])
    recipe = write_recipe(tmp_path / "r.yaml", base + "kernel_cmdline: init=/opt/init.sh\n")
    (b,) = build(load_recipe(recipe, env={}), outdir=str(tmp_path / "out"), bsp_paths=[boards]).boards
    assert b.checked_binaries[1].resolved == "/opt/init.sh -> /usr/bin/edge-hello"


def test_image_without_shell_or_init(tmp_path, boards):
    (tmp_path / "rootfs/etc").mkdir(parents=True)
    recipe = write_recipe(tmp_path / "r.yaml", "name: e\nversion: 1.0.0\nboards: [testbox]\nsource: {dir: ./rootfs}\n")
    with pytest.raises(BuildError, match="neither /bin/sh nor /sbin/init"):
        build(load_recipe(recipe, env={}), outdir=str(tmp_path / "out"), bsp_paths=[boards])
    assert build(load_recipe(recipe, env={}), outdir=str(tmp_path / "out"), bsp_paths=[boards], arch_check=False).boards


def test_the_sample_elf_runs_on_this_machine(tmp_path):
    if os.uname().machine != "x86_64":
        pytest.fail("the build tests run on x86_64 machines")
    root = tmp_path / "rootfs"
    write_rootfs(str(root), "x86_64")
    assert subprocess.run([str(root / "usr/bin/edge-hello")]).returncode == 0


# ---------------------------------------------------------------- boards and failures
def test_board_option_overrides_the_recipe(tmp_path, sample):
    out = tmp_path / "out"
    proc = edge("build", sample, "-o", str(out), "--board", "rpi5", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert [b["board"] for b in data["boards"]] == ["rpi5"] and REQUIRED_METADATA <= set(data["boards"][0]["metadata"])
    proc = edge("build", sample, "-o", str(out), "--board", "nosuchboard")
    assert proc.returncode == 5 and "unknown board 'nosuchboard' (known: jetson-orin-nano, rpi4, rpi5, x86-64-efi" in proc.stderr


def test_a_failing_board_leaves_no_output_at_all(tmp_path, x86_rootfs, boards):
    broken = os.path.join(boards, "broken")
    shutil.copytree(os.path.join(boards, "testbox"), broken)
    with open(os.path.join(broken, "board.yaml")) as fh:
        text = fh.read().replace("name: testbox", "name: broken").replace("optional: true", "optional: false")
    with open(os.path.join(broken, "board.yaml"), "w") as fh:
        fh.write(text)
    recipe = write_recipe(tmp_path / "r.yaml", f"name: f\nversion: 1.0.0\nboards: [testbox, broken]\nsource: {{dir: {x86_rootfs}}}\n")
    out = tmp_path / "out"
    with pytest.raises(BuildError, match=r"board broken: boot file /boot/vmlinuz is not in the image"):
        build(load_recipe(recipe, env={}), outdir=str(out), bsp_paths=[boards])
    assert os.listdir(out) == []


def test_cli_text_output(tmp_path, sample):
    proc = edge("build", sample, "-o", str(tmp_path), "--board", "x86-64-efi", env=dict(os.environ, EDGE_NO_PROGRESS="1"))
    assert proc.returncode == 0, proc.stderr
    assert "x86-64-efi: " in proc.stdout and "sample-1.0.0-x86-64-efi.sqfs" in proc.stdout and "built 1 image(s)" in proc.stdout
    assert proc.stderr == ""
