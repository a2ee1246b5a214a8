"""OData query options and ``Prefer`` headers, parsed the way Graph's Outlook endpoints accept them.

Only the subset the sandbox promises is supported; anything else is rejected with
the error Graph would give, so a client relying on unsupported syntax fails here
rather than in production.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Callable

from .core import GraphError, Headers, Request, bad_request, parse_iso

DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 1000


# --- Prefer ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Prefer:
    body_type: str | None = None  # "text" or "html"
    max_page_size: int | None = None
    immutable_ids: bool = False

    def applied(self) -> list[tuple[str, str]]:
        """The ``Preference-Applied`` header for the preferences honoured."""
        values = []
        if self.body_type:
            values.append(f'outlook.body-content-type="{self.body_type}"')
        if self.max_page_size:
            values.append(f"odata.maxpagesize={self.max_page_size}")
        if self.immutable_ids:
            values.append('IdType="ImmutableId"')
        return [("Preference-Applied", ", ".join(values))] if values else []


def parse_prefer(headers: Headers) -> Prefer:
    """Read every ``Prefer`` header; values may be comma-separated within one header."""
    body_type = None
    page = None
    immutable = False
    for header in headers.get_all("Prefer"):
        for part in header.split(","):
            name, _, value = part.strip().partition("=")
            name = name.strip().lower()
            value = value.strip().strip('"').strip()
            if name == "outlook.body-content-type" and value.lower() in ("text", "html"):
                body_type = value.lower()
            elif name == "odata.maxpagesize" and value.isdigit() and int(value) > 0:
                page = min(int(value), MAX_PAGE_SIZE)
            elif name == "idtype" and value.lower() == "immutableid":
                immutable = True
    return Prefer(body_type, page, immutable)


# --- paging ----------------------------------------------------------------------------

def _int_option(request: Request, name: str) -> int | None:
    raw = request.option(name)
    if raw is None or raw == "":
        return None
    if not re.fullmatch(r"\d+", raw.strip()):
        raise bad_request(f"Invalid value '{raw}' for query option '${name}'.", "ErrorInvalidUrlQuery")
    return int(raw)


def page_size(request: Request, prefer: Prefer, default: int = DEFAULT_PAGE_SIZE) -> int:
    """``$top`` wins, then ``Prefer: odata.maxpagesize``; capped at 1000 items per page."""
    top = _int_option(request, "top")
    if top is not None:
        if top < 1:
            raise bad_request("The value of $top must be between 1 and 1000.", "ErrorInvalidUrlQuery")
        return min(top, MAX_PAGE_SIZE)
    return prefer.max_page_size or default


def skip(request: Request) -> int:
    return _int_option(request, "skip") or 0


# --- $select -----------------------------------------------------------------------------

def parse_select(request: Request, allowed: set[str], type_name: str,
                 cast_allowed: dict[str, set[str]] | None = None) -> list[str] | None:
    """Canonical property names from ``$select``, or None when absent."""
    raw = request.option("select")
    if raw is None or not raw.strip():
        return None
    return parse_select_text(raw, allowed, type_name, cast_allowed)


def parse_select_text(raw: str, allowed: set[str], type_name: str,
                      cast_allowed: dict[str, set[str]] | None = None) -> list[str]:
    """Like Graph, a property of a derived type must be named with its type cast
    (``microsoft.graph.fileAttachment/contentId``); the bare name is unknown on the base type."""
    by_lower = {name.lower(): name for name in allowed}
    selected: list[str] = []
    for part in raw.split(","):
        name = part.strip()
        if not name:
            continue
        cast, slash, prop = name.lower().rpartition("/")
        if slash:
            derived = {n.lower(): n for n in (cast_allowed or {}).get(cast, set())}
            canonical = derived.get(prop) or by_lower.get(prop)
        else:
            canonical = by_lower.get(name.lower())
        if canonical is None:
            raise GraphError(400, "RequestBroker--ParseUri",
                             f"Could not find a property named '{name}' on type 'microsoft.graph.{type_name}'.")
        if canonical not in selected:
            selected.append(canonical)
    return selected


# --- $filter ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class FilterField:
    name: str  # canonical property path, e.g. "from/emailAddress/address"
    kind: str  # "datetime", "bool" or "string"
    ops: frozenset[str]
    getter: Callable[[Any], Any]


@dataclass(frozen=True)
class Clause:
    field: FilterField
    op: str
    value: Any

    def test(self, item: Any) -> bool:
        actual = self.field.getter(item)
        expected = self.value
        if self.field.kind == "string":
            actual = (actual or "").casefold()
            expected = expected.casefold()
        if actual is None:
            return False
        return _OPS[self.op](actual, expected)


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b, "le": lambda a, b: a <= b,
}

_TOKEN = re.compile(r"\s*(?:(?P<paren>[()])|(?P<string>'(?:[^']|'')*')|(?P<word>[^\s()']+))")


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise invalid_filter()
        kind = match.lastgroup or "word"
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def invalid_filter() -> GraphError:
    return GraphError(400, "ErrorInvalidUrlQueryFilter", "The query filter contains one or more invalid nodes.")


def _literal(field: FilterField, kind: str, token: str) -> Any:
    if field.kind == "string":
        if kind != "string":
            raise invalid_filter()
        return token[1:-1].replace("''", "'")
    if kind == "string":  # quoted dates/booleans are type errors in OData
        raise invalid_filter()
    if field.kind == "bool":
        if token.lower() not in ("true", "false"):
            raise invalid_filter()
        return token.lower() == "true"
    try:
        return parse_iso(token)
    except ValueError:
        raise invalid_filter()


def parse_filter(text: str, fields: dict[str, FilterField]) -> list[Clause]:
    """Parse ``prop op value [and prop op value ...]`` (optionally parenthesised clauses)."""
    tokens = [t for t in _tokenize(text) if t[0] != "paren"]
    if _unbalanced(text):
        raise invalid_filter()
    clauses: list[Clause] = []
    index = 0
    while True:
        if index + 3 > len(tokens):
            raise invalid_filter()
        (_, prop), (_, op), (value_kind, value) = tokens[index:index + 3]
        field = fields.get(prop.lower())
        op = op.lower()
        if field is None or op not in field.ops:
            raise invalid_filter()
        clauses.append(Clause(field, op, _literal(field, value_kind, value)))
        index += 3
        if index == len(tokens):
            return clauses
        if tokens[index][1].lower() != "and":
            raise invalid_filter()
        index += 1


def _unbalanced(text: str) -> bool:
    depth = 0
    in_string = False
    for char in text:
        if char == "'":
            in_string = not in_string
        elif not in_string and char == "(":
            depth += 1
        elif not in_string and char == ")":
            depth -= 1
            if depth < 0:
                return True
    return depth != 0


# --- $orderby ----------------------------------------------------------------------------------

def parse_orderby(text: str, allowed: dict[str, str]) -> list[tuple[str, bool]]:
    """``[(canonical property, descending)]``; ``allowed`` maps lower-case -> canonical name."""
    order: list[tuple[str, bool]] = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2:
            raise bad_request("Invalid $orderby expression.", "ErrorInvalidUrlQuery")
        canonical = allowed.get(words[0].lower())
        direction = words[1].lower() if len(words) == 2 else "asc"
        if canonical is None or direction not in ("asc", "desc"):
            raise bad_request(f"The property '{words[0]}' is not supported in $orderby.",
                              "ErrorInvalidUrlQuery")
        order.append((canonical, direction == "desc"))
    return order


# --- $search --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Search:
    field: str | None  # "subject", "from", "body" or None for the default fields
    term: str


def parse_search(text: str) -> Search:
    """A KQL-lite term: ``"phish"``, ``"subject:invoice"``, ``"from:bob@contoso.com"``."""
    term = text.strip()
    if len(term) >= 2 and term[0] == term[-1] == '"':
        term = term[1:-1]
    term = term.strip()
    prefix, sep, rest = term.partition(":")
    if sep and prefix.lower() in ("subject", "from", "body") and rest.strip():
        return Search(prefix.lower(), rest.strip().strip('"').casefold())
    if not term:
        raise bad_request("The $search query is empty.", "ErrorInvalidUrlQuery")
    return Search(None, term.casefold())


def datetime_field(name: str, getter: Callable[[Any], dt.datetime]) -> FilterField:
    return FilterField(name, "datetime", frozenset({"eq", "ne", "gt", "ge", "lt", "le"}), getter)


def bool_field(name: str, getter: Callable[[Any], bool]) -> FilterField:
    return FilterField(name, "bool", frozenset({"eq", "ne"}), getter)


def string_field(name: str, getter: Callable[[Any], str | None]) -> FilterField:
    return FilterField(name, "string", frozenset({"eq", "ne"}), getter)
