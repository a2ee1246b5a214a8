"""The services route modules share (handed to every ``register(router, ctx)``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .core import Request
from .identity import IdentityConfig, TokenService
from .store import MailStore
from .budget import MailboxBudget
from .trouble import FaultInjector, Stats

if TYPE_CHECKING:
    from .dispatch import Dispatcher


@dataclass
class Settings:
    """Switches that control endpoints flip at run time."""

    latency_ms: int = 0
    delta_supported: bool = True
    cloud: str = "worldwide"  # a profile of sandbox/clouds.py: what that cloud's Graph lacks is refused
    batch_item_latency_ms: int = 0  # time each $batch sub-request takes (Outlook runs 4 of a batch at once)
    # True: GET of a single attachment returns every property (contentBytes too) whatever its $select, as
    # Graph may; collection $select (the attachment list, $expand) is always honoured.
    single_attachment_select_ignored: bool = False


@dataclass
class SandboxContext:
    base_url: str
    store: MailStore
    tokens: TokenService
    identity: IdentityConfig
    settings: Settings
    faults: FaultInjector
    stats: Stats
    dispatcher: "Dispatcher | None" = None
    budget: MailboxBudget = field(default_factory=MailboxBudget)
    # Free-form slot for route modules that need shared state of their own
    # (e.g. upload sessions); key by module name.
    extensions: dict[str, Any] = field(default_factory=dict)

    def absolute(self, request: Request, query: str = "") -> str:
        """Absolute URL of ``request``'s path (as sent) with a new query string."""
        return f"{self.base_url}{request.path}" + (f"?{query}" if query else "")

    def odata_context(self, user: str, fragment: str) -> str:
        return f"{self.base_url}/v1.0/$metadata#users('{quote(user, safe='@.')}')/{fragment}"
