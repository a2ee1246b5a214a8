"""JSON batching: ``POST /v1.0/$batch``.

Each item becomes a :class:`Request` flagged ``in_batch`` and goes through the
same dispatcher as a top-level request, inheriting the outer request's
authenticated principal.  Faults apply to items only when the rule says
``in_batch``; items are counted under ``batch_items`` in the statistics.
Items run like Outlook runs them: at most 4 at a time, in list order (one at
a time when the batch is sequential: every item after the first has ``dependsOn``,
as Graph requires of a batch that is not fully parallel; an item whose dependency
failed is not run and answers 424).  Each running item holds a
slot of the app's concurrency limit (tenant.py) and takes
``settings.batch_item_latency_ms``.
"""
from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from .context import SandboxContext
from .core import GraphError, Headers, Request, Response, bad_request
from .routing import Router
from .tenant import gate_of, throttled_outcome

MAX_BATCH_ITEMS = 20
PARALLEL_ITEMS = 4
_SKIPPED_HEADERS = {"content-length", "connection", "date", "server"}


def register(router: Router, ctx: SandboxContext) -> None:
    router.add("POST", "/v1.0/$batch", BatchApi(ctx).batch)


class BatchApi:
    def __init__(self, ctx: SandboxContext) -> None:
        self.ctx = ctx

    def batch(self, request: Request) -> Response:
        items = _validate(request.json())
        by_id = {item["id"]: item for item in items}
        results: dict[str, dict] = {}

        def run(item: dict, chain: tuple[str, ...] = ()) -> dict:
            if item["id"] in results:
                return results[item["id"]]
            failed = None
            for dependency in item["dependsOn"]:
                if dependency in chain:
                    raise bad_request("The dependsOn graph of the batch contains a cycle.")
                outcome = run(by_id[dependency], chain + (item["id"],))
                if outcome["status"] >= 400:
                    failed = dependency
            results[item["id"]] = (self._failed_dependency(item, failed, request) if failed
                                   else self._execute(item, request))
            return results[item["id"]]

        sequential = any(item["dependsOn"] for item in items)
        if sequential:
            for item in items:
                run(item)
        else:
            self._run_parallel(items, request, results)
        not_run = sum(1 for r in results.values() if r["status"] == 424)
        request.batch_summary = {"items": len(items), "sequential": sequential, "not_run": not_run}
        return Response.json({"responses": [results[item["id"]] for item in items]})

    def _run_parallel(self, items: list[dict], outer: Request, results: dict[str, dict]) -> None:
        """Like Outlook: at most PARALLEL_ITEMS sub-requests of one batch run at a time, in list order."""
        queue = list(reversed(items))
        lock = threading.Lock()

        def lane() -> None:
            while True:
                with lock:
                    if not queue:
                        return
                    item = queue.pop()
                results[item["id"]] = self._execute(item, outer)

        lanes = [threading.Thread(target=lane, daemon=True) for _ in range(min(PARALLEL_ITEMS, len(items)))]
        for thread in lanes:
            thread.start()
        for thread in lanes:
            thread.join()

    def _failed_dependency(self, item: dict, dependency: str, outer: Request) -> dict:
        error = GraphError(424, "FailedDependency",
                           f"The request depends on request '{dependency}', which failed.")
        return {"id": item["id"], "status": 424, "headers": {"Content-Type": "application/json"},
                "body": error.to_response(outer).payload}

    def _execute(self, item: dict, outer: Request) -> dict:
        request = _item_request(item, outer)
        if request.path.lower() == "/v1.0/$batch":
            error = bad_request("Nested $batch requests are not supported.")
            return {"id": item["id"], "status": 400, "headers": {"Content-Type": "application/json"},
                    "body": error.to_response(request).payload}
        started = time.perf_counter()
        assert self.ctx.dispatcher is not None
        gate = gate_of(self.ctx)
        if not gate.acquire():
            outcome = throttled_outcome(gate, request)
        else:
            try:
                outcome = self.ctx.dispatcher.dispatch(request)
                if self.ctx.settings.batch_item_latency_ms > 0:
                    time.sleep(self.ctx.settings.batch_item_latency_ms / 1000)
            finally:
                gate.release()
        response = outcome.response
        body_bytes = b"".join(response.iter_body())
        self.ctx.stats.record(outcome.key, request, response.status, len(request.body), len(body_bytes),
                              (time.perf_counter() - started) * 1000, outcome.faulted)
        result: dict[str, Any] = {
            "id": item["id"],
            "status": response.status,
            "headers": {k: v for k, v in response.headers if k.lower() not in _SKIPPED_HEADERS},
        }
        if body_bytes:
            result["body"] = _embed_body(response, body_bytes)
        return result


def _validate(payload: Any) -> list[dict]:
    if not isinstance(payload, dict) or not isinstance(payload.get("requests"), list):
        raise bad_request("Invalid batch payload format: a 'requests' array is required.")
    items = payload["requests"]
    if not items:
        raise bad_request("Invalid batch payload format: the 'requests' array is empty.")
    if len(items) > MAX_BATCH_ITEMS:
        raise bad_request(f"The batch contains {len(items)} requests; at most {MAX_BATCH_ITEMS} are allowed.")
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, dict) or not item.get("id") or not item.get("method") or not item.get("url"):
            raise bad_request("Each batch request needs 'id', 'method' and 'url'.")
        item["id"] = str(item["id"])
        item["dependsOn"] = [str(d) for d in item.get("dependsOn") or []]
        if item["id"] in seen:
            raise bad_request(f"Batch request ids must be unique; '{item['id']}' is repeated.")
        seen.add(item["id"])
    if any(item["dependsOn"] for item in items) and not all(item["dependsOn"] for item in items[1:]):
        raise bad_request("Batch should be either fully sequential or fully parallel: when one request has "
                          "'dependsOn', every request after the first needs one.")
    for item in items:
        for dependency in item["dependsOn"]:
            if dependency not in seen:
                raise bad_request(f"Request '{item['id']}' depends on unknown request '{dependency}'.")
    return items


def _item_request(item: dict, outer: Request) -> Request:
    url = str(item["url"])
    parts = urlsplit(url if url.startswith("/") else "/" + url)
    headers = Headers((str(k), str(v)) for k, v in (item.get("headers") or {}).items())
    body = item.get("body")
    if body is None:
        raw = b""
    elif isinstance(body, (dict, list)):
        raw = json.dumps(body).encode("utf-8")
    elif "json" in (headers.get("Content-Type") or "application/json").lower():
        raw = str(body).encode("utf-8")
    else:  # binary bodies travel base64-encoded
        raw = base64.b64decode(str(body))
    request = Request(method=str(item["method"]).upper(), path="/v1.0" + parts.path,
                      query_string=parts.query, headers=headers, body=raw, in_batch=True)
    request.principal = outer.principal
    return request


def _embed_body(response: Response, body: bytes) -> Any:
    if response.payload is not None:
        return response.payload
    content_type = (response.header("Content-Type") or "").lower()
    if "json" in content_type:
        try:
            return json.loads(body)
        except ValueError:
            pass
    return base64.b64encode(body).decode("ascii")
