"""Device commands: ``edge install``, ``status``, ``mark-good``, ``mark-bad``, ``rollback``, ``boot-check``.

They act on the device described by ``--config`` (default $EDGE_CONFIG, then
/etc/edge/device.yaml), or on a virtual board's DIR/device.yaml.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import time

from edge.progress import Progress, human_bytes

from .output import print_json

COMMANDS = ("install", "status", "mark-good", "mark-bad", "rollback", "boot-check")


def register(sub: argparse._SubParsersAction) -> None:
    i = sub.add_parser("install", help="install an update bundle into the inactive slot",
                       description="Verify BUNDLE (a file or an http(s) URL) against the device's keyring, board and "
                                   "security floor, stream it into the inactive slot (a delta is applied against the "
                                   "booted slot), verify the slot, and arm a trial boot. Interrupted installs resume "
                                   "when run again. Reboot to try the new slot; 'edge boot-check' commits it.")
    i.add_argument("bundle", metavar="BUNDLE_OR_URL")
    i.add_argument("--reboot", action="store_true", help="reboot into the trial when done")
    i.add_argument("--json", action="store_true", help="print the result as JSON")
    i.set_defaults(func=cmd_install)

    s = sub.add_parser("status", help="show slots, versions, pending operation and security floor",
                       description="Booted and primary slot, each slot's version, hash and state (ours and the "
                                   "bootloader's), the pending operation, the security-version floor, the last error.")
    s.add_argument("--json", action="store_true", help="print as JSON")
    s.set_defaults(func=cmd_status)

    for name, helptext in (("mark-good", "confirm a slot (default: the booted one) without health checks"),
                           ("mark-bad", "reject a slot (default: the booted one): the bootloader will not start it")):
        p = sub.add_parser(name, help=helptext, description=helptext[0].upper() + helptext[1:] + ".")
        p.add_argument("slot", nargs="?", choices=("A", "B"), help="slot (default: the booted slot)")
        p.set_defaults(func=cmd_mark, good=name == "mark-good")

    r = sub.add_parser("rollback", help="cancel a pending trial, or arm a trial of the other slot's image",
                       description="If an installed update waits for its trial boot, cancel it. Otherwise arm a "
                                   "trial boot of the other slot's (previous) image; it is committed by boot-check "
                                   "like an update. Refused below the security floor unless --force.")
    r.add_argument("--force", action="store_true", help="roll back even below the security-version floor")
    r.add_argument("--reboot", action="store_true", help="reboot into the trial")
    r.set_defaults(func=cmd_rollback)

    b = sub.add_parser("boot-check", help="after boot: run health checks, commit or roll back a trial",
                       description="Run on every boot (edge-boot-check.service). On a trial boot: health checks pass "
                                   "-> commit (mark good, raise the security floor); fail -> mark bad and reboot into "
                                   "the previous slot. After a fallback by the bootloader: record the rollback. On a "
                                   "normal boot: confirm the slot when healthy. Exit 13 when the boot is not healthy.")
    b.add_argument("--reboot", action="store_true", help="run the reboot a rollback needs (the service does)")
    b.add_argument("--json", action="store_true", help="print the result as JSON")
    b.set_defaults(func=cmd_boot_check)


def _config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from edge.device import load_config

    return load_config(args.config)


def _reboot(command: list[str]) -> None:
    print(f"rebooting: {' '.join(command)}")
    subprocess.run(command, check=False)


def cmd_install(args: argparse.Namespace) -> int:
    from edge.device import Installer

    config = _config(args)
    bars: dict[str, Progress] = {}

    def progress(phase: str, done: int, total: int) -> None:
        bar = bars.get(phase)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[phase] = Progress(phase)
        bar.update(done, total)

    try:
        result = Installer(config, progress=progress).install(args.bundle)
    finally:
        for bar in bars.values():
            bar.close()
    if args.json:
        print_json(dataclasses.asdict(result))
    else:
        how = "already in place, re-armed" if result.already_installed else (
            "resumed and installed" if result.resumed_from is not None else "installed")
        print(f"{result.version} ({result.payload_type}) {how} in slot {result.slot} in {result.seconds:.1f}s; "
              f"reboot to try it: {' '.join(result.reboot_command)}")
    if args.reboot:
        _reboot(result.reboot_command)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from edge.device import status

    info = status(_config(args))
    if args.json:
        print_json(info)
        return 0
    print(f"device {info['device_id']} ({info['board']}, {info['compatible']})")
    print(f"booted: {info['booted']}   primary: {info['primary']}   committed: {info['committed']}   "
          f"security floor: {info['security_floor']}   boot control: {info['boot_control']['backend']}")
    for slot, rec in info["slots"].items():
        bl = rec["bootloader"]
        left = "" if bl["attempts_left"] is None else f", {bl['attempts_left']} attempts left"
        size = f" {human_bytes(rec['size'])}" if rec["size"] else ""
        sha = f" sha256 {rec['sha256'][:16]}…" if rec["sha256"] else ""
        print(f"  slot {slot}: {rec['status']:10} {rec['version'] or '-':12}{size}{sha}  bootloader: {bl['state']}{left}  ({rec['device']})")
    op = info["operation"]
    if op:
        print(f"pending: {op['kind']} of {op['version']} into slot {op['slot']} ({op['step']})")
    if info["last_error"]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(info["last_error"]["time"]))
        print(f"last error ({when} UTC): {info['last_error']['message']}")
    return 0


def cmd_mark(args: argparse.Namespace) -> int:
    from edge.device import mark_bad, mark_good

    print((mark_good if args.good else mark_bad)(_config(args), args.slot))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from edge.device import rollback

    message, command = rollback(_config(args), force=args.force)
    print(message)
    if args.reboot and command:
        _reboot(command)
    return 0


def cmd_boot_check(args: argparse.Namespace) -> int:
    from edge.device import HealthCheckFailed, boot_check

    result = boot_check(_config(args))
    if args.json:
        print_json(dataclasses.asdict(result))
    else:
        print(f"slot {result.booted}: {result.outcome}: {result.message}")
    if result.reboot and args.reboot:
        _reboot(result.reboot)
    return 0 if result.ok else HealthCheckFailed.exit_code
