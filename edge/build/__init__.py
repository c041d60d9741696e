"""Image builds: a recipe and a container image (or tree, or tarball) in, a bootable squashfs per board out.

The parts, one module per concern:

========================  ==================================================
``recipe``                the recipe schema, validated with file:line:field
``yamldoc``               line-aware YAML accessors (recipes and board.yaml)
``tarstream``             a strict tar header reader (content by offset)
``blobs``                 digest checks and the spool of decompressed layers
``archive``               named files in a directory or tarball
``images``                OCI layouts and docker archives as layer lists
``merge``                 layers applied with OCI whiteouts and hard links
``sources``               a recipe source as a merged tree per architecture
``elfcheck``              the ELF architecture check
``bootfiles``             boot partition files rendered per slot
``pipeline``              the build itself: :func:`build`
``sample``                a small multi-arch sample image for demos and tests
========================  ==================================================

The public API is re-exported here: ``load_recipe``, ``build``, ``Recipe``,
``BuildResult``, ``BoardBuild`` and the error types.
"""

from __future__ import annotations

from typing import Any

from .errors import ArchMismatchError, BuildError, RecipeError, SourceError

__all__ = [
    "ArchMismatchError", "BoardBuild", "BuildError", "BuildResult", "Recipe", "RecipeError", "SourceError",
    "build", "load_recipe", "output_stem",
]

_LAZY = {
    "load_recipe": "recipe", "Recipe": "recipe",
    "build": "pipeline", "BuildResult": "pipeline", "BoardBuild": "pipeline", "output_stem": "pipeline",
}


def __getattr__(name: str) -> Any:
    # Imported lazily: the pipeline imports bsp.boards, which imports edge.build.errors.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edge.build' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"edge.build.{module}"), name)
