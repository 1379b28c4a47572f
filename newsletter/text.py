"""Text handling: cleaning titles/abstracts for display, and folding/tokenising/stemming for matching.

The stemmer is deliberately light (plurals, -ing, -ed and a final -e) so that readers' distinctions
survive: Snowball merges generative/generation, universe/university and organ/organization; this
does not, while models/model/modeling, LLMs/LLM and studies/study still meet.
"""

from __future__ import annotations

import html
import re
import unicodedata
from functools import lru_cache

_WS = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
# Invisible format characters (Unicode Cf less the visible Arabic number signs: soft hyphen,
# zero-width space/joiners, word joiner, BOM, bidi embeddings/overrides/isolates, tags) are dropped,
# not spaced, so `Atten\u00adtion` is `Attention` for display, dedup and matching alike.
# Lone surrogates (from JSON `\ud800`) cannot be stored or sent: they become U+FFFD.
_INVISIBLE = re.compile(
    "[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]"
)
_SURROGATE = re.compile("[\ud800-\udfff]")
# A token: letters/digits, with `++` or `#` kept (C++, C#, F#). Everything else separates words,
# so hyphens, en dashes and slashes split `large-language-model` into three words.
_TOKEN = re.compile(r"[^\W_]+(?:\+\+|#)?")

STOP_WORDS = frozenset(
    "a an and are as at be by for from has have in is it its of on or that the this to was were "
    "will with we our via".split()
)


def clean_text(value: str) -> str:
    """Text for display: HTML entities decoded, control characters and runs of whitespace collapsed."""
    value = html.unescape(value)
    if not value.isascii():
        value = _SURROGATE.sub("\ufffd", _INVISIBLE.sub("", value))
    value = _CONTROL.sub(" ", value)
    return _WS.sub(" ", value).strip()


def visible(value: str) -> bool:
    """Whether the text shows anything: a letter, digit, punctuation mark or symbol."""
    return any(unicodedata.category(c)[0] in "LNPS" for c in value)


def fold(value: str) -> str:
    """Case- and accent-insensitive form: NFKD (ligatures split), marks dropped, casefolded."""
    if value.isascii():  # most titles and abstracts: nothing to decompose or drop
        return value.lower()
    decomposed = unicodedata.normalize("NFKD", _INVISIBLE.sub("", value))
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return unicodedata.normalize("NFKC", stripped.casefold())


def words(value: str) -> list[str]:
    """Folded words of a text, in order."""
    return _TOKEN.findall(fold(value))


def word_spans(value: str) -> list[tuple[int, int, str]]:
    """(start, end, folded word) for each word in `value`, offsets into the original string.

    Folding can change lengths (ß -> ss, ﬁ -> fi), so words are found per original character run.
    """
    spans = []
    for m in _RUN.finditer(value):
        for w in _folded_run(m.group()):
            spans.append((m.start(), m.end(), w))
    return spans


_RUN = re.compile(r"[^\W_]+(?:\+\+|#)?")


@lru_cache(maxsize=65536)
def _folded_run(run: str) -> tuple[str, ...]:
    return tuple(_TOKEN.findall(fold(run)))


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """Light English stemmer for matching; `word` is already folded."""
    if word.endswith(("++", "#")) or word.isdigit():
        return word
    n = len(word)
    if n >= 5 and word.endswith("ies"):
        return word[:-3] + "y"
    if n >= 5 and word.endswith(("sses", "ches", "shes", "xes", "zes")):
        word = word[:-2]
    elif n >= 4 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            base = word[: -len(suffix)]
            if len(base) >= 2 and base[-1] == base[-2] and base[-1] not in "lsz":
                base = base[:-1]  # running -> run, embedded -> embed
            elif base.endswith("ll"):
                base = base[:-1]  # modelling -> model
            return base
    if len(word) >= 5 and word.endswith("e") and not word.endswith(("ee", "ie")):
        return word[:-1]  # encode / encoding / encoded all meet at "encod"
    return word


def terms(value: str) -> list[str]:
    """Stemmed, folded words of a text, in order: what matching compares."""
    return [stem(w) for w in words(value)]
