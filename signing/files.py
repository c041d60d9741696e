"""File I/O for keys, certificates, keyrings and CRLs (the edge of the otherwise pure package).

Writes are atomic (a temporary file in the same directory, fsynced, then
linked or renamed into place) so a crash never leaves half a key.  Private
keys are created mode 0600 from the first byte on, and by default no file is
ever overwritten.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from cryptography import x509

from edge.errors import InputFileError
from edge.fsutil import FileTooLargeError, atomic_output, read_bounded

from .certs import load_certificate, load_certificates
from .errors import KeyFileError
from .keyring import Keyring, RevocationList, parse_crls, parse_keyring
from .keys import PrivateKey, load_private_key, private_key_pem
from .signer import KeySigner

MAX_TRUST_FILE_SIZE = 16 * 1024 * 1024  # a keyring, certificate or CRL file larger than this is not one

PathLike = str | os.PathLike[str]


def read_small_file(path: PathLike, what: str) -> bytes:
    """The bytes of a key/certificate/keyring/CRL file, refusing absurdly large ones."""
    name = os.fspath(path)
    try:
        return read_bounded(name, MAX_TRUST_FILE_SIZE)
    except FileTooLargeError:
        raise KeyFileError(f"{name}: larger than {MAX_TRUST_FILE_SIZE} bytes, not a {what}") from None
    except OSError as exc:
        raise InputFileError(f"{name}: cannot read {what}: {exc.strerror or exc}") from None


def write_file_atomic(path: PathLike, data: bytes, *, mode: int = 0o644, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` atomically with ``mode``; refuse to replace an existing file unless ``overwrite``."""
    name = os.fspath(path)
    if not overwrite and os.path.lexists(name):
        raise KeyFileError(f"{name}: already exists; refusing to overwrite it")
    try:
        with atomic_output(name, mode=mode, exclusive=not overwrite) as fh:
            fh.write(data)
    except FileExistsError:  # someone created it meanwhile
        raise KeyFileError(f"{name}: already exists; refusing to overwrite it") from None


def write_private_key(path: PathLike, key: PrivateKey) -> None:
    """Write ``key`` as unencrypted PKCS#8 PEM, mode 0600, never overwriting."""
    write_file_atomic(path, private_key_pem(key), mode=0o600)


def read_private_key(path: PathLike) -> PrivateKey:
    return load_private_key(read_small_file(path, "private key"), os.fspath(path))


def read_certificate(path: PathLike) -> x509.Certificate:
    return load_certificate(read_small_file(path, "certificate"), os.fspath(path))


def read_certificates(path: PathLike) -> list[x509.Certificate]:
    return load_certificates(read_small_file(path, "certificate"), os.fspath(path))


def load_keyring(path: PathLike) -> Keyring:
    """The trusted roots from a PEM file (one or more root CA certificates)."""
    return parse_keyring(read_small_file(path, "keyring"), f"keyring {os.fspath(path)}")


def load_crls(path: PathLike) -> RevocationList:
    """The CRLs in a PEM (one or more) or DER (one) file."""
    return parse_crls(read_small_file(path, "CRL"), f"CRL {os.fspath(path)}")


def load_signer(key_path: PathLike, cert_path: PathLike, chain_paths: Sequence[PathLike] = ()) -> KeySigner:
    """A :class:`KeySigner` from a key file, its certificate, and files of intermediates to embed."""
    chain: list[x509.Certificate] = []
    for chain_path in chain_paths:
        chain.extend(read_certificates(chain_path))
    return KeySigner(read_private_key(key_path), read_certificate(cert_path), chain)
