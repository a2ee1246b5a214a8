"""End to end: msgraph-mail-hunt-rules over a generated tenant, through the command line.

200 generated users (180 with a mailbox: 160 users, 20 shared; 20 without a mailbox) plus the 5 seed mailboxes.
seed_rules.plant_rules gives half of the generated mailboxes a benign filing rule and some of them a rule that
forwards payroll mail to one outside address; the seed adds dana's and alice's malicious rules (two of them forward
to the same address) and erin's and bob's benign ones.
"""
import pytest

from sandbox import Sandbox
from sandbox.seed_rules import HUNT_DROP, plant_rules
from tests.e2e_support import Instance, context_value

pytestmark = pytest.mark.e2e

TENANT = 200
SEEDED_FINDINGS = {'dana@contoso.com': 23, 'alice@contoso.com': 1}
HUNT = 'MSGraphMail.RuleHunt'
RULES_PATH = 'GET /v1.0/users/{user}/mailFolders/{folder}/messageRules'


@pytest.fixture(scope='module')
def hunt_tenant(tmp_path_factory):
    with Sandbox(state_dir=tmp_path_factory.mktemp('hunt-sandbox'), tenant_size=TENANT) as running:
        yield running


@pytest.fixture
def tenant(hunt_tenant):
    """The tenant, reseeded, with rules planted in generated mailboxes (the same ones every time)."""
    hunt_tenant.reset()
    hunt_tenant.clear_faults()
    hunt_tenant.reset_stats()
    store = hunt_tenant.ctx.store
    generated = [m for m in store.mailboxes() if m.upn.startswith(('user', 'shared')) and m.mail_enabled]
    hunt_tenant.planted = plant_rules(store, generated, benign_share=0.5, malicious_share=0.1)
    return hunt_tenant


@pytest.fixture
def cli(tenant, tmp_path):
    return Instance(tenant, tmp_path / 'hunt-instance')


def hunt_of(run) -> dict:
    assert run.returncode == 0, run.stderr + run.stdout[-2000:]
    assert 'Traceback' not in run.stderr
    return context_value(run.entries[0], HUNT)


def findings_by_mailbox(hunt: dict) -> dict:
    counts: dict = {}
    for finding in hunt['Findings']:
        counts[finding['Mailbox']] = counts.get(finding['Mailbox'], 0) + 1
    return counts


def expected_findings(tenant) -> dict:
    return {**SEEDED_FINDINGS, **{upn: 1 for upn in tenant.planted['malicious']}}


def test_tenant_wide_hunt_finds_every_malicious_rule_and_the_shared_address(cli, tenant):
    planted = tenant.planted['malicious']
    assert len(planted) >= 5 and tenant.planted['benign']
    run = cli.run('msgraph-mail-hunt-rules', all_mailboxes='true')
    hunt = hunt_of(run)
    assert hunt['Status'] == 'Completed' and hunt['MailboxesTotal'] == TENANT + 5
    assert hunt['MailboxesSearched'] == 185 and hunt['MailboxesWithoutMailbox'] == 20 and hunt['MailboxesFailedCount'] == 0
    assert findings_by_mailbox(hunt) == expected_findings(tenant)
    assert hunt['FindingsCount'] == sum(expected_findings(tenant).values())
    planted_finding = next(f for f in hunt['Findings'] if f['Mailbox'] == planted[0])
    assert planted_finding['ForwardsTo'] == [HUNT_DROP] and planted_finding['DisplayName'] == '.'
    assert planted_finding['Reasons'][:2] == [f'forwards outside the tenant to {HUNT_DROP}', 'marks mail read']
    assert f'forwards to {HUNT_DROP}, which {len(planted)} mailboxes forward to' in planted_finding['Reasons']
    shared = {s['Address']: s for s in hunt['SharedForwardingAddresses']}
    assert set(shared) == {HUNT_DROP, 'fin.archive@protonmail-drop.net'}
    assert shared[HUNT_DROP]['MailboxCount'] == len(planted) and sorted(shared[HUNT_DROP]['Mailboxes']) == sorted(planted)
    assert sorted(shared['fin.archive@protonmail-drop.net']['Mailboxes']) == ['alice@contoso.com', 'dana@contoso.com']
    readable = run.entries[0]['HumanReadable']
    assert 'Forwarding addresses set in more than one mailbox' in readable and 'not proof' in readable


def test_each_mailbox_rules_and_folders_are_read_once_in_batches(cli, tenant):
    hunt_of(cli.run('msgraph-mail-hunt-rules', all_mailboxes='true'))
    stats = tenant.stats()
    assert stats['batch_items'][RULES_PATH]['requests'] == TENANT + 5
    # one read per distinct folder a mailbox's rules move or copy to: 'Receipts' in each planted benign mailbox;
    # dana's rules use 10 folders, erin's 3, alice's 2
    assert stats['batch_items']['GET /v1.0/users/{user}/mailFolders/{folder}']['requests'] == \
        len(tenant.planted['benign']) + 10 + 3 + 2
    graph_calls = {k: v['requests'] for k, v in stats['endpoints'].items() if '/v1.0/' in k}
    assert set(graph_calls) == {'POST /v1.0/$batch', 'GET /v1.0/domains'} and graph_calls['GET /v1.0/domains'] == 1
    items = stats['totals']['batch_items']
    failed = sum(n for bucket in stats['batch_items'].values() for status, n in bucket['statuses'].items()
                 if int(status) >= 400)
    # 20 to a $batch; a sequential batch is cut short only where a sub-request failed (a user without a mailbox),
    # and the last ones of the run are shorter so that they end together
    assert graph_calls['POST /v1.0/$batch'] <= items // 20 + failed + 8, 'sub-requests must be packed 20 to a $batch'


def test_a_group_hunt_checks_its_transitive_members(cli, tenant):
    groups = tenant.ctx.extensions['tenant'].groups
    staff_a = next(g for g in groups.values() if g.name == 'Staff A')
    members = {m.upn for m in tenant.ctx.store.mailboxes() if m.user_id in staff_a.members}
    hunt = hunt_of(cli.run('msgraph-mail-hunt-rules', group_id=staff_a.id))
    assert hunt['MailboxesTotal'] == len(members)
    assert set(findings_by_mailbox(hunt)) == set(tenant.planted['malicious']) & members


def test_a_listed_hunt_with_a_failing_mailbox_reports_it_and_goes_on(cli, tenant):
    tenant.add_fault(r'^/v1\.0/users/erin@contoso\.com/mailFolders/inbox/messageRules', status=403, in_batch=True)
    hunt = hunt_of(cli.run('msgraph-mail-hunt-rules', mailboxes='dana@contoso.com,erin@contoso.com,alice@contoso.com'))
    assert hunt['Status'] == 'Completed' and hunt['MailboxesSearched'] == 2 and hunt['MailboxesFailedCount'] == 1
    assert hunt['MailboxesFailed'][0]['Mailbox'] == 'erin@contoso.com'
    assert 'MailboxSettings.Read' in hunt['MailboxesFailed'][0]['Error']
    assert findings_by_mailbox(hunt) == SEEDED_FINDINGS


HOSTILE_RULES = [
    {'value': 5},
    {'value': [{'id': 'h1', 'displayName': 'Hostile one', 'conditions': {},
                'actions': {'forwardTo': [{'emailAddress': 'x@evil.example'}], 'moveToFolder': '..'}},
               {'id': 'h2', 'displayName': 'Hostile two', 'actions': {'copyToFolder': ['F'], 'delete': True}}]},
]


@pytest.mark.parametrize('body', HOSTILE_RULES, ids=['value-not-a-list', 'malformed-rules'])
def test_a_mailbox_with_malformed_rules_json_does_not_stop_the_hunt(cli, tenant, body):
    tenant.add_fault(r'^/v1\.0/users/erin@contoso\.com/mailFolders/inbox/messageRules', status=200, body=body,
                     in_batch=True)
    hunt = hunt_of(cli.run('msgraph-mail-hunt-rules', mailboxes='dana@contoso.com,erin@contoso.com,alice@contoso.com'))
    assert hunt['Status'] == 'Completed' and hunt['MailboxesSearched'] == 3 and hunt['MailboxesFailedCount'] == 0
    erin = {f['RuleID']: f['Reasons'] for f in hunt['Findings'] if f['Mailbox'] == 'erin@contoso.com'}
    assert erin == ({} if body == {'value': 5} else {'h1': ['applies to every message (no conditions)'],
                                                      'h2': ['deletes mail', 'applies to every message (no conditions)']})
    assert {m: n for m, n in findings_by_mailbox(hunt).items() if m != 'erin@contoso.com'} == SEEDED_FINDINGS


def test_throttled_sub_requests_change_nothing_in_the_result(cli, tenant):
    tenant.add_fault(r'^/v1\.0/users/[^/]+/mailFolders', status=429, retry_after=0.2, every_nth=7, in_batch=True)
    hunt = hunt_of(cli.run('msgraph-mail-hunt-rules', all_mailboxes='true'))
    assert hunt['Status'] == 'Completed' and hunt['MailboxesFailedCount'] == 0
    assert findings_by_mailbox(hunt) == expected_findings(tenant)
    assert tenant.stats()['totals']['faults_injected'] > 10


def test_a_long_hunt_goes_on_through_polling_to_the_same_result(cli, tenant):
    """60 mailboxes per run: the shell runner follows the polling entries (as XSOAR would) until the hunt completes."""
    run = cli.run('msgraph-mail-hunt-rules', all_mailboxes='true', mailboxes_per_run='60')
    hunt = hunt_of(run)
    progress = [line for line in run.stderr.splitlines() if line.startswith('### Inbox rule hunt')]
    assert len(progress) == 3 and all(line.endswith(': InProgress') for line in progress)
    assert hunt['Status'] == 'Completed' and hunt['MailboxesTotal'] == TENANT + 5
    assert progress[0].split()[4].rstrip(':') == hunt['ID']
    assert findings_by_mailbox(hunt) == expected_findings(tenant)
    stats = tenant.stats()
    assert stats['endpoints']['GET /v1.0/domains']['requests'] == 1, 'domains are read once per hunt'
    assert stats['batch_items'][RULES_PATH]['requests'] == TENANT + 5, 'no mailbox is read twice across runs'
    tenant.reset_stats()
    shown = hunt_of(cli.run('msgraph-mail-hunt-rules', hunt_id=hunt['ID']))
    assert shown == hunt
    assert not any('/v1.0/' in k for k in tenant.stats()['endpoints']), 'a completed hunt is shown without requests'


@pytest.mark.parametrize('args, named', [
    ({}, 'exactly one scope'),
    ({'mailboxes': 'dana@contoso.com', 'all_mailboxes': 'true'}, 'exactly one scope'),
    ({'group_id': 'not-a-guid'}, "'group_id'"),
    ({'hunt_id': 'rulehunt-unknown'}, "'hunt_id'"),
])
def test_bad_hunt_input_is_refused_before_any_request(cli, tenant, args, named):
    run = cli.run('msgraph-mail-hunt-rules', as_json=False, **args)
    assert run.returncode == 1 and named in run.stderr and 'Traceback' not in run.stderr
    assert not any(k.startswith(('GET /v1', 'POST /v1')) for k in tenant.stats()['endpoints'])
