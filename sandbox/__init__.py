"""Local emulator of the Microsoft identity platform and the Microsoft Graph mail API.

>>> from sandbox import Sandbox
>>> with Sandbox(latency_ms=0) as sb:          # doctest: +SKIP
...     sb.base_url, sb.ca_path, sb.info["client_id"]
"""
from typing import Any

__all__ = ["Sandbox"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so `python -m sandbox` can switch to the project venv before `cryptography` and
    # `jwt` are imported (see __main__.py).
    if name == "Sandbox":
        from .app import Sandbox
        return Sandbox
    raise AttributeError(f"module 'sandbox' has no attribute {name!r}")
