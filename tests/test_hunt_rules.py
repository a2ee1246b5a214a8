"""Unit tests for msgraph-mail-hunt-rules' own parts: scope checks, the 21Vianet refusal, the bounded memory of
forwarding addresses and how findings are shown. The hunt itself runs end to end in test_e2e_hunt_rules.py."""
import os

import pytest
import yaml

import MicrosoftGraphMail as mgm

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize('args, words', [
    ({}, ['exactly one scope']),
    ({'mailboxes': 'a@contoso.com', 'group_id': '0c7e4f2a-9d1b-4a6e-8f35-b2c1d0e9a876'}, ['exactly one scope']),
    ({'group_id': 'staff'}, ["'group_id'", 'GUID']),
    ({'mailboxes': 'a@contoso.com,b/../c'}, ["'mailboxes'"]),
    ({'all_mailboxes': 'perhaps'}, ["'all_mailboxes'"]),
    ({'all_mailboxes': 'true', 'mailboxes_per_run': '0'}, ["'mailboxes_per_run'"]),
])
def test_bad_scope_is_refused_before_any_request(client, requests_mock, args, words, monkeypatch):
    monkeypatch.setattr(mgm, 'save_campaign_job', lambda *a: pytest.fail('nothing may be saved'))
    with pytest.raises(mgm.MailError) as raised:
        mgm.hunt_rules_command(client, args)
    for word in words:
        assert word in str(raised.value)
    assert requests_mock.call_count == 0


def test_unknown_hunt_id_is_refused(client, requests_mock, monkeypatch):
    monkeypatch.setattr(mgm, 'load_campaign_job', lambda job_id: {'kind': 'search', 'id': job_id})
    with pytest.raises(mgm.MailError, match="'hunt_id'"):
        mgm.hunt_rules_command(client, {'hunt_id': 'search-1'})
    assert requests_mock.call_count == 0


def test_hunt_is_refused_in_21vianet(make_client, requests_mock):
    with pytest.raises(mgm.MailError, match='21Vianet'):
        mgm.hunt_rules_command(make_client(server_url='https://microsoftgraph.chinacloudapi.cn'), {'all_mailboxes': 'true'})
    assert requests_mock.call_count == 0


def test_forwarding_memory_is_bounded_and_counts_each_mailbox_once(monkeypatch):
    monkeypatch.setattr(mgm, 'RULE_HUNT_ADDRESSES_KEPT', 2)
    monkeypatch.setattr(mgm, 'RULE_HUNT_MAILBOXES_PER_ADDRESS', 2)
    forwards: dict = {}
    mgm.note_forwarding(forwards, 'a@x', ['Drop@Evil.example', 'drop@evil.example'])  # two rules, one address
    for mailbox in ('b@x', 'c@x'):
        mgm.note_forwarding(forwards, mailbox, ['drop@evil.example'])
    mgm.note_forwarding(forwards, 'd@x', ['other@evil.example', 'third@evil.example'])
    assert forwards == {'drop@evil.example': {'count': 3, 'mailboxes': ['a@x', 'b@x']},
                        'other@evil.example': {'count': 1, 'mailboxes': ['d@x']}}
    assert mgm.shared_forwarding(forwards) == [{'Address': 'drop@evil.example', 'MailboxCount': 3, 'Mailboxes': ['a@x', 'b@x']}]


def test_a_finding_says_when_its_address_is_shared():
    row = ['a@contoso.com', 'r1', '.', True, ['forwards outside the tenant to x@evil.example'], ['X@evil.example'], []]
    assert mgm.finding_context(row, {'x@evil.example': 4}) == {
        'Mailbox': 'a@contoso.com', 'RuleID': 'r1', 'DisplayName': '.', 'IsEnabled': True,
        'Reasons': ['forwards outside the tenant to x@evil.example', 'forwards to X@evil.example, which 4 mailboxes forward to'],
        'ForwardsTo': ['X@evil.example']}
    assert mgm.finding_context(row, {})['Reasons'] == ['forwards outside the tenant to x@evil.example']


def test_a_hunt_in_progress_asks_to_be_polled_with_its_id():
    engine = mgm.EngineJob.start('rulehunt-1', mgm.MailboxScope('all', '')).to_state()
    state = {'kind': 'rulehunt', 'id': 'rulehunt-1', 'status': 'InProgress', 'engine': engine, 'domains': None,
             'domains_why': 'HTTP 403'}
    entries = mgm.rule_hunt_entries(state, {'mailboxes_per_run': '50'})
    assert entries[0]['PollingCommand'] == 'msgraph-mail-hunt-rules'
    assert entries[0]['PollingArgs'] == {'hunt_id': 'rulehunt-1', 'mailboxes_per_run': '50'}
    assert 'not judged: HTTP 403' in entries[0]['HumanReadable']


def test_the_default_mailboxes_per_run_is_the_one_the_yml_declares(client, monkeypatch):
    with open(os.path.join(ROOT_DIR, 'MicrosoftGraphMail.yml'), encoding='utf-8') as handle:
        command = next(c for c in yaml.safe_load(handle)['script']['commands'] if c['name'] == 'msgraph-mail-hunt-rules')
    declared = next(a['defaultValue'] for a in command['arguments'] if a['name'] == 'mailboxes_per_run')
    used = []
    monkeypatch.setattr(mgm, 'run_rule_hunt', lambda client, state, limits: used.append(limits.mailboxes))
    monkeypatch.setattr(mgm, 'save_campaign_job', lambda *a: None)
    entries = mgm.hunt_rules_command(client, {'all_mailboxes': 'true'})   # run locally, no yml default applied
    assert used == [int(declared)]
    assert entries[0]['PollingArgs']['mailboxes_per_run'] == declared


def test_a_finding_kept_with_the_hunt_is_bounded_whatever_graph_sent():
    many = [f'drop{i}@evil{i}.example' for i in range(500)]
    name = '.' + os.urandom(50_000).hex()    # not compressible: the kept state would grow with it
    rule = {'id': 'r1', 'displayName': name, 'isEnabled': 'yes',
            'actions': {'forwardTo': [{'emailAddress': {'address': a}} for a in many]}, 'conditions': {}}
    context = mgm.TriageContext('dana@contoso.com', frozenset({'contoso.com'}), '', {})
    row = mgm.finding_row('dana@contoso.com', rule, mgm.assess_rule(rule, context))
    assert len(mgm.pack_rows([row])) < 10_000
    assert row[2] == name[:mgm.RULE_HUNT_TEXT_KEPT] + '…' and row[3] is False
    assert row[4][0].startswith('forwards outside the tenant to drop0@evil0.example, ') and row[4][0].endswith('…')
    assert row[5] == many[:mgm.RULE_HUNT_ADDRESSES_PER_FINDING]
