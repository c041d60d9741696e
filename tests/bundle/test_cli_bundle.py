"""`edge bundle` through the real command line: defaults from build metadata, exit codes, one-line errors."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from signing.certs import certificate_pem
from signing.files import write_file_atomic, write_private_key
from tests.bundle.helpers import layout, make_image, read, write
from tests.delta.helpers import base_entries, edit
from tests.delta.helpers import write as write_sqfs
from tests.signing.pki import issue
from tests.signing.test_cli_keys import assert_one_line_error, edge


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    edge("keys", "ca", "init", str(d / "ca"))
    edge("keys", "issue", "--ca", str(d / "ca"), "--name", "release", "-o", str(d / "keys"))
    edge("keys", "ca", "init", str(d / "other-ca"))
    image = make_image(str(d / "rootfs.sqfs"), size=150_000, seed=5)
    return {"dir": d, "image": image, "key": str(d / "keys" / "release.key"), "cert": str(d / "keys" / "release.crt"),
            "keyring": str(d / "ca" / "root.crt"), "other_keyring": str(d / "other-ca" / "root.crt")}


def create(env, out, *extra: str, image: str | None = None, check: bool = True):
    return edge("bundle", "create", image or env["image"], "--key", env["key"], "--cert", env["cert"], "-o", str(out),
                *extra, check=check)


@pytest.fixture(scope="module")
def bundle(env):
    out = env["dir"] / "good.edgeb"
    create(env, out, "--compatible", "qemu-x86_64", "--version", "1.4.0", "--security-version", "3", "--chunk-size", "64K",
           "--meta", "channel=stable")
    return str(out)


def test_create_defaults_come_from_build_metadata(env, tmp_path):
    image = make_image(str(tmp_path / "img.sqfs"), size=50_000, seed=9)
    data = read(image)
    write(str(tmp_path / "img.json"), json.dumps({
        "name": "demo-recipe", "version": "2.1.0-rc.1", "board": "rpi4", "compatible": ["rpi4", "rpi4-64"],
        "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "compressor": "zstd", "level": 1,
        "block_size": 131072, "edge_version": "0.0.9"}).encode())
    made = json.loads(create(env, tmp_path / "b.edgeb", "--json", image=image).stdout)
    assert made["compatible"] == ["rpi4", "rpi4-64"] and made["version"] == "2.1.0-rc.1"
    shown = json.loads(edge("bundle", "inspect", str(tmp_path / "b.edgeb"), "--json").stdout)
    assert shown["verified"] is False
    assert shown["manifest"]["build"] == {"recipe": "demo-recipe", "edge_version": "0.0.9"}
    assert shown["manifest"]["target"] == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    # flags win over metadata
    made = json.loads(create(env, tmp_path / "c.edgeb", "--json", "--compatible", "x86", "--version", "3.0.0", image=image).stdout)
    assert made["compatible"] == ["x86"] and made["version"] == "3.0.0"


def test_stale_build_metadata_is_refused(env, tmp_path):
    image = make_image(str(tmp_path / "img.sqfs"), size=50_000, seed=9)
    meta = {"name": "r", "version": "1.0.0", "board": "b", "compatible": ["b"], "sha256": "0" * 64,
            "size": os.path.getsize(image)}
    write(str(tmp_path / "img.json"), json.dumps(meta).encode())
    assert_one_line_error(create(env, tmp_path / "b.edgeb", image=image, check=False), 8, "stale build metadata", "img.json")
    write(str(tmp_path / "img.json"), json.dumps({**meta, "size": 1}).encode())
    assert_one_line_error(create(env, tmp_path / "b.edgeb", image=image, check=False), 2, "describes a 1-byte image")
    assert not (tmp_path / "b.edgeb").exists()


def test_create_without_metadata_needs_flags(env, tmp_path):
    result = create(env, tmp_path / "b.edgeb", check=False)
    assert_one_line_error(result, 2, "give --compatible and --version", "no build metadata")
    assert_one_line_error(create(env, tmp_path / "b.edgeb", "--compatible", "x", "--version", "1.0", check=False), 2,
                          "--version '1.0' is not a semantic version")
    assert_one_line_error(create(env, tmp_path / "b.edgeb", "--compatible", "x", "--version", "1.0.0", "--chunk-size", "3000",
                                 check=False), 2, "--chunk-size 3000 must be a power of two")


def test_delta_bundle(env, tmp_path):
    """--delta-from through the delta engine: a signed delta bundle naming both images."""
    old = make_image(str(tmp_path / "old.sqfs"), size=150_000, seed=5)
    new = make_image(str(tmp_path / "new.sqfs"), size=150_000, seed=6)
    create(env, tmp_path / "d.edgeb", "--compatible", "qemu", "--version", "2.0.0", "--delta-from", old, image=new)
    info = json.loads(edge("bundle", "verify", str(tmp_path / "d.edgeb"), "--keyring", env["keyring"], "--json").stdout)
    assert info["payload_type"] == "delta" and info["target_sha256"] == hashlib.sha256(read(new)).hexdigest()
    manifest = json.loads(edge("bundle", "inspect", str(tmp_path / "d.edgeb"), "--json").stdout)["manifest"]
    assert manifest["source"] == {"sha256": hashlib.sha256(read(old)).hexdigest(), "size": len(read(old))}
    assert manifest["target"]["size"] == len(read(new)) and manifest["delta"]["format"] == "edge-delta"
    assert sorted(os.listdir(tmp_path)) == ["d.edgeb", "new.sqfs", "old.sqfs"]  # the temporary payload is gone


def test_delta_bundle_for_a_fast_link(env, tmp_path):
    """--link-speed reaches the delta engine: on a (nearly) free link changed blocks are shipped ready-compressed."""
    old = write_sqfs(base_entries(11), str(tmp_path / "old.sqfs"), compressor="zstd", level=19)
    new = write_sqfs(edit(base_entries(11), 11), str(tmp_path / "new.sqfs"), compressor="zstd", level=19)
    common = ("--compatible", "qemu", "--version", "2.0.0", "--delta-from", old)
    create(env, tmp_path / "small.edgeb", *common, image=new)
    create(env, tmp_path / "fast.edgeb", *common, "--link-speed", "100G", "--rebuild-rate", "1M", image=new)
    sizes = {}
    for name in ("small", "fast"):
        info = json.loads(edge("bundle", "verify", str(tmp_path / f"{name}.edgeb"), "--keyring", env["keyring"],
                               "--json").stdout)
        assert info["payload_type"] == "delta"
        sizes[name] = os.path.getsize(tmp_path / f"{name}.edgeb")
    assert sizes["fast"] > sizes["small"]
    assert_one_line_error(create(env, tmp_path / "x.edgeb", "--compatible", "qemu", "--version", "2.0.0",
                                 "--link-speed", "1M", image=new, check=False), 2, "only apply to delta bundles")
    assert_one_line_error(create(env, tmp_path / "x.edgeb", *common, "--rebuild-rate", "1M", image=new, check=False),
                          2, "--rebuild-rate only matters with --link-speed")
    assert not (tmp_path / "x.edgeb").exists()


def test_create_refuses_a_certificate_devices_would_refuse(env, pki, tmp_path):
    bad = issue(pki.root, "no-eku-cli", code_signing=False)
    write_private_key(tmp_path / "k.key", bad.key)
    write_file_atomic(tmp_path / "k.crt", certificate_pem(bad.cert))
    result = edge("bundle", "create", env["image"], "--key", str(tmp_path / "k.key"), "--cert", str(tmp_path / "k.crt"),
                  "--compatible", "x", "--version", "1.0.0", "-o", str(tmp_path / "b.edgeb"), check=False)
    assert_one_line_error(result, 7, "codeSigning")
    mismatched = edge("bundle", "create", env["image"], "--key", str(tmp_path / "k.key"), "--cert", env["cert"],
                      "--compatible", "x", "--version", "1.0.0", "-o", str(tmp_path / "b.edgeb"), check=False)
    assert_one_line_error(mismatched, 7, "private key does not belong to certificate CN=release")
    assert not (tmp_path / "b.edgeb").exists()


def test_inspect_text(bundle):
    out = edge("bundle", "inspect", bundle).stdout
    assert "NOT VERIFIED" in out and "CN=release" in out and "1.4.0 (security version 3)" in out and "channel=stable" in out


def test_verify_ok(env, bundle):
    result = edge("bundle", "verify", bundle, "--keyring", env["keyring"], "--board", "qemu-x86_64",
                  "--installed-security-version", "3", "--allowed-cn", "release", "--json")
    info = json.loads(result.stdout)
    assert info["verified"] is True and info["signer"] == "release" and info["chain"] == ["release", "Edge Root CA"]
    text = edge("bundle", "verify", bundle, "--keyring", env["keyring"]).stdout
    assert text.startswith(f"{bundle}: OK") and text.count("\n") == 1


def test_extract(env, bundle, tmp_path):
    out = tmp_path / "out.sqfs"
    info = json.loads(edge("bundle", "extract", bundle, "-o", str(out), "--keyring", env["keyring"], "--json").stdout)
    assert read(str(out)) == read(env["image"]) and info["bytes"] == os.path.getsize(env["image"])
    assert oct(out.stat().st_mode & 0o777) == "0o644"


@pytest.mark.parametrize("case, code, needle", [
    ("wrong-board", 9, "not for this board rpi4"),
    ("floor", 9, "security_version 3 is below this device's floor 4"),
    ("other-keyring", 7, "unknown signer"),
    ("allowed-cn", 7, "not in the allowed signers"),
    ("truncated", 8, "truncated"),
    ("trailing", 8, "unexpected bytes after the payload"),
    ("chunk", 8, "payload chunk 1"),
    ("manifest", 7, "signature does not verify"),
    ("not-a-bundle", 8, "not an Edge bundle"),
    ("missing", 3, "cannot open bundle"),
    ("bad-keyring", 7, "keyring"),
])
@pytest.mark.parametrize("command", ["verify", "extract"])
def test_verify_and_extract_failures(env, bundle, tmp_path, case, code, needle, command):
    data = read(bundle)
    lay = layout(data)
    target = str(tmp_path / "case.edgeb")
    keyring = env["keyring"]
    extra: list[str] = []
    if case == "wrong-board":
        extra = ["--board", "rpi4"]
    elif case == "floor":
        extra = ["--installed-security-version", "4"]
    elif case == "other-keyring":
        keyring = env["other_keyring"]
    elif case == "allowed-cn":
        extra = ["--allowed-cn", "someone-else"]
    elif case == "truncated":
        data = data[:lay.payload[0] + 1000]
    elif case == "trailing":
        data = data + b"\n"
    elif case == "chunk":
        data = data[:lay.payload[0] + 65536 + 7] + bytes([data[lay.payload[0] + 65536 + 7] ^ 4]) + data[lay.payload[0] + 65536 + 8:]
    elif case == "manifest":
        data = data.replace(b'"channel":"stable"', b'"channel":"stabl3"')
    elif case == "not-a-bundle":
        data = read(env["image"])
    elif case == "bad-keyring":
        keyring = write(str(tmp_path / "k.pem"), b"not a pem")
    if case != "missing":
        write(target, data)
    out = tmp_path / "out" / "image.sqfs"
    out.parent.mkdir()
    args = ["bundle", command, target, "--keyring", keyring, *extra] + (["-o", str(out)] if command == "extract" else [])
    result = edge(*args, check=False)
    assert_one_line_error(result, code, needle)
    if case not in ("bad-keyring",):
        assert "case.edgeb" in result.stderr  # the message names the bundle
    assert os.listdir(out.parent) == []  # extract never leaves a partial image or a temporary file


def test_help_explains(env):
    for args in (["bundle", "--help"], ["bundle", "create", "--help"], ["bundle", "verify", "--help"], ["keys", "issue", "--help"]):
        out = edge(*args).stdout
        assert "usage: edge" in out and len(out.splitlines()) > 5


def test_inspect_reports_but_survives_damaged_certificates(env, bundle, tmp_path):
    data = bytearray(read(bundle))
    lay = layout(bytes(data))
    sig_len = int.from_bytes(data[lay.signature[0] + 6:lay.signature[0] + 8], "big")
    cert_start = lay.signature[0] + 8 + sig_len + 4
    der = bytes(data[cert_start:lay.signature[1]])
    version_at = der.index(b"\xa0\x03\x02\x01\x02")  # [0] EXPLICIT INTEGER 2: X.509 v3
    data[cert_start + version_at + 4] = 0x07  # an invalid version: cryptography refuses it when loading
    path = write(str(tmp_path / "bad.edgeb"), bytes(data))
    assert_one_line_error(edge("bundle", "inspect", path, check=False), 8, "certificate 0 in the signature block is not valid DER")
    assert_one_line_error(edge("bundle", "verify", path, "--keyring", env["keyring"], check=False), 8, "not valid DER")


def test_verify_refuses_a_delta_bundle_whose_delta_names_other_images(env, tmp_path, monkeypatch):
    """`edge bundle verify` checks the delta's own header against the signed manifest (exit 8, one line)."""
    from edge.bundle import ImageRef, create_bundle, writer
    from edge.delta import make_delta
    from signing import load_signer

    old = write_sqfs(base_entries(3, files=6), str(tmp_path / "old.sqfs"))
    new = write_sqfs(edit(base_entries(3, files=6), 3), str(tmp_path / "new.sqfs"))
    make_delta(old, new, str(tmp_path / "d.delta"))
    ref = {p: ImageRef(hashlib.sha256(read(p)).hexdigest(), os.path.getsize(p)) for p in (old, new)}
    monkeypatch.setattr(writer, "_check_delta_images", lambda *a: None)  # what `edge bundle create` refuses
    out = str(tmp_path / "mixed.edgeb")
    create_bundle(str(tmp_path / "d.delta"), out, load_signer(env["key"], env["cert"]), payload_type="delta",
                  compatible=["qemu"], version="2.0.0", source=ref[new], target=ref[old], compressor="zstd", delta={})
    r = edge("bundle", "verify", out, "--keyring", env["keyring"], check=False)
    assert_one_line_error(r, 8, "the delta's source image is sha256 " + ref[old].sha256, "built wrong; rebuild it")
    r = edge("bundle", "verify", out, "--keyring", env["keyring"], "--json", check=False)
    assert r.returncode == 8 and json.loads(r.stdout)["error"]["type"] == "DeltaPayloadError"


def test_create_with_a_keyring_checks_the_chain_before_signing(env, tmp_path):
    """`bundle create --keyring ROOTS`: a signer whose chain does not lead to those roots is refused
    before anything is written (without it, such a bundle is made and then refused by every device)."""
    made = create(env, tmp_path / "ok.edgeb", "--compatible", "x", "--version", "1.0.0", "--keyring", env["keyring"])
    assert made.returncode == 0 and (tmp_path / "ok.edgeb").exists()
    edge("bundle", "verify", str(tmp_path / "ok.edgeb"), "--keyring", env["keyring"])
    refused = create(env, tmp_path / "no.edgeb", "--compatible", "x", "--version", "1.0.0", "--keyring",
                     env["other_keyring"], check=False)
    assert_one_line_error(refused, 7, "CN=release")
    assert not (tmp_path / "no.edgeb").exists()
    # the same signer without --keyring: made, and refused where it counts
    create(env, tmp_path / "unchecked.edgeb", "--compatible", "x", "--version", "1.0.0")
    verify = edge("bundle", "verify", str(tmp_path / "unchecked.edgeb"), "--keyring", env["other_keyring"], check=False)
    assert verify.returncode == 7
    for result in (refused, verify):  # the same reason, told before signing instead of after shipping
        assert "was issued by CN=Edge Root CA, which is neither in the bundle's chain nor in the keyring" in result.stderr
