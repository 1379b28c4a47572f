"""Pure matching: index a batch of entries once, evaluate profile queries on bitmasks, rank.

Each distinct term is looked up once per batch (a posting bitmask over the batch's entries, bit i
for entry i); a query is then a handful of integer AND/OR/NOT operations, cached per query text,
so 100k profiles cost set operations rather than 100k regex scans.
"""

from __future__ import annotations

import bisect
import gc
import heapq
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date

from newsletter.models import Entry, Hit, Match
from newsletter.query import And, Node, Not, Or, Query, Term, parse
from newsletter.text import stem, words

FIELD_WEIGHT = {"title": 3.0, "abstract": 1.0, "author": 2.0}
PHRASE_FACTOR = 2.0
_UNSCOPED = ("title", "abstract")


@dataclass(frozen=True)
class Profile:
    keywords: tuple[Query, ...]
    exclude: tuple[Query, ...] = ()
    min_upvotes: int = 0
    keyword_texts: tuple[str, ...] = field(init=False, repr=False, compare=False)
    exclude_texts: tuple[str, ...] = field(init=False, repr=False, compare=False)
    distinct: bool = field(init=False, repr=False, compare=False)  # see `hits`

    def __post_init__(self) -> None:
        object.__setattr__(self, "keyword_texts", tuple(q.text for q in self.keywords))
        object.__setattr__(self, "exclude_texts", tuple(q.text for q in self.exclude))
        object.__setattr__(self, "distinct", len(set(self.keyword_texts)) == len(self.keyword_texts)
                           and all(q.distinct_terms for q in self.keywords))

    def hits(self, found: list[Hit]) -> tuple[Hit, ...]:
        """The keywords' hits on one entry (each query's from `EntryIndex.hits`, in order), each once. A
        hit names its query and term: only a query listed twice, or a term twice in one query, can
        repeat one, so most profiles need no check."""
        return tuple(found) if self.distinct else tuple(dict.fromkeys(found))

    @classmethod
    def from_strings(
        cls, keywords: Iterable[str], exclude: Iterable[str] = (), min_upvotes: int = 0
    ) -> Profile:
        return cls(tuple(map(parse, keywords)), tuple(map(parse, exclude)), min_upvotes)


class _Field:
    """Postings for one field across the batch."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.terms: list[list[str]] = []
        self._folded: list[list[str]] = []
        self.postings: dict[str, int] = defaultdict(int)
        self.bigrams: dict[tuple[str, str], int] = defaultdict(int)
        stems_of: dict[str, str] = {}
        postings, bigrams = self.postings, self.bigrams
        for i, text in enumerate(texts):
            folded = words(text)
            stems = [stems_of.get(w) or stems_of.setdefault(w, stem(w)) for w in folded]
            self.terms.append(stems)
            self._folded.append(folded)
            bit = 1 << i
            for s in set(stems):
                postings[s] |= bit
            for pair in set(zip(stems, stems[1:])):
                bigrams[pair] |= bit
        self._raw: dict[str, int] | None = None
        self._vocab: list[str] = []

    @property
    def raw(self) -> dict[str, int]:
        """Postings of the unstemmed words, for prefixes; built on the first prefix query."""
        if self._raw is None:
            raw: dict[str, int] = defaultdict(int)
            for i, folded in enumerate(self._folded):
                bit = 1 << i
                for w in set(folded):
                    raw[w] |= bit
            self._raw = raw
            self._vocab = sorted(raw)
        return self._raw

    @property
    def vocab(self) -> list[str]:
        self.raw  # noqa: B018 - builds the vocabulary
        return self._vocab

    def prefix_mask(self, prefix: str) -> int:
        mask = 0
        i = bisect.bisect_left(self.vocab, prefix)
        while i < len(self.vocab) and self.vocab[i].startswith(prefix):
            mask |= self.raw[self.vocab[i]]
            i += 1
        return mask

    def prefix_stems(self, prefix: str) -> set[str]:
        out = set()
        i = bisect.bisect_left(self.vocab, prefix)
        while i < len(self.vocab) and self.vocab[i].startswith(prefix):
            out.add(stem(self.vocab[i]))
            i += 1
        return out

    def term_mask(self, term: Term) -> int:
        if not term.prefix and term.phrase:
            # adjacent pairs are indexed: a two-word phrase is one lookup, longer ones are verified
            mask = -1
            for pair in zip(term.words, term.words[1:]):
                mask &= self.bigrams.get(pair, 0)
                if not mask:
                    return 0
            if len(term.words) == 2:
                return mask
            masks = [mask]
        elif not term.prefix:
            masks = [self.postings.get(w, 0) for w in term.words]
        else:
            masks = [self.postings.get(w, 0) for w in term.words[:-1]]
            masks.append(self.prefix_mask(term.words[-1]))
        mask = masks[0]
        for m in masks[1:]:
            mask &= m
        if not mask or not term.phrase:
            return mask
        verified = 0
        for i in _bits(mask):
            if self._has_phrase(self.terms[i], term):
                verified |= 1 << i
        return verified

    def _has_phrase(self, seq: list[str], term: Term) -> bool:
        k = len(term.words)
        head = term.words[:-1] if term.prefix else term.words
        first = head[0]
        for start in range(len(seq) - k + 1):
            if seq[start] == first and all(seq[start + j] == w for j, w in enumerate(head)):
                if not term.prefix:
                    return True
                if seq[start + k - 1].startswith(term.words[-1]) or any(
                    s == seq[start + k - 1] for s in self.prefix_stems(term.words[-1])
                ):
                    return True
        return False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector around batch work that allocates many small objects
    and no reference cycles (it would otherwise run dozens of times for nothing)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _bits(mask: int) -> Iterable[int]:
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


class EntryIndex:
    """A batch of entries indexed for matching. Bit i of every mask is entries[i]."""

    def __init__(self, entries: Sequence[Entry]) -> None:
        self.entries = list(entries)
        self.all = (1 << len(self.entries)) - 1
        self._fields: dict[str, _Field] = {}
        self._term_cache: dict[tuple[str, str], int] = {}
        self._query_cache: dict[str, int] = {}
        self._score_cache: dict[str, dict[int, float]] = {}
        self._upvote_cache: dict[int, int] = {}
        self._hits_cache: dict[tuple[str, int], tuple[Hit, ...]] = {}
        self._rank_keys = [_tie_key(e) for e in self.entries]

    def field(self, name: str) -> _Field:
        """The postings of one field, built when a query first needs them."""
        found = self._fields.get(name)
        if found is None:
            if name == "title":
                texts = [e.title for e in self.entries]
            elif name == "abstract":
                texts = [e.abstract for e in self.entries]
            else:
                texts = [" ; ".join(e.authors) for e in self.entries]
            with gc_paused():
                found = self._fields[name] = _Field(texts)
        return found

    def field_mask(self, term: Term, field: str) -> int:
        key = (term.text, field)  # the text (with its scope) determines the term
        mask = self._term_cache.get(key)
        if mask is None:
            mask = self._term_cache[key] = self.field(field).term_mask(term)
        return mask

    def term_mask(self, term: Term) -> int:
        if term.field:
            return self.field_mask(term, term.field)
        return self.field_mask(term, "title") | self.field_mask(term, "abstract")

    def eval(self, node: Node) -> int:
        if isinstance(node, Term):
            return self.term_mask(node)
        if isinstance(node, Not):
            return self.all & ~self.eval(node.child)
        if isinstance(node, And):
            mask = self.all
            for child in node.children:
                mask &= self.eval(child)
                if not mask:
                    break
            return mask
        mask = 0
        assert isinstance(node, Or)
        for child in node.children:
            mask |= self.eval(child)
        return mask

    def query_mask(self, query: Query) -> int:
        mask = self._query_cache.get(query.text)
        if mask is None:
            mask = self._query_cache[query.text] = self.eval(query.root)
        return mask

    def upvote_mask(self, minimum: int) -> int:
        if minimum <= 0:
            return self.all
        mask = self._upvote_cache.get(minimum)
        if mask is None:
            mask = 0
            for i, e in enumerate(self.entries):
                if (e.upvotes or 0) >= minimum:
                    mask |= 1 << i
            self._upvote_cache[minimum] = mask
        return mask

    def profile_mask(self, profile: Profile, candidates: int | None = None) -> int:
        mask = 0
        for q in profile.keywords:
            mask |= self.query_mask(q)
        if not mask:
            return 0
        for q in profile.exclude:
            mask &= ~self.query_mask(q)
        mask &= self.upvote_mask(profile.min_upvotes)
        if candidates is not None:
            mask &= candidates
        return mask

    def hits(self, query: Query, i: int) -> tuple[Hit, ...]:
        """Which positive terms of `query` occur in entry i, and in which field (cached)."""
        key = (query.text, i)
        found = self._hits_cache.get(key)
        if found is None:
            out = []
            bit = 1 << i
            for term in query.positive_terms():
                for field in (term.field,) if term.field else _UNSCOPED:
                    if self.field_mask(term, field) & bit:
                        out.append(Hit(query.text, term.text, field, term.phrase))
            found = self._hits_cache[key] = tuple(out)
        return found

    def query_scores(self, query: Query) -> dict[int, float]:
        scores = self._score_cache.get(query.text)
        if scores is None:
            scores = {}
            for i in _bits(self.query_mask(query)):
                scores[i] = min(255.0, max(1.0, sum(_weight(h) for h in self.hits(query, i))))
            self._score_cache[query.text] = scores
        return scores

    def select(
        self, profile: Profile, candidates: int | None = None, limit: int | None = None
    ) -> list[Match]:
        """The entries the profile selects, best first, each with the hits that explain it."""
        mask = self.profile_mask(profile, candidates)
        if not mask:
            return []
        totals: dict[int, float] = {}
        for q in profile.keywords:
            both = self.query_mask(q) & mask
            if both:
                scores = self.query_scores(q)
                for i in _bits(both):
                    totals[i] = totals.get(i, 0.0) + scores[i]
        keys = self._rank_keys
        if limit is not None and limit < len(totals):
            best = heapq.nsmallest(limit, totals, key=lambda i: (-totals[i], keys[i]))
        else:
            best = sorted(totals, key=lambda i: (-totals[i], keys[i]))
        out = []
        for i in best:
            hits: list[Hit] = []
            for q in profile.keywords:
                if self.query_mask(q) >> i & 1:
                    hits.extend(self.hits(q, i))
            out.append(Match(self.entries[i], totals[i], profile.hits(hits)))
        return out


def where_it_hits(index: EntryIndex, query: Query, i: int) -> str:
    """Where `query` first hits entry i, as a reader reads it ('"survey" in the title'); "" if nowhere."""
    hits = index.hits(query, i)
    return f'"{hits[0].term.split(":", 1)[-1]}" in the {hits[0].field}' if hits else ""


def _weight(hit: Hit) -> float:
    return FIELD_WEIGHT[hit.field] * (PHRASE_FACTOR if hit.phrase else 1.0)


def _tie_key(entry: Entry) -> tuple[int, int, str]:
    """After the score: more upvotes, then more recent, then the id (deterministic)."""
    published = entry.published or date.min
    return (-(entry.upvotes or 0), -published.toordinal(), entry.id)


def select(entries: Sequence[Entry], profile: Profile, limit: int | None = None) -> list[Match]:
    """Convenience for one profile: index `entries` and select."""
    return EntryIndex(entries).select(profile, limit=limit)
