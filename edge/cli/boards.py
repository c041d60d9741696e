"""``edge boards``: list the board support packages and show one."""

from __future__ import annotations

import argparse

from bsp.boards import BoardRegistry
from edge.progress import human_bytes

from .output import print_json, print_table


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--bsp-path", action="append", default=argparse.SUPPRESS, metavar="DIR",
                        help="another board folder, or a directory of board folders (repeatable; overrides built-in boards)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print as JSON")
    p = sub.add_parser("boards", parents=[common], help="list the boards, or show one",
                       description="List the boards Edge can build for (built-in folders under bsp/ and any --bsp-path), "
                                   "or show everything about one: architecture, compatible string, kernel command line, "
                                   "serial console, boot control, partition layout and boot files. See docs/boards.md.")
    s = p.add_subparsers(dest="boards_command", metavar="ACTION")
    s.required = False
    ls = s.add_parser("list", parents=[common], help="list the boards (the default)",
                      description="List the boards: name, architecture, boot control, compatible string.")
    ls.set_defaults(func=cmd_list)
    show = s.add_parser("show", parents=[common], help="show one board",
                        description="Show one board's definition (board.yaml, validated).")
    show.add_argument("name", metavar="NAME")
    show.set_defaults(func=cmd_show)
    p.set_defaults(func=cmd_list)


def _registry(args: argparse.Namespace) -> BoardRegistry:
    return BoardRegistry(getattr(args, "bsp_path", []))


def cmd_list(args: argparse.Namespace) -> int:
    boards = _registry(args).all()
    if getattr(args, "json", False):
        print_json([b.to_dict() for b in boards])
        return 0
    rows = [(b.name, b.arch, b.boot_control.mechanism, b.compatible, b.description) for b in boards]
    header = ("NAME", "ARCH", "BOOT CONTROL", "COMPATIBLE", "DESCRIPTION")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]
    for row in [header] + rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4])
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    board = _registry(args).get(args.name)
    if getattr(args, "json", False):
        print_json(board.to_dict())
        return 0
    options = ", ".join(f"{k}={v}" for k, v in sorted(board.boot_control.options.items()))
    print_table([
        ("name", board.name),
        ("description", board.description or "-"),
        ("arch", board.arch),
        ("compatible", board.compatible),
        ("kernel cmdline", " ".join(board.kernel_cmdline)),
        ("serial console", f"{board.serial_console.device} at {board.serial_console.baud} baud"),
        ("boot control", board.boot_control.mechanism + (f" ({options})" if options else "")),
        ("partition table", board.partition_table),
        ("folder", board.directory),
        ("rootfs overlay", board.rootfs_overlay or "-"),
    ])
    print()
    print(f"{'#':>3}  {'partition':<12} {'role':<12} {'slot':<4} {'fs':<9} {'size':>10}  root=")
    for part in board.partitions:
        size = human_bytes(part.size) + ("+" if part.grow else "")
        print(f"{part.number:>3}  {part.name:<12} {part.role:<12} {part.slot or '-':<4} {part.fs or '-':<9} {size:>10}  {part.root or ''}")
    print()
    print("boot files:")
    for f in board.boot_files:
        origin = f"board {f.src[len(board.directory) + 1:]}" if f.src else f"image {f.rootfs}"
        flags = [flag for flag, on in (("template", f.template), ("optional", f.optional)) if on]
        print(f"  {f.partition}:{f.path}  <- {origin}" + (f"  ({', '.join(flags)})" if flags else ""))
    return 0
