"""YAML documents validated field by field, with the file and line in every error.

PyYAML's ``safe_load`` forgets where a value came from, so a message could only
say *what* is wrong.  Here the document is composed into nodes (which keep
their line) and every accessor checks the type it expects, so a recipe or a
``board.yaml`` error reads ``recipe.yaml:7: field 'squashfs.level': ...``.
Unknown keys and duplicate keys are errors, never silently ignored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from edge.fsutil import FileTooLargeError, read_bounded

MAX_DOCUMENT_BYTES = 1 << 20  # recipes and board files are small; refuse anything huge
MAX_NODES = 100_000  # bounds alias expansion ("billion laughs")

_ENV_REF = re.compile(r"\$(\$|\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\})")


@dataclass(frozen=True)
class Node:
    """A YAML value and the 1-based line it starts on.

    ``value`` is a ``dict[str, Node]``, a ``list[Node]`` or a scalar (already
    typed by the YAML core schema); ``text`` is a scalar's source text, so a
    string field can take ``1.0`` or ``yes`` literally.
    """

    value: Any
    line: int
    text: str | None = None

    @property
    def is_map(self) -> bool:
        return isinstance(self.value, dict)

    @property
    def is_list(self) -> bool:
        return isinstance(self.value, list)


class Document:
    """One parsed YAML file and the error type its problems raise."""

    def __init__(
        self,
        path: str,
        error: Callable[[str], Exception],
        *,
        env: Mapping[str, str] | None = None,
        display_name: str | None = None,
    ) -> None:
        self.path = path
        self.name = display_name or path
        self._error = error
        self.env = env  # None: no ${VAR} interpolation
        try:
            raw = read_bounded(path, MAX_DOCUMENT_BYTES)
        except FileTooLargeError:
            raise error(f"{self.name}: larger than {MAX_DOCUMENT_BYTES} bytes; not a recipe or board file") from None
        except OSError as exc:
            raise error(f"{self.name}: cannot read: {exc.strerror}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error(f"{self.name}: not UTF-8 text (byte {exc.start})") from None
        self.root = self._compose(text)

    # ------------------------------------------------------------ parsing
    def _compose(self, text: str) -> Node:
        try:
            loader = yaml.SafeLoader(text)  # checks every character first: a special one stops it here
        except yaml.reader.ReaderError as exc:
            line = text.count("\n", 0, exc.position) + 1  # (for str input, exc.character is the code point)
            raise self._error(f"{self.name}:{line}: invalid YAML: unacceptable character #x{exc.character:04x} "
                              f"(control and other special characters are not allowed)") from None
        try:
            composed = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else 0
            raise self._error(f"{self.name}:{line}: invalid YAML: {exc.problem or exc.context}") from None
        except yaml.YAMLError as exc:
            raise self._error(f"{self.name}: invalid YAML: {exc}") from None
        except RecursionError:  # PyYAML composes nested collections recursively
            raise self._error(f"{self.name}: invalid YAML: lists or maps nested too deeply") from None
        finally:
            loader.dispose()
        if composed is None:
            raise self._error(f"{self.name}:1: the file is empty")
        self._budget = MAX_NODES
        try:
            return self._convert(composed, yaml.constructor.SafeConstructor())
        except RecursionError:
            raise self._error(f"{self.name}: invalid YAML: lists or maps nested too deeply") from None

    def _convert(self, node: yaml.Node, constructor: yaml.constructor.SafeConstructor) -> Node:
        self._budget -= 1
        if self._budget < 0:
            raise self._error(f"{self.name}: more than {MAX_NODES} values (alias expansion?)")
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Node] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise self._error(f"{self.name}:{key_node.start_mark.line + 1}: a key must be a plain string")
                key = str(key_node.value)
                if key in out:
                    raise self._error(f"{self.name}:{key_node.start_mark.line + 1}: duplicate key {key!r}")
                value = self._convert(value_node, constructor)
                if value.is_map or value.is_list:  # a block collection starts below its key: point at the key
                    value = Node(value.value, key_node.start_mark.line + 1)
                out[key] = value
            return Node(out, line)
        if isinstance(node, yaml.SequenceNode):
            return Node([self._convert(item, constructor) for item in node.value], line)
        assert isinstance(node, yaml.ScalarNode)
        try:
            value = constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise self._error(f"{self.name}:{line}: invalid value: {exc}") from None
        return Node(value, line, str(node.value))

    # ------------------------------------------------------------ errors
    def error(self, node: Node | None, field: str, message: str) -> Exception:
        line = node.line if node is not None else 1
        where = f" field {field!r}:" if field else ""
        return self._error(f"{self.name}:{line}:{where} {message}")

    # ------------------------------------------------------------ accessors
    def mapping(self, node: Node, field: str, *, required: tuple[str, ...] = (), allowed: tuple[str, ...] = ()) -> dict[str, Node]:
        """A mapping with only ``allowed`` keys and every ``required`` one."""
        if not node.is_map:
            raise self.error(node, field, f"expected a mapping, got {_describe(node)}")
        mapping: dict[str, Node] = node.value
        known = set(required) | set(allowed)
        for key, value in mapping.items():
            if key not in known:
                choices = ", ".join(sorted(known))
                raise self.error(value, _join(field, key), f"unknown key (expected one of: {choices})")
        for key in required:
            if key not in mapping:
                raise self.error(node, _join(field, key), "is required")
        return mapping

    def string(self, node: Node, field: str, *, pattern: re.Pattern[str] | None = None, hint: str = "") -> str:
        if node.is_map or node.is_list or node.value is None:
            raise self.error(node, field, f"expected a string, got {_describe(node)}")
        if isinstance(node.value, str):
            text = node.value
        else:  # a plain scalar the core schema typed (1.0, yes, 0644): take it as written
            text = node.text if node.text is not None else str(node.value)
        text = self._interpolate(text, node, field)
        if pattern is not None and not pattern.fullmatch(text):
            raise self.error(node, field, f"{text!r} is not valid" + (f": {hint}" if hint else ""))
        return text

    def integer(self, node: Node, field: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
        value = node.value
        if isinstance(value, str) and self.env is not None and "$" in value:
            text = self._interpolate(value, node, field)
            try:
                value = int(text, 0)
            except ValueError:
                raise self.error(node, field, f"expected an integer, got {text!r}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(node, field, f"expected an integer, got {_describe(node)}")
        if minimum is not None and value < minimum:
            raise self.error(node, field, f"{value} is less than {minimum}")
        if maximum is not None and value > maximum:
            raise self.error(node, field, f"{value} is more than {maximum}")
        return value

    def boolean(self, node: Node, field: str) -> bool:
        if not isinstance(node.value, bool):
            raise self.error(node, field, f"expected true or false, got {_describe(node)}")
        return node.value

    def sequence(self, node: Node, field: str, *, allow_single: bool = False, non_empty: bool = False) -> list[Node]:
        if node.is_list:
            items: list[Node] = node.value
        elif allow_single and not node.is_map and node.value is not None:
            items = [node]
        else:
            raise self.error(node, field, f"expected a list, got {_describe(node)}")
        if non_empty and not items:
            raise self.error(node, field, "must not be empty")
        return items

    def _interpolate(self, text: str, node: Node, field: str) -> str:
        """``${VAR}``, ``${VAR:-default}`` and ``$$`` (a literal ``$``), when enabled."""
        if self.env is None or "$" not in text:
            return text
        env = self.env

        def sub(match: re.Match[str]) -> str:
            if match.group(1) == "$":
                return "$"
            name, default = match.group(2), match.group(3)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise self.error(node, field, f"environment variable {name} is not set (write ${{{name}:-default}} for a default)")

        out = _ENV_REF.sub(sub, text)
        rest = _ENV_REF.sub("", text)
        if "$" in rest:
            raise self.error(node, field, f"{text!r}: a '$' must start ${{VAR}}, ${{VAR:-default}} or $$")
        return out

    def relative_path(self, text: str) -> str:
        """``text`` resolved against the directory of this document."""
        return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(self.path)), text))


def _join(field: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{field}[{key}]"
    return f"{field}.{key}" if field else key


def field_path(field: str, key: str | int) -> str:
    """``squashfs`` + ``level`` -> ``squashfs.level``; ``files`` + 2 -> ``files[2]``."""
    return _join(field, key)


def _describe(node: Node) -> str:
    if node.is_map:
        return "a mapping"
    if node.is_list:
        return "a list"
    if node.value is None:
        return "nothing"
    if isinstance(node.value, bool):
        return f"a boolean ({node.text})"
    if isinstance(node.value, (int, float)):
        return f"a number ({node.text})"
    if isinstance(node.value, str):
        return f"the string {node.value!r}"
    return f"{type(node.value).__name__} {node.text!r}"
