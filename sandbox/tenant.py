"""A generated tenant for multi-mailbox work: directory routes, `permanentDelete`, the per-app concurrency limit and
planting a phishing campaign.

* ``generate(store, size)`` adds ``size`` users: 80 % with a mailbox, 10 % shared mailboxes, 10 % users without a
  mailbox (their mail calls answer 404 ``MailboxNotEnabledForRESTAPI``, as Exchange Online does), each mailbox with a
  few benign mails (some from the campaign's sender, some with its subject but another Message-ID, so a sloppy
  search or remediation touches them), plus groups with nested members.
* Routes: ``GET /v1.0/groups/{group}/transitiveMembers/microsoft.graph.user`` (paged, ``$top`` up to 999),
  ``POST .../messages/{message}/permanentDelete`` (204). ``GET /v1.0/users`` lives in graph_mail.
* :class:`ConcurrencyGate`: at most ``limit`` Graph requests of the app in flight; a top-level request and each
  ``$batch`` sub-request while it runs count; the next one is answered 429 ``ApplicationThrottled``.
* ``plant_campaign``: one campaign mail in a share of the mailboxes, in chosen folders.
"""
from __future__ import annotations

import datetime as dt
import random
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .context import SandboxContext
from .core import GraphError, Request, Response, utc_now
from .factory import add_message
from .odata import parse_prefer
from .routing import Router
from .store import Mailbox, MailStore
from .views import user_json

if TYPE_CHECKING:
    from .dispatch import Outcome

GROUP_MEMBERS = "/v1.0/groups/{group}/transitiveMembers/microsoft.graph.user"
DEFAULT_RETRY_AFTER = 1
NO_MAILBOX = GraphError(404, "MailboxNotEnabledForRESTAPI", "The mailbox is either inactive, soft-deleted, or is "
                                                            "hosted on-premise.")


@dataclass
class Group:
    id: str
    name: str
    members: list[str] = field(default_factory=list)   # user ids
    groups: list[str] = field(default_factory=list)    # nested group ids


@dataclass
class TenantState:
    groups: dict[str, Group] = field(default_factory=dict)
    kinds: dict[str, int] = field(default_factory=dict)   # "user" / "shared" / "no_mailbox" -> count


class ConcurrencyGate:
    """Counts the app's Graph requests in flight (one app: the sandbox has one registration)."""

    def __init__(self, limit: int = 4, retry_after: float = DEFAULT_RETRY_AFTER) -> None:
        self.limit = limit
        self.retry_after = retry_after
        self._lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0
        self.rejected = 0

    def acquire(self) -> bool:
        with self._lock:
            if self.limit and self.in_flight >= self.limit:
                self.rejected += 1
                return False
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            return True

    def release(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def throttled(self) -> GraphError:
        retry = self.retry_after
        return GraphError(429, "ApplicationThrottled", "Application is over its MailboxConcurrency limit.",
                          [("Retry-After", str(int(retry)) if float(retry).is_integer() else str(retry))])

    def snapshot(self) -> dict:
        with self._lock:
            return {"limit": self.limit, "retry_after": self.retry_after, "in_flight": self.in_flight,
                    "peak": self.peak, "rejected": self.rejected}

    def reset_counters(self) -> None:
        with self._lock:
            self.peak = self.in_flight
            self.rejected = 0


def gate_of(ctx: SandboxContext) -> ConcurrencyGate:
    return ctx.extensions.setdefault("concurrency", ConcurrencyGate())


def counts_against_gate(path: str) -> bool:
    """Graph requests count; the $batch envelope does not (its sub-requests do), nor identity or control calls."""
    return path.startswith("/v1.0/") and path.rstrip("/").lower() != "/v1.0/$batch"


def throttled_outcome(gate: ConcurrencyGate, request: Request) -> "Outcome":
    """What a request beyond the limit gets: 429 ApplicationThrottled with Retry-After, before any work."""
    from .dispatch import Dispatcher, Outcome
    response = Dispatcher._finish(request, gate.throttled().to_response(request))
    return Outcome(response, f"{request.method} (concurrency limit)", None, True)


def tenant_of(ctx: SandboxContext) -> TenantState:
    return ctx.extensions.setdefault("tenant", TenantState())


# --- generation ---------------------------------------------------------------------------------------------

CAMPAIGN_SENDER = "payroll@contoso-hr.example"
CAMPAIGN_SUBJECT = "Action required: confirm your salary details"


def generate(ctx: SandboxContext, size: int, seed: int = 7) -> dict:
    """Adds ``size`` users (and groups) to the store; returns counts."""
    store, tenant = ctx.store, tenant_of(ctx)
    rng = random.Random(seed)
    now = utc_now()
    created: list[Mailbox] = []
    with store.lock:
        start = len(store.mailboxes())
        for n in range(size):
            roll = n % 10
            kind = "no_mailbox" if roll == 9 else "shared" if roll == 8 else "user"
            number = start + n
            upn = f"{'shared' if kind == 'shared' else 'user'}{number:05d}@contoso.com"
            mailbox = store.add_mailbox(upn, f"{'Shared' if kind == 'shared' else 'User'} {number:05d}")
            mailbox.mail_enabled = kind != "no_mailbox"
            tenant.kinds[kind] = tenant.kinds.get(kind, 0) + 1
            created.append(mailbox)
            if mailbox.mail_enabled:
                _benign_mail(store, mailbox, rng, now)
        _groups(store, tenant, created)
    return {"added": len(created), "kinds": dict(tenant.kinds), "groups": sorted(tenant.groups)}


def _benign_mail(store: MailStore, mailbox: Mailbox, rng: random.Random, now: dt.datetime) -> None:
    inbox = store.folder(mailbox, "inbox")
    for k in range(2):
        add_message(store, mailbox, inbox, {
            "subject": f"Weekly update {rng.randrange(1000)}", "from": "news@fabrikam.example", "to": [mailbox.upn],
            "body": "<p>Nothing to see here.</p>", "receivedDateTime": now - dt.timedelta(hours=rng.randrange(1, 200)),
            "isRead": bool(k)})
    if rng.random() < 0.2:   # same sender, another mail: a sender-only search would find it, a Message-ID one must not
        add_message(store, mailbox, inbox, {"subject": "Payslip for last month", "from": CAMPAIGN_SENDER,
                                            "to": [mailbox.upn], "receivedDateTime": now - dt.timedelta(days=20)})
    if rng.random() < 0.2:   # same subject, another Message-ID
        add_message(store, mailbox, inbox, {"subject": CAMPAIGN_SUBJECT, "from": "hr@contoso.com",
                                            "to": [mailbox.upn], "receivedDateTime": now - dt.timedelta(days=30)})


def _groups(store: MailStore, tenant: TenantState, users: list[Mailbox]) -> None:
    """'All staff' holds two nested groups (each half of the users) plus the first user directly (counted once)."""
    if not users:
        return
    half = len(users) // 2
    first = Group(store.ids.guid(), "Staff A", [m.user_id for m in users[:half]])
    second = Group(store.ids.guid(), "Staff B", [m.user_id for m in users[half:]])
    everyone = Group(store.ids.guid(), "All staff", [users[0].user_id], [first.id, second.id])
    for group in (first, second, everyone):
        tenant.groups[group.id] = group


def transitive_members(tenant: TenantState, group_id: str) -> list[str]:
    seen_groups: set[str] = set()
    members: dict[str, None] = {}
    pending = [group_id]
    while pending:
        current = tenant.groups.get(pending.pop(0))
        if current is None or current.id in seen_groups:
            continue
        seen_groups.add(current.id)
        members.update(dict.fromkeys(current.members))
        pending.extend(current.groups)
    return list(members)


# --- campaign -----------------------------------------------------------------------------------------------

PLACEMENTS = ("inbox", "inbox_read", "subfolder", "junk", "deleted_items")


def plant_campaign(ctx: SandboxContext, share: float = 0.3, count: int | None = None, seed: int = 11,
                   internet_message_id: str = "<campaign-2024-0001@contoso-hr.example>",
                   subject: str = CAMPAIGN_SUBJECT, sender: str = CAMPAIGN_SENDER, purged: int = 0) -> dict:
    """One copy of the campaign in ``count`` (or ``share`` of the) mail-enabled generated mailboxes, spread over
    PLACEMENTS (unread and read in Inbox, Inbox/Projects, Junk Email, Deleted Items); ``purged`` more mailboxes got a
    copy the user already purged (not live: a search must not find it)."""
    store = ctx.store
    rng = random.Random(seed)
    received = utc_now() - dt.timedelta(hours=5)
    with store.lock:
        candidates = [m for m in store.mailboxes() if getattr(m, "mail_enabled", True)
                      and m.upn.startswith(("user", "shared"))]
        wanted = count if count is not None else int(len(candidates) * share)
        if wanted + purged > len(candidates):
            raise ValueError(f"only {len(candidates)} generated mailboxes have a mailbox")
        chosen = rng.sample(candidates, wanted + purged)
        planted = []
        for n, mailbox in enumerate(chosen):
            placement = PLACEMENTS[n % len(PLACEMENTS)]
            folder = store.folder(mailbox, "junkemail" if placement == "junk" else
                                  "deleteditems" if placement == "deleted_items" else "inbox")
            if placement == "subfolder":
                folder = next((f for f in store.children(mailbox, folder) if f.display_name == "Projects"), None) \
                    or store.create_folder(mailbox, folder, "Projects")
            message = add_message(store, mailbox, folder, {
                "subject": subject, "from": sender, "to": [mailbox.upn], "internetMessageId": internet_message_id,
                "body": "<p>Please <a href='https://contoso-hr.example/login'>confirm</a> today.</p>",
                "receivedDateTime": received, "isRead": placement == "inbox_read"})
            if n >= wanted:
                store.delete_message(mailbox, message)
                continue
            planted.append({"user": mailbox.upn, "user_id": mailbox.user_id, "immutableId": message.immutable_id,
                            "folder_id": folder.id, "folder": store.folder_path(mailbox, folder),
                            "placement": placement, "isRead": message.is_read})
    return {"internet_message_id": internet_message_id, "subject": subject, "sender": sender,
            "received": received.strftime("%Y-%m-%dT%H:%M:%SZ"), "planted": planted, "purged": purged}


def campaign_copies(ctx: SandboxContext, internet_message_id: str) -> list[dict]:
    """Every live copy of a Message-ID in the tenant, with its folder (for assertions)."""
    store = ctx.store
    with store.lock:
        out = []
        for mailbox in store.mailboxes():
            for folder in mailbox.folders.values():
                for message in folder.messages.values():
                    if message.internet_message_id == internet_message_id:
                        out.append({"user": mailbox.upn, "immutableId": message.immutable_id, "folder_id": folder.id,
                                    "folder": store.folder_path(mailbox, folder), "isRead": message.is_read})
        return out


def message_count(ctx: SandboxContext) -> int:
    with ctx.store.lock:
        return sum(len(f.messages) for m in ctx.store.mailboxes() for f in m.folders.values())


# --- routes -------------------------------------------------------------------------------------------------

def register(router: Router, ctx: SandboxContext) -> None:
    def members(request: Request) -> Response:
        from .graph_mail import paged  # graph_mail imports nothing from here
        tenant = tenant_of(ctx)
        if request.params["group"] not in tenant.groups:
            raise GraphError(404, "Request_ResourceNotFound",
                             f"Resource '{request.params['group']}' does not exist or one of its queried reference-"
                             "property objects are not present.")
        with ctx.store.lock:
            users = [user_json(ctx.store.user(uid)) for uid in transitive_members(tenant, request.params["group"])]
        return paged(ctx, request, users, lambda u: u, f"{ctx.base_url}/v1.0/$metadata#users",
                     parse_prefer(request.headers), default_size=100)

    def permanent_delete(request: Request) -> Response:
        with ctx.store.lock:
            mailbox = mail_enabled(ctx.store.user(request.params["user"]))
            message = ctx.store.message(mailbox, request.params["message"])
            ctx.store.delete_message(mailbox, message)
        return Response.empty()

    router.add("GET", GROUP_MEMBERS, members)
    for base in ("/v1.0/users/{user}/messages", "/v1.0/users/{user}/mailFolders/{folder}/messages"):
        router.add("POST", f"{base}/{{message}}/permanentDelete", permanent_delete)


def mail_enabled(mailbox: Mailbox) -> Mailbox:
    """The mailbox, or the error Exchange Online gives for a user without one."""
    if not getattr(mailbox, "mail_enabled", True):
        raise NO_MAILBOX
    return mailbox


def drop_generated(ctx: SandboxContext) -> None:
    ctx.extensions.pop("tenant", None)

