"""The ``edge`` command line: argument parsing, error reporting and exit codes.

Each subcommand lives in its own module with a ``register(subparsers)``
function.  Errors a user can act on are :class:`~edge.errors.EdgeError`
subclasses and end in one line on stderr and the class's exit code; a bug
ends in one "internal error" line (``EDGE_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

from edge import __version__
from edge.errors import EdgeError

# Subcommands, in the order --help lists them: name -> (module under edge.cli, one-line help).
# Only the module of the command being run is imported, so a device applying an update
# does not pay (in memory or start-up time) for the build or signing machinery.
COMMANDS: dict[str, tuple[str, str]] = {
    "squashfs": ("squashfs", "create, list, extract and inspect squashfs images"),
    "build": ("build", "build board images from a recipe"),
    "boards": ("boards", "list the boards, or show one"),
    "keys": ("keys", "manage the signing CA, signing certificates and revocation"),
    "bundle": ("bundle", "create, inspect, verify and extract signed update bundles"),
    "delta": ("delta", "make, apply and inspect deltas between images"),
    "install": ("device", "install an update bundle into the inactive slot"),
    "status": ("device", "show slots, versions, pending operation and security floor"),
    "mark-good": ("device", "confirm a slot without health checks"),
    "mark-bad": ("device", "reject a slot"),
    "rollback": ("device", "cancel a pending trial, or arm a trial of the other slot"),
    "boot-check": ("device", "after boot: run health checks, commit or roll back a trial"),
    "sim": ("sim", "a virtual board: create it, reboot it, cut its power"),
}
GLOBAL_OPTIONS_WITH_VALUE: set[str] = {"--config"}

EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130

# Control characters (C0, DEL, C1) and Unicode line separators -> visible escapes: an error is one line
# even when it names a file whose name holds a newline or quotes a server's text, and a terminal escape
# sequence in such a name is shown, not acted on.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))} | {
    ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def one_line(text: str) -> str:
    """``text`` with its control characters escaped (``\\n``, ``\\x1b``): one line, shown as written."""
    return text.translate(_ESCAPES)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {one_line(message)}\n")


def _command_of(argv: list[str]) -> str | None:
    """The subcommand named on the command line (skipping global options), if any."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in GLOBAL_OPTIONS_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command``, only that subcommand is fully built (others are listed)."""
    parser = _Parser(
        prog="edge",
        description="Edge: build immutable embedded Linux images, sign (delta) update bundles, install them A/B.",
        epilog="Run 'edge COMMAND --help' for a command's options. Exit codes are listed in docs/cli.md.",
    )
    parser.add_argument("--version", action="version", version=f"edge {__version__}")
    parser.add_argument("--config", metavar="DEVICE.yaml",
                        help="device configuration for the device commands (default: $EDGE_CONFIG, then "
                             "/etc/edge/device.yaml)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    wanted = list(dict.fromkeys(m for n, (m, _) in COMMANDS.items() if command is None or command == n))
    for module in wanted:
        importlib.import_module(f"edge.cli.{module}").register(sub)
    for name, (_, help_text) in COMMANDS.items():
        if name not in sub.choices:
            sub.add_parser(name, help=help_text)  # listed in --help; built only when it is the command run
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = _command_of(argv)
    parser = build_parser(command if command in COMMANDS else "")
    args = parser.parse_args(argv)
    stdout = sys.stdout
    sys.stdout = _NamedStdout(stdout)  # type: ignore[assignment]
    try:
        return int(args.func(args) or 0)
    except EdgeError as exc:
        return _fail(args, str(exc), exc.exit_code, type(exc).__name__)
    except KeyboardInterrupt:
        print("edge: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        sys.stderr.close()  # a closed pager is not an error
        return 0
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(args, f"{where}{exc.strerror or exc}", 3, "OSError")
    except Exception as exc:  # a bug: say so in one line
        if os.environ.get("EDGE_DEBUG"):
            raise
        return _fail(args, f"{type(exc).__name__}: {exc} (set EDGE_DEBUG=1 for a traceback)", EXIT_INTERNAL,
                     "InternalError", prefix="internal error")
    finally:
        sys.stdout = stdout


class _NamedStdout:
    """sys.stdout whose write errors name it: stdout on a full disk reads "standard output: No space
    left on device", not a bare "No space left on device"."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._named(self._stream.write, text)

    def flush(self) -> None:
        self._named(self._stream.flush)

    @staticmethod
    def _named(call: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except OSError as exc:
            exc.filename = exc.filename or "standard output"
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _fail(args: argparse.Namespace, message: str, code: int, kind: str, prefix: str = "error") -> int:
    """One line on stderr; with --json also an error object on stdout, so a machine reading stdout
    always gets JSON."""
    print(f"edge: {prefix}: {one_line(message)}", file=sys.stderr)
    if getattr(args, "json", False):
        import json

        try:
            print(json.dumps({"error": {"message": message, "exit_code": code, "type": kind}}), flush=True)
        except OSError:  # stdout is closed or full (the error may be that): stderr has said it
            _drop_stdout()
    return code


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush of what could not be written does not
    print a traceback of its own."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
