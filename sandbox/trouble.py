"""Fault injection and request accounting (used by the benchmarks and reliability tests)."""
from __future__ import annotations

import collections
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .core import PLAIN_JSON, Request, Response, graph_error_body

# Default error bodies for injected faults on Graph routes: (code, message).
_GRAPH_FAULTS: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "The request was rejected by the sandbox fault injector."),
    401: ("InvalidAuthenticationToken", "Access token validation failure."),
    403: ("ErrorAccessDenied", "Access is denied. Check credentials and try again."),
    404: ("ErrorItemNotFound", "The specified object was not found in the store."),
    429: ("ApplicationThrottled", "Application is over its MailboxConcurrency limit."),
    500: ("InternalServerError", "An internal server error occurred. The operation failed."),
    502: ("BadGateway", "The upstream service returned an invalid response."),
    503: ("ServiceUnavailable", "The service is temporarily unavailable. Retry the request later."),
    504: ("GatewayTimeout", "The gateway did not receive a timely response from the backend."),
}


@dataclass
class FaultRule:
    """One injection rule; see README.md ("Faults") for the semantics of each field."""

    id: int
    path_regex: str
    methods: frozenset[str] | None = None
    status: int | None = None
    retry_after: float | None = None
    every_nth: int = 1
    count: int | None = None
    delay_ms: int = 0
    in_batch: bool = False
    body: Any = None
    location: str | None = None
    echo_authorization: bool = False
    matched: int = 0
    applied: int = 0
    _pattern: re.Pattern = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._pattern = re.compile(self.path_regex)
        if self.every_nth < 1:
            raise ValueError("every_nth must be >= 1")
        if self.status is None and not self.delay_ms:
            raise ValueError("a fault needs a status, a delay_ms, or both")
        if self.location is not None and not (self.status and 300 <= self.status < 400):
            raise ValueError("location needs a 3xx status")

    def matches(self, method: str, path: str, in_batch: bool) -> bool:
        if in_batch and not self.in_batch:
            return False
        if self.methods is not None and method.upper() not in self.methods:
            return False
        return self._pattern.search(path) is not None

    def exhausted(self) -> bool:
        return self.count is not None and self.applied >= self.count

    def to_dict(self) -> dict:
        return {"id": self.id, "path_regex": self.path_regex,
                "methods": sorted(self.methods) if self.methods else None, "status": self.status,
                "retry_after": self.retry_after, "every_nth": self.every_nth, "count": self.count,
                "delay_ms": self.delay_ms, "in_batch": self.in_batch, "body": self.body,
                "location": self.location, "echo_authorization": self.echo_authorization,
                "matched": self.matched, "applied": self.applied}


class FaultInjector:
    """Decides, per request, whether an injected fault applies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._next_id = 1

    def add(self, path_regex: str = ".*", methods: list[str] | str | None = None,
            status: int | None = None, retry_after: float | None = None, every_nth: int = 1,
            count: int | None = None, delay_ms: int = 0, in_batch: bool = False,
            body: Any = None, location: str | None = None, echo_authorization: bool = False) -> int:
        if isinstance(methods, str):
            methods = [methods]
        method_set = frozenset(m.upper() for m in methods) if methods else None
        with self._lock:
            rule = FaultRule(self._next_id, path_regex, method_set, status, retry_after,
                             int(every_nth), count, int(delay_ms or 0), bool(in_batch), body, location,
                             bool(echo_authorization))
            self._next_id += 1
            self._rules.append(rule)
            return rule.id

    def remove(self, rule_id: int) -> bool:
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.id != rule_id]
            return len(self._rules) != before

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def list(self) -> list[dict]:
        with self._lock:
            return [r.to_dict() for r in self._rules]

    def pick(self, method: str, path: str, in_batch: bool) -> FaultRule | None:
        """Count the request against every matching rule and return the first that fires."""
        fired: FaultRule | None = None
        with self._lock:
            for rule in self._rules:
                if not rule.matches(method, path, in_batch):
                    continue
                rule.matched += 1
                if fired is None and not rule.exhausted() and rule.matched % rule.every_nth == 0:
                    rule.applied += 1
                    fired = rule
        return fired


def fault_response(rule: FaultRule, request: Request) -> Response:
    """The response an injected fault produces (only called when ``rule.status`` is set)."""
    assert rule.status is not None
    headers: list[tuple[str, str]] = []
    if rule.retry_after is not None:
        retry = rule.retry_after
        headers.append(("Retry-After", str(int(retry)) if float(retry).is_integer() else str(retry)))
    if rule.location is not None:
        # A redirect: a client that follows it re-sends the request (a 307/308 with its body) to `location`.
        headers.append(("Location", rule.location))
        return Response(rule.status, b"", [("Content-Type", "text/plain; charset=utf-8"), *headers])
    if rule.echo_authorization:
        # A careless server or proxy quoting the caller's credentials back in its error message.
        authorization = request.headers.get("Authorization") or ""
        code, _ = _GRAPH_FAULTS.get(rule.status, ("SandboxInjectedFault", "Injected fault."))
        body = graph_error_body(code, f"Rejected request with Authorization: {authorization}", request.request_id,
                                request.client_request_id)
        return Response.json(body, rule.status, headers, content_type=PLAIN_JSON)
    if rule.body is not None:
        if isinstance(rule.body, (dict, list)):
            return Response.json(rule.body, rule.status, headers, content_type=PLAIN_JSON)
        return Response(rule.status, str(rule.body).encode("utf-8"),
                        [("Content-Type", "text/plain; charset=utf-8"), *headers])
    if request.path.startswith("/v1.0"):
        code, message = _GRAPH_FAULTS.get(rule.status, ("SandboxInjectedFault", "Injected fault."))
        body = graph_error_body(code, message, request.request_id, request.client_request_id)
        return Response.json(body, rule.status, headers, content_type=PLAIN_JSON)
    return Response.json({"error": "temporarily_unavailable",
                          "error_description": f"Sandbox injected fault (HTTP {rule.status})."},
                         rule.status, headers, content_type=PLAIN_JSON)


# --- what Graph's throttling counts ------------------------------------------------------------------------
# graph_requests: Graph requests as Graph throttles them - every request to /v1.0 and every request inside a
# $batch, but not the $batch envelope; round_trips: HTTP requests to /v1.0 (envelopes included, identity
# endpoints not); throttled: 429 answers received, to requests and to $batch items alike.
GRAPH_BUDGET_TOTALS = ("graph_requests", "round_trips", "throttled")


def count_against_graph_budget(totals: dict, request: Request, status: int) -> None:
    if not request.path.startswith("/v1.0"):
        return
    if not request.in_batch:
        totals["round_trips"] += 1
    if request.in_batch or request.path.lower() != "/v1.0/$batch":
        totals["graph_requests"] += 1
    if status == 429:
        totals["throttled"] += 1


def _new_counter() -> dict:
    return {"requests": 0, "bytes_in": 0, "bytes_out": 0, "statuses": {}}


class Stats:
    """Per-endpoint counters, batch-item counters and a bounded request log."""

    def __init__(self, log_limit: int = 20000) -> None:
        self._lock = threading.Lock()
        self._log_limit = log_limit
        self._clear()

    def _clear(self) -> None:
        self._endpoints: dict[str, dict] = collections.defaultdict(_new_counter)
        self._batch_items: dict[str, dict] = collections.defaultdict(_new_counter)
        self._totals = {"requests": 0, "bytes_in": 0, "bytes_out": 0, "batch_items": 0,
                        "faults_injected": 0, **{k: 0 for k in GRAPH_BUDGET_TOTALS}}
        self._log: collections.deque = collections.deque(maxlen=self._log_limit)

    def reset(self) -> None:
        with self._lock:
            self._clear()

    def record(self, key: str, request: Request, status: int, bytes_in: int, bytes_out: int,
               duration_ms: float, faulted: bool) -> None:
        """Account one HTTP request or, when ``request.in_batch``, one $batch item."""
        with self._lock:
            bucket = self._batch_items[key] if request.in_batch else self._endpoints[key]
            bucket["requests"] += 1
            bucket["bytes_in"] += bytes_in
            bucket["bytes_out"] += bytes_out
            bucket["statuses"][str(status)] = bucket["statuses"].get(str(status), 0) + 1
            if request.in_batch:
                self._totals["batch_items"] += 1
            else:
                self._totals["requests"] += 1
                self._totals["bytes_in"] += bytes_in
                self._totals["bytes_out"] += bytes_out
            if faulted:
                self._totals["faults_injected"] += 1
            count_against_graph_budget(self._totals, request, status)
            self._log.append({
                "time": time.time(), "method": request.method, "path": request.path,
                "query": request.query_string, "status": status, "key": key,
                "in_batch": request.in_batch, "duration_ms": round(duration_ms, 3),
                "request_id": request.request_id,
                **({"batch": request.batch_summary} if request.batch_summary else {}),
            })

    def snapshot(self) -> dict:
        with self._lock:
            # round-trip through JSON for a deep, detached copy
            return json.loads(json.dumps({"totals": self._totals, "endpoints": self._endpoints,
                                          "batch_items": self._batch_items}))

    def log(self) -> list[dict]:
        with self._lock:
            return list(self._log)
