"""The whole update cycle on a virtual board, for every boot-control backend."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from edge.device import Installer, load_config, status
from edge.device.config import DeviceConfig
from edge.device import sim
from edge.device.errors import DeviceError
from tests.conftest import require_tool, run
from tests.device.conftest import BOARDS
from tests.device.helpers import sha256


def installer(board_dir: str) -> Installer:
    return Installer(load_config(os.path.join(board_dir, "device.yaml")))


def slot_versions(board_dir: str) -> dict[str, str | None]:
    info = status(load_config(os.path.join(board_dir, "device.yaml")))
    return {s: (info["slots"][s]["version"], info["slots"][s]["status"]) for s in ("A", "B")}


@pytest.mark.parametrize("backend", list(BOARDS))
def test_full_cycle(tmp_path, artifacts, backend):
    board, override = BOARDS[backend]
    d = str(tmp_path / "board")
    img, bundles = artifacts["images"], artifacts["bundles"]
    reports = sim.create(d, board, img[1], keyring=artifacts["pki"]["keyring"], backend=override)
    assert reports[-1].slot == "A" and reports[-1].check.outcome == "healthy"

    # v2 as a delta: written into B, trial boot, health check passes, committed
    slot_b_size = os.path.getsize(load_config(os.path.join(d, "device.yaml")).slots["B"])
    result = installer(d).install(bundles[(board, "v1-v2")])
    assert result.slot == "B" and result.payload_type == "delta"
    cfg = load_config(os.path.join(d, "device.yaml"))
    assert sha256(cfg.slots["B"], os.path.getsize(img[2])) == sha256(img[2])
    assert os.path.getsize(cfg.slots["B"]) == slot_b_size > os.path.getsize(img[2])  # a slot keeps its size
    assert sha256(cfg.slots["A"], os.path.getsize(img[1])) == sha256(img[1]), "the booted slot was touched"
    info = status(cfg)
    assert info["primary"] == "B" and info["booted"] == "A" and info["operation"]["step"] == "installed"
    reports = sim.reboot(d)
    assert [r.slot for r in reports] == ["B"] and reports[-1].check.outcome == "committed"
    info = status(cfg)
    assert info["committed"] == "B" and info["security_floor"] == 2 and info["operation"] is None
    assert (tmp_path / "board" / "booted" / "etc" / "os-release").read_text().count("2.0.0") == 1

    # v3 (full) fails its health check: rolled back to v2, the reason recorded
    result = installer(d).install(bundles[(board, "v3")])
    assert result.slot == "A" and result.payload_type == "full"
    reports = sim.reboot(d)
    assert reports[0].slot == "A" and reports[0].check.outcome == "rolled-back"
    assert reports[-1].slot == "B" and reports[-1].check.outcome == "healthy"
    info = status(cfg)
    assert info["booted"] == "B" and info["committed"] == "B" and info["security_floor"] == 2
    assert info["slots"]["A"]["status"] == "bad" and "app failed to start" in info["last_error"]["message"]
    # later reboots stay on v2
    assert sim.reboot(d)[-1].slot == "B"
    if backend == "grub":  # the env file is a real GRUB environment block
        out = run(require_tool("grub-editenv"), os.path.join(d, "boot", "grubenv"), "list").stdout
        assert "BOOT_ORDER=B" in out
    if backend == "uboot":
        out = run(require_tool("fw_printenv"), "-c", os.path.join(d, "boot", "fw_env.config")).stdout
        assert "BOOT_ORDER=B" in out


@pytest.mark.parametrize("backend", ["grub", "rpi"])
def test_trial_that_never_boots_falls_back(tmp_path, artifacts, backend):
    """A slot whose image cannot even be mounted: the board resets until the bootloader gives up on it."""
    board, override = BOARDS[backend]
    d = str(tmp_path / "board")
    sim.create(d, board, artifacts["images"][1], keyring=artifacts["pki"]["keyring"], backend=override)
    installer(d).install(artifacts["bundles"][(board, "v2")])
    cfg = load_config(os.path.join(d, "device.yaml"))
    with open(cfg.slots["B"], "r+b") as fh:  # the kernel will not find a filesystem in B
        fh.write(bytes(4096))
    reports = sim.reboot(d)
    assert reports[-1].slot == "A"
    assert not reports[0].mounted
    info = status(cfg)
    assert info["slots"]["B"]["status"] == "bad" and "rolled back" in info["last_error"]["message"]


def test_install_refused_while_a_trial_is_pending(tmp_path, artifacts):
    d = str(tmp_path / "board")
    sim.create(d, "x86-64-efi", artifacts["images"][1], keyring=artifacts["pki"]["keyring"])
    installer(d).install(artifacts["bundles"][("x86-64-efi", "v2")])
    with pytest.raises(DeviceError, match="waiting for its trial boot"):
        installer(d).install(artifacts["bundles"][("x86-64-efi", "v3")])


def test_same_bundle_twice_re_arms_without_rewriting(tmp_path, artifacts):
    d = str(tmp_path / "board")
    sim.create(d, "x86-64-efi", artifacts["images"][1], keyring=artifacts["pki"]["keyring"])
    first = installer(d).install(artifacts["bundles"][("x86-64-efi", "v2")])
    assert not first.already_installed
    from edge.device import mark_bad

    mark_bad(load_config(os.path.join(d, "device.yaml")), "B")  # cancel the trial
    again = installer(d).install(artifacts["bundles"][("x86-64-efi", "v2")])
    assert again.already_installed


class PowerLost(BaseException):
    pass


def test_power_lost_between_verify_and_arming(tmp_path, artifacts, monkeypatch):
    """The slot is written and verified but the bootloader was never told: the board boots its good slot,
    boot-check reports why the update did not happen, and installing again arms it without rewriting."""
    d = str(tmp_path / "board")
    sim.create(d, "x86-64-efi", artifacts["images"][1], keyring=artifacts["pki"]["keyring"])

    def lose_power(*args, **kwargs):
        raise PowerLost()

    with monkeypatch.context() as m:
        m.setattr(Installer, "_arm", lose_power)
        with pytest.raises(PowerLost):
            installer(d).install(artifacts["bundles"][("x86-64-efi", "v2")])
    cfg = load_config(os.path.join(d, "device.yaml"))
    assert status(cfg)["operation"]["step"] == "verified"
    reports = sim.reboot(d)
    assert [r.slot for r in reports] == ["A"] and reports[-1].check.outcome == "rolled-back"
    info = status(cfg)
    assert info["operation"] is None and info["committed"] == "A"
    assert "interrupted before the trial boot was armed" in info["last_error"]["message"]
    again = installer(d).install(artifacts["bundles"][("x86-64-efi", "v2")])
    assert again.already_installed
    assert sim.reboot(d)[-1].check.outcome == "committed" and status(cfg)["committed"] == "B"


def test_rollback_to_the_previous_slot(tmp_path, artifacts):
    d = str(tmp_path / "board")
    sim.create(d, "x86-64-efi", artifacts["images"][1], keyring=artifacts["pki"]["keyring"])
    installer(d).install(artifacts["bundles"][("x86-64-efi", "v2")])
    sim.reboot(d)
    cfg = load_config(os.path.join(d, "device.yaml"))
    from edge.device import rollback

    with pytest.raises(DeviceError, match="below this device's floor"):
        rollback(cfg)
    message, command = rollback(cfg, force=True)
    assert "armed" in message and command == ["reboot"]
    reports = sim.reboot(d)
    assert reports[-1].slot == "A" and reports[-1].check.outcome == "committed"


def test_cli_status_and_exit_codes(tmp_path, artifacts):
    d = str(tmp_path / "board")
    sim.create(d, "x86-64-efi", artifacts["images"][1], keyring=artifacts["pki"]["keyring"])
    cfg = os.path.join(d, "device.yaml")
    edge = [sys.executable, "-m", "edge", "--config", cfg]
    r = subprocess.run(edge + ["status", "--json"], capture_output=True, text=True)
    assert r.returncode == 0 and '"booted": "A"' in r.stdout
    r = subprocess.run(edge + ["install", artifacts["bundles"][("rpi4", "v2")]], capture_output=True, text=True)
    assert r.returncode == 9 and "not for this board edge,x86-64-efi" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(edge + ["install", artifacts["bundles"][("x86-64-efi", "v3")]], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "edge", "sim", "reboot", d], capture_output=True, text=True)
    assert r.returncode == 0 and "rolled-back" in r.stdout
    r = subprocess.run(edge + ["install", artifacts["bundles"][("x86-64-efi", "v2")]], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "edge", "sim", "reboot", d], capture_output=True, text=True)
    assert r.returncode == 0 and "committed" in r.stdout
    r = subprocess.run(edge + ["install", artifacts["bundles"][("x86-64-efi", "v1")]], capture_output=True, text=True)
    assert r.returncode == 9 and "below this device's floor 2" in r.stderr
    r = subprocess.run([sys.executable, "-m", "edge", "--config", str(tmp_path / "none.yaml"), "status"], capture_output=True, text=True)
    assert r.returncode == 11 and "no device configuration" in r.stderr


def test_slot_too_small_is_refused_before_writing(tmp_path, artifacts):
    """Slot B on a real (loop) block device smaller than the image: refused, nothing written."""
    from tests.conftest import require_root

    require_root()
    d = str(tmp_path / "board")
    sim.create(d, "x86-64-efi", artifacts["images"][1], keyring=artifacts["pki"]["keyring"])
    backing = tmp_path / "small.img"
    with open(backing, "wb") as fh:
        fh.truncate(64 * 1024)
    loop = run("losetup", "--find", "--show", str(backing)).stdout.strip()
    try:
        cfg_path = os.path.join(d, "device.yaml")
        text = open(cfg_path).read().replace("B: slots/B.img", f"B: {loop}")
        open(cfg_path, "w").write(text)
        with pytest.raises(DeviceError, match=f"slot B \\({loop}\\) has room for 65536 bytes, the image needs"):
            installer(d).install(artifacts["bundles"][("x86-64-efi", "v2")])
        assert open(loop, "rb").read() == bytes(65536)
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)


def test_cycle_on_block_devices(tmp_path, artifacts):
    """Slots on real block devices (loop devices): the same install, trial, commit and rollback."""
    from tests.conftest import require_root

    require_root()
    d = str(tmp_path / "board")
    sim.create(d, "x86-64-efi", artifacts["images"][1], keyring=artifacts["pki"]["keyring"])
    loops = []
    try:
        for slot in ("A", "B"):
            backing = os.path.join(d, "slots", f"{slot}.img")
            with open(backing, "r+b") as fh:
                fh.truncate(8 << 20)
            loops.append(run("losetup", "--find", "--show", backing).stdout.strip())
        cfg_path = os.path.join(d, "device.yaml")
        text = open(cfg_path).read().replace("A: slots/A.img", f"A: {loops[0]}").replace("B: slots/B.img", f"B: {loops[1]}")
        open(cfg_path, "w").write(text)
        installer(d).install(artifacts["bundles"][("x86-64-efi", "v1-v2")])
        assert sim.reboot(d)[-1].check.outcome == "committed"
        installer(d).install(artifacts["bundles"][("x86-64-efi", "v3")])
        reports = sim.reboot(d)
        assert reports[-1].slot == "B" and reports[0].check.outcome == "rolled-back"
        size = os.path.getsize(artifacts["images"][2])
        assert sha256(loops[1], size) == sha256(artifacts["images"][2])
    finally:
        for loop in loops:
            subprocess.run(["losetup", "-d", loop], check=False)



class PowerCut(Exception):
    """Stands for the power going away at a chosen point of an install (raised from a hook)."""


def _board(tmp_path, artifacts, **options) -> tuple[str, DeviceConfig]:  # type: ignore[no-untyped-def]
    """A virtual x86-64-efi board running v1, and its configuration."""
    d = str(tmp_path / "board")
    sim.create(d, "x86-64-efi", artifacts["images"][1], keyring=artifacts["pki"]["keyring"], **options)
    return d, load_config(os.path.join(d, "device.yaml"))


def _install_cut_at(cfg: DeviceConfig, bundle: str, phase: str) -> None:
    """Run an install and cut it the first time its progress reports ``phase``."""
    def cut(now: str, done: int, total: int) -> None:
        if now == phase:
            raise PowerCut

    with pytest.raises(PowerCut):
        Installer(cfg, progress=cut).install(bundle)


def _install_cut_after_the_delta_applied(cfg: DeviceConfig, bundle: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Run an install of a delta bundle and cut it once the applier has finished, before the install
    records the slot as verified."""
    write_delta = Installer._write_delta

    def applied_then_cut(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        write_delta(self, *args, **kwargs)
        raise PowerCut

    with monkeypatch.context() as m:
        m.setattr(Installer, "_write_delta", applied_then_cut)
        with pytest.raises(PowerCut):
            Installer(cfg).install(bundle)


def test_a_damaged_delta_checkpoint_on_the_device_starts_the_delta_over(tmp_path, artifacts):
    """An install of a delta bundle stopped while writing, whose applier state file then says a
    delta position past the payload's end (a damaged data partition): the next install writes the
    image from the first op. It used to fail on every run with an internal error (exit 70)."""
    import json

    d, cfg = _board(tmp_path, artifacts)
    bundle = artifacts["bundles"][("x86-64-efi", "v1-v2")]
    _install_cut_at(cfg, bundle, "writing")
    state_file = os.path.join(d, "data", "edge", "delta-apply-B.json")
    saved = json.load(open(state_file))
    assert saved["status"] == "applying"
    saved["delta_pos"] = 10**9
    with open(state_file, "w") as fh:
        json.dump(saved, fh)
    r = subprocess.run([sys.executable, "-m", "edge", "--config", os.path.join(d, "device.yaml"), "install", bundle,
                        "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["resumed_from"] is None
    size = os.path.getsize(artifacts["images"][2])
    assert sha256(cfg.slots["B"], size) == sha256(artifacts["images"][2])
    assert sim.reboot(d)[-1].check.outcome == "committed"


def _flip_first_hex_digit(head: str) -> str:
    return ("1" if head[0] != "1" else "2") + head[1:]


@pytest.mark.parametrize("damage", [
    {"next_chunk": "x"}, {"next_chunk": -5}, {"next_chunk": 10**9}, {"next_chunk": True}, {"next_chunk": None},
    {"head": "zz"}, {"head": ""}, {"head": 7}, {"head": _flip_first_hex_digit}, "a string", [],
], ids=lambda d: repr(d) if not isinstance(d, dict) else ",".join(f"{k}={getattr(v, '__name__', v)!r}" for k, v in d.items()))
def test_a_damaged_full_install_checkpoint_writes_the_slot_from_the_start(tmp_path, artifacts, damage):
    """A full install stopped after its last checkpoint, whose checkpoint in the device state is then
    damaged: the next install writes the slot from the first chunk and arms it. A checkpoint that
    does not fit the bundle is ignored; one that fits but holds other bytes (a flipped held-back head)
    fails the slot's hash, and the install starts over once instead of failing on every run. These
    used to fail with an internal error (exit 70) or the slot's hash, on every run."""
    import json

    from edge.device.state import load_state, save_state

    d, cfg = _board(tmp_path, artifacts)
    bundle = artifacts["bundles"][("x86-64-efi", "v2")]
    _install_cut_at(cfg, bundle, "verifying")
    state = load_state(cfg.state_file)
    assert state.operation is not None and state.operation.checkpoint["next_chunk"] > 0
    if isinstance(damage, dict):
        for key, value in damage.items():
            old = state.operation.checkpoint[key]
            state.operation.checkpoint[key] = value(old) if callable(value) else value
    else:
        state.operation.checkpoint = damage
    save_state(cfg.state_file, state)
    json.load(open(cfg.state_file))  # still a well-formed state file: only the checkpoint is wrong
    result = Installer(cfg).install(bundle)
    assert result.resumed_from is None and not result.already_installed
    size = os.path.getsize(artifacts["images"][2])
    assert sha256(cfg.slots["B"], size) == sha256(artifacts["images"][2])
    assert sim.reboot(d)[-1].check.outcome == "committed"


def test_a_full_install_resumes_from_a_sound_checkpoint(tmp_path, artifacts):
    """The counterpart of the test above: the same stop with the checkpoint left as it was resumes."""
    d, cfg = _board(tmp_path, artifacts)
    bundle = artifacts["bundles"][("x86-64-efi", "v2")]
    _install_cut_at(cfg, bundle, "verifying")
    result = Installer(cfg).install(bundle)
    assert result.resumed_from == os.path.getsize(artifacts["images"][2])
    assert sim.reboot(d)[-1].check.outcome == "committed"


def test_a_power_cut_right_after_a_delta_apply_finished_does_not_write_the_slot_again(tmp_path, artifacts, monkeypatch):
    """The applier removes its state once the slot verifies; the install then records the slot as
    verified. A power cut between the two (found by test_powercut on a loaded machine) left a
    checkpoint and no applier state, and the next install wrote the whole slot again from the
    first op. Now it finds the slot holding the image and arms it, without writing it."""
    from edge.device.state import load_state

    d, cfg = _board(tmp_path, artifacts, checkpoint_every="64K")
    bundle = artifacts["bundles"][("x86-64-efi", "v1-v2")]
    _install_cut_after_the_delta_applied(cfg, bundle, monkeypatch)
    op = load_state(cfg.state_file).operation
    assert op is not None and op.step == "writing" and op.checkpoint
    assert not os.path.exists(os.path.join(d, "data", "edge", "delta-apply-B.json"))
    write_delta, calls = Installer._write_delta, []
    monkeypatch.setattr(Installer, "_write_delta", lambda self, *a, **k: calls.append(1) or write_delta(self, *a, **k))
    result = Installer(cfg).install(bundle)
    assert calls == [] and result.resumed_from == os.path.getsize(artifacts["images"][2])
    assert sim.reboot(d)[-1].check.outcome == "committed"
    assert status(cfg)["slots"]["B"]["version"] == "2.0.0"


def test_a_delta_install_whose_slot_lost_its_image_after_the_apply_writes_it_again(tmp_path, artifacts, monkeypatch):
    """The counterpart: the same cut, then the slot no longer holds the image: written again."""
    d, cfg = _board(tmp_path, artifacts, checkpoint_every="64K")
    bundle = artifacts["bundles"][("x86-64-efi", "v1-v2")]
    _install_cut_after_the_delta_applied(cfg, bundle, monkeypatch)
    with open(cfg.slots["B"], "r+b") as fh:
        fh.seek(50_000)
        fh.write(b"rot!")
    result = Installer(cfg).install(bundle)
    assert result.resumed_from is None
    assert sim.reboot(d)[-1].check.outcome == "committed"
