"""No command writes its output over one of its own inputs: the input is left as it was, nothing is written,
and one line says which input the output path names (through any name or hard link)."""

from __future__ import annotations

import os
import stat

import pytest

from edge.errors import UsageError
from edge.fsutil import check_output_path
from tests.device.helpers import sha256
from tests.delta.helpers import base_entries, edit
from tests.delta.helpers import write as write_sqfs
from tests.signing.test_cli_keys import assert_one_line_error, edge


def files_in(directory) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(os.listdir(directory))


@pytest.fixture(scope="module")
def env(tmp_path_factory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("inputs")
    edge("keys", "ca", "init", str(d / "ca"))
    edge("keys", "issue", "--ca", str(d / "ca"), "--name", "release", "-o", str(d / "keys"))
    entries = base_entries(21, files=20)
    old = write_sqfs(entries, str(d / "old.sqfs"), compressor="zstd", level=3)
    new = write_sqfs(edit(entries, 21), str(d / "new.sqfs"), compressor="zstd", level=3)
    edge("delta", "make", old, new, "-o", str(d / "p.delta"))
    signing = ["--key", str(d / "keys" / "release.key"), "--cert", str(d / "keys" / "release.crt"),
               "--compatible", "test-board", "--version", "2.0.0"]
    edge("bundle", "create", new, *signing, "-o", str(d / "full.edgeb"))
    return {"dir": d, "old": old, "new": new, "delta": str(d / "p.delta"), "bundle": str(d / "full.edgeb"),
            "signing": signing, "ca": str(d / "ca")}


def _refused(args, victim, code, *needles):  # type: ignore[no-untyped-def]
    """``edge ARGS`` fails with one line holding ``needles``; ``victim`` is unchanged and no file appeared."""
    before, listing = sha256(victim), files_in(os.path.dirname(victim))
    result = edge(*args, check=False)
    assert_one_line_error(result, code, *needles)
    assert sha256(victim) == before
    assert files_in(os.path.dirname(victim)) == listing  # no temporary file left behind


def test_delta_make_refuses_to_write_over_old_or_new(env):
    _refused(["delta", "make", env["old"], env["new"], "-o", env["old"]], env["old"], 2,
             "is OLD", "nothing was written")
    link = str(env["dir"] / "new-link.sqfs")  # the same file under another name
    os.link(env["new"], link)
    try:
        _refused(["delta", "make", env["old"], env["new"], "-o", link], env["new"], 2, "is NEW")
    finally:
        os.unlink(link)


def test_delta_apply_refuses_to_write_over_the_delta(env):
    _refused(["delta", "apply", env["old"], env["delta"], "-o", env["delta"]], env["delta"], 10,
             "the target is the delta being applied", "nothing was written")
    assert not os.path.exists(env["delta"] + ".edge-apply")


@pytest.mark.parametrize("role", ["OLD", "PATCH", "TARGET", "a device node", "a directory"])
def test_delta_apply_refuses_a_checkpoint_file_that_names_an_input_the_target_or_a_device(tmp_path, env, role):
    """The checkpoint file is replaced at every checkpoint and removed at the end: given the path of the
    source, the delta or the target it would destroy them (the target after "written and verified");
    given a device node it would replace the node with a file."""
    target = tmp_path / "t.img"
    node = tmp_path / "null"
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a character device, as /dev/null
    state = {"OLD": env["old"], "PATCH": env["delta"], "TARGET": str(target), "a device node": str(node),
             "a directory": str(tmp_path)}[role]
    kept = {p: sha256(p) for p in (env["old"], env["delta"])}
    result = edge("delta", "apply", env["old"], env["delta"], "-o", str(target), "--state", state, check=False)
    assert_one_line_error(result, 2, "--state: ")
    assert {p: sha256(p) for p in kept} == kept
    assert not target.exists() and stat.S_ISCHR(node.stat().st_mode)
    assert files_in(tmp_path) == ["null"]


def test_bundle_create_refuses_to_write_over_the_image_or_the_delta_source(env):
    _refused(["bundle", "create", env["new"], *env["signing"], "-o", env["new"]], env["new"], 2,
             "is IMAGE.sqfs")
    _refused(["bundle", "create", env["new"], *env["signing"], "--delta-from", env["old"],
                             "-o", env["old"]], env["old"], 2, "is --delta-from")


def test_bundle_extract_refuses_to_write_over_the_bundle(env):
    _refused(["bundle", "extract", env["bundle"], "--keyring", os.path.join(env["ca"], "root.crt"),
                             "-o", env["bundle"]], env["bundle"], 2, "is BUNDLE")


@pytest.mark.parametrize("name, role", [("root.key", "the CA's private key"), ("root.crt", "the CA's certificate"),
                                        ("index.json", "the CA's index")])
def test_keys_crl_refuses_to_write_over_the_ca(env, name, role):
    victim = os.path.join(env["ca"], name)
    _refused(["keys", "crl", "--ca", env["ca"], "-o", victim], victim, 2, role)


def test_the_same_commands_work_with_another_output(tmp_path, env):
    """(So the refusals above are about the path, not about the inputs.)"""
    edge("delta", "make", env["old"], env["new"], "-o", str(tmp_path / "d"))
    edge("delta", "apply", env["old"], str(tmp_path / "d"), "-o", str(tmp_path / "t"))
    assert sha256(tmp_path / "t") == sha256(env["new"])
    edge("bundle", "create", env["new"], *env["signing"], "--delta-from", env["old"], "-o", str(tmp_path / "b"))
    edge("bundle", "extract", env["bundle"], "--keyring", os.path.join(env["ca"], "root.crt"), "-o", str(tmp_path / "x"))
    assert sha256(tmp_path / "x") == sha256(env["new"])
    edge("keys", "crl", "--ca", env["ca"], "-o", str(tmp_path / "crl.pem"))


def test_check_output_path_compares_files_not_names(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"1")
    b.write_bytes(b"1")  # equal content, another file
    check_output_path(b, {"IN": str(a)})
    os.symlink(a, tmp_path / "sym")
    with pytest.raises(UsageError, match=r"sym is IN \("):
        check_output_path(tmp_path / "sym", {"IN": str(a)})
    with pytest.raises(UsageError, match=r"/a is IN \("):
        check_output_path(a, {"IN": str(tmp_path / "sym")})
    # inputs that are not local files are not the output: a URL, standard input, a missing path, none
    check_output_path(a, {"URL": "https://example.invalid/a", "STDIN": "-", "GONE": str(tmp_path / "gone"),
                          "NONE": None})
    check_output_path(tmp_path / "new-file", {"IN": str(a)})  # an output that does not exist yet
