"""A small, real, multi-arch sample image for the demo and the tests: no downloads, no root needed.

``python -m edge.build.sample DEST`` writes

* ``DEST/rootfs-x86_64/`` and ``DEST/rootfs-aarch64/``: tiny root filesystems
  whose ``/bin/sh`` and ``/sbin/init`` are real static ELF executables for
  that CPU (a few instructions that call ``exit(0)``, assembled here by
  hand: an x86_64 host can run its own);
* ``DEST/oci/``: an OCI image layout holding both as one multi-arch image
  (an image index under the ref ``sample``), each made of a base layer and a
  shared "app" layer that deletes a file with a whiteout;
* ``DEST/recipe.yaml``: a recipe building it for every built-in board.

Everything is deterministic: the same arguments give the same bytes.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import io
import json
import os
import struct
import tarfile
from collections.abc import Iterable

ELF_BASE = 0x400000
EM_X86_64 = 62
EM_AARCH64 = 183
_CODE = {
    # xor edi, edi ; mov eax, 60 (exit) ; syscall
    "x86_64": (EM_X86_64, bytes.fromhex("31ff" "b83c000000" "0f05")),
    # mov x0, #0 ; mov x8, #93 (exit) ; svc #0
    "aarch64": (EM_AARCH64, struct.pack("<3I", 0xD2800000, 0xD2800BA8, 0xD4000001)),
}
OCI_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
EPOCH = 1_700_000_000
REF = "sample"


def minimal_elf(arch: str) -> bytes:
    """A static ELF64 executable for ``arch`` (x86_64 / aarch64) that exits with status 0.

    One ELF header, one PT_LOAD program header mapping the whole file
    read+execute at 0x400000 (64 KiB aligned, so 4K and 64K page kernels
    both load it), and the code right after the headers.
    """
    machine, code = _CODE[arch]
    header_size, phdr_size = 64, 56
    entry = ELF_BASE + header_size + phdr_size
    total = header_size + phdr_size + len(code)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # 64-bit, little-endian, version 1, System V ABI
    header = ident + struct.pack("<HHIQQQIHHHHHH", 2, machine, 1, entry, header_size, 0, 0, header_size, phdr_size, 1, 0, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, ELF_BASE, ELF_BASE, total, total, 0x10000)
    return header + phdr + code


def write_file(root: str, rel: str, data: bytes, mode: int = 0o644) -> str:
    """Write ``data`` to ``root/rel`` (parent directories created) with ``mode``; returns the path."""
    full = os.path.join(root, rel)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "wb") as fh:
        fh.write(data)
    os.chmod(full, mode)
    return full


def write_rootfs(dest: str, arch: str, version: str = "1.0.0") -> None:
    """A tiny root filesystem for ``arch`` at ``dest`` (which must not exist)."""
    os.makedirs(dest)

    write = functools.partial(write_file, dest)

    for d in ("dev", "proc", "sys", "run", "tmp", "var/lib", "root"):
        os.makedirs(os.path.join(dest, d), exist_ok=True)
    os.chmod(os.path.join(dest, "tmp"), 0o1777)
    os.chmod(os.path.join(dest, "root"), 0o700)
    write("usr/bin/edge-hello", minimal_elf(arch), 0o755)
    os.symlink("edge-hello", os.path.join(dest, "usr/bin/sh"))
    os.makedirs(os.path.join(dest, "usr/sbin"))
    os.symlink("../bin/edge-hello", os.path.join(dest, "usr/sbin/init"))
    os.symlink("usr/bin", os.path.join(dest, "bin"))
    os.symlink("usr/sbin", os.path.join(dest, "sbin"))
    write("etc/os-release", (f'NAME="Edge Sample"\nID=edge-sample\nVERSION_ID="{version}"\n'
                             f'PRETTY_NAME="Edge Sample {version} ({arch})"\n').encode())
    write("etc/hostname", b"edge-sample\n")
    write("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    write("etc/group", b"root:x:0:\n")
    write("etc/remove-me", b"deleted by the app layer's whiteout\n")
    write("usr/share/doc/edge-sample/README", f"Edge sample image {version} for {arch}\n".encode())
    os.link(os.path.join(dest, "usr/share/doc/edge-sample/README"), os.path.join(dest, "usr/share/doc/edge-sample/README.link"))
    for dirpath, dirnames, filenames in os.walk(dest):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (EPOCH, EPOCH), follow_symlinks=False)
    os.utime(dest, (EPOCH, EPOCH))


# ---------------------------------------------------------------- OCI layout
def _tar_layer(members: Iterable[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _tree_members(root: str) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    """A directory as tar members: sorted by name, root-owned, hard links kept, timestamps as on disk."""
    paths = ["."]
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        paths.extend(os.path.normpath(os.path.join(rel_dir, name)) for name in dirnames + filenames)
    out: list[tuple[tarfile.TarInfo, bytes | None]] = []
    seen: dict[tuple[int, int], str] = {}
    for rel in sorted(paths):
        full = os.path.join(root, rel)
        st = os.lstat(full)
        info = tarfile.TarInfo("./" if rel == "." else rel)
        info.mtime, info.uid, info.gid, info.uname, info.gname = int(st.st_mtime), 0, 0, "", ""
        info.mode = st.st_mode & 0o7777
        data = None
        if os.path.islink(full):
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(full)
        elif os.path.isdir(full):
            info.type = tarfile.DIRTYPE
        elif (st.st_dev, st.st_ino) in seen:
            info.type, info.linkname = tarfile.LNKTYPE, seen[(st.st_dev, st.st_ino)]
        else:
            if st.st_nlink > 1:
                seen[(st.st_dev, st.st_ino)] = rel
            with open(full, "rb") as fh:
                data = fh.read()
            info.size = len(data)
        out.append((info, data))
    return out


def _app_layer(version: str) -> bytes:
    motd = f"Welcome to the Edge sample image {version}.\n".encode()
    members = []
    for name, data, kind in (("etc", None, tarfile.DIRTYPE), ("etc/.wh.remove-me", b"", tarfile.REGTYPE), ("etc/motd", motd, tarfile.REGTYPE)):
        info = tarfile.TarInfo(name)
        info.type, info.mtime, info.uname, info.gname = kind, EPOCH, "", ""
        info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
        if data is not None:
            info.size = len(data)
        members.append((info, data))
    return _tar_layer(members)


class _Blobs:
    def __init__(self, layout: str) -> None:
        self.dir = os.path.join(layout, "blobs", "sha256")
        os.makedirs(self.dir, exist_ok=True)

    def put(self, data: bytes, media_type: str, **extra: object) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.dir, digest), "wb") as fh:
            fh.write(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data), **extra}


def _json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def write_oci_layout(layout: str, rootfs_by_arch: dict[str, str], *, ref: str = REF, version: str = "1.0.0") -> None:
    """A multi-arch OCI image layout at ``layout``: an image index (ref ``ref``) with one manifest per arch."""
    os.makedirs(layout)
    with open(os.path.join(layout, "oci-layout"), "w") as fh:
        fh.write('{"imageLayoutVersion":"1.0.0"}')
    blobs = _Blobs(layout)
    app_tar = _app_layer(version)
    app = blobs.put(gzip.compress(app_tar, mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip")
    manifests = []
    for arch in sorted(rootfs_by_arch):
        base_tar = _tar_layer(_tree_members(rootfs_by_arch[arch]))
        base = blobs.put(gzip.compress(base_tar, mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip")
        config = {
            "architecture": OCI_ARCH[arch], "os": "linux", "created": "2023-11-14T22:13:20Z",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(base_tar).hexdigest()}",
                                                      f"sha256:{hashlib.sha256(app_tar).hexdigest()}"]},
        }
        config_desc = blobs.put(_json(config), "application/vnd.oci.image.config.v1+json")
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": config_desc, "layers": [base, app]}
        platform = {"architecture": OCI_ARCH[arch], "os": "linux"} | ({"variant": "v8"} if arch == "aarch64" else {})
        manifests.append(blobs.put(_json(manifest), "application/vnd.oci.image.manifest.v1+json", platform=platform))
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}
    index_desc = blobs.put(_json(index), "application/vnd.oci.image.index.v1+json",
                           annotations={"org.opencontainers.image.ref.name": ref})
    with open(os.path.join(layout, "index.json"), "wb") as fh:
        fh.write(_json({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [index_desc]}))


RECIPE = """\
# A sample recipe: one multi-arch OCI image, every built-in board.
name: sample
version: {version}
boards: [x86-64-efi, rpi4, rpi5, jetson-orin-nano]
source: {{oci: ./oci, ref: {ref}}}
files:
  - path: /etc/edge-build-note
    content: "built by edge build from a recipe\\n"
    mode: 0644
remove:
  - /usr/share/doc/**
kernel_cmdline: quiet
squashfs: {{compression: zstd, level: 15, block_size: 128K}}
source_date_epoch: {epoch}
"""


def write_sample(dest: str, *, version: str = "1.0.0") -> str:
    """The whole sample at ``dest``; returns the recipe path."""
    os.makedirs(dest)
    roots = {}
    for arch in ("aarch64", "x86_64"):
        roots[arch] = os.path.join(dest, f"rootfs-{arch}")
        write_rootfs(roots[arch], arch, version)
    write_oci_layout(os.path.join(dest, "oci"), roots, version=version)
    recipe = os.path.join(dest, "recipe.yaml")
    with open(recipe, "w") as fh:
        fh.write(RECIPE.format(version=version, ref=REF, epoch=EPOCH))
    return recipe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge.build.sample", description=__doc__.splitlines()[0])
    parser.add_argument("dest", help="directory to create")
    parser.add_argument("--version", default="1.0.0", help="image version (default: 1.0.0)")
    args = parser.parse_args(argv)
    recipe = write_sample(args.dest, version=args.version)
    print(recipe)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
