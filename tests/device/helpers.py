"""Images, keys and bundles for the device tests, made with Edge's own writer and CLI."""

from __future__ import annotations

import hashlib
import json
import os
import random

from edge.cli import main as edge_main
from edge.squashfs import BytesContent, Entry, Kind, Tree, WriterOptions, write_image

HEALTH_OK = b'#!/bin/sh\necho "app is healthy"\n'
HEALTH_BAD = b'#!/bin/sh\necho "app failed to start: missing /etc/app.conf" >&2\nexit 1\n'


def app_data(version: str, size: int, incompressible: bool = False) -> bytes:
    rnd = random.Random(7)  # the same base content in every version
    if incompressible:
        data = bytearray(rnd.randbytes(size))
    else:
        words = [bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 8))) for _ in range(400)]
        data = bytearray(b" ".join(rnd.choice(words) for _ in range(size // 5))[:size])
    edit = random.Random(version)
    for _ in range(20):  # each version differs in a few places
        pos = edit.randrange(max(1, len(data) - 16))
        data[pos : pos + 16] = edit.randbytes(16)
    return bytes(data)


def make_image(path: str, version: str, *, broken: bool = False, app_size: int = 400_000, level: int = 3,
               incompressible: bool = False) -> str:
    entries = [
        Entry("", Kind.DIR, mode=0o755, mtime=1_700_000_000),
        Entry("etc/os-release", Kind.FILE, content=BytesContent(f'NAME="Edge Test"\nVERSION_ID="{version}"\n'.encode())),
        Entry("usr/lib/edge/health-check", Kind.FILE, mode=0o755, content=BytesContent(HEALTH_BAD if broken else HEALTH_OK)),
        Entry("usr/share/app/data.bin", Kind.FILE, content=BytesContent(app_data(version, app_size, incompressible))),
        Entry("usr/bin/sh", Kind.SYMLINK, target="busybox"),
    ]
    write_image(Tree.from_entries(entries), path, WriterOptions(level=level, mtime=1_700_000_000))
    with open(os.path.splitext(path)[0] + ".json", "w") as fh:
        json.dump({"version": version, "security_version": int(version.split(".")[0])}, fh)
    return path


def run_edge(*args: str) -> int:
    return edge_main(list(args))


def make_pki(directory: str) -> dict[str, str]:
    ca, keys = os.path.join(directory, "ca"), os.path.join(directory, "keys")
    assert run_edge("keys", "ca", "init", ca) == 0
    assert run_edge("keys", "issue", "--ca", ca, "--name", "release", "-o", keys) == 0
    return {"keyring": os.path.join(ca, "root.crt"), "key": os.path.join(keys, "release.key"),
            "cert": os.path.join(keys, "release.crt"), "ca": ca}


def make_bundle(pki: dict[str, str], image: str, out: str, compatible: str, version: str, *,
                delta_from: str | None = None, security_version: int = 0) -> str:
    args = ["bundle", "create", image, "--key", pki["key"], "--cert", pki["cert"], "--compatible", compatible,
            "--version", version, "--security-version", str(security_version), "-o", out]
    if delta_from:
        args += ["--delta-from", delta_from]
    assert run_edge(*args) == 0
    return out


def sha256(path: str, size: int | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        h.update(fh.read(size) if size is not None else fh.read())
    return h.hexdigest()


