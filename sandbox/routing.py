"""Route table.

Route modules (``identity``, ``graph_mail``, ...) expose ``register(router, ctx)``
and call :meth:`Router.add` for each endpoint.  Templates use ``{name}``
placeholders for one path segment; the placeholder values arrive percent-decoded
in ``request.params``.  When several templates match, the one with literal
segments further to the left wins, so ``.../messages/delta`` beats
``.../messages/{message}`` regardless of registration order.

The template doubles as the statistics key (``"GET /v1.0/users/{user}/messages"``),
so pick placeholder names with that in mind.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable
from urllib.parse import unquote

from .core import Request, Response

Handler = Callable[[Request], Response]


class Kind(enum.Enum):
    GRAPH = "graph"  # bearer token required; faults, latency and stats apply
    PUBLIC = "public"  # no bearer token (identity endpoints, pre-authenticated URLs); faults, latency, stats apply
    CONTROL = "control"  # /_sandbox: no auth, never faulted, delayed or counted


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    handler: Handler
    kind: Kind
    segments: tuple[str, ...]

    @property
    def stats_key(self) -> str:
        return f"{self.method} {self.template}"

    @property
    def precedence(self) -> tuple[int, ...]:
        """Lower sorts first: literal segments (0) beat placeholders (1), left to right."""
        return tuple(1 if _is_placeholder(s) else 0 for s in self.segments)


@dataclass(frozen=True)
class Match:
    route: Route
    params: dict[str, str]


class MethodNotAllowed(Exception):
    """The path exists but not for this method."""


def _is_placeholder(segment: str) -> bool:
    return segment.startswith("{") and segment.endswith("}")


def split_path(path: str) -> list[str]:
    """Split a raw path into percent-decoded segments (``%2F`` stays inside its segment)."""
    trimmed = path.strip("/")
    return [unquote(part) for part in trimmed.split("/")] if trimmed else []


class Router:
    def __init__(self) -> None:
        self._routes: list[Route] = []

    @property
    def routes(self) -> list[Route]:
        return list(self._routes)

    def add(self, method: str, template: str, handler: Handler, *, kind: Kind = Kind.GRAPH) -> Route:
        """Register ``handler`` for ``method template``; returns the route."""
        segments = tuple(template.strip("/").split("/"))
        route = Route(method.upper(), template, handler, kind, segments)
        for existing in self._routes:
            if existing.method == route.method and existing.segments == route.segments:
                raise ValueError(f"duplicate route {route.stats_key}")
        self._routes.append(route)
        return route

    def match(self, method: str, path: str) -> Match | None:
        """Find the route for ``method path``.

        Returns None when no template fits the path; raises MethodNotAllowed
        when templates fit the path but none has this method.
        """
        segments = split_path(path)
        best: tuple[tuple[int, ...], Route, dict[str, str]] | None = None
        path_known = False
        for route in self._routes:
            params = _bind(route.segments, segments)
            if params is None:
                continue
            path_known = True
            if route.method != method.upper():
                continue
            if best is None or route.precedence < best[0]:
                best = (route.precedence, route, params)
        if best is not None:
            return Match(best[1], best[2])
        if path_known:
            raise MethodNotAllowed(path)
        return None


def _bind(template: tuple[str, ...], segments: list[str]) -> dict[str, str] | None:
    if len(template) != len(segments):
        return None
    params: dict[str, str] = {}
    for pattern, value in zip(template, segments):
        if _is_placeholder(pattern):
            if not value:
                return None
            params[pattern[1:-1]] = value
        elif pattern.lower() != value.lower():  # Graph path segments are case-insensitive
            return None
    return params
