"""Who signs: the :class:`Signer` protocol and a signer backed by a private key in memory.

A bundle writer needs four things from a signer: the signature algorithm,
the signing certificate, the intermediates to embed, and ``sign(message)``.
An HSM, TPM or remote signing service implements the same protocol without
the private key ever being in this process.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from cryptography import x509

from .certs import describe, is_self_issued
from .errors import KeyFileError
from .keys import PrivateKey, same_public_key, sign_message, signature_algorithm_for, verify_message


@runtime_checkable
class Signer(Protocol):
    """Anything that can sign a bundle manifest."""

    @property
    def algorithm(self) -> str:
        """One of :data:`signing.keys.SIGNATURE_ALGORITHMS`; must match the certificate's key."""

    @property
    def certificate(self) -> x509.Certificate:
        """The signing (leaf) certificate."""

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """Intermediate CA certificates to embed, the leaf's issuer first; never the root."""

    def sign(self, message: bytes) -> bytes:
        """The signature over ``message`` with :attr:`algorithm`."""


class KeySigner:
    """A :class:`Signer` holding the private key in memory (key files made by ``edge keys issue``)."""

    def __init__(self, private_key: PrivateKey, certificate: x509.Certificate,
                 chain: Sequence[x509.Certificate] = ()) -> None:
        if not same_public_key(private_key.public_key(), certificate.public_key()):
            raise KeyFileError(f"the private key does not belong to certificate {describe(certificate)}")
        self._key = private_key
        self._certificate = certificate
        # The root is on the device already; embedding it would only be bytes nobody checks.
        self._chain = tuple(c for c in chain if not is_self_issued(c))
        self._algorithm = signature_algorithm_for(private_key)

    @property
    def algorithm(self) -> str:
        return self._algorithm

    @property
    def certificate(self) -> x509.Certificate:
        return self._certificate

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        return self._chain

    def sign(self, message: bytes) -> bytes:
        signature = sign_message(self._key, message)
        verify_message(self._certificate.public_key(), self._algorithm, signature, message)
        return signature

    def __repr__(self) -> str:  # never show key material
        return f"KeySigner({describe(self._certificate)}, {self._algorithm})"
