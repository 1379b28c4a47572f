"""The docs move with the code: every command has --help and an example in the README."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from conftest import run
from newsletter.cli import build_parser

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _commands() -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []

    def walk(parser: argparse.ArgumentParser, prefix: tuple[str, ...]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    out.append(prefix + (name,))
                    walk(sub, prefix + (name,))

    walk(build_parser(), ())
    return out


COMMANDS = _commands()


def test_the_command_list_is_complete() -> None:
    names = {c[0] for c in COMMANDS}
    assert names == {"validate", "ingest", "entries", "match", "preview", "send", "subscribers", "run",
                     "serve", "status", "db", "bounces", "explain"}


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_and_a_readme_example(command: tuple[str, ...],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert run(*command, "--help") == 0
    assert f"usage: newsletter {' '.join(command)}" in capsys.readouterr().out
    assert f"newsletter {' '.join(command)}" in README, f"README has no example of `newsletter {' '.join(command)}`"


def test_readme_opens_with_the_two_commands() -> None:
    head = README[:1500]
    assert "pip install . && newsletter --file subscribers.example.yaml preview" in head
    assert "pip install -e '.[test]' && python -m pytest -q" in head
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "python -m pip install -q --disable-pip-version-check -e '.[test]'" in ci
    assert ci.rstrip().endswith("python -m pytest -q")
