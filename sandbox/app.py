"""The :class:`Sandbox` facade: wires TLS, identity, mail store, routes and control API together."""
from __future__ import annotations

import base64
import importlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Sequence

from . import control, seed, tenant
from .clouds import cloud_profile
from .context import SandboxContext, Settings
from .dispatch import Dispatcher
from .identity import IdentityConfig, TokenService
from .routing import Router
from .server import SandboxServer
from .store import MailStore
from .tls import generate_client_certificate, generate_server_tls
from .trouble import FaultInjector, Stats

# Route modules: each exposes register(router, ctx).  Add new modules here
# (or pass extra_route_modules=... to Sandbox) - see README.md.
ROUTE_MODULES: tuple[str, ...] = (
    "sandbox.identity",
    "sandbox.graph_mail",
    "sandbox.graph_delta",
    "sandbox.graph_batch",
    "sandbox.graph_send",
    "sandbox.graph_ids",
    "sandbox.tenant",
    "sandbox.graph_rules",
)

# Fixed, obviously fake credentials (key material is generated per start).
TENANT_ID = "7a3c1e5b-2f4d-4b8a-9e6c-1d2f3a4b5c6d"
TENANT_DOMAINS = ("contoso.onmicrosoft.com", "contoso.com")
CLIENT_ID = "5e8b2c41-7d3a-4f6e-a1b9-c2d3e4f5a6b7"
CLIENT_SECRET = "sbx~Q8r.Fake-Secret_For-Local~Sandbox.0nly"
OPROXY_REGISTRATION_ID = "3f9d2b7e-6c1a-4e58-b0d4-8a7c6e5f4d3b"
OPROXY_TOKEN = "sbx-oproxy-tenant-token-7c1f3e9a"
MANAGED_IDENTITY_CLIENT_ID = "9b4e6d2a-8c3f-4a1e-b7d5-0f1e2d3c4b5a"
OPROXY_APP_NAME = "ms-graph-mail"


class Sandbox:
    """A local Microsoft identity platform + Graph mail emulator over HTTPS.

    ``Sandbox(state_dir=..., latency_ms=0).start()`` binds 127.0.0.1 (port 0 =
    ephemeral), writes ``ca.pem``, key material and ``sandbox.json`` into
    ``state_dir`` and serves until :meth:`stop`.  Usable as a context manager.
    The control methods below mirror the ``/_sandbox/*`` endpoints.
    """

    def __init__(self, state_dir: str | os.PathLike | None = None, *, port: int = 0,
                 host: str = "127.0.0.1", latency_ms: int = 0, token_lifetime: int = 3599,
                 delta_supported: bool = True, cloud: str = "worldwide", verbose: bool = False,
                 extra_route_modules: Sequence[str] = (), tenant_size: int = 0) -> None:
        self._tenant_size = tenant_size
        self._state_dir_arg = state_dir
        self._requested_port = port
        self._host = host
        self._settings = Settings(latency_ms=latency_ms, delta_supported=delta_supported,
                                  cloud=cloud_profile(cloud).name)
        self._token_lifetime = token_lifetime
        self._verbose = verbose
        self._route_modules = (*ROUTE_MODULES, *extra_route_modules)
        self._server: SandboxServer | None = None
        self._thread: threading.Thread | None = None
        self._controller: control.Controller | None = None
        self._info: dict = {}
        self.state_dir: Path | None = None
        self.ctx: SandboxContext | None = None

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> "Sandbox":
        if self._server is not None:
            raise RuntimeError("sandbox already started")
        self.state_dir = Path(self._state_dir_arg or tempfile.mkdtemp(prefix="graph-sandbox-"))
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tls = generate_server_tls(self.state_dir)
        server = SandboxServer((self._host, self._requested_port), tls.context(), verbose=self._verbose)
        base_url = f"https://{self._host}:{server.server_address[1]}"
        self.ctx = self._build_context(base_url)
        router = Router()
        for module_name in self._route_modules:
            importlib.import_module(module_name).register(router, self.ctx)
        self._controller = control.Controller(self.ctx, lambda: dict(self._info))
        control.register(router, self._controller)
        self.ctx.dispatcher = Dispatcher(router, self.ctx)
        server.attach(self.ctx.dispatcher, self.ctx)
        self._info = self._describe(tls.ca_path)
        _write_json(self.state_dir / "sandbox.json", self._info)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="graph-sandbox", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "Sandbox":
        return self.start() if self._server is None else self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def _build_context(self, base_url: str) -> SandboxContext:
        assert self.state_dir is not None
        certificate = generate_client_certificate(self.state_dir, "graph-mail-sandbox-app")
        identity_config = IdentityConfig(
            base_url=base_url, tenant_id=TENANT_ID, tenant_domains=TENANT_DOMAINS, client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET, certificate=certificate,
            oproxy_registration_id=OPROXY_REGISTRATION_ID, oproxy_token=OPROXY_TOKEN,
            oproxy_key=os.urandom(32), managed_identity_client_id=MANAGED_IDENTITY_CLIENT_ID)
        store = MailStore()
        seed.populate(store)
        ctx = SandboxContext(base_url=base_url, store=store, tokens=TokenService(self._token_lifetime),
                             identity=identity_config, settings=self._settings, faults=FaultInjector(),
                             stats=Stats())
        if self._tenant_size:
            ctx.extensions["tenant_size"] = self._tenant_size
            tenant.generate(ctx, self._tenant_size)
        return ctx

    def _describe(self, ca_path: Path) -> dict:
        ctx = self._require_ctx()
        ident = ctx.identity
        return {
            "base_url": ctx.base_url,
            "graph_url": f"{ctx.base_url}/v1.0",
            "ca_path": str(ca_path),
            "tenant_id": ident.tenant_id,
            "tenant_domain": ident.tenant_domains[0],
            "authority": f"{ctx.base_url}/{ident.tenant_id}",
            "scope": ident.scope,
            "client_id": ident.client_id,
            "client_secret": ident.client_secret,
            "certificate": {
                "thumbprint": ident.certificate.thumbprint,
                "private_key_path": str(ident.certificate.private_key_path),
                "certificate_path": str(ident.certificate.certificate_path),
            },
            "oproxy": {
                "app_name": OPROXY_APP_NAME,
                "registration_id": ident.oproxy_registration_id,
                "token": ident.oproxy_token,
                "key": base64.b64encode(ident.oproxy_key).decode("ascii"),
                "token_url": f"{ctx.base_url}/oproxy/obtain-token",
            },
            "managed_identity": {
                "user_assigned_client_id": ident.managed_identity_client_id,
                "endpoint": f"{ctx.base_url}/metadata/identity/oauth2/token",
                "resource": f"{ctx.base_url}/",
            },
            "mailboxes": [m.upn for m in ctx.store.mailboxes()][:100],
            "cloud": ctx.settings.cloud,
            "control_url": f"{ctx.base_url}/_sandbox",
            "pid": os.getpid(),
        }

    def _require_ctx(self) -> SandboxContext:
        if self.ctx is None:
            raise RuntimeError("sandbox not started")
        return self.ctx

    @property
    def _control(self) -> control.Controller:
        if self._controller is None:
            raise RuntimeError("sandbox not started")
        return self._controller

    # --- connection facts -----------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return self._require_ctx().base_url

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    @property
    def ca_path(self) -> str:
        return self._info["ca_path"]

    @property
    def info(self) -> dict:
        """Everything a client needs (the content of sandbox.json)."""
        return dict(self._info)

    # --- control API (same operations as /_sandbox/*) ---------------------------------------
    def stats(self) -> dict:
        return self._control.stats()

    def reset_stats(self) -> None:
        self._control.reset_stats()

    def log(self) -> list[dict]:
        return self._control.log()

    def set_latency(self, ms: int) -> None:
        self._control.set_latency(ms)

    def add_fault(self, path_regex: str = ".*", **rule: Any) -> int:
        return self._control.add_fault(path_regex=path_regex, **rule)

    def faults(self) -> list[dict]:
        return self._control.faults()

    def remove_fault(self, rule_id: int) -> bool:
        return self._control.remove_fault(rule_id)

    def clear_faults(self) -> None:
        self._control.clear_faults()

    def set_token_lifetime(self, seconds: int) -> None:
        self._control.set_token_lifetime(seconds)

    def expire_tokens(self) -> None:
        self._control.expire_tokens()

    def issue_token(self) -> str:
        return self._control.issue_token()["access_token"]

    def expire_delta_tokens(self) -> None:
        self._control.expire_delta_tokens()

    def set_delta_supported(self, enabled: bool) -> None:
        self._control.set_delta_supported(enabled)

    def set_cloud(self, cloud: str) -> None:
        """Emulate a national cloud's Graph: 'worldwide', 'usgov' or 'china' (see clouds.py)."""
        self._control.set_cloud(cloud)

    @property
    def cloud(self) -> str:
        return self._require_ctx().settings.cloud

    def set_single_attachment_select(self, honoured: bool) -> None:
        self._control.set_single_attachment_select(honoured)

    def set_mailbox_budget(self, requests: int | None, window_seconds: float = 600.0) -> dict:
        return self._control.set_mailbox_budget(requests, window_seconds)

    def mailbox_budget(self) -> dict:
        return self._control.mailbox_budget()

    def add_message(self, user: str, folder: str = "Inbox", **spec: Any) -> dict:
        return self._control.add_message(user, folder, **spec)

    def add_messages_bulk(self, user: str, folder: str = "Inbox", count: int = 100, **options: Any) -> dict:
        return self._control.add_messages_bulk(user, folder, count, **options)

    def move_message(self, user: str, message_id: str, destination: str) -> dict:
        return self._control.move_message(user, message_id, destination)

    def mailbox(self, user: str, folder: str | None = None) -> dict:
        return self._control.mailbox(user, folder)

    def reset(self) -> None:
        self._control.reset()

    def generate_tenant(self, size: int, seed: int = 7) -> dict:
        return self._control.generate_tenant(size, seed)

    def plant_campaign(self, **options: Any) -> dict:
        return self._control.plant_campaign(**options)

    def campaign_copies(self, internet_message_id: str) -> list[dict]:
        return self._control.campaign_copies(internet_message_id)

    def concurrency(self) -> dict:
        return self._control.concurrency()

    def set_concurrency(self, **options: Any) -> dict:
        return self._control.set_concurrency(**options)


def _write_json(path: Path, payload: dict) -> None:
    """Write atomically so a reader polling for the file never sees half of it."""
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)
