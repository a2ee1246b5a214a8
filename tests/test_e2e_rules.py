"""End to end: inbox rule triage, rule writes, mailbox settings and MailTips as a program against the sandbox.

Seed (sandbox/seed_rules.py): dana@contoso.com was taken over and carries a rule for every sign of a malicious
inbox rule; erin@contoso.com keeps benign look-alikes (invoices filed into a folder named Invoices, forwarding to
a colleague or to her own other mailbox); alice's ".." rule forwards invoices outside; bob is out of office.
"""
import pytest
import requests

from tests.e2e_support import Instance, failure, ok

pytestmark = pytest.mark.e2e

ALICE, BOB, DANA, ERIN = 'alice@contoso.com', 'bob@contoso.com', 'dana@contoso.com', 'erin@contoso.com'
RULES_KEY = 'MSGraphMail.Rule(val.id === obj.id)'
SETTINGS_KEY = 'MSGraphMail.MailboxSettings(val.userId === obj.userId)'
TIPS_KEY = 'MSGraphMail.MailTips(val.emailAddress.address === obj.emailAddress.address)'
DROP = 'fin.archive@protonmail-drop.net'

# Every malicious seeded rule and exactly the reasons the triage must give for it.
MALICIOUS = {
    (DANA, 'Forward to external drop'): [f'forwards outside the tenant to {DROP}'],
    (DANA, 'Redirect mail sent to me'): ['redirects outside the tenant to dana.k@mail-relay.example'],
    (DANA, 'Send attachments on'): ['forwards as attachment outside the tenant to docs@filedrop.example'],
    (DANA, 'Clean IT notices'): ['deletes mail'],
    (DANA, 'Purge notices'): ['permanently deletes mail'],
    (DANA, 'Bank mail'): ['moves mail to RSS Feeds and marks it read'],
    (DANA, 'Subscriptions'): ['moves mail to RSS Subscriptions'],
    (DANA, 'Chats'): ['moves mail to Conversation History'],
    (DANA, 'Old mail'): ['moves mail to Archive'],
    (DANA, 'Tidy'): ['moves mail to Deleted Items and marks it read'],
    (DANA, 'Junk it'): ['moves mail to Junk Email'],
    (DANA, 'Keep notes'): ['copies mail to Notes'],
    (DANA, 'Calendar items'): ['moves mail to a folder that is not a mail folder (AAMkADRiMmU4ZDZm…)'],
    (DANA, 'Security alerts'): ['filters on security words (phishing, hacked)'],
    (DANA, 'Payments out'): ['forwards outside the tenant to ap.review@protonmail-drop.net',
                             'filters on money words (iban, wire, transfer, rechnung)'],
    (DANA, 'Everything'): ['applies to every message (no conditions)'],
    (DANA, 'Catch all body'): ['matches every message (a condition contains a NUL character)'],
    (DANA, 'Catch all size'): ['matches every message (size range starts below 1 KB)'],
    (DANA, '.'): ["name is punctuation only ('.')"],
    (DANA, ''): ['name is empty or invisible'],
    (DANA, 'zzzz'): ["name is one repeated character ('zzzz')"],
    (DANA, 'Invoices filed and deleted'): ['deletes mail', 'filters on money words (invoice)'],
    (DANA, 'Invoices filed and forwarded'): [f'forwards outside the tenant to {DROP}', 'filters on money words (invoice)'],
    (ALICE, '..'): [f'forwards outside the tenant to {DROP}', 'moves mail to Archive and marks it read',
                    'filters on money words (invoice, payment, wire, transfer, bank details)',
                    "name is punctuation only ('..')"],
}
BENIGN = [(ERIN, 'Invoices to Invoices folder'), (ERIN, 'Payroll notices'), (ERIN, 'Forward to my assistant'),
          (ERIN, 'Copy to my other mailbox'), (ERIN, 'Team updates'), (ERIN, 'Important from CEO'),
          (ERIN, 'Large attachments'), (ERIN, 'Mark CCs read'), (ALICE, 'Move newsletters'),
          (BOB, 'Flag alerts from monitoring')]


def rules_of(result) -> dict:
    return {r['displayName']: r for r in ok(result).entries[0]['EntryContext'][RULES_KEY]}


@pytest.fixture(scope='module')
def triaged(sandbox, tmp_path_factory):
    """list-rules of each seeded mailbox, run once for the table-driven tests below."""
    sandbox.reset()
    sandbox.clear_faults()
    sandbox.reset_stats()
    instance = Instance(sandbox, tmp_path_factory.mktemp('triage'))
    runs = {user: instance.run('msgraph-mail-list-rules', user_id=user) for user in (ALICE, BOB, DANA, ERIN)}
    return {'rules': {user: rules_of(run) for user, run in runs.items()},
            'readable': {user: run.entries[0]['HumanReadable'] for user, run in runs.items()},
            'stats': sandbox.stats()}


def test_the_tables_cover_every_seeded_rule(triaged):
    seeded = {(user, name) for user, rules in triaged['rules'].items() for name in rules}
    assert seeded == set(MALICIOUS) | set(BENIGN)


@pytest.mark.parametrize('key', sorted(MALICIOUS), ids=[f'{u.split("@")[0]}:{n or "<empty>"}' for u, n in sorted(MALICIOUS)])
def test_malicious_rule_is_flagged_with_its_reasons(triaged, key):
    user, name = key
    rule = triaged['rules'][user][name]
    assert rule['Suspicious'] is True
    assert rule['SuspiciousReasons'] == MALICIOUS[key]


@pytest.mark.parametrize('key', BENIGN, ids=[f'{u.split("@")[0]}:{n}' for u, n in BENIGN])
def test_benign_rule_is_not_flagged(triaged, key):
    user, name = key
    rule = triaged['rules'][user][name]
    assert rule['Suspicious'] is False and rule['SuspiciousReasons'] == []
    assert 'TriageNotes' not in rule


def test_folder_ids_are_named_in_context_and_readable_output(triaged):
    dana = triaged['rules'][DANA]
    assert dana['Bank mail']['MoveToFolderName'] == 'RSS Feeds'
    assert dana['Keep notes']['CopyToFolderName'] == 'Notes'
    assert triaged['rules'][ERIN]['Invoices to Invoices folder']['MoveToFolderName'] == 'Invoices'
    assert 'moveToFolder: RSS Feeds, markAsRead' in triaged['readable'][DANA]
    assert 'moveToFolder: Invoices' in triaged['readable'][ERIN]
    assert '23 of 23 rules look suspicious' in triaged['readable'][DANA]
    assert 'MAPI' in triaged['readable'][ERIN] and 'not proof' in triaged['readable'][ERIN]


def test_each_distinct_folder_is_read_once_in_one_batch(triaged):
    """Four mailboxes: one rules page, one domains read and one $batch of folder reads each; no folder read twice."""
    endpoints = {k: v['requests'] for k, v in triaged['stats']['endpoints'].items() if k.startswith(('GET /v1', 'POST /v1'))}
    assert endpoints == {'GET /v1.0/users/{user}/mailFolders/{folder}/messageRules': 4, 'GET /v1.0/domains': 3,
                         'POST /v1.0/$batch': 3}
    # dana: 10 distinct folders, erin 3, alice 2 (bob's rule moves nothing and forwards nowhere: no lookup at all)
    assert triaged['stats']['batch_items']['GET /v1.0/users/{user}/mailFolders/{folder}']['requests'] == 15


def test_without_domains_external_is_not_guessed(instance, fresh_sandbox):
    fresh_sandbox.add_fault(path_regex=r'^/v1\.0/domains$', status=403)
    rules = rules_of(instance.run('msgraph-mail-list-rules', user_id=DANA))
    forward = rules['Forward to external drop']
    assert forward['Suspicious'] is False and forward['SuspiciousReasons'] == []
    assert forward['TriageNotes'] == [f'forwards to {DROP}: external could not be judged (the tenant\'s domains '
                                      'could not be read: HTTP 403 ErrorAccessDenied; grant Domain.Read.All or list '
                                      "them in the 'Tenant domains' parameter)"]
    # signs that need no domains are still found
    assert rules['Invoices filed and deleted']['SuspiciousReasons'] == ['deletes mail', 'filters on money words (invoice)']
    erin = rules_of(instance.run('msgraph-mail-list-rules', user_id=ERIN))
    assert erin['Forward to my assistant']['Suspicious'] is False  # same domain as erin herself: internal
    assert 'TriageNotes' not in erin['Forward to my assistant']


def test_tenant_domains_parameter_replaces_the_graph_lookup(instance, fresh_sandbox):
    fresh_sandbox.add_fault(path_regex=r'^/v1\.0/domains$', status=403)
    instance.write_params(tenant_domains='contoso.com, contoso.onmicrosoft.com')
    erin = rules_of(instance.run('msgraph-mail-list-rules', user_id=ERIN))
    assert not any(r['Suspicious'] for r in erin.values())
    dana = rules_of(instance.run('msgraph-mail-list-rules', user_id=DANA))
    assert dana['Forward to external drop']['SuspiciousReasons'] == [f'forwards outside the tenant to {DROP}']
    assert 'GET /v1.0/domains' not in fresh_sandbox.stats()['endpoints']


def test_get_rule_is_triaged_like_list(instance, fresh_sandbox, triaged):
    rule = triaged['rules'][DANA]['Bank mail']
    got = ok(instance.run('msgraph-mail-get-rule', user_id=DANA, rule_id=rule['id'])).entries[0]['EntryContext'][RULES_KEY]
    assert got == [rule]


def test_rules_commands_fall_back_to_the_configured_mailbox(instance, fresh_sandbox):
    instance.write_params(mailbox_to_fetch=DANA)
    rules = rules_of(instance.run('msgraph-mail-list-rules'))
    assert len(rules) == 23
    rule = rules['Everything']
    assert ok(instance.run('msgraph-mail-get-rule', rule_id=rule['id'])).entries[0]['EntryContext'][RULES_KEY][0]['id'] == rule['id']
    ok(instance.run('msgraph-mail-delete-rule', rule_id=rule['id']))
    assert 'Everything' not in rules_of(instance.run('msgraph-mail-list-rules', user_id=DANA))


# ------------------------------------------------------------------------------------------- rule writes
def graph_rules(sandbox, user: str) -> list:
    response = requests.get(f'{sandbox.base_url}/v1.0/users/{user}/mailFolders/inbox/messageRules',
                            headers={'Authorization': f'Bearer {sandbox.issue_token()}'}, verify=sandbox.ca_path, timeout=30)
    return response.json()['value']


def test_create_rule_enabled_by_default_with_folder_path_and_plain_addresses(instance, fresh_sandbox):
    result = ok(instance.run('msgraph-mail-create-rule', user_id=ERIN, display_name='Phish reports', sequence='3',
                             actions='{"moveToFolder": "Inbox/Team", "forwardTo": ["soc@contoso.com"]}',
                             conditions='{"subjectContains": ["[Phish Report]"]}'))
    created = result.entries[0]['EntryContext'][RULES_KEY]
    stored = next(r for r in graph_rules(fresh_sandbox, ERIN) if r['displayName'] == 'Phish reports')
    assert created['id'] == stored['id'] and stored['isEnabled'] is True and stored['sequence'] == 3
    team = next(f for f in fresh_sandbox.mailbox(ERIN)['folders'] if f['path'] == 'Inbox/Team')
    assert stored['actions'] == {'moveToFolder': team['id'],
                                 'forwardTo': [{'emailAddress': {'address': 'soc@contoso.com'}}]}
    assert 'created (enabled)' in result.entries[0]['HumanReadable']


def test_create_rule_disabled_on_request(instance, fresh_sandbox):
    ok(instance.run('msgraph-mail-create-rule', user_id=ERIN, display_name='Off', actions='{"markAsRead": true}',
                    is_enabled='false'))
    assert next(r for r in graph_rules(fresh_sandbox, ERIN) if r['displayName'] == 'Off')['isEnabled'] is False


def test_update_rule_disables_a_malicious_rule_and_keeps_it(instance, fresh_sandbox):
    rule = next(r for r in graph_rules(fresh_sandbox, DANA) if r['displayName'] == 'Forward to external drop')
    updated = ok(instance.run('msgraph-mail-update-rule', user_id=DANA, rule_id=rule['id'], is_enabled='false',
                              sequence='30')).entries[0]['EntryContext'][RULES_KEY]
    assert updated['isEnabled'] is False and updated['sequence'] == 30
    stored = next(r for r in graph_rules(fresh_sandbox, DANA) if r['id'] == rule['id'])
    assert stored == {**rule, 'isEnabled': False, 'sequence': 30}


@pytest.mark.parametrize('command, args, named', [
    ('msgraph-mail-create-rule', {'display_name': 'x', 'actions': '{"forward": ["a@b.example"]}'}, "'actions'"),
    ('msgraph-mail-create-rule', {'display_name': 'x', 'actions': '{}'}, "'actions'"),
    ('msgraph-mail-create-rule', {'display_name': 'x', 'actions': '{"delete": true', 'sequence': '1'}, "'actions'"),
    ('msgraph-mail-create-rule', {'display_name': 'x', 'actions': '{"delete": true}', 'sequence': '0'}, "'sequence'"),
    ('msgraph-mail-create-rule', {'display_name': 'x', 'actions': '{"delete": true}',
                                  'conditions': '{"subject": ["a"]}'}, "'conditions'"),
    ('msgraph-mail-update-rule', {'rule_id': '{rule}'}, 'Nothing to update'),
    ('msgraph-mail-update-rule', {'rule_id': '{rule}', 'sequence': '2.5'}, "'sequence'"),
])
def test_bad_rule_input_is_refused_before_any_request(instance, fresh_sandbox, command, args, named):
    rule_id = graph_rules(fresh_sandbox, ERIN)[0]['id']
    before = graph_rules(fresh_sandbox, ERIN)
    fresh_sandbox.reset_stats()
    message = failure(instance.run(command, as_json=False, user_id=ERIN,
                                   **{k: v.replace('{rule}', rule_id) for k, v in args.items()}))
    assert named in message
    assert not any(k.startswith(('GET /v1', 'POST /v1', 'PATCH /v1')) for k in fresh_sandbox.stats()['endpoints'])
    assert graph_rules(fresh_sandbox, ERIN) == before


def test_update_of_a_missing_rule_names_it(instance, fresh_sandbox):
    message = failure(instance.run('msgraph-mail-update-rule', as_json=False, user_id=ERIN, rule_id='AQAAAAAAAAA=',
                                   is_enabled='false'))
    assert 'AQAAAAAAAAA=' in message and ERIN in message and 'not found' in message


# ------------------------------------------------------------------------------------------- settings and MailTips
def test_get_settings_shows_bobs_out_of_office(instance, fresh_sandbox):
    entry = ok(instance.run('msgraph-mail-get-settings', user_id=BOB)).entries[0]
    settings = entry['EntryContext'][SETTINGS_KEY]
    assert settings['userId'] == BOB and settings['automaticRepliesSetting']['status'] == 'scheduled'
    assert settings['workingHours']['timeZone']['name'] == 'UTC' and settings['language']['locale'] == 'en-US'
    assert 'out of the office until Monday' in entry['HumanReadable'] and '<p>' not in entry['HumanReadable']


def test_get_settings_of_an_unknown_mailbox(instance, fresh_sandbox):
    message = failure(instance.run('msgraph-mail-get-settings', as_json=False, user_id='mallory@contoso.com'))
    assert 'mallory@contoso.com' in message and 'not found' in message


def test_mailtips_for_several_recipients_asked_by_a_sender(instance, fresh_sandbox):
    entry = ok(instance.run('msgraph-mail-get-mailtips', user_id=ALICE,
                            email_address='bob@contoso.com, partner@fabrikam.example, ghost@contoso.com')).entries[0]
    tips = {t['emailAddressValue']: t for t in entry['EntryContext'][TIPS_KEY]}
    assert tips['bob@contoso.com']['recipientScope'] == 'internal'
    assert 'out of the office' in tips['bob@contoso.com']['automaticReplies']['message']
    assert tips['partner@fabrikam.example']['recipientScope'] == 'external'
    assert tips['ghost@contoso.com']['error']['code'] == 'ErrorRecipientNotFound'
    assert 'ErrorRecipientNotFound' in entry['HumanReadable']


def test_mailtips_without_a_sender_ask_each_address_itself(instance, fresh_sandbox):
    entry = ok(instance.run('msgraph-mail-get-mailtips', email_address='bob@contoso.com,erin@contoso.com')).entries[0]
    assert [t['emailAddressValue'] for t in entry['EntryContext'][TIPS_KEY]] == [BOB, ERIN]
    assert fresh_sandbox.stats()['batch_items']['POST /v1.0/users/{user}/getMailTips']['requests'] == 2


def test_mailtips_bad_address_is_refused(instance, fresh_sandbox):
    message = failure(instance.run('msgraph-mail-get-mailtips', as_json=False, email_address='bob@contoso.com, not an address'))
    assert "'email_address'" in message and 'not an address' in message
