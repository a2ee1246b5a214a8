"""Regression tests for issue 9, one group per finding; each fails on the code before the fix."""
import io
import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest
import requests

import demistomock as demisto
import MicrosoftGraphMail as mgm

GRAPH = 'https://graph.microsoft.com/v1.0'
USER = 'soc@contoso.com'
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class FakeClock:
    """A monotonic clock that moves only when the code sleeps (or a test advances it)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def clocked_client(clock: FakeClock, deadline: float) -> mgm.GraphClient:
    from conftest import StaticTokenProvider
    endpoints = mgm.resolve_endpoints('https://graph.microsoft.com')
    http = mgm.HttpSession(timeout=10, insecure=False, use_proxy=False)
    tokens = mgm.TokenManager(StaticTokenProvider(), 'test', mgm.MemoryStore(), mgm.SecretRedactor())
    return mgm.GraphClient(endpoints, http, tokens, retry=mgm.RetryPolicy(sleep=clock.sleep, clock=clock),
                           default_user=USER, deadline_seconds=deadline)


# ---------------------------------------------------------------- finding 1: ids are one path segment
@pytest.mark.parametrize('value', ['..', '.', '', ' .. ', '...', 'a\\b', 'a\x00b', 'a\r\nb', '\u202eabc', 'x' * 1025])
def test_path_segment_refuses_what_would_not_stay_one_segment(value):
    with pytest.raises(mgm.MailError, match="Invalid argument 'message_id'"):
        mgm.encode_id(value, 'message_id')


@pytest.mark.parametrize('value, segment', [('AAMk/abc=', 'AAMk-abc='), ('a?b#c%2F', 'a%3Fb%23c%252F'),
                                            ('..a', '..a'), ('a..', 'a..')])
def test_path_segment_encodes_everything_else_inside_the_segment(value, segment):
    assert mgm.encode_id(value) == segment


def test_delete_email_with_a_dot_id_sends_nothing(client, requests_mock):
    """Regression: message_id=.. sent DELETE /v1.0/users/{u}/ (on Graph: delete the user)."""
    with pytest.raises(mgm.MailError, match="'message_id'"):
        mgm.delete_email_command(client, {'user_id': USER, 'message_id': '..'})
    assert requests_mock.call_count == 0


@pytest.mark.parametrize('command, args, name', [
    (mgm.delete_rule_command, {'user_id': USER, 'rule_id': '..'}, 'rule_id'),
    (mgm.get_email_command, {'user_id': '..', 'message_id': 'AAMk'}, 'user_id'),
    (mgm.list_emails_command, {'user_id': USER, 'next_page': '../../users/bob@contoso.com'}, 'next_page'),
    (mgm.send_draft_command, {'from': USER, 'draft_id': '.'}, 'draft_id'),
    (mgm.get_attachment_command, {'user_id': USER, 'message_id': 'AAMk', 'attachment_id': '..'}, 'attachment_id'),
])
def test_every_id_argument_is_checked_before_any_request(client, requests_mock, command, args, name):
    with pytest.raises(mgm.MailError, match=f"'{name}'"):
        command(client, args)
    assert requests_mock.call_count == 0


# ---------------------------------------------------------------- finding 2: linear parsers
def test_parsers_are_linear_on_hostile_input():
    """Quadratic behaviour on these inputs takes minutes (1 MB of unclosed <script took ~8 minutes); linear code
    finishes in well under a second each. Run in a subprocess so a regression fails by timeout, not by hanging."""
    script = textwrap.dedent('''
        import MicrosoftGraphMail as m
        mb = 1_000_000
        for body in ['<script' + 'a' * mb, '<style>' * (mb // 7), '<head>' * (mb // 6), '<' * mb, '<!--' * (mb // 4),
                     '<img ' * (mb // 5), '<br' + ' ' * mb, '\\n' + ' ' * mb + 'x', '<a href="' * (mb // 9)]:
            m.html_to_text(body)
        m.extract_inline_images('<img src="data:image/png;base64,' * (mb // 32))
        m.extract_inline_images('<img ' * (mb // 5))
        m.normalize_private_key('-----BEGIN A-----' * (mb // 17))
        m.normalize_private_key('-----BEGIN PRIVATE KEY-----' * (mb // 27) + '-----END PRIVATE KEY-----')
        m.markdown_cell('a' + ' ' * mb + 'b')
        m.cap_long_words('x' * mb)
        for value in ['(' * 100000, ':' * 100000, 'a@' * 50000, 'x@' + 'a.' * 50000 + ' ']:
            try:
                m.parse_recipients({'to': value}, 'to')
            except m.MailError:
                pass
        print('done')
    ''')
    completed = subprocess.run([sys.executable, '-c', script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0 and completed.stdout.strip() == 'done', completed.stderr[-2000:]


@pytest.mark.parametrize('html, text', [
    ('<p>Hello</p><p>World</p>', 'Hello\nWorld'),
    ('<p>Hello</p>\n\n\n<p>World</p>', 'Hello\n\nWorld'),
    ('<head><title>t</title></head><body>Pay <b>now</b></body>', 'Pay now'),
    ('a<script>evil()</script>b', 'a b'),
    ('visible<script>hidden', 'visible'),
    ('<HEAD>x</HEAD>y', 'xy'),  # a browser moves text written in <head> into the body
    ('<SCRIPT>x</script>y', 'y'),
    ('<scripts>kept</scripts>', 'kept'),
    ('<\u017fcript>kept</\u017fcript>', 'kept'),  # no Unicode case folding: this is no <script> to a browser
    ('<title>Invoice</title>Pay', 'Pay'),
    ('a<iframe src="x">fallback</iframe>b', 'a b'),
    ('<!-->shown', 'shown'),
    ('<!--->shown', 'shown'),
    ('a<!-- x --!>shown', 'a shown'),
    ('<header>kept</header>', 'kept'),
    ('a<!-- hidden -->b', 'a b'),
    ('x<br>y<BR/>z', 'x\ny\nz'),
    ('5 &lt; 6 &amp; 7', '5 < 6 & 7'),
    ('<head>unclosed head keeps the text', 'unclosed head keeps the text'),
    ('a<![CDATA[ <script> ]]>b', 'a ]]>b'),
    ('<!DOCTYPE html><p>Pay</p>', 'Pay'),
    ('<?xml version="1.0"?>Pay', 'Pay'),
    ('a<!bogus>b', 'a b'),
    ('a<!-- <script> -->b', 'a b'),
    ('visible<!unclosed bogus comment', 'visible'),
    ('a<!-- x -->b<!y>c<script>d</script>e', 'a b c e'),
    ('x\x00y\x07z\x7f!', 'xyz!'),
    ('tab\tkept', 'tab kept'),
])
def test_html_to_text_keeps_its_output_shape(html, text):
    assert mgm.html_to_text(html) == text


# ---------------------------------------------------------------- finding 3: redirects
@pytest.mark.parametrize('status', [301, 302, 303, 307, 308])
def test_no_request_follows_a_redirect(requests_mock, status):
    requests_mock.post('https://login.microsoftonline.com/t/oauth2/v2.0/token', status_code=status,
                       headers={'Location': 'https://evil.example/steal'})
    stolen = requests_mock.post('https://evil.example/steal', json={'access_token': 'x'})
    http = mgm.HttpSession(timeout=5, insecure=False, use_proxy=False)
    with pytest.raises(mgm.RedirectError, match='evil.example'):
        http.request('POST', 'https://login.microsoftonline.com/t/oauth2/v2.0/token', data={'client_secret': 's3'})
    with pytest.raises(mgm.RedirectError, match='evil.example'):
        http.for_msal().post('https://login.microsoftonline.com/t/oauth2/v2.0/token', data={'client_secret': 's3'})
    assert not stolen.called


def test_a_redirected_graph_list_is_an_error_not_data(client, requests_mock):
    requests_mock.get(f'{GRAPH}/users/{USER}/mailFolders', status_code=302,
                      headers={'Location': 'https://evil.example/folders'})
    other = requests_mock.get('https://evil.example/folders', json={'value': [{'id': 'fake'}]})
    with pytest.raises(mgm.MailError, match='redirect to evil.example'):
        mgm.list_folders_command(client, {'user_id': USER})
    assert not other.called


# ---------------------------------------------------------------- finding 4: redaction
def test_redactor_covers_tokens_bearer_headers_and_pre_authenticated_urls():
    redactor = mgm.SecretRedactor(['client-secret-value'])
    redactor.add('eyJ0eXAi.access.token')
    text = redactor.redact('client-secret-value eyJ0eXAi.access.token Authorization: Bearer abc.def-ghi '
                           'https://outlook.office.com/api/v2.0/Users/x/AttachmentSessions/y?authtoken=eyJhbGc&z=1')
    assert text == ('<redacted> <redacted> Authorization: Bearer <redacted> '
                    'https://outlook.office.com/api/v2.0/Users/x/AttachmentSessions/y?authtoken=<redacted>&z=1')


def test_redaction_is_installed_on_every_log_line_and_platform_log_call(caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    calls = []
    monkeypatch.setattr(demisto, 'info', lambda *parts: calls.append(' '.join(parts)))
    redactor = mgm.SecretRedactor(['my-secret-token'])
    mgm.install_redaction(redactor)
    logging.getLogger('urllib3.connectionpool').debug('"PUT /upload/s?authtoken=%s HTTP/1.1" 200', 'abcdef')
    logging.getLogger('msal').info('token %s', 'my-secret-token')
    demisto.info('fetch failed: my-secret-token')
    assert 'abcdef' not in caplog.text and 'my-secret-token' not in caplog.text and 'authtoken=<redacted>' in caplog.text
    assert calls == ['fetch failed: <redacted>']


def test_a_private_key_hint_quotes_the_pem_armour(monkeypatch):
    """Regression (finding 10): the hint said <redacted> where it meant -----BEGIN PRIVATE KEY-----."""
    redactor = mgm.SecretRedactor(['-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----'])
    hint = "must be the unencrypted PEM private key (-----BEGIN PRIVATE KEY----- ...)"
    assert redactor.redact(hint) == hint
    assert 'MIIEvQIBADANBgkqhkiG9w0BAQEFAASC' not in redactor.redact('key MIIEvQIBADANBgkqhkiG9w0BAQEFAASC')


def test_entries_of_a_command_are_redacted(monkeypatch):
    """Regression: update-email-status's per-id error table printed Graph's echo of the token verbatim."""
    entries = []
    monkeypatch.setattr(demisto, 'command', lambda: 'msgraph-mail-auth-reset')
    monkeypatch.setattr(demisto, 'params', lambda: {'url': 'https://graph.microsoft.com', 'self_deployed': True,
                                                     'creds_auth_id': {'password': 'id'},
                                                     'creds_tenant_id': {'password': 'tenant'},
                                                     'credentials': {'password': 'the-client-secret'}})
    monkeypatch.setattr(demisto, 'results', lambda e: entries.append(e))
    monkeypatch.setitem(mgm.COMMANDS, 'msgraph-mail-auth-reset',
                        lambda client, args: mgm.note_entry({'Error': 'Bearer eyJ.leaked the-client-secret'}, 'x'))
    mgm.main()
    assert 'leaked' not in json.dumps(entries) and 'the-client-secret' not in json.dumps(entries)


# ---------------------------------------------------------------- finding 5: names in bytes
@pytest.mark.parametrize('name', ['報' * 200 + '.pdf', 'é' * 128 + '.docx', 'x' * 300 + '.txt', '報' * 300])
def test_file_names_are_capped_in_utf8_bytes_and_keep_their_extension(name):
    safe = mgm.safe_attachment_name(name, 'id')
    assert len(safe.encode()) <= mgm.MAX_FILE_NAME_BYTES
    assert os.path.splitext(safe)[1] == os.path.splitext(name)[1]
    safe.encode().decode()  # never a split character


def test_fetched_inline_names_with_a_long_content_id_fit_the_file_system():
    name = mgm.attachment_file_name({'name': 'é' * 100 + '.png', 'isInline': True, 'contentId': '報' * 100,
                                     '@odata.type': mgm.FILE_ATTACHMENT}, legacy_name=False)
    assert len(name.encode()) <= mgm.MAX_FILE_NAME_BYTES and name.endswith('.png')


# ---------------------------------------------------------------- finding 6: JSON budget
def test_no_json_request_above_the_limit_is_sent(client, requests_mock):
    route = requests_mock.post(f'{GRAPH}/users/{USER}/sendMail', status_code=202)
    with pytest.raises(mgm.MailError, match='at most 4000000 bytes'):
        client.post(f'users/{USER}/sendMail', {'message': {'body': {'content': '\u00e9' * 700_000}}})
    assert not route.called


def test_json_escaping_counts_toward_the_budget():
    mail = mgm.OutgoingMail(sender=USER, message={'body': {'content': '"' * 1_000_000}}, attachments=[
        mgm.OutgoingAttachment(name='a.bin', size=1_600_000, data=b'\0' * 1_600_000)])
    assert mail.needs_draft  # 2 MB of escaped quotes + 2.13 MB of base64 > 4 MB; raw sizes would say it fits


# ---------------------------------------------------------------- finding 7: truncated downloads
def test_a_download_shorter_than_the_attachment_is_an_error_and_leaves_no_file(client, requests_mock, in_tmp_dir):
    url = f'{GRAPH}/users/{USER}/messages/AAMk/attachments/ATT'
    metadata = {'@odata.type': mgm.FILE_ATTACHMENT, 'id': 'ATT', 'name': 'big.bin', 'size': 5 * 1024 * 1024}
    requests_mock.get(url, json=metadata)
    requests_mock.get(f'{GRAPH}/users/{USER}/messages/AAMk/attachments', json={'value': [metadata]})
    requests_mock.get(f'{url}/$value', content=b'x' * (1024 * 1024))
    with pytest.raises(mgm.TransportError, match='1048576 bytes, but the attachment has 5242880'):
        mgm.get_attachment_command(client, {'user_id': USER, 'message_id': 'AAMk', 'attachment_id': 'ATT'})
    assert os.listdir(in_tmp_dir) == []


def test_a_download_shorter_than_its_content_length_is_an_error(client, requests_mock, in_tmp_dir):
    requests_mock.get(f'{GRAPH}/users/{USER}/messages/AAMk/$value', content=b'x' * 100,
                      headers={'Content-Length': '5000'})
    with pytest.raises(mgm.TransportError):
        client.download(f'users/{USER}/messages/AAMk/$value', str(in_tmp_dir / 'f'))
    assert os.listdir(in_tmp_dir) == []


# ---------------------------------------------------------------- finding 8: an overall deadline
def test_a_429_storm_stops_within_the_command_deadline(requests_mock):
    """Regression: Retry-After 10 kept a command waiting up to the 120 s retry budget, whatever XSOAR's timeout."""
    clock = FakeClock()
    client = clocked_client(clock, deadline=50)
    requests_mock.get(f'{GRAPH}/users/{USER}/mailFolders', status_code=429, headers={'Retry-After': '10'},
                      json={'error': {'code': 'ApplicationThrottled', 'message': 'slow down'}})
    with pytest.raises(mgm.ThrottledError):
        mgm.list_folders_command(client, {'user_id': USER})
    assert sum(clock.slept) < 50 and clock.slept


def test_fetch_gets_a_deadline_that_ends_before_the_next_run():
    assert mgm.FETCH_DEADLINE_SECONDS < 60 and mgm.COMMAND_DEADLINE_SECONDS < 300


class DrippingBody(io.RawIOBase):
    """A server that sends 16 KiB every 2 s (the clock moves 2 s per read)."""

    def __init__(self, clock: FakeClock, total: int):
        self.clock, self.left = clock, total

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        self.clock.now += 2
        size = min(16 * 1024, len(buffer), self.left)
        buffer[:size] = b'x' * size
        self.left -= size
        return size


def test_a_download_without_real_progress_stops_and_leaves_no_file(requests_mock, tmp_path):
    clock = FakeClock()
    client = clocked_client(clock, deadline=240)
    requests_mock.get(f'{GRAPH}/users/{USER}/messages/AAMk/$value', body=DrippingBody(clock, 5 * 1024 * 1024))
    with pytest.raises(mgm.TransportError, match='no real progress'):
        client.download(f'users/{USER}/messages/AAMk/$value', str(tmp_path / 'f'))
    assert os.listdir(tmp_path) == [] and clock.now - 1000 <= 2 * mgm.DOWNLOAD_PROGRESS_WINDOW_SECONDS


def test_a_download_stops_at_the_deadline(requests_mock, tmp_path):
    clock = FakeClock()
    client = clocked_client(clock, deadline=5)
    requests_mock.get(f'{GRAPH}/users/{USER}/messages/AAMk/$value', body=DrippingBody(clock, 5 * 1024 * 1024))
    with pytest.raises(mgm.DeadlineError, match='overall time limit of 5 s'):
        client.download(f'users/{USER}/messages/AAMk/$value', str(tmp_path / 'f'))
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- finding 9: sends that time out
def test_a_send_that_times_out_says_it_may_have_been_sent_and_where_to_look(client, requests_mock):
    requests_mock.post(f'{GRAPH}/users/{USER}/sendMail', exc=requests.exceptions.ReadTimeout('read timed out'))
    with pytest.raises(mgm.MailError) as raised:
        mgm.send_mail_command(client, {'to': 'a@contoso.com', 'subject': 's', 'body': 'b', 'from': USER})
    assert 'may have been sent' in str(raised.value) and f'Sent Items of {USER}' in str(raised.value)


def test_a_draft_whose_creation_timed_out_is_named(client, requests_mock):
    requests_mock.post(f'{GRAPH}/users/{USER}/messages', exc=requests.exceptions.ReadTimeout('read timed out'))
    with pytest.raises(mgm.MailError) as raised:
        mgm.create_draft_command(client, {'subject': 'Quarterly', 'from': USER})
    assert f'Drafts of {USER}' in str(raised.value) and "'Quarterly'" in str(raised.value)


# ---------------------------------------------------------------- finding 10: explanations
def test_a_tls_connection_dropped_by_the_server_is_not_a_certificate_problem(client, requests_mock):
    requests_mock.get(f'{GRAPH}/users/{USER}/mailFolders', exc=requests.exceptions.SSLError(
        'EOF occurred in violation of protocol (_ssl.c:2427)'))
    with pytest.raises(mgm.TransportError) as raised:
        mgm.list_folders_command(client, {'user_id': USER})
    assert 'closed the TLS connection' in str(raised.value) and 'Trust any certificate' not in str(raised.value)


def test_errors_cap_huge_argument_values():
    error = mgm.argument_error('page_size', 'a whole number', 'x' * 100_000)
    assert len(str(error)) < 400 and '100000 characters' in str(error)
    assert len(mgm.cap_long_words('id ' + 'y' * 100_000)) < 400


@pytest.mark.parametrize('value', ['99999999 years', '9' * 30 + ' minutes', 'garbage', '2024-13-45'])
def test_first_fetch_overflow_or_garbage_is_a_parameter_error(value):
    with pytest.raises(mgm.MailError, match='first_fetch'):
        mgm.parse_first_fetch(value, mgm.utc_now())


def test_test_module_checks_first_fetch(client):
    settings = mgm.FetchSettings(enabled=True, first_fetch='garbage')
    with pytest.raises(mgm.MailError, match='first_fetch'):
        mgm.test_module_command(client, settings)


@pytest.mark.parametrize('status', [429, 502, 503])
def test_an_unavailable_oproxy_is_not_a_credential_problem(requests_mock, status):
    requests_mock.post('https://oproxy.demisto.ninja/obtain-token', status_code=status, text='Service Unavailable')
    settings = mgm.AuthSettings(mode=mgm.AUTH_XSOAR_APP, client_id='id', tenant_id='token',
                                secret='AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=')
    provider = mgm.OproxyTokenProvider(settings, mgm.resolve_endpoints('https://graph.microsoft.com'),
                                       mgm.HttpSession(timeout=5, insecure=False, use_proxy=False))
    with pytest.raises(mgm.MailError) as raised:
        provider.acquire()
    assert 'unavailable' in str(raised.value) and 'Check ID, Token and Key' not in str(raised.value)


# ---------------------------------------------------------------- finding 11: addresses
def test_a_quoted_display_name_with_a_comma_is_one_address():
    recipients = mgm.parse_recipients({'to': '"Doe, John" <john@example.com>, jane@example.com'}, 'to')
    assert recipients == [{'emailAddress': {'address': 'john@example.com', 'name': 'Doe, John'}},
                          {'emailAddress': {'address': 'jane@example.com'}}]


@pytest.mark.parametrize('value', ['../../users/bob@contoso.com', 'bob@contoso.com/messages', 'bob@contoso..com',
                                   'bob@contoso', '.bob@contoso.com', 'a@b.com;c@d.com', 'grp: a@b.com;',
                                   '(comment) a@b.com', 'bob@[127.0.0.1]', '"x" <>', 'bob@con toso.com'])
def test_what_is_not_an_address_is_refused(value):
    with pytest.raises(mgm.MailError, match="Invalid argument 'to'"):
        mgm.parse_recipients({'to': value}, 'to')


def test_a_hostile_fetch_mailbox_parameter_is_refused_by_its_name():
    with pytest.raises(mgm.MailError, match="'mailbox_to_fetch'"):
        mgm.FetchSettings.from_params({'mailbox_to_fetch': '../..'})


def test_throttled_batch_items_are_not_retried_past_the_deadline(requests_mock):
    """A 429 storm on $batch items ends with their last answer once the next wait would pass the deadline."""
    clock = FakeClock()
    client = clocked_client(clock, deadline=30)

    def answer(request, context):
        return {'responses': [{'id': r['id'], 'status': 429, 'headers': {'Retry-After': '20'}, 'body': {}}
                              for r in request.json()['requests']]}

    route = requests_mock.post(f'{GRAPH}/$batch', json=answer)
    clock.now += 15  # half of the deadline is spent already
    results = client.batch([mgm.BatchItem('1', 'GET', f'users/{USER}/messages/AAMk')])
    assert results['1']['status'] == 429 and route.call_count == 1


def test_readable_tables_drop_bidi_overrides_and_blank_control_characters():
    """A subject or rule name written with a right-to-left override must not reorder what the analyst reads."""
    cell = mgm.markdown_cell('Invoice \u202eexe.pdf\u202c paid\x07now|x')
    assert cell == 'Invoice exe.pdf paid now\\|x'
    assert '\u202e' not in mgm.markdown_table('Rules', [{'Name': 'r\u2066ule\u2069'}], ['Name'])


@pytest.mark.parametrize('body, text', [
    ('&#' + '9' * 5000 + ';x', '\ufffdx'),  # past Python's 4,300-digit int limit: html.unescape raises ValueError
    ('&#' + '0' * 5000 + '65;x', 'Ax'),  # leading zeros do not change the character, however many
    ('&#' + '1' * 4300 + ';x', '\ufffdx'),
    ('&#65;&#1114112;&#66', 'A\ufffdB'),
])
def test_a_numeric_character_reference_of_any_length_becomes_one_character(body, text):
    assert mgm.html_to_text(f'<p>{body}</p>') == text


@pytest.mark.parametrize('value, expected', [('42', 42), (' 7 ', 7), ('\u00b2', None), ('\u0663', None), ('-1', None),
                                             ('', None), (None, None), ('1e3', None)])
def test_only_ascii_whole_numbers_from_a_server_are_read_as_numbers(value, expected):
    """Content-Length and sizes come from the server: a superscript or Arabic-Indic digit passes str.isdigit but
    int() refuses it, which would end a download in a traceback."""
    assert mgm.ascii_whole_number(value) == expected
