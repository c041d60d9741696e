"""The x86 grub.cfg run by real GRUB (grub-emu) against a real env block, compared with the simulator.

For every starting environment the real GRUB must boot the same slot, with the
same kernel arguments, and leave the env block byte-identical to what
``bsp.bootctl.sim`` (the algorithm ``edge sim`` uses) produces.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bsp.bootctl import counting, grubenv
from bsp.bootctl.sim import simulate_boot

pytestmark = pytest.mark.slow

from tests.bootctl.helpers import grub_boot  # noqa: E402


def sim_boot(tmp: Path, block: bytes) -> tuple[str, bytes]:
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "grubenv"
    path.write_bytes(block)
    outcome = simulate_boot("grub", {"grubenv": str(path), "cmdline": str(tmp / "cmdline")})
    assert (tmp / "cmdline").read_text().split()[0] == f"edge.slot={outcome.slot}"
    return outcome.slot, path.read_bytes()


CASES = {
    "fresh": {"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"},
    "trial-B": {"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3", "EDGE_TRIAL": "B"},
    "B-exhausted": {"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "0", "EDGE_TRIAL": "B"},
    "all-exhausted": {"BOOT_ORDER": "B A", "BOOT_A_LEFT": "0", "BOOT_B_LEFT": "0"},
    "B-marked-bad": {"BOOT_ORDER": "A", "BOOT_A_LEFT": "1", "BOOT_B_LEFT": "0"},
    "only-B-exhausted": {"BOOT_ORDER": "B", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "0"},
    "garbage": {"BOOT_ORDER": "C B\tB A", "BOOT_A_LEFT": "10", "BOOT_B_LEFT": "x"},
    "nine": {"BOOT_ORDER": "A B", "BOOT_A_LEFT": "9"},
    "empty": {},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_real_grub_matches_simulator(tmp_path, case):
    block = grubenv.render(CASES[case])
    real = grub_boot(tmp_path / "grub", block)
    slot, sim_after = sim_boot(tmp_path / "sim", block)
    assert real.slot == slot
    assert real.env_after == sim_after
    root = "PARTLABEL=rootfs-a" if slot == "A" else "PARTLABEL=rootfs-b"
    assert real.linux_args == [f"/EFI/edge/{slot}/vmlinuz", f"root={root}", "ro", "rootwait", f"edge.slot={slot}"]
    step = counting.bootloader_step(CASES[case])
    assert grubenv.parse(real.env_after) == counting.apply_updates(CASES[case], step.updates)


def test_missing_env_file_still_boots_a(tmp_path):
    real = grub_boot(tmp_path, None)
    assert real.slot == "A"


def test_broken_trial_falls_back_after_its_attempts(tmp_path):
    """Trial of B with 2 attempts, B never confirms: GRUB boots B twice, then A, step for step with the simulator."""
    block = grubenv.render(counting.apply_updates(counting.initial_env(), counting.set_primary(counting.initial_env(), "B", 2)))
    slots = []
    for i in range(4):
        real = grub_boot(tmp_path / f"boot{i}", block)
        slot, sim_after = sim_boot(tmp_path / f"sim{i}", block)
        assert (real.slot, real.env_after) == (slot, sim_after)
        slots.append(real.slot)
        block = real.env_after
    assert slots == ["B", "B", "A", "A"]


TOKENS = st.sampled_from(["A", "B", "C", "a", "AB", "", " "])
LEFTS = st.one_of(st.none(), st.sampled_from(["0", "1", "2", "3", "9", "10", "-1", "x", "", " 1", "03"]))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.one_of(st.none(), st.lists(TOKENS, max_size=4).map(" ".join)), a=LEFTS, b=LEFTS)
def test_random_environments(tmp_path_factory, order, a, b):
    env = {k: v for k, v in {"BOOT_ORDER": order, "BOOT_A_LEFT": a, "BOOT_B_LEFT": b}.items() if v is not None}
    block = grubenv.render(env)
    tmp = tmp_path_factory.mktemp("rand")
    real = grub_boot(tmp / "grub", block)
    slot, sim_after = sim_boot(tmp / "sim", block)
    assert (real.slot, real.env_after) == (slot, sim_after)
