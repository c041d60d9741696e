"""The U-Boot boot script (bsp/bootctl/scripts/boot.cmd) run by real U-Boot in QEMU, compared with the simulator.

Debian's u-boot-qemu (qemu_arm64, U-Boot 2023.01) boots in qemu-system-aarch64
with our environment in its flash bank; it sources the compiled boot.scr,
which selects a slot, updates the counters and calls ``saveenv`` before
handing over to the board hook.  The environment at that point is what U-Boot
saves.  (In this QEMU the flash write itself then fails with "Flash buffer
write timeout", a known QEMU pflash/U-Boot buffered-write mismatch; so each
test builds the next boot's flash from the environment U-Boot held.)
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bsp.bootctl import counting

pytestmark = pytest.mark.slow

from tests.bootctl.helpers import uboot_run  # noqa: E402

VARS = ("BOOT_ORDER", "BOOT_A_LEFT", "BOOT_B_LEFT", "EDGE_TRIAL")


def expect(env: dict[str, str]) -> tuple[str, dict[str, str]]:
    step = counting.bootloader_step(env)
    after = counting.apply_updates(env, step.updates)
    return step.slot, {k: v for k, v in after.items() if k in VARS}


CASES = {
    "fresh": {"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"},
    "trial-B": {"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "1", "EDGE_TRIAL": "B"},
    "all-exhausted": {"BOOT_ORDER": "B A", "BOOT_A_LEFT": "0", "BOOT_B_LEFT": "0"},
    "B-marked-bad": {"BOOT_ORDER": "A", "BOOT_A_LEFT": "1", "BOOT_B_LEFT": "0"},
    "garbage": {"BOOT_ORDER": "C B B A", "BOOT_A_LEFT": "10", "BOOT_B_LEFT": "x"},
    "nine": {"BOOT_ORDER": "B", "BOOT_B_LEFT": "9"},
    "empty": {},
}


def check(tmp_path, env: dict[str, str]) -> str:
    real = uboot_run(tmp_path, env)
    slot, want = expect(env)
    assert real.slot == slot
    assert {k: v for k, v in real.env_after.items() if k in VARS} == want
    assert real.env_after["bootargs"] == f" root=/dev/mmcblk0p{2 if slot == 'A' else 3} edge.slot={slot}"
    return slot


@pytest.mark.parametrize("case", sorted(CASES))
def test_real_uboot_matches_simulator(tmp_path, case):
    check(tmp_path, CASES[case])


def test_broken_trial_falls_back(tmp_path):
    env = counting.apply_updates(counting.initial_env(), counting.set_primary(counting.initial_env(), "B", 2))
    slots = []
    for i in range(4):
        real = uboot_run(tmp_path / str(i), env)
        slot, want = expect(env)
        assert real.slot == slot
        slots.append(slot)
        env = {k: v for k, v in real.env_after.items() if k in VARS}
        assert env == want
    assert slots == ["B", "B", "A", "A"]


def test_without_board_hook_the_script_loads_a_kernel_and_resets_when_that_fails(tmp_path):
    """No edge_boot: the default path runs `load mmc 0:3 ... /boot/Image`; QEMU's virt board has no MMC, the load
    fails, and the script resets so the next boot spends another attempt."""
    console = uboot_run(tmp_path, {"BOOT_ORDER": "B A", "BOOT_B_LEFT": "2"}, hook=False).console
    saved, booting, failed = (console.find("Saving Environment"), console.find("edge: booting slot B"),
                              console.find("edge: slot B did not boot; resetting"))
    assert 0 <= saved < booting < failed, console
    assert "resetting ..." in console[failed:]


TOKENS = st.sampled_from(["A", "B", "C", "AB", "a"])
LEFTS = st.one_of(st.none(), st.sampled_from(["0", "1", "2", "3", "9", "10", "x", "03"]))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.one_of(st.none(), st.lists(TOKENS, min_size=1, max_size=4).map(" ".join)), a=LEFTS, b=LEFTS)
def test_random_environments(tmp_path_factory, order, a, b):
    env = {k: v for k, v in {"BOOT_ORDER": order, "BOOT_A_LEFT": a, "BOOT_B_LEFT": b}.items() if v is not None}
    check(tmp_path_factory.mktemp("uboot"), env)
