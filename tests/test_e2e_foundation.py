"""End to end: the integration as a program, configured against the sandbox, for every auth mode."""
import pytest

from tests.e2e_support import AUTH_MODES, Instance

pytestmark = pytest.mark.e2e

TOKEN = 'POST /{tenant}/oauth2/v2.0/token'
DISCOVERY = 'GET /{tenant}/v2.0/.well-known/openid-configuration'


def requests_to(stats: dict, key: str) -> int:
    return stats['endpoints'].get(key, {}).get('requests', 0)


def token_requests(stats: dict) -> int:
    """Token requests of every kind: identity platform, Cortex XSOAR application, managed identity."""
    return sum(v['requests'] for k, v in stats['endpoints'].items()
               if 'token' in k.lower() and 'delta' not in k)


@pytest.mark.parametrize('mode', AUTH_MODES)
def test_test_module_passes_for_every_auth_mode(fresh_sandbox, tmp_path, mode):
    instance = Instance(fresh_sandbox, tmp_path, mode, mailbox_to_fetch='soc@contoso.com',
                        folder_to_fetch='Inbox/Phishing')
    result = instance.run('test-module')
    assert result.returncode == 0, result.stderr
    assert result.entries == ['ok']
    assert token_requests(fresh_sandbox.stats()) == 1


@pytest.mark.parametrize('mode', AUTH_MODES)
def test_a_second_command_reuses_the_cached_token(fresh_sandbox, tmp_path, mode):
    instance = Instance(fresh_sandbox, tmp_path, mode)
    first = instance.run('msgraph-mail-list-folders', user_id='alice@contoso.com')
    assert first.returncode == 0, first.stderr
    fresh_sandbox.reset_stats()
    second = instance.run('msgraph-mail-list-emails', user_id='alice@contoso.com')
    assert second.returncode == 0, second.stderr
    stats = fresh_sandbox.stats()
    assert token_requests(stats) == 0
    assert requests_to(stats, DISCOVERY) == 0
    assert stats['totals']['requests'] == 1


def test_auth_reset_forces_a_new_token(instance, fresh_sandbox):
    assert instance.run('msgraph-mail-list-folders', user_id='bob@contoso.com').returncode == 0
    assert instance.run('msgraph-mail-auth-reset').returncode == 0
    fresh_sandbox.reset_stats()
    assert instance.run('msgraph-mail-list-folders', user_id='bob@contoso.com').returncode == 0
    assert requests_to(fresh_sandbox.stats(), TOKEN) == 1


def test_a_throttled_mailbox_still_succeeds_within_the_retry_budget(instance, fresh_sandbox):
    fresh_sandbox.add_fault(r'/v1\.0/users/alice@contoso\.com/messages', status=429, retry_after=1, count=2)
    result = instance.run('msgraph-mail-list-emails', user_id='alice@contoso.com')
    assert result.returncode == 0, result.stderr
    assert result.entries[0]['Contents']
    statuses = fresh_sandbox.stats()['endpoints']['GET /v1.0/users/{user}/messages']['statuses']
    assert statuses == {'429': 2, '200': 1}


def test_a_bad_client_secret_is_a_clear_error_without_the_secret(fresh_sandbox, tmp_path):
    wrong_secret = 'Wrong~Secret-Value.1234567890'
    instance = Instance(fresh_sandbox, tmp_path, 'client_secret', credentials={'password': wrong_secret})
    result = instance.run('msgraph-mail-list-folders', as_json=False, user_id='alice@contoso.com')
    assert result.returncode == 1
    assert 'invalid_client' in result.stderr and 'client secret' in result.stderr.lower()
    assert 'Traceback' not in result.stderr
    state = instance.state_path.read_text() if instance.state_path.exists() else ''
    assert wrong_secret not in result.stderr + result.stdout + state


def test_a_wrong_oproxy_key_is_a_clear_error(fresh_sandbox, tmp_path):
    import base64
    instance = Instance(fresh_sandbox, tmp_path, 'oproxy', credentials={'password': base64.b64encode(b'k' * 32).decode()})
    result = instance.run('test-module', as_json=False)
    assert result.returncode == 1
    assert 'Cortex XSOAR application' in result.stderr and 'Traceback' not in result.stderr
