"""The files `newsletter preview` writes: one name per address, readable by their owner only."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from browser import chromium
from conftest import run, write_config
from newsletter.preview import file_stem

AT = "2026-11-27T09:00:00+00:00"
PEOPLE = [("jörg@example.org", "Jörg"), ("jürg@example.org", "Jürg"), ("ada@example.org", "Ada")]


def _subscribers() -> str:
    rows = [{"email": email, "name": name, "keywords": ['"language model"']} for email, name in PEOPLE]
    return "".join("  " + line + "\n" for line in yaml.safe_dump(rows, allow_unicode=True).splitlines())


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_names_that_fold_alike_get_files_of_their_own(tmp_path: Path) -> None:
    """Finding 12: jörg@ and jürg@ both used to become j_rg@example.org.*"""
    assert file_stem("ada@example.org") == "ada@example.org"
    assert file_stem("jörg@example.org") != file_stem("jürg@example.org")
    assert file_stem("jörg@example.org").startswith("j_rg@example.org~")
    project = write_config(tmp_path, subscribers=_subscribers())
    out = tmp_path / "preview"
    assert run("--file", str(project), "preview", "--out", str(out), "--at", AT) == 0
    htmls = sorted(p.name for p in out.glob("*.html") if p.name != "index.html")
    assert len(htmls) == 3 and "ada@example.org.html" in htmls
    with chromium() as browser:
        page = browser.new_page()
        for email, name in PEOPLE:
            page.goto((out / "index.html").as_uri())
            page.locator("tr", has_text=email).get_by_role("link", name="HTML").click()
            page.wait_for_load_state()
            assert f"for {name}" in page.locator("body").inner_text(), email


def test_preview_files_are_private(tmp_path: Path, umask_022: None) -> None:
    """Finding 21: the files hold working unsubscribe links; they used to follow the umask (0644)."""
    project = write_config(tmp_path, subscribers=_subscribers())
    out = tmp_path / "preview"
    out_existing = tmp_path / "existing"
    out_existing.mkdir()
    stale = out_existing / "ada@example.org.eml"
    stale.write_text("old")
    stale.chmod(0o644)
    for folder in (out, out_existing):
        assert run("--file", str(project), "preview", "--out", str(folder), "--at", AT) == 0
        files = list(folder.iterdir())
        assert len(files) == 10  # 3 x (html, txt, eml) and the index
        for f in files:
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f.name
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert b"Subject:" in stale.read_bytes()  # rewritten, not just re-moded
