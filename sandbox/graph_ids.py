"""`POST /users/{user}/translateExchangeIds`: converts message ids between the regular (restId) and the
immutable (restImmutableEntryId) forms, as Graph does for mail that clients stored before asking for
immutable ids."""
from __future__ import annotations

from .context import SandboxContext
from .core import GraphError, Request, Response, bad_request
from .routing import Router

ID_TYPES = ("restId", "restImmutableEntryId")
MAX_INPUT_IDS = 1000


def register(router: Router, ctx: SandboxContext) -> None:
    router.add("POST", "/v1.0/users/{user}/translateExchangeIds", lambda request: translate(ctx, request))


def translate(ctx: SandboxContext, request: Request) -> Response:
    body = request.json() or {}
    input_ids = body.get("inputIds")
    target, source = body.get("targetIdType"), body.get("sourceIdType", "restId")
    if not isinstance(input_ids, list) or not input_ids or len(input_ids) > MAX_INPUT_IDS:
        raise bad_request(f"inputIds must be a list of 1 to {MAX_INPUT_IDS} ids.", "ErrorInvalidRequest")
    if target not in ID_TYPES or source not in ID_TYPES:
        raise bad_request(f"The sandbox translates only between {' and '.join(ID_TYPES)}.", "ErrorInvalidIdMalformed")
    mailbox = ctx.store.user(request.params["user"])
    value = []
    for source_id in input_ids:
        try:
            message = ctx.store.message(mailbox, str(source_id))
        except GraphError:
            continue  # Graph leaves out ids it cannot resolve
        target_id = message.immutable_id if target == "restImmutableEntryId" else message.rest_id
        value.append({"sourceId": source_id, "targetId": target_id})
    return Response.json({"value": value})
