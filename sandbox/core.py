"""Transport-neutral request/response model.

The TLS server and the ``$batch`` route both turn their input into a
:class:`Request` and hand it to the dispatcher, so every route handler works the
same way whether it was called directly or as a batch item.
"""
from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Iterable, Iterator
from urllib.parse import parse_qsl

if TYPE_CHECKING:
    from .routing import Route

GRAPH_JSON = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
PLAIN_JSON = "application/json; charset=utf-8"


# --- time helpers -------------------------------------------------------------

def utc_now() -> dt.datetime:
    """Current UTC time truncated to whole seconds (Graph reports mail times per second)."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def iso(value: dt.datetime | None) -> str | None:
    """Graph's timestamp format: ``2024-05-01T10:00:00Z``."""
    if value is None:
        return None
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> dt.datetime:
    """Parse an ISO-8601 timestamp; naive values are taken as UTC."""
    cleaned = text.strip().strip("'\"")
    if cleaned.endswith(("Z", "z")):
        cleaned = cleaned[:-1] + "+00:00"
    value = dt.datetime.fromisoformat(cleaned)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


# --- headers ------------------------------------------------------------------

class Headers:
    """Case-insensitive, multi-valued header list."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = [(str(k), str(v)) for k, v in items]

    def get(self, name: str, default: str | None = None) -> str | None:
        wanted = name.lower()
        for key, value in self._items:
            if key.lower() == wanted:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for key, value in self._items if key.lower() == wanted]

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)


# --- request / response ---------------------------------------------------------

@dataclass
class Request:
    method: str
    path: str  # as sent, percent-encoded, without the query string
    query_string: str = ""
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    in_batch: bool = False
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    params: dict[str, str] = field(default_factory=dict)  # filled by the router
    route: "Route | None" = None
    principal: str | None = None  # set once the bearer token is validated
    batch_summary: dict | None = None  # a $batch envelope: its items, whether sequential, how many were not run

    @cached_property
    def query(self) -> dict[str, str]:
        """Query parameters (the last occurrence wins)."""
        return dict(parse_qsl(self.query_string, keep_blank_values=True))

    @cached_property
    def _options(self) -> dict[str, str]:
        options: dict[str, str] = {}
        for key, value in self.query.items():
            options[key.lower().lstrip("$")] = value
        return options

    def option(self, name: str) -> str | None:
        """An OData system query option, given with or without ``$``, any case."""
        return self._options.get(name.lower())

    @property
    def client_request_id(self) -> str:
        return self.headers.get("client-request-id") or self.request_id

    @property
    def target(self) -> str:
        return self.path + (f"?{self.query_string}" if self.query_string else "")

    def json(self) -> Any:
        """The JSON body; malformed JSON becomes a Graph-style 400."""
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise GraphError(400, "BadRequest", "Unable to read JSON request payload. "
                             "Please ensure Content-Type header is set and payload is of valid JSON format.")

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    stream: Iterable[bytes] | None = None  # lazily produced body of ``length`` bytes
    length: int | None = None
    payload: Any = None  # decoded JSON body, kept so $batch can embed it without re-parsing

    @classmethod
    def json(cls, payload: Any, status: int = 200, headers: Iterable[tuple[str, str]] = (),
             content_type: str = GRAPH_JSON) -> "Response":
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return cls(status, body, [("Content-Type", content_type), *headers], payload=payload)

    @classmethod
    def empty(cls, status: int = 204, headers: Iterable[tuple[str, str]] = ()) -> "Response":
        return cls(status, b"", list(headers))

    @property
    def content_length(self) -> int:
        return self.length if self.stream is not None and self.length is not None else len(self.body)

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def iter_body(self) -> Iterator[bytes]:
        if self.stream is not None:
            yield from self.stream
        elif self.body:
            yield self.body


# --- errors -----------------------------------------------------------------------

def graph_error_body(code: str, message: str, request_id: str, client_request_id: str) -> dict:
    return {"error": {"code": code, "message": message, "innerError": {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": request_id,
        "client-request-id": client_request_id,
    }}}


class GraphError(Exception):
    """An error rendered in Microsoft Graph's ``{"error": {...}}`` shape."""

    def __init__(self, status: int, code: str, message: str,
                 headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = list(headers)

    def to_response(self, request: Request) -> Response:
        body = graph_error_body(self.code, self.message, request.request_id, request.client_request_id)
        return Response.json(body, self.status, self.headers, content_type=PLAIN_JSON)


class JsonError(Exception):
    """An error with an arbitrary JSON body (identity endpoints, oproxy, control API)."""

    def __init__(self, status: int, body: dict, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body
        self.headers = list(headers)

    def to_response(self, request: Request) -> Response:
        return Response.json(self.body, self.status, self.headers, content_type=PLAIN_JSON)


def item_not_found() -> GraphError:
    return GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")


def invalid_user(user: str) -> GraphError:
    return GraphError(404, "ErrorInvalidUser", f"The requested user '{user}' is invalid.")


def bad_request(message: str, code: str = "BadRequest") -> GraphError:
    return GraphError(400, code, message)
