"""Foundation tests for MicrosoftGraphMail: read them as the user manual.

Each test says "given parameters / arguments like this, running this shows that". Everything on the wire is
intercepted by requests-mock (msal's traffic too); waiting is recorded by the `sleeps` fixture, never done.

Sections:
 1. Authentication modes and parameters
 2. Token requests on the wire (oproxy, client secret, certificate, managed identity)
 3. National clouds
 4. Token cache in the integration context
 5. HTTP layer (retries, errors, paging, $batch, downloads, uploads)
 6. Secret redaction
 7. Argument and parameter validation
 8. Command dispatch against the yml
 9. XSOAR runtime rules for the module text
10. demistomock (the local runtime) and the command line
"""
import ast
import base64
import hashlib
import io
import json
import os
import random
import re
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

import jwt
import pytest
import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

import demistomock as demisto
import MicrosoftGraphMail as mgm
from conftest import GRAPH, load_json

HERE = os.path.dirname(os.path.abspath(__file__))
MODULE_PATH = os.path.join(HERE, 'MicrosoftGraphMail.py')
YML_PATH = os.path.join(HERE, 'MicrosoftGraphMail.yml')
CSP_NAMES_PATH = os.path.join(HERE, 'tests', 'data', 'csp_top_level_names.txt')

WORLDWIDE = 'https://graph.microsoft.com'
WORLDWIDE_LOGIN = 'https://login.microsoftonline.com'
MAILBOX = 'soc@contoso.com'
FOLDERS_URL = f'{GRAPH}/users/{MAILBOX}/mailFolders'

# Self-deployed application
TENANT = '8f1c2d3e-0000-4a5b-9c8d-7e6f5a4b3c2d'
CLIENT_ID = '3a2b1c0d-0000-4e5f-8a9b-0c1d2e3f4a5b'
CLIENT_SECRET = 'Qx8~sEcReT.client_value-0123456789abcd'
# Cortex XSOAR application (oproxy): ID, Token and Key from the consent page
OPROXY_ID = 'oproxy-registration-0001'
OPROXY_TOKEN = 'consent-page-token::AbCdEf0123456789'
OPROXY_KEY = base64.b64encode(bytes(range(1, 33))).decode()
OPROXY_URL = 'https://oproxy.demisto.ninja/obtain-token'

# Environment variables that change where msal / managed identity send requests.
AZURE_ENV_VARS = ('MSAL_FORCE_REGION', 'IDENTITY_ENDPOINT', 'IDENTITY_HEADER', 'MSI_ENDPOINT', 'MSI_SECRET',
                  'IMDS_ENDPOINT', 'AZURE_POD_IDENTITY_AUTHORITY_HOST', 'HTTP_PROXY', 'HTTPS_PROXY',
                  'http_proxy', 'https_proxy', 'ALL_PROXY', 'all_proxy')

# The five Microsoft clouds (anchor-xsoar.md §4g): Server URL -> token authority.
NATIONAL_CLOUDS = [
    ('https://graph.microsoft.com', 'https://login.microsoftonline.com'),
    ('https://graph.microsoft.us', 'https://login.microsoftonline.us'),
    ('https://dod-graph.microsoft.us', 'https://login.microsoftonline.us'),
    ('https://graph.microsoft.de', 'https://login.microsoftonline.de'),
    ('https://microsoftgraph.chinacloudapi.cn', 'https://login.chinacloudapi.cn'),
]


# ================================================================================ helpers and fixtures
@pytest.fixture(autouse=True)
def clean_runtime(monkeypatch):
    """Every test starts with an empty integration context and no Azure/proxy environment overrides."""
    for name in AZURE_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv('MGM_LOG_LEVEL', raising=False)
    monkeypatch.setattr(demisto, '_runtime', demisto._Runtime())


@dataclass
class MainRun:
    """What one run of main() showed the user (entries) and wrote to the server log (debug)."""
    entries: list = field(default_factory=list)
    debug: list = field(default_factory=list)

    @property
    def errors(self) -> list:
        return [e for e in self.entries if isinstance(e, dict) and e.get('Type') == mgm.ENTRY_ERROR]

    @property
    def error_text(self) -> str:
        assert len(self.errors) == 1, f'expected exactly one error entry, got {self.entries}'
        return self.errors[0]['Contents']

    def everything(self) -> str:
        return json.dumps(self.entries, default=str) + '\n' + '\n'.join(self.debug)


@pytest.fixture
def run_main(monkeypatch):
    """Runs main() the way XSOAR does: command, params and args in, entries out."""

    def run(command: str, params: dict, args: Optional[dict] = None) -> MainRun:
        result = MainRun()
        monkeypatch.setattr(demisto, 'command', lambda: command)
        monkeypatch.setattr(demisto, 'params', lambda: params)
        monkeypatch.setattr(demisto, 'args', lambda: dict(args or {}))
        monkeypatch.setattr(demisto, 'results',
                            lambda entry: result.entries.extend(entry if isinstance(entry, list) else [entry]))
        monkeypatch.setattr(demisto, 'debug', lambda *parts: result.debug.append(' '.join(str(p) for p in parts)))
        mgm.main()
        return result

    return run


def creds(password: str = '', identifier: str = '') -> dict:
    """A credentials-type (type 9) parameter value."""
    return {'identifier': identifier, 'password': password}


def oproxy_params(**extra: Any) -> dict:
    return {'url': WORLDWIDE, 'creds_auth_id': creds(OPROXY_ID), 'creds_tenant_id': creds(OPROXY_TOKEN),
            'credentials': creds(OPROXY_KEY), **extra}


def secret_params(**extra: Any) -> dict:
    return {'url': WORLDWIDE, 'self_deployed': True, 'creds_auth_id': creds(CLIENT_ID),
            'creds_tenant_id': creds(TENANT), 'credentials': creds(CLIENT_SECRET), **extra}


def certificate_params(thumbprint_value: str, pem_value: str, **extra: Any) -> dict:
    return {'url': WORLDWIDE, 'self_deployed': True, 'creds_auth_id': creds(CLIENT_ID), 'creds_tenant_id': creds(TENANT),
            'creds_certificate': creds(pem_value, identifier=thumbprint_value), **extra}


def managed_identity_params(client_id: str = '', **extra: Any) -> dict:
    return {'url': WORLDWIDE, 'use_managed_identities': True,
            'managed_identities_client_id': creds(client_id), **extra}


@dataclass
class Authority:
    """requests-mock routes for one msal authority: OIDC discovery and the token endpoint."""
    discovery: Any
    token: Any
    token_url: str

    def form(self, index: int = -1) -> dict:
        body = self.token.request_history[index].text
        return {k: v[0] for k, v in urllib.parse.parse_qs(body).items()}


def mock_authority(requests_mock, login_root: str = WORLDWIDE_LOGIN, tenant: str = TENANT,
                   token_response: Optional[list] = None) -> Authority:
    base = f'{login_root}/{tenant}'
    discovery = requests_mock.get(f'{base}/v2.0/.well-known/openid-configuration', json={
        'token_endpoint': f'{base}/oauth2/v2.0/token', 'authorization_endpoint': f'{base}/oauth2/v2.0/authorize',
        'issuer': f'{base}/v2.0', 'token_endpoint_auth_methods_supported': ['client_secret_post', 'private_key_jwt']})
    responses = token_response or [{'json': {'token_type': 'Bearer', 'access_token': 'msal-access-token-0001',
                                             'expires_in': 3599, 'ext_expires_in': 3599}}]
    token = requests_mock.post(f'{base}/oauth2/v2.0/token', responses)
    return Authority(discovery, token, f'{base}/oauth2/v2.0/token')


def mock_oproxy(requests_mock, responses: Optional[list] = None, url: str = OPROXY_URL):
    return requests_mock.post(url, responses or [{'json': {'access_token': 'oproxy-access-token-0001',
                                                          'expires_in': 3595, 'refresh_token': 'refresh-0001'}}])


def mock_folders(requests_mock, base: str = GRAPH, user: str = MAILBOX):
    return requests_mock.get(f'{base}/users/{user}/mailFolders',
                             json={'value': [{'id': 'AAMk-inbox', 'displayName': 'Inbox', 'totalItemCount': 3}]})


def decrypt_oproxy_token(encrypted_b64: str, key_b64: str) -> tuple[int, str]:
    """Undoes the Cortex XSOAR application's format: base64(nonce || AES-GCM(key, "{epoch}:{content}"))."""
    raw = base64.b64decode(encrypted_b64)
    plain = AESGCM(base64.b64decode(key_b64)).decrypt(raw[:12], raw[12:], None).decode()
    epoch, _, content = plain.partition(':')
    return int(epoch), content


def hosts_called(requests_mock) -> list[str]:
    return [urllib.parse.urlparse(r.url).netloc for r in requests_mock.request_history]


def token_requests(requests_mock) -> list:
    return [r for r in requests_mock.request_history if r.method == 'POST' and '/oauth2/v2.0/token' in r.url]


def discovery_requests(requests_mock) -> list:
    return [r for r in requests_mock.request_history if 'openid-configuration' in r.url]


def stored_auth() -> dict:
    return demisto.getIntegrationContext().get('auth') or {}


class CountingProvider:
    """A token provider that hands out numbered tokens and counts requests."""

    def __init__(self, lifetime: int = 3600) -> None:
        self.calls: list[str] = []
        self.lifetime = lifetime

    def acquire(self, refresh_token: str = '') -> mgm.AccessToken:
        self.calls.append(refresh_token)
        return mgm.AccessToken(value=f'access-token-{len(self.calls)}', expires_on=time.time() + self.lifetime)


@dataclass
class CertificateMaterial:
    private_key_pem: str
    certificate: x509.Certificate
    thumbprint_hex: str          # SHA-1 of the DER certificate, as shown in the Azure portal

    @property
    def public_key(self):
        return self.certificate.public_key()


@pytest.fixture(scope='module')
def certificate() -> CertificateMaterial:
    """An RSA key and a self-signed certificate, as uploaded to an app registration."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'xsoar-graph-mail-test')])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30)).sign(key, hashes.SHA256()))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    thumbprint = hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return CertificateMaterial(pem, cert, thumbprint)


class BrokenStream(io.RawIOBase):
    """A response body whose connection drops after `good` bytes: requests raises ChunkedEncodingError mid-stream."""

    def __init__(self, good: bytes) -> None:
        super().__init__()
        self.good = good

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self.good:
            raise ConnectionResetError(104, 'Connection reset by peer')
        size = min(len(buffer), len(self.good))
        buffer[:size], self.good = self.good[:size], self.good[size:]
        return size


def one_line(pem: str) -> str:
    """What a one-line password field makes of a PEM: every line break becomes a space."""
    return ' '.join(pem.strip().splitlines())


# ================================================================================ 1. AUTHENTICATION MODES
class TestAuthModes:
    """Which authentication mode a set of instance parameters selects, and what each missing field says."""

    def test_id_token_key_select_the_cortex_xsoar_application(self):
        settings = mgm.auth_settings_from_params(oproxy_params())
        assert settings.mode == mgm.AUTH_XSOAR_APP
        assert (settings.client_id, settings.tenant_id, settings.secret) == (OPROXY_ID, OPROXY_TOKEN, OPROXY_KEY)
        assert settings.oproxy_token_url == OPROXY_URL

    def test_id_with_at_url_overrides_the_token_service(self):
        params = oproxy_params(creds_auth_id=creds(f'{OPROXY_ID}@https://oproxy.eu.example.com/obtain-token'))
        settings = mgm.auth_settings_from_params(params)
        assert settings.client_id == OPROXY_ID
        assert settings.oproxy_token_url == 'https://oproxy.eu.example.com/obtain-token'

    @pytest.mark.parametrize('legacy', [
        {'_auth_id': 'legacy-id', '_tenant_id': 'legacy-token', 'enc_key': 'bGVnYWN5LWtleQ=='},
        {'auth_id': 'legacy-id', 'tenant_id': 'legacy-token', 'enc_key': 'bGVnYWN5LWtleQ=='},
    ], ids=['hidden-underscore-names', 'deprecated-names'])
    def test_legacy_hidden_parameters_are_used_when_credentials_are_empty(self, legacy):
        settings = mgm.auth_settings_from_params({'url': WORLDWIDE, 'creds_auth_id': creds(), 'creds_tenant_id': creds(),
                                                  'credentials': creds(), **legacy})
        assert settings.mode == mgm.AUTH_XSOAR_APP
        assert (settings.client_id, settings.tenant_id, settings.secret) == ('legacy-id', 'legacy-token', 'bGVnYWN5LWtleQ==')

    def test_credentials_parameters_win_over_legacy_ones(self):
        params = oproxy_params(_auth_id='legacy-id', auth_id='older-id', _tenant_id='legacy-token',
                               tenant_id='older-token', enc_key='bGVnYWN5LWtleQ==')
        settings = mgm.auth_settings_from_params(params)
        assert (settings.client_id, settings.tenant_id, settings.secret) == (OPROXY_ID, OPROXY_TOKEN, OPROXY_KEY)

    def test_legacy_certificate_parameters_are_used_when_creds_certificate_is_empty(self, certificate):
        params = {**secret_params(credentials=creds()), 'creds_certificate': creds(),
                  'certificate_thumbprint': certificate.thumbprint_hex, 'private_key': certificate.private_key_pem}
        settings = mgm.auth_settings_from_params(params)
        assert settings.mode == mgm.AUTH_CERTIFICATE
        assert settings.certificate_thumbprint == certificate.thumbprint_hex
        assert settings.private_key.strip() == certificate.private_key_pem.strip()

    def test_creds_certificate_wins_over_legacy_certificate_parameters(self, certificate):
        params = certificate_params(certificate.thumbprint_hex, certificate.private_key_pem,
                                    certificate_thumbprint='00' * 20, private_key='-----BEGIN PRIVATE KEY-----\nold\n')
        settings = mgm.auth_settings_from_params(params)
        assert settings.certificate_thumbprint == certificate.thumbprint_hex
        assert settings.private_key.strip() == certificate.private_key_pem.strip()

    def test_self_deployed_with_secret_selects_client_credentials(self):
        settings = mgm.auth_settings_from_params(secret_params())
        assert settings.mode == mgm.AUTH_CLIENT_SECRET
        assert (settings.client_id, settings.tenant_id, settings.secret) == (CLIENT_ID, TENANT, CLIENT_SECRET)

    def test_self_deployed_client_id_with_at_sign_is_not_split(self):
        settings = mgm.auth_settings_from_params(secret_params(creds_auth_id=creds('app@contoso')))
        assert settings.client_id == 'app@contoso'
        assert settings.oproxy_token_url == OPROXY_URL

    def test_thumbprint_and_private_key_select_certificate(self, certificate):
        settings = mgm.auth_settings_from_params(certificate_params(certificate.thumbprint_hex,
                                                                    certificate.private_key_pem))
        assert settings.mode == mgm.AUTH_CERTIFICATE

    def test_one_line_private_key_is_repaired(self, certificate):
        repaired = mgm.normalize_private_key(one_line(certificate.private_key_pem))
        assert repaired.strip() == certificate.private_key_pem.strip()
        serialization.load_pem_private_key(repaired.encode(), password=None)

    def test_multi_line_private_key_is_kept_as_is(self, certificate):
        assert mgm.normalize_private_key(certificate.private_key_pem).strip() == certificate.private_key_pem.strip()

    def test_one_line_pem_bundle_with_certificate_first_keeps_the_private_key(self, certificate):
        """A pasted .pem bundle (certificate, then key) whose newlines became spaces must still hold the key."""
        cert_pem = certificate.certificate.public_bytes(serialization.Encoding.PEM).decode()
        repaired = mgm.normalize_private_key(one_line(cert_pem + certificate.private_key_pem))
        serialization.load_pem_private_key(repaired.encode(), password=None)

    @pytest.mark.parametrize('client_id', ['', '6c5d4e3f-0000-4a1b-8c7d-9e0f1a2b3c4d'],
                             ids=['system-assigned', 'user-assigned'])
    def test_managed_identities_need_no_other_field(self, client_id):
        settings = mgm.auth_settings_from_params(managed_identity_params(client_id))
        assert settings.mode == mgm.AUTH_MANAGED_IDENTITY
        assert settings.managed_identity_client_id == client_id

    @pytest.mark.parametrize('params, named', [
        (oproxy_params(credentials=creds()), 'credentials'),
        (oproxy_params(creds_auth_id=creds()), 'creds_auth_id'),
        (oproxy_params(creds_tenant_id=creds()), 'creds_tenant_id'),
        (secret_params(credentials=creds()), 'credentials'),
        (secret_params(creds_auth_id=creds()), 'creds_auth_id'),
        (secret_params(creds_tenant_id=creds()), 'creds_tenant_id'),
        ({**secret_params(credentials=creds()), 'creds_certificate': creds(identifier='AB' * 20)}, 'creds_certificate'),
    ], ids=['oproxy-key', 'oproxy-id', 'oproxy-token', 'secret', 'client-id', 'tenant-id', 'thumbprint-without-key'])
    def test_missing_field_names_the_parameter(self, params, named):
        with pytest.raises(mgm.MailError, match=re.escape(named)):
            mgm.auth_settings_from_params(params)

    def test_main_reports_a_missing_key_as_an_error_entry_without_network(self, run_main, requests_mock):
        run = run_main('msgraph-mail-list-folders', oproxy_params(credentials=creds()), {'user_id': MAILBOX})
        assert 'credentials' in run.error_text
        assert requests_mock.call_count == 0


# ================================================================================ 2. TOKEN REQUESTS ON THE WIRE
class TestOproxyOnTheWire:
    """The Cortex XSOAR application ("oproxy"): what is POSTed, decrypted with the Key."""

    def test_first_token_request_carries_the_encrypted_token(self, run_main, requests_mock):
        oproxy = mock_oproxy(requests_mock)
        folders = mock_folders(requests_mock)
        run = run_main('msgraph-mail-list-folders', oproxy_params(), {'user_id': MAILBOX})
        assert not run.errors
        body = oproxy.last_request.json()
        assert body['app_name'] == 'ms-graph-mail'
        assert body['registration_id'] == OPROXY_ID
        epoch, content = decrypt_oproxy_token(body['encrypted_token'], OPROXY_KEY)
        assert content == OPROXY_TOKEN
        assert abs(epoch - time.time()) < 60
        assert folders.last_request.headers['Authorization'] == 'Bearer oproxy-access-token-0001'

    def test_expired_token_is_renewed_with_the_returned_refresh_token(self, run_main, requests_mock):
        oproxy = mock_oproxy(requests_mock, [
            {'json': {'access_token': 'oproxy-access-1', 'expires_in': 3595, 'refresh_token': 'refresh-0001'}},
            {'json': {'access_token': 'oproxy-access-2', 'expires_in': 3595}},
        ])
        folders = mock_folders(requests_mock)
        run_main('msgraph-mail-list-folders', oproxy_params(), {'user_id': MAILBOX})
        demisto.setIntegrationContext({'auth': {**stored_auth(), 'valid_until': str(int(time.time()) - 10)}})
        run = run_main('msgraph-mail-list-folders', oproxy_params(), {'user_id': MAILBOX})
        assert not run.errors
        assert oproxy.call_count == 2
        _, content = decrypt_oproxy_token(oproxy.last_request.json()['encrypted_token'], OPROXY_KEY)
        assert content == 'refresh-0001'
        assert folders.last_request.headers['Authorization'] == 'Bearer oproxy-access-2'
        assert stored_auth()['refresh_token'] == 'refresh-0001'

    def test_rejected_refresh_token_falls_back_to_the_configured_token(self, run_main, requests_mock):
        oproxy = mock_oproxy(requests_mock, [
            {'json': {'access_token': 'oproxy-access-1', 'expires_in': 3595, 'refresh_token': 'refresh-0001'}},
            {'status_code': 400, 'json': {'title': 'invalid refresh token'}},
            {'json': {'access_token': 'oproxy-access-3', 'expires_in': 3595}},
        ])
        mock_folders(requests_mock)
        run_main('msgraph-mail-list-folders', oproxy_params(), {'user_id': MAILBOX})
        demisto.setIntegrationContext({'auth': {**stored_auth(), 'valid_until': '0'}})
        run = run_main('msgraph-mail-list-folders', oproxy_params(), {'user_id': MAILBOX})
        assert not run.errors
        sent = [decrypt_oproxy_token(r.json()['encrypted_token'], OPROXY_KEY)[1] for r in oproxy.request_history]
        assert sent == [OPROXY_TOKEN, 'refresh-0001', OPROXY_TOKEN]

    def test_id_at_url_sends_the_token_request_to_that_url(self, run_main, requests_mock):
        custom = mock_oproxy(requests_mock, url='https://oproxy.eu.example.com/obtain-token')
        mock_folders(requests_mock)
        params = oproxy_params(creds_auth_id=creds(f'{OPROXY_ID}@https://oproxy.eu.example.com/obtain-token'))
        run = run_main('msgraph-mail-list-folders', params, {'user_id': MAILBOX})
        assert not run.errors
        assert custom.last_request.json()['registration_id'] == OPROXY_ID
        assert 'oproxy.demisto.ninja' not in hosts_called(requests_mock)

    def test_refused_token_request_is_explained(self, run_main, requests_mock):
        mock_oproxy(requests_mock, [{'status_code': 401, 'json': {'title': 'Unauthorized registration'}}])
        run = run_main('msgraph-mail-list-folders', oproxy_params(), {'user_id': MAILBOX})
        assert 'HTTP 401' in run.error_text and 'Unauthorized registration' in run.error_text

    @pytest.mark.parametrize('answer', [
        {'json': {'token_type': 'Bearer', 'expires_in': 3595}},
        {'text': '<html><body>Service temporarily unavailable</body></html>', 'headers': {'Content-Type': 'text/html'}},
    ], ids=['no-access-token', 'html-page'])
    def test_a_200_answer_without_an_access_token_is_explained(self, run_main, requests_mock, answer):
        mock_oproxy(requests_mock, [{'status_code': 200, **answer}])
        folders = mock_folders(requests_mock)
        run = run_main('msgraph-mail-list-folders', oproxy_params(), {'user_id': MAILBOX})
        assert 'Cortex XSOAR application' in run.error_text and 'access token' in run.error_text
        assert 'unexpected' not in run.error_text
        assert not folders.called

    def test_key_that_is_not_base64_is_named(self, run_main, requests_mock):
        run = run_main('msgraph-mail-list-folders', oproxy_params(credentials=creds('not a key!')), {'user_id': MAILBOX})
        assert 'credentials' in run.error_text
        assert requests_mock.call_count == 0


class TestClientSecretOnTheWire:
    """A self-deployed application with a client secret, through msal."""

    def test_token_form_fields(self, run_main, requests_mock):
        authority = mock_authority(requests_mock)
        folders = mock_folders(requests_mock)
        run = run_main('msgraph-mail-list-folders', secret_params(), {'user_id': MAILBOX})
        assert not run.errors
        assert authority.discovery.call_count == 1
        form = authority.form()
        assert form['client_id'] == CLIENT_ID
        assert form['client_secret'] == CLIENT_SECRET
        assert form['grant_type'] == 'client_credentials'
        assert form['scope'] == 'https://graph.microsoft.com/.default'
        assert folders.last_request.headers['Authorization'] == 'Bearer msal-access-token-0001'

    def test_wrong_secret_is_explained_with_the_likely_cause(self, run_main, requests_mock):
        mock_authority(requests_mock, token_response=[{'status_code': 401,
                                                       'json': load_json('foundation/token_error_invalid_client.json')}])
        run = run_main('msgraph-mail-list-folders', secret_params(), {'user_id': MAILBOX})
        assert 'invalid_client' in run.error_text
        assert 'client secret is wrong or expired' in run.error_text

    def test_trust_any_certificate_and_timeout_reach_msal_requests(self, run_main, requests_mock, monkeypatch):
        """msal never passes verify itself; with system proxy settings on, REQUESTS_CA_BUNDLE would otherwise win."""
        monkeypatch.setenv('REQUESTS_CA_BUNDLE', '/etc/ssl/certs/ca-certificates.crt')
        mock_authority(requests_mock)
        mock_folders(requests_mock)
        run_main('msgraph-mail-list-folders', secret_params(insecure=True, proxy=True, timeout='25'), {'user_id': MAILBOX})
        assert len(requests_mock.request_history) == 3
        for request in requests_mock.request_history:
            assert request.verify is False, request.url
            assert request.timeout == 25.0, request.url


class TestCertificateOnTheWire:
    """A self-deployed application with a certificate: msal signs a client assertion."""

    def assert_valid_assertion(self, authority: Authority, certificate: CertificateMaterial) -> None:
        form = authority.form()
        assert 'client_secret' not in form
        assert form['client_assertion_type'] == 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'
        assertion = form['client_assertion']
        header = jwt.get_unverified_header(assertion)
        expected_x5t = base64.urlsafe_b64encode(bytes.fromhex(certificate.thumbprint_hex)).decode().rstrip('=')
        assert header['x5t'].rstrip('=') == expected_x5t
        claims = jwt.decode(assertion, certificate.public_key, algorithms=['RS256'], audience=authority.token_url,
                            issuer=CLIENT_ID)
        assert claims['sub'] == CLIENT_ID
        assert form['scope'] == 'https://graph.microsoft.com/.default'

    def test_client_assertion_is_signed_with_the_private_key(self, run_main, requests_mock, certificate):
        authority = mock_authority(requests_mock)
        mock_folders(requests_mock)
        run = run_main('msgraph-mail-list-folders',
                       certificate_params(certificate.thumbprint_hex, certificate.private_key_pem), {'user_id': MAILBOX})
        assert not run.errors
        self.assert_valid_assertion(authority, certificate)

    def test_one_line_key_and_colon_thumbprint_still_authenticate(self, run_main, requests_mock, certificate):
        authority = mock_authority(requests_mock)
        mock_folders(requests_mock)
        colon_thumbprint = ':'.join(re.findall('..', certificate.thumbprint_hex.lower()))
        params = certificate_params(colon_thumbprint, one_line(certificate.private_key_pem))
        run = run_main('msgraph-mail-list-folders', params, {'user_id': MAILBOX})
        assert not run.errors
        self.assert_valid_assertion(authority, certificate)

    @pytest.mark.parametrize('mistake', ['certificate-instead-of-key', 'encrypted-key', 'garbage'])
    def test_unusable_private_key_is_explained(self, run_main, requests_mock, certificate, mistake):
        """Pasting the certificate, or a password-protected key, into 'Private Key' gets a sentence, not a crash."""
        key = serialization.load_pem_private_key(certificate.private_key_pem.encode(), password=None)
        pasted = {
            'certificate-instead-of-key': certificate.certificate.public_bytes(serialization.Encoding.PEM).decode(),
            'encrypted-key': key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.BestAvailableEncryption(b'export-password')).decode(),
            'garbage': '-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----',
        }[mistake]
        mock_authority(requests_mock)
        run = run_main('msgraph-mail-list-folders', certificate_params(certificate.thumbprint_hex, pasted),
                       {'user_id': MAILBOX})
        assert 'private key' in run.error_text.lower()
        assert 'unexpected' not in run.error_text
        assert not token_requests(requests_mock)


class TestManagedIdentityOnTheWire:
    """Azure managed identities: the engine asks the machine's identity endpoint."""

    IMDS = 'http://169.254.169.254/metadata/identity/oauth2/token'

    def test_system_assigned_identity_asks_imds(self, run_main, requests_mock):
        imds = requests_mock.get(self.IMDS, json=load_json('foundation/imds_token.json'))
        folders = mock_folders(requests_mock)
        run = run_main('msgraph-mail-list-folders', managed_identity_params(), {'user_id': MAILBOX})
        assert not run.errors
        request = imds.last_request
        assert request.headers['Metadata'] == 'true'
        assert request.qs == {'api-version': ['2018-02-01'], 'resource': ['https://graph.microsoft.com/']}
        assert folders.last_request.headers['Authorization'] == 'Bearer imds-access-token-value-0001'

    def test_user_assigned_identity_sends_its_client_id(self, run_main, requests_mock):
        imds = requests_mock.get(self.IMDS, json=load_json('foundation/imds_token.json'))
        mock_folders(requests_mock)
        run_main('msgraph-mail-list-folders', managed_identity_params('6c5d4e3f-0000-4a1b-8c7d-9e0f1a2b3c4d'),
                 {'user_id': MAILBOX})
        assert imds.last_request.qs['client_id'] == ['6c5d4e3f-0000-4a1b-8c7d-9e0f1a2b3c4d']
        assert imds.last_request.qs['resource'] == ['https://graph.microsoft.com/']

    def test_pod_identity_host_redirects_imds(self, run_main, requests_mock, monkeypatch):
        monkeypatch.setenv('AZURE_POD_IDENTITY_AUTHORITY_HOST', 'http://127.0.0.1:2579/')
        pod = requests_mock.get('http://127.0.0.1:2579/metadata/identity/oauth2/token',
                                json=load_json('foundation/imds_token.json'))
        mock_folders(requests_mock)
        run = run_main('msgraph-mail-list-folders', managed_identity_params(), {'user_id': MAILBOX})
        assert not run.errors
        assert pod.call_count == 1
        assert '169.254.169.254' not in hosts_called(requests_mock)

    def test_app_service_identity_endpoint(self, run_main, requests_mock, monkeypatch):
        monkeypatch.setenv('IDENTITY_ENDPOINT', 'http://127.0.0.1:41234/msi/token')
        monkeypatch.setenv('IDENTITY_HEADER', 'app-service-identity-header')
        app_service = requests_mock.get('http://127.0.0.1:41234/msi/token', json=load_json('foundation/imds_token.json'))
        mock_folders(requests_mock)
        run = run_main('msgraph-mail-list-folders', managed_identity_params(), {'user_id': MAILBOX})
        assert not run.errors
        request = app_service.last_request
        assert request.headers['X-IDENTITY-HEADER'] == 'app-service-identity-header'
        assert request.qs['api-version'] == ['2019-08-01']
        assert request.qs['resource'] == ['https://graph.microsoft.com/']
        assert '169.254.169.254' not in hosts_called(requests_mock)

    @pytest.mark.parametrize('answer', [
        {'json': {'token_type': 'Bearer', 'expires_in': '3599', 'resource': 'https://graph.microsoft.com/'}},
        {'text': '<html><body>Azure Instance Metadata Service</body></html>', 'headers': {'Content-Type': 'text/html'}},
    ], ids=['no-access-token', 'html-page'])
    def test_a_200_answer_without_an_access_token_is_explained(self, run_main, requests_mock, answer):
        requests_mock.get(self.IMDS, status_code=200, **answer)
        folders = mock_folders(requests_mock)
        run = run_main('msgraph-mail-list-folders', managed_identity_params(), {'user_id': MAILBOX})
        assert 'managed identity' in run.error_text and 'access token' in run.error_text
        assert 'unexpected' not in run.error_text
        assert not folders.called

    def test_app_service_expires_on_sets_the_expiry_so_a_short_lived_token_is_renewed(self, run_main, requests_mock,
                                                                                       monkeypatch):
        """App Service answers expires_on (epoch seconds) without expires_in: a token that expires in 2 minutes is
        within the 5-minute margin, so the next command asks for a new one instead of using it for an hour."""
        monkeypatch.setenv('IDENTITY_ENDPOINT', 'http://127.0.0.1:41234/msi/token')
        monkeypatch.setenv('IDENTITY_HEADER', 'app-service-identity-header')
        expires_on = int(time.time()) + 120
        app_service = requests_mock.get('http://127.0.0.1:41234/msi/token', [
            {'json': {'access_token': 'app-service-token-1', 'expires_on': str(expires_on), 'token_type': 'Bearer',
                      'resource': 'https://graph.microsoft.com/'}},
            {'json': {'access_token': 'app-service-token-2', 'expires_on': str(int(time.time()) + 86400),
                      'token_type': 'Bearer', 'resource': 'https://graph.microsoft.com/'}}])
        folders = mock_folders(requests_mock)
        first = run_main('msgraph-mail-list-folders', managed_identity_params(), {'user_id': MAILBOX})
        assert not first.errors
        assert stored_auth()['valid_until'] == str(expires_on)
        second = run_main('msgraph-mail-list-folders', managed_identity_params(), {'user_id': MAILBOX})
        assert not second.errors
        assert app_service.call_count == 2
        assert folders.last_request.headers['Authorization'] == 'Bearer app-service-token-2'

    def test_unreachable_identity_endpoint_is_explained(self, run_main, requests_mock):
        requests_mock.get(self.IMDS, exc=requests.exceptions.ConnectTimeout)
        run = run_main('msgraph-mail-list-folders', managed_identity_params(), {'user_id': MAILBOX})
        assert 'managed identit' in run.error_text.lower()
        assert 'Azure' in run.error_text


# ================================================================================ 3. NATIONAL CLOUDS
class TestNationalClouds:
    """The Server URL picks the cloud: token authority, scope, managed identity resource and Graph base."""

    def test_every_cloud_of_the_module_is_covered_here(self):
        assert sorted(mgm.NATIONAL_CLOUDS) == sorted(url for url, _ in NATIONAL_CLOUDS)

    @pytest.mark.parametrize('server_url, login_root', NATIONAL_CLOUDS)
    def test_client_secret_token_and_graph_calls_stay_in_the_cloud(self, run_main, requests_mock, server_url, login_root):
        authority = mock_authority(requests_mock, login_root=login_root)
        folders = mock_folders(requests_mock, base=f'{server_url}/v1.0')
        run = run_main('msgraph-mail-list-folders', secret_params(url=server_url), {'user_id': MAILBOX})
        assert not run.errors
        assert authority.discovery.call_count == 1
        assert authority.form()['scope'] == f'{server_url}/.default'
        assert folders.call_count == 1
        expected_hosts = {urllib.parse.urlparse(login_root).netloc, urllib.parse.urlparse(server_url).netloc}
        assert set(hosts_called(requests_mock)) == expected_hosts

    @pytest.mark.parametrize('server_url, login_root', NATIONAL_CLOUDS)
    def test_managed_identity_resource_follows_the_cloud(self, run_main, requests_mock, server_url, login_root):
        imds = requests_mock.get('http://169.254.169.254/metadata/identity/oauth2/token',
                                 json={'access_token': 'mi-token-0001', 'expires_in': '3599'})
        folders = mock_folders(requests_mock, base=f'{server_url}/v1.0')
        run = run_main('msgraph-mail-list-folders', managed_identity_params(url=server_url), {'user_id': MAILBOX})
        assert not run.errors
        assert imds.last_request.qs['resource'] == [f'{server_url}/']
        assert folders.call_count == 1

    @pytest.mark.parametrize('typed', ['https://graph.microsoft.us/', 'HTTPS://Graph.Microsoft.US', 'https://GRAPH.microsoft.us//'])
    def test_trailing_slash_and_case_are_tolerated(self, typed):
        endpoints = mgm.resolve_endpoints(typed)
        assert endpoints.graph_base == 'https://graph.microsoft.us/v1.0'
        assert endpoints.login_root == 'https://login.microsoftonline.us'
        assert endpoints.scope == 'https://graph.microsoft.us/.default'

    def test_typo_in_server_url_does_not_fall_back_to_worldwide(self, run_main, requests_mock):
        requests_mock.get(re.compile('.*'), json={})
        requests_mock.post(re.compile('.*'), json={'access_token': 'x', 'expires_in': 3599})
        run = run_main('msgraph-mail-list-folders', secret_params(url='https://graph.microsoft.con'), {'user_id': MAILBOX})
        assert 'graph.microsoft.con' in run.error_text
        assert 'azure_ad_endpoint' in run.error_text
        assert requests_mock.call_count == 0

    def test_azure_ad_endpoint_overrides_the_authority_of_a_known_cloud(self, run_main, requests_mock):
        """US Government GCC: Graph at graph.microsoft.us, tokens from the worldwide authority."""
        authority = mock_authority(requests_mock, login_root=WORLDWIDE_LOGIN)
        folders = mock_folders(requests_mock, base='https://graph.microsoft.us/v1.0')
        params = secret_params(url='https://graph.microsoft.us', azure_ad_endpoint='https://login.microsoftonline.com/')
        run = run_main('msgraph-mail-list-folders', params, {'user_id': MAILBOX})
        assert not run.errors
        assert authority.form()['scope'] == 'https://graph.microsoft.us/.default'
        assert folders.call_count == 1
        assert 'login.microsoftonline.us' not in hosts_called(requests_mock)

    def test_custom_server_url_with_azure_ad_endpoint_uses_that_clouds_audience(self):
        endpoints = mgm.resolve_endpoints('https://graph-proxy.contoso.example', 'https://login.microsoftonline.com')
        assert endpoints.graph_base == 'https://graph-proxy.contoso.example/v1.0'
        assert endpoints.scope == 'https://graph.microsoft.com/.default'

    @pytest.mark.parametrize('url', ['http://graph.microsoft.com', 'graph.microsoft.com', 'ftp://graph.microsoft.com'])
    def test_server_url_must_be_https(self, url):
        with pytest.raises(mgm.MailError, match=r"\(url\).*https"):
            mgm.resolve_endpoints(url)

    def test_azure_ad_endpoint_must_be_https(self):
        with pytest.raises(mgm.MailError, match='azure_ad_endpoint'):
            mgm.resolve_endpoints(WORLDWIDE, 'http://login.microsoftonline.com')


# ================================================================================ 4. TOKEN CACHE
class TestTokenCache:
    """The access token is kept in the integration context and shared by the commands of the instance."""

    def test_second_command_reuses_the_token_without_msal_traffic(self, run_main, requests_mock):
        mock_authority(requests_mock)
        folders = mock_folders(requests_mock)
        run_main('msgraph-mail-list-folders', secret_params(), {'user_id': MAILBOX})
        assert len(token_requests(requests_mock)) == 1 and len(discovery_requests(requests_mock)) == 1
        run = run_main('msgraph-mail-list-folders', secret_params(), {'user_id': MAILBOX})
        assert not run.errors
        assert len(token_requests(requests_mock)) == 1
        assert len(discovery_requests(requests_mock)) == 1
        assert folders.call_count == 2
        assert folders.last_request.headers['Authorization'] == 'Bearer msal-access-token-0001'

    @pytest.mark.parametrize('seconds_left, renewed', [(310, False), (290, True), (-5, True)])
    def test_token_within_five_minutes_of_expiry_is_renewed(self, run_main, requests_mock, seconds_left, renewed):
        mock_authority(requests_mock, token_response=[
            {'json': {'access_token': 'first-token', 'expires_in': 3599}},
            {'json': {'access_token': 'second-token', 'expires_in': 3599}}])
        folders = mock_folders(requests_mock)
        run_main('msgraph-mail-list-folders', secret_params(), {'user_id': MAILBOX})
        demisto.setIntegrationContext({'auth': {**stored_auth(), 'valid_until': str(int(time.time()) + seconds_left)}})
        run_main('msgraph-mail-list-folders', secret_params(), {'user_id': MAILBOX})
        assert len(token_requests(requests_mock)) == (2 if renewed else 1)
        expected = 'second-token' if renewed else 'first-token'
        assert folders.last_request.headers['Authorization'] == f'Bearer {expected}'
        assert stored_auth()['access_token'] == expected

    def test_changed_client_id_does_not_reuse_the_cached_token(self, run_main, requests_mock):
        authority = mock_authority(requests_mock, token_response=[
            {'json': {'access_token': 'token-for-app-1', 'expires_in': 3599}},
            {'json': {'access_token': 'token-for-app-2', 'expires_in': 3599}}])
        folders = mock_folders(requests_mock)
        run_main('msgraph-mail-list-folders', secret_params(), {'user_id': MAILBOX})
        other_app = '99999999-0000-4000-8000-000000000000'
        run_main('msgraph-mail-list-folders', secret_params(creds_auth_id=creds(other_app)), {'user_id': MAILBOX})
        assert authority.form()['client_id'] == other_app
        assert folders.last_request.headers['Authorization'] == 'Bearer token-for-app-2'

    def test_changed_cloud_does_not_reuse_the_cached_token(self, run_main, requests_mock):
        mock_authority(requests_mock)
        us = mock_authority(requests_mock, login_root='https://login.microsoftonline.us',
                            token_response=[{'json': {'access_token': 'us-token', 'expires_in': 3599}}])
        mock_folders(requests_mock)
        us_folders = mock_folders(requests_mock, base='https://graph.microsoft.us/v1.0')
        run_main('msgraph-mail-list-folders', secret_params(), {'user_id': MAILBOX})
        run_main('msgraph-mail-list-folders', secret_params(url='https://graph.microsoft.us'), {'user_id': MAILBOX})
        assert us.token.call_count == 1
        assert us_folders.last_request.headers['Authorization'] == 'Bearer us-token'

    def test_auth_reset_clears_the_cached_token(self, run_main, requests_mock):
        mock_authority(requests_mock)
        mock_folders(requests_mock)
        run_main('msgraph-mail-list-folders', secret_params(), {'user_id': MAILBOX})
        assert stored_auth().get('access_token')
        reset = run_main('msgraph-mail-auth-reset', secret_params())
        assert not reset.errors and reset.entries[0]['Type'] == mgm.ENTRY_NOTE
        assert not stored_auth().get('access_token')
        run_main('msgraph-mail-list-folders', secret_params(), {'user_id': MAILBOX})
        assert len(token_requests(requests_mock)) == 2

    def test_auth_reset_clears_the_context_through_the_versioned_call_and_the_token_of_the_client(
            self, requests_mock, sleeps, monkeypatch):
        provider = CountingProvider()
        tokens = mgm.TokenManager(provider, 'fingerprint', mgm.ContextStore(), mgm.SecretRedactor())
        client = mgm.GraphClient(mgm.resolve_endpoints(WORLDWIDE), mgm.HttpSession(10, False, False), tokens,
                                 retry=mgm.RetryPolicy(sleep=sleeps))
        route = requests_mock.get(FOLDERS_URL, json={'value': []})
        client.get(f'users/{MAILBOX}/mailFolders')
        assert stored_auth()['access_token'] == 'access-token-1'
        writes: list = []
        versioned_write = demisto.setIntegrationContextVersioned

        def recording_write(context: dict, version: int = -1, sync: bool = False) -> None:
            writes.append((json.loads(json.dumps(context)), version))
            versioned_write(context, version=version, sync=sync)

        monkeypatch.setattr(demisto, 'setIntegrationContextVersioned', recording_write)
        entry = mgm.auth_reset_command(client, {})
        assert entry['Type'] == mgm.ENTRY_NOTE
        assert writes == [({}, -1)]
        assert demisto.getIntegrationContext() == {}
        client.get(f'users/{MAILBOX}/mailFolders')
        assert len(provider.calls) == 2
        assert route.last_request.headers['Authorization'] == 'Bearer access-token-2'

    def test_test_module_never_touches_the_integration_context(self, run_main, requests_mock, monkeypatch):
        mock_authority(requests_mock)
        touched: list[str] = []
        for name in ('getIntegrationContext', 'setIntegrationContext', 'getIntegrationContextVersioned',
                     'setIntegrationContextVersioned'):
            monkeypatch.setattr(demisto, name, lambda *a, _n=name, **k: touched.append(_n) or {})
        first = run_main('test-module', secret_params())
        second = run_main('test-module', secret_params())
        assert first.entries == ['ok'] and second.entries == ['ok']
        assert touched == []
        assert len(token_requests(requests_mock)) == 2

    def test_401_from_graph_gets_one_new_token_and_retries(self, requests_mock, sleeps):
        provider = CountingProvider()
        tokens = mgm.TokenManager(provider, 'fingerprint', mgm.ContextStore(), mgm.SecretRedactor())
        client = mgm.GraphClient(mgm.resolve_endpoints(WORLDWIDE), mgm.HttpSession(10, False, False), tokens,
                                 retry=mgm.RetryPolicy(sleep=sleeps))
        route = requests_mock.get(FOLDERS_URL, [
            {'status_code': 401, 'json': {'error': {'code': 'InvalidAuthenticationToken', 'message': 'expired'}}},
            {'json': {'value': []}}])
        assert client.get(f'users/{MAILBOX}/mailFolders') == {'value': []}
        assert len(provider.calls) == 2
        assert [r.headers['Authorization'] for r in route.request_history] == ['Bearer access-token-1',
                                                                               'Bearer access-token-2']
        assert stored_auth()['access_token'] == 'access-token-2'
        assert sleeps.waits == []

    def test_second_401_is_reported_not_looped(self, client, requests_mock):
        route = requests_mock.get(FOLDERS_URL, status_code=401, json={
            'error': {'code': 'InvalidAuthenticationToken', 'message': 'Access token validation failure.'}})
        with pytest.raises(mgm.GraphError) as raised:
            client.get(f'users/{MAILBOX}/mailFolders')
        assert raised.value.status == 401
        assert route.call_count == 2


# ================================================================================ 5. HTTP LAYER
class TestRetries:
    """Throttling and transient failures: what is retried, how long it waits, when it gives up."""

    def test_429_waits_exactly_retry_after(self, client, requests_mock, sleeps):
        route = requests_mock.get(FOLDERS_URL, [
            {'status_code': 429, 'headers': {'Retry-After': '7'}, 'json': {'error': {'code': 'TooManyRequests'}}},
            {'json': {'value': [{'id': 'x'}]}}])
        assert client.get(f'users/{MAILBOX}/mailFolders') == {'value': [{'id': 'x'}]}
        assert sleeps.waits == [7.0]
        assert route.call_count == 2

    def test_503_and_504_are_retried_for_get(self, client, requests_mock, sleeps):
        route = requests_mock.get(FOLDERS_URL, [
            {'status_code': 503, 'headers': {'Retry-After': '2'}},
            {'status_code': 504, 'headers': {'Retry-After': '3'}},
            {'json': {'value': []}}])
        client.get(f'users/{MAILBOX}/mailFolders')
        assert route.call_count == 3
        assert sleeps.waits == [2.0, 3.0]

    def test_post_is_not_retried_on_504(self, client, requests_mock, sleeps):
        route = requests_mock.post(f'{GRAPH}/users/{MAILBOX}/sendMail', status_code=504,
                                   headers={'Retry-After': '1'}, json={'error': {'code': 'GatewayTimeout', 'message': 'x'}})
        with pytest.raises(mgm.GraphError) as raised:
            client.post(f'users/{MAILBOX}/sendMail', {'message': {}})
        assert raised.value.status == 504
        assert route.call_count == 1
        assert sleeps.waits == []

    def test_post_is_retried_on_429(self, client, requests_mock, sleeps):
        route = requests_mock.post(f'{GRAPH}/users/{MAILBOX}/mailFolders', [
            {'status_code': 429, 'headers': {'Retry-After': '4'}}, {'status_code': 201, 'json': {'id': 'new'}}])
        assert client.post(f'users/{MAILBOX}/mailFolders', {'displayName': 'x'}) == {'id': 'new'}
        assert route.call_count == 2 and sleeps.waits == [4.0]

    def test_backoff_doubles_up_to_the_cap_without_retry_after(self, client, requests_mock, sleeps, monkeypatch):
        bounds: list[tuple[float, float]] = []
        monkeypatch.setattr(mgm.random, 'uniform', lambda low, high: bounds.append((low, high)) or high)
        requests_mock.get(FOLDERS_URL, status_code=503)
        with pytest.raises(mgm.ThrottledError):
            client.get(f'users/{MAILBOX}/mailFolders')
        assert sleeps.waits == [1, 2, 4, 8, 16, 30, 30]
        assert all(low == 0 for low, _ in bounds), 'full jitter starts at 0'

    def test_backoff_is_jittered_and_bounded(self, make_client, requests_mock, sleeps):
        random.seed(20240502)
        client = make_client(max_attempts=40, wait_budget_seconds=10_000)
        requests_mock.get(FOLDERS_URL, status_code=429)
        with pytest.raises(mgm.ThrottledError):
            client.get(f'users/{MAILBOX}/mailFolders')
        bounds = [min(30.0, 2.0 ** n) for n in range(len(sleeps.waits))]
        assert len(sleeps.waits) == 39
        assert all(0 <= wait <= bound for wait, bound in zip(sleeps.waits, bounds))
        assert max(sleeps.waits) <= 30
        assert sum(1 for wait, bound in zip(sleeps.waits, bounds) if wait < 0.95 * bound) > 10, 'waits are jittered'

    def test_retry_budget_exhausted_says_throttled_and_when_to_retry(self, client, requests_mock, sleeps):
        route = requests_mock.get(FOLDERS_URL, status_code=429, headers={'Retry-After': '50', 'request-id': 'req-42'},
                                  json={'error': {'code': 'ApplicationThrottled', 'message': 'Too many requests'}})
        before = datetime.now(timezone.utc)
        with pytest.raises(mgm.ThrottledError) as raised:
            client.get(f'users/{MAILBOX}/mailFolders')
        message = str(raised.value)
        assert sleeps.waits == [50.0, 50.0], 'a third wait would exceed the 120 s budget'
        assert route.call_count == 3
        assert 'throttl' in message.lower()
        assert 'ApplicationThrottled' in message and 'req-42' in message
        retry_at = datetime.strptime(re.search(r'Retry after (\S+?Z)', message).group(1),
                                     '%Y-%m-%dT%H:%M:%SZ').replace(tzinfo=timezone.utc)
        assert before + timedelta(seconds=45) <= retry_at <= before + timedelta(seconds=55)

    def test_retry_after_longer_than_the_budget_gives_up_at_once(self, client, requests_mock, sleeps):
        requests_mock.get(FOLDERS_URL, status_code=429, headers={'Retry-After': '600'})
        with pytest.raises(mgm.ThrottledError, match='600'):
            client.get(f'users/{MAILBOX}/mailFolders')
        assert sleeps.waits == []

    def test_connection_error_is_retried_for_get(self, client, requests_mock, sleeps):
        route = requests_mock.get(FOLDERS_URL, [{'exc': requests.exceptions.ConnectionError}, {'json': {'value': []}}])
        assert client.get(f'users/{MAILBOX}/mailFolders') == {'value': []}
        assert route.call_count == 2 and len(sleeps.waits) == 1

    def test_connection_error_is_not_retried_for_post(self, client, requests_mock, sleeps):
        route = requests_mock.post(f'{GRAPH}/users/{MAILBOX}/sendMail', exc=requests.exceptions.ConnectionError)
        with pytest.raises(mgm.MailError, match='Could not connect to graph.microsoft.com'):
            client.post(f'users/{MAILBOX}/sendMail', {'message': {}})
        assert route.call_count == 1 and sleeps.waits == []

    @pytest.mark.parametrize('failure, says', [
        (requests.exceptions.SSLError('[SSL: CERTIFICATE_VERIFY_FAILED] self-signed certificate in certificate chain'),
         'TLS certificate verification failed'),
        (requests.exceptions.ProxyError('Unable to connect to proxy'), 'through the proxy'),
    ], ids=['tls-certificate', 'proxy'])
    def test_certificate_and_proxy_errors_are_reported_at_once_not_retried(self, client, requests_mock, sleeps,
                                                                           failure, says):
        route = requests_mock.get(FOLDERS_URL, exc=failure)
        with pytest.raises(mgm.TransportError, match=says) as raised:
            client.get(f'users/{MAILBOX}/mailFolders')
        assert 'graph.microsoft.com' in str(raised.value)
        assert route.call_count == 1
        assert sleeps.waits == []

    def test_connect_timeout_is_retried_even_for_post_because_nothing_was_sent(self, client, requests_mock):
        route = requests_mock.post(f'{GRAPH}/users/{MAILBOX}/sendMail',
                                   [{'exc': requests.exceptions.ConnectTimeout}, {'status_code': 202}])
        assert client.post(f'users/{MAILBOX}/sendMail', {'message': {}}) == {}
        assert route.call_count == 2

    def test_read_timeout_message_points_at_the_http_timeout_parameter(self, client, requests_mock):
        requests_mock.post(f'{GRAPH}/users/{MAILBOX}/sendMail', exc=requests.exceptions.ReadTimeout)
        with pytest.raises(mgm.MailError) as raised:
            client.post(f'users/{MAILBOX}/sendMail', {'message': {}})
        assert 'graph.microsoft.com' in str(raised.value)
        assert 'HTTP Timeout' in str(raised.value)


class TestGraphErrorsAndPaging:
    """Graph's error bodies, @odata.nextLink, downloads and upload sessions."""

    def test_graph_error_carries_code_message_and_request_id(self, client, requests_mock):
        body = load_json('foundation/graph_error_item_not_found.json')
        requests_mock.get(f'{GRAPH}/users/{MAILBOX}/messages/AAMk1', status_code=404, json=body)
        with pytest.raises(mgm.GraphError) as raised:
            client.get(f'users/{MAILBOX}/messages/AAMk1')
        error = raised.value
        assert (error.status, error.code, error.request_id) == (404, 'ErrorItemNotFound', body['error']['innerError']['request-id'])
        for part in ('404', 'ErrorItemNotFound', body['error']['message'], body['error']['innerError']['request-id']):
            assert part in str(error)

    def test_error_without_json_body_still_names_the_status(self, client, requests_mock):
        requests_mock.get(FOLDERS_URL, status_code=502, text='<html>Bad Gateway</html>', reason='Bad Gateway')
        with pytest.raises(mgm.GraphError, match='502'):
            client.get(f'users/{MAILBOX}/mailFolders')

    @pytest.mark.parametrize('method', ['GET', 'POST', 'PATCH'])
    @pytest.mark.parametrize('answer', [
        {'text': '<html><body>Sign in to the web proxy</body></html>', 'headers': {'Content-Type': 'text/html'}},
        {'json': [{'id': 'AAMk-inbox'}]},
    ], ids=['html-page', 'json-array'])
    def test_a_2xx_answer_that_is_not_a_json_object_names_host_and_status(self, client, requests_mock, method, answer):
        requests_mock.register_uri(method, FOLDERS_URL, status_code=200, **answer)
        path = f'users/{MAILBOX}/mailFolders'
        with pytest.raises(mgm.MailError) as raised:
            if method == 'GET':
                client.get(path)
            elif method == 'POST':
                client.post(path, {'displayName': 'Phishing'})
            else:
                client.patch(path, {'displayName': 'Phishing'})
        assert 'graph.microsoft.com' in str(raised.value)
        assert 'HTTP 200' in str(raised.value)

    def test_a_proxy_page_instead_of_graph_json_is_an_error_entry(self, run_main, requests_mock):
        mock_authority(requests_mock)
        requests_mock.get(FOLDERS_URL, text='<html><body>Blocked by policy</body></html>',
                          headers={'Content-Type': 'text/html'})
        run = run_main('msgraph-mail-list-folders', secret_params(), {'user_id': MAILBOX})
        assert 'graph.microsoft.com' in run.error_text and '200' in run.error_text
        assert 'unexpected' not in run.error_text and 'JSONDecodeError' not in run.error_text

    def test_pages_follow_next_link_verbatim(self, client, requests_mock):
        next_link = f'{FOLDERS_URL}?%24top=2&%24skiptoken=AbC-Case-Sensitive'
        first = requests_mock.get(FOLDERS_URL, [{'json': {'value': [1, 2], '@odata.nextLink': next_link}},
                                                {'json': {'value': [3]}}])
        pages = list(client.pages(f'users/{MAILBOX}/mailFolders', params={'$top': '2'}))
        assert [p['value'] for p in pages] == [[1, 2], [3]]
        assert first.request_history[0].qs == {'$top': ['2']}
        assert first.request_history[1].url == next_link

    @pytest.mark.parametrize('foreign', ['https://attacker.example.com/v1.0/users/x/mailFolders?skip=1',
                                         'http://graph.microsoft.com/v1.0/users/x/mailFolders?skip=1'],
                             ids=['other-host', 'plain-http'])
    def test_next_link_to_another_host_is_refused_and_gets_no_token(self, client, requests_mock, foreign):
        requests_mock.get(FOLDERS_URL, json={'value': [1], '@odata.nextLink': foreign})
        trap = requests_mock.get(foreign, json={'value': []})
        pages = client.pages(f'users/{MAILBOX}/mailFolders')
        assert next(pages)['value'] == [1]
        with pytest.raises(mgm.MailError, match='Refused to send the access token'):
            next(pages)
        assert not trap.called
        assert hosts_called(requests_mock) == ['graph.microsoft.com']

    def test_download_streams_the_body_to_a_file(self, client, requests_mock, in_tmp_dir):
        content = os.urandom(mgm.DOWNLOAD_CHUNK_BYTES * 2 + 12345)
        route = requests_mock.get(f'{GRAPH}/users/{MAILBOX}/messages/AAMk1/$value', content=content)
        size = client.download(f'users/{MAILBOX}/messages/AAMk1/$value', str(in_tmp_dir / 'mail.eml'))
        assert size == len(content)
        assert (in_tmp_dir / 'mail.eml').read_bytes() == content
        assert route.last_request.stream is True
        assert route.last_request.headers['Accept'] == '*/*'

    def test_failed_download_leaves_no_file(self, client, requests_mock, in_tmp_dir):
        requests_mock.get(f'{GRAPH}/users/{MAILBOX}/messages/gone/$value', status_code=404,
                          json=load_json('foundation/graph_error_item_not_found.json'))
        with pytest.raises(mgm.GraphError):
            client.download(f'users/{MAILBOX}/messages/gone/$value', str(in_tmp_dir / 'gone.eml'))
        assert not (in_tmp_dir / 'gone.eml').exists()

    def test_a_download_that_breaks_off_is_a_transport_error_and_leaves_no_partial_file(self, client, requests_mock,
                                                                                        in_tmp_dir):
        route = requests_mock.get(f'{GRAPH}/users/{MAILBOX}/messages/AAMk1/$value',
                                  body=BrokenStream(os.urandom(mgm.DOWNLOAD_CHUNK_BYTES * 2 + 10)))
        with pytest.raises(mgm.TransportError):
            client.download(f'users/{MAILBOX}/messages/AAMk1/$value', str(in_tmp_dir / 'mail.eml'))
        assert os.listdir(in_tmp_dir) == []
        assert route.call_count == 1

    @pytest.mark.parametrize('command, args, download_path', [
        ('msgraph-mail-get-email-as-eml', {'message_id': 'AAMk1'}, 'messages/AAMk1/$value'),
        ('msgraph-mail-get-attachment', {'message_id': 'AAMk1', 'attachment_id': 'AAMkAtt1'},
         'messages/AAMk1/attachments/AAMkAtt1/$value'),
    ], ids=['get-email-as-eml', 'get-attachment'])
    def test_a_command_whose_download_breaks_off_leaves_no_file(self, run_main, requests_mock, in_tmp_dir, command,
                                                                args, download_path):
        mock_authority(requests_mock)
        requests_mock.get(f'{GRAPH}/users/{MAILBOX}/messages/AAMk1/attachments', json={'value': [{
            '@odata.type': '#microsoft.graph.fileAttachment', 'id': 'AAMkAtt1', 'name': 'invoice.pdf',
            'contentType': 'application/pdf', 'size': 3 * mgm.DOWNLOAD_CHUNK_BYTES, 'isInline': False}]})
        download = requests_mock.get(f'{GRAPH}/users/{MAILBOX}/{download_path}',
                                     body=BrokenStream(os.urandom(mgm.DOWNLOAD_CHUNK_BYTES * 2 + 10)))
        run = run_main(command, secret_params(), {'user_id': MAILBOX, **args})
        assert download.call_count == 1
        assert os.listdir(in_tmp_dir) == [], 'a partial file was left in the working directory'
        assert 'unexpected' not in run.error_text

    def test_upload_chunk_sends_content_range_and_no_bearer_token(self, make_client, requests_mock):
        provider = CountingProvider()
        client = make_client(provider=provider)
        upload_url = 'https://outlook.office.com/api/v2.0/Users/abc/Messages/def/AttachmentSessions/ghi?authtoken=eyJ0'
        route = requests_mock.put(upload_url, [{'status_code': 200, 'json': {'nextExpectedRanges': ['10-']}},
                                               {'status_code': 201, 'json': {}}])
        client.upload_chunk(upload_url, b'0123456789', 0, 25)
        client.upload_chunk(upload_url, b'abcdefghijklmno', 10, 25)
        first, second = route.request_history
        assert first.headers['Content-Range'] == 'bytes 0-9/25'
        assert second.headers['Content-Range'] == 'bytes 10-24/25'
        assert second.body == b'abcdefghijklmno'
        assert all('Authorization' not in r.headers for r in route.request_history)
        assert provider.calls == []

    def test_upload_chunk_refuses_plain_http(self, client, requests_mock):
        with pytest.raises(mgm.MailError, match='https'):
            client.upload_chunk('http://outlook.office.com/upload', b'x', 0, 1)
        assert requests_mock.call_count == 0


class TestBatch:
    """$batch: 20 requests per call; only throttled items are sent again."""

    def test_45_items_go_out_in_calls_of_20_20_5_and_only_throttled_items_are_retried_after_them(self, client, requests_mock,
                                                                                             sleeps):
        throttled_once = {'3', '7'}
        sent: list[list[str]] = []

        def answer(request, context):
            ids = [r['id'] for r in request.json()['requests']]
            sent.append(ids)
            responses = []
            for item_id in ids:
                if item_id in throttled_once:
                    throttled_once.discard(item_id)
                    responses.append({'id': item_id, 'status': 429, 'headers': {'Retry-After': '2'},
                                      'body': {'error': {'code': 'TooManyRequests', 'message': 'slow down'}}})
                else:
                    responses.append({'id': item_id, 'status': 200, 'headers': {}, 'body': {'id': f'msg-{item_id}'}})
            return {'responses': list(reversed(responses))}

        route = requests_mock.post(f'{GRAPH}/$batch', json=answer)
        items = [mgm.BatchItem(id=str(i), method='PATCH', url=f'users/{MAILBOX}/messages/m{i}', body={'isRead': True})
                 for i in range(45)]
        results = client.batch(items)
        # the throttled items wait while the other batches go out, instead of holding them back
        assert [len(ids) for ids in sent] == [20, 20, 5, 2]
        assert sorted(sent[3]) == ['3', '7']
        assert sleeps.waits == [2.0]
        assert {k: v['status'] for k, v in results.items()} == {str(i): 200 for i in range(45)}
        first_request = route.request_history[0].json()['requests'][0]
        assert first_request['method'] == 'PATCH'
        assert first_request['url'] == f'/users/{MAILBOX}/messages/m0'
        assert first_request['body'] == {'isRead': True}

    def test_items_still_throttled_after_the_budget_are_returned_as_throttled(self, make_client, requests_mock, sleeps):
        client = make_client(max_attempts=3)
        requests_mock.post(f'{GRAPH}/$batch', json=lambda request, context: {'responses': [
            {'id': r['id'], 'status': 429, 'headers': {'Retry-After': '1'}, 'body': {}} for r in request.json()['requests']]})
        results = client.batch([mgm.BatchItem(id='a', method='DELETE', url='users/x/messages/1')])
        assert results['a']['status'] == 429
        assert sleeps.waits == [1.0, 1.0]


# ================================================================================ 6. SECRET REDACTION
class TestSecretRedaction:
    """Secrets never reach the war room or the server log, even when a server echoes them back."""

    def assert_absent(self, run: MainRun, *secrets: str) -> None:
        assert run.errors, 'the scenario must end in an error entry'
        assert any('Traceback' in line for line in run.debug), 'the traceback must have been logged (redacted)'
        text = run.everything()
        for secret in secrets:
            assert secret not in text

    def test_client_secret_echoed_by_the_token_endpoint(self, run_main, requests_mock):
        body = load_json('foundation/token_error_invalid_client.json')
        body['error_description'] = f'AADSTS7000215: Invalid client secret provided: {CLIENT_SECRET}.\r\nTrace ID: 1'
        mock_authority(requests_mock, token_response=[{'status_code': 401, 'json': body}])
        run = run_main('msgraph-mail-list-folders', secret_params(), {'user_id': MAILBOX})
        assert 'Invalid client secret provided' in run.error_text
        self.assert_absent(run, CLIENT_SECRET)

    def test_oproxy_key_and_token_echoed_by_the_token_service(self, run_main, requests_mock):
        mock_oproxy(requests_mock, [{'status_code': 400,
                                     'json': {'title': f'cannot decrypt {OPROXY_TOKEN} with {OPROXY_KEY}'}}])
        run = run_main('msgraph-mail-list-folders', oproxy_params(), {'user_id': MAILBOX})
        assert 'cannot decrypt' in run.error_text
        self.assert_absent(run, OPROXY_TOKEN, OPROXY_KEY)

    def test_oproxy_refresh_token_echoed_by_graph(self, run_main, requests_mock):
        mock_oproxy(requests_mock, [{'json': {'access_token': 'oproxy-access-token-0001', 'expires_in': 3595,
                                              'refresh_token': 'refresh-token-secret-0001'}}])
        requests_mock.get(FOLDERS_URL, status_code=400, json={'error': {
            'code': 'BadRequest', 'message': 'session refresh-token-secret-0001 is not valid here'}})
        run = run_main('msgraph-mail-list-folders', oproxy_params(), {'user_id': MAILBOX})
        self.assert_absent(run, 'refresh-token-secret-0001', 'oproxy-access-token-0001')

    @pytest.mark.parametrize('cached_token', ['valid', 'expired'])
    def test_refresh_token_from_the_cache_echoed_by_graph_in_a_later_command(self, run_main, requests_mock,
                                                                              cached_token):
        """A later run reads the refresh token from the integration context, never from a token answer."""
        oproxy = mock_oproxy(requests_mock, [
            {'json': {'access_token': 'oproxy-access-token-0001', 'expires_in': 3595,
                      'refresh_token': 'refresh-token-secret-0002'}},
            {'json': {'access_token': 'oproxy-access-token-0002', 'expires_in': 3595}}])
        requests_mock.get(FOLDERS_URL, [
            {'json': {'value': []}},
            {'status_code': 400, 'json': {'error': {
                'code': 'BadRequest', 'message': 'session refresh-token-secret-0002 is not valid here'}}}])
        assert not run_main('msgraph-mail-list-folders', oproxy_params(), {'user_id': MAILBOX}).errors
        if cached_token == 'expired':
            demisto.setIntegrationContext({'auth': {**stored_auth(), 'valid_until': '0'}})
        run = run_main('msgraph-mail-list-folders', oproxy_params(), {'user_id': MAILBOX})
        assert oproxy.call_count == (2 if cached_token == 'expired' else 1)
        assert 'BadRequest' in run.error_text
        self.assert_absent(run, 'refresh-token-secret-0002')

    def test_private_key_echoed_by_the_token_endpoint(self, run_main, requests_mock, certificate):
        key_line = certificate.private_key_pem.splitlines()[3]
        mock_authority(requests_mock, token_response=[{'status_code': 401, 'json': {
            'error': 'invalid_client', 'error_codes': [700027],
            'error_description': f'AADSTS700027: Client assertion contains an invalid signature {key_line}'}}])
        params = certificate_params(certificate.thumbprint_hex, one_line(certificate.private_key_pem))
        run = run_main('msgraph-mail-list-folders', params, {'user_id': MAILBOX})
        assert 'AADSTS700027' in run.error_text
        self.assert_absent(run, key_line, one_line(certificate.private_key_pem))

    def test_access_token_echoed_by_graph(self, run_main, requests_mock):
        mock_authority(requests_mock, token_response=[{'json': {'access_token': 'eyJ0eXAiOiJKV1QiLCJhbGciOi.secret.sig',
                                                                'expires_in': 3599}}])
        requests_mock.get(FOLDERS_URL, status_code=400, json={'error': {
            'code': 'BadRequest', 'message': 'Bearer eyJ0eXAiOiJKV1QiLCJhbGciOi.secret.sig is malformed'}})
        run = run_main('msgraph-mail-list-folders', secret_params(), {'user_id': MAILBOX})
        assert 'BadRequest' in run.error_text
        self.assert_absent(run, 'eyJ0eXAiOiJKV1QiLCJhbGciOi.secret.sig', CLIENT_SECRET)

    def test_unexpected_exception_text_is_redacted_too(self, run_main, requests_mock, monkeypatch):
        def explode(client, args):
            raise RuntimeError(f'boom with {CLIENT_SECRET}')

        monkeypatch.setitem(mgm.COMMANDS, 'msgraph-mail-list-folders', explode)
        run = run_main('msgraph-mail-list-folders', secret_params(), {'user_id': MAILBOX})
        assert 'RuntimeError' in run.error_text
        self.assert_absent(run, CLIENT_SECRET)


# ================================================================================ 7. ARGUMENT AND PARAMETER VALIDATION
class TestArguments:
    """Argument helpers: every error names the argument and shows the bad value."""

    @pytest.mark.parametrize('value', ['ten', '1.5', '0', '-3', '1001'])
    def test_arg_int_errors_name_the_argument(self, value):
        with pytest.raises(mgm.MailError, match=r"'page_size'") as raised:
            mgm.arg_int({'page_size': value}, 'page_size', 20, maximum=1000)
        assert value in str(raised.value)

    @pytest.mark.parametrize('value, expected', [(None, 20), ('', 20), (' 7 ', 7), (1000, 1000)])
    def test_arg_int_accepts_whole_numbers_and_defaults(self, value, expected):
        assert mgm.arg_int({'page_size': value}, 'page_size', 20, maximum=1000) == expected

    @pytest.mark.parametrize('value, expected', [('true', True), ('False', False), (True, True), ('', False), ('yes', True)])
    def test_arg_bool_values(self, value, expected):
        assert mgm.arg_bool({'get_body': value}, 'get_body') is expected

    def test_arg_bool_error_names_the_argument(self):
        with pytest.raises(mgm.MailError, match="'get_body'.*'maybe'"):
            mgm.arg_bool({'get_body': 'maybe'}, 'get_body')

    @pytest.mark.parametrize('value, expected', [
        ('a, b,,c', ['a', 'b', 'c']), ('["a", "b"]', ['a', 'b']), (['a', ' b '], ['a', 'b']), ('', []), (None, [])])
    def test_arg_list_accepts_comma_lists_json_lists_and_lists(self, value, expected):
        assert mgm.arg_list({'message_ids': value}, 'message_ids') == expected

    def test_empty_list_argument_is_named_by_the_command(self, client):
        with pytest.raises(mgm.MailError, match="'message_ids'"):
            mgm.update_email_status_command(client, {'user_id': MAILBOX, 'message_ids': ' , ', 'status': 'Read'})

    @pytest.mark.parametrize('folder', ['/', '\\', ' / ', '/ \\ /'])
    def test_a_folder_path_that_names_no_folder_is_an_error_without_a_request(self, client, requests_mock, folder):
        with pytest.raises(mgm.MailError):
            mgm.resolve_folder(client, MAILBOX, folder)
        assert requests_mock.call_count == 0

    def test_a_folder_argument_of_only_a_slash_is_an_error_entry(self, run_main, requests_mock):
        run = run_main('msgraph-mail-list-emails', secret_params(), {'user_id': MAILBOX, 'folder_id': '/'})
        assert "'/'" in run.error_text
        assert 'unexpected' not in run.error_text
        assert requests_mock.call_count == 0

    def test_arg_choice_is_case_insensitive_and_names_the_argument(self):
        assert mgm.arg_choice({'status': 'unread'}, 'status', ('Read', 'Unread'), '') == 'Unread'
        with pytest.raises(mgm.MailError, match="'status'.*Read, Unread.*'Archived'"):
            mgm.arg_choice({'status': 'Archived'}, 'status', ('Read', 'Unread'), '')

    def test_required_text_argument_is_named(self):
        with pytest.raises(mgm.MailError, match="'message_id'"):
            mgm.arg_text({'message_id': '  '}, 'message_id', required=True)


class TestParameters:
    """Instance parameters: bad values are named, and main() reports them as error entries."""

    @pytest.mark.parametrize('value', ['abc', '0', '-5', 'nan', 'inf'])
    def test_bad_timeout_is_named(self, value):
        with pytest.raises(mgm.MailError, match=r'\(timeout\)'):
            mgm.parse_timeout(value)

    @pytest.mark.parametrize('value, expected', [(None, 10.0), ('', 10.0), ('25', 25.0), ('2.5', 2.5)])
    def test_timeout_values(self, value, expected):
        assert mgm.parse_timeout(value) == expected

    @pytest.mark.parametrize('value', ['ten', '0', '1001', '-1'])
    def test_bad_fetch_limit_is_named(self, value):
        with pytest.raises(mgm.MailError, match="'fetch_limit'"):
            mgm.FetchSettings.from_params({'fetch_limit': value})

    @pytest.mark.parametrize('command, params, named', [
        ('msgraph-mail-list-folders', secret_params(timeout='abc'), 'timeout'),
        ('msgraph-mail-list-folders', secret_params(url='http://graph.microsoft.com'), 'url'),
        ('test-module', secret_params(fetch_limit='lots'), 'fetch_limit'),
        ('fetch-incidents', secret_params(look_back='-1'), 'look_back'),
    ])
    def test_main_reports_bad_parameters_as_error_entries(self, run_main, requests_mock, command, params, named):
        if command == 'fetch-incidents':
            with pytest.raises(mgm.MailError, match=named):   # a failed fetch raises so the last run is kept
                run_main(command, params, {})
        else:
            run = run_main(command, params, {'user_id': MAILBOX})
            assert named in run.error_text
            assert 'Traceback' not in run.error_text
        assert requests_mock.call_count == 0

    def test_a_bad_fetch_parameter_does_not_stop_other_commands(self, run_main, requests_mock):
        mock_authority(requests_mock)
        mock_folders(requests_mock)
        run = run_main('msgraph-mail-list-folders', secret_params(fetch_limit='lots', look_back='-1'),
                       {'user_id': MAILBOX})
        assert not run.errors and run.entries

    @pytest.mark.parametrize('name', ['self_deployed', 'insecure'])
    def test_main_reports_a_bad_checkbox_value_naming_the_parameter(self, run_main, requests_mock, name):
        run = run_main('msgraph-mail-list-folders', secret_params(**{name: 'sometimes'}), {'user_id': MAILBOX})
        assert name in run.error_text
        assert 'Traceback' not in run.error_text

    @pytest.mark.parametrize('args, named', [
        ({'user_id': MAILBOX, 'limit': 'ten'}, 'limit'),
        ({'user_id': f'{MAILBOX},other@contoso.com'}, 'user_id'),
    ])
    def test_main_reports_bad_arguments_as_error_entries(self, run_main, requests_mock, args, named):
        run = run_main('msgraph-mail-list-folders', secret_params(), args)
        assert named in run.error_text
        assert 'Traceback' not in run.error_text
        assert requests_mock.call_count == 0


# ================================================================================ 8. DISPATCH
class TestDispatch:
    """Every command of the yml runs something, and nothing runs that the yml does not declare."""

    def test_yml_commands_and_dispatch_table_match(self):
        with open(YML_PATH, encoding='utf-8') as handle:
            integration = yaml.safe_load(handle)
        yml_commands = {command['name'] for command in integration['script']['commands']}
        handled_by_main = {'test-module', 'fetch-incidents'}
        missing = sorted(yml_commands - set(mgm.COMMANDS) - handled_by_main)
        undeclared = sorted(set(mgm.COMMANDS) - yml_commands)
        assert missing == [], f'yml commands main() cannot run: {missing}'
        assert undeclared == [], f'COMMANDS entries the yml does not declare: {undeclared}'

    def test_unknown_command_is_an_error_entry(self, run_main, requests_mock):
        run = run_main('msgraph-mail-does-not-exist', secret_params())
        assert 'msgraph-mail-does-not-exist' in run.error_text
        assert 'not implemented' in run.error_text


# ================================================================================ 9. XSOAR RUNTIME RULES
@pytest.fixture(scope='module')
def source() -> str:
    with open(MODULE_PATH, encoding='utf-8') as handle:
        return handle.read()


class TestRuntimeRules:
    """The module text must survive the unifier and share globals with CommonServerPython (xsoar-runtime.md §3)."""

    def test_demistomock_import_is_the_one_allowed_top_level_line(self, source):
        assert source.count('import demistomock as demisto') == 1
        assert re.search(r'^import demistomock as demisto(?:[ \t]*#.*)?$', source, re.MULTILINE)

    @pytest.mark.parametrize('stripped', ['from CommonServerPython import *', 'from CommonServerUserPython import *',
                                          'from __future__ import print_function'])
    def test_other_unifier_stripped_lines_do_not_appear(self, source, stripped):
        assert stripped not in source

    def test_no_api_module_import_text(self, source):
        assert not re.search(r'from \w+ApiModule import \*', source)

    def test_no_print_and_no_sys_exit(self, source):
        assert not re.search(r'\bprint\(', source)
        assert 'sys.exit' not in source

    def test_three_value_name_guard_calls_main(self, source):
        guards = [node for node in ast.parse(source).body if isinstance(node, ast.If)
                  and isinstance(node.test, ast.Compare) and isinstance(node.test.left, ast.Name)
                  and node.test.left.id == '__name__']
        assert len(guards) == 1
        guard = guards[0]
        assert isinstance(guard.test.ops[0], ast.In)
        assert {ast.literal_eval(e) for e in guard.test.comparators[0].elts} == {'__main__', '__builtin__', 'builtins'}
        assert ast.unparse(guard.body[0]) == 'main()'

    def test_no_top_level_name_shadows_common_server_python(self, source):
        """In XSOAR, CSP shares the module's globals, so a def/class/assignment with a CSP name would replace CSP's own.

        Imports are allowed: `import json` binds the very module object CSP binds to `json`, and the few
        `from X import Y` names CSP also has (datetime, timedelta, timezone, Any, Optional) are the same objects CSP
        imports from the same place, so rebinding them changes nothing.
        """
        with open(CSP_NAMES_PATH, encoding='utf-8') as handle:
            csp_names = {line.strip() for line in handle if line.strip()}
        defined: set[str] = set()
        imported_from: set[str] = set()
        for node in ast.parse(source).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                defined |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
            elif isinstance(node, ast.ImportFrom):
                imported_from |= {alias.asname or alias.name for alias in node.names}
        assert sorted(defined & csp_names) == []
        same_objects_as_csp = {'datetime', 'timedelta', 'timezone', 'Any', 'Optional'}
        assert sorted((imported_from & csp_names) - same_objects_as_csp) == []


# ================================================================================ 10. DEMISTOMOCK AND THE COMMAND LINE
class TestDemistomock:
    """The local runtime: state file, files between commands, optimistic context versions."""

    def test_state_file_is_written_atomically_as_json(self, tmp_path):
        demisto._runtime.state_path = str(tmp_path / 'state.json')
        demisto.setIntegrationContext({'auth': {'access_token': 'a', 'valid_until': '1'}})
        demisto.setIntegrationContext({'auth': {'access_token': 'b', 'valid_until': '2'}})
        assert os.listdir(tmp_path) == ['state.json']
        with open(tmp_path / 'state.json', encoding='utf-8') as handle:
            stored = json.load(handle)
        assert stored['integration_context'] == {'auth': {'access_token': 'b', 'valid_until': '2'}}
        assert stored['context_version'] == 2

    def test_failed_state_write_keeps_the_previous_file_and_leaves_no_temp_file(self, tmp_path):
        demisto._runtime.state_path = str(tmp_path / 'state.json')
        demisto.setIntegrationContext({'auth': {'access_token': 'good'}})
        try:
            demisto.setIntegrationContext({'not-json': object()})
        except TypeError:
            pass
        assert os.listdir(tmp_path) == ['state.json']
        with open(tmp_path / 'state.json', encoding='utf-8') as handle:
            assert json.load(handle)['integration_context'] == {'auth': {'access_token': 'good'}}

    def test_stale_context_version_is_refused(self):
        version = demisto.getIntegrationContextVersioned()['version']
        demisto.setIntegrationContextVersioned({'auth': {'access_token': 'mine'}}, version=version)
        with pytest.raises(ValueError, match='version'):
            demisto.setIntegrationContextVersioned({'auth': {'access_token': 'stale'}}, version=version)
        assert demisto.getIntegrationContext() == {'auth': {'access_token': 'mine'}}

    def test_context_written_by_another_process_wins_over_a_stale_writer(self, tmp_path):
        state = tmp_path / 'state.json'
        demisto._runtime.state_path = str(state)
        demisto.setIntegrationContext({'auth': {'access_token': 'ours'}})
        version = demisto.getIntegrationContextVersioned(refresh=True)['version']
        other_run = json.loads(state.read_text())
        other_run.update(integration_context={'auth': {'access_token': 'theirs'}}, context_version=version + 1)
        state.write_text(json.dumps(other_run))
        with pytest.raises(ValueError):
            demisto.setIntegrationContextVersioned({'auth': {'access_token': 'late'}}, version=version)
        assert json.loads(state.read_text())['integration_context'] == {'auth': {'access_token': 'theirs'}}

    def test_get_file_path_resolves_an_existing_path_relative_to_the_invocation_folder(self, tmp_path):
        (tmp_path / 'report.pdf').write_bytes(b'%PDF-1.7')
        demisto._runtime.invocation_dir = str(tmp_path)
        found = demisto.getFilePath('report.pdf')
        assert found['path'] == str(tmp_path / 'report.pdf')
        assert found['name'] == 'report.pdf'
        assert demisto.getFilePath(str(tmp_path / 'report.pdf'))['path'] == str(tmp_path / 'report.pdf')

    def test_get_file_path_resolves_a_file_id_from_an_earlier_file_entry(self, in_tmp_dir):
        out = in_tmp_dir / 'out'
        out.mkdir()
        demisto._runtime.out_dir = str(out)
        file_id = mgm.save_bytes_as_file(b'attachment bytes')
        demisto.results(mgm.file_entry(file_id, 'invoice.pdf'))
        found = demisto.getFilePath(file_id)
        assert found['name'] == 'invoice.pdf'
        assert os.path.dirname(found['path']) == str(out)
        with open(found['path'], 'rb') as handle:
            assert handle.read() == b'attachment bytes'

    def test_unknown_file_id_is_a_readable_value_error(self, tmp_path):
        demisto._runtime.invocation_dir = str(tmp_path)
        with pytest.raises(ValueError, match='No such file'):
            demisto.getFilePath('no-such-entry')

    def test_file_names_cannot_leave_the_out_folder(self, in_tmp_dir):
        assert '/' not in demisto.sanitize_file_name('../../x') and '..' not in demisto.sanitize_file_name('../../x')
        out = in_tmp_dir / 'deep' / 'out'
        out.mkdir(parents=True)
        demisto._runtime.out_dir = str(out)
        file_id = mgm.save_bytes_as_file(b'payload')
        demisto.results(mgm.file_entry(file_id, '../../escape.txt'))
        written = demisto.getFilePath(file_id)['path']
        assert os.path.dirname(written) == str(out)
        assert not (in_tmp_dir / 'escape.txt').exists() and not (in_tmp_dir / 'deep' / 'escape.txt').exists()


class TestCommandLine:
    """The integration script run from a shell, in a subprocess."""

    def run_cli(self, folder, *argv: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k not in AZURE_ENV_VARS and k != 'MGM_LOG_LEVEL'}
        return subprocess.run([sys.executable, MODULE_PATH, *argv], cwd=folder, env=env, capture_output=True, check=False,
                              text=True, timeout=120)

    @pytest.mark.parametrize('content, expected', [
        (None, 'cannot read the file'), ('{not json', 'not valid JSON'), ('[1, 2]', 'expected a JSON object')])
    def test_an_unusable_params_file_is_a_one_line_error(self, tmp_path, content, expected):
        if content is not None:
            (tmp_path / 'p.json').write_text(content)
        done = self.run_cli(tmp_path, 'test-module', '--params', 'p.json')
        assert done.returncode == 1
        assert '--params p.json' in done.stderr and expected in done.stderr
        assert 'Traceback' not in done.stderr

    def test_auth_reset_prints_one_json_document_and_clears_the_state(self, tmp_path):
        (tmp_path / 'p.json').write_text(json.dumps(oproxy_params()))
        (tmp_path / 's.json').write_text(json.dumps({'integration_context': {'auth': {'access_token': 'old'}},
                                                     'context_version': 3, 'last_run': {}, 'files': {}}))
        done = self.run_cli(tmp_path, 'msgraph-mail-auth-reset', '--params', 'p.json', '--state', 's.json', '--json')
        assert done.returncode == 0, done.stderr
        document = json.loads(done.stdout)
        assert [entry['Type'] for entry in document['entries']] == [mgm.ENTRY_NOTE]
        assert 'reset' in document['entries'][0]['Contents']
        assert json.loads((tmp_path / 's.json').read_text())['integration_context'] == {}

    def test_bad_parameters_exit_1_with_a_readable_error(self, tmp_path):
        (tmp_path / 'p.json').write_text(json.dumps(secret_params(timeout='soon')))
        done = self.run_cli(tmp_path, 'msgraph-mail-list-folders', f'user_id={MAILBOX}', '--params', 'p.json',
                            '--state', 's.json')
        assert done.returncode == 1
        assert 'timeout' in done.stderr and "'soon'" in done.stderr
        assert 'Traceback' not in done.stderr
        assert done.stdout == ''
        assert CLIENT_SECRET not in done.stderr
