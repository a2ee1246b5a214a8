"""End to end per national cloud: the CLI against a sandbox emulating US Gov (`Sandbox(cloud='usgov')`) and
21Vianet (`cloud='china'`), configured as a custom Server URL that names the cloud it fronts
(`server_url_cloud`). The sandbox refuses what that cloud's Graph lacks (sandbox/clouds.py), so a command that
relied on a missing operation fails here. Worldwide behaviour is covered by the other e2e modules.
"""
import json
import os
from datetime import timedelta
from pathlib import Path

import pytest

import MicrosoftGraphMail as mgm

from sandbox import Sandbox
from tests.e2e_support import Instance, context_value
from tests.test_e2e_fetch import Fetcher, Mails, assert_exactly_once, create_folder, iso, pdf, raw, utc_now
from tests.test_e2e_sending import (ALICE, BOB, SOC, error_text, find_by_subject, folder_messages, list_attachments,
                                    ok, sha256, download)

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
WRITE_METHODS = {'POST', 'PATCH', 'PUT', 'DELETE'}
US_GOV, CHINA = 'US Gov GCC-High', '21Vianet (China)'


def graph_log(sandbox) -> list:
    """The Graph requests of the request log (not the identity platform)."""
    return [entry for entry in sandbox.log() if entry['path'].startswith('/v1.0')]


def writes(sandbox) -> list:
    return [e['key'] for e in graph_log(sandbox) if e['method'] in WRITE_METHODS]


def a_file(tmp_path: Path, name: str, size: int) -> Path:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return path


@pytest.fixture(scope='module')
def usgov(tmp_path_factory):
    with Sandbox(state_dir=tmp_path_factory.mktemp('usgov'), cloud='usgov') as running:
        yield running


@pytest.fixture(scope='module')
def china(tmp_path_factory):
    with Sandbox(state_dir=tmp_path_factory.mktemp('china'), cloud='china') as running:
        yield running


def fresh(sandbox) -> None:
    sandbox.reset()
    sandbox.clear_faults()
    sandbox.reset_stats()


@pytest.fixture
def gov(usgov, tmp_path) -> Instance:
    fresh(usgov)
    return Instance(usgov, tmp_path / 'instance', server_url_cloud=US_GOV)


@pytest.fixture
def cn(china, tmp_path) -> Instance:
    fresh(china)
    return Instance(china, tmp_path / 'instance', server_url_cloud=CHINA)


def original_from_alice(instance: Instance, subject: str) -> dict:
    """alice mails bob (small, with a file); returns bob's copy."""
    ok(instance.run('send-mail', **{'from': ALICE, 'to': BOB, 'subject': subject, 'body': 'Please check the link.'}))
    return find_by_subject(instance, BOB, subject)


# ================================================================================ US Gov
def test_usgov_a_5_mb_attachment_is_refused_before_anything_is_written(gov, usgov, tmp_path):
    big = a_file(tmp_path, 'scan.bin', 5 * MiB)
    drafts_before = folder_messages(usgov, ALICE, 'Drafts')
    usgov.reset_stats()
    for command, args in (('send-mail', {'from': ALICE, 'to': BOB, 'subject': 'Too big', 'attachIDs': str(big)}),
                          ('msgraph-mail-create-draft', {'from': ALICE, 'subject': 'Too big', 'attachIDs': str(big)})):
        message = error_text(gov.run(command, **args))
        assert US_GOV in message and 'upload session' in message and "'scan.bin'" in message
        assert str(mgm.single_request_file_limit()) in message and 'Nothing was created or sent' in message
    assert graph_log(usgov) == []  # not a single Graph request, so certainly no write
    assert folder_messages(usgov, ALICE, 'Drafts') == drafts_before
    assert 'Too big' not in [m['subject'] for m in folder_messages(usgov, BOB, 'Inbox')]


def test_usgov_a_1_mb_attachment_is_delivered(gov, usgov, tmp_path):
    small = a_file(tmp_path, 'report.bin', 1 * MiB)
    ok(gov.run('send-mail', **{'from': ALICE, 'to': BOB, 'subject': 'One megabyte', 'attachIDs': str(small)}))
    copy = find_by_subject(gov, BOB, 'One megabyte')
    [attachment] = list_attachments(gov, BOB, copy['id'])
    assert attachment['name'] == 'report.bin' and attachment['size'] == MiB
    assert sha256(download(gov, BOB, copy['id'], attachment['id'])) == sha256(small)
    assert not any('createUploadSession' in w for w in writes(usgov))


def test_usgov_reply_mail_with_an_attachment_returns_the_replys_own_id(gov, usgov, tmp_path):
    original = original_from_alice(gov, 'Invoice 77')
    evidence = a_file(tmp_path, 'evidence.bin', 2 * MiB)
    usgov.reset_stats()
    result = ok(gov.run('reply-mail', **{'from': BOB, 'inReplyTo': original['id'], 'to': ALICE, 'subject': 'Invoice 77',
                                         'body': 'Looks like phishing.', 'attachIDs': str(evidence)}))
    context = context_value(result.entries[0], 'MicrosoftGraph.SentMail')
    assert context['ID'] and context['ID'] != original['id']
    sent = {m['immutableId']: m for m in folder_messages(usgov, BOB, 'Sent Items')}
    assert sent[context['ID']]['subject'] == 'Re: Invoice 77'
    reply = find_by_subject(gov, ALICE, 'Re: Invoice 77')
    assert reply['conversationId'] == original['conversationId']
    assert 'Looks like phishing.' in reply['body']['content'] and 'Please check the link.' in reply['body']['content']
    assert [(a['name'], a['size']) for a in list_attachments(gov, ALICE, reply['id'])] == [('evidence.bin', 2 * MiB)]
    assert writes(usgov) == ['POST /v1.0/users/{user}/messages/{message}/createReply',
                             'PATCH /v1.0/users/{user}/messages/{message}',
                             'POST /v1.0/users/{user}/messages/{message}/attachments',
                             'POST /v1.0/users/{user}/messages/{message}/send']
    assert not folder_messages(usgov, BOB, 'Drafts')


def test_usgov_forward_and_reply_to_with_attachments_work(gov, usgov, tmp_path):
    original = original_from_alice(gov, 'Wire transfer')
    notes = a_file(tmp_path, 'notes.bin', 300 * 1024)
    ok(gov.run('msgraph-mail-forward-email', user_id=BOB, message_id=original['id'], to=SOC,
               comment='Reported by bob.', attachIDs=str(notes)))
    forwarded = find_by_subject(gov, SOC, 'FW: Wire transfer')
    assert 'Reported by bob.' in forwarded['body']['content']
    assert 'notes.bin' in [a['name'] for a in list_attachments(gov, SOC, forwarded['id'])]

    ok(gov.run('msgraph-mail-reply-to', **{'from': BOB, 'ID': original['id'], 'to': ALICE,
                                           'body': 'Blocked the sender.', 'attachIDs': str(notes)}))
    reply = find_by_subject(gov, ALICE, 'RE: Wire transfer')
    assert 'Blocked the sender.' in reply['body']['content']
    assert [a['name'] for a in list_attachments(gov, ALICE, reply['id'])] == ['notes.bin']
    assert not folder_messages(usgov, BOB, 'Drafts')
    statuses = [e['status'] for e in graph_log(usgov)]
    assert all(s < 400 for s in statuses), statuses  # nothing the cloud lacks was tried


def test_usgov_a_failure_after_the_bare_reply_draft_deletes_it(gov, usgov, tmp_path):
    original = original_from_alice(gov, 'Half reply')
    usgov.add_fault(r'/messages/[^/]+$', methods=['PATCH'], status=500)
    message = error_text(gov.run('reply-mail', **{'from': BOB, 'inReplyTo': original['id'], 'to': ALICE,
                                                  'subject': 'Half reply', 'body': 'never sent'}))
    assert 'Updating the draft failed' in message and 'The draft was deleted; nothing was sent.' in message
    assert not folder_messages(usgov, BOB, 'Drafts')
    assert 'Re: Half reply' not in [m['subject'] for m in folder_messages(usgov, ALICE, 'Inbox')]


def test_usgov_taking_over_the_existing_integrations_fetch_does_not_ask_for_id_translation(gov, usgov, tmp_path):
    """Without translateExchangeIds the old cursor's second cannot be told apart: fetch resumes one second after
    it, as the existing integration would have, and never tries the missing operation."""
    folder = 'Inbox/Migrated'
    gov.write_params(server_url_cloud=US_GOV, isFetch=True, mailbox_to_fetch='soc@contoso.com', folder_to_fetch=folder,
                     first_fetch='3 days', fetch_limit=10)
    create_folder(gov, folder)
    mails = Mails(usgov)
    cursor = utc_now() - timedelta(hours=1)
    last = mails.add(folder, expected=False, subject='Its last incident', receivedDateTime=iso(cursor))
    mails.add(folder, subject='Arrived after the switch', receivedDateTime=iso(cursor + timedelta(minutes=5)),
              attachments=[pdf('after.pdf', 'after')])
    listed = {m['immutableId']: m['id'] for m in usgov.mailbox('soc@contoso.com', folder)['folders'][0]['messages']}
    state = gov.state()
    state['last_run'] = {'time': iso(cursor), 'LAST_RUN_IDS': [listed[last.id]], 'LAST_RUN_FOLDER_PATH': folder,
                         'LAST_RUN_ACCOUNT': 'soc@contoso.com', 'limit': 10}
    gov.state_path.write_text(json.dumps(state))
    fetcher = Fetcher(gov).drain(max_runs=5)
    assert_exactly_once(fetcher.incidents, mails)
    assert not [e for e in graph_log(usgov) if 'translateExchangeIds' in e['path']]


# ================================================================================ 21Vianet
@pytest.mark.parametrize('command, args', [('msgraph-mail-list-rules', {}),
                                           ('msgraph-mail-get-rule', {'rule_id': 'AQAAAJ5dZqA='}),
                                           ('msgraph-mail-delete-rule', {'rule_id': 'AQAAAJ5dZqA='}),
                                           ('msgraph-mail-create-rule', {'display_name': 'x', 'actions': '{"delete": true}'}),
                                           ('msgraph-mail-update-rule', {'rule_id': 'AQAAAJ5dZqA=', 'is_enabled': 'false'})])
def test_china_rules_commands_say_not_available_before_any_request(cn, china, command, args):
    message = error_text(cn.run(command, user_id=ALICE, **args))
    assert f'not available in the {CHINA} cloud' in message and 'PowerShell' in message
    assert graph_log(china) == []


def test_china_fetch_delivers_every_mail_once_without_headers(cn, china, tmp_path):
    folder = 'Inbox/Phish'
    cn.write_params(server_url_cloud=CHINA, isFetch=True, mailbox_to_fetch='soc@contoso.com', folder_to_fetch=folder,
                    first_fetch='1 day', fetch_limit=6)
    create_folder(cn, folder)
    mails = Mails(china)
    mails.bulk(folder, 14, start=iso(utc_now() - timedelta(hours=1)), step_seconds=120, same_second=3,
               attachment_ratio=0.5)
    fetcher = Fetcher(cn)
    fetcher.run()
    mails.add(folder, subject='Arrived between runs', receivedDateTime=iso(utc_now()), attachments=[pdf('a.pdf', 'a')],
              headers={'X-Phish-Score': '9'})
    fetcher.drain(max_runs=10)
    assert_exactly_once(fetcher.incidents, mails)
    for incident in fetcher.incidents:
        assert raw(incident)['Headers'] == []
        assert not [label for label in incident['labels'] if label['type'].startswith('Email/Header/')]
    endpoints = china.stats()['endpoints']
    assert not [key for key in endpoints if key.endswith('/delta')]  # window mode from the start, no 400 first
    assert all(s < 400 for e in china.log() for s in [e['status']] if e['path'].startswith('/v1.0')), 'a refusal'


def test_china_get_email_and_send_mail_leave_out_headers_and_flag(cn, china, tmp_path):
    ok(cn.run('send-mail', **{'from': ALICE, 'to': BOB, 'subject': 'No flag here', 'body': 'hello'}))
    copy = find_by_subject(cn, BOB, 'No flag here')
    got = ok(cn.run('msgraph-mail-get-email', user_id=BOB, message_id=copy['id']))
    assert context_value(got.entries[0], 'MSGraphMail')['Subject'] == 'No flag here'
    for args, named in (({'headers': 'x-case:4711'}, "'headers'"), ({'flag': 'flagged'}, "'flag'")):
        message = error_text(cn.run('send-mail', **{'from': ALICE, 'to': BOB, 'subject': 'Refused', **args}))
        assert named in message and f'not available in the {CHINA} cloud' in message
    assert 'Refused' not in [m['subject'] for m in folder_messages(china, BOB, 'Inbox')]


def test_china_reply_with_a_large_attachment_uses_a_bare_draft_and_an_upload_session(cn, china, tmp_path):
    original = original_from_alice(cn, 'Big evidence')
    big = a_file(tmp_path, 'capture.pcap', 5 * MiB)
    result = ok(cn.run('reply-mail', **{'from': BOB, 'inReplyTo': original['id'], 'to': ALICE,
                                        'subject': 'Big evidence', 'body': 'Capture attached.', 'attachIDs': str(big)}))
    assert context_value(result.entries[0], 'MicrosoftGraph.SentMail')['ID'] != original['id']
    reply = find_by_subject(cn, ALICE, 'Re: Big evidence')
    [attachment] = list_attachments(cn, ALICE, reply['id'])
    assert attachment['size'] == 5 * MiB
    assert sha256(download(cn, ALICE, reply['id'], attachment['id'])) == sha256(big)
    assert 'POST /v1.0/users/{user}/messages/{message}/attachments/createUploadSession' in writes(china)


def test_china_mailbox_settings_and_mailtips_work(cn, china):
    """21Vianet's Graph has mailboxSettings and getMailTips (only messageRules is missing)."""
    entry = cn.run('msgraph-mail-get-settings', user_id='bob@contoso.com').entries[0]
    assert entry['EntryContext']['MSGraphMail.MailboxSettings(val.userId === obj.userId)']['userId'] == 'bob@contoso.com'
    tips = cn.run('msgraph-mail-get-mailtips', user_id=ALICE, email_address='bob@contoso.com').entries[0]
    assert tips['EntryContext']['MSGraphMail.MailTips(val.emailAddress.address === obj.emailAddress.address)'][0][
        'recipientScope'] == 'internal'
