"""The build metadata ``edge build`` writes beside an image, used for ``edge bundle create`` defaults.

For ``IMAGE.sqfs`` the file is ``IMAGE.json`` (or ``IMAGE.sqfs.json``): a JSON
object with at least ``name``, ``version``, ``board``, ``compatible``,
``sha256``, ``size``, ``compressor``, ``level``, ``block_size`` and
``edge_version``.  Only the keys used here are type-checked; others are kept
as they are in :attr:`BuildMetadata.raw`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from edge.errors import InputFileError
from edge.fsutil import FileTooLargeError, read_bounded

MAX_METADATA_SIZE = 1024 * 1024


@dataclass(frozen=True)
class BuildMetadata:
    path: str
    name: str | None = None
    version: str | None = None
    board: str | None = None
    compatible: tuple[str, ...] = ()
    sha256: str | None = None
    size: int | None = None
    compressor: str | None = None
    edge_version: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


def metadata_candidates(image_path: str) -> list[str]:
    base, ext = os.path.splitext(image_path)
    names = [base + ".json"] if ext else []
    names.append(image_path + ".json")
    return names


def find_build_metadata(image_path: str | os.PathLike[str]) -> BuildMetadata | None:
    """The metadata beside ``image_path``, or None when there is none."""
    for candidate in metadata_candidates(os.fspath(image_path)):
        if os.path.isfile(candidate):
            return read_build_metadata(candidate)
    return None


def read_build_metadata(path: str) -> BuildMetadata:
    try:
        data = read_bounded(path, MAX_METADATA_SIZE)
    except FileTooLargeError:
        raise InputFileError(f"{path}: build metadata larger than {MAX_METADATA_SIZE} bytes") from None
    except OSError as exc:
        raise InputFileError(f"{path}: {exc.strerror or exc}") from None
    try:
        doc = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InputFileError(f"{path}: build metadata is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise InputFileError(f"{path}: build metadata is not a JSON object")

    def text(key: str) -> str | None:
        value = doc.get(key)
        if value is not None and not isinstance(value, str):
            raise InputFileError(f"{path}: build metadata field {key!r} is not a string")
        return value

    size = doc.get("size")
    if size is not None and (type(size) is not int or size < 0):
        raise InputFileError(f"{path}: build metadata field 'size' is not a non-negative integer")
    compatible = doc.get("compatible")
    if isinstance(compatible, str):
        compatible = [compatible]
    if compatible is None:
        compatible = []
    if not isinstance(compatible, list) or not all(isinstance(c, str) for c in compatible):
        raise InputFileError(f"{path}: build metadata field 'compatible' is not a string or a list of strings")
    return BuildMetadata(path=path, name=text("name"), version=text("version"), board=text("board"),
                         compatible=tuple(compatible), sha256=text("sha256"), size=size,
                         compressor=text("compressor"), edge_version=text("edge_version"), raw=doc)
