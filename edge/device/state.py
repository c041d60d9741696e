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
        if not isinstance(raw, dict):
            raise _Malformed(f"a JSON {type(raw).__name__}, not an object")
        if raw.get("format") != FORMAT:
            raise StateError(f"{path}: state format {raw.get('format')!r} is not supported (expected {FORMAT})")
        return _state_from(raw)
    except _Malformed as exc:
        raise StateError(f"{path}: the device state is malformed ({exc}); move it away to start afresh") from None


class _Malformed(Exception):
    pass


_SLOTS = ("A", "B")
_STEPS = ("writing", "verified", "installed")
_OPTIONAL = object()  # a field that may be null
_KIND_NAMES = {dict: "an object", list: "a list", str: "a string", int: "a whole number"}


def _field(obj: dict[str, Any], name: str, where: str, kind: type | tuple[Any, ...], default: Any = None,
           choices: tuple[str, ...] = ()) -> Any:
    """obj[name] if it has the kind (and is one of ``choices``), else _Malformed naming it."""
    allowed = kind if isinstance(kind, tuple) else (kind,)
    value = obj.get(name, default)
    if value is None and _OPTIONAL in allowed:
        return None
    if name not in obj and default is None:
        raise _Malformed(f"{where}{name}: missing")
    kinds = tuple(k for k in allowed if k is not _OPTIONAL)
    if not isinstance(value, kinds) or isinstance(value, bool) and bool not in kinds:
        raise _Malformed(f"{where}{name}: {value!r} is not {' or '.join(_KIND_NAMES[k] for k in kinds)}")
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        raise _Malformed(f"{where}{name}: {value} is negative")
    if choices and value not in choices:
        raise _Malformed(f"{where}{name}: {value!r} is not one of {', '.join(choices)}")
    return value


def _only(obj: dict[str, Any], fields: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(obj) - set(fields))
    if unknown:
        raise _Malformed(f"{where}{unknown[0]}: unknown field")


def _state_from(raw: dict[str, Any]) -> DeviceState:
    """A DeviceState from the parsed file, every field's type and range checked (a hand-edited or
    damaged file fails here, naming the field, rather than deep inside a command)."""
    opt_str, opt_int = (str, _OPTIONAL), (int, _OPTIONAL)
    slots_raw = _field(raw, "slots", "", dict)
    if sorted(slots_raw) != list(_SLOTS):
        raise _Malformed(f"slots: {sorted(slots_raw)} are not the slots A and B")
    slots = {}
    for name in _SLOTS:
        rec, where = _field(slots_raw, name, "slots.", dict), f"slots.{name}."
        _only(rec, tuple(SlotRecord.__dataclass_fields__), where)
        slots[name] = SlotRecord(status=_field(rec, "status", where, str, "empty", SLOT_STATUSES),
                                 version=_field(rec, "version", where, opt_str),
                                 sha256=_field(rec, "sha256", where, opt_str),
                                 size=_field(rec, "size", where, opt_int),
                                 security_version=_field(rec, "security_version", where, opt_int),
                                 updated=_field(rec, "updated", where, opt_int))
    operation = None
    op = _field(raw, "operation", "", (dict, _OPTIONAL))
    if op is not None:
        where = "operation."
        _only(op, tuple(Operation.__dataclass_fields__), where)
        operation = Operation(kind=_field(op, "kind", where, str), slot=_field(op, "slot", where, str, None, _SLOTS),
                              bundle=_field(op, "bundle", where, str),
                              manifest_sha256=_field(op, "manifest_sha256", where, str),
                              version=_field(op, "version", where, str),
                              security_version=_field(op, "security_version", where, int),
                              payload_type=_field(op, "payload_type", where, str),
                              target_sha256=_field(op, "target_sha256", where, opt_str),
                              target_size=_field(op, "target_size", where, int),
                              step=_field(op, "step", where, str, "writing", _STEPS),
                              started=_field(op, "started", where, int, 0),
                              checkpoint=op.get("checkpoint"))  # any value: a resume checks it, and ignores a bad one
    history = _field(raw, "history", "", list, [])
    if not all(isinstance(h, dict) for h in history):
        raise _Malformed("history: an entry is not an object")
    return DeviceState(security_floor=_field(raw, "security_floor", "", int, 0),
                       committed=_field(raw, "committed", "", (str, _OPTIONAL), None, _SLOTS),
                       slots=slots, operation=operation,
                       last_error=_field(raw, "last_error", "", (dict, _OPTIONAL)),
                       history=list(history))


def save_state(path: str, state: DeviceState) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    replace_file(path, json.dumps(state.to_json(), indent=1, sort_keys=True).encode(), mode=0o600)
