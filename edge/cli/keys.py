"""``edge keys``: an offline root CA, signing certificates, revocation and CRLs."""

from __future__ import annotations

import argparse
import os

from cryptography.hazmat.primitives import serialization

from edge.errors import UsageError
from edge.fsutil import check_output_path
from signing.ca import CRL_DAYS, DEFAULT_CA_NAME, INDEX, ROOT_CERT, ROOT_KEY, CertificateAuthority
from signing.certs import ROOT_CA_DAYS, SIGNING_CERT_DAYS, describe, fingerprint
from signing.files import read_certificate, write_file_atomic
from signing.keys import DEFAULT_KEY_TYPE, KEY_TYPES

from .output import print_json


def _days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if not 1 <= value <= 100 * 365:
        raise argparse.ArgumentTypeError(f"{value} days is out of range (1 to 36500)")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys", help="manage the signing CA, signing certificates and revocation",
                       description="Manage an offline root CA: issue code-signing certificates for 'edge bundle "
                                   "create', revoke them, and publish CRLs for devices. Private keys are written "
                                   "mode 0600 and never printed. See docs/signing.md.")
    s = p.add_subparsers(dest="keys_command", metavar="ACTION")
    s.required = True

    ca = s.add_parser("ca", help="root CA commands", description="Root CA commands.")
    cs = ca.add_subparsers(dest="ca_command", metavar="ACTION")
    cs.required = True
    init = cs.add_parser("init", help="create a root CA in a directory",
                         description=f"Create a root CA in DIR: {ROOT_CERT} (the certificate devices trust), "
                                     f"{ROOT_KEY} (its private key, mode 0600; keep DIR offline) and index.json "
                                     "(issued and revoked certificates).")
    init.add_argument("dir", metavar="DIR", help="CA directory (created mode 0700 if missing; must not hold a CA)")
    init.add_argument("--name", default=DEFAULT_CA_NAME, help=f"the root's common name (default: {DEFAULT_CA_NAME!r})")
    init.add_argument("--type", choices=KEY_TYPES, default=DEFAULT_KEY_TYPE, help=f"root key type (default: {DEFAULT_KEY_TYPE})")
    init.add_argument("--days", type=_days, default=ROOT_CA_DAYS, help=f"validity in days (default: {ROOT_CA_DAYS})")
    init.add_argument("--json", action="store_true", help="print the result as JSON")
    init.set_defaults(func=cmd_ca_init)

    issue = s.add_parser("issue", help="issue a code-signing key and certificate",
                         description="Generate a key and a code-signing certificate (extendedKeyUsage codeSigning) "
                                     "issued by the CA; writes OUTDIR/NAME.crt and OUTDIR/NAME.key (mode 0600).")
    issue.add_argument("--ca", required=True, metavar="DIR", help="CA directory")
    issue.add_argument("--name", required=True, help="certificate common name, also the file name")
    issue.add_argument("--days", type=_days, default=SIGNING_CERT_DAYS, help=f"validity in days (default: {SIGNING_CERT_DAYS})")
    issue.add_argument("--type", choices=KEY_TYPES, default=DEFAULT_KEY_TYPE, help=f"key type (default: {DEFAULT_KEY_TYPE})")
    issue.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="directory for NAME.crt and NAME.key")
    issue.add_argument("--json", action="store_true", help="print the result as JSON")
    issue.set_defaults(func=cmd_issue)

    revoke = s.add_parser("revoke", help="revoke a certificate issued by the CA",
                          description="Record CERT as revoked in the CA index. Devices refuse it once they have "
                                      "a CRL made afterwards with 'edge keys crl'.")
    revoke.add_argument("--ca", required=True, metavar="DIR", help="CA directory")
    revoke.add_argument("cert", metavar="CERT", help="certificate file (PEM or DER) to revoke")
    revoke.add_argument("--json", action="store_true", help="print the result as JSON")
    revoke.set_defaults(func=cmd_revoke)

    crl = s.add_parser("crl", help="write the CA's certificate revocation list",
                       description="Write a CRL (PEM) listing every certificate the CA revoked, signed by the CA, "
                                   "with the next CRL number. Give it to devices with 'edge bundle verify --crl'.")
    crl.add_argument("--ca", required=True, metavar="DIR", help="CA directory")
    crl.add_argument("-o", "--output", required=True, metavar="CRL.pem", help="CRL file to write (replaced atomically)")
    crl.add_argument("--days", type=_days, default=CRL_DAYS, help=f"nextUpdate in days (default: {CRL_DAYS})")
    crl.add_argument("--json", action="store_true", help="print the result as JSON")
    crl.set_defaults(func=cmd_crl)


def cmd_ca_init(args: argparse.Namespace) -> int:
    ca = CertificateAuthority.init(args.dir, name=args.name, key_type=args.type, days=args.days)
    cert = ca.certificate
    info = {"ca": args.dir, "certificate": os.path.join(args.dir, ROOT_CERT), "key": os.path.join(args.dir, ROOT_KEY),
            "subject": cert.subject.rfc4514_string(), "type": args.type, "sha256": fingerprint(cert),
            "not_after": cert.not_valid_after_utc.isoformat()}
    if args.json:
        print_json(info)
    else:
        print(f"{args.dir}: root CA {describe(cert)}, {args.type}, valid until {cert.not_valid_after_utc:%Y-%m-%d}")
        print(f"  trust anchor for devices: {info['certificate']} (sha256 {info['sha256']})")
        print(f"  private key: {info['key']} (mode 0600; keep this directory offline)")
    return 0


def cmd_issue(args: argparse.Namespace) -> int:
    ca = CertificateAuthority.open(args.ca)
    crt_path, key_path, cert = ca.issue_to_files(args.name, args.output, key_type=args.type, days=args.days)
    info = {"certificate": crt_path, "key": key_path, "subject": cert.subject.rfc4514_string(),
            "serial": f"{cert.serial_number:x}", "type": args.type, "sha256": fingerprint(cert),
            "not_before": cert.not_valid_before_utc.isoformat(), "not_after": cert.not_valid_after_utc.isoformat()}
    if args.json:
        print_json(info)
    else:
        print(f"{crt_path}: {describe(cert)}, {args.type}, code signing, valid "
              f"{cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}")
        print(f"{key_path}: private key (mode 0600)")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    ca = CertificateAuthority.open(args.ca)
    cert = read_certificate(args.cert)
    newly = ca.revoke(cert)
    info = {"certificate": args.cert, "serial": f"{cert.serial_number:x}", "revoked": True, "already_revoked": not newly}
    if args.json:
        print_json(info)
    else:
        state = "revoked" if newly else "was already revoked"
        print(f"{args.cert}: {describe(cert)} {state}; publish a new CRL with 'edge keys crl --ca {args.ca} -o CRL.pem'")
    return 0


def cmd_crl(args: argparse.Namespace) -> int:
    if os.path.isdir(args.output):
        raise UsageError(f"{args.output}: is a directory; give the CRL file to write")
    ca = CertificateAuthority.open(args.ca)
    check_output_path(args.output, {f"the CA's {what}": os.path.join(ca.directory, name) for what, name in
                                    (("certificate", ROOT_CERT), ("private key", ROOT_KEY), ("index", INDEX))})
    crl = ca.make_crl(days=args.days)
    write_file_atomic(args.output, crl.public_bytes(serialization.Encoding.PEM), overwrite=True)
    serials = sorted(f"{entry.serial_number:x}" for entry in crl)
    info = {"crl": args.output, "number": ca.crl_number, "revoked": serials,
            "next_update": crl.next_update_utc.isoformat() if crl.next_update_utc else None}
    if args.json:
        print_json(info)
    else:
        print(f"{args.output}: CRL number {ca.crl_number}, {len(serials)} revoked certificate(s), "
              f"next update {crl.next_update_utc:%Y-%m-%d}")
    return 0
