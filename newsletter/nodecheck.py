"""Typed values out of YAML nodes, each problem kept with its node's line and column; each distinct
zone, cron, query and mail domain is checked once per load (a list repeats them thousands of times).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from newsletter.addresses import AddressChecker
from newsletter.errors import ConfigError, QuerySyntaxError
from newsletter.query import parse

_TAG = "tag:yaml.org,2002:"
_STR = _TAG + "str"
NULL = _TAG + "null"
MAX_SECONDS = 3600
_MAX_DIGITS = 18
_DECIMAL = re.compile(r"[-+]?(?:0|[1-9][0-9_]*)")
_OCTAL = re.compile(r"[-+]?0[0-7_]+")  # YAML 1.1 reads `010` as 8


class Checker:
    """Collects problems with positions while reading values out of YAML nodes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[tuple[int, int, str]] = []
        self.warnings: list[str] = []
        # (check, value, *args) -> (result, None) or (None, message): a file repeats its zones, crons
        # and queries thousands of times.
        self._memo: dict[tuple[Any, ...], tuple[Any, str | None]] = {}
        self._queries: dict[str, tuple[list[str], QuerySyntaxError | None]] = {}
        self._clean_queries: set[str] = set()  # parsed, no warning: nothing to do where they stand again
        self.address = AddressChecker()

    def where(self, node: yaml.Node) -> str:
        return f"{self.path}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"

    def error(self, node: yaml.Node, message: str) -> None:
        self.problems.append((node.start_mark.line, node.start_mark.column, message))

    def warn(self, node: yaml.Node, message: str) -> None:
        self.warnings.append(f"{self.where(node)}: warning: {message}")

    def mapping(self, node: yaml.Node, what: str, allowed: tuple[str, ...]) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            self.error(node, f"{what}: expected a mapping of keys, got {kind(node)}")
            return {}
        out: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                self.error(key_node, f"{what}: keys must be plain names")
                continue
            if key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                suggestion = f" (did you mean '{hint[0]}'?)" if hint else f" (allowed: {', '.join(allowed)})"
                self.error(key_node, f"{what}: unknown key '{key}'{suggestion}")
                continue
            if key in out:
                self.error(key_node, f"{what}: key '{key}' appears twice")
                continue
            out[key] = value_node
        return out

    def scalar(self, node: yaml.Node, what: str, kinds: tuple[str, ...]) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            self.error(node, f"{what}: expected {' or '.join(kinds)}, got {kind(node)}")
            return None
        tag = node.tag.removeprefix(_TAG)
        if isinstance(node, yaml.ScalarNode) and node.style in ("'", '"'):
            tag = "str"
        if tag not in kinds:
            if "str" in kinds and tag in ("int", "float"):
                return node.value  # `name: 2024` is a fine name
            self.error(node, f"{what}: expected {' or '.join(kinds)}, got {tag} '{shown(node.value)}'")
            return None
        if tag in ("int", "float"):
            value, problem = number(node.value, tag)
            if problem:
                self.error(node, f"{what}: {problem}")
            return value
        if tag == "bool":
            return node.value.lower() in ("true", "yes", "on", "y")
        if tag == "null":
            return None
        return node.value

    def string(self, node: yaml.Node, what: str) -> str | None:
        value = self.scalar(node, what, ("str",))
        return None if value is None else str(value)

    def strings(self, node: yaml.Node, what: str) -> list[tuple[str, yaml.Node]]:
        if isinstance(node, yaml.ScalarNode) and node.tag == NULL:
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.error(node, f"{what}: expected a list of strings, got {kind(node)}")
            return []
        out = []
        for i, item in enumerate(node.value):
            if isinstance(item, yaml.ScalarNode) and item.tag == _STR:  # most items: no label to build
                out.append((item.value, item))
                continue
            value = self.string(item, f"{what}[{i}]")
            if value is not None:
                out.append((value, item))
        return out

    def positive_int(self, node: yaml.Node, what: str, minimum: int = 1, maximum: int | None = None) -> int | None:
        value = self.scalar(node, what, ("int",))
        if value is not None and value < minimum:
            self.error(node, f"{what}: must be at least {minimum}, got {value}")
            return None
        if value is not None and maximum is not None and value > maximum:
            self.error(node, f"{what}: must be at most {maximum}, got {value}")
            return None
        return value

    def seconds(self, node: yaml.Node, what: str) -> float | None:
        value = self.scalar(node, what, ("int", "float"))
        if value is not None and not 0 < value <= MAX_SECONDS:
            self.error(node, f"{what}: must be more than 0 and at most {MAX_SECONDS} seconds, got {value}")
            return None
        return value

    def checked(self, node: yaml.Node, what: str, check: Callable[..., Any], *args: Any,
                remember: bool = True) -> Any:
        """check(value, *args) on a string value; the outcome is remembered per distinct input
        (unless `remember` is false: values that never repeat, such as addresses)."""
        value = self.string(node, what)
        if value is None:
            return None
        if not remember:
            try:
                return check(value, *args)
            except ValueError as exc:
                self.error(node, f"{what}: {exc}")
                return None
        key = (check, value, *args)
        outcome = self._memo.get(key)
        if outcome is None:
            try:
                outcome = (check(value, *args), None)
            except ValueError as exc:
                outcome = (None, str(exc))
            self._memo[key] = outcome
        result, problem = outcome
        if problem is not None:
            self.error(node, f"{what}: {problem}")
        return result

    def queries(self, items: list[tuple[str, yaml.Node]], what: str) -> None:
        clean = self._clean_queries
        for j, (text, node) in enumerate(items):
            if text not in clean:
                self.query(node, what, j, text)

    def query(self, node: yaml.Node, what: str, index: int, text: str) -> None:
        """Parse a query (once per distinct text); `what[index]` names it in a message."""
        known = self._queries.get(text)
        if known is None:
            try:
                known = (parse(text).warnings(), None)
            except QuerySyntaxError as syntax_error:
                known = ([], syntax_error)
            self._queries[text] = known
            if known == ([], None):
                self._clean_queries.add(text)
        warnings, exc = known
        if exc is not None:
            line, col = node.start_mark.line, node.start_mark.column
            if isinstance(node, yaml.ScalarNode) and node.end_mark.line == line and "\\" not in node.value:
                col += (1 if node.style in ("'", '"') else 0) + exc.column - 1  # point at the character
            self.problems.append((line, col, f"{what}[{index}]: {exc}"))
            return
        for warning in warnings:
            self.warn(node, f"{what}[{index}]: '{text}' {warning}")

    def raise_if_any(self) -> None:
        if self.problems:
            lines = tuple(f"{self.path}:{line + 1}:{col + 1}: {msg}" if line >= 0 else f"error in environment: {msg}"
                          for line, col, msg in sorted(self.problems))
            raise ConfigError("\n".join(lines), lines)


def kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return f"{node.tag.removeprefix(_TAG)} '{shown(node.value)}'"


def shown(text: str) -> str:
    """A value as quoted in a message: a 5,000-digit number is not repeated whole."""
    return text if len(text) <= 40 else f"{text[:30]}… ({len(text)} characters)"


def number(text: str, tag: str) -> tuple[int | float | None, str | None]:
    """A YAML int or float scalar as a number, or why not: YAML 1.1 reads `010` as octal, `1:30` as
    base 60 and has `.inf` and `.nan`; none of these is what a user meant by a count or a timeout."""
    if ":" in text:
        return None, f"'{shown(text)}' is a base-60 number in YAML 1.1{_read_as(text)}; write a plain decimal number"
    minus, digits = "-" if text.startswith("-") else "", text.lstrip("+-").replace("_", "")
    if tag == "int":
        if _OCTAL.fullmatch(text):
            return None, (f"'{shown(text)}' has a leading zero, which YAML 1.1 reads as an octal number"
                          f"{_read_as(text)}; write {minus}{digits.lstrip('0') or '0'}")
        if not _DECIMAL.fullmatch(text):
            return None, f"'{shown(text)}' is not a decimal number{_read_as(text)}; write it in decimal"
        if len(digits) > _MAX_DIGITS:
            return None, f"'{shown(text)}' is too large"
        return int(text.replace("_", "")), None
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        return None, f"'{shown(text)}' is not a finite number"
    return value, None


def _read_as(text: str) -> str:
    """` (N)`: what YAML 1.1 makes of a short odd number, to show the user; empty if too long."""
    if len(text) > 40:
        return ""
    try:
        return f" ({yaml.safe_load(text)})"
    except (ValueError, yaml.YAMLError):
        return ""
