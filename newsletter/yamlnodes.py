"""YAML text -> node tree with a line/column mark on every node, fast: libyaml's composer when PyYAML
has it, each scalar's implicit tag resolved only when it could be other than a string. Nothing is
constructed from the nodes here, so no tag can execute anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

import yaml

from newsletter.errors import ConfigError

_BASE = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DEFAULT_TAGS = {yaml.ScalarNode: yaml.SafeLoader.DEFAULT_SCALAR_TAG,
                 yaml.SequenceNode: yaml.SafeLoader.DEFAULT_SEQUENCE_TAG,
                 yaml.MappingNode: yaml.SafeLoader.DEFAULT_MAPPING_TAG}
# First characters of a plain scalar that may resolve to int, float, bool, null, a timestamp, `<<` or
# `=`; any other plain scalar is a string. (None would be a wildcard resolver: then always resolve.)
_TYPED_FIRST = frozenset(yaml.SafeLoader.yaml_implicit_resolvers)


class _Loader(_BASE):  # type: ignore[misc,valid-type]
    """SafeLoader's tags, without a Python-level regex search for every plain word in the file (a
    fifth of the time to compose 100,000 subscribers). Path resolvers are not used by SafeLoader."""

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.ScalarNode and implicit[0] and (None in _TYPED_FIRST or value[:1] in _TYPED_FIRST):
            return super().resolve(kind, value, implicit)  # type: ignore[no-any-return]
        return _DEFAULT_TAGS[kind]

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        pass

    def ascend_resolver(self) -> None:
        pass


# libyaml's loader composes the whole document in C; PyYAML's Python composer over its events can
# stop after one key.
_COMPOSER_BASES = (_Loader,) if issubclass(_Loader, yaml.composer.Composer) else (yaml.composer.Composer, _Loader)


class _NodeByNode(*_COMPOSER_BASES):  # type: ignore[misc]
    def __init__(self, stream: str | BinaryIO) -> None:
        _Loader.__init__(self, stream)  # type: ignore[call-arg]
        self.anchors: dict[str, yaml.Node] = {}

    def skip_node(self) -> None:
        depth = 0
        while True:
            event = self.get_event()
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
            if depth == 0:
                return


def compose(text: str, path: Path) -> yaml.Node | None:
    """The node tree of a one-document file (None if it is empty), or ConfigError at FILE:LINE:COL.

    A file libyaml refuses is read again by the pure-Python loader, whose verdict stands: libyaml
    words its errors differently (each message and position stays the one users and tests know),
    and refuses a few odd files PyYAML reads (`[a, b 'c']`). It accepts a few PyYAML refuses (a
    tab starting a key, `?` inside a flow mapping, empty tagged nodes); the schema then names them.
    """
    try:
        return yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as fast_error:
        if _BASE is yaml.SafeLoader:
            raise _config_error(fast_error, path) from None
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as pure_error:
        raise _config_error(pure_error, path) from None


def _config_error(error: yaml.YAMLError, path: Path) -> ConfigError:
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        return ConfigError(f"{where}: invalid YAML: {error.problem or error.context}")
    return ConfigError(f"{path}: invalid YAML: {error}")


def compose_value(stream: str | BinaryIO, key: str) -> yaml.Node | None:
    """The value of one top-level key, reading and composing nothing after it (from a binary file,
    libyaml reads a chunk at a time); None if the document is not a mapping, lacks the key, or has a
    YAML error on the way (compose() then says which)."""
    loader = _NodeByNode(stream)
    try:
        for event in (yaml.StreamStartEvent, yaml.DocumentStartEvent, yaml.MappingStartEvent):
            if not loader.check_event(event):
                return None
            loader.get_event()
        while not loader.check_event(yaml.MappingEndEvent):
            node = loader.compose_node(None, None)
            if isinstance(node, yaml.ScalarNode) and node.value == key:
                return loader.compose_node(None, None)  # type: ignore[no-any-return]
            loader.skip_node()
    except yaml.YAMLError:
        return None
    finally:
        loader.dispose()
    return None
