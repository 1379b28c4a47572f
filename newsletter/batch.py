"""Batch matching for many profiles at once (a scheduler slot, a benchmark): numpy over dense
query-by-entry score rows, so 100k profiles cost array operations instead of Python loops.

Each distinct query is evaluated once on the EntryIndex (bitmasks) and turned into a row of
integer scores (0 = no match). A profile's score row is the sum of its keyword rows; entries hit by
an exclude query, under `min_upvotes` or outside the candidates are zeroed; the top `limit` are
taken with argpartition. Ties break exactly as EntryIndex.select does (upvotes, recency, id): the
tie rank is packed below the score in one integer key. Reasons (which term, where) are computed
only for what is selected, by EntryIndex.hits.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import chain
from operator import attrgetter
from dataclasses import dataclass

import numpy as np

from newsletter.matching import _UNSCOPED, FIELD_WEIGHT, PHRASE_FACTOR, EntryIndex, Profile, _bits, gc_paused
from newsletter.models import Hit, Match
from newsletter.query import Query, Term

CHUNK = 2048
_KEY_MAX = (1 << 40) - 1  # a pair's key (score << tie_bits | tie) stays below this


@dataclass(frozen=True)
class Place:
    """Where one entry stands in a profile's selection: its rank (from 1; 0 when not selected), how
    many entries are selected, its score, and the index and score of the last entry within the cap
    (-1 when nothing is selected)."""

    rank: int
    of: int
    score: float
    edge: int
    edge_score: float


@dataclass
class BatchResult:
    """Top entries per profile: `index[p, :count[p]]` are entry indices, best first."""

    index: np.ndarray  # (profiles, limit) int32
    score: np.ndarray  # (profiles, limit) float32
    count: np.ndarray  # (profiles,) int32

    def top(self, p: int) -> list[tuple[int, float]]:
        n = int(self.count[p])
        return list(zip(self.index[p, :n].tolist(), self.score[p, :n].tolist()))

    @property
    def selections(self) -> int:
        return int(self.count.sum())


def _padded(flat: list[int], starts: list[int]) -> np.ndarray:
    """Ragged lists (flat values + start offsets) as a zero-padded 2-D array."""
    values = np.array(flat, dtype=np.int32)
    begin = np.array(starts, dtype=np.int64)
    lengths = np.diff(np.append(begin, len(flat)))
    out = np.zeros((len(starts), max(1, int(lengths.max(initial=1)))), dtype=np.int32)
    rows = np.repeat(np.arange(len(starts)), lengths)
    cols = np.arange(len(flat)) - np.repeat(begin, lengths)
    out[rows, cols] = values
    return out


class BatchMatcher:
    def __init__(self, index: EntryIndex) -> None:
        self.index = index
        n = len(index.entries)
        self.n = n
        order = sorted(range(n), key=lambda i: index._rank_keys[i])
        self.tie = np.zeros(n, dtype=np.int32)
        for rank, i in enumerate(order):
            self.tie[i] = n - rank  # larger is better
        self.tie_bits = max(1, int(n).bit_length())
        self.tie_mask = (1 << self.tie_bits) - 1
        self.by_tie = np.zeros(1 << self.tie_bits, dtype=np.int32)  # tie value -> entry index
        self.by_tie[self.tie] = np.arange(n, dtype=np.int32)
        self.upvotes = np.array([e.upvotes or 0 for e in index.entries], dtype=np.int64)
        self._nbytes = (n + 7) // 8
        self._all = index.all
        self._term_ids: dict[str, list[int]] = {}  # term text (with scope) -> its field rows
        self._tf_blocks: list[np.ndarray] = [np.zeros((1, n), dtype=np.uint8)]  # row 0: nothing
        self._rows: dict[str, int] = {}
        self._blocks: list[np.ndarray] = [np.zeros((1, n), dtype=np.uint8)]  # row 0: never matches
        self._table: np.ndarray | None = None

    def _bit_rows(self, masks: list[int]) -> np.ndarray:
        """Bitmasks as a (len(masks), n) array of 0/1, in one unpackbits call."""
        blob = b"".join(m.to_bytes(self._nbytes, "little") for m in masks)
        raw = np.frombuffer(blob, dtype=np.uint8).reshape(len(masks), self._nbytes)
        return np.unpackbits(raw, axis=1, bitorder="little")[:, : self.n]

    def _add_rows(self, queries: list[Query]) -> None:
        """Score rows for new queries, computed as EntryIndex.query_scores does, all at once."""
        tf_masks: list[int] = []
        tf_weights: list[int] = []
        tf_next = sum(len(b) for b in self._tf_blocks)
        per_query: list[list[int]] = []
        qmasks: list[int] = []
        term_ids = self._term_ids
        for q in queries:
            ids = []
            if q.root.__class__ is Term:  # a lone term matches exactly where it scores
                found = term_ids.get(q.root.text)
                if found is not None:
                    per_query.append(found)
                    qmasks.append(-1)
                    continue
            for term in q.positive_terms():
                found = term_ids.get(term.text)
                if found is None:
                    found = []
                    for field in (term.field,) if term.field else _UNSCOPED:
                        found.append(tf_next + len(tf_masks))
                        tf_masks.append(self.index.field_mask(term, field))
                        tf_weights.append(int(FIELD_WEIGHT[field] * (PHRASE_FACTOR if term.phrase else 1.0)))
                    term_ids[term.text] = found
                ids.extend(found)
            per_query.append(ids)
            qmasks.append(-1 if q.root.__class__ is Term else self.index.query_mask(q))
        if tf_masks:
            weights = np.array(tf_weights, dtype=np.uint8)[:, None]
            self._tf_blocks.append(self._bit_rows(tf_masks) * weights)
        tf_table = np.concatenate(self._tf_blocks)
        self._tf_blocks = [tf_table]
        pad = _padded([i for ids in per_query for i in ids],
                      list(np.cumsum([0] + [len(ids) for ids in per_query[:-1]])))
        rows = np.empty((len(queries), self.n), dtype=np.uint8)
        hit = self._bit_rows([m & self._all for m in qmasks])
        lone = np.array([m == -1 for m in qmasks])
        for lo in range(0, len(queries), CHUNK):
            hi = lo + CHUNK
            scores = tf_table[pad[lo:hi]].sum(axis=1, dtype=np.int32)
            # a lone term: where it scores is where it matches; otherwise the query's own bitmask
            matched = np.where(lone[lo:hi, None], scores > 0, hit[lo:hi].astype(bool))
            np.clip(scores, 1, 255, out=scores)
            rows[lo:hi] = scores * matched
        first = sum(len(b) for b in self._blocks)
        for k, q in enumerate(queries):
            self._rows[q.text] = first + k
        self._blocks.append(rows)
        self._table = None

    def table(self) -> np.ndarray:
        if self._table is None:
            self._table = np.concatenate(self._blocks)
            self._blocks = [self._table]
        return self._table

    def _ids(self, profiles: Sequence[Profile], exclude: bool) -> tuple[list[int], list[int]]:
        """Table rows of every profile's keyword (or exclude) queries, flat, with start offsets."""
        lists = list(map(attrgetter("exclude_texts" if exclude else "keyword_texts"), profiles))
        texts = list(chain.from_iterable(lists))
        lengths = list(map(len, lists))
        get = self._rows.get
        ids = list(map(get, texts))
        if None in ids:
            missing = set(texts).difference(self._rows)
            queries = chain.from_iterable(map(attrgetter("exclude" if exclude else "keywords"), profiles))
            by_text = dict(zip(texts, queries))
            self._add_rows([by_text[t] for t in sorted(missing)])
            ids = list(map(get, texts))
        starts = np.zeros(len(profiles), dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        return ids, starts.tolist()  # type: ignore[return-value]

    def select_many(self, profiles: Sequence[Profile], limit: int,
                    candidates: int | None = None) -> BatchResult:
        # The batch allocates hundreds of thousands of small objects and no reference cycles:
        # pausing the cyclic collector saves it a tenth of the time.
        with gc_paused():
            return self._select_many(profiles, limit, candidates)

    def _select_many(self, profiles: Sequence[Profile], limit: int, candidates: int | None) -> BatchResult:
        n, limit = self.n, max(1, min(limit, self.n)) if self.n else 0
        out_i = np.zeros((len(profiles), limit), dtype=np.int32)
        out_s = np.zeros((len(profiles), limit), dtype=np.float32)
        count = np.zeros(len(profiles), dtype=np.int32)
        for dest, sums in self._sums(profiles, candidates):
            # only matched pairs are ranked: one int64 per pair, (profile, key descending), sorted
            flat = np.flatnonzero(sums)
            rows = flat // n
            key = (sums.ravel()[flat].astype(np.int64) << self.tie_bits) | self.tie[flat % n]
            packed = (rows << 40) | (_KEY_MAX - key)
            packed.sort()
            rows = packed >> 40
            key = _KEY_MAX - (packed & _KEY_MAX)
            first = np.searchsorted(rows, np.arange(len(dest)))
            rank = np.arange(len(rows)) - first[rows]
            picked = rank < limit
            rows, key, rank = rows[picked], key[picked], rank[picked]
            out_i[dest[rows], rank] = self.by_tie[key & self.tie_mask]
            out_s[dest[rows], rank] = key >> self.tie_bits
            count[dest] = np.bincount(rows, minlength=len(dest))
        return BatchResult(out_i, out_s, count)

    def places(self, profiles: Sequence[Profile], target: int, caps: Sequence[int],
               candidates: int | None = None) -> list[Place]:
        """Where entry `target` stands in what each profile selects, ranked as `select_many` ranks
        (`explain`: one paper, many profiles), without building the selections."""
        out: list[Place] = [Place(0, 0, 0.0, -1, 0.0)] * len(profiles)
        cap = np.array(caps, dtype=np.int64)
        with gc_paused():
            for dest, sums in self._sums(profiles, candidates):
                key = (sums.astype(np.int64) << self.tie_bits) | self.tie[None, :]
                key[sums == 0] = 0
                own = key[:, target]
                rank = (key > own[:, None]).sum(axis=1) + 1
                count = np.count_nonzero(sums, axis=1)
                selected = own > 0
                last = np.minimum(cap[dest], count)  # the place of the last entry within the cap
                edge = np.zeros(len(dest), dtype=np.int64)
                for k in np.unique(last[selected]).tolist():  # a few distinct caps: one partition each
                    at = np.flatnonzero(selected & (last == k))
                    edge[at] = np.partition(key[at], self.n - k, axis=1)[:, self.n - k]
                edge_at = np.where(selected, self.by_tie[edge & self.tie_mask], -1)
                found = map(Place, np.where(selected, rank, 0).tolist(), count.tolist(),
                            (own >> self.tie_bits).astype(np.float64).tolist(), edge_at.tolist(),
                            np.where(selected, edge >> self.tie_bits, 0).astype(np.float64).tolist())
                for d, place in zip(dest.tolist(), found):
                    out[d] = place
        return out

    def _sums(self, profiles: Sequence[Profile], candidates: int | None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Each profile's score row (0 where it does not select the entry), a chunk of profiles at a
        time: (the profiles' positions, their rows)."""
        n = self.n
        if not n or not profiles:
            return
        keep = np.ones(n, dtype=bool)
        if candidates is not None:
            keep[:] = False
            keep[list(_bits(candidates))] = True
        kw_rows, kw_start = self._ids(profiles, exclude=False)
        ex_rows, ex_start = self._ids(profiles, exclude=True)
        table = self.table()
        matched = table > 0
        # profiles in order of keyword count, so a chunk's padding is as narrow as its widest profile
        kw_len = np.diff(np.append(np.array(kw_start, dtype=np.int64), len(kw_rows)))
        ex_len = np.diff(np.append(np.array(ex_start, dtype=np.int64), len(ex_rows)))
        order = np.argsort(kw_len, kind="stable")
        kw_pad = _padded(kw_rows, kw_start)[order]
        ex_pad = _padded(ex_rows, ex_start)[order]
        kw_len, ex_len = kw_len[order], ex_len[order]
        min_votes = np.array([p.min_upvotes for p in profiles], dtype=np.int64)[order]
        # rows are at most 255: uint16 holds the sum of up to 257 keyword rows
        sum_dtype = np.uint16 if kw_pad.shape[1] <= 257 else np.int64
        for lo in range(0, len(profiles), CHUNK):
            hi = min(lo + CHUNK, len(profiles))
            # padded rows point at row 0, which scores 0 and never matches
            sums = table[kw_pad[lo:hi, : max(1, int(kw_len[hi - 1]))]].sum(axis=1, dtype=sum_dtype)
            widest = int(ex_len[lo:hi].max())
            if widest:
                sums[matched[ex_pad[lo:hi, :widest]].any(axis=1)] = 0
            if candidates is not None:
                sums[:, ~keep] = 0
            if min_votes[lo:hi].any():
                sums[self.upvotes[None, :] < min_votes[lo:hi, None]] = 0
            yield order[lo:hi], sums

    def matches(self, profile: Profile, picks: list[tuple[int, float]]) -> list[Match]:
        """Attach the reasons to one profile's picks (as EntryIndex.select would)."""
        out = []
        for i, score in picks:
            hits: list[Hit] = []
            for q in profile.keywords:
                if self.index.query_mask(q) >> i & 1:
                    hits.extend(self.index.hits(q, i))
            out.append(Match(self.index.entries[i], float(score), profile.hits(hits)))
        return out
