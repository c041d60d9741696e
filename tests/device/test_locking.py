"""One writer at a time: a second install, boot-check, mark or rollback is refused while the device
lock is held, and a second apply while the target is being written; a killed holder leaves no lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from edge.device import load_config, sim
from edge.locking import BusyError, device_lock, lock_target
from tests.conftest import run_edge
from tests.device.helpers import sha256


@pytest.fixture
def board(tmp_path, artifacts):
    d = str(tmp_path / "board")
    sim.create(d, "x86-64-efi", artifacts["images"][1], keyring=artifacts["pki"]["keyring"])
    return d, load_config(os.path.join(d, "device.yaml"))


@pytest.mark.parametrize("command", [["install", "BUNDLE"], ["boot-check"], ["mark-bad", "B"], ["rollback"]])
def test_a_second_device_command_is_refused_while_the_lock_is_held(board, artifacts, command):
    d, cfg = board
    args = [artifacts["bundles"][("x86-64-efi", "v2")] if a == "BUNDLE" else a for a in command]
    before = {p: sha256(p) for p in (cfg.slots["A"], cfg.slots["B"], cfg.state_file)}
    with device_lock(cfg.state_dir, "install"):
        r = run_edge("--config", os.path.join(d, "device.yaml"), *args, check=False)
        assert r.returncode == 15, r.stderr
        assert "the device is busy (edge install, pid " + str(os.getpid()) in r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert {p: sha256(p) for p in before} == before  # nothing was written: slots and state as they were
    if command[0] == "install":  # the lock is gone with its holder: the same install now goes through
        r = run_edge("--config", os.path.join(d, "device.yaml"), *args, check=False)
        assert r.returncode == 0, r.stderr


def test_a_killed_holder_leaves_no_lock(board):
    _, cfg = board
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from edge.locking import device_lock\n"
        "with device_lock(sys.argv[1], 'install'):\n    print('held', flush=True); time.sleep(60)"), cfg.state_dir],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(BusyError, match=rf"edge install, pid {holder.pid}, since "):
            with device_lock(cfg.state_dir, "boot-check"):
                pass
        os.kill(holder.pid, signal.SIGKILL)  # a power cut, as far as the lock is concerned
        holder.wait(timeout=10)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    with device_lock(cfg.state_dir, "boot-check"):
        with open(os.path.join(cfg.state_dir, "lock")) as fh:
            assert fh.read().startswith(f"edge boot-check, pid {os.getpid()}, ")
    with open(os.path.join(cfg.state_dir, "lock")) as fh:
        assert fh.read() == ""  # released: the file no longer names a holder


def test_a_second_apply_to_the_same_target_is_refused(tmp_path, artifacts):
    images = artifacts["images"]
    delta = str(tmp_path / "v1-v2.delta")
    run_edge("delta", "make", images[1], images[2], "-o", delta)
    target = str(tmp_path / "target.img")
    with open(target, "wb") as fh:
        fh.write(b"\xa5" * 8192)
    fd = os.open(target, os.O_RDWR)
    try:
        lock_target(fd, target)  # another writer (here: this process, through its own open file)
        # refused at once (a lock that waited would hang here until the timeout fails the test)
        r = subprocess.run([sys.executable, "-m", "edge", "delta", "apply", images[1], delta, "-o", target],
                           capture_output=True, text=True, timeout=120, env=dict(os.environ, EDGE_NO_PROGRESS="1"))
        assert r.returncode == 15, r.stderr
        assert f"{target}: another process is writing it" in r.stderr and "Traceback" not in r.stderr
        with open(target, "rb") as fh:
            assert fh.read() == b"\xa5" * 8192  # not a byte written
        assert not os.path.exists(target + ".edge-apply")  # and no checkpoint left behind
    finally:
        os.close(fd)
    run_edge("delta", "apply", images[1], delta, "-o", target)  # the lock went with the file: now it applies
    assert sha256(target) == sha256(images[2])


@pytest.mark.parametrize("bundle", ["v2", "v1-v2"])
def test_an_install_is_refused_while_another_process_writes_its_slot(board, artifacts, bundle):
    d, cfg = board
    before = {p: sha256(p) for p in (cfg.slots["A"], cfg.slots["B"], cfg.state_file)}
    fd = os.open(cfg.slots["B"], os.O_RDWR)
    try:
        lock_target(fd, cfg.slots["B"])  # e.g. an `edge delta apply` by hand into the inactive slot
        r = run_edge("--config", os.path.join(d, "device.yaml"), "install",
                     artifacts["bundles"][("x86-64-efi", bundle)], check=False)
        assert r.returncode == 15, r.stderr
        assert f"{cfg.slots['B']}: another process is writing it" in r.stderr and "Traceback" not in r.stderr
        assert {p: sha256(p) for p in before} == before
    finally:
        os.close(fd)
