"""device.yaml validation: every mistake names the file, the line and the field."""

from __future__ import annotations

import pytest

from edge.device import ConfigError, load_config

GOOD = """\
board: x86-64-efi
slots: {A: slots/a.img, B: slots/b.img}
boot_control:
  backend: file
  settings: {env: boot/env, cmdline: boot/cmdline}
keyring: keyring.pem
state_dir: data
health:
  timeout: 5
  commands: ["true"]
"""


def write(tmp_path, text: str) -> str:
    p = tmp_path / "device.yaml"
    p.write_text(text)
    return str(p)


def test_valid_config_and_relative_paths(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.compatible == "edge,x86-64-efi" and cfg.backend == "file" and cfg.boot_attempts == 3
    assert cfg.slots["A"] == str(tmp_path / "slots" / "a.img")
    assert cfg.backend_settings["env"] == str(tmp_path / "boot" / "env")
    assert cfg.health.commands == ("true",) and cfg.health.timeout == 5


@pytest.mark.parametrize("change, message", [
    (("keyring: keyring.pem\n", "keyring: keyring.pem\ncolour: blue\n"), "device.yaml:7: .*unknown"),
    (("backend: file", "backend: lilo"), "device.yaml:4: field 'boot_control.backend': 'lilo' is not one of"),
    (("slots: {A: slots/a.img, B: slots/b.img}", "slots: {A: slots/a.img, B: slots/a.img}"), "same device"),
    (("slots: {A: slots/a.img, B: slots/b.img}", "slots: {A: slots/a.img}"), "slots"),
    (("settings: {env: boot/env, cmdline: boot/cmdline}", "settings: {envv: boot/env}"), "unknown setting"),
    (("state_dir: data\n", "state_dir: data\nboot_attempts: 12\n"), "boot_attempts"),
    (("timeout: 5", "timeout: -1"), "health.timeout"),
    (("board: x86-64-efi", "board: toaster"), "unknown board 'toaster'"),
    (("keyring: keyring.pem", "keyring: key\x00ring.pem"), r"device.yaml:6: invalid YAML: unacceptable character #x0000"),
])
def test_errors_name_file_line_field(tmp_path, change, message):
    old, new = change
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, GOOD.replace(old, new)))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no device configuration"):
        load_config(str(tmp_path / "nope.yaml"))
