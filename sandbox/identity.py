"""Identity endpoints: OIDC discovery, client-credentials token, XSOAR oproxy, managed identity (IMDS).

Access tokens are opaque random strings remembered with their expiry; Graph
routes accept a token until it expires.  Errors mimic Microsoft Entra ID
(``AADSTSnnnn`` codes in ``error_description`` plus ``error_codes``) and never
echo a submitted secret.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import jwt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .core import GraphError, JsonError, PLAIN_JSON, Request, Response
from .routing import Kind, Router
from .tls import ClientCertificate

if TYPE_CHECKING:
    from .context import SandboxContext

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
OPROXY_CLOCK_SKEW = 300  # seconds either way
OPROXY_EXPIRES_IN = 3595


@dataclass
class IdentityConfig:
    """The tenant, app registration and other principals the sandbox accepts."""

    base_url: str
    tenant_id: str
    tenant_domains: tuple[str, ...]
    client_id: str
    client_secret: str
    certificate: ClientCertificate
    oproxy_registration_id: str
    oproxy_token: str
    oproxy_key: bytes
    managed_identity_client_id: str

    @property
    def scope(self) -> str:
        return f"{self.base_url}/.default"

    def knows_tenant(self, tenant: str) -> bool:
        return tenant.lower() in (self.tenant_id.lower(), *(d.lower() for d in self.tenant_domains))


@dataclass
class _Token:
    expires_at: float
    principal: str


class TokenService:
    """Issues and validates opaque bearer tokens; ``lifetime`` applies to tokens issued afterwards."""

    def __init__(self, lifetime: int = 3599) -> None:
        self.lifetime = lifetime
        self._tokens: dict[str, _Token] = {}
        self._lock = threading.Lock()

    def issue(self, principal: str) -> tuple[str, int]:
        token = "sbx." + secrets.token_urlsafe(48)
        lifetime = self.lifetime
        with self._lock:
            now = time.time()
            # forget long-expired tokens so the table stays small
            for stale in [t for t, v in self._tokens.items() if v.expires_at < now - 3600]:
                del self._tokens[stale]
            self._tokens[token] = _Token(now + lifetime, principal)
        return token, lifetime

    def expire_all(self) -> None:
        with self._lock:
            now = time.time()
            for token in self._tokens.values():
                token.expires_at = min(token.expires_at, now)

    def authenticate(self, request: Request, base_url: str) -> str:
        """The principal behind the request's bearer token; Graph-style 401 otherwise."""
        challenge = [("WWW-Authenticate",
                      f'Bearer realm="", authorization_uri="{base_url}/common/oauth2/authorize", '
                      'client_id="00000003-0000-0000-c000-000000000000"')]
        header = request.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.", challenge)
        with self._lock:
            entry = self._tokens.get(token)
        if entry is None:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.",
                             challenge)
        if entry.expires_at <= time.time():
            raise GraphError(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.",
                             challenge)
        return entry.principal


def register(router: Router, ctx: "SandboxContext") -> None:
    IdentityProvider(ctx.identity, ctx.tokens).add_routes(router)


class IdentityProvider:
    def __init__(self, config: IdentityConfig, tokens: TokenService) -> None:
        self.config = config
        self.tokens = tokens
        self._refresh_tokens: set[str] = set()
        self._lock = threading.Lock()

    def add_routes(self, router: Router) -> None:
        add = router.add
        add("GET", "/{tenant}/v2.0/.well-known/openid-configuration", self.openid_configuration, kind=Kind.PUBLIC)
        add("GET", "/{tenant}/.well-known/openid-configuration", self.openid_configuration, kind=Kind.PUBLIC)
        add("POST", "/{tenant}/oauth2/v2.0/token", self.token, kind=Kind.PUBLIC)
        add("POST", "/oproxy/obtain-token", self.oproxy_token, kind=Kind.PUBLIC)
        add("GET", "/metadata/identity/oauth2/token", self.managed_identity_token, kind=Kind.PUBLIC)

    # --- Entra ID error shape -----------------------------------------------------
    @staticmethod
    def _aad_error(status: int, error: str, code: int, description: str) -> JsonError:
        trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
        timestamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
        return JsonError(status, {
            "error": error,
            "error_description": f"AADSTS{code}: {description} Trace ID: {trace_id} "
                                 f"Correlation ID: {correlation_id} Timestamp: {timestamp}",
            "error_codes": [code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"https://login.microsoftonline.com/error?code={code}",
        })

    def _require_tenant(self, tenant: str) -> None:
        if not self.config.knows_tenant(tenant):
            raise self._aad_error(400, "invalid_tenant", 90002,
                                  f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID "
                                  "and are signing into the correct cloud.")

    # --- OIDC discovery -----------------------------------------------------------
    def openid_configuration(self, request: Request) -> Response:
        tenant = request.params["tenant"]
        self._require_tenant(tenant)
        base = self.config.base_url
        tid = self.config.tenant_id
        doc = {
            "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/{tid}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{base}/oidc/userinfo",
            "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/{tenant}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "ver", "oid"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "sandbox.local",
            "cloud_graph_host_name": base.split("://", 1)[-1],
            "msgraph_host": base.split("://", 1)[-1],
            "rbac_url": base,
        }
        return Response.json(doc, content_type=PLAIN_JSON)

    # --- client credentials ---------------------------------------------------------
    def token(self, request: Request) -> Response:
        tenant = request.params["tenant"]
        self._require_tenant(tenant)
        form = request.form()
        grant_type = form.get("grant_type", "")
        if grant_type != "client_credentials":
            raise self._aad_error(400, "unsupported_grant_type", 70003,
                                  f"The app requested an unsupported grant type '{grant_type}'.")
        client_id = form.get("client_id", "")
        if client_id.lower() != self.config.client_id.lower():
            raise self._aad_error(400, "unauthorized_client", 700016,
                                  f"Application with identifier '{client_id}' was not found in the directory "
                                  f"'{self.config.tenant_domains[0]}'. This can happen if the application has not "
                                  "been installed by the administrator of the tenant.")
        self._check_client_credential(form, f"{self.config.base_url}{request.path}")
        scope = form.get("scope", "")
        if scope.split() != [self.config.scope]:
            raise self._aad_error(400, "invalid_scope", 70011,
                                  f"The provided request must include a 'scope' input parameter. The provided value "
                                  f"for the input parameter 'scope' is not valid. The scope {scope} is not valid. "
                                  f"Client credential flows must use {self.config.scope}.")
        access_token, lifetime = self.tokens.issue(f"app:{client_id}")
        return Response.json({"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
                              "access_token": access_token}, content_type=PLAIN_JSON)

    def _check_client_credential(self, form: dict[str, str], token_endpoint: str) -> None:
        secret = form.get("client_secret")
        assertion = form.get("client_assertion")
        if secret is not None:
            if not hmac.compare_digest(secret.encode("utf-8"), self.config.client_secret.encode("utf-8")):
                raise self._aad_error(401, "invalid_client", 7000215,
                                      "Invalid client secret provided. Ensure the secret being sent in the request "
                                      "is the client secret value, not the client secret ID, for a secret added to "
                                      f"app '{self.config.client_id}'.")
            return
        if assertion is not None:
            if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
                raise self._aad_error(400, "invalid_request", 50027,
                                      "Invalid client_assertion_type; expected the JWT bearer assertion type.")
            self._verify_assertion(assertion, token_endpoint)
            return
        raise self._aad_error(401, "invalid_client", 7000218,
                              "The request body must contain the following parameter: "
                              "'client_assertion' or 'client_secret'.")

    def _verify_assertion(self, assertion: str, token_endpoint: str) -> None:
        """Check a private_key_jwt assertion against the registered certificate."""
        cert = self.config.certificate
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            raise self._aad_error(401, "invalid_client", 50027, "Invalid JWT token. The token is malformed.")
        x5t = str(header.get("x5t", "")).rstrip("=")  # msal keeps base64 '=' padding
        x5t_s256 = str(header.get("x5t#S256", "")).rstrip("=")
        if x5t != cert.x5t and x5t_s256 != cert.x5t_s256:
            raise self._aad_error(401, "invalid_client", 700027,
                                  "The certificate with identifier used to sign the client assertion is not "
                                  f"registered on application. [Reason - The key was not found., Thumbprint of key "
                                  f"used by client: '{x5t or x5t_s256}']")
        try:
            claims = jwt.decode(assertion, cert.certificate.public_key(), algorithms=["RS256", "PS256"],
                                audience=token_endpoint, issuer=self.config.client_id, leeway=60,
                                options={"require": ["exp", "aud", "iss", "sub"]})
        except jwt.ExpiredSignatureError:
            raise self._aad_error(401, "invalid_client", 700024,
                                  "Client assertion is not within its valid time range.")
        except jwt.InvalidAudienceError:
            raise self._aad_error(401, "invalid_client", 700212,
                                  f"No matching federated identity record found for presented assertion audience. "
                                  f"The audience must be '{token_endpoint}'.")
        except jwt.InvalidIssuerError:
            raise self._aad_error(401, "invalid_client", 700021,
                                  "Client assertion application identifier doesn't match 'client_id' parameter.")
        except jwt.PyJWTError as exc:
            raise self._aad_error(401, "invalid_client", 700027,
                                  f"Client assertion failed signature validation. ({type(exc).__name__})")
        if claims.get("sub") != self.config.client_id:
            raise self._aad_error(401, "invalid_client", 700021,
                                  "Client assertion subject doesn't match 'client_id' parameter.")

    # --- XSOAR oproxy -------------------------------------------------------------------
    def oproxy_token(self, request: Request) -> Response:
        body = request.json()
        headers = [("Function-Execution-Id", secrets.token_hex(6))]
        if not isinstance(body, dict):
            raise JsonError(400, {"error": "Request body must be a JSON object."}, headers)
        if body.get("registration_id") != self.config.oproxy_registration_id:
            raise JsonError(404, {"error": "Unknown registration ID."}, headers)
        content = self._decrypt_oproxy_token(str(body.get("encrypted_token") or ""), headers)
        with self._lock:
            accepted = content == self.config.oproxy_token or content in self._refresh_tokens
        if not accepted:
            raise JsonError(401, {"error": "Invalid token or refresh token."}, headers)
        access_token, _ = self.tokens.issue(f"oproxy:{self.config.oproxy_registration_id}")
        refresh_token = "sbxrt." + secrets.token_urlsafe(40)
        with self._lock:
            self._refresh_tokens.add(refresh_token)
        return Response.json({"access_token": access_token, "expires_in": OPROXY_EXPIRES_IN,
                              "refresh_token": refresh_token}, headers=headers, content_type=PLAIN_JSON)

    def _decrypt_oproxy_token(self, encrypted: str, headers: list[tuple[str, str]]) -> str:
        """base64(nonce(12) || AES-GCM ciphertext || tag) -> content of "{epoch}:{content}"."""
        try:
            raw = base64.b64decode(encrypted, validate=True)
            if len(raw) < 12 + 16:
                raise ValueError("too short")
            plaintext = AESGCM(self.config.oproxy_key).decrypt(raw[:12], raw[12:], None).decode("utf-8")
        except (binascii.Error, ValueError, InvalidTag, UnicodeDecodeError):
            raise JsonError(400, {"error": "Could not decrypt the token; check the Key."}, headers)
        stamp, sep, content = plaintext.partition(":")
        if not sep or not stamp.isdigit():
            raise JsonError(400, {"error": "Malformed token payload."}, headers)
        if abs(time.time() - int(stamp)) > OPROXY_CLOCK_SKEW:
            raise JsonError(400, {"error": "Token timestamp is outside the allowed clock skew."}, headers)
        return content

    # --- managed identity (IMDS) ---------------------------------------------------------------
    def managed_identity_token(self, request: Request) -> Response:
        if (request.headers.get("Metadata") or "").lower() != "true":
            raise JsonError(400, {"error": "invalid_request",
                                  "error_description": "Required metadata header not specified"})
        if not request.query.get("api-version"):
            raise JsonError(400, {"error": "invalid_request",
                                  "error_description": "Required query variable 'api-version' is missing"})
        resource = request.query.get("resource", "")
        if resource.rstrip("/") != self.config.base_url:
            raise JsonError(400, {"error": "invalid_resource",
                                  "error_description": f"AADSTS500011: The resource principal named {resource} "
                                                       "was not found in the tenant."})
        client_id = request.query.get("client_id")
        if client_id is not None and client_id.lower() != self.config.managed_identity_client_id.lower():
            raise JsonError(400, {"error": "invalid_request", "error_description": "Identity not found"})
        principal = f"mi:{client_id or 'system'}"
        access_token, lifetime = self.tokens.issue(principal)
        return Response.json({"access_token": access_token, "client_id": client_id or self.config.client_id,
                              "expires_in": str(lifetime), "expires_on": str(int(time.time()) + lifetime),
                              "ext_expires_in": str(lifetime), "not_before": str(int(time.time())),
                              "resource": resource, "token_type": "Bearer"}, content_type=PLAIN_JSON)
