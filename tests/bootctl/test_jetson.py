"""Jetson: the fake nvbootctrl (output format, commands, exit codes), UEFI's retry counter, and the backend on top."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bsp.bootctl import fake_nvbootctrl as nv
from bsp.bootctl import make_backend
from bsp.bootctl.errors import BootControlError
from bsp.bootctl.jetson import parse_dump_slots_info
from bsp.bootctl.sim import prepare_board, simulate_boot, simulate_power_loss

# Verbatim from NVIDIA's forum post "Rootfs A/B redundancy fail-over mechanism in Jetpack5.1" (steps 2 and 6).
FORUM_BEFORE = """Current rootfs slot: A
Active rootfs slot: A
num_slots: 2
slot: 0,             retry_count: 3,             status: normal
slot: 1,             retry_count: 3,             status: normal
"""
FORUM_AFTER = """Current rootfs slot: B
Active rootfs slot: B
num_slots: 2
slot: 0,             retry_count: 0,             status: unbootable
slot: 1,             retry_count: 3,             status: normal
"""


@pytest.fixture
def board(tmp_path):
    settings = prepare_board("jetson", tmp_path / "board")
    return settings, settings["nvbootctrl_env"][nv.STATE_ENV]


def nvbootctrl(state: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bsp.bootctl.fake_nvbootctrl", *args], capture_output=True,
                          text=True, env={**os.environ, nv.STATE_ENV: state})


def test_fresh_board_prints_the_documented_dump(board):
    _, state = board
    proc = nvbootctrl(state, "-t", "rootfs", "dump-slots-info")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, FORUM_BEFORE, "")


def test_fail_over_reproduces_the_forum_sequence(board):
    """Flash, break slot A, reset until UEFI gives up on A: the dump matches the forum's step 6."""
    settings, state = board
    simulate_boot("jetson", settings)  # step 2: booted A
    assert nvbootctrl(state, "-t", "rootfs", "mark-boot-successful").returncode == 0
    seen = []
    for _ in range(4):  # kernel panics, watchdog resets (warm): A is tried 3 times, then B
        seen.append(simulate_boot("jetson", settings).slot)
    assert seen == ["A", "A", "A", "B"]
    assert nvbootctrl(state, "-t", "rootfs", "mark-boot-successful").returncode == 0  # B boots fine
    assert nvbootctrl(state, "-t", "rootfs", "dump-slots-info").stdout == FORUM_AFTER
    assert parse_dump_slots_info(FORUM_AFTER).status == {"A": "unbootable", "B": "normal"}


def test_commands_and_outputs(board):
    _, state = board
    assert nvbootctrl(state, "-t", "rootfs", "get-current-slot").stdout == "0\n"
    assert nvbootctrl(state, "-t", "rootfs", "get-number-slots").stdout == "2\n"
    proc = nvbootctrl(state, "-t", "rootfs", "set-active-boot-slot", "1")
    assert (proc.returncode, proc.stdout) == (0, "")
    assert "Active rootfs slot: B" in nvbootctrl(state, "dump-slots-info", "-t", "rootfs").stdout
    assert nvbootctrl(state, "-t", "rootfs", "is-slot-bootable", "1").returncode == 0
    assert nvbootctrl(state, "-t", "rootfs", "set-slot-as-unbootable", "1").returncode == 0
    assert nvbootctrl(state, "-t", "rootfs", "is-slot-bootable", "1").returncode == 1
    for bad in (["-t", "rootfs", "set-active-boot-slot", "2"], ["-t", "rootfs", "frobnicate"], ["-t", "rootfs"],
                ["dump-slots-info"]):
        proc = nvbootctrl(state, *bad)
        assert proc.returncode == 1 and proc.stdout == "" and proc.stderr


def test_cold_boot_reloads_the_retry_count(board):
    settings, state = board
    simulate_boot("jetson", settings)
    simulate_boot("jetson", settings)
    assert "retry_count: 1," in nvbootctrl(state, "-t", "rootfs", "dump-slots-info").stdout
    simulate_power_loss("jetson", settings)
    assert nvbootctrl(state, "-t", "rootfs", "dump-slots-info").stdout.count("retry_count: 3,") == 2


def test_backend_update_cycle(board):
    settings, _ = board
    simulate_boot("jetson", settings)
    backend = make_backend("jetson", settings)
    assert (backend.booted_slot(), backend.slot_state("A")) == ("A", "trying")
    backend.mark_good("A")
    assert backend.slot_state("A") == "good" and backend.attempts_left("A") == 3
    backend.set_primary("B", 3)
    assert (backend.primary_slot(), backend.slot_state("B")) == ("B", "trying")
    out = simulate_boot("jetson", settings)
    assert (out.slot, out.trial) == ("B", True)
    backend.mark_good("B")
    assert backend.describe()["slots"] == {"A": {"state": "good", "attempts_left": 3},
                                           "B": {"state": "good", "attempts_left": 3}}


def test_backend_rollback_after_fail_over(board):
    settings, _ = board
    simulate_boot("jetson", settings)
    backend = make_backend("jetson", settings)
    backend.mark_good("A")
    backend.set_primary("B", 3)
    slots = [simulate_boot("jetson", settings).slot for _ in range(4)]  # B never confirms
    assert slots == ["B", "B", "B", "A"]
    assert (backend.booted_slot(), backend.primary_slot(), backend.slot_state("B")) == ("A", "A", "bad")
    with pytest.raises(BootControlError, match="unbootable by UEFI"):
        backend.set_primary("B", 3)
    with pytest.raises(BootControlError, match="nothing to boot"):
        backend.mark_bad("A")


def test_backend_mark_bad_switches_active_first(board):
    settings, _ = board
    simulate_boot("jetson", settings)
    backend = make_backend("jetson", settings)
    backend.set_primary("B", 3)
    backend.mark_bad("B")
    assert backend.primary_slot() == "A" and backend.slot_state("B") == "bad"
    assert simulate_boot("jetson", settings).slot == "A"


def test_mark_good_only_for_the_running_slot(board):
    settings, _ = board
    simulate_boot("jetson", settings)
    with pytest.raises(BootControlError, match="running slot, which is A"):
        make_backend("jetson", settings).mark_good("B")


def test_tool_failures_are_typed(tmp_path):
    backend = make_backend("jetson", {"nvbootctrl": str(tmp_path / "missing-nvbootctrl")})
    with pytest.raises(BootControlError, match="not found"):
        backend.booted_slot()
    backend = make_backend("jetson", {"nvbootctrl": [sys.executable, "-m", "bsp.bootctl.fake_nvbootctrl"],
                                      "nvbootctrl_env": {nv.STATE_ENV: str(tmp_path / "no-state.json")}})
    with pytest.raises(BootControlError, match="failed \\(exit 1\\)"):
        backend.primary_slot()
    with pytest.raises(BootControlError, match="unexpected output"):
        parse_dump_slots_info("Current rootfs slot: A\n")


def test_tool_output_that_is_not_utf8_is_an_error_message_not_a_crash():
    """A vendor tool printing bytes that are not UTF-8 ended in UnicodeDecodeError (exit 70)."""
    backend = make_backend("jetson", {"nvbootctrl": ["sh", "-c", "printf 'bad \\377 slot\\n' >&2; exit 3", "nvbootctrl"]})
    with pytest.raises(BootControlError, match="failed \\(exit 3\\): bad \ufffd slot"):
        backend.booted_slot()
    backend = make_backend("jetson", {"nvbootctrl": ["sh", "-c", "printf '\\377'", "nvbootctrl"]})
    with pytest.raises(BootControlError, match="unexpected output '\ufffd'"):
        backend.booted_slot()
