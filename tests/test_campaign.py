"""Unit tests of the multi-mailbox engine and the campaign commands (search-mailboxes, remediate-emails,
undo-remediation) against a fake Graph behind requests-mock: every request goes through POST /$batch."""
import json
import re
import urllib.parse
from typing import Optional

import pytest

import demistomock as demisto
import MicrosoftGraphMail as mgm
from conftest import GRAPH

MID = '<campaign-1@evil.example>'
INBOX, JUNK, DELETED = 'AAMkInbox' + 'A' * 40, 'AAMkJunk' + 'B' * 40, 'AAMkDeleted' + 'C' * 40
FOLDER_NAMES = {INBOX: 'Inbox', JUNK: 'Junk Email', DELETED: 'Deleted Items'}


@pytest.fixture(autouse=True)
def empty_context(monkeypatch, in_tmp_dir):
    monkeypatch.setattr(demisto._runtime, 'state', {'integration_context': {}, 'context_version': 0,
                                                    'last_run': {}, 'files': {}})
    return in_tmp_dir


class FakeTenant:
    """A tenant answering $batch sub-requests: users (with messages, without a mailbox, or denied), groups, paging."""

    def __init__(self, users: dict, page_size: int = 2, groups: Optional[dict] = None):
        self.users = users           # upn -> list of messages | 'nomailbox' | 'denied' | 'missing'
        self.page_size = page_size
        self.groups = groups or {}
        self.sub_requests: list[dict] = []
        self.script: dict[str, list[int]] = {}   # url regex -> statuses for successive matching requests
        self.directory_status = 200
        self.folders: dict[str, dict[str, list[dict]]] = {}   # upn -> parent folder id -> child folders

    def message(self, upn: str, n: int, folder: str = INBOX, **extra) -> dict:
        return {'id': f'msg-{upn}-{n}', 'internetMessageId': MID, 'subject': 'Pay now', 'parentFolderId': folder,
                'from': {'emailAddress': {'address': 'bad@evil.example'}}, 'receivedDateTime': '2024-05-01T08:00:00Z',
                'isRead': False, **extra}

    def __call__(self, request, context):
        answers = []
        failed: set[str] = set()
        for sub in request.json()['requests']:
            if failed & set(sub.get('dependsOn') or ()):   # as Graph: a failed dependency means not run, 424
                failed.add(sub['id'])
                answers.append({'id': sub['id'], 'status': 424, 'headers': {},
                                'body': {'error': {'code': 'FailedDependency', 'message': 'dependency failed'}}})
                continue
            self.sub_requests.append(sub)
            status, body = self.answer(sub)
            if status >= 400:
                failed.add(sub['id'])
            headers = {'Retry-After': '3'} if status == 429 else {}
            answers.append({'id': sub['id'], 'status': status, 'headers': headers, 'body': body})
        return {'responses': answers}

    def scripted(self, url: str) -> Optional[int]:
        for pattern, statuses in self.script.items():
            if re.search(pattern, url) and statuses:
                return statuses.pop(0)
        return None

    def answer(self, sub: dict) -> tuple[int, dict]:
        url = urllib.parse.unquote(sub['url'])
        forced = self.scripted(url)
        if forced:
            return forced, {'error': {'code': {429: 'ApplicationThrottled', 403: 'ErrorAccessDenied'}.get(forced, 'X'),
                                      'message': 'scripted'}}
        path, _, query = url.partition('?')
        params = dict(urllib.parse.parse_qsl(query))
        if path in ('/users', ) or path.startswith('/groups/'):
            if self.directory_status != 200:
                return self.directory_status, {'error': {'code': 'Authorization_RequestDenied', 'message': 'no'}}
            if path.startswith('/groups/'):
                group = path.split('/')[2]
                if group not in self.groups:
                    return 404, {'error': {'code': 'Request_ResourceNotFound', 'message': 'no group'}}
                names = self.groups[group]
            else:
                names = list(self.users)
            skip = int(params.get('$skiptoken', 0))
            page = [{'id': f'id-{n}', 'userPrincipalName': n, 'mail': n} for n in names[skip:skip + self.page_size]]
            body = {'value': page}
            if skip + self.page_size < len(names):
                body['@odata.nextLink'] = f'{GRAPH}{path}?$skiptoken={skip + self.page_size}'
            return 200, body
        match = re.match(r'^/users/([^/]+)(/.*)$', path)
        user = match.group(1)
        upn = user[3:] if user.startswith('id-') else user
        state = self.users.get(upn, 'missing')
        if state == 'missing':
            return 404, {'error': {'code': 'ErrorInvalidUser', 'message': 'no user'}}
        if state == 'nomailbox':
            return 404, {'error': {'code': 'MailboxNotEnabledForRESTAPI', 'message': 'no mailbox'}}
        if state == 'denied':
            return 403, {'error': {'code': 'ErrorAccessDenied', 'message': 'denied'}}
        rest = match.group(2)
        if rest == '/messages' and sub['method'] == 'GET':
            skip = int(params.get('$skip', 0))
            page = state[skip:skip + self.page_size]
            body = {'value': page}
            if skip + self.page_size < len(state):
                body['@odata.nextLink'] = f'{GRAPH}/users/{user}/messages?{query}&$skip={skip + self.page_size}'
            return 200, body
        children = re.match(r'^/mailFolders(?:/([^/]+)/childFolders)?$', rest)
        if children and sub['method'] == 'GET':
            name = re.fullmatch(r"displayName eq '(.*)'", params['$filter']).group(1).replace("''", "'")
            listed = self.folders.get(upn, {}).get(children.group(1) or 'msgfolderroot', [])
            return 200, {'value': [f for f in listed if f['displayName'].lower() == name.lower()]}
        folder = re.match(r'^/mailFolders/([^/]+)$', rest)
        if folder:
            return 200, {'displayName': FOLDER_NAMES.get(folder.group(1), 'Projects')}
        message = re.match(r'^/messages/([^/]+)(/move|/permanentDelete)?$', rest)
        found = next((m for m in state if m['id'] == message.group(1)), None) if message else None
        if found is None:
            return 404, {'error': {'code': 'ErrorItemNotFound', 'message': 'gone'}}
        if message.group(2) == '/move':
            found['parentFolderId'] = sub['body']['destinationId']
            return 201, dict(found)
        state.remove(found)
        return 204, {}

    def searches(self) -> list[dict]:
        return [s for s in self.sub_requests if re.match(r'^/users/[^/]+/messages\?', s['url'])]


def tenant_of(requests_mock, users, **options) -> FakeTenant:
    fake = FakeTenant(users, **options)
    requests_mock.post(f'{GRAPH}/$batch', json=fake)
    return fake


def context_of(entries: list, prefix: str) -> dict:
    for entry in entries:
        for key, value in (entry.get('EntryContext') or {}).items():
            if key.split('(')[0] == prefix:
                return value
    raise AssertionError(f'no {prefix} in {entries}')


def campaign_users(fake_builder=None) -> dict:
    fake = FakeTenant({})
    return {
        'a@contoso.com': [fake.message('a@contoso.com', 1), fake.message('a@contoso.com', 2, JUNK, isRead=True)],
        'b@contoso.com': [fake.message('b@contoso.com', 1, DELETED)],
        'c@contoso.com': [],
        'room@contoso.com': 'nomailbox',
        'locked@contoso.com': 'denied',
    }


def search(client, **args) -> tuple[list, dict]:
    entries = mgm.search_mailboxes_command(client, args)
    return entries, context_of(entries, 'MSGraphMail.CampaignSearch')


# ================================================================================ ENGINE
def test_all_mailboxes_are_discovered_page_by_page_and_searched(client, requests_mock):
    fake = tenant_of(requests_mock, campaign_users())
    entries, result = search(client, all_mailboxes='true', internet_message_id=MID)
    assert result['Status'] == 'Completed'
    assert result['MailboxesTotal'] == 5
    assert result['MailboxesSearched'] == 3
    assert result['MailboxesWithoutMailbox'] == 1
    assert result['MailboxesFailedCount'] == 1
    assert result['MailboxesFailed'][0]['Mailbox'] == 'locked@contoso.com'
    assert 'Mail.ReadWrite' in result['MailboxesFailed'][0]['Error']
    assert result['ItemsFound'] == 3
    by_id = {i['MessageID']: i for i in result['Items']}
    assert by_id['msg-a@contoso.com-2']['FolderName'] == 'Junk Email' and by_id['msg-a@contoso.com-2']['IsRead'] is True
    assert by_id['msg-b@contoso.com-1']['FolderName'] == 'Deleted Items'
    directory = [s['url'] for s in fake.sub_requests if s['url'].startswith('/users?')]
    assert directory[0] == '/users?$select=id,userPrincipalName,mail&$top=999'
    assert len(directory) == 3, 'five users in pages of two'
    assert 'PollingCommand' not in entries[0]


def test_messages_of_a_mailbox_are_paged(client, requests_mock):
    fake = FakeTenant({})
    users = {'a@contoso.com': [fake.message('a@contoso.com', n) for n in range(5)]}
    fake = tenant_of(requests_mock, users)
    _, result = search(client, mailboxes='a@contoso.com', sender='bad@evil.example')
    assert result['ItemsFound'] == 5
    assert len(fake.searches()) == 3


def test_the_filter_quotes_values_and_keeps_angle_brackets(client, requests_mock):
    fake = tenant_of(requests_mock, {'a@contoso.com': []})
    search(client, mailboxes='a@contoso.com', internet_message_id="campaign'1@evil.example",
           subject="It's urgent", received_after='2024-05-01T00:00:00Z', received_before='2024-05-02T00:00:00+02:00')
    url = fake.searches()[0]['url']
    query = dict(urllib.parse.parse_qsl(url.split('?', 1)[1]))
    assert query['$filter'] == ("internetMessageId eq '<campaign''1@evil.example>' and subject eq 'It''s urgent' and "
                                "receivedDateTime ge 2024-05-01T00:00:00Z and receivedDateTime lt 2024-05-01T22:00:00Z")
    assert query['$select'] == mgm.CAMPAIGN_MESSAGE_FIELDS
    assert ' ' not in url and "'" not in url, 'the query is percent-encoded'


def test_each_message_id_is_its_own_filter(client, requests_mock):
    fake = tenant_of(requests_mock, {'a@contoso.com': []})
    search(client, mailboxes='a@contoso.com', internet_message_id='<1@x.example>,<2@x.example>')
    filters = [dict(urllib.parse.parse_qsl(s['url'].split('?', 1)[1]))['$filter'] for s in fake.searches()]
    assert filters == ["internetMessageId eq '<1@x.example>'", "internetMessageId eq '<2@x.example>'"]


def test_group_members_are_searched(client, requests_mock):
    group = '0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0'
    fake = tenant_of(requests_mock, campaign_users(), groups={group: ['a@contoso.com', 'b@contoso.com']})
    _, result = search(client, group_id=group, internet_message_id=MID)
    assert result['MailboxesTotal'] == 2 and result['ItemsFound'] == 3
    assert fake.sub_requests[0]['url'].startswith(f'/groups/{group}/transitiveMembers/microsoft.graph.user?')


@pytest.mark.parametrize('scope, permission', [({'all_mailboxes': 'true'}, 'User.Read.All'),
                                               ({'group_id': '0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0'},
                                                'GroupMember.Read.All')])
def test_a_denied_directory_names_the_missing_permission(scope, permission, client, requests_mock):
    fake = tenant_of(requests_mock, campaign_users())
    fake.directory_status = 403
    with pytest.raises(mgm.MailError, match=re.escape(permission)):
        search(client, internet_message_id=MID, **scope)


def test_an_unknown_group_is_a_clear_error(client, requests_mock):
    tenant_of(requests_mock, campaign_users())
    with pytest.raises(mgm.MailError, match='was not found'):
        search(client, group_id='0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0', internet_message_id=MID)


def test_a_listed_mailbox_that_does_not_exist_fails_alone(client, requests_mock):
    tenant_of(requests_mock, campaign_users())
    _, result = search(client, mailboxes='nobody@contoso.com,a@contoso.com', internet_message_id=MID)
    assert result['MailboxesSearched'] == 1 and result['ItemsFound'] == 2
    assert result['MailboxesFailed'] == [{'Mailbox': 'nobody@contoso.com', 'Error': 'HTTP 404 ErrorInvalidUser: no such user.'}]


def test_a_throttled_search_is_retried_after_its_retry_after(client, requests_mock, sleeps):
    fake = tenant_of(requests_mock, campaign_users())
    fake.script[r'^/users/id-b@contoso.com/messages\?'] = [429]
    _, result = search(client, all_mailboxes='true', internet_message_id=MID)
    assert result['ItemsFound'] == 3 and result['MailboxesFailedCount'] == 1
    assert sleeps.waits == [3.0]


def test_a_mailbox_throttled_past_the_budget_is_reported_not_fatal(make_client, requests_mock, sleeps):
    client = make_client(max_attempts=2)
    fake = tenant_of(requests_mock, campaign_users())
    fake.script[r'^/users/a@contoso.com/messages\?'] = [429, 429]
    _, result = search(client, mailboxes='a@contoso.com,b@contoso.com', internet_message_id=MID)
    assert result['ItemsFound'] == 1
    assert result['MailboxesFailed'][0]['Mailbox'] == 'a@contoso.com'
    assert 'throttled' in result['MailboxesFailed'][0]['Error']


def test_a_long_search_goes_on_through_polling_and_searches_each_mailbox_once(client, requests_mock):
    fake = tenant_of(requests_mock, campaign_users())
    entries, result = search(client, all_mailboxes='true', internet_message_id=MID, mailboxes_per_run='2')
    assert result['Status'] == 'InProgress' and result['MailboxesTotal'] is None
    polling = entries[0]
    assert polling['PollingCommand'] == 'msgraph-mail-search-mailboxes'
    assert polling['NextRun'] == '10' and polling['Timeout']
    assert polling['PollingArgs']['search_id'] == result['ID']
    runs = 1
    while 'PollingCommand' in entries[0]:
        entries, result = search(client, **entries[0]['PollingArgs'])
        runs += 1
    assert runs == 3
    assert result['Status'] == 'Completed' and result['MailboxesTotal'] == 5 and result['ItemsFound'] == 3
    searched = [s['url'].split('/')[2] for s in fake.searches()]
    assert sorted(searched) == sorted(set(searched)), 'a mailbox was searched twice'
    stored = demisto.getIntegrationContext()['campaign']['jobs'][result['ID']]
    assert len(json.dumps(stored)) < 4000


def test_a_long_item_list_comes_as_a_csv_file(client, requests_mock, empty_context):
    fake = FakeTenant({})
    users = {'a@contoso.com': [fake.message('a@contoso.com', n, subject='=HYPERLINK("x")') for n in range(60)]}
    tenant_of(requests_mock, users, page_size=100)
    entries, result = search(client, mailboxes='a@contoso.com', internet_message_id=MID)
    assert result['ItemsFound'] == 60
    files = [e for e in entries if e.get('Type') == mgm.ENTRY_FILE]
    assert files and files[0]['File'].endswith('.csv')
    text = (empty_context / f"1_{files[0]['FileID']}").read_text()
    assert len(text.splitlines()) == 61
    assert '\'=HYPERLINK' in text, 'a formula from the attacker is defused'


# ================================================================================ SEARCH ARGUMENTS
@pytest.mark.parametrize('args, message', [
    ({'internet_message_id': MID}, 'exactly one scope'),
    ({'mailboxes': 'a@contoso.com', 'all_mailboxes': 'true', 'internet_message_id': MID}, 'exactly one scope'),
    ({'mailboxes': 'a@contoso.com'}, 'at least one match'),
    ({'mailboxes': 'a@contoso.com/../x', 'internet_message_id': MID}, "'mailboxes'"),
    ({'mailboxes': 'a@contoso.com?$top=1', 'internet_message_id': MID}, "'mailboxes'"),
    ({'group_id': "x' or 1 eq 1", 'internet_message_id': MID}, "'group_id'"),
    ({'all_mailboxes': 'maybe', 'internet_message_id': MID}, "'all_mailboxes'"),
    ({'all_mailboxes': 'true', 'internet_message_id': 'not a message id'}, "'internet_message_id'"),
    ({'all_mailboxes': 'true', 'sender': 'x@y.com, z@w.com'}, "'sender'"),
    ({'all_mailboxes': 'true', 'sender': 'x@y.com', 'received_after': 'yesterday-ish'}, "'received_after'"),
    ({'all_mailboxes': 'true', 'sender': 'x@y.com', 'received_after': '1 day', 'received_before': '3 days'},
     'must be earlier'),
    ({'search_id': 'search-unknown'}, "'search_id'"),
])
def test_bad_search_input_is_a_clear_error_and_sends_nothing(args, message, client, requests_mock):
    route = requests_mock.post(f'{GRAPH}/$batch', json={'responses': []})
    with pytest.raises(mgm.MailError, match=re.compile(re.escape(message), re.I)):
        mgm.search_mailboxes_command(client, args)
    assert route.call_count == 0


def test_a_relative_time_is_turned_into_a_filter(client, requests_mock):
    fake = tenant_of(requests_mock, {'a@contoso.com': []})
    search(client, mailboxes='a@contoso.com', sender='bad@evil.example', received_after='3 days')
    query = dict(urllib.parse.parse_qsl(fake.searches()[0]['url'].split('?', 1)[1]))
    assert re.fullmatch(r"from/emailAddress/address eq 'bad@evil.example' and receivedDateTime ge "
                        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", query['$filter'])


# ================================================================================ REMEDIATION
def completed_search(client, requests_mock) -> tuple[FakeTenant, dict]:
    fake = tenant_of(requests_mock, campaign_users())
    _, result = search(client, all_mailboxes='true', internet_message_id=MID)
    fake.sub_requests.clear()
    return fake, result


def remediate(client, **args) -> tuple[list, dict]:
    entries = mgm.remediate_emails_command(client, args)
    return entries, context_of(entries, 'MSGraphMail.Remediation')


def test_a_dry_run_is_the_default_and_changes_nothing(client, requests_mock):
    fake, found = completed_search(client, requests_mock)
    entries, result = remediate(client, search_id=found['ID'], action='move_to_deleted_items')
    assert result['DryRun'] is True and result['ItemsSucceeded'] == 3
    assert {i['Result'] for i in result['Items']} == {'WouldDo'}
    assert fake.sub_requests == []
    assert 'nothing was changed' in entries[0]['HumanReadable']


def test_a_move_acts_on_exactly_the_items_found_and_leaves_an_audit_file(client, requests_mock, empty_context):
    fake, found = completed_search(client, requests_mock)
    entries, result = remediate(client, search_id=found['ID'], action='move_to_junk', dry_run='false')
    assert result['Status'] == 'Completed' and result['ItemsSucceeded'] == 3 and result['ItemsFailed'] == 0
    moved = {urllib.parse.unquote(s['url'].split('/')[4]) for s in fake.sub_requests}
    assert moved == {i['MessageID'] for i in found['Items']}
    assert all(s['body'] == {'destinationId': 'junkemail'} for s in fake.sub_requests)
    audit = next(e for e in entries if e.get('Type') == mgm.ENTRY_FILE)
    lines = [json.loads(line) for line in (empty_context / f"1_{audit['FileID']}").read_text().splitlines()]
    assert len(lines) == 3
    assert set(lines[0]) >= {'time', 'mailbox', 'message_id', 'internet_message_id', 'action', 'result',
                             'from_folder', 'to_folder'}
    assert {line['to_folder'] for line in lines} == {'junkemail'}


def test_items_already_gone_or_failing_are_reported_per_item(client, requests_mock):
    fake, found = completed_search(client, requests_mock)
    fake.users['b@contoso.com'].clear()
    fake.script[r'/messages/msg-a@contoso.com-1$'] = [403]
    entries, result = remediate(client, search_id=found['ID'], action='soft_delete', dry_run='false')
    results = {i['MessageID']: i for i in result['Items']}
    assert results['msg-b@contoso.com-1']['Result'] == 'Gone'
    assert results['msg-a@contoso.com-1']['Result'] == 'Failed' and 'Mail.ReadWrite' in results['msg-a@contoso.com-1']['Error']
    assert results['msg-a@contoso.com-2']['Result'] == 'Done'
    assert entries[-1]['Type'] == mgm.ENTRY_ERROR and '1 of 3' in entries[-1]['Contents']
    assert 'cannot be undone' in entries[0]['HumanReadable']
    assert {s['method'] for s in fake.sub_requests} == {'DELETE'}


def test_hard_delete_uses_permanent_delete(client, requests_mock):
    fake, found = completed_search(client, requests_mock)
    _, result = remediate(client, search_id=found['ID'], action='hard_delete', dry_run='false')
    assert result['ItemsSucceeded'] == 3
    assert all(s['method'] == 'POST' and s['url'].endswith('/permanentDelete') for s in fake.sub_requests)


def test_hard_delete_outside_worldwide_is_refused(make_client, requests_mock):
    worldwide = make_client()
    _, found = completed_search(worldwide, requests_mock)
    us_gov = make_client(server_url='https://graph.microsoft.us')
    route = requests_mock.post('https://graph.microsoft.us/v1.0/$batch', json={'responses': []})
    with pytest.raises(mgm.MailError, match='(?i)permanentDelete|hard delete'):
        remediate(us_gov, search_id=found['ID'], action='hard_delete', dry_run='false')
    assert route.call_count == 0


@pytest.mark.parametrize('args, message', [
    ({'action': 'move_to_junk'}, "'search_id'"),
    ({'search_id': 'search-nope', 'action': 'move_to_junk'}, "'search_id'"),
    ({'search_id': 'FOUND', 'action': 'shred'}, "'action'"),
    ({'search_id': 'FOUND', 'action': 'move_to_folder'}, "'folder'"),
    ({'search_id': 'FOUND', 'action': 'move_to_folder', 'folder': ' / \\ '}, "Argument 'folder'"),
    ({'search_id': 'FOUND', 'action': 'move_to_junk', 'folder': 'Inbox'}, "'folder'"),
    ({'search_id': 'FOUND', 'action': 'move_to_junk', 'max_items': '2'}, 'max_items'),
    ({'search_id': 'FOUND', 'action': 'move_to_junk', 'max_items': 'lots'}, "'max_items'"),
    ({'search_id': 'FOUND', 'action': 'move_to_junk', 'dry_run': 'perhaps'}, "'dry_run'"),
])
def test_bad_remediation_input_is_refused_before_any_change(args, message, client, requests_mock):
    fake, found = completed_search(client, requests_mock)
    args = {'dry_run': 'false', **args}
    if args.get('search_id') == 'FOUND':
        args['search_id'] = found['ID']
    with pytest.raises(mgm.MailError, match=re.escape(message)):
        remediate(client, **args)
    assert fake.sub_requests == []


def test_an_incomplete_search_cannot_be_remediated(client, requests_mock):
    tenant_of(requests_mock, campaign_users())
    _, result = search(client, all_mailboxes='true', internet_message_id=MID, mailboxes_per_run='1')
    with pytest.raises(mgm.MailError, match='not complete'):
        remediate(client, search_id=result['ID'], action='move_to_junk', dry_run='false')


def test_a_search_with_no_items_has_nothing_to_remediate(client, requests_mock):
    tenant_of(requests_mock, {'c@contoso.com': []})
    _, result = search(client, mailboxes='c@contoso.com', internet_message_id=MID)
    with pytest.raises(mgm.MailError, match='nothing to remediate'):
        remediate(client, search_id=result['ID'], action='move_to_junk', dry_run='false')


def test_a_batch_envelope_error_is_raised(client, requests_mock):
    requests_mock.post(f'{GRAPH}/$batch', status_code=400, json={'error': {'code': 'BadRequest', 'message': 'bad'}})
    with pytest.raises(mgm.GraphError):
        search(client, mailboxes='a@contoso.com', internet_message_id=MID)


# ================================================================================ UNDO
def test_undo_moves_every_item_back_to_its_folder(client, requests_mock):
    fake, found = completed_search(client, requests_mock)
    _, moved = remediate(client, search_id=found['ID'], action='move_to_deleted_items', dry_run='false')
    fake.sub_requests.clear()
    entries = mgm.undo_remediation_command(client, {'remediation_id': moved['ID']})
    undone = context_of(entries, 'MSGraphMail.Remediation')
    assert undone['UndoOf'] == moved['ID'] and undone['ItemsSucceeded'] == 3
    back = {urllib.parse.unquote(s['url'].split('/')[4]): s['body']['destinationId'] for s in fake.sub_requests}
    assert back == {i['MessageID']: i['FolderID'] for i in found['Items']}
    assert {i['FromFolderID'] for i in undone['Items']} == {'deleteditems'}


def quarantine_in(fake: FakeTenant, *upns: str, name: str = 'Quarantine') -> dict[str, str]:
    """Gives each mailbox an Inbox/<name>/Phish folder; returns the id of Phish per mailbox."""
    ids = {}
    for upn in upns:
        fake.folders[upn] = {'inbox': [{'id': f'q-{upn}', 'displayName': name}],
                             f'q-{upn}': [{'id': f'phish-{upn}', 'displayName': 'Phish'}]}
        ids[upn] = f'phish-{upn}'
    return ids


def moves(fake: FakeTenant) -> dict[str, str]:
    return {urllib.parse.unquote(s['url'].split('/')[4]): s['body']['destinationId'] for s in fake.sub_requests
            if s['url'].endswith('/move')}


def test_move_to_folder_walks_the_path_in_each_mailbox_in_batches_and_moves_there(client, requests_mock):
    fake, found = completed_search(client, requests_mock)
    phish = quarantine_in(fake, 'a@contoso.com', 'b@contoso.com')
    _, result = remediate(client, search_id=found['ID'], action='move_to_folder', folder='inbox/quarantine/PHISH',
                          dry_run='false')
    assert result['ItemsSucceeded'] == 3 and result['ItemsFailed'] == 0, (result['Items'], fake.sub_requests)
    assert moves(fake) == {i['MessageID']: phish[i['Mailbox']] for i in found['Items']}
    lookups = [s for s in fake.sub_requests if s['method'] == 'GET']
    assert len(lookups) == 4, 'two steps down the path in each of the two mailboxes'
    assert all(h.method == 'POST' and h.path == '/v1.0/$batch' for h in requests_mock.request_history), \
        'the lookups go in the engine\'s batches, not one direct request each'
    assert {i['ToFolderID'] for i in result['Items']} == set(phish.values())


def test_a_dry_run_of_move_to_folder_reports_the_mailboxes_without_the_folder_and_moves_nothing(client,
                                                                                                 requests_mock):
    fake, found = completed_search(client, requests_mock)
    phish = quarantine_in(fake, 'a@contoso.com')
    entries, result = remediate(client, search_id=found['ID'], action='move_to_folder', folder='Inbox/Quarantine/Phish')
    assert result['DryRun'] is True and moves(fake) == {}
    by_mailbox = {(i['Mailbox'], i['Result'], i['ToFolderID']) for i in result['Items']}
    assert by_mailbox == {('a@contoso.com', 'WouldDo', phish['a@contoso.com']), ('b@contoso.com', 'Failed', '')}
    failed = next(i for i in result['Items'] if i['Result'] == 'Failed')
    assert failed['Error'] == ("Folder path 'Inbox/Quarantine/Phish' was not found in mailbox b@contoso.com: no "
                               "folder named 'Quarantine' under Inbox.")
    assert entries[-1]['Type'] == mgm.ENTRY_ERROR and 'b@contoso.com' in entries[-1]['Contents']


def test_move_to_folder_moves_where_the_folder_exists_and_fails_alone_where_it_does_not(client, requests_mock):
    fake, found = completed_search(client, requests_mock)
    quarantine_in(fake, 'b@contoso.com')
    _, result = remediate(client, search_id=found['ID'], action='move_to_folder', folder='Inbox/Quarantine/Phish',
                          dry_run='false')
    assert {i['Mailbox']: i['Result'] for i in result['Items']} == {'a@contoso.com': 'Failed',
                                                                    'b@contoso.com': 'Done'}
    assert set(moves(fake)) == {'msg-b@contoso.com-1'}


def test_a_folder_lookup_graph_refuses_fails_that_mailbox_and_a_throttled_one_is_retried(client, requests_mock,
                                                                                         sleeps):
    fake, found = completed_search(client, requests_mock)
    quarantine_in(fake, 'a@contoso.com', 'b@contoso.com')
    fake.script[r'/users/id-a@contoso.com/mailFolders/inbox/childFolders'] = [403]
    fake.script[r'/users/id-b@contoso.com/mailFolders/inbox/childFolders'] = [429]
    _, result = remediate(client, search_id=found['ID'], action='move_to_folder', folder='Inbox/Quarantine/Phish',
                          dry_run='false')
    results = {i['Mailbox']: i for i in result['Items']}
    assert results['a@contoso.com']['Result'] == 'Failed' and 'Mail.ReadWrite' in results['a@contoso.com']['Error']
    assert results['b@contoso.com']['Result'] == 'Done'
    assert set(moves(fake)) == {'msg-b@contoso.com-1'} and sleeps.waits


def test_a_folder_name_with_a_quote_is_quoted_in_the_lookup(client, requests_mock):
    fake, found = completed_search(client, requests_mock)
    quarantine_in(fake, 'a@contoso.com', 'b@contoso.com', name="O'Brien ) or true")
    _, result = remediate(client, search_id=found['ID'], action='move_to_folder',
                          folder="Inbox/O'Brien ) or true/Phish", dry_run='false')
    assert result['ItemsSucceeded'] == 3
    first = next(s for s in fake.sub_requests if s['method'] == 'GET')
    assert "displayName eq 'O''Brien ) or true'" in urllib.parse.unquote(first['url'])


def test_a_folder_id_graph_returns_that_cannot_be_a_path_segment_fails_the_mailbox(client, requests_mock):
    fake, found = completed_search(client, requests_mock)
    quarantine_in(fake, 'a@contoso.com', 'b@contoso.com')
    fake.folders['a@contoso.com']['inbox'][0]['id'] = '..'
    _, result = remediate(client, search_id=found['ID'], action='move_to_folder', folder='Inbox/Quarantine/Phish',
                          dry_run='false')
    assert {i['Mailbox']: i['Result'] for i in result['Items']} == {'a@contoso.com': 'Failed',
                                                                    'b@contoso.com': 'Done'}
    assert not any('/..' in s['url'] for s in fake.sub_requests), 'no request addressed the mailbox itself'


def test_undo_of_a_move_to_a_folder_path_moves_back_without_looking_the_path_up_again(client, requests_mock):
    fake, found = completed_search(client, requests_mock)
    quarantine_in(fake, 'a@contoso.com', 'b@contoso.com')
    _, moved = remediate(client, search_id=found['ID'], action='move_to_folder', folder='Inbox/Quarantine/Phish',
                         dry_run='false')
    fake.sub_requests.clear()
    undone = context_of(mgm.undo_remediation_command(client, {'remediation_id': moved['ID']}),
                        'MSGraphMail.Remediation')
    assert undone['ItemsSucceeded'] == 3
    assert moves(fake) == {i['MessageID']: i['FolderID'] for i in found['Items']}
    assert all(s['url'].endswith('/move') for s in fake.sub_requests)


@pytest.mark.parametrize('action', ['soft_delete', 'hard_delete'])
def test_a_delete_cannot_be_undone_and_says_so(action, client, requests_mock):
    fake, found = completed_search(client, requests_mock)
    _, done = remediate(client, search_id=found['ID'], action=action, dry_run='false')
    fake.sub_requests.clear()
    with pytest.raises(mgm.MailError, match='cannot be put back'):
        mgm.undo_remediation_command(client, {'remediation_id': done['ID']})
    assert fake.sub_requests == []


def test_a_dry_run_has_nothing_to_undo(client, requests_mock):
    _, found = completed_search(client, requests_mock)
    _, dry = remediate(client, search_id=found['ID'], action='move_to_junk')
    with pytest.raises(mgm.MailError, match='dry run'):
        mgm.undo_remediation_command(client, {'remediation_id': dry['ID']})


def test_undo_of_an_unknown_remediation_is_refused(client, requests_mock):
    with pytest.raises(mgm.MailError, match="'remediation_id'"):
        mgm.undo_remediation_command(client, {'remediation_id': 'remediation-x'})


# ================================================================================ INTERRUPTED RUNS (review)
def interrupt_batch_call(requests_mock, fake: FakeTenant, failing_call: int) -> None:
    """The `failing_call`-th $batch call fails as a whole (an envelope 400); the others reach the fake tenant."""
    calls = [0]

    def answer(request, context):
        calls[0] += 1
        if calls[0] == failing_call:
            context.status_code = 400
            return {'error': {'code': 'BadRequest', 'message': 'envelope refused'}}
        return fake(request, context)
    requests_mock.post(f'{GRAPH}/$batch', json=answer)


def many_mailbox_search(client, requests_mock, count: int) -> tuple[FakeTenant, dict]:
    fake = FakeTenant({})
    users = {f'u{n}@contoso.com': [fake.message(f'u{n}@contoso.com', 1)] for n in range(count)}
    fake = tenant_of(requests_mock, users, page_size=50)
    _, found = search(client, mailboxes=','.join(users), internet_message_id=MID)
    assert found['Status'] == 'Completed' and found['ItemsFound'] == count
    fake.sub_requests.clear()
    return fake, found


def test_a_remediation_interrupted_mid_run_keeps_the_record_of_what_it_did(client, requests_mock):
    fake, found = many_mailbox_search(client, requests_mock, 25)
    interrupt_batch_call(requests_mock, fake, failing_call=2)   # 20 moves done, then the run breaks
    with pytest.raises(mgm.MailError, match='remediation_id=remediation-') as error:
        remediate(client, search_id=found['ID'], action='move_to_junk', dry_run='false')
    moved_first = len(fake.sub_requests)
    assert 0 < moved_first < 25
    remediation_id = re.search(r'remediation_id=(remediation-[\w-]+)', str(error.value)).group(1)
    stored = demisto.getIntegrationContext()['campaign']['jobs'][remediation_id]
    recorded = mgm.unpack_rows(stored['results'])
    assert stored['status'] == 'InProgress' and len(recorded) == moved_first, 'a move Graph made went unrecorded'
    assert {row[1] for row in recorded} == {'Done'}
    first = {s['url'] for s in fake.sub_requests}
    fake.sub_requests.clear()
    requests_mock.post(f'{GRAPH}/$batch', json=fake)
    _, result = remediate(client, remediation_id=remediation_id, search_id=found['ID'], action='move_to_junk')
    assert result['Status'] == 'Completed' and result['ItemsSucceeded'] == 25 and result['ItemsTotal'] == 25
    assert len(fake.sub_requests) == 25 - moved_first, 'an item was moved twice or not at all'
    assert not first & {s['url'] for s in fake.sub_requests}, 'an item was moved twice'
    assert {i['Result'] for i in result['Items']} == {'Done'}
    assert sorted(i['MessageID'] for i in result['Items']) == sorted(i['MessageID'] for i in found['Items'])


def test_each_audit_line_is_timed_when_its_item_was_acted_on_not_when_the_file_was_written(client, requests_mock,
                                                                                             monkeypatch, empty_context):
    from datetime import datetime, timezone
    fake, found = many_mailbox_search(client, requests_mock, 25)
    clock = [datetime(2026, 1, 1, 9, 0, tzinfo=timezone.utc)]
    monkeypatch.setattr(mgm, 'utc_now', lambda: clock[0])
    interrupt_batch_call(requests_mock, fake, failing_call=2)   # the first run acts on some items, then breaks
    with pytest.raises(mgm.MailError) as error:
        remediate(client, search_id=found['ID'], action='move_to_junk', dry_run='false')
    first_run = len(fake.sub_requests)
    remediation_id = re.search(r'remediation_id=(remediation-[\w-]+)', str(error.value)).group(1)
    clock[0] = datetime(2026, 1, 1, 9, 7, tzinfo=timezone.utc)
    requests_mock.post(f'{GRAPH}/$batch', json=fake)
    entries, _ = remediate(client, remediation_id=remediation_id)
    audit = next(e for e in entries if e.get('Type') == mgm.ENTRY_FILE)
    times = [json.loads(line)['time'] for line in (empty_context / f"1_{audit['FileID']}").read_text().splitlines()]
    assert times == ['2026-01-01T09:00:00Z'] * first_run + ['2026-01-01T09:07:00Z'] * (25 - first_run)


def test_an_undo_interrupted_mid_run_keeps_the_record_of_what_it_did(client, requests_mock):
    fake, found = many_mailbox_search(client, requests_mock, 25)
    _, moved = remediate(client, search_id=found['ID'], action='move_to_deleted_items', dry_run='false')
    fake.sub_requests.clear()
    interrupt_batch_call(requests_mock, fake, failing_call=2)
    with pytest.raises(mgm.MailError, match='undo_id=undo-') as error:
        mgm.undo_remediation_command(client, {'remediation_id': moved['ID']})
    undo_id = re.search(r'undo_id=(undo-[\w-]+)', str(error.value)).group(1)
    undone_first = len(fake.sub_requests)
    assert 0 < undone_first < 25
    fake.sub_requests.clear()
    requests_mock.post(f'{GRAPH}/$batch', json=fake)
    entries = mgm.undo_remediation_command(client, {'remediation_id': moved['ID'], 'undo_id': undo_id})
    undone = context_of(entries, 'MSGraphMail.Remediation')
    assert undone['Status'] == 'Completed' and undone['ItemsSucceeded'] == 25
    assert len(fake.sub_requests) == 25 - undone_first
    assert {i['Result'] for i in undone['Items']} == {'Done'}
    assert all(m['parentFolderId'] == INBOX for u in fake.users.values() for m in u)


# ================================================================================ hostile scope input (review)
@pytest.mark.parametrize('mailboxes', ['..', 'a@contoso.com,.', '%2e%2e'])
def test_a_dot_segment_mailbox_is_refused_before_any_request(mailboxes, client, requests_mock):
    route = requests_mock.post(f'{GRAPH}/$batch', json={'responses': []})
    with pytest.raises(mgm.MailError, match="'mailboxes'"):
        mgm.search_mailboxes_command(client, {'mailboxes': mailboxes, 'internet_message_id': MID})
    assert route.call_count == 0


def test_a_mailbox_named_twice_in_another_case_is_searched_once(client, requests_mock):
    fake = tenant_of(requests_mock, campaign_users())
    _, result = search(client, mailboxes='a@contoso.com,A@Contoso.COM', internet_message_id=MID)
    assert result['MailboxesTotal'] == 1 and result['MailboxesSearched'] == 1 and result['ItemsFound'] == 2
    assert len(fake.searches()) == 1


def test_a_folder_name_that_cannot_be_read_does_not_fail_a_searched_mailbox(client, requests_mock, sleeps):
    fake = tenant_of(requests_mock, campaign_users())
    fake.script[r'/mailFolders/'] = [429] * 50
    _, result = search(client, mailboxes='a@contoso.com,b@contoso.com', internet_message_id=MID)
    assert result['MailboxesSearched'] == 2 and result['MailboxesFailedCount'] == 0 and result['ItemsFound'] == 3
    assert {i['FolderName'] for i in result['Items']} == {''}
    assert {i['FolderID'] for i in result['Items']} == {INBOX, JUNK, DELETED}


@pytest.mark.parametrize('value', ['99999999999 days', '0001-01-01T00:00:00+05:00', '9999-12-31T23:59:59-05:00',
                                   '0999-01-01T00:00:00Z', '5000 years'])
def test_a_time_out_of_range_is_a_clear_error_naming_the_argument(value, client, requests_mock):
    route = requests_mock.post(f'{GRAPH}/$batch', json={'responses': []})
    with pytest.raises(mgm.MailError, match="'received_before'"):
        mgm.search_mailboxes_command(client, {'all_mailboxes': 'true', 'sender': 'x@y.com', 'received_before': value})
    assert route.call_count == 0


# ================================================================================ job retention (review)
def test_the_search_of_a_kept_remediation_is_kept_so_it_can_still_be_undone(client, requests_mock, monkeypatch):
    monkeypatch.setattr(mgm, 'CAMPAIGN_JOBS_KEPT', 3)
    fake, found = completed_search(client, requests_mock)
    for _ in range(2):  # other searches (other incidents) come in between
        search(client, mailboxes='c@contoso.com', internet_message_id=MID)
    _, moved = remediate(client, search_id=found['ID'], action='move_to_deleted_items', dry_run='false')
    jobs = demisto.getIntegrationContext()['campaign']['jobs']
    assert moved['ID'] in jobs and found['ID'] in jobs, 'a kept remediation lost its search'
    fake.sub_requests.clear()
    entries = mgm.undo_remediation_command(client, {'remediation_id': moved['ID']})
    assert context_of(entries, 'MSGraphMail.Remediation')['ItemsSucceeded'] == 3
    for _ in range(5):
        search(client, mailboxes='c@contoso.com', internet_message_id=MID)
    jobs = demisto.getIntegrationContext()['campaign']['jobs']
    assert len(jobs) == 3 and found['ID'] not in jobs, 'jobs stay bounded once nothing kept needs them'


def test_an_undo_whose_search_is_gone_is_a_clear_error(client, requests_mock):
    fake, found = completed_search(client, requests_mock)
    _, moved = remediate(client, search_id=found['ID'], action='move_to_deleted_items', dry_run='false')
    context = demisto.getIntegrationContext()
    del context['campaign']['jobs'][found['ID']]
    demisto.setIntegrationContext(context)
    fake.sub_requests.clear()
    with pytest.raises(mgm.MailError, match=f"{found['ID']}.*no longer stored"):
        mgm.undo_remediation_command(client, {'remediation_id': moved['ID']})
    assert fake.sub_requests == []


# ================================================================================ hostile ids in Graph's answers (review)
@pytest.mark.parametrize('bad', [{'id': '..'}, {'id': '.'}, {'parentFolderId': '..'}, {'id': 'a\\b'}])
def test_a_copy_whose_ids_cannot_be_one_path_segment_is_left_out_and_never_acted_on(bad, client, requests_mock):
    fake = FakeTenant({})
    good = fake.message('a@contoso.com', 1)
    hostile = {**fake.message('a@contoso.com', 2), **bad}
    fake = tenant_of(requests_mock, {'a@contoso.com': [good, hostile]})
    _, found = search(client, mailboxes='a@contoso.com', internet_message_id=MID)
    assert [i['MessageID'] for i in found['Items']] == [good['id']]
    assert found['MailboxesSearched'] == 1
    fake.sub_requests.clear()
    _, result = remediate(client, search_id=found['ID'], action='soft_delete', dry_run='false')
    assert result['ItemsSucceeded'] == 1
    assert all('/..' not in s['url'] and not s['url'].endswith('/.') for s in fake.sub_requests)


def test_a_directory_user_whose_id_cannot_be_one_path_segment_is_not_searched(client, requests_mock, monkeypatch):
    fake = tenant_of(requests_mock, {'a@contoso.com': [FakeTenant({}).message('a@contoso.com', 1)]})
    directory = fake.answer

    def with_hostile_users(sub):
        status, body = directory(sub)
        if sub['url'].startswith('/users?'):
            body['value'] += [{'id': '..', 'userPrincipalName': 'dots@contoso.com'},
                              {'id': 'x\\y', 'userPrincipalName': 'slash@contoso.com'}]
        return status, body
    monkeypatch.setattr(fake, 'answer', with_hostile_users)
    _, found = search(client, all_mailboxes='true', internet_message_id=MID)
    assert found['Status'] == 'Completed' and found['MailboxesSearched'] == 1 and found['ItemsFound'] == 1
    assert [s['url'] for s in fake.searches() if '/users/../' in s['url'] or '\\' in s['url']] == []


def test_a_copy_without_a_folder_id_is_found_without_a_folder_lookup(client, requests_mock):
    fake = FakeTenant({})
    copy = fake.message('a@contoso.com', 1)
    del copy['parentFolderId']
    fake = tenant_of(requests_mock, {'a@contoso.com': [copy, fake.message('a@contoso.com', 2)]})
    _, found = search(client, mailboxes='a@contoso.com', internet_message_id=MID)
    assert found['MailboxesSearched'] == 1 and found['MailboxesFailedCount'] == 0 and found['ItemsFound'] == 2
    assert sorted(i['FolderName'] for i in found['Items']) == ['', 'Inbox']
    assert all(not s['url'].split('?')[0].endswith('/mailFolders/') for s in fake.sub_requests)


def test_a_folder_lookup_whose_next_page_points_at_another_host_fails_that_mailbox_and_is_not_followed(
        client, requests_mock):
    fake, found = completed_search(client, requests_mock)
    quarantine_in(fake, 'b@contoso.com')
    answer = fake.answer

    def with_hostile_next_page(sub: dict) -> tuple[int, dict]:
        if sub['url'].startswith('/users/id-a@contoso.com/mailFolders/inbox/childFolders'):
            return 200, {'value': [], '@odata.nextLink': 'https://evil.example/v1.0/users/x/mailFolders?$skip=1'}
        return answer(sub)
    fake.answer = with_hostile_next_page
    stolen = requests_mock.get(re.compile('https://evil.example/'), json={'value': []})
    _, result = remediate(client, search_id=found['ID'], action='move_to_folder', folder='Inbox/Quarantine/Phish',
                          dry_run='false')
    results = {i['Mailbox']: i for i in result['Items']}
    assert results['a@contoso.com']['Result'] == 'Failed' and 'evil.example' in results['a@contoso.com']['Error']
    assert results['b@contoso.com']['Result'] == 'Done'
    assert not stolen.called and not any('evil' in s['url'] for s in fake.sub_requests)
