"""Command-line values with units."""

from __future__ import annotations

import argparse

from edge.errors import UsageError
from edge.sizes import parse_binary_size

_RATE_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


def parse_rate(text: str) -> float:
    """Bytes per second, decimal units: "1M" = 1,000,000; "12.5M"; "500k"; an optional "B/s" suffix."""
    t = text.strip().lower().removesuffix("/s").removesuffix("b")
    unit = t[-1:] if t[-1:] in _RATE_UNITS else ""
    try:
        value = float(t[: len(t) - len(unit)]) * _RATE_UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate (examples: 1M, 12.5M, 500k)") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: a rate must be a positive number")
    return value


def check_rebuild_rate(args: argparse.Namespace) -> None:
    """--rebuild-rate tunes the --link-speed trade-off (``edge delta make``, ``edge bundle create``)."""
    if args.rebuild_rate is not None and args.link_speed is None:
        raise UsageError("--rebuild-rate only matters with --link-speed")


MAX_PROCESSORS = 1024


def parse_processors(text: str) -> int:
    """--processors: a thread count, 0 for one per CPU."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (0: one per CPU)") from None
    if not 0 <= value <= MAX_PROCESSORS:
        raise argparse.ArgumentTypeError(f"{text}: give 0 (one per CPU) up to {MAX_PROCESSORS}")
    return value


def parse_zstd_level(text: str) -> int:
    """A zstd compression level, 1 to 22."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 22:
        raise argparse.ArgumentTypeError(f"zstd level {text} is out of range 1..22")
    return value


def parse_size(text: str) -> int:
    """Bytes, binary units: "16M" = 16 MiB; "64K"; "1G"; "65536"; an optional "B"/"iB" suffix."""
    try:
        value = parse_binary_size(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (examples: 16M, 1G, 65536)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a size must be positive")
    return value
