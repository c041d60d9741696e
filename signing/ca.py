"""An offline root CA kept in a directory: issue signing certificates, revoke them, publish CRLs.

Layout of a CA directory (created mode 0700)::

    root.crt     the self-signed root certificate (PEM, 0644): goes into device keyrings
    root.key     its private key (PKCS#8 PEM, 0600): never leaves the offline machine
    index.json   every certificate issued, which are revoked, the last CRL number

The index is what a CRL is built from; it is rewritten atomically after each
change.  Changes are serialised by a lock on ``.index.lock``: each one re-reads
the index under the lock, so two ``edge keys`` commands at once neither lose a
record (a revocation) nor give two CRLs the same number.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

from .certs import (
    ROOT_CA_DAYS,
    SIGNING_CERT_DAYS,
    build_certificate,
    build_root_certificate,
    certificate_pem,
    common_name,
    describe,
    utc_now,
)
from .crl import build_crl
from .errors import CertificateAuthorityError, KeyFileError
from .files import read_certificate, read_private_key, read_small_file, write_file_atomic, write_private_key
from .keys import DEFAULT_KEY_TYPE, PrivateKey, generate_private_key, same_public_key

ROOT_CERT = "root.crt"
ROOT_KEY = "root.key"
INDEX = "index.json"
INDEX_LOCK = ".index.lock"
LOCK_WAIT = 30.0  # seconds another command may hold the CA before this one gives up
DEFAULT_CA_NAME = "Edge Root CA"
CRL_DAYS = 90
INDEX_FORMAT = 1
# A certificate name is also a file name (NAME.crt, NAME.key): keep it portable.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise CertificateAuthorityError(
            f"certificate name {name!r} must be 1-64 characters of letters, digits, '.', '_' or '-', not starting with a symbol"
        )
    return name


def _format_time(when: datetime.datetime) -> str:
    return when.astimezone(datetime.timezone.utc).strftime(_TIME_FORMAT)


def _parse_time(text: object, where: str) -> datetime.datetime:
    if not isinstance(text, str):
        raise CertificateAuthorityError(f"{where}: expected a time string, found {text!r}")
    try:
        return datetime.datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        raise CertificateAuthorityError(f"{where}: bad time {text!r} (expected YYYY-MM-DDTHH:MM:SSZ)") from None


@dataclass
class IssuedCertificate:
    """One line of the CA index."""

    serial: str  # lowercase hex
    name: str
    key_type: str
    not_before: str
    not_after: str
    revoked: str | None = None  # revocation time, or None


class CertificateAuthority:
    """A root CA directory.  Create one with :meth:`init`, use one with :meth:`open`."""

    def __init__(self, directory: str, certificate: x509.Certificate, key: PrivateKey,
                 issued: list[IssuedCertificate], crl_number: int) -> None:
        self.directory = directory
        self.certificate = certificate
        self._key = key
        self.issued = issued
        self.crl_number = crl_number

    # ------------------------------------------------------------ lifecycle
    @classmethod
    def init(cls, directory: str | os.PathLike[str], *, name: str = DEFAULT_CA_NAME, key_type: str = DEFAULT_KEY_TYPE,
             days: int = ROOT_CA_DAYS, now: datetime.datetime | None = None) -> CertificateAuthority:
        """Create a new root CA in ``directory`` (created if missing; must not hold a CA already)."""
        path = os.fspath(directory)
        if not name.strip() or len(name) > 64:
            raise CertificateAuthorityError(f"CA name {name!r} must be 1-64 characters")
        os.makedirs(path, mode=0o700, exist_ok=True)
        for existing in (ROOT_KEY, ROOT_CERT, INDEX):
            if os.path.lexists(os.path.join(path, existing)):
                raise CertificateAuthorityError(f"{path}: already holds {existing}; refusing to replace a CA")
        key = generate_private_key(key_type)
        cert = build_root_certificate(key, name, not_before=now or utc_now(), days=days)
        write_private_key(os.path.join(path, ROOT_KEY), key)
        write_file_atomic(os.path.join(path, ROOT_CERT), certificate_pem(cert))
        ca = cls(path, cert, key, [], 0)
        ca._save()
        return ca

    @classmethod
    def open(cls, directory: str | os.PathLike[str]) -> CertificateAuthority:
        """Load the CA in ``directory``; checks the key belongs to the certificate and the index is sound."""
        path = os.fspath(directory)
        for required in (ROOT_CERT, ROOT_KEY, INDEX):
            if not os.path.isfile(os.path.join(path, required)):
                raise CertificateAuthorityError(f"{path}: not a CA directory (no {required}; create one with 'edge keys ca init')")
        cert = read_certificate(os.path.join(path, ROOT_CERT))
        key = read_private_key(os.path.join(path, ROOT_KEY))
        if not same_public_key(key.public_key(), cert.public_key()):
            raise KeyFileError(f"{path}: {ROOT_KEY} does not belong to {ROOT_CERT}")
        issued, crl_number = cls._load_index(os.path.join(path, INDEX))
        return cls(path, cert, key, issued, crl_number)

    @staticmethod
    def _load_index(index_path: str) -> tuple[list[IssuedCertificate], int]:
        try:
            doc = json.loads(read_small_file(index_path, "CA index").decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise CertificateAuthorityError(f"{index_path}: not valid JSON ({exc})") from None
        except RecursionError:
            raise CertificateAuthorityError(f"{index_path}: not valid JSON (nested too deeply)") from None
        if not isinstance(doc, dict) or doc.get("format") != INDEX_FORMAT:
            raise CertificateAuthorityError(f"{index_path}: not an Edge CA index (format {INDEX_FORMAT})")
        crl_number = doc.get("crl_number")
        records = doc.get("certificates")
        if type(crl_number) is not int or crl_number < 0 or not isinstance(records, list):
            raise CertificateAuthorityError(f"{index_path}: missing or bad 'crl_number'/'certificates'")
        issued: list[IssuedCertificate] = []
        for n, record in enumerate(records):
            where = f"{index_path}: certificates[{n}]"
            try:
                item = IssuedCertificate(**record)
                int(item.serial, 16)
            except (TypeError, ValueError):
                raise CertificateAuthorityError(f"{where} is malformed") from None
            for field in ("not_before", "not_after") + (("revoked",) if item.revoked is not None else ()):
                _parse_time(getattr(item, field), f"{where}.{field}")
            issued.append(item)
        return issued, crl_number

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        """Hold the CA's lock, with the index as it is now on disk, while the caller changes and saves it."""
        from edge.locking import BusyError

        fd = os.open(os.path.join(self.directory, INDEX_LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            deadline = time.monotonic() + LOCK_WAIT
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise BusyError(f"{self.directory}: another 'edge keys' command has held the CA for "
                                        f"{LOCK_WAIT:g} s; nothing was changed: run this again when it has ended") from None
                    time.sleep(0.05)
            self.issued, self.crl_number = self._load_index(os.path.join(self.directory, INDEX))
            yield
        finally:
            os.close(fd)

    def _save(self) -> None:
        doc: dict[str, Any] = {
            "format": INDEX_FORMAT,
            "crl_number": self.crl_number,
            "certificates": [asdict(item) for item in self.issued],
        }
        data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
        write_file_atomic(os.path.join(self.directory, INDEX), data, mode=0o600, overwrite=True)

    # ---------------------------------------------------------------- issue
    def issue(self, name: str, *, key_type: str = DEFAULT_KEY_TYPE, days: int = SIGNING_CERT_DAYS,
              now: datetime.datetime | None = None) -> tuple[x509.Certificate, PrivateKey]:
        """A new key and code-signing certificate CN=``name``, recorded in the index."""
        check_name(name)
        start = now or utc_now()
        ca_end = self.certificate.not_valid_after_utc
        if start >= ca_end:
            raise CertificateAuthorityError(f"the CA certificate expired on {_format_time(ca_end)}")
        if start + datetime.timedelta(days=days) > ca_end:
            max_days = (ca_end - start).days
            raise CertificateAuthorityError(
                f"a {days}-day certificate would outlive the CA (expires {_format_time(ca_end)}); use --days {max_days} or fewer"
            )
        key = generate_private_key(key_type)
        cert = build_certificate(key.public_key(), name, issuer_cert=self.certificate, issuer_key=self._key,
                                 not_before=start, days=days)
        with self._changing():
            self.issued.append(IssuedCertificate(
                serial=f"{cert.serial_number:x}", name=name, key_type=key_type,
                not_before=_format_time(cert.not_valid_before_utc), not_after=_format_time(cert.not_valid_after_utc),
            ))
            self._save()
        return cert, key

    def issue_to_files(self, name: str, out_dir: str | os.PathLike[str], *, key_type: str = DEFAULT_KEY_TYPE,
                       days: int = SIGNING_CERT_DAYS, now: datetime.datetime | None = None) -> tuple[str, str, x509.Certificate]:
        """Issue and write ``OUT/NAME.crt`` (0644) and ``OUT/NAME.key`` (0600); returns both paths and the certificate."""
        check_name(name)
        out = os.fspath(out_dir)
        os.makedirs(out, mode=0o700, exist_ok=True)
        crt_path, key_path = os.path.join(out, f"{name}.crt"), os.path.join(out, f"{name}.key")
        for existing in (crt_path, key_path):
            if os.path.lexists(existing):
                raise KeyFileError(f"{existing}: already exists; refusing to overwrite it")
        cert, key = self.issue(name, key_type=key_type, days=days, now=now)
        write_private_key(key_path, key)
        write_file_atomic(crt_path, certificate_pem(cert))
        return crt_path, key_path, cert

    # --------------------------------------------------------------- revoke
    def revoke(self, cert: x509.Certificate, now: datetime.datetime | None = None) -> bool:
        """Mark ``cert`` revoked; False if it already was.  It must have been issued by this CA."""
        try:
            cert.verify_directly_issued_by(self.certificate)
        except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
            raise CertificateAuthorityError(
                f"{describe(cert)} was not issued by this CA (CN={common_name(self.certificate)})"
            ) from None
        serial = f"{cert.serial_number:x}"
        when = _format_time(now or utc_now())
        with self._changing():
            for item in self.issued:
                if item.serial == serial:
                    if item.revoked is not None:
                        return False
                    item.revoked = when
                    self._save()
                    return True
            # Issued by this CA but missing from the index (e.g. an index restored from backup): record it.
            self.issued.append(IssuedCertificate(
                serial=serial, name=common_name(cert), key_type="unknown",
                not_before=_format_time(cert.not_valid_before_utc), not_after=_format_time(cert.not_valid_after_utc),
                revoked=when,
            ))
            self._save()
        return True

    @property
    def revoked(self) -> list[tuple[int, datetime.datetime]]:
        """(serial, revocation time) of every revoked certificate."""
        return [(int(item.serial, 16), _parse_time(item.revoked, "revoked")) for item in self.issued if item.revoked is not None]

    def make_crl(self, *, days: int = CRL_DAYS, now: datetime.datetime | None = None) -> x509.CertificateRevocationList:
        """A new CRL of every revoked certificate, with the next CRL number (saved in the index)."""
        if days < 1:
            raise CertificateAuthorityError(f"CRL validity of {days} days is not positive")
        start = now or utc_now()
        with self._changing():
            self.crl_number += 1
            crl = build_crl(self.certificate, self._key, self.revoked, crl_number=self.crl_number,
                            last_update=start, next_update=start + datetime.timedelta(days=days))
            self._save()
        return crl
