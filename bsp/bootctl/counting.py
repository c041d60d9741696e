"""The attempt-counting A/B algorithm shared by GRUB, U-Boot and the ``file`` backend (pure).

The environment holds (RAUC-style names, so existing U-Boot boot-count tooling
reads it):

``BOOT_ORDER``   slots in priority order, e.g. ``"A B"``; the first is primary.
``BOOT_A_LEFT``  boot attempts slot A still has, one digit ``0``..``9``.
``BOOT_B_LEFT``  the same for slot B.
``EDGE_TRIAL``   the slot whose trial is armed and not yet confirmed (absent
                 otherwise).  Only the OS reads it; the bootloaders ignore it.

The bootloader (``bsp/x86-64-efi/boot/grub.cfg``, ``bsp/bootctl/scripts/boot.cmd``
and :func:`bootloader_step`, which the simulators run) does on every boot:

1. Normalise ``BOOT_ORDER``: keep the words that name a slot, drop repeats; if
   nothing is left, use ``"A B"``.
2. Walk that order; the first slot whose ``LEFT`` is a digit 1..9 wins: its
   ``LEFT`` is decremented, the environment saved, and the slot booted with
   ``edge.slot=X`` on the kernel command line.  Any other ``LEFT`` value
   (missing, ``0``, garbage) counts as no attempts.
3. If no slot in the order has attempts left, every slot in the order gets
   ``RESET_ATTEMPTS`` again and the first one is booted (its counter
   decremented).  A device therefore always boots something: a slot the OS
   marked bad is only ever absent from the order, and the OS refuses to
   remove the last slot from it.

The OS side (:func:`set_primary`, :func:`mark_good`, :func:`mark_bad`) returns
the variables to write; the backend writes all of them in one atomic update.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from .base import SLOTS, SlotState, check_attempts, check_slot
from .errors import BootControlError

ORDER_VAR: Final = "BOOT_ORDER"
TRIAL_VAR: Final = "EDGE_TRIAL"
DEFAULT_ORDER: Final = ("A", "B")
# What the bootloader scripts reset every counter to when no slot has attempts
# left (hard-coded in grub.cfg and boot.cmd too).
RESET_ATTEMPTS: Final = 3
_DIGITS: Final = {str(n): n for n in range(10)}

# None as a value in an update means "delete the variable".
Updates = dict[str, str | None]


def left_var(slot: str) -> str:
    return f"BOOT_{check_slot(slot)}_LEFT"


def normalize_order(raw: str | None) -> tuple[str, ...]:
    """Step 1 of the bootloader algorithm: the slots of ``BOOT_ORDER`` in order, without repeats."""
    order: list[str] = []
    for word in (raw or "").split():
        if word in SLOTS and word not in order:
            order.append(word)
    return tuple(order) if order else DEFAULT_ORDER


def parse_left(raw: str | None) -> int:
    """A ``BOOT_x_LEFT`` value as the bootloader scripts read it: one digit, anything else is 0."""
    if raw is None:
        return 0
    return _DIGITS.get(raw, 0)


@dataclass(frozen=True)
class BootStep:
    """What the bootloader does on one boot: the slot it starts and the variables it saves first."""

    slot: str
    updates: dict[str, str]
    counters_reset: bool


def bootloader_step(env: Mapping[str, str]) -> BootStep:
    """Steps 1-3 of the module docstring, exactly as grub.cfg and boot.cmd implement them."""
    order = normalize_order(env.get(ORDER_VAR))
    for slot in order:
        left = parse_left(env.get(left_var(slot)))
        if left > 0:
            return BootStep(slot, {left_var(slot): str(left - 1)}, False)
    updates = {left_var(s): str(RESET_ATTEMPTS) for s in order}
    updates[left_var(order[0])] = str(RESET_ATTEMPTS - 1)
    return BootStep(order[0], updates, True)


@dataclass(frozen=True)
class CountingView:
    """The OS's reading of the environment."""

    order: tuple[str, ...]
    left: dict[str, int]
    trial: str | None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CountingView:
        order = normalize_order(env.get(ORDER_VAR))
        left = {s: parse_left(env.get(left_var(s))) for s in SLOTS}
        trial = env.get(TRIAL_VAR)
        return cls(order, left, trial if trial in SLOTS else None)

    @property
    def primary(self) -> str:
        return self.order[0]

    def _exhausted(self) -> bool:
        return all(self.left[s] == 0 for s in self.order)

    def attempts_left(self, slot: str) -> int:
        """Attempts the bootloader grants ``slot`` before it moves on (0 when it is not in the order)."""
        check_slot(slot)
        return self.left[slot] if slot in self.order else 0

    def state(self, slot: str) -> SlotState:
        check_slot(slot)
        if slot not in self.order:
            return "bad"
        if self.left[slot] == 0 and not self._exhausted():
            return "bad"  # the bootloader skips it while another slot has attempts
        if self.trial == slot:
            return "trying"
        return "good"


def set_primary(env: Mapping[str, str], slot: str, attempts: int) -> Updates:
    """Put ``slot`` first with ``attempts`` tries and remember the trial; the other slots keep their place."""
    check_slot(slot)
    check_attempts(attempts)
    view = CountingView.from_env(env)
    order = (slot,) + tuple(s for s in view.order if s != slot)
    return {ORDER_VAR: " ".join(order), left_var(slot): str(attempts), TRIAL_VAR: slot}


def mark_good(env: Mapping[str, str], slot: str, attempts: int) -> Updates:
    """Give ``slot`` its full budget again, keep it in the order (appended if it was missing), end its trial."""
    check_slot(slot)
    check_attempts(attempts)
    view = CountingView.from_env(env)
    order = view.order if slot in view.order else view.order + (slot,)
    updates: Updates = {ORDER_VAR: " ".join(order), left_var(slot): str(attempts)}
    if env.get(TRIAL_VAR) == slot:
        updates[TRIAL_VAR] = None
    return updates


def mark_bad(env: Mapping[str, str], slot: str) -> Updates:
    """Take ``slot`` out of the order with no attempts; refused when it is the only slot left in the order."""
    check_slot(slot)
    view = CountingView.from_env(env)
    order = tuple(s for s in view.order if s != slot)
    if not order:
        raise BootControlError(
            f"refusing to mark slot {slot} bad: it is the only slot in {ORDER_VAR} ({' '.join(view.order)}), "
            "the device would have nothing to boot"
        )
    updates: Updates = {ORDER_VAR: " ".join(order), left_var(slot): "0"}
    if env.get(TRIAL_VAR) == slot:
        updates[TRIAL_VAR] = None
    return updates


def initial_env(attempts: int = RESET_ATTEMPTS) -> dict[str, str]:
    """The variables of a freshly provisioned device: A primary, both slots good."""
    check_attempts(attempts)
    return {ORDER_VAR: "A B", left_var("A"): str(attempts), left_var("B"): str(attempts)}


def apply_updates(env: Mapping[str, str], updates: Mapping[str, str | None]) -> dict[str, str]:
    """``env`` with ``updates`` applied (None deletes)."""
    out = dict(env)
    for name, value in updates.items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out
