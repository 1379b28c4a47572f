"""Comment-preserving edits of subscribers.yaml: validated before writing, written atomically,
serialised by a lock against a concurrent editor or the unsubscribe endpoint.

ruamel.yaml's round-trip mode keeps comments, key order, quoting and blank lines of everything an
edit does not touch. The new text is validated with exactly the rules `newsletter validate` uses;
on any problem the file is left byte-for-byte unchanged.
"""

from __future__ import annotations

import fcntl
import io
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from newsletter.addresses import check_address, normalise_address
from newsletter.config import loads
from newsletter.errors import ConfigError
from newsletter.models import Config

LIST_KEYS = ("keywords", "exclude")
INT_KEYS = ("max_entries", "min_upvotes")
BOOL_KEYS = ("send_empty", "paused", "unsubscribed")
STR_KEYS = ("name", "schedule", "timezone")
SETTABLE = STR_KEYS + LIST_KEYS + INT_KEYS + BOOL_KEYS


def _yaml() -> YAML:
    y = YAML()
    y.preserve_quotes = True
    y.indent(mapping=2, sequence=4, offset=2)
    y.width = 4096
    return y


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path`'s sibling lock file, held while reading, checking and writing."""
    lock_path = path.with_name(f".{path.name}.lock")
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_atomically(path: Path, text: str) -> None:
    """Temporary file in the same folder, fsync, rename over the original, fsync the folder."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _find(seq: CommentedSeq, email: str) -> int | None:
    key = normalise_address(email)
    for i, item in enumerate(seq):
        if isinstance(item, Mapping) and isinstance(item.get("email"), str) and \
                normalise_address(item["email"]) == key:
            return i
    return None


def edit(path: Path, change: Callable[[CommentedMap], str | tuple[str, str]],
         env: Mapping[str, str] | None = None, verify: Callable[[Config], None] | None = None) -> tuple[Config, str]:
    """Apply `change` to the loaded document under the lock; validate (and `verify` the new config,
    which raises ConfigError to refuse it); write. Returns the new config and the change's
    description. Raises ConfigError (file unchanged) on any problem."""
    with locked(path):
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such file") from None
        loads(text, path, env or {})  # refuse to edit a file that is already invalid
        y = _yaml()
        try:
            doc = y.load(text)
        except YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
        doc.source_text = text  # type: ignore[attr-defined]  # for edits made on the text itself
        result = change(doc)
        if isinstance(result, tuple):
            what, new_text = result
        else:
            what = result
            out = io.StringIO()
            y.dump(doc, out)
            new_text = out.getvalue()
        try:
            config = loads(new_text, path, env or {})
        except ConfigError as exc:
            raise ConfigError(f"{path}: the edit was not saved:\n" + "\n".join(exc.problems),
                              exc.problems) from None
        if verify is not None:
            verify(config)
        if new_text != text:
            write_atomically(path, new_text)
        return config, what


def _subscribers(doc: CommentedMap) -> CommentedSeq:
    seq = doc.get("subscribers")
    if seq is None:
        seq = doc["subscribers"] = CommentedSeq()
    return seq


def _entry(doc: CommentedMap, email: str) -> CommentedMap:
    seq = _subscribers(doc)
    i = _find(seq, email)
    if i is None:
        raise ConfigError(f"no subscriber '{email}' (see `newsletter subscribers list`)")
    return seq[i]


def _flow(values: list[str]) -> CommentedSeq:
    seq = CommentedSeq(values)
    seq.fa.set_flow_style()
    return seq


def add(email: str, *, name: str | None = None, keywords: list[str] | None = None,
        exclude: list[str] | None = None, schedule: str | None = None, timezone: str | None = None,
        max_entries: int | None = None) -> Callable[[CommentedMap], str]:
    def change(doc: CommentedMap) -> str:
        try:
            address = check_address(email)
        except ValueError as exc:
            raise ConfigError(f"email '{email}': {exc}") from None
        seq = _subscribers(doc)
        if _find(seq, address) is not None:
            raise ConfigError(f"'{address}' is already a subscriber (use `subscribers set` to change it)")
        item = CommentedMap()
        item["email"] = address
        if name:
            item["name"] = name
        item["keywords"] = _flow(list(keywords or []))
        if exclude:
            item["exclude"] = _flow(list(exclude))
        if schedule:
            item["schedule"] = schedule
        if timezone:
            item["timezone"] = timezone
        if max_entries is not None:
            item["max_entries"] = max_entries
        seq.append(item)
        return f"added {address}"
    return change


def _value(key: str, raw: list[str]) -> Any:
    if key in LIST_KEYS:
        return _flow(raw)
    if len(raw) != 1:
        raise ConfigError(f"'{key}' takes one value, got {len(raw)}")
    value = raw[0]
    if key in INT_KEYS:
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"'{key}' must be a whole number, got '{value}'") from None
    if key in BOOL_KEYS:
        if value.lower() not in ("true", "false", "yes", "no"):
            raise ConfigError(f"'{key}' must be true or false, got '{value}'")
        return value.lower() in ("true", "yes")
    return value


def set_value(email: str, key: str, values: list[str]) -> Callable[[CommentedMap], str]:
    if key not in SETTABLE:
        import difflib

        hint = difflib.get_close_matches(key, SETTABLE, n=1)
        extra = f" (did you mean '{hint[0]}'?)" if hint else f" (one of {', '.join(SETTABLE)})"
        raise ConfigError(f"unknown key '{key}'{extra}")

    def change(doc: CommentedMap) -> str:
        item = _entry(doc, email)
        item[key] = _value(key, values)
        return f"set {key} of {item['email']}"
    return change


def change_list(email: str, key: str, *, add: list[str] = (), remove: list[str] = ()) -> Callable[[CommentedMap], str]:  # type: ignore[assignment]
    def change(doc: CommentedMap) -> str:
        item = _entry(doc, email)
        current = item.get(key)
        if current is None:
            current = item[key] = _flow([])
        for query in remove:
            if query not in current:
                raise ConfigError(f"{item['email']} has no {key} query '{query}' "
                                  f"(it has: {', '.join(map(str, current)) or 'none'})")
            current.remove(query)
        for query in add:
            if query in current:
                raise ConfigError(f"{item['email']} already has the {key} query '{query}'")
            current.append(query)
        if not current and key == "exclude":
            del item[key]
        return f"changed {key} of {item['email']}"
    return change


def remove(email: str) -> Callable[[CommentedMap], tuple[str, str]]:
    """Removed on the text: the subscriber's lines and the comment lines directly above them go,
    so the comments of the neighbours stay with the neighbours."""
    def change(doc: CommentedMap) -> tuple[str, str]:
        seq = _subscribers(doc)
        i = _find(seq, email)
        if i is None:
            raise ConfigError(f"no subscriber '{email}' (see `newsletter subscribers list`)")
        lines = doc.source_text.splitlines(keepends=True)  # type: ignore[attr-defined]
        start = _block_start(lines, seq[i].lc.line)
        if i + 1 < len(seq):
            end = _block_start(lines, seq[i + 1].lc.line)
        else:
            end = _block_end(lines, seq[i].lc.line)
        return f"removed {seq[i]['email']}", "".join(lines[:start] + lines[end:])
    return change


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _block_start(lines: list[str], item_line: int) -> int:
    """The item's `- ` line, moved up over the comment lines directly above it."""
    start = item_line
    while start > 0 and lines[start - 1].lstrip().startswith("#"):
        start -= 1
    return start


def _block_end(lines: list[str], item_line: int) -> int:
    """One past the last line of the last item: before the next line indented at most like `- `."""
    dash = _indent(lines[item_line])
    end = item_line + 1
    last = end
    while end < len(lines):
        stripped = lines[end].strip()
        if stripped and not stripped.startswith("#") and _indent(lines[end]) <= dash:
            break
        if stripped:
            last = end + 1
        end += 1
    return last if end < len(lines) else len(lines)


def flag(email: str, key: str, on: bool) -> Callable[[CommentedMap], str]:
    """pause/resume (`paused`) and unsubscribe (`unsubscribed`): true adds the flag, false drops it."""
    def change(doc: CommentedMap) -> str:
        item = _entry(doc, email)
        if on:
            item[key] = True
        elif key in item:
            del item[key]
        return f"{key} {'set' if on else 'cleared'} for {item['email']}"
    return change
