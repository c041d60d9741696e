#!/usr/bin/env bash
# The main job on embedded defaults, end to end: reproducible squashfs images,
# board images from an OCI image, signed full and delta bundles, and the A/B
# update cycle (trial boot, commit, rollback) on a virtual board.
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
step "edge build: a sample multi-arch OCI image (hand-made ELF binaries), built for every board"
run python -m edge.build.sample "$OUT/build"
run edge boards
run edge build "$OUT/build/recipe.yaml" -o "$OUT/images"

step "reproducible: a second build gives byte-identical images, metadata and boot files"
run edge build "$OUT/build/recipe.yaml" -o "$OUT/images-again" --json >/dev/null
run diff -r "$OUT/images" "$OUT/images-again"
echo "identical: $(ls "$OUT"/images/*.sqfs | wc -l) images"

step "check every image with squashfs-tools: each board got its CPU's /bin/sh"
for image in "$OUT"/images/*.sqfs; do
  root="${image%.sqfs}.root"
  unsquashfs -q -n -d "$root" "$image"
  read -r board arch size sha < <(python -c 'import json, sys; m = json.load(open(sys.argv[1])); print(m["board"], m["arch"], m["size"], m["sha256"][:16])' "${image%.sqfs}.json")
  elf=$(python -m edge.build.elfcheck "$root/usr/bin/edge-hello")
  printf '%-17s %-8s /bin/sh: %s, image %s bytes, sha256 %s...\n' "$board" "$arch" "$elf" "$size" "$sha"
  [[ "$elf" == "$arch "* ]] || { echo "$board: /bin/sh is not an $arch binary" >&2; exit 1; }
done
run "$OUT/images/sample-1.0.0-x86-64-efi.root/usr/bin/sh" && echo "the x86-64-efi image's /bin/sh runs on this machine (exit 0)"
run cat "$OUT/images/sample-1.0.0-rpi4.boot/boot-b/cmdline.txt"
run cat "$OUT/images/sample-1.0.0-rpi4.boot/autoboot/autoboot.txt"

step "three releases of a product for x86-64-efi: 1.0.0, 2.0.0 (a few changes), 3.0.0 (its app fails to start)"
run python scripts/demo_versions.py "$OUT/build"
for n in 1 2 3; do run edge build "$OUT/build/release-$n.yaml" -o "$OUT/releases" >/dev/null; done
ls -l "$OUT"/releases/*.sqfs

step "signing: an offline root CA issues a code-signing certificate"
run edge keys ca init "$OUT/ca"
run edge keys issue --ca "$OUT/ca" --name release -o "$OUT/keys"

step "bundles: 2.0.0 as a delta from 1.0.0, 3.0.0 as a full image"
run edge bundle create "$OUT/releases/demo-2.0.0-x86-64-efi.sqfs" --key "$OUT/keys/release.key" --cert "$OUT/keys/release.crt" \
  --keyring "$OUT/ca/root.crt" --delta-from "$OUT/releases/demo-1.0.0-x86-64-efi.sqfs" --security-version 2 \
  -o "$OUT/demo-2.0.0.edgeb"
run edge bundle create "$OUT/releases/demo-3.0.0-x86-64-efi.sqfs" --key "$OUT/keys/release.key" --cert "$OUT/keys/release.crt" \
  --keyring "$OUT/ca/root.crt" --security-version 3 -o "$OUT/demo-3.0.0.edgeb"
run edge bundle verify "$OUT/demo-2.0.0.edgeb" --keyring "$OUT/ca/root.crt" --board edge,x86-64-efi

step "a virtual x86-64-efi board running 1.0.0 (GRUB environment block, A/B slots)"
run edge sim create "$OUT/board" --board x86-64-efi --image "$OUT/releases/demo-1.0.0-x86-64-efi.sqfs" --keyring "$OUT/ca/root.crt"
DEV=(edge --config "$OUT/board/device.yaml")
run "${DEV[@]}" status

step "update to 2.0.0 with the delta bundle: written to slot B, trial boot, health check, commit"
run "${DEV[@]}" install "$OUT/demo-2.0.0.edgeb"
run grub-editenv "$OUT/board/boot/grubenv" list
run edge sim reboot "$OUT/board"
run "${DEV[@]}" status

step "update to the broken 3.0.0: its health check fails on the trial boot, the board rolls back to 2.0.0"
run "${DEV[@]}" install "$OUT/demo-3.0.0.edgeb"
run edge sim reboot "$OUT/board"
run "${DEV[@]}" status
booted=$("${DEV[@]}" status --json | python -c 'import json,sys; s=json.load(sys.stdin); print(s["slots"][s["booted"]]["version"])')
[ "$booted" = "2.0.0" ] || { echo "expected the board on 2.0.0, it runs $booted" >&2; exit 1; }
echo "the board runs 2.0.0; 3.0.0 was rolled back and its slot marked bad"

step "done: images in $OUT/images and $OUT/releases, bundles in $OUT, virtual board in $OUT/board"
