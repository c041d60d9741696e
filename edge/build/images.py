"""Container images as layer lists: OCI image layouts and ``docker save`` archives.

OCI layout (image-spec ``image-layout.md``): ``index.json`` lists manifests
(or nested indexes), tagged by the ``org.opencontainers.image.ref.name``
annotation; a multi-arch index gives each manifest a ``platform``.  The
build picks the ref (``source.ref``) and then the manifest whose platform
matches the board (``amd64`` for x86_64, ``arm64`` for aarch64), verifies the
digest of every blob it reads, and checks each layer's uncompressed digest
against the config's ``rootfs.diff_ids``.

docker-archive (``docker save``, ``podman save``, ``skopeo copy ...
docker-archive:``): ``manifest.json`` is a list of ``{Config, RepoTags,
Layers}``; layers are (usually uncompressed) tars inside the archive, checked
against the config's diff_ids.  The image ID (the config digest) is the
source digest.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from .archive import Archive, Location, parse_json, read_location
from .blobs import BlobCache, parse_digest
from .errors import SourceError

REF_ANNOTATION = "org.opencontainers.image.ref.name"
OCI_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json")
LAYER_TYPES = (
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
)
MAX_INDEX_DEPTH = 4
MAX_LAYERS = 1000


@dataclass(frozen=True)
class LayerRef:
    """One layer blob: where its stored bytes are and what they must hash to."""

    label: str  # "layer sha256:... (blobs/sha256/...)" for messages
    location: Location
    digest: str | None  # of the stored (maybe compressed) bytes
    diff_id: str | None  # of the uncompressed tar


@dataclass(frozen=True)
class ImageSelection:
    """The image chosen for one architecture."""

    layers: tuple[LayerRef, ...]
    digest: str  # the manifest digest (OCI) or image ID (docker): the build's source_digest
    platform: str  # e.g. "linux/arm64" as the index or config declares it ("" if unknown)
    config_arch: str | None  # the config's "architecture" (e.g. "amd64")


def platform_matches(platform: dict[str, Any], arch: str) -> bool:
    """Does an OCI platform object run on a board of architecture ``arch`` (x86_64 / aarch64)?"""
    want = OCI_ARCH[arch]
    if platform.get("os", "linux") != "linux" or platform.get("architecture") != want:
        return False
    variant = platform.get("variant") or ""
    return variant in ("", "v8") if want == "arm64" else variant in ("", "v1", "v2", "v3", "v4")


def _platform_text(platform: Any) -> str:
    if not isinstance(platform, dict):
        return "unknown"
    text = f"{platform.get('os', '?')}/{platform.get('architecture', '?')}"
    return text + (f"/{platform['variant']}" if platform.get("variant") else "")


class OciLayout:
    """An OCI image layout directory or tarball."""

    def __init__(self, path: str, cache: BlobCache, *, ref: str | None, written: str) -> None:
        self.label = f"OCI layout {written}"
        self.archive = Archive(path, cache, self.label)
        self.ref = ref
        self.index = self._object(self.archive.read_json("index.json", what="the OCI image index"), "index.json")
        layout = self.archive.locate("oci-layout")
        if layout is not None:
            marker = self._object(parse_json(read_location(layout, f"{self.label}: oci-layout"), f"{self.label}: oci-layout"), "oci-layout")
            if "imageLayoutVersion" not in marker:
                raise SourceError(f"{self.label}: oci-layout has no imageLayoutVersion")

    def _object(self, value: Any, what: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise SourceError(f"{self.label}: {what} is not a JSON object")
        return value

    def refs(self) -> list[str]:
        return sorted({d.get("annotations", {}).get(REF_ANNOTATION) for d in self._descriptors(self.index, "index.json")} - {None})

    def _descriptors(self, index: dict[str, Any], what: str) -> list[dict[str, Any]]:
        manifests = index.get("manifests")
        if not isinstance(manifests, list) or not all(isinstance(d, dict) for d in manifests):
            raise SourceError(f"{self.label}: {what} has no 'manifests' list")
        for d in manifests:
            if not isinstance(d.get("annotations", {}), dict):
                raise SourceError(f"{self.label}: {what}: a descriptor's annotations are not an object")
        return manifests

    def blob(self, descriptor: dict[str, Any], what: str) -> tuple[Location, str]:
        digest = descriptor.get("digest")
        algo, hexdigest = parse_digest(digest, f"{self.label}: {what}")  # type: ignore[arg-type]
        location = self.archive.locate(f"blobs/{algo}/{hexdigest}")
        if location is None:
            raise SourceError(f"{self.label}: {what} {digest} is missing (no blobs/{algo}/{hexdigest})")
        size = descriptor.get("size")
        if isinstance(size, int) and size != location.length:
            raise SourceError(f"{self.label}: {what} {digest} has {location.length} bytes, its descriptor says {size}")
        return location, str(digest)

    def json_blob(self, descriptor: dict[str, Any], what: str) -> dict[str, Any]:
        location, digest = self.blob(descriptor, what)
        data = read_location(location, f"{self.label}: {what} {digest}")
        algo, want = parse_digest(digest, what)
        if hashlib.new(algo, data).hexdigest() != want:
            raise SourceError(f"{self.label}: {what} {digest} does not match its digest; the layout is corrupt")
        return self._object(parse_json(data, f"{self.label}: {what} {digest}"), f"{what} {digest}")

    def select(self, arch: str) -> ImageSelection:
        """The image for board architecture ``arch``."""
        top = self._descriptors(self.index, "index.json")
        if self.ref is not None:
            chosen = [d for d in top if d.get("annotations", {}).get(REF_ANNOTATION) == self.ref]
            if not chosen:
                refs = ", ".join(self.refs()) or "none"
                raise SourceError(f"{self.label}: no image tagged {self.ref!r} (refs: {refs})")
        else:
            tags = self.refs()
            if len(tags) > 1:
                raise SourceError(f"{self.label}: holds several images ({', '.join(tags)}); choose one with source.ref")
            chosen = top
        if not chosen:
            raise SourceError(f"{self.label}: index.json lists no images")
        descriptor, platform = self._pick(chosen, arch, depth=0)
        manifest = self.json_blob(descriptor, "manifest")
        if manifest.get("mediaType", MANIFEST_TYPES[0]) not in MANIFEST_TYPES or "layers" not in manifest:
            raise SourceError(f"{self.label}: {descriptor.get('digest')} is not an image manifest")
        config_desc = manifest.get("config")
        if not isinstance(config_desc, dict):
            raise SourceError(f"{self.label}: manifest {descriptor.get('digest')} has no config")
        config = self.json_blob(config_desc, "config")
        layers_desc = manifest.get("layers")
        if not isinstance(layers_desc, list) or len(layers_desc) > MAX_LAYERS:
            raise SourceError(f"{self.label}: manifest {descriptor.get('digest')} has no usable layer list")
        diff_ids = _diff_ids(config, len(layers_desc), self.label)
        layers = []
        for i, layer in enumerate(layers_desc):
            if not isinstance(layer, dict):
                raise SourceError(f"{self.label}: layer {i} descriptor is not an object")
            media = layer.get("mediaType", LAYER_TYPES[1])
            if media not in LAYER_TYPES:
                raise SourceError(f"{self.label}: layer {i} ({layer.get('digest')}) has unsupported media type {media!r}")
            location, digest = self.blob(layer, f"layer {i}")
            layers.append(LayerRef(f"layer {digest}", location, digest, diff_ids[i] if diff_ids else None))
        arch_name = config.get("architecture")
        if platform is None and isinstance(arch_name, str):
            platform = {"os": config.get("os", "linux"), "architecture": arch_name, "variant": config.get("variant")}
        return ImageSelection(tuple(layers), str(descriptor.get("digest")), _platform_text(platform) if platform else "",
                              arch_name if isinstance(arch_name, str) else None)

    def _pick(self, descriptors: list[dict[str, Any]], arch: str, depth: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The manifest descriptor for ``arch`` among ``descriptors`` (descending into nested indexes)."""
        if depth > MAX_INDEX_DEPTH:
            raise SourceError(f"{self.label}: image indexes nested more than {MAX_INDEX_DEPTH} deep")
        manifests: list[dict[str, Any]] = []
        for d in descriptors:
            media = d.get("mediaType")
            if media in INDEX_TYPES:
                nested = self.json_blob(d, "image index")
                sub, platform = self._pick(self._descriptors(nested, f"index {d.get('digest')}"), arch, depth + 1)
                manifests.append(sub | {"platform": platform} if platform else sub)
            elif media in MANIFEST_TYPES or media is None:
                manifests.append(d)
        with_platform = [d for d in manifests if isinstance(d.get("platform"), dict)]
        if not with_platform:
            if len(manifests) == 1:
                return manifests[0], None  # a single-arch image: the config says what it is
            raise SourceError(f"{self.label}: {len(manifests)} images without platforms; choose one with source.ref")
        matching = [d for d in with_platform if platform_matches(d["platform"], arch)]
        if not matching:
            have = ", ".join(sorted({_platform_text(d["platform"]) for d in with_platform}))
            raise SourceError(f"{self.label}: no linux/{OCI_ARCH[arch]} image for this board's {arch} (the index has: {have})")
        return matching[0], matching[0]["platform"]


class DockerArchive:
    """A ``docker save`` / ``podman save`` / skopeo ``docker-archive:`` tarball."""

    def __init__(self, path: str, cache: BlobCache, *, ref: str | None, written: str) -> None:
        self.label = f"docker archive {written}"
        self.archive = Archive(path, cache, self.label)
        manifest = self.archive.read_json("manifest.json", what="the docker image manifest")
        if not isinstance(manifest, list) or not manifest or not all(isinstance(m, dict) for m in manifest):
            raise SourceError(f"{self.label}: manifest.json is not a non-empty list of images")
        self.entry = self._choose(manifest, ref)

    def _choose(self, manifest: list[dict[str, Any]], ref: str | None) -> dict[str, Any]:
        def tags(m: dict[str, Any]) -> list[str]:
            value = m.get("RepoTags") or []
            return [t for t in value if isinstance(t, str)] if isinstance(value, list) else []

        if ref is None:
            if len(manifest) > 1:
                listed = ", ".join(t for m in manifest for t in tags(m)) or f"{len(manifest)} untagged images"
                raise SourceError(f"{self.label}: holds several images ({listed}); choose one with source.ref")
            return manifest[0]
        for m in manifest:
            for tag in tags(m):
                short = tag.removeprefix("docker.io/").removeprefix("library/").removeprefix("localhost/")
                repo, _, tag_only = short.rpartition(":")
                if ref in (tag, short, repo) or (":" not in ref and ref == tag_only):
                    return m
        listed = ", ".join(t for m in manifest for t in tags(m)) or "no tags"
        raise SourceError(f"{self.label}: no image tagged {ref!r} (tags: {listed})")

    def select(self, arch: str) -> ImageSelection:
        config_name = self.entry.get("Config")
        layer_names = self.entry.get("Layers")
        if not isinstance(config_name, str) or not isinstance(layer_names, list) or not all(isinstance(n, str) for n in layer_names):
            raise SourceError(f"{self.label}: manifest.json entry needs a Config name and a Layers list")
        if len(layer_names) > MAX_LAYERS:
            raise SourceError(f"{self.label}: more than {MAX_LAYERS} layers")
        location = self.archive.locate(config_name)
        if location is None:
            raise SourceError(f"{self.label}: config {config_name} is missing from the archive")
        data = read_location(location, f"{self.label}: {config_name}")
        image_id = f"sha256:{hashlib.sha256(data).hexdigest()}"
        config = parse_json(data, f"{self.label}: {config_name}")
        if not isinstance(config, dict):
            raise SourceError(f"{self.label}: {config_name} is not a JSON object")
        diff_ids = _diff_ids(config, len(layer_names), self.label)
        layers = []
        for i, name in enumerate(layer_names):
            where = self.archive.locate(name)
            if where is None:
                raise SourceError(f"{self.label}: layer {i} ({name}) is missing from the archive")
            diff_id = diff_ids[i] if diff_ids else None
            layers.append(LayerRef(f"layer {diff_id or name} ({name})", where, None, diff_id))
        arch_name = config.get("architecture")
        platform = f"{config.get('os', 'linux')}/{arch_name}" if isinstance(arch_name, str) else ""
        return ImageSelection(tuple(layers), image_id, platform, arch_name if isinstance(arch_name, str) else None)


def _diff_ids(config: dict[str, Any], count: int, label: str) -> list[str] | None:
    rootfs = config.get("rootfs")
    if rootfs is None:
        return None
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise SourceError(f"{label}: config rootfs.diff_ids is not a list of digests")
    if len(diff_ids) != count:
        raise SourceError(f"{label}: the config lists {len(diff_ids)} diff_ids for {count} layers")
    for d in diff_ids:
        parse_digest(d, f"{label}: config rootfs.diff_ids")
    return diff_ids
