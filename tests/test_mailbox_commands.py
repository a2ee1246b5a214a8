"""Unit tests for the mailbox commands: reading mail, attachments, folders, changing mail and inbox rules.

Every Graph call is answered by requests-mock with JSON shaped like Microsoft's documented responses
(test_data/mailbox/). Message, attachment, folder and rule ids contain '/', '+' and '=' on purpose: Graph
ids do, and the existing integration broke on a '/' (release note 1.6.22).
"""
import copy
import json
import os
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, Optional

import pytest
import yaml

import MicrosoftGraphMail as mgm
from conftest import GRAPH, load_json

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

USER = 'soc@contoso.com'                     # the fetch mailbox the `client` fixture falls back to
ANALYST = 'adele.vance@contoso.com'          # an explicit user_id
BASE = f'{GRAPH}/users/{USER}'
ABASE = f'{GRAPH}/users/{ANALYST}'

PAGE1 = load_json('mailbox/messages_page1.json')
MESSAGE = load_json('mailbox/message.json')
ATTACHMENTS = load_json('mailbox/attachments_list.json')
FOLDERS = load_json('mailbox/mail_folders.json')
INBOX_CHILDREN = load_json('mailbox/inbox_child_folders.json')
RULES = load_json('mailbox/message_rules.json')

MSG_ID = MESSAGE['id']
FILE_ATT_ID, ITEM_ATT_ID, REF_ATT_ID = (a['id'] for a in ATTACHMENTS['value'])
INBOX_ID = next(f['id'] for f in FOLDERS['value'] if f['displayName'] == 'Inbox')
PHISH_ID = INBOX_CHILDREN['value'][0]['id']
RULE_ID = RULES['value'][1]['id']
MOVED_ID = load_json('mailbox/message_moved.json')['id']

PDF_BYTES = (b'%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<</Type/Catalog>>\nendobj\n\x00\x01\x02\xff\xfe\r\n'
             b'trailer\n<</Root 1 0 R>>\n%%EOF\n') * 64
with open(os.path.join(ROOT_DIR, 'test_data', 'mailbox', 'message.eml'), 'rb') as _eml:
    EML_BYTES = _eml.read()

# the stem of a real-looking mailFolder id
FOLDER_ID_PREFIX = 'AAMkAGVmMDEzMTM4LTZmYWUtNDdkNC1hMDZiLTU1OGY5OTZhYmY4OAAuAAAAAAAiQ8W967B7TKBjgx9rVEURAQAiIsqMb'


def seg(graph_id: str) -> str:
    """A Graph id as the single path segment the commands must send: '/' -> '-', '+' -> %2B."""
    return graph_id.replace('/', '-').replace('+', '%2B')


def graph_error(status: int, fixture: str, headers: Optional[dict] = None) -> dict:
    return {'status_code': status, 'json': load_json(f'mailbox/{fixture}'),
            'headers': {'Content-Type': 'application/json', 'request-id': f'req-{status}', **(headers or {})}}


def not_found() -> dict:
    return graph_error(404, 'error_item_not_found.json')


def access_denied() -> dict:
    return graph_error(403, 'error_access_denied.json')


def throttled(retry_after: str = '2') -> dict:
    return graph_error(429, 'error_throttled.json', {'Retry-After': retry_after})


def context_of(entry: dict, prefix: str) -> Any:
    """The EntryContext value written under `prefix` (keys carry an XSOAR dedup expression); the NextPage
    key that list-emails also writes under MSGraphMail is left out."""
    matches = [v for k, v in (entry.get('EntryContext') or {}).items()
               if k.split('(')[0] == prefix and 'NextPage' not in k]
    assert len(matches) == 1, f'expected one context key {prefix}, got {list(entry.get("EntryContext") or {})}'
    return matches[0]


def context_paths(entry_context: dict) -> set[str]:
    """Every context path an entry writes, e.g. MSGraphMail.Sender.Address."""
    paths: set[str] = set()

    def walk(prefix: str, value: Any) -> None:
        paths.add(prefix)
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, dict):
                for key, sub in item.items():
                    walk(f'{prefix}.{key}', sub)

    for key, value in entry_context.items():
        prefix = key.split('(')[0]
        # "MSGraphMail(val.NextPage...)": {'NextPage': link} writes MSGraphMail.NextPage
        walk(prefix, value)
    return paths


def yml_outputs(command: str) -> set[str]:
    with open(os.path.join(ROOT_DIR, 'MicrosoftGraphMail.yml'), encoding='utf-8') as handle:
        spec = yaml.safe_load(handle)
    cmd = next(c for c in spec['script']['commands'] if c['name'] == command)
    return {o['contextPath'] for o in cmd.get('outputs') or []}


def table_rows(readable: str) -> list[str]:
    return [line for line in readable.splitlines() if line.startswith('|')]


def qs(request: Any) -> dict:
    return {k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(request.url).query).items()}


def file_path(tmp: Any, entry: dict) -> str:
    return os.path.join(str(tmp), f"1_{entry['FileID']}")


# =============================================================================================== COMMON TABLE
@dataclass
class Case:
    name: str
    func: Callable
    args: dict
    method: str
    url: str
    ok: dict
    names: tuple                      # what a 404 message must name
    permission: str                   # what a 403 message must name
    needs_files: bool = False


CASES = [
    Case('msgraph-mail-list-emails', mgm.list_emails_command, {'user_id': ANALYST},
         'GET', f'{ABASE}/messages', {'json': load_json('mailbox/messages_last_page.json')},
         (ANALYST,), 'Mail.Read'),
    Case('msgraph-mail-get-email', mgm.get_email_command, {'user_id': ANALYST, 'message_id': MSG_ID},
         'GET', f'{ABASE}/messages/{seg(MSG_ID)}', {'json': MESSAGE}, (MSG_ID, ANALYST), 'Mail.Read'),
    Case('msgraph-mail-list-attachments', mgm.list_attachments_command, {'user_id': ANALYST, 'message_id': MSG_ID},
         'GET', f'{ABASE}/messages/{seg(MSG_ID)}/attachments', {'json': ATTACHMENTS}, (MSG_ID, ANALYST), 'Mail.Read'),
    Case('msgraph-mail-get-attachment', mgm.get_attachment_command,
         {'user_id': ANALYST, 'message_id': MSG_ID, 'attachment_id': REF_ATT_ID},
         'GET', f'{ABASE}/messages/{seg(MSG_ID)}/attachments',
         {'json': {'value': [load_json('mailbox/attachment_reference.json')]}}, (REF_ATT_ID, MSG_ID, ANALYST),
         'Mail.Read'),
    Case('msgraph-mail-get-email-as-eml', mgm.get_email_as_eml_command, {'user_id': ANALYST, 'message_id': MSG_ID},
         'GET', f'{ABASE}/messages/{seg(MSG_ID)}/$value', {'content': EML_BYTES}, (MSG_ID, ANALYST), 'Mail.Read',
         needs_files=True),
    Case('msgraph-mail-list-folders', mgm.list_folders_command, {'user_id': ANALYST},
         'GET', f'{ABASE}/mailFolders', {'json': FOLDERS}, (ANALYST,), 'Mail.Read'),
    Case('msgraph-mail-list-child-folders', mgm.list_child_folders_command, {'user_id': ANALYST, 'parent_folder_id': 'Inbox'},
         'GET', f'{ABASE}/mailFolders/inbox/childFolders', {'json': INBOX_CHILDREN}, ('Inbox', ANALYST), 'Mail.Read'),
    Case('msgraph-mail-create-folder', mgm.create_folder_command,
         {'user_id': ANALYST, 'new_folder_name': 'Phishing Triage', 'parent_folder_id': 'Inbox'},
         'POST', f'{ABASE}/mailFolders/inbox/childFolders',
         {'status_code': 201, 'json': load_json('mailbox/folder_created.json')}, ('Inbox', ANALYST), 'Mail.ReadWrite'),
    Case('msgraph-mail-update-folder', mgm.update_folder_command,
         {'user_id': ANALYST, 'folder_id': PHISH_ID, 'new_display_name': 'Phishing (reviewed)'},
         'PATCH', f'{ABASE}/mailFolders/{seg(PHISH_ID)}', {'json': load_json('mailbox/folder_updated.json')},
         (PHISH_ID, ANALYST), 'Mail.ReadWrite'),
    Case('msgraph-mail-delete-folder', mgm.delete_folder_command, {'user_id': ANALYST, 'folder_id': PHISH_ID},
         'DELETE', f'{ABASE}/mailFolders/{seg(PHISH_ID)}', {'status_code': 204}, (PHISH_ID, ANALYST), 'Mail.ReadWrite'),
    Case('msgraph-mail-move-email', mgm.move_email_command,
         {'user_id': ANALYST, 'message_id': MSG_ID, 'destination_folder_id': 'Deleted Items'},
         'POST', f'{ABASE}/messages/{seg(MSG_ID)}/move',
         {'status_code': 201, 'json': load_json('mailbox/message_moved.json')}, (MSG_ID, ANALYST), 'Mail.ReadWrite'),
    Case('msgraph-mail-delete-email', mgm.delete_email_command, {'user_id': ANALYST, 'message_id': MSG_ID},
         'DELETE', f'{ABASE}/messages/{seg(MSG_ID)}', {'status_code': 204}, (MSG_ID, ANALYST), 'Mail.ReadWrite'),
    # A rule that neither forwards nor moves needs no domain or folder lookup for its triage: one request.
    Case('msgraph-mail-list-rules', mgm.list_rules_command, {'user_id': ANALYST},
         'GET', f'{ABASE}/mailFolders/inbox/messageRules', {'json': {**RULES, 'value': RULES['value'][:1]}},
         (ANALYST,), 'MailboxSettings.Read'),
    Case('msgraph-mail-get-rule', mgm.get_rule_command, {'user_id': ANALYST, 'rule_id': RULE_ID},
         'GET', f'{ABASE}/mailFolders/inbox/messageRules/{seg(RULE_ID)}', {'json': {**RULES['value'][0], 'id': RULE_ID}},
         (RULE_ID, ANALYST), 'MailboxSettings.Read'),
    Case('msgraph-mail-delete-rule', mgm.delete_rule_command, {'user_id': ANALYST, 'rule_id': RULE_ID},
         'DELETE', f'{ABASE}/mailFolders/inbox/messageRules/{seg(RULE_ID)}', {'status_code': 204},
         (RULE_ID, ANALYST), 'MailboxSettings.ReadWrite'),
]
CASE_IDS = [c.name for c in CASES]


def entries_of(result: Any) -> list[dict]:
    return result if isinstance(result, list) else [result]


@pytest.mark.parametrize('case', CASES, ids=CASE_IDS)
def test_command_is_dispatched(case):
    assert mgm.COMMANDS[case.name] is case.func


def test_search_email_alias_runs_list_emails(client, requests_mock):
    assert mgm.COMMANDS['msgraph-mail-search-email'] is mgm.list_emails_command
    requests_mock.get(f'{BASE}/messages', json=PAGE1)
    entry = mgm.COMMANDS['msgraph-mail-search-email'](client, {'search': 'invoice', 'ran_once_flag': 'false'})
    assert qs(requests_mock.request_history[0])['$search'] == '"invoice"'
    assert len(context_of(entry, 'MSGraphMail')) == 2


@pytest.mark.parametrize('case', CASES, ids=CASE_IDS)
def test_success_sends_one_request_and_ignores_ran_once_flag(case, client, requests_mock, in_tmp_dir):
    """The deprecated ran_once_flag is accepted and changes nothing: one request, no error entry."""
    requests_mock.register_uri(case.method, case.url, **case.ok)
    result = case.func(client, {**case.args, 'ran_once_flag': 'true'})
    assert requests_mock.call_count == 1
    request = requests_mock.request_history[0]
    assert request.method == case.method
    assert 'ran_once_flag' not in request.url
    assert request.headers['Authorization'].startswith('Bearer test-access-token-')
    assert all(e.get('Type') != mgm.ENTRY_ERROR for e in entries_of(result))


@pytest.mark.parametrize('case', CASES, ids=CASE_IDS)
def test_404_names_the_object_and_the_mailbox(case, client, requests_mock, in_tmp_dir):
    requests_mock.register_uri(case.method, case.url, **not_found())
    with pytest.raises(mgm.MailError) as raised:
        case.func(client, case.args)
    message = str(raised.value)
    assert 'not found' in message
    for name in case.names:
        assert name in message, f'{name!r} missing from {message!r}'
    assert requests_mock.call_count == 1, '404 must not be retried'
    if case.needs_files:
        assert os.listdir(in_tmp_dir) == [], 'a failed download must not leave a file behind'


@pytest.mark.parametrize('case', CASES, ids=CASE_IDS)
def test_403_names_the_permission(case, client, requests_mock, in_tmp_dir):
    requests_mock.register_uri(case.method, case.url, **access_denied())
    with pytest.raises(mgm.MailError) as raised:
        case.func(client, case.args)
    message = str(raised.value)
    assert re.search(rf'\b{re.escape(case.permission)}\b', message), message
    assert ANALYST in message
    assert requests_mock.call_count == 1


@pytest.mark.parametrize('case', CASES, ids=CASE_IDS)
def test_429_is_retried_after_retry_after(case, client, requests_mock, sleeps, in_tmp_dir):
    requests_mock.register_uri(case.method, case.url, [throttled('3'), case.ok])
    result = case.func(client, {**case.args, 'ran_once_flag': 'true'})
    assert sleeps.waits == [3.0]
    assert requests_mock.call_count == 2
    assert all(e.get('Type') != mgm.ENTRY_ERROR for e in entries_of(result))


@pytest.mark.parametrize('case', CASES, ids=CASE_IDS)
def test_429_beyond_the_budget_raises_throttled_error(case, client, requests_mock, sleeps, in_tmp_dir):
    requests_mock.register_uri(case.method, case.url, **throttled('90'))
    with pytest.raises(mgm.ThrottledError) as raised:
        case.func(client, case.args)
    # 90 s fits the 120 s budget once; a second 90 s wait would not.
    assert sleeps.waits == [90.0]
    assert requests_mock.call_count == 2
    assert 'Retry-After' in str(raised.value) and 'ApplicationThrottled' in str(raised.value)
    if case.needs_files:
        assert os.listdir(in_tmp_dir) == []


# =============================================================================================== BAD INPUT
BAD_INPUT = [
    # (command function, args, words the error must contain)
    (mgm.list_emails_command, {'page_size': '0'}, ['page_size', '1000']),
    (mgm.list_emails_command, {'page_size': '1001'}, ['page_size', '1000']),
    (mgm.list_emails_command, {'page_size': 'abc'}, ['page_size', 'abc']),
    (mgm.list_emails_command, {'pages_to_pull': '0'}, ['pages_to_pull']),
    (mgm.list_emails_command, {'pages_to_pull': 'two'}, ['pages_to_pull']),
    (mgm.list_emails_command, {'search': 'invoice', 'odata': '$filter=isRead eq false'}, ['search', 'odata', '$filter']),
    (mgm.list_emails_command, {'search': 'invoice', 'odata': '$orderby=receivedDateTime desc'}, ['search', 'odata', '$orderby']),
    (mgm.list_emails_command, {'search': 'invoice', 'odata': '?$select=id&$filter=isRead eq false'}, ['search', '$filter']),
    (mgm.list_emails_command, {'next_page': 'https://graph.evil.example/v1.0/users/x/messages?$skip=2'}, ['graph.evil.example']),
    (mgm.list_emails_command, {'user_id': 'a@contoso.com,b@contoso.com'}, ['user_id']),
    (mgm.get_email_command, {}, ['message_id']),
    (mgm.get_email_command, {'message_id': '   '}, ['message_id']),
    (mgm.get_email_command, {'message_id': MSG_ID, 'get_body': 'maybe'}, ['get_body', 'maybe']),
    (mgm.list_attachments_command, {}, ['message_id']),
    (mgm.get_attachment_command, {'attachment_id': FILE_ATT_ID}, ['message_id']),
    (mgm.get_attachment_command, {'message_id': MSG_ID, 'should_download_message_attachment': 'maybe'},
     ['should_download_message_attachment']),
    (mgm.get_email_as_eml_command, {}, ['message_id']),
    (mgm.list_folders_command, {'limit': '0'}, ['limit']),
    (mgm.list_folders_command, {'limit': 'abc'}, ['limit', 'abc']),
    (mgm.list_child_folders_command, {}, ['parent_folder_id']),
    (mgm.list_child_folders_command, {'parent_folder_id': 'Inbox', 'limit': '-1'}, ['limit']),
    (mgm.create_folder_command, {'parent_folder_id': 'Inbox'}, ['new_folder_name']),
    (mgm.update_folder_command, {'new_display_name': 'x'}, ['folder_id']),
    (mgm.update_folder_command, {'folder_id': PHISH_ID}, ['new_display_name']),
    (mgm.delete_folder_command, {}, ['folder_id']),
    (mgm.move_email_command, {'destination_folder_id': 'Inbox'}, ['message_id']),
    (mgm.move_email_command, {'message_id': MSG_ID}, ['destination_folder_id']),
    (mgm.delete_email_command, {}, ['message_id']),
    (mgm.update_email_status_command, {'status': 'Read'}, ['message_ids']),
    (mgm.update_email_status_command, {'message_ids': MSG_ID, 'status': 'maybe'}, ['status', 'maybe']),
    (mgm.update_email_status_command, {'message_ids': MSG_ID}, ['status']),
    (mgm.list_rules_command, {'limit': '0'}, ['limit']),
    (mgm.list_rules_command, {'limit': 'fifty'}, ['limit']),
    (mgm.get_rule_command, {}, ['rule_id']),
    (mgm.delete_rule_command, {}, ['rule_id']),
]


@pytest.mark.parametrize('func, args, words', BAD_INPUT,
                         ids=[f'{f.__name__}-{"-".join(sorted(a))}-{i}' for i, (f, a, _) in enumerate(BAD_INPUT)])
def test_bad_input_is_refused_before_any_request(func, args, words, client, requests_mock, in_tmp_dir):
    with pytest.raises(mgm.MailError) as raised:
        func(client, args)
    assert not isinstance(raised.value, mgm.GraphError)
    for word in words:
        assert word in str(raised.value), f'{word!r} missing from {raised.value}'
    assert requests_mock.call_count == 0
    assert os.listdir(in_tmp_dir) == []


MAILBOX_FUNCS = [c.func for c in CASES] + [mgm.update_email_status_command]


@pytest.mark.parametrize('func', MAILBOX_FUNCS, ids=[f.__name__ for f in MAILBOX_FUNCS])
def test_missing_user_id_without_fetch_mailbox_is_refused(func, make_client, requests_mock, in_tmp_dir):
    client = make_client(default_user='')
    args = {'message_id': MSG_ID, 'message_ids': MSG_ID, 'status': 'Read', 'rule_id': RULE_ID, 'folder_id': PHISH_ID,
            'parent_folder_id': 'Inbox', 'new_folder_name': 'x', 'new_display_name': 'y', 'destination_folder_id': 'Inbox'}
    with pytest.raises(mgm.MailError, match="Missing argument 'user_id'"):
        func(client, args)
    assert requests_mock.call_count == 0


def test_user_id_falls_back_to_the_fetch_mailbox(client, requests_mock):
    requests_mock.get(f'{BASE}/messages/{seg(MSG_ID)}', json=MESSAGE)
    entry = mgm.get_email_command(client, {'message_id': MSG_ID})
    assert context_of(entry, 'MSGraphMail')['UserID'] == USER


# =============================================================================================== LIST EMAILS
def test_list_emails_parses_messages_into_the_anchor_context(client, requests_mock):
    requests_mock.get(f'{BASE}/messages', json=PAGE1)
    entry = mgm.list_emails_command(client, {})
    request = requests_mock.request_history[0]
    assert urllib.parse.urlsplit(request.url).path == '/v1.0/users/soc@contoso.com/messages'
    assert qs(request) == {'$top': '20'}
    mails = context_of(entry, 'MSGraphMail')
    assert [m['ID'] for m in mails] == [m['id'] for m in PAGE1['value']]
    first = mails[0]
    assert first['Subject'] == 'Invoice | Q3 overdue\nACTION REQUIRED'
    assert first['Sender'] == {'Name': 'Accounts Payable', 'Address': 'billing@fabrikam-payments.com'}
    assert first['From']['Address'] == 'billing@fabrikam-payments.com'
    assert [r['Address'] for r in first['Recipients']] == ['soc@contoso.com', 'AdeleV@contoso.com']
    assert first['CCRecipients'] == [{'Name': 'Alex Wilber', 'Address': 'AlexW@contoso.com'}]
    assert first['BCCRecipients'][0]['Address'] == 'audit@contoso.com'
    assert first['ReplyTo'][0]['Address'] == 'reply@fabrikam-payments.com'
    assert first['ReceivedTime'] == '2024-03-11T09:14:02Z' and first['SendTime'] == '2024-03-11T09:13:58Z'
    assert first['Created'] == '2024-03-11T09:14:02Z' and first['LastModifiedTime'] == '2024-03-11T09:14:05Z'
    assert first['Categories'] == ['Phishing Suspect'] and first['HasAttachments'] is True
    assert first['ConversationID'] == PAGE1['value'][0]['conversationId']
    assert first['InternetMessageID'] == PAGE1['value'][0]['internetMessageId']
    assert first['Importance'] == 'high' and first['Flag'] == {'flagStatus': 'notFlagged'}
    assert first['IsDraft'] is False
    assert 'SECRET-BODY-MARKER' in first['Body']
    assert first['UserID'] == USER
    assert entry['Contents'] == PAGE1['value']


def test_list_emails_writes_every_declared_output(client, requests_mock):
    requests_mock.get(f'{BASE}/messages', json=PAGE1)
    entry = mgm.list_emails_command(client, {})
    # internetMessageHeaders is returned by Graph only when $select names it, which list-emails does not.
    expected = yml_outputs('msgraph-mail-list-emails') - {'MSGraphMail.Headers'}
    assert expected - context_paths(entry['EntryContext']) == set()


def test_list_emails_markdown_escapes_pipes_and_newlines_and_leaves_out_bodies(client, requests_mock):
    requests_mock.get(f'{BASE}/messages', json=PAGE1)
    readable = mgm.list_emails_command(client, {})['HumanReadable']
    rows = table_rows(readable)
    assert len(rows) == 2 + len(PAGE1['value']), readable          # header, separator, one line per mail
    assert 'Invoice \\| Q3 overdue ACTION REQUIRED' in rows[2]
    assert all(row.count('|') - row.count('\\|') == len(mgm.MESSAGE_TABLE_COLUMNS) + 1 for row in rows)
    assert 'SECRET-BODY-MARKER' not in readable and '<html>' not in readable


@pytest.mark.parametrize('page_size', ['1', '1000', ' 50 '])
def test_list_emails_page_size_bounds_are_accepted(page_size, client, requests_mock):
    requests_mock.get(f'{BASE}/messages', json={'value': []})
    mgm.list_emails_command(client, {'page_size': page_size})
    assert qs(requests_mock.request_history[0])['$top'] == page_size.strip()


@pytest.mark.parametrize('pages_to_pull', [1, 2, 3])
def test_list_emails_follows_next_link_pages_to_pull_times(pages_to_pull, client, requests_mock):
    page2, page3 = load_json('mailbox/messages_page2.json'), load_json('mailbox/messages_page3.json')
    requests_mock.get(f'{BASE}/messages', json=PAGE1)
    requests_mock.get(f'{BASE}/messages?%24skip=2', json=page2)
    requests_mock.get(f'{BASE}/messages?%24skip=4', json=page3)
    entry = mgm.list_emails_command(client, {'page_size': '2', 'pages_to_pull': str(pages_to_pull)})
    history = requests_mock.request_history
    assert len(history) == pages_to_pull
    assert qs(history[0]) == {'$top': '2'}
    assert [h.url for h in history[1:]] == [PAGE1['@odata.nextLink'], page2['@odata.nextLink']][:pages_to_pull - 1]
    pages = [PAGE1, page2, page3][:pages_to_pull]
    assert [m['ID'] for m in context_of(entry, 'MSGraphMail')] == [m['id'] for p in pages for m in p['value']]
    assert entry['EntryContext'][mgm.NEXT_PAGE_CONTEXT_KEY] == {'NextPage': pages[-1]['@odata.nextLink']}
    assert 'next_page' in entry['HumanReadable']


def test_list_emails_sets_no_next_page_on_the_last_page(client, requests_mock):
    last = load_json('mailbox/messages_last_page.json')
    requests_mock.get(f'{BASE}/messages', json=PAGE1)
    requests_mock.get(f'{BASE}/messages?%24skip=2', json=last)
    entry = mgm.list_emails_command(client, {'page_size': '2', 'pages_to_pull': '5'})
    assert requests_mock.call_count == 2
    assert not any('NextPage' in key for key in entry['EntryContext'])
    assert len(context_of(entry, 'MSGraphMail')) == 4


def test_list_emails_next_page_continues_from_the_stored_link(client, requests_mock):
    page2 = load_json('mailbox/messages_page2.json')
    requests_mock.get(f'{BASE}/messages?%24skip=2', json=page2)
    entry = mgm.list_emails_command(client, {'next_page': PAGE1['@odata.nextLink'], 'page_size': '50',
                                             'odata': '$select=id'})
    assert [h.url for h in requests_mock.request_history] == [PAGE1['@odata.nextLink']]
    assert [m['ID'] for m in context_of(entry, 'MSGraphMail')] == [m['id'] for m in page2['value']]
    assert entry['EntryContext'][mgm.NEXT_PAGE_CONTEXT_KEY] == {'NextPage': page2['@odata.nextLink']}


@pytest.mark.parametrize('search, expected', [
    ('invoice', '"invoice"'),
    ('from:billing@fabrikam-payments.com', '"from:billing@fabrikam-payments.com"'),
    ('subject:"Q3 overdue"', '"subject:\\"Q3 overdue\\""'),
])
def test_list_emails_search_is_quoted(search, expected, client, requests_mock):
    requests_mock.get(f'{BASE}/messages', json={'value': []})
    mgm.list_emails_command(client, {'search': search, 'odata': '$select=id,subject'})
    sent = qs(requests_mock.request_history[0])
    assert sent['$search'] == expected
    assert '$filter' not in sent and '$orderby' not in sent
    assert sent['$select'] == 'id,subject'


def test_list_emails_odata_is_passed_through(client, requests_mock):
    requests_mock.get(f'{BASE}/messages', json={'value': []})
    mgm.list_emails_command(client, {'odata': "$filter=isRead eq false and subject eq 'a+b'&$orderby=receivedDateTime desc"})
    sent = qs(requests_mock.request_history[0])
    assert sent['$filter'].startswith('isRead eq false')
    assert sent['$orderby'] == 'receivedDateTime desc'
    assert sent['$top'] == '20'


def test_list_emails_in_a_folder_path(client, requests_mock):
    requests_mock.get(f'{BASE}/mailFolders/inbox/childFolders', json=load_json('mailbox/child_folder_lookup_phishing.json'))
    requests_mock.get(f'{BASE}/mailFolders/{seg(PHISH_ID)}/messages', json=PAGE1)
    entry = mgm.list_emails_command(client, {'folder_id': 'Inbox/Phishing'})
    assert [urllib.parse.urlsplit(h.url).path for h in requests_mock.request_history] == [
        '/v1.0/users/soc@contoso.com/mailFolders/inbox/childFolders',
        f'/v1.0/users/soc@contoso.com/mailFolders/{seg(PHISH_ID)}/messages']
    assert len(context_of(entry, 'MSGraphMail')) == 2


def test_list_emails_404_on_a_folder_names_the_folder_and_the_mailbox(client, requests_mock):
    """A 404 for `mailFolders/{id}/messages` means the folder is gone; saying the mailbox was not found misleads."""
    requests_mock.get(f'{BASE}/mailFolders/{seg(PHISH_ID)}/messages', **not_found())
    with pytest.raises(mgm.MailError) as raised:
        mgm.list_emails_command(client, {'folder_id': PHISH_ID})
    assert PHISH_ID in str(raised.value) and USER in str(raised.value)


# =============================================================================================== GET EMAIL
def test_get_email_sends_the_id_as_one_path_segment(client, requests_mock):
    requests_mock.get(f'{BASE}/messages/{seg(MSG_ID)}', json=MESSAGE)
    mgm.get_email_command(client, {'message_id': MSG_ID})
    raw_path = urllib.parse.urlsplit(requests_mock.request_history[0].url).path
    prefix = '/v1.0/users/soc@contoso.com/messages/'
    assert raw_path.startswith(prefix)
    segment = raw_path[len(prefix):]
    assert '/' not in segment and '+' not in segment
    assert '%2B' in segment
    assert urllib.parse.unquote(segment) == MSG_ID.replace('/', '-')


def test_get_email_without_body(client, requests_mock):
    requests_mock.get(f'{BASE}/messages/{seg(MSG_ID)}', json={k: v for k, v in MESSAGE.items() if k != 'body'})
    entry = mgm.get_email_command(client, {'message_id': MSG_ID, 'get_body': 'false'})
    select = qs(requests_mock.request_history[0])['$select'].split(',')
    assert 'body' not in select and 'internetMessageHeaders' in select
    mail = context_of(entry, 'MSGraphMail')
    assert mail['ID'] == MSG_ID and 'Body' not in mail
    assert mail['Headers'][2] == {'name': 'X-MS-Exchange-Organization-SCL', 'value': '5'}
    assert mail['Importance'] == 'high' and mail['Flag'] == {'flagStatus': 'notFlagged'}
    assert mail['BCCRecipients'] == [{'Name': 'Audit', 'Address': 'audit@contoso.com'}]


def test_get_email_with_body_shows_the_body_below_the_table(client, requests_mock):
    requests_mock.get(f'{BASE}/messages/{seg(MSG_ID)}', json=MESSAGE)
    entry = mgm.get_email_command(client, {'message_id': MSG_ID, 'get_body': 'true'})
    assert 'body' in qs(requests_mock.request_history[0])['$select'].split(',')
    mail = context_of(entry, 'MSGraphMail')
    assert 'SECRET-BODY-MARKER' in mail['Body']
    table, body = entry['HumanReadable'].split('#### Body', 1)
    assert 'SECRET-BODY-MARKER' not in table
    assert 'SECRET-BODY-MARKER' in body and '<' not in body.replace('```text', '')
    assert 'Invoice \\| Q3 overdue ACTION REQUIRED' in entry['HumanReadable']
    assert yml_outputs('msgraph-mail-get-email') - context_paths(entry['EntryContext']) == set()


def test_get_email_body_cannot_close_its_fenced_block(client, requests_mock):
    hostile = dict(MESSAGE, body={'contentType': 'text', 'content': 'hi\n````\n# Injected heading\n```'})
    requests_mock.get(f'{BASE}/messages/{seg(MSG_ID)}', json=hostile)
    readable = mgm.get_email_command(client, {'message_id': MSG_ID, 'get_body': 'true'})['HumanReadable']
    block = readable.split('#### Body\n', 1)[1]
    fence = block.split('text\n', 1)[0]
    assert len(fence) == 5 and set(fence) == {'`'}
    assert block.rstrip().endswith(fence) and block.count(fence) == 2


def test_get_email_without_get_body_shows_no_body(client, requests_mock):
    requests_mock.get(f'{BASE}/messages/{seg(MSG_ID)}', json=MESSAGE)
    assert '#### Body' not in mgm.get_email_command(client, {'message_id': MSG_ID})['HumanReadable']


def test_get_email_odata_overrides_select(client, requests_mock):
    requests_mock.get(f'{BASE}/messages/{seg(MSG_ID)}', json={'id': MSG_ID, 'subject': 's'})
    mgm.get_email_command(client, {'message_id': MSG_ID, 'odata': '$select=id,subject'})
    assert qs(requests_mock.request_history[0])['$select'] == 'id,subject'


# =============================================================================================== ATTACHMENTS
def test_list_attachments_does_not_request_content_bytes(client, requests_mock):
    requests_mock.get(f'{BASE}/messages/{seg(MSG_ID)}/attachments', json=ATTACHMENTS)
    entry = mgm.list_attachments_command(client, {'message_id': MSG_ID})
    select = qs(requests_mock.request_history[0]).get('$select', '')
    assert select and 'contentBytes' not in select.split(',')
    context = context_of(entry, 'MSGraphMailAttachment')
    assert context['ID'] == MSG_ID and context['UserID'] == USER
    assert [(a['ID'], a['Name'], a['Type']) for a in context['Attachment']] == [
        (FILE_ATT_ID, 'invoice_Q3.pdf', 'application/pdf'),
        (ITEM_ATT_ID, 'Your mailbox is almost full', None),
        (REF_ATT_ID, 'Q3 forecast.xlsx', 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet')]
    assert yml_outputs('msgraph-mail-list-attachments') - context_paths(entry['EntryContext']) == set()


def test_list_attachments_follows_pages_and_names_unnamed_attachments_by_id(client, requests_mock):
    first = copy.deepcopy(ATTACHMENTS)
    first['value'] = first['value'][:1]
    first['value'][0]['name'] = None
    first['@odata.nextLink'] = f'{BASE}/messages/{seg(MSG_ID)}/attachments?%24select=id&%24skip=1'
    second = copy.deepcopy(ATTACHMENTS)
    second['value'] = second['value'][1:]
    requests_mock.get(f'{BASE}/messages/{seg(MSG_ID)}/attachments', json=first)
    requests_mock.get(f'{BASE}/messages/{seg(MSG_ID)}/attachments?%24skip=1', json=second)
    entry = mgm.list_attachments_command(client, {'message_id': MSG_ID})
    rows = context_of(entry, 'MSGraphMailAttachment')['Attachment']
    assert [r['ID'] for r in rows] == [FILE_ATT_ID, ITEM_ATT_ID, REF_ATT_ID]
    assert rows[0]['Name'] == FILE_ATT_ID
    assert requests_mock.call_count == 2


def _mock_single_attachment(requests_mock, attachment: dict) -> str:
    """The attachment's metadata comes from the message's attachment list (another attachment first); a GET of
    the single attachment, which may carry contentBytes, is never made for it (not mocked: it would fail)."""
    listing = f"{BASE}/messages/{seg(MSG_ID)}/attachments"
    other = dict(load_json('mailbox/attachment_file.json'), id='AAMkADMwOTHER=', name='other.pdf')
    requests_mock.get(listing, json={'value': [other, attachment]})
    return f"{listing}/{seg(attachment['id'])}"


def test_get_attachment_streams_a_file_attachment_to_the_working_dir(client, requests_mock, in_tmp_dir):
    url = _mock_single_attachment(requests_mock, load_json('mailbox/attachment_file.json'))
    requests_mock.get(f'{url}/$value', content=PDF_BYTES, headers={'Content-Type': 'application/pdf'})
    entries = mgm.get_attachment_command(client, {'message_id': MSG_ID, 'attachment_id': FILE_ATT_ID})
    assert len(entries) == 1
    entry = entries[0]
    assert entry['Type'] == mgm.ENTRY_FILE == 3
    assert entry['File'] == 'evil.pdf'
    with open(file_path(in_tmp_dir, entry), 'rb') as handle:
        assert handle.read() == PDF_BYTES
    assert os.listdir(in_tmp_dir) == [f"1_{entry['FileID']}"]
    metadata, content = requests_mock.request_history
    assert 'contentBytes' not in qs(metadata).get('$select', '')
    assert content.url == f'{url}/$value'


@pytest.mark.parametrize('name, expected', [
    ('invoice_Q3.pdf', 'invoice_Q3.pdf'),
    ('../../evil.pdf', 'evil.pdf'),
    ('..\\..\\Windows\\System32\\evil.pdf', 'evil.pdf'),
    ('/etc/cron.d/job.sh', 'job.sh'),
    ('report<Q3>:final?.xlsx', 'report_Q3__final_.xlsx'),
    ('line\r\nbreak.txt', 'line__break.txt'),
    ('..hidden.docx', 'hidden.docx'),
])
def test_get_attachment_file_names_are_sanitised_and_keep_their_extension(name, expected, client, requests_mock,
                                                                          in_tmp_dir):
    attachment = dict(load_json('mailbox/attachment_file.json'), name=name)
    url = _mock_single_attachment(requests_mock, attachment)
    requests_mock.get(f'{url}/$value', content=PDF_BYTES)
    entry = mgm.get_attachment_command(client, {'message_id': MSG_ID, 'attachment_id': FILE_ATT_ID})[0]
    assert entry['File'] == expected


def test_get_attachment_long_names_keep_their_extension(client, requests_mock, in_tmp_dir):
    name = 'Quarterly financial statement and supporting schedules for the audit committee ' * 3 + '.pdf'
    assert len(name) > 200
    attachment = dict(load_json('mailbox/attachment_file.json'), name=name)
    url = _mock_single_attachment(requests_mock, attachment)
    requests_mock.get(f'{url}/$value', content=PDF_BYTES)
    entry = mgm.get_attachment_command(client, {'message_id': MSG_ID, 'attachment_id': FILE_ATT_ID})[0]
    assert entry['File'].endswith('.pdf'), entry['File']
    assert len(entry['File']) <= 255


@pytest.mark.parametrize('name', [None, '', '..'])
def test_get_attachment_unnamed_file_gets_a_safe_name(name, client, requests_mock, in_tmp_dir):
    """The fallback for a missing name is the attachment id, which contains '/': it must be sanitised too."""
    attachment = dict(load_json('mailbox/attachment_file.json'), name=name)
    url = _mock_single_attachment(requests_mock, attachment)
    requests_mock.get(f'{url}/$value', content=PDF_BYTES)
    entry = mgm.get_attachment_command(client, {'message_id': MSG_ID, 'attachment_id': FILE_ATT_ID})[0]
    assert entry['Type'] == mgm.ENTRY_FILE
    assert entry['File'] and '/' not in entry['File'] and '\\' not in entry['File'], entry['File']


def _mock_all_attachments(requests_mock) -> dict:
    base = f'{BASE}/messages/{seg(MSG_ID)}/attachments'
    requests_mock.get(base, json=ATTACHMENTS)
    urls = {'file': f'{base}/{seg(FILE_ATT_ID)}/$value', 'item': f'{base}/{seg(ITEM_ATT_ID)}',
            'item_value': f'{base}/{seg(ITEM_ATT_ID)}/$value', 'reference_value': f'{base}/{seg(REF_ATT_ID)}/$value'}
    requests_mock.get(urls['file'], content=PDF_BYTES)
    requests_mock.get(urls['item'], json=load_json('mailbox/attachment_item_expanded.json'))
    requests_mock.get(urls['item_value'], content=EML_BYTES)
    requests_mock.get(urls['reference_value'], status_code=405,
                      json={'error': {'code': 'ErrorInvalidRequest', 'message': 'Method not allowed.'}})
    return urls


def test_get_attachment_all_attachments_file_item_and_reference(client, requests_mock, in_tmp_dir):
    urls = _mock_all_attachments(requests_mock)
    entries = mgm.get_attachment_command(client, {'message_id': MSG_ID})
    assert len(entries) == 3
    file_entry, item_entry, reference_entry = entries
    # the file attachment: streamed to disk with its exact bytes
    assert file_entry['Type'] == mgm.ENTRY_FILE and file_entry['File'] == 'invoice_Q3.pdf'
    with open(file_path(in_tmp_dir, file_entry), 'rb') as handle:
        assert handle.read() == PDF_BYTES
    # the attached message: expanded and parsed like a mail
    mail = context_of(item_entry, 'MSGraphMail')
    assert mail['Subject'] == 'Your mailbox is almost full'
    assert mail['From']['Address'] == 'helpdesk@micros0ft-support.example'
    assert 'login.micros0ft-support.example' in mail['Body']
    assert mail['UserID'] == USER
    # the reference attachment: reported, never downloaded
    assert reference_entry['Type'] == mgm.ENTRY_NOTE
    assert 'Q3 forecast.xlsx' in reference_entry['HumanReadable']
    requested = [h.url for h in requests_mock.request_history]
    assert urls['reference_value'] not in requested and urls['item_value'] not in requested
    item_request = next(h for h in requests_mock.request_history if h.url.split('?')[0] == urls['item'])
    assert qs(item_request)['$expand'] == 'microsoft.graph.itemattachment/item'
    assert 'contentBytes' not in qs(requests_mock.request_history[0]).get('$select', '')


def test_get_attachment_attached_message_id_is_the_attachment_id(client, requests_mock, in_tmp_dir):
    """Graph returns the expanded item with "id": "" (see the attachment-get example 3), so the context ID must
    fall back to the attachment id; an empty ID breaks the MSGraphMail(val.ID && val.ID == obj.ID) merge."""
    _mock_all_attachments(requests_mock)
    entries = mgm.get_attachment_command(client, {'message_id': MSG_ID})
    assert context_of(entries[1], 'MSGraphMail')['ID'] == ITEM_ATT_ID


def test_get_attachment_item_as_eml_when_asked(client, requests_mock, in_tmp_dir):
    urls = _mock_all_attachments(requests_mock)
    entries = mgm.get_attachment_command(client, {'message_id': MSG_ID, 'should_download_message_attachment': 'true'})
    file_entry, eml_entry, reference_entry = entries
    assert eml_entry['Type'] == mgm.ENTRY_FILE
    assert eml_entry['File'] == 'Your mailbox is almost full.eml'
    with open(file_path(in_tmp_dir, eml_entry), 'rb') as handle:
        assert handle.read() == EML_BYTES
    requested = [h.url.split('?')[0] for h in requests_mock.request_history]
    assert urls['item_value'] in requested and urls['item'] not in requested
    assert reference_entry['Type'] == mgm.ENTRY_NOTE
    assert sorted(os.listdir(in_tmp_dir)) == sorted([f"1_{file_entry['FileID']}", f"1_{eml_entry['FileID']}"])


def test_get_attachment_single_reference_is_reported_not_downloaded(client, requests_mock, in_tmp_dir):
    _mock_single_attachment(requests_mock, load_json('mailbox/attachment_reference.json'))
    entries = mgm.get_attachment_command(client, {'message_id': MSG_ID, 'attachment_id': REF_ATT_ID})
    assert len(entries) == 1 and entries[0]['Type'] == mgm.ENTRY_NOTE
    assert 'link' in entries[0]['HumanReadable'].lower()
    assert requests_mock.call_count == 1
    assert os.listdir(in_tmp_dir) == []


def test_get_attachment_attached_contact_is_reported_as_unsupported(client, requests_mock, in_tmp_dir):
    item = {k: v for k, v in load_json('mailbox/attachment_item_expanded.json').items() if not k.startswith('item')}
    url = _mock_single_attachment(requests_mock, item)
    requests_mock.get(url + '?%24expand=microsoft.graph.itemattachment%2Fitem',
                      json=load_json('mailbox/attachment_item_contact_expanded.json'))
    entries = mgm.get_attachment_command(client, {'message_id': MSG_ID, 'attachment_id': ITEM_ATT_ID})
    assert len(entries) == 1 and entries[0]['Type'] == mgm.ENTRY_NOTE
    assert 'contact' in entries[0]['HumanReadable']
    assert 'EntryContext' not in entries[0]


def test_get_attachment_of_a_message_without_attachments(client, requests_mock, in_tmp_dir):
    requests_mock.get(f'{BASE}/messages/{seg(MSG_ID)}/attachments', json={'value': []})
    entries = mgm.get_attachment_command(client, {'message_id': MSG_ID})
    assert len(entries) == 1 and entries[0]['Type'] == mgm.ENTRY_NOTE
    assert 'no attachments' in entries[0]['HumanReadable']


def test_get_attachment_404_on_the_content_names_the_attachment(client, requests_mock, in_tmp_dir):
    url = _mock_single_attachment(requests_mock, load_json('mailbox/attachment_file.json'))
    requests_mock.get(f'{url}/$value', **not_found())
    with pytest.raises(mgm.MailError) as raised:
        mgm.get_attachment_command(client, {'message_id': MSG_ID, 'attachment_id': FILE_ATT_ID})
    assert FILE_ATT_ID in str(raised.value) and USER in str(raised.value)
    assert os.listdir(in_tmp_dir) == []


def test_get_attachment_429_while_streaming_is_retried(client, requests_mock, sleeps, in_tmp_dir):
    url = _mock_single_attachment(requests_mock, load_json('mailbox/attachment_file.json'))
    requests_mock.get(f'{url}/$value', [throttled('4'), {'content': PDF_BYTES}])
    entry = mgm.get_attachment_command(client, {'message_id': MSG_ID, 'attachment_id': FILE_ATT_ID})[0]
    assert sleeps.waits == [4.0]
    with open(file_path(in_tmp_dir, entry), 'rb') as handle:
        assert handle.read() == PDF_BYTES


# =============================================================================================== EML
def test_get_email_as_eml_streams_the_mime(client, requests_mock, in_tmp_dir):
    url = f'{BASE}/messages/{seg(MSG_ID)}/$value'
    requests_mock.get(url, content=EML_BYTES, headers={'Content-Type': 'text/plain'})
    entry = mgm.get_email_as_eml_command(client, {'message_id': MSG_ID})
    assert requests_mock.request_history[0].url == url
    assert entry['Type'] == mgm.ENTRY_FILE
    assert entry['File'].endswith('.eml')
    with open(file_path(in_tmp_dir, entry), 'rb') as handle:
        assert handle.read() == EML_BYTES


def test_get_email_as_eml_is_named_after_the_whole_message_id(client, requests_mock, in_tmp_dir):
    """The anchor names the file `{message_id}.eml`; a '/' in the id must be replaced, not cut the name short."""
    requests_mock.get(f'{BASE}/messages/{seg(MSG_ID)}/$value', content=EML_BYTES)
    entry = mgm.get_email_as_eml_command(client, {'message_id': MSG_ID})
    name = entry['File']
    assert '/' not in name and '\\' not in name
    assert name.endswith('.eml') and len(name) == len(MSG_ID) + len('.eml'), name
    assert name.startswith(MSG_ID.split('/')[0])


# =============================================================================================== FOLDERS
def test_list_folders(client, requests_mock):
    requests_mock.get(f'{BASE}/mailFolders', json=FOLDERS)
    entry = mgm.list_folders_command(client, {})
    assert qs(requests_mock.request_history[0]) == {'$top': '20'}
    folders = context_of(entry, 'MSGraphMail.Folders')
    inbox = next(f for f in folders if f['DisplayName'] == 'Inbox')
    assert inbox == {'ID': INBOX_ID, 'DisplayName': 'Inbox', 'ParentFolderID': FOLDERS['value'][4]['parentFolderId'],
                     'ChildFolderCount': 2, 'TotalItemCount': 1480, 'UnreadItemCount': 37}
    assert len(folders) == len(FOLDERS['value'])
    assert yml_outputs('msgraph-mail-list-folders') - context_paths(entry['EntryContext']) == set()


def test_list_folders_limit_pages_and_stops(client, requests_mock):
    first = dict(FOLDERS, value=FOLDERS['value'][:3], **{'@odata.nextLink': f'{BASE}/mailFolders?%24top=5&%24skip=3'})
    second = dict(FOLDERS, value=FOLDERS['value'][3:6], **{'@odata.nextLink': f'{BASE}/mailFolders?%24top=5&%24skip=6'})
    requests_mock.get(f'{BASE}/mailFolders', json=first)
    requests_mock.get(f'{BASE}/mailFolders?%24skip=3', json=second)
    entry = mgm.list_folders_command(client, {'limit': '5'})
    assert requests_mock.call_count == 2
    assert qs(requests_mock.request_history[0])['$top'] == '5'
    assert [f['DisplayName'] for f in context_of(entry, 'MSGraphMail.Folders')] == \
        [f['displayName'] for f in FOLDERS['value'][:5]]


@pytest.mark.parametrize('parent, lookups, children_url', [
    ('Inbox', 0, f'{BASE}/mailFolders/inbox/childFolders'),
    ('inbox', 0, f'{BASE}/mailFolders/inbox/childFolders'),
    (PHISH_ID, 0, f'{BASE}/mailFolders/{seg(PHISH_ID)}/childFolders'),
    ('Inbox/Phishing', 1, f'{BASE}/mailFolders/{seg(PHISH_ID)}/childFolders'),
    ('Inbox\\Phishing', 1, f'{BASE}/mailFolders/{seg(PHISH_ID)}/childFolders'),
])
def test_list_child_folders(parent, lookups, children_url, client, requests_mock):
    lookup = requests_mock.get(f'{BASE}/mailFolders/inbox/childFolders?%24top=100',
                               json=load_json('mailbox/child_folder_lookup_phishing.json'))
    children = requests_mock.get(children_url + '?%24top=20', json=INBOX_CHILDREN)
    entry = mgm.list_child_folders_command(client, {'parent_folder_id': parent})
    assert lookup.call_count == lookups and children.call_count == 1
    assert [f['ID'] for f in context_of(entry, 'MSGraphMail.Folders')] == [f['id'] for f in INBOX_CHILDREN['value']]
    assert 'Vendors \\| Finance' in entry['HumanReadable']


def test_create_folder_at_the_root(client, requests_mock):
    created = load_json('mailbox/folder_created.json')
    requests_mock.post(f'{BASE}/mailFolders', status_code=201, json=created)
    entry = mgm.create_folder_command(client, {'new_folder_name': 'Phishing Triage'})
    request = requests_mock.request_history[0]
    assert request.json() == {'displayName': 'Phishing Triage'}
    assert request.headers['Content-Type'] == 'application/json'
    folder = context_of(entry, 'MSGraphMail.Folders')[0]
    assert folder['ID'] == created['id'] and folder['DisplayName'] == 'Phishing Triage'
    assert yml_outputs('msgraph-mail-create-folder') - context_paths(entry['EntryContext']) == set()


def test_create_folder_under_a_folder_path(client, requests_mock):
    requests_mock.get(f'{BASE}/mailFolders/inbox/childFolders', json=load_json('mailbox/child_folder_lookup_phishing.json'))
    post = requests_mock.post(f'{BASE}/mailFolders/{seg(PHISH_ID)}/childFolders', status_code=201,
                              json=load_json('mailbox/folder_created.json'))
    mgm.create_folder_command(client, {'new_folder_name': '2024', 'parent_folder_id': 'Inbox/Phishing'})
    assert post.call_count == 1 and post.last_request.json() == {'displayName': '2024'}


def test_create_folder_that_exists(client, requests_mock):
    requests_mock.post(f'{BASE}/mailFolders/inbox/childFolders', **graph_error(409, 'error_folder_exists.json'))
    with pytest.raises(mgm.MailError) as raised:
        mgm.create_folder_command(client, {'new_folder_name': 'Phishing', 'parent_folder_id': 'Inbox'})
    assert "'Phishing' already exists" in str(raised.value) and USER in str(raised.value)


def test_update_folder_by_path(client, requests_mock):
    requests_mock.get(f'{BASE}/mailFolders/inbox/childFolders', json=load_json('mailbox/child_folder_lookup_phishing.json'))
    patch = requests_mock.patch(f'{BASE}/mailFolders/{seg(PHISH_ID)}', json=load_json('mailbox/folder_updated.json'))
    entry = mgm.update_folder_command(client, {'folder_id': 'Inbox/Phishing', 'new_display_name': 'Phishing (reviewed)'})
    assert patch.last_request.json() == {'displayName': 'Phishing (reviewed)'}
    assert context_of(entry, 'MSGraphMail.Folders')[0]['DisplayName'] == 'Phishing (reviewed)'


def test_delete_folder(client, requests_mock):
    delete = requests_mock.delete(f'{BASE}/mailFolders/{seg(PHISH_ID)}', status_code=204)
    entry = mgm.delete_folder_command(client, {'folder_id': PHISH_ID})
    assert delete.call_count == 1 and requests_mock.call_count == 1
    assert PHISH_ID in entry['HumanReadable'] and USER in entry['HumanReadable']


# ---------------------------------------------------------------------------------------- folder resolution
PHISH_LOOKUP = load_json('mailbox/child_folder_lookup_phishing.json')


def test_folder_path_resolves_the_well_known_alias_then_a_child(client, requests_mock):
    lookup = requests_mock.get(f'{BASE}/mailFolders/inbox/childFolders', json=PHISH_LOOKUP)
    assert mgm.resolve_folder(client, USER, 'Inbox/Phishing') == PHISH_ID
    assert lookup.call_count == 1
    assert qs(lookup.last_request)['$filter'] == "displayName eq 'Phishing'"


def test_folder_path_matches_names_case_insensitively(client, requests_mock):
    requests_mock.get(f'{BASE}/mailFolders/inbox/childFolders', json=PHISH_LOOKUP)
    assert mgm.resolve_folder(client, USER, 'INBOX/phishing') == PHISH_ID


def test_folder_path_not_starting_with_a_well_known_name_starts_at_the_root(client, requests_mock):
    projects = {'id': FOLDER_ID_PREFIX + 'YjsT5e/T7KzowPTAAEy+cVZAAA=',
                'displayName': "O'Brien Cases", 'parentFolderId': 'root', 'childFolderCount': 1}
    year = {'id': FOLDER_ID_PREFIX + 'YjsT5e/T7KzowPTAAEy+cVaAAA=',
            'displayName': '2024', 'parentFolderId': projects['id'], 'childFolderCount': 0}
    root = requests_mock.get(f'{BASE}/mailFolders', json={'value': [projects]})
    child = requests_mock.get(f"{BASE}/mailFolders/{seg(projects['id'])}/childFolders", json={'value': [year]})
    assert mgm.resolve_folder(client, USER, "O'Brien Cases/2024") == year['id']
    assert qs(root.last_request)['$filter'] == "displayName eq 'O''Brien Cases'"
    assert qs(child.last_request)['$filter'] == "displayName eq '2024'"


def test_folder_lookup_follows_next_link(client, requests_mock):
    """The existing integration saw only the first 250 children; every page must be searched."""
    next_link = (f'{BASE}/mailFolders/inbox/childFolders'
                 '?%24filter=displayName+eq+%27Phishing%27&%24top=100&%24skiptoken=R0VUfDEwMA')
    others = [{'id': FOLDER_ID_PREFIX + f'{i:03d}AAA=',
               'displayName': f'Case {i}'} for i in range(100)]
    first = requests_mock.get(f'{BASE}/mailFolders/inbox/childFolders', json={'value': others, '@odata.nextLink': next_link})
    second = requests_mock.get(f'{BASE}/mailFolders/inbox/childFolders?%24skiptoken=R0VUfDEwMA', json=PHISH_LOOKUP)
    assert mgm.resolve_folder(client, USER, 'Inbox/Phishing') == PHISH_ID
    assert first.call_count == 1 and second.call_count == 1
    assert second.last_request.url == next_link


def test_folder_path_with_an_unknown_segment_names_it(client, requests_mock):
    requests_mock.get(f'{BASE}/mailFolders/inbox/childFolders', json=PHISH_LOOKUP)
    requests_mock.get(f'{BASE}/mailFolders/{seg(PHISH_ID)}/childFolders', json={'value': []})
    with pytest.raises(mgm.MailError) as raised:
        mgm.list_emails_command(client, {'folder_id': 'Inbox/Phishing/Nope'})
    message = str(raised.value)
    assert "'Nope'" in message and 'Inbox/Phishing' in message and USER in message
    assert not any('/messages' in h.url for h in requests_mock.request_history)


def test_folder_id_is_used_as_is(client, requests_mock):
    requests_mock.get(f'{BASE}/mailFolders/{seg(PHISH_ID)}/messages', json={'value': []})
    mgm.list_emails_command(client, {'folder_id': PHISH_ID})
    assert requests_mock.call_count == 1


def test_comma_list_of_folder_ids_uses_the_last_id(client, requests_mock):
    other = FOLDER_ID_PREFIX + 'YjsT5e-T7KzowPTAAEy7cVUAAA='
    assert mgm.resolve_folder(client, USER, f'{INBOX_ID},{other}') == other
    assert requests_mock.call_count == 0


def test_comma_list_of_folder_ids_containing_slashes_uses_the_last_id(client, requests_mock):
    """Folder ids contain '/' like message ids do; a comma list of them is still a list of ids, not a path."""
    requests_mock.get(re.compile(re.escape(f'{BASE}/mailFolders')), json={'value': []})
    assert mgm.resolve_folder(client, USER, f'{INBOX_ID},{PHISH_ID}') == PHISH_ID
    assert requests_mock.call_count == 0


def test_long_folder_path_without_spaces_is_a_path_not_an_id(client, requests_mock):
    """'Inbox/SecurityOperationsCenterPhishingReports' is 45 characters of [A-Za-z/]: it must still be walked."""
    reports = {'id': FOLDER_ID_PREFIX + 'YjsT5e/T7KzowPTAAEy+cVbAAA=',
               'displayName': 'SecurityOperationsCenterPhishingReports'}
    requests_mock.get(f'{BASE}/mailFolders/inbox/childFolders', json={'value': [reports]})
    assert mgm.resolve_folder(client, USER, 'Inbox/SecurityOperationsCenterPhishingReports') == reports['id']


# =============================================================================================== CHANGING MAIL
def test_move_email_returns_the_new_id(client, requests_mock):
    moved = load_json('mailbox/message_moved.json')
    requests_mock.get(f'{BASE}/mailFolders/inbox/childFolders', json=PHISH_LOOKUP)
    move = requests_mock.post(f'{BASE}/messages/{seg(MSG_ID)}/move', status_code=201, json=moved)
    entry = mgm.move_email_command(client, {'message_id': MSG_ID, 'destination_folder_id': 'Inbox/Phishing'})
    assert move.last_request.json() == {'destinationId': PHISH_ID}
    row = context_of(entry, 'MSGraphMail.MovedEmails')
    assert row == {'ID': MOVED_ID, 'DestinationFolderID': PHISH_ID, 'UserID': USER}
    assert MOVED_ID != MSG_ID
    assert yml_outputs('msgraph-mail-move-email') - context_paths(entry['EntryContext']) == set()


@pytest.mark.parametrize('destination, expected', [('Deleted Items', 'deleteditems'), ('junk email', 'junkemail'),
                                                   ('Archive', 'archive'), (PHISH_ID, PHISH_ID)])
def test_move_email_to_a_well_known_folder_or_id(destination, expected, client, requests_mock):
    move = requests_mock.post(f'{BASE}/messages/{seg(MSG_ID)}/move', status_code=201,
                              json=load_json('mailbox/message_moved.json'))
    mgm.move_email_command(client, {'message_id': MSG_ID, 'destination_folder_id': destination})
    assert move.last_request.json() == {'destinationId': expected}
    assert requests_mock.call_count == 1


def test_delete_email(client, requests_mock):
    delete = requests_mock.delete(f'{BASE}/messages/{seg(MSG_ID)}', status_code=204)
    entry = mgm.delete_email_command(client, {'message_id': MSG_ID, 'folder_id': 'Inbox'})
    assert delete.call_count == 1 and requests_mock.call_count == 1
    assert MSG_ID in entry['HumanReadable'] and USER in entry['HumanReadable']


# ---------------------------------------------------------------------------------------- update-email-status
def status_ids(count: int) -> list[str]:
    return [f'AAMkAGVmMDEzMTM4LTZmYWUtNDdkNC1hMDZiLTU1OGY5OTZhYmY4OABGAAAAAAAiQ8W967B7TKBjgx9rVEURBwAiIsqMbYjsT5e/'
            f'T7KzowPTAAAAAAEMAAAiIsqMbYjsT5e+T7KzowPTAAEy{i:04d}AAA=' for i in range(count)]


class FakeBatchEndpoint:
    """Answers POST /$batch like Graph: one response per request id, in reverse order; `plan` lists the
    statuses one message id gets on successive attempts (default 200)."""

    def __init__(self, message_ids: list[str], plan: Optional[dict] = None):
        self.by_segment = {seg(m): m for m in message_ids}
        self.plan = {k: list(v) for k, v in (plan or {}).items()}
        self.posts: list[list[dict]] = []

    def message_of(self, request: dict) -> str:
        return self.by_segment[request['url'].rsplit('/', 1)[-1]]

    def __call__(self, request, context):
        requests_ = request.json()['requests']
        self.posts.append(requests_)
        responses = []
        for item in requests_:
            message_id = self.message_of(item)
            statuses = self.plan.get(message_id) or [200]
            status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
            if status == 200:
                responses.append({'id': item['id'], 'status': 200,
                                  'headers': {'Content-Type': 'application/json; odata.metadata=minimal'},
                                  'body': {'@odata.etag': 'W/"CQAAABYAAAAiIsqMbYjsT5e/T7KzowPTAAEy7cVZ"',
                                           'id': message_id, 'isRead': item['body']['isRead']}})
            elif status == 429:
                responses.append({'id': item['id'], 'status': 429,
                                  'headers': {'Retry-After': '7', 'Content-Type': 'application/json'},
                                  'body': load_json('mailbox/error_throttled.json')})
            elif status == 404:
                responses.append({'id': item['id'], 'status': 404, 'headers': {'Content-Type': 'application/json'},
                                  'body': load_json('mailbox/error_item_not_found.json')})
            elif status == 403:
                responses.append({'id': item['id'], 'status': 403, 'headers': {'Content-Type': 'application/json'},
                                  'body': load_json('mailbox/error_access_denied.json')})
        return {'responses': list(reversed(responses))}


def test_update_email_status_sends_one_batch(client, requests_mock):
    ids = status_ids(3)
    fake = FakeBatchEndpoint(ids)
    requests_mock.post(f'{GRAPH}/$batch', json=fake)
    entries = mgm.update_email_status_command(client, {'message_ids': ','.join(ids), 'status': 'Read',
                                                       'folder_id': 'Inbox'})
    assert requests_mock.call_count == 1
    sent = fake.posts[0]
    assert len({r['id'] for r in sent}) == 3
    for request, message_id in zip(sent, ids, strict=True):
        assert request['method'] == 'PATCH'
        assert request['url'] == f'/users/soc@contoso.com/messages/{seg(message_id)}'
        assert request['body'] == {'isRead': True}
        assert request['headers']['Content-Type'] == 'application/json'
    assert len(entries) == 1
    rows = context_of(entries[0], 'MSGraphMail.EmailStatus')
    assert rows == [{'ID': m, 'Status': 'Read', 'Succeeded': True, 'Error': ''} for m in ids]
    assert yml_outputs('msgraph-mail-update-email-status') - context_paths(entries[0]['EntryContext']) == set()


@pytest.mark.parametrize('status, is_read', [('Unread', False), ('unread', False), ('read', True)])
def test_update_email_status_values(status, is_read, client, requests_mock):
    ids = status_ids(1)
    fake = FakeBatchEndpoint(ids)
    requests_mock.post(f'{GRAPH}/$batch', json=fake)
    entries = mgm.update_email_status_command(client, {'message_ids': ids[0], 'status': status})
    assert fake.posts[0][0]['body'] == {'isRead': is_read}
    assert context_of(entries[0], 'MSGraphMail.EmailStatus')[0]['Status'] == ('Read' if is_read else 'Unread')


@pytest.mark.parametrize('form', ['list', 'json', 'comma'])
def test_update_email_status_accepts_lists_and_drops_duplicates(form, client, requests_mock):
    ids = status_ids(3)
    given = ids + [ids[0]]
    value = {'list': given, 'json': json.dumps(given), 'comma': ' , '.join(given)}[form]
    fake = FakeBatchEndpoint(ids)
    requests_mock.post(f'{GRAPH}/$batch', json=fake)
    entries = mgm.update_email_status_command(client, {'message_ids': value, 'status': 'Read'})
    assert [r['ID'] for r in context_of(entries[0], 'MSGraphMail.EmailStatus')] == ids
    assert len(fake.posts[0]) == 3


def test_update_email_status_45_ids_are_three_batches(client, requests_mock):
    ids = status_ids(45)
    fake = FakeBatchEndpoint(ids)
    requests_mock.post(f'{GRAPH}/$batch', json=fake)
    entries = mgm.update_email_status_command(client, {'message_ids': ids, 'status': 'Unread'})
    assert requests_mock.call_count == 3
    assert [len(p) for p in fake.posts] == [20, 20, 5]
    for post in fake.posts:
        assert len({r['id'] for r in post}) == len(post)
    assert [fake.message_of(r) for p in fake.posts for r in p] == ids
    rows = context_of(entries[0], 'MSGraphMail.EmailStatus')
    assert len(rows) == 45 and all(r['Succeeded'] for r in rows)
    assert len(entries) == 1


def test_update_email_status_retries_a_throttled_item_alone(client, requests_mock, sleeps):
    ids = status_ids(5)
    fake = FakeBatchEndpoint(ids, plan={ids[2]: [429, 200]})
    requests_mock.post(f'{GRAPH}/$batch', json=fake)
    entries = mgm.update_email_status_command(client, {'message_ids': ids, 'status': 'Read'})
    assert [len(p) for p in fake.posts] == [5, 1]
    assert fake.message_of(fake.posts[1][0]) == ids[2]
    assert sleeps.waits == [7.0]
    rows = context_of(entries[0], 'MSGraphMail.EmailStatus')
    assert all(r['Succeeded'] for r in rows)
    assert len(entries) == 1


def test_update_email_status_reports_a_missing_message_and_keeps_the_others(client, requests_mock):
    ids = status_ids(4)
    fake = FakeBatchEndpoint(ids, plan={ids[1]: [404]})
    requests_mock.post(f'{GRAPH}/$batch', json=fake)
    entries = mgm.update_email_status_command(client, {'message_ids': ids, 'status': 'Read'})
    assert requests_mock.call_count == 1, '404 items are not retried'
    rows = {r['ID']: r for r in context_of(entries[0], 'MSGraphMail.EmailStatus')}
    assert rows[ids[1]]['Succeeded'] is False and 'ErrorItemNotFound' in rows[ids[1]]['Error']
    assert all(rows[m]['Succeeded'] for m in ids if m != ids[1])
    assert len(entries) == 2 and entries[1]['Type'] == mgm.ENTRY_ERROR
    assert ids[1] in entries[1]['Contents'] and ids[0] not in entries[1]['Contents']
    assert '3 of 4' in entries[0]['HumanReadable']


def test_update_email_status_error_entry_names_the_mailbox(client, requests_mock):
    ids = status_ids(2)
    requests_mock.post(f'{GRAPH}/$batch', json=FakeBatchEndpoint(ids, plan={ids[1]: [404]}))
    entries = mgm.update_email_status_command(client, {'user_id': ANALYST, 'message_ids': ids, 'status': 'Read'})
    assert ANALYST in entries[1]['Contents']


def test_update_email_status_403_names_the_permission(client, requests_mock):
    ids = status_ids(2)
    requests_mock.post(f'{GRAPH}/$batch', json=FakeBatchEndpoint(ids, plan={m: [403] for m in ids}))
    entries = mgm.update_email_status_command(client, {'message_ids': ids, 'status': 'Read'})
    assert entries[-1]['Type'] == mgm.ENTRY_ERROR
    assert re.search(r'\bMail\.ReadWrite\b', entries[-1]['Contents']), entries[-1]['Contents']


def test_update_email_status_item_still_throttled_after_the_budget_is_reported(make_client, requests_mock, sleeps):
    client = make_client(max_attempts=3)
    ids = status_ids(2)
    fake = FakeBatchEndpoint(ids, plan={ids[0]: [429]})
    requests_mock.post(f'{GRAPH}/$batch', json=fake)
    entries = mgm.update_email_status_command(client, {'message_ids': ids, 'status': 'Read'})
    assert [len(p) for p in fake.posts] == [2, 1, 1]
    assert sleeps.waits == [7.0, 7.0]
    rows = {r['ID']: r for r in context_of(entries[0], 'MSGraphMail.EmailStatus')}
    assert rows[ids[0]]['Succeeded'] is False and '429' in rows[ids[0]]['Error']
    assert rows[ids[1]]['Succeeded'] is True
    assert entries[1]['Type'] == mgm.ENTRY_ERROR


def test_update_email_status_throttled_batch_call_raises_throttled_error(client, requests_mock, sleeps):
    requests_mock.post(f'{GRAPH}/$batch', **throttled('90'))
    with pytest.raises(mgm.ThrottledError):
        mgm.update_email_status_command(client, {'message_ids': status_ids(2), 'status': 'Read'})
    assert sleeps.waits == [90.0]


def test_update_email_status_throttled_batch_call_is_retried(client, requests_mock, sleeps):
    ids = status_ids(2)
    fake = FakeBatchEndpoint(ids)
    requests_mock.post(f'{GRAPH}/$batch', [throttled('5'), {'json': fake}])
    entries = mgm.update_email_status_command(client, {'message_ids': ids, 'status': 'Read', 'ran_once_flag': 'true'})
    assert sleeps.waits == [5.0]
    assert all(r['Succeeded'] for r in context_of(entries[0], 'MSGraphMail.EmailStatus'))


# =============================================================================================== RULES
def mock_rule_triage(requests_mock, user: str = USER) -> None:
    """The tenant's domains and the folder the forwarding rule of the fixture moves mail to."""
    requests_mock.get(f'{GRAPH}/domains', json={'value': [{'id': 'contoso.com', 'isVerified': True}]})
    folder_id = RULES['value'][1]['actions']['moveToFolder']
    requests_mock.get(f'{GRAPH}/users/{user}/mailFolders/{seg(folder_id)}', json={'id': folder_id, 'displayName': 'RSS Feeds'})


def test_list_rules(client, requests_mock):
    requests_mock.get(f'{BASE}/mailFolders/inbox/messageRules', json=RULES)
    mock_rule_triage(requests_mock)
    entry = mgm.list_rules_command(client, {})
    assert qs(requests_mock.request_history[0]) == {'$top': '50'}
    rules = context_of(entry, 'MSGraphMail.Rule')
    assert [r['id'] for r in rules] == ['AQAAAJ5dZqA=', RULE_ID]
    assert rules[1]['actions']['forwardTo'][0]['emailAddress']['address'] == 'collector@exfil.example'
    assert rules[1]['exceptions'] == RULES['value'][1]['exceptions']
    assert set(rules[0]) == {'id', 'displayName', 'sequence', 'isEnabled', 'hasError', 'isReadOnly', 'conditions', 'actions',
                             'Suspicious', 'SuspiciousReasons'}
    assert rules[0]['Suspicious'] is False and rules[1]['Suspicious'] is True
    assert rules[1]['MoveToFolderName'] == 'RSS Feeds'
    rows = table_rows(entry['HumanReadable'])
    assert len(rows) == 4
    assert 'zz \\| hide replies from finance' in entry['HumanReadable']
    assert 'forwardTo: collector@exfil.example' in rows[3] and 'moveToFolder: RSS Feeds' in rows[3]
    assert yml_outputs('msgraph-mail-list-rules') - context_paths(entry['EntryContext']) == \
        {'MSGraphMail.Rule.TriageNotes', 'MSGraphMail.Rule.CopyToFolderName'}


def test_list_rules_limit(client, requests_mock):
    requests_mock.get(f'{BASE}/mailFolders/inbox/messageRules', json=RULES)
    mock_rule_triage(requests_mock)
    entry = mgm.list_rules_command(client, {'limit': '1'})
    assert qs(requests_mock.request_history[0]) == {'$top': '1'}
    assert len(context_of(entry, 'MSGraphMail.Rule')) == 1


def test_get_rule(client, requests_mock):
    url = f'{BASE}/mailFolders/inbox/messageRules/{seg(RULE_ID)}'
    requests_mock.get(url, json=load_json('mailbox/message_rule.json'))
    mock_rule_triage(requests_mock)
    entry = mgm.get_rule_command(client, {'rule_id': RULE_ID})
    assert requests_mock.request_history[0].url == url
    rule = context_of(entry, 'MSGraphMail.Rule')[0]
    assert rule['id'] == RULE_ID and rule['sequence'] == 5 and rule['actions']['markAsRead'] is True
    assert '@odata.context' not in rule


def test_delete_rule(client, requests_mock):
    delete = requests_mock.delete(f'{BASE}/mailFolders/inbox/messageRules/{seg(RULE_ID)}', status_code=204)
    entry = mgm.delete_rule_command(client, {'rule_id': RULE_ID})
    assert delete.call_count == 1
    assert RULE_ID in entry['HumanReadable'] and USER in entry['HumanReadable']


def test_get_attachment_learns_name_and_size_from_the_list_never_from_the_single_attachment(client, requests_mock,
                                                                                            in_tmp_dir):
    """Graph may ignore $select on GET of a single attachment and send its whole contentBytes (140 MB of JSON for
    a 100 MB file): the metadata comes from the attachment list, with $select, and the content from /$value."""
    attachment = load_json('mailbox/attachment_file.json')
    url = _mock_single_attachment(requests_mock, attachment)
    single = requests_mock.get(url, json=dict(attachment, contentBytes='QUJD'))
    requests_mock.get(f'{url}/$value', content=PDF_BYTES)
    given = attachment['id'].replace('/', '-')  # the URL-safe spelling of the same id
    entry = mgm.get_attachment_command(client, {'message_id': MSG_ID, 'attachment_id': given})[0]
    assert entry['File'] == 'evil.pdf'
    assert single.call_count == 0
    listing = requests_mock.request_history[0]
    assert listing.url.split('?')[0].endswith('/attachments')
    assert 'contentBytes' not in qs(listing)['$select'] and 'size' in qs(listing)['$select']


def test_get_attachment_id_not_in_the_message_is_a_clear_error(client, requests_mock, in_tmp_dir):
    _mock_single_attachment(requests_mock, load_json('mailbox/attachment_reference.json'))
    with pytest.raises(mgm.MailError) as raised:
        mgm.get_attachment_command(client, {'message_id': MSG_ID, 'attachment_id': 'AAMkADNOSUCH='})
    assert 'AAMkADNOSUCH=' in str(raised.value) and MSG_ID in str(raised.value) and USER in str(raised.value)
    assert len(requests_mock.request_history) == 1 and os.listdir(in_tmp_dir) == []


@pytest.mark.parametrize('odd_id', ['', '..', 'a\u202eb', None])
def test_get_attachment_skips_a_malformed_id_in_graphs_list_instead_of_failing(odd_id, client, requests_mock,
                                                                               in_tmp_dir):
    """Graph's own list is compared, never gated: an attachment whose id could not be a path segment is just not
    the one asked for, and the one asked for is still downloaded."""
    listing = f"{BASE}/messages/{seg(MSG_ID)}/attachments"
    wanted = load_json('mailbox/attachment_file.json')
    odd = dict(wanted, id=odd_id, name='odd.pdf')
    requests_mock.get(listing, json={'value': [odd, wanted]})
    requests_mock.get(f"{listing}/{seg(wanted['id'])}/$value", content=PDF_BYTES)
    entry = mgm.get_attachment_command(client, {'message_id': MSG_ID, 'attachment_id': FILE_ATT_ID})[0]
    assert entry['File'] == 'evil.pdf'
