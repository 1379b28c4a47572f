"""Writes the hostile corpus beside this file (run it to regenerate; the files are committed).

Each file is one kind of hostile input from the audit in issue 15. Sizes stay under 1 MB, so a
parser that is linear in its input cannot hang on any of them.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent
GOOD = {"id": "2401.01234", "title": "A Good Paper", "abstract": "It is fine.", "authors": ["Ada"]}


def paper(**fields: object) -> dict[str, object]:
    return {"paper": {"id": "2401.05678", "title": "A Daily Paper", "summary": "S.",
                      "authors": [{"name": "Ada"}], **fields}}


def rss(items: str, decl: str = '<?xml version="1.0" encoding="utf-8"?>') -> str:
    return f'{decl}\n<rss version="2.0"><channel><title>t</title><link>https://blog.example/</link>{items}</channel></rss>\n'


def item(title: str, guid: str = "", link: str = "https://blog.example/p", extra: str = "") -> str:
    g = f"<guid>{guid}</guid>" if guid else ""
    return f"<item><title>{title}</title><link>{link}</link>{g}<description>d</description>{extra}</item>"


def dumps(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


CORPUS: dict[str, bytes] = {
    # deep nesting
    "deep_array.json": b"[" * 100_000 + b"]" * 100_000,
    "deep_object.json": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "deep_value_in_item.json": b'[{"title": "ok", "abstract": "a"}, {"title": "x", "abstract": '
                               + b"[" * 100_000 + b"]" * 100_000 + b"}]",
    "deep_jsonl.jsonl": b'{"title": "ok"}\n{"title": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
    "deep_flow.yaml": b"[" * 100_000 + b"]" * 100_000,
    "deep_block.yaml": b"- " * 3000 + b"x\n",
    "deep_xml.xml": rss(item("Deep") + "<x>" * 20_000 + "</x>" * 20_000).encode(),
    # integers
    "huge_upvotes.json": dumps([GOOD, {"title": "Absurd Upvotes", "upvotes": 10**20}]),
    "huge_int_5000_digits.json": b'[{"title": "ok"}, {"title": "Many Digits", "upvotes": ' + b"9" * 5000 + b"}]",
    "huge_int_5000_digits.yaml": b"- title: ok\n- title: Many Digits\n  upvotes: " + b"9" * 5000 + b"\n",
    "negative_count.json": dumps([GOOD, {"title": "Negative", "comments": -3}]),
    "float_inf_upvotes.json": b'[{"title": "ok"}, {"title": "Inf", "upvotes": 1e999}]',
    "hf_daily_huge_upvotes.json": dumps([paper(), paper(id="2401.09999", title="Absurd", upvotes=10**20)]),
    "listing_huge_upvotes.txt": ("Dec 29\n\nA Fine Title\n\nIts abstract is long enough to be one.\n\n"
                                 "• 3 authors\n·\nMar 2 " + "9" * 40 + "\n\nSecond Title\n\n"
                                 "Another abstract, longer than its title.\n\n• 2 authors\n·\nMar 3 4\n").encode(),
    # wrong types
    "authors_is_number.json": dumps([GOOD, {"title": "Bad Authors", "authors": 5}]),
    "hf_daily_authors_is_number.json": dumps([paper(), paper(id="2401.07777", title="Bad", authors=5)]),
    "hf_daily_paper_is_text.json": dumps([paper(), {"paper": "not an object"}]),
    "wrong_types.json": dumps([GOOD, {"title": 123}, {"title": ["a"]}, {"title": "t", "links": "x"},
                               {"title": "t2", "abstract": {"a": 1}}, 7, None, "text"]),
    "top_level_scalar.json": b"5",
    "top_level_null.yaml": b"null\n",
    "top_level_object.json": b'{"no": "entries"}',
    "empty": b"",
    "whitespace_only": b" \n\t\n",
    # dates
    "bad_dates.json": dumps([GOOD, {"title": "Month 13", "published": "2024-13-45"},
                             {"title": "Year 0", "published": "0000-00-00"}]),
    "bad_dates.yaml": b"- title: ok\n- title: Month 13\n  published: 2024-13-45\n",
    "bad_dates.xml": rss(item("Dated", "a1", extra="<pubDate>Mon, 45 Foo 0000 99:99:99 +9999</pubDate>")
                         + item("Year Zero", "a2", extra="<pubDate>Sat, 01 Jan 0000 00:00:00 GMT</pubDate>")).encode(),
    # NUL, invalid UTF-8, surrogates, control characters
    "nul_in_json_string.json": b'[{"title": "Nul\\u0000 Title", "abstract": "a\\u0000b"}]',
    "nul_raw.yaml": b"- title: nul\x00 here\n",
    "nul_raw.xml": rss(item("Nul\x00Title")).encode(),
    "nul_raw.txt": b"Dec 29\n\nA Ti\x00tle\n\nAn abstract with a NUL \x00 in it, long enough.\n",
    "invalid_utf8.json": b'[{"title": "caf\xe9 \xff"}]',
    "invalid_utf8.yaml": b"- title: caf\xe9 \xff\n",
    "invalid_utf8.txt": b"Dec 29\n\nT\xff\xfe itle\n\nAbstract text that is long enough here.\n",
    "invalid_utf8.xml": b'<?xml version="1.0" encoding="utf-8"?><rss><channel><item><title>caf\xe9 \xff</title>'
                        b"<link>https://b.example/1</link></item></channel></rss>",
    "lone_surrogate.json": b'[{"title": "Lone \\ud800 Surrogate", "organization": "\\udfff"}]',
    "control_chars.json": dumps([{"title": "Bell\x07 Esc\x1b[31m Red \x85 NEL", "authors": ["\x00", "Ada\x1b"]}]),
    "bad_links.json": dumps([{"title": "Links", "links": {"page": "http://[::1", "pdf": "javascript:alert(1)",
                                                          "code": "https://ex.org/\x00"}}]),
    # invisible and right-to-left titles
    "rtl_override_title.json": dumps([{"title": "\u202eNeed You All Is Attention", "abstract": "x"}]),
    "zero_width_titles.json": dumps([GOOD, {"title": "\u200b\u200c\u200d\ufeff"}, {"title": "\u00ad \u2066\u2069"},
                                     {"title": "   "}, {"title": "\u0301\u0301"}]),
    "soft_hyphen_title.json": dumps([{"title": "Atten\u00adtion Is All You Need", "abstract": "Trans\u200bformers."}]),
    "soft_hyphen_feed.xml": rss(item("Atten&#173;tion Is All You Need", "sh1")).encode(),
    "rtl_feed.xml": rss(item("&#x202E;evil&#x202C; title", "r1") + item("&#x200B;&#x200B;", "r2")).encode(),
    # entity expansion and external entities
    "billion_laughs.xml": (
        '<?xml version="1.0"?>\n<!DOCTYPE rss [<!ENTITY lol "lol">'
        + "".join(f'<!ENTITY lol{i} "{(f"&lol{i - 1};" if i > 1 else "&lol;") * 10}">' for i in range(1, 10))
        + "]>\n" + rss(item("&lol9;", "bl"), decl="")).encode(),
    "quadratic_blowup.xml": ('<?xml version="1.0"?>\n<!DOCTYPE rss [<!ENTITY a "' + "x" * 20_000 + '">]>\n'
                             + rss(item("Q", "q", extra="<description>" + "&a;" * 2_000 + "</description>"),
                                   decl="")).encode(),
    "xxe_file.xml": ('<?xml version="1.0"?>\n<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
                     + rss(item("X&xxe;X", "x1"), decl="")).encode(),
    "xxe_parameter.xml": ('<?xml version="1.0"?>\n<!DOCTYPE rss [<!ENTITY % p SYSTEM "http://127.0.0.1:9/evil.dtd">%p;]>\n'
                          + rss(item("Param", "x2"), decl="")).encode(),
    # YAML specials
    "yaml_alias_bomb_small.yaml": (
        "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(6))
        + "entries:\n  - title: bomb\n    abstract: *g\n").encode(),
    "yaml_alias_bomb_large.yaml": (
        "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))
        + "entries:\n  - title: bomb\n    authors: *i\n").encode(),
    "yaml_python_tag.yaml": b"- title: !!python/object/apply:os.system ['echo pwned']\n",
    "yaml_custom_tag.yaml": b"- title: !evil tag\n",
    "yaml_binary_tag.yaml": b"- title: !!binary aGVsbG8=\n- title: ok\n",
    "yaml_set_and_timestamp.yaml": b"- title: !!set {a, b}\n- title: ok\n  published: 2024-01-05 10:00:00\n",
    "yaml_11_numbers.yaml": b"- title: ok\n  upvotes: 1:30\n  comments: 010\n- title: inf\n  upvotes: .inf\n",
    "yaml_merge_key.yaml": b"- &base {title: base}\n- <<: *base\n",
    # encodings
    "utf16le_bom_feed.xml": "\ufeff".encode("utf-16-le") + rss(item("UTF-16 Title", "u16")).encode("utf-16-le"),
    "utf16be_feed.xml": rss(item("UTF-16BE Title", "u16b"), decl='<?xml version="1.0" encoding="utf-16"?>').encode("utf-16-be"),
    "utf32_bom_feed.xml": rss(item("UTF-32 Title", "u32")).encode("utf-32"),
    "utf16_entries.json": dumps([GOOD]).decode().encode("utf-16"),
    # feed items keyed by guid, not title
    "same_titles_feed.xml": rss("".join(item("Weekly notes", f"https://blog.example/notes/{n}",
                                             f"https://blog.example/notes/{n}") for n in range(5))).encode(),
    "empty_titles_feed.xml": rss(item("Real Post", "e1") + item("", "e2") + item("&#8203;", "e3")).encode(),
    "script_in_feed.xml": rss(item("&lt;script&gt;alert(1)&lt;/script&gt;Title", "s1",
                                   link="javascript:alert(1)")).encode(),
    # size
    "huge_title.json": dumps([{"title": "T" * 200_000, "abstract": "a" * 500_000}]),
}


def main() -> None:
    for name, data in CORPUS.items():
        (HERE / name).write_bytes(data)
    print(f"{len(CORPUS)} files")


if __name__ == "__main__":
    main()
