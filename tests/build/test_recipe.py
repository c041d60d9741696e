"""Recipes: the full schema, and malformed recipes failing with file, line and field."""

from __future__ import annotations

import os

import pytest

from edge.build.errors import RecipeError
from edge.build.recipe import load_recipe
from tests.build.helpers import write_recipe


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "overlay").mkdir()
    (tmp_path / "motd").write_text("hi\n")
    (tmp_path / "extra.tar.gz").write_bytes(b"\x1f\x8b")
    return tmp_path


FULL = """\
name: demo
version: 1.2.3-rc.1+build.5
boards: [x86-64-efi, rpi4]
source: {dir: ./rootfs}
overlays:
  - ./overlay
  - {src: ./motd, dest: /etc/motd, mode: 0600, owner: "10:20"}
  - {src: ./extra.tar.gz, dest: /opt}
  - {src: ./overlay, owner: keep}
files:
  - {path: /etc/hostname, content: "box-${BOX:-1}\\n"}
  - {path: /etc/blob, content_base64: "AAEC/w==", mode: 755, owner: "0:0", mtime: 5}
  - {path: /var/empty, type: dir, mode: "0700"}
  - {path: /bin/sh, type: symlink, target: busybox}
remove: [/usr/share/doc/**, /etc/machine-id]
kernel_cmdline: [quiet, "loglevel=3 panic=5"]
squashfs: {compression: xz, level: 9, block_size: 1M}
source_date_epoch: 1700000000
arch_check: false
"""


def test_full_recipe(workdir):
    recipe = load_recipe(write_recipe(workdir / "r.yaml", FULL), env={"BOX": "7"})
    assert (recipe.name, recipe.version, recipe.boards) == ("demo", "1.2.3-rc.1+build.5", ("x86-64-efi", "rpi4"))
    assert recipe.source.type == "dir" and recipe.source.path == str(workdir / "rootfs")
    dir_overlay, file_overlay, tar_overlay, keep_overlay = recipe.overlays
    assert (dir_overlay.kind, dir_overlay.dest, dir_overlay.owner) == ("dir", "", (0, 0))
    assert (file_overlay.kind, file_overlay.dest, file_overlay.mode, file_overlay.owner) == ("file", "etc/motd", 0o600, (10, 20))
    assert (tar_overlay.kind, tar_overlay.dest, tar_overlay.owner) == ("tar", "opt", None)
    assert keep_overlay.owner is None
    hostname, blob, empty, sh = recipe.files
    assert hostname.content == b"box-7\n" and hostname.mode == 0o644
    assert (blob.content, blob.mode, blob.mtime) == (b"\x00\x01\x02\xff", 0o755, 5)
    assert (empty.kind, empty.mode) == ("dir", 0o700)
    assert (sh.kind, sh.target, sh.path) == ("symlink", "busybox", "bin/sh")
    assert recipe.remove == ("/usr/share/doc/**", "/etc/machine-id")
    assert recipe.kernel_cmdline == ("quiet", "loglevel=3", "panic=5")
    assert (recipe.squashfs.compressor, recipe.squashfs.level, recipe.squashfs.block_size) == ("xz", 9, 1 << 20)
    assert recipe.source_date_epoch == 1_700_000_000 and recipe.arch_check is False


def test_defaults_and_environment_epoch(workdir):
    path = write_recipe(workdir / "r.yaml", "name: x\nversion: 0.1.0\nboards: rpi4\nsource: {dir: rootfs}\n")
    recipe = load_recipe(path, env={})
    assert recipe.boards == ("rpi4",) and recipe.source_date_epoch is None
    assert (recipe.squashfs.compressor, recipe.squashfs.resolved_level, recipe.squashfs.block_size) == ("zstd", 15, 128 << 10)
    assert load_recipe(path, env={"SOURCE_DATE_EPOCH": "1234"}).source_date_epoch == 1234


BASE = "name: demo\nversion: 1.0.0\nboards: [rpi4]\nsource: {dir: ./rootfs}\n"


@pytest.mark.parametrize("body,line,pattern", [
    (BASE + "colour: blue\n", 5, r"field 'colour': unknown key"),
    (BASE.replace("version: 1.0.0", "version: 1.0"), 2, r"field 'version': '1.0' is not valid: a semantic version"),
    (BASE.replace("version: 1.0.0", "version: v1.0.0"), 2, r"field 'version'"),
    (BASE.replace("source: {dir: ./rootfs}\n", ""), 1, r"field 'source': is required"),
    (BASE.replace("{dir: ./rootfs}", "{dir: ./rootfs, oci: ./rootfs}"), 4, r"field 'source': needs exactly one of"),
    (BASE.replace("{dir: ./rootfs}", "{dir: ./rootfs, ref: x}"), 4, r"field 'source.ref': only an oci or docker-archive"),
    (BASE.replace("{dir: ./rootfs}", "{tar: ./missing.tar}"), 4, r"field 'source.tar': ./missing.tar does not exist"),
    (BASE.replace("{dir: ./rootfs}", "./rootfs"), 4, r"field 'source': expected a mapping"),
    (BASE.replace("[rpi4]", "[]"), 3, r"field 'boards': must not be empty"),
    (BASE.replace("[rpi4]", "[rpi4, rpi4]"), 3, r"field 'boards\[1\]': board 'rpi4' is listed twice"),
    (BASE.replace("[rpi4]", "[Bad Board]"), 3, r"field 'boards\[0\]'"),
    (BASE.replace("name: demo", "name: ../x"), 1, r"field 'name'"),
    (BASE + "squashfs: {level: 30}\n", 5, r"field 'squashfs.level': 30 is more than 22"),
    (BASE + "squashfs: {compression: lz4}\n", 5, r"field 'squashfs.compression': 'lz4' is not one of"),
    (BASE + "squashfs: {block_size: 3K}\n", 5, r"field 'squashfs.block_size': block size 3072 must be a power of two"),
    (BASE + "squashfs: {level: high}\n", 5, r"field 'squashfs.level': expected an integer"),
    (BASE + "source_date_epoch: yesterday\n", 5, r"field 'source_date_epoch': expected an integer"),
    (BASE + "source_date_epoch: -1\n", 5, r"field 'source_date_epoch': -1 is less than 0"),
    (BASE + "arch_check: maybe\n", 5, r"field 'arch_check': expected true or false"),
    (BASE + "files:\n  - {path: etc/x, content: a}\n", 6, r"field 'files\[0\].path': 'etc/x' must be an absolute path"),
    (BASE + "files:\n  - {path: /a/../b, content: a}\n", 6, r"field 'files\[0\].path'.*'\.\.'"),
    (BASE + "files:\n  - {path: /a, content: a, content_base64: YQ==}\n", 6, r"field 'files\[0\]': give content or content_base64"),
    (BASE + "files:\n  - {path: /a, content_base64: '***'}\n", 6, r"field 'files\[0\].content_base64': is not valid base64"),
    (BASE + "files:\n  - {path: /a, mode: 0999}\n", 6, r"field 'files\[0\].mode': '0999' is not an octal permission mode"),
    (BASE + "files:\n  - {path: /a, owner: root}\n", 6, r"field 'files\[0\].owner': 'root' is not an owner"),
    (BASE + "files:\n  - {path: /a, type: symlink}\n", 6, r"field 'files\[0\].target': a symlink needs a target"),
    (BASE + "files:\n  - {path: /a}\n  - {path: /a/}\n", 7, r"field 'files\[1\]': /a is already defined by files\[0\]"),
    (BASE + "files:\n  - {path: /a, colour: red}\n", 6, r"field 'files\[0\].colour': unknown key"),
    (BASE + "remove: [usr/share]\n", 5, r"field 'remove\[0\]': 'usr/share' must be an absolute path"),
    (BASE + "remove: [/]\n", 5, r"field 'remove\[0\]': cannot remove the image root"),
    (BASE + "overlays: [./nope]\n", 5, r"field 'overlays\[0\]': ./nope does not exist"),
    (BASE + "overlays: [./motd]\n", 5, r"field 'overlays\[0\]': ./motd is a single file: give its place"),
    (BASE + "overlays: [{src: ./overlay, mode: 0644}]\n", 5, r"field 'overlays\[0\].mode': only a single-file overlay"),
    (BASE + "kernel_cmdline: 'x=\"a b\"'\n", 5, r"field 'kernel_cmdline'.*quotes"),
    (BASE + "files:\n  - {path: /a, content: '${NOPE}'}\n", 6, r"field 'files\[0\].content': environment variable NOPE is not set"),
    (BASE + "files:\n  - {path: /a, content: 'cost $5'}\n", 6, r"field 'files\[0\].content'.*a '\$' must start"),
    (BASE + "name: again\n", 5, r"duplicate key 'name'"),
    ("name: [unclosed\n", 2, r"invalid YAML"),
    (BASE + "motd: a\x07b\n", 5, r"invalid YAML: unacceptable character #x0007"),  # a control character
    ("name: x\n\n\x00\n", 3, r"invalid YAML: unacceptable character #x0000"),
    ("", 1, r"the file is empty"),
    ("- a list\n", 1, r"expected a mapping, got a list"),
])
def test_malformed_recipes_name_file_line_and_field(workdir, body, line, pattern):
    path = write_recipe(workdir / "bad.yaml", body)
    with pytest.raises(RecipeError) as info:
        load_recipe(path, env={})
    message = str(info.value)
    assert message.startswith(f"{path}:{line}:"), message
    assert __import__("re").search(pattern, message), message
    assert "\n" not in message
    assert RecipeError.exit_code == 5


def test_literal_dollar_and_defaults(workdir):
    path = write_recipe(workdir / "r.yaml", BASE + "files:\n  - {path: /a, content: 'cost $$5 ${UNSET:-free}'}\n")
    assert load_recipe(path, env={}).files[0].content == b"cost $5 free"


def test_yaml_sexagesimal_owner_is_read_as_written(workdir):
    # YAML 1.1 reads 1000:1000 unquoted as a base-60 number; the recipe means uid:gid
    path = write_recipe(workdir / "r.yaml", BASE + "files:\n  - {path: /a, owner: 1000:1000}\n")
    spec = load_recipe(path, env={}).files[0]
    assert (spec.uid, spec.gid) == (1000, 1000)


def test_unreadable_recipe(tmp_path):
    with pytest.raises(RecipeError, match="cannot read"):
        load_recipe(str(tmp_path / "missing.yaml"), env={})
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (2 << 20))
    with pytest.raises(RecipeError, match="larger than"):
        load_recipe(str(big), env={})
    assert os.path.exists(big)
