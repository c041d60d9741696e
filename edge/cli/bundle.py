"""``edge bundle``: create, inspect, verify and extract signed update bundles."""

from __future__ import annotations

import argparse
import datetime
import os
import tempfile
import time
from typing import Any

from cryptography import x509

from edge import __version__
from edge.bundle import Bundle, CreatedBundle, ImageRef, create_bundle, open_bundle
from edge.bundle.buildinfo import BuildMetadata, find_build_metadata, metadata_candidates
from edge.bundle.errors import BundleCreateError, ImageMismatchError, ManifestError
from edge.bundle.manifest import is_valid_chunk_size, parse_semver
from edge.errors import UsageError
from edge.fsutil import check_output_path
from edge.progress import Progress, human_bytes
from edge.squashfs import SquashfsError, SquashfsImage, parse_block_size
from signing.certs import MALFORMED_CERTIFICATE, common_name, describe, fingerprint, utc_now
from signing.chain import check_signing_certificate, validate_signing_chain
from signing.errors import CertificateTimeError
from signing.files import load_crls, load_keyring, load_signer

from .output import print_json, print_table
from .units import check_rebuild_rate, parse_rate


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value <= 0xFFFFFFFF:
        raise argparse.ArgumentTypeError(f"{value} is out of range (0 to 4294967295)")
    return value


def _meta_item(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def _add_trust_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keyring", required=True, metavar="ROOTS.pem", help="PEM file of trusted root CA certificates")
    p.add_argument("--crl", metavar="FILE", help="CRL file (PEM, one or more CRLs): revoked certificates are refused")
    p.add_argument("--board", metavar="NAME", help="refuse the bundle unless NAME is in its compatible list")
    p.add_argument("--installed-security-version", type=_non_negative, metavar="N",
                   help="refuse the bundle if its security_version is below N (anti-rollback floor)")
    p.add_argument("--allowed-cn", action="append", metavar="CN",
                   help="accept only signers with this common name (repeatable)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bundle", help="create, inspect, verify and extract signed update bundles",
                       description="Signed update bundles: a header, a signed manifest, the signature and "
                                   "certificate chain, then the payload in hashed chunks. See docs/bundle-format.md.")
    s = p.add_subparsers(dest="bundle_command", metavar="ACTION")
    s.required = True

    c = s.add_parser("create", help="sign an image into a bundle",
                     description="Sign a squashfs image into a full update bundle (or, with --delta-from, a delta "
                                 "bundle). --compatible and --version "
                                 "default to the build metadata IMAGE.json beside the image (written by 'edge "
                                 "build'); without it they are required.")
    c.add_argument("image", metavar="IMAGE.sqfs", help="the squashfs image to ship")
    c.add_argument("--key", required=True, metavar="K", help="signing private key (PEM)")
    c.add_argument("--cert", required=True, metavar="C", help="signing certificate (PEM), with the codeSigning EKU")
    c.add_argument("--chain", action="append", default=[], metavar="F",
                   help="intermediate CA certificates to embed (PEM; repeatable; roots are left out)")
    c.add_argument("--keyring", metavar="ROOTS.pem",
                   help="root CA certificates the devices trust (PEM): before signing, check that the signing "
                        "certificate and --chain lead to one of them, as 'bundle verify' and the devices will "
                        "(default: only the signer's own rules: not a CA, codeSigning, valid now)")
    c.add_argument("--compatible", action="append", metavar="BOARD",
                   help="board string the bundle installs on (repeatable; default: from build metadata)")
    c.add_argument("--version", dest="image_version", metavar="V", help="image version, semver (default: from build metadata)")
    c.add_argument("--security-version", type=_non_negative, default=0, metavar="N",
                   help="anti-rollback counter; devices refuse bundles below their floor (default: 0)")
    c.add_argument("--delta-from", metavar="OLD.sqfs",
                   help="make a delta bundle: the payload turns OLD.sqfs (the installed image) into IMAGE")
    c.add_argument("--link-speed", type=parse_rate, metavar="RATE",
                   help="with --delta-from: the devices' download speed in bytes/s (e.g. 1M); changed blocks that "
                        "would take longer to recompress on the device than to download are sent ready-compressed "
                        "(see 'edge delta make --help')")
    c.add_argument("--rebuild-rate", type=parse_rate, metavar="RATE",
                   help="with --link-speed: plain bytes/s the device recompresses (default: this machine's rate)")
    c.add_argument("--chunk-size", default="1M", help="payload chunk size, a power of two from 4K to 16M (default: 1M)")
    c.add_argument("--meta", action="append", type=_meta_item, default=[], metavar="KEY=VALUE",
                   help="free-form metadata to sign into the manifest (repeatable)")
    c.add_argument("-o", "--output", required=True, metavar="OUT.edgeb", help="bundle to write (replaced atomically)")
    c.add_argument("--json", action="store_true", help="print the result as JSON")
    c.set_defaults(func=cmd_create)

    i = s.add_parser("inspect", help="show a bundle's manifest and signer (without verifying)",
                     description="Show the header, manifest and embedded certificates. Nothing is verified: "
                                 "use 'edge bundle verify' for that.")
    i.add_argument("bundle", metavar="BUNDLE")
    i.add_argument("--json", action="store_true", help="print as JSON (includes every chunk hash)")
    i.set_defaults(func=cmd_inspect)

    v = s.add_parser("verify", help="verify a bundle completely",
                     description="Verify the signature, the certificate chain (at the bundle's signing time) "
                                 "against the keyring and CRL, the device policy, and every payload chunk. Exits "
                                 "non-zero with a one-line reason if anything is wrong (see docs/cli.md).")
    v.add_argument("bundle", metavar="BUNDLE")
    _add_trust_options(v)
    v.add_argument("--json", action="store_true", help="print the result as JSON")
    v.set_defaults(func=cmd_verify)

    x = s.add_parser("extract", help="verify a bundle and write its payload",
                     description="Verify the bundle like 'verify', then write the payload to OUT, checking each "
                                 "chunk before it is written. OUT appears only if everything verified.")
    x.add_argument("bundle", metavar="BUNDLE")
    x.add_argument("-o", "--output", required=True, metavar="IMAGE.sqfs", help="file to write (replaced atomically)")
    _add_trust_options(x)
    x.add_argument("--json", action="store_true", help="print the result as JSON")
    x.set_defaults(func=cmd_extract)


# --------------------------------------------------------------------- create
def make_delta_payload(old_image: str, new_image: str, workdir: str, *, link_speed: float | None = None,
                       rebuild_rate: float | None = None) -> tuple[str, ImageRef, ImageRef, dict[str, Any]]:
    """The delta payload for ``old_image`` -> ``new_image``: (payload path, source ref, target ref, delta params).

    The only place that knows the delta engine.  The payload is a temporary
    file in ``workdir``; the caller deletes it.
    """
    from edge.delta import make_delta

    if not os.path.isfile(old_image):
        raise UsageError(f"{old_image}: no such image file")
    fd, path = tempfile.mkstemp(prefix=".edge-delta-payload-", dir=workdir)
    os.close(fd)
    try:
        with Progress("diffing", unit="regions") as bar:
            result = make_delta(old_image, new_image, path, progress=bar.update, link_speed=link_speed,
                                rebuild_rate=rebuild_rate)
    except BaseException:
        os.unlink(path)
        raise
    source = ImageRef(result.source_sha256, result.source_size)
    target = ImageRef(result.target_sha256, result.target_size)
    return path, source, target, {"format": "edge-delta", "kind": result.kind, "codec": result.codec}


def _create_checked(metadata: BuildMetadata | None, payload: str, *args: Any, **kwargs: Any) -> CreatedBundle:
    """create_bundle, with a stale-metadata hint when the image does not match its build metadata."""
    try:
        return create_bundle(payload, *args, **kwargs)
    except ImageMismatchError as exc:
        if metadata is not None and kwargs.get("payload_type") == "full":
            raise BundleCreateError(f"{exc.message}: {metadata.path} does not describe this image (stale build metadata?)") from None
        raise


def cmd_create(args: argparse.Namespace) -> int:
    if not os.path.isfile(args.image):
        raise UsageError(f"{args.image}: no such image file")
    try:
        chunk_size = parse_block_size(args.chunk_size)
    except SquashfsError:
        raise UsageError(f"--chunk-size {args.chunk_size!r} is not a size (e.g. 64K, 1M)") from None
    if not is_valid_chunk_size(chunk_size):
        raise UsageError(f"--chunk-size {args.chunk_size} must be a power of two from 4K to 16M")

    metadata = find_build_metadata(args.image)
    compatible: list[str] = list(args.compatible or [])
    if not compatible and metadata is not None:
        compatible = list(metadata.compatible) or ([metadata.board] if metadata.board else [])
    version = args.image_version or (metadata.version if metadata else None)
    if not compatible or not version:
        missing = " and ".join(name for name, value in (("--compatible", compatible), ("--version", version)) if not value)
        where = " or ".join(metadata_candidates(args.image))
        reason = f"{metadata.path} has no value for it" if metadata else f"there is no build metadata ({where})"
        raise UsageError(f"{args.image}: give {missing}: {reason}")
    try:
        parse_semver(version)
    except ManifestError:
        raise UsageError(f"--version {version!r} is not a semantic version (MAJOR.MINOR.PATCH[-PRE][+BUILD])") from None
    if metadata is not None and metadata.size is not None and metadata.size != os.path.getsize(args.image):
        raise UsageError(f"{metadata.path} describes a {metadata.size}-byte image but {args.image} has "
                         f"{os.path.getsize(args.image)} bytes: stale build metadata?")

    signer = load_signer(args.key, args.cert, args.chain)
    now = utc_now()
    check_signing_certificate(signer.certificate)
    cert = signer.certificate
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise CertificateTimeError(f"{args.cert}: {describe(cert)} is not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} "
                                   f"to {cert.not_valid_after_utc:%Y-%m-%d}); devices would refuse the bundle")
    if args.keyring:  # the whole chain, as a device will check it, before any work
        validate_signing_chain(cert, signer.chain, load_keyring(args.keyring), at=now)

    build = {"edge_version": (metadata.edge_version if metadata and metadata.edge_version else __version__)}
    if metadata is not None and metadata.name:
        build["recipe"] = metadata.name
    target = ImageRef(metadata.sha256, metadata.size) if metadata and metadata.sha256 and metadata.size else None

    check_output_path(args.output, {"IMAGE.sqfs": args.image, "--delta-from": args.delta_from})
    start = time.monotonic()
    payload, payload_type, source, delta, compressor = args.image, "full", None, None, None
    if (args.link_speed or args.rebuild_rate) and not args.delta_from:
        raise UsageError("--link-speed and --rebuild-rate only apply to delta bundles (--delta-from)")
    check_rebuild_rate(args)
    if args.delta_from:
        with SquashfsImage(args.image) as img:
            compressor = img.superblock.compressor_name
        payload, source, target, delta = make_delta_payload(args.delta_from, args.image,
                                                            os.path.dirname(os.path.abspath(args.output)),
                                                            link_speed=args.link_speed, rebuild_rate=args.rebuild_rate)
        payload_type = "delta"
    try:
        with Progress(f"bundling {os.path.basename(args.image)}") as bar:
            result = _create_checked(metadata, payload, args.output, signer, payload_type=payload_type,
                                     compatible=compatible, version=version, security_version=args.security_version,
                                     target=target, source=source, compressor=compressor, chunk_size=chunk_size,
                                     build=build, meta=dict(args.meta), delta=delta, created=int(now.timestamp()),
                                     progress=bar.update)
    finally:
        if payload != args.image:
            os.unlink(payload)
    m = result.manifest
    info = {"bundle": result.path, "size": result.size, "manifest_sha256": result.manifest_sha256,
            "payload_type": m.payload_type, "compatible": list(m.compatible), "version": m.version,
            "security_version": m.security_version, "chunks": m.chunk_count, "chunk_size": m.chunk_size,
            "target_sha256": m.target.sha256, "signer": common_name(cert), "seconds": round(time.monotonic() - start, 3)}
    if args.json:
        print_json(info)
    else:
        print(f"{result.path}: {m.payload_type} bundle, {human_bytes(result.size)}, version {m.version} "
              f"(security {m.security_version}) for {', '.join(m.compatible)}, signed by {common_name(cert)}")
    return 0


# -------------------------------------------------------------------- inspect
def _time(epoch: int) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _certificate_info(cert: x509.Certificate) -> dict[str, Any]:
    """What inspect shows of an (unverified) certificate; a damaged field is reported, not fatal."""
    try:
        return {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
                "serial": f"{cert.serial_number:x}", "not_before": cert.not_valid_before_utc.isoformat(),
                "not_after": cert.not_valid_after_utc.isoformat(), "sha256": fingerprint(cert)}
    except MALFORMED_CERTIFICATE as exc:
        return {"subject": common_name(cert), "error": f"malformed certificate ({exc})", "sha256": fingerprint(cert)}


def cmd_inspect(args: argparse.Namespace) -> int:
    with open_bundle(args.bundle) as bundle:
        m = bundle.manifest
        file_size = os.path.getsize(args.bundle)
        certs = [_certificate_info(c) for c in bundle.certificates]
        info = {"bundle": args.bundle, "verified": False, "file_size": file_size, "bundle_size": bundle.total_size,
                "format_version": bundle.header.format_version, "payload_offset": bundle.payload_offset,
                "manifest_sha256": bundle.manifest_sha256, "manifest": m.to_json(),
                "signature": {"algorithm": bundle.signature_block.algorithm, "certificates": certs}}
    if args.json:
        print_json(info)
        return 0
    rows: list[tuple[str, Any]] = [
        ("bundle", f"{args.bundle} ({file_size} bytes" + ("" if file_size == bundle.total_size else
                                                           f"; the header says {bundle.total_size}") + f", format {info['format_version']})"),
        ("NOT VERIFIED", "run 'edge bundle verify BUNDLE --keyring ROOTS.pem'"),
        ("signer", " <- ".join(f"CN={common_name(c)}" for c in bundle.certificates) + f" ({bundle.signature_block.algorithm})"),
        ("signed at", _time(m.created)),
        ("compatible", ", ".join(m.compatible)),
        ("version", f"{m.version} (security version {m.security_version})"),
        ("payload", f"{m.payload_type}, {m.payload_size} bytes at offset {bundle.payload_offset}, "
                    f"{m.chunk_count} chunks of {human_bytes(m.chunk_size)}"),
        ("target", f"sha256 {m.target.sha256}, {m.target.size} bytes, {m.compressor}"),
        ("source", f"sha256 {m.source.sha256}, {m.source.size} bytes" if m.source else "-"),
        ("build", ", ".join(f"{k}={v}" for k, v in sorted(m.build.items())) or "-"),
        ("meta", ", ".join(f"{k}={v}" for k, v in sorted(m.meta.items())) or "-"),
        ("manifest", f"{bundle.header.manifest_length} bytes, sha256 {bundle.manifest_sha256}"),
    ]
    print_table(rows)
    return 0


# ------------------------------------------------------------- verify/extract
def _verify_head(bundle: Bundle, args: argparse.Namespace) -> dict[str, Any]:
    keyring = load_keyring(args.keyring)
    crl = load_crls(args.crl) if args.crl else None
    v = bundle.verify(keyring, crl=crl, board=args.board, installed_security_version=args.installed_security_version,
                      allowed_cns=set(args.allowed_cn) if args.allowed_cn else None)
    m = bundle.manifest
    return {"bundle": bundle.name, "verified": True, "signer": v.signer, "chain": list(v.chain),
            "root_sha256": v.root_fingerprint, "signing_time": v.signing_time.isoformat(),
            "manifest_sha256": v.manifest_sha256, "compatible": list(m.compatible), "version": m.version,
            "security_version": m.security_version, "payload_type": m.payload_type, "payload_size": m.payload_size,
            "chunks": m.chunk_count, "target_sha256": m.target.sha256}


def cmd_verify(args: argparse.Namespace) -> int:
    with open_bundle(args.bundle) as bundle:
        info = _verify_head(bundle, args)
        with Progress(f"verifying {os.path.basename(args.bundle)}") as bar:
            bundle.verify_payload(progress=bar.update)
    if args.json:
        print_json(info)
    else:
        print(f"{args.bundle}: OK, {info['payload_type']} bundle version {info['version']} (security "
              f"{info['security_version']}) for {', '.join(info['compatible'])}; signed by {info['signer']} "
              f"(root {info['chain'][-1]}) at {info['signing_time']}; {info['chunks']} chunks verified")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    if os.path.isdir(args.output):
        raise UsageError(f"{args.output}: is a directory; give the image file to write")
    check_output_path(args.output, {"BUNDLE": args.bundle})
    start = time.monotonic()
    with open_bundle(args.bundle) as bundle:
        info = _verify_head(bundle, args)
        with Progress(f"extracting {os.path.basename(args.bundle)}") as bar:
            written = bundle.extract_to(args.output, progress=bar.update)
    info |= {"output": args.output, "bytes": written, "seconds": round(time.monotonic() - start, 3)}
    if args.json:
        print_json(info)
    else:
        print(f"{args.output}: {written} bytes extracted and verified (version {info['version']}, signed by {info['signer']})")
    return 0
