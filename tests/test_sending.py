"""Unit tests for the sending commands: send-mail, msgraph-mail-create-draft, msgraph-mail-send-draft,
msgraph-mail-reply-to, reply-mail and msgraph-mail-forward-email.

Given a mailbox and some War Room files, running a command sends these Graph requests, in this order, and shows
this result. Graph is requests-mock answering with the documented shapes (test_data/sending/): sendMail 202 with
no body, a draft resource from POST /messages, createReply and createForward; createUploadSession 201 with an
Outlook uploadUrl; each PUT 200 with nextExpectedRanges and the last one 201 with a Location header.
War Room files are real files under tmp_path that `demisto.getFilePath` is patched to return.
"""
import base64
import json
import os
import random
import re
from typing import Any, ClassVar

import pytest
import requests
import yaml

import demistomock as demisto
import MicrosoftGraphMail as mgm
from conftest import GRAPH, load_json

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

USER = 'soc@contoso.com'                      # the fetch mailbox the `client` fixture falls back to
OTHER = 'adele.vance@contoso.com'             # an explicit `from` / user_id
BASE = f'{GRAPH}/users/{USER}'
OBASE = f'{GRAPH}/users/{OTHER}'

DRAFT = load_json('sending/draft_created.json')
REPLY_DRAFT = load_json('sending/reply_draft.json')
FORWARD_DRAFT = load_json('sending/forward_draft.json')
SESSION = load_json('sending/upload_session.json')
CHUNK_ACCEPTED = load_json('sending/upload_chunk_accepted.json')
ATTACHMENT_CREATED = load_json('sending/attachment_created.json')
UPLOAD_URL = SESSION['uploadUrl']

# The message being replied to or forwarded; Graph ids contain '/', '+' and '='.
ORIGINAL_ID = 'AAMkAGVmMDEzMTM4LTZmYWUtNDdkNC1hMDZiLTU1OGY5OTZhYmY4OABGAAAAAAAiQ8W967B7TKBjgx9rVEURBwAiIsqMbYjsT5e/T7KzowPTAAAYbvZDAAA='

MIB = 1024 * 1024
INLINE_LIMIT = 3 * MIB                         # 3,145,728 bytes
UPLOAD_LIMIT = 150 * MIB

TINY_PNG = base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==')
TINY_JPEG = b'\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9'


def seg(graph_id: str) -> str:
    """A Graph id as the single path segment the commands must send: '/' -> '-', '+' -> %2B."""
    return graph_id.replace('/', '-').replace('+', '%2B')


def content(size: int, seed: int = 7) -> bytes:
    """Deterministic, non-repeating bytes, so a chunk sent out of place or twice is noticed."""
    return random.Random(seed).randbytes(size)


def graph_error(status: int, fixture: str, headers: dict | None = None) -> dict:
    return {'status_code': status, 'json': load_json(f'sending/{fixture}'),
            'headers': {'Content-Type': 'application/json', 'request-id': f'req-{status}', **(headers or {})}}


# =============================================================================================== HARNESS
class WarRoom:
    """Files of War Room entries: entry id -> a file under tmp_path, served by the patched getFilePath."""

    def __init__(self, folder: Any):
        self.folder = folder
        self.entries: dict[str, dict] = {}

    def add(self, entry_id: str, name: str, size: int | None = None, data: bytes | None = None,
            sparse: bool = False) -> bytes:
        path = self.folder / f'{len(self.entries)}_{entry_id.replace("@", "_")}'
        with open(path, 'wb') as handle:
            if sparse:
                handle.truncate(size)
                data = b''
            else:
                data = content(size, seed=len(self.entries)) if data is None else data
                handle.write(data)
        self.entries[entry_id] = {'id': entry_id, 'path': str(path), 'name': name}
        return data

    def get_file_path(self, entry_id: str) -> dict:
        if entry_id in self.entries:
            return dict(self.entries[entry_id])
        raise ValueError(f'Entry {entry_id} is not a file: give a path to a file or the id of a file saved '
                         'by a command.')

    @classmethod
    def installed(cls, tmp_path: Any, monkeypatch: Any) -> 'WarRoom':
        """A War Room under tmp_path that demisto.getFilePath serves (the `war_room` fixtures)."""
        folder = tmp_path / 'war-room'
        folder.mkdir()
        room = cls(folder)
        monkeypatch.setattr(demisto, 'getFilePath', room.get_file_path)
        return room


@pytest.fixture
def war_room(tmp_path, monkeypatch) -> WarRoom:
    return WarRoom.installed(tmp_path, monkeypatch)


class UploadServer:
    """Outlook's upload endpoint: ranges in order; 200 + nextExpectedRanges per chunk, 201 + Location at the end.

    `fail` maps a 0-based chunk number to the response given instead (a dict of requests-mock kwargs, or a list
    of them for successive tries of that chunk).
    """

    def __init__(self, fail: dict | None = None, final_status: int = 201):
        self.fail = {k: (v if isinstance(v, list) else [v]) for k, v in (fail or {}).items()}
        self.final_status = final_status
        self.accept_only: dict[int, int] = {}   # chunk number -> bytes kept of it (Graph then asks for the rest)
        self.next_start: dict[str, int] = {}
        self.chunks_seen: dict[str, int] = {}

    def __call__(self, request: Any, context: Any) -> Any:
        url = request.url
        number = self.chunks_seen.get(url, 0)
        if isinstance(self.fail.get(number), dict):
            self.fail[number] = [self.fail[number]]
        if self.fail.get(number):
            answer = self.fail[number].pop(0)
            if 'exc' in answer:
                raise answer['exc']
            context.status_code = answer['status_code']
            context.headers.update(answer.get('headers') or {})
            return answer.get('json')
        match = re.fullmatch(r'bytes (\d+)-(\d+)/(\d+)', request.headers.get('Content-Range', ''))
        start, end, total = (int(g) for g in match.groups()) if match else (-1, -1, -1)
        if not match or start != self.next_start.get(url, 0) or end - start + 1 != len(request.body or b''):
            context.status_code = 400
            return load_json('sending/error_upload_invalid_range.json')
        self.chunks_seen[url] = number + 1
        if number in self.accept_only:
            self.next_start[url] = start + self.accept_only[number]
            context.status_code = 200
            return {**CHUNK_ACCEPTED, 'nextExpectedRanges': [str(self.next_start[url])]}
        self.next_start[url] = end + 1
        if end + 1 == total:
            context.status_code = self.final_status
            session = re.search(r"AttachmentSessions\('([^']+)'\)", url).group(1)
            context.headers['Location'] = (f"https://outlook.office.com/api/v2.0/Users('x')/Messages('y')/"
                                           f"Attachments('{session}-ATT')")
            return None
        context.status_code = 200
        return {**CHUNK_ACCEPTED, 'nextExpectedRanges': [str(end + 1)]}


class Graph:
    """Routes for one mailbox and one draft; `trail()` lists the calls made, with ids replaced by names."""

    def __init__(self, requests_mock: Any, user: str = USER, draft: dict | None = None):
        self.m = requests_mock
        self.user_base = f'{GRAPH}/users/{user}'
        self.draft = draft or DRAFT
        self.draft_url = f'{self.user_base}/messages/{seg(self.draft["id"])}'
        self.original_url = f'{self.user_base}/messages/{seg(ORIGINAL_ID)}'
        self.sessions = 0
        self.upload = UploadServer()
        requests_mock.post(f'{self.user_base}/sendMail', status_code=202)
        requests_mock.post(f'{self.user_base}/messages', status_code=201, json=self.draft)
        requests_mock.post(f'{self.original_url}/createReply', status_code=201, json=self.draft)
        requests_mock.post(f'{self.original_url}/createForward', status_code=201, json=self.draft)
        requests_mock.post(f'{self.original_url}/reply', status_code=202)
        requests_mock.post(f'{self.draft_url}/attachments', status_code=201, json=ATTACHMENT_CREATED)
        requests_mock.post(f'{self.draft_url}/attachments/createUploadSession', status_code=201, json=self._session)
        requests_mock.post(f'{self.draft_url}/send', status_code=202)
        requests_mock.delete(self.draft_url, status_code=204)
        requests_mock.put(re.compile(r'^https://outlook\.office\.com/'), json=self._upload)

    def _session(self, request: Any, context: Any) -> dict:
        self.sessions += 1
        url = UPLOAD_URL if self.sessions == 1 else UPLOAD_URL.replace("'AAMkADI5MAAIT3k0tAAA='",
                                                                        f"'AAMkADI5MAAIT3k0tAAA{self.sessions}='")
        return {**SESSION, 'uploadUrl': url}

    def _upload(self, request: Any, context: Any) -> Any:
        return self.upload(request, context)

    def requests(self, method: str, suffix: str = '') -> list:
        return [r for r in self.m.request_history if r.method == method and r.url.endswith(suffix)]

    def json_of(self, method: str, suffix: str) -> Any:
        found = self.requests(method, suffix)
        assert len(found) == 1, f'expected one {method} ...{suffix}, got {self.trail()}'
        return found[0].json()

    def puts(self) -> list:
        return [r for r in self.m.request_history if r.method == 'PUT']

    def trail(self) -> list[str]:
        names = [(seg(self.draft['id']), '{draft}'), (seg(ORIGINAL_ID), '{original}')]
        steps = []
        for request in self.m.request_history:
            if request.method == 'PUT':
                steps.append('PUT {upload}')
                continue
            url = request.url.split('?')[0]
            url = url.replace(self.user_base, '')
            for raw, name in names:
                url = url.replace(raw, name)
            steps.append(f'{request.method} {url}')
        return steps


@pytest.fixture
def graph(requests_mock) -> Graph:
    return Graph(requests_mock)


def context_of(entry: dict, prefix: str) -> Any:
    matches = [v for k, v in (entry.get('EntryContext') or {}).items() if k.split('(')[0] == prefix]
    assert len(matches) == 1, f'expected one context key {prefix}, got {list(entry.get("EntryContext") or {})}'
    return matches[0]


def yml_outputs(command: str) -> set[str]:
    with open(os.path.join(ROOT_DIR, 'MicrosoftGraphMail.yml'), encoding='utf-8') as handle:
        spec = yaml.safe_load(handle)
    cmd = next(c for c in spec['script']['commands'] if c['name'] == command)
    return {o['contextPath'] for o in cmd.get('outputs') or []}


def top_level_paths(entry: dict) -> set[str]:
    return {f"{key.split('(')[0]}.{field}" for key, value in entry['EntryContext'].items() for field in value}


def sent_message(graph: Graph) -> dict:
    return graph.json_of('POST', '/sendMail')['message']


def sendmail(**args: Any) -> dict:
    return {'to': 'meganb@contoso.com', 'subject': 'Incident 4711: suspicious sign-in', **args}


def assert_nothing_requested(requests_mock: Any) -> None:
    assert requests_mock.call_count == 0, [f'{r.method} {r.url}' for r in requests_mock.request_history]


def draft_flow_with_one_upload(chunks: int) -> list[str]:
    return (['POST /messages', 'POST /messages/{draft}/attachments/createUploadSession']
            + ['PUT {upload}'] * chunks + ['POST /messages/{draft}/send'])


# =============================================================================================== SEND-MAIL ARGUMENTS
class TestSendMailArguments:
    """send-mail without attachments: one POST /sendMail whose message carries exactly the arguments."""

    def test_minimal_mail_is_one_sendmail_with_documented_defaults(self, client, graph, war_room):
        mgm.send_mail_command(client, {'to': 'meganb@contoso.com', 'subject': 'Hello', 'body': '<p>Hi</p>'})
        assert graph.trail() == ['POST /sendMail']
        assert graph.json_of('POST', '/sendMail') == {
            'message': {'toRecipients': [{'emailAddress': {'address': 'meganb@contoso.com'}}],
                        'subject': 'Hello',
                        'body': {'contentType': 'HTML', 'content': '<p>Hi</p>'},   # bodyType defaults to HTML
                        'importance': 'Normal',                                     # not the anchor's Low
                        'flag': {'flagStatus': 'notFlagged'}},
            'saveToSentItems': True}
        request = graph.requests('POST', '/sendMail')[0]
        assert request.headers['Authorization'].startswith('Bearer test-access-token-')
        assert request.headers['Content-Type'] == 'application/json'

    def test_body_preview_is_never_sent_to_graph(self, client, graph, war_room):
        mgm.send_mail_command(client, sendmail(body='x' * 400, htmlBody=''))
        message = sent_message(graph)
        assert 'bodyPreview' not in message
        assert 'bodyPreview' not in json.dumps(graph.json_of('POST', '/sendMail'))

    def test_recipient_lists_with_display_names(self, client, graph, war_room):
        mgm.send_mail_command(client, sendmail(
            to='meganb@contoso.com, Jane Doe <jane.doe@contoso.com>',
            cc='alexw@contoso.com,"Lee Gu" <leeg@contoso.com>',
            bcc='audit@contoso.com',
            replyTo='Security Desk <secdesk@contoso.com>, soc-replies@contoso.com'))
        message = sent_message(graph)
        assert message['toRecipients'] == [{'emailAddress': {'address': 'meganb@contoso.com'}},
                                           {'emailAddress': {'address': 'jane.doe@contoso.com', 'name': 'Jane Doe'}}]
        assert message['ccRecipients'] == [{'emailAddress': {'address': 'alexw@contoso.com'}},
                                           {'emailAddress': {'address': 'leeg@contoso.com', 'name': 'Lee Gu'}}]
        assert message['bccRecipients'] == [{'emailAddress': {'address': 'audit@contoso.com'}}]
        assert message['replyTo'] == [{'emailAddress': {'address': 'secdesk@contoso.com', 'name': 'Security Desk'}},
                                      {'emailAddress': {'address': 'soc-replies@contoso.com'}}]

    @pytest.mark.parametrize('value', [['meganb@contoso.com', 'alexw@contoso.com'],
                                       '["meganb@contoso.com", "alexw@contoso.com"]',
                                       ' meganb@contoso.com ,, alexw@contoso.com , '])
    def test_recipients_as_list_json_list_or_loose_comma_text(self, client, graph, war_room, value):
        mgm.send_mail_command(client, sendmail(to=value))
        assert [r['emailAddress']['address'] for r in sent_message(graph)['toRecipients']] == \
            ['meganb@contoso.com', 'alexw@contoso.com']

    def test_only_cc_or_bcc_is_enough(self, client, graph, war_room):
        mgm.send_mail_command(client, {'bcc': 'audit@contoso.com', 'subject': 's'})
        message = sent_message(graph)
        assert 'toRecipients' not in message and 'ccRecipients' not in message
        assert message['bccRecipients'] == [{'emailAddress': {'address': 'audit@contoso.com'}}]

    def test_html_body_wins_over_body_and_body_type(self, client, graph, war_room):
        mgm.send_mail_command(client, sendmail(body='plain words', bodyType='text', htmlBody='<h1>Rich</h1>'))
        assert sent_message(graph)['body'] == {'contentType': 'HTML', 'content': '<h1>Rich</h1>'}

    @pytest.mark.parametrize('body_type, expected', [('text', 'Text'), ('TEXT', 'Text'), ('HTML', 'HTML'),
                                                     ('html', 'HTML'), (None, 'HTML')])
    def test_body_type(self, client, graph, war_room, body_type, expected):
        args = sendmail(body='line 1\nline 2')
        if body_type is not None:
            args['bodyType'] = body_type
        mgm.send_mail_command(client, args)
        assert sent_message(graph)['body'] == {'contentType': expected, 'content': 'line 1\nline 2'}

    @pytest.mark.parametrize('importance, expected', [('Low', 'Low'), ('high', 'High'), ('NORMAL', 'Normal')])
    def test_importance(self, client, graph, war_room, importance, expected):
        mgm.send_mail_command(client, sendmail(importance=importance))
        assert sent_message(graph)['importance'] == expected

    @pytest.mark.parametrize('flag, expected', [('flagged', 'flagged'), ('complete', 'complete'),
                                                ('NotFlagged', 'notFlagged')])
    def test_flag(self, client, graph, war_room, flag, expected):
        mgm.send_mail_command(client, sendmail(flag=flag))
        assert sent_message(graph)['flag'] == {'flagStatus': expected}

    def test_from_sends_from_that_mailbox(self, client, requests_mock, war_room):
        other = Graph(requests_mock, user=OTHER)
        entry = mgm.send_mail_command(client, sendmail(**{'from': OTHER}))[0]
        assert other.trail() == ['POST /sendMail']
        assert requests_mock.request_history[0].url == f'{OBASE}/sendMail'
        assert f'Email sent from {OTHER}' in entry['HumanReadable']

    def test_without_from_the_fetch_mailbox_sends(self, client, graph, war_room):
        mgm.send_mail_command(client, sendmail())
        assert graph.m.request_history[0].url == f'{BASE}/sendMail'

    def test_without_from_or_fetch_mailbox_nothing_is_requested(self, make_client, requests_mock, war_room):
        with pytest.raises(mgm.MailError, match="'from'"):
            mgm.send_mail_command(make_client(default_user=''), sendmail())
        assert_nothing_requested(requests_mock)

    def test_header_values_keep_their_colons(self, client, graph, war_room):
        mgm.send_mail_command(client, sendmail(
            headers='x-case-url:https://soc.contoso.com:8443/case?id=4711,X-Source: xsoar ,x-time:09:31:02'))
        assert sent_message(graph)['internetMessageHeaders'] == [
            {'name': 'x-case-url', 'value': 'https://soc.contoso.com:8443/case?id=4711'},
            {'name': 'X-Source', 'value': 'xsoar'},
            {'name': 'x-time', 'value': '09:31:02'}]

    def test_five_headers_are_the_graph_maximum(self, client, graph, war_room):
        mgm.send_mail_command(client, sendmail(headers=','.join(f'x-h{i}:v{i}' for i in range(5))))
        assert [h['name'] for h in sent_message(graph)['internetMessageHeaders']] == [f'x-h{i}' for i in range(5)]

    def test_no_headers_no_header_field(self, client, graph, war_room):
        mgm.send_mail_command(client, sendmail())
        assert 'internetMessageHeaders' not in sent_message(graph)

    def test_render_body_adds_an_html_entry(self, client, graph, war_room):
        entries = mgm.send_mail_command(client, sendmail(htmlBody='<p>Rendered <b>body</b></p>', renderBody='true'))
        assert len(entries) == 2
        assert entries[1] == {'Type': mgm.ENTRY_NOTE, 'ContentsFormat': 'html',
                              'Contents': '<p>Rendered <b>body</b></p>'}

    @pytest.mark.parametrize('render', [None, 'false'])
    def test_without_render_body_one_entry(self, client, graph, war_room, render):
        args = sendmail(htmlBody='<p>x</p>')
        if render is not None:
            args['renderBody'] = render
        assert len(mgm.send_mail_command(client, args)) == 1


# =============================================================================================== BAD INPUT
BAD_SEND_ARGS = [
    pytest.param({'subject': 's', 'body': 'b'}, 'Missing recipients', id='no-recipients'),
    pytest.param({'to': '', 'cc': ' , ', 'subject': 's'}, 'Missing recipients', id='empty-recipient-lists'),
    pytest.param(sendmail(to='not-an-address'), r"Invalid argument 'to'.*not-an-address", id='to-no-at'),
    pytest.param(sendmail(to='meganb@contoso'), r"Invalid argument 'to'", id='to-no-dot-in-domain'),
    pytest.param(sendmail(to='meganb@contoso.com alexw@contoso.com'), "Invalid argument 'to'", id='to-space-separated'),
    pytest.param(sendmail(cc='a@@contoso.com'), "Invalid argument 'cc'", id='cc-double-at'),
    pytest.param(sendmail(to='[meganb@contoso.com'), "Invalid argument 'to'", id='to-broken-json-list'),
    pytest.param(sendmail(bcc='Jane <>'), "Invalid argument 'bcc'", id='bcc-empty-angle'),
    pytest.param(sendmail(replyTo='@contoso.com'), "Invalid argument 'replyTo'", id='replyto-no-local-part'),
    pytest.param(sendmail(importance='Urgent'), r"Invalid argument 'importance'.*Low, Normal, High", id='importance'),
    pytest.param(sendmail(bodyType='markdown', body='b'), r"Invalid argument 'bodyType'.*text, HTML", id='bodyType'),
    pytest.param(sendmail(flag='red'), r"Invalid argument 'flag'.*notFlagged, complete, flagged", id='flag'),
    pytest.param(sendmail(headers=','.join(f'x-h{i}:v' for i in range(6))), r"'headers'.*at most 5", id='six-headers'),
    pytest.param(sendmail(headers='Bcc:attacker@evil.example'), r"'headers'.*x-", id='bcc-header'),
    pytest.param(sendmail(headers='x-ok:1,Reply-To:attacker@evil.example'), r"'headers'.*x-", id='reply-to-header'),
    pytest.param(sendmail(headers='xcase:1'), r"'headers'.*x-", id='x-without-dash'),
    pytest.param(sendmail(headers='x-a:b\r\nBcc: attacker@evil.example'), "'headers'", id='crlf-in-value'),
    pytest.param(sendmail(headers='x-a:b\nBcc: attacker@evil.example'), "'headers'", id='lf-in-value'),
    pytest.param(sendmail(headers='x-a:b\rc'), "'headers'", id='cr-in-value'),
    pytest.param(sendmail(headers='x-a\nb:c'), "'headers'", id='lf-in-name'),
    pytest.param(sendmail(headers='x-a b:c'), "'headers'", id='space-in-name'),
    pytest.param(sendmail(headers='x-no-colon'), r"'headers'.*name:value", id='no-colon'),
    pytest.param(sendmail(headers=':value'), r"'headers'", id='no-name'),
    pytest.param(sendmail(attachIDs='99@404'), r"'attachIDs'.*99@404", id='unknown-entry'),
    pytest.param(sendmail(attachCIDs='98@404'), r"'attachCIDs'.*98@404", id='unknown-cid-entry'),
    pytest.param(sendmail(attachIDs='1@1,2@1', attachNames='only-one.txt'), r"'attachNames'.*\(2\)", id='names-count'),
    pytest.param(sendmail(attachIDs='1@1', attachNames='a.txt,b.txt'), r"'attachNames'.*\(1\)", id='names-too-many'),
    pytest.param(sendmail(attachNames='a.txt'), r"'attachNames'", id='names-without-ids'),
    pytest.param(sendmail(renderBody='maybe'), r"Invalid argument 'renderBody'", id='render-body'),
]


class TestBadInputFailsBeforeAnyRequest:
    """Every argument is checked before the first request: a half-checked mail is never sent."""

    @pytest.fixture
    def files(self, war_room, graph):
        # Graph answers every sending call with success, so a request made too early shows up as a request.
        war_room.add('1@1', 'a.txt', size=10)
        war_room.add('2@1', 'b.txt', size=10)
        return war_room

    @pytest.mark.parametrize('args, message', BAD_SEND_ARGS)
    def test_send_mail(self, client, requests_mock, files, args, message):
        with pytest.raises(mgm.MailError, match=message):
            mgm.send_mail_command(client, args)
        assert_nothing_requested(requests_mock)

    @pytest.mark.parametrize('args, message', [p for p in BAD_SEND_ARGS
                                               if 'recipient' not in p.id and p.id != 'render-body'])
    def test_create_draft(self, client, requests_mock, files, args, message):
        with pytest.raises(mgm.MailError, match=message):
            mgm.create_draft_command(client, args)
        assert_nothing_requested(requests_mock)

    @pytest.mark.parametrize('args, message', [p for p in BAD_SEND_ARGS if p.id in (
        'to-no-at', 'cc-double-at', 'unknown-entry', 'names-count', 'six-headers', 'crlf-in-value', 'no-recipients')])
    def test_reply_mail(self, client, requests_mock, files, args, message):
        with pytest.raises(mgm.MailError, match=message):
            mgm.reply_mail_command(client, {'subject': 's', **args, 'inReplyTo': ORIGINAL_ID})
        assert_nothing_requested(requests_mock)

    @pytest.mark.parametrize('args, message', [p for p in BAD_SEND_ARGS if p.id in (
        'to-no-at', 'unknown-entry', 'unknown-cid-entry', 'names-count', 'no-recipients')])
    def test_reply_to(self, client, requests_mock, files, args, message):
        with pytest.raises(mgm.MailError, match=message):
            mgm.reply_to_command(client, {'body': 'see attached', **args, 'ID': ORIGINAL_ID})
        assert_nothing_requested(requests_mock)

    @pytest.mark.parametrize('args, message', [p for p in BAD_SEND_ARGS if p.id in (
        'to-no-at', 'cc-double-at', 'unknown-entry', 'names-count')])
    def test_forward(self, client, requests_mock, files, args, message):
        with pytest.raises(mgm.MailError, match=message):
            mgm.forward_email_command(client, {**args, 'message_id': ORIGINAL_ID})
        assert_nothing_requested(requests_mock)

    def test_file_over_150_mb(self, client, requests_mock, war_room):
        war_room.add('7@3', 'disk.img', size=UPLOAD_LIMIT + 1, sparse=True)
        with pytest.raises(mgm.MailError, match=rf"'attachIDs'.*7@3.*{UPLOAD_LIMIT + 1} bytes.*150 MB"):
            mgm.send_mail_command(client, sendmail(attachIDs='7@3'))
        assert_nothing_requested(requests_mock)

    def test_file_over_150_mb_after_good_ones(self, client, requests_mock, war_room):
        war_room.add('1@1', 'ok.txt', size=100)
        war_room.add('7@3', 'disk.img', size=UPLOAD_LIMIT + 1, sparse=True)
        with pytest.raises(mgm.MailError, match='150 MB'):
            mgm.send_mail_command(client, sendmail(attachIDs='1@1', attachCIDs='7@3'))
        assert_nothing_requested(requests_mock)

    def test_exactly_150_mib_is_accepted(self, client, war_room):
        war_room.add('7@3', 'disk.img', size=UPLOAD_LIMIT, sparse=True)
        mail = mgm.compose_mail(client, sendmail(attachIDs='7@3'))
        assert [(a.name, a.size, a.needs_upload_session) for a in mail.attachments] == [('disk.img', UPLOAD_LIMIT, True)]

    def test_entry_whose_file_vanished(self, client, requests_mock, war_room):
        war_room.add('5@5', 'gone.txt', size=10)
        os.remove(war_room.entries['5@5']['path'])
        with pytest.raises(mgm.MailError, match=r"'attachIDs'.*5@5"):
            mgm.send_mail_command(client, sendmail(attachIDs='5@5'))
        assert_nothing_requested(requests_mock)

    def test_reply_mail_needs_in_reply_to_and_subject(self, client, requests_mock, war_room):
        with pytest.raises(mgm.MailError, match="'inReplyTo'"):
            mgm.reply_mail_command(client, {'to': 'a@contoso.com', 'subject': 's'})
        with pytest.raises(mgm.MailError, match="'subject'"):
            mgm.reply_mail_command(client, {'to': 'a@contoso.com', 'inReplyTo': ORIGINAL_ID})
        assert_nothing_requested(requests_mock)

    def test_reply_to_needs_id_and_body(self, client, requests_mock, war_room):
        with pytest.raises(mgm.MailError, match="'ID'"):
            mgm.reply_to_command(client, {'to': 'a@contoso.com', 'body': 'b'})
        with pytest.raises(mgm.MailError, match="'body'"):
            mgm.reply_to_command(client, {'to': 'a@contoso.com', 'ID': ORIGINAL_ID})
        assert_nothing_requested(requests_mock)

    def test_forward_needs_a_mailbox(self, make_client, requests_mock, war_room):
        with pytest.raises(mgm.MailError, match="Missing argument 'user_id'"):
            mgm.forward_email_command(make_client(default_user=''), {'to': 'a@contoso.com', 'message_id': ORIGINAL_ID})
        assert_nothing_requested(requests_mock)

    def test_forward_needs_to_even_with_cc(self, client, requests_mock, war_room):
        with pytest.raises(mgm.MailError, match="'to'"):
            mgm.forward_email_command(client, {'message_id': ORIGINAL_ID, 'cc': 'alexw@contoso.com'})
        with pytest.raises(mgm.MailError, match="'message_id'"):
            mgm.forward_email_command(client, {'to': 'alexw@contoso.com'})
        with pytest.raises(mgm.MailError, match="'user_id'"):
            mgm.forward_email_command(client, {'to': 'a@contoso.com', 'message_id': ORIGINAL_ID,
                                               'user_id': 'a@contoso.com,b@contoso.com'})
        assert_nothing_requested(requests_mock)

    def test_send_draft_needs_draft_id_and_a_mailbox(self, client, make_client, requests_mock):
        with pytest.raises(mgm.MailError, match="'draft_id'"):
            mgm.send_draft_command(client, {})
        with pytest.raises(mgm.MailError, match="'from'"):
            mgm.send_draft_command(make_client(default_user=''), {'draft_id': DRAFT['id']})
        assert_nothing_requested(requests_mock)

    @pytest.mark.parametrize('to', ['meganb@contoso.com;alexw@contoso.com',
                                    'meganb@contoso.com <alexw@contoso.com>'])
    def test_an_address_is_never_silently_dropped(self, client, requests_mock, war_room, to):
        """Two addresses in one item: either both are recipients, or the argument is refused before sending.
        Sending to the first one only (and not saying so) loses a recipient."""
        graph = Graph(requests_mock)
        try:
            mgm.send_mail_command(client, sendmail(to=to))
        except mgm.MailError as exc:
            assert "'to'" in str(exc)
            assert_nothing_requested(requests_mock)
            return
        sent = [r['emailAddress']['address'] for r in sent_message(graph)['toRecipients']]
        assert sorted(sent) == ['alexw@contoso.com', 'meganb@contoso.com'], f'sent to {sent} only, from {to!r}'


# =============================================================================================== ATTACHMENTS
class TestAttachmentArguments:
    """attachIDs / attachNames / attachCIDs and data: images, all under 3 MB: they ride in the one sendMail."""

    def test_attach_ids_with_names_in_one_sendmail(self, client, graph, war_room):
        first = war_room.add('15@8', 'report.pdf', size=1000)
        second = war_room.add('19@8', 'capture.pcap', size=2000)
        mgm.send_mail_command(client, sendmail(attachIDs='15@8,19@8', attachNames='evidence.pdf,traffic.pcap'))
        assert graph.trail() == ['POST /sendMail']
        assert sent_message(graph)['attachments'] == [
            {'@odata.type': '#microsoft.graph.fileAttachment', 'name': 'evidence.pdf', 'isInline': False,
             'contentBytes': base64.b64encode(first).decode()},
            {'@odata.type': '#microsoft.graph.fileAttachment', 'name': 'traffic.pcap', 'isInline': False,
             'contentBytes': base64.b64encode(second).decode()}]

    def test_without_names_the_file_names_are_kept(self, client, graph, war_room):
        war_room.add('15@8', 'Quarterly Report.xlsx', size=10)
        mgm.send_mail_command(client, sendmail(attachIDs='15@8'))
        assert [a['name'] for a in sent_message(graph)['attachments']] == ['Quarterly Report.xlsx']

    @pytest.mark.parametrize('given, expected', [
        ('../../etc/evidence.pdf', 'evidence.pdf'),
        ('C:\\Users\\soc\\evidence.pdf', 'evidence.pdf'),
        ('a' * 250 + '.xlsx', 'a' * 195 + '.xlsx'),                       # shortened, the extension is kept
        ('bad<>:"|?*name.txt', 'bad_______name.txt'),
    ])
    def test_attach_names_are_cleaned_and_keep_their_extension(self, client, graph, war_room, given, expected):
        war_room.add('15@8', 'original.bin', size=10)
        mgm.send_mail_command(client, sendmail(attachIDs='15@8', attachNames=given))
        assert [a['name'] for a in sent_message(graph)['attachments']] == [expected]

    def test_attach_cids_are_inline_with_the_entry_id_as_content_id(self, client, graph, war_room):
        logo = war_room.add('21@8', 'logo.png', data=TINY_PNG)
        war_room.add('15@8', 'report.pdf', size=10)
        mgm.send_mail_command(client, sendmail(htmlBody='<img src="cid:21@8">', attachIDs='15@8', attachCIDs='21@8'))
        message = sent_message(graph)
        assert message['body']['content'] == '<img src="cid:21@8">'
        regular, inline = message['attachments']
        assert regular['isInline'] is False and 'contentId' not in regular
        assert inline == {'@odata.type': '#microsoft.graph.fileAttachment', 'name': 'logo.png', 'isInline': True,
                          'contentBytes': base64.b64encode(logo).decode(), 'contentId': '21@8'}

    def test_data_images_become_inline_attachments_referenced_by_cid(self, client, graph, war_room):
        png64 = base64.b64encode(TINY_PNG).decode()
        jpeg64 = base64.b64encode(TINY_JPEG).decode()
        html = (f'<p>Look:</p><img alt="a" src="data:image/png;base64,{png64}"><br>'
                f"<IMG SRC='data:image/jpeg;base64,{jpeg64}' width=1><img src=\"https://contoso.com/x.png\">")
        entries = mgm.send_mail_command(client, sendmail(htmlBody=html, renderBody='true'))
        assert graph.trail() == ['POST /sendMail']
        message = sent_message(graph)
        sent_html = message['body']['content']
        assert 'data:image' not in sent_html and png64 not in sent_html
        assert 'src="https://contoso.com/x.png"' in sent_html
        cids = re.findall(r'''src=["']cid:([^"']+)["']''', sent_html, re.IGNORECASE)
        assert len(cids) == 2 and len(set(cids)) == 2
        png, jpeg = message['attachments']
        assert (png['name'], png['isInline'], png['contentId'], base64.b64decode(png['contentBytes'])) == \
            ('image1.png', True, cids[0], TINY_PNG)
        assert (jpeg['name'], jpeg['isInline'], jpeg['contentId'], base64.b64decode(jpeg['contentBytes'])) == \
            ('image2.jpeg', True, cids[1], TINY_JPEG)
        assert cids[0].startswith('image1.png@')
        assert entries[1]['Contents'] == sent_html               # the rendered body is what was sent

    def test_a_data_uri_that_is_not_base64_is_left_alone(self, client, graph, war_room):
        html = '<img src="data:image/png;base64,ABCDE">'
        mgm.send_mail_command(client, sendmail(htmlBody=html))
        message = sent_message(graph)
        assert message['body']['content'] == html and 'attachments' not in message

    def test_several_small_files_are_one_sendmail(self, client, graph, war_room):
        data = [war_room.add(f'{i}@2', f'f{i}.bin', size=MIB) for i in range(2)]
        entry = mgm.send_mail_command(client, sendmail(attachIDs='0@2,1@2'))[0]
        assert graph.trail() == ['POST /sendMail']
        assert [base64.b64decode(a['contentBytes']) for a in sent_message(graph)['attachments']] == data
        assert context_of(entry, 'MicrosoftGraph.Email')['Status'] == 'accepted'


class TestAttachmentSizes:
    """Under 3 MiB a file rides in the JSON; from exactly 3 MiB it goes through an upload session."""

    def test_a_file_whose_base64_fits_the_json_limit_goes_inline_in_sendmail(self, client, graph, war_room):
        size = (mgm.JSON_REQUEST_MAX_BYTES - 4096) * 3 // 4
        data = war_room.add('1@1', 'almost.bin', size=size)
        mgm.send_mail_command(client, sendmail(attachIDs='1@1'))
        assert graph.trail() == ['POST /sendMail']
        assert base64.b64decode(sent_message(graph)['attachments'][0]['contentBytes']) == data
        assert len(graph.requests('POST', '/sendMail')[0].body) <= mgm.JSON_REQUEST_MAX_BYTES

    @pytest.mark.parametrize('size', [INLINE_LIMIT - 1, 3_130_000])
    def test_just_under_3_mib_whose_base64_exceeds_the_json_limit_is_uploaded(self, client, graph, war_room, size):
        """Regression (issue 9, finding 6): a 3 MiB - 1 file is 4 MiB of base64; Graph answers 413 to that JSON."""
        war_room.add('1@1', 'almost.bin', size=size)
        mgm.send_mail_command(client, sendmail(attachIDs='1@1', body='x' * 30_000))
        assert graph.trail() == draft_flow_with_one_upload(1)
        assert all(len(r.body or b'') <= mgm.JSON_REQUEST_MAX_BYTES for r in graph.requests('POST'))

    @pytest.mark.parametrize('size, ranges', [
        (INLINE_LIMIT, ['bytes 0-3145727/3145728']),
        (INLINE_LIMIT + 1, ['bytes 0-3145728/3145729']),
        (4 * MIB + 1, ['bytes 0-4194303/4194305', 'bytes 4194304-4194304/4194305']),
    ])
    def test_from_3_mib_an_upload_session_is_used(self, client, graph, war_room, size, ranges):
        data = war_room.add('1@1', 'big.bin', size=size)
        mgm.send_mail_command(client, sendmail(attachIDs='1@1'))
        assert graph.trail() == draft_flow_with_one_upload(len(ranges))
        assert 'attachments' not in graph.json_of('POST', '/messages')
        assert [p.headers['Content-Range'] for p in graph.puts()] == ranges
        assert b''.join(p.body for p in graph.puts()) == data

    def test_a_large_body_with_an_attachment_uses_a_draft(self, client, graph, war_room):
        """Graph limits the JSON request, so the base64 attachment plus the body decide, not the raw file size:
        a 2.5 MiB file with a 1 MiB HTML body would not fit one sendMail request."""
        war_room.add('1@1', 'report.pdf', size=2 * MIB + MIB // 2)
        mgm.send_mail_command(client, sendmail(attachIDs='1@1', htmlBody='<p>' + 'z' * MIB + '</p>'))
        assert 'POST /sendMail' not in graph.trail()
        assert graph.trail()[-1].endswith('/send')

    def test_small_files_adding_up_to_3_mib_use_a_draft(self, client, graph, war_room):
        """Each file is small, but together they do not fit one request: the first rides in the draft's
        JSON and the next is POSTed to the draft's attachments."""
        first = war_room.add('1@1', 'one.bin', size=2 * MIB)
        second = war_room.add('2@1', 'two.bin', size=2 * MIB)
        entry = mgm.send_mail_command(client, sendmail(attachIDs='1@1,2@1'))[0]
        assert graph.trail() == ['POST /messages', 'POST /messages/{draft}/attachments', 'POST /messages/{draft}/send']
        in_draft = graph.json_of('POST', '/messages')['attachments']
        assert [(a['name'], base64.b64decode(a['contentBytes'])) for a in in_draft] == [('one.bin', first)]
        posted = graph.json_of('POST', '/attachments')
        assert (posted['name'], posted['isInline'], base64.b64decode(posted['contentBytes'])) == ('two.bin', False, second)
        assert context_of(entry, 'MicrosoftGraph.Email')['Status'] == 'sent'


class TestLargeAttachmentUpload:
    """A 20 MB file: draft -> createUploadSession -> ordered PUTs of at most 4 MiB -> send."""

    SIZE = 20_000_000

    def test_twenty_mb_file_full_flow(self, client, graph, war_room):
        data = war_room.add('88@12', 'memory-dump.zip', size=self.SIZE)
        entries = mgm.send_mail_command(client, sendmail(attachIDs='88@12', cc='alexw@contoso.com',
                                                         headers='x-case-id:4711', importance='High'))
        assert graph.trail() == draft_flow_with_one_upload(5)

        draft_body = graph.json_of('POST', '/messages')
        assert draft_body == {'toRecipients': [{'emailAddress': {'address': 'meganb@contoso.com'}}],
                              'ccRecipients': [{'emailAddress': {'address': 'alexw@contoso.com'}}],
                              'subject': 'Incident 4711: suspicious sign-in',
                              'body': {'contentType': 'HTML', 'content': ''}, 'importance': 'High',
                              'flag': {'flagStatus': 'notFlagged'},
                              'internetMessageHeaders': [{'name': 'x-case-id', 'value': '4711'}]}
        assert graph.json_of('POST', '/createUploadSession') == {'AttachmentItem': {
            'attachmentType': 'file', 'name': 'memory-dump.zip', 'size': self.SIZE, 'isInline': False}}

        puts = graph.puts()
        assert [p.headers['Content-Range'] for p in puts] == [
            'bytes 0-4194303/20000000',
            'bytes 4194304-8388607/20000000',
            'bytes 8388608-12582911/20000000',
            'bytes 12582912-16777215/20000000',
            'bytes 16777216-19999999/20000000']
        for put in puts:
            assert put.url == UPLOAD_URL                                  # used exactly as Graph gave it
            assert 'Authorization' not in put.headers                     # the URL is pre-authenticated
            assert put.headers['Content-Type'] == 'application/octet-stream'
            assert int(put.headers['Content-Length']) == len(put.body) <= 4 * MIB
        assert b''.join(p.body for p in puts) == data
        for request in graph.m.request_history:
            if request.method != 'PUT':
                assert request.headers['Authorization'].startswith('Bearer ')
        assert graph.json_of('POST', '/send') == {}

        context = context_of(entries[0], 'MicrosoftGraph.Email')
        assert context['ID'] == DRAFT['id'] and context['Status'] == 'sent'
        assert f"Message ID: {DRAFT['id']}" in entries[0]['HumanReadable']

    def test_large_inline_file_session_carries_content_id(self, client, graph, war_room):
        war_room.add('31@4', 'diagram.png', size=5 * MIB)
        mgm.send_mail_command(client, sendmail(htmlBody='<img src="cid:31@4">', attachCIDs='31@4'))
        assert graph.json_of('POST', '/createUploadSession') == {'AttachmentItem': {
            'attachmentType': 'file', 'name': 'diagram.png', 'size': 5 * MIB, 'isInline': True, 'contentId': '31@4'}}
        assert graph.json_of('POST', '/messages')['body']['content'] == '<img src="cid:31@4">'

    def test_a_large_data_image_is_uploaded_inline(self, client, graph, war_room):
        picture = content(INLINE_LIMIT + 100, seed=3)
        html = f'<p>Screenshot</p><img src="data:image/png;base64,{base64.b64encode(picture).decode()}">'
        mgm.send_mail_command(client, sendmail(htmlBody=html))
        assert graph.trail() == draft_flow_with_one_upload(1)
        sent_html = graph.json_of('POST', '/messages')['body']['content']
        item = graph.json_of('POST', '/createUploadSession')['AttachmentItem']
        assert (item['name'], item['size'], item['isInline']) == ('image1.png', INLINE_LIMIT + 100, True)
        assert sent_html == f'<p>Screenshot</p><img src="cid:{item["contentId"]}">'
        assert [p.headers['Content-Range'] for p in graph.puts()] == ['bytes 0-3145827/3145828']
        assert graph.puts()[0].body == picture

    def test_small_files_ride_in_the_draft_and_each_large_one_gets_a_session(self, client, graph, war_room):
        small = war_room.add('1@1', 'note.txt', size=1000)
        war_room.add('2@1', 'big-a.bin', size=3 * MIB + 10)
        war_room.add('3@1', 'big-b.bin', size=4 * MIB + 10)
        mgm.send_mail_command(client, sendmail(attachIDs='1@1,2@1,3@1'))
        assert graph.trail() == ['POST /messages',
                                 'POST /messages/{draft}/attachments/createUploadSession', 'PUT {upload}',
                                 'POST /messages/{draft}/attachments/createUploadSession', 'PUT {upload}', 'PUT {upload}',
                                 'POST /messages/{draft}/send']
        in_draft = graph.json_of('POST', '/messages')['attachments']
        assert [(a['name'], base64.b64decode(a['contentBytes'])) for a in in_draft] == [('note.txt', small)]
        sessions = [r.json()['AttachmentItem']['name'] for r in graph.requests('POST', '/createUploadSession')]
        assert sessions == ['big-a.bin', 'big-b.bin']
        assert len({p.url for p in graph.puts()}) == 2                 # each file PUT to its own session URL

    def test_upload_waits_out_a_503_with_retry_after(self, client, graph, war_room, sleeps):
        graph.upload.fail = {1: [graph_error(503, 'error_service_unavailable.json', {'Retry-After': '4'})]}
        data = war_room.add('1@1', 'big.bin', size=9 * MIB)
        entry = mgm.send_mail_command(client, sendmail(attachIDs='1@1'))[0]
        assert sleeps.waits == [4.0]
        assert [p.headers['Content-Range'] for p in graph.puts()] == [
            'bytes 0-4194303/9437184', 'bytes 4194304-8388607/9437184', 'bytes 4194304-8388607/9437184',
            'bytes 8388608-9437183/9437184']
        assert b''.join(p.body for i, p in enumerate(graph.puts()) if i != 1) == data
        assert context_of(entry, 'MicrosoftGraph.Email')['Status'] == 'sent'

    def test_upload_repeats_a_chunk_whose_connection_dropped(self, client, graph, war_room, sleeps):
        graph.upload.fail = {0: {'exc': requests.exceptions.ConnectionError('Connection reset by peer')}}
        data = war_room.add('1@1', 'big.bin', size=5 * MIB)
        mgm.send_mail_command(client, sendmail(attachIDs='1@1'))
        assert [p.headers['Content-Range'] for p in graph.puts()] == [
            'bytes 0-4194303/5242880', 'bytes 0-4194303/5242880', 'bytes 4194304-5242879/5242880']
        assert len(sleeps.waits) == 1
        assert b''.join(p.body for p in graph.puts()[1:]) == data
        assert graph.trail()[-1] == 'POST /messages/{draft}/send'

    def test_an_expired_upload_url_is_not_answered_with_the_bearer_token(self, client, graph, war_room):
        graph.upload.fail = {1: {'status_code': 401, 'json': {'error': {'code': 'InvalidAuthenticationToken',
                                                                        'message': 'Access token has expired.'}}}}
        war_room.add('1@1', 'big.bin', size=5 * MIB)
        with pytest.raises(mgm.MailError, match='HTTP 401 InvalidAuthenticationToken.*nothing was sent'):
            mgm.send_mail_command(client, sendmail(attachIDs='1@1'))
        assert len(graph.puts()) == 2 and all('Authorization' not in p.headers for p in graph.puts())
        assert graph.trail()[-1] == 'DELETE /messages/{draft}'

    def test_non_https_upload_url_is_refused_and_the_draft_removed(self, client, graph, war_room):
        graph.m.post(f'{graph.draft_url}/attachments/createUploadSession', status_code=201,
                     json={**SESSION, 'uploadUrl': UPLOAD_URL.replace('https://', 'http://')})
        war_room.add('1@1', 'big.bin', size=INLINE_LIMIT)
        with pytest.raises(mgm.MailError, match='not https.*nothing was sent'):
            mgm.send_mail_command(client, sendmail(attachIDs='1@1'))
        assert graph.trail() == ['POST /messages', 'POST /messages/{draft}/attachments/createUploadSession',
                                 'DELETE /messages/{draft}']


# =============================================================================================== CLEANUP
class TestCleanupOnFailure:
    """When any step after the draft fails, the draft is deleted, /send is never called and the error says so."""

    DELETED: ClassVar = ['DELETE /messages/{draft}']

    def assert_cleaned_up(self, graph: Graph, exc: Any, before: list[str]) -> None:
        assert graph.trail() == before + self.DELETED
        assert 'POST /messages/{draft}/send' not in graph.trail()
        assert 'The draft was deleted; nothing was sent.' in str(exc.value)

    def test_create_upload_session_fails(self, client, graph, war_room):
        graph.m.post(f'{graph.draft_url}/attachments/createUploadSession',
                     **graph_error(413, 'error_message_size_exceeded.json'))
        war_room.add('1@1', 'big.bin', size=5 * MIB)
        with pytest.raises(mgm.MailError) as exc:
            mgm.send_mail_command(client, sendmail(attachIDs='1@1'))
        self.assert_cleaned_up(graph, exc, ['POST /messages', 'POST /messages/{draft}/attachments/createUploadSession'])
        assert 'ErrorMessageSizeExceeded' in str(exc.value)

    def test_a_chunk_put_fails_with_400(self, client, graph, war_room):
        graph.upload.fail = {2: graph_error(400, 'error_upload_invalid_range.json')}
        war_room.add('1@1', 'big.bin', size=20_000_000)
        with pytest.raises(mgm.MailError) as exc:
            mgm.send_mail_command(client, sendmail(attachIDs='1@1'))
        self.assert_cleaned_up(graph, exc, ['POST /messages', 'POST /messages/{draft}/attachments/createUploadSession',
                                            'PUT {upload}', 'PUT {upload}', 'PUT {upload}'])
        assert 'HTTP 400 ErrorInvalidRequest' in str(exc.value)

    def test_a_chunk_put_stays_503_beyond_the_retry_budget(self, make_client, requests_mock, war_room, sleeps):
        client = make_client(max_attempts=3)
        graph = Graph(requests_mock)
        busy = graph_error(503, 'error_service_unavailable.json', {'Retry-After': '2'})
        graph.upload.fail = {0: [busy, busy, busy]}
        war_room.add('1@1', 'big.bin', size=5 * MIB)
        with pytest.raises(mgm.MailError) as exc:
            mgm.send_mail_command(client, sendmail(attachIDs='1@1'))
        self.assert_cleaned_up(graph, exc, ['POST /messages', 'POST /messages/{draft}/attachments/createUploadSession']
                               + ['PUT {upload}'] * 3)
        assert sleeps.waits == [2.0, 2.0]
        assert 'unavailable (HTTP 503)' in str(exc.value)

    def test_the_last_chunk_not_answered_with_201(self, client, graph, war_room):
        graph.upload.final_status = 200
        war_room.add('1@1', 'big.bin', size=5 * MIB)
        with pytest.raises(mgm.MailError) as exc:
            mgm.send_mail_command(client, sendmail(attachIDs='1@1'))
        self.assert_cleaned_up(graph, exc, ['POST /messages', 'POST /messages/{draft}/attachments/createUploadSession',
                                            'PUT {upload}', 'PUT {upload}'])
        assert "upload of 'big.bin' did not complete (last status 200)" in str(exc.value)

    @pytest.mark.parametrize('status, fixture', [(400, 'error_message_size_exceeded.json'),
                                                 (403, 'error_access_denied.json')])
    def test_the_final_send_fails(self, client, graph, war_room, status, fixture):
        graph.m.post(f'{graph.draft_url}/send', **graph_error(status, fixture))
        war_room.add('1@1', 'big.bin', size=5 * MIB)
        with pytest.raises(mgm.MailError) as exc:
            mgm.send_mail_command(client, sendmail(attachIDs='1@1'))
        assert graph.trail() == draft_flow_with_one_upload(2) + self.DELETED
        assert 'The draft was deleted; nothing was sent.' in str(exc.value)
        assert f'HTTP {status}' in str(exc.value)

    def test_a_final_send_throttled_beyond_the_retry_budget_deletes_the_draft(self, make_client, requests_mock,
                                                                              war_room, sleeps):
        """A 429 that never ends means Graph refused the send: the draft must not be left behind."""
        client = make_client(max_attempts=2)
        graph = Graph(requests_mock)
        graph.m.post(f'{graph.draft_url}/send', **graph_error(429, 'error_throttled.json', {'Retry-After': '1'}))
        war_room.add('1@1', 'big.bin', size=5 * MIB)
        with pytest.raises(mgm.MailError) as exc:
            mgm.send_mail_command(client, sendmail(attachIDs='1@1'))
        assert graph.trail() == draft_flow_with_one_upload(2)[:-1] + ['POST /messages/{draft}/send'] * 2 + self.DELETED
        assert 'The draft was deleted; nothing was sent.' in str(exc.value)

    def test_an_upload_continues_where_graph_says_the_next_upload_begins(self, client, graph, war_room):
        """Graph may keep less than a chunk: its nextExpectedRanges, not our own count, says where to go on."""
        data = war_room.add('1@1', 'big.bin', size=9 * MIB)
        graph.upload.accept_only = {0: MIB}
        mgm.send_mail_command(client, sendmail(attachIDs='1@1'))
        assert [p.headers['Content-Range'] for p in graph.puts()] == [
            'bytes 0-4194303/9437184', 'bytes 1048576-5242879/9437184', 'bytes 5242880-9437183/9437184']
        assert graph.puts()[0].body[:MIB] + b''.join(p.body for p in graph.puts()[1:]) == data

    def test_an_upload_that_makes_no_progress_stops_and_deletes_the_draft(self, client, graph, war_room):
        war_room.add('1@1', 'big.bin', size=5 * MIB)
        graph.upload.accept_only = {0: 0}
        with pytest.raises(mgm.MailError) as exc:
            mgm.send_mail_command(client, sendmail(attachIDs='1@1'))
        assert 'made no progress' in str(exc.value) and 'The draft was deleted; nothing was sent.' in str(exc.value)
        assert len(graph.puts()) == 1

    def test_a_small_attachment_post_fails(self, client, graph, war_room):
        graph.m.post(f'{graph.draft_url}/attachments', **graph_error(413, 'error_attachment_too_large.json'))
        war_room.add('1@1', 'one.bin', size=2 * MIB)
        war_room.add('2@1', 'two.bin', size=2 * MIB)
        with pytest.raises(mgm.MailError) as exc:
            mgm.send_mail_command(client, sendmail(attachIDs='1@1,2@1'))
        self.assert_cleaned_up(graph, exc, ['POST /messages', 'POST /messages/{draft}/attachments'])
        assert 'ErrorAttachmentSizeLimitExceeded' in str(exc.value)

    def test_the_second_of_two_uploads_fails_so_the_first_is_not_sent_alone(self, client, graph, war_room):
        graph.m.post(f'{graph.draft_url}/attachments/createUploadSession', [
            {'status_code': 201, 'json': SESSION}, graph_error(403, 'error_access_denied.json')])
        war_room.add('1@1', 'a.bin', size=3 * MIB)
        war_room.add('2@1', 'b.bin', size=3 * MIB)
        with pytest.raises(mgm.MailError) as exc:
            mgm.send_mail_command(client, sendmail(attachIDs='1@1,2@1'))
        self.assert_cleaned_up(graph, exc, ['POST /messages', 'POST /messages/{draft}/attachments/createUploadSession',
                                            'PUT {upload}', 'POST /messages/{draft}/attachments/createUploadSession'])

    def test_when_the_delete_fails_too_the_draft_id_is_named(self, client, graph, war_room):
        graph.m.post(f'{graph.draft_url}/attachments/createUploadSession', **graph_error(403, 'error_access_denied.json'))
        graph.m.delete(graph.draft_url, **graph_error(403, 'error_access_denied.json'))
        war_room.add('1@1', 'big.bin', size=5 * MIB)
        with pytest.raises(mgm.MailError) as exc:
            mgm.send_mail_command(client, sendmail(attachIDs='1@1'))
        assert graph.trail()[-1] == 'DELETE /messages/{draft}'
        assert 'POST /messages/{draft}/send' not in graph.trail()
        assert f"Deleting the draft {DRAFT['id']} failed too" in str(exc.value)
        assert 'delete it by hand' in str(exc.value)
        assert 'nothing was sent' not in str(exc.value)

    def test_create_draft_removes_its_draft_when_an_upload_fails(self, client, graph, war_room):
        graph.upload.fail = {0: graph_error(400, 'error_upload_invalid_range.json')}
        war_room.add('1@1', 'big.bin', size=5 * MIB)
        with pytest.raises(mgm.MailError, match='The draft was deleted'):
            mgm.create_draft_command(client, {'subject': 's', 'attachIDs': '1@1'})
        assert graph.trail() == ['POST /messages', 'POST /messages/{draft}/attachments/createUploadSession',
                                 'PUT {upload}', 'DELETE /messages/{draft}']

    def test_reply_mail_removes_the_reply_draft_when_an_upload_fails(self, client, requests_mock, war_room):
        graph = Graph(requests_mock, draft=REPLY_DRAFT)
        graph.upload.fail = {0: graph_error(400, 'error_upload_invalid_range.json')}
        war_room.add('1@1', 'big.bin', size=5 * MIB)
        with pytest.raises(mgm.MailError, match='nothing was sent'):
            mgm.reply_mail_command(client, {'to': 'kevin.sharp@fabrikam.example', 'subject': 'Suspicious invoice',
                                            'inReplyTo': ORIGINAL_ID, 'attachIDs': '1@1'})
        assert graph.trail() == ['POST /messages/{original}/createReply',
                                 'POST /messages/{draft}/attachments/createUploadSession', 'PUT {upload}',
                                 'DELETE /messages/{draft}']

    def test_creating_the_draft_fails_nothing_else_happens(self, client, graph, war_room):
        graph.m.post(f'{BASE}/messages', **graph_error(403, 'error_access_denied.json'))
        war_room.add('1@1', 'big.bin', size=5 * MIB)
        with pytest.raises(mgm.MailError, match=f'Mailbox {USER}.*Mail.Send'):
            mgm.send_mail_command(client, sendmail(attachIDs='1@1'))
        assert graph.trail() == ['POST /messages']

    @pytest.mark.parametrize('failure', [
        pytest.param({'exc': requests.exceptions.ReadTimeout}, id='read-timeout'),
        pytest.param({'exc': requests.exceptions.ConnectionError('Connection aborted: RemoteDisconnected')},
                     id='connection-dropped'),
        pytest.param(graph_error(504, 'error_service_unavailable.json'), id='gateway-timeout'),
    ])
    def test_an_unanswered_send_is_not_reported_as_not_sent(self, client, graph, war_room, failure):
        """If POST /send was transmitted but no answer came, Exchange may well have sent the mail. With
        immutable ids the draft's id then names the Sent Items copy. The command must not delete that item
        blindly nor claim 'nothing was sent'; the truth is 'the outcome is unknown' (or, after checking the
        item, 'it was sent')."""
        graph.m.post(f'{graph.draft_url}/send', **failure)
        graph.m.get(graph.draft_url, json={**DRAFT, 'isDraft': False, 'sentDateTime': '2024-03-11T09:31:09Z'})
        war_room.add('1@1', 'big.bin', size=5 * MIB)
        with pytest.raises(mgm.MailError) as exc:
            mgm.send_mail_command(client, sendmail(attachIDs='1@1'))
        assert 'nothing was sent' not in str(exc.value)
        assert 'DELETE /messages/{draft}' not in graph.trail()


# =============================================================================================== RESULTS
class TestSendMailResults:
    def test_sendmail_result_is_accepted_without_an_id(self, client, graph, war_room):
        entries = mgm.send_mail_command(client, sendmail(
            cc='alexw@contoso.com', bcc='audit@contoso.com', replyTo='secdesk@contoso.com', htmlBody='<p>' + 'y' * 300,
            headers='x-case-id:4711', flag='flagged'))
        context = context_of(entries[0], 'MicrosoftGraph.Email')
        assert 'ID' not in context
        assert context == {
            'Status': 'accepted', 'subject': 'Incident 4711: suspicious sign-in',
            'body': '<p>' + 'y' * 300, 'bodyPreview': ('y' * 300)[:255],
            'toRecipients': ['meganb@contoso.com'], 'ccRecipients': ['alexw@contoso.com'],
            'bccRecipients': ['audit@contoso.com'], 'replyTo': ['secdesk@contoso.com'],
            'internetMessageHeaders': [{'name': 'x-case-id', 'value': '4711'}],
            'flag': {'flagStatus': 'flagged'}, 'importance': 'Normal'}
        readable = entries[0]['HumanReadable']
        assert 'Status: accepted' in readable and 'it returns no message id' in readable
        assert 'meganb@contoso.com, alexw@contoso.com, audit@contoso.com' in readable
        assert entries[0]['Contents'] == context

    def test_declared_outputs_are_written(self, client, graph, war_room):
        entry = mgm.send_mail_command(client, sendmail())[0]
        # sendMail returns no id: the one output that stays empty on this path.
        assert yml_outputs('send-mail') - {'MicrosoftGraph.Email.ID'} - top_level_paths(entry) == set()
        war_room.add('1@1', 'big.bin', size=INLINE_LIMIT)
        entry = mgm.send_mail_command(client, sendmail(attachIDs='1@1'))[0]
        assert yml_outputs('send-mail') - top_level_paths(entry) == set()

    def test_subject_with_markdown_is_escaped_in_the_readable(self, client, graph, war_room):
        entry = mgm.send_mail_command(client, sendmail(subject='a | b\nc'))[0]
        assert 'Subject: a \\| b c' in entry['HumanReadable']


# =============================================================================================== REPLY-MAIL
class TestReplyMail:
    """reply-mail: createReply -> (attachments) -> send, returning the reply's own id."""

    ARGS: ClassVar = {'to': 'kevin.sharp@fabrikam.example', 'subject': 'Suspicious invoice', 'inReplyTo': ORIGINAL_ID,
            'body': 'We are looking into it.'}

    @pytest.fixture
    def graph(self, requests_mock) -> Graph:
        return Graph(requests_mock, draft=REPLY_DRAFT)

    def test_reply_goes_through_create_reply_and_returns_the_new_id(self, client, graph, war_room):
        entry = mgm.reply_mail_command(client, {**self.ARGS, 'cc': 'alexw@contoso.com', 'bcc': 'audit@contoso.com',
                                                'replyTo': 'secdesk@contoso.com'})
        assert graph.trail() == ['POST /messages/{original}/createReply', 'POST /messages/{draft}/send']
        assert graph.json_of('POST', '/createReply') == {
            'message': {'toRecipients': [{'emailAddress': {'address': 'kevin.sharp@fabrikam.example'}}],
                        'ccRecipients': [{'emailAddress': {'address': 'alexw@contoso.com'}}],
                        'bccRecipients': [{'emailAddress': {'address': 'audit@contoso.com'}}],
                        'replyTo': [{'emailAddress': {'address': 'secdesk@contoso.com'}}],
                        'subject': 'Re: Suspicious invoice'},
            'comment': 'We are looking into it.'}
        context = context_of(entry, 'MicrosoftGraph.SentMail')
        assert context['ID'] == REPLY_DRAFT['id'] != ORIGINAL_ID
        assert context['InReplyTo'] == ORIGINAL_ID
        assert context['Status'] == 'sent'
        assert (context['subject'], context['body'], context['toRecipients'], context['ccRecipients'],
                context['bccRecipients'], context['replyTo']) == (
            'Re: Suspicious invoice', 'We are looking into it.', ['kevin.sharp@fabrikam.example'],
            ['alexw@contoso.com'], ['audit@contoso.com'], ['secdesk@contoso.com'])
        assert f"Reply ID: {REPLY_DRAFT['id']}" in entry['HumanReadable']
        assert yml_outputs('reply-mail') - top_level_paths(entry) == set()

    @pytest.mark.parametrize('subject, expected', [('Suspicious invoice', 'Re: Suspicious invoice'),
                                                   ('Re: Suspicious invoice', 'Re: Suspicious invoice'),
                                                   ('RE: Suspicious invoice', 'RE: Suspicious invoice'),
                                                   ('re:Suspicious invoice', 're:Suspicious invoice'),
                                                   ('Fwd: Suspicious invoice', 'Re: Fwd: Suspicious invoice')])
    def test_re_is_added_once(self, client, graph, war_room, subject, expected):
        entry = mgm.reply_mail_command(client, {**self.ARGS, 'subject': subject})
        assert graph.json_of('POST', '/createReply')['message']['subject'] == expected
        assert context_of(entry, 'MicrosoftGraph.SentMail')['subject'] == expected

    def test_html_body_is_the_comment(self, client, graph, war_room):
        mgm.reply_mail_command(client, {**self.ARGS, 'htmlBody': '<p>We are <b>on it</b></p>'})
        assert graph.json_of('POST', '/createReply')['comment'] == '<p>We are <b>on it</b></p>'

    def test_only_fields_a_reply_may_set_are_sent(self, client, graph, war_room):
        mgm.reply_mail_command(client, {**self.ARGS, 'importance': 'High', 'flag': 'flagged'})
        message = graph.json_of('POST', '/createReply')['message']
        assert set(message) == {'toRecipients', 'subject'}

    def test_attachments_ride_in_the_reply_draft_or_are_uploaded_to_it(self, client, graph, war_room):
        small = war_room.add('1@1', 'ioc.csv', size=500)
        war_room.add('2@1', 'sample.zip', size=6 * MIB)
        entry = mgm.reply_mail_command(client, {**self.ARGS, 'attachIDs': '1@1,2@1'})
        assert graph.trail() == ['POST /messages/{original}/createReply',
                                 'POST /messages/{draft}/attachments/createUploadSession', 'PUT {upload}',
                                 'PUT {upload}', 'POST /messages/{draft}/send']
        attachments = graph.json_of('POST', '/createReply')['message']['attachments']
        assert [(a['name'], base64.b64decode(a['contentBytes'])) for a in attachments] == [('ioc.csv', small)]
        assert graph.json_of('POST', '/createUploadSession')['AttachmentItem']['name'] == 'sample.zip'
        assert context_of(entry, 'MicrosoftGraph.SentMail')['ID'] == REPLY_DRAFT['id']

    def test_from_replies_from_that_mailbox(self, client, requests_mock, war_room):
        other = Graph(requests_mock, user=OTHER, draft=REPLY_DRAFT)
        mgm.reply_mail_command(client, {**self.ARGS, 'from': OTHER})
        assert other.trail() == ['POST /messages/{original}/createReply', 'POST /messages/{draft}/send']
        assert requests_mock.request_history[0].url.startswith(OBASE)

    def test_missing_original_names_the_message_and_mailbox(self, client, graph, war_room):
        graph.m.post(f'{graph.original_url}/createReply', **graph_error(404, 'error_item_not_found.json'))
        with pytest.raises(mgm.MailError) as exc:
            mgm.reply_mail_command(client, self.ARGS)
        assert f'Message {ORIGINAL_ID} in mailbox {USER} was not found' in str(exc.value)
        assert 'ErrorItemNotFound' in str(exc.value)
        assert graph.trail() == ['POST /messages/{original}/createReply']

    def test_data_images_in_the_html_reply_are_referenced_by_cid(self, client, graph, war_room):
        """compose_mail turns the data: image into an inline attachment with a content id; the reply's
        comment must then reference it by cid: instead of still carrying the data: URI."""
        png64 = base64.b64encode(TINY_PNG).decode()
        mgm.reply_mail_command(client, {**self.ARGS, 'htmlBody': f'<p>See:</p><img src="data:image/png;base64,{png64}">'})
        body = graph.json_of('POST', '/createReply')
        inline = [a for a in body['message'].get('attachments', []) if a.get('isInline')]
        assert len(inline) == 1
        assert 'data:image' not in body['comment']
        assert f'cid:{inline[0]["contentId"]}' in body['comment']


# =============================================================================================== REPLY-TO
class TestReplyTo:
    """msgraph-mail-reply-to: /reply with a comment; with attachments, createReply -> attachments -> send."""

    ARGS: ClassVar = {'ID': ORIGINAL_ID, 'body': 'Thanks, we blocked the sender.',
                      'to': 'kevin.sharp@fabrikam.example, alexw@contoso.com'}

    def test_without_attachments_one_reply_call_with_the_comment(self, client, graph, war_room):
        entry = mgm.reply_to_command(client, self.ARGS)
        assert graph.trail() == ['POST /messages/{original}/reply']
        assert graph.json_of('POST', '/reply') == {
            'message': {'toRecipients': [{'emailAddress': {'address': 'kevin.sharp@fabrikam.example'}},
                                         {'emailAddress': {'address': 'alexw@contoso.com'}}]},
            'comment': 'Thanks, we blocked the sender.'}
        assert entry['HumanReadable'] == ('### Replied to: kevin.sharp@fabrikam.example, alexw@contoso.com '
                                          'with comment: Thanks, we blocked the sender.')

    def test_with_attachments_create_reply_then_send(self, client, requests_mock, war_room):
        graph = Graph(requests_mock, draft=REPLY_DRAFT)
        small = war_room.add('1@1', 'ioc.csv', size=500)
        war_room.add('2@1', 'sample.zip', size=INLINE_LIMIT)
        logo = war_room.add('3@1', 'logo.png', data=TINY_PNG)
        mgm.reply_to_command(client, {**self.ARGS, 'attachIDs': '1@1,2@1', 'attachNames': 'iocs.csv,malware.zip',
                                      'attachCIDs': '3@1'})
        assert graph.trail() == ['POST /messages/{original}/createReply',
                                 'POST /messages/{draft}/attachments/createUploadSession', 'PUT {upload}',
                                 'POST /messages/{draft}/send']
        assert not graph.requests('POST', '/reply')
        body = graph.json_of('POST', '/createReply')
        assert body['comment'] == 'Thanks, we blocked the sender.'
        assert [(a['name'], a['isInline'], a.get('contentId'), base64.b64decode(a['contentBytes']))
                for a in body['message']['attachments']] == [('iocs.csv', False, None, small),
                                                             ('logo.png', True, '3@1', logo)]
        assert graph.json_of('POST', '/createUploadSession')['AttachmentItem']['name'] == 'malware.zip'

    def test_from_is_the_mailbox_that_replies(self, client, requests_mock, war_room):
        other = Graph(requests_mock, user=OTHER)
        mgm.reply_to_command(client, {**self.ARGS, 'from': OTHER})
        assert other.trail() == ['POST /messages/{original}/reply']
        assert requests_mock.request_history[0].url == f'{OBASE}/messages/{seg(ORIGINAL_ID)}/reply'

    def test_missing_message_names_the_message_and_mailbox(self, client, graph, war_room):
        graph.m.post(f'{graph.original_url}/reply', **graph_error(404, 'error_item_not_found.json'))
        with pytest.raises(mgm.MailError, match=re.escape(f'Message {ORIGINAL_ID} in mailbox {USER} was not found')):
            mgm.reply_to_command(client, self.ARGS)

    def test_access_denied_names_mail_send(self, client, graph, war_room):
        graph.m.post(f'{graph.original_url}/reply', **graph_error(403, 'error_access_denied.json'))
        with pytest.raises(mgm.MailError, match='Mail.Send'):
            mgm.reply_to_command(client, self.ARGS)


# =============================================================================================== FORWARD
class TestForward:
    ARGS: ClassVar = {'message_id': ORIGINAL_ID, 'to': 'phishing-report@contoso.com', 'comment': 'Reported by a user.'}

    @pytest.fixture
    def graph(self, requests_mock) -> Graph:
        return Graph(requests_mock, draft=FORWARD_DRAFT)

    def test_forward_creates_a_forward_draft_and_sends_it(self, client, graph, war_room):
        entry = mgm.forward_email_command(client, {**self.ARGS, 'cc': 'alexw@contoso.com'})
        assert graph.trail() == ['POST /messages/{original}/createForward', 'POST /messages/{draft}/send']
        assert graph.json_of('POST', '/createForward') == {
            'message': {'toRecipients': [{'emailAddress': {'address': 'phishing-report@contoso.com'}}],
                        'ccRecipients': [{'emailAddress': {'address': 'alexw@contoso.com'}}]},
            'comment': 'Reported by a user.'}
        row = context_of(entry, 'MSGraphMail.ForwardedEmail')
        assert row['ID'] == FORWARD_DRAFT['id'] != ORIGINAL_ID
        assert row['To'] == ['phishing-report@contoso.com'] and row['UserID'] == USER
        assert yml_outputs('msgraph-mail-forward-email') - top_level_paths(entry) == set()

    def test_user_id_is_the_mailbox(self, client, requests_mock, war_room):
        other = Graph(requests_mock, user=OTHER, draft=FORWARD_DRAFT)
        entry = mgm.forward_email_command(client, {**self.ARGS, 'user_id': OTHER})
        assert other.trail() == ['POST /messages/{original}/createForward', 'POST /messages/{draft}/send']
        assert context_of(entry, 'MSGraphMail.ForwardedEmail')['UserID'] == OTHER

    def test_forward_with_a_large_attachment(self, client, graph, war_room):
        war_room.add('1@1', 'case-notes.docx', size=INLINE_LIMIT + 5)
        mgm.forward_email_command(client, {**self.ARGS, 'attachIDs': '1@1'})
        assert graph.trail() == ['POST /messages/{original}/createForward',
                                 'POST /messages/{draft}/attachments/createUploadSession', 'PUT {upload}',
                                 'POST /messages/{draft}/send']

    def test_missing_message_names_it(self, client, graph, war_room):
        graph.m.post(f'{graph.original_url}/createForward', **graph_error(404, 'error_item_not_found.json'))
        with pytest.raises(mgm.MailError, match=re.escape(f'Message {ORIGINAL_ID} in mailbox {USER} was not found')):
            mgm.forward_email_command(client, self.ARGS)
        assert graph.trail() == ['POST /messages/{original}/createForward']


# =============================================================================================== DRAFTS
class TestCreateDraft:
    def test_draft_is_created_and_not_sent(self, client, requests_mock, war_room):
        graph = Graph(requests_mock, user=OTHER)
        entry = mgm.create_draft_command(client, {'from': OTHER, 'to': 'meganb@contoso.com', 'cc': 'alexw@contoso.com',
                                                  'subject': 'Incident 4711: suspicious sign-in',
                                                  'body': 'Please review the attached evidence.', 'bodyType': 'text'})
        assert graph.trail() == ['POST /messages']
        assert graph.json_of('POST', '/messages') == {
            'toRecipients': [{'emailAddress': {'address': 'meganb@contoso.com'}}],
            'ccRecipients': [{'emailAddress': {'address': 'alexw@contoso.com'}}],
            'subject': 'Incident 4711: suspicious sign-in',
            'body': {'contentType': 'Text', 'content': 'Please review the attached evidence.'},
            'importance': 'Normal', 'flag': {'flagStatus': 'notFlagged'}}
        draft = context_of(entry, 'MicrosoftGraph.Draft')
        assert draft['ID'] == DRAFT['id'] and draft['IsDraft'] is True
        assert (draft['To'], draft['Cc'], draft['Bcc'], draft['From'], draft['Sender']) == (
            ['meganb@contoso.com'], ['alexw@contoso.com'], [], 'soc@contoso.com', 'soc@contoso.com')
        assert draft['Subject'] == DRAFT['subject'] and draft['BodyType'] == 'html'
        assert entry['Contents'] == DRAFT
        assert f"Created draft with id {DRAFT['id']}" in entry['HumanReadable']
        assert yml_outputs('msgraph-mail-create-draft') - top_level_paths(entry) == set()

    def test_draft_needs_no_recipients_and_defaults_to_html(self, client, graph, war_room):
        mgm.create_draft_command(client, {'subject': 'notes', 'body': '<p>x</p>'})
        assert graph.json_of('POST', '/messages')['body'] == {'contentType': 'HTML', 'content': '<p>x</p>'}
        assert graph.m.request_history[0].url == f'{BASE}/messages'

    def test_draft_with_small_and_large_attachments_is_not_sent(self, client, graph, war_room):
        war_room.add('1@1', 'a.txt', size=10)
        war_room.add('2@1', 'b.bin', size=INLINE_LIMIT)
        mgm.create_draft_command(client, {'subject': 's', 'attachIDs': '1@1,2@1'})
        assert graph.trail() == ['POST /messages', 'POST /messages/{draft}/attachments/createUploadSession',
                                 'PUT {upload}']
        assert [a['name'] for a in graph.json_of('POST', '/messages')['attachments']] == ['a.txt']

    def test_access_denied_names_mail_readwrite(self, client, graph, war_room):
        graph.m.post(f'{BASE}/messages', **graph_error(403, 'error_access_denied.json'))
        with pytest.raises(mgm.MailError, match='Mail.ReadWrite'):
            mgm.create_draft_command(client, {'subject': 's'})


class TestSendDraft:
    def test_posts_send_for_the_draft(self, client, requests_mock):
        graph = Graph(requests_mock, user=OTHER)
        entry = mgm.send_draft_command(client, {'draft_id': DRAFT['id'], 'from': OTHER})
        assert graph.trail() == ['POST /messages/{draft}/send']
        assert requests_mock.request_history[0].url == f'{OBASE}/messages/{seg(DRAFT["id"])}/send'
        assert entry['HumanReadable'] == f"### The draft with ID {DRAFT['id']} was sent successfully."

    def test_draft_id_with_a_slash_is_one_path_segment(self, client, graph):
        mgm.send_draft_command(client, {'draft_id': DRAFT['id'].replace('-', '/')})
        assert graph.trail() == ['POST /messages/{draft}/send']

    def test_missing_draft_names_draft_and_mailbox(self, client, graph):
        graph.m.post(f'{graph.draft_url}/send', **graph_error(404, 'error_item_not_found.json'))
        with pytest.raises(mgm.MailError, match=re.escape(f"Draft {DRAFT['id']} in mailbox {USER} was not found")):
            mgm.send_draft_command(client, {'draft_id': DRAFT['id']})


# =============================================================================================== GRAPH ERRORS
class TestGraphErrors:
    def test_403_on_sendmail_names_mail_send(self, client, graph, war_room):
        graph.m.post(f'{BASE}/sendMail', **graph_error(403, 'error_access_denied.json'))
        with pytest.raises(mgm.MailError) as exc:
            mgm.send_mail_command(client, sendmail())
        message = str(exc.value)
        assert f'Access to Mailbox {USER} was denied (ErrorAccessDenied)' in message
        assert 'Mail.Send' in message and 'request-id: req-403' in message

    def test_unknown_sending_mailbox_is_named(self, client, graph, war_room):
        graph.m.post(f'{BASE}/sendMail', status_code=404, json={'error': {
            'code': 'ErrorInvalidUser', 'message': f"The requested user '{USER}' is invalid."}})
        with pytest.raises(mgm.MailError, match=f'mailbox was not found.*ErrorInvalidUser.*{USER}'):
            mgm.send_mail_command(client, sendmail())

    def test_401_gets_a_new_token_once(self, client, graph, war_room):
        graph.m.post(f'{BASE}/sendMail', [{'status_code': 401, 'json': {'error': {
            'code': 'InvalidAuthenticationToken', 'message': 'Access token has expired or is not yet valid.'}}},
            {'status_code': 202}])
        mgm.send_mail_command(client, sendmail())
        first, second = graph.requests('POST', '/sendMail')
        assert first.headers['Authorization'] != second.headers['Authorization']

    def test_429_with_retry_after_is_retried(self, client, graph, war_room, sleeps):
        graph.m.post(f'{BASE}/sendMail', [graph_error(429, 'error_throttled.json', {'Retry-After': '7'}),
                                          {'status_code': 202}])
        entry = mgm.send_mail_command(client, sendmail())[0]
        assert sleeps.waits == [7.0]
        assert graph.trail() == ['POST /sendMail', 'POST /sendMail']
        assert graph.m.request_history[0].json() == graph.m.request_history[1].json()
        assert context_of(entry, 'MicrosoftGraph.Email')['Status'] == 'accepted'

    def test_429_beyond_the_budget_says_when_to_retry(self, make_client, requests_mock, war_room, sleeps):
        client = make_client(max_attempts=2)
        graph = Graph(requests_mock)
        graph.m.post(f'{BASE}/sendMail', **graph_error(429, 'error_throttled.json', {'Retry-After': '30'}))
        with pytest.raises(mgm.ThrottledError, match=r'throttling.*ApplicationThrottled.*gave up after 2 attempt'):
            mgm.send_mail_command(client, sendmail())
        assert sleeps.waits == [30.0]

    def test_sendmail_is_not_repeated_after_a_read_timeout(self, client, graph, war_room):
        graph.m.post(f'{BASE}/sendMail', exc=requests.exceptions.ReadTimeout)
        with pytest.raises(mgm.MailError, match='did not answer within the HTTP timeout'):
            mgm.send_mail_command(client, sendmail())
        assert graph.trail() == ['POST /sendMail']


# =============================================================================================== MAIN
@pytest.fixture
def run_main(monkeypatch, client):
    """Runs main() as XSOAR does, with build_client returning the requests-mock wired client."""

    def run(command: str, args: dict) -> list:
        entries: list = []
        monkeypatch.setattr(demisto, 'command', lambda: command)
        monkeypatch.setattr(demisto, 'params', lambda: {'url': 'https://graph.microsoft.com', 'mailbox_to_fetch': USER})
        monkeypatch.setattr(demisto, 'args', lambda: dict(args))
        monkeypatch.setattr(demisto, 'results', lambda e: entries.extend(e if isinstance(e, list) else [e]))
        monkeypatch.setattr(mgm, 'build_client', lambda params, redactor, store, default_user: client)
        mgm.main()
        return entries

    return run


class TestMain:
    @pytest.mark.parametrize('command, function', [
        ('send-mail', 'send_mail_command'), ('msgraph-mail-create-draft', 'create_draft_command'),
        ('msgraph-mail-send-draft', 'send_draft_command'), ('msgraph-mail-reply-to', 'reply_to_command'),
        ('reply-mail', 'reply_mail_command'), ('msgraph-mail-forward-email', 'forward_email_command')])
    def test_sending_commands_are_dispatched(self, command, function):
        assert mgm.COMMANDS[command] is getattr(mgm, function)

    def test_send_mail_through_main(self, run_main, graph, war_room):
        war_room.add('15@8', 'report.pdf', size=100)
        entries = run_main('send-mail', sendmail(attachIDs='15@8', renderBody='true', htmlBody='<p>hi</p>'))
        assert [e['Type'] for e in entries] == [mgm.ENTRY_NOTE, mgm.ENTRY_NOTE]
        assert context_of(entries[0], 'MicrosoftGraph.Email')['Status'] == 'accepted'
        assert graph.trail() == ['POST /sendMail']

    def test_bad_argument_is_an_error_entry_and_nothing_is_sent(self, run_main, requests_mock, war_room):
        entries = run_main('send-mail', sendmail(headers='Bcc:attacker@evil.example'))
        assert len(entries) == 1 and entries[0]['Type'] == mgm.ENTRY_ERROR
        assert "Invalid argument 'headers'" in entries[0]['Contents']
        assert 'Traceback' not in entries[0]['Contents']
        assert_nothing_requested(requests_mock)

    def test_cleanup_message_reaches_the_war_room(self, run_main, graph, war_room):
        graph.upload.fail = {0: graph_error(400, 'error_upload_invalid_range.json')}
        war_room.add('1@1', 'big.bin', size=5 * MIB)
        entries = run_main('reply-mail', {'to': 'kevin.sharp@fabrikam.example', 'subject': 'x',
                                          'inReplyTo': ORIGINAL_ID, 'attachIDs': '1@1'})
        assert entries[0]['Type'] == mgm.ENTRY_ERROR
        assert 'The draft was deleted; nothing was sent.' in entries[0]['Contents']
