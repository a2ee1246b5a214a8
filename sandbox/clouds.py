"""Cloud profiles: what a national cloud's Graph v1.0 lacks for mail, refused the way Graph refuses it.

The profiles follow Microsoft's per-cloud schemas (``v1.0-Prod`` worldwide, ``v1.0-Fairfax`` US Gov,
``v1.0-Mooncake`` 21Vianet):

* ``worldwide``: everything.
* ``usgov`` (GCC-High, DoD): no ``attachments/createUploadSession``, no ``translateExchangeIds``, no
  ``permanentDelete``; ``createReply``/``createReplyAll``/``createForward`` take no parameters.
* ``china`` (21Vianet): no ``messageRules``, no message ``delta``, no ``permanentDelete``, no message
  properties ``internetMessageHeaders``/``flag``; the create-response actions take no parameters.

A missing segment is an OData 400 ``Resource not found for the segment '...'.``; a missing property in
``$select`` is ``Could not find a property named '...' on type 'microsoft.graph.message'.``; a parameter an
action does not declare is ``The parameter '...' in the request payload is not a valid parameter for the
operation '...'.``. The 21Vianet message type is open, so the real service might ignore a written
``flag``/``internetMessageHeaders`` instead of refusing it; the sandbox refuses, which is the strict reading.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .core import GraphError, Request
from .routing import Route, split_path

_CREATE_RESPONSES = frozenset({"createreply", "createreplyall", "createforward"})
_RESPONSE_ACTIONS = frozenset({"reply", "replyall", "forward"}) | _CREATE_RESPONSES
_MESSAGE_READS = ("/messages", "/messages/{message}", "/messages/delta", "/messages/microsoft.graph.delta")


@dataclass(frozen=True)
class CloudProfile:
    name: str
    missing_segments: frozenset[str] = frozenset()  # lower-case path segments the cloud's Graph does not have
    bare_actions: frozenset[str] = frozenset()  # lower-case actions declared without parameters
    missing_message_properties: tuple[str, ...] = ()

    def refusal(self, request: Request, route: Route | None) -> GraphError | None:
        """The error this cloud gives for ``request``, or None when it serves it."""
        literal = _literal_segments(request, route)
        for segment in literal:
            if segment.lower() in self.missing_segments:
                return GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")
        if route is None:
            return None
        action = literal[-1].lower() if literal else ""
        if request.method == "POST" and action in self.bare_actions:
            body = _json_object(request)
            if body:
                return GraphError(400, "BadRequest", f"The parameter '{next(iter(body))}' in the request payload is "
                                                     f"not a valid parameter for the operation '{literal[-1]}'.")
        if self.missing_message_properties:
            return self._property_refusal(request, route, action)
        return None

    def _property_refusal(self, request: Request, route: Route, action: str) -> GraphError | None:
        missing = {p.lower(): p for p in self.missing_message_properties}
        if request.method == "GET" and route.template.endswith(_MESSAGE_READS):
            for name in (request.option("select") or "").split(","):
                if name.strip().lower() in missing:
                    return GraphError(400, "RequestBroker--ParseUri", f"Could not find a property named "
                                                                      f"'{name.strip()}' on type 'microsoft.graph.message'.")
        written = _written_message(request, route, action)
        for name in written or {}:
            if str(name).lower() in missing:
                return GraphError(400, "RequestBodyRead", f"The property '{name}' does not exist on type "
                                                          "'microsoft.graph.message'. Make sure to only use property "
                                                          "names that are defined by the type.")
        return None


def _literal_segments(request: Request, route: Route | None) -> list[str]:
    """The path segments that are names, not ids: the template's literals, or every segment when unrouted."""
    segments = split_path(request.path)
    if route is None:
        return segments
    return [value for value, pattern in zip(segments, route.segments) if not pattern.startswith("{")]


def _json_object(request: Request) -> dict:
    try:
        body = request.json()
    except GraphError:
        return {}
    return body if isinstance(body, dict) else {}


def _written_message(request: Request, route: Route, action: str) -> dict[str, Any] | None:
    """The message object a request writes: sendMail's and the response actions' `message`, a new or patched
    message's body."""
    if request.method == "POST" and (action == "sendmail" or action in _RESPONSE_ACTIONS):
        message = _json_object(request).get("message")
        return message if isinstance(message, dict) else None
    if (request.method == "POST" and route.template.endswith("/messages")) or \
            (request.method == "PATCH" and route.template.endswith("/messages/{message}")):
        return _json_object(request)
    return None


PROFILES: dict[str, CloudProfile] = {
    "worldwide": CloudProfile("worldwide"),
    "usgov": CloudProfile("usgov", missing_segments=frozenset({"createuploadsession", "translateexchangeids",
                                                               "permanentdelete", "microsoft.graph.permanentdelete"}),
                          bare_actions=_CREATE_RESPONSES),
    "china": CloudProfile("china", missing_segments=frozenset({"messagerules", "delta", "microsoft.graph.delta",
                                                               "permanentdelete", "microsoft.graph.permanentdelete"}),
                          bare_actions=_CREATE_RESPONSES,
                          missing_message_properties=("internetMessageHeaders", "flag")),
}


def cloud_profile(name: str) -> CloudProfile:
    try:
        return PROFILES[str(name).strip().lower()]
    except KeyError:
        raise ValueError(f"unknown cloud profile {name!r}; expected one of {', '.join(PROFILES)}") from None
