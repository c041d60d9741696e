#!/usr/bin/env bash
# The main job on embedded defaults: build a reproducible squashfs image from a
# sample root filesystem, list it, and verify it with the real squashfs-tools.
set -euo pipefail
OUT=${OUT:-out/demo}
step() { printf '\n==> %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

rm -rf "$OUT"
mkdir -p "$OUT"
step "generate a sample root filesystem"
run python scripts/sample_rootfs.py "$OUT/rootfs" --version 1.0.0

step "build a squashfs image (zstd, 128 KiB blocks, timestamps clamped)"
run edge squashfs create "$OUT/rootfs" "$OUT/rootfs.sqfs" --mtime 1700000000

step "list and inspect it"
run edge squashfs ls -l "$OUT/rootfs.sqfs"
run edge squashfs info "$OUT/rootfs.sqfs"

step "reproducible: a second build is byte-identical"
run edge squashfs create "$OUT/rootfs" "$OUT/rootfs-again.sqfs" --mtime 1700000000 >/dev/null
run cmp "$OUT/rootfs.sqfs" "$OUT/rootfs-again.sqfs"
echo "identical: $(sha256sum "$OUT/rootfs.sqfs" | cut -c1-16)…"

step "verify with squashfs-tools: unsquashfs lists and extracts it, and the result equals the source"
run unsquashfs -s "$OUT/rootfs.sqfs" | head -5
diff <(TZ=UTC unsquashfs -lln "$OUT/rootfs.sqfs" | sed -E 's# squashfs-root(/|$)# /#') \
     <(TZ=UTC edge squashfs ls -l "$OUT/rootfs.sqfs") \
  || { echo "listing differs from unsquashfs" >&2; exit 1; }
echo "unsquashfs -lln listing matches edge squashfs ls -l"
run unsquashfs -q -n -d "$OUT/unsquashed" "$OUT/rootfs.sqfs"
run python -m edge.treediff "$OUT/rootfs" "$OUT/unsquashed"
step "done: $OUT/rootfs.sqfs"
