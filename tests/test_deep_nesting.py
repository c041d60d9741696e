"""Files nested thousands of levels deep (``[[[[…``): every JSON and YAML file Edge reads ends in its
typed one-line error and exit code, not an "internal error" (Python's parsers recurse, and used to end
in RecursionError, exit 70)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import run_edge

DEEP_JSON = "[" * 50_000
DEEP_YAML = "board: " + "[" * 50_000 + "\n"


def _one_error_line(result, code: int, *needles: str) -> None:
    lines = result.stderr.splitlines()
    assert result.returncode == code, result.stderr
    assert len(lines) == 1 and lines[0].startswith("edge: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def board(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("deep")
    (d / "tree" / "etc").mkdir(parents=True)
    (d / "tree" / "etc" / "os-release").write_text("NAME=edge\n")
    run_edge("squashfs", "create", str(d / "tree"), str(d / "v1.sqfs"), "--mtime", "1700000000")
    run_edge("sim", "create", "--board", "x86-64-efi", "--image", str(d / "v1.sqfs"), str(d / "board"))
    return d


def _copy(board: Path, tmp_path: Path) -> Path:
    shutil.copytree(board / "board", tmp_path / "board", symlinks=True)
    return tmp_path / "board"


def test_a_deep_device_yaml(board, tmp_path):
    d = _copy(board, tmp_path)
    (d / "device.yaml").write_text(DEEP_YAML)
    _one_error_line(run_edge("--config", str(d / "device.yaml"), "status", check=False), 11, "device.yaml",
                    "nested too deeply")


def test_a_deep_state_file(board, tmp_path):
    d = _copy(board, tmp_path)
    state = d / "data" / "edge" / "state.json"
    assert json.loads(state.read_text())["format"] == 1  # (the file the device reads)
    state.write_text(DEEP_JSON)
    _one_error_line(run_edge("--config", str(d / "device.yaml"), "status", check=False), 11, "state.json",
                    "nested too deeply", "move it away")


def test_a_deep_sim_file(board, tmp_path):
    d = _copy(board, tmp_path)
    (d / "sim.json").write_text(DEEP_JSON)
    _one_error_line(run_edge("sim", "reboot", str(d), check=False), 11, "sim.json is damaged (nested too deeply)")


@pytest.mark.parametrize("content, needle", [(DEEP_JSON, None), ("[1, 2]", None),
                                              ('{"security_version": "7"}', "security_version must be"),
                                              ('{"version": 2}', "version must be a string")])
def test_image_metadata_beside_the_image(board, tmp_path, content, needle):
    """`edge sim create` reads V1.json beside V1.sqfs for the version: one that does not parse is ignored
    (as before), one with fields of the wrong type is refused before anything is made."""
    image = tmp_path / "v1.sqfs"
    shutil.copyfile(board / "v1.sqfs", image)
    (tmp_path / "v1.json").write_text(content)
    result = run_edge("sim", "create", "--board", "x86-64-efi", "--image", str(image), str(tmp_path / "b"),
                      check=False)
    if needle is None:
        assert result.returncode == 0, result.stderr
    else:
        _one_error_line(result, 11, "v1.json", needle)
        assert not (tmp_path / "b").exists()


def test_a_deep_recipe(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(DEEP_YAML)
    _one_error_line(run_edge("build", str(recipe), "-o", str(tmp_path / "out"), check=False), 5, "recipe.yaml",
                    "nested too deeply")


def test_a_deep_board_yaml(tmp_path):
    (tmp_path / "bsp" / "deep").mkdir(parents=True)
    (tmp_path / "bsp" / "deep" / "board.yaml").write_text(DEEP_YAML)
    _one_error_line(run_edge("boards", "--bsp-path", str(tmp_path / "bsp"), check=False), 5, "board.yaml",
                    "nested too deeply")


def test_a_deep_ca_index(tmp_path):
    run_edge("keys", "ca", "init", str(tmp_path / "ca"))
    (tmp_path / "ca" / "index.json").write_text(DEEP_JSON)
    result = run_edge("keys", "issue", "--ca", str(tmp_path / "ca"), "--name", "x", "-o", str(tmp_path / "k"),
                      check=False)
    _one_error_line(result, 7, "index.json", "nested too deeply")


@pytest.mark.parametrize("content, needle", [
    (DEEP_JSON, "nested too deeply"),
    ('{"max_retry": 1e400, "current": 0, "active": 0, "slots": []}', "cannot convert float infinity to integer")])
def test_a_damaged_fake_nvbootctrl_state(tmp_path, content, needle):
    import subprocess

    from bsp.bootctl import fake_nvbootctrl as nv

    state = tmp_path / "nv.json"
    state.write_text(content)
    proc = subprocess.run([sys.executable, "-m", "bsp.bootctl.fake_nvbootctrl", "-t", "rootfs",
                           "get-current-slot"],
                          capture_output=True, text=True, env={**os.environ, nv.STATE_ENV: str(state)})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr == f"{state}: not a fake nvbootctrl state file: {needle}\n"


def test_a_deep_delta_checkpoint_is_ignored(tmp_path):
    """A checkpoint file that does not parse is no checkpoint: the apply starts from the first op."""
    for name, text in (("old", "one\n"), ("new", "two\n" * 1000)):
        (tmp_path / name / "etc").mkdir(parents=True)
        (tmp_path / name / "etc" / "f").write_text(text)
        run_edge("squashfs", "create", str(tmp_path / name), str(tmp_path / f"{name}.sqfs"), "--mtime", "1700000000")
    run_edge("delta", "make", str(tmp_path / "old.sqfs"), str(tmp_path / "new.sqfs"), "-o", str(tmp_path / "p"))
    (tmp_path / "st.json").write_text(DEEP_JSON)
    result = run_edge("delta", "apply", str(tmp_path / "old.sqfs"), str(tmp_path / "p"), "-o",
                      str(tmp_path / "t.img"), "--state", str(tmp_path / "st.json"), check=False)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "t.img").read_bytes() == (tmp_path / "new.sqfs").read_bytes()
