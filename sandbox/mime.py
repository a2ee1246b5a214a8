"""RFC 822 rendering of messages, as returned by ``/messages/{id}/$value``.

Built with the stdlib ``email`` package: text + HTML alternatives, inline images
as ``multipart/related`` parts of the HTML, file attachments, and item
attachments as nested ``message/rfc822`` parts.  Reference attachments carry
no content and are left out (as Exchange does).
"""
from __future__ import annotations

import email.policy
import email.utils
from email.message import EmailMessage

from .store import FILE, ITEM, Message, Recipient
from .views import html_to_text

_POLICY = email.policy.SMTP.clone(max_line_length=998)
# Headers the MIME builder writes itself; recorded copies are not repeated.
_OWN_HEADERS = {"from", "to", "cc", "subject", "date", "message-id", "mime-version",
                "content-type", "content-transfer-encoding", "reply-to", "sender", "importance"}


def _one_line(value: str) -> str:
    """Header values cannot contain line breaks; fold them into spaces."""
    return " ".join(value.split())


def _addresses(recipients: list[Recipient]) -> str:
    return ", ".join(email.utils.formataddr((_one_line(r.name), r.address)) if r.name else r.address
                     for r in recipients)


def to_email(message: Message) -> EmailMessage:
    mime = EmailMessage(policy=_POLICY)
    for name, value in message.headers:
        if name.lower() not in _OWN_HEADERS:
            mime[name] = _one_line(value)
    if message.from_:
        mime["From"] = _addresses([message.from_])
    if message.sender and message.from_ and message.sender.address != message.from_.address:
        mime["Sender"] = _addresses([message.sender])
    if message.to:
        mime["To"] = _addresses(message.to)
    if message.cc:
        mime["Cc"] = _addresses(message.cc)
    if message.reply_to:
        mime["Reply-To"] = _addresses(message.reply_to)
    mime["Subject"] = _one_line(message.subject)
    mime["Date"] = email.utils.format_datetime(message.sent)
    mime["Message-ID"] = message.internet_message_id
    if message.importance != "normal":
        mime["Importance"] = message.importance
    _set_body(mime, message)
    return mime


def _set_body(mime: EmailMessage, message: Message) -> None:
    if message.body_type == "html":
        mime.set_content(html_to_text(message.body))
        mime.add_alternative(message.body, subtype="html")
        html_part = mime.get_payload()[1]
        for attachment in message.attachments:
            if attachment.kind == FILE and attachment.is_inline and attachment.blob is not None:
                maintype, _, subtype = (attachment.content_type or "application/octet-stream").partition("/")
                html_part.add_related(attachment.blob.read_all(), maintype, subtype,
                                      cid=f"<{attachment.content_id or attachment.name}>",
                                      filename=attachment.name, disposition="inline")
    else:
        mime.set_content(message.body)
    for attachment in message.attachments:
        if attachment.kind == FILE and attachment.blob is not None:
            if attachment.is_inline and message.body_type == "html":
                continue
            maintype, _, subtype = (attachment.content_type or "application/octet-stream").partition("/")
            mime.add_attachment(attachment.blob.read_all(), maintype, subtype or "octet-stream",
                                filename=attachment.name)
        elif attachment.kind == ITEM and attachment.item is not None:
            mime.add_attachment(to_email(attachment.item), filename=f"{attachment.name}.eml")


def to_mime(message: Message) -> bytes:
    return to_email(message).as_bytes(policy=_POLICY)
