"""The device state, kept durably on the data partition (atomic write, fsync, rename, fsync dir).

Holds what the bootloader cannot: which image each slot holds, the
security-version floor, the operation in progress with its checkpoint, the
last error, and a short history. The bootloader's own view (booted, primary,
attempts) always comes from the boot-control backend.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from edge.fsutil import replace_file

from .errors import StateError

FORMAT = 1
HISTORY = 50
SLOT_STATUSES = ("empty", "installing", "installed", "good", "bad")


@dataclass
class SlotRecord:
    status: str = "empty"  # empty | installing | installed (trial pending) | good | bad
    version: str | None = None
    sha256: str | None = None
    size: int | None = None
    security_version: int | None = None
    updated: int | None = None


@dataclass
class Operation:
    kind: str  # "install"
    slot: str
    bundle: str
    manifest_sha256: str
    version: str
    security_version: int
    payload_type: str
    target_sha256: str
    target_size: int
    step: str = "writing"  # writing -> verified -> installed
    started: int = 0
    checkpoint: dict[str, Any] | None = None


@dataclass
class DeviceState:
    security_floor: int = 0
    committed: str | None = None
    slots: dict[str, SlotRecord] = field(default_factory=lambda: {"A": SlotRecord(), "B": SlotRecord()})
    operation: Operation | None = None
    last_error: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def event(self, event: str, **detail: Any) -> None:
        self.history.append({"time": int(time.time()), "event": event, **detail})
        del self.history[:-HISTORY]

    def commit(self, slot: str, op: Operation, **detail: Any) -> None:
        """``slot`` passed the trial of ``op`` (or was confirmed by hand): it becomes the committed
        slot, the security floor rises to its image's, the operation ends."""
        self.security_floor = max(self.security_floor, op.security_version)
        self.committed = slot
        self.slots[slot].status = "good"
        self.operation = None
        self.event("committed", slot=slot, version=op.version, **detail)

    def roll_back(self, op: Operation, reason: str, **detail: Any) -> None:
        """The update ``op`` ends without a commit: its slot is marked bad, the operation ends."""
        self.slots[op.slot].status = "bad"
        self.operation = None
        self.event("rolled-back", slot=op.slot, version=op.version, reason=reason, **detail)

    def error(self, message: str, code: int) -> None:
        self.last_error = {"time": int(time.time()), "message": message, "exit_code": code}

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}


def load_state(path: str) -> DeviceState:
    try:
        with open(path) as fh:
            raw = json.load(fh)
    except FileNotFoundError:
        return DeviceState()
    except (OSError, ValueError) as exc:
        raise StateError(f"{path}: the device state is unreadable ({exc}); move it away to start afresh") from None
    except RecursionError:
        raise StateError(f"{path}: the device state is unreadable (nested too deeply); move it away to start "
                         f"afresh") from None
    try:
        if raw.get("format") != FORMAT:
            raise StateError(f"{path}: state format {raw.get('format')!r} is not supported (expected {FORMAT})")
        op = raw.get("operation")
        return DeviceState(
            security_floor=int(raw.get("security_floor", 0)),
            committed=raw.get("committed"),
            slots={k: SlotRecord(**v) for k, v in raw["slots"].items()},
            operation=Operation(**op) if op else None,
            last_error=raw.get("last_error"),
            history=list(raw.get("history", [])),
        )
    except StateError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StateError(f"{path}: the device state is malformed ({exc}); move it away to start afresh") from None


def save_state(path: str, state: DeviceState) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    replace_file(path, json.dumps(state.to_json(), indent=1, sort_keys=True).encode(), mode=0o600)
