"""End to end: the sending commands as a program, against the sandbox's sending routes (sandbox/graph_send.py).

Tests 1-3 share one delivered mail (the `delivered` fixture sends it once per module): alice sends bob a
10 MiB file plus an inline image; bob replies to it and forwards it to the SOC. Later tests reseed the sandbox.
The last section checks the sandbox's own sending contract directly over HTTP (things the integration never does,
such as sending an Authorization header to an uploadUrl).
"""
import base64
import functools
import hashlib
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from sandbox.content import tiny_png
from tests.e2e_support import Instance, context_value

pytestmark = pytest.mark.e2e

ALICE, BOB, SOC = 'alice@contoso.com', 'bob@contoso.com', 'soc@contoso.com'
SUBJECT = 'Evidence pack for case 4711'
MiB = 1024 * 1024
BIG_SIZE = 10 * MiB
UPLOAD_PUT = 'PUT /upload/{session}'
SEND_MAIL = 'POST /v1.0/users/{user}/sendMail'
IDENTITY_KEYS = {'POST /{tenant}/oauth2/v2.0/token', 'GET /{tenant}/v2.0/.well-known/openid-configuration'}


def requests_to(stats: dict, key: str) -> int:
    return stats['endpoints'].get(key, {}).get('requests', 0)


def graph_requests(stats: dict) -> dict:
    """Request counts of everything except the identity platform."""
    return {k: v['requests'] for k, v in stats['endpoints'].items() if k not in IDENTITY_KEYS}


def folder_messages(sandbox, user: str, folder: str) -> list:
    return sandbox.mailbox(user, folder)['folders'][0]['messages']


def ok(result):
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result


def error_text(result) -> str:
    assert result.returncode == 1, result.stdout[-2000:]
    errors = [e for e in result.entries if isinstance(e, dict) and e.get('Type') == 4]
    assert errors, result.entries
    return errors[0]['Contents']


def sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def find_by_subject(instance: Instance, user: str, subject: str) -> dict:
    """The newest mail of `user` with exactly this subject, read with msgraph-mail-list-emails."""
    result = ok(instance.run('msgraph-mail-list-emails', user_id=user, odata=f"$filter=subject eq '{subject}'"))
    found = result.entries[0]['Contents']
    assert found, f'no mail {subject!r} in {user}'
    return found[0]


def list_attachments(instance: Instance, user: str, message_id: str) -> list:
    return ok(instance.run('msgraph-mail-list-attachments', user_id=user, message_id=message_id)).entries[0]['Contents']


def download(instance: Instance, user: str, message_id: str, attachment_id: str) -> Path:
    entries = ok(instance.run('msgraph-mail-get-attachment', user_id=user, message_id=message_id,
                              attachment_id=attachment_id)).entries
    assert entries[0]['Type'] == 3, entries
    return Path(entries[0]['File'])


def graph_session(sandbox) -> requests.Session:
    """A plain Graph client with a control-issued token (for reading what the integration does not show)."""
    session = requests.Session()
    session.headers.update({'Authorization': f'Bearer {sandbox.issue_token()}', 'Prefer': 'IdType="ImmutableId"'})
    session.request = functools.partial(session.request, verify=sandbox.ca_path)  # type: ignore[method-assign]
    return session


# ================================================================================ the delivered mail (tests 1-3)
@pytest.fixture(scope='module')
def delivered(sandbox, tmp_path_factory):
    """alice sends bob a 10 MiB file and an inline PNG through the CLI, once for tests 1-3."""
    sandbox.reset()
    sandbox.clear_faults()
    sandbox.set_latency(0)
    sandbox.reset_stats()
    workdir = tmp_path_factory.mktemp('sending')
    instance = Instance(sandbox, workdir / 'instance')
    big = workdir / 'evidence-pack.bin'
    big.write_bytes(os.urandom(BIG_SIZE))
    png = tiny_png((200, 30, 30))
    html = (f'<p>Evidence attached.</p><p><img alt="chart" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode()}"></p>')
    drafts_before = folder_messages(sandbox, ALICE, 'Drafts')
    result = instance.run('send-mail', **{'from': ALICE, 'to': BOB, 'subject': SUBJECT, 'htmlBody': html,
                                          'attachIDs': str(big)})
    return SimpleNamespace(instance=instance, result=result, stats=sandbox.stats(), big=big, png=png,
                           drafts_before=drafts_before, uploads=list(sandbox.ctx.extensions['graph_send'].history))


@pytest.fixture(scope='module')
def bobs_copy(delivered):
    """bob's copy of the delivered mail, as msgraph-mail-list-emails returns it."""
    ok(delivered.result)
    return find_by_subject(delivered.instance, BOB, SUBJECT)


def test_send_mail_with_a_10_mib_file_and_an_inline_image_arrives_intact(delivered, bobs_copy, sandbox):
    entry = ok(delivered.result).entries[0]
    context = context_value(entry, 'MicrosoftGraph.Email')
    assert context['Status'] == 'sent' and context['ID']
    assert f"Message ID: {context['ID']}" in entry['HumanReadable']

    # the upload: one session, PUT in order in chunks of at most 4 MiB, without a bearer token
    stats = delivered.stats
    assert requests_to(stats, SEND_MAIL) == 0
    assert requests_to(stats, 'POST /v1.0/users/{user}/messages') == 1
    assert requests_to(stats, 'POST /v1.0/users/{user}/messages/{message}/attachments/createUploadSession') == 1
    assert requests_to(stats, 'POST /v1.0/users/{user}/messages/{message}/send') == 1
    put = stats['endpoints'][UPLOAD_PUT]
    assert put['requests'] == 3 and put['statuses'] == {'200': 2, '201': 1}
    assert put['bytes_in'] == BIG_SIZE
    [upload] = delivered.uploads
    assert upload['status'] == 'complete' and upload['chunks'] == [4 * MiB, 4 * MiB, 2 * MiB]
    assert sandbox.ctx.extensions['graph_send'].rejected_authorization == 0  # an Authorization header gets 401

    # bob reads it with the integration: the file is byte-identical, the image is inline and referenced by cid
    instance = delivered.instance
    assert bobs_copy['from']['emailAddress']['address'] == ALICE and bobs_copy['isRead'] is False
    assert bobs_copy['hasAttachments'] is True
    attachments = {a['name']: a for a in list_attachments(instance, BOB, bobs_copy['id'])}
    assert set(attachments) == {'evidence-pack.bin', 'image1.png'}
    assert attachments['evidence-pack.bin']['size'] == BIG_SIZE and attachments['evidence-pack.bin']['isInline'] is False
    assert attachments['image1.png']['isInline'] is True
    saved = download(instance, BOB, bobs_copy['id'], attachments['evidence-pack.bin']['id'])
    assert sha256(saved) == sha256(delivered.big)
    image = download(instance, BOB, bobs_copy['id'], attachments['image1.png']['id'])
    assert image.read_bytes() == delivered.png
    full = ok(instance.run('msgraph-mail-get-email', user_id=BOB, message_id=bobs_copy['id'], get_body='true'))
    body = full.entries[0]['Contents']['body']['content']
    assert 'data:image' not in body
    # the integration does not show contentId, so read it from Graph directly
    content_id = graph_session(sandbox).get(
        f"{sandbox.base_url}/v1.0/users/{BOB}/messages/{bobs_copy['id'].replace('/', '-')}"
        f"/attachments/{attachments['image1.png']['id'].replace('/', '-')}").json()['contentId']
    assert content_id and f'cid:{content_id}' in body

    # alice: no draft left behind, the sent mail in Sent Items under the id the command reported
    assert folder_messages(sandbox, ALICE, 'Drafts') == delivered.drafts_before
    sent = [m for m in folder_messages(sandbox, ALICE, 'Sent Items') if m['subject'] == SUBJECT]
    assert [m['immutableId'] for m in sent] == [context['ID']]


def test_reply_mail_and_reply_to_land_in_alices_conversation(delivered, bobs_copy, sandbox):
    instance = delivered.instance
    result = ok(instance.run('reply-mail', **{'from': BOB, 'inReplyTo': bobs_copy['id'], 'to': ALICE,
                                              'subject': SUBJECT, 'body': 'Received, looking now.'}))
    context = context_value(result.entries[0], 'MicrosoftGraph.SentMail')
    assert context['InReplyTo'] == bobs_copy['id']
    assert context['ID'] and context['ID'] != bobs_copy['id']
    bobs_sent = {m['immutableId']: m for m in folder_messages(sandbox, BOB, 'Sent Items')}
    assert bobs_sent[context['ID']]['subject'] == f'Re: {SUBJECT}'  # the id is the reply's own

    ok(instance.run('msgraph-mail-reply-to', **{'from': BOB, 'ID': bobs_copy['id'], 'to': ALICE,
                                                'body': 'Second thought: escalating.'}))

    listed = ok(instance.run('msgraph-mail-list-emails', user_id=ALICE, page_size='100')).entries[0]['Contents']
    replies = {m['subject']: m for m in listed if m['from']['emailAddress']['address'] == BOB
               and m['subject'].lower() == f're: {SUBJECT}'.lower()}
    assert set(replies) == {f'Re: {SUBJECT}', f'RE: {SUBJECT}'}
    for reply in replies.values():
        assert reply['conversationId'] == bobs_copy['conversationId']
        assert reply['isRead'] is False and not reply['hasAttachments']
    assert 'Received, looking now.' in replies[f'Re: {SUBJECT}']['body']['content']
    assert 'Second thought: escalating.' in replies[f'RE: {SUBJECT}']['body']['content']
    assert not folder_messages(sandbox, BOB, 'Drafts')


def test_forward_reaches_the_soc_with_the_attachment(delivered, bobs_copy, sandbox):
    instance = delivered.instance
    result = ok(instance.run('msgraph-mail-forward-email', user_id=BOB, message_id=bobs_copy['id'], to=SOC,
                             comment='Suspicious: please analyse.'))
    row = context_value(result.entries[0], 'MSGraphMail.ForwardedEmail')
    assert row['To'] == [SOC] and row['OriginalID'] == bobs_copy['id'] and row['ID']

    forwarded = find_by_subject(instance, SOC, f'FW: {SUBJECT}')
    assert forwarded['from']['emailAddress']['address'] == BOB
    assert 'Suspicious: please analyse.' in forwarded['body']['content']
    attachments = {a['name']: a for a in list_attachments(instance, SOC, forwarded['id'])}
    assert attachments['evidence-pack.bin']['size'] == BIG_SIZE
    saved = download(instance, SOC, forwarded['id'], attachments['evidence-pack.bin']['id'])
    assert sha256(saved) == sha256(delivered.big)
    assert not folder_messages(sandbox, BOB, 'Drafts')


# ================================================================================ plain send, failures, bad input
def test_a_small_plain_mail_is_one_send_mail_request_without_an_id(instance, fresh_sandbox):
    result = ok(instance.run('send-mail', **{'from': ALICE, 'to': BOB, 'subject': 'Lunch?', 'body': 'At noon?'}))
    context = context_value(result.entries[0], 'MicrosoftGraph.Email')
    assert context['Status'] == 'accepted' and 'ID' not in context
    assert graph_requests(fresh_sandbox.stats()) == {SEND_MAIL: 1}
    assert fresh_sandbox.stats()['endpoints'][SEND_MAIL]['statuses'] == {'202': 1}
    assert [m['subject'] for m in folder_messages(fresh_sandbox, BOB, 'Inbox')].count('Lunch?') == 1
    assert [m['subject'] for m in folder_messages(fresh_sandbox, ALICE, 'Sent Items')].count('Lunch?') == 1


@pytest.mark.parametrize('where, path_regex, method', [
    ('an upload chunk', r'^/upload/', 'PUT'),
    ('the final send', r'/messages/[^/]+/send$', 'POST'),
])
def test_a_failure_after_the_draft_exists_deletes_the_draft_and_sends_nothing(instance, fresh_sandbox, tmp_path,
                                                                             where, path_regex, method):
    big = tmp_path / 'scan.bin'
    big.write_bytes(os.urandom(3 * MiB + 12345))
    drafts_before = folder_messages(fresh_sandbox, ALICE, 'Drafts')
    fresh_sandbox.add_fault(path_regex, methods=[method], status=500)
    result = instance.run('send-mail', **{'from': ALICE, 'to': BOB, 'subject': 'Half built',
                                          'body': 'never arrives', 'attachIDs': str(big)})
    message = error_text(result)
    assert '500' in message and 'The draft was deleted; nothing was sent.' in message
    assert 'Traceback' not in message + result.stderr
    assert folder_messages(fresh_sandbox, ALICE, 'Drafts') == drafts_before
    for user, folder in ((BOB, 'Inbox'), (ALICE, 'Sent Items')):
        assert 'Half built' not in [m['subject'] for m in folder_messages(fresh_sandbox, user, folder)]
    assert fresh_sandbox.stats()['endpoints']['DELETE /v1.0/users/{user}/messages/{message}']['statuses'] == {'204': 1}


@pytest.mark.parametrize('args, expected', [
    ({'attachIDs': 'no-such-entry-4711'}, "attachIDs"),
    ({'headers': 'Importance:high'}, "x-"),
])
def test_bad_input_fails_before_anything_reaches_graph(instance, fresh_sandbox, args, expected):
    result = instance.run('send-mail', **{'from': ALICE, 'to': BOB, 'subject': 'Bad input', 'body': 'x', **args})
    message = error_text(result)
    assert expected in message and 'Traceback' not in message + result.stderr
    assert graph_requests(fresh_sandbox.stats()) == {}
    assert set(fresh_sandbox.stats()['endpoints']) <= IDENTITY_KEYS


# ================================================================================ the sandbox's sending contract
@pytest.fixture
def graph(fresh_sandbox):
    with graph_session(fresh_sandbox) as session:
        yield session


def test_sandbox_upload_url_is_pre_authenticated_ordered_and_chunk_limited(graph, fresh_sandbox):
    base = f'{fresh_sandbox.base_url}/v1.0/users/{ALICE}/messages'
    draft = graph.post(base, json={'subject': 'upload contract', 'toRecipients': [
        {'emailAddress': {'address': BOB}}]})
    assert draft.status_code == 201 and draft.json()['isDraft'] is True
    item = f"{base}/{draft.json()['id'].replace('/', '-')}"
    small = graph.post(f'{item}/attachments/createUploadSession',
                       json={'AttachmentItem': {'attachmentType': 'file', 'name': 'a.bin', 'size': 2 * MiB - 1}})
    assert small.status_code == 400
    assert small.json()['error']['code'] == 'ErrorAttachmentSizeShouldNotBeLessThanMinimumSize'
    size = 9 * MiB
    created = graph.post(f'{item}/attachments/createUploadSession',
                         json={'AttachmentItem': {'attachmentType': 'file', 'name': 'a.bin', 'size': size}})
    assert created.status_code == 201 and created.json()['nextExpectedRanges'] == ['0-']
    url = created.json()['uploadUrl']
    assert url.startswith(f'{fresh_sandbox.base_url}/upload/') and 'authtoken=' in url
    data = os.urandom(size)

    def put(start, end, auth=False):
        headers = {'Content-Range': f'bytes {start}-{end}/{size}', 'Content-Type': 'application/octet-stream'}
        if auth:
            headers['Authorization'] = graph.headers['Authorization']
        return requests.put(url, data=data[start:end + 1], headers=headers, verify=fresh_sandbox.ca_path)

    assert put(0, MiB - 1, auth=True).status_code == 401
    assert requests.put(url.split('?')[0], data=b'x', verify=fresh_sandbox.ca_path,
                        headers={'Content-Range': f'bytes 0-0/{size}'}).status_code in (401, 404)
    assert put(0, 5 * MiB - 1).status_code == 400  # more than 4 MiB in one PUT
    assert put(MiB, 2 * MiB - 1).status_code == 416  # not the next expected range
    first = put(0, 4 * MiB - 1)
    assert first.status_code == 200 and first.json()['nextExpectedRanges'] == [str(4 * MiB)]
    assert put(4 * MiB, 8 * MiB - 1).status_code == 200
    last = put(8 * MiB, size - 1)
    assert last.status_code == 201 and not last.content and "/Attachments('" in last.headers['Location']
    listed = graph.get(f'{item}/attachments', params={'$select': 'name,size'}).json()['value']
    assert [(a['name'], a['size']) for a in listed] == [('a.bin', size)]
    assert graph.get(f'{item}/attachments/{listed[0]["id"].replace("/", "-")}/$value').content == data
    assert graph.delete(item).status_code == 204  # graph_mail's DELETE removes drafts too
    assert folder_messages(fresh_sandbox, ALICE, 'Drafts') == []


def test_sandbox_send_mail_validates_like_graph(graph, fresh_sandbox):
    url = f'{fresh_sandbox.base_url}/v1.0/users/{ALICE}/sendMail'
    to = [{'emailAddress': {'address': BOB}}]

    def send(message, **extra):
        return graph.post(url, json={'message': message, **extra})

    def code(response):
        return response.status_code, response.json()['error']['code']

    six = [{'name': f'x-h{i}', 'value': 'v'} for i in range(6)]
    assert code(send({'subject': 's', 'toRecipients': to, 'internetMessageHeaders': six})) == \
        (400, 'InvalidInternetMessageHeaderCollection')
    assert code(send({'subject': 's', 'toRecipients': to,
                      'internetMessageHeaders': [{'name': 'Priority', 'value': '1'}]})) == \
        (400, 'InvalidInternetMessageHeader')
    assert code(send({'subject': 's'})) == (400, 'ErrorInvalidRecipients')
    bad_bytes = {'@odata.type': '#microsoft.graph.fileAttachment', 'name': 'a.txt', 'contentBytes': 'not base64!'}
    assert code(send({'subject': 's', 'toRecipients': to, 'attachments': [bad_bytes]}))[0] == 400
    huge = {'@odata.type': '#microsoft.graph.fileAttachment', 'name': 'a.bin',
            'contentBytes': base64.b64encode(b'\0' * (3 * MiB + 1)).decode()}
    assert send({'subject': 's', 'toRecipients': to, 'attachments': [huge]}).status_code == 413
    sent = send({'subject': 'no copy', 'toRecipients': to, 'internetMessageHeaders': [
        {'name': 'X-Case', 'value': '4711'}]}, saveToSentItems=False)
    assert sent.status_code == 202 and not sent.content
    assert 'no copy' not in [m['subject'] for m in folder_messages(fresh_sandbox, ALICE, 'Sent Items')]
    copy = next(m for m in folder_messages(fresh_sandbox, BOB, 'Inbox') if m['subject'] == 'no copy')
    headers = graph.get(f"{fresh_sandbox.base_url}/v1.0/users/{BOB}/messages/{copy['immutableId'].replace('/', '-')}",
                        params={'$select': 'internetMessageHeaders'}).json()['internetMessageHeaders']
    assert {'name': 'X-Case', 'value': '4711'} in headers
    missing = graph.post(f'{fresh_sandbox.base_url}/v1.0/users/{ALICE}/messages/AAMkAGnotthere=/reply',
                         json={'comment': 'hi'})
    assert code(missing) == (404, 'ErrorItemNotFound')
