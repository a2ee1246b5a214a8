"""Control API: ``/_sandbox/*`` over HTTP and the same operations as Python methods.

Control endpoints need no token and are never delayed, faulted or counted.
Errors come back as ``{"error": "...", "error_description": "..."}``.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Callable

from . import seed, tenant
from .clouds import cloud_profile
from .context import SandboxContext
from .core import GraphError, JsonError, PLAIN_JSON, Request, Response, parse_iso
from .factory import add_bulk, add_message
from .routing import Kind, Router
from .store import Mailbox
from .views import View, message_json


class Controller:
    """Operations used by tests, benchmarks and demos to steer the sandbox."""

    def __init__(self, ctx: SandboxContext, info: Callable[[], dict]) -> None:
        self.ctx = ctx
        self._info = info

    # --- observation -----------------------------------------------------------------
    def info(self) -> dict:
        return self._info()

    def stats(self) -> dict:
        return self.ctx.stats.snapshot()

    def reset_stats(self) -> None:
        self.ctx.stats.reset()

    def log(self) -> list[dict]:
        return self.ctx.stats.log()

    # --- trouble -------------------------------------------------------------------------
    def set_latency(self, ms: int) -> None:
        self.ctx.settings.latency_ms = max(0, int(ms))

    def add_fault(self, **rule: Any) -> int:
        allowed = {"path_regex", "methods", "status", "retry_after", "every_nth", "count", "delay_ms",
                   "in_batch", "body", "location", "echo_authorization"}
        unknown = set(rule) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        return self.ctx.faults.add(**rule)

    def faults(self) -> list[dict]:
        return self.ctx.faults.list()

    def remove_fault(self, rule_id: int) -> bool:
        return self.ctx.faults.remove(rule_id)

    def clear_faults(self) -> None:
        self.ctx.faults.clear()

    # --- identity --------------------------------------------------------------------------
    def set_token_lifetime(self, seconds: int) -> None:
        self.ctx.tokens.lifetime = max(1, int(seconds))

    def expire_tokens(self) -> None:
        """Make every access token issued so far invalid (the next Graph call gets 401)."""
        self.ctx.tokens.expire_all()

    def issue_token(self) -> dict:
        """A valid Graph access token without going through OAuth (handy in tests)."""
        token, lifetime = self.ctx.tokens.issue("control")
        return {"access_token": token, "token_type": "Bearer", "expires_in": lifetime}

    # --- delta ------------------------------------------------------------------------------
    def expire_delta_tokens(self) -> None:
        self.ctx.extensions["delta"].expire_all()

    def set_delta_supported(self, enabled: bool) -> None:
        self.ctx.settings.delta_supported = bool(enabled)

    # --- cloud profile ----------------------------------------------------------------------
    def set_cloud(self, cloud: str) -> None:
        """Emulate a national cloud (worldwide, usgov, china): see clouds.py."""
        self.ctx.settings.cloud = cloud_profile(cloud).name

    def set_single_attachment_select(self, honoured: bool) -> None:
        self.ctx.settings.single_attachment_select_ignored = not bool(honoured)

    def set_mailbox_budget(self, requests: int | None, window_seconds: float = 600.0) -> dict:
        self.ctx.budget.configure(requests, window_seconds)
        return self.ctx.budget.describe()

    def mailbox_budget(self) -> dict:
        return self.ctx.budget.describe()

    # --- mailbox content ---------------------------------------------------------------------
    def _mailbox(self, user: str) -> Mailbox:
        return self.ctx.store.user(user)

    @staticmethod
    def _describe(message) -> dict:
        rendered = message_json(message, View())
        rendered["immutableId"] = message.immutable_id
        return rendered

    def add_message(self, user: str, folder: str = "Inbox", **spec: Any) -> dict:
        """Add one message (see factory.py for the spec); returns its JSON plus ``immutableId``."""
        store = self.ctx.store
        with store.lock:
            mailbox = self._mailbox(user)
            message = add_message(store, mailbox, store.folder_by_path(mailbox, folder), spec)
            return self._describe(message)

    def add_messages_bulk(self, user: str, folder: str = "Inbox", count: int = 100,
                          attachment_ratio: float = 0.0, attachment_size: int = 2048, same_second: int = 1,
                          start: str | dt.datetime | None = None, step_seconds: float = 60.0,
                          subject_prefix: str = "Bulk message") -> dict:
        store = self.ctx.store
        if isinstance(start, str):
            start = parse_iso(start)
        with store.lock:
            mailbox = self._mailbox(user)
            target = store.folder_by_path(mailbox, folder)
            messages = add_bulk(store, mailbox, target, count=int(count), attachment_ratio=float(attachment_ratio),
                                attachment_size=int(attachment_size), same_second=int(same_second), start=start,
                                step_seconds=float(step_seconds), subject_prefix=subject_prefix)
            return {"folder_id": target.id, "ids": [m.rest_id for m in messages],
                    "immutable_ids": [m.immutable_id for m in messages]}

    def move_message(self, user: str, message_id: str, destination: str) -> dict:
        """Server-side move (receivedDateTime unchanged): simulates a late arrival in ``destination``."""
        store = self.ctx.store
        with store.lock:
            mailbox = self._mailbox(user)
            message = store.message(mailbox, message_id)
            moved = store.move_message(mailbox, message, store.folder_by_path(mailbox, destination))
            return self._describe(moved)

    def mailbox(self, user: str, folder: str | None = None) -> dict:
        """Ids and subjects per folder, newest first, for assertions."""
        store = self.ctx.store
        with store.lock:
            mailbox = self._mailbox(user)
            folders = [store.folder_by_path(mailbox, folder)] if folder else \
                [f for f in mailbox.folders.values() if f.id != mailbox.root_id]
            out = []
            for item in folders:
                messages = sorted(item.messages.values(), key=lambda m: (m.received, m.seq), reverse=True)
                out.append({"id": item.id, "path": store.folder_path(mailbox, item), "messages": [
                    {"id": m.rest_id, "immutableId": m.immutable_id, "subject": m.subject,
                     "receivedDateTime": m.received.strftime("%Y-%m-%dT%H:%M:%SZ"), "isRead": m.is_read,
                     "hasAttachments": m.has_attachments, "internetMessageId": m.internet_message_id}
                    for m in messages]})
            return {"user": mailbox.upn, "user_id": mailbox.user_id, "folders": out}

    def reset(self) -> None:
        """Re-create the seed data (and the generated tenant, if the sandbox was started with one); outstanding
        delta tokens become invalid."""
        store = self.ctx.store
        with store.lock:
            store.clear()
            seed.populate(store)
            tenant.drop_generated(self.ctx)
            if self.ctx.extensions.get("tenant_size"):
                tenant.generate(self.ctx, int(self.ctx.extensions["tenant_size"]))
            self.expire_delta_tokens()

    # --- tenant and campaign (tenant.py) ----------------------------------------------------------
    def generate_tenant(self, size: int, seed: int = 7) -> dict:
        return tenant.generate(self.ctx, int(size), int(seed))

    def plant_campaign(self, **options: Any) -> dict:
        allowed = {"share", "count", "seed", "internet_message_id", "subject", "sender", "purged"}
        unknown = set(options) - allowed
        if unknown:
            raise ValueError(f"unknown campaign fields: {sorted(unknown)}")
        return tenant.plant_campaign(self.ctx, **options)

    def campaign_copies(self, internet_message_id: str) -> list[dict]:
        return tenant.campaign_copies(self.ctx, internet_message_id)

    def concurrency(self) -> dict:
        return tenant.gate_of(self.ctx).snapshot()

    def set_concurrency(self, limit: int | None = None, retry_after: float | None = None,
                        batch_item_latency_ms: int | None = None, reset_counters: bool = False) -> dict:
        gate = tenant.gate_of(self.ctx)
        if limit is not None:
            gate.limit = max(0, int(limit))
        if retry_after is not None:
            gate.retry_after = max(0.0, float(retry_after))
        if batch_item_latency_ms is not None:
            self.ctx.settings.batch_item_latency_ms = max(0, int(batch_item_latency_ms))
        if reset_counters:
            gate.reset_counters()
        return gate.snapshot()


def register(router: Router, controller: Controller) -> None:
    """Expose ``controller`` under /_sandbox (JSON in, JSON out)."""

    def add(method: str, name: str, action: Callable[[Request], Any]) -> None:
        def handler(request: Request) -> Response:
            try:
                result = action(request)
            except GraphError as error:
                raise JsonError(error.status, {"error": error.code, "error_description": error.message})
            except KeyError as error:
                raise JsonError(400, {"error": "invalid_request", "error_description": f"missing field {error}"})
            except (ValueError, TypeError) as error:
                raise JsonError(400, {"error": "invalid_request", "error_description": str(error)})
            return Response.json({"ok": True} if result is None else result, content_type=PLAIN_JSON)
        router.add(method, f"/_sandbox/{name}", handler, kind=Kind.CONTROL)

    def body(request: Request) -> dict:
        payload = request.json()
        if not isinstance(payload, dict):
            raise ValueError("expected a JSON object")
        return payload

    c = controller
    add("GET", "info", lambda r: c.info())
    add("GET", "stats", lambda r: c.stats())
    add("POST", "reset-stats", lambda r: c.reset_stats())
    add("GET", "log", lambda r: c.log())
    add("POST", "latency", lambda r: c.set_latency(body(r)["ms"]))
    add("GET", "faults", lambda r: c.faults())
    add("POST", "faults", lambda r: {"id": c.add_fault(**body(r))})
    add("DELETE", "faults", lambda r: c.clear_faults())
    add("DELETE", "faults/{fault}", lambda r: {"removed": c.remove_fault(int(r.params["fault"]))})
    add("POST", "token-lifetime", lambda r: c.set_token_lifetime(body(r)["seconds"]))
    add("POST", "expire-tokens", lambda r: c.expire_tokens())
    add("POST", "issue-token", lambda r: c.issue_token())
    add("POST", "expire-delta-tokens", lambda r: c.expire_delta_tokens())
    add("POST", "delta-supported", lambda r: c.set_delta_supported(body(r)["enabled"]))
    add("POST", "cloud", lambda r: c.set_cloud(body(r)["cloud"]))
    add("POST", "single-attachment-select", lambda r: c.set_single_attachment_select(body(r)["honoured"]))
    add("POST", "mailbox-budget", lambda r: c.set_mailbox_budget(**body(r)))
    add("GET", "mailbox-budget", lambda r: c.mailbox_budget())
    add("POST", "messages", lambda r: c.add_message(**body(r)))
    add("POST", "messages/bulk", lambda r: c.add_messages_bulk(**body(r)))
    add("POST", "move", lambda r: c.move_message(**body(r)))
    add("GET", "mailbox", lambda r: c.mailbox(r.query["user"], r.query.get("folder")))
    add("POST", "reset", lambda r: c.reset())
    add("POST", "tenant", lambda r: c.generate_tenant(**body(r)))
    add("POST", "campaign", lambda r: c.plant_campaign(**body(r)))
    add("GET", "campaign", lambda r: c.campaign_copies(r.query["internet_message_id"]))
    add("GET", "concurrency", lambda r: c.concurrency())
    add("POST", "concurrency", lambda r: c.set_concurrency(**body(r)))
