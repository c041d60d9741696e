"""Power cuts (SIGKILL, then the board loses power) at random points of install, commit and rollback.

After every cut the virtual board is powered on again: it must come up on a
slot holding a known good image (zero unbootable outcomes), and an interrupted
install run again must resume from its checkpoint rather than start over.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from edge.device import load_config, status
from edge.device import sim
from tests.device.conftest import BOARDS, COMPATIBLE
from tests.device.helpers import make_bundle, make_image, sha256

KILLS = {"install": 110, "commit": 50, "rollback": 50}  # >= 200 power cuts in all


@pytest.fixture(scope="module")
def world(tmp_path_factory, artifacts):
    """Bigger images (so an install takes long enough to be cut anywhere) and a board holding v1."""
    d = str(tmp_path_factory.mktemp("powercut"))
    pki = artifacts["pki"]
    img = {v: make_image(os.path.join(d, f"big{v}.sqfs"), f"{v}.0.0", broken=(v == 3), app_size=12_000_000, level=1,
                         incompressible=True) for v in (1, 2, 3)}
    out = {"dir": d, "images": img, "hash": {v: sha256(p) for v, p in img.items()}, "boards": {}, "bundles": {}}
    for backend in ("grub", "rpi"):
        board, override = BOARDS[backend]
        compat = COMPATIBLE[board]
        out["bundles"][(backend, "full2")] = make_bundle(pki, img[2], os.path.join(d, f"{board}-2.edgeb"), compat, "2.0.0",
                                                         security_version=2)
        out["bundles"][(backend, "delta2")] = make_bundle(pki, img[2], os.path.join(d, f"{board}-d2.edgeb"), compat, "2.0.0",
                                                          delta_from=img[1], security_version=2)
        out["bundles"][(backend, "full3")] = make_bundle(pki, img[3], os.path.join(d, f"{board}-3.edgeb"), compat, "3.0.0",
                                                         security_version=3)
        template = os.path.join(d, f"board-{backend}")
        sim.create(template, board, img[1], keyring=pki["keyring"], backend=override,
                   slot_size=os.path.getsize(img[2]) + (1 << 20))
        cfg_path = os.path.join(template, "device.yaml")
        text = open(cfg_path).read().replace("checkpoint_every: 1M", "checkpoint_every: 256K")
        open(cfg_path, "w").write(text)
        out["boards"][backend] = template
    return out


def fresh(world, backend: str, dest: str) -> str:
    if os.path.exists(dest):
        shutil.rmtree(dest)
    shutil.copytree(world["boards"][backend], dest, symlinks=True)
    return dest


def edge_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "edge", *args]


def run_killed(cmd: list[str], after: float, when=None) -> bool:  # type: ignore[no-untyped-def]
    """Run ``cmd`` and SIGKILL it ``after`` seconds (counted from when ``when()`` first holds, if given).

    True if it was killed, False if it finished first."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if when is not None:
            while proc.poll() is None and not when():
                time.sleep(0.005)
        proc.wait(timeout=after)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True


def checkpointed(board: str, at_least: float = 0):  # type: ignore[no-untyped-def]
    """A predicate: the install in ``board`` is writing and has checkpointed at target offset ``at_least`` or beyond."""
    path = os.path.join(board, "data", "edge", "state.json")

    def check() -> bool:
        try:
            op = json.load(open(path)).get("operation") or {}
        except (OSError, ValueError):
            return False
        checkpoint = op.get("checkpoint") or {}
        return bool(op.get("step") == "writing" and checkpoint and checkpoint.get("target_pos", 0) >= at_least)

    return check


def applier_state(board: str) -> dict[str, object]:
    """The delta applier's state files of ``board`` (name -> content, without the held-back head)."""
    out: dict[str, object] = {}
    state_dir = os.path.join(board, "data", "edge")
    for name in sorted(os.listdir(state_dir)):
        if name.startswith("delta-apply-"):
            try:
                out[name] = {k: v for k, v in json.load(open(os.path.join(state_dir, name))).items() if k != "head"}
            except (OSError, ValueError) as exc:
                out[name] = f"unreadable ({exc})"
    return out


LAST_BOOT: list[str] = []


def power_on(board: str, world, cut: bool = True) -> str:
    """Power cut (or a clean reboot), then power on; returns the version the board came up with,
    asserting it is bootable."""
    if cut:
        sim.power_cut(board)
    reports = sim.reboot(board)  # raises if the board never comes up
    LAST_BOOT[:] = [r.line() for r in reports]
    last = reports[-1]
    assert last.mounted and last.check is not None, f"unbootable: {[r.line() for r in reports]}"
    assert last.check.outcome != "unhealthy", last.line()
    cfg = load_config(os.path.join(board, "device.yaml"))
    slot = cfg.slots[last.slot]
    version = next((v for v in (1, 2, 3) if sha256(slot, os.path.getsize(world["images"][v])) == world["hash"][v]), None)
    assert version in (1, 2), f"slot {last.slot} booted an unknown or broken image (v{version})"
    return f"{version}.0.0"


def timing(cmd: list[str]) -> float:
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.monotonic() - t0


@pytest.mark.parametrize("backend,payload", [("grub", "full2"), ("grub", "delta2"), ("rpi", "full2")])
def test_power_cut_during_install(tmp_path, world, backend, payload):
    rnd = random.Random(f"{backend}-{payload}")
    bundle = world["bundles"][(backend, payload)]
    board = fresh(world, backend, str(tmp_path / "b"))
    cfg = os.path.join(board, "device.yaml")
    # how long a whole install takes
    t0 = time.monotonic()
    subprocess.run(edge_cmd("--config", cfg, "install", bundle), stdout=subprocess.DEVNULL, check=True)
    full = time.monotonic() - t0
    size = os.path.getsize(world["images"][2])
    board = fresh(world, backend, str(tmp_path / "b"))
    cuts = resumes = 0
    target = KILLS["install"] // 3 + 1
    while cuts < target:
        # a third of the cuts anywhere in the run; the rest while the slot is being written, a few
        # milliseconds after the install checkpointed past a random offset (timing-independent: a
        # loaded machine slows every phase, so a fixed delay would miss the writing phase)
        if cuts % 3 == 0:
            killed = run_killed(edge_cmd("--config", cfg, "install", bundle), rnd.uniform(0.05, full))
        else:
            killed = run_killed(edge_cmd("--config", cfg, "install", bundle), rnd.uniform(0, 0.01),
                                checkpointed(board, rnd.uniform(0, 0.9) * size))
        if not killed:
            board = fresh(world, backend, board)  # it finished before the cut: start over
            continue
        cuts += 1
        state = json.load(open(os.path.join(board, "data", "edge", "state.json")))
        op = state.get("operation")
        checkpoint = (op or {}).get("checkpoint") or {}
        applier = applier_state(board)  # (for the failure message: what the next run resumes from)
        version = power_on(board, world)
        info = status(load_config(cfg))
        if version == "2.0.0":  # cut after the slot was armed: the trial booted and was committed
            assert info["committed"] == info["booted"]
            board = fresh(world, backend, board)
            continue
        assert version == "1.0.0"
        if info["operation"] and info["operation"]["step"] == "writing":
            # run the same install again to the end: it resumes from its checkpoint
            r = subprocess.run(edge_cmd("--config", cfg, "install", bundle, "--json"), capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
            result = json.loads(r.stdout)
            if checkpoint:
                assert result["resumed_from"] is not None, \
                    f"an interrupted install started over: checkpoint {checkpoint}, applier state {applier}"
                resumes += 1
            assert power_on(board, world, cut=False) == "2.0.0", (LAST_BOOT, r.stdout, checkpoint)
            board = fresh(world, backend, board)
    assert resumes >= target // 2, f"only {resumes} of {cuts} cut installs had a checkpoint to resume from"
    print(f"{cuts} cuts, {resumes} resumed from their checkpoint")


def cut_reboots(tmp_path, world, backend: str, board: str, cuts: int, rnd: random.Random):
    """Snapshot ``board`` with its trial armed; then, ``cuts`` times, restore the snapshot, cut the power
    at a random point of the reboot (trial boot + boot-check) and power on again. Yields the version
    each power-on came up with."""
    armed = str(tmp_path / "armed")
    shutil.copytree(board, armed, symlinks=True)
    full = timing(edge_cmd("sim", "reboot", board))
    done = 0
    while done < cuts:
        board = fresh({"boards": {backend: armed}}, backend, board)
        if not run_killed(edge_cmd("sim", "reboot", board), rnd.uniform(0.02, full)):
            continue
        done += 1
        yield power_on(board, world)


@pytest.mark.parametrize("backend", ["grub", "rpi"])
def test_power_cut_during_commit(tmp_path, world, backend):
    rnd = random.Random(f"commit-{backend}")
    bundle = world["bundles"][(backend, "full2")]
    board = fresh(world, backend, str(tmp_path / "b"))
    cfg = os.path.join(board, "device.yaml")
    subprocess.run(edge_cmd("--config", cfg, "install", bundle), check=True, capture_output=True)
    for version in cut_reboots(tmp_path, world, backend, board, KILLS["commit"] // 2, rnd):
        info = status(load_config(cfg))
        # either the trial was committed, or (RPi: the one-shot trial was lost with the power) v1 runs
        # and the update is recorded as rolled back; never a board without a good slot
        if version == "2.0.0":
            assert info["committed"] == info["booted"] and info["operation"] is None
        else:
            assert info["committed"] == info["booted"] == "A"


@pytest.mark.parametrize("backend", ["grub", "rpi"])
def test_power_cut_during_rollback(tmp_path, world, backend):
    rnd = random.Random(f"rollback-{backend}")
    board = fresh(world, backend, str(tmp_path / "b"))
    cfg = os.path.join(board, "device.yaml")
    subprocess.run(edge_cmd("--config", cfg, "install", world["bundles"][(backend, "full2")]), check=True, capture_output=True)
    sim.reboot(board)  # v2 committed in B
    subprocess.run(edge_cmd("--config", cfg, "install", world["bundles"][(backend, "full3")]), check=True, capture_output=True)
    for version in cut_reboots(tmp_path, world, backend, board, KILLS["rollback"] // 2, rnd):
        assert version == "2.0.0", "the broken v3 must never end up committed"
        info = status(load_config(cfg))
        assert info["committed"] == "B" and info["slots"]["A"]["status"] == "bad"
