"""Graph mail routes: users, mailFolders, messages, attachments, $value, move/copy, inbox rules."""
from __future__ import annotations

import re

import copy
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl, quote, urlencode

from . import odata
from .context import SandboxContext
from .core import GraphError, Request, Response, bad_request, item_not_found
from .mime import to_mime
from .odata import Prefer, parse_prefer
from .routing import Router
from .tenant import mail_enabled
from .store import FILE, ITEM, REFERENCE, Folder, Mailbox, Message, Recipient
from .views import (ATTACHMENT_CAST_SELECTABLE, ATTACHMENT_SELECTABLE, FOLDER_SELECTABLE, MESSAGE_SELECTABLE, View, attachment_json,
                    folder_json, message_json, rule_json, user_json)

MAX_SEARCH_RESULTS = 1000

MESSAGE_FILTER_FIELDS: dict[str, odata.FilterField] = {f.name.lower(): f for f in (
    odata.datetime_field("receivedDateTime", lambda m: m.received),
    odata.datetime_field("sentDateTime", lambda m: m.sent),
    odata.datetime_field("createdDateTime", lambda m: m.created),
    odata.datetime_field("lastModifiedDateTime", lambda m: m.modified),
    odata.bool_field("isRead", lambda m: m.is_read),
    odata.bool_field("hasAttachments", lambda m: m.has_attachments),
    odata.string_field("subject", lambda m: m.subject),
    odata.string_field("internetMessageId", lambda m: m.internet_message_id),
    odata.string_field("from/emailAddress/address", lambda m: m.from_.address if m.from_ else None),
)}
MESSAGE_ORDERABLE = {name.lower(): name for name in
                     ("receivedDateTime", "sentDateTime", "createdDateTime", "lastModifiedDateTime")}
_SORT_KEYS: dict[str, Callable[[Message], Any]] = {
    "receivedDateTime": lambda m: m.received, "sentDateTime": lambda m: m.sent,
    "createdDateTime": lambda m: m.created, "lastModifiedDateTime": lambda m: m.modified,
}
FOLDER_FILTER_FIELDS = {"displayname": odata.string_field("displayName", lambda f: f.display_name)}
ITEM_EXPAND = "microsoft.graph.itemattachment/item"

USER = "/v1.0/users/{user}"
MESSAGE_BASES = (f"{USER}/messages", f"{USER}/mailFolders/{{folder}}/messages")


def register(router: Router, ctx: SandboxContext) -> None:
    api = MailApi(ctx)
    router.add("GET", "/v1.0/users", api.list_users)
    router.add("GET", USER, api.get_user)
    # folders
    router.add("GET", f"{USER}/mailFolders", api.list_folders)
    router.add("POST", f"{USER}/mailFolders", api.create_folder)
    for base in (f"{USER}/mailFolders/{{folder}}", f"{USER}/mailFolders/{{parent}}/childFolders/{{folder}}"):
        router.add("GET", base, api.get_folder)
        router.add("PATCH", base, api.update_folder)
        router.add("DELETE", base, api.delete_folder)
        router.add("GET", f"{base}/childFolders", api.list_folders)
        router.add("POST", f"{base}/childFolders", api.create_folder)
    router.add("GET", f"{USER}/mailFolders/{{parent}}/childFolders/{{folder}}/messages", api.list_messages)
    # messages and attachments (both mailbox-wide and folder-scoped addresses)
    for base in MESSAGE_BASES:
        router.add("GET", base, api.list_messages)
        item = f"{base}/{{message}}"
        router.add("GET", item, api.get_message)
        router.add("PATCH", item, api.update_message)
        router.add("DELETE", item, api.delete_message)
        router.add("GET", f"{item}/$value", api.message_mime)
        router.add("POST", f"{item}/move", api.move_message)
        router.add("POST", f"{item}/copy", api.copy_message)
        router.add("GET", f"{item}/attachments", api.list_attachments)
        router.add("GET", f"{item}/attachments/{{attachment}}", api.get_attachment)
        router.add("GET", f"{item}/attachments/{{attachment}}/$value", api.attachment_value)
    # inbox rules
    rules = f"{USER}/mailFolders/{{folder}}/messageRules"
    router.add("GET", rules, api.list_rules)
    router.add("GET", f"{rules}/{{rule}}", api.get_rule)
    router.add("DELETE", f"{rules}/{{rule}}", api.delete_rule)


def next_link(ctx: SandboxContext, request: Request, new_skip: int) -> str:
    """The request's own URL with ``$skip`` advanced (other options kept as sent)."""
    pairs = [(k, v) for k, v in parse_qsl(request.query_string, keep_blank_values=True)
             if k.lower().lstrip("$") != "skip"]
    pairs.append(("$skip", str(new_skip)))
    return ctx.absolute(request, urlencode(pairs, quote_via=quote))


def paged(ctx: SandboxContext, request: Request, items: list, render: Callable[[Any], dict], context: str,
          prefer: Prefer, default_size: int = odata.DEFAULT_PAGE_SIZE) -> Response:
    """Render one page of ``items`` with ``@odata.nextLink`` when more remain."""
    size = odata.page_size(request, prefer, default_size)
    offset = odata.skip(request)
    payload: dict = {"@odata.context": context, "value": [render(i) for i in items[offset:offset + size]]}
    if (request.option("count") or "").lower() == "true":
        payload["@odata.count"] = len(items)
    if offset + size < len(items):
        payload["@odata.nextLink"] = next_link(ctx, request, offset + size)
    return Response.json(payload, headers=prefer.applied())


def sort_messages(messages: Iterable[Message], order: list[tuple[str, bool]]) -> list[Message]:
    """Stable multi-key sort; creation order breaks ties so paging is deterministic."""
    result = sorted(messages, key=lambda m: m.seq)
    for name, descending in reversed(order):
        result.sort(key=_SORT_KEYS[name], reverse=descending)
    return result


def _search_matches(message: Message, search: odata.Search) -> bool:
    fields = {
        "subject": message.subject,
        "from": f"{message.from_.name} {message.from_.address}" if message.from_ else "",
        "body": message.body,
    }
    haystacks = [fields[search.field]] if search.field else list(fields.values())
    return any(search.term in text.casefold() for text in haystacks)


def _check_filter_order(clauses: list[odata.Clause], order: list[tuple[str, bool]]) -> None:
    """Graph requires $orderby properties to lead the $filter, in the same order."""
    leading = [c.field.name for c in clauses[:len(order)]]
    if leading != [name for name, _ in order]:
        raise GraphError(400, "InefficientFilter",
                         "The restriction or sort order is too complex for this operation: properties in "
                         "$orderby must also appear first, and in the same order, in $filter.")


class MailApi:
    def __init__(self, ctx: SandboxContext) -> None:
        self.ctx = ctx
        self.store = ctx.store

    # --- helpers -----------------------------------------------------------------------
    def _mailbox(self, request: Request) -> Mailbox:
        return mail_enabled(self.store.user(request.params["user"]))

    def _folder(self, request: Request, mailbox: Mailbox) -> Folder:
        return self.store.folder(mailbox, request.params["folder"])

    def _message(self, request: Request, mailbox: Mailbox) -> Message:
        return self.store.message(mailbox, request.params["message"])

    @staticmethod
    def _view(prefer: Prefer, select: list[str] | None = None) -> View:
        return View(prefer.immutable_ids, prefer.body_type, select)

    def _expand_attachments(self, request: Request) -> tuple[bool, list[str] | None]:
        """`$expand=attachments`, optionally with a nested `($select=a,b)` as Graph allows."""
        expand = (request.option("expand") or "").strip()
        if not expand:
            return False, None
        match = re.fullmatch(r"attachments(?:\(\$select=([A-Za-z0-9,@./]+)\))?", expand, re.I)
        if not match:
            raise bad_request(f"Expanding '{expand}' is not supported on messages.", "ErrorInvalidUrlQuery")
        if not match.group(1):
            return True, None
        return True, odata.parse_select_text(match.group(1), ATTACHMENT_SELECTABLE, "attachment",
                                             ATTACHMENT_CAST_SELECTABLE)

    def _render_message(self, message: Message, view: View, expand: tuple[bool, list[str] | None]) -> dict:
        wanted, select = expand
        attachments = [attachment_json(a, view, select=select) for a in message.attachments] if wanted else None
        return message_json(message, view, attachments=attachments)

    # --- users ---------------------------------------------------------------------------
    def list_users(self, request: Request) -> Response:
        with self.store.lock:
            users = [user_json(m) for m in self.store.mailboxes()]
        return paged(self.ctx, request, users, lambda u: u, f"{self.ctx.base_url}/v1.0/$metadata#users",
                     parse_prefer(request.headers), default_size=100)

    def get_user(self, request: Request) -> Response:
        with self.store.lock:
            payload = {"@odata.context": f"{self.ctx.base_url}/v1.0/$metadata#users/$entity",
                       **user_json(self.store.user(request.params["user"]))}
        return Response.json(payload)

    # --- folders ---------------------------------------------------------------------------
    def list_folders(self, request: Request) -> Response:
        prefer = parse_prefer(request.headers)
        select = odata.parse_select(request, FOLDER_SELECTABLE, "mailFolder")
        filter_text = request.option("filter")
        clauses = odata.parse_filter(filter_text, FOLDER_FILTER_FIELDS) if filter_text else []
        include_hidden = (request.query.get("includeHiddenFolders") or "").lower() == "true"
        with self.store.lock:
            mailbox = self._mailbox(request)
            parent = self._folder(request, mailbox) if "folder" in request.params else mailbox.root
            folders = [f for f in self.store.children(mailbox, parent)
                       if (include_hidden or not f.is_hidden) and all(c.test(f) for c in clauses)]
            fragment = "mailFolders" if "folder" not in request.params else \
                f"mailFolders('{parent.id}')/childFolders"
            return paged(self.ctx, request, folders, lambda f: folder_json(f, select),
                         self.ctx.odata_context(mailbox.upn, fragment), prefer)

    def get_folder(self, request: Request) -> Response:
        select = odata.parse_select(request, FOLDER_SELECTABLE, "mailFolder")
        with self.store.lock:
            mailbox = self._mailbox(request)
            folder = self._folder(request, mailbox)
            payload = {"@odata.context": self.ctx.odata_context(mailbox.upn, "mailFolders/$entity"),
                       **folder_json(folder, select)}
        return Response.json(payload)

    def create_folder(self, request: Request) -> Response:
        body = request.json()
        name = body.get("displayName") if isinstance(body, dict) else None
        if not isinstance(name, str):
            raise bad_request("The displayName property is required.", "ErrorInvalidRequest")
        with self.store.lock:
            mailbox = self._mailbox(request)
            parent = self._folder(request, mailbox) if "folder" in request.params else mailbox.root
            folder = self.store.create_folder(mailbox, parent, name, bool(body.get("isHidden", False)))
            payload = {"@odata.context": self.ctx.odata_context(mailbox.upn, "mailFolders/$entity"),
                       **folder_json(folder)}
        return Response.json(payload, 201)

    def update_folder(self, request: Request) -> Response:
        body = request.json()
        name = body.get("displayName") if isinstance(body, dict) else None
        with self.store.lock:
            mailbox = self._mailbox(request)
            folder = self._folder(request, mailbox)
            if isinstance(name, str) and name.strip():
                self.store.rename_folder(mailbox, folder, name.strip())
            payload = {"@odata.context": self.ctx.odata_context(mailbox.upn, "mailFolders/$entity"),
                       **folder_json(folder)}
        return Response.json(payload)

    def delete_folder(self, request: Request) -> Response:
        with self.store.lock:
            mailbox = self._mailbox(request)
            self.store.delete_folder(mailbox, self._folder(request, mailbox))
        return Response.empty()

    # --- messages ----------------------------------------------------------------------------
    def list_messages(self, request: Request) -> Response:
        prefer = parse_prefer(request.headers)
        select = odata.parse_select(request, MESSAGE_SELECTABLE, "message")
        expand = self._expand_attachments(request)
        search_text, filter_text, order_text = (request.option(o) for o in ("search", "filter", "orderby"))
        if search_text is not None and filter_text:
            raise bad_request("The query parameter '$filter' is not supported with '$search'.",
                              "ErrorInvalidUrlQuery")
        if search_text is not None and order_text:
            raise bad_request("The query parameter '$orderBy' is not supported with '$search'.",
                              "ErrorInvalidUrlQuery")
        clauses = odata.parse_filter(filter_text, MESSAGE_FILTER_FIELDS) if filter_text else []
        order = odata.parse_orderby(order_text, MESSAGE_ORDERABLE) if order_text else [("receivedDateTime", True)]
        if filter_text and order_text:
            _check_filter_order(clauses, order)
        view = self._view(prefer, select)
        with self.store.lock:
            mailbox = self._mailbox(request)
            folder = self._folder(request, mailbox) if "folder" in request.params else None
            messages = self.store.messages(mailbox, folder)
            if search_text is not None:
                search = odata.parse_search(search_text)
                found = [m for m in messages if _search_matches(m, search)]
                items = sorted(found, key=lambda m: (m.sent, m.seq), reverse=True)[:MAX_SEARCH_RESULTS]
            else:
                items = sort_messages((m for m in messages if all(c.test(m) for c in clauses)), order)
            fragment = "messages" if folder is None else f"mailFolders('{request.params['folder']}')/messages"
            return paged(self.ctx, request, items, lambda m: self._render_message(m, view, expand),
                         self.ctx.odata_context(mailbox.upn, fragment), prefer)

    def get_message(self, request: Request) -> Response:
        prefer = parse_prefer(request.headers)
        select = odata.parse_select(request, MESSAGE_SELECTABLE, "message")
        expand = self._expand_attachments(request)
        with self.store.lock:
            mailbox = self._mailbox(request)
            message = self._message(request, mailbox)
            payload = {"@odata.context": self.ctx.odata_context(mailbox.upn, "messages/$entity"),
                       **self._render_message(message, self._view(prefer, select), expand)}
        return Response.json(payload, headers=prefer.applied())

    def update_message(self, request: Request) -> Response:
        prefer = parse_prefer(request.headers)
        changes = request.json()
        if not isinstance(changes, dict):
            raise bad_request("The request body must be a JSON object.")
        with self.store.lock:
            mailbox = self._mailbox(request)
            message = self._message(request, mailbox)
            before = copy.copy(message)
            try:
                apply_message_patch(message, changes)
            except GraphError:
                message.__dict__.update(before.__dict__)  # all or nothing
                raise
            self.store.touch(mailbox, message)
            payload = {"@odata.context": self.ctx.odata_context(mailbox.upn, "messages/$entity"),
                       **message_json(message, self._view(prefer))}
        return Response.json(payload, headers=prefer.applied())

    def delete_message(self, request: Request) -> Response:
        with self.store.lock:
            mailbox = self._mailbox(request)
            self.store.delete_message(mailbox, self._message(request, mailbox))
        return Response.empty()

    def _relocate(self, request: Request, copy: bool) -> Response:
        prefer = parse_prefer(request.headers)
        body = request.json()
        destination = body.get("destinationId") if isinstance(body, dict) else None
        if not isinstance(destination, str) or not destination:
            raise bad_request("The destinationId parameter is required.", "ErrorInvalidRequest")
        with self.store.lock:
            mailbox = self._mailbox(request)
            message = self._message(request, mailbox)
            target = self.store.folder(mailbox, destination)
            if copy:
                result = self.store.copy_message(mailbox, message, target)
            else:
                result = self.store.move_message(mailbox, message, target)
            payload = {"@odata.context": self.ctx.odata_context(mailbox.upn, "messages/$entity"),
                       **message_json(result, self._view(prefer))}
        return Response.json(payload, 201, headers=prefer.applied())

    def move_message(self, request: Request) -> Response:
        return self._relocate(request, copy=False)

    def copy_message(self, request: Request) -> Response:
        return self._relocate(request, copy=True)

    def message_mime(self, request: Request) -> Response:
        with self.store.lock:
            mailbox = self._mailbox(request)
            message = self._message(request, mailbox)
        return Response(200, to_mime(message), [("Content-Type", "text/plain")])

    # --- attachments ------------------------------------------------------------------------------
    def _expand_item(self, request: Request) -> bool:
        expand = (request.option("expand") or "").strip()
        if not expand:
            return False
        if expand.lower() != ITEM_EXPAND:
            raise bad_request(f"Expanding '{expand}' is not supported on attachments.", "ErrorInvalidUrlQuery")
        return True

    def list_attachments(self, request: Request) -> Response:
        prefer = parse_prefer(request.headers)
        select = odata.parse_select(request, ATTACHMENT_SELECTABLE, "attachment", ATTACHMENT_CAST_SELECTABLE)
        expand = self._expand_item(request)
        with self.store.lock:
            mailbox = self._mailbox(request)
            message = self._message(request, mailbox)
            attachments = list(message.attachments)
            view = self._view(prefer)
        # rendered outside the lock: contentBytes of a big attachment takes a while
        value = [attachment_json(a, view, select=select, expand_item=expand) for a in attachments]
        fragment = f"messages('{request.params['message']}')/attachments"
        return Response.json({"@odata.context": self.ctx.odata_context(mailbox.upn, fragment), "value": value},
                             headers=prefer.applied())

    def get_attachment(self, request: Request) -> Response:
        prefer = parse_prefer(request.headers)
        select = odata.parse_select(request, ATTACHMENT_SELECTABLE, "attachment", ATTACHMENT_CAST_SELECTABLE)
        if self.ctx.settings.single_attachment_select_ignored:
            select = None
        expand = self._expand_item(request)
        with self.store.lock:
            mailbox = self._mailbox(request)
            attachment = self._message(request, mailbox).attachment(request.params["attachment"])
        fragment = f"messages('{request.params['message']}')/attachments/$entity"
        payload = {"@odata.context": self.ctx.odata_context(mailbox.upn, fragment),
                   **attachment_json(attachment, self._view(prefer), select=select, expand_item=expand)}
        return Response.json(payload, headers=prefer.applied())

    def attachment_value(self, request: Request) -> Response:
        with self.store.lock:
            mailbox = self._mailbox(request)
            attachment = self._message(request, mailbox).attachment(request.params["attachment"])
        if attachment.kind == FILE and attachment.blob is not None:
            blob = attachment.blob
            content_type = attachment.content_type or "application/octet-stream"
            return Response(200, headers=[("Content-Type", content_type)], stream=blob.iter_chunks(),
                            length=blob.size)
        if attachment.kind == ITEM and attachment.item is not None:
            return Response(200, to_mime(attachment.item), [("Content-Type", "text/plain")])
        assert attachment.kind == REFERENCE
        raise bad_request("Reference attachments have no content to download.", "ErrorInvalidRequest")

    # --- inbox rules --------------------------------------------------------------------------------
    def _rules_mailbox(self, request: Request) -> Mailbox:
        mailbox = self._mailbox(request)
        if self._folder(request, mailbox).well_known != "inbox":
            raise item_not_found()
        return mailbox

    def list_rules(self, request: Request) -> Response:
        prefer = parse_prefer(request.headers)
        with self.store.lock:
            mailbox = self._rules_mailbox(request)
            rules = sorted(mailbox.rules, key=lambda r: r["sequence"])
            return paged(self.ctx, request, rules, rule_json,
                         self.ctx.odata_context(mailbox.upn, "mailFolders('inbox')/messageRules"), prefer,
                         default_size=100)

    def get_rule(self, request: Request) -> Response:
        with self.store.lock:
            mailbox = self._rules_mailbox(request)
            payload = {"@odata.context": self.ctx.odata_context(mailbox.upn, "mailFolders('inbox')/messageRules/$entity"),
                       **rule_json(self.store.rule(mailbox, request.params["rule"]))}
        return Response.json(payload)

    def delete_rule(self, request: Request) -> Response:
        with self.store.lock:
            mailbox = self._rules_mailbox(request)
            self.store.delete_rule(mailbox, self.store.rule(mailbox, request.params["rule"]))
        return Response.empty()


# --- PATCH /messages/{id} -------------------------------------------------------------------------

_IMPORTANCE = ("low", "normal", "high")
_READ_ONLY = MESSAGE_SELECTABLE - {"isRead", "categories", "flag", "subject", "importance", "body",
                                   "inferenceClassification", "toRecipients", "ccRecipients",
                                   "bccRecipients", "replyTo", "from", "sender", "isDeliveryReceiptRequested",
                                   "isReadReceiptRequested"}


def _expect(condition: bool, name: str) -> None:
    if not condition:
        raise bad_request(f"Invalid value for property '{name}'.", "ErrorInvalidProperty")


def apply_message_patch(message: Message, changes: dict) -> None:
    """Apply a PATCH body; unknown properties are rejected, read-only ones ignored."""
    for name, value in changes.items():
        if name.startswith("@odata.") or name in _READ_ONLY:
            continue
        if name == "isRead":
            _expect(isinstance(value, bool), name)
            message.is_read = value
        elif name == "categories":
            _expect(isinstance(value, list) and all(isinstance(v, str) for v in value), name)
            message.categories = list(value)
        elif name == "flag":
            _expect(isinstance(value, dict) and value.get("flagStatus") in (None, "notFlagged", "flagged",
                                                                            "complete"), name)
            message.flag = {**message.flag, **value}
        elif name == "subject":
            _expect(isinstance(value, str), name)
            message.subject = value
        elif name == "importance":
            _expect(value in _IMPORTANCE, name)
            message.importance = value
        elif name == "inferenceClassification":
            _expect(value in ("focused", "other"), name)
            message.inference = value
        elif name == "body":
            _expect(isinstance(value, dict) and isinstance(value.get("content"), str), name)
            message.body = value["content"]
            message.body_type = str(value.get("contentType", "html")).lower()
        elif name in ("toRecipients", "ccRecipients", "bccRecipients", "replyTo"):
            _expect(isinstance(value, list), name)
            setattr(message, {"toRecipients": "to", "ccRecipients": "cc", "bccRecipients": "bcc",
                              "replyTo": "reply_to"}[name], Recipient.parse_list(value))
        elif name in ("from", "sender"):
            _expect(isinstance(value, dict), name)
            setattr(message, "from_" if name == "from" else "sender", Recipient.parse(value))
        elif name in ("isDeliveryReceiptRequested", "isReadReceiptRequested"):
            _expect(isinstance(value, bool), name)
            setattr(message, "delivery_receipt" if name.startswith("isDelivery") else "read_receipt", value)
        else:
            raise bad_request(f"The property '{name}' does not exist on type 'microsoft.graph.message'.",
                              "RequestBroker--ParseUri")
