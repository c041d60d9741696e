"""Command-line values with units."""

from __future__ import annotations

import argparse

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
