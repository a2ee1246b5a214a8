"""Per-folder message delta (``/mailFolders/{id}/messages/delta``).

How exactness is achieved:

* A *round* is the sequence of pages from a first request (or a deltaLink) to
  the page carrying the next ``@odata.deltaLink``.  When a round starts, the
  sandbox takes the store's current sequence number ``end`` and, under the store
  lock, materialises the round's entries: the folder's current messages for a
  first round, or the folder's change-log entries in ``(since, end]`` for a
  round started from a deltaLink.
* The round's deltaLink carries ``end``.  Any change after the round started has
  a larger sequence number, so it lands in the next round; nothing falls between.
* Pages render entries from the *current* state: a message that left the folder
  mid-round is skipped (its removal is reported next round).

Tokens are server-side handles that stay valid until ``expire_all`` (control
endpoint ``expire-delta-tokens``) or a reset, after which they give 410 Gone.
"""
from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from urllib.parse import quote

from . import odata
from .context import SandboxContext
from .core import GraphError, Request, Response, bad_request
from .odata import parse_prefer
from .routing import Router
from .store import Folder, Mailbox, MailStore
from .views import MESSAGE_SELECTABLE, View, message_json

DELTA_FILTER_FIELDS = {"receiveddatetime": odata.FilterField(
    "receivedDateTime", "datetime", frozenset({"ge", "gt"}), lambda m: m.received)}
CHANGE_TYPES = frozenset({"created", "updated", "deleted"})
FILTERED_ROUND_LIMIT = 5000  # Graph caps a filtered first round at 5,000 messages


@dataclass(frozen=True)
class DeltaOptions:
    select: tuple[str, ...] | None
    change_types: frozenset[str]
    received_filter: tuple[odata.Clause, ...]
    page_size: int


@dataclass(frozen=True)
class Entry:
    immutable_id: str
    kind: str  # "created", "updated" or "deleted"
    removed_rest_id: str | None = None  # deleted entries: the regular id the client last saw
    reappears: bool = False  # deleted entries: the same message re-enters the folder in this round


@dataclass
class Round:
    mailbox_id: str
    folder_id: str
    options: DeltaOptions
    entries: list[Entry]
    end_seq: int
    skip_tokens: dict[int, str] = field(default_factory=dict)
    delta_token: str | None = None


@dataclass(frozen=True)
class Checkpoint:
    mailbox_id: str
    folder_id: str
    options: DeltaOptions
    seq: int


class DeltaTracker:
    """Holds rounds and the tokens that point into them."""

    def __init__(self, store: MailStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._skip: dict[str, tuple[Round, int]] = {}
        self._delta: dict[str, Checkpoint] = {}

    def expire_all(self) -> None:
        with self._lock:
            self._skip.clear()
            self._delta.clear()

    # --- tokens ---------------------------------------------------------------------
    def skip_token(self, round_: Round, offset: int) -> str:
        with self._lock:
            token = round_.skip_tokens.get(offset)
            if token is None:
                token = secrets.token_urlsafe(32)
                round_.skip_tokens[offset] = token
                self._skip[token] = (round_, offset)
            return token

    def delta_token(self, round_: Round) -> str:
        with self._lock:
            if round_.delta_token is None:
                round_.delta_token = secrets.token_urlsafe(32)
                self._delta[round_.delta_token] = Checkpoint(round_.mailbox_id, round_.folder_id,
                                                             round_.options, round_.end_seq)
            return round_.delta_token

    def resume(self, skiptoken: str) -> tuple[Round, int]:
        with self._lock:
            found = self._skip.get(skiptoken)
        if found is None:
            raise sync_state_not_found()
        return found

    def checkpoint(self, deltatoken: str) -> Checkpoint:
        with self._lock:
            found = self._delta.get(deltatoken)
        if found is None:
            raise sync_state_not_found()
        return found

    # --- rounds -------------------------------------------------------------------------
    def first_round(self, mailbox: Mailbox, folder: Folder, options: DeltaOptions) -> Round:
        with self.store.lock:
            entries = []
            if options.change_types & {"created", "updated"}:
                messages = sorted((m for m in folder.messages.values() if _passes(options, m)),
                                  key=lambda m: (m.received, m.seq), reverse=True)
                if options.received_filter:
                    messages = messages[:FILTERED_ROUND_LIMIT]
                entries = [Entry(m.immutable_id, "created") for m in messages]
            return Round(mailbox.user_id, folder.id, options, entries, self.store.current_seq)

    def next_round(self, mailbox: Mailbox, folder: Folder, checkpoint: Checkpoint) -> Round:
        with self.store.lock:
            end = self.store.current_seq
            events_by_message: dict[str, list] = {}
            for change in folder.changes_after(checkpoint.seq, end):
                events_by_message.setdefault(change.immutable_id, []).append(change)
            ordered = sorted(events_by_message.values(), key=lambda events: events[-1].seq)
            entries = [e for events in ordered for e in _entries_for(events)
                       if e.kind in checkpoint.options.change_types]
            entries = [e for e in entries
                       if e.kind == "deleted" or _passes(checkpoint.options, folder.messages.get(e.immutable_id))]
            return Round(mailbox.user_id, folder.id, checkpoint.options, entries, end)


def _passes(options: DeltaOptions, message) -> bool:
    return message is not None and all(c.test(message) for c in options.received_filter)


def _entries_for(events: list) -> list[Entry]:
    """Collapse one message's changes within a window into what the client must learn."""
    first, last = events[0], events[-1]
    existed_before = first.kind != "created"
    exists_now = last.kind != "removed"
    removal = next((e for e in events if e.kind == "removed"), None)
    entries = []
    if existed_before and removal is not None:
        entries.append(Entry(first.immutable_id, "deleted", removal.rest_id, reappears=exists_now))
    if exists_now:
        kind = "updated" if existed_before and removal is None else "created"
        entries.append(Entry(first.immutable_id, kind))
    return entries


def sync_state_not_found() -> GraphError:
    return GraphError(410, "SyncStateNotFound",
                      "The sync state is not found or has expired; restart the synchronization without a token.")


def register(router: Router, ctx: SandboxContext) -> None:
    tracker = DeltaTracker(ctx.store)
    ctx.extensions["delta"] = tracker
    api = DeltaApi(ctx, tracker)
    for name in ("delta", "microsoft.graph.delta"):  # SDKs use the fully qualified function name
        router.add("GET", f"/v1.0/users/{{user}}/mailFolders/{{folder}}/messages/{name}", api.folder_delta)
        router.add("GET", f"/v1.0/users/{{user}}/messages/{name}", api.mailbox_delta)


class DeltaApi:
    def __init__(self, ctx: SandboxContext, tracker: DeltaTracker) -> None:
        self.ctx = ctx
        self.tracker = tracker

    def _require_supported(self) -> None:
        if not self.ctx.settings.delta_supported:
            raise bad_request("Change tracking (delta) of messages is not supported in this cloud deployment.")

    def mailbox_delta(self, request: Request) -> Response:
        self._require_supported()
        raise bad_request("Change tracking is supported per mail folder only: "
                          "use /users/{id}/mailFolders/{id}/messages/delta.")

    def folder_delta(self, request: Request) -> Response:
        self._require_supported()
        prefer = parse_prefer(request.headers)
        store = self.ctx.store
        mailbox = store.user(request.params["user"])
        folder = store.folder(mailbox, request.params["folder"])
        skiptoken, deltatoken = request.option("skiptoken"), request.option("deltatoken")
        if skiptoken:
            round_, offset = self.tracker.resume(skiptoken)
        elif deltatoken:
            checkpoint = self.tracker.checkpoint(deltatoken)
            self._check_scope(checkpoint.mailbox_id, checkpoint.folder_id, mailbox, folder)
            round_, offset = self.tracker.next_round(mailbox, folder, checkpoint), 0
        else:
            round_, offset = self.tracker.first_round(mailbox, folder, self._options(request, prefer)), 0
        self._check_scope(round_.mailbox_id, round_.folder_id, mailbox, folder)
        size = prefer.max_page_size or round_.options.page_size
        page = round_.entries[offset:offset + size]
        view = View(prefer.immutable_ids, prefer.body_type, list(round_.options.select or []) or None)
        with store.lock:
            value = [item for item in (self._render(e, folder, view) for e in page) if item is not None]
        payload: dict = {"@odata.context": f"{self.ctx.base_url}/v1.0/$metadata#Collection(message)",
                         "value": value}
        if offset + size < len(round_.entries):
            token = self.tracker.skip_token(round_, offset + size)
            payload["@odata.nextLink"] = self.ctx.absolute(request, f"$skiptoken={quote(token)}")
        else:
            token = self.tracker.delta_token(round_)
            payload["@odata.deltaLink"] = self.ctx.absolute(request, f"$deltatoken={quote(token)}")
        return Response.json(payload, headers=prefer.applied())

    @staticmethod
    def _check_scope(mailbox_id: str, folder_id: str, mailbox: Mailbox, folder: Folder) -> None:
        if mailbox_id != mailbox.user_id or folder_id != folder.id:
            raise bad_request("The delta token was issued for a different mail folder.")

    @staticmethod
    def _render(entry: Entry, folder: Folder, view: View) -> dict | None:
        if entry.kind == "deleted":
            if view.immutable_ids and entry.reappears:
                return None  # same immutable id comes back later in this round
            message_id = entry.immutable_id if view.immutable_ids else entry.removed_rest_id
            return {"@odata.type": "#microsoft.graph.message", "id": message_id,
                    "@removed": {"reason": "deleted"}}
        message = folder.messages.get(entry.immutable_id)
        if message is None:
            return None  # left the folder mid-round; reported as removed next round
        return message_json(message, view)

    @staticmethod
    def _options(request: Request, prefer: odata.Prefer) -> DeltaOptions:
        if request.option("search") is not None:
            raise bad_request("The query parameter '$search' is not supported with delta queries.",
                              "ErrorInvalidUrlQuery")
        order = request.option("orderby")
        if order and [w.lower() for w in order.split()] != ["receiveddatetime", "desc"]:
            raise bad_request("Delta queries only support '$orderby=receivedDateTime desc'.", "ErrorInvalidUrlQuery")
        select = odata.parse_select(request, MESSAGE_SELECTABLE, "message")
        filter_text = request.option("filter")
        clauses = tuple(odata.parse_filter(filter_text, DELTA_FILTER_FIELDS)) if filter_text else ()
        change_types = CHANGE_TYPES
        raw_change = request.query.get("changeType")
        if raw_change:
            wanted = {p.strip().lower() for p in raw_change.split(",") if p.strip()}
            if not wanted or not wanted <= CHANGE_TYPES:
                raise bad_request(f"Invalid changeType '{raw_change}'; use created, updated or deleted.")
            change_types = frozenset(wanted)
        size = prefer.max_page_size or odata.page_size(request, odata.Prefer())
        return DeltaOptions(tuple(select) if select else None, change_types, clauses, size)
