"""In-memory mailboxes: users, folders, messages, attachments, inbox rules and change logs.

Concurrency: one re-entrant lock (``MailStore.lock``) guards everything.  Route
handlers hold it while they read and render, so a response is always a
consistent snapshot.

Change tracking: every mutation that affects a folder's contents appends a
:class:`Change` with a store-wide, strictly increasing sequence number to that
folder's log.  Delta queries (``graph_delta.py``) compare sequence numbers, which
is what makes them exact under concurrent writes.
"""
from __future__ import annotations

import bisect
import copy
import datetime as dt
import email.utils
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterable

from . import ids
from .content import Blob
from .core import GraphError, bad_request, invalid_user, item_not_found, utc_now

# Well-known folder name -> display name, in the order Outlook lists them.
WELL_KNOWN_FOLDERS: dict[str, str] = {
    "inbox": "Inbox",
    "drafts": "Drafts",
    "sentitems": "Sent Items",
    "deleteditems": "Deleted Items",
    "junkemail": "Junk Email",
    "archive": "Archive",
    "outbox": "Outbox",
    "conversationhistory": "Conversation History",
}
ROOT_NAME = "msgfolderroot"

FILE, ITEM, REFERENCE = "file", "item", "reference"


@dataclass
class Recipient:
    address: str
    name: str = ""

    def to_json(self) -> dict:
        return {"emailAddress": {"name": self.name or self.address, "address": self.address}}

    @classmethod
    def parse(cls, value: Any) -> "Recipient":
        """Accept ``"a@b"``, ``"Name <a@b>"``, ``{"address", "name"}`` or Graph's ``{"emailAddress": ...}``."""
        if isinstance(value, Recipient):
            return value
        if isinstance(value, dict):
            inner = value.get("emailAddress", value)
            return cls(str(inner.get("address", "")), str(inner.get("name", "") or ""))
        name, address = email.utils.parseaddr(str(value))
        return cls(address or str(value), name)

    @classmethod
    def parse_list(cls, value: Any) -> list["Recipient"]:
        if not value:
            return []
        if isinstance(value, (str, dict, Recipient)):
            value = [value]
        return [cls.parse(v) for v in value]


@dataclass(eq=False)
class Attachment:
    id: str
    kind: str  # FILE, ITEM or REFERENCE
    name: str
    content_type: str | None
    last_modified: dt.datetime
    is_inline: bool = False
    content_id: str | None = None
    content_location: str | None = None
    blob: Blob | None = None  # FILE
    item: "Message | None" = None  # ITEM: the attached message
    reference_size: int = 0  # REFERENCE: size reported for the link

    @property
    def size(self) -> int:
        if self.kind == FILE and self.blob is not None:
            return self.blob.size
        if self.kind == ITEM and self.item is not None:
            return self.item.size
        return self.reference_size


@dataclass(eq=False)
class Message:
    immutable_id: str
    rest_id: str
    seq: int  # creation order, used as a stable tie-breaker when sorting
    subject: str
    body: str
    body_type: str  # "html" or "text"
    sender: Recipient | None
    from_: Recipient | None
    to: list[Recipient]
    cc: list[Recipient]
    bcc: list[Recipient]
    reply_to: list[Recipient]
    received: dt.datetime
    sent: dt.datetime
    created: dt.datetime
    modified: dt.datetime
    internet_message_id: str
    conversation_id: str
    conversation_index: str
    change_key: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    is_read: bool = False
    is_draft: bool = False
    importance: str = "normal"
    categories: list[str] = field(default_factory=list)
    flag: dict = field(default_factory=lambda: {"flagStatus": "notFlagged"})
    inference: str = "focused"
    delivery_receipt: bool = False
    read_receipt: bool = False
    folder_id: str | None = None  # None for a message embedded in an item attachment

    @property
    def has_attachments(self) -> bool:
        # Graph's hasAttachments ignores inline attachments.
        return any(not a.is_inline for a in self.attachments)

    @property
    def size(self) -> int:
        return 1200 + len(self.subject) + len(self.body.encode("utf-8")) + sum(a.size for a in self.attachments)

    def attachment(self, ref: str) -> Attachment:
        found = ids.lookup({a.id: a for a in self.attachments}, ref)
        if found is None:
            raise item_not_found()
        return found


@dataclass
class Change:
    seq: int
    kind: str  # "created" (new or moved in), "updated", "removed" (deleted or moved out)
    immutable_id: str
    rest_id: str  # the message's regular id at the time of the change


@dataclass(eq=False)
class Folder:
    id: str
    display_name: str
    parent_id: str | None
    well_known: str | None = None
    is_hidden: bool = False
    child_ids: list[str] = field(default_factory=list)
    messages: dict[str, Message] = field(default_factory=dict)  # immutable id -> message
    log: list[Change] = field(default_factory=list)

    def changes_after(self, seq: int, until: int) -> list[Change]:
        """Changes with ``seq < change.seq <= until``, oldest first."""
        start = bisect.bisect_right(self.log, seq, key=lambda c: c.seq)
        return [c for c in self.log[start:] if c.seq <= until]


@dataclass(eq=False)
class Mailbox:
    user_id: str
    upn: str
    display_name: str
    given_name: str
    surname: str
    job_title: str
    hidden_root_id: str
    root_id: str
    folders: dict[str, Folder] = field(default_factory=dict)
    well_known: dict[str, str] = field(default_factory=dict)  # well-known name -> folder id
    index: dict[str, Message] = field(default_factory=dict)  # rest id and immutable id -> message
    rules: list[dict] = field(default_factory=list)
    mail_enabled: bool = True  # False: a directory user without a mailbox (sandbox/tenant.py)
    settings: dict = field(default_factory=dict)  # mailboxSettings overrides (graph_rules.py)

    @property
    def root(self) -> Folder:
        return self.folders[self.root_id]


class MailStore:
    def __init__(self, id_seed: int = 20240101) -> None:
        self.lock = threading.RLock()
        self._id_seed = id_seed
        self.ids = ids.IdFactory(id_seed)
        self._seq = 0
        self._mailboxes: dict[str, Mailbox] = {}  # lower-case UPN -> mailbox
        self._by_id: dict[str, Mailbox] = {}

    def clear(self) -> None:
        """Drop all mailboxes and restart id generation (sequence numbers keep increasing)."""
        with self.lock:
            self._mailboxes.clear()
            self._by_id.clear()
            self.ids = ids.IdFactory(self._id_seed)

    # --- sequence ---------------------------------------------------------------
    def next_seq(self) -> int:
        with self.lock:
            self._seq += 1
            return self._seq

    @property
    def current_seq(self) -> int:
        return self._seq

    # --- users -------------------------------------------------------------------
    def add_mailbox(self, upn: str, display_name: str, given_name: str = "", surname: str = "",
                    job_title: str = "", user_id: str | None = None) -> Mailbox:
        with self.lock:
            user_id = user_id or self.ids.guid()
            mailbox = Mailbox(user_id, upn, display_name, given_name, surname, job_title,
                              hidden_root_id=self.ids.folder_id(user_id), root_id="")
            root = Folder(self.ids.folder_id(user_id), "Top of Information Store",
                          mailbox.hidden_root_id, well_known=ROOT_NAME)
            mailbox.root_id = root.id
            mailbox.folders[root.id] = root
            mailbox.well_known[ROOT_NAME] = root.id
            for well_known, name in WELL_KNOWN_FOLDERS.items():
                folder = self._new_folder(mailbox, root, name)
                folder.well_known = well_known
                mailbox.well_known[well_known] = folder.id
            self._mailboxes[upn.lower()] = mailbox
            self._by_id[user_id.lower()] = mailbox
            return mailbox

    def mailboxes(self) -> list[Mailbox]:
        with self.lock:
            return list(self._mailboxes.values())

    def user(self, ref: str) -> Mailbox:
        """A mailbox by UPN (case-insensitive) or user id; 404 ErrorInvalidUser otherwise."""
        with self.lock:
            key = ref.strip().lower()
            mailbox = self._mailboxes.get(key) or self._by_id.get(key)
            if mailbox is None:
                raise invalid_user(ref)
            return mailbox

    # --- folders ----------------------------------------------------------------
    def _new_folder(self, mailbox: Mailbox, parent: Folder, name: str, hidden: bool = False) -> Folder:
        folder = Folder(self.ids.folder_id(mailbox.user_id), name, parent.id, is_hidden=hidden)
        mailbox.folders[folder.id] = folder
        parent.child_ids.append(folder.id)
        return folder

    def folder(self, mailbox: Mailbox, ref: str) -> Folder:
        """A folder by well-known name (any case) or id (any accepted spelling)."""
        with self.lock:
            well_known = mailbox.well_known.get(ref.lower())
            if well_known is not None:
                return mailbox.folders[well_known]
            found = ids.lookup(mailbox.folders, ref)
            if found is None:
                raise item_not_found()
            return found

    def folder_by_path(self, mailbox: Mailbox, path: str) -> Folder:
        """Resolve ``"Inbox/Phishing"`` (display names, case-insensitive) or fall back to an id."""
        with self.lock:
            try:
                return self.folder(mailbox, path)
            except GraphError:
                pass
            current = mailbox.root
            for part in [p for p in path.replace("\\", "/").split("/") if p]:
                match = next((mailbox.folders[c] for c in current.child_ids
                              if mailbox.folders[c].display_name.lower() == part.lower()
                              or (mailbox.folders[c].well_known or "") == part.lower()), None)
                if match is None:
                    raise item_not_found()
                current = match
            return current

    def folder_path(self, mailbox: Mailbox, folder: Folder) -> str:
        parts = []
        while folder.id != mailbox.root_id and folder.parent_id in mailbox.folders:
            parts.append(folder.display_name)
            folder = mailbox.folders[folder.parent_id]
        return "/".join(reversed(parts))

    def children(self, mailbox: Mailbox, folder: Folder) -> list[Folder]:
        return [mailbox.folders[c] for c in folder.child_ids]

    def create_folder(self, mailbox: Mailbox, parent: Folder, name: str, hidden: bool = False) -> Folder:
        with self.lock:
            name = (name or "").strip()
            if not name:
                raise bad_request("The displayName property is required.", "ErrorInvalidRequest")
            self._ensure_unique_name(mailbox, parent, name)
            return self._new_folder(mailbox, parent, name, hidden)

    def rename_folder(self, mailbox: Mailbox, folder: Folder, name: str) -> Folder:
        with self.lock:
            if folder.well_known:
                raise GraphError(400, "ErrorCannotRenameDistinguishedFolder",
                                 "Well-known folders cannot be renamed.")
            parent = mailbox.folders.get(folder.parent_id or "")
            if parent is not None and name.lower() != folder.display_name.lower():
                self._ensure_unique_name(mailbox, parent, name)
            folder.display_name = name
            return folder

    def _ensure_unique_name(self, mailbox: Mailbox, parent: Folder, name: str) -> None:
        if any(mailbox.folders[c].display_name.lower() == name.lower() for c in parent.child_ids):
            raise GraphError(409, "ErrorFolderExists", "A folder with the specified name already exists.")

    def _in_subtree(self, mailbox: Mailbox, folder: Folder, ancestor_id: str) -> bool:
        current: Folder | None = folder
        while current is not None:
            if current.id == ancestor_id:
                return True
            current = mailbox.folders.get(current.parent_id or "")
        return False

    def delete_folder(self, mailbox: Mailbox, folder: Folder) -> None:
        """Move a folder to Deleted Items, or purge it if it is already there (like Outlook)."""
        with self.lock:
            if folder.well_known:
                raise GraphError(400, "ErrorDeleteDistinguishedFolder", "Distinguished folders cannot be deleted.")
            parent = mailbox.folders[folder.parent_id or ""]
            deleted_items = mailbox.folders[mailbox.well_known["deleteditems"]]
            if self._in_subtree(mailbox, folder, deleted_items.id):
                parent.child_ids.remove(folder.id)
                self._purge(mailbox, folder)
                return
            parent.child_ids.remove(folder.id)
            if any(mailbox.folders[c].display_name.lower() == folder.display_name.lower()
                   for c in deleted_items.child_ids):
                folder.display_name = f"{folder.display_name} ({self.current_seq})"
            deleted_items.child_ids.append(folder.id)
            folder.parent_id = deleted_items.id

    def _purge(self, mailbox: Mailbox, folder: Folder) -> None:
        for child_id in list(folder.child_ids):
            self._purge(mailbox, mailbox.folders[child_id])
        for message in list(folder.messages.values()):
            self._detach(mailbox, message)
        del mailbox.folders[folder.id]

    # --- messages ---------------------------------------------------------------
    def message(self, mailbox: Mailbox, ref: str) -> Message:
        with self.lock:
            found = ids.lookup(mailbox.index, ref)
            if found is None:
                raise item_not_found()
            return found

    def messages(self, mailbox: Mailbox, folder: Folder | None = None) -> list[Message]:
        """Messages of one folder, or of the whole mailbox."""
        with self.lock:
            if folder is not None:
                return list(folder.messages.values())
            return [m for f in mailbox.folders.values() for m in f.messages.values()]

    def new_message(self, mailbox: Mailbox | None, *, subject: str = "", body: str = "",
                    body_type: str = "html", sender: Any = None, to: Any = None, cc: Any = None,
                    bcc: Any = None, reply_to: Any = None, received: dt.datetime | None = None,
                    sent: dt.datetime | None = None, is_read: bool = False, is_draft: bool = False,
                    importance: str = "normal", categories: Iterable[str] = (),
                    flag: dict | None = None, internet_message_id: str | None = None,
                    conversation_id: str | None = None, headers: Iterable[tuple[str, str]] = (),
                    inference: str = "focused", from_: Any = None) -> Message:
        """Build a message (not yet filed).  ``mailbox=None`` builds an embedded item."""
        owner = mailbox.user_id if mailbox else self.ids.guid()
        received = received or utc_now()
        sent = sent or (received - dt.timedelta(seconds=2))
        sender_r = Recipient.parse(sender) if sender else None
        from_r = Recipient.parse(from_) if from_ else sender_r
        to_r = Recipient.parse_list(to)
        domain = (from_r.address.split("@")[-1] if from_r and "@" in from_r.address else "contoso.com")
        message = Message(
            immutable_id=self.ids.immutable_message_id(owner),
            rest_id=self.ids.message_id(owner),
            seq=self.next_seq(),
            subject=subject, body=body, body_type=body_type.lower(),
            sender=sender_r, from_=from_r, to=to_r, cc=Recipient.parse_list(cc),
            bcc=Recipient.parse_list(bcc), reply_to=Recipient.parse_list(reply_to),
            received=received, sent=sent, created=received, modified=received,
            internet_message_id=internet_message_id or f"<{self.ids.hex(16).upper()}@{domain}>",
            conversation_id=conversation_id or self.ids.folder_id(owner),
            conversation_index=self.ids.opaque(22),
            change_key=self.ids.opaque(15),
            is_read=is_read, is_draft=is_draft, importance=importance,
            categories=list(categories), flag=dict(flag or {"flagStatus": "notFlagged"}),
            inference=inference,
        )
        message.headers = default_headers(message, list(headers))
        return message

    def new_attachment(self, owner_guid: str, kind: str, name: str, content_type: str | None, *,
                       blob: Blob | None = None, item: Message | None = None, is_inline: bool = False,
                       content_id: str | None = None, content_location: str | None = None,
                       reference_size: int = 0, last_modified: dt.datetime | None = None) -> Attachment:
        return Attachment(self.ids.attachment_id(owner_guid), kind, name, content_type,
                          last_modified or utc_now(), is_inline, content_id, content_location,
                          blob, item, reference_size)

    def file_message(self, mailbox: Mailbox, folder: Folder, message: Message) -> Message:
        """Put a built message into a folder and log its creation."""
        with self.lock:
            message.folder_id = folder.id
            folder.messages[message.immutable_id] = message
            mailbox.index[message.rest_id] = message
            mailbox.index[message.immutable_id] = message
            self._log(folder, "created", message)
            return message

    def _log(self, folder: Folder, kind: str, message: Message) -> None:
        folder.log.append(Change(self.next_seq(), kind, message.immutable_id, message.rest_id))

    def touch(self, mailbox: Mailbox, message: Message) -> None:
        """Record an update (new changeKey and lastModifiedDateTime) in the change log."""
        with self.lock:
            message.modified = max(utc_now(), message.modified)
            message.change_key = self.ids.opaque(15)
            self._log(mailbox.folders[message.folder_id or ""], "updated", message)

    def move_message(self, mailbox: Mailbox, message: Message, destination: Folder) -> Message:
        """Move keeping receivedDateTime; the regular id changes, the immutable id does not."""
        with self.lock:
            source = mailbox.folders[message.folder_id or ""]
            if source.id == destination.id:
                return message
            self._log(source, "removed", message)
            del source.messages[message.immutable_id]
            del mailbox.index[message.rest_id]
            message.rest_id = self.ids.message_id(mailbox.user_id)
            message.change_key = self.ids.opaque(15)
            message.modified = max(utc_now(), message.modified)
            return self.file_message(mailbox, destination, message)

    def copy_message(self, mailbox: Mailbox, message: Message, destination: Folder) -> Message:
        with self.lock:
            clone = copy.copy(message)
            clone.immutable_id = self.ids.immutable_message_id(mailbox.user_id)
            clone.rest_id = self.ids.message_id(mailbox.user_id)
            clone.seq = self.next_seq()
            clone.change_key = self.ids.opaque(15)
            clone.categories = list(message.categories)
            clone.flag = dict(message.flag)
            clone.headers = list(message.headers)
            clone.attachments = [copy.copy(a) for a in message.attachments]
            for attachment in clone.attachments:
                attachment.id = self.ids.attachment_id(mailbox.user_id)
            clone.created = clone.modified = utc_now()
            return self.file_message(mailbox, destination, clone)

    def delete_message(self, mailbox: Mailbox, message: Message) -> None:
        with self.lock:
            self._detach(mailbox, message)

    def _detach(self, mailbox: Mailbox, message: Message) -> None:
        folder = mailbox.folders[message.folder_id or ""]
        self._log(folder, "removed", message)
        folder.messages.pop(message.immutable_id, None)
        mailbox.index.pop(message.rest_id, None)
        mailbox.index.pop(message.immutable_id, None)
        message.folder_id = None

    # --- rules ----------------------------------------------------------------------
    def rule(self, mailbox: Mailbox, ref: str) -> dict:
        with self.lock:
            found = ids.lookup({r["id"]: r for r in mailbox.rules}, ref)
            if found is None:
                raise item_not_found()
            return found

    def delete_rule(self, mailbox: Mailbox, rule: dict) -> None:
        with self.lock:
            mailbox.rules.remove(rule)


def default_headers(message: Message, extra: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Transport headers like Exchange Online records them; ``extra`` overrides by name."""
    sender = message.from_.address if message.from_ else "unknown@contoso.com"
    domain = sender.split("@")[-1]
    date = email.utils.format_datetime(message.sent)
    to = ", ".join(r.address for r in message.to)
    headers = [
        ("Received", f"from mail-{zlib.crc32(domain.encode()) % 900 + 100}.{domain} (203.0.113.25) by "
                     f"DB9PR01MB7353.eurprd01.prod.exchangelabs.com with Microsoft SMTP Server; {date}"),
        ("Authentication-Results", f"spf=pass (sender IP is 203.0.113.25) smtp.mailfrom={domain}; "
                                   f"dkim=pass (signature was verified) header.d={domain};"
                                   f"dmarc=pass action=none header.from={domain};compauth=pass reason=100"),
        ("From", f"{message.from_.name} <{sender}>" if message.from_ and message.from_.name else sender),
        ("To", to),
        ("Subject", " ".join(message.subject.split())),
        ("Date", date),
        ("Message-ID", message.internet_message_id),
        ("MIME-Version", "1.0"),
        ("X-MS-Exchange-Organization-SCL", "1"),
    ]
    overrides = {name.lower(): (name, value) for name, value in extra}
    merged = [overrides.pop(name.lower(), (name, value)) for name, value in headers]
    return merged + list(overrides.values())
