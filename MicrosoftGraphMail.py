"""O365 Outlook Mail (Using Graph API): read, search, fetch, move, delete and send Exchange Online mail.

One self-contained module for Cortex XSOAR/XSIAM. It needs only `requests`, `msal` (which brings
`cryptography`) and the standard library; it does not use CommonServerPython and writes raw war-room
entries itself. Sections, in the order data flows:
constants -> errors -> settings -> token providers -> Graph HTTP client -> entries and arguments ->
Graph-to-context parsers -> folders -> commands -> fetch -> main.
"""
import demistomock as demisto  # noqa: F401

import base64
import csv
import email.utils
import hashlib
import heapq
import io
import json
import logging
import math
import os
import random
import re
import threading
import time
import traceback
import unicodedata
import urllib.parse
import uuid
import zlib
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Optional

import requests

# ================================================================================ CONSTANTS
GRAPH_API_VERSION = 'v1.0'
OPROXY_APP_NAME = 'ms-graph-mail'
OPROXY_DEFAULT_TOKEN_URL = 'https://oproxy.demisto.ninja/obtain-token'
OPROXY_DEFAULT_EXPIRES_IN = 3595
IMDS_DEFAULT_HOST = 'http://169.254.169.254'
IMDS_API_VERSION = '2018-02-01'
APP_SERVICE_IDENTITY_API_VERSION = '2019-08-01'
DEFAULT_HTTP_TIMEOUT_SECONDS = 10.0
TOKEN_REFRESH_MARGIN_SECONDS = 300
CONTEXT_AUTH_KEY = 'auth'

# Retries: Graph asks clients to honour Retry-After; without one we back off exponentially.
MAX_RETRY_ATTEMPTS = 8
RETRY_WAIT_BUDGET_SECONDS = 120.0
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 30.0
IDEMPOTENT_METHODS = frozenset({'GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS'})

BATCH_MAX_REQUESTS = 20
# Graph's mail limits: 4 concurrent requests per app (across all mailboxes); Outlook runs at most 4 sub-requests of
# one $batch in parallel, so a $batch "costs" up to 4 of those.
APP_CONCURRENT_REQUESTS = 4
BATCH_PARALLEL_SUBREQUESTS = 4
# A sequential $batch (each sub-request dependsOn the one before) runs one sub-request at a time, so it costs one of
# the 4, and four of them in flight keep Graph busy while each one's answer travels back (`run_batches(chained=True)`).
# A failed sub-request makes the rest of its chain 424 (not run, sent again); past this share of failures a chain
# runs fewer sub-requests per round trip than a parallel batch does, and parallel batches are sent instead.
CHAIN_FAILURE_BREAK_EVEN = 0.2
# Limits that hold whatever the input (README "Security").
COMMAND_DEADLINE_SECONDS = 240.0        # XSOAR stops a command after 5 minutes by default
FETCH_DEADLINE_SECONDS = 50.0           # fetch runs every minute by default: end before the next run
DOWNLOAD_CHUNK_BYTES = 64 * 1024        # small reads, so a dripping server is noticed between them
DOWNLOAD_PROGRESS_WINDOW_SECONDS = 30.0
DOWNLOAD_MIN_BYTES_PER_WINDOW = 1024 * 1024
DOWNLOAD_SIZE_SLACK_BYTES = 4096
JSON_REQUEST_MAX_BYTES = 4_000_000      # Graph answers 413 to JSON bodies of about 4 MB
PREFER_IMMUTABLE_ID = 'IdType="ImmutableId"'


@dataclass(frozen=True)
class CloudCapabilities:
    """What a cloud's Graph v1.0 declares for mail (Microsoft's per-cloud schemas): the one place commands ask
    before they rely on an operation, so no command carries its own `if cloud == ...`."""
    upload_sessions: bool = True          # attachments/createUploadSession (files of 3 MB or more)
    reply_parameters: bool = True         # createReply/createForward accept `message` and `comment`
    message_delta: bool = True            # mailFolder/messages/delta
    inbox_rules: bool = True              # mailFolder/messageRules
    message_headers_and_flag: bool = True  # message.internetMessageHeaders and message.flag
    translate_exchange_ids: bool = True   # user/translateExchangeIds
    permanent_delete: bool = True         # message/permanentDelete (hard delete)


WORLDWIDE_CAPABILITIES = CloudCapabilities()
US_GOV_CAPABILITIES = CloudCapabilities(upload_sessions=False, reply_parameters=False, translate_exchange_ids=False,
                                        permanent_delete=False)
CHINA_CAPABILITIES = CloudCapabilities(reply_parameters=False, message_delta=False, inbox_rules=False,
                                       message_headers_and_flag=False, permanent_delete=False)


@dataclass(frozen=True)
class NationalCloud:
    """A Microsoft cloud: where Graph lives, which authority issues tokens for it, and what its Graph offers."""
    name: str
    graph_root: str
    login_root: str
    capabilities: CloudCapabilities = WORLDWIDE_CAPABILITIES


NATIONAL_CLOUDS: dict[str, NationalCloud] = {
    'https://graph.microsoft.com': NationalCloud('Worldwide', 'https://graph.microsoft.com',
                                                 'https://login.microsoftonline.com'),
    'https://graph.microsoft.us': NationalCloud('US Gov GCC-High', 'https://graph.microsoft.us',
                                                'https://login.microsoftonline.us', US_GOV_CAPABILITIES),
    'https://dod-graph.microsoft.us': NationalCloud('US Gov DoD', 'https://dod-graph.microsoft.us',
                                                    'https://login.microsoftonline.us', US_GOV_CAPABILITIES),
    'https://graph.microsoft.de': NationalCloud('Germany', 'https://graph.microsoft.de',
                                                'https://login.microsoftonline.de'),
    'https://microsoftgraph.chinacloudapi.cn': NationalCloud('21Vianet (China)', 'https://microsoftgraph.chinacloudapi.cn',
                                                             'https://login.chinacloudapi.cn', CHINA_CAPABILITIES),
}

AUTH_XSOAR_APP = 'oproxy'
AUTH_CLIENT_SECRET = 'client_secret'
AUTH_CERTIFICATE = 'certificate'
AUTH_MANAGED_IDENTITY = 'managed_identity'


# ================================================================================ ERRORS
class MailError(Exception):
    """An error a user should read: it names the argument, parameter or Graph error and what to do."""


class GraphError(MailError):
    """Microsoft Graph answered with an error status."""

    def __init__(self, status: int, code: str, message: str, request_id: str = '', retry_after: float = 0.0):
        self.status = status
        self.code = code
        self.graph_message = message
        self.request_id = request_id
        self.retry_after = retry_after
        suffix = f' (request-id: {request_id})' if request_id else ''
        super().__init__(f'Microsoft Graph returned HTTP {status} {code}: {message}{suffix}')


class ThrottledError(MailError):
    """Graph kept throttling after the retry budget was spent."""


class TransportError(MailError):
    """No answer arrived (connection lost, timeout): a write may or may not have happened."""


class RedirectError(MailError):
    """A server answered with a redirect; no request follows one (it could carry credentials or mail elsewhere)."""


# Secrets recognisable by their form, whoever holds them: a bearer token in an echoed header, and the token of
# a pre-authenticated URL (upload sessions). Both patterns are linear (one character class, no backtracking).
BEARER_TOKEN = re.compile(r'(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+')
URL_AUTH_TOKEN = re.compile(r'(?i)(authtoken=)[^&\s"\'<>]+')


class SecretRedactor:
    """Removes every known secret (parameters, tokens obtained at run time, pre-authenticated URLs) from text,
    and whatever looks like a bearer token or a URL's authtoken."""

    MIN_SECRET_LENGTH = 4

    def __init__(self, secrets: Iterable[str] = ()):
        self._secrets: set[str] = set()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: Optional[str]) -> None:
        if secret and len(secret) >= self.MIN_SECRET_LENGTH:
            self._secrets.add(secret)
            for line in secret.splitlines():
                # PEM armour lines ("-----BEGIN PRIVATE KEY-----") are not secret, and hints quote them.
                if len(line.strip()) >= 16 and not line.strip().startswith('-----'):
                    self._secrets.add(line.strip())

    def redact(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, '<redacted>')
        text = BEARER_TOKEN.sub(r'\1<redacted>', text)
        return URL_AUTH_TOKEN.sub(r'\1<redacted>', text)

    def redact_value(self, value: Any) -> Any:
        """The same for an entry or incident: every string inside dicts and lists."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {self.redact_value(k): self.redact_value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.redact_value(v) for v in value]
        return value


class RedactingLogFilter(logging.Filter):
    """Redacts every log record that passes a handler, whichever library logged it (urllib3 logs URLs at DEBUG)."""

    def __init__(self, redactor: SecretRedactor):
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logging's problem, not a leak
            return True
        redacted = self.redactor.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def install_redaction(redactor: SecretRedactor) -> None:
    """Redaction where messages are produced: the platform's log calls and every logging handler. Entries and
    incidents are redacted by main before they are handed over."""
    for name in ('debug', 'info', 'error'):
        original = getattr(demisto, name)
        original = getattr(original, '__wrapped_by_redaction__', original)

        def redacting(*parts: Any, _log: Callable = original) -> None:
            _log(*(redactor.redact(str(part)) for part in parts))

        redacting.__wrapped_by_redaction__ = original  # type: ignore[attr-defined]
        setattr(demisto, name, redacting)
    root = logging.getLogger()
    for holder in [root, *root.handlers]:
        for old in [f for f in holder.filters if isinstance(f, RedactingLogFilter)]:
            holder.removeFilter(old)
        holder.addFilter(RedactingLogFilter(redactor))


SHOWN_VALUE_MAX_CHARS = 200
LONG_WORD = re.compile(r'\S{%d,}' % (SHOWN_VALUE_MAX_CHARS + 1))


def shown(value: Any) -> str:
    """A value as an error quotes it: repr, and at most SHOWN_VALUE_MAX_CHARS characters of it."""
    text = repr(value)
    if len(text) <= SHOWN_VALUE_MAX_CHARS:
        return text
    return f'{text[:SHOWN_VALUE_MAX_CHARS]}... ({len(str(value))} characters)'


def cap_long_words(text: str) -> str:
    """An error names values; a 100 KB value is cut to its start, so a message stays readable."""
    return LONG_WORD.sub(lambda m: f'{m.group(0)[:SHOWN_VALUE_MAX_CHARS]}...({len(m.group(0))} characters)', text)


# ================================================================================ SETTINGS
def credentials_field(params: dict, name: str, part: str = 'password') -> str:
    value = params.get(name)
    if isinstance(value, dict):
        return (value.get(part) or '').strip()
    return ''


PEM_BEGIN = re.compile(r'-----BEGIN ([A-Z0-9 ]{1,64})-----')
PEM_END = re.compile(r'-----END ([A-Z0-9 ]{1,64})-----')


def pem_blocks(text: str) -> list[tuple[str, str, str, str]]:
    """(begin line, label, body, end line) of each PEM block, in one pass over the text: every BEGIN is paired
    with the next END of its label (a regex with a back-reference would rescan the text for each BEGIN)."""
    ends: dict[str, list[re.Match]] = {}
    for end in PEM_END.finditer(text):
        ends.setdefault(end.group(1), []).append(end)
    next_end: dict[str, int] = {}
    blocks, position = [], 0
    for begin in PEM_BEGIN.finditer(text):
        if begin.start() < position:
            continue
        label, candidates = begin.group(1), ends.get(begin.group(1)) or []
        index = next_end.get(label, 0)
        while index < len(candidates) and candidates[index].start() < begin.end():
            index += 1
        next_end[label] = index
        if index < len(candidates):
            end = candidates[index]
            blocks.append((begin.group(0), label, text[begin.end():end.start()], end.group(0)))
            position = end.end()
    return blocks


def normalize_private_key(key: str) -> str:
    """The private key PEM block, with line breaks restored where a one-line password field turned them
    into spaces; a pasted certificate + key bundle keeps only the key."""
    blocks = pem_blocks(key.strip())
    if not blocks:
        return key.strip()
    begin, label, body, end = next((b for b in blocks if 'PRIVATE KEY' in b[1]), blocks[0])
    if '\n' in body.strip():
        return f'{begin}\n{body.strip()}\n{end}\n'
    compact = ''.join(body.split())
    return '\n'.join([begin, *(compact[i:i + 64] for i in range(0, len(compact), 64)), end]) + '\n'


def ascii_whole_number(value: Any) -> Optional[int]:
    """A non-negative whole number written in ASCII digits, else None. `str.isdigit` alone is not enough:
    it accepts '²' and other digits `int` refuses."""
    text = str(value if value is not None else '').strip()
    return int(text) if text.isascii() and text.isdigit() else None


def parse_bool(value: Any, default: bool = False) -> bool:
    if value is None or value == '':
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ('true', 'yes', '1', 'on'):
        return True
    if text in ('false', 'no', '0', 'off'):
        return False
    raise ValueError(f'expected true or false, got {value!r}')


def param_bool(params: dict, name: str) -> bool:
    try:
        return parse_bool(params.get(name))
    except ValueError:
        raise MailError(f"Parameter '{name}' must be true or false, got {params.get(name)!r}.") from None


@dataclass(frozen=True)
class Endpoints:
    """Where Graph calls and token requests go for the configured Server URL."""
    server_url: str
    cloud_name: str
    login_root: str
    scope: str
    managed_identity_resource: str
    capabilities: CloudCapabilities = WORLDWIDE_CAPABILITIES

    @property
    def graph_base(self) -> str:
        return f'{self.server_url}/{GRAPH_API_VERSION}'


def require_capability(endpoints: Endpoints, capability: str, action: str, instead: str) -> None:
    """Refuses, before anything is changed, an action the configured cloud's Graph does not offer."""
    if not getattr(endpoints.capabilities, capability):
        raise MailError(f'{action} is not available in the {endpoints.cloud_name} cloud: its Microsoft Graph does not '
                        f'offer it. {instead}')


CLOUD_OPTIONAL_MESSAGE_FIELDS = ('internetMessageHeaders', 'flag')


def message_select(fields: str, capabilities: CloudCapabilities) -> str:
    """A message $select list without the properties the cloud's message type lacks (21Vianet: headers, flag)."""
    if capabilities.message_headers_and_flag:
        return fields
    return ','.join(f for f in fields.split(',') if f not in CLOUD_OPTIONAL_MESSAGE_FIELDS)


def named_cloud(name: str) -> Optional[NationalCloud]:
    """The cloud the advanced parameter 'Cloud behind a custom Server URL' (server_url_cloud) names, if any."""
    wanted = (name or '').strip().lower()
    if not wanted:
        return None
    cloud = next((c for c in NATIONAL_CLOUDS.values() if c.name.lower() == wanted), None)
    if cloud is None:
        names = ', '.join(c.name for c in NATIONAL_CLOUDS.values())
        raise MailError(f"Parameter 'Cloud behind a custom Server URL' (server_url_cloud) must be one of {names}, "
                        f'got {name!r}.')
    return cloud


def resolve_endpoints(server_url: str, azure_ad_endpoint: str = '', server_url_cloud: str = '') -> Endpoints:
    """Maps the Server URL to a national cloud; an unknown URL needs an explicit token authority.

    The existing integration silently fell back to the worldwide authority for an unrecognised URL,
    which sends credentials to the wrong cloud; here that is an error. A custom URL (a proxy or an emulator)
    behaves as the cloud it fronts: the one `server_url_cloud` names (whose authority is then the default),
    else the one whose Microsoft authority issues its tokens, else worldwide.
    """
    url = (server_url or '').strip().rstrip('/')
    authority = (azure_ad_endpoint or '').strip().rstrip('/')
    if not url:
        raise MailError("Parameter 'Server URL' (url) is empty: enter e.g. https://graph.microsoft.com.")
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme != 'https' or not parsed.netloc:
        raise MailError(f"Parameter 'Server URL' (url) must be an https URL such as https://graph.microsoft.com, got {url!r}.")
    if authority and not authority.startswith('https://'):
        raise MailError(f"Parameter 'Azure AD endpoint' (azure_ad_endpoint) must be an https URL, got {authority!r}.")
    named = named_cloud(server_url_cloud)
    cloud = NATIONAL_CLOUDS.get(url.lower())
    if cloud:
        if named and named != cloud:
            raise MailError(f"Parameter 'Cloud behind a custom Server URL' (server_url_cloud) says {named.name}, but "
                            f'the Server URL {cloud.graph_root} is the {cloud.name} Graph itself: clear the parameter '
                            '(it is for a custom Server URL only).')
        return Endpoints(server_url=cloud.graph_root, cloud_name=cloud.name, login_root=authority or cloud.login_root,
                         scope=f'{cloud.graph_root}/.default', managed_identity_resource=f'{cloud.graph_root}/',
                         capabilities=cloud.capabilities)
    authority = authority or (named.login_root if named else '')
    if not authority:
        known = ', '.join(NATIONAL_CLOUDS)
        raise MailError(f"Server URL {url!r} is not a known Microsoft Graph endpoint ({known}). Fix a typo, or, for a "
                        "custom endpoint, set the advanced parameter 'Azure AD endpoint' (azure_ad_endpoint) to its token authority.")
    # The token audience is the fronted cloud's Graph when a known Microsoft authority issues the tokens, and the
    # custom URL itself otherwise (an emulator or a proxy with its own token service). A named cloud wins over the
    # authority's (GCC-High and DoD share one authority), but a named cloud never takes another cloud's authority:
    # that would send the credentials to the wrong cloud.
    issuing_cloud = next((c for c in NATIONAL_CLOUDS.values() if c.login_root == authority.lower()), None)
    if named and issuing_cloud and named.login_root != issuing_cloud.login_root:
        raise MailError(f"Parameter 'Cloud behind a custom Server URL' (server_url_cloud) says {named.name}, but 'Azure "
                        f"AD endpoint' (azure_ad_endpoint) {authority} is the token authority of {issuing_cloud.name}: "
                        f'clear one of them, or set the authority to {named.login_root}.')
    fronted = named or issuing_cloud
    audience = fronted.graph_root if fronted and issuing_cloud else url
    return Endpoints(server_url=url, cloud_name=fronted.name if fronted else 'Custom', login_root=authority,
                     scope=f'{audience}/.default', managed_identity_resource=f'{audience}/',
                     capabilities=fronted.capabilities if fronted else WORLDWIDE_CAPABILITIES)


@dataclass(frozen=True)
class AuthSettings:
    mode: str
    client_id: str = ''
    tenant_id: str = ''
    secret: str = ''
    certificate_thumbprint: str = ''
    private_key: str = ''
    oproxy_token_url: str = OPROXY_DEFAULT_TOKEN_URL
    managed_identity_client_id: str = ''

    def fingerprint(self, endpoints: Endpoints) -> str:
        """Identifies the configuration a cached token belongs to, without including any secret."""
        material = '|'.join([self.mode, self.client_id, self.tenant_id, self.certificate_thumbprint,
                             self.oproxy_token_url, self.managed_identity_client_id, endpoints.login_root, endpoints.scope])
        return hashlib.sha256(material.encode()).hexdigest()[:32]


def auth_settings_from_params(params: dict) -> AuthSettings:
    """Reads the four authentication modes; credentials-type parameters win over the hidden legacy ones."""
    auth_id = credentials_field(params, 'creds_auth_id') or params.get('_auth_id') or params.get('auth_id') or ''
    tenant_id = credentials_field(params, 'creds_tenant_id') or params.get('_tenant_id') or params.get('tenant_id') or ''
    key = credentials_field(params, 'credentials') or params.get('enc_key') or ''
    thumbprint = credentials_field(params, 'creds_certificate', 'identifier') or params.get('certificate_thumbprint') or ''
    private_key = credentials_field(params, 'creds_certificate') or params.get('private_key') or ''
    if param_bool(params, 'use_managed_identities'):
        return AuthSettings(mode=AUTH_MANAGED_IDENTITY,
                            managed_identity_client_id=credentials_field(params, 'managed_identities_client_id'))
    self_deployed = param_bool(params, 'self_deployed')
    if self_deployed and thumbprint and private_key:
        mode = AUTH_CERTIFICATE
    elif self_deployed:
        if not key:
            raise MailError("Missing parameter 'Key or Client Secret' (credentials): a self-deployed application needs "
                            "its client secret, or 'Certificate Thumbprint' and 'Private Key' (creds_certificate).")
        mode = AUTH_CLIENT_SECRET
    else:
        if not key:
            raise MailError("Missing parameter 'Key or Client Secret' (credentials): enter the Key you received when "
                            "authorizing the Cortex XSOAR application, or select 'Use a self deployed Azure application'.")
        mode = AUTH_XSOAR_APP
    if not auth_id:
        raise MailError("Missing parameter 'Application ID or Client ID' (creds_auth_id): enter the ID from the "
                        "Cortex XSOAR application consent page, or the client ID of your application.")
    if not tenant_id:
        raise MailError("Missing parameter 'Token or Tenant ID' (creds_tenant_id): enter the Token from the consent "
                        "page, or your Azure AD tenant ID.")
    token_url = OPROXY_DEFAULT_TOKEN_URL
    if mode == AUTH_XSOAR_APP and '@' in auth_id:
        auth_id, token_url = auth_id.split('@', 1)
    return AuthSettings(mode=mode, client_id=auth_id.strip(), tenant_id=tenant_id.strip(), secret=key,
                        certificate_thumbprint=thumbprint, private_key=normalize_private_key(private_key) if private_key else '',
                        oproxy_token_url=token_url)


def secrets_in_params(params: dict) -> list[str]:
    """Values that must never appear in output: keys, secrets, private keys and the oproxy Token."""
    values = [credentials_field(params, 'credentials'), credentials_field(params, 'creds_certificate'),
              params.get('enc_key') or '', params.get('private_key') or '']
    if str(params.get('self_deployed')).strip().lower() not in ('true', 'yes', '1', 'on'):
        values += [credentials_field(params, 'creds_tenant_id'), params.get('_tenant_id') or '', params.get('tenant_id') or '']
    private_key = credentials_field(params, 'creds_certificate') or params.get('private_key') or ''
    if private_key:
        values.append(normalize_private_key(private_key))
    return [v for v in values if isinstance(v, str) and v]


def parse_timeout(value: Any) -> float:
    if value in (None, ''):
        return DEFAULT_HTTP_TIMEOUT_SECONDS
    try:
        timeout = float(value)
    except (TypeError, ValueError):
        raise MailError(f"Parameter 'HTTP Timeout' (timeout) must be a number of seconds, got {value!r}.") from None
    if not math.isfinite(timeout) or timeout <= 0:
        raise MailError(f"Parameter 'HTTP Timeout' (timeout) must be a positive number of seconds, got {value!r}.")
    return timeout


@dataclass(frozen=True)
class FetchSettings:
    enabled: bool = False
    mailbox: str = ''
    folder: str = 'Inbox'
    first_fetch: str = '15 minutes'
    limit: int = 50
    look_back_minutes: int = 0
    full_body: bool = False
    mark_read: bool = False
    legacy_name: bool = False

    @classmethod
    def from_params(cls: type['FetchSettings'], params: dict) -> 'FetchSettings':
        def number(name: str, default: int, minimum: int, maximum: int) -> int:
            value = params.get(name)
            try:
                parsed = default if value in (None, '') else int(str(value).strip())
            except ValueError:
                raise MailError(f"Parameter '{name}' must be a whole number, got {value!r}.") from None
            if not minimum <= parsed <= maximum:
                raise MailError(f"Parameter '{name}' must be from {minimum} to {maximum}, got {value!r}.")
            return parsed

        mailbox = (params.get('mailbox_to_fetch') or '').strip()
        if mailbox:
            path_segment(mailbox, 'mailbox_to_fetch', safe='@')
        return cls(enabled=param_bool(params, 'isFetch'), mailbox=mailbox,
                   folder=(params.get('folder_to_fetch') or 'Inbox').strip(),
                   first_fetch=(params.get('first_fetch') or '15 minutes').strip(),
                   limit=number('fetch_limit', 50, 1, 1000), look_back_minutes=number('look_back', 0, 0, 60 * 24 * 30),
                   full_body=param_bool(params, 'display_full_email_body'),
                   mark_read=param_bool(params, 'mark_fetched_read'), legacy_name=param_bool(params, 'legacy_name'))


# ================================================================================ TOKEN PROVIDERS
@dataclass
class AccessToken:
    value: str
    expires_on: float
    refresh_token: str = ''


def access_token_from_response(response: requests.Response, default_lifetime: int, service: str) -> AccessToken:
    """Reads a token answer: expires_in (seconds), or expires_on (epoch, App Service managed identity)."""
    try:
        body = response.json()
        value = body['access_token']
        if body.get('expires_in'):
            expires_on = time.time() + float(body['expires_in'])
        elif body.get('expires_on'):
            expires_on = float(body['expires_on'])
        else:
            expires_on = time.time() + default_lifetime
    except (ValueError, KeyError, TypeError):
        raise MailError(f'{service} answered without a usable access token (HTTP {response.status_code}).') from None
    return AccessToken(value=str(value), expires_on=expires_on, refresh_token=body.get('refresh_token') or '')


def describe_transport_error(exc: Exception, target: str) -> str:
    if isinstance(exc, requests.exceptions.SSLError) and re.search(r'certificate[ _]verify[ _]failed', str(exc), re.I):
        return (f'TLS certificate verification failed for {target}. If the certificate is trusted in your network, '
                "select 'Trust any certificate (not secure)'.")
    if isinstance(exc, requests.exceptions.SSLError):
        return (f'{target} closed the TLS connection ({exc_summary(exc)[:120]}): the server refused the request, '
                'for instance because an argument made it too large, or a proxy or firewall cut the connection.')
    if isinstance(exc, requests.exceptions.ProxyError):
        return f"Could not reach {target} through the proxy: check the proxy, or clear 'Use system proxy settings'."
    if isinstance(exc, requests.exceptions.Timeout):
        return f'{target} did not answer within the HTTP timeout; raise the HTTP Timeout parameter or check connectivity.'
    return f'Could not connect to {target}: check the URL and network connectivity ({type(exc).__name__}).'


def oproxy_encrypt(content: str, key_b64: str) -> str:
    """The Cortex XSOAR application's token format: base64(nonce || AES-GCM(key, "{epoch}:{content}"))."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    try:
        key = base64.b64decode(key_b64, validate=True)
        cipher = AESGCM(key)
    except (ValueError, TypeError):
        raise MailError("Parameter 'Key or Client Secret' (credentials) is not a valid Key from the Cortex XSOAR "
                        'application consent page: copy it again.') from None
    nonce = os.urandom(12)
    return base64.b64encode(nonce + cipher.encrypt(nonce, f'{int(time.time())}:{content}'.encode(), None)).decode()


class TokenProvider:
    """One credential kind. `acquire` returns a new access token; caching is the TokenManager's job."""

    def __init__(self, settings: AuthSettings, endpoints: Endpoints, http: 'HttpSession'):
        self._settings = settings
        self._endpoints = endpoints
        self._http = http

    def acquire(self, refresh_token: str = '') -> AccessToken:
        raise NotImplementedError


class OproxyTokenProvider(TokenProvider):
    """Exchanges ID/Token/Key for an access token through the hosted Cortex XSOAR application."""

    def acquire(self, refresh_token: str = '') -> AccessToken:
        body = {'app_name': OPROXY_APP_NAME, 'registration_id': self._settings.client_id,
                'encrypted_token': oproxy_encrypt(refresh_token or self._settings.tenant_id, self._settings.secret),
                'scope': None, 'resource': ''}
        headers = {'Accept': 'application/json', 'X-Content-Name': 'MicrosoftGraphMail',
                   'X-Content-Server-Version': str(demisto.demistoVersion().get('version', ''))}
        try:
            response = self._http.request('POST', self._settings.oproxy_token_url, json=body, headers=headers)
        except requests.exceptions.RequestException as exc:
            raise MailError(describe_transport_error(exc, 'the Cortex XSOAR application token service')) from None
        if response.status_code in (429, 500, 502, 503, 504):
            raise MailError(f'The Cortex XSOAR application token service is unavailable (HTTP {response.status_code}): '
                            f'{token_endpoint_error_text(response)}. This is not a credential problem: try again later.')
        if response.status_code not in (200, 201):
            if refresh_token:
                return self.acquire()
            raise MailError(f'The Cortex XSOAR application refused the token request (HTTP {response.status_code}): '
                            f'{token_endpoint_error_text(response)}. Check ID, Token and Key, or authorize the application again.')
        return access_token_from_response(response, OPROXY_DEFAULT_EXPIRES_IN, 'The Cortex XSOAR application')


def token_endpoint_error_text(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        return str(body.get('title') or body.get('error_description') or body.get('error') or body.get('message') or body)[:300]
    return str(body)[:300]


class ConfidentialAppTokenProvider(TokenProvider):
    """A self-deployed application's token, with a client secret or a certificate, through msal."""

    def acquire(self, refresh_token: str = '') -> AccessToken:
        # Imported only when a new token is needed: a command with a cached token skips msal's import and
        # its discovery request entirely.
        import msal
        if self._settings.mode == AUTH_CERTIFICATE:
            check_private_key(self._settings.private_key)
            credential: Any = {'private_key': self._settings.private_key,
                               'thumbprint': self._settings.certificate_thumbprint.replace(':', '').strip()}
        else:
            credential = self._settings.secret
        authority = f'{self._endpoints.login_root}/{self._settings.tenant_id}'
        try:
            app = msal.ConfidentialClientApplication(
                self._settings.client_id, client_credential=credential, authority=authority,
                http_client=self._http.for_msal(), instance_discovery=False, azure_region=False,
                token_cache=msal.TokenCache())
            result = app.acquire_token_for_client(scopes=[self._endpoints.scope])
        except requests.exceptions.RequestException as exc:
            raise MailError(describe_transport_error(exc, f'the token authority {self._endpoints.login_root}')) from None
        except ValueError as exc:
            raise MailError(f'Authentication could not start: {exc_summary(exc).rstrip(".")}. Check the Tenant ID, the Azure AD '
                            'endpoint and, for a certificate, that the private key is an unencrypted PEM key.') from None
        except msal.exceptions.MsalServiceError as exc:
            raise MailError(f'The token authority failed: {exc_summary(exc)}') from None
        if 'access_token' not in result:
            raise MailError(describe_token_error(result))
        return AccessToken(value=result['access_token'], expires_on=time.time() + int(result.get('expires_in', 3599)))


def check_private_key(pem: str) -> None:
    """Fails early, naming the parameter, when the private key is not an unencrypted PEM private key."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    try:
        load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise MailError("Parameter 'Private Key' (creds_certificate password) must be the unencrypted PEM private key "
                        "of the certificate (-----BEGIN PRIVATE KEY----- ...); a certificate or an encrypted key "
                        'cannot sign the token request.') from None


TOKEN_ERROR_TEXT_LIMIT = 700


def first_paragraph(text: str, limit: int = TOKEN_ERROR_TEXT_LIMIT) -> str:
    """The first paragraph of a service's error text in whole sentences. Entra ID descriptions carry Trace ID,
    Correlation ID and Timestamp lines after it; msal's messages run over several sentences. Cut only at a
    sentence end, or with an ellipsis when one sentence alone is longer than `limit`."""
    paragraph = re.split(r'\r?\n\s*\r?\n|\r?\n(?=\s*(?:Trace ID|Correlation ID|Timestamp):)', text.strip())[0]
    flat = ' '.join(paragraph.split())
    if len(flat) <= limit:
        return flat
    head = flat[:limit]
    end = max(head.rfind('. '), head.rfind('! '), head.rfind('? '))
    return head[:end + 1] if end > 0 else head.rstrip() + '…'


def exc_summary(exc: Exception) -> str:
    return first_paragraph(str(exc)) if str(exc).strip() else type(exc).__name__


TOKEN_ERROR_HINTS = {
    7000215: 'the client secret is wrong or expired: create a new one in the app registration.',
    700016: 'the client ID is not registered in this tenant (or in this national cloud).',
    90002: 'the tenant ID was not found in this cloud.',
    700027: 'the certificate assertion was rejected: check the thumbprint and that the certificate is uploaded to the app.',
    70011: 'the scope is not valid for this cloud: check the Server URL.',
    7000222: 'the client secret expired: create a new one in the app registration.',
}


def describe_token_error(result: dict) -> str:
    codes = result.get('error_codes') or []
    hint = next((TOKEN_ERROR_HINTS[c] for c in codes if c in TOKEN_ERROR_HINTS), '')
    description = first_paragraph(str(result.get('error_description') or ''))
    text = f"Authentication failed ({result.get('error', 'unknown_error')}): {description}"
    return f'{text} Likely cause: {hint}' if hint else text


class ManagedIdentityTokenProvider(TokenProvider):
    """A token from the Azure managed identity endpoint of the machine that runs the engine."""

    def acquire(self, refresh_token: str = '') -> AccessToken:
        query = {'resource': self._endpoints.managed_identity_resource}
        if self._settings.managed_identity_client_id:
            query['client_id'] = self._settings.managed_identity_client_id
        app_service_endpoint = os.environ.get('IDENTITY_ENDPOINT')
        if app_service_endpoint and os.environ.get('IDENTITY_HEADER'):
            url = app_service_endpoint
            query['api-version'] = APP_SERVICE_IDENTITY_API_VERSION
            headers = {'X-IDENTITY-HEADER': os.environ['IDENTITY_HEADER']}
        else:
            host = os.environ.get('AZURE_POD_IDENTITY_AUTHORITY_HOST', IMDS_DEFAULT_HOST).rstrip('/')
            url = f'{host}/metadata/identity/oauth2/token'
            query['api-version'] = IMDS_API_VERSION
            headers = {'Metadata': 'true'}
        try:
            response = self._http.request('GET', url, params=query, headers=headers, use_proxy=False)
        except requests.exceptions.RequestException as exc:
            raise MailError('Azure managed identity endpoint unreachable: ' + describe_transport_error(exc, url)
                            + ' Managed identities work only on an engine that runs in Azure.') from None
        if response.status_code != 200:
            raise MailError(f'Azure managed identity token request failed (HTTP {response.status_code}): '
                            f'{token_endpoint_error_text(response)}. Check that the identity is assigned to the machine '
                            "and the 'Azure Managed Identities Client ID'.")
        return access_token_from_response(response, 3599, 'The Azure managed identity endpoint')


class ContextStore:
    """The instance's integration context; versioned calls where the platform has them."""

    def read(self) -> tuple[dict, int]:
        if hasattr(demisto, 'getIntegrationContextVersioned'):
            stored = demisto.getIntegrationContextVersioned(refresh=True) or {}
            return dict(stored.get('context') or {}), stored.get('version', -1)
        return dict(demisto.getIntegrationContext() or {}), -1

    def write(self, context: dict, version: int) -> None:
        if hasattr(demisto, 'setIntegrationContextVersioned'):
            try:
                demisto.setIntegrationContextVersioned(context, version=version, sync=True)
            except Exception as exc:  # another run stored a token first; ours stays valid for this run
                demisto.debug(f'Token cache not stored: {type(exc).__name__}')
            return
        demisto.setIntegrationContext(context)


class MemoryStore(ContextStore):
    """Used by test-module, where the platform does not allow the integration context."""

    def __init__(self) -> None:
        self._context: dict = {}

    def read(self) -> tuple[dict, int]:
        return dict(self._context), -1

    def write(self, context: dict, version: int) -> None:
        self._context = dict(context)


class TokenManager:
    """Hands out a valid access token, cached in the integration context with its expiry."""

    def __init__(self, provider: TokenProvider, fingerprint: str, store: ContextStore, redactor: SecretRedactor):
        self._provider = provider
        self._fingerprint = fingerprint
        self._store = store
        self._redactor = redactor
        self._current: Optional[AccessToken] = None
        self._lock = threading.RLock()  # the $batch scheduler asks for tokens from several threads

    @property
    def redactor(self) -> SecretRedactor:
        return self._redactor

    def token(self) -> str:
        with self._lock:
            return self._token()

    def _token(self) -> str:
        if self._current and self._current.expires_on - time.time() > TOKEN_REFRESH_MARGIN_SECONDS:
            return self._current.value
        context, version = self._store.read()
        cached = context.get(CONTEXT_AUTH_KEY) or {}
        refresh_token = ''
        if cached.get('fingerprint') == self._fingerprint:
            refresh_token = cached.get('refresh_token', '')
            self._redactor.add(refresh_token)
            if cached.get('access_token') and float(cached.get('valid_until', 0)) - time.time() > TOKEN_REFRESH_MARGIN_SECONDS:
                self._current = AccessToken(cached['access_token'], float(cached['valid_until']), refresh_token)
                self._redactor.add(self._current.value)
                return self._current.value
        self._current = self._provider.acquire(refresh_token)
        self._redactor.add(self._current.value)
        self._redactor.add(self._current.refresh_token)
        context[CONTEXT_AUTH_KEY] = {'fingerprint': self._fingerprint, 'access_token': self._current.value,
                                     'valid_until': str(int(self._current.expires_on)),
                                     'refresh_token': self._current.refresh_token or refresh_token}
        self._store.write(context, version)
        return self._current.value

    def reset(self) -> None:
        """Forgets every stored authentication value (msgraph-mail-auth-reset)."""
        self._current = None
        self._store.write({}, -1)

    def invalidate(self) -> None:
        """Forgets the access token (kept refresh token) after Graph rejected it."""
        with self._lock:
            self._invalidate()

    def _invalidate(self) -> None:
        self._current = None
        context, version = self._store.read()
        cached = context.get(CONTEXT_AUTH_KEY)
        if cached and cached.get('access_token'):
            context[CONTEXT_AUTH_KEY] = {**cached, 'access_token': '', 'valid_until': '0'}
            self._store.write(context, version)


TOKEN_PROVIDERS: dict[str, type[TokenProvider]] = {
    AUTH_XSOAR_APP: OproxyTokenProvider, AUTH_CLIENT_SECRET: ConfidentialAppTokenProvider,
    AUTH_CERTIFICATE: ConfidentialAppTokenProvider, AUTH_MANAGED_IDENTITY: ManagedIdentityTokenProvider,
}


def build_token_provider(settings: AuthSettings, endpoints: Endpoints, http: 'HttpSession') -> TokenProvider:
    return TOKEN_PROVIDERS[settings.mode](settings, endpoints, http)


# ================================================================================ HTTP CLIENT
PROGRESS_STEP_BYTES = 10 * 1024 * 1024   # a transfer reports its progress every 10 MiB
REFUSED_CONNECTION_RETRIES = 1           # nothing listening: one quick retry, not the whole retry budget


def report_progress(message: str) -> None:
    """Says what a long-running command is waiting for (retries, Retry-After, large transfers). Goes to the
    integration log; the shell runner shows these lines on stderr. Never to stdout, XSOAR's channel."""
    demisto.info(message)


def retry_notice(reason: str, delay: float, next_attempt: int, max_attempts: int) -> str:
    seconds = f'{delay:.0f}' if delay >= 1 else f'{delay:.1f}'
    return f'{reason}, retrying in {seconds} s, attempt {next_attempt} of {max_attempts}'


def refusal_reason(status: int) -> str:
    return 'throttled by Graph (HTTP 429)' if status == 429 else f'Graph unavailable (HTTP {status})'


def connection_refused(exc: BaseException) -> bool:
    """True when nothing listens at the address (ECONNREFUSED, e.g. a stopped sandbox or proxy): waiting the whole
    retry budget for it only delays the error."""
    pending: list = [exc]
    seen: set = set()
    while pending:
        item = pending.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ConnectionRefusedError):
            return True
        pending += [getattr(item, 'reason', None), item.__cause__, item.__context__, *item.args]
    return False


def mebibytes(size: int) -> str:
    return f'{size / (1024 * 1024):.0f} MiB'


class ProgressReporter:
    """Reports a large download every PROGRESS_STEP_BYTES; small transfers stay silent."""

    def __init__(self, what: str, total: Any = None):
        self.what = what
        self.total = ascii_whole_number(total) or 0
        self.next_report = PROGRESS_STEP_BYTES

    def advance(self, done: int) -> None:
        if done >= self.next_report:
            of_total = f' of {mebibytes(self.total)}' if self.total else ''
            report_progress(f'{self.what}: {mebibytes(done)}{of_total}')
            self.next_report = (done // PROGRESS_STEP_BYTES + 1) * PROGRESS_STEP_BYTES


class HttpSession:
    """One requests.Session carrying timeout, TLS verification and proxy choice for every call.

    `verify` is passed on each request: requests otherwise lets REQUESTS_CA_BUNDLE override
    Session.verify, which would silently ignore 'Trust any certificate'.
    """

    def __init__(self, timeout: float, insecure: bool, use_proxy: bool):
        self.timeout = timeout
        self.verify: Any = False if insecure else (os.environ.get('REQUESTS_CA_BUNDLE') or os.environ.get('CURL_CA_BUNDLE') or True)
        self.session = requests.Session()
        self.session.trust_env = use_proxy
        self.session.verify = self.verify

    def request(self, method: str, url: str, use_proxy: bool = True, **kwargs: Any) -> requests.Response:
        """Every request of the integration (Graph, token, oproxy, managed identity, upload) goes through here:
        a redirect is never followed, it is an error naming where it pointed."""
        kwargs.setdefault('timeout', self.timeout)
        kwargs.setdefault('verify', self.verify)
        kwargs['allow_redirects'] = False
        if not use_proxy:
            kwargs['proxies'] = {'http': None, 'https': None}
        return refuse_redirect(self.session.request(method, url, **kwargs))

    def for_msal(self) -> requests.Session:
        """A session msal can use: it never passes verify or timeout itself, and it follows no redirect."""
        session = requests.Session()
        session.trust_env = self.session.trust_env
        session.verify = self.verify
        base_request = session.request

        def request(method: str, url: str, **kwargs: Any) -> requests.Response:
            kwargs.setdefault('timeout', self.timeout)
            kwargs['verify'] = self.verify
            kwargs['allow_redirects'] = False
            return refuse_redirect(base_request(method, url, **kwargs))

        session.request = request  # type: ignore[method-assign]
        return session


def refuse_redirect(response: requests.Response) -> requests.Response:
    """A 3xx answer is an error: following it would re-send the form with the client secret, the mail or the
    bearer token to wherever the server points, or take another host's answer as Graph data."""
    if 300 <= response.status_code < 400:
        source = urllib.parse.urlparse(response.url or '').netloc or 'the server'
        location = response.headers.get('Location') or ''
        target = urllib.parse.urlparse(urllib.parse.urljoin(response.url or '', location)).netloc if location else ''
        response.close()
        raise RedirectError(f'{source} answered HTTP {response.status_code} with a redirect to '
                            f'{target or "an unnamed location"}; the integration follows no redirect (it could carry '
                            'credentials or mail to another host). Check the Server URL and any proxy in between.')
    return response


@dataclass
class RetryPolicy:
    max_attempts: int = MAX_RETRY_ATTEMPTS
    wait_budget_seconds: float = RETRY_WAIT_BUDGET_SECONDS
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter, for a 429/503 that carries no Retry-After."""
        return random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * (2 ** attempt)))


def retry_after_seconds(headers: Any) -> Optional[float]:
    value = (headers or {}).get('Retry-After') or (headers or {}).get('retry-after')
    if value in (None, ''):
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(str(value))
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def graph_error_from_response(response: requests.Response) -> GraphError:
    code, message, request_id = f'HTTP{response.status_code}', (response.reason or 'error'), ''
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get('error'), dict):
        code = body['error'].get('code') or code
        message = body['error'].get('message') or message
        inner = body['error'].get('innerError') or body['error'].get('innererror') or {}
        request_id = inner.get('request-id', '')
    request_id = response.headers.get('request-id') or request_id
    return GraphError(response.status_code, code, str(message)[:500], request_id,
                      retry_after_seconds(response.headers) or 0.0)


MAX_ID_LENGTH = 1024


def path_segment(value: Any, argument: str, safe: str = '-_=') -> str:
    """The one gate for every value that becomes a URL path segment (ids, mailboxes): exactly one segment.

    Refused: empty, dot segments ('.', '..', which the HTTP stack removes so `messages/..` would address the
    user), slashes and backslashes, control, format (bidi) and separator characters, and values too long for a
    URL. Everything else is percent-encoded, so '?', '#' and '%' stay inside the segment."""
    text = str(value if value is not None else '').strip()
    problem = ''
    if not text:
        problem = 'a value'
    elif set(text) == {'.'}:
        problem = "an id, not '.' or '..'"
    elif len(text) > MAX_ID_LENGTH:
        problem = f'at most {MAX_ID_LENGTH} characters'
    elif any(c in '/\\' or c.isspace() or unicodedata.category(c) in ('Cc', 'Cf', 'Cs', 'Zl', 'Zp') for c in text):
        problem = 'one id or mailbox without slashes, spaces or control characters'
    if problem:
        raise MailError(f"Invalid argument '{argument}': expected {problem}, got {shown(value)}.")
    return urllib.parse.quote(text, safe=safe)


def url_form_of_id(graph_id: Any) -> str:
    """A Graph id in Graph's URL-safe form: its base64 ids may spell '/' as '-'."""
    return str(graph_id if graph_id is not None else '').strip().replace('/', '-')


def encode_id(graph_id: str, argument: str = 'id') -> str:
    """A Graph id as one URL path segment, in Graph's URL-safe form."""
    return path_segment(url_form_of_id(graph_id), argument)


def user_path(user: str, argument: str = 'user_id') -> str:
    return f'users/{path_segment(user, argument, safe="@")}'


@dataclass
class BatchItem:
    id: str
    method: str
    url: str
    body: Optional[dict] = None


class GraphClient:
    """The Microsoft Graph HTTP layer: auth header, retries, errors, paging, $batch, downloads."""

    def __init__(self, endpoints: Endpoints, http: HttpSession, tokens: TokenManager,
                 retry: Optional[RetryPolicy] = None, default_user: str = '', tenant_domains: Iterable[str] = (),
                 deadline_seconds: float = COMMAND_DEADLINE_SECONDS):
        self.endpoints = endpoints
        self.http = http
        self.tokens = tokens
        self.retry = retry or RetryPolicy()
        self.default_user = default_user
        self.max_in_flight = APP_CONCURRENT_REQUESTS
        self.tenant_domains = tuple(tenant_domains)  # the 'Tenant domains' parameter (inbox-rule triage)
        self._origin = self._origin_of(endpoints.graph_base)
        self.set_deadline(deadline_seconds)

    def set_deadline(self, seconds: float) -> None:
        """Starts the overall bound of this command: retries, waits and downloads all fit inside it."""
        self.deadline_seconds = seconds
        self._deadline_at = self.retry.clock() + seconds

    def remaining_seconds(self) -> float:
        return self._deadline_at - self.retry.clock()

    def fits_deadline(self, delay: float) -> bool:
        return delay < self.remaining_seconds()

    def deadline_error(self, doing: str) -> 'DeadlineError':
        return DeadlineError(f'The command stopped {doing}: it reached its overall time limit of '
                             f'{self.deadline_seconds:.0f} s (Cortex XSOAR stops commands that run longer). '
                             'Run it again later, or for fewer items.')

    @property
    def redactor(self) -> 'SecretRedactor':
        return self.tokens.redactor

    @staticmethod
    def _origin_of(url: str) -> tuple[str, str]:
        parsed = urllib.parse.urlparse(url)
        return parsed.scheme.lower(), parsed.netloc.lower()

    def url_for(self, path: str) -> str:
        if path.startswith(('https://', 'http://')):
            if self._origin_of(path) != self._origin:
                raise MailError(f'Refused to send the access token to {urllib.parse.urlparse(path).netloc}: '
                                'a link returned by the server does not point at the configured Graph host.')
            return path
        return f'{self.endpoints.graph_base}/{path.lstrip("/")}'

    def _headers(self, extra: Optional[dict], authenticated: bool, has_json: bool) -> dict:
        headers = {'Accept': 'application/json'}
        if authenticated:
            headers['Authorization'] = f'Bearer {self.tokens.token()}'
            headers['Prefer'] = PREFER_IMMUTABLE_ID
        if has_json:
            headers['Content-Type'] = 'application/json'
        for name, value in (extra or {}).items():
            if name.lower() == 'prefer' and authenticated:
                headers['Prefer'] = f'{value}, {PREFER_IMMUTABLE_ID}'
            else:
                headers[name] = value
        return headers

    def send(self, method: str, path: str, *, params: Optional[dict] = None, json_body: Any = None,
             data: Optional[bytes] = None, headers: Optional[dict] = None, stream: bool = False,
             authenticated: bool = True) -> requests.Response:
        """Sends one request, retrying throttling and transient failures within the retry budget."""
        url = self.url_for(path) if authenticated else path
        method = method.upper()
        if json_body is not None:
            data = json_request_bytes(json_body)
        waited, attempt, token_refreshed = 0.0, 0, False
        while True:
            remaining = self.remaining_seconds()
            if remaining <= 0:
                raise self.deadline_error(f'before {method} {urllib.parse.urlparse(url).path}')
            request_headers = self._headers(headers, authenticated, json_body is not None)
            try:
                response = self.http.request(method, url, params=params, data=data, headers=request_headers,
                                             stream=stream, timeout=min(self.http.timeout, max(remaining, 1.0)))
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                never_sent = isinstance(exc, requests.exceptions.ConnectTimeout) or connection_refused(exc)
                # A certificate or proxy problem does not go away by retrying: say so at once.
                lasting = isinstance(exc, (requests.exceptions.SSLError, requests.exceptions.ProxyError))
                lasting = lasting or (connection_refused(exc) and attempt >= REFUSED_CONNECTION_RETRIES)
                if not lasting and (method in IDEMPOTENT_METHODS or never_sent) and attempt + 1 < self.retry.max_attempts:
                    delay = self.retry.backoff(attempt)
                    if waited + delay <= self.retry.wait_budget_seconds and self.fits_deadline(delay):
                        report_progress(retry_notice(f'could not connect to {urllib.parse.urlparse(url).netloc}', delay,
                                                     attempt + 2, self.retry.max_attempts))
                        self.retry.sleep(delay)
                        waited, attempt = waited + delay, attempt + 1
                        continue
                raise TransportError(describe_transport_error(exc, urllib.parse.urlparse(url).netloc)) from None
            if response.status_code == 401 and authenticated and not token_refreshed:
                response.close()
                self.tokens.invalidate()
                token_refreshed = True
                continue
            retryable = response.status_code in (429, 503) or (response.status_code == 504 and method in IDEMPOTENT_METHODS)
            if not retryable:
                if response.status_code >= 400:
                    raise graph_error_from_response(response)
                return response
            delay = retry_after_seconds(response.headers)
            delay = self.retry.backoff(attempt) if delay is None else delay
            if attempt + 1 >= self.retry.max_attempts or waited + delay > self.retry.wait_budget_seconds \
                    or not self.fits_deadline(delay):
                raise throttled_error(graph_error_from_response(response), attempt + 1, waited, delay)
            response.close()
            report_progress(retry_notice(refusal_reason(response.status_code), delay, attempt + 2, self.retry.max_attempts))
            self.retry.sleep(delay)
            waited, attempt = waited + delay, attempt + 1

    def get(self, path: str, params: Optional[dict] = None, headers: Optional[dict] = None) -> dict:
        return json_body_of(self.send('GET', path, params=params, headers=headers))

    def post(self, path: str, body: Any = None, headers: Optional[dict] = None) -> dict:
        return json_body_of(self.send('POST', path, json_body=body if body is not None else {}, headers=headers))

    def patch(self, path: str, body: Any) -> dict:
        return json_body_of(self.send('PATCH', path, json_body=body))

    def delete(self, path: str) -> None:
        self.send('DELETE', path)

    def pages(self, path: str, params: Optional[dict] = None, headers: Optional[dict] = None,
              max_pages: Optional[int] = None) -> Iterator[dict]:
        """Yields result pages, following @odata.nextLink (only to the Graph host) up to max_pages."""
        url: Optional[str] = path
        query = params
        count = 0
        while url and (max_pages is None or count < max_pages):
            page = self.get(url, params=query, headers=headers)
            yield page
            count += 1
            url, query = page.get('@odata.nextLink'), None

    def batch(self, items: list[BatchItem]) -> dict[str, dict]:
        """Runs requests through $batch (see `run_batches`) and returns {item id: {'status', 'headers', 'body'}}.

        Items still throttled when the retry budget runs out are returned with their 429/503 status for the
        caller to report.
        """
        results: dict[str, dict] = {}

        def keep(item: BatchItem, answer: dict) -> Iterable[BatchItem]:
            results[item.id] = answer
            return ()

        self.run_batches(items, keep)
        return results

    def run_batches(self, items: Iterable[BatchItem],
                    on_answer: Callable[[BatchItem, dict], Iterable[BatchItem]], chained: bool = False) -> None:
        """The one multi-request scheduler: every multi-request workload (several mailboxes included) goes here.

        * Items are packed into $batch calls of up to 20 (they may target different mailboxes).
        * At most `max_in_flight` (4) requests run at once for the app, counted as Graph counts them: a $batch
          counts as the sub-requests Outlook runs in parallel (at most 4), so one full batch fills the budget and
          small retry batches can run side by side.
        * A sub-request answered 429/503 waits for its own Retry-After (backoff without one) and is then sent again
          in whatever batch is being packed; the others go on meanwhile. Waits of all throttled items of this call
          overlap instead of following each other batch after batch.
        * Each item has its own retry budget (`self.retry`: attempts and seconds waited); when it runs out the item's
          last 429/503 answer is final.
        * `items` is read lazily and `on_answer(item, answer)` is called (in the calling thread) with each final
          answer; it may return follow-up items (the next page of a mailbox, say), which are sent before new ones.
          Memory stays flat in the length of `items`.
        * `chained=True` (a large workload, order free): items go in sequential $batch calls, each costing one of the
          4, so four run side by side and no slot waits while an answer travels back. Chains shorten as the work runs
          out, and while more than CHAIN_FAILURE_BREAK_EVEN of the answers fail, parallel batches are sent instead.
          Items a failure left unrun (424) are sent again at once, with their retry budget untouched.
        * If the run breaks off (deadline, an envelope that failed for good, an error raised by `on_answer`), the
          answers of batches already sent are still waited for and handed to `on_answer`, so a change Graph made is
          never left unrecorded; then the error is raised.
        """
        _BatchRun(self, iter(items), on_answer, chained).run()

    def post_batch(self, items: list[BatchItem], sequential: bool = False) -> dict[str, dict]:
        """One $batch call (retried as a whole on an envelope 429/503): {item id: answer}; a missing answer is a 500.
        `sequential`: each item depends on the one before, so Graph runs them one after the other."""
        requests_json = [batch_request_json(item) for item in items]
        if sequential:
            for before, request in zip(requests_json, requests_json[1:]):
                request['dependsOn'] = [before['id']]
        responses = self.post('$batch', {'requests': requests_json}).get('responses') or []
        by_id = {str(r.get('id')): r for r in responses if isinstance(r, dict)}
        return {item.id: by_id.get(item.id) or {'status': 500, 'headers': {}, 'body': {'error': {
            'code': 'MissingBatchResponse', 'message': 'Graph returned no response for this request.'}}}
            for item in items}

    def download(self, path: str, destination: str, expected_size: Optional[int] = None) -> int:
        """Streams a binary response to a file; returns its size. Never holds the whole body in memory, and
        leaves no partial file behind when the download fails, stalls, runs past the deadline or ends short
        of its Content-Length or of the size Graph gave for it (`expected_size`)."""
        size = 0
        try:
            with self.send('GET', path, stream=True, headers={'Accept': '*/*'}) as response, \
                    open(destination, 'wb') as handle:
                progress = DownloadProgress(self.retry.clock)
                meter = ProgressReporter('downloading', response.headers.get('Content-Length'))
                for chunk in response.iter_content(DOWNLOAD_CHUNK_BYTES):
                    handle.write(chunk)
                    size += len(chunk)
                    if self.remaining_seconds() <= 0:
                        raise self.deadline_error(f'downloading after {size} bytes')
                    progress.check(size)
                    meter.advance(size)
                announced = response.headers.get('Content-Length')
            check_download_complete(size, ascii_whole_number(announced), expected_size)
        except requests.exceptions.RequestException as exc:
            remove_file(destination)
            raise TransportError(f'The download broke off after {size} bytes ({type(exc).__name__}); run the '
                                 'command again.') from None
        except Exception:
            remove_file(destination)
            raise
        return size

    def upload_chunk(self, upload_url: str, chunk: bytes, first_byte: int, total: int) -> requests.Response:
        """PUTs one byte range to a pre-authenticated upload URL, which must not get the bearer token."""
        if not upload_url.startswith('https://'):
            raise MailError('Refused an upload URL that is not https.')
        headers = {'Content-Range': f'bytes {first_byte}-{first_byte + len(chunk) - 1}/{total}',
                   'Content-Type': 'application/octet-stream'}
        if total >= PROGRESS_STEP_BYTES:
            report_progress(f'uploading an attachment: {mebibytes(first_byte + len(chunk))} of {mebibytes(total)}')
        return self.send('PUT', upload_url, data=chunk, headers=headers, authenticated=False)


class DeadlineError(TransportError):
    """The command's overall time limit was reached; what was not done is named in the message."""


class DownloadProgress:
    """Stops a download that makes no real progress: less than DOWNLOAD_MIN_BYTES_PER_WINDOW in any
    DOWNLOAD_PROGRESS_WINDOW_SECONDS (a server dripping a few KB per read would otherwise hold the command)."""

    def __init__(self, clock: Callable[[], float]):
        self._clock = clock
        self._window_start = clock()
        self._window_bytes = 0

    def check(self, total: int) -> None:
        now = self._clock()
        if now - self._window_start < DOWNLOAD_PROGRESS_WINDOW_SECONDS:
            return
        if total - self._window_bytes < DOWNLOAD_MIN_BYTES_PER_WINDOW:
            raise TransportError(f'The download made no real progress: {total - self._window_bytes} bytes in the last '
                                 f'{now - self._window_start:.0f} s ({total} in all); it was stopped. Run the command '
                                 'again later.')
        self._window_start, self._window_bytes = now, total


def check_download_complete(written: int, content_length: Optional[int], expected_size: Optional[int]) -> None:
    """A connection closed early without a Content-Length looks like a normal end: the size Graph gave for the
    attachment tells. Graph's `size` counts a little item overhead besides the content, so only a real shortfall
    (more than DOWNLOAD_SIZE_SLACK) counts."""
    if content_length is not None and written != content_length:
        raise TransportError(f'The download ended after {written} of {content_length} bytes; run the command again.')
    if expected_size and written < expected_size - max(DOWNLOAD_SIZE_SLACK_BYTES, expected_size // 100):
        raise TransportError(f'The download ended after {written} bytes, but the attachment has {expected_size} '
                             'bytes: the connection was cut. Run the command again.')


def json_request_bytes(body: Any) -> bytes:
    """The JSON body exactly as sent, refused before sending when Graph would answer 413 (its limit counts the
    base64 of attachments and JSON escaping, which is why it is measured here and not estimated)."""
    encoded = json.dumps(body).encode()
    if len(encoded) > JSON_REQUEST_MAX_BYTES:
        raise MailError(f'The request would be {len(encoded)} bytes of JSON; Microsoft Graph takes at most '
                        f'{JSON_REQUEST_MAX_BYTES} bytes. Send less content at once (large files go through upload '
                        'sessions automatically; a body this large cannot be sent).')
    return encoded


def remove_file(path: str) -> None:
    if os.path.exists(path):
        os.remove(path)


def json_body_of(response: requests.Response) -> dict:
    """The JSON object of a successful response; {} for an empty one. Anything else (an HTML page from a proxy,
    say) is a clear error rather than a decoding traceback."""
    if not response.content:
        return {}
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        host = urllib.parse.urlparse(response.url or '').netloc or 'the server'
        raise MailError(f'{host} answered HTTP {response.status_code} with something that is not a JSON object '
                        f"({response.headers.get('Content-Type', 'no content type')}); a proxy may be in the way.")
    return body


def batch_query(params: dict) -> str:
    """A query string for a $batch item's relative URL (spaces as %20, as in Graph's own links)."""
    return '?' + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)


def batch_request_json(item: BatchItem) -> dict:
    request: dict[str, Any] = {'id': item.id, 'method': item.method, 'url': '/' + item.url.lstrip('/'),
                               'headers': {'Prefer': PREFER_IMMUTABLE_ID}}
    if item.body is not None:
        request['body'] = item.body
        request['headers']['Content-Type'] = 'application/json'
    return request


def throttled_error(last: GraphError, attempts: int, waited: float, next_delay: float) -> ThrottledError:
    retry_at = datetime.now(timezone.utc) + timedelta(seconds=next_delay)
    kind = 'throttling' if last.status == 429 else f'unavailable (HTTP {last.status})'
    return ThrottledError(
        f'Microsoft Graph is {kind} for this mailbox ({last.code}: {last.graph_message}); gave up after {attempts} '
        f'attempt(s) and {waited:.0f} s of waiting. Retry after {retry_at:%Y-%m-%dT%H:%M:%SZ}'
        f' (Retry-After {next_delay:.0f} s).' + (f' request-id: {last.request_id}' if last.request_id else ''))


@dataclass
class _Pending:
    """A batch item on its way: attempts made and seconds waited so far (its own retry budget)."""
    item: BatchItem
    attempts: int = 0
    waited: float = 0.0


class _SchedulerClock:
    """Monotonic time that also advances by the waits the retry policy's `sleep` was asked for, so an injected
    sleep that returns at once (tests) still makes throttled items due."""

    def __init__(self, sleep: Callable[[float], None]):
        self._sleep = sleep
        self._offset = 0.0

    def now(self) -> float:
        return time.monotonic() + self._offset

    def sleep(self, seconds: float) -> None:
        started = time.monotonic()
        self._sleep(seconds)
        self._offset += max(0.0, seconds - (time.monotonic() - started))


class _BatchRun:
    """One `GraphClient.run_batches` call: a coordinator (the calling thread) packing items into $batch calls that
    worker threads send, with a heap of throttled items waiting for their own Retry-After."""

    def __init__(self, client: 'GraphClient', source: Iterator[BatchItem],
                 on_answer: Callable[[BatchItem, dict], Iterable[BatchItem]], chained: bool = False):
        self.client = client
        self.source: Optional[Iterator[BatchItem]] = source
        self.on_answer = on_answer
        self.chained = chained
        self.failure_share = 0.0   # moving share of answers that failed (each failure cuts a chain short)
        self.ready: deque[_Pending] = deque()
        self.delayed: list[tuple[float, int, _Pending]] = []
        self.in_flight: dict[Future, tuple[list[_Pending], int, bool]] = {}
        self.landed: deque[tuple[list[_Pending], dict[str, dict], bool]] = deque()   # answered, not yet settled
        self.units = 0
        self.clock = _SchedulerClock(client.retry.sleep)
        self._order = 0

    def run(self) -> None:
        limit = max(1, self.client.max_in_flight)
        with ThreadPoolExecutor(max_workers=limit, thread_name_prefix='graph-batch') as pool:
            try:
                while True:
                    self._release_due()
                    self._refill()
                    self._launch(pool, limit)
                    if self.in_flight:
                        done, _ = wait(list(self.in_flight), timeout=self._time_to_next_due(),
                                       return_when=FIRST_COMPLETED)
                        self.landed.extend(self._land(future) for future in done)
                        self._launch(pool, limit)  # the next batch goes out before this one's answers are handled
                        while self.landed:
                            self._settle(*self.landed.popleft())
                    elif self.delayed:
                        self.clock.sleep(self._time_to_next_due() or 0.0)
                    elif not self.ready:
                        return
            except BaseException:
                self._settle_sent_batches()
                raise

    def _settle_sent_batches(self) -> None:
        """On a break-off: batches not started are cancelled; the answers of those already sent are handed over as
        final (a move Graph made is recorded as done, not found 'gone' by the next run)."""
        for future in list(self.in_flight):
            if future.cancel():
                self._land_cancelled(future)
                continue
            try:
                self.landed.append(self._land(future))
            except BaseException:  # noqa: BLE001 - the error that broke the run off is the one raised
                continue
        while self.landed:
            try:
                self._hand_over_final(*self.landed.popleft())
            except BaseException:  # noqa: BLE001
                continue

    def _land_cancelled(self, future: Future) -> None:
        _, cost, _ = self.in_flight.pop(future)
        self.units -= cost

    def _hand_over_final(self, chunk: list[_Pending], answers: dict[str, dict], sequential: bool) -> None:
        unrun = set(id(p) for p in self._unrun(chunk, answers)) if sequential else set()
        for pending in chunk:
            if id(pending) not in unrun:
                self.on_answer(pending.item, answers[pending.item.id])

    def _refill(self) -> None:
        """Reads items lazily: enough for the batches that can be in flight, never the whole workload."""
        wanted = BATCH_MAX_REQUESTS * max(1, self.client.max_in_flight)
        while self.source is not None and len(self.ready) < wanted:
            try:
                self.ready.append(_Pending(next(self.source)))
            except StopIteration:
                self.source = None

    def _launch(self, pool: ThreadPoolExecutor, limit: int) -> None:
        while self.ready:
            sequential = self.chained and self.failure_share <= CHAIN_FAILURE_BREAK_EVEN
            if sequential:
                # What is left spread over the free lanes, so the last chains end together.
                size = min(BATCH_MAX_REQUESTS, max(1, math.ceil(len(self.ready) / max(1, limit - self.units))))
                cost = 1
            else:
                size = min(BATCH_MAX_REQUESTS, len(self.ready))
                cost = min(size, BATCH_PARALLEL_SUBREQUESTS)
            if self.units and self.units + cost > limit:
                return
            chunk = [self.ready.popleft() for _ in range(size)]
            future = pool.submit(self.client.post_batch, [p.item for p in chunk], sequential and size > 1)
            self.in_flight[future] = (chunk, cost, sequential and size > 1)
            self.units += cost
            self._refill()

    def _land(self, future: Future) -> tuple[list[_Pending], dict[str, dict], bool]:
        chunk, cost, sequential = self.in_flight.pop(future)
        self.units -= cost
        return chunk, future.result(), sequential  # an envelope failure (after its own retries) ends the run

    @staticmethod
    def _unrun(chunk: list[_Pending], answers: dict[str, dict]) -> list[_Pending]:
        """Items of a sequential batch Graph did not run: answered 424 after an earlier item failed."""
        unrun: list[_Pending] = []
        failed = False
        for pending in chunk:
            status = int(answers[pending.item.id].get('status') or 0)
            if failed and status == 424:
                unrun.append(pending)
            failed = failed or status >= 400
        return unrun

    def _settle(self, chunk: list[_Pending], answers: dict[str, dict], sequential: bool = False) -> None:
        retry = self.client.retry
        follow_ups: list[BatchItem] = []
        waits: list[tuple[float, int]] = []
        unrun = self._unrun(chunk, answers) if sequential else []
        skipped = set(id(p) for p in unrun)
        for pending in chunk:
            if id(pending) in skipped:
                continue
            answer = answers[pending.item.id]
            self.failure_share = 0.98 * self.failure_share + 0.02 * (int(answer.get('status') or 0) >= 400)
            if answer.get('status') in (429, 503):
                after = retry_after_seconds(answer.get('headers'))
                delay = retry.backoff(pending.attempts) if after is None else after
                if pending.attempts + 1 < retry.max_attempts and pending.waited + delay <= retry.wait_budget_seconds \
                        and self.client.fits_deadline(delay):  # never wait past the command's deadline
                    pending.attempts += 1
                    pending.waited += delay
                    self._order += 1
                    heapq.heappush(self.delayed, (self.clock.now() + delay, self._order, pending))
                    waits.append((delay, pending.attempts + 1))
                    continue
            follow_ups.extend(self.on_answer(pending.item, answer) or ())
        if waits:
            report_progress(retry_notice(f'{len(waits)} of {len(chunk)} batched requests throttled by Graph',
                                         *max(waits), retry.max_attempts))
        # Follow-ups first (the next page of a mailbox), then what a failure left unrun, then the rest.
        self.ready.extendleft(reversed(unrun))
        self.ready.extendleft(_Pending(item) for item in reversed(follow_ups))

    def _release_due(self) -> None:
        now = self.clock.now()
        while self.delayed and self.delayed[0][0] <= now:
            self.ready.appendleft(heapq.heappop(self.delayed)[2])

    def _time_to_next_due(self) -> Optional[float]:
        """Seconds until the first throttled item is due, rounded up to 0.1 s (None: none is waiting)."""
        if not self.delayed:
            return None
        return max(0.0, math.ceil(round(self.delayed[0][0] - self.clock.now(), 6) * 10) / 10)


# ================================================================================ ENTRIES AND ARGUMENTS
ENTRY_NOTE = 1
ENTRY_FILE = 3
ENTRY_ERROR = 4


def note_entry(contents: Any, readable: str, context: Optional[dict] = None) -> dict:
    entry = {'Type': ENTRY_NOTE, 'ContentsFormat': 'json' if isinstance(contents, (dict, list)) else 'text',
             'Contents': contents, 'HumanReadable': readable, 'ReadableContentsFormat': 'markdown'}
    if context:
        entry['EntryContext'] = context
    return entry


def error_entry(message: str) -> dict:
    return {'Type': ENTRY_ERROR, 'ContentsFormat': 'text', 'Contents': message}


def file_entry(file_id: str, name: str) -> dict:
    return {'Type': ENTRY_FILE, 'ContentsFormat': 'text', 'Contents': '', 'File': name, 'FileID': file_id}


def new_file_path() -> tuple[str, str]:
    """Where the platform picks up a file result: `{investigation id}_{file id}` in the working directory."""
    file_id = str(uuid.uuid4())
    return file_id, os.path.abspath(f"{demisto.investigation()['id']}_{file_id}")


def save_bytes_as_file(data: bytes) -> str:
    file_id, path = new_file_path()
    with open(path, 'wb') as handle:
        handle.write(data)
    return file_id


LINE_BREAKS = re.compile(r'[\r\n]+')


def without_invisible_controls(text: str) -> str:
    """Text a reader sees as it is: bidi overrides and other format characters (a subject written right-to-left
    to look harmless) are dropped, control characters become spaces; line breaks are kept for the caller."""
    kept = []
    for character in text:
        category = unicodedata.category(character)
        if category == 'Cf':
            continue
        kept.append(' ' if category == 'Cc' and character not in '\r\n' else character)
    return ''.join(kept)


def markdown_cell(value: Any) -> str:
    if value is None:
        return ''
    if isinstance(value, (list, tuple)):
        value = ', '.join(markdown_cell(v) for v in value)
    elif isinstance(value, dict):
        value = value.get('Address') or value.get('Name') or json.dumps(value, default=str)
    text = without_invisible_controls(str(value)).replace('\\', '\\\\').replace('|', '\\|')
    # Lines joined by one space. Split, not `\s*[\r\n]+\s*`: that regex is quadratic on long runs of spaces.
    return ' '.join(part.strip() for part in LINE_BREAKS.split(text) if part.strip())


def markdown_table(title: str, rows: list[dict], columns: list[str]) -> str:
    if not rows:
        return f'### {title}\n**No entries.**\n'
    lines = [f'### {title}', '|' + '|'.join(columns) + '|', '|' + '|'.join('---' for _ in columns) + '|']
    lines += ['|' + '|'.join(markdown_cell(row.get(c)) for c in columns) + '|' for row in rows]
    return '\n'.join(lines) + '\n'


def argument_error(name: str, expected: str, value: Any) -> MailError:
    return MailError(f"Invalid argument '{name}': expected {expected}, got {shown(value)}.")


def arg_text(args: dict, name: str, required: bool = False, default: str = '') -> str:
    value = args.get(name)
    text = default if value is None else str(value).strip()
    if required and not text:
        raise MailError(f"Missing argument '{name}'.")
    return text


def arg_bool(args: dict, name: str, default: bool = False) -> bool:
    try:
        return parse_bool(args.get(name), default)
    except ValueError:
        raise argument_error(name, 'true or false', args.get(name)) from None


def arg_int(args: dict, name: str, default: int, minimum: int = 1, maximum: Optional[int] = None) -> int:
    value = args.get(name)
    if value is None or str(value).strip() == '':
        return default
    try:
        number = int(str(value).strip())
    except ValueError:
        raise argument_error(name, 'a whole number', value) from None
    if number < minimum or (maximum is not None and number > maximum):
        bounds = f'from {minimum} to {maximum}' if maximum is not None else f'{minimum} or more'
        raise argument_error(name, f'a number {bounds}', value)
    return number


def arg_list(args: dict, name: str) -> list[str]:
    value = args.get(name)
    if value is None or value == '':
        return []
    if isinstance(value, (list, tuple)):
        items = [str(v).strip() for v in value]
    else:
        text = str(value).strip()
        if text.startswith('['):
            try:
                items = [str(v).strip() for v in json.loads(text)]
            except ValueError:
                items = text.split(',')
        else:
            items = text.split(',')
    return [item.strip() for item in items if item.strip()]


def arg_choice(args: dict, name: str, choices: Iterable[str], default: str) -> str:
    value = arg_text(args, name, default=default)
    for choice in choices:
        if value.lower() == choice.lower():
            return choice
    raise argument_error(name, 'one of ' + ', '.join(choices), value)


def mailbox_arg(client: GraphClient, args: dict, name: str = 'user_id') -> str:
    """The mailbox a command acts on; falls back to the fetch mailbox like the existing integration."""
    user = arg_text(args, name) or client.default_user
    if not user:
        raise MailError(f"Missing argument '{name}': give the mailbox (UPN or user id), or configure "
                        "'Email address from which to fetch incidents'.")
    if ',' in user:
        raise argument_error(name, 'one mailbox', user)
    check_mailbox(user, name)
    return user


def check_mailbox(user: str, argument: str) -> None:
    """A mailbox (UPN, address or object id) as one path segment; '%' and '?' are in neither, so they are refused
    rather than encoded ('#' is kept: guest UPNs contain #EXT#)."""
    if '%' in user or '?' in user:
        raise argument_error(argument, 'a mailbox (user principal name or user id)', user)
    path_segment(user, argument, safe='@')


def arg_id(args: dict, name: str, required: bool = True) -> str:
    """An id argument, refused (naming the argument) before any request when it cannot be one path segment."""
    value = arg_text(args, name, required=required)
    if value:
        encode_id(value, name)
    return value


# ================================================================================ PARSERS (Graph JSON -> context)
MESSAGE_FIELDS = {
    'id': 'ID', 'createdDateTime': 'Created', 'lastModifiedDateTime': 'LastModifiedTime',
    'receivedDateTime': 'ReceivedTime', 'sentDateTime': 'SendTime', 'categories': 'Categories',
    'hasAttachments': 'HasAttachments', 'subject': 'Subject', 'isDraft': 'IsDraft', 'isRead': 'IsRead',
    'conversationId': 'ConversationID', 'internetMessageId': 'InternetMessageID',
    'internetMessageHeaders': 'Headers', 'flag': 'Flag', 'importance': 'Importance',
}
RECIPIENT_FIELDS = {'toRecipients': 'Recipients', 'ccRecipients': 'CCRecipients',
                    'bccRecipients': 'BCCRecipients', 'replyTo': 'ReplyTo'}


def parse_address(item: Optional[dict]) -> dict:
    address = (item or {}).get('emailAddress') or {}
    return {'Name': address.get('name', ''), 'Address': address.get('address', '')}


def parse_message(message: dict, user_id: str, include_body: bool = True) -> dict:
    parsed = {key: message[name] for name, key in MESSAGE_FIELDS.items() if name in message}
    for name, key in RECIPIENT_FIELDS.items():
        if name in message:
            parsed[key] = [parse_address(r) for r in message.get(name) or []]
    for name, key in (('sender', 'Sender'), ('from', 'From')):
        if message.get(name):
            parsed[key] = parse_address(message[name])
    if include_body and isinstance(message.get('body'), dict):
        parsed['Body'] = message['body'].get('content', '')
        parsed['BodyType'] = message['body'].get('contentType', '')
    parsed['UserID'] = user_id
    return parsed


# HTML to text runs on attacker-written mail inside fetch, so every step is linear in the body's length: each
# hidden part is one alternative of one regex that always matches once it has started (an unclosed one runs to the
# body's end, as in a browser), so no opening is ever rescanned; tags are matched up to the next '<' so an unclosed
# '<' costs one scan. Case is folded for ASCII only: '<ſcript>' is no script to a browser.
HIDDEN_PART = re.compile(
    r'<(?=[!?stin])(?:'  # the look-ahead only makes a run of '<' cheap: it names the first letters below
    r'!--(?:-?>|.*?(?:--!?>|\Z))'  # a comment, also the '<!-->' and '--!>' forms that close it early
    r'|[!?][^>]*>?'  # a bogus comment (<!DOCTYPE, <![CDATA[, <?xml): it ends at its first '>'
    r'|(script|style|title|iframe|noembed|noframes)(?=[\s/>]|\Z).*?(?:</\1[^>]*>?|\Z))',  # raw text, never shown
    re.I | re.A | re.S)
LINE_BREAK_TAG = re.compile(r'<br\b[^<>]*>|</(?:p|div|tr|li|h[1-6])\s*>', re.I)
ANY_TAG = re.compile(r'<[^<>]+>')
DECIMAL_CHARACTER_REFERENCE = re.compile(r'&#([0-9]+)')
# NUL and the other C0 controls but tab and line breaks: a browser shows none, and a NUL cuts the text short in
# tools that read it as a C string, so they are dropped (a written &#0; is already U+FFFD after unescape).
CONTROL_CHARACTERS = dict.fromkeys([c for c in range(32) if chr(c) not in '\t\n\r'] + [127])


def bounded_decimal_reference(match: re.Match) -> str:
    """A decimal reference html.unescape can convert: its int() refuses more than 4,300 digits (ValueError) and is
    slower than linear on long ones. Leading zeros go; 8 digits or more is past U+10FFFF, which is U+FFFD."""
    digits = match.group(1).lstrip('0') or '0'
    return f'&#{digits if len(digits) < 8 else "65533"}'


def without_hidden_parts(html: str) -> str:
    """The HTML without what a browser does not show as text: comments, bogus comments, and elements whose content is
    raw text (<script>, <style>, <title>, ...), so that a '<script>' written inside '<![CDATA[' or a comment hides
    nothing. <head> is an ordinary tag here: a browser moves any text written in it into the body."""
    return HIDDEN_PART.sub(' ', html)


def html_to_text(html: str) -> str:
    """A readable plain-text version of an HTML body (for incident details), without a second Graph call."""
    import html as html_lib
    text = LINE_BREAK_TAG.sub('\n', without_hidden_parts(html or ''))
    text = html_lib.unescape(DECIMAL_CHARACTER_REFERENCE.sub(bounded_decimal_reference, ANY_TAG.sub('', text)))
    text = text.translate(CONTROL_CHARACTERS)
    return re.sub(r'\n\s*\n+', '\n\n', re.sub(r'[ \t\r\f\v]+', ' ', text)).strip()


MESSAGE_TABLE_COLUMNS = ['ID', 'Subject', 'SendTime', 'Sender', 'From', 'Recipients', 'HasAttachments']


def message_table_row(parsed: dict) -> dict:
    return {**parsed, 'Sender': (parsed.get('Sender') or {}).get('Address', ''),
            'From': (parsed.get('From') or {}).get('Address', ''),
            'Recipients': [r.get('Address') for r in parsed.get('Recipients') or []]}


def parse_folder(folder: dict) -> dict:
    return {'ID': folder.get('id'), 'DisplayName': folder.get('displayName'),
            'ParentFolderID': folder.get('parentFolderId'), 'ChildFolderCount': folder.get('childFolderCount'),
            'TotalItemCount': folder.get('totalItemCount'), 'UnreadItemCount': folder.get('unreadItemCount')}


FOLDER_TABLE_COLUMNS = ['DisplayName', 'ID', 'ParentFolderID', 'ChildFolderCount', 'TotalItemCount', 'UnreadItemCount']
MESSAGE_CONTEXT_KEY = 'MSGraphMail(val.ID && val.ID == obj.ID)'
NEXT_PAGE_CONTEXT_KEY = "MSGraphMail(val.NextPage.indexOf('http')>=0)"
FOLDER_CONTEXT_KEY = 'MSGraphMail.Folders(val.ID && val.ID === obj.ID)'


# ================================================================================ FOLDERS
WELL_KNOWN_FOLDERS = {
    'archive': 'archive', 'conversation history': 'conversationhistory', 'deleted items': 'deleteditems',
    'drafts': 'drafts', 'inbox': 'inbox', 'junk email': 'junkemail', 'outbox': 'outbox', 'sent items': 'sentitems',
    'msgfolderroot': 'msgfolderroot', 'deleteditems': 'deleteditems', 'junkemail': 'junkemail',
    'sentitems': 'sentitems', 'conversationhistory': 'conversationhistory', 'root': 'msgfolderroot',
}
FOLDER_ID_PATTERN = re.compile(r'^[A-Za-z0-9+/=_-]{40,}$')
FOLDER_ID_PREFIXES = ('AAMk', 'AQMk')


def looks_like_folder_id(value: str) -> bool:
    """Graph folder ids are long base64 strings that start with AAMk/AQMk; a long single-word display name is not."""
    return bool(FOLDER_ID_PATTERN.match(value)) and (value.startswith(FOLDER_ID_PREFIXES) or len(value) >= 100)


def split_folder_path(path: str) -> list[str]:
    return [segment.strip() for segment in re.split(r'[/\\]', path) if segment.strip()]


def odata_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def child_folder_query(user: str, parent: str, name: str) -> tuple[str, dict]:
    """(path, query) that lists the child folders of `parent` named `name`."""
    path = f'{user_path(user)}/mailFolders' if parent == 'msgfolderroot' else \
        f'{folder_path(user, parent)}/childFolders'
    return path, {'$filter': f'displayName eq {odata_quote(name)}', '$top': '100'}


def folder_named(page: dict, name: str) -> Optional[dict]:
    """The folder of a page of folders whose display name is `name` (case-insensitive)."""
    return next((f for f in page.get('value') or [] if isinstance(f, dict) and f.get('id')
                 and str(f.get('displayName', '')).lower() == name.lower()), None)


def find_child_folder(client: GraphClient, user: str, parent: str, name: str) -> Optional[dict]:
    """Finds a child folder by display name (case-insensitive), following every page of children."""
    path, query = child_folder_query(user, parent, name)
    for page in client.pages(path, params=query):
        found = folder_named(page, name)
        if found:
            return found
    return None


def folder_walk(folder: str) -> tuple[str, list[str], list[str]]:
    """Where the walk down a folder path starts (a well-known folder or the root), the part of the path that names
    that start, and the names to look up from there: `Inbox/Quarantine` is ('inbox', ['Inbox'], ['Quarantine'])."""
    segments = split_folder_path(folder)
    if not segments:
        raise MailError(f"Folder {folder!r} names no folder: give a folder id, a name like Inbox, or a path like "
                        "Inbox/Phishing.")
    start = WELL_KNOWN_FOLDERS.get(segments[0].lower())
    return (start, segments[:1], segments[1:]) if start else ('msgfolderroot', [], segments)


def folder_not_found(folder: str, user: str, walked: list[str], segment: str) -> MailError:
    where = '/'.join(walked) if walked else 'the mailbox root'
    return MailError(f"Folder path '{folder}' was not found in mailbox {user}: no folder named '{segment}' under "
                     f"{where}.")


def resolve_folder(client: GraphClient, user: str, folder: str) -> str:
    """Turns a folder id, a well-known name, a path like `Inbox/Phishing`, or the existing integration's
    comma list of ids into a folder id (or well-known alias) Graph accepts."""
    folder = (folder or '').strip()
    comma_ids = [part.strip() for part in folder.split(',') if part.strip()]
    if len(comma_ids) > 1 and all(looks_like_folder_id(part) for part in comma_ids):
        folder = comma_ids[-1]
    if not folder:
        raise MailError('Folder is empty.')
    alias = WELL_KNOWN_FOLDERS.get(folder.lower())
    if alias:
        return alias
    if looks_like_folder_id(folder) and not WELL_KNOWN_FOLDERS.get(split_folder_path(folder)[0].lower()):
        return folder
    current, walked, names = folder_walk(folder)
    for segment in names:
        found = find_child_folder(client, user, current, segment)
        if not found:
            raise folder_not_found(folder, user, walked, segment)
        current = found['id']
        walked.append(segment)
    return current


def folder_path(user: str, folder_id: str) -> str:
    return f'{user_path(user)}/mailFolders/{encode_id(folder_id)}'


def messages_path(user: str, folder_id: str = '') -> str:
    return f'{folder_path(user, folder_id)}/messages' if folder_id else f'{user_path(user)}/messages'


def message_path(user: str, message_id: str) -> str:
    return f'{user_path(user)}/messages/{encode_id(message_id)}'


def describe_graph_error(error: GraphError, what: str, permission: str) -> MailError:
    """Turns a Graph error into a sentence about the object the user asked for."""
    if error.status == 404 and error.code == 'ErrorInvalidUser':
        return MailError(f'The mailbox was not found ({error.code}: {error.graph_message}) while reading {what}.')
    if error.status == 404:
        return MailError(f'{what} was not found ({error.code}: {error.graph_message})')
    if error.status == 403:
        return MailError(f'Access to {what} was denied ({error.code}). The application needs the {permission} '
                         'application permission with admin consent, and access to this mailbox if an application '
                         'access policy or RBAC for Applications limits it.' +
                         (f' request-id: {error.request_id}' if error.request_id else ''))
    return MailError(f'{what}: {error}')


# ================================================================================ COMMANDS: AUTH AND TEST
def test_module_command(client: GraphClient, fetch: FetchSettings) -> str:
    """'ok' when a token is obtained and the fetch mailbox and folder (if configured) are readable.
    Token errors already say which credential failed and how to fix it."""
    client.tokens.token()
    if fetch.enabled or fetch.mailbox:
        parse_first_fetch(fetch.first_fetch, utc_now())  # a typo here would fail every fetch, so test-module says so
    if not fetch.mailbox:
        if fetch.enabled:
            raise MailError("Fetch is enabled but 'Email address from which to fetch incidents' (mailbox_to_fetch) is empty.")
        return 'ok'
    try:
        folder_id = resolve_folder(client, fetch.mailbox, fetch.folder)
        client.get(folder_path(fetch.mailbox, folder_id), params={'$select': 'id,displayName'})
        client.get(messages_path(fetch.mailbox, folder_id), params={'$top': '1', '$select': 'id'})
    except GraphError as exc:
        raise MailError(f'The fetch mailbox {fetch.mailbox} or folder {fetch.folder!r} could not be read: '
                        f'{describe_graph_error(exc, f"mailbox {fetch.mailbox}", "Mail.ReadWrite")}') from None
    return 'ok'


def auth_reset_command(client: GraphClient, args: dict) -> dict:
    client.tokens.reset()
    return note_entry('Authorization was reset.', 'Authorization was reset. The next command requests a new token.')


# ================================================================================ COMMANDS: READING MAIL
GRAPH_MAX_PAGE_SIZE = 1000
MESSAGE_DETAIL_FIELDS = ('id,createdDateTime,lastModifiedDateTime,receivedDateTime,sentDateTime,categories,'
                         'hasAttachments,subject,isDraft,isRead,conversationId,internetMessageId,importance,flag,'
                         'sender,from,toRecipients,ccRecipients,bccRecipients,replyTo,internetMessageHeaders,bodyPreview')


def odata_params(odata: str) -> dict:
    """The `odata` argument ("$filter=...&$select=...") as query parameters; a leading '?' is allowed."""
    return dict(urllib.parse.parse_qsl(odata.strip().lstrip('?'), keep_blank_values=True)) if odata.strip() else {}


def list_emails_command(client: GraphClient, args: dict) -> dict:
    user = mailbox_arg(client, args)
    page_size = arg_int(args, 'page_size', 20, maximum=GRAPH_MAX_PAGE_SIZE)
    pages_to_pull = arg_int(args, 'pages_to_pull', 1)
    search = arg_text(args, 'search')
    next_page = arg_text(args, 'next_page')
    query = odata_params(arg_text(args, 'odata'))
    if search:
        clashing = [k for k in query if k.lower().lstrip('$') in ('filter', 'orderby')]
        if clashing:
            raise MailError(f"Arguments 'search' and 'odata' ({', '.join(clashing)}) cannot be combined: Microsoft Graph "
                            'does not allow $search together with $filter or $orderby. Use one of them.')
        query['$search'] = '"' + search.replace('\\', '\\\\').replace('"', '\\"') + '"'
    query.setdefault('$top', str(page_size))
    folder = arg_text(args, 'folder_id')
    if next_page:
        check_next_page(client, next_page, user, bool(folder))
    try:
        path = next_page or messages_path(user, resolve_folder(client, user, folder) if folder else '')
        messages, link = [], None
        for page in client.pages(path, params=None if next_page else query, max_pages=pages_to_pull):
            messages += page.get('value', [])
            link = page.get('@odata.nextLink')
    except GraphError as exc:
        what = f'Folder {folder} in mailbox {user}' if folder else f'Mailbox {user}'
        raise describe_graph_error(exc, what, 'Mail.Read') from None
    parsed = [parse_message(m, user) for m in messages]
    context: dict = {MESSAGE_CONTEXT_KEY: parsed}
    readable = markdown_table(f'Total of {len(parsed)} mails received', [message_table_row(p) for p in parsed],
                              MESSAGE_TABLE_COLUMNS)
    if link:
        context[NEXT_PAGE_CONTEXT_KEY] = {'NextPage': link}
        readable += ('\nMore mails are available: run the command again with next_page set to MSGraphMail.NextPage:\n'
                     f'`next_page="{link}"`\n')
    return note_entry(messages, readable, context)


def check_next_page(client: GraphClient, link: str, user: str, in_folder: bool) -> None:
    """A next_page link is followed with the app's token, so it must be an absolute https link on the configured
    Graph host to the collection this command lists: /v1.0/users/{user}/messages, or .../mailFolders/{id}/messages
    when folder_id is given. Anything else (a relative path, another resource, dot segments) is refused."""
    expected = f"/{GRAPH_API_VERSION}/users/{user}/{'mailFolders/{folder}/' if in_folder else '[mailFolders/{folder}/]'}messages"
    problem = f'an absolute https link returned in MSGraphMail.NextPage for {expected}'
    parsed = urllib.parse.urlparse(link)
    graph = urllib.parse.urlparse(client.endpoints.graph_base)
    segments = parsed.path.split('/')
    if parsed.scheme != 'https' or parsed.netloc.lower() != graph.netloc.lower() or parsed.fragment \
            or parsed.params or '\\' in parsed.path:
        raise argument_error('next_page', problem, link)
    decoded = [urllib.parse.unquote(s) for s in segments]
    if any(s in ('.', '..') or '/' in s or '\\' in s for s in decoded[1:]):
        raise argument_error('next_page', problem, link)
    in_a_folder = ['', GRAPH_API_VERSION, 'users', None, 'mailFolders', None, 'messages']
    shapes = [in_a_folder] if in_folder else [in_a_folder, ['', GRAPH_API_VERSION, 'users', None, 'messages']]
    if not any(len(decoded) == len(shape) and all(want is None or got.lower() == want.lower()
                                                  for got, want in zip(decoded, shape)) for shape in shapes):
        raise argument_error('next_page', problem, link)
    if decoded[3].lower() != user.lower():
        raise argument_error('next_page', f'a link for the mailbox {user} (user_id)', link)


def get_email_command(client: GraphClient, args: dict) -> dict:
    user = mailbox_arg(client, args)
    message_id = arg_id(args, 'message_id')
    include_body = arg_bool(args, 'get_body', False)
    query = {'$select': message_select(MESSAGE_DETAIL_FIELDS, client.endpoints.capabilities) + (',body' if include_body else '')}
    query.update(odata_params(arg_text(args, 'odata')))
    try:
        message = client.get(message_path(user, message_id), params=query)
    except GraphError as exc:
        raise describe_graph_error(exc, f'Message {message_id} in mailbox {user}', 'Mail.Read') from None
    parsed = parse_message(message, user, include_body=include_body)
    readable = markdown_table(f'Mail {message_id} in {user}', [message_table_row(parsed)], MESSAGE_TABLE_COLUMNS)
    if include_body:
        readable += readable_body(parsed)
    return note_entry(message, readable, {MESSAGE_CONTEXT_KEY: parsed})


READABLE_BODY_MAX_CHARS = 50_000


def readable_body(parsed: dict) -> str:
    """The body as text in a fenced block (longer than any backtick run in it, so mail text cannot end the block
    and render as markdown); capped, the whole body stays in the context."""
    body = parsed.get('Body') or ''
    text = html_to_text(body) if str(parsed.get('BodyType', '')).lower() == 'html' else body
    note = ''
    if len(text) > READABLE_BODY_MAX_CHARS:
        text, note = text[:READABLE_BODY_MAX_CHARS], (f'\n(first {READABLE_BODY_MAX_CHARS:,} characters; the whole body '
                                                      'is in MSGraphMail.Email.Body)\n')
    fence = '`' * max(3, max((len(run) for run in re.findall(r'`+', text)), default=0) + 1)
    return f'\n#### Body\n{fence}text\n{text}\n{fence}\n{note}'


ATTACHMENT_LIST_FIELDS = 'id,name,contentType,size,isInline,lastModifiedDateTime'
FILE_ATTACHMENT = '#microsoft.graph.fileAttachment'
ITEM_ATTACHMENT = '#microsoft.graph.itemAttachment'
REFERENCE_ATTACHMENT = '#microsoft.graph.referenceAttachment'
MESSAGE_TYPE = '#microsoft.graph.message'
# Meeting requests, responses and sharing invitations derive from message: an attached one is an attached mail.
MESSAGE_ITEM_TYPES = frozenset({MESSAGE_TYPE, '#microsoft.graph.eventMessage', '#microsoft.graph.eventMessageRequest',
                                '#microsoft.graph.eventMessageResponse', '#microsoft.graph.calendarSharingMessage'})


def attachments_path(user: str, message_id: str) -> str:
    return f'{message_path(user, message_id)}/attachments'


def list_message_attachments(client: GraphClient, user: str, message_id: str) -> list[dict]:
    """Attachment metadata without contentBytes, so a 100 MB attachment is not downloaded to list it."""
    attachments: list[dict] = []
    for page in client.pages(attachments_path(user, message_id), params={'$select': ATTACHMENT_LIST_FIELDS}):
        attachments += page.get('value', [])
    return attachments


def list_attachments_command(client: GraphClient, args: dict) -> dict:
    user = mailbox_arg(client, args)
    message_id = arg_id(args, 'message_id')
    try:
        attachments = list_message_attachments(client, user, message_id)
    except GraphError as exc:
        raise describe_graph_error(exc, f'Message {message_id} in mailbox {user}', 'Mail.Read') from None
    rows = [{'ID': a.get('id'), 'Name': a.get('name') or a.get('id'), 'Type': a.get('contentType'),
             'Size': a.get('size'), 'IsInline': a.get('isInline'),
             'AttachmentType': str(a.get('@odata.type', '')).rsplit('.', 1)[-1]} for a in attachments]
    context = {'MSGraphMailAttachment(val.ID === obj.ID)': {'ID': message_id, 'Attachment': rows, 'UserID': user}}
    readable = markdown_table(f'Total of {len(rows)} attachments found in message {message_id}', rows,
                              ['ID', 'Name', 'Type', 'Size', 'IsInline'])
    return note_entry(attachments, readable, context)


MAX_FILE_NAME_BYTES = 200       # file systems allow 255 bytes; room for a ' (1)' suffix and the fetch prefix
MAX_EXTENSION_BYTES = 16


def clean_file_name(name: str) -> str:
    """No path parts, no control or invisible format characters: a right-to-left override would show
    `invoice<RLO>fdp.exe` as `invoiceexe.pdf` in the War Room."""
    base = re.split(r'[\\/]', name or '')[-1]
    base = ''.join('_' if unicodedata.category(c) == 'Cc' else c for c in base if unicodedata.category(c) != 'Cf')
    base = re.sub(r'[<>:"|?*]', '_', base).strip().lstrip('.')
    return cap_file_name(base)


def cap_file_name(name: str, limit: int = MAX_FILE_NAME_BYTES) -> str:
    """At most `limit` bytes of UTF-8 (file systems count bytes: 200 CJK characters are 600), keeping a short
    extension; the cut never splits a character."""
    if len(name.encode()) <= limit:
        return name
    stem, extension = os.path.splitext(name)
    extension = extension if len(extension.encode()) <= MAX_EXTENSION_BYTES else ''
    room = limit - len(extension.encode())
    return stem.encode()[:room].decode(errors='ignore') + extension


def safe_attachment_name(name: str, fallback: str) -> str:
    """A display name without path parts or control characters; a long name keeps its extension."""
    return clean_file_name(name) or clean_file_name(str(fallback).replace('/', '-')) or 'attachment'



def attachment_kind(attachment: dict) -> str:
    return str(attachment.get('@odata.type') or '')


def download_attachment_file(client: GraphClient, user: str, message_id: str, attachment: dict,
                             name: str) -> dict:
    file_id, path = new_file_path()
    client.download(f"{attachments_path(user, message_id)}/{encode_id(attachment['id'])}/$value", path,
                    expected_size=attachment.get('size') if attachment_kind(attachment) == FILE_ATTACHMENT else None)
    return file_entry(file_id, name)


def attachment_entries(client: GraphClient, user: str, message_id: str, attachment: dict, as_eml: bool) -> list[dict]:
    kind = attachment_kind(attachment)
    name = safe_attachment_name(attachment.get('name') or '', attachment.get('id', 'attachment'))
    if kind == FILE_ATTACHMENT:
        return [download_attachment_file(client, user, message_id, attachment, name)]
    if kind == ITEM_ATTACHMENT and as_eml:
        eml_name = name if name.lower().endswith('.eml') else f'{name}.eml'
        return [download_attachment_file(client, user, message_id, attachment, eml_name)]
    if kind == ITEM_ATTACHMENT:
        expanded = client.get(f"{attachments_path(user, message_id)}/{encode_id(attachment['id'])}",
                              params={'$expand': 'microsoft.graph.itemattachment/item'})
        item = expanded.get('item') or {}
        if item.get('@odata.type', MESSAGE_TYPE) not in MESSAGE_ITEM_TYPES:
            return [note_entry(expanded, f"Attachment '{name}' is an attached {item.get('@odata.type')}; only attached "
                                         'messages are supported.')]
        parsed = parse_message(item, user)
        parsed['ID'] = parsed.get('ID') or attachment['id']
        readable = markdown_table(f"Attached message '{name}'", [message_table_row(parsed)], MESSAGE_TABLE_COLUMNS)
        return [note_entry(item, readable, {MESSAGE_CONTEXT_KEY: parsed})]
    if kind == REFERENCE_ATTACHMENT:
        return [note_entry(attachment, f"Attachment '{name}' is a link to a cloud file; it has no content to download.")]
    return [note_entry(attachment, f"Attachment '{name}' has the unsupported type {kind or 'unknown'}.")]


def find_attachment(client: GraphClient, user: str, message_id: str, attachment_id: str) -> dict:
    """One attachment's metadata, from the message's attachment list (whose $select Graph honours). A GET of the
    single attachment is never used for it: Graph may ignore $select there and send the whole contentBytes."""
    wanted = url_form_of_id(attachment_id)
    for attachment in list_message_attachments(client, user, message_id):
        if url_form_of_id(attachment.get('id')) == wanted:  # Graph's own ids are compared, never gated: a
            return attachment                                # malformed one in the list is simply not the match
    raise GraphError(404, 'ErrorItemNotFound', 'The message has no attachment with this id.')


def get_attachment_command(client: GraphClient, args: dict) -> list[dict]:
    user = mailbox_arg(client, args)
    message_id = arg_id(args, 'message_id')
    attachment_id = arg_id(args, 'attachment_id', required=False)
    as_eml = arg_bool(args, 'should_download_message_attachment', False)
    what = f'Attachment {attachment_id} of message {message_id}' if attachment_id else f'Message {message_id}'
    try:
        if attachment_id:
            attachments = [find_attachment(client, user, message_id, attachment_id)]
        else:
            attachments = list_message_attachments(client, user, message_id)
        entries = [e for a in attachments for e in attachment_entries(client, user, message_id, a, as_eml)]
    except GraphError as exc:
        raise describe_graph_error(exc, f'{what} in mailbox {user}', 'Mail.Read') from None
    return entries or [note_entry([], f'Message {message_id} has no attachments.')]


def get_email_as_eml_command(client: GraphClient, args: dict) -> dict:
    user = mailbox_arg(client, args)
    message_id = arg_id(args, 'message_id')
    file_id, path = new_file_path()
    try:
        client.download(f'{message_path(user, message_id)}/$value', path)
    except GraphError as exc:
        raise describe_graph_error(exc, f'Message {message_id} in mailbox {user}', 'Mail.Read') from None
    return file_entry(file_id, safe_attachment_name(message_id.replace('/', '-') + '.eml', 'message.eml'))


# ================================================================================ COMMANDS: FOLDERS
def collect(client: GraphClient, path: str, limit: int, params: Optional[dict] = None) -> list[dict]:
    """Up to `limit` items of a collection, following pages as needed."""
    items: list[dict] = []
    query = {**(params or {}), '$top': str(min(limit, GRAPH_MAX_PAGE_SIZE))}
    for page in client.pages(path, params=query):
        items += page.get('value', [])
        if len(items) >= limit:
            break
    return items[:limit]


def folders_entry(folders: list[dict], title: str) -> dict:
    parsed = [parse_folder(f) for f in folders]
    return note_entry(folders, markdown_table(title, parsed, FOLDER_TABLE_COLUMNS), {FOLDER_CONTEXT_KEY: parsed})


def list_folders_command(client: GraphClient, args: dict) -> dict:
    user = mailbox_arg(client, args)
    limit = arg_int(args, 'limit', 20)
    try:
        folders = collect(client, f'{user_path(user)}/mailFolders', limit)
    except GraphError as exc:
        raise describe_graph_error(exc, f'mailbox {user}', 'Mail.Read') from None
    return folders_entry(folders, f'Mail folder list for {user}')


def list_child_folders_command(client: GraphClient, args: dict) -> dict:
    user = mailbox_arg(client, args)
    parent = arg_text(args, 'parent_folder_id', required=True)
    limit = arg_int(args, 'limit', 20)
    try:
        parent_id = resolve_folder(client, user, parent)
        folders = collect(client, f'{folder_path(user, parent_id)}/childFolders', limit)
    except GraphError as exc:
        raise describe_graph_error(exc, f'Folder {parent} in mailbox {user}', 'Mail.Read') from None
    return folders_entry(folders, f'Child folders of {parent} for {user}')


def create_folder_command(client: GraphClient, args: dict) -> dict:
    user = mailbox_arg(client, args)
    name = arg_text(args, 'new_folder_name', required=True)
    parent = arg_text(args, 'parent_folder_id')
    try:
        path = f'{user_path(user)}/mailFolders'
        if parent:
            path += f'/{encode_id(resolve_folder(client, user, parent))}/childFolders'
        folder = client.post(path, {'displayName': name})
    except GraphError as exc:
        if exc.code == 'ErrorFolderExists':
            raise MailError(f"A folder named '{name}' already exists under {parent or 'the mailbox root'} of {user}.") from None
        raise describe_graph_error(exc, f'Folder {parent or "root"} in mailbox {user}', 'Mail.ReadWrite') from None
    return folders_entry([folder], f"Mail folder '{name}' was created")


def update_folder_command(client: GraphClient, args: dict) -> dict:
    user = mailbox_arg(client, args)
    folder = arg_text(args, 'folder_id', required=True)
    new_name = arg_text(args, 'new_display_name', required=True)
    try:
        folder_id = resolve_folder(client, user, folder)
        updated = client.patch(folder_path(user, folder_id), {'displayName': new_name})
    except GraphError as exc:
        raise describe_graph_error(exc, f'Folder {folder} in mailbox {user}', 'Mail.ReadWrite') from None
    return folders_entry([updated], f"Mail folder '{folder}' was renamed to '{new_name}'")


def delete_folder_command(client: GraphClient, args: dict) -> dict:
    user = mailbox_arg(client, args)
    folder = arg_text(args, 'folder_id', required=True)
    try:
        folder_id = resolve_folder(client, user, folder)
        client.delete(folder_path(user, folder_id))
    except GraphError as exc:
        raise describe_graph_error(exc, f'Folder {folder} in mailbox {user}', 'Mail.ReadWrite') from None
    return note_entry(f'The folder {folder} was deleted.', f'The folder {folder} was deleted from {user}.')


# ================================================================================ COMMANDS: CHANGING MAIL
def move_email_command(client: GraphClient, args: dict) -> dict:
    user = mailbox_arg(client, args)
    message_id = arg_id(args, 'message_id')
    destination = arg_text(args, 'destination_folder_id', required=True)
    try:
        destination_id = resolve_folder(client, user, destination)
        moved = client.post(f'{message_path(user, message_id)}/move', {'destinationId': destination_id})
    except GraphError as exc:
        raise describe_graph_error(exc, f'Message {message_id} in mailbox {user}', 'Mail.ReadWrite') from None
    row = {'ID': moved.get('id'), 'DestinationFolderID': moved.get('parentFolderId') or destination_id, 'UserID': user}
    readable = markdown_table('The email was moved successfully. Updated email data:', [row],
                              ['ID', 'DestinationFolderID', 'UserID'])
    return note_entry(moved, readable, {'MSGraphMail.MovedEmails(val.ID === obj.ID)': row})


def delete_email_command(client: GraphClient, args: dict) -> dict:
    user = mailbox_arg(client, args)
    message_id = arg_id(args, 'message_id')
    try:
        client.delete(message_path(user, message_id))
    except GraphError as exc:
        raise describe_graph_error(exc, f'Message {message_id} in mailbox {user}', 'Mail.ReadWrite') from None
    readable = f'Message {message_id} was deleted from mailbox {user} (a soft delete: recoverable from Recoverable Items).'
    return note_entry(readable, readable)


def batch_failure_text(answer: dict) -> str:
    body = answer.get('body') or {}
    error = body.get('error') if isinstance(body, dict) else None
    if isinstance(error, dict):
        return f"HTTP {answer.get('status')} {error.get('code', '')}: {error.get('message', '')}".strip()
    return f"HTTP {answer.get('status')}"


def update_email_status_command(client: GraphClient, args: dict) -> list[dict]:
    """Marks many messages read or unread with $batch: one request per 20 ids, results per id."""
    user = mailbox_arg(client, args)
    message_ids = arg_list(args, 'message_ids')
    if not message_ids:
        raise MailError("Missing argument 'message_ids': give one or more message ids, comma separated.")
    status = arg_choice(args, 'status', ('Read', 'Unread'), '')
    for message_id in message_ids:
        encode_id(message_id, 'message_ids')
    unique_ids = list(dict.fromkeys(message_ids))
    items = [BatchItem(id=str(i), method='PATCH', url=message_path(user, mid), body={'isRead': status == 'Read'})
             for i, mid in enumerate(unique_ids)]
    answers = client.batch(items)
    rows = []
    for item, message_id in zip(items, unique_ids):
        answer = answers.get(item.id, {})
        ok = 200 <= int(answer.get('status') or 0) < 300
        rows.append({'ID': message_id, 'Status': status, 'Succeeded': ok, 'Error': '' if ok else batch_failure_text(answer)})
    failed = [r for r in rows if not r['Succeeded']]
    readable = markdown_table(f'{len(rows) - len(failed)} of {len(rows)} messages marked as {status} in {user}',
                              rows, ['ID', 'Status', 'Succeeded', 'Error'])
    entries = [note_entry(rows, readable, {'MSGraphMail.EmailStatus(val.ID && val.ID === obj.ID)': rows})]
    if failed:
        hint = (' The application needs the Mail.ReadWrite application permission for this mailbox.'
                if any(r['Error'].startswith('HTTP 403') for r in failed) else '')
        entries.append(error_entry(f'{len(failed)} of {len(rows)} messages in mailbox {user} could not be marked as '
                                   f'{status}: ' + '; '.join(f"{r['ID']}: {r['Error']}" for r in failed[:10]) + hint))
    return entries


# ================================================================================ COMMANDS: RULES
RULE_FIELDS = ['id', 'displayName', 'sequence', 'isEnabled', 'hasError', 'isReadOnly', 'conditions', 'actions', 'exceptions']
RULE_CONTEXT_KEY = 'MSGraphMail.Rule(val.id === obj.id)'
MAILBOX_SETTINGS_CONTEXT_KEY = 'MSGraphMail.MailboxSettings(val.userId === obj.userId)'
MAILTIPS_CONTEXT_KEY = 'MSGraphMail.MailTips(val.emailAddress.address === obj.emailAddress.address)'
MAPI_CAVEAT = ('Rules created through MAPI (for example hidden rules) may not be listed by Graph: a clean result is '
               'not proof that the mailbox has no malicious rule.')

# What each property of Graph v1.0's messageRuleActions and messageRulePredicates takes.
RULE_ACTION_KINDS = {
    'assignCategories': 'texts', 'copyToFolder': 'folder', 'delete': 'bool', 'forwardAsAttachmentTo': 'recipients',
    'forwardTo': 'recipients', 'markAsRead': 'bool', 'markImportance': 'importance', 'moveToFolder': 'folder',
    'permanentDelete': 'bool', 'redirectTo': 'recipients', 'stopProcessingRules': 'bool',
}
RULE_PREDICATE_KINDS = {
    'bodyContains': 'texts', 'bodyOrSubjectContains': 'texts', 'categories': 'texts', 'fromAddresses': 'recipients',
    'hasAttachments': 'bool', 'headerContains': 'texts', 'importance': 'importance', 'isApprovalRequest': 'bool',
    'isAutomaticForward': 'bool', 'isAutomaticReply': 'bool', 'isEncrypted': 'bool', 'isMeetingRequest': 'bool',
    'isMeetingResponse': 'bool', 'isNonDeliveryReport': 'bool', 'isPermissionControlled': 'bool',
    'isReadReceipt': 'bool', 'isSigned': 'bool', 'isVoicemail': 'bool', 'messageActionFlag': 'messageActionFlag',
    'notSentToMe': 'bool', 'recipientContains': 'texts', 'senderContains': 'texts', 'sensitivity': 'sensitivity',
    'sentCcMe': 'bool', 'sentOnlyToMe': 'bool', 'sentToAddresses': 'recipients', 'sentToMe': 'bool',
    'sentToOrCcMe': 'bool', 'subjectContains': 'texts', 'withinSizeRange': 'sizeRange',
}
RULE_ENUMS = {
    'importance': ('low', 'normal', 'high'),
    'sensitivity': ('normal', 'personal', 'private', 'confidential'),
    'messageActionFlag': ('any', 'call', 'doNotForward', 'followUp', 'fyi', 'forward', 'noResponseNecessary', 'read',
                          'reply', 'replyToAll', 'review'),
}
# Exchange gives all inbox rules of a mailbox 256 KB at most; a larger argument cannot be a real rule.
RULE_JSON_MAX_CHARS = 256 * 1024
GRAPH_INT32_MAX = 2 ** 31 - 1
RULE_UPDATE_ARGUMENTS = ('display_name', 'sequence', 'is_enabled', 'is_read_only', 'actions', 'conditions', 'exceptions')

MAILTIPS_OPTIONS = ('automaticReplies, mailboxFullStatus, customMailTip, deliveryRestriction, externalMemberCount, '
                    'maxMessageSize, moderationStatus, recipientScope, recipientSuggestions, totalMemberCount')
RECIPIENT_SCOPE_FLAGS = (('internal', 1), ('external', 2), ('externalPartner', 4), ('externalNonPartner', 8))
MAILTIPS_MAX_ADDRESSES = 100
READABLE_TEXT_MAX_CHARS = 300


def rules_path(user: str) -> str:
    return f'{user_path(user)}/mailFolders/inbox/messageRules'


RULES_ELSEWHERE = ('Manage inbox rules in Outlook on the web or with Exchange Online PowerShell '
                   '(Get-InboxRule, Remove-InboxRule) instead.')


def require_inbox_rules(client: GraphClient) -> None:
    """Refuses a rules command before any request where the cloud's Graph has no messageRules (21Vianet)."""
    require_capability(client.endpoints, 'inbox_rules', 'Inbox rules (mailFolder/messageRules)', RULES_ELSEWHERE)


def rule_path(user: str, rule_id: str) -> str:
    return f'{rules_path(user)}/{encode_id(rule_id)}'


def without_odata(item: dict) -> dict:
    return {k: v for k, v in item.items() if not str(k).startswith('@odata.')}


def rule_recipient(item: Any) -> Optional[dict]:
    """A recipient given as an address or as Graph's {"emailAddress": {"address": ...}}; None if it is neither."""
    if isinstance(item, str):
        return {'emailAddress': {'address': item.strip()}} if is_email_address(item.strip()) else None
    address = item.get('emailAddress') if isinstance(item, dict) and set(item) == {'emailAddress'} else None
    if not isinstance(address, dict) or not set(address) <= {'address', 'name'} or \
            not isinstance(address.get('address'), str) or not is_email_address(address["address"].strip()):
        return None
    if 'name' in address and not isinstance(address['name'], str):
        return None
    return {'emailAddress': {**address, 'address': address['address'].strip()}}


def rule_value(argument: str, name: str, kind: str, value: Any) -> Any:
    """One action or predicate value, checked against its Graph type (a lone text or address becomes a list)."""
    def invalid(expected: str) -> MailError:
        shown = json.dumps(value)[:200] if not isinstance(value, str) else repr(value[:200])
        return MailError(f"Invalid argument '{argument}': '{name}' must be {expected}, got {shown}.")

    if kind == 'bool':
        if not isinstance(value, bool):
            raise invalid('true or false')
        return value
    if kind == 'texts':
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items or not all(isinstance(v, str) and v for v in items):
            raise invalid('a list of texts')
        return items
    if kind == 'recipients':
        items = [value] if isinstance(value, (str, dict)) else value
        recipients = [rule_recipient(v) for v in items] if isinstance(items, list) and items else [None]
        if not all(recipients):
            raise invalid('a list of email addresses (or {"emailAddress": {"address": ...}} objects)')
        return recipients
    if kind == 'folder':
        if not isinstance(value, str) or not value.strip():
            raise invalid('a folder id, a well-known folder name or a folder path')
        return value.strip()
    if kind == 'sizeRange':
        sizes = value if isinstance(value, dict) and value and set(value) <= {'minimumSize', 'maximumSize'} else None
        if sizes is None or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= GRAPH_INT32_MAX
                                    for v in sizes.values()) or \
                sizes.get('minimumSize', 0) > sizes.get('maximumSize', GRAPH_INT32_MAX):
            raise invalid('{"minimumSize": KB, "maximumSize": KB} with whole numbers, minimum not above maximum')
        return sizes
    choices = RULE_ENUMS[kind]
    match = next((c for c in choices if isinstance(value, str) and value.strip().lower() == c.lower()), None)
    if match is None:
        raise invalid('one of ' + ', '.join(choices))
    return match


def rule_json_arg(args: dict, name: str, kinds: dict[str, str], noun: str, allow_empty: bool) -> Optional[dict]:
    """A JSON object argument (actions, conditions, exceptions) checked against Graph's schema before any request."""
    raw = args.get(name)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, str):
        if len(raw) > RULE_JSON_MAX_CHARS:
            raise MailError(f"Invalid argument '{name}': {len(raw)} characters; a mailbox's rules share 256 KB at most.")
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise MailError(f"Invalid argument '{name}': not valid JSON ({exc}). Expected a JSON object such as "
                            f'{{"{next(iter(kinds))}": ...}}.') from None
        except RecursionError:
            raise MailError(f"Invalid argument '{name}': the JSON is nested too deeply.") from None
    else:
        value = raw
    if not isinstance(value, dict):
        raise MailError(f"Invalid argument '{name}': expected a JSON object of {noun}s, got {type(value).__name__}.")
    if not value and not allow_empty:
        raise MailError(f"Invalid argument '{name}': give at least one {noun}; an empty object does nothing.")
    unknown = [key for key in value if key not in kinds]
    if unknown:
        raise MailError(f"Invalid argument '{name}': unknown {noun} {str(unknown[0])[:100]!r}. Graph's {noun}s are: "
                        + ', '.join(sorted(kinds)) + '.')
    return {key: rule_value(name, key, kinds[key], item) for key, item in value.items()}


def rule_fields_from_args(args: dict, creating: bool) -> dict:
    """The messageRule JSON for the given arguments, validated as a whole before any request."""
    body: dict[str, Any] = {}
    if creating or arg_text(args, 'display_name'):
        body['displayName'] = arg_text(args, 'display_name', required=True)
    if creating or arg_text(args, 'sequence'):
        body['sequence'] = arg_int(args, 'sequence', 1, minimum=1, maximum=GRAPH_INT32_MAX)
    if creating or arg_text(args, 'is_enabled'):
        # Graph creates a rule disabled when isEnabled is left out; someone who creates a rule expects it to run.
        body['isEnabled'] = arg_bool(args, 'is_enabled', True)
    if not creating and arg_text(args, 'is_read_only'):
        body['isReadOnly'] = arg_bool(args, 'is_read_only')
    actions = rule_json_arg(args, 'actions', RULE_ACTION_KINDS, 'action', allow_empty=False)
    if creating and actions is None:
        raise MailError("Missing argument 'actions': give a JSON object of rule actions, for example "
                        '{"moveToFolder": "Inbox/Phishing", "stopProcessingRules": true}.')
    for name, value in (('actions', actions),
                        ('conditions', rule_json_arg(args, 'conditions', RULE_PREDICATE_KINDS, 'predicate', True)),
                        ('exceptions', rule_json_arg(args, 'exceptions', RULE_PREDICATE_KINDS, 'predicate', True))):
        if value is not None:
            body[name] = value
    if not body:
        raise MailError('Nothing to update: give at least one of ' + ', '.join(RULE_UPDATE_ARGUMENTS) + '.')
    return body


def folder_id_for_rule(client: GraphClient, user: str, folder: str) -> str:
    """Rule actions need a real folder id: a name or path is resolved, a well-known alias is looked up."""
    resolved = resolve_folder(client, user, folder)
    if resolved in WELL_KNOWN_FOLDERS.values():
        return client.get(folder_path(user, resolved), params={'$select': 'id'}).get('id') or resolved
    return resolved


def with_folder_ids(client: GraphClient, user: str, actions: Optional[dict]) -> Optional[dict]:
    if not actions:
        return actions
    return {key: folder_id_for_rule(client, user, value) if RULE_ACTION_KINDS[key] == 'folder' else value
            for key, value in actions.items()}


def parse_rule(rule: dict) -> dict:
    return {k: rule.get(k) for k in RULE_FIELDS if k in rule}


def rule_written_entry(rule: dict, title: str) -> dict:
    parsed = parse_rule(rule)
    row = {**parsed, 'actions': describe_rule_actions(parsed.get('actions') or {}, {})}
    readable = markdown_table(title, [row], ['id', 'displayName', 'isEnabled', 'sequence', 'actions'])
    return note_entry(without_odata(rule), readable, {RULE_CONTEXT_KEY: parsed})


def create_rule_command(client: GraphClient, args: dict) -> dict:
    require_inbox_rules(client)
    user = mailbox_arg(client, args)
    body = rule_fields_from_args(args, creating=True)
    try:
        body['actions'] = with_folder_ids(client, user, body['actions'])
        rule = client.post(rules_path(user), body)
    except GraphError as exc:
        raise describe_graph_error(exc, f'Inbox rules of {user}', 'MailboxSettings.ReadWrite') from None
    state = 'enabled' if rule.get('isEnabled', body['isEnabled']) else 'disabled'
    return rule_written_entry(rule, f"Rule '{body['displayName']}' was created ({state}) in mailbox {user}")


def update_rule_command(client: GraphClient, args: dict) -> dict:
    require_inbox_rules(client)
    user = mailbox_arg(client, args)
    rule_id = arg_id(args, 'rule_id')
    body = rule_fields_from_args(args, creating=False)
    try:
        if 'actions' in body:
            body['actions'] = with_folder_ids(client, user, body['actions'])
        rule = client.patch(rule_path(user, rule_id), body)
    except GraphError as exc:
        raise describe_graph_error(exc, f'Rule {rule_id} of mailbox {user}', 'MailboxSettings.ReadWrite') from None
    return rule_written_entry(rule, f"Rule {rule_id} of mailbox {user} was updated ({', '.join(body)})")


# ------------------------------------------------------------------ rule triage (business email compromise signs)
HIDING_FOLDERS = frozenset({'rss feeds', 'rss subscriptions', 'conversation history', 'archive', 'deleted items',
                            'junk email', 'notes', 'calendar'})
TEXT_PREDICATES = ('subjectContains', 'bodyContains', 'bodyOrSubjectContains', 'headerContains')
FORWARD_ACTIONS = (('forwardTo', 'forwards'), ('forwardAsAttachmentTo', 'forwards as attachment'),
                   ('redirectTo', 'redirects'))
FOLDER_ACTIONS = (('moveToFolder', 'moves'), ('copyToFolder', 'copies'))
SECURITY_WORDS = ('phish', 'hack', 'spam', 'suspicious', 'malicious', 'fake', 'helpdesk', 'help desk',
                  'do not click', "don't click", 'hijack', 'fraud', 'reset', 'password', 'compromis', 'security',
                  'sign-in', 'sign in', 'signin', 'unusual')
MONEY_WORDS = ('invoice', 'payment', 'payroll', 'wire', 'transfer', 'bank details', 'iban', 'ach', 'swift',
               'remittance', 'direct deposit', 'w2', 'w-2', 'docusign', 'wetransfer', 'rechnung', 'zahlung',
               'überweisung', 'virement', 'facture', 'factura', 'pago', 'paiement')
# A word matches at the start of a word and may go on (phish -> phishing); short codes must stand alone.
STANDALONE_WORDS = frozenset({'ach', 'w2', 'w-2', 'iban', 'swift', 'wire', 'pago', 'fake', 'spam', 'hack'})
SUFFIXED_STANDALONE = r'(?:s|ed|ing|er|ers)?'
MATCH_ALL_SIZE_KB = 1          # Graph's size range is in KB: a minimum below 1 KB (<= 1023 bytes) excludes nothing
UNBOUNDED_SIZE_KB = 150 * 1024  # Exchange Online's largest message
FOLDER_NOT_A_MAIL_FOLDER = ''   # folder_names value when Graph says the id is no mail folder


def word_pattern(words: Iterable[str]) -> re.Pattern:
    parts = [re.escape(w) + (SUFFIXED_STANDALONE + r'(?!\w)' if w in STANDALONE_WORDS else r'\w*') for w in words]
    return re.compile(r'(?<!\w)(' + '|'.join(parts) + ')', re.IGNORECASE)


SECURITY_WORD_PATTERN = word_pattern(SECURITY_WORDS)
MONEY_WORD_PATTERN = word_pattern(MONEY_WORDS)


@dataclass(frozen=True)
class TriageContext:
    """What a rule is judged against. `tenant_domains` None: unknown, so "outside the tenant" is not judged."""
    own_address: str = ''
    tenant_domains: Optional[frozenset] = None
    domains_unknown_why: str = ''
    folder_names: Optional[dict] = None   # folder id -> display name ('' = not a mail folder); unread ids absent


@dataclass
class RuleAssessment:
    suspicious: bool
    reasons: list[str]
    notes: list[str]
    forwards_to: list[str]


def recipient_addresses(value: Any) -> list[str]:
    """The addresses of a recipients list from Graph; a malformed item is skipped, never a failure."""
    addresses = []
    for item in value if isinstance(value, list) else []:
        email = item.get('emailAddress') if isinstance(item, dict) else None
        address = email.get('address') if isinstance(email, dict) else None
        if isinstance(address, str) and address.strip():
            addresses.append(address.strip())
    return addresses


def address_domain(address: str) -> str:
    return address.rpartition('@')[2].strip().lower().rstrip('.') if '@' in address else ''


def in_domains(domain: str, domains: Iterable[str]) -> bool:
    """Exact match only: a subdomain that is not itself one of the tenant's domains is routed outside the tenant
    (and can be taken over), so forwarding to it is forwarding outside."""
    return domain in set(domains)


def address_locality(address: str, context: TriageContext) -> str:
    """'internal', 'external' or 'unknown' for a forwarding target. The mailbox's own domain is always the tenant's."""
    domain = address_domain(address)
    if not domain:
        return 'unknown'
    own_domain = address_domain(context.own_address)
    if address.lower() == context.own_address.lower() or (own_domain and domain == own_domain):
        return 'internal'
    if context.tenant_domains is None:
        return 'unknown'
    return 'internal' if in_domains(domain, context.tenant_domains) else 'external'


def predicate_texts(conditions: dict) -> list[str]:
    texts = []
    for name in TEXT_PREDICATES:
        value = conditions.get(name)
        texts += [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)]
    return texts


def matched_words(pattern: re.Pattern, texts: list[str]) -> list[str]:
    return list(dict.fromkeys(m.group(1).lower()[:40] for text in texts for m in pattern.finditer(text)))


def has_no_conditions(conditions: Any) -> bool:
    if not isinstance(conditions, dict):
        return True
    return all(value in (None, False, '', [], {}) for key, value in conditions.items() if not key.startswith('@odata.'))


def name_problem(name: Any) -> str:
    visible = ''.join(c for c in str(name or '') if not unicodedata.category(c).startswith(('Z', 'C')))
    if not visible:
        return 'name is empty or invisible'
    if all(unicodedata.category(c).startswith(('P', 'S')) for c in visible):
        return f'name is punctuation only ({visible[:20]!r})'
    if len(set(visible.lower())) == 1:
        return f'name is one repeated character ({visible[:20]!r})'
    return ''


def matches_everything_trick(conditions: dict) -> str:
    if any('\x00' in text or '\\u0000' in text.lower() for text in predicate_texts(conditions)):
        return 'matches every message (a condition contains a NUL character)'
    size = conditions.get('withinSizeRange')
    if isinstance(size, dict) and isinstance(size.get('minimumSize'), int) and size['minimumSize'] < MATCH_ALL_SIZE_KB:
        maximum = size.get('maximumSize')
        if not isinstance(maximum, int) or maximum == 0 or maximum >= UNBOUNDED_SIZE_KB:
            return 'matches every message (size range starts below 1 KB)'
    return ''


def folder_label(folder_id: str, folder_names: dict) -> str:
    name = folder_names.get(folder_id)
    if name is None:
        return f'folder {folder_id[:16]}… (name could not be read)'
    return name or f'a folder that is not a mail folder ({folder_id[:16]}…)'


def assess_rule(rule: dict, context: TriageContext) -> RuleAssessment:
    """The signs of a malicious inbox rule (README "Inbox rule triage"), as short reasons. Pure: no I/O."""
    actions = rule.get('actions') if isinstance(rule.get('actions'), dict) else {}
    conditions = rule.get('conditions') if isinstance(rule.get('conditions'), dict) else {}
    folder_names = context.folder_names or {}
    reasons: list[str] = []
    notes: list[str] = []
    forwards_to: list[str] = []
    forwards_outside = False
    for action, verb in FORWARD_ACTIONS:
        targets = recipient_addresses(actions.get(action))
        forwards_to += targets
        outside = [a for a in targets if address_locality(a, context) == 'external']
        unknown = [a for a in targets if address_locality(a, context) == 'unknown']
        if outside:
            forwards_outside = True
            reasons.append(f"{verb} outside the tenant to {', '.join(outside)}")
        if unknown:
            why = context.domains_unknown_why if context.tenant_domains is None else 'not an internet address'
            notes.append(f"{verb} to {', '.join(unknown)}: external could not be judged ({why})")
    # Graph's flags are true/false; anything else (a "false" string) is no action, as Exchange would read it.
    marks_read = actions.get('markAsRead') is True
    deletes = actions.get('delete') is True or actions.get('permanentDelete') is True
    if actions.get('permanentDelete') is True:
        reasons.append('permanently deletes mail')
    elif actions.get('delete') is True:
        reasons.append('deletes mail')
    hiding = []
    for action, verb in FOLDER_ACTIONS:
        folder_id = actions.get(action)
        if isinstance(folder_id, str) and folder_id:
            name = folder_names.get(folder_id)
            if name == FOLDER_NOT_A_MAIL_FOLDER or (name and name.strip().lower() in HIDING_FOLDERS):
                hiding.append(f'{verb} mail to {folder_label(folder_id, folder_names)}')
            elif name is None:
                notes.append(f'{verb} mail to {folder_label(folder_id, folder_names)}')
    if hiding and marks_read:
        hiding[-1] += ' and marks it read'
    reasons += hiding
    if marks_read and not hiding and (deletes or forwards_outside):
        reasons.append('marks mail read')
    texts = predicate_texts(conditions)
    security = matched_words(SECURITY_WORD_PATTERN, texts)
    if security:
        reasons.append(f"filters on security words ({', '.join(security[:6])})")
    money = matched_words(MONEY_WORD_PATTERN, texts)
    if money and (deletes or forwards_outside or hiding):
        reasons.append(f"filters on money words ({', '.join(money[:6])})")
    moves = any(actions.get(a) for a, _ in FOLDER_ACTIONS)
    # Forwarding every message to the mailbox itself sends nothing anywhere: not the "everything" sign.
    forwards_away = [a for a in forwards_to if a.lower() != context.own_address.lower()]
    if has_no_conditions(rule.get('conditions')) and (deletes or moves or forwards_away):
        reasons.append('applies to every message (no conditions)')
    for problem in (matches_everything_trick(conditions), name_problem(rule.get('displayName'))):
        if problem:
            reasons.append(problem)
    return RuleAssessment(bool(reasons), reasons, notes, list(dict.fromkeys(forwards_to)))


def readable_folder_id(folder_id: Any) -> bool:
    """Whether a folder id from a rule can be read as one URL path segment (the gate every id goes through)."""
    try:
        return isinstance(folder_id, str) and bool(encode_id(folder_id))
    except MailError:
        return False


def rule_folder_ids(rules: Iterable[dict]) -> list[str]:
    """The distinct folder ids the rules move or copy to that can be read; any other stays unread (a note)."""
    ids = []
    for rule in rules:
        actions = rule.get('actions') if isinstance(rule.get('actions'), dict) else {}
        ids += [actions[a] for a, _ in FOLDER_ACTIONS if readable_folder_id(actions.get(a))]
    return list(dict.fromkeys(ids))


def folder_names_by_id(client: GraphClient, user: str, folder_ids: list[str]) -> dict[str, str]:
    """Display names of the folders rules move or copy to: each distinct id read once, several in one $batch.
    A folder Graph does not know as a mail folder maps to ''; one that could not be read is left out."""
    if not folder_ids:
        return {}
    if len(folder_ids) == 1:
        try:
            folder = client.get(folder_path(user, folder_ids[0]), params={'$select': 'displayName'})
            return {folder_ids[0]: str(folder.get('displayName') or '')}
        except GraphError as exc:
            return {folder_ids[0]: FOLDER_NOT_A_MAIL_FOLDER} if exc.status in (400, 404) else {}
        except (ThrottledError, TransportError):
            return {}   # the rules were read: their triage notes the folder as unread rather than failing
    items = [BatchItem(id=str(i), method='GET', url=f'{folder_path(user, fid)}?$select=displayName')
             for i, fid in enumerate(folder_ids)]
    answers = client.batch(items)
    names = {}
    for item, folder_id in zip(items, folder_ids):
        answer = answers.get(item.id) or {}
        status = int(answer.get('status') or 0)
        body = answer.get('body') if isinstance(answer.get('body'), dict) else {}
        if 200 <= status < 300:
            names[folder_id] = str(body.get('displayName') or '')
        elif status in (400, 404):
            names[folder_id] = FOLDER_NOT_A_MAIL_FOLDER
    return names


def parse_domain_list(value: Any) -> tuple[str, ...]:
    """The 'Tenant domains' parameter: domains separated by commas, spaces or new lines."""
    return tuple(d.strip().lower().rstrip('.') for d in re.split(r'[\s,;]+', str(value or '')) if d.strip())


DOMAIN_NAME = re.compile(r'^(?=.{1,253}$)([a-z0-9-]{1,63}\.)+[a-z0-9-]{2,63}$')


def tenant_domains_of(client: GraphClient) -> tuple[Optional[frozenset], str]:
    """The tenant's own domains: the 'Tenant domains' parameter, else GET /domains (Domain.Read.All).
    (None, why) when neither is available, so that callers say "could not be judged" instead of guessing."""
    if client.tenant_domains:
        bad = [d for d in client.tenant_domains if not DOMAIN_NAME.match(d)]
        if bad:
            raise MailError(f"Invalid parameter 'Tenant domains': {bad[0][:100]!r} is not a domain name.")
        return frozenset(client.tenant_domains), ''
    try:
        domains = [d for page in client.pages('domains', params={'$select': 'id,isVerified'})
                   for d in page.get('value', []) if d.get('isVerified', True) is not False]
    except GraphError as exc:
        return None, (f"the tenant's domains could not be read: HTTP {exc.status} {exc.code}; grant Domain.Read.All "
                      "or list them in the 'Tenant domains' parameter")
    except (ThrottledError, TransportError) as exc:
        return None, f"the tenant's domains could not be read ({exc})"
    names = frozenset(str(d.get('id') or '').lower() for d in domains if d.get('id'))
    return (names, '') if names else (None, 'Graph listed no verified domain for the tenant')


def needs_tenant_domains(rules: Iterable[dict], own_address: str) -> bool:
    """Whether any rule forwards to a domain other than the mailbox's own (only then are the domains read)."""
    own = address_domain(own_address)
    return any(address_domain(a) != own or not own
               for rule in rules for action, _ in FORWARD_ACTIONS
               for a in recipient_addresses((rule.get('actions') or {}).get(action)
                                            if isinstance(rule.get('actions'), dict) else None))


def triage_context(client: GraphClient, user: str, rules: list[dict],
                   domains: Optional[tuple[Optional[frozenset], str]] = None) -> TriageContext:
    """Everything assess_rule needs for one mailbox's rules: at most one domains read and one folder read/batch."""
    own_address = user if '@' in user else ''
    if domains is None:
        domains = tenant_domains_of(client) if needs_tenant_domains(rules, own_address) else (None, 'not needed')
    return TriageContext(own_address, domains[0], domains[1], folder_names_by_id(client, user, rule_folder_ids(rules)))


def describe_rule_actions(actions: Any, folder_names: dict) -> str:
    parts = []
    for key, value in actions.items() if isinstance(actions, dict) else ():
        if key in ('moveToFolder', 'copyToFolder') and isinstance(value, str):
            name = folder_names.get(value)
            parts.append(f'{key}: {name}' if name else f'{key}: {value}')
        elif RULE_ACTION_KINDS.get(key) == 'recipients':
            parts.append(f"{key}: {', '.join(recipient_addresses(value))}")
        elif value is True:
            parts.append(key)
        elif value not in (None, False, [], ''):
            parts.append(f'{key}: {markdown_cell(value)}')
    return ', '.join(parts)


def assessed_rule(rule: dict, context: TriageContext) -> dict:
    """A rule's context: Graph's fields plus the triage (Suspicious, SuspiciousReasons) and folder names."""
    assessment = assess_rule(rule, context)
    parsed = {**parse_rule(rule), 'Suspicious': assessment.suspicious, 'SuspiciousReasons': assessment.reasons}
    if assessment.notes:
        parsed['TriageNotes'] = assessment.notes
    actions = rule.get('actions') if isinstance(rule.get('actions'), dict) else {}
    for action, key in (('moveToFolder', 'MoveToFolderName'), ('copyToFolder', 'CopyToFolderName')):
        folder_id = actions.get(action)
        name = (context.folder_names or {}).get(folder_id) if isinstance(folder_id, str) else None
        if name:
            parsed[key] = name
    return parsed


def rules_entry(rules: list[dict], title: str, context: TriageContext) -> dict:
    parsed = [assessed_rule(r, context) for r in rules]
    rows = [{**p, 'actions': describe_rule_actions(p.get('actions') or {}, context.folder_names or {}),
             'SuspiciousReasons': '; '.join(p['SuspiciousReasons'])} for p in parsed]
    readable = markdown_table(title, rows, ['displayName', 'isEnabled', 'sequence', 'actions', 'Suspicious',
                                            'SuspiciousReasons', 'id'])
    notes = list(dict.fromkeys(n for p in parsed for n in p.get('TriageNotes', [])))
    suspicious = sum(1 for p in parsed if p['Suspicious'])
    readable += f'\n**{suspicious} of {len(parsed)} rules look suspicious.** {MAPI_CAVEAT}\n'
    readable += ''.join(f'\n- {markdown_cell(note)}' for note in notes)
    return note_entry([without_odata(r) for r in rules], readable, {RULE_CONTEXT_KEY: parsed})


def list_rules_command(client: GraphClient, args: dict) -> dict:
    require_inbox_rules(client)
    user = mailbox_arg(client, args)
    limit = arg_int(args, 'limit', 50)
    try:
        rules = collect(client, rules_path(user), limit)
        context = triage_context(client, user, rules)
    except GraphError as exc:
        raise describe_graph_error(exc, f'Inbox rules of {user}', 'MailboxSettings.Read') from None
    return rules_entry(rules, f'Inbox rules of {user}', context)


def get_rule_command(client: GraphClient, args: dict) -> dict:
    require_inbox_rules(client)
    user = mailbox_arg(client, args)
    rule_id = arg_id(args, 'rule_id')
    try:
        rule = client.get(rule_path(user, rule_id))
        context = triage_context(client, user, [rule])
    except GraphError as exc:
        raise describe_graph_error(exc, f'Rule {rule_id} of mailbox {user}', 'MailboxSettings.Read') from None
    return rules_entry([rule], f'Rule {rule_id} of {user}', context)


def delete_rule_command(client: GraphClient, args: dict) -> dict:
    require_inbox_rules(client)
    user = mailbox_arg(client, args)
    rule_id = arg_id(args, 'rule_id')
    try:
        client.delete(rule_path(user, rule_id))
    except GraphError as exc:
        raise describe_graph_error(exc, f'Rule {rule_id} of mailbox {user}', 'MailboxSettings.ReadWrite') from None
    return note_entry(f'Rule {rule_id} deleted.', f'Rule {rule_id} was deleted from mailbox {user}.')


# ------------------------------------------------------------------ mailbox settings and MailTips
def short_text(value: Any) -> str:
    """Readable text of an HTML reply message, cut for a table cell."""
    text = html_to_text(value) if isinstance(value, str) else ''
    return text if len(text) <= READABLE_TEXT_MAX_CHARS else text[:READABLE_TEXT_MAX_CHARS] + '…'


def dict_field(item: dict, name: str) -> dict:
    """A nested object of Graph JSON, or {} when Graph sent null or something else."""
    value = item.get(name)
    return value if isinstance(value, dict) else {}


def get_settings_command(client: GraphClient, args: dict) -> dict:
    user = mailbox_arg(client, args)
    try:
        settings = client.get(f'{user_path(user)}/mailboxSettings')
    except GraphError as exc:
        raise describe_graph_error(exc, f'Mailbox settings of {user}', 'MailboxSettings.Read') from None
    parsed = {**without_odata(settings), 'userId': user}   # the context key is the mailbox asked, whatever Graph sent
    replies = parsed.get('automaticRepliesSetting') if isinstance(parsed.get('automaticRepliesSetting'), dict) else {}
    language = parsed.get('language') if isinstance(parsed.get('language'), dict) else {}
    row = {'userId': user, 'timeZone': parsed.get('timeZone'), 'language': language.get('locale'),
           'userPurpose': parsed.get('userPurpose'), 'dateFormat': parsed.get('dateFormat'),
           'timeFormat': parsed.get('timeFormat')}
    reply_row = {'status': replies.get('status'), 'externalAudience': replies.get('externalAudience'),
                 'start': dict_field(replies, 'scheduledStartDateTime').get('dateTime'),
                 'end': dict_field(replies, 'scheduledEndDateTime').get('dateTime'),
                 'internalReplyMessage': short_text(replies.get('internalReplyMessage')),
                 'externalReplyMessage': short_text(replies.get('externalReplyMessage'))}
    readable = markdown_table(f'Mailbox settings of {user}', [row], list(row)) + '\n' + \
        markdown_table('Automatic replies (out of office)', [reply_row] if replies else [], list(reply_row))
    return note_entry(parsed, readable, {MAILBOX_SETTINGS_CONTEXT_KEY: parsed})


def recipient_scope_text(value: Any) -> Any:
    """recipientScope as Graph documents it (flag names, e.g. 'internal' or 'external, externalPartner'),
    whether Graph sent the names or the number."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, list):
        return ', '.join(str(part).strip() for part in value if str(part).strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    number = value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else \
        ascii_whole_number(value) if isinstance(value, str) else None
    if number is not None:
        names = [name for name, bit in RECIPIENT_SCOPE_FLAGS if number & bit]
        unknown = number & ~sum(bit for _, bit in RECIPIENT_SCOPE_FLAGS)
        return ', '.join(names + ([str(unknown)] if unknown else [])) or 'none'
    return ', '.join(part.strip() for part in str(value).split(',') if part.strip())


def parse_mailtip(tip: dict, asked: str) -> dict:
    parsed = without_odata(tip)
    address = parsed.get('emailAddress') if isinstance(parsed.get('emailAddress'), dict) else {}
    parsed['emailAddress'] = {**address, 'address': address.get('address') or asked}
    if 'recipientScope' in parsed:
        parsed['recipientScope'] = recipient_scope_text(parsed['recipientScope'])
    parsed['emailAddressValue'] = parsed['emailAddress']['address']
    return parsed


def mailtip_row(tip: dict) -> dict:
    replies = tip.get('automaticReplies') if isinstance(tip.get('automaticReplies'), dict) else {}
    error = tip.get('error') if isinstance(tip.get('error'), dict) else {}
    return {'Address': tip['emailAddressValue'], 'RecipientScope': tip.get('recipientScope'),
            'AutomaticReply': short_text(replies.get('message')), 'MailboxFull': tip.get('mailboxFull'),
            'DeliveryRestricted': tip.get('deliveryRestricted'), 'IsModerated': tip.get('isModerated'),
            'TotalMemberCount': tip.get('totalMemberCount'), 'MaxMessageSize': tip.get('maxMessageSize'),
            'CustomMailTip': short_text(tip.get('customMailTip')),
            'Error': f"{error.get('code', '')}: {error.get('message', '')}" if error else ''}


def mailtips_addresses(args: dict) -> list[str]:
    addresses = list(dict.fromkeys(a for a in arg_list(args, 'email_address')))
    if not addresses:
        raise MailError("Missing argument 'email_address': give one or more email addresses, comma separated.")
    for address in addresses:
        if not is_email_address(address):
            raise argument_error('email_address', 'email addresses separated by commas', address)
    if len(addresses) > MAILTIPS_MAX_ADDRESSES:
        raise argument_error('email_address', f'at most {MAILTIPS_MAX_ADDRESSES} addresses per call', len(addresses))
    return addresses


def mailtips_body(addresses: list[str]) -> dict:
    return {'EmailAddresses': addresses, 'MailTipsOptions': MAILTIPS_OPTIONS}


def mailtips_asking_themselves(client: GraphClient, addresses: list[str]) -> list[dict]:
    """Without a mailbox to ask from, each address asks about itself (the existing integration's behaviour), all
    in one $batch; an address Graph refused gets its own error, like a recipient error in MailTips."""
    items = [BatchItem(id=str(i), method='POST', url=f'{user_path(a)}/getMailTips', body=mailtips_body([a]))
             for i, a in enumerate(addresses)]
    answers = client.batch(items)
    tips = []
    for item, address in zip(items, addresses):
        answer = answers.get(item.id) or {}
        body = answer.get('body') if isinstance(answer.get('body'), dict) else {}
        values = body.get('value') if isinstance(body.get('value'), list) else []
        if 200 <= int(answer.get('status') or 0) < 300 and values and isinstance(values[0], dict):
            tips.append(parse_mailtip(values[0], address))
            continue
        error = body.get('error') if isinstance(body.get('error'), dict) else {}
        tips.append(parse_mailtip({'error': {'code': error.get('code') or f"HTTP{answer.get('status')}",
                                             'message': error.get('message') or batch_failure_text(answer)}}, address))
    return tips


def get_mailtips_command(client: GraphClient, args: dict) -> dict:
    addresses = mailtips_addresses(args)
    asker = arg_text(args, 'user_id') or client.default_user
    if ',' in asker:
        raise argument_error('user_id', 'one mailbox (the sender that asks)', asker)
    if asker:
        check_mailbox(asker, 'user_id')
    if not asker:
        tips = mailtips_asking_themselves(client, addresses)
    else:
        try:
            answer = client.post(f'{user_path(asker)}/getMailTips', mailtips_body(addresses))
        except GraphError as exc:
            raise describe_graph_error(exc, f'MailTips asked by {asker}', 'Mail.Read') from None
        values = answer.get('value') if isinstance(answer.get('value'), list) else []
        tips = [parse_mailtip(t, a) for t, a in zip(values, addresses) if isinstance(t, dict)]
    asked_by = asker or 'each address itself'
    readable = markdown_table(f'MailTips for {len(tips)} recipient(s), asked by {asked_by}',
                              [mailtip_row(t) for t in tips],
                              ['Address', 'RecipientScope', 'AutomaticReply', 'MailboxFull', 'DeliveryRestricted',
                               'IsModerated', 'TotalMemberCount', 'MaxMessageSize', 'CustomMailTip', 'Error'])
    return note_entry(tips, readable, {MAILTIPS_CONTEXT_KEY: tips})


# ================================================================================ COMMANDS: SENDING
INLINE_ATTACHMENT_MAX_BYTES = 3 * 1024 * 1024      # Graph takes attachments below 3 MB in the message JSON
UPLOAD_ATTACHMENT_MAX_BYTES = 150 * 1024 * 1024    # larger ones go through an upload session, up to 150 MB
UPLOAD_CHUNK_BYTES = 4 * 1024 * 1024
# Files are combined into one JSON request (sendMail, a draft) only while their base64 form and the body fit
# about 4 MB. Graph does not document the exact limit; its guidance implies a lone file under 3 MiB fits.
JSON_REQUEST_ENVELOPE_BYTES = 1024  # sendMail's {"message": ..., "saveToSentItems": true}, a reply's comment field
JSON_ATTACHMENT_FIELDS_BYTES = 512  # an attachment's fields besides its content (a typical name and content id)
MAX_CUSTOM_HEADERS = 5
# Inline images: each <img ...> tag is found first (up to the next '<' or '>', linear), then its src is matched
# inside that tag only; a regex spanning the body would rescan the rest of it for every '<img'.
IMG_TAG = re.compile(r'<img\b[^<>]*>', re.I)
DATA_URI_SRC = re.compile(r'(\bsrc\s*=\s*["\'])data:image/([a-zA-Z0-9.+-]{1,40});base64,([^"\']+)(["\'])', re.I)


@dataclass
class OutgoingAttachment:
    """A file to attach: read from disk when sent, so a 150 MB file is never held in memory at once."""
    name: str
    size: int
    path: str = ''
    data: Optional[bytes] = None
    content_id: str = ''
    is_inline: bool = False

    def read_all(self) -> bytes:
        if self.data is not None:
            return self.data
        with open(self.path, 'rb') as handle:
            return handle.read()

    def open(self) -> BinaryIO:
        return io.BytesIO(self.data) if self.data is not None else open(self.path, 'rb')

    def as_graph_json(self) -> dict:
        attachment = {'@odata.type': FILE_ATTACHMENT, 'name': self.name, 'isInline': self.is_inline,
                      'contentBytes': base64.b64encode(self.read_all()).decode()}
        if self.content_id:
            attachment['contentId'] = self.content_id
        return attachment

    @property
    def needs_upload_session(self) -> bool:
        """3 MB or more, or too large for a JSON request of its own with base64 counted (Graph takes upload
        sessions from 2 MiB on, so every file that cannot ride in JSON can be uploaded)."""
        return self.size >= INLINE_ATTACHMENT_MAX_BYTES or not self.fits_alone_in_json

    @property
    def encoded_size(self) -> int:
        """Its exact share of a JSON request: the base64 content plus its other fields as JSON escapes them."""
        fields = {'@odata.type': FILE_ATTACHMENT, 'name': self.name, 'isInline': self.is_inline, 'contentBytes': '',
                  'contentId': self.content_id}
        return 4 * ((self.size + 2) // 3) + len(json.dumps(fields)) + 2

    @property
    def fits_alone_in_json(self) -> bool:
        return self.encoded_size + JSON_REQUEST_ENVELOPE_BYTES <= JSON_REQUEST_MAX_BYTES


def recipient_items(args: dict, name: str) -> list[str]:
    """An address list argument as RFC 5322 address lists: `"Doe, John" <john@example.com>, b@example.com` is
    two addresses (a comma inside quotes does not split). A JSON list or a list gives one list per item."""
    value = args.get(name)
    if value is None or value == '':
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if str(v).strip()]
    text = str(value).strip()
    if text.startswith('['):
        try:
            return [str(v) for v in json.loads(text) if str(v).strip()]
        except (ValueError, TypeError):
            pass
    return [text] if text else []


def unquoted_characters(text: str) -> str:
    """The characters of an address list outside quoted strings (a linear scan)."""
    outside, quoted, escaped = [], False, False
    for character in text:
        if escaped:
            escaped = False
        elif character == '\\':
            escaped = True
        elif character == '"':
            quoted = not quoted
        elif not quoted:
            outside.append(character)
    return ''.join(outside)


def is_email_address(address: str) -> bool:
    """A mailbox address Graph can deliver to: local@domain, one '@', a dotted domain of letters, digits and
    hyphens, no slashes (`../../users/x@y` and `x@y/messages` are paths, not addresses), no dot segments."""
    local, at, domain = address.rpartition('@')
    if not at or not local or not domain or '@' in local or len(address) > 320:
        return False
    if any(c in '/\\<>()[],;:" ' or not c.isprintable() for c in address):
        return False
    if local.startswith('.') or local.endswith('.') or '..' in local:
        return False
    labels = domain.split('.')
    return len(labels) >= 2 and all(
        label and not label.startswith('-') and not label.endswith('-') and all(c.isalnum() or c == '-' for c in label)
        for label in labels)


def parse_recipients(args: dict, name: str) -> list[dict]:
    recipients = []
    for item in recipient_items(args, name):
        outside = unquoted_characters(item)
        # Groups (':'), comments ('('), domain literals ('[') and ';' lists are not recipients here; email.utils
        # also recurses on groups and comments, so they are refused before it runs.
        if any(c in outside for c in ';:()[]'):
            raise argument_error(name, 'email addresses separated by commas', item)
        try:
            parsed = email.utils.getaddresses([item])
        except (RecursionError, ValueError, IndexError):
            raise argument_error(name, 'email addresses separated by commas', item) from None
        position = 0
        for display, address in parsed:
            if not display and not address:
                continue  # an empty place between commas
            # The parser folds whitespace ('bob@con toso.com' -> 'bob@contoso.com'): each address must be in the
            # text as written, in order (one forward search, linear).
            found = item.find(address, position) if address else -1
            if found < 0 or not is_email_address(address):
                raise argument_error(name, 'email addresses separated by commas', address or item)
            position = found + len(address)
            entry = {'address': address}
            if display:
                entry['name'] = display
            recipients.append({'emailAddress': entry})
    return recipients


def parse_custom_headers(args: dict) -> list[dict]:
    """`name:value` pairs; the value may contain colons. Graph takes at most 5, all named x-... ."""
    headers = []
    for item in arg_list(args, 'headers'):
        name, separator, value = item.partition(':')
        name, value = name.strip(), value.strip()
        if not separator or not name:
            raise argument_error('headers', 'name:value pairs', item)
        if not name.lower().startswith('x-'):
            raise argument_error('headers', "header names that start with 'x-' (Graph allows only custom x- headers)", name)
        if re.search(r'[\r\n]', name + value) or not re.match(r'^[!-9;-~]+$', name):
            raise argument_error('headers', 'a header without line breaks, and no spaces in its name', item)
        headers.append({'name': name, 'value': value})
    if len(headers) > MAX_CUSTOM_HEADERS:
        raise argument_error('headers', f'at most {MAX_CUSTOM_HEADERS} headers (a Graph limit)', f'{len(headers)} headers')
    return headers


def attachment_from_entry(entry_id: str, name: str, argument: str, inline: bool) -> OutgoingAttachment:
    missing = MailError(f"Argument '{argument}': no such file: {entry_id!r} is neither a war-room file entry nor, "
                        'from a shell, a path to a file.')
    try:
        found = demisto.getFilePath(entry_id)
    except Exception:
        raise missing from None
    path = found.get('path') or ''
    if not os.path.isfile(path):
        raise missing
    size = os.path.getsize(path)
    if size > UPLOAD_ATTACHMENT_MAX_BYTES:
        raise MailError(f"Argument '{argument}': the file of entry {entry_id} has {size} bytes; Microsoft Graph takes "
                        f'attachments of at most {UPLOAD_ATTACHMENT_MAX_BYTES // (1024 * 1024)} MB.')
    return OutgoingAttachment(name=safe_attachment_name(name or found.get('name') or '', 'attachment'), size=size,
                              path=path, content_id=entry_id if inline else '', is_inline=inline)


def collect_attachments(args: dict) -> list[OutgoingAttachment]:
    """Files from attachIDs (renamed by attachNames at the same position) and inline files from attachCIDs,
    whose content id is the entry id so HTML can reference them as cid:<entry id>."""
    ids, names = arg_list(args, 'attachIDs'), arg_list(args, 'attachNames')
    if names and len(names) != len(ids):
        raise argument_error('attachNames', f'one name per entry of attachIDs ({len(ids)})', f'{len(names)} names')
    attachments = [attachment_from_entry(entry_id, names[i] if names else '', 'attachIDs', False)
                   for i, entry_id in enumerate(ids)]
    attachments += [attachment_from_entry(entry_id, '', 'attachCIDs', True) for entry_id in arg_list(args, 'attachCIDs')]
    return attachments


def extract_inline_images(html: str) -> tuple[str, list[OutgoingAttachment]]:
    """Turns data: images in an HTML body into inline attachments referenced by cid:."""
    images: list[OutgoingAttachment] = []

    def replace_in_tag(tag: re.Match) -> str:
        return DATA_URI_SRC.sub(replace, tag.group(0), count=1)

    def replace(match: re.Match) -> str:
        subtype, payload = match.group(2).lower(), re.sub(r'\s', '', match.group(3))
        try:
            data = base64.b64decode(payload + '=' * (-len(payload) % 4))
        except ValueError:
            return match.group(0)
        name = f'image{len(images) + 1}.{subtype.split("+")[0]}'
        content_id = f'{name}@{uuid.uuid4().hex[:8]}_{uuid.uuid4().hex[:8]}'
        images.append(OutgoingAttachment(name=name, size=len(data), data=data, content_id=content_id, is_inline=True))
        return f'{match.group(1)}cid:{content_id}{match.group(4)}'

    return IMG_TAG.sub(replace_in_tag, html), images


@dataclass
class OutgoingMail:
    sender: str
    message: dict
    attachments: list

    @property
    def needs_draft(self) -> bool:
        """Attachments that do not fit one JSON request go through a draft (and upload sessions)."""
        if not self.attachments:
            return False
        encoded = self.json_overhead + sum(a.encoded_size for a in self.attachments)
        return any(a.needs_upload_session for a in self.attachments) or encoded > JSON_REQUEST_MAX_BYTES

    @property
    def json_overhead(self) -> int:
        """The message without its attachments, as JSON (escaping counted), plus the request's envelope."""
        return len(json.dumps(self.message)) + JSON_REQUEST_ENVELOPE_BYTES


def compose_mail(client: GraphClient, args: dict, require_recipients: bool = True) -> OutgoingMail:
    """Validates every argument of a new mail before anything is sent."""
    sender = arg_text(args, 'from') or client.default_user
    if not sender:
        raise MailError("Missing argument 'from': give the mailbox to send from, or configure the fetch mailbox.")
    check_mailbox(sender, 'from')
    message: dict[str, Any] = {}
    for argument, field_name in (('to', 'toRecipients'), ('cc', 'ccRecipients'), ('bcc', 'bccRecipients'),
                                 ('replyTo', 'replyTo')):
        recipients = parse_recipients(args, argument)
        if recipients:
            message[field_name] = recipients
    if require_recipients and not any(message.get(k) for k in ('toRecipients', 'ccRecipients', 'bccRecipients')):
        raise MailError("Missing recipients: give at least one address in 'to', 'cc' or 'bcc'.")
    html_body = arg_text(args, 'htmlBody')
    body_type = 'HTML' if html_body else arg_choice(args, 'bodyType', ('text', 'HTML'), 'HTML')
    content, images = extract_inline_images(html_body) if html_body else (arg_text(args, 'body'), [])
    subject = arg_text(args, 'subject')
    if subject:
        message['subject'] = subject
    message['body'] = {'contentType': 'HTML' if body_type == 'HTML' else 'Text', 'content': content}
    message['importance'] = arg_choice(args, 'importance', ('Low', 'Normal', 'High'), 'Normal')
    flag = arg_choice(args, 'flag', ('notFlagged', 'complete', 'flagged'), 'notFlagged')
    headers = parse_custom_headers(args)
    if client.endpoints.capabilities.message_headers_and_flag:
        message['flag'] = {'flagStatus': flag}
    elif flag != 'notFlagged':
        require_capability(client.endpoints, 'message_headers_and_flag', "Flagging a mail (argument 'flag')",
                           "Send it without 'flag'.")
    if headers:
        require_capability(client.endpoints, 'message_headers_and_flag', "Custom headers (argument 'headers')",
                           "Send the mail without 'headers'.")
        message['internetMessageHeaders'] = headers
    mail = OutgoingMail(sender=sender, message=message, attachments=collect_attachments(args) + images)
    refuse_upload_sessions(client.endpoints, mail.attachments)
    return mail


def single_request_file_limit() -> int:
    """About the largest file one JSON request carries (base64 grows it by a third): all a cloud without upload
    sessions can attach."""
    return min(INLINE_ATTACHMENT_MAX_BYTES - 1,
               (JSON_REQUEST_MAX_BYTES - JSON_REQUEST_ENVELOPE_BYTES - JSON_ATTACHMENT_FIELDS_BYTES) // 4 * 3)


def refuse_upload_sessions(endpoints: Endpoints, attachments: list[OutgoingAttachment]) -> None:
    """In a cloud without upload sessions (US Gov) a file that does not fit one JSON request cannot be attached:
    refused before any draft exists."""
    too_large = [a for a in attachments if a.needs_upload_session]
    if too_large and not endpoints.capabilities.upload_sessions:
        files = ', '.join(f"'{a.name}' ({a.size} bytes)" for a in too_large)
        require_capability(endpoints, 'upload_sessions', f'Attaching files that need an upload session ({files})',
                           f'Without upload sessions each file must fit one request: under '
                           f'{INLINE_ATTACHMENT_MAX_BYTES // (1024 * 1024)} MB (about {single_request_file_limit()} '
                           f'bytes at most) and, base64-encoded, within the {JSON_REQUEST_MAX_BYTES}-byte request '
                           'limit. Nothing was created or sent. Share a larger file by a link instead, or split it.')


def upload_large_attachment(client: GraphClient, draft_path: str, attachment: OutgoingAttachment) -> None:
    """Uploads the file in chunks of at most 4 MiB, each starting where Graph says the next upload begins."""
    item: dict[str, Any] = {'attachmentType': 'file', 'name': attachment.name, 'size': attachment.size,
                            'isInline': attachment.is_inline}
    if attachment.content_id:
        item['contentId'] = attachment.content_id
    session = client.post(f'{draft_path}/attachments/createUploadSession', {'AttachmentItem': item})
    upload_url, offset, last_status = session.get('uploadUrl') or '', 0, 0
    with attachment.open() as stream:
        while offset < attachment.size:
            stream.seek(offset)
            chunk = stream.read(UPLOAD_CHUNK_BYTES)
            response = client.upload_chunk(upload_url, chunk, offset, attachment.size)
            last_status = response.status_code
            if last_status == 201:
                return
            offset = next_upload_offset(response, offset, offset + len(chunk))
    raise MailError(f"The upload of '{attachment.name}' did not complete (last status {last_status}).")


def next_upload_offset(response: requests.Response, previous: int, default: int) -> int:
    """For Outlook attachments Graph answers nextExpectedRanges as one "{start}" value: where to continue."""
    try:
        expected = (response.json().get('nextExpectedRanges') or [])[0]
        offset = int(str(expected).split('-')[0])
    except (ValueError, IndexError, AttributeError, TypeError):
        return default
    if offset <= previous:
        raise MailError(f'The upload made no progress: Graph still expects byte {offset}.')
    return offset


def attach_to_draft(client: GraphClient, draft_path: str, attachments: list[OutgoingAttachment]) -> None:
    for attachment in attachments:
        if attachment.needs_upload_session:
            upload_large_attachment(client, draft_path, attachment)
        else:
            client.post(f'{draft_path}/attachments', attachment.as_graph_json())


def complete_draft(client: GraphClient, sender: str, draft: dict, attachments: list, send: bool,
                   changes: Optional[dict] = None) -> None:
    """Updates the draft with `changes`, adds the attachments and sends. A failure before the send, or a send Graph
    refused, deletes the draft so no half-built mail is left or sent; a send that got no answer is checked before
    anything is deleted."""
    draft_path = message_path(sender, draft['id'])
    if changes:
        try:
            client.patch(draft_path, changes)
        except Exception as exc:
            raise MailError(f'Updating the draft failed: {exc} {discard_draft(client, draft_path, draft)}') from None
    try:
        attach_to_draft(client, draft_path, attachments)
    except Exception as exc:
        raise MailError(f'Adding the attachments failed: {exc} {discard_draft(client, draft_path, draft)}') from None
    if not send:
        return
    try:
        client.post(f'{draft_path}/send')
    except (GraphError, ThrottledError, TransportError) as exc:
        # Throttled (429/503 to the end) or a 4xx: Graph refused the send, so the draft can safely go.
        refused = isinstance(exc, ThrottledError) or (isinstance(exc, GraphError) and exc.status < 500)
        if refused or still_a_draft(client, draft_path):
            raise MailError(f'Sending failed: {exc} {discard_draft(client, draft_path, draft)}') from None
        raise MailError(f'Sending got no clear answer ({exc}) and the message is no longer a draft: it may have been '
                        f"sent. Check Sent Items of {sender} before sending again.") from None


def still_a_draft(client: GraphClient, draft_path: str) -> bool:
    """True only when Graph confirms the item is still an unsent draft; when it cannot tell, nothing is deleted."""
    try:
        return bool(client.get(draft_path, params={'$select': 'isDraft'}).get('isDraft'))
    except MailError:
        return False


def discard_draft(client: GraphClient, draft_path: str, draft: dict) -> str:
    try:
        client.delete(draft_path)
        return 'The draft was deleted; nothing was sent.'
    except MailError as cleanup_error:
        return f'Deleting the draft {draft["id"]} failed too ({cleanup_error}); delete it by hand. Nothing was sent.'


def split_for_draft(mail: 'OutgoingMail') -> tuple[list, list]:
    """Small attachments ride in the draft's JSON while they fit; the rest are added to the draft one by one."""
    in_json, later = [], []
    total = mail.json_overhead
    for attachment in mail.attachments:
        if not attachment.needs_upload_session and total + attachment.encoded_size <= JSON_REQUEST_MAX_BYTES:
            in_json.append(attachment)
            total += attachment.encoded_size
        else:
            later.append(attachment)
    return in_json, later


def send_through_draft(client: GraphClient, create_path: str, payload: dict, mail: OutgoingMail, send: bool) -> dict:
    """Creates a draft (new mail, createReply or createForward), attaches everything, and optionally sends."""
    wrapped = 'message' in payload
    if wrapped and not client.endpoints.capabilities.reply_parameters:
        return send_through_bare_response_draft(client, create_path, payload, mail, send)
    in_json, later = split_for_draft(mail)
    message = dict(payload['message'] if wrapped else payload)
    if in_json:
        message['attachments'] = [a.as_graph_json() for a in in_json]
    try:
        draft = client.post(create_path, {**payload, 'message': message} if wrapped else message)
    except TransportError as exc:
        raise MailError(f'Creating the draft got no answer in time ({exc}). A draft may have been created anyway: look '
                        f"in Drafts of {mail.sender} for the subject {shown(mail.message.get('subject', ''))}, created "
                        f'at {format_time(utc_now())}, and delete it before running the command again. Nothing was '
                        'sent.') from None
    complete_draft(client, mail.sender, draft, later, send)
    return draft


RESPONSE_RECIPIENT_FIELDS = ('toRecipients', 'ccRecipients', 'bccRecipients', 'replyTo')
HTML_BODY_START = re.compile(r'<body\b[^<>]*>', re.I)  # up to the next '<': linear on hostile bodies


def send_through_bare_response_draft(client: GraphClient, create_path: str, payload: dict, mail: OutgoingMail,
                                     send: bool) -> dict:
    """Where createReply/createForward take no parameters (US Gov, 21Vianet): the bare draft, then a PATCH with what
    the parameters would have carried, then the attachments, then the send; the draft cleanup of complete_draft."""
    draft = client.post(create_path)
    try:
        changes = response_draft_changes(draft, payload['message'], payload.get('comment') or '',
                                         mail.message['body']['contentType'])
    except Exception as exc:  # the draft exists: it must not be left behind half-built
        cleanup = discard_draft(client, message_path(mail.sender, draft['id']), draft)
        raise MailError(f'Preparing the draft failed: {exc} {cleanup}') from None
    complete_draft(client, mail.sender, draft, mail.attachments, send, changes)
    return draft


def response_draft_changes(draft: dict, message: dict, comment: str, comment_type: str) -> dict:
    """The PATCH that turns a bare reply/forward draft into the one createReply/createForward with `message` and
    `comment` would have made: our recipients added to Graph's, our subject, the comment above the quoted original."""
    changes: dict[str, Any] = {}
    for name in RESPONSE_RECIPIENT_FIELDS:
        if message.get(name):
            known = {str(parse_address(r)['Address'] or '').lower() for r in draft.get(name) or []}
            added = [r for r in message[name] if str(parse_address(r)['Address'] or '').lower() not in known]
            changes[name] = list(draft.get(name) or []) + added
    if message.get('subject'):
        changes['subject'] = message['subject']
    if comment:
        changes['body'] = body_with_comment(draft.get('body') or {}, comment, comment_type)
    return changes


def body_with_comment(body: dict, comment: str, comment_type: str) -> dict:
    """The draft's body (the quoted original) with the comment put first, in the body's own content type."""
    import html as html_lib
    content = body.get('content') or ''
    if str(body.get('contentType', 'html')).lower() != 'html':
        text = html_to_text(comment) if comment_type == 'HTML' else comment
        return {'contentType': 'Text', 'content': f'{text}\n\n{content}' if content else text}
    lead = comment if comment_type == 'HTML' else html_lib.escape(comment).replace('\n', '<br>')
    lead = f'<div>{lead}</div>'
    start = HTML_BODY_START.search(content)
    merged = content[:start.end()] + lead + content[start.end():] if start else lead + content
    return {'contentType': 'HTML', 'content': merged}


def post_send(client: GraphClient, path: str, body: dict, sender: str) -> None:
    """A send (sendMail, reply) that got no answer may still have gone out: say so, and where to look, so a re-run
    does not send it twice."""
    try:
        client.post(path, body)
    except DeadlineError:
        raise
    except TransportError as exc:
        raise MailError(f'Microsoft Graph did not answer the send in time ({exc}). The mail may have been sent: check '
                        f'Sent Items of {sender} before sending it again.') from None


def flatten_recipients(recipients: Optional[list]) -> list[str]:
    return [parse_address(r)['Address'] for r in recipients or []]


def sent_mail_context(message: dict, message_id: str, status: str) -> dict:
    """The existing integration's MicrosoftGraph.Email keys, plus the id when Graph gave one and a status."""
    body = message.get('body', {}).get('content', '')
    preview = html_to_text(body) if message.get('body', {}).get('contentType') == 'HTML' else body
    context = {'internetMessageHeaders': message.get('internetMessageHeaders', []), 'body': body,
               'bodyPreview': preview[:255], 'subject': message.get('subject', ''), 'flag': message.get('flag'),
               'importance': message.get('importance'), 'Status': status,
               **{k: flatten_recipients(message.get(k)) for k in ('toRecipients', 'ccRecipients', 'bccRecipients', 'replyTo')}}
    if message_id:
        context['ID'] = message_id
    return context


def attachments_line(attachments: list) -> str:
    """What a sent mail carried, for the readable output: name and size of each file."""
    if not attachments:
        return ''
    return '\nAttachments: ' + ', '.join(f'{markdown_cell(a.name)} ({a.size:,} bytes' + (', inline)' if a.is_inline else ')')
                                         for a in attachments)


def send_mail_command(client: GraphClient, args: dict) -> list[dict]:
    render_body = arg_bool(args, 'renderBody')
    mail = compose_mail(client, args)
    try:
        if mail.needs_draft:
            draft = send_through_draft(client, f'{user_path(mail.sender)}/messages', mail.message, mail, send=True)
            message_id, status = draft.get('id', ''), 'sent'
        else:
            message = dict(mail.message)
            if mail.attachments:
                message['attachments'] = [a.as_graph_json() for a in mail.attachments]
            post_send(client, f'{user_path(mail.sender)}/sendMail', {'message': message, 'saveToSentItems': True},
                      mail.sender)
            message_id, status = '', 'accepted'
    except GraphError as exc:
        raise describe_graph_error(exc, f'Mailbox {mail.sender}', 'Mail.Send') from None
    context = sent_mail_context(mail.message, message_id, status)
    recipients = ', '.join(context['toRecipients'] + context['ccRecipients'] + context['bccRecipients'])
    readable = (f"### Email sent from {mail.sender}\nSubject: {markdown_cell(context['subject'])}\nTo: {recipients}\n"
                f'Status: {status}' + (f'\nMessage ID: {message_id}' if message_id else
                                       ' (Graph accepted the mail for delivery; it returns no message id)')
                + attachments_line(mail.attachments))
    entries = [note_entry(context, readable, {'MicrosoftGraph.Email': context})]
    if render_body and mail.message['body']['content']:
        entries.append({'Type': ENTRY_NOTE, 'ContentsFormat': 'html', 'Contents': mail.message['body']['content']})
    return entries


DRAFT_FIELDS = {'id': 'ID', 'createdDateTime': 'CreatedTime', 'lastModifiedDateTime': 'ModifiedTime',
                'receivedDateTime': 'ReceivedTime', 'sentDateTime': 'SentTime', 'subject': 'Subject',
                'importance': 'Importance', 'conversationId': 'ConversationID', 'isRead': 'IsRead',
                'isDraft': 'IsDraft', 'internetMessageId': 'MessageID', 'categories': 'Categories',
                'internetMessageHeaders': 'Headers'}


def parse_draft(draft: dict) -> dict:
    parsed = {key: draft.get(name) for name, key in DRAFT_FIELDS.items()}
    body = draft.get('body') or {}
    parsed.update({'Sender': parse_address(draft.get('sender'))['Address'], 'From': parse_address(draft.get('from'))['Address'],
                   'To': flatten_recipients(draft.get('toRecipients')), 'Cc': flatten_recipients(draft.get('ccRecipients')),
                   'Bcc': flatten_recipients(draft.get('bccRecipients')),
                   'Body': body.get('content', ''), 'BodyType': body.get('contentType', '')})
    return parsed


def create_draft_command(client: GraphClient, args: dict) -> dict:
    mail = compose_mail(client, args, require_recipients=False)
    try:
        draft = send_through_draft(client, f'{user_path(mail.sender)}/messages', mail.message, mail, send=False)
    except GraphError as exc:
        raise describe_graph_error(exc, f'Mailbox {mail.sender}', 'Mail.ReadWrite') from None
    parsed = parse_draft(draft)
    readable = markdown_table(f'Created draft with id {draft.get("id")}', [parsed], ['ID', 'Subject', 'To', 'From', 'CreatedTime'])
    return note_entry(draft, readable, {'MicrosoftGraph.Draft(val.ID && val.ID == obj.ID)': parsed})


def send_draft_command(client: GraphClient, args: dict) -> dict:
    draft_id = arg_id(args, 'draft_id')
    sender = arg_text(args, 'from') or client.default_user
    if not sender:
        raise MailError("Missing argument 'from': the mailbox that holds the draft.")
    check_mailbox(sender, 'from')
    try:
        client.post(f'{message_path(sender, draft_id)}/send')
    except GraphError as exc:
        raise describe_graph_error(exc, f'Draft {draft_id} in mailbox {sender}', 'Mail.Send') from None
    return note_entry(f'Draft {draft_id} was sent.', f'### The draft with ID {draft_id} was sent successfully.')


def comment_payload(mail: OutgoingMail, comment: str) -> dict:
    """The body of reply, createReply and createForward: the recipients and attachments, plus a comment."""
    message = {k: v for k, v in mail.message.items() if k not in ('body', 'importance', 'flag')}
    return {'message': message, 'comment': comment}


def reply_to_command(client: GraphClient, args: dict) -> dict:
    """msgraph-mail-reply-to: reply in the original thread with a comment (and attachments)."""
    message_id = arg_id(args, 'ID')
    comment = arg_text(args, 'body', required=True)
    mail = compose_mail(client, args)
    payload = comment_payload(mail, comment)
    original = message_path(mail.sender, message_id)
    try:
        if mail.attachments:
            send_through_draft(client, f'{original}/createReply', payload, mail, send=True)
        else:
            post_send(client, f'{original}/reply', payload, mail.sender)
    except GraphError as exc:
        raise describe_graph_error(exc, f'Message {message_id} in mailbox {mail.sender}', 'Mail.Send') from None
    recipients = ', '.join(flatten_recipients(mail.message.get('toRecipients')))
    return note_entry(f'Replied to {message_id}.', f'### Replied to: {recipients} with comment: {markdown_cell(comment)}')


def reply_mail_command(client: GraphClient, args: dict) -> dict:
    """reply-mail, the generic reply XSOAR's email layouts call. Replies through a draft so the reply's own id
    can be returned (the existing integration reported the original's id)."""
    in_reply_to = arg_id(args, 'inReplyTo')
    subject = arg_text(args, 'subject', required=True)
    reply_args = {**args, 'subject': subject if subject.lower().startswith('re:') else f'Re: {subject}'}
    mail = compose_mail(client, reply_args)
    comment = mail.message['body']['content']
    try:
        draft = send_through_draft(client, f'{message_path(mail.sender, in_reply_to)}/createReply',
                                   comment_payload(mail, comment), mail, send=True)
    except GraphError as exc:
        raise describe_graph_error(exc, f'Message {in_reply_to} in mailbox {mail.sender}', 'Mail.Send') from None
    context = {**sent_mail_context({**mail.message, 'body': {'content': comment}}, draft.get('id', ''), 'sent'),
               'InReplyTo': in_reply_to}
    readable = (f"### Reply sent from {mail.sender}\nTo: {', '.join(context['toRecipients'])}\n"
                f"Subject: {markdown_cell(context['subject'])}\nReply ID: {context.get('ID', '')}")
    return note_entry(context, readable, {'MicrosoftGraph.SentMail(val.ID && val.ID == obj.ID)': context})


def forward_email_command(client: GraphClient, args: dict) -> dict:
    """Forwards a message with a comment; through a draft so the forwarded mail's id is known."""
    user = mailbox_arg(client, args)
    message_id = arg_id(args, 'message_id')
    mail = compose_mail(client, {**args, 'from': user})
    if not mail.message.get('toRecipients'):
        raise MailError("Missing argument 'to': give the addresses to forward to.")
    try:
        draft = send_through_draft(client, f'{message_path(user, message_id)}/createForward',
                                   comment_payload(mail, arg_text(args, 'comment')), mail, send=True)
    except GraphError as exc:
        raise describe_graph_error(exc, f'Message {message_id} in mailbox {user}', 'Mail.Send') from None
    row = {'ID': draft.get('id', ''), 'To': flatten_recipients(mail.message['toRecipients']), 'UserID': user,
           'OriginalID': message_id}
    readable = markdown_table(f'Message {message_id} was forwarded', [row], ['ID', 'To', 'UserID'])
    return note_entry(row, readable, {'MSGraphMail.ForwardedEmail(val.ID && val.ID === obj.ID)': row})


# ================================================================================ FETCH
# How fetch works (see README "How fetch works"):
# 1. Change detection. The folder's delta query (ids and receivedDateTime only) reports every mail that
#    arrives in, or is moved into, the folder. New ids go to a `pending` queue in the last run, sorted by
#    arrival. The delta link is the cursor, so late-moved mail and mail sharing a timestamp are still seen.
#    Where delta cannot serve (21Vianet, or the service refuses it) a receivedDateTime window with
#    overlap does the same job.
# 2. Ingestion. Up to fetch_limit pending mails are read by one listing of the folder over their
#    receivedDateTime range (fields and attachment metadata expanded); what the listing does not carry is
#    read by id with $batch, in one client.batch call. Ids leave `pending` only in the last run that is
#    returned with their incidents, and a bounded set of ingested ids keeps a replay from creating a duplicate.
# 3. Progress. A mail whose attachments cannot be read within the run (stalled, cut short, the deadline) stays
#    queued with an attempt count while the completed mails are returned; after FETCH_ATTEMPTS_BEFORE_SKIPPING runs
#    it is ingested with the unread attachments named, so no mail holds back the ones behind it.
FETCH_STATE_VERSION = 1
FETCH_DELTA_PAGE_SIZE = 1000
FETCH_DELTA_PAGES_PER_RUN = 50  # a first round over a large folder goes on next run from its saved link
FETCH_PENDING_CAP = 5000
FETCH_SEEN_CAP = 5000
FETCH_WINDOW_OVERLAP_MINUTES = 10
FETCH_BATCH_ATTACHMENT_MAX_BYTES = 1024 * 1024
FETCH_RANGE_SLACK = 10  # the range listing's page takes this many mails beyond the pending ones it looks for
FETCH_BATCH_ATTACHMENT_GROUP_BYTES = 8 * 1024 * 1024
FETCH_MESSAGE_FIELDS = ('id,createdDateTime,lastModifiedDateTime,receivedDateTime,sentDateTime,subject,importance,'
                        'conversationId,isRead,isDraft,internetMessageId,categories,internetMessageHeaders,sender,'
                        'from,toRecipients,ccRecipients,bccRecipients,replyTo,body,bodyPreview,hasAttachments,flag')
# contentId exists only on fileAttachment: Graph rejects it in $select unless it carries the type cast.
FETCH_ATTACHMENT_FIELDS = 'id,name,contentType,size,isInline,microsoft.graph.fileAttachment/contentId'
RELATIVE_TIME = re.compile(r'^(\d+)\s*(minute|min|hour|day|week|month|year)s?(\s+ago)?$', re.I)
RELATIVE_UNITS = {'minute': 1, 'min': 1, 'hour': 60, 'day': 1440, 'week': 10080, 'month': 43200, 'year': 525600}


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def format_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def parse_graph_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace('Z', '+00:00')).astimezone(timezone.utc)


def parse_first_fetch(value: str, now: datetime) -> datetime:
    """'15 minutes', '3 days', '2 weeks ago' or an ISO-8601 time."""
    text = (value or '').strip()
    match = RELATIVE_TIME.match(text)
    try:
        if match:
            return now - timedelta(minutes=int(match.group(1)) * RELATIVE_UNITS[match.group(2).lower()])
        moment = datetime.fromisoformat(text.replace('Z', '+00:00'))
    except (ValueError, OverflowError):
        raise MailError(f"Parameter 'First fetch timestamp' (first_fetch) must look like '15 minutes', '7 days' or "
                        f"2024-01-31T00:00:00Z, got {value!r}.") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def id_digest(message_id: str) -> str:
    """A short, stable fingerprint of a message id for the bounded set of ingested mail."""
    return hashlib.sha256(message_id.encode()).hexdigest()[:20]


def epoch_of(graph_time: str) -> int:
    return int(parse_graph_time(graph_time).timestamp()) if graph_time else 0


@dataclass
class FetchState:
    """What one fetch hands to the next through the platform's last run.

    `seen` holds [id digest, receivedDateTime epoch] of ingested mail, at most FETCH_SEEN_CAP: when full, the
    mail received earliest is forgotten first and `seen_floor` (epoch) rises past it, so every ingested mail
    received from `seen_floor` on is still known. `window_floor` is the first-fetch time of this folder: nothing
    received before it is fetched unless it arrives in the folder later.
    """
    mailbox: str = ''
    folder: str = ''
    folder_id: str = ''
    mode: str = 'delta'
    cursor: str = ''
    initial_bound: str = ''
    window_start: str = ''
    window_floor: str = ''
    pending: list = None  # type: ignore[assignment]
    seen: list = None  # type: ignore[assignment]
    seen_floor: int = 0
    anchors: dict = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.pending = list(self.pending or [])
        self.seen = [entry if isinstance(entry, list) else [entry, 0] for entry in self.seen or []]
        self.seen_floor = int(self.seen_floor or 0)
        self.anchors = dict(self.anchors or {})

    def to_last_run(self) -> dict:
        return {'fetch_state_version': FETCH_STATE_VERSION, 'mailbox': self.mailbox, 'folder': self.folder,
                'folder_id': self.folder_id, 'mode': self.mode, 'cursor': self.cursor,
                'initial_bound': self.initial_bound, 'window_start': self.window_start, 'window_floor': self.window_floor,
                'pending': self.pending, 'seen': self.seen, 'seen_floor': self.seen_floor, 'anchors': self.anchors}

    def start_over(self, bound: str) -> None:
        """A new round from `bound`: used for a new folder and when the existing integration's state is taken over."""
        self.cursor, self.pending = '', []
        self.initial_bound = self.window_start = self.window_floor = bound

    def remember(self, messages: list[dict]) -> None:
        self.seen += [[id_digest(m['id']), epoch_of(m.get('receivedDateTime') or '')] for m in messages]
        if len(self.seen) <= FETCH_SEEN_CAP:
            return
        # Forget the mail received earliest, a whole second at a time, and raise the floor past it.
        self.seen.sort(key=lambda entry: entry[1])
        cut = len(self.seen) - FETCH_SEEN_CAP
        forgotten_until = self.seen[cut - 1][1]
        while cut < len(self.seen) and self.seen[cut][1] == forgotten_until:
            cut += 1
        self.seen = self.seen[cut:]
        self.seen_floor = max(self.seen_floor, forgotten_until + 1)

    def restart_point(self) -> str:
        """The earliest receivedDateTime from which every mail already ingested is still known: a new round from
        here loses nothing (a late-moved old mail included) and creates no duplicate."""
        floor = format_time(datetime.fromtimestamp(self.seen_floor, timezone.utc)) if self.seen_floor else ''
        return max(self.window_floor, floor)


def fetch_state_from_last_run(client: GraphClient, last_run: dict, settings: FetchSettings, now: datetime) -> FetchState:
    """Loads the state; starts over on a new mailbox; takes over a last run of the existing integration."""
    mode = 'delta' if client.endpoints.capabilities.message_delta else 'window'
    first_fetch = format_time(parse_first_fetch(settings.first_fetch, now))
    if last_run.get('fetch_state_version') == FETCH_STATE_VERSION:
        state = FetchState(**{k: last_run.get(k) for k in FetchState.__dataclass_fields__})
        if state.mailbox != settings.mailbox:
            state = FetchState(mailbox=settings.mailbox, mode=mode, seen=state.seen)
            state.start_over(first_fetch)
        elif state.mode == 'delta' and mode == 'window':
            state.mode, state.cursor, state.window_start = 'window', '', state.restart_point()
        return state
    state = FetchState(mailbox=settings.mailbox, mode=mode)
    state.start_over(first_fetch)
    if last_run.get('time') or last_run.get('LAST_RUN_TIME'):
        take_over_legacy_last_run(client, state, last_run)
    return state


def take_over_legacy_last_run(client: GraphClient, state: FetchState, last_run: dict) -> None:
    """Continues where the existing integration stopped: from its `time` cursor, skipping the mail it ingested.

    Its ids are regular ids, ours immutable: they are translated so the mail of that last second is recognised
    and the rest of that second is still fetched. Without a translation (a cloud without the API, or no ids),
    fetch starts one second later, as the existing integration itself would have.
    """
    previous = (last_run.get('time') or last_run.get('LAST_RUN_TIME') or '').rstrip('Z') + 'Z'
    try:
        cursor = parse_graph_time(previous)
    except ValueError:
        return
    legacy_ids = list(dict.fromkeys(list(last_run.get('LAST_RUN_IDS') or []) + list(last_run.get('found_incident_ids') or {})))
    translated = translate_to_immutable_ids(client, state.mailbox, legacy_ids) if legacy_ids else {}
    if not translated:
        cursor += timedelta(seconds=1)
    state.start_over(format_time(cursor))
    state.seen = [[id_digest(i), int(cursor.timestamp())] for i in legacy_ids + list(translated.values())]
    state.remember([])


TRANSLATE_IDS_PER_REQUEST = 1000


def translate_to_immutable_ids(client: GraphClient, user: str, rest_ids: list[str]) -> dict[str, str]:
    """Regular ids -> immutable ids; {} in a cloud without the API (US Gov), or when Graph refuses it with a 4xx.
    A transient failure raises, so the fetch is retried instead of giving up the translation for good."""
    translated: dict[str, str] = {}
    if not client.endpoints.capabilities.translate_exchange_ids:
        demisto.info(f'{client.endpoints.cloud_name} has no translateExchangeIds: the previous integration\'s ids '
                     'are not translated.')
        return translated
    for start in range(0, len(rest_ids), TRANSLATE_IDS_PER_REQUEST):
        try:
            answer = client.post(f'{user_path(user)}/translateExchangeIds', {
                'inputIds': rest_ids[start:start + TRANSLATE_IDS_PER_REQUEST], 'sourceIdType': 'restId',
                'targetIdType': 'restImmutableEntryId'})
        except GraphError as exc:
            if exc.status >= 500:
                raise
            demisto.info(f'Ids of the previous integration could not be translated ({exc.code}).')
            return {}
        translated.update({i['sourceId']: i['targetId'] for i in answer.get('value', []) if i.get('targetId')})
    return translated


def remember_candidates(state: FetchState, items: list[dict], bound: Optional[datetime]) -> None:
    """Adds new (not ingested, not queued) mail to the pending queue in arrival order."""
    known = {digest for digest, _ in state.seen} | {id_digest(p['id']) for p in state.pending}
    for item in items:
        if '@removed' in item or not item.get('id') or id_digest(item['id']) in known:
            continue
        received = item.get('receivedDateTime') or ''
        if bound and received and parse_graph_time(received) < bound:
            continue
        state.pending.append({'id': item['id'], 'received': received})
        known.add(id_digest(item['id']))
    state.pending.sort(key=lambda p: (p.get('received') or '', p['id']))


def read_delta_changes(client: GraphClient, state: FetchState) -> None:
    """Follows the delta cursor to the end of the round, until the pending queue is full, or for at most
    FETCH_DELTA_PAGES_PER_RUN pages; the cursor keeps the place for the next run."""
    if not state.cursor:
        url = f'{folder_path(state.mailbox, state.folder_id)}/messages/delta'
        params: Optional[dict] = {'$select': 'id,receivedDateTime', 'changeType': 'created'}
    else:
        url, params = state.cursor, None
    headers = {'Prefer': f'odata.maxpagesize={FETCH_DELTA_PAGE_SIZE}'}
    for _ in range(FETCH_DELTA_PAGES_PER_RUN):
        if len(state.pending) + FETCH_DELTA_PAGE_SIZE > FETCH_PENDING_CAP:
            return
        page = client.get(url, params=params, headers=headers)
        bound = parse_graph_time(state.initial_bound) if state.initial_bound else None
        remember_candidates(state, page.get('value', []), bound)
        next_link, delta_link = page.get('@odata.nextLink'), page.get('@odata.deltaLink')
        state.cursor = next_link or delta_link or ''
        if delta_link or not next_link:
            state.initial_bound = ''  # later rounds report only new arrivals, whatever their receivedDateTime
            return
        url, params = next_link, None


def read_window_changes(client: GraphClient, state: FetchState, overlap: timedelta) -> None:
    """The fallback: mail received since the last window start, minus an overlap the seen set dedupes."""
    start = parse_graph_time(state.window_start) - overlap
    if state.window_floor:
        # The overlap re-reads mail the seen set covers; it must not reach before the first fetch time.
        start = max(start, parse_graph_time(state.window_floor))
    query: Optional[dict] = {'$filter': f'receivedDateTime ge {format_time(start)}', '$orderby': 'receivedDateTime asc',
                             '$select': 'id,receivedDateTime', '$top': str(FETCH_DELTA_PAGE_SIZE)}
    url: Optional[str] = messages_path(state.mailbox, state.folder_id)
    while url and len(state.pending) + FETCH_DELTA_PAGE_SIZE <= FETCH_PENDING_CAP:
        page = client.get(url, params=query)
        items = page.get('value', [])
        remember_candidates(state, items, None)
        if items:
            state.window_start = max(state.window_start, *(i.get('receivedDateTime') or '' for i in items))
        url, query = page.get('@odata.nextLink'), None


def read_changes(client: GraphClient, state: FetchState, settings: FetchSettings) -> None:
    overlap = timedelta(minutes=max(settings.look_back_minutes, FETCH_WINDOW_OVERLAP_MINUTES))
    if state.mode == 'window':
        read_window_changes(client, state, overlap)
        return
    try:
        read_delta_changes(client, state)
    except GraphError as exc:
        if exc.status == 410 or exc.code.lower() in ('syncstatenotfound', 'syncstateinvalid', 'resyncrequired'):
            # The delta token expired: a new round from the point the seen set still covers.
            state.cursor, state.initial_bound = '', state.restart_point()
            read_delta_changes(client, state)
        elif exc.status in (400, 501) and 'delta' in exc.graph_message.lower():
            demisto.info(f'Message delta is not available ({exc.code}); fetching by receivedDateTime instead.')
            state.mode, state.cursor, state.window_start = 'window', '', state.restart_point()
            read_window_changes(client, state, overlap)
        else:
            raise


FOLDER_DEPTH_LIMIT = 12


def track_fetch_folder(client: GraphClient, state: FetchState, settings: FetchSettings, now: datetime) -> None:
    """Resolves the configured folder on every run (one request per folder below a well-known one).

    The same folder keeps its cursor. A different folder at the path (a changed parameter, or a folder deleted
    and created again) starts a new round from first_fetch. A deleted folder is an error, never read silently
    from Deleted Items: Graph keeps a deleted folder's id working. When the unchanged path no longer resolves
    but the folder still exists elsewhere (renamed or moved), it is still fetched by its id."""
    try:
        folder_id = resolve_folder(client, settings.mailbox, settings.folder)
    except (GraphError, ThrottledError, TransportError):
        raise
    except MailError as exc:
        unchanged = state.folder_id and state.folder == settings.folder
        if unchanged and folder_is_live(client, state, state.folder_id):
            demisto.info(f"The fetch folder path '{settings.folder}' no longer resolves ({exc}); fetching the same "
                         "folder by its id. Update 'Name of the folder' (folder_to_fetch) to its new path.")
            return
        reason = 'It was deleted' if unchanged else 'Check the path'
        raise MailError(f"The fetch folder '{settings.folder}' was not found in mailbox {settings.mailbox} ({exc}) "
                        f"{reason}: fix 'Name of the folder' (folder_to_fetch).") from None
    configured_by_id = folder_id == settings.folder.split(',')[-1].strip() and looks_like_folder_id(folder_id)
    if configured_by_id and not folder_is_live(client, state, folder_id):  # a path lookup proves it already
        raise MailError(f"The fetch folder {settings.folder!r} of mailbox {settings.mailbox} was deleted (it is in "
                        "Deleted Items or gone): fix 'Name of the folder' (folder_to_fetch).")
    if folder_id != state.folder_id:
        if state.folder_id:
            state.start_over(format_time(parse_first_fetch(settings.first_fetch, now)))
        state.folder_id = folder_id
    state.folder = settings.folder


def folder_is_live(client: GraphClient, state: FetchState, folder_id: str) -> bool:
    """True when the folder exists and neither it nor a folder above it is in Deleted Items."""
    folders = f'{user_path(state.mailbox)}/mailFolders'
    try:
        for name in ('deleteditems', 'msgfolderroot'):
            if name not in state.anchors:
                state.anchors[name] = client.get(f'{folders}/{name}', params={'$select': 'id'})['id']
        current = folder_id
        for _ in range(FOLDER_DEPTH_LIMIT):
            parent = client.get(f'{folders}/{encode_id(current)}', params={'$select': 'id,parentFolderId'}).get('parentFolderId')
            if parent == state.anchors['deleteditems']:
                return False
            if not parent or parent == state.anchors['msgfolderroot']:
                return True
            current = parent
    except GraphError as exc:
        if exc.status == 404:
            return False
        raise
    return True


def attachment_file_name(attachment: dict, legacy_name: bool) -> str:
    """The name the existing integration gives a fetched attachment; layouts match inline images by it."""
    name = safe_attachment_name(attachment.get('name') or '', 'untitled_attachment')
    if attachment_kind(attachment) == ITEM_ATTACHMENT and not name.lower().endswith('.eml'):
        name = f'{name}.eml'
    content_id = attachment.get('contentId')
    if attachment.get('isInline') and content_id and content_id != 'None' and not legacy_name:
        return cap_file_name(f'{content_id}-attachmentName-{name}')
    return name


FETCH_ATTEMPTS_BEFORE_SKIPPING = 2  # runs in a row a mail may fail to complete before it is ingested without them


@dataclass
class FetchedAttachments:
    """What one fetch run could write for one mail.

    `unfinished` says why the mail cannot become an incident in this run ('' when it can); `attempted` says the
    failure was this mail's own (its download stalled or ran into the deadline), which counts as one attempt, as
    opposed to a mail the run did not get to. `skipped` names attachments ingested without their content."""
    files: list = field(default_factory=list)    # [{'path': file id, 'name'}]: the incident's files
    paths: list = field(default_factory=list)    # where those files are, removed when the mail is not ingested
    skipped: list = field(default_factory=list)  # [{'id', 'name', 'size', 'reason'}]
    unfinished: str = ''
    attempted: bool = False


def save_fetched_attachments(client: GraphClient, user: str, messages: list[dict], legacy_name: bool,
                             last_attempts: Iterable[str] = ()) -> dict[str, FetchedAttachments]:
    """Writes every file and attached mail of these messages; small files through $batch, large ones streamed.

    A download that stalls, breaks off or runs into the fetch deadline makes its mail unfinished (its files are
    removed; the mail stays queued) while the other mails go on, or, once the deadline is reached, wait for the next
    run. For a mail in `last_attempts` the attachment is recorded as skipped instead and the mail is ingested with
    the rest. Any other failure removes every file written and raises."""
    results = {m['id']: FetchedAttachments() for m in messages}
    final = set(last_attempts)
    small: list[tuple[dict, dict]] = []
    large: list[tuple[dict, dict]] = []
    for message in messages:
        for attachment in message.get('attachments') or []:
            kind = attachment_kind(attachment)
            target = {'message': message['id'], 'name': attachment_file_name(attachment, legacy_name),
                      'id': attachment.get('id'), 'size': attachment.get('size'), 'kind': kind}
            if kind == FILE_ATTACHMENT and (attachment.get('size') or 0) <= FETCH_BATCH_ATTACHMENT_MAX_BYTES:
                small.append((attachment, target))
            elif kind in (FILE_ATTACHMENT, ITEM_ATTACHMENT):
                large.append((attachment, target))
    run = FetchRunProgress(results, final)
    try:
        for group in group_by_size(small, FETCH_BATCH_ATTACHMENT_GROUP_BYTES):
            save_small_attachments(client, user, [pair for pair in group if run.wanted(pair[1])], run)
        for attachment, target in large:
            if run.wanted(target):
                save_large_attachment(client, user, attachment, target, run)
    except Exception:
        for result in results.values():
            remove_fetched_files(result)
        raise
    for result in results.values():
        if result.unfinished:
            remove_fetched_files(result)
    return results


class FetchRunProgress:
    """The attachment work of one fetch run: which mails are still worth reading, and the deadline once reached."""

    def __init__(self, results: dict[str, FetchedAttachments], final: set[str]):
        self.results = results
        self.final = final
        self.stopped = ''  # the deadline error, once reached: nothing more is read

    def wanted(self, target: dict) -> bool:
        """False for a mail already unfinished; after the deadline every attachment left is marked unread."""
        if self.results[target['message']].unfinished:
            return False
        if self.stopped:
            self.unread(target, self.stopped, attempted=False)
            return False
        return True

    def unread(self, target: dict, reason: str, attempted: bool) -> None:
        result = self.results[target['message']]
        if target['message'] in self.final:
            result.skipped.append({'id': target['id'], 'name': target['name'], 'size': target['size'],
                                   'reason': reason})
            demisto.info(f"Attachment '{target['name']}' of message {target['message']} is ingested without its "
                         f'content after {FETCH_ATTEMPTS_BEFORE_SKIPPING} runs: {reason}')
        elif not result.unfinished:
            result.unfinished, result.attempted = reason, attempted

    def failed(self, targets: list[dict], exc: TransportError) -> None:
        reason = unread_reason(exc)
        if isinstance(exc, DeadlineError):
            self.stopped = reason
        for target in targets:
            self.unread(target, reason, attempted=True)

    def saved(self, target: dict, file_id: str, path: str) -> None:
        result = self.results[target['message']]
        result.files.append({'path': file_id, 'name': target['name']})
        result.paths.append(path)


RUN_AGAIN_ADVICE = re.compile(r'[;.]?\s*[Rr]un the command again[^.]*\.\s*$')


def unread_reason(exc: TransportError) -> str:
    """Why an attachment was not read, as an incident says it (the command-level advice to run again does not fit)."""
    if isinstance(exc, DeadlineError):
        return f'the fetch reached its overall time limit of {FETCH_DEADLINE_SECONDS:.0f} s before it was read.'
    text = RUN_AGAIN_ADVICE.sub('', str(exc)).strip()
    return text if text.endswith('.') else f'{text}.'


def save_small_attachments(client: GraphClient, user: str, group: list[tuple[dict, dict]],
                           run: FetchRunProgress) -> None:
    if not group:
        return
    items = [BatchItem(str(i), 'GET', f"{attachments_path(user, t['message'])}/{encode_id(a['id'])}")
             for i, (a, t) in enumerate(group)]
    try:
        answers = client.batch(items)
    except TransportError as exc:
        run.failed([target for _, target in group], exc)
        return
    for item, (_, target) in zip(items, group):
        answer = answers[item.id]
        if answer.get('status') != 200:
            skip_broken_attachment(int(answer.get('status') or 0), batch_failure_text(answer), target, run)
            continue
        data = base64.b64decode((answer.get('body') or {}).get('contentBytes') or '')
        file_id, path = new_file_path()
        run.saved(target, file_id, path)
        with open(path, 'wb') as handle:
            handle.write(data)


def save_large_attachment(client: GraphClient, user: str, attachment: dict, target: dict,
                          run: FetchRunProgress) -> None:
    file_id, path = new_file_path()
    try:
        client.download(f"{attachments_path(user, target['message'])}/{encode_id(attachment['id'])}/$value", path,
                        expected_size=attachment.get('size') if target['kind'] == FILE_ATTACHMENT else None)
    except GraphError as exc:
        skip_broken_attachment(exc.status, str(exc), target, run)
        return
    except TransportError as exc:  # stalled, broke off, cut short, or the fetch deadline (download removed the file)
        run.failed([target], exc)
        return
    run.saved(target, file_id, path)


def remove_fetched_files(result: FetchedAttachments) -> None:
    for path in result.paths:
        remove_file(path)
    result.files, result.paths = [], []


def skip_broken_attachment(status: int, reason: str, target: dict, run: FetchRunProgress) -> None:
    """A throttled or failing service stops the fetch (retried next run); an attachment Graph refuses for good
    (4xx) is skipped with a log line and named in the incident, so one broken attachment cannot block every later
    mail."""
    if status in (429, 503, 504) or status >= 500 or status == 0:
        raise MailError(f"Attachment '{target['name']}' could not be read: {reason}")
    demisto.info(f"Attachment '{target['name']}' of message {target['message']} skipped: {reason}")
    run.results[target['message']].skipped.append({'id': target['id'], 'name': target['name'],
                                                    'size': target['size'], 'reason': reason})


def group_by_size(pairs: list[tuple[dict, dict]], limit: int) -> Iterator[list[tuple[dict, dict]]]:
    group: list[tuple[dict, dict]] = []
    total = 0
    for pair in pairs:
        size = pair[0].get('size') or 0
        if group and (len(group) == BATCH_MAX_REQUESTS or total + size > limit):
            yield group
            group, total = [], 0
        group.append(pair)
        total += size
    if group:
        yield group


def parse_fetched_email(message: dict, mailbox: str, attachments: list[dict]) -> dict:
    """The incident's email, keyed as the existing integration keys it (its mapper reads these)."""
    body = message.get('body') or {}
    html = body.get('content', '') if body.get('contentType', 'html').lower() == 'html' else ''
    text = html_to_text(html) if html else body.get('content', '')

    def address(field_name: str) -> str:
        return ((message.get(field_name) or {}).get('emailAddress') or {}).get('address', '')

    def addresses(field_name: str) -> list[str]:
        return [parse_address(r)['Address'] for r in message.get(field_name) or []]

    return {'ID': message.get('id'), 'CreatedTime': message.get('createdDateTime'),
            'ModifiedTime': message.get('lastModifiedDateTime'), 'ReceivedTime': message.get('receivedDateTime'),
            'SentTime': message.get('sentDateTime'), 'Subject': message.get('subject') or '',
            'Importance': message.get('importance'), 'ConversationID': message.get('conversationId'),
            'IsRead': message.get('isRead'), 'IsDraft': message.get('isDraft'),
            'MessageID': message.get('internetMessageId'), 'Categories': message.get('categories') or [],
            'Headers': message.get('internetMessageHeaders') or [], 'Sender': address('sender'), 'From': address('from'),
            'To': addresses('toRecipients'), 'Cc': addresses('ccRecipients'), 'Bcc': addresses('bccRecipients'),
            'ReplyTo': addresses('replyTo'), 'Body': html or text, 'Text': text, 'BodyType': 'html' if html else 'text',
            'Attachments': attachments, 'Mailbox': mailbox}


LABEL_SKIPPED_KEYS = ('Body', 'Text', 'Headers', 'Attachments')


def incident_labels(email_data: dict) -> list[dict]:
    """One label per field, one per header and per recipient; bodies stay out of labels to keep incidents lean."""
    labels = []
    for key, value in email_data.items():
        if key in LABEL_SKIPPED_KEYS or value in (None, ''):
            continue
        for item in value if isinstance(value, list) else [value]:
            labels.append({'type': f'Email/{key}', 'value': str(item)})
    labels += [{'type': f"Email/Header/{h.get('name')}", 'value': str(h.get('value'))} for h in email_data['Headers']]
    return labels


def build_incident(email_data: dict, preview: str, full_body: bool) -> dict:
    details = email_data['Text'] if full_body or not preview else preview
    return {'name': email_data['Subject'] or '(no subject)', 'occurred': email_data['ReceivedTime'], 'details': details,
            'labels': incident_labels(email_data), 'attachment': email_data['Attachments'],
            'rawJSON': json.dumps(email_data)}


def read_pending_messages(client: GraphClient, state: FetchState, limit: int) -> tuple[list[dict], list[str]]:
    """Reads up to `limit` pending mails in order. Returns the messages and the ids Graph no longer has.

    One listing of the fetch folder over the received-time range of these mails carries most of them whole
    (fields and attachment metadata). Whatever it does not carry - a mail it left out, a field or the attachments
    it omitted - is read by id through one `client.batch` call, so an incident never depends on what the listing
    returned.
    """
    chosen = state.pending[:limit]
    if not chosen:
        return [], []
    fields = message_select(FETCH_MESSAGE_FIELDS, client.endpoints.capabilities)
    listed = list_pending_range(client, state, chosen, fields)
    reads = {p['id']: message_read_url(state.mailbox, p['id'], listed.get(p['id']), fields) for p in chosen}
    wanted = {mid: url for mid, url in reads.items() if url}
    items = [BatchItem(str(i), 'GET', url) for i, url in enumerate(wanted.values())]
    results = client.batch(items) if items else {}  # all of the run's reads in one call: one wait for throttling
    answers = {message_id: results[item.id] for message_id, item in zip(wanted, items)}
    messages: list[dict] = []
    gone: list[str] = []
    for pending in chosen:
        message_id = pending['id']
        if message_id not in answers:
            messages.append(complete_listed_message(listed[message_id], {}))
            continue
        answer = answers[message_id]
        status = answer.get('status')
        if status == 200:
            messages.append(complete_listed_message(listed.get(message_id) or {}, answer.get('body') or {}))
        elif status == 404:
            gone.append(message_id)
        elif status in (429, 503, 504):
            # Still throttled after the retry budget: keep order, the rest is read next run.
            demisto.info(f'Fetch stopped at a throttled mail: {batch_failure_text(answer)}')
            return messages, gone
        elif status == 400 and (any(a.get('status') == 200 for a in answers.values())
                                or (listed and message_id not in listed)):
            # Graph refuses this one mail while it reads (or lists) the others with the same query: an item that
            # can never be read must not block every later mail. Logged, not silently. A mail the listing carried
            # is readable, so when every read completing one is refused the query is at fault: the fetch stops.
            demisto.error(f"Mail {message_id} in {state.mailbox} cannot be read and is skipped: "
                          f'{batch_failure_text(answer)}')
            gone.append(message_id)
        else:
            raise MailError(f"Mail {message_id} in {state.mailbox} could not be read "
                            f'({batch_failure_text(answer)}); the fetch stops so that it is not skipped.')
    return messages, gone


def list_pending_range(client: GraphClient, state: FetchState, chosen: list[dict], fields: str) -> dict[str, dict]:
    """One page of the fetch folder over the received-time range of `chosen`, oldest first: {id: message} of the
    chosen mails it carries. Mail moved out of the folder meanwhile, or beyond the page, is simply not in it, and a
    failing listing costs nothing but the reads by id it would have saved."""
    received = [parse_graph_time(p['received']) for p in chosen if p.get('received')]
    if not received:
        return {}
    start = min(received).replace(microsecond=0)
    end = max(received).replace(microsecond=0) + timedelta(seconds=1)
    query = {'$filter': f'receivedDateTime ge {format_time(start)} and receivedDateTime lt {format_time(end)}',
             '$orderby': 'receivedDateTime asc', '$select': fields,
             '$expand': f'attachments($select={FETCH_ATTACHMENT_FIELDS})',
             '$top': str(min(GRAPH_MAX_PAGE_SIZE, len(chosen) + FETCH_RANGE_SLACK))}
    try:
        page = client.get(messages_path(state.mailbox, state.folder_id), params=query)
    except (GraphError, ThrottledError, TransportError) as exc:
        demisto.info(f'The fetch folder could not be listed ({exc}); the mails are read one by one instead.')
        return {}
    wanted = {p['id'] for p in chosen}
    return {m['id']: m for m in page.get('value') or []
            if isinstance(m, dict) and isinstance(m.get('id'), str) and m['id'] in wanted}


def needs_attachment_list(message: dict) -> bool:
    """Attachment metadata is read only for mail that may have attachments: `hasAttachments` (unknown counts as
    true), or an HTML body that refers to a `cid:` image - Graph reports hasAttachments false for mail whose only
    attachments are inline."""
    if message.get('hasAttachments') is not False:
        return True
    body = message.get('body') or {}
    return 'cid:' in str(body.get('content') or '').lower()


def message_read_url(user: str, message_id: str, listed: Optional[dict], fields: str) -> str:
    """The by-id read that completes a listed mail ('' when the listing carried it whole); the whole mail when it
    was not listed."""
    listed = listed or {}
    missing = [f for f in fields.split(',') if f not in listed]
    # A read that happens anyway expands the attachments too: that costs no request.
    attachments = 'attachments' not in listed and (bool(missing) or needs_attachment_list(listed))
    if not missing and not attachments:
        return ''
    url = f"{message_path(user, message_id)}?$select={','.join(['id'] + [f for f in missing if f != 'id'])}"
    if attachments:
        url += f'&$expand=attachments($select={FETCH_ATTACHMENT_FIELDS})'
    return url


def complete_listed_message(listed: dict, read: dict) -> dict:
    """The listed mail completed by what its read by id returned. Without an attachment list from either, the mail
    has none worth reading (see needs_attachment_list)."""
    message = {**listed, **read}
    message.setdefault('attachments', [])
    return message


def mark_as_read(client: GraphClient, user: str, message_ids: list[str]) -> None:
    items = [BatchItem(str(i), 'PATCH', message_path(user, mid), {'isRead': True}) for i, mid in enumerate(message_ids)]
    failed = [a for a in client.batch(items).values() if not 200 <= int(a.get('status') or 0) < 300]
    if failed:
        demisto.info(f'{len(failed)} fetched mail(s) could not be marked as read: {batch_failure_text(failed[0])}')


def fetch_incidents(client: GraphClient, last_run: dict, settings: FetchSettings) -> tuple[dict, list[dict]]:
    """Turns new mail of the fetch folder into incidents, each mail exactly once."""
    if not settings.mailbox:
        raise MailError("Parameter 'Email address from which to fetch incidents' (mailbox_to_fetch) is empty.")
    now = utc_now()
    state = fetch_state_from_last_run(client, last_run, settings, now)
    try:
        track_fetch_folder(client, state, settings, now)
        read_changes(client, state, settings)
    except (ThrottledError, TransportError, GraphError) as exc:
        transient = not isinstance(exc, GraphError) or exc.status >= 500
        if not (state.pending and transient):
            raise
        demisto.info(f'Fetch reads the queued mail only; looking for new mail failed: {exc}')
    messages, gone = read_pending_messages(client, state, settings.limit)
    attachments = save_fetched_attachments(client, state.mailbox, messages, settings.legacy_name,
                                           last_attempts(state.pending[:settings.limit]))
    ready = [m for m in messages if not attachments[m['id']].unfinished]
    incidents = []
    for message in ready:
        saved = attachments[message['id']]
        email_data = parse_fetched_email(message, state.mailbox, saved.files)
        incident = build_incident(email_data, message.get('bodyPreview') or '', settings.full_body)
        incidents.append(note_skipped_attachments(incident, state.mailbox, message['id'], saved.skipped))
    count_unfinished_attempts(state, attachments)
    done = {m['id'] for m in ready} | set(gone)
    state.pending = [p for p in state.pending if p['id'] not in done]
    state.remember(ready)
    if settings.mark_read and ready:
        try:
            mark_as_read(client, state.mailbox, [m['id'] for m in ready])
        except MailError as exc:  # the incidents exist; an unread flag must not cost them
            demisto.info(f'Fetched mail could not be marked as read: {exc}')
    return state.to_last_run(), incidents


def last_attempts(chosen: list[dict]) -> set[str]:
    """The pending mails this run reads for the last time before ingesting them without what cannot be read."""
    return {p['id'] for p in chosen if pending_attempts(p) + 1 >= FETCH_ATTEMPTS_BEFORE_SKIPPING}


def pending_attempts(pending: dict) -> int:
    attempts = pending.get('attempts')
    return attempts if isinstance(attempts, int) and attempts > 0 else 0


def count_unfinished_attempts(state: FetchState, attachments: dict[str, FetchedAttachments]) -> None:
    """Records, in the mail's pending entry, one more run that could not complete it (a small integer: the last
    run stays bounded). A mail the run did not get to keeps its count."""
    for pending in state.pending:
        result = attachments.get(pending['id'])
        if result and result.unfinished:
            demisto.info(f"Mail {pending['id']} waits for the next run: {result.unfinished}")
            if result.attempted:
                pending['attempts'] = pending_attempts(pending) + 1


def note_skipped_attachments(incident: dict, mailbox: str, message_id: str, skipped: list[dict]) -> dict:
    """Names each attachment ingested without its content: a label, and a line in the details with its size, the
    reason and the command that reads it, so an analyst can still get it."""
    lines = []
    for item in skipped:
        size = f"{item['size']} bytes" if isinstance(item.get('size'), int) else 'size unknown'
        incident['labels'].append({'type': 'Email/SkippedAttachment', 'value': f"{item['name']} ({size})"})
        reason = str(item['reason']).strip().rstrip('.')
        lines.append(f"Attachment '{item['name']}' ({size}) was not fetched: {reason}. Read it with "
                     f"!msgraph-mail-get-attachment user_id={mailbox} message_id={message_id} "
                     f"attachment_id={item['id']}")
    if lines:
        incident['details'] = '\n\n'.join([incident['details'] or ''] + lines).lstrip('\n')
    return incident


# ================================================================================ MULTI-MAILBOX ENGINE
# Runs a few Graph requests in each of many mailboxes through GraphClient.run_batches (20 per $batch, across
# mailboxes; 4 in flight per app; throttled sub-requests retried on their own). Reusable interface:
#   scope = mailbox_scope_from_args(args)                -> MailboxScope ('mailboxes' list | 'group' | 'all')
#   job = EngineJob.start(job_id, scope) / EngineJob.from_state(saved)   (JSON-able, bounded: a cursor and counters)
#   run_mailbox_job(client, job, requests_for, on_answer, permission, limits, mailbox_list=None)
#       requests_for(mailbox: MailboxRef) -> list[MailboxRequest]      the first requests in one mailbox
#       on_answer(mailbox, request, answer) -> list[MailboxRequest]    follow-ups (next page, ...) in that mailbox
#   The engine discovers mailboxes page by page (`$top=999`), takes at most `limits.mailboxes` of them per run (the
#   rest next run, from the saved cursor), counts users without a mailbox, and records any other failure per mailbox
#   (Mailbox, Error) without stopping the others. A request with `handles_errors=True` gets every answer itself.
ENGINE_MAILBOXES_PER_RUN = 10000
ENGINE_SECONDS_PER_RUN = 120.0
ENGINE_FAILURES_KEPT = 100
DIRECTORY_PAGE_SIZE = 999
NO_MAILBOX_CODES = frozenset({'MailboxNotEnabledForRESTAPI', 'ResourceNotFound'})
DIRECTORY_SELECT = 'id,userPrincipalName,mail'
SCOPE_KINDS = ('mailboxes', 'group', 'all')


@dataclass(frozen=True)
class MailboxScope:
    kind: str    # one of SCOPE_KINDS
    value: str   # comma list of mailboxes, or the group id ('' for all)


@dataclass(frozen=True)
class MailboxRef:
    id: str      # what goes into the path: the user id (directory) or the UPN/id as given
    name: str    # what is shown: UPN, else mail, else the id


@dataclass
class MailboxRequest:
    method: str
    url: str
    body: Optional[dict] = None
    tag: Any = None              # the caller's note: which kind of request, which item
    handles_errors: bool = False


@dataclass(frozen=True)
class EngineLimits:
    mailboxes: int = ENGINE_MAILBOXES_PER_RUN
    seconds: float = ENGINE_SECONDS_PER_RUN


@dataclass
class EngineJob:
    """Where a multi-mailbox job stands; saved between runs. `page`/`index`: the directory page (relative URL,
    '' for the first) and the position in it of the next mailbox to take."""
    id: str
    scope_kind: str
    scope_value: str
    page: str = ''
    index: int = 0
    discovered_all: bool = False
    taken: int = 0
    searched: int = 0
    without_mailbox: int = 0
    failed_count: int = 0
    failed: list = field(default_factory=list)   # [{Mailbox, Error}], the first ENGINE_FAILURES_KEPT

    @classmethod
    def start(cls: type['EngineJob'], job_id: str, scope: MailboxScope) -> 'EngineJob':
        return cls(job_id, scope.kind, scope.value)

    @classmethod
    def from_state(cls: type['EngineJob'], state: dict) -> 'EngineJob':
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in state.items() if k in names})

    def to_state(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @property
    def done(self) -> bool:
        return self.discovered_all and self.taken == self.searched + self.without_mailbox + self.failed_count

    def record_failure(self, mailbox: MailboxRef, error: str) -> None:
        self.failed_count += 1
        if len(self.failed) < ENGINE_FAILURES_KEPT:
            self.failed.append({'Mailbox': mailbox.name, 'Error': error})


def mailbox_scope_from_args(args: dict) -> MailboxScope:
    """Exactly one of `mailboxes` (comma list), `group_id`, `all_mailboxes=true`."""
    mailboxes = arg_list(args, 'mailboxes')
    group = arg_text(args, 'group_id')
    everyone = arg_bool(args, 'all_mailboxes')
    given = [name for name, present in (('mailboxes', mailboxes), ('group_id', group), ('all_mailboxes', everyone))
             if present]
    if len(given) != 1:
        raise MailError("Give exactly one scope: 'mailboxes' (a comma list of UPNs or user ids), 'group_id' (its "
                        "transitive members) or 'all_mailboxes=true'" +
                        (f"; got {', '.join(given)}." if given else '.'))
    if mailboxes:
        for mailbox in mailboxes:
            check_mailbox(mailbox, 'mailboxes')  # the one path-segment gate (dot segments, slashes, controls)
        # UPNs and ids are case-insensitive: one mailbox named twice is searched (and remediated) once.
        unique: dict[str, str] = {}
        for mailbox in mailboxes:
            unique.setdefault(mailbox.lower(), mailbox)
        return MailboxScope('mailboxes', ','.join(unique.values()))
    if group:
        if not GUID_PATTERN.match(group):
            raise argument_error('group_id', 'the group object id (a GUID)', group)
        return MailboxScope('group', group)
    return MailboxScope('all', '')


GUID_PATTERN = re.compile(r'^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$')


def listed_mailboxes(job: EngineJob) -> Optional[list[MailboxRef]]:
    """The mailboxes a 'mailboxes' scope names (run_mailbox_job's `mailbox_list`); None: discover them."""
    if job.scope_kind != 'mailboxes':
        return None
    return [MailboxRef(m, m) for m in job.scope_value.split(',') if m]


def directory_first_page(scope_kind: str, scope_value: str) -> str:
    query = f'$select={DIRECTORY_SELECT}&$top={DIRECTORY_PAGE_SIZE}'
    if scope_kind == 'group':
        return f'groups/{encode_id(scope_value)}/transitiveMembers/microsoft.graph.user?{query}'
    return f'users?{query}'


def relative_graph_link(client: GraphClient, link: Optional[str]) -> str:
    """A nextLink as the relative URL a $batch item needs; a link to another host is refused."""
    if not link:
        return ''
    absolute = client.url_for(str(link))
    return absolute[len(client.endpoints.graph_base):].lstrip('/')


def usable_in_path(graph_id: Any) -> bool:
    """An id Graph returned that can stand as one URL path segment. A dot segment ('.', '..') would be removed by
    the HTTP stack and address the mailbox itself; a backslash, a space or a control character has no place in an
    id. Mailbox and message ids kept by a job go into later paths (remediation), so nothing else is kept."""
    text = str(graph_id).strip().replace('/', '-')
    return (bool(text) and set(text) != {'.'} and '\\' not in text
            and not any(c.isspace() or unicodedata.category(c) in ('Cc', 'Cf') for c in text))


def answer_error(answer: dict) -> tuple[int, str, str]:
    """(status, code, message) of a sub-request's answer."""
    body = answer.get('body')
    error = body.get('error') if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    return int(answer.get('status') or 0), str(error.get('code') or ''), str(error.get('message') or '')[:300]


def is_without_mailbox(answer: dict) -> bool:
    status, code, _ = answer_error(answer)
    return status in (400, 404) and code in NO_MAILBOX_CODES


def mailbox_failure_text(answer: dict, permission: str) -> str:
    status, code, message = answer_error(answer)
    if status == 403:
        return (f'HTTP 403 {code}: access denied; the application needs the {permission} application permission '
                '(and access to this mailbox if an application access policy or RBAC for Applications limits it).')
    if status == 404 and code == 'ErrorInvalidUser':
        return f'HTTP 404 {code}: no such user.'
    if status in (429, 503):
        return f'HTTP {status} {code}: still throttled after the retry budget; run the command again later.'
    return f'HTTP {status} {code}: {message}'.strip()


def directory_error(scope_kind: str, scope_value: str, answer: dict) -> MailError:
    status, code, message = answer_error(answer)
    what = f'the members of group {scope_value}' if scope_kind == 'group' else 'the users of the tenant'
    if status == 403:
        permission = 'GroupMember.Read.All' if scope_kind == 'group' else 'User.Read.All'
        return MailError(f'Listing {what} was denied (HTTP 403 {code}). The application needs the {permission} '
                         'application permission with admin consent.')
    if status == 404:
        return MailError(f'Group {scope_value} was not found (HTTP 404 {code}).')
    return MailError(f'Listing {what} failed: {mailbox_failure_text(answer, "User.Read.All")}')


@dataclass
class _ActiveMailbox:
    mailbox: MailboxRef
    outstanding: int = 0
    outcome: str = ''   # '' (fine so far), 'nomailbox', or the failure text


def run_mailbox_job(client: GraphClient, job: EngineJob,
                    requests_for: Callable[[MailboxRef], list[MailboxRequest]],
                    on_answer: Callable[[MailboxRef, MailboxRequest, dict], list[MailboxRequest]],
                    permission: str, limits: EngineLimits = EngineLimits(),
                    mailbox_list: Optional[list[MailboxRef]] = None) -> None:
    """Advances `job` by one run: takes up to `limits.mailboxes` more mailboxes (for `limits.seconds` at most), runs
    their requests to the end and updates the job's counters. `mailbox_list` replaces directory discovery (a
    'mailboxes' scope, or the mailboxes of an earlier search)."""
    started = time.monotonic()
    active: dict[str, _ActiveMailbox] = {}
    requests: dict[str, MailboxRequest] = {}
    serial = iter(range(1, 1 << 62))
    taken_this_run = [0]

    def room() -> int:
        if time.monotonic() - started > limits.seconds:
            return 0
        return max(0, limits.mailboxes - taken_this_run[0])

    def items_of(key: str, wanted: list[MailboxRequest]) -> list[BatchItem]:
        batch_items = []
        for request in wanted:
            item_id = f'{key}.{next(serial)}'
            requests[item_id] = request
            batch_items.append(BatchItem(item_id, request.method, request.url, request.body))
        active[key].outstanding += len(batch_items)
        return batch_items

    def take(mailboxes: list[MailboxRef], next_page: str) -> list[BatchItem]:
        chosen = mailboxes[job.index:job.index + room()]
        job.index += len(chosen)
        job.taken += len(chosen)
        taken_this_run[0] += len(chosen)
        follow: list[BatchItem] = []
        if job.index >= len(mailboxes):
            if next_page:
                job.page, job.index = next_page, 0
                if room():
                    follow.append(BatchItem('page', 'GET', next_page))
            else:
                job.discovered_all = True
        for mailbox in chosen:
            key = str(next(serial))
            active[key] = _ActiveMailbox(mailbox)
            follow.extend(items_of(key, requests_for(mailbox)))
            if not active[key].outstanding:
                finish(key)
        return follow

    def finish(key: str) -> None:
        state = active.pop(key)
        if state.outcome == 'nomailbox':
            job.without_mailbox += 1
        elif state.outcome:
            job.record_failure(state.mailbox, state.outcome)
        else:
            job.searched += 1

    def handle(item: BatchItem, answer: dict) -> list[BatchItem]:
        if item.id == 'page':
            if int(answer.get('status') or 0) >= 400:
                raise directory_error(job.scope_kind, job.scope_value, answer)
            body = answer.get('body') if isinstance(answer.get('body'), dict) else {}
            users = [MailboxRef(str(u['id']), str(u.get('userPrincipalName') or u.get('mail') or u['id']))
                     for u in body.get('value') or [] if isinstance(u, dict) and u.get('id')]
            unusable = [u.name for u in users if not usable_in_path(u.id)]
            if unusable:
                demisto.error(f'Users whose ids cannot be one URL path segment are not searched: {unusable[:10]}')
                users = [u for u in users if usable_in_path(u.id)]
            return take(users, relative_graph_link(client, body.get('@odata.nextLink')))
        key = item.id.split('.', 1)[0]
        state = active[key]
        request = requests.pop(item.id)
        state.outstanding -= 1
        follow: list[BatchItem] = []
        if not state.outcome:
            status = int(answer.get('status') or 0)
            if request.handles_errors or 200 <= status < 300:
                follow = items_of(key, on_answer(state.mailbox, request, answer))
            elif is_without_mailbox(answer):
                state.outcome = 'nomailbox'
            else:
                state.outcome = mailbox_failure_text(answer, permission)
        if not state.outstanding:
            finish(key)
        return follow

    if mailbox_list is not None:
        first = take(mailbox_list, '')
    elif room():
        first = [BatchItem('page', 'GET', job.page or directory_first_page(job.scope_kind, job.scope_value))]
    else:
        first = []
    client.run_batches(first, handle, chained=True)


# ================================================================================ CAMPAIGN RESPONSE
# msgraph-mail-search-mailboxes -> msgraph-mail-remediate-emails (dry run first) -> msgraph-mail-undo-remediation.
# Jobs live in the integration context under CAMPAIGN_CONTEXT_KEY, keyed by id; found items are stored compressed
# (zlib + base64 of JSON rows) and capped, so the context stays bounded. Work that does not fit in one run goes on
# through XSOAR polling (the entry carries CommonServerPython's ScheduledCommand keys; the shell runner re-runs it).
CAMPAIGN_CONTEXT_KEY = 'campaign'
CAMPAIGN_JOBS_KEPT = 20
CAMPAIGN_MAX_FOUND = 5000
CAMPAIGN_MAX_ITEMS_DEFAULT = 1000
CAMPAIGN_ITEMS_IN_CONTEXT = 1000
CAMPAIGN_ITEMS_IN_TABLE = 50
CAMPAIGN_POLL_SECONDS = 10
CAMPAIGN_POLL_TIMEOUT_SECONDS = 6 * 3600
CAMPAIGN_SEARCH_PAGE_SIZE = 100
CAMPAIGN_MESSAGE_FIELDS = 'id,internetMessageId,subject,from,receivedDateTime,parentFolderId,isRead'
CAMPAIGN_ACTIONS = ('move_to_deleted_items', 'move_to_junk', 'move_to_folder', 'soft_delete', 'hard_delete')
MOVE_ACTIONS = {'move_to_deleted_items': 'deleteditems', 'move_to_junk': 'junkemail', 'move_to_folder': ''}
ITEM_COLUMNS = ['Mailbox', 'MessageID', 'InternetMessageID', 'Subject', 'Sender', 'ReceivedDateTime', 'FolderID',
                'FolderName', 'IsRead']
RESULT_COLUMNS = ['Mailbox', 'MessageID', 'Result', 'Error', 'FromFolderID', 'ToFolderID']


@dataclass(frozen=True)
class CampaignCriteria:
    internet_message_ids: tuple[str, ...] = ()
    sender: str = ''
    subject: str = ''
    received_after: str = ''
    received_before: str = ''

    def filters(self) -> list[str]:
        """One $filter per Message-ID (Outlook does not combine them with `or`), or one for sender/subject.

        Subject is matched with `subject eq` (exact, and combinable with the other clauses); `$search="subject:"`
        would match words, not the subject, and cannot be combined with `$filter`."""
        common = []
        if self.sender:
            common.append(f'from/emailAddress/address eq {odata_quote(self.sender)}')
        if self.subject:
            common.append(f'subject eq {odata_quote(self.subject)}')
        if self.received_after:
            common.append(f'receivedDateTime ge {self.received_after}')
        if self.received_before:
            common.append(f'receivedDateTime lt {self.received_before}')
        if not self.internet_message_ids:
            return [' and '.join(common)]
        return [' and '.join([f'internetMessageId eq {odata_quote(mid)}', *common]) for mid in self.internet_message_ids]

    def to_state(self) -> dict:
        return {'ids': list(self.internet_message_ids), 'sender': self.sender, 'subject': self.subject,
                'after': self.received_after, 'before': self.received_before}

    @classmethod
    def from_state(cls: type['CampaignCriteria'], state: dict) -> 'CampaignCriteria':
        return cls(tuple(state.get('ids') or ()), state.get('sender', ''), state.get('subject', ''),
                   state.get('after', ''), state.get('before', ''))


CAMPAIGN_EARLIEST_YEAR = 1970
INTERNET_MESSAGE_ID_PATTERN = re.compile(r'^<?[^<>\s]{1,500}@[^<>\s]{1,500}>?$')


def campaign_time_arg(args: dict, name: str, now: datetime) -> str:
    text = arg_text(args, name)
    if not text:
        return ''
    match = RELATIVE_TIME.match(text)
    expected = "an ISO time like 2024-05-01T08:00:00Z or a span like '3 days'"
    try:  # a span or a time beyond what datetime holds is bad input too
        if match:
            moment = now - timedelta(minutes=int(match.group(1)) * RELATIVE_UNITS[match.group(2).lower()])
        else:
            moment = datetime.fromisoformat(text.replace('Z', '+00:00'))
            moment = (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
    except (ValueError, OverflowError):
        raise argument_error(name, expected, text) from None
    if not CAMPAIGN_EARLIEST_YEAR <= moment.year <= 9999:  # an OData filter takes four-digit years
        raise argument_error(name, f'{expected}, from {CAMPAIGN_EARLIEST_YEAR} on', text)
    return format_time(moment)


def campaign_criteria_from_args(args: dict, now: datetime) -> CampaignCriteria:
    ids = arg_list(args, 'internet_message_id')
    for value in ids:
        if not INTERNET_MESSAGE_ID_PATTERN.match(value):
            raise argument_error('internet_message_id', 'Message-IDs like <abc@host>, comma separated', value)
    sender = arg_text(args, 'sender')
    if sender and not re.fullmatch(r'[^\s@<>]{1,200}@[^\s@<>]{1,255}', sender):
        raise argument_error('sender', 'one email address', sender)
    subject = arg_text(args, 'subject')
    if not (ids or sender or subject):
        raise MailError("Give at least one match: 'internet_message_id', 'sender' or 'subject' (optionally with "
                        "'received_after'/'received_before').")
    after, before = campaign_time_arg(args, 'received_after', now), campaign_time_arg(args, 'received_before', now)
    if after and before and after >= before:
        raise MailError(f"'received_after' ({after}) must be earlier than 'received_before' ({before}).")
    # Graph keeps the angle brackets of a Message-ID; add them when they were left out.
    ids = [value if value.startswith('<') else f'<{value.strip("<>")}>' for value in ids]
    return CampaignCriteria(tuple(dict.fromkeys(ids)), sender, subject, after, before)


# ---------------------------------------------------------------- job storage
def pack_rows(rows: list) -> str:
    return base64.b64encode(zlib.compress(json.dumps(rows, separators=(',', ':')).encode('utf-8'), 9)).decode('ascii')


def unpack_rows(packed: str) -> list:
    return json.loads(zlib.decompress(base64.b64decode(packed)).decode('utf-8')) if packed else []


def load_campaign_job(job_id: str) -> Optional[dict]:
    context, _ = ContextStore().read()
    jobs = (context.get(CAMPAIGN_CONTEXT_KEY) or {}).get('jobs') or {}
    job = jobs.get(job_id)
    return dict(job) if isinstance(job, dict) else None


def search_of(job: dict) -> dict:
    """The stored search a remediation acts on: without it the found items are unknown, so nothing may be done."""
    search = load_campaign_job(job['search_id'])
    if not search or search.get('kind') != 'search':
        raise MailError(f"Search {job['search_id']} of {job['id']} is no longer stored (at most {CAMPAIGN_JOBS_KEPT} "
                        'jobs are kept): nothing was done. Run the search again.')
    return search


def campaign_job_arg(name: str, job_id: str, kind: str, expected: str) -> dict:
    """The stored job of `kind` an argument names; anything else is a clear error naming the argument."""
    job = load_campaign_job(job_id)
    if not job or job.get('kind') != kind:
        raise argument_error(name, expected, job_id)
    return job


def save_campaign_job(job_id: str, job: dict) -> None:
    """Read-modify-write of the job under the versioned context; the newest CAMPAIGN_JOBS_KEPT jobs are kept."""
    store = ContextStore()
    for _ in range(5):
        context, version = store.read()
        campaign = dict(context.get(CAMPAIGN_CONTEXT_KEY) or {})
        jobs = dict(campaign.get('jobs') or {})
        jobs[job_id] = job
        order = [j for j in campaign.get('order') or [] if j != job_id and j in jobs] + [job_id]
        kept = order[-CAMPAIGN_JOBS_KEPT:]
        # A kept remediation or undo needs its search (and an undo its remediation): those stay with it.
        needed = {jobs[j].get(ref) for j in kept for ref in ('search_id', 'undo_of') if isinstance(jobs[j], dict)}
        kept = [j for j in order if j in kept or j in needed]
        for old in set(order) - set(kept):
            jobs.pop(old, None)
        context[CAMPAIGN_CONTEXT_KEY] = {'jobs': jobs, 'order': kept}
        try:
            if hasattr(demisto, 'setIntegrationContextVersioned'):
                demisto.setIntegrationContextVersioned(context, version=version, sync=True)
            else:
                demisto.setIntegrationContext(context)
            return
        except ValueError:
            continue  # another run wrote first (a token refresh, say): read again
    raise MailError(f'Could not save the state of job {job_id}: the integration context kept changing.')


def new_job_id(prefix: str) -> str:
    return f'{prefix}-{utc_now():%Y%m%d%H%M%S}-{uuid.uuid4().hex[:8]}'


def polling_entry_keys(command: str, args: dict) -> dict:
    """CommonServerPython's ScheduledCommand.to_results() keys: the platform runs `command` again with `args`."""
    return {'PollingCommand': command, 'NextRun': str(CAMPAIGN_POLL_SECONDS), 'PollingArgs': args,
            'Timeout': str(CAMPAIGN_POLL_TIMEOUT_SECONDS)}


def engine_limits(args: dict) -> EngineLimits:
    return EngineLimits(mailboxes=arg_int(args, 'mailboxes_per_run', ENGINE_MAILBOXES_PER_RUN, 1, 100_000))


def csv_file_entry(name: str, columns: list[str], rows: Iterable[dict]) -> dict:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction='ignore', lineterminator='\n')
    writer.writeheader()
    for row in rows:
        writer.writerow({k: csv_safe(row.get(k)) for k in columns})
    return file_entry(save_bytes_as_file(buffer.getvalue().encode('utf-8')), name)


def csv_safe(value: Any) -> Any:
    """Attacker-written text must not become a spreadsheet formula."""
    text = '' if value is None else str(value)
    return "'" + text if text[:1] in ('=', '+', '-', '@', '\t', '\r') else text


# ---------------------------------------------------------------- search
def found_row(mailbox_index: int, message: dict) -> list:
    sender = ((message.get('from') or {}).get('emailAddress') or {}).get('address', '')
    return [mailbox_index, message.get('id', ''), message.get('parentFolderId', ''), '',
            1 if message.get('isRead') else 0, message.get('receivedDateTime', ''),
            message.get('internetMessageId', ''), message.get('subject', ''), sender]


def found_item_context(row: list, mailboxes: list) -> dict:
    return {'Mailbox': mailboxes[row[0]][1], 'MessageID': row[1], 'InternetMessageID': row[6], 'Subject': row[7],
            'Sender': row[8], 'ReceivedDateTime': row[5], 'FolderID': row[2], 'FolderName': row[3],
            'IsRead': bool(row[4])}


def run_search(client: GraphClient, state: dict, limits: EngineLimits) -> None:
    """One run of a search job: finds the copies in the next mailboxes and the names of their folders."""
    job = EngineJob.from_state(state['engine'])
    criteria = CampaignCriteria.from_state(state['criteria'])
    rows: list = unpack_rows(state.get('found', ''))
    mailboxes: list = state.setdefault('mailboxes', [])   # [path id, name] of mailboxes with a copy
    select = message_select(CAMPAIGN_MESSAGE_FIELDS, client.endpoints.capabilities)
    folder_names: dict[tuple[str, str], str] = {}
    waiting: dict[tuple[str, str], list[list]] = {}

    # The query is the same in every mailbox: encoded once, not once per mailbox (the coordinator builds the requests
    # of a whole directory page while no batch may be in flight).
    queries = [batch_query({'$filter': text, '$select': select, '$top': str(CAMPAIGN_SEARCH_PAGE_SIZE)})
               for text in criteria.filters()]

    def requests_for(mailbox: MailboxRef) -> list[MailboxRequest]:
        path = messages_path(mailbox.id)
        return [MailboxRequest('GET', path + query, tag='messages') for query in queries]

    def mailbox_index(mailbox: MailboxRef) -> int:
        if not mailboxes or mailboxes[-1][0] != mailbox.id:
            mailboxes.append([mailbox.id, mailbox.name])
        return len(mailboxes) - 1

    def on_answer(mailbox: MailboxRef, request: MailboxRequest, answer: dict) -> list[MailboxRequest]:
        body = answer.get('body') if isinstance(answer.get('body'), dict) else {}
        if request.tag == 'folder':
            key = (mailbox.id, request.url)
            folder_names[key] = str(body.get('displayName') or '')
            for row in waiting.pop(key, []):
                row[3] = folder_names[key]
            return []
        follow = []
        for message in body.get('value') or []:
            if not isinstance(message, dict) or not message.get('id'):
                continue
            if not (usable_in_path(message['id']) and usable_in_path(message.get('parentFolderId') or 'none')):
                demisto.error(f'A message in {mailbox.name} with an id that cannot be one URL path segment was left '
                              f"out of search {state['id']}: {str(message['id'])[:100]!r}")
                continue
            if len(rows) >= CAMPAIGN_MAX_FOUND:
                raise MailError(f'The search found more than {CAMPAIGN_MAX_FOUND} copies; narrow it (add sender, '
                                'subject or a time range) so that a remediation cannot reach unrelated mail.')
            row = found_row(mailbox_index(mailbox), message)
            rows.append(row)
            if not row[2]:
                continue  # no folder id, no name to look up
            folder_url = f"{folder_path(mailbox.id, row[2])}?$select=displayName"
            key = (mailbox.id, folder_url)
            if key in folder_names:
                row[3] = folder_names[key]
            else:
                if key not in waiting:  # only the name: a failure leaves it empty and the mailbox searched
                    follow.append(MailboxRequest('GET', folder_url, tag='folder', handles_errors=True))
                waiting.setdefault(key, []).append(row)
        link = relative_graph_link(client, body.get('@odata.nextLink'))
        if link:
            follow.append(MailboxRequest('GET', link, tag='messages'))
        return follow

    run_mailbox_job(client, job, requests_for, on_answer, 'Mail.ReadWrite', limits, listed_mailboxes(job))
    record_job_run(state, job, 'found', rows)


def record_job_run(state: dict, job: 'EngineJob', key: str, rows: list) -> None:
    """Stores what one run of a multi-mailbox job gathered: its cursor, its rows packed, their count, its status."""
    state['engine'] = job.to_state()
    state[key] = pack_rows(rows)
    state[f'{key}_count'] = len(rows)
    state['status'] = 'Completed' if job.done else 'InProgress'


def search_context(state: dict, rows: list) -> dict:
    job = EngineJob.from_state(state['engine'])
    mailboxes = state.get('mailboxes') or []
    return {'ID': state['id'], 'Status': state['status'],
            'MailboxesTotal': job.taken if job.discovered_all else None,
            'MailboxesSearched': job.searched, 'MailboxesWithoutMailbox': job.without_mailbox,
            'MailboxesFailedCount': job.failed_count, 'MailboxesFailed': job.failed, 'ItemsFound': len(rows),
            'Items': [found_item_context(r, mailboxes) for r in rows[:CAMPAIGN_ITEMS_IN_CONTEXT]]}


def search_mailboxes_command(client: GraphClient, args: dict) -> list[dict]:
    search_id = arg_text(args, 'search_id')
    if search_id:
        state = campaign_job_arg('search_id', search_id, 'search', 'the ID of a search this instance started')
    else:
        scope = mailbox_scope_from_args(args)
        criteria = campaign_criteria_from_args(args, utc_now())
        search_id = new_job_id('search')
        state = {'kind': 'search', 'id': search_id, 'status': 'InProgress', 'created': format_time(utc_now()),
                 'criteria': criteria.to_state(), 'engine': EngineJob.start(search_id, scope).to_state()}
    if state['status'] == 'InProgress':
        run_search(client, state, engine_limits(args))
        save_campaign_job(search_id, state)
    rows = unpack_rows(state.get('found', ''))
    return search_entries(state, rows, args)


def search_entries(state: dict, rows: list, args: dict) -> list[dict]:
    context = search_context(state, rows)
    summary = (f"### Campaign search {context['ID']}: {context['Status']}\n"
               f"Mailboxes searched: {context['MailboxesSearched']}"
               + (f" of {context['MailboxesTotal']}" if context['MailboxesTotal'] is not None else ' so far')
               + f"; without a mailbox: {context['MailboxesWithoutMailbox']}; failed: {context['MailboxesFailedCount']}"
               f"; copies found: {context['ItemsFound']}.\n")
    readable = summary + markdown_table(f"Copies found (first {CAMPAIGN_ITEMS_IN_TABLE})" if len(rows) >
                                        CAMPAIGN_ITEMS_IN_TABLE else 'Copies found',
                                        context['Items'][:CAMPAIGN_ITEMS_IN_TABLE],
                                        ['Mailbox', 'FolderName', 'Subject', 'Sender', 'ReceivedDateTime', 'IsRead'])
    if context['MailboxesFailed']:
        readable += markdown_table('Mailboxes that failed', context['MailboxesFailed'], ['Mailbox', 'Error'])
    entry = note_entry(context, readable, {'MSGraphMail.CampaignSearch(val.ID && val.ID === obj.ID)': context})
    entries = [entry]
    if state['status'] == 'InProgress':
        entry.update(polling_entry_keys('msgraph-mail-search-mailboxes',
                                        {'search_id': state['id'], 'mailboxes_per_run': args.get('mailboxes_per_run')
                                         or str(ENGINE_MAILBOXES_PER_RUN)}))
    elif len(rows) > CAMPAIGN_ITEMS_IN_TABLE:
        mailboxes = state.get('mailboxes') or []
        entries.append(csv_file_entry(f"{state['id']}.csv", ITEM_COLUMNS,
                                      (found_item_context(r, mailboxes) for r in rows)))
    return entries


# ---------------------------------------------------------------- remediation
def remediation_request(action: str, mailbox: str, message_id: str, destination: str) -> MailboxRequest:
    path = message_path(mailbox, message_id)
    if action in MOVE_ACTIONS:
        return MailboxRequest('POST', f'{path}/move', {'destinationId': destination}, handles_errors=True)
    if action == 'hard_delete':
        return MailboxRequest('POST', f'{path}/permanentDelete', {}, handles_errors=True)
    return MailboxRequest('DELETE', path, handles_errors=True)


def remediation_result(answer: dict) -> tuple[str, str, dict]:
    """(Done | Gone | Failed, error text, body) of one action's answer."""
    status, code, message = answer_error(answer)
    body = answer.get('body') if isinstance(answer.get('body'), dict) else {}
    if 200 <= status < 300:
        return 'Done', '', body
    if status == 404 and code in ('ErrorItemNotFound', 'ItemNotFound', 'ResourceNotFound'):
        return 'Gone', 'The message is no longer there (already moved or deleted).', body
    return 'Failed', mailbox_failure_text(answer, 'Mail.ReadWrite'), body


def result_context(row: list, items: list, mailboxes: list) -> dict:
    item = items[row[0]]
    return {'Mailbox': mailboxes[item[0]][1], 'MessageID': row[4] or item[1], 'Result': row[1], 'Error': row[2],
            'FromFolderID': row[5] if len(row) > 5 else item[2], 'ToFolderID': row[3]}


@dataclass(frozen=True)
class FolderStep:
    """The tag of a lookup on the way down a move_to_folder path: which mailbox, how many names are behind it."""
    mailbox_number: int
    depth: int


def run_remediation(client: GraphClient, state: dict, search: dict, limits: EngineLimits) -> None:
    """One run of a remediation: acts on the next mailboxes' items of the search, exactly those. A move_to_folder
    path is looked up in each mailbox first, in the engine's batches like the moves; a dry run of it stops there and
    reports per item whether the folder exists (WouldDo) or not (Failed)."""
    items = unpack_rows(search.get('found', ''))
    mailboxes = search.get('mailboxes') or []
    results: list = unpack_rows(state.get('results', ''))   # [item index, result, error, to folder, new id]
    times: list = unpack_rows(state.get('result_times', '')) or [''] * len(results)   # when each was recorded
    by_mailbox: dict[int, list[int]] = {}
    for index in state['item_indexes']:
        by_mailbox.setdefault(items[index][0], []).append(index)
    order = sorted(by_mailbox)
    refs = [MailboxRef(str(position), mailboxes[m][1]) for position, m in enumerate(order)]
    job = EngineJob.from_state(state['engine'])
    action = state['action']
    undo = state.get('undo_of')
    sources = {r[0]: r for r in unpack_rows(state.get('undo_rows', ''))} if undo else {}
    recorded = {r[0] for r in results}   # acted on in an earlier run that broke off: never sent again
    walk = folder_walk(state['folder']) if looks_up_a_folder(state) else None

    def record(rows: list[list]) -> None:
        results.extend(rows)
        times.extend([format_time(utc_now())] * len(rows))

    def pending(mailbox_number: int) -> list[int]:
        return [index for index in by_mailbox[mailbox_number] if index not in recorded]

    def actions(mailbox_number: int, destination: str) -> list[MailboxRequest]:
        user = mailboxes[mailbox_number][0]
        if state.get('dry_run'):
            record([[index, 'WouldDo', '', destination, ''] for index in pending(mailbox_number)])
            return []
        wanted = []
        for index in pending(mailbox_number):
            if undo:
                request = remediation_request('move_to_folder', user, sources[index][4] or items[index][1],
                                              items[index][2])
            else:
                request = remediation_request(action, user, items[index][1], destination)
            request.tag = index
            wanted.append(request)
        return wanted

    def fail_all(mailbox_number: int, error: str) -> list[MailboxRequest]:
        record([[index, 'Failed', error, '', ''] for index in pending(mailbox_number)])
        return []

    def lookup(mailbox_number: int, parent: str, depth: int) -> list[MailboxRequest]:
        """The next step down the path (`depth` names of it found, the last one `parent`), or the actions once the
        last folder is known."""
        assert walk is not None
        if depth == len(walk[2]):
            return actions(mailbox_number, parent)
        path, query = child_folder_query(mailboxes[mailbox_number][0], parent, walk[2][depth])
        return [MailboxRequest('GET', path + batch_query(query), tag=FolderStep(mailbox_number, depth),
                               handles_errors=True)]

    def requests_for(ref: MailboxRef) -> list[MailboxRequest]:
        mailbox_number = order[int(ref.id)]
        if not pending(mailbox_number):
            return []
        if walk is None:
            return actions(mailbox_number, state.get('destination', ''))
        return lookup(mailbox_number, walk[0], 0)

    def on_folder_page(step: FolderStep, answer: dict) -> list[MailboxRequest]:
        assert walk is not None
        if not 200 <= int(answer.get('status') or 0) < 300:
            return fail_all(step.mailbox_number, mailbox_failure_text(answer, 'Mail.ReadWrite'))
        body = answer.get('body') if isinstance(answer.get('body'), dict) else {}
        name = walk[2][step.depth]
        try:
            found = folder_named(body, name)
            if found:
                return lookup(step.mailbox_number, str(found['id']), step.depth + 1)
            next_page = relative_graph_link(client, body.get('@odata.nextLink'))
        except MailError as exc:   # a folder id that cannot be a path segment, a next page on another host
            return fail_all(step.mailbox_number, str(exc))
        if next_page:
            return [MailboxRequest('GET', next_page, tag=step, handles_errors=True)]
        mailbox, walked = mailboxes[step.mailbox_number][1], walk[1] + walk[2][:step.depth]
        return fail_all(step.mailbox_number, str(folder_not_found(state['folder'], mailbox, walked, name)))

    def on_answer(ref: MailboxRef, request: MailboxRequest, answer: dict) -> list[MailboxRequest]:
        if isinstance(request.tag, FolderStep):
            return on_folder_page(request.tag, answer)
        result, error, body = remediation_result(answer)
        moved = action in MOVE_ACTIONS or undo
        row = [request.tag, result, error, body.get('parentFolderId', '') if moved and result == 'Done' else '',
               body.get('id', '') if moved and result == 'Done' else '']
        if undo:
            row.append(sources[request.tag][3])  # it comes back from where the remediation put it
        record([row])
        return []

    try:
        run_mailbox_job(client, job, requests_for, on_answer, 'Mail.ReadWrite', limits, refs)
    finally:
        # Kept also when the run breaks off: what was done stays on record (audit, undo). The cursor then stays
        # where this run began, so the next run takes the same mailboxes and acts only on what is not recorded.
        state['results'] = pack_rows(results)
        state['result_times'] = pack_rows(times)
    state['engine'] = job.to_state()
    state['status'] = 'Completed' if job.done else 'InProgress'


def run_remediation_saved(client: GraphClient, state: dict, search: dict, args: dict, resume: str) -> None:
    """run_remediation, with the state saved whatever happens: a run that breaks off after acting on some items
    leaves their record and says how to go on (`resume`: the arguments that continue it)."""
    try:
        run_remediation(client, state, search, engine_limits(args))
    except MailError as exc:
        handled = len(unpack_rows(state.get('results', '')))
        raise MailError(f"{exc} {state['id']} stopped after {handled} of {len(state['item_indexes'])} items (what "
                        f'was done is recorded); run the command again with {resume} to finish it.') from None
    finally:
        save_campaign_job(state['id'], state)


def parse_remediation_args(client: GraphClient, args: dict, search: dict) -> dict:
    action = arg_choice(args, 'action', CAMPAIGN_ACTIONS, '')
    dry_run = arg_bool(args, 'dry_run', True)
    max_items = arg_int(args, 'max_items', CAMPAIGN_MAX_ITEMS_DEFAULT, 1, CAMPAIGN_MAX_FOUND)
    if action == 'hard_delete':
        require_capability(client.endpoints, 'permanent_delete', 'Hard delete (permanentDelete)',
                           "Use action=soft_delete or a move instead")
    folder = arg_text(args, 'folder')
    if action == 'move_to_folder' and not folder:
        raise MailError("Missing argument 'folder': action=move_to_folder needs a folder path (Inbox/Quarantine) or a "
                        "well-known name (Archive).")
    if folder and action != 'move_to_folder':
        raise MailError("Argument 'folder' is only used with action=move_to_folder.")
    count = int(search.get('found_count') or 0)
    if count > max_items:
        raise MailError(f'The search found {count} items, more than max_items={max_items}. Check the search, then raise '
                        'max_items explicitly to act on all of them.')
    if count == 0:
        raise MailError(f"Search {search['id']} found no items: there is nothing to remediate.")
    destination = MOVE_ACTIONS.get(action, '')
    alias = WELL_KNOWN_FOLDERS.get(folder.lower()) if folder else None
    if action == 'move_to_folder':
        destination = alias or (folder if looks_like_folder_id(folder) else '')
        if not destination:
            try:
                folder_walk(folder)
            except MailError as exc:
                raise MailError(f"Argument 'folder': {exc}") from None
    return {'action': action, 'dry_run': dry_run, 'folder': folder, 'destination': destination,
            'destination_is_id': bool(destination)}


def looks_up_a_folder(state: dict) -> bool:
    """Whether the remediation first finds its destination folder by path in each mailbox."""
    return state['action'] == 'move_to_folder' and not state.get('undo_of') and not state.get('destination_is_id')


def remediate_emails_command(client: GraphClient, args: dict) -> list[dict]:
    remediation_id = arg_text(args, 'remediation_id')
    if remediation_id:
        state = campaign_job_arg('remediation_id', remediation_id, 'remediation',
                                 'the ID of a remediation this instance started')
        if arg_text(args, 'search_id') not in ('', state['search_id']):
            raise argument_error('search_id', f"the search of remediation {remediation_id} ({state['search_id']})",
                                 arg_text(args, 'search_id'))
        search = search_of(state)
    else:
        search_id = arg_text(args, 'search_id', required=True)
        search = campaign_job_arg('search_id', search_id, 'search',
                                  'the ID of a search this instance ran (msgraph-mail-search-mailboxes)')
        if search.get('status') != 'Completed':
            raise MailError(f'Search {search_id} is not complete yet ({search.get("status")}): let it finish, so the '
                            'remediation acts on everything it finds.')
        options = parse_remediation_args(client, args, search)
        remediation_id = new_job_id('remediation')
        state = {'kind': 'remediation', 'id': remediation_id, 'search_id': search_id, 'status': 'InProgress',
                 'created': format_time(utc_now()), 'item_indexes': list(range(int(search['found_count']))),
                 'engine': EngineJob.start(remediation_id, MailboxScope('mailboxes', '')).to_state(), **options}
        if options['dry_run'] and not looks_up_a_folder(state):   # nothing to look up: nothing to send
            state['status'] = 'Completed'
            state['results'] = pack_rows([[i, 'WouldDo', '', options['destination'], '']
                                          for i in state['item_indexes']])
            state['result_times'] = pack_rows([format_time(utc_now())] * len(state['item_indexes']))
    if state['status'] == 'InProgress':
        run_remediation_saved(client, state, search, args, f'remediation_id={remediation_id}')
    else:
        save_campaign_job(remediation_id, state)
    return remediation_entries(state, search, args)


def remediation_entries(state: dict, search: dict, args: dict) -> list[dict]:
    items = unpack_rows(search.get('found', ''))
    mailboxes = search.get('mailboxes') or []
    results = unpack_rows(state.get('results', ''))
    rows = [result_context(r, items, mailboxes) for r in results]
    succeeded = sum(1 for r in rows if r['Result'] in ('Done', 'WouldDo'))
    failed = sum(1 for r in rows if r['Result'] == 'Failed')
    action = state['action'] if not state.get('undo_of') else f"undo {state['action']}"
    context = {'ID': state['id'], 'SearchID': state['search_id'], 'Action': action, 'DryRun': bool(state.get('dry_run')),
               'Status': state['status'], 'ItemsTotal': len(state['item_indexes']), 'ItemsSucceeded': succeeded,
               'ItemsFailed': failed, 'Items': rows[:CAMPAIGN_ITEMS_IN_CONTEXT]}
    if state.get('undo_of'):
        context['UndoOf'] = state['undo_of']
    gone = sum(1 for r in rows if r['Result'] == 'Gone')
    verb = 'would be' if context['DryRun'] else 'were'
    head = (f"### Remediation {state['id']} ({action}{', dry run: nothing was changed' if context['DryRun'] else ''}):"
            f" {state['status']}\n{succeeded} of {context['ItemsTotal']} items {verb} handled; {gone} already gone; "
            f"{failed} failed.\n")
    if state['action'] in ('soft_delete', 'hard_delete') and not state.get('undo_of'):
        head += ('**A delete cannot be undone with msgraph-mail-undo-remediation**' +
                 (' (a soft delete can be recovered from Recoverable Items by an administrator).\n'
                  if state['action'] == 'soft_delete' else ' (hard delete purges the items).\n'))
    readable = head + markdown_table('Items', rows[:CAMPAIGN_ITEMS_IN_TABLE], RESULT_COLUMNS)
    entry = note_entry(context, readable, {'MSGraphMail.Remediation(val.ID && val.ID === obj.ID)': context})
    entries = [entry]
    if state['status'] == 'InProgress':
        polling = {'remediation_id': state['id'], 'search_id': state['search_id'], 'action': state['action'],
                   'mailboxes_per_run': args.get('mailboxes_per_run') or str(ENGINE_MAILBOXES_PER_RUN)}
        command = 'msgraph-mail-undo-remediation' if state.get('undo_of') else 'msgraph-mail-remediate-emails'
        if state.get('undo_of'):
            polling = {'remediation_id': state['undo_of'], 'undo_id': state['id'],
                       'mailboxes_per_run': polling['mailboxes_per_run']}
        entry.update(polling_entry_keys(command, polling))
    else:
        entries.append(audit_file_entry(state, items, mailboxes, results, action))
        if failed:
            entries.append(error_entry(f'{failed} of {context["ItemsTotal"]} items of remediation {state["id"]} failed: '
                                       + '; '.join(f"{r['Mailbox']}: {r['Error']}" for r in rows
                                                   if r['Result'] == 'Failed')[:2000]))
    return entries


def audit_file_entry(state: dict, items: list, mailboxes: list, results: list, action: str) -> dict:
    """The audit record: one JSON line per item, timed when its answer was recorded (a job started by an earlier
    version has no such times: then the time of this file)."""
    stamp = format_time(utc_now())
    times = unpack_rows(state.get('result_times', ''))
    times += [''] * (len(results) - len(times))   # never a line lost to a shorter list of times
    lines = []
    for row, when in zip(results, times):
        item = items[row[0]]
        lines.append(json.dumps({
            'time': when or stamp, 'remediation_id': state['id'], 'search_id': state['search_id'],
            'dry_run': bool(state.get('dry_run')),
            'mailbox': mailboxes[item[0]][1], 'message_id': row[4] or item[1], 'internet_message_id': item[6],
            'action': action, 'result': row[1], 'error': row[2],
            'from_folder': row[5] if len(row) > 5 else item[2], 'to_folder': row[3]}))
    data = ('\n'.join(lines) + '\n').encode('utf-8')
    return file_entry(save_bytes_as_file(data), f"{state['id']}-audit.jsonl")


def undo_remediation_command(client: GraphClient, args: dict) -> list[dict]:
    remediation_id = arg_text(args, 'remediation_id', required=True)
    original = campaign_job_arg('remediation_id', remediation_id, 'remediation',
                                'the ID of a remediation this instance ran')
    if original.get('undo_of'):
        raise MailError(f'{remediation_id} is itself an undo; undo the original remediation again instead.')
    if original['action'] not in MOVE_ACTIONS:
        raise MailError(f"Remediation {remediation_id} was a {original['action'].replace('_', ' ')}: deleted mail cannot "
                        'be put back by this command (a soft delete can be recovered from Recoverable Items by an '
                        'administrator; a hard delete purges it).')
    if original.get('dry_run'):
        raise MailError(f'Remediation {remediation_id} was a dry run: it changed nothing, there is nothing to undo.')
    if original.get('status') != 'Completed':
        raise MailError(f'Remediation {remediation_id} is not complete yet: let it finish before undoing it.')
    search = search_of(original)
    undo_id = arg_text(args, 'undo_id')
    state = load_campaign_job(undo_id) if undo_id else None
    if undo_id and (not state or state.get('undo_of') != remediation_id):
        raise argument_error('undo_id', f'the ID of an undo of {remediation_id}', undo_id)
    if state is None:
        done = [r for r in unpack_rows(original.get('results', '')) if r[1] == 'Done']
        undo_id = new_job_id('undo')
        state = {'kind': 'remediation', 'id': undo_id, 'undo_of': remediation_id, 'search_id': original['search_id'],
                 'action': original['action'], 'status': 'InProgress', 'created': format_time(utc_now()),
                 'item_indexes': [r[0] for r in done], 'undo_rows': pack_rows(done),
                 'engine': EngineJob.start(undo_id, MailboxScope('mailboxes', '')).to_state()}
        if not done:
            state['status'] = 'Completed'
    if state['status'] == 'InProgress':
        run_remediation_saved(client, state, search, args, f'remediation_id={remediation_id} undo_id={undo_id}')
    return remediation_entries(state, search, args)


# ================================================================================ RULE HUNT
# msgraph-mail-hunt-rules: the inbox rule triage (COMMANDS: RULES) across many mailboxes, on the multi-mailbox
# engine. Per mailbox: its rules (paged), then each distinct folder its rules move or copy to, all packed into the
# engine's $batch calls together with other mailboxes' requests; the tenant's domains are read once per hunt.
# Only suspicious rules are kept (compressed, capped) with the job, plus the forwarding addresses not judged internal
# and the mailboxes that use them, so that an address set in several mailboxes stands out.
RULE_HUNT_CONTEXT_KEY = 'MSGraphMail.RuleHunt(val.ID && val.ID === obj.ID)'
RULE_HUNT_KIND = 'rulehunt'
RULE_HUNT_MAX_FINDINGS = 5000
RULE_HUNT_FINDINGS_IN_CONTEXT = 1000
RULE_HUNT_FINDINGS_IN_TABLE = 50
RULE_HUNT_ADDRESSES_KEPT = 5000
RULE_HUNT_MAILBOXES_PER_ADDRESS = 50
RULE_HUNT_PAGE_SIZE = 100
RULE_HUNT_MAILBOXES_PER_RUN = 2000   # the yml's default: each mailbox costs a rules read and its folder reads
FINDING_COLUMNS = ['Mailbox', 'DisplayName', 'IsEnabled', 'Reasons', 'ForwardsTo', 'RuleID']


RULE_HUNT_TEXT_KEPT = 500              # characters of a finding's name, reason or note kept with the hunt
RULE_HUNT_ADDRESSES_PER_FINDING = 20


def kept_text(value: Any) -> str:
    text = str(value or '')
    return text if len(text) <= RULE_HUNT_TEXT_KEPT else text[:RULE_HUNT_TEXT_KEPT] + '…'


def finding_row(mailbox: str, rule: dict, assessment: RuleAssessment) -> list:
    """A finding as kept with the hunt between polling runs: every text bounded, whatever Graph sent."""
    return [mailbox, str(rule.get('id') or ''), kept_text(rule.get('displayName')), rule.get('isEnabled') is True,
            [kept_text(r) for r in assessment.reasons], assessment.forwards_to[:RULE_HUNT_ADDRESSES_PER_FINDING],
            [kept_text(n) for n in assessment.notes]]


def note_forwarding(forwards: dict, mailbox: str, addresses: Iterable[str]) -> None:
    """Remembers that `mailbox` forwards to `addresses` (called once per mailbox, with all its rules' addresses).
    Bounded: at most RULE_HUNT_ADDRESSES_KEPT addresses, each with a count and its first mailboxes."""
    for key in dict.fromkeys(address.lower() for address in addresses):
        if key not in forwards and len(forwards) >= RULE_HUNT_ADDRESSES_KEPT:
            continue
        entry = forwards.setdefault(key, {'count': 0, 'mailboxes': []})
        entry['count'] += 1
        if len(entry['mailboxes']) < RULE_HUNT_MAILBOXES_PER_ADDRESS:
            entry['mailboxes'].append(mailbox)


def shared_forwarding(forwards: dict) -> list[dict]:
    shared = [{'Address': address, 'MailboxCount': entry['count'], 'Mailboxes': entry['mailboxes']}
              for address, entry in forwards.items() if entry['count'] > 1]
    return sorted(shared, key=lambda s: (-s['MailboxCount'], s['Address']))


def finding_context(row: list, shared: dict) -> dict:
    reasons = list(row[4])
    for address in row[5]:
        if address.lower() in shared:
            reasons.append(f'forwards to {address}, which {shared[address.lower()]} mailboxes forward to')
    finding = {'Mailbox': row[0], 'RuleID': row[1], 'DisplayName': row[2], 'IsEnabled': row[3], 'Reasons': reasons,
               'ForwardsTo': row[5]}
    if row[6]:
        finding['Notes'] = row[6]
    return finding


def finding_csv_row(row: list, shared: dict) -> dict:
    finding = finding_context(row, shared)
    return {**finding, 'Reasons': '; '.join(finding['Reasons']), 'ForwardsTo': ', '.join(finding['ForwardsTo'])}


def hunt_domains(client: GraphClient, state: dict) -> tuple[Optional[frozenset], str]:
    """The tenant's domains, read once per hunt and kept with it."""
    if 'domains' not in state:
        domains, why = tenant_domains_of(client)
        state['domains'] = sorted(domains) if domains is not None else None
        state['domains_why'] = why
    return (frozenset(state['domains']) if state['domains'] is not None else None), state.get('domains_why', '')


def run_rule_hunt(client: GraphClient, state: dict, limits: EngineLimits) -> None:
    """One run of a rule hunt: the next mailboxes' rules, judged as list-rules judges them."""
    job = EngineJob.from_state(state['engine'])
    findings: list = unpack_rows(state.get('findings', ''))
    forwards: dict = state.setdefault('forwards', {})
    domains, domains_why = hunt_domains(client, state)
    open_mailboxes: dict[str, dict] = {}   # mailbox id -> {'rules': [...], 'names': {...}, 'waiting': n}

    def requests_for(mailbox: MailboxRef) -> list[MailboxRequest]:
        open_mailboxes[mailbox.id] = {'rules': [], 'names': {}, 'waiting': 0}
        return [MailboxRequest('GET', f'{rules_path(mailbox.id)}?$top={RULE_HUNT_PAGE_SIZE}', tag='rules')]

    def assess_mailbox(mailbox: MailboxRef) -> None:
        gathered = open_mailboxes.pop(mailbox.id)
        own = mailbox.name if '@' in mailbox.name else ''
        context = TriageContext(own, domains, domains_why, gathered['names'])
        state['rules_checked'] = state.get('rules_checked', 0) + len(gathered['rules'])
        outside: list[str] = []
        for rule in gathered['rules']:
            assessment = assess_rule(rule, context)
            outside += [a for a in assessment.forwards_to if address_locality(a, context) != 'internal']
            if assessment.suspicious:
                if len(findings) >= RULE_HUNT_MAX_FINDINGS:
                    state['findings_dropped'] = state.get('findings_dropped', 0) + 1
                    continue
                findings.append(finding_row(mailbox.name, rule, assessment))
        note_forwarding(forwards, mailbox.name, outside)

    def on_answer(mailbox: MailboxRef, request: MailboxRequest, answer: dict) -> list[MailboxRequest]:
        gathered = open_mailboxes[mailbox.id]
        body = answer.get('body') if isinstance(answer.get('body'), dict) else {}
        if request.tag == 'rules':
            values = body.get('value') if isinstance(body.get('value'), list) else []
            gathered['rules'] += [r for r in values if isinstance(r, dict)]
            link = relative_graph_link(client, body.get('@odata.nextLink'))
            if link:
                return [MailboxRequest('GET', link, tag='rules')]
            folder_ids = rule_folder_ids(gathered['rules'])
            if not folder_ids:
                assess_mailbox(mailbox)
                return []
            gathered['waiting'] = len(folder_ids)
            return [MailboxRequest('GET', f'{folder_path(mailbox.id, fid)}?$select=displayName', tag=('folder', fid),
                                   handles_errors=True) for fid in folder_ids]
        status = int(answer.get('status') or 0)
        if 200 <= status < 300:
            gathered['names'][request.tag[1]] = str(body.get('displayName') or '')
        elif status in (400, 404):
            gathered['names'][request.tag[1]] = FOLDER_NOT_A_MAIL_FOLDER
        gathered['waiting'] -= 1
        if not gathered['waiting']:
            assess_mailbox(mailbox)
        return []

    run_mailbox_job(client, job, requests_for, on_answer, 'MailboxSettings.Read', limits, listed_mailboxes(job))
    record_job_run(state, job, 'findings', findings)


def rule_hunt_context(state: dict, rows: list) -> dict:
    job = EngineJob.from_state(state['engine'])
    shared = shared_forwarding(state.get('forwards') or {})
    counts = {s['Address']: s['MailboxCount'] for s in shared}
    return {'ID': state['id'], 'Status': state['status'],
            'MailboxesTotal': job.taken if job.discovered_all else None,
            'MailboxesSearched': job.searched, 'MailboxesWithoutMailbox': job.without_mailbox,
            'MailboxesFailedCount': job.failed_count, 'MailboxesFailed': job.failed,
            'RulesChecked': state.get('rules_checked', 0), 'FindingsCount': len(rows) + state.get('findings_dropped', 0),
            'Findings': [finding_context(r, counts) for r in rows[:RULE_HUNT_FINDINGS_IN_CONTEXT]],
            'SharedForwardingAddresses': shared}


def rule_hunt_entries(state: dict, args: dict) -> list[dict]:
    rows = unpack_rows(state.get('findings', ''))
    context = rule_hunt_context(state, rows)
    total = f" of {context['MailboxesTotal']}" if context['MailboxesTotal'] is not None else ' so far'
    readable = (f"### Inbox rule hunt {context['ID']}: {context['Status']}\n"
                f"Mailboxes searched: {context['MailboxesSearched']}{total}; without a mailbox: "
                f"{context['MailboxesWithoutMailbox']}; failed: {context['MailboxesFailedCount']}; rules checked: "
                f"{context['RulesChecked']}; suspicious rules: {context['FindingsCount']}.\n\n")
    title = f'Suspicious rules (first {RULE_HUNT_FINDINGS_IN_TABLE})' if len(rows) > RULE_HUNT_FINDINGS_IN_TABLE \
        else 'Suspicious rules'
    table_rows = [{**f, 'Reasons': '; '.join(f['Reasons'])} for f in context['Findings'][:RULE_HUNT_FINDINGS_IN_TABLE]]
    readable += markdown_table(title, table_rows, FINDING_COLUMNS)
    if context['SharedForwardingAddresses']:
        readable += '\n' + markdown_table('Forwarding addresses set in more than one mailbox',
                                          context['SharedForwardingAddresses'], ['Address', 'MailboxCount', 'Mailboxes'])
    if context['MailboxesFailed']:
        readable += '\n' + markdown_table('Mailboxes that failed', context['MailboxesFailed'], ['Mailbox', 'Error'])
    if state.get('domains') is None:
        readable += f"\nForwarding to other domains was not judged: {markdown_cell(state.get('domains_why'))}.\n"
    readable += f'\n{MAPI_CAVEAT}\n'
    entry = note_entry(context, readable, {RULE_HUNT_CONTEXT_KEY: context})
    entries = [entry]
    if state['status'] == 'InProgress':
        entry.update(polling_entry_keys('msgraph-mail-hunt-rules', {
            'hunt_id': state['id'], 'mailboxes_per_run': args.get('mailboxes_per_run') or str(RULE_HUNT_MAILBOXES_PER_RUN)}))
    elif len(rows) > RULE_HUNT_FINDINGS_IN_TABLE:
        shared = {s['Address']: s['MailboxCount'] for s in context['SharedForwardingAddresses']}
        entries.append(csv_file_entry(f"{state['id']}.csv", FINDING_COLUMNS, (finding_csv_row(r, shared) for r in rows)))
    return entries


def rule_hunt_limits(args: dict) -> EngineLimits:
    return EngineLimits(mailboxes=arg_int(args, 'mailboxes_per_run', RULE_HUNT_MAILBOXES_PER_RUN, 1, 100_000))


def hunt_rules_command(client: GraphClient, args: dict) -> list[dict]:
    require_inbox_rules(client)
    hunt_id = arg_text(args, 'hunt_id')
    if hunt_id:
        state = load_campaign_job(hunt_id)
        if not state or state.get('kind') != RULE_HUNT_KIND:
            raise argument_error('hunt_id', 'the ID of a rule hunt this instance started', hunt_id)
    else:
        scope = mailbox_scope_from_args(args)
        hunt_id = new_job_id(RULE_HUNT_KIND)
        state = {'kind': RULE_HUNT_KIND, 'id': hunt_id, 'status': 'InProgress', 'created': format_time(utc_now()),
                 'engine': EngineJob.start(hunt_id, scope).to_state()}
    if state['status'] == 'InProgress':
        run_rule_hunt(client, state, rule_hunt_limits(args))
        save_campaign_job(hunt_id, state)
    return rule_hunt_entries(state, args)


# ================================================================================ MAIN
def build_client(params: dict, redactor: SecretRedactor, store: ContextStore, default_user: str) -> GraphClient:
    endpoints = resolve_endpoints(params.get('url') or '', params.get('azure_ad_endpoint') or '',
                                  params.get('server_url_cloud') or '')
    auth = auth_settings_from_params(params)
    http = HttpSession(parse_timeout(params.get('timeout')), insecure=param_bool(params, 'insecure'),
                       use_proxy=param_bool(params, 'proxy'))
    tokens = TokenManager(build_token_provider(auth, endpoints, http), auth.fingerprint(endpoints), store, redactor)
    demisto.debug(f'{endpoints.cloud_name} cloud: Graph {endpoints.graph_base}, token authority {endpoints.login_root}, '
                  f'auth mode {auth.mode}')
    return GraphClient(endpoints, http, tokens, default_user=default_user,
                       tenant_domains=parse_domain_list(params.get('tenant_domains')))


COMMANDS: dict[str, Callable[[GraphClient, dict], Any]] = {
    'msgraph-mail-list-emails': list_emails_command,
    'msgraph-mail-search-email': list_emails_command,
    'msgraph-mail-get-email': get_email_command,
    'msgraph-mail-delete-email': delete_email_command,
    'msgraph-mail-list-attachments': list_attachments_command,
    'msgraph-mail-get-attachment': get_attachment_command,
    'msgraph-mail-get-email-as-eml': get_email_as_eml_command,
    'msgraph-mail-list-folders': list_folders_command,
    'msgraph-mail-list-child-folders': list_child_folders_command,
    'msgraph-mail-create-folder': create_folder_command,
    'msgraph-mail-update-folder': update_folder_command,
    'msgraph-mail-delete-folder': delete_folder_command,
    'msgraph-mail-move-email': move_email_command,
    'msgraph-mail-update-email-status': update_email_status_command,
    'msgraph-mail-list-rules': list_rules_command,
    'msgraph-mail-get-rule': get_rule_command,
    'msgraph-mail-delete-rule': delete_rule_command,
    'msgraph-mail-create-rule': create_rule_command,
    'msgraph-mail-update-rule': update_rule_command,
    'msgraph-mail-get-settings': get_settings_command,
    'msgraph-mail-get-mailtips': get_mailtips_command,
    'msgraph-mail-hunt-rules': hunt_rules_command,
    'msgraph-mail-auth-reset': auth_reset_command,
    'send-mail': send_mail_command,
    'msgraph-mail-create-draft': create_draft_command,
    'msgraph-mail-send-draft': send_draft_command,
    'msgraph-mail-reply-to': reply_to_command,
    'reply-mail': reply_mail_command,
    'msgraph-mail-forward-email': forward_email_command,
    'msgraph-mail-search-mailboxes': search_mailboxes_command,
    'msgraph-mail-remediate-emails': remediate_emails_command,
    'msgraph-mail-undo-remediation': undo_remediation_command,
}


def user_message(exc: Exception, command: str, redactor: SecretRedactor) -> str:
    if isinstance(exc, MailError):
        return cap_long_words(redactor.redact(str(exc)))
    return cap_long_words(redactor.redact(f'Failed to execute {command}: unexpected {type(exc).__name__}: {exc}'))


def main() -> None:
    command = demisto.command()
    params = demisto.params() or {}
    redactor = SecretRedactor(secrets_in_params(params) + [os.environ.get('IDENTITY_HEADER') or ''])
    install_redaction(redactor)
    demisto.debug(f'Command being called is {command}')
    try:
        # The platform does not allow the integration context inside test-module.
        store = MemoryStore() if command == 'test-module' else ContextStore()
        client = build_client(params, redactor, store, (params.get('mailbox_to_fetch') or '').strip())
        if command == 'test-module':
            demisto.results(test_module_command(client, FetchSettings.from_params(params)))
        elif command == 'fetch-incidents':
            client.set_deadline(FETCH_DEADLINE_SECONDS)
            next_run, incidents = fetch_incidents(client, demisto.getLastRun() or {}, FetchSettings.from_params(params))
            demisto.setLastRun(next_run)
            demisto.incidents(redactor.redact_value(incidents))
        elif command in COMMANDS:
            demisto.results(redactor.redact_value(COMMANDS[command](client, demisto.args() or {})))
        else:
            raise NotImplementedError(f'Command {command} is not implemented.')
    except Exception as exc:
        demisto.debug(redactor.redact(traceback.format_exc()))
        message = user_message(exc, command, redactor)
        if command == 'fetch-incidents':
            # Raising makes the platform record a failed fetch and keep the previous last run.
            raise MailError(message) from None
        demisto.results(error_entry(message))


if __name__ in ('__main__', '__builtin__', 'builtins'):
    main()
