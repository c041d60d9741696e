"""A test PKI built with signing's API: good and deliberately broken certificates, all created in memory.

Times are relative to ``NOW`` so validity tests do not depend on the clock.
"""

from __future__ import annotations

import datetime
import functools
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from signing.certs import build_certificate, build_root_certificate, is_self_issued
from signing.crl import build_crl
from signing.keyring import Keyring, RevocationList
from signing.keys import PrivateKey, generate_private_key
from signing.signer import KeySigner

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
DAY = datetime.timedelta(days=1)


@dataclass
class Identity:
    cert: x509.Certificate
    key: PrivateKey
    chain: tuple[x509.Certificate, ...] = ()

    def signer(self) -> KeySigner:
        return KeySigner(self.key, self.cert, self.chain)


@dataclass
class Pki:
    root: Identity
    root2: Identity  # a second trusted root (rotation)
    other_root: Identity  # untrusted, same CN as root
    leaves: dict[str, Identity] = field(default_factory=dict)

    def keyring(self, *roots: Identity) -> Keyring:
        return Keyring.from_certificates([r.cert for r in (roots or (self.root,))])


def make_root(name: str = "Edge Root CA", key_type: str = "ed25519", *, not_before: datetime.datetime = NOW - 365 * DAY,
              days: int = 20 * 365, path_length: int | None = None) -> Identity:
    key = generate_private_key(key_type)
    return Identity(build_root_certificate(key, name, not_before=not_before, days=days, path_length=path_length), key)


def issue(issuer: Identity, name: str, key_type: str = "ed25519", *, not_before: datetime.datetime = NOW - 30 * DAY,
          days: int = 365, ca: bool = False, path_length: int | None = None, code_signing: bool = True,
          extra: tuple[tuple[x509.ExtensionType, bool], ...] = ()) -> Identity:
    key = generate_private_key(key_type)
    cert = build_certificate(key.public_key(), name, issuer_cert=issuer.cert, issuer_key=issuer.key,
                             not_before=not_before, days=days, ca=ca, path_length=path_length,
                             code_signing=code_signing, extra_extensions=extra)
    chain = ((issuer.cert,) + issuer.chain) if issuer.chain or not is_self_issued(issuer.cert) else ()
    return Identity(cert, key, chain)


def crl_for(issuer: Identity, *revoked: Identity, when: datetime.datetime = NOW - DAY, number: int = 1,
            signing_key: PrivateKey | None = None) -> RevocationList:
    crl = build_crl(issuer.cert, signing_key or issuer.key, [(r.cert.serial_number, when) for r in revoked],
                    crl_number=number, last_update=when, next_update=when + 30 * DAY)
    return RevocationList((crl,))


@functools.lru_cache(maxsize=1)
def standard_pki() -> Pki:
    """Built once per test process."""
    root = make_root()
    pki = Pki(root=root, root2=make_root("Edge Root CA 2027", "ecdsa-p256"), other_root=make_root())
    leaves = pki.leaves
    leaves["ed25519"] = issue(root, "release-ed25519", "ed25519")
    leaves["ecdsa-p256"] = issue(root, "release-ecdsa", "ecdsa-p256")
    leaves["rsa3072"] = issue(root, "release-rsa", "rsa3072")
    leaves["root2"] = issue(pki.root2, "release-2027", "ed25519")
    leaves["stranger"] = issue(pki.other_root, "stranger", "ed25519")
    intermediate = issue(root, "Edge Intermediate", ca=True, path_length=0)
    leaves["intermediate"] = intermediate
    leaves["via-intermediate"] = issue(intermediate, "release-via-intermediate")
    foreign_intermediate = issue(pki.other_root, "Foreign Intermediate", ca=True)
    leaves["via-foreign-intermediate"] = issue(foreign_intermediate, "release-foreign")
    leaves["no-eku"] = issue(root, "no-eku", code_signing=False)
    leaves["server-auth"] = issue(root, "server-auth", code_signing=False,
                                  extra=((x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),))
    leaves["expired"] = issue(root, "expired", not_before=NOW - 100 * DAY, days=30)  # valid NOW-100d .. NOW-70d
    leaves["revoked"] = issue(root, "revoked")
    return pki
