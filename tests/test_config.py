"""The configuration loader: libyaml gives the same nodes, marks and messages as PyYAML's own loader;
odd numbers, URLs and settings are refused at FILE:LINE:COL; the warnings validate prints; and
load_settings() agrees with load()."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import run
from newsletter import yamlnodes
from newsletter.config import NO_ONE_CLICK_WARNING, UNSUBSCRIBED_IN_YAML_WARNING, load, load_settings
from newsletter.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
libyaml = pytest.mark.skipif(not getattr(yaml, "__with_libyaml__", False), reason="PyYAML built without libyaml")


class Raw(str):
    """A scalar written plain, as a user types it (`010`, `1:30`, `.inf`), whatever YAML 1.1 makes of it."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(Raw, lambda d, v: d.represent_scalar(d.resolve(yaml.ScalarNode, str(v), (True, False)),
                                                             str(v), style=""))


def document(**settings: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"title": "Test Digest", "sender": "Test Digest <digest@example.org>",
                            "base_url": "https://digest.example.org",
                            "smtp": {"host": "127.0.0.1", "port": 2525, "tls": "none"}}
    base.update(settings)
    return {"newsletter": {k: v for k, v in base.items() if v is not None},
            "subscribers": [{"email": "ada@example.org", "keywords": ["model"]}]}


def write(folder: Path, doc: dict[str, Any]) -> Path:
    path = folder / "subscribers.yaml"
    path.write_text(yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000), encoding="utf-8")
    return path


def at(path: Path, needle: str, value_of: str | None = None) -> str:
    """FILE:LINE:COL (1-based, as messages say) of the first `needle` in the file, or of the value
    after `value_of: ` on the line where `needle` first stands."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if needle in line:
            col = line.index(f"{value_of}: ") + len(value_of) + 2 if value_of else line.index(needle)
            return f"{path}:{number}:{col + 1}"
    raise AssertionError(f"{needle!r} not in {path}")


def validate_ok(path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    code, out, err = validate(path, capsys)
    assert (code, err) == (0, "")
    return out.splitlines()


def validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = run("--file", str(path), "validate")
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- libyaml: the same tree, marks and messages as the pure-Python loader ------------------------

TRICKY = """\
# comment
newsletter:   # trailing comment
  title: "Ünïcödé — 論文 digest 📰"
  sender: 'D <d@example.org>'
  numbers: [yes, No, ~, null, '', 010, 0x1F, 0b11, 1:30, 1:30.5, .inf, -.Inf, .NaN, 2026-01-01, 1_000, +5, -.5, 1.5e+3]
  odd: [<<, =, "5", '6', !!str 7, !!int "8", a b, tag:x]
  block: |
    two lines,
      one indented
  folded: >-
    folded
    text
  flow: {a: [1, 2, {b: c}], "d e": 'f''g'}
  anchors: &a [x, y]
  again: *a
subscribers:
  - email: 李@例え.jp
    keywords: ['"language model" AND (quantization OR distillation)', "title:diffusion", 'author:"Jörg Müller"']
  -   email:    spaced@example.org
      keywords:
        - multi
          line plain
        - "escaped \\t tab \\u00e9"
"""


def _flatten(node: yaml.Node) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    stack = [node]
    while stack:
        n = stack.pop()
        row = (type(n).__name__, n.tag, n.start_mark.line, n.start_mark.column, n.end_mark.line, n.end_mark.column)
        if isinstance(n, yaml.ScalarNode):
            out.append((*row, n.value, n.style or None))
        elif isinstance(n, yaml.SequenceNode):
            out.append((*row, len(n.value)))  # flow_style differs (False/None) and is never read
            stack.extend(reversed(n.value))
        else:
            out.append((*row, len(n.value)))
            for k, v in reversed(n.value):
                stack.extend((v, k))
    return out


@pytest.mark.parametrize("name", ["tricky", "example", "bench"])
def test_the_fast_loader_gives_the_pure_loaders_tree_tags_and_marks(name: str) -> None:
    if name == "tricky":
        text = TRICKY
    elif name == "example":
        text = (ROOT / "subscribers.example.yaml").read_text(encoding="utf-8")
    else:  # the benchmark's kind of file: long lists, quoting chosen by the dumper
        doc = document()
        doc["subscribers"] = [{"email": f"user{i}@example.org", "name": f"Üser {i}", "keywords": [
            '"language model"', "title:diffusion", "NOT survey", f"q{i} OR r{i}"], "timezone": "Europe/Paris",
            "schedule": "30 8 * * mon-fri", "max_entries": i} for i in range(50)]
        text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    pure = yaml.compose(text, Loader=yaml.SafeLoader)
    fast = yaml.compose(text, Loader=yamlnodes._Loader)
    assert _flatten(fast) == _flatten(pure)


@libyaml
def test_the_fast_loader_is_libyamls() -> None:
    assert issubclass(yamlnodes._Loader, yaml.CSafeLoader)


BROKEN = [
    "newsletter:\n  title: [unclosed\nsubscribers: []\n",
    "newsletter:\n  title: 'unclosed\nsubscribers: []\n",
    "newsletter:\n  title: a\n    b: c\n",
    "newsletter:\n\ttitle: tab\n",
    "newsletter: {a: 1\nsubscribers: []\n",
    "newsletter:\n  - a\n  b: c\n",
    "newsletter: *nothing\n",
    "newsletter: &a x\nsubscribers: &a y\n",
    "a: b\n---\nc: d\n",
    "newsletter: \"bad \\q escape\"\n",
    "newsletter: ok\n@reserved\n",
    "newsletter: x\x07\n",
]


@pytest.mark.parametrize("text", BROKEN, ids=range(len(BROKEN)))
def test_broken_yaml_keeps_the_pure_loaders_message_and_position(text: str, tmp_path: Path) -> None:
    path = tmp_path / "subscribers.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(yaml.YAMLError) as pure:
        yaml.compose(text, Loader=yaml.SafeLoader)
    error = pure.value
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        assert mark is not None
        expected = f"{path}:{mark.line + 1}:{mark.column + 1}: invalid YAML: {error.problem or error.context}"
    else:  # the reader's errors carry a position of their own
        expected = f"{path}: invalid YAML: {error}"
    with pytest.raises(ConfigError) as got:
        load(path)
    assert str(got.value) == expected


def test_an_unclosed_flow_list_message_word_for_word(tmp_path: Path) -> None:
    path = tmp_path / "subscribers.yaml"
    path.write_text("newsletter:\n  title: [unclosed\nsubscribers: []\n")
    with pytest.raises(ConfigError) as got:
        load(path)
    assert str(got.value) == f"{path}:3:12: invalid YAML: expected ',' or ']', but got ':'"


def test_the_collector_is_back_after_a_load_and_after_a_refused_file(tmp_path: Path) -> None:
    path = write(tmp_path, document())
    assert gc.isenabled()
    load(path)
    assert gc.isenabled()
    path.write_text("newsletter: [\n")
    with pytest.raises(ConfigError):
        load(path)
    assert gc.isenabled()


def test_each_repeated_bad_value_is_reported_where_it_stands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Checks are remembered per distinct value; the problem is still reported at every place."""
    doc = document()
    doc["subscribers"] = [{"email": f"u{i}@example.org", "keywords": ['"unclosed', "NOT survey"],
                           "timezone": "Mars/Olympus", "schedule": "61 * * * *"} for i in range(3)]
    doc["subscribers"] += [{"email": f"v{i}@example.invalid", "keywords": ["x"]} for i in range(2)]
    path = write(tmp_path, doc)
    code, out, err = validate(path, capsys)
    assert code == 2
    lines = path.read_text().splitlines()
    for what, needle, message in [
        ("keywords[0]", "'\"unclosed'", "unclosed quote at column 1"),
        ("timezone", "Mars/Olympus", "unknown time zone 'Mars/Olympus' (use an IANA name such as Europe/London)"),
        ("schedule", "61 * * * *", "bad cron '61 * * * *': Error validating expression '61': "
                                   "the last value (61) is higher than the maximum value (59)"),
    ]:
        rows = [n for n, line in enumerate(lines, 1) if needle in line]
        assert len(rows) == 3
        for i, row in enumerate(rows):
            col = lines[row - 1].index(needle) + 1 + (1 if what.startswith("keywords") else 0)
            assert f"{path}:{row}:{col}: subscribers[{i}] (u{i}@example.org).{what}: {message}" in err
    for i in range(2):
        assert (f"{at(path, f'v{i}@example.invalid')}: subscribers[{3 + i}].email: The part after the @-sign is a "
                "special-use or reserved name that cannot be used with email.") in err
    assert err.count("can never match") == 0  # warnings are printed only for a valid file
    doc["subscribers"] = [{"email": f"u{i}@example.org", "keywords": ["NOT survey"]} for i in range(2)]
    path = write(tmp_path, doc)
    code, out, err = validate(path, capsys)
    assert code == 0
    lines = path.read_text().splitlines()
    rows = [(n, line.index("NOT survey") + 1) for n, line in enumerate(lines, 1) if "NOT survey" in line]
    assert out.splitlines()[:2] == [
        f"{path}:{row}:{col}: warning: subscribers[{i}] (u{i}@example.org).keywords[0]: 'NOT survey' "
        "can never match: every term is negated" for i, (row, col) in enumerate(rows)]


# --- issue 15 item 4: YAML 1.1 numbers ------------------------------------------------------------

NUMBERS = [
    ("max_entries", "05", "'05' has a leading zero, which YAML 1.1 reads as an octal number (5); write 5"),
    ("max_entries", "010", "'010' has a leading zero, which YAML 1.1 reads as an octal number (8); write 10"),
    ("min_upvotes", "1:30", "'1:30' is a base-60 number in YAML 1.1 (90); write a plain decimal number"),
    ("max_entries", "0x1F", "'0x1F' is not a decimal number (31); write it in decimal"),
    ("max_entries", "7" * 5000, f"'{'7' * 30}… (5000 characters)' is too large"),
    ("max_entries", ".inf", "expected int, got float '.inf'"),
    ("smtp.timeout", ".inf", "'.inf' is not a finite number"),
    ("smtp.timeout", "-.inf", "'-.inf' is not a finite number"),
    ("smtp.timeout", ".nan", "'.nan' is not a finite number"),
    ("smtp.timeout", "1:30", "'1:30' is a base-60 number in YAML 1.1 (90); write a plain decimal number"),
    ("smtp.timeout", "1:30.5", "'1:30.5' is a base-60 number in YAML 1.1 (90.5); write a plain decimal number"),
    ("smtp.timeout", "010", "'010' has a leading zero, which YAML 1.1 reads as an octal number (8); write 10"),
    ("smtp.rate_limit", "1" * 400 + ".0e+400", f"'{'1' * 30}… (407 characters)' is not a finite number"),
    ("smtp.port", "0b11", "'0b11' is not a decimal number (3); write it in decimal"),
]


@pytest.mark.parametrize(("key", "raw", "message"), NUMBERS, ids=[f"{k}={r[:12]}" for k, r, _ in NUMBERS])
def test_yaml_11_numbers_are_refused_at_their_position(key: str, raw: str, message: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    doc = document()
    if key.startswith("smtp."):
        doc["newsletter"]["smtp"][key[5:]] = Raw(raw)
    else:
        doc["newsletter"][key] = Raw(raw)
    path = write(tmp_path, doc)
    code, out, err = validate(path, capsys)
    assert code == 2
    assert err == f"{at(path, raw)}: newsletter.{key}: {message}\n"
    assert "Traceback" not in err


def test_a_huge_number_in_a_subscriber_is_refused_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = document()
    doc["subscribers"][0]["max_entries"] = Raw("9" * 5000)
    doc["subscribers"][0]["min_upvotes"] = Raw("010")
    path = write(tmp_path, doc)
    code, out, err = validate(path, capsys)
    assert code == 2
    assert err.splitlines() == [
        f"{at(path, '9' * 5000)}: subscribers[0] (ada@example.org).max_entries: '{'9' * 30}… (5000 characters)' "
        "is too large",
        f"{at(path, '010')}: subscribers[0] (ada@example.org).min_upvotes: '010' has a leading zero, which YAML 1.1 "
        "reads as an octal number (8); write 10",
        "error: 2 problems in " + str(path),
    ]


def test_plain_numbers_still_load(tmp_path: Path) -> None:
    doc = document(max_entries=Raw("1_0"), min_upvotes=Raw("+3"))
    doc["newsletter"]["smtp"].update(timeout=Raw("2.5"), rate_limit=Raw("0"), port=Raw("587"))
    settings = load(write(tmp_path, doc)).settings
    assert (settings.max_entries, settings.min_upvotes) == (10, 3)
    assert (settings.smtp.timeout, settings.smtp.rate_limit, settings.smtp.port) == (2.5, 0, 587)


# --- issue 15 item 7: base_url goes into every message's headers ---------------------------------------

BASE_URLS = [
    ("https://digest.example.org\r\nBcc: victim@example.net",
     "a URL cannot contain line breaks or control characters (found U+000D)"),
    ("https://digest.example.org/\nx", "a URL cannot contain line breaks or control characters (found U+000A)"),
    ("https://digest.example.org/\x00", "a URL cannot contain line breaks or control characters (found U+0000)"),
    ("https://digest.example.org/\u2028", "a URL cannot contain line breaks or control characters (found U+2028)"),
    ("ftp://digest.example.org", "'ftp://digest.example.org' is not an http(s) URL"),
    ("javascript:alert(1)", "'javascript:alert(1)' is not an http(s) URL"),
    ("digest.example.org", "'digest.example.org' is not an http(s) URL"),
    ("https://digest.example.org/?list=1", "'https://digest.example.org/?list=1' has a query or fragment; give the "
                                           "address links start from, such as https://digest.example.org"),
    ("https://digest.example.org/#top", "'https://digest.example.org/#top' has a query or fragment; give the "
                                        "address links start from, such as https://digest.example.org"),
    ("https://digest.example.org/a b", "'https://digest.example.org/a b' contains a space or backslash; "
                                       "percent-encode it"),
    ("https://me:secret@digest.example.org", "'https://me:secret@digest.example.org' contains a user name or "
                                             "password; links are public"),
]


@pytest.mark.parametrize(("url", "message"), BASE_URLS, ids=range(len(BASE_URLS)))
def test_a_bad_base_url_is_refused(url: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, document(base_url=url))
    code, out, err = validate(path, capsys)
    assert code == 2
    assert err == f"{at(path, 'base_url:', 'base_url')}: newsletter.base_url: {message}\n"


def test_a_good_base_url_keeps_its_path_without_the_trailing_slash(tmp_path: Path) -> None:
    settings = load(write(tmp_path, document(base_url="https://example.org/digest/"))).settings
    assert settings.base_url == "https://example.org/digest"


# --- issue 15 item 21: settings out of range, a 65-octet local part ------------------------------

RANGES = [
    ("smtp", "timeout", -1, "must be more than 0 and at most 3600 seconds, got -1"),
    ("smtp", "timeout", 0, "must be more than 0 and at most 3600 seconds, got 0"),
    ("smtp", "timeout", 0.0, "must be more than 0 and at most 3600 seconds, got 0.0"),
    ("smtp", "timeout", 86400, "must be more than 0 and at most 3600 seconds, got 86400"),
    ("smtp", "rate_limit", -1, "must be at least 0 messages a second (0 = unlimited), got -1"),
    ("smtp", "rate_limit", -0.5, "must be at least 0 messages a second (0 = unlimited), got -0.5"),
    ("smtp", "concurrency", 0, "must be at least 1, got 0"),
    ("smtp", "concurrency", -3, "must be at least 1, got -3"),
    ("smtp", "port", 0, "must be at least 1, got 0"),
    ("smtp", "port", 65536, "must be at most 65535, got 65536"),
    ("smtp", "retries", -1, "must be at least 0, got -1"),
    ("smtp", "max_per_connection", 0, "must be at least 1, got 0"),
    ("smtp", "pause_after", 0, "must be at least 1, got 0"),
    ("source", "timeout", -5, "must be more than 0 and at most 3600 seconds, got -5"),
    ("source", "timeout", 0, "must be more than 0 and at most 3600 seconds, got 0"),
    ("source", "max_bytes", 0, "must be at least 1, got 0"),
    ("top", "max_entries", 0, "must be at least 1, got 0"),
    ("top", "min_upvotes", -1, "must be at least 0, got -1"),
]


@pytest.mark.parametrize(("block", "key", "value", "message"), RANGES, ids=[f"{b}.{k}={v}" for b, k, v, _ in RANGES])
def test_settings_out_of_range_are_refused(block: str, key: str, value: float, message: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    doc = document()
    if block == "smtp":
        doc["newsletter"]["smtp"][key] = value
        what = f"newsletter.smtp.{key}"
    elif block == "source":
        doc["newsletter"]["sources"] = [{"name": "feed", "type": "feed", "url": "https://example.org/feed",
                                         key: value}]
        what = f"newsletter.sources[0].{key}"
    else:
        doc["newsletter"][key] = value
        what = f"newsletter.{key}"
    path = write(tmp_path, doc)
    code, out, err = validate(path, capsys)
    assert code == 2
    assert err == f"{at(path, f'{key}: {value}', key)}: {what}: {message}\n"


def test_a_bad_port_in_the_environment_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, document())
    for raw in ("abc", "0", "70000", "٣"):
        monkeypatch.setenv("NEWSLETTER_SMTP_PORT", raw)
        code, out, err = validate(path, capsys)
        assert code == 2
        assert err == f"error: error in environment: NEWSLETTER_SMTP_PORT: '{raw}' is not a port number (1-65535)\n"
    monkeypatch.setenv("NEWSLETTER_SMTP_PORT", "2526")
    assert load(path, {"NEWSLETTER_SMTP_PORT": "2526"}).settings.smtp.port == 2526


@pytest.mark.parametrize(("local", "message"), [
    ("a" * 65, "The email address is too long before the @-sign (1 character too many)."),
    ("é" * 33, "The email address is too long before the @-sign (66 octets in UTF-8, at most 64)."),
    ("李" * 22, "The email address is too long before the @-sign (66 octets in UTF-8, at most 64)."),
])
def test_a_local_part_over_64_octets_is_refused(local: str, message: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    doc = document()
    doc["subscribers"][0]["email"] = f"{local}@example.org"
    path = write(tmp_path, doc)
    code, out, err = validate(path, capsys)
    assert code == 2
    assert err == f"{at(path, local)}: subscribers[0].email: {message}\n"


def test_a_local_part_of_64_octets_is_fine(tmp_path: Path) -> None:
    doc = document()
    doc["subscribers"] = [{"email": f"{local}@example.org", "keywords": ["x"]} for local in ("a" * 64, "é" * 32)]
    assert [s.email for s in load(write(tmp_path, doc)).subscribers] == [f"{'a' * 64}@example.org",
                                                                         f"{'é' * 32}@example.org"]


# --- warnings: no one-click unsubscribe; subscriber state in the YAML ------------------------------

def test_validate_warns_when_there_is_no_one_click_unsubscribe(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, document(base_url=None))
    out = "\n".join(lines := validate_ok(path, capsys))
    assert lines == [
        f"{path}:1:1: warning: newsletter: no base_url: messages carry only a mailto: List-Unsubscribe, which "
        "Gmail's and Yahoo's bulk-sender rules do not accept as one-click unsubscribe; set newsletter.base_url to "
        "the public address of `newsletter serve` (or `run`) and NEWSLETTER_SECRET in the environment",
        f"{path}: ok (1 subscribers, 0 sources)",
    ]
    assert NO_ONE_CLICK_WARNING in out
    code, out, err = validate(write(tmp_path, document()), capsys)
    assert (code, err) == (0, "") and "warning" not in out


def test_unsubscribed_in_the_yaml_still_loads_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = document()
    doc["subscribers"] = [
        {"email": "ada@example.org", "keywords": ["x"], "unsubscribed": True},
        {"email": "bob@example.org", "keywords": ["x"], "unsubscribed": False, "paused": True},
        {"email": "cy@example.org", "keywords": ["x"], "paused": False},
    ]
    path = write(tmp_path, doc)
    out = "\n".join(lines := validate_ok(path, capsys))
    assert lines == [
        f"{at(path, 'unsubscribed: true', 'unsubscribed')}: warning: subscribers[0] "
        "(ada@example.org).unsubscribed: subscriber state now lives in the state store (`newsletter subscribers "
        "unsubscribe` / `resume` manage it); this line is read only for files written by the old release",
        f"{path}: ok (3 subscribers, 0 sources)",
    ]
    assert UNSUBSCRIBED_IN_YAML_WARNING in out
    subs = load(path).subscribers
    assert [(s.unsubscribed, s.paused) for s in subs] == [(True, False), (False, True), (False, False)]


# --- load_settings: the settings alone --------------------------------------------------------------

def test_load_settings_equals_loads_settings(tmp_path: Path) -> None:
    example = ROOT / "subscribers.example.yaml"
    assert load_settings(example) == load(example).settings
    doc = document(sources=[{"name": "f", "type": "feed", "url": "https://example.org/f", "timeout": 5}],
                   timezone="Europe/Paris", schedule="0 6 * * mon")
    path = write(tmp_path, doc)
    env = {"NEWSLETTER_SMTP_PASSWORD": "pw", "NEWSLETTER_SMTP_HOST": "relay.example.org"}
    assert load_settings(path, env) == load(path, env).settings
    assert load_settings(path, env).smtp.password == "pw"
    # subscribers first, then the settings: still found
    path.write_text(yaml.safe_dump({"subscribers": doc["subscribers"], "newsletter": doc["newsletter"]}))
    assert load_settings(path, env) == load(path, env).settings


def test_load_settings_does_not_read_the_subscribers(tmp_path: Path) -> None:
    doc = document()
    doc["subscribers"] = [{"email": "not-an-address", "keywords": "[unclosed"}]
    path = write(tmp_path, doc)
    with pytest.raises(ConfigError):
        load(path)
    assert load_settings(path).sender == "Test Digest <digest@example.org>"
    path.write_text(path.read_text() + "  - [broken\n")
    assert load_settings(path).base_url == "https://digest.example.org"


def test_load_settings_reports_problems_in_the_settings_like_load(tmp_path: Path) -> None:
    path = write(tmp_path, document(base_url="ftp://x.example", max_entries=Raw("010")))
    with pytest.raises(ConfigError) as full:
        load(path)
    with pytest.raises(ConfigError) as settings_only:
        load_settings(path)
    assert settings_only.value.problems == full.value.problems
    assert len(full.value.problems) == 2
    path.write_text("newsletter:\n  title: [unclosed\nsubscribers: []\n")
    with pytest.raises(ConfigError) as broken:
        load_settings(path)
    assert str(broken.value) == f"{path}:3:12: invalid YAML: expected ',' or ']', but got ':'"
    path.write_text(yaml.safe_dump({"subscribers": []}))
    with pytest.raises(ConfigError) as missing:
        load_settings(path)
    assert str(missing.value) == f"{path}:1:1: top level: missing 'newsletter:' settings block"


@libyaml
def test_a_file_pyyaml_reads_and_libyaml_refuses_is_judged_as_pyyaml_reads_it(tmp_path: Path) -> None:
    text = ("newsletter:\n  sender: 'D <d@example.org>'\n  base_url: https://digest.example.org\n"
            "subscribers:\n  - email: ada@example.org\n    keywords: [x, {b:,c}]\n")
    with pytest.raises(yaml.YAMLError):
        yaml.compose(text, Loader=yaml.CSafeLoader)
    path = tmp_path / "subscribers.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as got:
        load(path)
    assert str(got.value) == f"{path}:6:19: subscribers[0] (ada@example.org).keywords[1]: expected str, got a mapping"


def test_load_settings_of_a_missing_or_unreadable_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as missing:
        load_settings(tmp_path / "nope.yaml")
    assert str(missing.value).startswith(f"{tmp_path / 'nope.yaml'}: no such file")
    path = tmp_path / "subscribers.yaml"
    path.write_bytes(b"newsletter:\n  title: \xff\xfe\n")
    with pytest.raises(ConfigError) as undecodable:
        load_settings(path)
    assert str(undecodable.value).startswith(f"{path}: cannot read: 'utf-8' codec can't decode byte 0xff")
