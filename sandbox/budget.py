"""Graph's per-mailbox request budget: at most N requests per window for each app and mailbox.

Graph throttles Outlook requests per app and mailbox (10,000 per 10 minutes), counting every request inside
a ``$batch`` on its own; the ``$batch`` envelope itself is not a mailbox request. Off until configured
(control endpoint ``POST /_sandbox/mailbox-budget``). A request over the budget gets 429
``ApplicationThrottled`` with ``Retry-After`` = the seconds left in the window, and is not counted.
"""
from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass

from .core import GraphError, Request

_MAILBOX_PATH = re.compile(r"^/v1\.0/users/([^/]+)(?:/|$)", re.I)


@dataclass
class _Window:
    started: float
    used: int = 0


class MailboxBudget:
    def __init__(self, clock=time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.requests: int | None = None  # None = no budget
        self.window_seconds = 600.0
        self._windows: dict[tuple[str, str], _Window] = {}
        self.refused = 0

    def configure(self, requests: int | None, window_seconds: float = 600.0) -> None:
        if requests is not None and (int(requests) < 1 or float(window_seconds) <= 0):
            raise ValueError("requests must be >= 1 and window_seconds > 0 (requests null turns the budget off)")
        with self._lock:
            self.requests = None if requests is None else int(requests)
            self.window_seconds = float(window_seconds)
            self._windows.clear()
            self.refused = 0

    def describe(self) -> dict:
        with self._lock:
            return {"requests": self.requests, "window_seconds": self.window_seconds, "refused": self.refused,
                    "used": {f"{app} {mailbox}": w.used for (app, mailbox), w in self._windows.items()}}

    def check(self, request: Request) -> GraphError | None:
        """Counts the request against its app and mailbox; the 429 to answer when the budget is spent."""
        match = _MAILBOX_PATH.match(request.path)
        if self.requests is None or match is None:
            return None
        key = (str(request.principal or ""), match.group(1).lower())
        now = self._clock()
        with self._lock:
            window = self._windows.get(key)
            if window is None or now - window.started >= self.window_seconds:
                window = self._windows[key] = _Window(now)
            if window.used < self.requests:
                window.used += 1
                return None
            self.refused += 1
            retry_after = max(1, math.ceil(self.window_seconds - (now - window.started)))
        return GraphError(429, "ApplicationThrottled", "Application is over its request limit for this mailbox.",
                          [("Retry-After", str(retry_after))])
