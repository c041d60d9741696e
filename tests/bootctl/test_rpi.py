"""Raspberry Pi: autoboot.txt parsing/rewriting, device-tree detection, the tryboot cycle on the simulated firmware."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bsp.bootctl import autoboot, make_backend
from bsp.bootctl.autoboot import Autoboot, AutobootError
from bsp.bootctl.errors import BootControlError
from bsp.bootctl.sim import prepare_board, simulate_boot, simulate_power_loss, simulate_reboot_command

DOC_EXAMPLE = "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n"


def test_documented_example_evaluates_like_the_firmware():
    ab = Autoboot(DOC_EXAMPLE)
    assert ab.boot_partition(False) == 2 and ab.boot_partition(True) == 3 and ab.tryboot_a_b()


def test_rewrite_keeps_every_other_line():
    text = ("# autoboot for board X\n"
            "[all]\n"
            "tryboot_a_b=1\n"
            "boot_partition=2\n"
            "\n"
            "[none]\n"
            "boot_partition=7\n"
            "[tryboot]\n"
            "boot_partition=3\n")
    ab = Autoboot(text)
    ab.set_partitions(3, 3)
    assert ab.text() == text.replace("boot_partition=2", "boot_partition=3")
    assert Autoboot(ab.text()).boot_partition(False) == 3


def test_missing_sections_are_added():
    ab = Autoboot("tryboot_a_b=1\n")
    ab.set_partitions(2, 3)
    assert ab.text() == "tryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n"
    assert (Autoboot(ab.text()).boot_partition(False), Autoboot(ab.text()).boot_partition(True)) == (2, 3)


def test_overriding_lines_are_detected():
    ab = Autoboot("[tryboot]\nboot_partition=3\n[all]\nboot_partition=2\n")  # [all] last: tryboot can never win
    with pytest.raises(AutobootError, match="override"):
        ab.set_partitions(2, 3)


@pytest.mark.parametrize("text, message", [
    ("boot_partition = 2\n", "not 'name=value'"),
    ("x" * 600, "512 bytes"),
    ("[all]\n", "no boot_partition"),
    ("boot_partition=two\n", "not a partition number"),
])
def test_malformed(text, message):
    with pytest.raises(AutobootError, match=message):
        ab = Autoboot(text)
        ab.boot_partition(False)


@settings(max_examples=300)
@given(text=st.text(alphabet="[]=#\nabcdefghijklmnopqrstuvwxyz_0123456789 \r", max_size=200))
def test_parser_never_crashes(text):
    try:
        ab = Autoboot(text)
        ab.set_partitions(2, 3)
    except AutobootError:
        return
    again = Autoboot(ab.text())
    assert (again.boot_partition(False), again.boot_partition(True)) == (2, 3)


@pytest.fixture
def board(tmp_path):
    settings = prepare_board("rpi", tmp_path / "board")
    simulate_boot("rpi", settings)
    return settings, make_backend("rpi", settings)


def reboot(settings, backend):
    simulate_reboot_command("rpi", settings, backend.reboot_command())
    return simulate_boot("rpi", settings)


def test_device_tree_detection(board):
    settings, backend = board
    dt = os.path.join(settings["device_tree"], "chosen", "bootloader")
    assert open(os.path.join(dt, "partition"), "rb").read() == b"\x00\x00\x00\x02"
    assert backend.booted_slot() == "A" and backend.booted_in_tryboot() is False


def test_commit_cycle(board):
    settings, backend = board
    backend.set_primary("B", 3)
    assert backend.reboot_command() == ["reboot", "0 tryboot"]
    assert (backend.primary_slot(), backend.slot_state("B"), backend.attempts_left("B")) == ("B", "trying", None)
    out = reboot(settings, backend)
    assert (out.slot, out.trial) == ("B", True)
    assert backend.booted_slot() == "B" and backend.booted_in_tryboot()
    assert not os.path.exists(settings["tryboot_flag"])  # the firmware cleared the one-shot flag
    backend.mark_good("B")
    assert open(settings["autoboot"]).read() == autoboot.render(3, 3)
    assert backend.reboot_command() == ["reboot"]
    assert reboot(settings, backend).slot == "B"
    assert (backend.slot_state("B"), backend.slot_state("A")) == ("good", "bad")


def test_crashed_trial_falls_back_and_rollback_disarms(board):
    settings, backend = board
    backend.set_primary("B", 3)
    simulate_reboot_command("rpi", settings, backend.reboot_command())
    assert simulate_boot("rpi", settings).slot == "B"
    # B hangs; the watchdog resets the board: the flag is gone, the firmware boots the committed slot.
    out = simulate_boot("rpi", settings)
    assert (out.slot, out.trial) == ("A", False)
    assert backend.primary_slot() == "B"  # the agent sees booted != primary: the trial failed
    backend.mark_bad("B")
    assert (backend.primary_slot(), backend.slot_state("B"), backend.reboot_command()) == ("A", "bad", ["reboot"])


def test_power_cut_during_trial_boot(board):
    settings, backend = board
    backend.set_primary("B", 3)
    simulate_reboot_command("rpi", settings, backend.reboot_command())
    simulate_power_loss("rpi", settings)  # power lost before the firmware read the flag
    assert simulate_boot("rpi", settings).slot == "A"


def test_refusals(board):
    settings, backend = board
    with pytest.raises(BootControlError, match="committed partition"):
        backend.mark_bad("A")
    with pytest.raises(BootControlError, match="running slot is A"):
        backend.mark_good("B")
    with open(settings["autoboot"], "w") as fh:
        fh.write("[all]\nboot_partition=2\n")
    with pytest.raises(BootControlError, match="tryboot_a_b"):
        backend.set_primary("B", 1)


def test_unknown_partition(board, tmp_path):
    settings, backend = board
    with open(os.path.join(settings["device_tree"], "chosen", "bootloader", "partition"), "wb") as fh:
        fh.write((5).to_bytes(4, "big"))
    with pytest.raises(BootControlError, match="partition 5 is not a slot partition"):
        backend.booted_slot()
    with open(os.path.join(settings["device_tree"], "chosen", "bootloader", "partition"), "wb") as fh:
        fh.write(b"\x02")
    with pytest.raises(BootControlError, match="4-byte"):
        backend.booted_slot()


def test_rewrite_is_atomic_rename(board):
    settings, backend = board
    inode = os.stat(settings["autoboot"]).st_ino
    backend.set_primary("B", 1)
    assert os.stat(settings["autoboot"]).st_ino != inode  # a new file renamed over the old one
    assert not [n for n in os.listdir(os.path.dirname(settings["autoboot"])) if n.endswith(".edge-tmp")]
