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

from edge import __version__
from edge.errors import EdgeError

# Modules under edge.cli that add subcommands, in the order --help lists them.
COMMAND_MODULES = ["squashfs", "build", "boards", "delta"]

EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="edge",
        description="Edge: build immutable embedded Linux images, sign (delta) update bundles, install them A/B.",
        epilog="Run 'edge COMMAND --help' for a command's options. Exit codes are listed in docs/cli.md.",
    )
    parser.add_argument("--version", action="version", version=f"edge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"edge.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EdgeError as exc:
        print(f"edge: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("edge: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        sys.stderr.close()  # a closed pager is not an error
        return 0
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"edge: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 3
    except Exception as exc:  # a bug: say so in one line
        if os.environ.get("EDGE_DEBUG"):
            raise
        print(f"edge: internal error: {type(exc).__name__}: {exc} (set EDGE_DEBUG=1 for a traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
