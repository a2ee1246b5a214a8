"""JSON shapes of Graph resources (message, mailFolder, attachment, messageRule, user).

Property names and their order follow Graph's v1.0 resources so clients (and
humans comparing payloads) see what production would send.
"""
from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import quote

from .core import iso
from .store import FILE, ITEM, REFERENCE, Attachment, Folder, Mailbox, Message

# Default message properties, in Graph's order.
MESSAGE_PROPERTIES: tuple[str, ...] = (
    "createdDateTime", "lastModifiedDateTime", "changeKey", "categories", "receivedDateTime",
    "sentDateTime", "hasAttachments", "internetMessageId", "subject", "bodyPreview", "importance",
    "parentFolderId", "conversationId", "conversationIndex", "isDeliveryReceiptRequested",
    "isReadReceiptRequested", "isRead", "isDraft", "webLink", "inferenceClassification", "body",
    "sender", "from", "toRecipients", "ccRecipients", "bccRecipients", "replyTo", "flag",
)
# Returned only when named in $select.
MESSAGE_ON_DEMAND: tuple[str, ...] = ("uniqueBody", "internetMessageHeaders")
MESSAGE_SELECTABLE: set[str] = {"id", *MESSAGE_PROPERTIES, *MESSAGE_ON_DEMAND}

FOLDER_PROPERTIES: tuple[str, ...] = ("displayName", "parentFolderId", "childFolderCount",
                                      "unreadItemCount", "totalItemCount", "sizeInBytes", "isHidden")
FOLDER_SELECTABLE: set[str] = {"id", *FOLDER_PROPERTIES}

ATTACHMENT_SELECTABLE: set[str] = {"id", "lastModifiedDateTime", "name", "contentType", "size", "isInline"}
# Properties only fileAttachment has: $select must name them with the type cast, as on Graph.
ATTACHMENT_CAST_SELECTABLE: dict[str, set[str]] = {
    "microsoft.graph.fileattachment": {"contentId", "contentLocation", "contentBytes"}}


@dataclass(frozen=True)
class View:
    """Per-request rendering options (from the Prefer header and query options)."""

    immutable_ids: bool = False
    body_type: str | None = None  # None = as stored
    select: list[str] | None = None

    def message_id(self, message: Message) -> str:
        return message.immutable_id if self.immutable_ids else message.rest_id


# --- body conversion -------------------------------------------------------------

class _TextExtractor(HTMLParser):
    _BLOCK = {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "table", "blockquote"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in ("style", "script", "head", "title"):
            self._skip += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "head", "title"):
            self._skip = max(0, self._skip - 1)
        elif tag in ("p", "div", "tr", "li", "table"):
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    text = "".join(parser.parts)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\r\n".join(lines).strip())


def text_to_html(text: str) -> str:
    escaped = html.escape(text).replace("\r\n", "\n").replace("\n", "<br>\r\n")
    return ('<html><head>\r\n<meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
            f'</head><body><div dir="ltr">{escaped}</div></body></html>')


def body_as(message: Message, wanted: str | None) -> tuple[str, str]:
    """(contentType, content) of the body converted to ``wanted`` ("text"/"html") if given."""
    stored = message.body_type
    if wanted is None or wanted == stored:
        return stored, message.body
    if wanted == "text":
        return "text", html_to_text(message.body)
    return "html", text_to_html(message.body)


def body_preview(message: Message) -> str:
    text = message.body if message.body_type == "text" else html_to_text(message.body)
    return " ".join(text.split())[:255]


# --- resources -------------------------------------------------------------------------

def etag(change_key: str) -> str:
    return f'W/"{change_key}"'


def web_link(message_id: str) -> str:
    return (f"https://outlook.office365.com/owa/?ItemID={quote(message_id, safe='')}"
            "&exvsurl=1&viewmodel=ReadMessageItem")


def message_json(message: Message, view: View, *, attachments: list[dict] | None = None,
                 odata_type: bool = False) -> dict:
    """A message resource; ``attachments`` is added when the caller expanded them."""
    content_type, content = body_as(message, view.body_type)
    values = {
        "createdDateTime": lambda: iso(message.created),
        "lastModifiedDateTime": lambda: iso(message.modified),
        "changeKey": lambda: message.change_key,
        "categories": lambda: list(message.categories),
        "receivedDateTime": lambda: iso(message.received),
        "sentDateTime": lambda: iso(message.sent),
        "hasAttachments": lambda: message.has_attachments,
        "internetMessageId": lambda: message.internet_message_id,
        "subject": lambda: message.subject,
        "bodyPreview": lambda: body_preview(message),
        "importance": lambda: message.importance,
        "parentFolderId": lambda: message.folder_id,
        "conversationId": lambda: message.conversation_id,
        "conversationIndex": lambda: message.conversation_index,
        "isDeliveryReceiptRequested": lambda: message.delivery_receipt,
        "isReadReceiptRequested": lambda: message.read_receipt,
        "isRead": lambda: message.is_read,
        "isDraft": lambda: message.is_draft,
        "webLink": lambda: web_link(view.message_id(message)),
        "inferenceClassification": lambda: message.inference,
        "body": lambda: {"contentType": content_type, "content": content},
        "uniqueBody": lambda: {"contentType": content_type, "content": content},
        "sender": lambda: message.sender.to_json() if message.sender else None,
        "from": lambda: message.from_.to_json() if message.from_ else None,
        "toRecipients": lambda: [r.to_json() for r in message.to],
        "ccRecipients": lambda: [r.to_json() for r in message.cc],
        "bccRecipients": lambda: [r.to_json() for r in message.bcc],
        "replyTo": lambda: [r.to_json() for r in message.reply_to],
        "flag": lambda: dict(message.flag),
        "internetMessageHeaders": lambda: [{"name": n, "value": v} for n, v in message.headers],
    }
    names = MESSAGE_PROPERTIES if view.select is None else [n for n in view.select if n != "id"]
    out: dict = {}
    if odata_type:
        out["@odata.type"] = "#microsoft.graph.message"
    out["@odata.etag"] = etag(message.change_key)
    out["id"] = view.message_id(message)
    for name in names:
        out[name] = values[name]()
    if attachments is not None:
        out["attachments"] = attachments
    return out


def folder_json(folder: Folder, select: list[str] | None = None) -> dict:
    messages = folder.messages.values()
    values = {
        "displayName": folder.display_name,
        "parentFolderId": folder.parent_id,
        "childFolderCount": len(folder.child_ids),
        "unreadItemCount": sum(1 for m in messages if not m.is_read),
        "totalItemCount": len(folder.messages),
        "sizeInBytes": sum(m.size for m in messages),
        "isHidden": folder.is_hidden,
    }
    out = {"id": folder.id}
    for name in (FOLDER_PROPERTIES if select is None else [n for n in select if n != "id"]):
        out[name] = values[name]
    return out


_ATTACHMENT_TYPES = {FILE: "#microsoft.graph.fileAttachment", ITEM: "#microsoft.graph.itemAttachment",
                     REFERENCE: "#microsoft.graph.referenceAttachment"}


def attachment_json(attachment: Attachment, view: View, *, select: list[str] | None = None,
                    expand_item: bool = False) -> dict:
    """An attachment resource; fileAttachment carries contentBytes unless $select leaves it out."""
    out: dict = {"@odata.type": _ATTACHMENT_TYPES[attachment.kind]}
    if attachment.kind == FILE:
        out["@odata.mediaContentType"] = attachment.content_type
    fields = {
        "id": attachment.id,
        "lastModifiedDateTime": iso(attachment.last_modified),
        "name": attachment.name,
        "contentType": attachment.content_type,
        "size": attachment.size,
        "isInline": attachment.is_inline,
    }
    if attachment.kind == FILE:
        fields["contentId"] = attachment.content_id
        fields["contentLocation"] = attachment.content_location
        fields["contentBytes"] = None  # filled lazily below: it can be large
    wanted = select if select is not None else list(fields)
    for name in ["id", *[n for n in wanted if n != "id"]]:
        if name not in fields:
            continue
        if name == "contentBytes":
            assert attachment.blob is not None
            out[name] = base64.b64encode(attachment.blob.read_all()).decode("ascii")
        else:
            out[name] = fields[name]
    if attachment.kind == ITEM and expand_item and attachment.item is not None:
        out["item"] = message_json(attachment.item, view, odata_type=True)
    return out


def rule_json(rule: dict) -> dict:
    keys = ("id", "displayName", "sequence", "isEnabled", "hasError", "isReadOnly",
            "conditions", "actions", "exceptions")
    return {key: rule.get(key) for key in keys}


def user_json(mailbox: Mailbox) -> dict:
    return {
        "businessPhones": [], "displayName": mailbox.display_name, "givenName": mailbox.given_name or None,
        "jobTitle": mailbox.job_title or None, "mail": mailbox.upn if mailbox.mail_enabled else None, "mobilePhone": None,
        "officeLocation": None, "preferredLanguage": "en-US", "surname": mailbox.surname or None,
        "userPrincipalName": mailbox.upn, "id": mailbox.user_id,
    }
