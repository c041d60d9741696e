"""Every way a bundle can be wrong is refused by install, and leaves both slots and the state untouched."""

from __future__ import annotations

import os

import pytest

from edge.bundle import BundleError, open_bundle
from edge.device import Installer, load_config
from edge.device import sim
from tests.device.helpers import make_bundle, make_pki, sha256


def corrupt(src: str, dst: str, offset: int, xor: int = 0x40) -> str:
    data = bytearray(open(src, "rb").read())
    data[offset] ^= xor
    open(dst, "wb").write(data)
    return dst


@pytest.fixture(scope="module")
def bad_bundles(artifacts, tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    good = artifacts["bundles"][("x86-64-efi", "v2")]
    other = artifacts["bundles"][("x86-64-efi", "v3")]
    raw = open(good, "rb").read()
    with open(good, "rb") as fh:
        b = open_bundle(fh)
        payload_at, manifest_at = b.payload_offset, b.header.manifest_offset
    stranger = make_pki(str(d / "stranger"))
    out = {
        "bad signature": corrupt(good, str(d / "sig.edgeb"), payload_at - 40),
        "malformed manifest": corrupt(good, str(d / "manifest.edgeb"), manifest_at + 10, 0x01),
        "payload chunk mismatch": corrupt(good, str(d / "chunk.edgeb"), len(raw) - 10),
        "unknown signer": make_bundle(stranger, artifacts["images"][2], str(d / "stranger.edgeb"), "edge,x86-64-efi", "2.0.0"),
        "wrong board": artifacts["bundles"][("rpi4", "v2")],
        "truncated": str(d / "cut.edgeb"),
        "trailing garbage": str(d / "tail.edgeb"),
        "mix and match": str(d / "mix.edgeb"),
    }
    open(out["truncated"], "wb").write(raw[: len(raw) - 100])
    open(out["trailing garbage"], "wb").write(raw + b"garbage")
    other_raw = open(other, "rb").read()
    with open(other, "rb") as fh:
        other_payload_at = open_bundle(fh).payload_offset
    open(out["mix and match"], "wb").write(raw[:payload_at] + other_raw[other_payload_at:])
    return out


@pytest.mark.parametrize("kind", ["bad signature", "malformed manifest", "payload chunk mismatch", "unknown signer",
                                  "wrong board", "truncated", "trailing garbage", "mix and match", "security floor"])
def test_bad_bundle_leaves_everything_untouched(tmp_path, artifacts, bad_bundles, kind):
    d = str(tmp_path / "board")
    sim.create(d, "x86-64-efi", artifacts["images"][1], keyring=artifacts["pki"]["keyring"])
    cfg = load_config(os.path.join(d, "device.yaml"))
    if kind == "security floor":
        Installer(cfg).install(artifacts["bundles"][("x86-64-efi", "v2")])
        sim.reboot(d)  # v2 committed in B: floor 2
        bundle = artifacts["bundles"][("x86-64-efi", "v1")]
    else:
        bundle = bad_bundles[kind]
    before = {s: sha256(p) for s, p in cfg.slots.items()}
    state_before = open(cfg.state_file).read()
    boot_before = open(os.path.join(d, "boot", "grubenv"), "rb").read()
    with pytest.raises(BundleError):
        Installer(cfg).install(bundle)
    assert {s: sha256(p) for s, p in cfg.slots.items()} == before
    assert open(cfg.state_file).read() == state_before
    assert open(os.path.join(d, "boot", "grubenv"), "rb").read() == boot_before


def _snapshot(cfg, d: str) -> tuple:
    return ({s: sha256(p) for s, p in cfg.slots.items()}, open(cfg.state_file).read(),
            open(os.path.join(d, "boot", "grubenv"), "rb").read())


def test_a_delta_refused_before_writing_changes_no_state(tmp_path, artifacts):
    """Bit rot in the booted slot: the delta's source check refuses it before a byte is written, and
    the state keeps saying what the other slot holds (it said 'installing' and broke rollback)."""
    from edge.delta import SourceMismatchError

    d = str(tmp_path / "board")
    sim.create(d, "x86-64-efi", artifacts["images"][1], keyring=artifacts["pki"]["keyring"])
    cfg = load_config(os.path.join(d, "device.yaml"))
    with open(cfg.slots["A"], "r+b") as fh:  # the booted slot, after its state record was written
        fh.seek(100_000)
        fh.write(b"rot!")
    before = _snapshot(cfg, d)
    with pytest.raises(SourceMismatchError, match="is not the image this delta was made from"):
        Installer(cfg).install(artifacts["bundles"][("x86-64-efi", "v1-v2")])
    assert _snapshot(cfg, d) == before


def test_a_delta_bundle_whose_manifest_names_other_images_is_refused_before_writing(tmp_path, artifacts, monkeypatch):
    """A signed bundle whose delta makes v3 while its manifest says v2 (another tool, or a pipeline
    mix-up): refused when the delta's header is read, before the slot is written (it used to seal v3
    into the slot and fail afterwards). A local bundle is refused by the whole-bundle check before
    the install starts; a streamed one when the applier reads the delta's header (both before writing)."""
    from edge.bundle import DeltaPayloadError, create_bundle
    from edge.bundle import writer
    from edge.delta import make_delta
    from edge.device.errors import DeviceError
    from signing import load_signer

    images, pki = artifacts["images"], artifacts["pki"]
    delta = str(tmp_path / "v1-v3.delta")
    make_delta(images[1], images[3], delta)
    ref = {v: (sha256(images[v]), os.path.getsize(images[v])) for v in (1, 2)}
    monkeypatch.setattr(writer, "_check_delta_images", lambda *a: None)  # what `edge bundle create` refuses
    bundle = str(tmp_path / "mixed.edgeb")
    create_bundle(delta, bundle, load_signer(pki["key"], pki["cert"]), payload_type="delta", compatible=["edge,x86-64-efi"],
                  version="2.0.0", security_version=2, source=ref[1], target=ref[2], compressor="zstd", delta={})
    d = str(tmp_path / "board")
    sim.create(d, "x86-64-efi", images[1], keyring=pki["keyring"])
    cfg = load_config(os.path.join(d, "device.yaml"))
    before = _snapshot(cfg, d)
    with pytest.raises(DeltaPayloadError, match="the delta's target image .* the signed manifest names .*built wrong"):
        Installer(cfg).install(bundle)
    assert _snapshot(cfg, d) == before
    from edge.bundle import reader  # the streamed path (an install from a URL checks chunks as they arrive)
    monkeypatch.setattr(reader.Bundle, "_check_delta_head", lambda *a: None)
    with pytest.raises(DeviceError, match="the bundle's delta has target image .* its manifest says .*built wrong"):
        Installer(cfg).install(bundle)
    assert _snapshot(cfg, d) == before


def test_a_missing_bundle_file_is_an_input_error(tmp_path, artifacts):
    """Exit 3, as for every missing input file (docs/cli.md), and the state is untouched."""
    from tests.device.helpers import run_edge

    d = str(tmp_path / "board")
    sim.create(d, "x86-64-efi", artifacts["images"][1], keyring=artifacts["pki"]["keyring"])
    cfg = load_config(os.path.join(d, "device.yaml"))
    before = _snapshot(cfg, d)
    assert run_edge("--config", os.path.join(d, "device.yaml"), "install", str(tmp_path / "nope.edgeb")) == 3
    assert _snapshot(cfg, d) == before


def test_json_errors_are_json_on_stdout(tmp_path, artifacts):
    import json
    import subprocess
    import sys

    d = str(tmp_path / "board")
    sim.create(d, "x86-64-efi", artifacts["images"][1], keyring=artifacts["pki"]["keyring"])
    proc = subprocess.run([sys.executable, "-m", "edge", "--config", os.path.join(d, "device.yaml"), "install",
                           str(tmp_path / "nope.edgeb"), "--json"], capture_output=True, text=True)
    assert proc.returncode == 3
    err = json.loads(proc.stdout)["error"]
    assert err["exit_code"] == 3 and "nope.edgeb" in err["message"] and err["type"] == "InputFileError"
    assert proc.stderr.startswith("edge: error: ") and proc.stderr.count("\n") == 1
