"""Every backend through the one interface, on the virtual board: install, commit, failed trial, rollback."""

from __future__ import annotations

import json

import pytest

from bsp.bootctl import BACKENDS, make_backend
from bsp.bootctl.errors import BootControlError
from bsp.bootctl.sim import prepare_board, simulate_boot, simulate_reboot_command


def agent_reboot(name, settings, backend):
    """The agent reboots on purpose: it runs the backend's reboot command."""
    simulate_reboot_command(name, settings, backend.reboot_command())
    return simulate_boot(name, settings)


@pytest.fixture(params=BACKENDS)
def board(request, tmp_path):
    name = request.param
    settings = prepare_board(name, tmp_path / name)
    simulate_boot(name, settings)
    backend = make_backend(name, settings)
    backend.mark_good("A")  # the health check of the first boot
    return name, settings, backend


def test_install_and_commit(board):
    name, settings, backend = board
    assert (backend.booted_slot(), backend.primary_slot(), backend.slot_state("A")) == ("A", "A", "good")
    backend.set_primary("B", 3)
    assert (backend.primary_slot(), backend.slot_state("B")) == ("B", "trying")
    out = agent_reboot(name, settings, backend)
    assert (out.slot, out.trial) == ("B", True)
    assert backend.booted_slot() == "B"
    backend.mark_good("B")
    assert backend.slot_state("B") == "good"
    for _ in range(5):  # committed: every later boot (health check passing) stays on B
        out = agent_reboot(name, settings, backend)
        # On Jetson every boot is unconfirmed until mark-boot-successful (UEFI's retry counter runs on every boot).
        assert (out.slot, out.trial) == ("B", name == "jetson")
        backend.mark_good("B")


def test_failed_trial_falls_back_and_rolls_back(board):
    name, settings, backend = board
    backend.set_primary("B", 2)
    out = agent_reboot(name, settings, backend)
    assert out.slot == "B"
    # B crashes before the health check, every time; the board resets by itself (no reboot command).
    for _ in range(6):
        out = simulate_boot(name, settings)
        if out.slot == "A":
            break
    assert out.slot == "A", "the bootloader never fell back to A"
    assert backend.booted_slot() == "A"
    # The agent on A sees that the trial failed and rolls back.
    assert backend.primary_slot() != "A" or backend.slot_state("B") == "bad"
    backend.mark_bad("B")
    backend.mark_good("A")
    assert (backend.primary_slot(), backend.slot_state("B")) == ("A", "bad")
    for _ in range(4):
        assert agent_reboot(name, settings, backend).slot == "A"
        backend.mark_good("A")


def test_the_last_bootable_slot_cannot_be_marked_bad(board):
    name, settings, backend = board
    if name in ("rpi",):
        with pytest.raises(BootControlError):
            backend.mark_bad("A")  # the committed partition
        return
    backend.mark_bad("B")
    with pytest.raises(BootControlError, match="nothing to boot"):
        backend.mark_bad("A")
    assert agent_reboot(name, settings, backend).slot == "A"


def test_describe_is_json(board):
    name, settings, backend = board
    info = backend.describe()
    json.dumps(info)
    assert info["backend"] == name and info["booted"] == "A" and info["primary"] == "A"
    assert set(info["slots"]) == {"A", "B"}


def test_settings_errors(tmp_path):
    with pytest.raises(BootControlError, match="unknown boot-control backend"):
        make_backend("lilo", {})
    with pytest.raises(BootControlError, match="unknown setting"):
        make_backend("grub", {"grub_env": "/x"})
    with pytest.raises(BootControlError, match="'env' setting"):
        make_backend("file", {})
    with pytest.raises(BootControlError, match="integer"):
        make_backend("file", {"env": "/x", "attempts": "3"})
    with pytest.raises(BootControlError, match="attempts"):
        make_backend("grub", {"attempts": 12})
    with pytest.raises(BootControlError, match="slot_partitions"):
        make_backend("rpi", {"slot_partitions": {"A": 2, "B": 2}})


def test_booted_slot_needs_the_cmdline_parameter(tmp_path):
    settings = prepare_board("file", tmp_path)
    backend = make_backend("file", settings)
    with pytest.raises(BootControlError, match="cannot read the kernel command line"):
        backend.booted_slot()
    (tmp_path / "cmdline").write_text("root=/dev/sda2 quiet\n")
    with pytest.raises(BootControlError, match="no edge.slot="):
        backend.booted_slot()
    (tmp_path / "cmdline").write_text("edge.slot=A quiet edge.slot=C\n")
    with pytest.raises(BootControlError, match="not a slot"):
        backend.booted_slot()
    assert backend.describe()["booted"] is None


def test_corrupt_env_files_are_typed_errors(tmp_path):
    for name, key, content in [("grub", "grubenv", b"garbage"), ("file", "env", b"no equals\n"),
                               ("rpi", "autoboot", b"boot_partition = 2\n")]:
        settings = prepare_board(name, tmp_path / name)
        with open(settings[key], "wb") as fh:
            fh.write(content)
        with pytest.raises(BootControlError, match=str(settings[key])):
            make_backend(name, settings).primary_slot()
