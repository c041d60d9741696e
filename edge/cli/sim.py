"""``edge sim``: a virtual board made of files, to run the whole update cycle without hardware."""

from __future__ import annotations

import argparse

from .output import print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sim", help="a virtual board: create it, reboot it, cut its power",
                       description="A virtual board: slot files, the board's bootloader env files, its simulated "
                                   "bootloader and a booted rootfs view. Run the device commands against it with "
                                   "'edge --config DIR/device.yaml install|status|mark-good|...'.")
    s = p.add_subparsers(dest="sim_command", metavar="ACTION")
    s.required = True
    c = s.add_parser("create", help="make a virtual board with IMAGE in slot A and boot it",
                     description="Create DIR with device.yaml, slot files, the bootloader's files (for x86-64-efi a "
                                 "GRUB environment block that grub-editenv can read) and boot slot A.")
    c.add_argument("dir", metavar="DIR")
    c.add_argument("--board", required=True, help="board name (edge boards)")
    c.add_argument("--image", required=True, metavar="V1.sqfs", help="the image slot A starts with")
    c.add_argument("--keyring", metavar="ROOTS.pem", help="trusted root certificates for bundles")
    c.add_argument("--boot-control", metavar="BACKEND", choices=("grub", "uboot", "file", "rpi", "jetson"),
                   help="override the board's boot-control backend (e.g. uboot, file)")
    c.add_argument("--slot-size", metavar="SIZE", help="size of each slot file (default: 4x the image, at least 64M)")
    c.add_argument("--health", action="append", metavar="COMMAND",
                   help="a health-check command (repeatable; default: the image's /usr/lib/edge/health-check if any)")
    c.add_argument("--bsp-path", action="append", default=[], metavar="DIR", help="extra board folders")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_create)
    r = s.add_parser("reboot", help="reboot the board: bootloader, mount, boot-check",
                     description="Run the board's bootloader algorithm on its env files, mount the chosen slot "
                                 "(a slot without a valid image panics and the board resets), then run "
                                 "'edge boot-check'; a failed trial reboots again into the previous slot.")
    r.add_argument("dir", metavar="DIR")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_reboot)
    w = s.add_parser("power-cut", help="cut the power (the next reboot is a cold boot)",
                     description="Lose power: volatile firmware state (the RPi tryboot flag, Jetson retry "
                                 "counters) is lost; the next 'sim reboot' boots whatever the bootloader would.")
    w.add_argument("dir", metavar="DIR")
    w.set_defaults(func=cmd_power_cut)


def _print(reports, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    if as_json:
        print_json([dataclasses.asdict(r) for r in reports])
        return
    for r in reports:
        print(r.line())


def cmd_create(args: argparse.Namespace) -> int:
    from edge.device.sim import create

    reports = create(args.dir, args.board, args.image, keyring=args.keyring, backend=args.boot_control,
                     slot_size=args.slot_size, health=args.health, bsp_paths=tuple(args.bsp_path))
    _print(reports, args.json)
    return 0


def cmd_reboot(args: argparse.Namespace) -> int:
    from edge.device.sim import reboot

    reports = reboot(args.dir)
    _print(reports, args.json)
    last = reports[-1].check
    return 0 if last is None or last.ok else 13


def cmd_power_cut(args: argparse.Namespace) -> int:
    from edge.device.sim import power_cut

    power_cut(args.dir)
    print(f"{args.dir}: power cut; 'edge sim reboot {args.dir}' powers it on again")
    return 0
