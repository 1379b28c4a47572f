"""Normalisation, the query language and matching: the reader's cases and properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.errors import QuerySyntaxError
from newsletter.matching import EntryIndex, Profile, select
from newsletter.models import Entry
from newsletter.query import parse


def matches(query: str, title: str = "", abstract: str = "", authors: tuple[str, ...] = ()) -> bool:
    entry = Entry(id="x", title=title, abstract=abstract, authors=authors)
    return bool(select([entry], Profile.from_strings([query])))


# query, text, expected: every normalisation case a reader would check
CASES = [
    ("Schrödinger", "the Schrodinger equation", True),
    ("Schrodinger", "the Schrödinger equation", True),
    ("straße", "STRASSE networks", True),
    ("fine-tuning", "efficient ﬁne-tuning of models", True),  # PDF ligature
    ('"large language model"', "a large-language-model approach", True),
    ("large-language-model", "large language models are", True),
    ("Kullback", "the Kullback–Leibler divergence", True),
    ("Leibler", "the Kullback–Leibler divergence", True),
    ("encoder", "an encoder/decoder model", True),
    ("AI", "training a network", False),
    ("AI", "AI-generated ideas", True),
    ("RL", "RLHF for alignment", False),
    ("RL", "RL on incorrect data", True),
    ("RAG", "we leverage data", False),
    ("RAG", "RAG pipelines", True),
    ("art", "this article shows", False),
    ("LLM", "LLMs are everywhere", True),
    ("LLMs", "an LLM agent", True),
    ("GNN", "GNNs for graphs", True),
    ("model", "several models", True),
    ("models", "a model", True),
    ("models", "modeling the data", True),
    ("model", "modelling the data", True),
    ("study", "two studies", True),
    ("C++", "written in C++ today", True),
    ("C", "written in C++ today", False),
    ("C#", "a C# library", True),
    ('"k-NN"', "a k-NN classifier", True),
    ("generative", "text generation", False),
    ("generation", "generative models", False),
    ("universe", "a university press", False),
    ("university", "the universe expands", False),
    ("organ", "a large organization", False),
    ("organization", "an organ transplant", False),
    ("distill*", "knowledge distillation", True),
    ("distill*", "we distil it", False),
]


@pytest.mark.parametrize(("query", "text", "expected"), CASES)
def test_normalisation_cases(query: str, text: str, expected: bool) -> None:
    assert matches(query, abstract=text) is expected


def test_field_scopes() -> None:
    assert matches("title:diffusion", title="Diffusion models", abstract="x")
    assert not matches("title:diffusion", title="Transformers", abstract="diffusion")
    assert matches('author:"Ada Lovelace"', title="x", authors=("Ada Lovelace",))
    assert not matches("lovelace", title="x", authors=("Ada Lovelace",))  # unscoped: title/abstract
    assert matches("abstract:(quantization OR pruning)", abstract="we study pruning")


def test_boolean_operators() -> None:
    text = "language model quantization"
    assert matches('"language model" AND quantization', abstract=text)
    assert matches('"language model" quantization', abstract=text)
    assert not matches('"language model" AND distillation', abstract=text)
    assert matches("distillation OR quantization", abstract=text)
    assert not matches("quantization AND NOT model", abstract=text)
    assert matches("(a OR quantization) AND NOT (survey OR review)", abstract=text)
    assert not matches('"model language"', abstract=text)


@pytest.mark.parametrize(("query", "message"), [
    ('"language model', "unclosed quote at column 1"),
    ('quantization AND "language', "unclosed quote at column 18"),
    ("a AND", "missing term after 'AND' at column 6"),
    ("(a OR b", "unclosed '(' at column 1"),
    ("a OR b)", "unmatched ')' at column 7"),
    ("OR b", "missing term before 'OR' at column 1"),
    ("tilte:diffusion", "unknown field 'tilte:' (use title:, abstract: or author:) at column 1"),
    ("", "empty query at column 1"),
    ("()", "empty parentheses at column 1"),
    ("!!!", "'!!!' has no letters or digits to match at column 1"),
])
def test_syntax_errors_point_at_the_column(query: str, message: str) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse(query)
    assert str(info.value) == message


@pytest.mark.parametrize(("query", "message"), [
    ("(" * 250 + "a" + ")" * 250, "parentheses nested more than 50 deep at column 51"),
    ("title:" + "(" * 60 + "a" + ")" * 60, "parentheses nested more than 50 deep at column 57"),
    ("(NOT " * 250 + "a" + ")" * 250, "parentheses nested more than 50 deep at column 251"),
    ("NOT " * 3000, "missing term after 'NOT' at column 12001"),
])
def test_deeply_nested_queries_are_a_positioned_syntax_error(query: str, message: str) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse(query)
    assert str(info.value) == message


def test_a_long_run_of_nots_is_read_without_recursion() -> None:
    assert matches("NOT " * 3000 + "diffusion", title="diffusion models")  # an even run cancels out
    assert not matches("NOT " * 3001 + "diffusion", title="diffusion models")
    assert matches("(" * 50 + "diffusion" + ")" * 50, title="diffusion models")


def test_soft_hyphens_zero_width_and_bidi_characters_do_not_hide_words() -> None:
    from newsletter.entries import make_entry

    entry = make_entry(title="Atten\u00adtion Is All You Need", abstract="Zero\u200bwidth \u202especial\u202c",
                       source="s")
    assert entry.title == "Attention Is All You Need" and entry.abstract == "Zerowidth special"
    assert select([entry], Profile.from_strings(["title:attention"]))
    # text that reached the store raw before cleaning existed still matches
    raw = Entry(id="r", title="Atten\u00adtion Is All You Need")
    assert select([raw], Profile.from_strings(["title:attention"]))


def test_warnings_for_queries_that_cannot_help() -> None:
    assert parse("NOT survey").warnings() == ["can never match: every term is negated"]
    assert parse("the OR of").warnings() == ["consists only of stop words; it will match almost every paper"]
    assert parse("quantization").warnings() == []


def test_ranking_title_over_abstract_phrase_over_word_then_upvotes() -> None:
    entries = [
        Entry(id="a", title="Other", abstract="diffusion here", upvotes=50),
        Entry(id="b", title="Diffusion", abstract="nothing", upvotes=1),
        Entry(id="c", title="Diffusion too", abstract="nothing", upvotes=9),
    ]
    ranked = [m.entry.id for m in select(entries, Profile.from_strings(["diffusion"]))]
    assert ranked == ["c", "b", "a"]
    phrase = [Entry(id="w", title="x", abstract="language and model"),
              Entry(id="p", title="x", abstract="language model")]
    got = select(phrase, Profile.from_strings(['"language model"', "language"]))
    assert [m.entry.id for m in got] == ["p", "w"]


def test_reasons_say_which_term_and_where() -> None:
    entry = Entry(id="x", title="Quantization of LLMs", abstract="We study language models.")
    (m,) = select([entry], Profile.from_strings(['"language model" OR quantization', "LLM"]))
    assert {(h.query, h.term, h.field) for h in m.hits} == {
        ('"language model" OR quantization', '"language model"', "abstract"),
        ('"language model" OR quantization', "quantization", "title"),
        ("LLM", "LLM", "title"),
    }


@pytest.mark.parametrize("keywords", [["LLM", "LLM"], ["LLM OR LLM"], ["LLM OR llm", "quantization", "LLM OR llm"]])
def test_each_reason_is_given_once_however_often_the_profile_says_it(keywords: list[str]) -> None:
    """A query listed twice, or a term twice in one query: each hit once, batch or not."""
    from newsletter.batch import BatchMatcher

    entries = [Entry(id="x", title="Quantization of LLMs", abstract="LLM")]
    profile = Profile.from_strings(keywords)
    index = EntryIndex(entries)
    (m,) = index.select(profile)
    batch = BatchMatcher(index)
    (b,) = batch.matches(profile, batch.select_many([profile], 10, index.all).top(0))
    for hits in (m.hits, b.hits):
        assert len(hits) == len(set(hits)) and {(h.term, h.field) for h in hits} >= {("LLM", "title"), ("LLM", "abstract")}
    assert m.hits == b.hits


def test_exclude_and_min_upvotes() -> None:
    entries = [Entry(id="a", title="diffusion survey", upvotes=10), Entry(id="b", title="diffusion", upvotes=1),
               Entry(id="c", title="diffusion", upvotes=None)]
    assert [m.entry.id for m in select(entries, Profile.from_strings(["diffusion"], ["survey"]))] == ["b", "c"]
    got = select(entries, Profile.from_strings(["diffusion"], min_upvotes=5))
    assert [m.entry.id for m in got] == ["a"]


# --- properties --------------------------------------------------------------------------------

VOCAB = ["model", "models", "diffusion", "language", "quantization", "Schrödinger", "survey", "LLM",
         "LLMs", "graph", "agent", "agents", "RAG", "leverage", "straße", "training"]
words = st.sampled_from(VOCAB)
texts = st.lists(words, min_size=0, max_size=12).map(" ".join)
entries_st = st.lists(st.tuples(texts, texts), min_size=1, max_size=8).map(
    lambda pairs: [Entry(id=f"e{i}", title=t, abstract=a) for i, (t, a) in enumerate(pairs)])
terms_st = st.one_of(words, st.lists(words, min_size=2, max_size=3).map(lambda w: '"' + " ".join(w) + '"'),
                     words.map(lambda w: w[:4] + "*"))


@st.composite
def queries(draw: st.DrawFn, depth: int = 2) -> str:
    if depth == 0 or draw(st.booleans()):
        return draw(terms_st)
    op = draw(st.sampled_from(["AND", "OR", "AND NOT"]))
    return f"({draw(queries(depth - 1))} {op} {draw(queries(depth - 1))})"


def _oracle(q: str, e: Entry) -> bool:
    """Evaluate on one entry alone: the engine's answer for a batch must equal this."""
    return bool(EntryIndex([e]).eval(parse(q).root))


@settings(max_examples=150, deadline=None)
@given(entries_st, st.lists(queries(), min_size=1, max_size=3), st.lists(queries(), max_size=2))
def test_selected_entries_satisfy_a_keyword_and_no_exclude(entries, keywords, exclude) -> None:
    got = {m.entry.id for m in select(entries, Profile.from_strings(keywords, exclude))}
    for e in entries:
        expected = any(_oracle(k, e) for k in keywords) and not any(_oracle(x, e) for x in exclude)
        assert (e.id in got) is expected


@settings(max_examples=100, deadline=None)
@given(entries_st, queries())
def test_case_and_accents_change_nothing(entries, query) -> None:
    import unicodedata

    def strip(s: str) -> str:
        return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))

    base = [m.entry.id for m in select(entries, Profile.from_strings([query]))]
    quiet = [Entry(id=e.id, title=e.title.lower(), abstract=strip(e.abstract).lower()) for e in entries]
    # upper-casing keeps AND/OR/NOT operators and shouts every term
    assert [m.entry.id for m in select(quiet, Profile.from_strings([strip(query).upper()]))] == base


@settings(max_examples=100, deadline=None)
@given(entries_st, queries(), queries())
def test_adding_an_or_branch_never_removes_a_match(entries, a, b) -> None:
    narrow = {m.entry.id for m in select(entries, Profile.from_strings([a]))}
    wide = {m.entry.id for m in select(entries, Profile.from_strings([f"({a}) OR ({b})"]))}
    also = {m.entry.id for m in select(entries, Profile.from_strings([a, b]))}
    assert narrow <= wide and wide == also


@settings(max_examples=100, deadline=None)
@given(entries_st, queries())
def test_not_is_the_complement(entries, q) -> None:
    index = EntryIndex(entries)
    yes, no = index.eval(parse(q).root), index.eval(parse(f"NOT ({q})").root)
    assert yes & no == 0 and yes | no == index.all


@settings(max_examples=50, deadline=None)
@given(entries_st, st.lists(queries(), min_size=1, max_size=3))
def test_results_are_deterministic(entries, keywords) -> None:
    first = select(entries, Profile.from_strings(keywords))
    again = select(list(reversed(entries)), Profile.from_strings(keywords))
    assert [(m.entry.id, m.score, m.hits) for m in first] == [(m.entry.id, m.score, m.hits) for m in again]


@settings(max_examples=80, deadline=None)
@given(entries_st, st.lists(st.tuples(st.lists(queries(), min_size=1, max_size=4),
                                      st.lists(queries(), max_size=2),
                                      st.integers(min_value=0, max_value=3)), min_size=1, max_size=6),
       st.integers(min_value=1, max_value=5))
def test_batch_matcher_agrees_with_select(entries, specs, limit) -> None:
    from newsletter.batch import BatchMatcher

    entries = [Entry(id=e.id, title=e.title, abstract=e.abstract, upvotes=i % 4) for i, e in enumerate(entries)]
    index = EntryIndex(entries)
    profiles = [Profile.from_strings(k, x, u) for k, x, u in specs]
    batch = BatchMatcher(index)
    candidates = index.all & ~1  # leave the first entry out, as an issue window would
    result = batch.select_many(profiles, limit, candidates)
    for p, profile in enumerate(profiles):
        expected = index.select(profile, candidates, limit=limit)
        got = batch.matches(profile, result.top(p))
        assert [(m.entry.id, m.score, m.hits) for m in got] == [(m.entry.id, m.score, m.hits) for m in expected]


@settings(max_examples=80, deadline=None)
@given(entries_st, st.lists(st.tuples(st.lists(queries(), min_size=1, max_size=4),
                                      st.lists(queries(), max_size=2),
                                      st.integers(min_value=0, max_value=3)), min_size=1, max_size=6),
       st.integers(min_value=1, max_value=5), st.data())
def test_batch_places_agree_with_select(entries, specs, cap, data) -> None:
    """`explain`'s rank of one paper in many profiles is where `select` puts it."""
    from newsletter.batch import BatchMatcher

    entries = [Entry(id=e.id, title=e.title, abstract=e.abstract, upvotes=i % 4) for i, e in enumerate(entries)]
    index = EntryIndex(entries)
    profiles = [Profile.from_strings(k, x, u) for k, x, u in specs]
    target = data.draw(st.integers(min_value=0, max_value=len(entries) - 1))
    candidates = index.all & ~1
    places = BatchMatcher(index).places(profiles, target, [cap] * len(profiles), candidates)
    for profile, place in zip(profiles, places):
        selected = index.select(profile, candidates)
        ids = [m.entry.id for m in selected]
        assert place.of == len(selected)
        if entries[target].id not in ids:
            assert place.rank == 0
            continue
        assert place.rank == ids.index(entries[target].id) + 1
        assert place.score == selected[place.rank - 1].score
        edge = selected[min(cap, len(selected)) - 1]
        assert (entries[place.edge].id, place.edge_score) == (edge.entry.id, edge.score)
