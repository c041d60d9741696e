"""After a boot and by hand: boot-check (commit or roll back a trial), mark-good, mark-bad, rollback, status.

``boot_check`` runs on every boot (``edge-boot-check.service`` in each BSP):

- booted into a slot under trial → run the health checks: pass → mark the
  slot good, raise the security-version floor, state "committed"; fail → mark it
  bad, record why, and ask for a reboot into the previous slot;
- booted into the old slot while a trial was armed → the bootloader fell back
  (attempts exhausted, or on a board without a counter the trial never reached
  its health check): record "rolled back" with the reason and disarm the slot;
- a normal boot → run the health checks and, if they pass, mark the booted slot
  good (counting bootloaders need that on every boot; RAUC works the same way).

Every step changes the bootloader first and the state file second, each with
one atomic write, so a power cut between them is repaired by the next boot-check.
Each command that changes the state holds the device lock (edge.locking) throughout.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from bsp.bootctl import BootControlError
from bsp.bootctl.base import SLOTS, other_slot
from edge.locking import device_lock

from .config import DeviceConfig
from .errors import DeviceError, HealthCheckFailed
from .health import HealthResult, run_health_checks
from .install import backend_for
from .state import DeviceState, Operation, SlotRecord, load_state, save_state


@dataclass
class BootCheckResult:
    booted: str
    outcome: str  # committed | rolled-back | healthy | unhealthy | pending
    message: str
    reboot: list[str] | None = None
    health: dict[str, Any] | None = None
    events: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.outcome in ("committed", "healthy", "pending")


def _health(config: DeviceConfig, slot: str, state: DeviceState, env: dict[str, str] | None) -> HealthResult:
    rec = state.slots.get(slot)
    environ = {"EDGE_SLOT": slot, "EDGE_VERSION": (rec.version if rec and rec.version else "")}
    environ.update(env or {})
    return run_health_checks(config.health, environ)


_F = TypeVar("_F", bound=Callable[..., Any])


def _locked(operation: str) -> Callable[[_F], _F]:
    """Run the decorated command (its first argument: the DeviceConfig) under the device lock."""
    def wrap(fn: _F) -> _F:
        @functools.wraps(fn)
        def locked(config: DeviceConfig, *args: Any, **kwargs: Any) -> Any:
            with device_lock(config.state_dir, operation):
                return fn(config, *args, **kwargs)
        return locked  # type: ignore[return-value]
    return wrap


@_locked("boot-check")
def boot_check(config: DeviceConfig, env: dict[str, str] | None = None) -> BootCheckResult:
    backend = backend_for(config)
    state = load_state(config.state_file)
    booted = backend.booted_slot()
    op = state.operation
    events: list[str] = []

    def save() -> None:
        save_state(config.state_file, state)

    if op is not None and op.step in ("verified", "installed"):
        if booted == op.slot:
            health = _health(config, booted, state, env)
            if health.ok:
                backend.mark_good(booted)
                state.commit(booted, op, security_floor=max(state.security_floor, op.security_version))
                state.last_error = None
                save()
                return BootCheckResult(booted, "committed", f"slot {booted} ({op.version}) passed its health checks "
                                       f"and is committed", health=asdict(health))
            previous = other_slot(booted)
            backend.mark_bad(booted)
            reason = f"health check failed: {health.reason}"
            state.error(f"update to {op.version} rolled back: {reason}", HealthCheckFailed.exit_code)
            state.roll_back(op, reason, to=previous)
            save()
            return BootCheckResult(booted, "rolled-back", f"slot {booted} ({op.version}) failed its trial ({reason}); "
                                   f"marked bad, rebooting into slot {previous}", reboot=backend.reboot_command(),
                                   health=asdict(health))
        # booted into the other slot while a trial is (or was) armed
        left = backend.attempts_left(op.slot)
        if backend.primary_slot() == op.slot and backend.slot_state(op.slot) == "trying" and left is not None and left > 0:
            events.append(f"trial of slot {op.slot} ({op.version}) is armed and waits for a reboot")
        else:
            if op.step == "verified":
                why = "the install was interrupted before the trial boot was armed (install again to re-arm it)"
            elif left is not None:
                why = "its boot attempts were exhausted"
            else:
                why = ("the trial boot did not reach its health check (this board has no boot counter: a crash, "
                       "reset or power loss during the trial returns to the committed slot)")
            try:
                if backend.slot_state(op.slot) != "bad":
                    backend.mark_bad(op.slot)
            except BootControlError:
                pass  # nothing left to disarm
            state.error(f"update to {op.version} rolled back: {why}", HealthCheckFailed.exit_code)
            state.roll_back(op, why, to=booted)
            save()
            events.append(f"update to {op.version} in slot {op.slot} was rolled back: {why}")

    # a normal boot of a committed slot
    health = _health(config, booted, state, env)
    if state.committed is not None and booted != state.committed and (state.operation is None or state.operation.slot != booted):
        events.append(f"the bootloader fell back from slot {state.committed} to slot {booted}")
        state.event("fell-back", slot=booted, previous=state.committed)
    if health.ok:
        backend.mark_good(booted)
        state.committed = booted
        rec = state.slots[booted]
        if rec.status != "good":
            rec.status = "good"
            rec.updated = int(time.time())
        save()
        pending = state.operation is not None and state.operation.step == "installed"
        message = "; ".join(events + [f"slot {booted} is healthy"])
        outcome = "pending" if pending else ("rolled-back" if any("rolled back" in e for e in events) else "healthy")
        return BootCheckResult(booted, outcome, message, health=asdict(health), events=events)
    state.error(f"slot {booted}: {health.reason}; not confirmed (the bootloader falls back once its attempts run out)",
                HealthCheckFailed.exit_code)
    save()
    return BootCheckResult(booted, "unhealthy", "; ".join(events + [f"slot {booted} is unhealthy: {health.reason}"]),
                           health=asdict(health), events=events)


@_locked("mark-good")
def mark_good(config: DeviceConfig, slot: str | None = None) -> str:
    """Confirm ``slot`` (default: the booted one) without health checks; commits a trial of it."""
    backend, state, slot = _marking(config, slot)
    backend.mark_good(slot)
    op = state.operation
    if op is not None and op.slot == slot and op.step in ("verified", "installed"):
        state.commit(slot, op, by="mark-good")
    state.slots[slot].status = "good"
    state.event("marked-good", slot=slot)
    save_state(config.state_file, state)
    return f"slot {slot} marked good"


@_locked("mark-bad")
def mark_bad(config: DeviceConfig, slot: str | None = None) -> str:
    """Reject ``slot`` (default: the booted one): the bootloader will not start it again."""
    backend, state, slot = _marking(config, slot)
    backend.mark_bad(slot)
    op = state.operation
    if op is not None and op.slot == slot:
        state.roll_back(op, "marked bad by hand")
    state.slots[slot].status = "bad"
    state.event("marked-bad", slot=slot)
    save_state(config.state_file, state)
    return f"slot {slot} marked bad; {'reboot to leave it' if slot == _booted(backend) else 'it will not be booted'}"


@_locked("rollback")
def rollback(config: DeviceConfig, force: bool = False) -> tuple[str, list[str]]:
    """Cancel a pending trial, or arm a trial of the other slot's (older) image."""
    backend = backend_for(config)
    state = load_state(config.state_file)
    booted = backend.booted_slot()
    op = state.operation
    if op is not None and op.step in ("verified", "installed") and op.slot != booted:
        backend.mark_bad(op.slot)
        state.roll_back(op, "cancelled by 'edge rollback'")
        save_state(config.state_file, state)
        return f"the pending update to {op.version} in slot {op.slot} was cancelled; slot {booted} stays", []
    other = other_slot(booted)
    rec = state.slots[other]
    if rec.status != "good" or not rec.sha256:
        raise DeviceError(f"slot {other} holds no good image to roll back to (status {rec.status})")
    if rec.security_version is not None and rec.security_version < state.security_floor and not force:
        raise DeviceError(f"slot {other} ({rec.version}) has security_version {rec.security_version}, below this "
                          f"device's floor {state.security_floor}: rolling back would undo a security fix (--force to do it anyway)")
    backend.set_primary(other, config.boot_attempts)
    state.operation = Operation(kind="rollback", slot=other, bundle="", manifest_sha256="", version=rec.version or "?",
                                security_version=rec.security_version or 0, payload_type="none",
                                target_sha256=rec.sha256, target_size=rec.size or 0, step="installed",
                                started=int(time.time()))
    state.event("rollback-armed", slot=other, version=rec.version)
    save_state(config.state_file, state)
    return f"slot {other} ({rec.version}) armed for a trial boot; reboot to roll back", backend.reboot_command()


def status(config: DeviceConfig) -> dict[str, Any]:
    backend = backend_for(config)
    state = load_state(config.state_file)
    boot = backend.describe()
    slots = {}
    for s in SLOTS:
        rec = asdict(state.slots.get(s) or SlotRecord())
        rec["bootloader"] = boot["slots"][s]
        rec["device"] = config.slots[s]
        slots[s] = rec
    return {
        "device_id": config.device_id,
        "board": config.board,
        "compatible": config.compatible,
        "booted": boot.get("booted"),
        "primary": boot.get("primary"),
        "committed": state.committed,
        "security_floor": state.security_floor,
        "slots": slots,
        "operation": asdict(state.operation) if state.operation else None,
        "last_error": state.last_error,
        "boot_control": boot,
        "history": state.history[-10:],
    }


def _marking(config: DeviceConfig, slot: str | None):  # type: ignore[no-untyped-def]
    """(backend, state, slot) for marking ``slot`` by hand; the booted slot when none is named."""
    backend = backend_for(config)
    state = load_state(config.state_file)
    slot = slot or backend.booted_slot()
    _check(slot)
    return backend, state, slot


def _check(slot: str) -> None:
    if slot not in SLOTS:
        raise DeviceError(f"unknown slot {slot!r}: slots are {', '.join(SLOTS)}")


def _booted(backend) -> str | None:  # type: ignore[no-untyped-def]
    try:
        return backend.booted_slot()
    except BootControlError:
        return None
