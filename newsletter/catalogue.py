"""The theme's words in one language: `catalogue/<language>.json` from the templates folder (a
user's folder first), English for any key or language it lacks."""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from typing import Any

import jinja2

from newsletter.errors import RenderError


class Catalogue:
    """The words of one language, looked up by key and formatted with named values."""

    def __init__(self, env: jinja2.Environment, language: str) -> None:
        self.language = language
        self.words: dict[str, Any] = self._load(env, "en")
        if language != "en":
            self.words = {**self.words, **self._load(env, language.split("-")[0].lower())}

    @staticmethod
    def _load(env: jinja2.Environment, code: str) -> dict[str, Any]:
        if not re.fullmatch(r"[a-z]{2,3}", code) or env.loader is None:
            return {}
        try:
            source = env.loader.get_source(env, f"catalogue/{code}.json")[0]
        except jinja2.TemplateNotFound:
            return {}
        try:
            found = json.loads(source)
        except ValueError as exc:
            raise RenderError(f"catalogue/{code}.json: not valid JSON ({exc})") from exc
        return found if isinstance(found, dict) else {}

    def __call__(self, key: str, **values: Any) -> str:
        return self.wording(key).format(**values)

    def wording(self, key: str) -> str:
        """The words of `key` as the catalogue has them, before their `{values}` are put in."""
        return str(self.words.get(key, key))

    def count(self, key: str, n: int, **values: Any) -> str:
        return self(f"{key}_one" if n == 1 else f"{key}_many", n=n, **values)

    def day(self, d: date | datetime) -> str:
        return self("date", day=d.day, month=self.words["months"][d.month - 1], year=d.year)
