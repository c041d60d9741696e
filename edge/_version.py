"""The Edge version (read by pyproject.toml at build time; importing it costs nothing)."""

__version__ = "0.1.0"
