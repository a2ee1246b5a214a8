"""The request pipeline shared by HTTP requests and $batch items.

route lookup -> fault injection -> bearer authentication (Graph routes) ->
handler -> common response headers.  Latency and statistics are the caller's
business (the HTTP layer for requests, the batch route for items) because they
differ between the two.
"""
from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass

from .clouds import cloud_profile
from .context import SandboxContext
from .core import GraphError, JsonError, Request, Response
from .routing import Kind, MethodNotAllowed, Route, Router, split_path
from .trouble import fault_response


@dataclass
class Outcome:
    response: Response
    key: str  # statistics key: "METHOD /template"
    kind: Kind | None  # None when no route matched
    faulted: bool = False


class Dispatcher:
    def __init__(self, router: Router, ctx: SandboxContext) -> None:
        self.router = router
        self.ctx = ctx

    def dispatch(self, request: Request) -> Outcome:
        try:
            match = self.router.match(request.method, request.path)
        except MethodNotAllowed:
            return self._refused_by_cloud(request, None) or self._unrouted(request, 405)
        if match is None:
            return self._refused_by_cloud(request, None) or self._unrouted(request, 404)
        route = match.route
        request.params, request.route = match.params, route
        faulted = False
        if route.kind is not Kind.CONTROL:
            refused = self._refused_by_cloud(request, route)
            if refused is not None:
                return refused
            rule = self.ctx.faults.pick(request.method, request.path, request.in_batch)
            if rule is not None:
                faulted = True
                if rule.delay_ms:
                    time.sleep(rule.delay_ms / 1000)
                if rule.status is not None:
                    return Outcome(self._finish(request, fault_response(rule, request)),
                                   route.stats_key, route.kind, True)
        try:
            if route.kind is Kind.GRAPH and request.principal is None:
                request.principal = self.ctx.tokens.authenticate(request, self.ctx.base_url)
            over_budget = self.ctx.budget.check(request) if route.kind is Kind.GRAPH else None
            if over_budget is not None:
                raise over_budget
            response = route.handler(request)
        except (GraphError, JsonError) as error:
            response = error.to_response(request)
        except Exception:  # a sandbox bug: report it loudly, answer like Graph would
            traceback.print_exc(file=sys.stderr)
            response = GraphError(500, "InternalServerError",
                                  "The sandbox failed to process the request.").to_response(request)
        return Outcome(self._finish(request, response), route.stats_key, route.kind, faulted)

    def _refused_by_cloud(self, request: Request, route: Route | None) -> Outcome | None:
        """What the emulated cloud's Graph lacks (sandbox/clouds.py) is refused before faults and authentication."""
        if not request.path.startswith("/v1.0"):
            return None
        error = cloud_profile(self.ctx.settings.cloud).refusal(request, route)
        if error is None:
            return None
        key = route.stats_key if route is not None else f"{request.method} (unmatched)"
        return Outcome(self._finish(request, error.to_response(request)), key, route.kind if route else None)

    def _unrouted(self, request: Request, status: int) -> Outcome:
        if request.path.startswith("/v1.0"):
            if status == 405:
                error = GraphError(405, "BadRequest", f"The HTTP method '{request.method}' is not allowed "
                                                      "for this resource.")
            else:
                segments = split_path(request.path)
                error = GraphError(400, "BadRequest",
                                   f"Resource not found for the segment '{segments[-1] if segments else ''}'.")
            response = error.to_response(request)
        else:
            response = JsonError(status, {"error": "not_found" if status == 404 else "method_not_allowed",
                                          "error_description": f"No sandbox endpoint for {request.method} "
                                                               f"{request.path}."}).to_response(request)
        return Outcome(self._finish(request, response), f"{request.method} (unmatched)", None)

    @staticmethod
    def _finish(request: Request, response: Response) -> Response:
        response.headers.append(("request-id", request.request_id))
        response.headers.append(("client-request-id", request.client_request_id))
        return response
