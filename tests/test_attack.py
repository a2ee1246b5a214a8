"""Attack suite (issue 9): every command of the yml, driven in-process against the sandbox with hostile values for
every argument. From the sandbox's request log each test asserts that every request went to exactly the kind of
path the command means (the route template it matched) in the mailbox it was given, that a refused input changed
nothing, and that no secret appears in any entry or log line."""
import json
import logging
import os
import re
import urllib.parse
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

import demistomock as demisto
import MicrosoftGraphMail as mgm
from tests.e2e_support import instance_params

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parent.parent
ALICE, BOB = 'alice@contoso.com', 'bob@contoso.com'
USER = '/v1.0/users/{user}'
MESSAGE = f'{USER}/messages/{{message}}'
FOLDER = f'{USER}/mailFolders/{{folder}}'
IDENTITY = {'POST /{tenant}/oauth2/v2.0/token', 'GET /{tenant}/v2.0/.well-known/openid-configuration'}
FOLDER_LOOKUP = {f'GET {USER}/mailFolders', f'GET {FOLDER}/childFolders', f'GET {FOLDER}'}
DRAFT_FLOW = {f'POST {USER}/messages', f'POST {MESSAGE}/attachments', f'POST {MESSAGE}/attachments/createUploadSession',
              'PUT /upload/{session}', f'POST {MESSAGE}/send', f'DELETE {MESSAGE}', f'GET {MESSAGE}'}

CAMPAIGN = {'GET /v1.0/users', 'POST /v1.0/$batch', f'GET {USER}/messages', f'GET {FOLDER}/messages', f'GET {MESSAGE}',
            f'POST {MESSAGE}/move', f'DELETE {MESSAGE}', f'POST {MESSAGE}/permanentDelete',
            'GET /v1.0/groups/{group}/transitiveMembers/microsoft.graph.user'}

RULES = FOLDER_LOOKUP | {f'GET {FOLDER}/messageRules', f'GET {FOLDER}/messageRules/{{rule}}', 'GET /v1.0/domains'}

# The route templates each command may reach; anything else (a dot segment that climbed to the user, another
# resource, an unmatched path) is a steered request.
ALLOWED = {
    'msgraph-mail-list-emails': FOLDER_LOOKUP | {f'GET {USER}/messages', f'GET {FOLDER}/messages'},
    'msgraph-mail-search-email': FOLDER_LOOKUP | {f'GET {USER}/messages', f'GET {FOLDER}/messages'},
    'msgraph-mail-get-email': {f'GET {MESSAGE}'},
    'msgraph-mail-delete-email': {f'DELETE {MESSAGE}'},
    'msgraph-mail-list-attachments': {f'GET {MESSAGE}/attachments'},
    'msgraph-mail-get-attachment': {f'GET {MESSAGE}/attachments', f'GET {MESSAGE}/attachments/{{attachment}}',
                                    f'GET {MESSAGE}/attachments/{{attachment}}/$value'},
    'msgraph-mail-get-email-as-eml': {f'GET {MESSAGE}/$value'},
    'msgraph-mail-list-folders': {f'GET {USER}/mailFolders'},
    'msgraph-mail-list-child-folders': FOLDER_LOOKUP,
    'msgraph-mail-create-folder': FOLDER_LOOKUP | {f'POST {USER}/mailFolders', f'POST {FOLDER}/childFolders'},
    'msgraph-mail-update-folder': FOLDER_LOOKUP | {f'PATCH {FOLDER}'},
    'msgraph-mail-delete-folder': FOLDER_LOOKUP | {f'DELETE {FOLDER}'},
    'msgraph-mail-move-email': FOLDER_LOOKUP | {f'POST {MESSAGE}/move'},
    'msgraph-mail-update-email-status': {'POST /v1.0/$batch', f'PATCH {MESSAGE}'},
    'msgraph-mail-list-rules': {f'GET {FOLDER}/messageRules'},
    'msgraph-mail-get-rule': {f'GET {FOLDER}/messageRules/{{rule}}'},
    'msgraph-mail-delete-rule': {f'DELETE {FOLDER}/messageRules/{{rule}}'},
    'msgraph-mail-auth-reset': set(),
    'send-mail': DRAFT_FLOW | {f'POST {USER}/sendMail'},
    'msgraph-mail-create-draft': DRAFT_FLOW,
    'msgraph-mail-send-draft': {f'POST {MESSAGE}/send'},
    'msgraph-mail-reply-to': DRAFT_FLOW | {f'POST {MESSAGE}/reply', f'POST {MESSAGE}/createReply'},
    'reply-mail': DRAFT_FLOW | {f'POST {MESSAGE}/createReply'},
    'msgraph-mail-forward-email': DRAFT_FLOW | {f'POST {MESSAGE}/createForward'},
    'msgraph-mail-create-rule': RULES | {f'POST {FOLDER}/messageRules'},
    'msgraph-mail-update-rule': RULES | {f'PATCH {FOLDER}/messageRules/{{rule}}'},
    'msgraph-mail-get-settings': {f'GET {USER}/mailboxSettings'},
    'msgraph-mail-get-mailtips': {f'POST {USER}/getMailTips'},
    'msgraph-mail-hunt-rules': CAMPAIGN | RULES | {'GET /v1.0/domains', f'GET {USER}/mailboxSettings'},
    'msgraph-mail-search-mailboxes': CAMPAIGN,
    'msgraph-mail-remediate-emails': CAMPAIGN | FOLDER_LOOKUP,
    'msgraph-mail-undo-remediation': CAMPAIGN | FOLDER_LOOKUP,
}
MUTATING = {'DELETE', 'PATCH', 'POST', 'PUT'}

# Ids as a playbook copies them from an attacker's mail: dot segments, slashes (raw and encoded), query and
# fragment characters, NUL, CR/LF, bidi marks, a 100 KB string.
HOSTILE_IDS = ['..', '.', '../..', '%2e%2e', '..%2F..', 'a/../../b', 'x%2F..%2F..', 'x?$select=id', 'x#frag',
               'x\x00y', 'x\r\nX-Injected: 1', '\u202egnp.exe', '..\\..', 'A' * 100_000, ' .. ']
HOSTILE_USERS = ['..', '.', '../bob@contoso.com', 'alice@contoso.com/../bob@contoso.com', 'alice@contoso.com%2F..',
                 'alice@contoso.com?x=1', 'alice@contoso.com\x00', 'alice@contoso.com\r\nX: 1',
                 '\u202ealice@contoso.com', 'a' * 100_000]
HOSTILE_TEXT = ['A' * 100_000, 'x\r\nX-Injected: 1', 'x\x00y', '\u202eexe.fdp', "'; $filter=x eq 'y", '..',
                '{{"a": 1}}', '<script>alert(1)</script>']


def yml_commands() -> dict:
    document = yaml.safe_load((REPO / 'MicrosoftGraphMail.yml').read_text())
    return {c['name']: [a['name'] for a in c.get('arguments') or []] for c in document['script']['commands']}


COMMANDS = yml_commands()
ID_ARGUMENTS = {'message_id', 'attachment_id', 'rule_id', 'draft_id', 'ID', 'inReplyTo', 'folder_id',
                'parent_folder_id', 'destination_folder_id', 'message_ids', 'group_id', 'mailboxes'}
USER_ARGUMENTS = {'user_id', 'from'}


class Attack:
    """One in-process integration instance on the module's sandbox."""

    def __init__(self, sandbox, workdir: Path):
        self.sandbox = sandbox
        self.workdir = workdir
        self.params = instance_params(sandbox.info)
        inbox = self.folder(ALICE, 'Inbox')
        self.message_id = inbox['messages'][0]['immutableId']
        self.secrets = {sandbox.info['client_secret']}

    def folder(self, user: str, path: str) -> dict:
        return next(f for f in self.sandbox.mailbox(user)['folders'] if f['path'] == path)

    def base_args(self, command: str) -> dict:
        """Valid values for every argument the command requires, so a test changes exactly one of them."""
        valid = {'user_id': ALICE, 'message_id': self.message_id, 'folder_id': 'Inbox', 'parent_folder_id': 'Inbox',
                 'destination_folder_id': 'Inbox', 'new_folder_name': 'attack-test', 'new_display_name': 'renamed',
                 'limit': '5', 'rule_id': 'AQAAAPJGqwY=', 'draft_id': self.message_id, 'from': ALICE,
                 'to': BOB, 'subject': 'attack test', 'body': 'hello', 'ID': self.message_id,
                 'inReplyTo': self.message_id, 'message_ids': self.message_id, 'status': 'Read',
                 'display_name': 'attack rule', 'email_address': BOB}
        names = COMMANDS[command]
        required = {'user_id', 'message_id', 'parent_folder_id', 'new_folder_name', 'new_display_name', 'limit',
                    'rule_id', 'draft_id', 'from', 'to', 'subject', 'body', 'ID', 'inReplyTo', 'message_ids', 'status',
                    'email_address'}
        if command == 'msgraph-mail-update-rule':
            required.add('display_name')
        args = {n: valid[n] for n in names if n in required and n in valid}
        if command in ('msgraph-mail-update-folder', 'msgraph-mail-delete-folder'):
            args['folder_id'] = 'Inbox/attack-folder-that-does-not-exist'
        return args

    def run(self, monkeypatch, command: str, args: dict, caplog=None) -> list[dict]:
        entries: list = []
        monkeypatch.setattr(demisto, 'command', lambda: command)
        monkeypatch.setattr(demisto, 'args', lambda: dict(args))
        monkeypatch.setattr(demisto, 'params', lambda: self.params)
        monkeypatch.setattr(demisto, 'results', lambda e: entries.extend(e if isinstance(e, list) else [e]))
        monkeypatch.setenv('REQUESTS_CA_BUNDLE', self.sandbox.ca_path)
        monkeypatch.chdir(self.workdir)
        self.sandbox.reset_stats()
        mgm.main()
        token = (demisto.getIntegrationContext().get('auth') or {}).get('access_token')
        if token:
            self.secrets.add(token)
        return entries

    def graph_log(self) -> list[dict]:
        return [r for r in self.sandbox.log() if r['key'] not in IDENTITY]

    def snapshot(self) -> str:
        return json.dumps([self.sandbox.mailbox(u) for u in (ALICE, BOB)], sort_keys=True, default=str)


@pytest.fixture(scope='module')
def attack(sandbox, tmp_path_factory):
    return Attack(sandbox, tmp_path_factory.mktemp('attack'))


def assert_safe(attack: Attack, command: str, entries: list, caplog=None, user: str = ALICE) -> None:
    """Only the command's own routes, only in the given mailbox, no traceback, no secret anywhere."""
    log = attack.graph_log()
    steered = [f"{r['key']} {r['path']}" for r in log if r['key'] not in ALLOWED[command]]
    assert not steered, steered
    for record in log:
        if record['path'].startswith('/v1.0/users/'):
            mailbox = urllib.parse.unquote(record['path'].split('/')[3])
            assert mailbox.lower() == user.lower(), record
    text = json.dumps(entries, default=str) + (caplog.text if caplog else '')
    for secret in attack.secrets:
        assert secret not in text
    for entry in entries:
        if entry.get('Type') == mgm.ENTRY_ERROR:
            assert 'unexpected' not in entry['Contents'] and 'Traceback' not in entry['Contents'], entry['Contents']
            assert len(entry['Contents']) < 3000, entry['Contents'][:300]


def errors_of(entries: list) -> list[str]:
    return [e['Contents'] for e in entries if e.get('Type') == mgm.ENTRY_ERROR]


def id_cases():
    for command, names in COMMANDS.items():
        for name in names:
            if name in ID_ARGUMENTS:
                for value in HOSTILE_IDS:
                    yield pytest.param(command, name, value, id=f'{command}-{name}-{value[:12]!r}')


@pytest.mark.parametrize('command, argument, value', list(id_cases()))
def test_hostile_ids_never_leave_their_path_segment(attack, monkeypatch, command, argument, value):
    before = attack.snapshot()
    entries = attack.run(monkeypatch, command, {**attack.base_args(command), argument: value})
    assert_safe(attack, command, entries, user=value.strip() if argument == 'mailboxes' else ALICE)
    errors = errors_of(entries)
    if errors and not any(r['method'] in MUTATING and r['status'] < 300 for r in attack.sandbox.log()):
        assert attack.snapshot() == before
    if refused_as_id(value) and argument not in ('folder_id', 'parent_folder_id', 'destination_folder_id'):
        # Refused by name before any Graph request (folders given by name are looked up by name instead).
        assert errors and f"'{argument}'" in errors[0], entries
        assert attack.graph_log() == []


def refused_as_id(value: str) -> bool:
    """What the path-segment gate refuses: dot segments ('/' is Graph's '-' first), backslashes, control and bidi
    characters, more than 1024 characters."""
    text = value.strip().replace('/', '-')
    return text in ('.', '..') or any(c in text for c in '\\\x00\r\n\u202e') or len(text) > 1024


def user_cases():
    for command, names in COMMANDS.items():
        for name in names:
            if name in USER_ARGUMENTS:
                for value in HOSTILE_USERS:
                    yield pytest.param(command, name, value, id=f'{command}-{name}-{value[:12]!r}')


@pytest.mark.parametrize('command, argument, value', list(user_cases()))
def test_hostile_mailboxes_are_refused_before_any_request(attack, monkeypatch, command, argument, value):
    before = attack.snapshot()
    entries = attack.run(monkeypatch, command, {**attack.base_args(command), argument: value})
    errors = errors_of(entries)
    assert errors and f"'{argument}'" in errors[0], entries
    assert attack.graph_log() == []
    assert attack.snapshot() == before
    assert_safe(attack, command, entries)


def text_cases():
    for command, names in COMMANDS.items():
        for name in names:
            if name not in ID_ARGUMENTS | USER_ARGUMENTS | {'ran_once_flag'}:
                for value in HOSTILE_TEXT:
                    yield pytest.param(command, name, value, id=f'{command}-{name}-{value[:12]!r}')


@pytest.mark.parametrize('command, argument, value', list(text_cases()))
def test_hostile_values_of_every_other_argument(attack, monkeypatch, caplog, command, argument, value):
    """Free text, numbers, lists, file entries and links: a clear error or a request the command means, no leak."""
    caplog.set_level(logging.DEBUG)
    entries = attack.run(monkeypatch, command, {**attack.base_args(command), argument: value})
    assert_safe(attack, command, entries, caplog)
    if argument == 'next_page':
        assert errors_of(entries) and "'next_page'" in errors_of(entries)[0]
        assert attack.graph_log() == []


@pytest.mark.parametrize('link', [
    '../../users/bob@contoso.com', '/v1.0/users/bob@contoso.com/messages', 'https://evil.example/v1.0/users/a/messages',
    '{base}/v1.0/users/alice@contoso.com/messages/../../bob@contoso.com/messages',
    '{base}/v1.0/users/alice@contoso.com/%2e%2e/bob@contoso.com/messages',
    '{base}/v1.0/users/bob@contoso.com/messages?$skip=1', '{base}/v1.0/users/alice@contoso.com/mailFolders?$skip=1',
    '{base}/v1.0/users/alice@contoso.com/messages/x/attachments', 'http://{host}/v1.0/users/alice@contoso.com/messages',
])
def test_next_page_must_be_the_same_collection_on_the_graph_host(attack, monkeypatch, link):
    """Regression (finding 1): a relative next_page made an arbitrary GET on the Graph host with the app's token."""
    link = link.format(base=attack.sandbox.base_url, host=urllib.parse.urlparse(attack.sandbox.base_url).netloc)
    entries = attack.run(monkeypatch, 'msgraph-mail-list-emails', {'user_id': ALICE, 'next_page': link})
    assert errors_of(entries) and "'next_page'" in errors_of(entries)[0]
    assert attack.graph_log() == []


def test_a_real_next_page_link_still_works(attack, monkeypatch):
    first = attack.run(monkeypatch, 'msgraph-mail-list-emails', {'user_id': ALICE, 'page_size': '1'})
    link = first[0]['EntryContext'][mgm.NEXT_PAGE_CONTEXT_KEY]['NextPage']
    second = attack.run(monkeypatch, 'msgraph-mail-list-emails', {'user_id': ALICE, 'next_page': link})
    assert not errors_of(second) and len(second[0]['Contents']) == 1
    assert_safe(attack, 'msgraph-mail-list-emails', second)


@settings(max_examples=40, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(value=st.text(alphabet=st.sampled_from(list('./\\%2eEfF?#&=@ \x00\r\n\u202eAz')), min_size=0, max_size=12))
def test_property_any_message_id_stays_in_its_segment(attack, monkeypatch, value):
    """Whatever characters an id is made of, delete-email deletes at most users/{alice}/messages/{that id}."""
    before = attack.snapshot()
    entries = attack.run(monkeypatch, 'msgraph-mail-delete-email', {'user_id': ALICE, 'message_id': value})
    assert_safe(attack, 'msgraph-mail-delete-email', entries)
    deletes = [r for r in attack.graph_log() if r['method'] == 'DELETE']
    assert len(deletes) <= 1
    if deletes:
        segment = urllib.parse.unquote(deletes[0]['path'].split('/')[-1])
        assert segment == value.strip().replace('/', '-')
    if errors_of(entries):
        assert attack.snapshot() == before


def test_every_yml_command_is_attacked():
    assert set(COMMANDS) == set(ALLOWED)
    attacked = {c for c, names in COMMANDS.items() if names} | {'msgraph-mail-auth-reset'}
    assert attacked == set(COMMANDS)


# ---------------------------------------------------------------- hostile servers (sandbox faults)
@pytest.fixture
def clean(attack):
    attack.sandbox.clear_faults()
    yield attack
    attack.sandbox.clear_faults()


@pytest.mark.parametrize('path_regex, command, args', [
    (r'/oauth2/v2\.0/token$', 'msgraph-mail-list-folders', {'user_id': ALICE}),
    (r'/sendMail$', 'send-mail', {'to': BOB, 'subject': 's', 'body': 'b', 'from': ALICE}),
    (r'/messages$', 'msgraph-mail-list-emails', {'user_id': ALICE}),
])
def test_redirects_are_never_followed(clean, monkeypatch, path_regex, command, args):
    """Regression (finding 3): a 307 re-posted the client secret or the mail; a 302 was followed as Graph data."""
    target = f'{clean.sandbox.base_url}/stolen'
    demisto.setIntegrationContext({})  # a fresh token request, so the token endpoint is reached
    clean.sandbox.add_fault(path_regex, status=307 if 'oauth' in path_regex or 'send' in path_regex else 302,
                            location=target, count=1)
    entries = clean.run(monkeypatch, command, args)
    errors = errors_of(entries)
    assert errors and 'redirect' in errors[0] and urllib.parse.urlparse(target).netloc in errors[0]
    assert not [r for r in clean.sandbox.log() if r['path'] == '/stolen']


def test_a_token_echoed_in_an_error_body_is_redacted_everywhere(clean, monkeypatch, caplog):
    """Regression (finding 4): Graph error bodies that echo the bearer token were printed verbatim."""
    caplog.set_level(logging.DEBUG)
    clean.run(monkeypatch, 'msgraph-mail-list-folders', {'user_id': ALICE})
    token = demisto.getIntegrationContext()['auth']['access_token']
    clean.sandbox.add_fault(r'/mailFolders$', status=400, echo_authorization=True)
    entries = clean.run(monkeypatch, 'msgraph-mail-list-folders', {'user_id': ALICE}, caplog)
    assert errors_of(entries) and 'Authorization: Bearer <redacted>' in errors_of(entries)[0]
    assert token not in json.dumps(entries) and token not in caplog.text
    clean.sandbox.add_fault(r'/messages/', status=400, echo_authorization=True, in_batch=True)
    entries = clean.run(monkeypatch, 'msgraph-mail-update-email-status',
                        {'user_id': ALICE, 'message_ids': clean.message_id, 'status': 'Read'})
    assert token not in json.dumps(entries) and token not in caplog.text


def test_debug_logs_never_show_an_upload_url_token(clean, monkeypatch, caplog, tmp_path):
    """Regression (finding 4): with MGM_LOG_LEVEL=DEBUG urllib3 logged upload URLs with their authtoken."""
    big = tmp_path / 'big.bin'
    big.write_bytes(os.urandom(3 * 1024 * 1024 + 10))
    caplog.set_level(logging.DEBUG)
    entries = clean.run(monkeypatch, 'send-mail', {'to': BOB, 'subject': 'big', 'body': 'b', 'from': ALICE,
                                                   'attachIDs': str(big)}, caplog)
    assert not errors_of(entries), entries
    assert 'authtoken=<redacted>' in caplog.text
    assert not re.search(r'authtoken=(?!<redacted>)', caplog.text)


# ---------------------------------------------------------------- through the command line
def cli_instance(sandbox, tmp_path, **params):
    from tests.e2e_support import Instance
    return Instance(sandbox, tmp_path / 'cli', **params)


def test_cli_a_hostile_mail_is_fetched_quickly_and_completely(clean, tmp_path, monkeypatch):
    """Regression (findings 2 and 5): an unclosed <script> body stalled fetch for minutes; a 200-character CJK
    attachment name failed it with 'File name too long' and left orphan files."""
    sandbox = clean.sandbox
    folder = f'hostile-{os.getpid()}'
    sandbox.reset()
    created = mgm_folder(sandbox, folder)
    sandbox.add_message(BOB, f'Inbox/{folder}', subject='x\r\nBcc: victim@contoso.com',
                        body='<html><body>Pay now<script>' + 'a' * 1_000_000,
                        headers={'X-Evil': 'Bearer eyJfake.token.value', 'Received': '..\\..\\x'},
                        attachments=[{'name': '報' * 200 + '.pdf', 'content': 'pdf'},
                                     {'name': 'é' * 128 + '.docx', 'content': 'doc', 'isInline': True,
                                      'contentId': '報' * 120},
                                     {'name': '../../../etc/passwd', 'content': 'root'}])
    assert created
    instance = cli_instance(sandbox, tmp_path, isFetch=True, mailbox_to_fetch=BOB, folder_to_fetch=f'Inbox/{folder}',
                            first_fetch='1 day')
    monkeypatch.setenv('MGM_LOG_LEVEL', 'DEBUG')
    result = instance.run('fetch-incidents', timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    incidents = result.incidents
    assert len(incidents) == 1 and incidents[0]['details'].startswith('Pay now')
    names = [a['name'] for a in incidents[0]['attachment']]
    assert len(names) == 3 and all(len(n.encode()) <= mgm.MAX_FILE_NAME_BYTES for n in names)
    assert names[0].endswith('.pdf') and names[1].endswith('.docx') and names[2] == 'passwd'
    files = sorted(p.name for p in instance.out_dir.iterdir())
    assert len(files) == 3 and all(Path(a['localPath']).parent == instance.out_dir.resolve()
                                   for a in incidents[0]['attachment'])
    for secret in (sandbox.info['client_secret'], instance.state()['integration_context']['auth']['access_token']):
        assert secret not in result.stdout and secret not in result.stderr


def mgm_folder(sandbox, name: str) -> bool:
    import requests
    token = sandbox.issue_token()
    answer = requests.post(f'{sandbox.base_url}/v1.0/users/{BOB}/mailFolders/inbox/childFolders',
                           json={'displayName': name}, headers={'Authorization': f'Bearer {token}'},
                           verify=sandbox.ca_path, timeout=30)
    return answer.status_code == 201


def test_cli_debug_output_and_errors_hold_no_secret(clean, tmp_path, monkeypatch):
    """Regression (finding 4) through the CLI at MGM_LOG_LEVEL=DEBUG: an error body echoing the token, urllib3's
    request lines and the traceback are all redacted."""
    sandbox = clean.sandbox
    instance = cli_instance(sandbox, tmp_path)
    monkeypatch.setenv('MGM_LOG_LEVEL', 'DEBUG')
    assert instance.run('msgraph-mail-list-folders', user_id=ALICE).returncode == 0
    token = instance.state()['integration_context']['auth']['access_token']
    sandbox.add_fault(r'/mailFolders$', status=400, echo_authorization=True)
    result = instance.run('msgraph-mail-list-folders', as_json=False, user_id=ALICE)
    assert result.returncode == 1 and 'Bearer <redacted>' in result.stderr
    everything = result.stdout + result.stderr
    assert token not in everything and sandbox.info['client_secret'] not in everything
