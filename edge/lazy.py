"""Package exports loaded on first use (PEP 562), so a command pays only for the modules it runs.

``edge delta apply`` needs the delta reader, not the squashfs writer, the device's install
machinery or an HTTP client; with eager ``__init__`` imports it loaded all of them (about 0.1 s
of a 0.6 s apply of a small delta). A package lists what it exports and from which submodule::

    __getattr__, __dir__ = lazy_exports(globals(), {"Installer": ".install", ...})

``from package import Installer`` and ``package.Installer`` work as before; the submodule is
imported the first time one of its names is asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(namespace: dict[str, Any],
                 exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for the package whose ``globals()`` is ``namespace``:
    ``exports`` maps a name to the submodule, relative to the package, that defines it."""
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value  # the next lookup is a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
