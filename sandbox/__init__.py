"""Local emulator of the Microsoft identity platform and the Microsoft Graph mail API.

>>> from sandbox import Sandbox
>>> with Sandbox(latency_ms=0) as sb:          # doctest: +SKIP
...     sb.base_url, sb.ca_path, sb.info["client_id"]
"""
from .app import Sandbox

__all__ = ["Sandbox"]
