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
