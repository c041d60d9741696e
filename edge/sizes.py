"""Sizes written with binary units, as the command line, recipes and device.yaml give them."""

from __future__ import annotations

_BINARY = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_binary_size(text: str) -> int:
    """Bytes from "128K", "16M", "2G" or "65536", with an optional "B" or "iB" suffix (any case);
    ValueError when it is not one. Callers check the range."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1:] if t[-1:] in _BINARY else ""
    return int(t[: len(t) - len(unit)]) * _BINARY[unit]
