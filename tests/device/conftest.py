from __future__ import annotations

import os

import pytest

from tests.device.helpers import make_bundle, make_image, make_pki

BOARDS = {  # backend -> (board, --boot-control override)
    "grub": ("x86-64-efi", None),
    "uboot": ("x86-64-efi", "uboot"),
    "file": ("x86-64-efi", "file"),
    "rpi": ("rpi4", None),
    "jetson": ("jetson-orin-nano", None),
}
COMPATIBLE = {"x86-64-efi": "edge,x86-64-efi", "rpi4": "raspberrypi,4-model-b",
              "jetson-orin-nano": "nvidia,p3768-0000+p3767-0005"}


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory):
    """Images v1, v2, v3 (broken health check) and, per board, full and delta bundles, all signed."""
    d = str(tmp_path_factory.mktemp("artifacts"))
    pki = make_pki(d)
    img = {v: make_image(os.path.join(d, f"v{v}.sqfs"), f"{v}.0.0", broken=(v == 3)) for v in (1, 2, 3)}
    bundles: dict[tuple[str, str], str] = {}
    for board, compatible in COMPATIBLE.items():
        for v in (1, 2, 3):
            bundles[(board, f"v{v}")] = make_bundle(pki, img[v], os.path.join(d, f"{board}-v{v}.edgeb"), compatible, f"{v}.0.0",
                                                    security_version=v)
        bundles[(board, "v1-v2")] = make_bundle(pki, img[2], os.path.join(d, f"{board}-v1-v2.edgeb"), compatible,
                                                "2.0.0", delta_from=img[1], security_version=2)
    return {"dir": d, "pki": pki, "images": img, "bundles": bundles}
