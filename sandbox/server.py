"""HTTPS transport: a threaded stdlib HTTP/1.1 server with per-connection TLS.

* The TLS handshake runs in the connection's worker thread (``finish_request``),
  never in the accept loop, so a stalled or non-TLS client cannot block others;
  handshake failures are dropped silently.
* HTTP/1.1 keep-alive with ``Content-Length`` on every response and
  ``TCP_NODELAY`` (without it, Nagle + delayed ACK add ~40 ms per response).
* Latency is added and statistics recorded here, for non-control routes only.
"""
from __future__ import annotations

import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from .context import SandboxContext
from .core import Headers, Request
from .dispatch import Dispatcher
from .routing import Kind
from .tenant import counts_against_gate, gate_of, throttled_outcome

HANDSHAKE_TIMEOUT = 10.0  # seconds a client may take to complete the TLS handshake
IDLE_TIMEOUT = 120.0  # seconds an idle keep-alive connection is kept open
MAX_BODY = 512 * 1024 * 1024


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], ssl_context: ssl.SSLContext, verbose: bool = False) -> None:
        self.ssl_context = ssl_context
        self.verbose = verbose
        self.dispatcher: Dispatcher | None = None
        self.ctx: SandboxContext | None = None
        self._connections: set[ssl.SSLSocket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)  # binds, so the port is known before attach()

    def attach(self, dispatcher: Dispatcher, ctx: SandboxContext) -> None:
        """Connect the request pipeline; must happen before serve_forever()."""
        self.dispatcher = dispatcher
        self.ctx = ctx

    def finish_request(self, request: socket.socket, client_address) -> None:  # type: ignore[override]
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            connection = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # bad or aborted handshake: drop quietly
        with self._connections_lock:
            self._connections.add(connection)
        try:
            self.RequestHandlerClass(connection, client_address, self)
        except (OSError, ssl.SSLError):
            pass  # client went away mid-response
        finally:
            with self._connections_lock:
                self._connections.discard(connection)
            try:
                connection.close()
            except OSError:
                pass

    def handle_error(self, request, client_address) -> None:
        if self.verbose:
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Unblock worker threads waiting on idle keep-alive connections."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "GraphMailSandbox/1.0"
    sys_version = ""
    timeout = IDLE_TIMEOUT
    server: SandboxServer

    def _handle(self) -> None:
        started = time.perf_counter()
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self.send_error(400, "Malformed request body")
            return
        target = urlsplit(self.path) if self.path.startswith(("http://", "https://")) else None
        path, _, query = (f"{target.path}?{target.query}" if target else self.path).partition("?")
        request = Request(self.command, path or "/", query, Headers(self.headers.items()), body)
        dispatcher, ctx = self.server.dispatcher, self.server.ctx
        assert dispatcher is not None and ctx is not None, "server not attached"
        gate = gate_of(ctx) if counts_against_gate(path) else None
        admitted = gate.acquire() if gate else False
        try:
            outcome = dispatcher.dispatch(request) if admitted or gate is None else throttled_outcome(gate, request)
            response = outcome.response
            if outcome.kind is not Kind.CONTROL and ctx.settings.latency_ms > 0:
                time.sleep(ctx.settings.latency_ms / 1000)
        finally:
            if admitted:
                gate.release()
        if outcome.kind is not Kind.CONTROL:
            # recorded before sending so a client that reads stats right after a response sees it
            ctx.stats.record(outcome.key, request, response.status, len(body), response.content_length,
                             (time.perf_counter() - started) * 1000, outcome.faulted)
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(response.content_length))
        self.end_headers()
        for chunk in response.iter_body():
            self.wfile.write(chunk)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _handle

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY:
            raise ValueError("bad Content-Length")
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return b"".join(parts)
            total += size
            if total > MAX_BODY:
                raise ValueError("body too large")
            parts.append(self.rfile.read(size))
            self.rfile.readline(8)  # CRLF after each chunk

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        if self.server.verbose:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")
