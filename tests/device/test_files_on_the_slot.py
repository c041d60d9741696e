"""An install writes the whole inactive slot: what the install itself must keep (the device state,
the bundle it reads) cannot live on a filesystem stored in that slot."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from edge.device import Installer, load_config, sim
from edge.device.errors import DeviceError
from tests.conftest import ext4_file, ext4_is_clean, mounted_ext4
from tests.device.helpers import sha256


def _board(tmp_path, artifacts) -> str:  # type: ignore[no-untyped-def]
    d = str(tmp_path / "board")
    sim.create(d, "x86-64-efi", artifacts["images"][1], keyring=artifacts["pki"]["keyring"], backend="file")
    return d


def _use_state_dir(d: str, state_dir: str) -> None:
    cfg = os.path.join(d, "device.yaml")
    text = open(cfg).read()
    assert "state_dir: data/edge" in text
    open(cfg, "w").write(text.replace("state_dir: data/edge", f"state_dir: {state_dir}"))


@pytest.mark.parametrize("kept", ["state_dir", "bundle"])
def test_install_refuses_a_slot_that_holds_what_it_keeps(tmp_path, artifacts, kept):
    """Slot B's file holds a mounted ext4 filesystem (a data partition configured as a slot by
    mistake). With the device state or the bundle on it, the install is refused before a byte is
    written: the filesystem stays clean, the state and the bundle unchanged, exit code 11."""
    d = _board(tmp_path, artifacts)
    slot_b, mnt = os.path.join(d, "slots", "B.img"), str(tmp_path / "mnt")
    bundle = artifacts["bundles"][("x86-64-efi", "v1-v2")]
    with mounted_ext4(slot_b, mnt):
        if kept == "state_dir":
            shutil.copytree(os.path.join(d, "data", "edge"), os.path.join(mnt, "edge"))
            _use_state_dir(d, os.path.join(mnt, "edge"))
            message = (rf"^state_dir {re.escape(mnt)}/edge is on a filesystem stored in slot B \({re.escape(slot_b)}\): "
                       r"installing would destroy")
        else:
            bundle = shutil.copy(bundle, os.path.join(mnt, "update.edgeb"))
            message = rf"^{re.escape(bundle)} is stored in slot B \({re.escape(slot_b)}\), the slot this install writes: copy"
        state_file = load_config(os.path.join(d, "device.yaml")).state_file
        state_before = open(state_file, "rb").read()
        with pytest.raises(DeviceError, match=message):
            Installer(load_config(os.path.join(d, "device.yaml"))).install(bundle)
        cli = subprocess.run([sys.executable, "-m", "edge", "--config", os.path.join(d, "device.yaml"), "install", bundle],
                             capture_output=True, text=True)
        assert cli.returncode == 11 and cli.stderr.count("\n") == 1 and "stored in slot B" in cli.stderr
        assert open(state_file, "rb").read() == state_before
    assert ext4_is_clean(slot_b)
    if kept == "bundle":
        assert ext4_file(slot_b, "/update.edgeb") == open(artifacts["bundles"][("x86-64-efi", "v1-v2")], "rb").read()


def test_a_state_dir_on_another_filesystem_installs(tmp_path, artifacts):
    """The check looks at storage, not at names: the state on a mounted filesystem of its own (not a
    slot) installs as usual."""
    d = _board(tmp_path, artifacts)
    mnt = str(tmp_path / "data")
    with mounted_ext4(str(tmp_path / "data.img"), mnt):
        shutil.copytree(os.path.join(d, "data", "edge"), os.path.join(mnt, "edge"))
        _use_state_dir(d, os.path.join(mnt, "edge"))
        result = Installer(load_config(os.path.join(d, "device.yaml"))).install(artifacts["bundles"][("x86-64-efi", "v1-v2")])
        assert result.slot == "B"
        size = os.path.getsize(artifacts["images"][2])
        assert sha256(os.path.join(d, "slots", "B.img"), size) == sha256(artifacts["images"][2])


@pytest.mark.parametrize("bundle", ["v2", "v1-v2"])
def test_install_refuses_a_slot_with_a_mounted_filesystem(tmp_path, artifacts, bundle):
    """Slot B holds a mounted filesystem (someone mounted the inactive slot to look into it, or a data
    partition is configured as a slot): both install paths, full and delta, refuse it with exit code
    11 before writing, and the state still has no install recorded."""
    d = _board(tmp_path, artifacts)
    slot_b, mnt = os.path.join(d, "slots", "B.img"), str(tmp_path / "mnt")
    path = artifacts["bundles"][("x86-64-efi", bundle)]
    state_file = load_config(os.path.join(d, "device.yaml")).state_file
    state_before = open(state_file, "rb").read()
    with mounted_ext4(slot_b, mnt):
        with pytest.raises(DeviceError, match=rf"^{re.escape(slot_b)} holds the filesystem mounted at {re.escape(mnt)}: "
                                              r"writing it would destroy that filesystem; unmount it first"):
            Installer(load_config(os.path.join(d, "device.yaml"))).install(path)
        assert open(state_file, "rb").read() == state_before
    assert ext4_is_clean(slot_b)
    result = Installer(load_config(os.path.join(d, "device.yaml"))).install(path)  # unmounted: installs
    assert result.slot == "B"


@pytest.mark.parametrize("slot", ["fifo", "/dev/null", "dir"])
def test_install_refuses_a_slot_that_is_not_a_file_or_block_device(tmp_path, artifacts, slot):
    """A slot configured as a FIFO made the install block for ever, reading it to see whether it
    already held the image; /dev/null or a directory got errors that did not say what was wrong."""
    d = _board(tmp_path, artifacts)
    path = {"fifo": str(tmp_path / "fifo"), "/dev/null": "/dev/null", "dir": str(tmp_path / "dir")}[slot]
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    cfg_path = os.path.join(d, "device.yaml")
    text = open(cfg_path).read()
    assert "  B: slots/B.img\n" in text
    open(cfg_path, "w").write(text.replace("  B: slots/B.img\n", f"  B: {path}\n"))
    state_file = load_config(cfg_path).state_file
    state_before = open(state_file, "rb").read()
    cli = subprocess.run([sys.executable, "-m", "edge", "--config", cfg_path, "install",
                          artifacts["bundles"][("x86-64-efi", "v2")]], capture_output=True, text=True, timeout=120)
    kind = {"fifo": "a FIFO", "/dev/null": "a character device", "dir": "a directory"}[slot]
    assert cli.returncode == 11 and cli.stderr == (f"edge: error: {path} is {kind}: an image is written to a regular "
                                                   f"file or a block device (nothing was written)\n"), cli.stderr
    assert open(state_file, "rb").read() == state_before
