"""End-to-end: a phishing campaign in a generated tenant, found, dry-run, moved, put back and purged through the
command line, with throttling (429) and unavailability (503) injected on every 7th sub-request.

Scaled down to keep the suite fast on two cores: 200 generated users (180 with a mailbox) plus the seed users (SEED_UPNS),
the campaign in 60 of them (unread and read in Inbox, Inbox/Projects, Junk Email, Deleted Items) and 5 more copies
already purged by their users. bench/run_campaign.py runs the same scenario at 2,000/600.
"""
import json
import os
import re
import urllib.parse
from pathlib import Path

import pytest

from sandbox import Sandbox
from sandbox.seed import SEED_UPNS
from sandbox.tenant import message_count
from tests.e2e_support import Instance, context_value

TENANT = int(os.environ.get('CAMPAIGN_E2E_TENANT', '200'))      # bench/run_campaign.py --e2e: 2000
CAMPAIGN = int(os.environ.get('CAMPAIGN_E2E_COPIES', '60'))     # and 600
MUTATING = ('POST', 'DELETE', 'PATCH')


@pytest.fixture(scope='module')
def tenant(tmp_path_factory):
    with Sandbox(state_dir=tmp_path_factory.mktemp('tenant-sandbox'), tenant_size=TENANT) as running:
        yield running


@pytest.fixture(scope='module')
def campaign(tenant):
    return tenant.plant_campaign(count=CAMPAIGN, purged=5)


@pytest.fixture(scope='module')
def cli(tenant, tmp_path_factory):
    return Instance(tenant, tmp_path_factory.mktemp('campaign-instance'))


def normalized(graph_id: str) -> str:
    return urllib.parse.unquote(graph_id).replace('-', '/').replace('_', '+')


def copies(tenant, campaign) -> dict:
    return {c['immutableId']: c['folder_id'] for c in tenant.campaign_copies(campaign['internet_message_id'])}


def touched_messages(tenant) -> list[tuple[str, str]]:
    """(method, message id) of every request that could change a message."""
    out = []
    for entry in tenant.log():
        match = re.search(r'/messages/([^/]+)', entry['path'])
        if entry['method'] in MUTATING and match and not entry['path'].endswith('$batch'):
            out.append((entry['method'], normalized(match.group(1))))
    return out


def faults_on_every_7th_sub_request(tenant) -> None:
    tenant.clear_faults()
    tenant.add_fault(r'^/v1\.0/users/[^/]+/messages', status=429, retry_after=0.2, every_nth=7, in_batch=True)
    tenant.add_fault(r'^/v1\.0/(users/[^/]+/mailFolders|groups|users$)', status=503, retry_after=0.2, every_nth=7,
                     in_batch=True)


def result_of(run, prefix: str) -> dict:
    assert run.returncode == 0, run.stderr + run.stdout[-2000:]
    entry = next(e for e in run.entries if context_value(e, prefix) is not None)
    return context_value(entry, prefix)


def result_of_entries(run, prefix: str) -> dict:
    """The context a run wrote, also when it ended in an error entry (items that failed)."""
    return context_value(next(e for e in run.entries if context_value(e, prefix) is not None), prefix)


def test_campaign_search_dry_run_move_undo_and_hard_delete(tenant, campaign, cli):
    planted = {normalized(p['immutableId']): p['folder_id'] for p in campaign['planted']}
    assert len(planted) == CAMPAIGN
    faults_on_every_7th_sub_request(tenant)
    messages_before = message_count(tenant.ctx)

    # --- search: every folder of every mailbox, resumed over several runs (50 mailboxes per run)
    run = cli.run('msgraph-mail-search-mailboxes', all_mailboxes='true',
                  internet_message_id=campaign['internet_message_id'], mailboxes_per_run=str(max(50, TENANT // 4)))
    search = result_of(run, 'MSGraphMail.CampaignSearch')
    assert 'InProgress' in run.stderr, 'the search should have taken several polling runs'
    assert search['Status'] == 'Completed'
    assert search['MailboxesTotal'] == TENANT + len(SEED_UPNS)
    assert search['MailboxesWithoutMailbox'] == TENANT // 10
    assert search['MailboxesFailed'] == [] and search['MailboxesFailedCount'] == 0
    assert search['MailboxesSearched'] == TENANT + len(SEED_UPNS) - TENANT // 10
    assert search['ItemsFound'] == CAMPAIGN
    found = {normalized(i['MessageID']): i for i in search['Items']}
    assert set(found) == set(planted), 'exactly the live copies, none of the purged ones'
    assert {i['FolderID'] for i in found.values()} == set(planted.values())
    names = {i['FolderName'] for i in found.values()}
    assert names == {'Inbox', 'Projects', 'Junk Email', 'Deleted Items'}
    assert sum(1 for i in found.values() if i['IsRead']) == CAMPAIGN // 5
    assert [f for f in tenant.faults() if f['applied']], 'faults were injected'
    assert any(e['File'].endswith('.csv') for e in run.entries if e.get('Type') == 3)

    # --- dry run (the default): reports, changes nothing
    tenant.reset_stats()
    run = cli.run('msgraph-mail-remediate-emails', search_id=search['ID'], action='move_to_deleted_items')
    dry = result_of(run, 'MSGraphMail.Remediation')
    assert dry['DryRun'] is True and dry['ItemsSucceeded'] == CAMPAIGN
    assert {i['Result'] for i in dry['Items']} == {'WouldDo'}
    assert touched_messages(tenant) == []
    assert copies(tenant, campaign) == {p['immutableId']: p['folder_id'] for p in campaign['planted']}

    # --- move to Deleted Items, then undo
    run = cli.run('msgraph-mail-remediate-emails', search_id=search['ID'], action='move_to_deleted_items',
                  dry_run='false', mailboxes_per_run=str(max(25, CAMPAIGN // 3)))
    moved = result_of(run, 'MSGraphMail.Remediation')
    assert moved['Status'] == 'Completed' and moved['ItemsSucceeded'] == CAMPAIGN and moved['ItemsFailed'] == 0
    deleted_items = {tenant.mailbox(p['user'], 'deleteditems')['folders'][0]['id'] for p in campaign['planted']}
    assert set(copies(tenant, campaign).values()) == deleted_items
    audit = [e for e in run.entries if e.get('Type') == 3 and e['File'].endswith('-audit.jsonl')]
    lines = [json.loads(line) for line in Path(audit[0]['File']).read_text().splitlines()]
    assert len(lines) == CAMPAIGN and {line['result'] for line in lines} == {'Done'}
    assert {line['action'] for line in lines} == {'move_to_deleted_items'}

    run = cli.run('msgraph-mail-undo-remediation', remediation_id=moved['ID'])
    undone = result_of(run, 'MSGraphMail.Remediation')
    assert undone['UndoOf'] == moved['ID'] and undone['ItemsSucceeded'] == CAMPAIGN
    assert copies(tenant, campaign) == {p['immutableId']: p['folder_id'] for p in campaign['planted']}
    assert message_count(tenant.ctx) == messages_before

    # --- move to a folder path: looked up in each mailbox; the dry run already names the mailboxes without it
    projects = {item['Mailbox']: item['FolderID'] for item in found.values() if item['FolderName'] == 'Projects'}
    run = cli.run('msgraph-mail-remediate-emails', search_id=search['ID'], action='move_to_folder',
                  folder='Inbox/Projects')
    assert run.returncode == 1, 'a dry run where some mailboxes lack the folder ends in an error entry naming them'
    dry = result_of_entries(run, 'MSGraphMail.Remediation')
    assert {i['Mailbox'] for i in dry['Items'] if i['Result'] == 'WouldDo'} == set(projects)
    assert all(i['ToFolderID'] == projects[i['Mailbox']] for i in dry['Items'] if i['Result'] == 'WouldDo')
    assert {i['Error'].split(': ', 1)[1] for i in dry['Items'] if i['Result'] == 'Failed'} == {
        "no folder named 'Projects' under Inbox."}
    assert copies(tenant, campaign) == {p['immutableId']: p['folder_id'] for p in campaign['planted']}

    run = cli.run('msgraph-mail-remediate-emails', search_id=search['ID'], action='move_to_folder',
                  folder='Inbox/Projects', dry_run='false')
    into_projects = result_of_entries(run, 'MSGraphMail.Remediation')
    done = [i for i in into_projects['Items'] if i['Result'] == 'Done']
    assert {i['Mailbox'] for i in done} == set(projects) and len(done) == into_projects['ItemsSucceeded']
    assert {copies(tenant, campaign)[i['MessageID']] for i in done} == set(projects.values())
    run = cli.run('msgraph-mail-undo-remediation', remediation_id=into_projects['ID'])
    assert result_of(run, 'MSGraphMail.Remediation')['ItemsSucceeded'] == len(done)
    assert copies(tenant, campaign) == {p['immutableId']: p['folder_id'] for p in campaign['planted']}

    # --- hard delete: no copy left anywhere
    run = cli.run('msgraph-mail-remediate-emails', search_id=search['ID'], action='hard_delete', dry_run='false')
    purged = result_of(run, 'MSGraphMail.Remediation')
    assert purged['ItemsSucceeded'] == CAMPAIGN
    assert 'cannot be undone' in next(e['HumanReadable'] for e in run.entries if e.get('HumanReadable'))
    assert copies(tenant, campaign) == {}

    # --- nothing else was touched: every changing request named a campaign copy
    touched = touched_messages(tenant)
    assert touched and {mid for _, mid in touched} <= set(planted)
    assert message_count(tenant.ctx) == messages_before - CAMPAIGN
    assert len(tenant.log()) < 20000, 'the request log must be complete for this proof'
    run = cli.run('msgraph-mail-undo-remediation', remediation_id=purged['ID'])
    assert run.returncode == 1 and 'cannot be put back' in run.entries[0]['Contents']


def test_a_search_that_outlives_its_polling_timeout_stops_and_goes_on_when_run_again(tenant, campaign, cli,
                                                                                     monkeypatch):
    """XSOAR stops polling after the entry's Timeout; the shell runner does too, and says how to go on."""
    tenant.clear_faults()
    monkeypatch.setenv('DEMISTOMOCK_POLLING_STARTED', '0')  # a chain that started in 1970 is long past 6 h
    first = cli.run('msgraph-mail-search-mailboxes', all_mailboxes='true',
                    internet_message_id=campaign['internet_message_id'], mailboxes_per_run='50')
    assert first.returncode == 1
    assert 'Polling stopped' in first.stderr and 'Timeout of 21600' in first.stderr
    started = context_value(first.entries[-1], 'MSGraphMail.CampaignSearch')
    assert started['Status'] == 'InProgress' and started['MailboxesSearched'] <= 50

    monkeypatch.delenv('DEMISTOMOCK_POLLING_STARTED')
    go_on = first.stderr.split('to go on, run: ')[1].split()
    assert go_on[0] == 'msgraph-mail-search-mailboxes' and f"search_id={started['ID']}" in go_on
    search = result_of(cli.run(go_on[0], **dict(a.split('=', 1) for a in go_on[1:])), 'MSGraphMail.CampaignSearch')
    assert search['ID'] == started['ID'] and search['Status'] == 'Completed'
    assert search['MailboxesSearched'] == TENANT + len(SEED_UPNS) - TENANT // 10
    assert search['ItemsFound'] == len(tenant.campaign_copies(campaign['internet_message_id']))
