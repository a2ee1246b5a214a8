"""Graph sending routes: sendMail, drafts, draft attachments, upload sessions, send, reply and forward.

Delivery is local: every recipient address that is a sandbox mailbox gets its own
copy in its Inbox (unread, received now, ``from`` = the sender, same
``internetMessageId`` and ``conversationId``); other addresses are accepted and
dropped.  The sender keeps a copy in Sent Items.  Attachment bytes are shared
between all copies (blobs are immutable), so a 150 MB upload is held once.

Upload sessions (``attachments/createUploadSession``) hand out a pre-authenticated
``uploadUrl`` on the sandbox host (``/upload/{session}?authtoken=...``).  Like
Outlook's upload endpoint it refuses requests that carry an ``Authorization``
header, wants the ranges in order and answers 200 + ``nextExpectedRanges`` per
chunk and 201 + ``Location`` once the last byte arrived.

Shared state lives in ``ctx.extensions["graph_send"]`` (a :class:`SendState`):
open sessions and a short ``history`` of uploads with their chunk sizes, which
tests use to check how a client uploaded.
"""
from __future__ import annotations

import base64
import binascii
import collections
import datetime as dt
import functools
import html
import mimetypes
import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .content import CHUNK_SIZE
from .context import SandboxContext
from .core import GraphError, Request, Response, bad_request, iso, utc_now
from .factory import build_attachment, build_message
from .graph_mail import MESSAGE_BASES, USER, apply_message_patch
from .odata import Prefer, parse_prefer
from .routing import Kind, Router
from .store import (
    FILE,
    Attachment,
    Mailbox,
    MailStore,
    Message,
    Recipient,
    default_headers,
)
from .views import View, attachment_json, message_json, text_to_html

MB = 1024 * 1024
# JSON bodies of sendMail, create message, add attachment: Graph answers 413 to bodies of about 4 MB (a 3 MiB - 1
# file is 4 MiB of base64 and is refused), so the sandbox refuses anything above 4,000,000 bytes.
MAX_REQUEST_BYTES = 4_000_000
MAX_POSTED_ATTACHMENT_BYTES = 3 * MB  # larger files need an upload session
MIN_UPLOAD_BYTES = 2 * MB  # Graph refuses upload sessions for smaller files (observed: 2 MiB)
MAX_UPLOAD_BYTES = 150 * MB
MAX_CHUNK_BYTES = 4 * MB
MAX_CUSTOM_HEADERS = 5
SESSION_LIFETIME = dt.timedelta(minutes=30)
HISTORY_LIMIT = 200

UPLOAD = "/upload/{session}"
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+)\s*$", re.IGNORECASE)
# Names default_headers() writes itself; anything else on a message was given by the client.
_TRANSPORT_HEADERS = {"received", "authentication-results", "from", "to", "subject", "date", "message-id",
                      "mime-version", "x-ms-exchange-organization-scl"}
_BODY_OF_HTML = re.compile(r"<body[^>]*>(.*)</body>", re.IGNORECASE | re.DOTALL)


# --- upload bookkeeping -------------------------------------------------------------------------

class ChunkedBlob:
    """Uploaded bytes kept as the chunks that arrived (no concatenated second copy)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks
        self.size = sum(len(c) for c in chunks)

    def iter_chunks(self, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        for chunk in self._chunks:
            view = memoryview(chunk)
            for start in range(0, len(chunk), chunk_size):
                yield bytes(view[start:start + chunk_size])

    def read_all(self) -> bytes:
        return b"".join(self._chunks)


@dataclass(eq=False)
class UploadSession:
    id: str
    token: str
    user_id: str
    message_id: str  # immutable id of the draft
    name: str
    size: int
    content_type: str
    is_inline: bool
    content_id: str | None
    expires: dt.datetime
    immutable_ids: bool  # how the Location header names the message
    chunks: list[bytes] = field(default_factory=list)
    received: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, status: str) -> dict:
        return {"session": self.id, "user_id": self.user_id, "message_id": self.message_id, "name": self.name,
                "size": self.size, "received": self.received, "chunks": [len(c) for c in self.chunks],
                "status": status}


class SendState:
    """Open upload sessions plus a bounded history of finished, cancelled or refused uploads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sessions: dict[str, UploadSession] = {}
        self.history: collections.deque = collections.deque(maxlen=HISTORY_LIMIT)
        self.rejected_authorization = 0  # PUT/DELETE on an uploadUrl that carried a bearer token

    def open(self, session: UploadSession) -> None:
        with self.lock:
            self.sessions[session.id] = session

    def purge(self, store: MailStore) -> None:
        """Forget sessions that expired or whose draft is gone (sent, deleted, or the store was reset)."""
        now = utc_now()
        with self.lock:
            sessions = list(self.sessions.values())
        for session in sessions:
            if now > session.expires:
                self.close(session, "expired")
            elif not _draft_exists(store, session):
                self.close(session, "abandoned")

    def get(self, session_id: str) -> UploadSession | None:
        with self.lock:
            return self.sessions.get(session_id)

    def close(self, session: UploadSession, status: str) -> None:
        with self.lock:
            self.sessions.pop(session.id, None)
            self.history.append(session.record(status))


def _draft_exists(store: MailStore, session: UploadSession) -> bool:
    with store.lock:
        try:
            return store.message(store.user(session.user_id), session.message_id).is_draft
        except GraphError:
            return False


# --- validation ------------------------------------------------------------------------------

def _too_large(request: Request, limit: int = MAX_REQUEST_BYTES) -> None:
    if len(request.body) > limit:
        raise GraphError(413, "RequestEntityTooLarge",
                         f"The request body has {len(request.body)} bytes; the limit is {limit} bytes. "
                         "Attach files of 3 MB or more through an upload session.")


def _object(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise bad_request(f"The {what} must be a JSON object.", "ErrorInvalidRequest")
    return value


def check_headers(value: Any) -> list[tuple[str, str]]:
    """Graph's rules for internetMessageHeaders: at most 5, each named x-... ."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(h, dict) for h in value):
        raise bad_request("internetMessageHeaders must be a list of {name, value} objects.",
                          "InvalidInternetMessageHeaderCollection")
    if len(value) > MAX_CUSTOM_HEADERS:
        raise bad_request(f"A message takes at most {MAX_CUSTOM_HEADERS} internet message headers; "
                          f"this one has {len(value)}.", "InvalidInternetMessageHeaderCollection")
    headers = []
    for item in value:
        name, text = str(item.get("name") or ""), item.get("value")
        if not name.lower().startswith("x-") or len(name) < 3:
            raise bad_request(f"The internet message header name '{name}' must start with 'x-' or 'X-'.",
                              "InvalidInternetMessageHeader")
        if not isinstance(text, str) or re.search(r"[\r\n]", name + text):
            raise bad_request(f"The internet message header '{name}' has no valid value.",
                              "InvalidInternetMessageHeader")
        headers.append((name, text))
    return headers


def _check_recipients(message: Message, required: bool) -> None:
    everyone = message.to + message.cc + message.bcc
    if required and not everyone:
        raise bad_request("At least one recipient is required, but none were found.", "ErrorInvalidRecipients")
    for recipient in everyone + message.reply_to:
        if not re.fullmatch(r"[^@\s]+@[^@\s]+", recipient.address or ""):
            raise bad_request(f"At least one recipient isn't valid: '{recipient.address}' isn't a resolvable "
                              "address.", "ErrorInvalidRecipients")


def build_posted_attachment(store: MailStore, owner: str, spec: Any) -> Attachment:
    """A fileAttachment (base64 contentBytes) or itemAttachment from a Graph-shaped JSON object."""
    spec = _object(spec, "attachment")
    kind = str(spec.get("@odata.type") or "").lower()
    if kind.endswith("itemattachment"):
        if not isinstance(spec.get("item"), dict):
            raise bad_request("An itemAttachment needs an item.", "ErrorInvalidRequest")
        return build_message(store, None, {"attachments": [spec]}).attachments[0]
    if not kind.endswith("fileattachment"):
        raise bad_request("Attachments must be '#microsoft.graph.fileAttachment' or "
                          "'#microsoft.graph.itemAttachment' objects (set @odata.type).", "ErrorInvalidRequest")
    raw = spec.get("contentBytes")
    try:
        data = base64.b64decode(raw, validate=True) if isinstance(raw, str) else None
    except (binascii.Error, ValueError):
        data = None
    if data is None:
        raise bad_request("The contentBytes of a fileAttachment must be base64.", "ErrorInvalidRequest")
    if len(data) >= MAX_POSTED_ATTACHMENT_BYTES:
        raise GraphError(413, "RequestEntityTooLarge",
                         f"The attachment has {len(data)} bytes; attach files of 3 MB or more through an upload "
                         "session (attachments/createUploadSession).")
    name = str(spec.get("name") or "attachment")
    return build_attachment(store, owner, {
        "name": name, "content": data,
        "contentType": spec.get("contentType") or mimetypes.guess_type(name)[0] or "application/octet-stream",
        "isInline": bool(spec.get("isInline", False)), "contentId": spec.get("contentId"),
        "contentLocation": spec.get("contentLocation")})


def _share_attachment(store: MailStore, owner: str, attachment: Attachment) -> Attachment:
    """A new attachment (own id) with the same content; bytes are shared, not copied."""
    return store.new_attachment(owner, attachment.kind, attachment.name, attachment.content_type,
                                blob=attachment.blob, item=attachment.item, is_inline=attachment.is_inline,
                                content_id=attachment.content_id, content_location=attachment.content_location,
                                reference_size=attachment.reference_size)


def client_headers(message: Message) -> list[tuple[str, str]]:
    """The headers a client (or a reply) put on the message, without the transport headers."""
    return [(n, v) for n, v in message.headers if n.lower() not in _TRANSPORT_HEADERS]


def apply_properties(store: MailStore, mailbox: Mailbox, message: Message, payload: dict) -> None:
    """Set the writable properties of a message from a Graph message object (all or nothing is the
    caller's business: messages built here are not filed until this succeeded)."""
    payload = dict(payload)
    payload.pop("@odata.type", None)
    headers = payload.pop("internetMessageHeaders", None)
    attachments = payload.pop("attachments", None)
    importance = payload.pop("importance", None)
    if importance is not None:
        if not isinstance(importance, str) or importance.lower() not in ("low", "normal", "high"):
            raise bad_request("Invalid value for property 'importance'.", "ErrorInvalidProperty")
        message.importance = importance.lower()
    apply_message_patch(message, payload)
    if headers is not None:
        message.headers = default_headers(message, client_headers(message) + check_headers(headers))
    if attachments is not None:
        if not isinstance(attachments, list):
            raise bad_request("attachments must be a list.", "ErrorInvalidRequest")
        message.attachments += [build_posted_attachment(store, mailbox.user_id, a) for a in attachments]


def owner_recipient(mailbox: Mailbox) -> Recipient:
    return Recipient(mailbox.upn, mailbox.display_name)


# --- the routes --------------------------------------------------------------------------------

def register(router: Router, ctx: SandboxContext) -> None:
    api = SendApi(ctx)
    router.add("POST", f"{USER}/sendMail", api.send_mail)
    for base in MESSAGE_BASES:
        item = f"{base}/{{message}}"
        router.add("POST", base, api.create_message)
        router.add("POST", f"{item}/attachments", api.add_attachment)
        router.add("DELETE", f"{item}/attachments/{{attachment}}", api.delete_attachment)
        router.add("POST", f"{item}/attachments/createUploadSession", api.create_upload_session)
        router.add("POST", f"{item}/send", api.send_draft)
        for action in ("reply", "replyAll", "forward"):
            router.add("POST", f"{item}/{action}", functools.partial(api.respond_now, action=action))
            router.add("POST", f"{item}/create{action[0].upper()}{action[1:]}",
                       functools.partial(api.create_response, action=action))
    router.add("PUT", UPLOAD, api.upload_chunk, kind=Kind.PUBLIC)
    router.add("DELETE", UPLOAD, api.cancel_upload, kind=Kind.PUBLIC)


class SendApi:
    def __init__(self, ctx: SandboxContext) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.state: SendState = ctx.extensions.setdefault("graph_send", SendState())

    # --- helpers -----------------------------------------------------------------------------
    def _mailbox(self, request: Request) -> Mailbox:
        return self.store.user(request.params["user"])

    def _message(self, request: Request, mailbox: Mailbox) -> Message:
        return self.store.message(mailbox, request.params["message"])

    def _draft(self, request: Request, mailbox: Mailbox) -> Message:
        message = self._message(request, mailbox)
        if not message.is_draft:
            raise bad_request("Only draft messages can be changed this way; this message was already sent.",
                              "ErrorInvalidOperation")
        return message

    def _new_draft(self, mailbox: Mailbox, **fields: Any) -> Message:
        message = self.store.new_message(mailbox, is_draft=True, is_read=True, **fields)
        message.sent = message.received  # an unsent draft: both times are its creation time
        return message

    def _message_payload(self, mailbox: Mailbox, message: Message, prefer: Prefer, status: int = 200) -> Response:
        payload = {"@odata.context": self.ctx.odata_context(mailbox.upn, "messages/$entity"),
                   **message_json(message, View(prefer.immutable_ids, prefer.body_type))}
        return Response.json(payload, status, headers=prefer.applied())

    # --- delivery ----------------------------------------------------------------------------
    def _deliver(self, message: Message, now: dt.datetime) -> None:
        """One Inbox copy per sandbox mailbox among the recipients (bcc included, but not shown)."""
        seen: set[str] = set()
        extra = client_headers(message)
        for recipient in message.to + message.cc + message.bcc:
            address = recipient.address.strip().lower()
            if address in seen:
                continue
            seen.add(address)
            try:
                target = self.store.user(address)
            except GraphError:
                continue  # outside the sandbox: accepted and dropped
            copy = self.store.new_message(
                target, subject=message.subject, body=message.body, body_type=message.body_type,
                sender=message.sender or message.from_, from_=message.from_, to=message.to, cc=message.cc,
                reply_to=message.reply_to, received=now, sent=now, is_read=False, importance=message.importance,
                internet_message_id=message.internet_message_id, conversation_id=message.conversation_id,
                headers=extra)
            copy.conversation_index = message.conversation_index
            copy.delivery_receipt, copy.read_receipt = message.delivery_receipt, message.read_receipt
            copy.attachments = [_share_attachment(self.store, target.user_id, a) for a in message.attachments]
            self.store.file_message(target, self.store.folder(target, "inbox"), copy)

    def _submit(self, mailbox: Mailbox, message: Message, save_copy: bool) -> None:
        """Send a built message: recipients' Inboxes, and Sent Items when asked (the message itself is filed
        there if it is not filed yet, or moved there from Drafts)."""
        _check_recipients(message, required=True)
        now = utc_now()
        me = owner_recipient(mailbox)
        message.from_ = message.from_ or me
        message.sender = message.sender or me
        message.is_draft, message.is_read = False, True
        message.sent = message.received = now
        message.headers = default_headers(message, client_headers(message))
        self._deliver(message, now)
        sent_items = self.store.folder(mailbox, "sentitems")
        if message.folder_id is None:
            if save_copy:
                self.store.file_message(mailbox, sent_items, message)
        elif save_copy:
            self.store.move_message(mailbox, message, sent_items)
        else:
            self.store.delete_message(mailbox, message)

    # --- sendMail ----------------------------------------------------------------------------
    def send_mail(self, request: Request) -> Response:
        _too_large(request)
        body = _object(request.json(), "request body")
        spec = body.get("message") if "message" in body else body.get("Message")
        if not spec:
            raise bad_request("The value of the parameter 'Message' is empty.", "ErrorInvalidParameter")
        save = body.get("saveToSentItems", body.get("SaveToSentItems", True))
        save = not (save is False or str(save).lower() == "false")
        with self.store.lock:
            mailbox = self._mailbox(request)
            message = self._new_draft(mailbox)
            apply_properties(self.store, mailbox, message, _object(spec, "message"))
            self._submit(mailbox, message, save)
        return Response.empty(202)

    # --- drafts ------------------------------------------------------------------------------
    def create_message(self, request: Request) -> Response:
        _too_large(request)
        prefer = parse_prefer(request.headers)
        spec = _object(request.json(), "message")
        with self.store.lock:
            mailbox = self._mailbox(request)
            folder = self.store.folder(mailbox, request.params.get("folder", "drafts"))
            message = self._new_draft(mailbox)
            apply_properties(self.store, mailbox, message, spec)
            self.store.file_message(mailbox, folder, message)
            return self._message_payload(mailbox, message, prefer, 201)

    def add_attachment(self, request: Request) -> Response:
        _too_large(request)
        prefer = parse_prefer(request.headers)
        spec = _object(request.json(), "attachment")
        with self.store.lock:
            mailbox = self._mailbox(request)
            message = self._draft(request, mailbox)
            attachment = build_posted_attachment(self.store, mailbox.user_id, spec)
            message.attachments.append(attachment)
            self.store.touch(mailbox, message)
            fragment = f"messages('{request.params['message']}')/attachments/$entity"
            payload = {"@odata.context": self.ctx.odata_context(mailbox.upn, fragment),
                       **attachment_json(attachment, View(prefer.immutable_ids))}
        return Response.json(payload, 201, headers=prefer.applied())

    def delete_attachment(self, request: Request) -> Response:
        with self.store.lock:
            mailbox = self._mailbox(request)
            message = self._draft(request, mailbox)
            message.attachments.remove(message.attachment(request.params["attachment"]))
            self.store.touch(mailbox, message)
        return Response.empty()

    def send_draft(self, request: Request) -> Response:
        with self.store.lock:
            mailbox = self._mailbox(request)
            self._submit(mailbox, self._draft(request, mailbox), save_copy=True)
        return Response.empty(202)

    # --- upload sessions -----------------------------------------------------------------------
    def create_upload_session(self, request: Request) -> Response:
        body = _object(request.json(), "request body")
        item = next((v for k, v in body.items() if k.lower() == "attachmentitem"), None)
        item = _object(item, "AttachmentItem")
        if str(item.get("attachmentType", "file")).lower() != "file":
            raise bad_request("Only attachmentType 'file' can be uploaded to a message.", "ErrorInvalidRequest")
        name, size = item.get("name"), item.get("size")
        if not isinstance(name, str) or not name.strip():
            raise bad_request("AttachmentItem.name is required.", "ErrorInvalidRequest")
        if isinstance(size, bool) or not isinstance(size, int):
            raise bad_request("AttachmentItem.size is required (bytes, an integer).", "ErrorInvalidRequest")
        if size < MIN_UPLOAD_BYTES:
            raise bad_request(f"The attachment size {size} is below the minimum of {MIN_UPLOAD_BYTES} bytes for an "
                              "upload session; POST smaller files to the attachments collection.",
                              "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize")
        if size > MAX_UPLOAD_BYTES:
            raise bad_request(f"The attachment size {size} is above the maximum of {MAX_UPLOAD_BYTES} bytes.",
                              "ErrorAttachmentSizeShouldNotBeGreaterThanMaximumSize")
        prefer = parse_prefer(request.headers)
        self.state.purge(self.store)
        with self.store.lock:
            mailbox = self._mailbox(request)
            message = self._draft(request, mailbox)
            session = UploadSession(
                id=secrets.token_urlsafe(24), token=secrets.token_urlsafe(32), user_id=mailbox.user_id,
                message_id=message.immutable_id, name=name.strip(), size=size,
                content_type=str(item.get("contentType") or mimetypes.guess_type(name)[0]
                                 or "application/octet-stream"),
                is_inline=bool(item.get("isInline", False)), content_id=item.get("contentId") or None,
                expires=utc_now() + SESSION_LIFETIME, immutable_ids=prefer.immutable_ids)
        self.state.open(session)
        return Response.json({
            "@odata.context": f"{self.ctx.base_url}/v1.0/$metadata#microsoft.graph.uploadSession",
            "uploadUrl": f"{self.ctx.base_url}/upload/{session.id}?authtoken={session.token}",
            "expirationDateTime": iso(session.expires),
            "nextExpectedRanges": ["0-"],
        }, 201)

    def _session(self, request: Request) -> UploadSession:
        if request.headers.get("Authorization") is not None:
            with self.state.lock:
                self.state.rejected_authorization += 1
            raise GraphError(401, "InvalidAuthenticationToken",
                             "The uploadUrl is pre-authenticated: send the request without an Authorization "
                             "header.")
        session = self.state.get(request.params["session"])
        if session is None:
            raise GraphError(404, "ErrorItemNotFound", "The upload session does not exist or has ended.")
        if not secrets.compare_digest(request.query.get("authtoken", ""), session.token):
            raise GraphError(401, "InvalidAuthenticationToken", "The authtoken of the uploadUrl is not valid.")
        if utc_now() > session.expires:
            self.state.close(session, "expired")
            raise GraphError(401, "InvalidAuthenticationToken", "The upload session has expired.")
        return session

    def upload_chunk(self, request: Request) -> Response:
        session = self._session(request)
        match = _CONTENT_RANGE.match(request.headers.get("Content-Range") or "")
        if match is None:
            raise bad_request("A Content-Range header 'bytes {start}-{end}/{total}' is required.",
                              "InvalidContentRange")
        start, end, total = (int(g) for g in match.groups())
        data = request.body
        if total != session.size:
            raise bad_request(f"The total {total} in Content-Range differs from the session's size {session.size}.",
                              "InvalidContentRange")
        if end < start or end >= total or end - start + 1 != len(data):
            raise bad_request(f"Content-Range bytes {start}-{end} does not describe the {len(data)} bytes sent.",
                              "InvalidContentRange")
        if len(data) > MAX_CHUNK_BYTES:
            raise bad_request(f"A chunk may carry at most {MAX_CHUNK_BYTES} bytes; this one has {len(data)}.",
                              "InvalidContentRange")
        with session.lock:
            if start != session.received:
                raise GraphError(416, "InvalidContentRange",
                                 f"Ranges must be uploaded in order: the next expected byte is {session.received}.")
            session.chunks.append(data)
            session.received += len(data)
            if session.received < session.size:
                return Response.json({
                    "@odata.context": f"{self.ctx.base_url}/v1.0/$metadata#microsoft.graph.uploadSession",
                    "expirationDateTime": iso(session.expires),
                    "nextExpectedRanges": [str(session.received)]})
            return self._finish_upload(session)

    def _finish_upload(self, session: UploadSession) -> Response:
        with self.store.lock:
            try:
                mailbox = self.store.user(session.user_id)
                message = self.store.message(mailbox, session.message_id)
            except GraphError:
                self.state.close(session, "abandoned")
                raise
            if not message.is_draft:
                self.state.close(session, "abandoned")
                raise bad_request("The message of this upload session was already sent.", "ErrorInvalidOperation")
            attachment = self.store.new_attachment(
                mailbox.user_id, FILE, session.name, session.content_type, blob=ChunkedBlob(session.chunks),
                is_inline=session.is_inline, content_id=session.content_id)
            message.attachments.append(attachment)
            self.store.touch(mailbox, message)
            message_id = message.immutable_id if session.immutable_ids else message.rest_id
        self.state.close(session, "complete")
        location = (f"{self.ctx.base_url}/api/v2.0/Users('{mailbox.user_id}')/Messages('{message_id}')"
                    f"/Attachments('{attachment.id}')")
        return Response.empty(201, headers=[("Location", location)])

    def cancel_upload(self, request: Request) -> Response:
        session = self._session(request)
        self.state.close(session, "cancelled")
        return Response.empty()

    # --- reply, reply all, forward -----------------------------------------------------------
    def _response_message(self, request: Request, mailbox: Mailbox, action: str, payload: dict) -> Message:
        """The reply or forward of the addressed message, built (not filed) in ``mailbox``."""
        original = self._message(request, mailbox)
        spec = dict(_object(payload.get("message") or {}, "message parameter"))
        comment = payload.get("comment")
        if comment is not None and not isinstance(comment, str):
            raise bad_request("The comment must be a string.", "ErrorInvalidRequest")
        if comment is not None and spec.get("body"):
            raise bad_request("Specify either a comment or the body property of the message parameter, not both.",
                              "ErrorInvalidRequest")
        body_spec = spec.pop("body", None)
        lead = comment or ""
        if isinstance(body_spec, dict):
            lead = str(body_spec.get("content") or "")
            if str(body_spec.get("contentType", "html")).lower() == "text":
                lead = html.escape(lead).replace("\n", "<br>")
        forward = action == "forward"
        me = owner_recipient(mailbox)
        wanted = Recipient.parse_list(spec.pop("toRecipients", None)) + \
            Recipient.parse_list(payload.get("toRecipients"))
        if forward:
            to = wanted
        else:
            if original.from_ and original.from_.address.lower() == me.address.lower():
                to = list(original.to)  # replying to one's own mail goes to its recipients
            else:
                to = list(original.reply_to) or ([original.from_] if original.from_ else [])
            if action == "replyAll":
                to += [r for r in original.to + original.cc if r.address.lower() != me.address.lower()]
            to += wanted
        to = _unique(to)
        prefix = "FW: " if forward else "RE: "
        subject = original.subject if original.subject.upper().startswith(prefix.strip()) \
            else prefix + original.subject
        extra = [] if forward else [("In-Reply-To", original.internet_message_id),
                                    ("References", original.internet_message_id)]
        message = self._new_draft(mailbox, subject=subject, body=_quote(lead, original), body_type="html",
                                  sender=me, from_=me, to=to, conversation_id=original.conversation_id,
                                  headers=extra)
        kept = original.attachments if forward else [a for a in original.attachments if a.is_inline]
        message.attachments = [_share_attachment(self.store, mailbox.user_id, a) for a in kept]
        apply_properties(self.store, mailbox, message, spec)
        return message

    def respond_now(self, request: Request, action: str) -> Response:
        """reply / replyAll / forward: build the response and send it at once (saved in Sent Items)."""
        _too_large(request)
        payload = _object(request.json(), "request body")
        with self.store.lock:
            mailbox = self._mailbox(request)
            message = self._response_message(request, mailbox, action, payload)
            if action == "forward" and not message.to + message.cc + message.bcc:
                raise bad_request("At least one recipient is required to forward a message.",
                                  "ErrorInvalidRecipients")
            self._submit(mailbox, message, save_copy=True)
        return Response.empty(202)

    def create_response(self, request: Request, action: str) -> Response:
        """createReply / createReplyAll / createForward: the response as a draft in Drafts."""
        _too_large(request)
        payload = _object(request.json(), "request body")
        prefer = parse_prefer(request.headers)
        with self.store.lock:
            mailbox = self._mailbox(request)
            message = self._response_message(request, mailbox, action, payload)
            self.store.file_message(mailbox, self.store.folder(mailbox, "drafts"), message)
            return self._message_payload(mailbox, message, prefer, 201)


def _unique(recipients: list[Recipient]) -> list[Recipient]:
    seen: set[str] = set()
    out = []
    for recipient in recipients:
        key = recipient.address.lower()
        if key and key not in seen:
            seen.add(key)
            out.append(recipient)
    return out


def _quote(lead: str, original: Message) -> str:
    """A response body: the new text, a separator with the original's header fields, the original body."""
    def who(recipients: list[Recipient]) -> str:
        return "; ".join(html.escape(f"{r.name} <{r.address}>" if r.name else r.address) for r in recipients)

    if original.body_type == "html":
        found = _BODY_OF_HTML.search(original.body)
        quoted = found.group(1) if found else original.body
    else:
        found = _BODY_OF_HTML.search(text_to_html(original.body))
        quoted = found.group(1) if found else html.escape(original.body)
    sender = who([original.from_]) if original.from_ else ""
    return ('<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8"></head><body>'
            f'<div dir="ltr">{lead}</div><hr style="display:inline-block;width:98%">'
            f'<div id="divRplyFwdMsg" dir="ltr"><b>From:</b> {sender}<br><b>Sent:</b> '
            f'{original.sent.strftime("%A, %B %d, %Y %I:%M %p")}<br><b>To:</b> {who(original.to)}<br>'
            + (f'<b>Cc:</b> {who(original.cc)}<br>' if original.cc else '')
            + f'<b>Subject:</b> {html.escape(original.subject)}</div><br><div>{quoted}</div></body></html>')
