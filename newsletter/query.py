"""The profile query language: text -> AST, with syntax errors that point at a column.

    quantization            word (folded, stemmed)       "language model"   adjacent words
    distill*                prefix                       title: abstract: author:   scope
    a AND b, a b            both    a OR b   either      NOT a    (parentheses group)

Operators are upper case; lower-case `and`/`or`/`not` are ordinary words.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from newsletter.errors import QuerySyntaxError
from newsletter.text import STOP_WORDS, stem, words

FIELDS = ("title", "abstract", "author")
MAX_DEPTH = 50  # parentheses nested deeper than this are refused (the parser and matcher recurse)


@dataclass(frozen=True)
class Term:
    words: tuple[str, ...]  # stemmed, folded; for a prefix term the last word is folded only
    field: str | None  # None = title or abstract
    prefix: bool
    text: str  # as written, for "why you got this"

    @property
    def phrase(self) -> bool:
        return len(self.words) > 1


@dataclass(frozen=True)
class Not:
    child: Node


@dataclass(frozen=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[Node, ...]


Node = Term | Not | And | Or


@dataclass(frozen=True)
class Query:
    text: str
    root: Node
    _positive_terms: tuple[Term, ...] = field(init=False, repr=False, compare=False)
    # no term text twice among them: the query's hits on an entry never repeat (see matching.Profile)
    distinct_terms: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        terms = tuple(_positive(self.root, negated=False))
        object.__setattr__(self, "_positive_terms", terms)
        object.__setattr__(self, "distinct_terms", len({t.text for t in terms}) == len(terms))

    def positive_terms(self) -> tuple[Term, ...]:
        """Terms whose presence can make the query match (not under a NOT): the reasons."""
        return self._positive_terms

    def warnings(self) -> list[str]:
        found = self.positive_terms()
        if not found:
            return ["can never match: every term is negated"]
        if all(t.words and all(w in STOP_WORDS for w in t.words) for t in found):
            return ["consists only of stop words; it will match almost every paper"]
        return []


def _positive(node: Node, negated: bool) -> list[Term]:
    if isinstance(node, Term):
        return [] if negated else [node]
    if isinstance(node, Not):
        return _positive(node.child, not negated)
    out: list[Term] = []
    for child in node.children:
        out.extend(_positive(child, negated))
    return out


# --- lexer ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Tok:
    kind: str  # WORD PHRASE LPAREN RPAREN AND OR NOT FIELD END
    value: str
    column: int  # 1-based


def _lex(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "()":
            toks.append(_Tok("LPAREN" if c == "(" else "RPAREN", c, i + 1))
            i += 1
        elif c == '"':
            end = text.find('"', i + 1)
            if end < 0:
                raise QuerySyntaxError("unclosed quote", i + 1)
            toks.append(_Tok("PHRASE", text[i + 1 : end], i + 1))
            i = end + 1
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in '()"':
                if text[j] == ":" and text[i:j].isalpha():
                    break
                j += 1
            if j < n and text[j] == ":" and text[i:j].isalpha():
                name = text[i:j].lower()
                if name not in FIELDS:
                    raise QuerySyntaxError(
                        f"unknown field '{text[i:j]}:' (use title:, abstract: or author:)", i + 1
                    )
                toks.append(_Tok("FIELD", name, i + 1))
                i = j + 1
                continue
            word = text[i:j]
            kind = word if word in ("AND", "OR", "NOT") else "WORD"
            toks.append(_Tok(kind, word, i + 1))
            i = j
    toks.append(_Tok("END", "", n + 1))
    return toks


# --- parser --------------------------------------------------------------------------------

class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _lex(text)
        self.pos = 0
        self.depth = 0

    def peek(self) -> _Tok:
        return self.toks[self.pos]

    def take(self) -> _Tok:
        tok = self.toks[self.pos]
        self.pos += 1
        return tok

    def parse(self) -> Node:
        if self.peek().kind == "END":
            raise QuerySyntaxError("empty query", 1)
        node = self.or_expr(None)
        tok = self.peek()
        if tok.kind == "RPAREN":
            raise QuerySyntaxError("unmatched ')'", tok.column)
        if tok.kind != "END":  # pragma: no cover - or_expr consumes everything else
            raise QuerySyntaxError(f"unexpected '{tok.value}'", tok.column)
        return node

    def or_expr(self, scope: str | None) -> Node:
        children = [self.and_expr(scope)]
        while self.peek().kind == "OR":
            self.take()
            children.append(self.and_expr(scope))
        return children[0] if len(children) == 1 else Or(tuple(children))

    def and_expr(self, scope: str | None) -> Node:
        children = [self.not_expr(scope)]
        while self.peek().kind in ("AND", "WORD", "PHRASE", "FIELD", "LPAREN", "NOT"):
            if self.peek().kind == "AND":
                self.take()
            children.append(self.not_expr(scope))
        return children[0] if len(children) == 1 else And(tuple(children))

    def not_expr(self, scope: str | None) -> Node:
        # A run of NOTs is read in a loop, not by recursion, and cancels in pairs: NOT NOT a is a.
        negations = 0
        while self.peek().kind == "NOT":
            self.take()
            negations += 1
        node = self.primary(scope)
        return Not(node) if negations % 2 else node

    def primary(self, scope: str | None) -> Node:
        tok = self.take()
        if tok.kind == "FIELD":
            if scope is not None and scope != tok.value:
                raise QuerySyntaxError(f"'{tok.value}:' inside '{scope}:'", tok.column)
            nxt = self.peek()
            if nxt.kind not in ("WORD", "PHRASE", "LPAREN"):
                raise QuerySyntaxError(f"missing term after '{tok.value}:'", nxt.column)
            return self.primary(tok.value)
        if tok.kind == "LPAREN":
            if self.peek().kind == "RPAREN":
                raise QuerySyntaxError("empty parentheses", tok.column)
            if self.depth >= MAX_DEPTH:
                raise QuerySyntaxError(f"parentheses nested more than {MAX_DEPTH} deep", tok.column)
            self.depth += 1
            node = self.or_expr(scope)
            self.depth -= 1
            close = self.take()
            if close.kind != "RPAREN":
                raise QuerySyntaxError("unclosed '('", tok.column)
            return node
        if tok.kind in ("WORD", "PHRASE"):
            return _term(tok, scope)
        if tok.kind == "END":
            prev = self.toks[self.pos - 2] if self.pos >= 2 else tok
            raise QuerySyntaxError(f"missing term after '{prev.value}'", tok.column)
        if tok.kind == "RPAREN":
            raise QuerySyntaxError("unmatched ')'", tok.column)
        raise QuerySyntaxError(f"missing term before '{tok.value}'", tok.column)


def _term(tok: _Tok, scope: str | None) -> Term:
    raw = tok.value
    prefix = raw.endswith("*")
    body = raw.rstrip("*") if prefix else raw
    found = words(body)
    if not found:
        raise QuerySyntaxError(f"'{raw}' has no letters or digits to match", tok.column)
    if prefix:
        stems = tuple(stem(w) for w in found[:-1]) + (found[-1],)
    else:
        stems = tuple(stem(w) for w in found)
    shown = f'"{raw}"' if tok.kind == "PHRASE" else raw
    if scope:
        shown = f"{scope}:{shown}"
    return Term(stems, scope, prefix, shown)


def parse(text: str) -> Query:
    """Parse one query; raises QuerySyntaxError with a 1-based column."""
    return Query(text, _Parser(text).parse())
