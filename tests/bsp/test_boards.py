"""Board support packages: the built-in boards' facts and boot files, board.yaml validation, the registry, the CLI."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from bsp.boards import BUILTIN_DIR, BoardError, BoardRegistry, load_board
from tests.conftest import require_tool, run

BUILTIN = ["jetson-orin-nano", "rpi4", "rpi5", "x86-64-efi"]


def board_file(board: str, rel: str) -> str:
    return os.path.join(BUILTIN_DIR, board, rel)


def edge(*args) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True)


def test_builtin_boards_load():
    registry = BoardRegistry()
    assert registry.names() == BUILTIN
    facts = {b.name: (b.arch, b.compatible, b.boot_control.mechanism, b.partition_table) for b in registry.all()}
    assert facts == {
        "jetson-orin-nano": ("aarch64", "nvidia,p3768-0000+p3767-0005", "nvbootctrl", "gpt"),
        "rpi4": ("aarch64", "raspberrypi,4-model-b", "rpi-tryboot", "mbr"),
        "rpi5": ("aarch64", "raspberrypi,5-model-b", "rpi-tryboot", "mbr"),
        "x86-64-efi": ("x86_64", "edge,x86-64-efi", "grub-env", "gpt"),
    }
    for board in registry.all():
        assert {p.slot for p in board.partitions if p.role == "rootfs"} == {"A", "B"}
        assert sum(p.role == "data" for p in board.partitions) == 1 and board.partitions[-1].grow
        assert board.serial_console.baud == 115200
        assert any(arg.startswith("console=") for arg in board.kernel_cmdline)
        assert "rootfstype=squashfs" in board.kernel_cmdline and "ro" in board.kernel_cmdline


@pytest.mark.parametrize("name", ["rpi4", "rpi5"])
def test_raspberry_pi_autoboot_matches_the_partition_layout(name):
    board = load_board(os.path.join(BUILTIN_DIR, name))
    with open(board_file(name, "boot/autoboot.txt"), "rb") as fh:
        autoboot = fh.read()
    assert len(autoboot) <= 512  # the firmware reads at most 512 bytes
    sections: dict[str, dict[str, str]] = {}
    current = None
    for line in autoboot.decode().splitlines():
        if line.startswith("["):
            current = sections.setdefault(line, {})
        elif line and not line.startswith("#"):
            key, value = line.split("=")
            current[key] = value
    assert sections["[all]"] == {"tryboot_a_b": "1", "boot_partition": str(board.partition("boot-a").number)}
    assert sections["[tryboot]"] == {"boot_partition": str(board.partition("boot-b").number)}
    assert board.partition("autoboot").number == 1 and board.partition("autoboot").fs == "vfat"
    for slot in "AB":  # root= names the slot's partition by number
        part = board.rootfs_partition(slot)
        assert part.root == f"/dev/mmcblk0p{part.number}"
    primary = [p.number for p in board.partitions if p.number <= 4]
    assert 4 not in primary  # number 4 is the extended partition holding the logical ones
    assert board.boot_control.options == {"partition": "autoboot", "file": "autoboot.txt"}


@pytest.mark.parametrize("name", ["rpi4", "rpi5"])
def test_config_txt_and_cmdline_txt_follow_the_firmware_rules(name):
    with open(board_file(name, "boot/config.txt")) as fh:
        for line in fh.read().splitlines():
            if not line or line.startswith("#") or re.fullmatch(r"\[[a-z0-9_]+\]", line):
                continue
            # case-sensitive names, no spaces around '=', no quotes, comments only at the start of a line
            assert re.fullmatch(r"[a-z_0-9]+=[^\s\"'#]+", line), line
    with open(board_file(name, "boot/cmdline.txt")) as fh:
        cmdline = fh.read()
    assert cmdline.count("\n") == 1 and cmdline.endswith("\n")  # one line
    assert cmdline.startswith("root=@EDGE_ROOT@ ") and "edge.slot=@EDGE_SLOT@" in cmdline


def test_jetson_extlinux_conf():
    with open(board_file("jetson-orin-nano", "boot/extlinux.conf")) as fh:
        conf = fh.read()
    assert re.search(r"^DEFAULT primary$", conf, re.M) and re.search(r"^LABEL primary$", conf, re.M)
    assert re.search(r"^\s+LINUX /boot/Image$", conf, re.M) and re.search(r"^\s+INITRD /boot/initrd$", conf, re.M)
    assert re.search(r"^\s+APPEND \$\{cbootargs\} root=@EDGE_ROOT@ @EDGE_KERNEL_CMDLINE@ edge.slot=@EDGE_SLOT@$", conf, re.M)
    board = load_board(os.path.join(BUILTIN_DIR, "jetson-orin-nano"))
    assert [p.name for p in board.partitions if p.role == "boot"] == ["APP", "APP_b"]  # the names L4T's rootfs A/B use
    assert board.boot_control.options == {"target": "rootfs"}


def test_x86_grub_environment_block():
    board = load_board(os.path.join(BUILTIN_DIR, "x86-64-efi"))
    env_file = board.boot_control.options["file"]
    (spec,) = [f for f in board.boot_files if f.path == env_file]
    with open(spec.src, "rb") as fh:
        block = fh.read()
    assert len(block) == 1024 and block.startswith(b"# GRUB Environment Block\n") and block.endswith(b"#")
    listed = run(require_tool("grub-editenv"), spec.src, "list").stdout.splitlines()
    assert listed == ["BOOT_ORDER=A B", "BOOT_A_LEFT=3", "BOOT_B_LEFT=3"]
    cfg = next(f for f in board.boot_files if f.path == "EFI/BOOT/grub.cfg")
    with open(cfg.src) as fh:
        wrapper = fh.read()
    assert 'source "${config_directory}/edge-ab.cfg"' in wrapper
    assert any(f.path == "EFI/BOOT/edge-ab.cfg" and f.src == board_file("x86-64-efi", "boot/grub.cfg") for f in board.boot_files)


def test_board_rootfs_overlays_and_mount_points():
    for name in BUILTIN:
        board = load_board(os.path.join(BUILTIN_DIR, name))
        assert board.rootfs_overlay == os.path.join(BUILTIN_DIR, name, "rootfs")
        with open(os.path.join(board.rootfs_overlay, "etc/fstab")) as fh:
            mounts = [line.split() for line in fh if line.strip() and not line.startswith("#")]
        # every fstab line mounts a partition of the layout where board.yaml says it is mounted
        declared = {p.mount: p for p in board.partitions if p.mount}
        assert sorted(m[1] for m in mounts) == sorted(declared)
        for device, mountpoint, fstype, *_ in mounts:
            part = declared[mountpoint]
            assert fstype == part.fs
            assert device == (f"/dev/mmcblk0p{part.number}" if board.partition_table == "mbr" else f"PARTLABEL={part.name}")


# ---------------------------------------------------------------- validation
@pytest.fixture
def user_board(tmp_path):
    """A copy of the x86 board as a user's board folder."""
    folder = tmp_path / "myboard"
    shutil.copytree(os.path.join(BUILTIN_DIR, "x86-64-efi"), folder, symlinks=True)
    text = (folder / "board.yaml").read_text().replace("name: x86-64-efi", "name: myboard")
    (folder / "board.yaml").write_text(text)
    return folder


def edit(folder, old: str, new: str) -> str:
    path = folder / "board.yaml"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    return str(path)


def line_of(path: str, needle: str) -> int:
    with open(path) as fh:
        for i, line in enumerate(fh, 1):
            if needle in line:
                return i
    raise AssertionError(needle)


@pytest.mark.parametrize("old,new,needle,pattern", [
    ("name: myboard", "name: other", "name: other", r"field 'name': 'other' must equal the folder name 'myboard'"),
    ("arch: x86_64", "arch: riscv64", "arch: riscv64", r"field 'arch': 'riscv64' is not one of aarch64, x86_64"),
    ("compatible: edge,x86-64-efi", "compatible: has spaces", "compatible:", r"field 'compatible'"),
    ("  baud: 115200", "  baud: fast", "baud: fast", r"field 'serial_console.baud': expected an integer"),
    ("  mechanism: grub-env", "  mechanism: uboot", "mechanism: uboot", r"field 'boot_control.mechanism': 'uboot' is not one of"),
    ("  tries: 3", "  target: rootfs", "target: rootfs", r"field 'boot_control.target': not an option of grub-env"),
    ("  partition: esp\n  file:", "  partition: efi\n  file:", "partition: efi", r"field 'boot_control.partition': no partition named 'efi'"),
    ("partition_table: gpt", "partition_table: apm", "partition_table", r"field 'partition_table'"),
    ("slot: B, size: 2GiB", "slot: A, size: 2GiB", "partitions:", r"field 'partitions': needs exactly one rootfs partition for slot A and one for slot B"),
    ("size: 256MiB,", "size: lots,", "size: lots", r"field 'partitions\[0\].size': 'lots' is not a size"),
    ("role: boot, fs: vfat", "role: boot, fs: ntfs", "fs: ntfs", r"field 'partitions\[0\].fs'"),
    ("mount: /boot/efi}", "mount: boot/efi}", "mount: boot/efi", r"field 'partitions\[0\].mount': 'boot/efi': a mount point is an absolute path"),
    ("{name: data, role: data, fs: ext4, size: 1GiB, grow: true, mount: /data}", "{name: data, role: data, fs: ext4, size: 1GiB, grow: true}\n"
     "  - {name: extra, role: other, size: 1MiB}", "name: data", r"field 'partitions\[3\].grow': only the last partition can grow"),
    ("path: EFI/BOOT/grubenv, src: boot/grubenv}", "path: EFI/BOOT/grubenv, src: ../../etc/passwd}", "src: ../../etc/passwd",
     r"field 'boot_files\[3\].src': '../../etc/passwd' is outside the board folder"),
    ("path: EFI/BOOT/grubenv, src: boot/grubenv}", "path: /EFI/BOOT/grubenv, src: boot/grubenv}", "path: /EFI/BOOT/grubenv",
     r"field 'boot_files\[3\].path': a path inside a boot partition is relative"),
    ("{partition: esp, path: EFI/BOOT/grubenv, src: boot/grubenv}", "{partition: nowhere, path: x, src: boot/grubenv}", "partition: nowhere",
     r"field 'boot_files\[3\].partition': 'nowhere' is neither a partition"),
    ("{partition: esp, path: EFI/BOOT/grubenv, src: boot/grubenv}", "{partition: esp, path: x, src: boot/grubenv, rootfs: /x}", "rootfs: /x",
     r"field 'boot_files\[3\]': give exactly one of 'src'"),
    ("{partition: esp, path: EFI/BOOT/grubenv, src: boot/grubenv}", "{partition: esp, path: dtbs, rootfs: /boot/*.dtb}", "rootfs: /boot/\\*",
     r"field 'boot_files\[3\].path': a glob copies into a directory"),
    ("description: ", "colour: red\ndescription: ", "colour: red", r"field 'colour': unknown key"),
])
def test_invalid_board_yaml_names_file_line_and_field(user_board, old, new, needle, pattern):
    path = edit(user_board, old, new)
    with pytest.raises(BoardError) as info:
        load_board(str(user_board))
    message = str(info.value)
    assert message.startswith(f"{path}:"), message
    assert re.search(pattern, message), message
    line = int(message.split(":")[1])
    assert line == line_of(path, needle.replace("\\", "")), message


def test_template_placeholders_are_checked(user_board):
    (user_board / "boot/grub-board.cfg").write_text("set x=@EDGE_NO_SUCH@\n")
    with pytest.raises(BoardError, match=r"unknown placeholder @EDGE_NO_SUCH@"):
        load_board(str(user_board))
    (user_board / "boot/grub-board.cfg").write_text("set slot=@EDGE_SLOT@\n")
    with pytest.raises(BoardError, match=r"@EDGE_SLOT@ only works in a per-slot boot file"):
        load_board(str(user_board))


def test_missing_board_yaml(tmp_path):
    with pytest.raises(BoardError, match="not a board folder"):
        load_board(str(tmp_path))


# ---------------------------------------------------------------- registry and CLI
def test_bsp_path_adds_and_overrides_boards(tmp_path, user_board):
    override = tmp_path / "overrides" / "rpi4"
    shutil.copytree(os.path.join(BUILTIN_DIR, "rpi4"), override, symlinks=True)
    edit(override, "description: Raspberry Pi 4", "description: My own Raspberry Pi 4")
    registry = BoardRegistry([str(tmp_path / "overrides"), str(user_board)])
    assert registry.names() == BUILTIN[:1] + ["myboard"] + BUILTIN[1:]
    assert registry.get("rpi4").description.startswith("My own") and registry.folder("rpi4") == str(override)
    with pytest.raises(BoardError, match="not a directory"):
        BoardRegistry([str(tmp_path / "nope")])


def test_edge_boards_cli(tmp_path, user_board):
    proc = edge("boards")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "ARCH", "BOOT"] and [line.split()[0] for line in lines[1:]] == BUILTIN
    listed = json.loads(edge("boards", "--json", "--bsp-path", str(user_board)).stdout)
    assert [b["name"] for b in listed] == BUILTIN[:1] + ["myboard"] + BUILTIN[1:]
    shown = json.loads(edge("boards", "show", "rpi4", "--json").stdout)
    assert shown["compatible"] == "raspberrypi,4-model-b" and shown["boot_control"]["mechanism"] == "rpi-tryboot"
    assert [p["name"] for p in shown["partitions"]] == ["autoboot", "boot-a", "boot-b", "rootfs-a", "rootfs-b", "data"]
    text = edge("boards", "show", "jetson-orin-nano").stdout
    assert "nvbootctrl (target=rootfs)" in text and "ttyTCU0 at 115200 baud" in text and "APP_b" in text
    proc = edge("boards", "show", "nope")
    assert proc.returncode == 5 and proc.stderr.startswith("edge: error: unknown board 'nope'")
    broken = tmp_path / "broken"
    shutil.copytree(user_board, broken, symlinks=True)
    edit(broken, "name: myboard", "name: broken\nbogus: 1")
    proc = edge("boards", "--bsp-path", str(tmp_path / "broken"))
    assert proc.returncode == 5 and "board.yaml:" in proc.stderr and "field 'bogus': unknown key" in proc.stderr
