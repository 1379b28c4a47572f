"""The readers' settings in subscribers.yaml: `subscribe`, `subscribe_domains`, `confirm_hours`,
validated at the edge with file:line:col, and what the sign-up page makes of them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from newsletter.config import load
from newsletter.errors import ConfigError
from newsletter.signup import Policy


def _write(tmp_path: Path, **settings: object) -> Path:
    doc = {"newsletter": {"title": "T", "sender": "T <t@example.org>", "base_url": "https://digest.example.org",
                          **settings},
           "subscribers": [{"email": "ada@example.org", "keywords": ["rag"]}]}
    path = tmp_path / "subscribers.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_defaults_open_the_page_when_there_is_a_base_url(tmp_path: Path) -> None:
    settings = load(_write(tmp_path), {}).settings
    assert (settings.subscribe, settings.subscribe_domains, settings.confirm_hours) == (True, (), 48)
    assert Policy.from_settings(settings) == Policy(True, (), 48)
    assert not Policy.from_settings(replace(settings, base_url=None)).enabled  # its links need one


def test_the_operator_closes_or_restricts_the_page(tmp_path: Path) -> None:
    settings = load(_write(tmp_path, subscribe=False), {}).settings
    assert not Policy.from_settings(settings).enabled
    settings = load(_write(tmp_path, subscribe_domains=["@Lab.Example.org", "uni.example"], confirm_hours=24),
                    {}).settings
    policy = Policy.from_settings(settings)
    assert policy.domains == ("lab.example.org", "uni.example") and policy.confirm_hours == 24
    assert policy.allows("me@lab.example.org") and policy.allows("me@x.lab.example.org")
    assert not policy.allows("me@evil-lab.example.org") and not policy.allows("me@example.org")


def test_bad_values_are_reported_with_their_position(tmp_path: Path) -> None:
    path = _write(tmp_path, subscribe="sometimes", subscribe_domains=["lab.example.org", "not a domain"],
                  confirm_hours=0)
    with pytest.raises(ConfigError) as caught:
        load(path, {})
    problems = "\n".join(caught.value.problems)
    assert "newsletter.subscribe: expected" in problems
    assert "newsletter.subscribe_domains[1]: 'not a domain' is not a domain name (e.g. lab.example.org)" in problems
    assert "newsletter.confirm_hours: must be at least 1, got 0" in problems
    assert all(p.startswith(f"{path}:") for p in caught.value.problems)


def test_the_bounce_maildir_is_a_folder_beside_the_subscribers_file(tmp_path: Path) -> None:
    assert load(_write(tmp_path), {}).settings.bounce_maildir is None
    settings = load(_write(tmp_path, bounces={"maildir": "mail/bounces"}), {}).settings
    assert settings.bounce_maildir == (tmp_path / "mail" / "bounces").resolve()  # need not exist yet
    (tmp_path / "a-file").write_text("x")
    for value, message in (({"maildir": "a-file"}, "newsletter.bounces.maildir: 'a-file' is not a folder "
                                                   "(a Maildir, with cur/ and new/)"),
                           ({"mbox": "x"}, "newsletter.bounces: unknown key 'mbox'"),
                           ({}, "newsletter.bounces: missing 'maildir' (the Maildir that receives bounce reports)")):
        with pytest.raises(ConfigError) as caught:
            load(_write(tmp_path, bounces=value), {})
        assert any(message in p for p in caught.value.problems), caught.value.problems
