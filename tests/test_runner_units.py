"""Unit tests behind the shell-runner issue (11): progress reports from the HTTP layer, a refused connection that
fails fast, token error texts in whole sentences."""
import io

import pytest
import requests

import MicrosoftGraphMail as mgm

GRAPH = 'https://graph.microsoft.com/v1.0'
URL = f'{GRAPH}/users/soc@contoso.com/mailFolders'


@pytest.fixture
def progress(monkeypatch):
    reported: list = []
    monkeypatch.setattr(mgm.demisto, 'info', reported.append)
    return reported


def test_a_throttled_request_reports_each_wait(client, requests_mock, sleeps, progress):
    requests_mock.get(URL, [{'status_code': 429, 'headers': {'Retry-After': '10'}},
                            {'status_code': 503, 'headers': {'Retry-After': '0.5'}}, {'json': {'value': []}}])
    client.get('users/soc@contoso.com/mailFolders')
    assert progress == ['throttled by Graph (HTTP 429), retrying in 10 s, attempt 2 of 8',
                        'Graph unavailable (HTTP 503), retrying in 0.5 s, attempt 3 of 8']
    assert sleeps.waits == [10.0, 0.5]


def test_an_answered_request_reports_nothing(client, requests_mock, progress):
    requests_mock.get(URL, json={'value': []})
    client.get('users/soc@contoso.com/mailFolders')
    assert progress == []


def refused() -> requests.exceptions.ConnectionError:
    try:
        raise ConnectionRefusedError(111, 'Connection refused')
    except ConnectionRefusedError as cause:
        try:
            raise OSError('Failed to establish a new connection') from cause
        except OSError as wrapped:
            return requests.exceptions.ConnectionError(wrapped)


def test_a_refused_connection_is_retried_once_and_reported(client, requests_mock, sleeps, progress):
    route = requests_mock.get(URL, exc=refused())
    with pytest.raises(mgm.TransportError):
        client.get('users/soc@contoso.com/mailFolders')
    assert route.call_count == 2 and len(sleeps.waits) == 1
    assert len(progress) == 1 and progress[0].startswith('could not connect to graph.microsoft.com, retrying in ')


def test_another_connection_error_keeps_the_whole_retry_budget(client, requests_mock, sleeps):
    route = requests_mock.get(URL, exc=requests.exceptions.ConnectionError('connection reset'))
    with pytest.raises(mgm.TransportError):
        client.get('users/soc@contoso.com/mailFolders')
    assert route.call_count == mgm.MAX_RETRY_ATTEMPTS


def test_connection_refused_is_found_through_wrapped_causes():
    assert mgm.connection_refused(refused())
    assert not mgm.connection_refused(requests.exceptions.ConnectionError('reset by peer'))


def test_throttled_batch_items_report_the_wait(client, requests_mock, sleeps, progress):
    throttled = {'responses': [{'id': '1', 'status': 429, 'headers': {'Retry-After': '4'}, 'body': {}},
                               {'id': '2', 'status': 200, 'headers': {}, 'body': {}}]}
    done = {'responses': [{'id': '1', 'status': 200, 'headers': {}, 'body': {}}]}
    requests_mock.post(f'{GRAPH}/$batch', [{'json': throttled}, {'json': done}])
    client.batch([mgm.BatchItem('1', 'GET', '/me'), mgm.BatchItem('2', 'GET', '/me')])
    assert progress == ['1 of 2 batched requests throttled by Graph, retrying in 4 s, attempt 2 of 8']


def test_a_download_reports_every_10_mib_and_a_small_one_nothing(client, requests_mock, tmp_path, progress):
    size = 21 * 1024 * 1024
    requests_mock.get(f'{GRAPH}/big', body=io.BytesIO(b'x' * size), headers={'Content-Length': str(size)})
    requests_mock.get(f'{GRAPH}/small', content=b'x' * 1024)
    assert client.download('big', str(tmp_path / 'big')) == size
    assert progress == ['downloading: 10 MiB of 21 MiB', 'downloading: 20 MiB of 21 MiB']
    progress.clear()
    client.download('small', str(tmp_path / 'small'))
    assert progress == []


def test_a_large_upload_reports_each_chunk(client, requests_mock, progress):
    requests_mock.put('https://upload.example/session', status_code=202, json={})
    total = 12 * 1024 * 1024
    client.upload_chunk('https://upload.example/session', b'x' * (4 * 1024 * 1024), 0, total)
    client.upload_chunk('https://upload.example/session', b'x' * 1024, 0, 1024)
    assert progress == ['uploading an attachment: 4 MiB of 12 MiB']


MSAL_TENANT_TEXT = ('Unable to get authority configuration for https://login.microsoftonline.com/contoso.com. Authority '
                    'would typically be in a format of https://login.microsoftonline.com/your_tenant or '
                    'https://tenant_name.ciamlogin.com or https://tenant_name.b2clogin.com/tenant.onmicrosoft.com/policy.'
                    '  Also please double check your tenant name or GUID is correct.')


def test_first_paragraph_keeps_every_sentence_of_a_long_message():
    assert mgm.first_paragraph(MSAL_TENANT_TEXT).endswith('/policy. Also please double check your tenant name or '
                                                          'GUID is correct.')


def test_first_paragraph_drops_the_trace_lines_and_cuts_only_at_a_sentence_end():
    aadsts = 'AADSTS90002: Tenant \'x\' not found. Check the tenant ID.\r\nTrace ID: 1\r\nCorrelation ID: 2'
    assert mgm.first_paragraph(aadsts) == "AADSTS90002: Tenant 'x' not found. Check the tenant ID."
    long_text = ' '.join(f'Sentence number {n} is here.' for n in range(100))
    cut = mgm.first_paragraph(long_text, limit=100)
    assert cut.endswith('is here.') and len(cut) <= 100
    assert mgm.first_paragraph('x' * 50, limit=10) == 'x' * 10 + '…'


def test_describe_token_error_keeps_the_whole_description_and_the_hint():
    text = mgm.describe_token_error({'error': 'invalid_request', 'error_codes': [90002],
                                     'error_description': "AADSTS90002: Tenant 'contoso.com' not found. This may happen "
                                                          'if there are no active subscriptions for the tenant.\r\n'
                                                          'Trace ID: abc'})
    assert 'no active subscriptions for the tenant. Likely cause: the tenant ID was not found' in text
    assert 'Trace ID' not in text


def test_a_polling_rerun_replaces_the_process_instead_of_nesting_one_per_run(monkeypatch, tmp_path):
    """A 10,000-mailbox search takes hundreds of polling runs: each must replace the runner (exec), not wait on a
    child that waits on a child, so the chain never holds one Python process per run."""
    runner = mgm.demisto
    calls: list = []
    monkeypatch.setattr(runner.os, 'execv', lambda program, argv: calls.append(('exec', program, argv)))
    monkeypatch.setattr('subprocess.run', lambda *a, **k: calls.append(('child', a)))
    monkeypatch.setattr(runner.os, '_exit', lambda code: calls.append(('exit', code)))
    monkeypatch.setattr(runner.os, 'chdir', lambda path: calls.append(('chdir', path)))
    monkeypatch.setattr(runner._runtime, 'entries', [{'Type': 1, 'HumanReadable': 'InProgress',
                                                      'PollingCommand': 'msgraph-mail-hunt-rules',
                                                      'PollingArgs': {'hunt_id': 'h1', 'skip': None}}])
    monkeypatch.setattr(runner._runtime, 'main_file', '/x/MicrosoftGraphMail.py')
    monkeypatch.setattr(runner._runtime, 'pass_on', ['--state', str(tmp_path / 's.json')])
    monkeypatch.setattr(runner._runtime, 'invocation_dir', str(tmp_path))
    monkeypatch.delenv(runner.POLLING_STARTED_VARIABLE, raising=False)  # the run sets it for its successor
    runner._follow_polling()
    assert [c[0] for c in calls] == ['chdir', 'exec']
    assert calls[0][1] == str(tmp_path)
    assert calls[1][2][1:] == ['/x/MicrosoftGraphMail.py', 'msgraph-mail-hunt-rules', 'hunt_id=h1',
                               '--state', str(tmp_path / 's.json')]


@pytest.fixture
def polling_chain(monkeypatch, tmp_path):
    """The runner about to follow a polling entry; its exec, exit and chdir recorded instead of done."""
    runner = mgm.demisto
    calls: list = []
    monkeypatch.setattr(runner.os, 'execv', lambda program, argv: calls.append(('exec', argv)))
    monkeypatch.setattr(runner.os, 'chdir', lambda path: calls.append(('chdir', path)))
    monkeypatch.setattr(runner._runtime, 'main_file', '/x/MicrosoftGraphMail.py')
    monkeypatch.setattr(runner._runtime, 'pass_on', [])
    monkeypatch.setattr(runner._runtime, 'invocation_dir', str(tmp_path))
    monkeypatch.setattr(runner._runtime, 'polling_timed_out', False)
    monkeypatch.delenv(runner.POLLING_STARTED_VARIABLE, raising=False)

    def follow(timeout, chain_started_ago: float = 0.0) -> list:
        monkeypatch.setattr(runner._runtime, 'entries', [{
            'Type': 1, 'HumanReadable': 'InProgress', 'PollingCommand': 'msgraph-mail-search-mailboxes',
            'PollingArgs': {'search_id': 's1'}, 'Timeout': timeout}])
        monkeypatch.setattr(runner._runtime, 'started_at', runner.time.time() - chain_started_ago)
        runner._follow_polling()
        return calls
    return follow


def test_polling_stops_once_the_chain_has_run_longer_than_the_entry_timeout(polling_chain, capsys):
    assert polling_chain('21600', chain_started_ago=21601) == []
    assert mgm.demisto._runtime.polling_timed_out
    err = capsys.readouterr().err
    assert 'longer than its Timeout of 21600.0 s' in err
    assert 'to go on, run: msgraph-mail-search-mailboxes search_id=s1' in err


def test_polling_goes_on_within_the_timeout_and_hands_the_chain_start_to_the_next_run(polling_chain):
    calls = polling_chain('21600', chain_started_ago=600)
    assert [c[0] for c in calls] == ['chdir', 'exec'] and not mgm.demisto._runtime.polling_timed_out
    handed_on = float(mgm.demisto.os.environ[mgm.demisto.POLLING_STARTED_VARIABLE])
    assert abs(handed_on - (mgm.demisto.time.time() - 600)) < 5


def test_a_later_run_measures_the_timeout_from_the_chain_start_not_its_own(polling_chain, monkeypatch):
    monkeypatch.setenv(mgm.demisto.POLLING_STARTED_VARIABLE, repr(mgm.demisto.time.time() - 30))
    assert polling_chain(10, chain_started_ago=0) == []
    assert mgm.demisto._runtime.polling_timed_out


@pytest.mark.parametrize('timeout', [None, '', 'soon', '0', '-5'])
def test_an_entry_without_a_usable_timeout_polls_on(polling_chain, timeout):
    assert [c[0] for c in polling_chain(timeout, chain_started_ago=10 ** 6)] == ['chdir', 'exec']
