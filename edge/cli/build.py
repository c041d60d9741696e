"""``edge build``: turn a recipe (a container image plus board choices) into bootable squashfs images."""

from __future__ import annotations

import argparse
import os

from edge.build.pipeline import build
from edge.build.recipe import load_recipe
from edge.progress import Progress, human_bytes

from .output import print_json
from .units import parse_processors


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build", help="build board images from a recipe",
        description="Build an immutable squashfs OS image per board from RECIPE.yaml: the recipe's source (a "
                    "directory, a tarball, an OCI image layout or a docker/podman save archive) is merged once per "
                    "CPU architecture, the board's files and the recipe's overlays, files and removals are applied, "
                    "and OUTDIR receives NAME-VERSION-BOARD.sqfs, NAME-VERSION-BOARD.json (metadata) and "
                    "NAME-VERSION-BOARD.boot/ (boot partition files) for each board. See docs/build.md.",
        epilog="Exit codes: 5 recipe, board or build error (e.g. architecture mismatch); 6 source error "
               "(corrupt or truncated layer, digest mismatch, bad archive).")
    p.add_argument("recipe", metavar="RECIPE.yaml", help="the recipe to build")
    p.add_argument("--board", dest="boards", action="extend", nargs="+", metavar="NAME",
                   help="build for these boards instead of the recipe's 'boards' (see 'edge boards')")
    p.add_argument("-o", "--outdir", default=".", metavar="OUTDIR", help="where to write the outputs (default: .)")
    p.add_argument("--bsp-path", action="append", default=[], metavar="DIR",
                   help="another board folder, or a directory of board folders (repeatable; these override built-in boards)")
    p.add_argument("--no-arch-check", action="store_true",
                   help="do not check that the image's /bin/sh, init and image config match the board's CPU")
    p.add_argument("--work-dir", metavar="DIR",
                   help="where to spool decompressed layers during the build (default: the system temporary directory)")
    p.add_argument("--processors", type=parse_processors, default=0, metavar="N", help="compression threads (default: one per CPU)")
    p.add_argument("--json", action="store_true", help="print the result (with each board's metadata) as JSON")
    p.set_defaults(func=cmd_build)


def cmd_build(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe)
    result = build(
        recipe,
        boards=args.boards,
        outdir=args.outdir,
        bsp_paths=args.bsp_path,
        arch_check=False if args.no_arch_check else None,
        work_dir=args.work_dir,
        workers=args.processors,
        progress=lambda label: Progress(label),
        log=None if args.json else print,
    )
    if args.json:
        print_json(result.to_dict())
        return 0
    for board in result.boards:
        meta = board.metadata

        def shown(path: str) -> str:
            return os.path.join(args.outdir, os.path.basename(path))

        print(f"{board.board}: {shown(board.image)} ({human_bytes(meta['size'])}, {meta['entry_count']} entries, "
              f"{meta['compressor']} level {meta['level']}, sha256 {meta['sha256']})")
        print(f"{' ' * len(board.board)}  {shown(board.metadata_file)}, {shown(board.boot_dir)}/ "
              f"({len(meta['boot_files'])} boot files)")
        for warning in board.warnings:
            print(f"warning: {warning}")
    print(f"built {len(result.boards)} image(s) in {result.seconds:.1f}s "
          f"({result.layers_applied} layer(s) merged, {result.blobs.blobs_read} blob(s) read)")
    return 0
