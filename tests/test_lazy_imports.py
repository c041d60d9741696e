"""Package exports load on first use: every exported name resolves, and a delta apply loads only what it runs."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys

import pytest

PACKAGES = ["edge.delta", "edge.device", "edge.squashfs"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_resolves_to_its_definition(package: str) -> None:
    code = f"""
import importlib, json
pkg = importlib.import_module({package!r})
print(json.dumps({{name: getattr(pkg, name).__module__ if hasattr(getattr(pkg, name), "__module__") else None
                   for name in pkg.__all__}}))
"""
    got = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    pkg = importlib.import_module(package)
    assert sorted(got) == sorted(pkg.__all__)
    for name, module in got.items():
        if module is not None:  # a class or function: defined in one of the package's own submodules
            assert module.startswith(package + "."), (name, module)
    assert set(pkg.__all__) <= set(dir(pkg))


@pytest.mark.parametrize("package", PACKAGES)
def test_the_names_type_checkers_see_are_the_names_that_load(package: str) -> None:
    """The ``if TYPE_CHECKING:`` imports (what editors and mypy read) name the same submodule for the
    same names as the lazy table (what runs)."""
    pkg = importlib.import_module(package)
    tree = ast.parse(open(pkg.__file__).read())
    guarded = next(node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING")
    seen = {alias.name: "." + node.module for node in guarded.body if isinstance(node, ast.ImportFrom)
            for alias in node.names}
    assert seen == pkg._EXPORTS
    assert pkg.__all__ == sorted(seen)


@pytest.mark.parametrize("package", PACKAGES)
def test_an_unknown_name_is_an_attribute_error(package: str) -> None:
    pkg = importlib.import_module(package)
    with pytest.raises(AttributeError, match="no_such_name"):
        pkg.no_such_name  # noqa: B018
    with pytest.raises(ImportError):
        exec(f"from {package} import no_such_name", {})


def test_from_import_gives_the_same_object_as_the_submodule() -> None:
    from edge.delta import apply_delta, make_delta
    from edge.delta.apply import apply_delta as direct_apply
    from edge.delta.make import make_delta as direct_make
    from edge.device import Installer
    from edge.device.install import Installer as direct_installer

    assert apply_delta is direct_apply and make_delta is direct_make and Installer is direct_installer


# What applying a delta from a local file must not load: the generator, the squashfs writer, the
# device's install and configuration machinery (yaml) and the HTTP client.
NOT_FOR_APPLY = ["edge.delta.make", "edge.squashfs.writer", "edge.squashfs.walker", "edge.device.install",
                 "edge.device.control", "yaml", "http.client", "urllib.request"]


def test_delta_apply_loads_only_what_it_runs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from edge.delta import make_delta
    from tests.delta.helpers import base_entries, edit, write

    entries = base_entries(3)
    old = write(entries, str(tmp_path / "old.sqfs"))
    new = write(edit(entries, 4), str(tmp_path / "new.sqfs"))
    make_delta(old, new, str(tmp_path / "p.delta"))
    code = f"""
import json, sys
from edge.cli import main
rc = main(["delta", "apply", {str(old)!r}, {str(tmp_path / 'p.delta')!r}, "-o", {str(tmp_path / 't.img')!r}])
print(json.dumps([rc, sorted(m for m in {NOT_FOR_APPLY!r} if m in sys.modules)]), file=sys.stderr)
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    rc, loaded = json.loads(run.stderr.strip().splitlines()[-1])
    assert rc == 0
    assert (tmp_path / "t.img").read_bytes() == open(new, "rb").read()
    assert loaded == []
