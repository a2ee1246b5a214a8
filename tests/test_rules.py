"""Unit tests for inbox rule writes, rule triage, mailbox settings and MailTips (Graph mocked with requests-mock).

Given a mailbox like this, running this command sends exactly this to Graph and shows this: success, Graph errors,
and bad or hostile input refused before any request.
"""
import json
import os
import urllib.parse
from typing import Any

import pytest
import yaml

import MicrosoftGraphMail as mgm
from conftest import GRAPH, load_json

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USER = 'soc@contoso.com'                 # the fetch mailbox of the `client` fixture
ANALYST = 'adele.vance@contoso.com'
BASE = f'{GRAPH}/users/{ANALYST}'
RULES_URL = f'{BASE}/mailFolders/inbox/messageRules'
RULE_ID = 'AQAAAJ5dZqB/+A=='
RULE_SEG = 'AQAAAJ5dZqB-%2BA=='
PHISHING_ID = 'AAMkAGVmMDEzMTM4LTZmYWUtNDdkNC1hMDZiLTU1OGY5OTZhYmY4OAAuAAAAAAAiQ8W967B7TKBjgx9rVEURAQAiIsqMbPhish='
CREATED = {'@odata.context': 'x', 'id': 'AQAAAJ5dZqC=', 'displayName': 'Phish reports', 'sequence': 2, 'isEnabled': True,
           'hasError': False, 'isReadOnly': False, 'conditions': {'subjectContains': ['[Phish]']},
           'actions': {'moveToFolder': PHISHING_ID, 'stopProcessingRules': True}}
SETTINGS = load_json('rules/mailbox_settings.json')
MAILTIPS = load_json('rules/mailtips.json')
RULE_KEY = 'MSGraphMail.Rule(val.id === obj.id)'
SETTINGS_KEY = 'MSGraphMail.MailboxSettings(val.userId === obj.userId)'
TIPS_KEY = 'MSGraphMail.MailTips(val.emailAddress.address === obj.emailAddress.address)'
CHINA = 'https://microsoftgraph.chinacloudapi.cn'

with open(os.path.join(ROOT_DIR, 'MicrosoftGraphMail.yml'), encoding='utf-8') as _handle:
    YML_COMMANDS = {c['name']: c for c in yaml.safe_load(_handle)['script']['commands']}


def graph_error(status: int, code: str, message: str = 'error') -> dict:
    return {'status_code': status, 'json': {'error': {'code': code, 'message': message}},
            'headers': {'request-id': f'req-{status}'}}


def yml_outputs(command: str) -> set:
    return {o['contextPath'] for o in YML_COMMANDS[command].get('outputs') or []}


def context_paths(prefix: str, value: Any) -> set:
    paths = {prefix}
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, dict):
            for key, sub in item.items():
                paths |= context_paths(f'{prefix}.{key}', sub)
    return paths


def qs(request) -> dict:
    return {k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(request.url).query).items()}


# =============================================================================================== create-rule
def test_create_rule_sends_only_the_given_fields_enabled_by_default(client, requests_mock):
    post = requests_mock.post(RULES_URL, status_code=201, json=CREATED)
    entry = mgm.create_rule_command(client, {
        'user_id': ANALYST, 'display_name': 'Phish reports', 'sequence': '2',
        'actions': json.dumps({'moveToFolder': PHISHING_ID, 'stopProcessingRules': True}),
        'conditions': '{"subjectContains": "[Phish]"}'})
    assert post.call_count == 1 and requests_mock.call_count == 1
    assert post.last_request.json() == {
        'displayName': 'Phish reports', 'sequence': 2, 'isEnabled': True,
        'actions': {'moveToFolder': PHISHING_ID, 'stopProcessingRules': True},
        'conditions': {'subjectContains': ['[Phish]']}}
    rule = entry['EntryContext'][RULE_KEY]
    assert rule['id'] == CREATED['id'] and '@odata.context' not in rule and '@odata.context' not in entry['Contents']
    assert yml_outputs('msgraph-mail-create-rule') - context_paths('MSGraphMail.Rule', rule) == {'MSGraphMail.Rule.exceptions'}
    assert 'created (enabled)' in entry['HumanReadable']


def test_create_rule_disabled_when_asked_and_sequence_defaults_to_1(client, requests_mock):
    post = requests_mock.post(f'{GRAPH}/users/{USER}/mailFolders/inbox/messageRules', status_code=201,
                              json={**CREATED, 'isEnabled': False})
    entry = mgm.create_rule_command(client, {'display_name': 'x', 'actions': '{"markAsRead": true}', 'is_enabled': 'false'})
    assert post.last_request.json() == {'displayName': 'x', 'sequence': 1, 'isEnabled': False,
                                        'actions': {'markAsRead': True}}
    assert 'created (disabled)' in entry['HumanReadable']


def test_create_rule_resolves_a_folder_path_and_plain_addresses(client, requests_mock):
    requests_mock.get(f'{BASE}/mailFolders/inbox/childFolders', json={'value': [{'id': PHISHING_ID, 'displayName': 'Phishing'}]})
    post = requests_mock.post(RULES_URL, status_code=201, json=CREATED)
    mgm.create_rule_command(client, {'user_id': ANALYST, 'display_name': 'x',
                                     'actions': '{"moveToFolder": "Inbox/Phishing", "forwardTo": ["soc@contoso.com"]}'})
    assert post.last_request.json()['actions'] == {
        'moveToFolder': PHISHING_ID, 'forwardTo': [{'emailAddress': {'address': 'soc@contoso.com'}}]}


def test_create_rule_looks_up_the_id_of_a_well_known_folder(client, requests_mock):
    requests_mock.get(f'{BASE}/mailFolders/junkemail', json={'id': 'AAMkJunkId='})
    post = requests_mock.post(RULES_URL, status_code=201, json=CREATED)
    mgm.create_rule_command(client, {'user_id': ANALYST, 'display_name': 'x', 'actions': '{"copyToFolder": "Junk Email"}'})
    assert post.last_request.json()['actions'] == {'copyToFolder': 'AAMkJunkId='}


@pytest.mark.parametrize('response, words', [
    (graph_error(403, 'ErrorAccessDenied', 'Access is denied.'), ['MailboxSettings.ReadWrite', ANALYST]),
    (graph_error(404, 'ErrorInvalidUser', "The requested user 'x' is invalid."), ['mailbox was not found', ANALYST]),
    (graph_error(400, 'ErrorInvalidRequest', 'The value of sequence is invalid.'), ['ErrorInvalidRequest', ANALYST]),
])
def test_create_rule_graph_errors_are_explained(client, requests_mock, response, words):
    requests_mock.post(RULES_URL, **response)
    with pytest.raises(mgm.MailError) as raised:
        mgm.create_rule_command(client, {'user_id': ANALYST, 'display_name': 'x', 'actions': '{"delete": true}'})
    for word in words:
        assert word in str(raised.value)


def test_create_rule_throttled_is_retried(client, requests_mock, sleeps):
    requests_mock.post(RULES_URL, [{'status_code': 429, 'headers': {'Retry-After': '4'},
                                    'json': {'error': {'code': 'ApplicationThrottled', 'message': 'x'}}},
                                   {'status_code': 201, 'json': CREATED}])
    mgm.create_rule_command(client, {'user_id': ANALYST, 'display_name': 'x', 'actions': '{"delete": true}'})
    assert sleeps.waits == [4.0] and requests_mock.call_count == 2


# =============================================================================================== update-rule
def test_update_rule_patches_only_the_given_fields(client, requests_mock):
    patch = requests_mock.patch(f'{RULES_URL}/{RULE_SEG}', json={**CREATED, 'id': RULE_ID, 'isEnabled': False, 'sequence': 9})
    entry = mgm.update_rule_command(client, {'user_id': ANALYST, 'rule_id': RULE_ID, 'is_enabled': 'false', 'sequence': '9',
                                             'is_read_only': 'true', 'exceptions': '{}'})
    assert patch.last_request.json() == {'sequence': 9, 'isEnabled': False, 'isReadOnly': True, 'exceptions': {}}
    assert entry['EntryContext'][RULE_KEY]['isEnabled'] is False
    assert set(yml_outputs('msgraph-mail-update-rule')) >= {'MSGraphMail.Rule.isReadOnly'}


def test_update_rule_missing_rule_is_named(client, requests_mock):
    requests_mock.patch(f'{RULES_URL}/{RULE_SEG}', **graph_error(404, 'ErrorItemNotFound', 'The specified object was not found.'))
    with pytest.raises(mgm.MailError) as raised:
        mgm.update_rule_command(client, {'user_id': ANALYST, 'rule_id': RULE_ID, 'is_enabled': 'false'})
    assert RULE_ID in str(raised.value) and ANALYST in str(raised.value) and 'not found' in str(raised.value)


def test_update_rule_403_names_the_permission(client, requests_mock):
    requests_mock.patch(f'{RULES_URL}/{RULE_SEG}', **graph_error(403, 'ErrorAccessDenied'))
    with pytest.raises(mgm.MailError, match='MailboxSettings.ReadWrite'):
        mgm.update_rule_command(client, {'user_id': ANALYST, 'rule_id': RULE_ID, 'display_name': 'y'})


@pytest.mark.parametrize('func', [mgm.create_rule_command, mgm.update_rule_command])
def test_rule_writes_are_refused_in_21vianet_before_any_request(func, make_client, requests_mock):
    client = make_client(server_url=CHINA)
    with pytest.raises(mgm.MailError, match='21Vianet'):
        func(client, {'user_id': ANALYST, 'rule_id': RULE_ID, 'display_name': 'x', 'actions': '{"delete": true}'})
    assert requests_mock.call_count == 0


DEEP_JSON = '{"forwardTo": ' + '[' * 100000 + ']' * 100000 + '}'
CREATE = {'user_id': ANALYST, 'display_name': 'x', 'actions': '{"delete": true}'}
BAD_RULE_INPUT = [
    # (command, arguments, words the error must contain)
    (mgm.create_rule_command, {**CREATE, 'actions': '{"delete": true'}, ["'actions'", 'not valid JSON']),
    (mgm.create_rule_command, {**CREATE, 'actions': '{"forward": ["a@b.example"]}'}, ["'actions'", "'forward'", 'forwardTo']),
    (mgm.create_rule_command, {**CREATE, 'actions': '{}'}, ["'actions'", 'at least one action']),
    (mgm.create_rule_command, {**CREATE, 'actions': '[{"delete": true}]'}, ["'actions'", 'JSON object']),
    (mgm.create_rule_command, {**CREATE, 'actions': '"delete"'}, ["'actions'", 'JSON object']),
    (mgm.create_rule_command, {**CREATE, 'actions': ''}, ["'actions'"]),
    (mgm.create_rule_command, {'user_id': ANALYST, 'display_name': 'x'}, ["'actions'"]),
    (mgm.create_rule_command, {**CREATE, 'display_name': '  '}, ["'display_name'"]),
    (mgm.create_rule_command, {**CREATE, 'actions': '{"delete": "yes"}'}, ["'actions'", "'delete'", 'true or false']),
    (mgm.create_rule_command, {**CREATE, 'actions': '{"forwardTo": ["not an address"]}'}, ["'actions'", "'forwardTo'"]),
    (mgm.create_rule_command, {**CREATE, 'actions': '{"forwardTo": [{"emailAddress": {"address": "a@b.example", '
                                                      '"x": 1}}]}'}, ["'forwardTo'"]),
    (mgm.create_rule_command, {**CREATE, 'actions': '{"forwardTo": []}'}, ["'forwardTo'"]),
    (mgm.create_rule_command, {**CREATE, 'actions': '{"markImportance": "urgent"}'}, ["'markImportance'", 'low, normal, high']),
    (mgm.create_rule_command, {**CREATE, 'actions': '{"moveToFolder": 5}'}, ["'moveToFolder'"]),
    (mgm.create_rule_command, {**CREATE, 'actions': '{"assignCategories": [1]}'}, ["'assignCategories'"]),
    (mgm.create_rule_command, {**CREATE, 'actions': '{"@odata.type": "x", "delete": true}'}, ["'@odata.type'"]),
    (mgm.create_rule_command, {**CREATE, 'actions': DEEP_JSON}, ["'actions'"]),
    (mgm.create_rule_command, {**CREATE, 'actions': '{"assignCategories": ["' + 'x' * 300000 + '"]}'}, ["'actions'", '256 KB']),
    (mgm.create_rule_command, {**CREATE, 'conditions': '{"subject": ["a"]}'}, ["'conditions'", "'subject'", 'subjectContains']),
    (mgm.create_rule_command, {**CREATE, 'exceptions': '{"hasAttachments": "no"}'}, ["'exceptions'", "'hasAttachments'"]),
    (mgm.create_rule_command, {**CREATE, 'conditions': '{"withinSizeRange": {"minimumSize": 10, "maximumSize": 5}}'},
     ["'withinSizeRange'"]),
    (mgm.create_rule_command, {**CREATE, 'conditions': '{"withinSizeRange": {"minimumSize": -1}}'}, ["'withinSizeRange'"]),
    (mgm.create_rule_command, {**CREATE, 'conditions': '{"sensitivity": "secret"}'}, ["'sensitivity'", 'confidential']),
    (mgm.create_rule_command, {**CREATE, 'conditions': 'not json'}, ["'conditions'", 'not valid JSON']),
    (mgm.create_rule_command, {**CREATE, 'sequence': '0'}, ["'sequence'", 'from 1']),
    (mgm.create_rule_command, {**CREATE, 'sequence': '-3'}, ["'sequence'"]),
    (mgm.create_rule_command, {**CREATE, 'sequence': '1.5'}, ["'sequence'", 'whole number']),
    (mgm.create_rule_command, {**CREATE, 'sequence': 'first'}, ["'sequence'", 'whole number']),
    (mgm.create_rule_command, {**CREATE, 'sequence': str(2 ** 31)}, ["'sequence'"]),
    (mgm.create_rule_command, {**CREATE, 'is_enabled': 'maybe'}, ["'is_enabled'"]),
    (mgm.create_rule_command, {**CREATE, 'user_id': 'a@contoso.com,b@contoso.com'}, ["'user_id'"]),
    (mgm.update_rule_command, {'user_id': ANALYST, 'rule_id': RULE_ID}, ['Nothing to update', 'is_enabled']),
    (mgm.update_rule_command, {'user_id': ANALYST, 'rule_id': RULE_ID, 'sequence': '0'}, ["'sequence'"]),
    (mgm.update_rule_command, {'user_id': ANALYST, 'rule_id': RULE_ID, 'sequence': '2.0'}, ["'sequence'"]),
    (mgm.update_rule_command, {'user_id': ANALYST, 'rule_id': RULE_ID, 'actions': '{}'}, ["'actions'"]),
    (mgm.update_rule_command, {'user_id': ANALYST, 'rule_id': RULE_ID, 'is_read_only': 'perhaps'}, ["'is_read_only'"]),
    (mgm.update_rule_command, {'user_id': ANALYST, 'display_name': 'x'}, ["'rule_id'"]),
]


@pytest.mark.parametrize('func, args, words', BAD_RULE_INPUT,
                         ids=[f'{f.__name__.split("_")[0]}-{i}' for i, (f, _, _) in enumerate(BAD_RULE_INPUT)])
def test_bad_rule_input_is_refused_before_any_request(func, args, words, client, requests_mock):
    with pytest.raises(mgm.MailError) as raised:
        func(client, args)
    message = str(raised.value)
    for word in words:
        assert word in message, f'{word!r} missing from {message[:300]!r}'
    assert len(message) < 2000, 'the error must not echo a huge argument back'
    assert requests_mock.call_count == 0


def test_unknown_folder_in_actions_fails_before_the_rule_is_written(client, requests_mock):
    requests_mock.get(f'{BASE}/mailFolders/inbox/childFolders', json={'value': []})
    post = requests_mock.post(RULES_URL, status_code=201, json=CREATED)
    with pytest.raises(mgm.MailError, match='Inbox/Quarantine'):
        mgm.create_rule_command(client, {'user_id': ANALYST, 'display_name': 'x', 'actions': '{"moveToFolder": "Inbox/Quarantine"}'})
    assert post.call_count == 0


# =============================================================================================== triage (pure)
TENANT = mgm.TriageContext(own_address='dana@contoso.com', tenant_domains=frozenset({'contoso.com', 'contoso.onmicrosoft.com'}),
                           folder_names={'F-RSS': 'RSS Feeds', 'F-INV': 'Invoices', 'F-NONE': ''})


def rule(actions: dict, conditions: Any = None, name: str = 'A rule') -> dict:
    return {'id': 'r', 'displayName': name, 'actions': actions,
            'conditions': {'senderContains': ['vendor']} if conditions is None else conditions}


def to(*addresses: str) -> list:
    return [{'emailAddress': {'address': a}} for a in addresses]


ASSESSMENTS = [
    # (rule, exact reasons)
    (rule({'moveToFolder': 'F-INV'}, {'bodyOrSubjectContains': ['Invoice']}), []),
    (rule({'moveToFolder': 'F-INV', 'delete': True}, {'bodyOrSubjectContains': ['Invoice']}),
     ['deletes mail', 'filters on money words (invoice)']),
    (rule({'moveToFolder': 'F-INV', 'forwardTo': to('x@evil.example')}, {'bodyOrSubjectContains': ['invoices']}),
     ['forwards outside the tenant to x@evil.example', 'filters on money words (invoices)']),
    (rule({'forwardTo': to('boss@contoso.com', 'Dana@CONTOSO.com', 'dana@contoso.com')}), []),
    (rule({'forwardTo': to('me@sub.contoso.com')}), ['forwards outside the tenant to me@sub.contoso.com']),
    (rule({'redirectTo': to('Dana@Contoso.onmicrosoft.com')}), []),
    (rule({'forwardAsAttachmentTo': to('a@evil.example', 'b@contoso.com.evil.example')}),
     ['forwards as attachment outside the tenant to a@evil.example, b@contoso.com.evil.example']),
    (rule({'moveToFolder': 'F-RSS', 'markAsRead': True}), ['moves mail to RSS Feeds and marks it read']),
    (rule({'copyToFolder': 'F-NONE'}), ['copies mail to a folder that is not a mail folder (F-NONE…)']),
    (rule({'markAsRead': True}), []),
    (rule({'delete': True, 'markAsRead': True}), ['deletes mail', 'marks mail read']),
    (rule({'permanentDelete': True, 'delete': True}), ['permanently deletes mail']),
    (rule({'delete': 'false', 'permanentDelete': 0, 'markAsRead': 'true', 'forwardTo': to('x@evil.example')}),
     ['forwards outside the tenant to x@evil.example']),     # flags that are not true/false are no action
    (rule({'assignCategories': ['x']}, {'subjectContains': ['Password reset required']}),
     ['filters on security words (password, reset)']),
    (rule({'assignCategories': ['x']}, {'headerContains': ['X-Phish-Report']}), ['filters on security words (phish)']),
    # words inside other words are not the sign: each/teach (ach), preset (reset), hackathon is 'hack' + more
    (rule({'delete': True}, {'subjectContains': ['teach each coach', 'preset', 'swiftly']}), ['deletes mail']),
    (rule({'assignCategories': ['x']}, {'subjectContains': ['Payroll', 'IBAN']}), []),
    (rule({'moveToFolder': 'F-INV'}, {}), ['applies to every message (no conditions)']),
    (rule({'forwardTo': to('boss@contoso.com')}, {'sentToMe': False, 'subjectContains': []}),
     ['applies to every message (no conditions)']),
    (rule({'markImportance': 'high'}, {}), []),
    (rule({'redirectTo': to('Dana@contoso.com')}, {}), []),     # to the mailbox itself: nothing leaves it
    (rule({'redirectTo': to('dana@contoso.com', 'boss@contoso.com')}, {}), ['applies to every message (no conditions)']),
    (rule({'markImportance': 'low'}, {'bodyContains': ['\u0000']}),
     ['matches every message (a condition contains a NUL character)']),
    (rule({'markImportance': 'low'}, {'withinSizeRange': {'minimumSize': 0, 'maximumSize': 999999}}),
     ['matches every message (size range starts below 1 KB)']),
    (rule({'markImportance': 'low'}, {'withinSizeRange': {'minimumSize': 0, 'maximumSize': 100}}), []),
    (rule({'markImportance': 'low'}, name=',,'), ["name is punctuation only (',,')"]),
    (rule({'markImportance': 'low'}, name='/'), ["name is punctuation only ('/')"]),
    (rule({'markImportance': 'low'}, name='\u200b \u200b'), ['name is empty or invisible']),
    (rule({'markImportance': 'low'}, name=None), ['name is empty or invisible']),
    (rule({'markImportance': 'low'}, name='AAAA'), ["name is one repeated character ('AAAA')"]),
    (rule({'markImportance': 'low'}, name='Rule 1'), []),
    ({'id': 'r', 'displayName': 'broken', 'actions': 'not a dict', 'conditions': ['x']}, []),  # malformed Graph JSON
]


@pytest.mark.parametrize('given, reasons', ASSESSMENTS, ids=[str(i) for i in range(len(ASSESSMENTS))])
def test_assess_rule(given, reasons):
    assessment = mgm.assess_rule(given, TENANT)
    assert assessment.reasons == reasons
    assert assessment.suspicious is bool(reasons)


def test_external_is_not_guessed_without_tenant_domains():
    context = mgm.TriageContext('dana@contoso.com', None, 'no permission', {})
    assessment = mgm.assess_rule(rule({'forwardTo': to('x@evil.example', 'colleague@contoso.com')}), context)
    assert assessment.reasons == [] and assessment.suspicious is False
    assert assessment.notes == ['forwards to x@evil.example: external could not be judged (no permission)']
    assert assessment.forwards_to == ['x@evil.example', 'colleague@contoso.com']


def test_a_folder_that_could_not_be_read_is_a_note_not_a_reason():
    assessment = mgm.assess_rule(rule({'moveToFolder': 'F-UNREAD'}), TENANT)
    assert assessment.reasons == [] and assessment.notes == ['moves mail to folder F-UNREAD… (name could not be read)']


# =============================================================================================== triage (commands)
FORWARDING_RULE = {'id': RULE_ID, 'displayName': 'Forward rule', 'sequence': 1, 'isEnabled': True, 'conditions': {},
                   'actions': {'forwardTo': to('x@evil.example'), 'moveToFolder': 'F1', 'copyToFolder': 'F2'}}


def test_list_rules_reads_domains_once_and_folders_in_one_batch(client, requests_mock):
    rules = [FORWARDING_RULE, {**FORWARDING_RULE, 'id': 'two', 'actions': {'moveToFolder': 'F1', 'copyToFolder': 'F3'}}]
    requests_mock.get(RULES_URL, json={'value': rules})
    domains = requests_mock.get(f'{GRAPH}/domains', [
        {'json': {'value': [{'id': 'contoso.com', 'isVerified': True}, {'id': 'unverified.example', 'isVerified': False}],
                  '@odata.nextLink': f'{GRAPH}/domains?$skiptoken=2'}},
        {'json': {'value': [{'id': 'Contoso.onmicrosoft.com', 'isVerified': True}]}}])
    batch = requests_mock.post(f'{GRAPH}/$batch', json={'responses': [
        {'id': '0', 'status': 200, 'body': {'displayName': 'Junk Email'}},
        {'id': '1', 'status': 404, 'body': {'error': {'code': 'ErrorItemNotFound', 'message': 'x'}}},
        {'id': '2', 'status': 403, 'body': {'error': {'code': 'ErrorAccessDenied', 'message': 'x'}}}]})
    entry = mgm.list_rules_command(client, {'user_id': ANALYST})
    assert domains.call_count == 2 and batch.call_count == 1 and requests_mock.call_count == 4
    assert [r['url'] for r in batch.last_request.json()['requests']] == [
        f'/users/{ANALYST}/mailFolders/{f}?$select=displayName' for f in ('F1', 'F2', 'F3')]
    first, second = entry['EntryContext'][RULE_KEY]
    assert first['SuspiciousReasons'] == ['forwards outside the tenant to x@evil.example', 'moves mail to Junk Email',
                                          'copies mail to a folder that is not a mail folder (F2…)',
                                          'applies to every message (no conditions)']
    assert first['MoveToFolderName'] == 'Junk Email' and 'CopyToFolderName' not in first
    assert second['TriageNotes'] == ['copies mail to folder F3… (name could not be read)']
    assert 'moveToFolder: Junk Email' in entry['HumanReadable']


def test_one_folder_is_read_without_batch_and_no_domains_without_forwarding(client, requests_mock):
    requests_mock.get(RULES_URL, json={'value': [{**FORWARDING_RULE, 'actions': {'moveToFolder': 'F1'}}]})
    folder = requests_mock.get(f'{BASE}/mailFolders/F1', json={'displayName': 'RSS Feeds'})
    entry = mgm.list_rules_command(client, {'user_id': ANALYST})
    assert folder.call_count == 1 and qs(folder.last_request) == {'$select': 'displayName'}
    assert requests_mock.call_count == 2
    assert entry['EntryContext'][RULE_KEY][0]['SuspiciousReasons'][0] == 'moves mail to RSS Feeds'


def test_domains_403_is_a_note_and_the_parameter_is_used_instead(make_client, requests_mock):
    requests_mock.get(RULES_URL, json={'value': [{**FORWARDING_RULE, 'conditions': {'sentToMe': True},
                                                  'actions': {'forwardTo': to('x@evil.example')}}]})
    requests_mock.get(f'{GRAPH}/domains', **graph_error(403, 'Authorization_RequestDenied'))
    without = mgm.list_rules_command(make_client(), {'user_id': ANALYST})['EntryContext'][RULE_KEY][0]
    assert without['Suspicious'] is False and 'external could not be judged' in without['TriageNotes'][0]
    assert 'Domain.Read.All' in without['TriageNotes'][0]
    client = make_client()
    client.tenant_domains = mgm.parse_domain_list('contoso.com\ncontoso.onmicrosoft.com')
    requests_mock.reset_mock()
    withparam = mgm.list_rules_command(client, {'user_id': ANALYST})['EntryContext'][RULE_KEY][0]
    assert withparam['SuspiciousReasons'] == ['forwards outside the tenant to x@evil.example']
    assert not any('/domains' in r.url for r in requests_mock.request_history)


def test_invalid_tenant_domains_parameter_is_named(make_client, requests_mock):
    requests_mock.get(RULES_URL, json={'value': [{**FORWARDING_RULE, 'actions': {'forwardTo': to('x@evil.example')}}]})
    client = make_client()
    client.tenant_domains = mgm.parse_domain_list('contoso.com, <script>')
    with pytest.raises(mgm.MailError, match="'Tenant domains'"):
        mgm.list_rules_command(client, {'user_id': ANALYST})


def test_build_client_reads_the_tenant_domains_parameter():
    params = {'url': 'https://graph.microsoft.com', 'self_deployed': True, 'creds_auth_id': {'password': 'a'},
              'creds_tenant_id': {'password': 't'}, 'credentials': {'password': 'secret-value'},
              'tenant_domains': ' Contoso.com,\ncontoso.onmicrosoft.com '}
    client = mgm.build_client(params, mgm.SecretRedactor(), mgm.MemoryStore(), '')
    assert client.tenant_domains == ('contoso.com', 'contoso.onmicrosoft.com')


def test_hostile_rule_text_cannot_break_the_readable_table(client, requests_mock):
    hostile = {**FORWARDING_RULE, 'displayName': 'ok | injected\n### heading', 'actions': {'assignCategories': ['a|b']}}
    requests_mock.get(RULES_URL, json={'value': [hostile]})
    readable = mgm.list_rules_command(client, {'user_id': ANALYST})['HumanReadable']
    table = [line for line in readable.splitlines() if line.startswith('|')]
    assert len(table) == 3 and 'ok \\| injected ### heading' in table[2] and '\n### heading' not in readable


MALFORMED_RULES = [
    {'id': 'm1', 'displayName': 'x', 'actions': {'forwardTo': [{'emailAddress': 'x@evil.example'}, 'y', None]}},
    {'id': 'm2', 'displayName': 'x', 'actions': {'redirectTo': {'emailAddress': {'address': 'x@evil.example'}}}},
    {'id': 'm3', 'displayName': 'x', 'actions': ['delete'], 'conditions': 'everything'},
    {'id': 'm4', 'displayName': 'x', 'actions': 'delete'},
    {'id': 'm5', 'displayName': 'x', 'actions': {'moveToFolder': ['F1'], 'copyToFolder': {'id': 'F2'}}},
]


@pytest.mark.parametrize('hostile', MALFORMED_RULES, ids=[r['id'] for r in MALFORMED_RULES])
def test_malformed_rule_json_from_graph_is_listed_not_a_traceback(client, requests_mock, hostile):
    requests_mock.get(RULES_URL, json={'value': [hostile]})
    requests_mock.get(f'{RULES_URL}/{hostile["id"]}', json=hostile)
    for entry in (mgm.list_rules_command(client, {'user_id': ANALYST}),
                  mgm.get_rule_command(client, {'user_id': ANALYST, 'rule_id': hostile['id']})):
        assert entry['EntryContext'][RULE_KEY][0]['id'] == hostile['id']
    assert hostile['id'] in mgm.rule_written_entry(hostile, 'written')['HumanReadable']


@pytest.mark.parametrize('folder_id', ['..', 'a b', 'F\u202e1', 'x' * 5000])
def test_a_folder_id_from_graph_that_cannot_be_a_path_is_a_note_not_a_failed_listing(client, requests_mock, folder_id):
    hostile = {'id': 'r1', 'displayName': 'Move', 'conditions': {'senderContains': ['a']},
               'actions': {'moveToFolder': folder_id}}
    requests_mock.get(RULES_URL, json={'value': [hostile]})
    entry = mgm.list_rules_command(client, {'user_id': ANALYST})
    parsed = entry['EntryContext'][RULE_KEY][0]
    assert parsed['id'] == 'r1' and parsed['Suspicious'] is False
    assert parsed['TriageNotes'] == [f'moves mail to folder {folder_id[:16]}… (name could not be read)']
    assert requests_mock.call_count == 1   # the rules only: the folder is not read


@pytest.mark.parametrize('func', [mgm.list_rules_command, mgm.get_rule_command, mgm.delete_rule_command])
def test_rule_commands_fall_back_to_the_configured_mailbox(func, client, requests_mock):
    base = f'{GRAPH}/users/{USER}/mailFolders/inbox/messageRules'
    requests_mock.get(base, json={'value': []})
    requests_mock.get(f'{base}/{RULE_SEG}', json={'id': RULE_ID, 'displayName': 'x', 'actions': {}})
    requests_mock.delete(f'{base}/{RULE_SEG}', status_code=204)
    func(client, {'rule_id': RULE_ID, 'user_id': ''})
    assert requests_mock.call_count == 1 and requests_mock.last_request.url.startswith(base)
    assert '/me/' not in requests_mock.last_request.url


# =============================================================================================== get-settings
def test_get_settings_writes_every_contract_path(client, requests_mock):
    requests_mock.get(f'{BASE}/mailboxSettings', json=SETTINGS)
    entry = mgm.get_settings_command(client, {'user_id': ANALYST})
    settings = entry['EntryContext'][SETTINGS_KEY]
    assert settings['userId'] == ANALYST and '@odata.context' not in settings
    assert yml_outputs('msgraph-mail-get-settings') - context_paths('MSGraphMail.MailboxSettings', settings) == set()
    readable = entry['HumanReadable']
    assert 'scheduled' in readable and "company's worldwide reunion" in readable
    assert 'Out of office \\| back Monday' in readable and '<p>' not in readable


@pytest.mark.parametrize('replies', [
    {'status': 'scheduled', 'scheduledStartDateTime': '2026-01-01T00:00:00', 'scheduledEndDateTime': ['x']},
    {'status': 'scheduled', 'scheduledStartDateTime': None, 'internalReplyMessage': {'html': '<p>x</p>'}},
])
def test_get_settings_with_malformed_nested_fields_is_shown_not_a_traceback(client, requests_mock, replies):
    requests_mock.get(f'{BASE}/mailboxSettings', json={**SETTINGS, 'automaticRepliesSetting': replies})
    entry = mgm.get_settings_command(client, {'user_id': ANALYST})
    assert entry['EntryContext'][SETTINGS_KEY]['automaticRepliesSetting'] == replies
    assert '|scheduled|' in entry['HumanReadable']


def test_get_settings_context_key_is_the_mailbox_asked_even_if_graph_sends_a_user_id(client, requests_mock):
    requests_mock.get(f'{BASE}/mailboxSettings', json={**SETTINGS, 'userId': 'other@contoso.com'})
    entry = mgm.get_settings_command(client, {'user_id': ANALYST})
    assert entry['EntryContext'][SETTINGS_KEY]['userId'] == ANALYST


def test_get_settings_defaults_to_the_configured_mailbox(client, requests_mock):
    requests_mock.get(f'{GRAPH}/users/{USER}/mailboxSettings', json=SETTINGS)
    assert mgm.get_settings_command(client, {})['EntryContext'][SETTINGS_KEY]['userId'] == USER


@pytest.mark.parametrize('response, words', [
    (graph_error(403, 'ErrorAccessDenied'), ['MailboxSettings.Read', ANALYST]),
    (graph_error(404, 'ErrorInvalidUser', 'invalid user'), ['mailbox was not found', 'Mailbox settings']),
])
def test_get_settings_graph_errors(client, requests_mock, response, words):
    requests_mock.get(f'{BASE}/mailboxSettings', **response)
    with pytest.raises(mgm.MailError) as raised:
        mgm.get_settings_command(client, {'user_id': ANALYST})
    for word in words:
        assert word in str(raised.value)


def test_get_settings_bad_user_is_refused(make_client, requests_mock):
    with pytest.raises(mgm.MailError, match="'user_id'"):
        mgm.get_settings_command(make_client(default_user=''), {})
    with pytest.raises(mgm.MailError, match="'user_id'"):
        mgm.get_settings_command(make_client(), {'user_id': 'a@x.example,b@x.example'})
    assert requests_mock.call_count == 0


# =============================================================================================== get-mailtips
ADDRESSES = 'meganb@contoso.com, partner@fabrikam.example,ghost@contoso.com'


def test_mailtips_asked_by_a_sender_about_several_recipients(client, requests_mock):
    post = requests_mock.post(f'{BASE}/getMailTips', json=MAILTIPS)
    entry = mgm.get_mailtips_command(client, {'user_id': ANALYST, 'email_address': ADDRESSES})
    body = post.last_request.json()
    assert body['EmailAddresses'] == ['meganb@contoso.com', 'partner@fabrikam.example', 'ghost@contoso.com']
    assert {o.strip() for o in body['MailTipsOptions'].split(',')} == {
        'automaticReplies', 'mailboxFullStatus', 'customMailTip', 'deliveryRestriction', 'externalMemberCount',
        'maxMessageSize', 'moderationStatus', 'recipientScope', 'recipientSuggestions', 'totalMemberCount'}
    tips = entry['EntryContext'][TIPS_KEY]
    assert [t['emailAddressValue'] for t in tips] == ['meganb@contoso.com', 'partner@fabrikam.example', 'ghost@contoso.com']
    assert [t.get('recipientScope') for t in tips] == ['internal', 'external, externalNonPartner', None]
    assert tips[2]['error']['code'] == 'ErrorRecipientNotFound'
    assert yml_outputs('msgraph-mail-get-mailtips') - context_paths('MSGraphMail.MailTips', tips) == set()
    assert 'On vacation until the 8th.' in entry['HumanReadable'] and 'ErrorRecipientNotFound' in entry['HumanReadable']


def test_mailtips_default_asker_is_the_configured_mailbox(client, requests_mock):
    post = requests_mock.post(f'{GRAPH}/users/{USER}/getMailTips', json={'value': MAILTIPS['value'][:1]})
    mgm.get_mailtips_command(client, {'email_address': 'meganb@contoso.com'})
    assert post.call_count == 1


def test_mailtips_without_any_mailbox_each_address_asks_itself_in_one_batch(make_client, requests_mock):
    batch = requests_mock.post(f'{GRAPH}/$batch', json={'responses': [
        {'id': '0', 'status': 200, 'body': {'value': [MAILTIPS['value'][0]]}},
        {'id': '1', 'status': 404, 'body': {'error': {'code': 'ErrorInvalidUser', 'message': 'no such user'}}}]})
    entry = mgm.get_mailtips_command(make_client(default_user=''), {'email_address': 'meganb@contoso.com,nobody@contoso.com'})
    sent = batch.last_request.json()['requests']
    assert [(r['method'], r['url'], r['body']['EmailAddresses']) for r in sent] == [
        ('POST', '/users/meganb@contoso.com/getMailTips', ['meganb@contoso.com']),
        ('POST', '/users/nobody@contoso.com/getMailTips', ['nobody@contoso.com'])]
    tips = entry['EntryContext'][TIPS_KEY]
    assert tips[1] == {'emailAddress': {'address': 'nobody@contoso.com'}, 'emailAddressValue': 'nobody@contoso.com',
                       'error': {'code': 'ErrorInvalidUser', 'message': 'no such user'}}


@pytest.mark.parametrize('value, expected', [(0, 'none'), (1, 'internal'), ('2', 'external'), (12, 'externalPartner, externalNonPartner'),
                                             (17, 'internal, 16'), ('internal,external', 'internal, external'), (None, None),
                                             (2.0, 'external'), (-1, '-1'), (1.5, '1.5'), (['internal', 'external'], 'internal, external'),
                                             ('\u00b2', '\u00b2'), (' 3 ', 'internal, external')])
def test_recipient_scope_accepts_names_or_numbers(value, expected):
    assert mgm.recipient_scope_text(value) == expected


@pytest.mark.parametrize('args, words', [
    ({}, ["'email_address'"]),
    ({'email_address': ' , '}, ["'email_address'"]),
    ({'email_address': 'bob@contoso.com, not an address'}, ["'email_address'", 'not an address']),
    ({'email_address': 'a@b.example; c@d.example'}, ["'email_address'"]),
    ({'email_address': ','.join(f'u{i}@contoso.com' for i in range(101))}, ["'email_address'", '100']),
    ({'email_address': 'bob@contoso.com', 'user_id': 'a@contoso.com,b@contoso.com'}, ["'user_id'"]),
])
def test_mailtips_bad_input_is_refused_before_any_request(client, requests_mock, args, words):
    with pytest.raises(mgm.MailError) as raised:
        mgm.get_mailtips_command(client, args)
    for word in words:
        assert word in str(raised.value)
    assert requests_mock.call_count == 0


def test_mailtips_403_names_the_permission(client, requests_mock):
    requests_mock.post(f'{BASE}/getMailTips', **graph_error(403, 'ErrorAccessDenied'))
    with pytest.raises(mgm.MailError, match='Mail.Read'):
        mgm.get_mailtips_command(client, {'user_id': ANALYST, 'email_address': 'bob@contoso.com'})


def test_throttled_domains_and_folder_reads_leave_notes_not_a_failed_command(client, requests_mock, sleeps):
    requests_mock.get(RULES_URL, json={'value': [{**FORWARDING_RULE, 'actions': {'forwardTo': to('x@evil.example'),
                                                                              'moveToFolder': 'F1'}}]})
    throttled = {'status_code': 429, 'headers': {'Retry-After': '100'},
                 'json': {'error': {'code': 'ApplicationThrottled', 'message': 'x'}}}
    requests_mock.get(f'{GRAPH}/domains', **throttled)
    requests_mock.get(f'{BASE}/mailFolders/F1', **throttled)
    rule = mgm.list_rules_command(client, {'user_id': ANALYST})['EntryContext'][RULE_KEY][0]
    assert rule['SuspiciousReasons'] == ['applies to every message (no conditions)']
    assert rule['TriageNotes'][0].startswith("forwards to x@evil.example: external could not be judged (the tenant's "
                                             'domains could not be read (Microsoft Graph is throttling')
    assert rule['TriageNotes'][1] == 'moves mail to folder F1… (name could not be read)'
