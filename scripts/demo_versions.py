#!/usr/bin/env python3
"""Recipes for three releases of the demo product, on top of the sample OCI image.

Usage: demo_versions.py DIR   (DIR holds the sample from 'python -m edge.build.sample')

Writes DIR/app-N/ (an application payload that changes a little between
releases) and DIR/release-N.yaml for N = 1, 2, 3. Release 3 ships an
application that fails its health check, to show the rollback.
"""

from __future__ import annotations

import os
import random
import sys

from edge.build.sample import write_file

HEALTHY = '#!/bin/sh\necho "demo app {v}: healthy"\n'
BROKEN = '#!/bin/sh\necho "demo app {v}: failed to start (missing /etc/demo/app.conf)" >&2\nexit 1\n'
RECIPE = """\
name: demo
version: {v}
boards: [x86-64-efi]
source: {{oci: ./oci, ref: sample}}
overlays:
  - ./app-{n}
files:
  - path: /usr/lib/edge/health-check
    mode: 0755
    content: |
{check}
squashfs: {{compression: zstd, level: 19, block_size: 128K}}
source_date_epoch: 1700000000
"""


def base_app() -> bytes:
    rnd = random.Random(1)
    words = [bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 9))) for _ in range(3000)]
    return b" ".join(rnd.choice(words) for _ in range(700_000))  # ~4 MB of "program data"


def app(base: bytes, n: int) -> bytes:
    data = bytearray(base)
    edits = random.Random(n)
    for _ in range(5 * (n - 1)):  # each release changes a few places
        pos = edits.randrange(len(data) - 64)
        data[pos : pos + 64] = edits.randbytes(64)
    return bytes(data)


def main() -> None:
    root = sys.argv[1]
    base = base_app()
    for n in (1, 2, 3):
        v = f"{n}.0.0"
        write_file(os.path.join(root, f"app-{n}"), "usr/share/demo-app/data.bin", app(base, n))
        check = (BROKEN if n == 3 else HEALTHY).format(v=v)
        with open(os.path.join(root, f"release-{n}.yaml"), "w") as fh:
            fh.write(RECIPE.format(v=v, n=n, check="".join("      " + line + "\n" for line in check.splitlines())))
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, f"app-{n}")):
            for name in dirnames + filenames:
                os.utime(os.path.join(dirpath, name), (1_700_000_000, 1_700_000_000))


if __name__ == "__main__":
    main()
