from __future__ import annotations

import pytest

from tests.bundle.helpers import bundle_from, make_image
from tests.signing.pki import standard_pki


@pytest.fixture(scope="session")
def pki():
    return standard_pki()


@pytest.fixture(scope="session")
def image(tmp_path_factory):
    return make_image(str(tmp_path_factory.mktemp("img") / "image.sqfs"), size=100_000, seed=1)


@pytest.fixture(scope="session")
def image2(tmp_path_factory):
    """Another image of exactly the same size as ``image`` (for mix-and-match)."""
    return make_image(str(tmp_path_factory.mktemp("img2") / "image2.sqfs"), size=100_000, seed=2)


@pytest.fixture(scope="session")
def good_bundle(tmp_path_factory, image, pki):
    return bundle_from(image, str(tmp_path_factory.mktemp("bundle") / "good.edgeb"), pki.leaves["ed25519"])


@pytest.fixture
def make_bundle(tmp_path, image, pki):
    counter = iter(range(1000))

    def make(signer: str = "ed25519", source_image: str | None = None, **kw) -> str:
        return bundle_from(source_image or image, str(tmp_path / f"b{next(counter)}.edgeb"), pki.leaves[signer], **kw)

    return make
