"""Unit tests for fetch-incidents: delta change detection, the pending queue, $batch reads, attachments, incidents.

Graph is played by `FakeGraph`, a small in-memory Exchange mailbox behind requests-mock. It answers the calls
fetch makes the way Microsoft documents them:
- the folder's message delta (learn.microsoft.com/graph/delta-query-messages): the first request returns the
  folder's current mail, later rounds return what arrived since the deltaLink; pages follow
  `@odata.nextLink` ($skiptoken) to one `@odata.deltaLink` ($deltatoken); `Prefer: odata.maxpagesize` is
  honoured; query options on the first request only; an old token can expire (410 / SyncStateNotFound);
- `$batch` (learn.microsoft.com/graph/json-batching): at most 20 requests, relative URLs, answers in any order,
  each item with its own status and Retry-After;
- message and attachment reads (with `$select` honoured), `/$value` downloads, PATCH isRead;
- the `receivedDateTime` window listing used where delta is unavailable (21Vianet);
- folders: well-known names, `childFolders` lookups by `displayName`, `GET mailFolders/{id}` with `$select`;
  deleting a folder moves it into Deleted Items (where its id and delta still work), as Graph does;
- `translateExchangeIds` (learn.microsoft.com/graph/api/user-translateexchangeids) from regular to immutable ids.

Every mail has an immutable id (returned when the request carries Prefer: IdType="ImmutableId", as fetch's do) and
a regular id that changes when the mail moves (what the existing integration stored). Both look like Exchange
ids, with '/', '+' and '='. Time is frozen at NOW.
The background is anchor-xsoar.md §3 (the incident shape we keep) and §8/§9 (the lost and duplicated mail of
the existing integration that these tests guard against).
"""
import base64
import copy
import json
import os
import re
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import requests_mock as requests_mock_module

import demistomock as demisto
import MicrosoftGraphMail as mgm
from conftest import TEST_DATA, load_json

USER = 'soc@contoso.com'
WORLDWIDE = 'https://graph.microsoft.com'
CHINA = 'https://microsoftgraph.chinacloudapi.cn'
NOW = datetime(2024, 3, 11, 10, 0, 0, tzinfo=UTC)

FIXTURE = load_json('fetch/message.json')
PHISH_FOLDER = load_json('fetch/child_folders_phishing.json')['value'][0]
PHISH_ID = PHISH_FOLDER['id']
NEW_PHISH_ID = PHISH_ID.replace('/cVUAAA=', '/zZ9AAA=')  # the id of a folder recreated under the same path
FOLDER_ID_PREFIX = PHISH_ID[:-len('AAEy/cVUAAA=')]
INBOX_ID = PHISH_FOLDER['parentFolderId']
ROOT_ID = FOLDER_ID_PREFIX + 'AAAAAEIAAA='
DELETED_ITEMS_ID = FOLDER_ID_PREFIX + 'AAAAAEKAAA='
# Regular (restId) message ids: what Graph returns without Prefer: IdType="ImmutableId"; they change on a move.
REGULAR_ID_PREFIX = ('AAMkAGVmMDEzMTM4LTZmYWUtNDdkNC1hMDZiLTU1OGY5OTZhYmY4OABGAAAAAAAiQ8W967B7TKBjgx9rV'
                     'EURBwAiIsqMbYjsT5e/T7KzowPTAAEy/cVUAAAiIsqMbYjsT5e/T7KzowPTAA')
# The existing integration's last run: its `time` and Graph's regular ids of the mail it ingested.
LEGACY_LAST_RUN = load_json('fetch/legacy_last_run.json')
LEGACY_LAST_ID = LEGACY_LAST_RUN['LAST_RUN_IDS'][0]
LEGACY_FOUND_ID = next(i for i in LEGACY_LAST_RUN['found_incident_ids'] if i != LEGACY_LAST_ID)

PDF_ID, ZIP_ID, ITEM_ID, PNG_ID, REF_ID = (a['id'] for a in FIXTURE['attachments'])
PDF_BYTES = (b'%PDF-1.4\n%\xe2\xe3\xcf\xd3\n' + bytes(range(256)) * 16)[:4096]
ZIP_BYTES = (b'PK\x03\x04\x14\x00\x00\x00' + bytes(range(256)) * 10241)[:2621440]
PNG_BYTES = (b'\x89PNG\r\n\x1a\n' + bytes(range(256)) * 8)[:1830]
with open(os.path.join(TEST_DATA, 'fetch', 'item_attachment.eml'), 'rb') as _eml:
    EML_BYTES = _eml.read()
FIXTURE_CONTENTS = {PDF_ID: PDF_BYTES, ZIP_ID: ZIP_BYTES, ITEM_ID: EML_BYTES, PNG_ID: PNG_BYTES}
CID_NAME = 'image001.png@01DA7390.1C2B3E40-attachmentName-image001.png'

# The keys of the existing integration's parsed email (anchor-xsoar.md §3); its mapper reads them from rawJSON.
ANCHOR_EMAIL_KEYS = ['ID', 'CreatedTime', 'ModifiedTime', 'ReceivedTime', 'SentTime', 'Subject', 'Importance',
                     'ConversationID', 'IsRead', 'IsDraft', 'MessageID', 'Categories', 'Headers', 'Sender', 'From',
                     'To', 'Cc', 'Bcc', 'Body', 'Text', 'BodyType', 'Attachments', 'Mailbox']
BASE_ATTACHMENT_PROPERTIES = {'id', 'name', 'contentType', 'size', 'isInline', 'lastModifiedDateTime'}
SETTINGS = {'enabled': True, 'mailbox': USER, 'folder': 'Inbox/Phishing', 'first_fetch': '1 day', 'limit': 50}


# ================================================================================ helpers
def at(**delta: float) -> str:
    """A Graph timestamp `delta` before NOW."""
    return (NOW - timedelta(**delta)).strftime('%Y-%m-%dT%H:%M:%SZ')


def seg(graph_id: str) -> str:
    """A Graph id as the (decoded) URL path segment Graph accepts: '/' written as '-'."""
    return graph_id.replace('/', '-')


def mail_id(n: int) -> str:
    return f'AAkALgAAAAAAHYQDEapmEc2byACqAC/EWg0AiIsqMbYjsT5e+T7KzowPTAA{n:06d}AAA='


def make_message(message_id: str, received: str, tag: str = '', attachments: list | None = None,
                 preview: str | None = None) -> dict:
    message = copy.deepcopy(FIXTURE)
    del message['@odata.context']
    message.update(id=message_id, receivedDateTime=received, createdDateTime=received, lastModifiedDateTime=received,
                   sentDateTime=received, subject=f'Mail {tag or message_id[-12:]}', attachments=attachments or [],
                   hasAttachments=bool(attachments))
    if preview is not None:
        message['bodyPreview'] = preview
    return message


def mail(n: int, received: str, **kwargs: Any) -> dict:
    return make_message(mail_id(n), received, tag=str(n), **kwargs)


def fixture_message(message_id: str = FIXTURE['id'], received: str = FIXTURE['receivedDateTime']) -> dict:
    message = copy.deepcopy(FIXTURE)
    del message['@odata.context']
    message.update(id=message_id, receivedDateTime=received)
    return message


def small_file(attachment_id: str, name: str, data: bytes) -> dict:
    return {'@odata.type': '#microsoft.graph.fileAttachment', '@odata.mediaContentType': 'application/pdf',
            'id': attachment_id, 'name': name, 'contentType': 'application/pdf', 'size': len(data), 'isInline': False}


def answer(status: int, fixture: str, **headers: str) -> tuple:
    return status, {'request-id': f'req-{status}', **headers}, load_json(f'fetch/{fixture}')


def throttled(retry_after: str = '1') -> tuple:
    return answer(429, 'error_throttled.json', **{'Retry-After': retry_after})


def unavailable(status: int = 503, retry_after: str | None = '1') -> tuple:
    headers = {'Retry-After': retry_after} if retry_after else {}
    return answer(status, 'error_service_unavailable.json', **headers)


def not_found() -> tuple:
    return answer(404, 'error_item_not_found.json')


def access_denied() -> tuple:
    return answer(403, 'error_access_denied.json')


def ids_of(incidents: list[dict]) -> list[str]:
    return [json.loads(incident['rawJSON'])['ID'] for incident in incidents]


def fetch(client: mgm.GraphClient, last_run: dict, **overrides: Any) -> tuple[dict, list[dict]]:
    """One fetch-incidents run; the last run and incidents make the JSON round trip the platform gives them."""
    settings = mgm.FetchSettings(**{**SETTINGS, **overrides})
    next_run, incidents = mgm.fetch_incidents(client, copy.deepcopy(last_run), settings)
    return json.loads(json.dumps(next_run)), json.loads(json.dumps(incidents))


class Feed:
    """Runs fetch after fetch as the platform does: the last run of one run is the input of the next."""

    def __init__(self, client: mgm.GraphClient, last_run: dict | None = None, **settings: Any):
        self.client = client
        self.settings = settings
        self.last_run: dict = last_run or {}
        self.runs: list[list[str]] = []
        self.incidents: list[dict] = []

    def run(self, **overrides: Any) -> list[str]:
        self.last_run, incidents = fetch(self.client, self.last_run, **{**self.settings, **overrides})
        self.incidents += incidents
        self.runs.append(ids_of(incidents))
        every = self.all_ids
        assert len(every) == len(set(every)), f'an id was returned twice: {sorted(i for i in every if every.count(i) > 1)}'
        return self.runs[-1]

    def drain(self, max_runs: int = 200) -> list[list[str]]:
        start = len(self.runs)
        for _ in range(max_runs):
            if not self.run() and not self.last_run['pending']:
                return self.runs[start:-1]
        raise AssertionError('fetch never drained the folder')

    @property
    def all_ids(self) -> list[str]:
        return [i for run in self.runs for i in run]


# ================================================================================ the fake mailbox
@dataclass
class Call:
    method: str
    path: str     # decoded, relative to /v1.0
    query: dict
    headers: Any
    body: Any = None
    url: str = ''
    status: int = 0


def split_url(url: str) -> tuple[str, dict]:
    parts = urllib.parse.urlsplit(url)
    path = '/'.join(urllib.parse.unquote(p) for p in parts.path.split('/'))
    query = {k: v[-1] for k, v in urllib.parse.parse_qs(parts.query, keep_blank_values=True).items()}
    return path, query


class FakeGraph:
    """One mailbox: the well-known folders, the fetch folder Inbox/Phishing and the mail, from Python dicts.

    Like Exchange, every message has an immutable id (what fetch asks for with Prefer: IdType="ImmutableId") and a
    regular id that changes when the message moves to another folder (what the existing integration stored).
    Deleting a folder moves it, with its mail, into Deleted Items, where its id and delta still work.
    """

    def __init__(self, requests_mock: Any, host: str = WORLDWIDE, user: str = USER):
        self.host = host
        self.base = f'{host}/v1.0'
        self.user = user
        self.folders: dict[str, dict] = {}      # folder id -> {'id', 'displayName', 'parentFolderId'}
        self.well_known = {'msgfolderroot': ROOT_ID, 'inbox': INBOX_ID, 'deleteditems': DELETED_ITEMS_ID}
        for folder_id, name, parent in [(ROOT_ID, 'Top of Information Store', ''), (INBOX_ID, 'Inbox', ROOT_ID),
                                        (DELETED_ITEMS_ID, 'Deleted Items', ROOT_ID), (PHISH_ID, 'Phishing', INBOX_ID)]:
            self.add_folder(folder_id, name, parent)
        self.fetch_folder = PHISH_ID            # where deliver() and move_in() put mail
        self.store: dict[str, dict] = {}        # every message of the mailbox by immutable id (reads are mailbox-wide)
        self.mail_in: dict[str, list[str]] = defaultdict(list)              # folder id -> ids in arrival order
        self.events: dict[str, list[tuple[str, str]]] = defaultdict(list)   # folder id -> what its delta reports
        self.regular: dict[str, str] = {}       # immutable id -> current regular id
        self.contents: dict[str, bytes] = {}    # attachment id -> bytes
        self.token_epoch = 0                    # tokens issued before this epoch are expired
        self.expired_answer: tuple | None = None
        self.max_page: int | None = None     # the service may return fewer items than maxpagesize
        self.delta_fails: tuple | None = None
        self.translate_fails: tuple | None = None
        self.script: dict[str, list] = defaultdict(list)  # id -> answers given once, before the normal one
        self.failing: dict[str, tuple] = {}     # id -> answer given every time
        self.patch_item_answer: tuple | None = None
        self.patch_batch_fails: tuple | None = None
        self.strict_attachment_select = False
        self.list_omits: set[str] = set()      # fields a folder listing leaves out although $select asks for them
        self.list_ignores_expand = False       # a folder listing that does not expand attachments
        self.list_carries_nothing = False      # a range listing that returns no mail at all (all read by id)
        self.listed: list[str] = []            # ids returned by folder listings (immutable), in order
        self.reads: list[str] = []             # ids returned whole by range listings or read by id, in order
        self.calls: list[Call] = []             # every HTTP request
        self.batch_items: list[Call] = []       # every request inside a $batch
        self.delta_answers: list[dict] = []
        self._links: dict[str, dict] = {}
        self._by_segment: dict[str, str] = {}   # immutable id as a path segment -> immutable id
        self._regular_serial = 0
        requests_mock.register_uri(requests_mock_module.ANY, re.compile('^' + re.escape(host) + '/'),
                                   content=self._on_request)

    # ---------------------------------------------------------------- what happens in the mailbox
    @property
    def folder(self) -> list[str]:
        """The ids in the fetch folder, in arrival order."""
        return self.mail_in[self.fetch_folder]

    def add_folder(self, folder_id: str, name: str, parent: str) -> None:
        self.folders[folder_id] = {'id': folder_id, 'displayName': name, 'parentFolderId': parent}

    def deliver(self, message: dict, contents: dict | None = None, regular_id: str | None = None,
                folder: str | None = None) -> str:
        """A new mail arrives in the fetch folder (or `folder`)."""
        self.store[message['id']] = message
        self._by_segment[seg(message['id'])] = message['id']
        self.regular[message['id']] = regular_id or self._new_regular_id()
        self.contents.update(contents or {})
        self._arrive(message['id'], folder or self.fetch_folder)
        return message['id']

    def move(self, message_id: str, source: str, target: str | None = None) -> None:
        """A user or an inbox rule moves a mail from `source` into the fetch folder (or `target`)."""
        self.move_out(message_id, source)
        self.move_in(message_id, target)

    def move_in(self, message_id: str, folder: str | None = None) -> None:
        """A mail of the mailbox is moved into the fetch folder (or `folder`): same immutable id, new regular id."""
        self.regular[message_id] = self._new_regular_id()
        self._arrive(message_id, folder or self.fetch_folder)

    def _arrive(self, message_id: str, folder: str) -> None:
        self.mail_in[folder].append(message_id)
        self.events[folder].append(('created', message_id))

    def move_out(self, message_id: str, folder: str | None = None) -> None:
        folder = folder or self.fetch_folder
        self.mail_in[folder].remove(message_id)
        self.events[folder].append(('removed', message_id))

    def hard_delete(self, message_id: str) -> None:
        del self.store[message_id]
        for folder, ids in self.mail_in.items():
            if message_id in ids:
                self.move_out(message_id, folder)

    def replay(self, message_ids: list[str]) -> None:
        """The service reports mail again that it reported before (a replayed page)."""
        self.events[self.fetch_folder] += [('created', m) for m in message_ids]

    def expire_tokens(self, status: int, body: Any) -> None:
        self.token_epoch += 1
        self.expired_answer = (status, {}, body)

    def rename_folder(self, name: str) -> None:
        self.folders[self.fetch_folder]['displayName'] = name

    def move_folder(self, parent: str) -> None:
        self.folders[self.fetch_folder]['parentFolderId'] = parent

    def delete_folder(self) -> None:
        """DELETE mailFolders/{id}: Graph moves the folder, with its mail, into Deleted Items."""
        self.move_folder(DELETED_ITEMS_ID)

    def purge_folder(self) -> None:
        """The folder is deleted from Deleted Items too: gone for good."""
        del self.folders[self.fetch_folder]

    def recreate_folder(self, new_id: str) -> None:
        """The folder is deleted and a folder of the same name is created where it was."""
        old = self.folders[self.fetch_folder]
        self.delete_folder()
        self.add_folder(new_id, old['displayName'], INBOX_ID)
        self.fetch_folder = new_id

    # ---------------------------------------------------------------- what the tests look at
    def direct(self, method: str | None, pattern: str) -> list[Call]:
        return [c for c in self.calls if (method is None or c.method == method) and re.search(pattern, c.path)]

    def delta_calls(self) -> list[Call]:
        return self.direct('GET', r'/messages/delta$')

    def batch_posts(self) -> list[Call]:
        return self.direct('POST', r'^/\$batch$')

    def translate_calls(self) -> list[Call]:
        return self.direct('POST', r'/translateExchangeIds$')

    def folder_requests(self, calls: list[Call] | None = None) -> list[Call]:
        """Requests about folders themselves (resolving a path, looking a folder up), not about their mail."""
        return [c for c in (self.calls if calls is None else calls)
                if re.search(r'/mailFolders(/[^/]+(/childFolders)?)?$', c.path)]

    def message_reads(self, calls: list[Call] | None = None) -> list[str]:
        """Ids of the messages read, in request order: returned whole by a range listing of the folder, or read by
        id in $batch (only those, from `calls`, when given)."""
        if calls is None:
            return list(self.reads)
        return [self._by_segment.get(c.path.rsplit('/', 1)[1], c.path) for c in calls
                if c.method == 'GET' and re.search(r'/messages/[^/]+$', c.path)]

    def window_listings(self) -> list[Call]:
        """The receivedDateTime window listings of delta-less clouds (not the range reads of pending mail)."""
        return [c for c in self.direct('GET', r'/messages$') if ' lt ' not in c.query.get('$filter', '')]

    def batch_reads(self) -> list[str]:
        """Ids of the messages read by id in $batch, in request order."""
        return self.message_reads(self.batch_items)

    # ---------------------------------------------------------------- HTTP
    def _on_request(self, request: Any, context: Any) -> bytes:
        path, query = split_url(request.url)
        assert path.startswith('/v1.0/'), request.url
        body = json.loads(request.body) if request.body else None
        call = Call(request.method, path[len('/v1.0'):], query, request.headers, body, request.url)
        self.calls.append(call)
        if call.method == 'POST' and call.path == '/$batch':
            status, headers, payload = self._batch(body)
        else:
            status, headers, payload = self._serve(call)
        call.status = status
        context.status_code = status
        context.headers.update(headers)
        if isinstance(payload, bytes):
            return payload
        context.headers['Content-Type'] = 'application/json'
        return json.dumps(payload).encode()

    def _batch(self, body: dict) -> tuple:
        requests = body['requests']
        assert 1 <= len(requests) <= mgm.BATCH_MAX_REQUESTS, f'{len(requests)} requests in one $batch'
        assert len({r['id'] for r in requests}) == len(requests), 'batch request ids must be unique'
        if self.patch_batch_fails and any(r['method'] == 'PATCH' for r in requests):
            return self.patch_batch_fails
        responses = []
        for request in requests:
            assert request['url'].startswith('/') and not request['url'].startswith('/v1.0'), request['url']
            if 'body' in request:
                assert request['headers']['Content-Type'] == 'application/json'
            path, query = split_url(request['url'])
            call = Call(request['method'], path, query, request.get('headers') or {}, request.get('body'), request['url'])
            self.batch_items.append(call)
            status, headers, payload = self._serve(call)
            call.status = status
            assert not isinstance(payload, bytes), 'binary content is not read through $batch here'
            responses.append({'id': request['id'], 'status': status, 'headers': headers, 'body': payload})
        responses.reverse()  # Graph answers in any order; clients correlate by id
        return 200, {}, {'responses': responses}

    def _serve(self, call: Call) -> tuple:
        prefix = f'/users/{self.user}/'
        assert call.path.startswith(prefix), f'unexpected Graph request {call.method} {call.path}'
        parts = call.path[len(prefix):].split('/')
        if parts[0] == 'mailFolders' and call.method == 'GET':
            if len(parts) == 1:
                return self._child_folders('msgfolderroot', call)
            if parts[2:] == ['childFolders']:
                return self._child_folders(parts[1], call)
            if len(parts) == 2:
                return self._folder(parts[1], call)
            if parts[2:] == ['messages', 'delta']:
                return self._delta(parts[1], call)
            if parts[2:] == ['messages']:
                return self._window(parts[1], call)
        if parts == ['translateExchangeIds'] and call.method == 'POST':
            return self._translate(call)
        if parts[0] == 'messages':
            message_id = self._message_id(parts[1])
            if len(parts) == 2 and call.method == 'GET':
                return self._message(message_id, call)
            if len(parts) == 2 and call.method == 'PATCH':
                return self._patch(message_id, call)
            if len(parts) == 4 and parts[2] == 'attachments' and call.method == 'GET':
                return self._attachment(message_id, parts[3], value=False)
            if len(parts) == 5 and parts[2] == 'attachments' and parts[4] == '$value' and call.method == 'GET':
                return self._attachment(message_id, parts[3], value=True)
        raise AssertionError(f'unexpected Graph request {call.method} {call.path}')

    def _new_regular_id(self) -> str:
        self._regular_serial += 1
        return f'{REGULAR_ID_PREFIX}{self._regular_serial:06d}AAA='

    def _message_id(self, segment: str) -> str:
        """Graph reads a message by either of its ids."""
        if segment in self._by_segment:
            return self._by_segment[segment]
        return next((i for i, r in self.regular.items() if seg(r) == segment), segment)

    @staticmethod
    def _id_form(call: Call, message_id: str, regular: dict[str, str]) -> str:
        """The id Graph answers with: immutable only when the request asks for it."""
        return message_id if 'IdType="ImmutableId"' in (call.headers.get('Prefer') or '') else regular[message_id]

    def _scripted(self, object_id: str) -> tuple | None:
        if self.script.get(object_id):
            return self.script[object_id].pop(0)
        return self.failing.get(object_id)

    def _folder_of(self, segment: str) -> str | None:
        """The id of the folder a path segment names (a well-known name or an id), if it exists."""
        folder_id = self.well_known.get(segment.lower()) or next((f for f in self.folders if seg(f) == segment), None)
        return folder_id if folder_id in self.folders else None

    def _folder_json(self, folder_id: str, call: Call) -> dict:
        folder = {**PHISH_FOLDER, **self.folders[folder_id], 'totalItemCount': len(self.mail_in[folder_id]),
                  'childFolderCount': sum(f['parentFolderId'] == folder_id for f in self.folders.values())}
        if call.query.get('$select'):
            folder = {k: v for k, v in folder.items() if k in call.query['$select'].split(',') + ['id']}
        return folder

    def _child_folders(self, parent_segment: str, call: Call) -> tuple:
        parent = self._folder_of(parent_segment)
        if parent is None:
            return not_found()
        match = re.fullmatch(r"displayName eq '(.*)'", call.query.get('$filter', ''))
        assert match, call.query
        wanted = match.group(1).replace("''", "'")
        found = [self._folder_json(f['id'], call) for f in self.folders.values()
                 if f['parentFolderId'] == parent and f['displayName'].lower() == wanted.lower()]
        return 200, {}, {'value': found}

    def _folder(self, folder_segment: str, call: Call) -> tuple:
        folder = self._folder_of(folder_segment)
        return (200, {}, self._folder_json(folder, call)) if folder else not_found()

    def _translate(self, call: Call) -> tuple:
        """translateExchangeIds: ids Graph cannot resolve are left out of the answer."""
        if self.translate_fails:
            return self.translate_fails
        body = call.body
        assert 1 <= len(body['inputIds']) <= 1000, body
        assert (body['sourceIdType'], body['targetIdType']) == ('restId', 'restImmutableEntryId'), body
        owners = {r: i for i, r in self.regular.items()}
        return 200, {}, {'@odata.context': f'{self.base}/$metadata#Collection(microsoft.graph.convertIdResult)',
                         'value': [{'sourceId': r, 'targetId': owners[r]} for r in body['inputIds'] if r in owners]}

    def _page_size(self, headers: Any) -> int:
        match = re.search(r'odata\.maxpagesize=(\d+)', headers.get('Prefer', ''))
        size = int(match.group(1)) if match else 10
        return min(size, self.max_page) if self.max_page else size

    def _link(self, kind: str, folder_segment: str, state: dict) -> str:
        token = f"{'S' if kind == '$skiptoken' else 'D'}{len(self._links) + 1:04d}aB3xQ"
        self._links[token] = {**state, 'epoch': self.token_epoch}
        folder = urllib.parse.quote(folder_segment, safe='-_=')
        return f'{self.base}/users/{self.user}/mailFolders/{folder}/messages/delta?{kind}={token}'

    def _delta_item(self, kind: str, message_id: str, call: Call) -> dict:
        graph_id = self._id_form(call, message_id, self.regular)
        if kind == 'removed':
            return {'@odata.type': '#microsoft.graph.message', 'id': graph_id, '@removed': {'reason': 'deleted'}}
        return {'@odata.type': '#microsoft.graph.message', '@odata.etag': 'W/"CQAAABYAAAAiIsqMbYjsT5e"',
                'id': graph_id, 'receivedDateTime': self.store[message_id]['receivedDateTime']}

    def _delta(self, folder_segment: str, call: Call) -> tuple:
        if self.delta_fails:
            return self.delta_fails
        folder = self._folder_of(folder_segment)
        if folder is None:
            return not_found()
        events, in_folder = self.events[folder], self.mail_in[folder]
        token = call.query.get('$deltatoken') or call.query.get('$skiptoken')
        if token:
            assert set(call.query) in ({'$deltatoken'}, {'$skiptoken'}), 'query options go on the first request only'
            link = self._links[token]
            assert link['folder'] == folder, 'a delta link of another folder'
            if link['epoch'] < self.token_epoch:
                return self.expired_answer or answer(410, 'error_sync_state_not_found.json')
            created_only, end = link['created_only'], len(events)
            if '$deltatoken' in call.query:
                items = [self._delta_item(kind, m, call) for kind, m in events[link['end']:]
                         if (kind == 'created' and m in in_folder) or (kind == 'removed' and not created_only)]
            else:
                items, end = link['items'], link['end']
        else:
            unknown = set(call.query) - {'$select', 'changeType', '$filter', '$expand'}
            assert not unknown, f'query options Graph does not take on message delta: {unknown}'
            created_only, end = call.query.get('changeType') == 'created', len(events)
            items = [self._delta_item('created', m, call) for m in in_folder]
        size = self._page_size(call.headers)
        page, rest = items[:size], items[size:]
        result: dict = {'@odata.context': f"{self.base}/$metadata#Collection(message)", 'value': page}
        state = {'folder': folder, 'end': end, 'created_only': created_only}
        if rest:
            result['@odata.nextLink'] = self._link('$skiptoken', folder_segment, {**state, 'items': rest})
        else:
            result['@odata.deltaLink'] = self._link('$deltatoken', folder_segment, state)
        self.delta_answers.append(result)
        return 200, {}, result

    def _window(self, folder_segment: str, call: Call) -> tuple:
        """Listing the folder by receivedDateTime: the window of delta-less clouds (`ge`), and the range fetch reads
        its pending mail from (`ge ... and ... lt ...`). A mail whose reads are scripted or failing is left out,
        so the read by id decides what happens to it; `list_omits` fields and `list_ignores_expand` play a
        service that returns less than asked."""
        folder = self._folder_of(folder_segment)
        if folder is None:
            return not_found()
        stamp = r'(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)'
        match = re.fullmatch(rf'receivedDateTime ge {stamp}(?: and receivedDateTime lt {stamp})?',
                             call.query.get('$filter', ''))
        assert match, call.query
        assert call.query.get('$orderby') == 'receivedDateTime asc'
        top, skip = int(call.query.get('$top', 10)), int(call.query.get('$skip', 0))
        since, until = match.group(1), match.group(2) or '9999'
        rows = sorted((self.store[m] for m in self.mail_in[folder] if since <= self.store[m]['receivedDateTime'] < until
                       and not self._scripted_or_failing(m)), key=lambda m: m['receivedDateTime'])
        if match.group(2) and self.list_carries_nothing:
            rows = []
        self.listed += [row['id'] for row in rows[skip:skip + top]]
        if match.group(2):
            self.reads += [row['id'] for row in rows[skip:skip + top]]
        value = []
        for row in rows[skip:skip + top]:
            rendered = self._render(row['id'], call, expand=not self.list_ignores_expand)
            if not isinstance(rendered, dict):
                return rendered
            value.append({k: v for k, v in rendered.items() if k not in self.list_omits})
        result: dict = {'value': value}
        if skip + top < len(rows):
            query = urllib.parse.urlencode({**call.query, '$skip': skip + top}, quote_via=urllib.parse.quote)
            result['@odata.nextLink'] = f'{self.base}/users/{self.user}/mailFolders/{folder_segment}/messages?{query}'
        return 200, {}, result

    def _scripted_or_failing(self, object_id: str) -> bool:
        return bool(self.script.get(object_id)) or object_id in self.failing

    def _message(self, message_id: str, call: Call) -> tuple:
        self.reads.append(message_id)
        scripted = self._scripted(message_id)
        if scripted:
            return scripted
        if message_id not in self.store:
            return not_found()
        rendered = self._render(message_id, call, expand=True)
        return (200, {}, rendered) if isinstance(rendered, dict) else rendered

    def _render(self, message_id: str, call: Call, expand: bool) -> dict | tuple:
        """A message with the $select and $expand of `call` applied; an error answer tuple when Graph refuses."""
        message = self.store[message_id]
        default = ['id', 'receivedDateTime'] if call.path.endswith('/messages') else list(message)
        fields = call.query['$select'].split(',') if call.query.get('$select') else default
        result = {k: copy.deepcopy(message[k]) for k in fields if k in message and k != 'attachments'}
        result['id'] = self._id_form(call, message_id, self.regular)
        result['@odata.etag'] = 'W/"CQAAABYAAAAiIsqMbYjsT5e"'
        expansion = call.query.get('$expand', '') if expand else ''
        if expansion.startswith('attachments'):
            nested = re.fullmatch(r'attachments\(\$select=([^)]*)\)', expansion)
            wanted = nested.group(1).split(',') if nested else None
            if wanted and self.strict_attachment_select:
                # Graph resolves a nested $select against the base type microsoft.graph.attachment
                # (microsoft-graph-explorer-v4#3916): fileAttachment-only properties must be type-cast.
                bad = [f for f in wanted if f not in BASE_ATTACHMENT_PROPERTIES and not f.startswith('microsoft.graph.')]
                if bad:
                    return answer(400, 'error_attachment_contentid_select.json')
            result['attachments'] = []
            for attachment in message.get('attachments') or []:
                keep = {k: v for k, v in attachment.items()
                        if wanted is None or k.startswith('@odata') or k in wanted
                        or f"{attachment['@odata.type'][1:]}/{k}" in wanted}
                result['attachments'].append(copy.deepcopy(keep))
        return result

    def _patch(self, message_id: str, call: Call) -> tuple:
        if self.patch_item_answer:
            return self.patch_item_answer
        if message_id not in self.store:
            return not_found()
        self.store[message_id]['isRead'] = call.body['isRead']
        return 200, {}, {'id': message_id, 'isRead': call.body['isRead']}

    def _attachment(self, message_id: str, attachment_segment: str, value: bool) -> tuple:
        attachment = next((a for a in (self.store.get(message_id) or {}).get('attachments') or []
                           if seg(a['id']) == attachment_segment), None)
        if attachment is None:
            return not_found()
        scripted = self._scripted(attachment['id'])
        if scripted:
            return scripted
        content = self.contents[attachment['id']]
        if value:
            kind = 'message/rfc822' if attachment['@odata.type'].endswith('itemAttachment') else 'application/octet-stream'
            return 200, {'Content-Type': kind}, content
        result = copy.deepcopy(attachment)
        if attachment['@odata.type'].endswith('fileAttachment'):
            result['contentBytes'] = base64.b64encode(content).decode()
        return 200, {}, result


# ================================================================================ fixtures
@pytest.fixture(autouse=True)
def info_log(in_tmp_dir, monkeypatch) -> list[str]:
    """Frozen time, a fresh demisto runtime, file results in a temporary working directory, info lines kept."""
    monkeypatch.setattr(mgm, 'utc_now', lambda: NOW)
    monkeypatch.setattr(demisto, '_runtime', demisto._Runtime())
    lines: list[str] = []
    monkeypatch.setattr(demisto, 'info', lambda *parts: lines.append(' '.join(str(p) for p in parts)))
    return lines


@pytest.fixture
def fake(requests_mock) -> FakeGraph:
    return FakeGraph(requests_mock)


@pytest.fixture
def china(make_client, requests_mock) -> tuple[mgm.GraphClient, FakeGraph]:
    return make_client(server_url=CHINA), FakeGraph(requests_mock, host=CHINA)


# ================================================================================ 1. FIRST RUN AND DELTA
class TestFirstRunAndDelta:

    def test_the_folder_path_is_resolved_on_every_run_with_one_request_and_the_same_id_keeps_the_cursor(
            self, client, fake):
        fake.deliver(mail(1, at(minutes=30)))
        feed = Feed(client)
        assert feed.run() == [mail_id(1)]
        lookups = fake.folder_requests()
        assert [c.path for c in lookups] == [f'/users/{USER}/mailFolders/inbox/childFolders']
        assert lookups[0].query['$filter'] == "displayName eq 'Phishing'"
        assert not fake.direct(None, r'msgfolderroot')
        assert feed.last_run['folder_id'] == PHISH_ID

        for n in (2, 3):
            run_start = len(fake.calls)
            fake.deliver(mail(n, at(minutes=10 - n)))
            assert feed.run() == [mail_id(n)]
            later = fake.calls[run_start:]
            assert [c.path for c in fake.folder_requests(later)] == [f'/users/{USER}/mailFolders/inbox/childFolders'], \
                'one request per folder below a well-known one, and no separate check of the cached id'
            (delta,) = [c for c in later if c.path.endswith('/messages/delta')]
            assert delta.path == f'/users/{USER}/mailFolders/{seg(PHISH_ID)}/messages/delta'
            assert set(delta.query) == {'$deltatoken'}, 'the same folder id must continue the cursor'
        assert feed.last_run['folder_id'] == PHISH_ID

    def test_a_well_known_folder_costs_no_resolution_request(self, client, fake):
        fake.fetch_folder = INBOX_ID
        fake.deliver(mail(1, at(minutes=30)))
        feed = Feed(client, folder='Inbox')
        assert feed.run() == [mail_id(1)]
        fake.deliver(mail(2, at(minutes=5)))
        assert feed.run() == [mail_id(2)]
        assert fake.folder_requests() == []
        assert [c.path for c in fake.delta_calls()] == [f'/users/{USER}/mailFolders/inbox/messages/delta'] * 2
        assert set(fake.delta_calls()[1].query) == {'$deltatoken'}
        assert {c.path for c in fake.calls} == {f'/users/{USER}/mailFolders/inbox/messages/delta',
                                                f'/users/{USER}/mailFolders/inbox/messages'}
        assert feed.last_run['folder_id'] == 'inbox'

    def test_first_delta_request_asks_for_ids_and_arrival_times_of_new_mail_only(self, client, fake):
        fake.deliver(mail(1, at(minutes=30)))
        fetch(client, {})
        (delta,) = fake.delta_calls()
        assert delta.path == f'/users/{USER}/mailFolders/{seg(PHISH_ID)}/messages/delta'
        assert delta.query['$select'] == 'id,receivedDateTime'
        assert delta.query['changeType'] == 'created'
        assert not {'$top', '$orderby', '$search', '$skip'} & set(delta.query)
        prefer = [p.strip() for p in delta.headers['Prefer'].split(',')]
        assert any(re.fullmatch(r'odata\.maxpagesize=\d+', p) for p in prefer), prefer
        assert 'IdType="ImmutableId"' in prefer
        assert delta.headers['Authorization'].startswith('Bearer test-access-token-')

    @pytest.mark.parametrize('first_fetch', ['2 hours', '2024-03-11T08:00:00Z'])
    def test_initial_round_skips_mail_received_before_first_fetch(self, client, fake, first_fetch):
        fake.deliver(mail(1, at(hours=5)))
        fake.deliver(mail(2, at(hours=2, minutes=1)))
        fake.deliver(mail(3, at(minutes=90)))
        fake.deliver(mail(4, at(minutes=1)))
        feed = Feed(client, first_fetch=first_fetch)
        assert feed.run() == [mail_id(3), mail_id(4)]
        assert feed.last_run['pending'] == []
        assert fake.message_reads() == [mail_id(3), mail_id(4)], 'old mail must not even be read'

    def test_later_rounds_take_every_arrival_whatever_its_received_time(self, client, fake):
        fake.deliver(mail(1, at(minutes=30)))
        feed = Feed(client, first_fetch='1 hour')
        assert feed.run() == [mail_id(1)]
        fake.deliver(mail(2, at(days=3)))  # an old mail a user or an inbox rule moves into the folder now
        fake.deliver(mail(3, at(minutes=1)))
        assert feed.run() == [mail_id(2), mail_id(3)]
        second_round = fake.delta_calls()[-1]
        assert set(second_round.query) == {'$deltatoken'}

    def test_delta_pages_are_followed_to_the_delta_link_which_starts_the_next_run(self, client, fake):
        fake.max_page = 3
        for n in range(1, 9):
            fake.deliver(mail(n, at(minutes=60 - n)))
        feed = Feed(client)
        assert feed.run() == [mail_id(n) for n in range(1, 9)]
        calls, answers = fake.delta_calls(), fake.delta_answers
        assert len(calls) == 3
        assert [bool(a.get('@odata.nextLink')) for a in answers] == [True, True, False]
        for previous, call in zip(answers, calls[1:]):
            assert split_url(call.url) == split_url(previous['@odata.nextLink'])
            assert 'odata.maxpagesize=' in call.headers['Prefer']
        assert feed.last_run['cursor'] == answers[-1]['@odata.deltaLink']

        fake.deliver(mail(9, at(minutes=2)))
        assert feed.run() == [mail_id(9)]
        assert split_url(fake.delta_calls()[3].url) == split_url(answers[2]['@odata.deltaLink'])

    def test_a_round_cut_short_continues_from_its_next_link(self, client, fake, monkeypatch):
        """A huge initial round stops when the pending queue is full and resumes from the stored nextLink."""
        monkeypatch.setattr(mgm, 'FETCH_DELTA_PAGE_SIZE', 4)
        monkeypatch.setattr(mgm, 'FETCH_PENDING_CAP', 8)
        for n in range(1, 13):
            fake.deliver(mail(n, at(minutes=60 - n)))
        feed = Feed(client, limit=3)
        runs = feed.drain()
        assert feed.all_ids == [mail_id(n) for n in range(1, 13)]
        assert len(runs) == 4
        assert all('$deltatoken' not in c.query for c in fake.delta_calls()[:3])

    def test_a_first_round_longer_than_the_page_cap_goes_on_next_run_from_its_next_link(self, client, fake,
                                                                                         monkeypatch):
        """A huge folder's first round is read FETCH_DELTA_PAGES_PER_RUN pages per run, never all in one run."""
        monkeypatch.setattr(mgm, 'FETCH_DELTA_PAGE_SIZE', 2)
        monkeypatch.setattr(mgm, 'FETCH_DELTA_PAGES_PER_RUN', 3, raising=False)  # raising=False: absent before the fix
        for n in range(1, 10):
            fake.deliver(mail(n, at(minutes=60 - n)))
        fake.deliver(mail(10, at(days=3)))  # older than first_fetch, in the last page: the bound must survive the cut
        feed = Feed(client)
        assert feed.run() == [mail_id(n) for n in range(1, 7)]
        assert len(fake.delta_calls()) == 3
        next_link = fake.delta_answers[-1]['@odata.nextLink']
        assert feed.last_run['cursor'] == next_link
        assert feed.run() == [mail_id(7), mail_id(8), mail_id(9)]
        first_of_second_run = fake.delta_calls()[3]
        assert split_url(first_of_second_run.url) == split_url(next_link)
        assert len(fake.delta_calls()) == 5
        assert feed.last_run['cursor'] == fake.delta_answers[-1]['@odata.deltaLink']
        fake.deliver(mail(11, at(minutes=1)))
        assert feed.run() == [mail_id(11)]
        assert set(fake.delta_calls()[5].query) == {'$deltatoken'}
        assert feed.run() == []
        assert sorted(feed.all_ids) == sorted(mail_id(n) for n in [*range(1, 10), 11])
        assert sorted(fake.message_reads()) == sorted(feed.all_ids), 'a mail was read twice or read and dropped'


# ================================================================================ 2. LIMIT, ORDER AND DEDUPLICATION
class TestLimitOrderAndDedup:

    def test_fetch_limit_caps_each_run_and_the_rest_follow_in_received_order(self, client, fake):
        for n in [5, 1, 9, 3, 12, 7, 2, 11, 4, 10, 6, 8]:  # arrival order differs from receivedDateTime order
            fake.deliver(mail(n, at(minutes=100 - n)))
        feed = Feed(client, limit=5)
        assert feed.run() == [mail_id(n) for n in range(1, 6)]
        assert [p['id'] for p in feed.last_run['pending']] == [mail_id(n) for n in range(6, 13)]
        assert fake.message_reads() == [mail_id(n) for n in range(1, 6)], 'only the mails of this run are read'
        assert feed.run() == [mail_id(n) for n in range(6, 11)]
        assert feed.run() == [mail_id(11), mail_id(12)]
        assert feed.run() == []
        assert feed.last_run['pending'] == []

    def test_37_mails_sharing_one_second_each_arrive_exactly_once(self, client, fake):
        second = at(minutes=10)
        for n in range(1, 38):
            fake.deliver(mail(n, second))
        fake.deliver(mail(38, at(minutes=10, seconds=-1)))  # one second later
        fake.deliver(mail(39, at(minutes=10, seconds=1)))   # one second earlier
        feed = Feed(client, limit=10)
        runs = feed.drain()
        assert [len(r) for r in runs] == [10, 10, 10, 9]
        assert feed.all_ids[0] == mail_id(39) and feed.all_ids[-1] == mail_id(38)
        assert sorted(feed.all_ids[1:-1]) == sorted(mail_id(n) for n in range(1, 38))

    def test_mail_arriving_while_others_wait_is_queued_by_received_time(self, client, fake):
        for n in range(1, 7):
            fake.deliver(mail(n, at(minutes=60 - n)))
        feed = Feed(client, limit=4)
        assert feed.run() == [mail_id(n) for n in range(1, 5)]
        fake.deliver(mail(7, at(minutes=1)))
        fake.deliver(mail(8, at(hours=6)))  # moved in late; its receivedDateTime is the oldest
        assert feed.run() == [mail_id(8), mail_id(5), mail_id(6), mail_id(7)]
        assert feed.run() == []

    def test_a_replayed_delta_page_creates_no_duplicate(self, client, fake):
        fake.deliver(mail(1, at(minutes=30)))
        fake.deliver(mail(2, at(minutes=20)))
        feed = Feed(client, limit=1)
        assert feed.run() == [mail_id(1)]                   # mail 2 waits in the queue
        fake.replay([mail_id(1), mail_id(2)])              # reported again: one ingested, one queued
        fake.deliver(mail(3, at(minutes=10)))
        assert feed.run() == [mail_id(2)]
        assert feed.run() == [mail_id(3)]
        assert feed.run() == []
        assert fake.message_reads() == [mail_id(1), mail_id(2), mail_id(3)]

    def test_mail_moved_out_and_back_is_not_ingested_again(self, client, fake):
        fake.deliver(mail(1, at(minutes=30)))
        feed = Feed(client)
        assert feed.run() == [mail_id(1)]
        fake.move_out(mail_id(1))
        assert feed.run() == []
        fake.move_in(mail_id(1))  # same immutable id
        fake.deliver(mail(2, at(minutes=1)))
        assert feed.run() == [mail_id(2)]
        assert fake.message_reads().count(mail_id(1)) == 1


# ================================================================================ 3. READING WITH $batch
class TestBatchReads:
    """The reads by id in $batch: here the range listing carries no mail, so every mail is read by id."""

    @pytest.fixture(autouse=True)
    def listing_carries_nothing(self, fake: FakeGraph) -> None:
        fake.list_carries_nothing = True


    def test_messages_are_read_through_batch_20_per_post(self, client, fake):
        for n in range(1, 46):
            fake.deliver(mail(n, at(minutes=100 - n)))
        assert Feed(client, limit=45).run() == [mail_id(n) for n in range(1, 46)]
        posts = fake.batch_posts()
        assert [len(p.body['requests']) for p in posts] == [20, 20, 5]
        assert not fake.direct('GET', f'^/users/{USER}/messages/'), 'a message was read outside $batch'
        for item in fake.batch_items:
            assert item.method == 'GET'
            assert re.fullmatch(f'/users/{USER}/messages/[^/]+', item.path)
            fields = set(item.query['$select'].split(','))
            assert {'id', 'subject', 'body', 'bodyPreview', 'receivedDateTime', 'internetMessageHeaders',
                    'toRecipients', 'ccRecipients', 'bccRecipients', 'sender', 'from', 'categories'} <= fields
            assert re.fullmatch(r'attachments\(\$select=[^)]+\)', item.query['$expand'])
            assert item.headers['Prefer'] == 'IdType="ImmutableId"'
            assert '%2B' in item.url and '/' not in item.url.split('/messages/')[1].split('?')[0]

    def test_mail_deleted_before_it_is_read_is_dropped(self, client, fake):
        for n in range(1, 5):
            fake.deliver(mail(n, at(minutes=60 - n)))
        feed = Feed(client, limit=2)
        assert feed.run() == [mail_id(1), mail_id(2)]
        fake.hard_delete(mail_id(3))
        assert feed.run() == [mail_id(4)]
        assert feed.last_run['pending'] == []
        assert feed.run() == []
        assert fake.message_reads().count(mail_id(3)) == 1

    def test_a_throttled_batch_item_is_retried_after_its_retry_after(self, client, fake, sleeps):
        for n in range(1, 4):
            fake.deliver(mail(n, at(minutes=60 - n)))
        fake.script[mail_id(2)] = [throttled('7')]
        assert Feed(client).run() == [mail_id(1), mail_id(2), mail_id(3)]
        assert sleeps.waits == [7.0]
        posts = fake.batch_posts()
        assert len(posts) == 2
        assert fake.message_reads(fake.batch_items[3:]) == [mail_id(2)], 'only the throttled item is sent again'

    @pytest.mark.parametrize('failure, waits', [
        (throttled('2'), [2.0, 2.0]),
        (unavailable(503, '3'), [3.0, 3.0]),
    ], ids=['429', '503'])
    def test_an_item_still_throttled_after_the_retry_budget_stops_the_run_in_order(self, make_client, fake, sleeps,
                                                                                  failure, waits):
        client = make_client(max_attempts=3)
        for n in range(1, 26):
            fake.deliver(mail(n, at(minutes=100 - n)))
        fake.failing[mail_id(22)] = failure
        feed = Feed(client)
        assert feed.run() == [mail_id(n) for n in range(1, 22)]
        assert [p['id'] for p in feed.last_run['pending']] == [mail_id(n) for n in range(22, 26)]
        assert sleeps.waits == waits
        assert [len(p.body['requests']) for p in fake.batch_posts()] == [20, 5, 1, 1]
        assert fake.message_reads()[-2:] == [mail_id(22)] * 2, 'only the throttled item is retried'
        del fake.failing[mail_id(22)]
        assert feed.run() == [mail_id(n) for n in range(22, 26)]

    def test_an_item_failing_otherwise_fails_the_fetch_so_nothing_is_skipped(self, client, fake, sleeps):
        for n in range(1, 26):
            fake.deliver(mail(n, at(minutes=100 - n)))
        feed = Feed(client, limit=10)
        assert feed.run() == [mail_id(n) for n in range(1, 11)]
        fake.failing[mail_id(13)] = unavailable(500, None)
        with pytest.raises(mgm.MailError, match='could not be read'):
            feed.run(mark_read=True)
        assert not [c for c in fake.batch_items if c.method == 'PATCH']
        del fake.failing[mail_id(13)]
        assert feed.run() == [mail_id(n) for n in range(11, 21)]  # the platform kept the previous last run
        assert feed.run() == [mail_id(n) for n in range(21, 26)]

    def test_one_mail_graph_refuses_with_400_is_skipped_and_logged_while_the_rest_become_incidents(
            self, client, fake, monkeypatch):
        errors: list[str] = []
        monkeypatch.setattr(demisto, 'error', lambda *parts: errors.append(' '.join(str(p) for p in parts)))
        for n in range(1, 6):
            fake.deliver(mail(n, at(minutes=60 - n)))
        fake.failing[mail_id(3)] = (400, {'request-id': 'req-400'},
                                    {'error': {'code': 'ErrorInvalidRequest', 'message': 'The item cannot be read.'}})
        feed = Feed(client)
        assert feed.run() == [mail_id(1), mail_id(2), mail_id(4), mail_id(5)]
        assert len(errors) == 1 and mail_id(3) in errors[0], errors
        assert feed.last_run['pending'] == []
        fake.deliver(mail(6, at(minutes=1)))
        assert feed.run() == [mail_id(6)]
        assert fake.message_reads().count(mail_id(3)) == 1, 'the refused mail blocks nothing and is not retried'

    def test_a_batch_whose_every_mail_answers_400_fails_the_fetch_so_a_query_problem_is_seen(self, client, fake,
                                                                                             monkeypatch):
        errors: list[str] = []
        monkeypatch.setattr(demisto, 'error', lambda *parts: errors.append(' '.join(str(p) for p in parts)))
        for n in range(1, 4):
            fake.deliver(mail(n, at(minutes=60 - n)))
            fake.failing[mail_id(n)] = answer(400, 'error_attachment_contentid_select.json')
        with pytest.raises(mgm.MailError, match='could not be read'):
            fetch(client, {})
        assert errors == []
        for n in range(1, 4):
            del fake.failing[mail_id(n)]
        assert Feed(client).run() == [mail_id(1), mail_id(2), mail_id(3)]  # the platform kept the previous last run


# ================================================================================ 4. ATTACHMENTS
class TestRangeReads:
    """Pending mail is read by one listing of the fetch folder over its received-time range; what that listing does
    not carry is read by id. The incident never depends on what the listing carried."""

    EXPECTED_FILES = {'invoice Q3.pdf', 'statements.zip', 'Original message.eml', CID_NAME}

    def assert_complete(self, incident: dict) -> None:
        email = json.loads(incident['rawJSON'])
        assert email['Headers'] == FIXTURE['internetMessageHeaders'] and email['Headers']
        assert email['Body'] == FIXTURE['body']['content']
        assert email['To'] == [r['emailAddress']['address'] for r in FIXTURE['toRecipients']]
        assert email['MessageID'] == FIXTURE['internetMessageId'] and email['Subject'] == FIXTURE['subject']
        assert {a['name'] for a in incident['attachment']} == self.EXPECTED_FILES

    def test_one_listing_carries_the_mails_of_a_run_whole_and_nothing_is_read_by_id(self, client, fake):
        for n in range(1, 31):
            fake.deliver(mail(n, at(minutes=100 - n)))
        feed = Feed(client, limit=25)
        assert feed.run() == [mail_id(n) for n in range(1, 26)]
        (listing,) = [c for c in fake.direct('GET', r'/messages$')]
        assert listing.path == f'/users/{USER}/mailFolders/{seg(PHISH_ID)}/messages'
        assert listing.query['$filter'] == f"receivedDateTime ge {at(minutes=99)} and receivedDateTime lt " \
                                           f"{(NOW - timedelta(minutes=75) + timedelta(seconds=1)).strftime('%Y-%m-%dT%H:%M:%SZ')}"
        assert listing.query['$orderby'] == 'receivedDateTime asc'
        assert {'internetMessageHeaders', 'body', 'flag', 'hasAttachments'} <= set(listing.query['$select'].split(','))
        assert listing.query['$expand'] == f'attachments($select={mgm.FETCH_ATTACHMENT_FIELDS})'
        assert int(listing.query['$top']) == 25 + mgm.FETCH_RANGE_SLACK
        assert 'IdType="ImmutableId"' in listing.headers['Prefer']
        assert fake.batch_reads() == [] and fake.batch_posts() == []
        assert feed.run() == [mail_id(n) for n in range(26, 31)]

    @pytest.mark.parametrize('omits', [{'internetMessageHeaders'}, {'body', 'toRecipients'}, {'subject', 'from', 'flag'}])
    def test_a_listing_that_omits_fields_is_completed_by_a_read_of_just_those_fields(self, client, fake, omits):
        fake.list_omits = omits
        fake.deliver(fixture_message(), FIXTURE_CONTENTS)
        _, (incident,) = fetch(client, {})
        self.assert_complete(incident)
        (read,) = [c for c in fake.batch_items if re.search(r'/messages/[^/]+$', c.path)]
        assert set(read.query['$select'].split(',')) == {'id'} | omits, 'only what the listing lacked is read'
        assert '$expand' not in read.query, 'the listing carried the attachments'

    def test_a_listing_that_does_not_expand_attachments_reads_them_only_for_mail_that_may_have_some(self, client, fake):
        fake.list_ignores_expand = True
        inline_only = fixture_message(mail_id(2), at(minutes=20))
        inline_only.update(hasAttachments=False, attachments=[a for a in FIXTURE['attachments'] if a['id'] == PNG_ID])
        plain = mail(3, at(minutes=10))
        plain['body'] = {'contentType': 'html', 'content': '<p>no images here</p>'}
        fake.deliver(fixture_message(received=at(minutes=30)), FIXTURE_CONTENTS)
        fake.deliver(inline_only)
        fake.deliver(plain)
        _, incidents = fetch(client, {})
        assert ids_of(incidents) == [FIXTURE['id'], mail_id(2), mail_id(3)]
        self.assert_complete(incidents[0])
        assert [a['name'] for a in incidents[1]['attachment']] == [CID_NAME], 'inline images of hasAttachments false'
        assert incidents[2]['attachment'] == []
        reads = [c for c in fake.batch_items if re.search(r'/messages/[^/]+$', c.path)]
        assert fake.message_reads(reads) == [FIXTURE['id'], mail_id(2)], 'mail without attachments is not read again'
        for read in reads:
            assert read.query['$expand'] == f'attachments($select={mgm.FETCH_ATTACHMENT_FIELDS})'
            assert read.query['$select'] == 'id'

    @pytest.mark.parametrize('failure', [unavailable(503, '1'), access_denied(), 'nothing'],
                             ids=['unavailable', 'refused', 'carries-nothing'])
    def test_without_the_listing_every_mail_is_read_whole_by_id_in_one_batch_call(self, client, fake, sleeps,
                                                                                 monkeypatch, failure):
        if failure == 'nothing':
            fake.list_carries_nothing = True
        else:
            monkeypatch.setattr(fake, '_window', lambda folder, call: failure)
        fake.deliver(fixture_message(received=at(minutes=50)), FIXTURE_CONTENTS)
        for n in range(1, 25):
            fake.deliver(mail(n, at(minutes=40 - n)))
        calls: list[int] = []
        original = client.batch
        monkeypatch.setattr(client, 'batch', lambda items: calls.append(len(items)) or original(items))
        _, incidents = fetch(client, {})
        assert ids_of(incidents) == [FIXTURE['id']] + [mail_id(n) for n in range(1, 25)]
        self.assert_complete(incidents[0])
        assert calls[0] == 25, 'all reads of the run go to client.batch in one call'
        reads = [c for c in fake.batch_items if re.search(r'/messages/[^/]+$', c.path)]
        assert len(reads) == 25
        assert {'internetMessageHeaders', 'body', 'subject'} <= set(reads[0].query['$select'].split(','))

    def test_mail_moved_out_of_the_folder_after_it_was_queued_is_read_by_id(self, client, fake):
        for n in range(1, 5):
            fake.deliver(mail(n, at(minutes=60 - n)))
        feed = Feed(client, limit=2)
        assert feed.run() == [mail_id(1), mail_id(2)]
        fake.move(mail_id(3), PHISH_ID, INBOX_ID)
        assert feed.run() == [mail_id(3), mail_id(4)]
        assert fake.batch_reads() == [mail_id(3)]

    def test_the_last_run_holds_ids_and_times_only_never_mail_content(self, client, fake):
        for n in range(1, 121):
            fake.deliver(mail(n, at(minutes=200 - n)))
        feed = Feed(client, limit=20)
        assert len(feed.run()) == 20
        assert len(feed.last_run['pending']) == 100
        assert all(set(p) == {'id', 'received'} for p in feed.last_run['pending'])
        text = json.dumps(feed.last_run)
        assert 'Mail 1' not in text and 'internetMessageHeaders' not in text and 'body' not in text  # no subject, no content
        assert len(text) < 200 * 120, 'a few hundred bytes per mail at most'

    def test_21vianet_listing_selects_no_headers_or_flag(self, china):
        client, fake = china
        fake.deliver(mail(1, at(minutes=30)))
        _, incidents = fetch(client, {})
        assert ids_of(incidents) == [mail_id(1)]
        ranges = [c for c in fake.direct('GET', r'/messages$') if ' lt ' in c.query['$filter']]
        assert ranges and all(not {'internetMessageHeaders', 'flag'} & set(c.query['$select'].split(',')) for c in ranges)
        assert fake.batch_reads() == [], 'fields the cloud lacks are not read by id either'


class TestAttachments:

    def test_attachments_become_incident_files(self, client, fake, in_tmp_dir):
        fake.deliver(fixture_message(), FIXTURE_CONTENTS)
        _, (incident,) = fetch(client, {})
        files = {a['name']: a['path'] for a in incident['attachment']}
        expected = {'invoice Q3.pdf': PDF_BYTES, 'statements.zip': ZIP_BYTES, 'Original message.eml': EML_BYTES,
                    CID_NAME: PNG_BYTES}
        assert set(files) == set(expected)
        for name, content in expected.items():
            assert (in_tmp_dir / f'1_{files[name]}').read_bytes() == content, name
        assert sorted(p.name for p in in_tmp_dir.iterdir()) == sorted(f'1_{f}' for f in files.values())
        assert json.loads(incident['rawJSON'])['Attachments'] == incident['attachment']

        in_batch = sorted(c.path.rsplit('/', 1)[1] for c in fake.batch_items if '/attachments/' in c.path)
        assert in_batch == sorted([seg(PDF_ID), seg(PNG_ID)]), 'files up to 1 MB are read through $batch'
        streamed = fake.direct('GET', r'/attachments/')
        assert sorted(c.path.split('/')[-2] for c in streamed) == sorted([seg(ZIP_ID), seg(ITEM_ID)])
        assert all(c.path.endswith('/$value') for c in streamed)
        assert not fake.direct(None, seg(REF_ID)) and not [c for c in fake.batch_items if seg(REF_ID) in c.path]
        assert not fake.direct('GET', r'/attachments$'), 'attachments are listed through $expand, not per mail'

    def test_legacy_name_keeps_the_inline_attachment_name(self, client, fake):
        fake.deliver(fixture_message(), FIXTURE_CONTENTS)
        _, (incident,) = fetch(client, {}, legacy_name=True)
        assert sorted(a['name'] for a in incident['attachment']) == \
            sorted(['invoice Q3.pdf', 'statements.zip', 'Original message.eml', 'image001.png'])

    def test_message_read_uses_an_attachment_select_graph_accepts(self, client, fake):
        """Graph refuses `$expand=attachments($select=...,contentId)`: contentId is not a property of the base
        type microsoft.graph.attachment (microsoft-graph-explorer-v4#3916, "Could not find a property named
        'contentId' on type 'microsoft.graph.attachment'"). Every mail would then fail to read."""
        fake.strict_attachment_select = True
        fake.deliver(fixture_message(), FIXTURE_CONTENTS)
        _, incidents = fetch(client, {})
        assert len(incidents) == 1, 'the mail could not be read: Graph rejected the attachment $select'
        assert CID_NAME in [a['name'] for a in incidents[0]['attachment']]

    @pytest.mark.parametrize('broken, name, failure', [
        (PDF_ID, 'invoice Q3.pdf', not_found()),
        (ZIP_ID, 'statements.zip', access_denied()),
        (ITEM_ID, 'Original message.eml', not_found()),
    ], ids=['small-in-batch', 'large-streamed', 'item-as-eml'])
    def test_an_attachment_graph_refuses_with_4xx_is_skipped(self, client, fake, info_log, broken, name, failure):
        fake.deliver(fixture_message(), FIXTURE_CONTENTS)
        fake.failing[broken] = failure
        last_run, (incident,) = fetch(client, {})
        names = [a['name'] for a in incident['attachment']]
        assert name not in names and len(names) == 3
        assert any(name in line for line in info_log), info_log
        assert last_run['pending'] == []

    @pytest.mark.parametrize('broken, failure', [
        (PDF_ID, throttled('300')),
        (PNG_ID, unavailable(503, '300')),
        (PDF_ID, unavailable(500, None)),
        (ZIP_ID, throttled('300')),
        (ITEM_ID, unavailable(503, '300')),
        (ZIP_ID, unavailable(500, None)),
    ], ids=['429-batch', '503-batch', '500-batch', '429-streamed', '503-item', '500-streamed'])
    def test_an_attachment_that_keeps_failing_fails_the_fetch_so_nothing_is_lost(self, client, fake, broken, failure):
        fake.deliver(fixture_message(), FIXTURE_CONTENTS)
        fake.failing[broken] = failure
        with pytest.raises(mgm.MailError):
            fetch(client, {}, mark_read=True)
        assert not [c for c in fake.batch_items if c.method == 'PATCH'], 'marked read although not ingested'
        # The platform keeps the previous last run; once Graph recovers the mail arrives with every attachment.
        del fake.failing[broken]
        _, (incident,) = fetch(client, {})
        assert len(incident['attachment']) == 4


# ================================================================================ 5. THE INCIDENT
class TestIncident:

    @pytest.fixture
    def incident(self, client, fake) -> dict:
        fake.deliver(fixture_message(), FIXTURE_CONTENTS)
        _, (incident,) = fetch(client, {})
        return incident

    def test_incident_fields(self, incident):
        assert incident['name'] == FIXTURE['subject']
        assert incident['occurred'] == FIXTURE['receivedDateTime']
        assert incident['details'] == FIXTURE['bodyPreview']
        assert isinstance(incident['rawJSON'], str)
        assert [set(a) for a in incident['attachment']] == [{'path', 'name'}] * 4

    def test_raw_json_has_the_existing_integration_keys_and_values(self, incident):
        raw = json.loads(incident['rawJSON'])
        assert set(ANCHOR_EMAIL_KEYS) <= set(raw)
        assert raw['ID'] == FIXTURE['id']
        assert (raw['CreatedTime'], raw['ModifiedTime'], raw['ReceivedTime'], raw['SentTime']) == (
            FIXTURE['createdDateTime'], FIXTURE['lastModifiedDateTime'], FIXTURE['receivedDateTime'],
            FIXTURE['sentDateTime'])
        assert raw['Subject'] == FIXTURE['subject']
        assert raw['Importance'] == 'high'
        assert raw['ConversationID'] == FIXTURE['conversationId']
        assert raw['IsRead'] is False and raw['IsDraft'] is False
        assert raw['MessageID'] == FIXTURE['internetMessageId']
        assert raw['Categories'] == ['Phishing Suspect', 'Finance']
        assert raw['Headers'] == FIXTURE['internetMessageHeaders']
        assert raw['Sender'] == raw['From'] == 'billing@fabrikam-payments.com'
        assert raw['To'] == ['soc@contoso.com', 'AdeleV@contoso.com']
        assert raw['Cc'] == ['AlexW@contoso.com'] and raw['Bcc'] == ['audit@contoso.com']
        assert raw['Body'] == FIXTURE['body']['content']
        assert raw['BodyType'] == 'html'
        assert 'Please review the attached invoice before Friday.' in raw['Text']
        assert 'SECRET-BODY-MARKER & more' in raw['Text']
        assert '<' not in raw['Text'] and 'color: red' not in raw['Text']
        assert raw['Mailbox'] == USER
        assert raw['Attachments'] == incident['attachment']

    def test_labels_one_per_field_header_and_recipient_without_bodies(self, incident):
        labels = incident['labels']
        assert all(set(label) == {'type', 'value'} and isinstance(label['value'], str) for label in labels)
        by_type = defaultdict(list)
        for label in labels:
            by_type[label['type']].append(label['value'])
        assert by_type['Email/To'] == ['soc@contoso.com', 'AdeleV@contoso.com']
        assert by_type['Email/Cc'] == ['AlexW@contoso.com']
        assert by_type['Email/Bcc'] == ['audit@contoso.com']
        assert by_type['Email/Categories'] == ['Phishing Suspect', 'Finance']
        assert by_type['Email/Subject'] == [FIXTURE['subject']]
        assert by_type['Email/From'] == by_type['Email/Sender'] == ['billing@fabrikam-payments.com']
        assert by_type['Email/ID'] == [FIXTURE['id']]
        assert by_type['Email/MessageID'] == [FIXTURE['internetMessageId']]
        assert by_type['Email/Mailbox'] == [USER]
        for header in FIXTURE['internetMessageHeaders']:
            assert by_type[f"Email/Header/{header['name']}"] == [header['value']]
        assert not {'Email/Body', 'Email/Text', 'Email/HTML'} & set(by_type)
        assert 'SECRET-BODY-MARKER' not in json.dumps(labels)

    @pytest.mark.parametrize('full_body, preview, shows_body', [
        (False, 'Short preview', False),
        (True, 'Short preview', True),
        (False, '', True),
    ], ids=['preview', 'display_full_email_body', 'empty-preview'])
    def test_details_is_the_preview_or_the_full_text_body(self, client, fake, full_body, preview, shows_body):
        fake.deliver(make_message(mail_id(1), at(minutes=5), preview=preview))
        _, (incident,) = fetch(client, {}, full_body=full_body)
        if not shows_body:
            assert incident['details'] == 'Short preview'
        else:
            assert 'SECRET-BODY-MARKER & more' in incident['details']
            assert 'Please review the attached invoice' in incident['details']
            assert '<' not in incident['details']


# ================================================================================ 6. MARK AS READ
class TestMarkAsRead:

    def test_only_mails_turned_into_incidents_are_marked_read_through_batch(self, client, fake):
        for n in range(1, 31):
            fake.deliver(mail(n, at(minutes=100 - n)))
        feed = Feed(client, limit=25, mark_read=True)
        ingested = feed.run()
        patches = [c for c in fake.batch_items if c.method == 'PATCH']
        assert sorted(fake._by_segment[c.path.rsplit('/', 1)[1]] for c in patches) == sorted(ingested)
        assert all(c.body == {'isRead': True} for c in patches)
        patch_posts = [p for p in fake.batch_posts() if p.body['requests'][0]['method'] == 'PATCH']
        assert [len(p.body['requests']) for p in patch_posts] == [20, 5]
        assert not fake.direct('PATCH', '.'), 'a mail was marked read outside $batch'
        assert [fake.store[mail_id(n)]['isRead'] for n in (25, 26)] == [True, False]
        assert feed.run() == [mail_id(n) for n in range(26, 31)]
        assert all(fake.store[mail_id(n)]['isRead'] for n in range(1, 31))

    def test_mark_read_off_sends_no_patch(self, client, fake):
        fake.deliver(mail(1, at(minutes=5)))
        fetch(client, {}, mark_read=False)
        assert not [c for c in fake.batch_items if c.method == 'PATCH'] and not fake.direct('PATCH', '.')

    @pytest.mark.parametrize('where, failure', [
        ('item', access_denied()),
        ('item', unavailable(500, None)),
        ('batch', throttled('300')),
        ('batch', unavailable(500, None)),
    ], ids=['item-403', 'item-500', 'batch-429', 'batch-500'])
    def test_a_failed_mark_read_does_not_lose_the_incidents(self, client, fake, info_log, where, failure):
        fake.deliver(mail(1, at(minutes=10)))
        fake.deliver(mail(2, at(minutes=5)))
        if where == 'item':
            fake.patch_item_answer = failure
        else:
            fake.patch_batch_fails = failure
        feed = Feed(client, mark_read=True)
        assert feed.run() == [mail_id(1), mail_id(2)]
        assert feed.last_run['pending'] == []
        assert any('read' in line for line in info_log)
        assert feed.run() == []


# ================================================================================ 7. FAILURES
class TestFailures:

    @pytest.mark.parametrize('failure', [throttled('1'), unavailable(503, '1'), unavailable(504, None),
                                         unavailable(500, None)], ids=['429', '503', '504', '500'])
    @pytest.mark.parametrize('first_run', [True, False], ids=['first-run', 'later-run'])
    def test_delta_failing_with_nothing_pending_fails_the_fetch(self, client, fake, sleeps, failure, first_run):
        fake.deliver(mail(1, at(minutes=30)))
        last_run: dict = {}
        if not first_run:
            last_run = fetch(client, {})[0]
            fake.calls.clear()
            fake.batch_items.clear()
        fake.deliver(mail(2, at(minutes=5)))
        fake.delta_fails = failure
        with pytest.raises(mgm.MailError):
            fetch(client, last_run)
        assert not fake.batch_posts()
        if failure[0] in (429, 503):
            assert len(fake.delta_calls()) == mgm.MAX_RETRY_ATTEMPTS, 'Retry-After was not honoured until the budget'

    def test_mails_already_pending_are_ingested_while_delta_is_throttled(self, client, fake, sleeps, info_log):
        for n in range(1, 6):
            fake.deliver(mail(n, at(minutes=60 - n)))
        feed = Feed(client, limit=2)
        assert feed.run() == [mail_id(1), mail_id(2)]
        cursor = feed.last_run['cursor']
        fake.deliver(mail(6, at(minutes=1)))
        fake.delta_fails = throttled('1')
        assert feed.run() == [mail_id(3), mail_id(4)]
        assert feed.last_run['cursor'] == cursor, 'the cursor moved although the round was not read'
        fake.delta_fails = None
        assert feed.run() == [mail_id(5), mail_id(6)]
        assert feed.run() == []


FOLDER_LOOKUP_URL = f'{WORLDWIDE}/v1.0/users/{USER}/mailFolders/inbox/childFolders'


def fail_folder_lookups(requests_mock: Any, failure: str) -> Any:
    """The lookup of the fetch folder's path (childFolders of the Inbox) is throttled, or times out, every time."""
    if failure == 'throttled':
        return requests_mock.get(FOLDER_LOOKUP_URL, status_code=429, headers={'Retry-After': '1'},
                                 json=load_json('fetch/error_throttled.json'))
    return requests_mock.get(FOLDER_LOOKUP_URL, exc=requests.exceptions.ReadTimeout)


class TestFolderLookupFailures:
    """A folder lookup that is throttled or times out says nothing about whether the folder exists."""

    @pytest.mark.parametrize('failure', ['throttled', 'timeout'])
    def test_pending_mail_is_ingested_and_the_folder_is_not_reported_missing(self, client, fake, requests_mock,
                                                                             sleeps, info_log, failure):
        for n in range(1, 6):
            fake.deliver(mail(n, at(minutes=60 - n)))
        feed = Feed(client, limit=2)
        assert feed.run() == [mail_id(1), mail_id(2)]
        cursor, deltas = feed.last_run['cursor'], len(fake.delta_calls())
        fake.deliver(mail(6, at(minutes=1)))
        lookup = fail_folder_lookups(requests_mock, failure)
        run_start = len(fake.calls)
        assert feed.run() == [mail_id(3), mail_id(4)]
        assert lookup.called
        assert len(fake.delta_calls()) == deltas and feed.last_run['cursor'] == cursor, \
            'new mail was looked for although the folder could not be resolved'
        assert fake.folder_requests(fake.calls[run_start:]) == [], \
            'the folder was checked by its id as if its path no longer resolved'
        assert not any('no longer resolves' in line or 'not found' in line for line in info_log), info_log
        assert any('looking for new mail failed' in line for line in info_log), info_log
        requests_mock.get(FOLDER_LOOKUP_URL, content=fake._on_request)   # the service answers again
        assert feed.run() == [mail_id(5), mail_id(6)]
        assert feed.run() == []

    @pytest.mark.parametrize('failure', ['throttled', 'timeout'])
    @pytest.mark.parametrize('first_run', [True, False], ids=['first-run', 'later-run'])
    def test_with_nothing_pending_the_fetch_fails_without_calling_the_folder_missing(self, client, fake, requests_mock,
                                                                                     sleeps, first_run, failure):
        fake.deliver(mail(1, at(minutes=30)))
        last_run = {} if first_run else fetch(client, {})[0]
        fake.deliver(mail(2, at(minutes=5)))
        run_start = len(fake.calls)
        fail_folder_lookups(requests_mock, failure)
        with pytest.raises(mgm.MailError) as raised:
            fetch(client, last_run)
        assert isinstance(raised.value, (mgm.ThrottledError, mgm.TransportError)), repr(raised.value)
        assert 'was not found' not in str(raised.value) and 'folder_to_fetch' not in str(raised.value)
        assert fake.calls[run_start:] == [], 'nothing may be read while the folder is unknown'


# ================================================================================ 8. main() FOR fetch-incidents
MAIN_PARAMS = {'url': WORLDWIDE, 'use_managed_identities': True, 'managed_identities_client_id': {'password': ''},
               'isFetch': True, 'mailbox_to_fetch': USER, 'folder_to_fetch': 'Inbox/Phishing',
               'first_fetch': '1 day', 'fetch_limit': '10'}


class Platform:
    """What main() hands the platform during fetch-incidents, in call order."""

    def __init__(self, monkeypatch: Any) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.monkeypatch = monkeypatch
        monkeypatch.setattr(demisto, 'command', lambda: 'fetch-incidents')
        monkeypatch.setattr(demisto, 'setLastRun', lambda obj: self.calls.append(('setLastRun', obj)))
        monkeypatch.setattr(demisto, 'incidents', lambda incidents: self.calls.append(('incidents', incidents)))
        monkeypatch.setattr(demisto, 'results', lambda entry: self.calls.append(('results', entry)))

    def run(self, last_run: dict, params: dict | None = None) -> None:
        self.calls.clear()
        self.monkeypatch.setattr(demisto, 'params', lambda: dict(params or MAIN_PARAMS))
        self.monkeypatch.setattr(demisto, 'getLastRun', lambda: copy.deepcopy(last_run))
        mgm.main()

    def sent(self, name: str) -> Any:
        (value,) = [v for n, v in self.calls if n == name]
        return value


@pytest.fixture
def platform(monkeypatch, requests_mock, sleeps) -> Platform:
    for name in ('IDENTITY_ENDPOINT', 'IDENTITY_HEADER', 'AZURE_POD_IDENTITY_AUTHORITY_HOST'):
        monkeypatch.delenv(name, raising=False)
    requests_mock.get('http://169.254.169.254/metadata/identity/oauth2/token',
                      json={'access_token': 'managed-identity-token', 'expires_in': '3599', 'token_type': 'Bearer'})
    build_client = mgm.build_client

    def build_without_real_sleep(*args: Any, **kwargs: Any) -> mgm.GraphClient:
        client = build_client(*args, **kwargs)
        client.retry = mgm.RetryPolicy(sleep=sleeps)
        return client

    monkeypatch.setattr(mgm, 'build_client', build_without_real_sleep)
    return Platform(monkeypatch)


class TestMain:

    def test_main_stores_the_last_run_then_sends_the_incidents(self, platform, fake):
        fake.deliver(mail(1, at(minutes=10)))
        fake.deliver(mail(2, at(minutes=5)))
        platform.run({})
        assert [name for name, _ in platform.calls] == ['setLastRun', 'incidents']
        assert ids_of(platform.sent('incidents')) == [mail_id(1), mail_id(2)]
        assert platform.sent('setLastRun')['folder_id'] == PHISH_ID
        assert fake.delta_calls()[0].headers['Authorization'] == 'Bearer managed-identity-token'

        fake.deliver(mail(3, at(minutes=1)))
        platform.run(platform.sent('setLastRun'))
        assert ids_of(platform.sent('incidents')) == [mail_id(3)]

    def test_main_raises_when_fetch_fails_so_the_platform_keeps_the_last_run(self, platform, fake):
        fake.deliver(mail(1, at(minutes=10)))
        fake.delta_fails = throttled('1')
        with pytest.raises(Exception) as raised:
            platform.run({})
        assert 'MailboxConcurrency' in str(raised.value) or 'throttling' in str(raised.value)
        assert platform.calls == [], 'no last run, incidents or war-room entry may be written for a failed fetch'

    def test_main_ingests_pending_mail_while_delta_fails(self, platform, fake):
        for n in range(1, 13):
            fake.deliver(mail(n, at(minutes=60 - n)))
        platform.run({})
        last_run = platform.sent('setLastRun')
        assert len(last_run['pending']) == 2
        fake.delta_fails = throttled('1')
        platform.run(last_run)
        assert [name for name, _ in platform.calls] == ['setLastRun', 'incidents']
        assert ids_of(platform.sent('incidents')) == [mail_id(11), mail_id(12)]


# ================================================================================ 9. DELTA TOKEN EXPIRED
SYNC_STATE_NOT_FOUND = load_json('fetch/error_sync_state_not_found.json')


class TestDeltaTokenExpired:

    @pytest.mark.parametrize('status, body', [
        (410, SYNC_STATE_NOT_FOUND),
        (400, SYNC_STATE_NOT_FOUND),
        (410, b''),
    ], ids=['410-SyncStateNotFound', '400-SyncStateNotFound', '410-no-body'])
    def test_a_new_round_takes_the_mail_of_the_gap_and_reads_no_ingested_mail_again(self, client, fake, status, body):
        fake.list_carries_nothing = True  # every read by id: the reads below count them
        fake.deliver(mail(1, at(minutes=40)))
        fake.deliver(mail(2, at(minutes=30)))
        fake.deliver(mail(3, at(minutes=25)))
        feed = Feed(client)
        assert feed.run() == [mail_id(1), mail_id(2), mail_id(3)]
        fake.expire_tokens(status, body)
        fake.deliver(mail(4, at(minutes=10)))
        fake.deliver(mail(5, at(minutes=28)))  # moved in while the token was dead, older than the last ingested mail
        reads_before = len(fake.message_reads())
        assert feed.run() == [mail_id(5), mail_id(4)]
        expired, restart = fake.delta_calls()[-2:]
        assert set(expired.query) == {'$deltatoken'} and expired.status == status
        assert restart.query['$select'] == 'id,receivedDateTime' and restart.query['changeType'] == 'created'
        assert fake.message_reads()[reads_before:] == [mail_id(5), mail_id(4)], 'ingested mail was read again'
        fake.deliver(mail(6, at(minutes=1)))
        assert feed.run() == [mail_id(6)]

    def test_old_mail_moved_in_just_before_the_token_expired_is_ingested_once(self, client, fake):
        """The new round starts at the first-fetch time while the seen set holds every ingested mail: mail moved in
        late with an old receivedDateTime is found again, mail that was never to be fetched is not."""
        fake.deliver(mail(1, at(days=2)))                    # in the folder before first_fetch: never fetched
        fake.deliver(mail(2, at(minutes=40)))
        fake.deliver(mail(3, at(minutes=30)))
        fake.deliver(mail(4, at(hours=20)), folder=INBOX_ID)
        feed = Feed(client, first_fetch='1 day')
        assert feed.run() == [mail_id(2), mail_id(3)]
        fake.move(mail_id(4), INBOX_ID)                      # received 20 hours ago, moved in now ...
        fake.expire_tokens(410, SYNC_STATE_NOT_FOUND)        # ... and the token expires before the next run
        reads_before = len(fake.message_reads())
        assert feed.run() == [mail_id(4)]
        assert fake.message_reads()[reads_before:] == [mail_id(4)]
        assert feed.run() == []
        fake.expire_tokens(410, SYNC_STATE_NOT_FOUND)
        assert feed.run() == []
        assert fake.message_reads().count(mail_id(4)) == 1
        assert mail_id(1) not in fake.message_reads()

    def test_with_a_full_seen_set_the_new_round_starts_at_the_oldest_mail_it_holds(self, client, fake, monkeypatch):
        """Mail older than every entry of a full seen set was ingested but is no longer recognised: a new round
        from the first-fetch time would ingest it again."""
        monkeypatch.setattr(mgm, 'FETCH_SEEN_CAP', 3)
        for n in range(1, 6):
            fake.deliver(mail(n, at(minutes=60 - 10 * n)))   # 50, 40, 30, 20 and 10 minutes ago
        feed = Feed(client, first_fetch='1 day')
        assert feed.run() == [mail_id(n) for n in range(1, 6)]
        assert len(feed.last_run['seen']) == 3               # mails 1 and 2 are no longer known
        fake.expire_tokens(410, SYNC_STATE_NOT_FOUND)
        fake.deliver(mail(6, at(minutes=25)))
        assert feed.run() == [mail_id(6)]                    # Feed fails on a duplicate of mail 1 or 2
        assert fake.message_reads().count(mail_id(1)) == 1 and fake.message_reads().count(mail_id(2)) == 1


class TestRestartPoint:
    FLOOR = '2024-03-10T10:00:00Z'

    @staticmethod
    def state(received: list[str]) -> mgm.FetchState:
        seen = [[mgm.id_digest(mail_id(n)), mgm.epoch_of(r)] for n, r in enumerate(received)]
        return mgm.FetchState(mailbox=USER, folder_id=PHISH_ID, window_floor=TestRestartPoint.FLOOR, seen=seen)

    def test_while_the_seen_set_is_below_its_cap_a_new_round_starts_at_the_first_fetch_time(self):
        received = [at(hours=5, seconds=-n) for n in range(mgm.FETCH_SEEN_CAP - 1)]
        assert self.state(received).restart_point() == self.FLOOR

    def test_a_full_seen_set_that_forgot_nothing_still_starts_at_the_first_fetch_time(self):
        received = [at(hours=5, seconds=-n) for n in range(mgm.FETCH_SEEN_CAP)]
        assert self.state(received).restart_point() == self.FLOOR

    def test_a_full_seen_set_forgets_the_earliest_received_mail_and_starts_after_it(self):
        """Ingestion order is not arrival order (a late-moved old mail is ingested last): the set forgets the mail
        received earliest, so everything ingested from the new round's start is still recognised."""
        received = [at(hours=5, seconds=-n) for n in range(mgm.FETCH_SEEN_CAP)]
        received = received[1000:] + received[:1000]
        state = self.state(received)
        state.remember([{'id': 'late-moved-old-mail', 'receivedDateTime': at(days=20)},
                        {'id': 'new-mail', 'receivedDateTime': at(minutes=1)}])
        assert len(state.seen) == mgm.FETCH_SEEN_CAP
        earliest_two = sorted(received + [at(days=20)])[:2]   # the old mail and the earliest of the others
        kept = {epoch for _, epoch in state.seen}
        assert not {mgm.epoch_of(r) for r in earliest_two} & kept
        assert state.restart_point() == at(hours=5, seconds=-1)   # just after the last forgotten one

    def test_a_full_seen_set_never_starts_before_the_first_fetch_time(self):
        received = [at(days=3, seconds=-n) for n in range(mgm.FETCH_SEEN_CAP)]
        assert self.state(received).restart_point() == self.FLOOR


# ================================================================================ 10. WITHOUT DELTA
class TestReceivedTimeWindow:

    def test_delta_refused_falls_back_to_a_received_time_window_with_overlap(self, client, fake):
        fake.delta_fails = answer(400, 'error_delta_not_supported.json')
        fake.deliver(mail(1, at(minutes=50)))
        fake.deliver(mail(2, at(minutes=40)))
        feed = Feed(client, first_fetch='1 hour')
        assert feed.run() == [mail_id(1), mail_id(2)]
        (listing,) = fake.window_listings()
        assert listing.path == f'/users/{USER}/mailFolders/{seg(PHISH_ID)}/messages'
        assert listing.query['$orderby'] == 'receivedDateTime asc'
        assert listing.query['$filter'].startswith('receivedDateTime ge ')
        assert feed.last_run['mode'] == 'window'

        delta_requests = len(fake.delta_calls())
        fake.deliver(mail(3, at(minutes=45)))  # visible late, older than the last ingested mail: inside the overlap
        fake.deliver(mail(4, at(minutes=5)))
        assert feed.run() == [mail_id(3), mail_id(4)]
        assert len(fake.delta_calls()) == delta_requests, 'delta was asked again after it was refused'
        since = fake.window_listings()[-1].query['$filter'].split()[-1]
        assert since <= at(minutes=45)
        assert feed.run() == []

    def test_delta_refused_after_expiry_restarts_the_window_where_nothing_is_lost(self, client, fake):
        """Switching to the window fallback later starts at the restart point, like a new delta round."""
        fake.deliver(mail(1, at(days=2)))                    # before first_fetch
        fake.deliver(mail(2, at(minutes=40)))
        fake.deliver(mail(3, at(minutes=30)))
        fake.deliver(mail(4, at(hours=20)), folder=INBOX_ID)
        feed = Feed(client, first_fetch='1 day')
        assert feed.run() == [mail_id(2), mail_id(3)]
        fake.move(mail_id(4), INBOX_ID)                      # old mail moved in
        fake.delta_fails = answer(400, 'error_delta_not_supported.json')
        assert feed.run() == [mail_id(4)]
        assert feed.last_run['mode'] == 'window'
        (listing,) = fake.window_listings()
        assert listing.query['$filter'] == f'receivedDateTime ge {at(days=1)}'
        assert feed.run() == []
        assert fake.message_reads() == [mail_id(2), mail_id(3), mail_id(4)]

    def test_21vianet_fetches_by_received_time_and_loses_nothing(self, china, sleeps):
        client, fake = china
        for n in range(1, 13):
            fake.deliver(mail(n, at(minutes=120 - n)))
        feed = Feed(client, limit=5)
        assert feed.run() == [mail_id(n) for n in range(1, 6)]
        fake.deliver(mail(13, at(minutes=60)))  # appears late with an older receivedDateTime, inside the overlap
        feed.drain()
        assert sorted(feed.all_ids) == sorted(mail_id(n) for n in range(1, 14))
        assert not fake.delta_calls()
        for listing in fake.window_listings():
            assert listing.query['$orderby'] == 'receivedDateTime asc'
            assert re.fullmatch(r'receivedDateTime ge \S+Z', listing.query['$filter'])

    def test_21vianet_first_run_honours_first_fetch(self, china):
        """The window overlap exists for mail the seen set covers; on the first run nothing is covered, so the
        window must not reach before first_fetch."""
        client, fake = china
        fake.deliver(mail(1, at(minutes=65)))  # before first_fetch
        fake.deliver(mail(2, at(minutes=30)))
        assert Feed(client, first_fetch='1 hour').run() == [mail_id(2)]

    def test_21vianet_changing_the_folder_starts_over_from_first_fetch(self, china):
        """A changed folder starts a new state; in window mode it needs a window start (first_fetch)."""
        client, fake = china
        fake.deliver(mail(1, at(minutes=30)))
        last_run = fetch(client, {})[0]
        last_run.update(folder='Inbox', folder_id='inbox')  # the instance fetched Inbox before
        fake.deliver(mail(2, at(minutes=5)))
        assert Feed(client, last_run=last_run).run() == [mail_id(2)]

    def test_changing_the_folder_starts_over_from_first_fetch(self, client, fake):
        fake.deliver(mail(1, at(minutes=30)))
        last_run = fetch(client, {}, folder='Inbox/Phishing')[0]
        last_run.update(folder='Inbox', folder_id='inbox')  # the instance fetched Inbox before
        fake.deliver(mail(2, at(minutes=5)))
        assert Feed(client, last_run=last_run).run() == [mail_id(2)]


# ================================================================================ 11. THE FOLDER
def run_calls_of(fake: FakeGraph, feed: Feed, **overrides: Any) -> tuple[list[str], list[Call]]:
    """One run of `feed`: the ids it ingested and the requests it made."""
    start = len(fake.calls)
    ids = feed.run(**overrides)
    return ids, fake.calls[start:]


def folder_lookups(calls: list[Call]) -> list[Call]:
    """The look-up of the cached folder when its path no longer resolves."""
    return [c for c in calls if re.search(r'/mailFolders/[^/]+$', c.path)]


class TestFolder:

    @pytest.mark.parametrize('change', ['renamed', 'moved'])
    def test_a_renamed_or_moved_folder_with_an_unchanged_parameter_is_fetched_by_its_id(self, client, fake, info_log,
                                                                                       change):
        fake.deliver(mail(1, at(minutes=30)))
        feed = Feed(client)
        assert feed.run() == [mail_id(1)]
        if change == 'renamed':
            fake.rename_folder('Phishing (triaged)')
        else:
            fake.move_folder(ROOT_ID)
        for n in (2, 3):
            fake.deliver(mail(n, at(minutes=10 - n)))
            ids, calls = run_calls_of(fake, feed)
            assert ids == [mail_id(n)]
            lookups = {c.path: c.query for c in folder_lookups(calls)}
            assert lookups[f'/users/{USER}/mailFolders/{seg(PHISH_ID)}'] == {'$select': 'id,parentFolderId'}
            if n == 2:   # Deleted Items' id is looked up once, then kept in the last run
                assert lookups[f'/users/{USER}/mailFolders/deleteditems'] == {'$select': 'id'}
            else:
                assert f'/users/{USER}/mailFolders/deleteditems' not in lookups
            (delta,) = [c for c in calls if c.path.endswith('/messages/delta')]
            assert delta.path == f'/users/{USER}/mailFolders/{seg(PHISH_ID)}/messages/delta'
            assert set(delta.query) == {'$deltatoken'}, 'the cursor of the folder must continue'
        assert feed.last_run['folder_id'] == PHISH_ID
        assert any("'Inbox/Phishing'" in line and 'folder_to_fetch' in line for line in info_log), info_log

    def test_a_renamed_folder_whose_parameter_is_updated_continues_its_cursor(self, client, fake):
        fake.list_carries_nothing = True  # every read by id: the reads below count them
        fake.deliver(mail(1, at(minutes=30)))
        fake.deliver(mail(2, at(days=3)), folder=INBOX_ID)
        feed = Feed(client, first_fetch='1 day')
        assert feed.run() == [mail_id(1)]
        fake.rename_folder('Phishing (triaged)')
        feed.settings['folder'] = 'Inbox/Phishing (triaged)'
        fake.move(mail_id(2), INBOX_ID)      # older than first_fetch: only the running cursor takes it
        fake.deliver(mail(3, at(minutes=5)))
        ids, calls = run_calls_of(fake, feed)
        assert ids == [mail_id(2), mail_id(3)]
        (resolve,) = fake.folder_requests(calls)
        assert resolve.path == f'/users/{USER}/mailFolders/inbox/childFolders'
        assert resolve.query['$filter'] == "displayName eq 'Phishing (triaged)'"
        (delta,) = [c for c in calls if c.path.endswith('/messages/delta')]
        assert delta.path == f'/users/{USER}/mailFolders/{seg(PHISH_ID)}/messages/delta'
        assert set(delta.query) == {'$deltatoken'}
        assert (feed.last_run['folder'], feed.last_run['folder_id']) == ('Inbox/Phishing (triaged)', PHISH_ID)
        assert feed.run() == []
        assert fake.message_reads() == [mail_id(1), mail_id(2), mail_id(3)]

    @pytest.mark.parametrize('first_run', [True, False], ids=['first-run', 'later-run'])
    @pytest.mark.parametrize('purged', [False, True], ids=['moved-to-deleted-items', 'purged'])
    def test_a_deleted_folder_is_an_error_naming_folder_and_mailbox_and_is_not_read(self, client, fake, first_run,
                                                                                    purged):
        fake.deliver(mail(1, at(minutes=30)))
        last_run = {} if first_run else fetch(client, {})[0]
        fake.delete_folder()                 # Graph moves it into Deleted Items; its id and delta still work there
        fake.deliver(mail(2, at(minutes=5)))  # e.g. an inbox rule still moving mail into it
        if purged:
            fake.purge_folder()
        run_start = len(fake.calls)
        with pytest.raises(mgm.MailError) as raised:
            fetch(client, last_run)
        assert 'Inbox/Phishing' in str(raised.value) and USER in str(raised.value), str(raised.value)
        calls = fake.calls[run_start:]
        assert not [c for c in calls if '/messages' in c.path or c.path == '/$batch'], 'the deleted folder was read'
        if not first_run:
            assert f'/users/{USER}/mailFolders/{seg(PHISH_ID)}' in [c.path for c in folder_lookups(calls)]

    def test_a_folder_deleted_and_created_again_at_the_same_path_is_read_from_a_fresh_round(self, client, fake):
        fake.deliver(mail(1, at(minutes=30)))
        fake.deliver(mail(2, at(days=2)), folder=INBOX_ID)
        feed = Feed(client, first_fetch='1 day')
        assert feed.run() == [mail_id(1)]
        fake.recreate_folder(NEW_PHISH_ID)
        fake.move(mail_id(1), PHISH_ID)      # the same mail, moved from the old folder into the new one
        fake.move(mail_id(2), INBOX_ID)      # received before first_fetch: a fresh round does not take it
        fake.deliver(mail(3, at(minutes=20)))
        fake.deliver(mail(4, at(minutes=10)), folder=PHISH_ID)  # into the old folder, now in Deleted Items
        ids, calls = run_calls_of(fake, feed)
        assert ids == [mail_id(3)]
        assert feed.last_run['folder_id'] == NEW_PHISH_ID
        assert not [c for c in calls if seg(PHISH_ID) in c.path], 'the old folder in Deleted Items was read'
        assert [c.path for c in fake.folder_requests(calls)] == [f'/users/{USER}/mailFolders/inbox/childFolders']
        (restart,) = [c for c in calls if c.path.endswith('/messages/delta')]
        assert restart.path == f'/users/{USER}/mailFolders/{seg(NEW_PHISH_ID)}/messages/delta'
        assert restart.query['changeType'] == 'created' and '$deltatoken' not in restart.query
        fake.deliver(mail(5, at(minutes=1)))
        assert feed.run() == [mail_id(5)]
        assert fake.message_reads() == [mail_id(1), mail_id(3), mail_id(5)]


# ================================================================================ 12. MIGRATION
TRANSLATION_UNAVAILABLE = {
    'not-in-this-cloud': answer(400, 'error_translate_exchange_ids_unavailable.json'),
    'access-denied': answer(403, 'error_access_denied.json'),
    'nothing-translated': (200, {}, {'value': []}),
}


def legacy_mailbox(fake: FakeGraph) -> dict[str, str]:
    """The folder as the existing integration left it (its last run: test_data/fetch/legacy_last_run.json).

    Returns the immutable ids, which delta reports; the last run holds the regular ids of 'found' and 'last'."""
    time_cursor = LEGACY_LAST_RUN['time']
    ids = {
        'earlier_run': fake.deliver(mail(901, '2024-03-11T09:25:00Z')),  # ingested by an earlier run
        'found': fake.deliver(mail(910, '2024-03-11T09:29:55Z'), regular_id=LEGACY_FOUND_ID),
        'last': fake.deliver(mail(911, time_cursor), regular_id=LEGACY_LAST_ID),
        # shares the second of `time` but was beyond the old fetch_limit: never ingested
        'same_second': fake.deliver(mail(902, time_cursor)),
        'next_second': fake.deliver(mail(904, '2024-03-11T09:30:01Z')),
        'new': fake.deliver(mail(903, '2024-03-11T09:35:00Z')),
    }
    assert not {LEGACY_FOUND_ID, LEGACY_LAST_ID} & set(ids.values()), 'regular and immutable ids must differ'
    return ids


class TestMigration:

    @pytest.mark.parametrize('time_key, value', [('time', '2024-03-11T09:30:00Z'), ('time', '2024-03-11T09:30:00'),
                                                 ('LAST_RUN_TIME', '2024-03-11T09:30:00Z')])
    def test_existing_integration_last_run_is_translated_and_continued_from_its_time(self, client, fake, time_key,
                                                                                    value):
        ids = legacy_mailbox(fake)
        legacy = {k: v for k, v in LEGACY_LAST_RUN.items() if k != 'time'}
        legacy[time_key] = value
        feed = Feed(client, last_run=legacy, first_fetch='3 days')
        assert feed.run() == [ids['same_second'], ids['next_second'], ids['new']]
        (translate,) = fake.translate_calls()
        assert translate.path == f'/users/{USER}/translateExchangeIds'
        assert sorted(translate.body['inputIds']) == sorted([LEGACY_LAST_ID, LEGACY_FOUND_ID])
        assert (translate.body['sourceIdType'], translate.body['targetIdType']) == ('restId', 'restImmutableEntryId')
        assert feed.last_run['fetch_state_version'] == mgm.FETCH_STATE_VERSION
        fake.deliver(mail(905, at(minutes=1)))
        assert feed.run() == [mail_id(905)]
        assert len(fake.translate_calls()) == 1, 'the last run of the existing integration is taken over once'

    def test_migration_ingests_the_unfetched_mail_of_the_last_second_but_not_the_fetched_one(self, client, fake):
        """The existing integration's `time` is the second of its last incident; mail of that second beyond its
        fetch_limit was never ingested (anchor-xsoar.md §9.2, the same-second bug). Its ids, translated to immutable
        ids, tell the two apart: the new round starts at `time` itself."""
        fake.list_carries_nothing = True  # every read by id: the reads below count them
        ids = legacy_mailbox(fake)
        feed = Feed(client, last_run=LEGACY_LAST_RUN)
        assert feed.run() == [ids['same_second'], ids['next_second'], ids['new']]
        assert not {ids['last'], ids['found'], ids['earlier_run']} & set(fake.message_reads())
        assert feed.run() == []

    @pytest.mark.parametrize('failure', list(TRANSLATION_UNAVAILABLE.values()), ids=list(TRANSLATION_UNAVAILABLE))
    def test_migration_without_translation_starts_one_second_after_time(self, client, fake, info_log, failure):
        """Without translation the ingested mail of the last second cannot be recognised: fetch continues at
        time + 1 s, as the existing integration itself would have (no duplicate; the same-second mail stays lost)."""
        ids = legacy_mailbox(fake)
        fake.translate_fails = failure
        feed = Feed(client, last_run=LEGACY_LAST_RUN)
        assert feed.run() == [ids['next_second'], ids['new']]
        assert len(fake.translate_calls()) == 1
        assert not {ids['last'], ids['same_second']} & set(fake.message_reads())
        if failure[0] != 200:
            assert any('translated' in line for line in info_log), info_log
        assert feed.run() == []

    def test_a_throttled_translation_fails_the_run_so_the_next_one_translates(self, client, fake, sleeps):
        ids = legacy_mailbox(fake)
        fake.translate_fails = throttled('1')
        with pytest.raises(mgm.MailError):
            fetch(client, LEGACY_LAST_RUN)
        fake.translate_fails = None
        assert Feed(client, last_run=LEGACY_LAST_RUN).run() == [ids['same_second'], ids['next_second'], ids['new']]

    @pytest.mark.parametrize('translated', [True, False], ids=['translated', 'not-translated'])
    def test_21vianet_migration_does_not_ingest_mail_from_before_time_again(self, china, translated):
        """Mail the existing integration ingested in runs before its last one is not in its last run's ids; the
        window must therefore not reach before `time`, or that mail becomes a duplicate incident."""
        client, fake = china
        fake.list_carries_nothing = True  # every read by id: the reads below count them
        ids = legacy_mailbox(fake)
        if not translated:
            fake.translate_fails = TRANSLATION_UNAVAILABLE['not-in-this-cloud']
        feed = Feed(client, last_run=LEGACY_LAST_RUN)
        expected = ([ids['same_second']] if translated else []) + [ids['next_second'], ids['new']]
        assert feed.run() == expected
        (listing,) = fake.window_listings()
        since = '2024-03-11T09:30:00Z' if translated else '2024-03-11T09:30:01Z'
        assert listing.query['$filter'] == f'receivedDateTime ge {since}'
        assert feed.run() == []


# ================================================================================ 13. REQUEST ECONOMY
def test_request_economy_1000_mails_with_fetch_limit_50(client, fake, in_tmp_dir):
    """1,000 mails (30 % with one small attachment): 600 waiting at the first run, 20 more arriving before each
    later run, fetch_limit 50, until drained. Every mail exactly once, in arrival order; requests per mail printed."""
    def arrive(n: int) -> None:
        attachments, contents = [], {}
        if n % 10 < 3:
            attachment_id = f'{mail_id(n)[:-4]}ATT{n:04d}='
            data = f'report {n}\n'.encode() * 100
            attachments, contents = [small_file(attachment_id, f'report-{n}.pdf', data)], {attachment_id: data}
        fake.deliver(mail(n, at(minutes=1100 - n), attachments=attachments), contents)

    for n in range(1, 601):
        arrive(n)
    feed = Feed(client, limit=50)
    delivered = 600
    for _ in range(100):
        ids = feed.run()
        if not ids and not feed.last_run['pending'] and delivered == 1000:
            break
        for n in range(delivered + 1, min(delivered + 20, 1000) + 1):
            arrive(n)
        delivered = min(delivered + 20, 1000)
    assert feed.all_ids == [mail_id(n) for n in range(1, 1001)]
    with_files = [i for i in feed.incidents if i['attachment']]
    assert len(with_files) == 300
    assert len(list(in_tmp_dir.iterdir())) == 300

    kinds: dict[str, int] = defaultdict(int)
    for call in fake.calls:
        kind = ('$batch' if call.path == '/$batch' else 'delta' if call.path.endswith('/delta')
                else 'folder' if '/mailFolders/' in call.path else 'other')
        kinds[kind] += 1
    total = len(fake.calls)
    print(f'\nrequest economy: {total} HTTP requests for 1000 mails in {len(feed.runs)} runs = '
          f'{total / 1000:.3f} requests per mail ({dict(kinds)})')


# ================================================================================ 14. EDGE CASES FOUND IN REVIEW
class TestEdgeCasesFoundInReview:

    def test_a_full_seen_set_with_a_late_moved_old_mail_does_not_duplicate_after_expiry(self, client, fake, monkeypatch):
        """The set forgets the mail received earliest (not the mail ingested first), so a late-moved old mail
        cannot pull the restart point back over mail it no longer knows."""
        monkeypatch.setattr(mgm, 'FETCH_SEEN_CAP', 3)
        for n in range(1, 4):
            fake.deliver(mail(n, at(minutes=60 - 10 * n)))
        fake.deliver(mail(4, at(hours=20)), folder=INBOX_ID)
        feed = Feed(client, first_fetch='1 day')
        assert feed.run() == [mail_id(1), mail_id(2), mail_id(3)]
        fake.move(mail_id(4), INBOX_ID)                           # moved from the Inbox into the fetch folder
        assert feed.run() == [mail_id(4)]
        fake.expire_tokens(410, SYNC_STATE_NOT_FOUND)
        assert feed.run() == []                                   # Feed fails on a duplicate

    def test_a_folder_configured_by_id_is_an_error_once_deleted(self, client, fake):
        fake.deliver(mail(1, at(minutes=30)))
        feed = Feed(client, folder=PHISH_ID)
        assert feed.run() == [mail_id(1)]
        fake.delete_folder()
        fake.deliver(mail(2, at(minutes=5)))
        with pytest.raises(mgm.MailError, match='deleted'):
            feed.run()

    def test_a_folder_whose_parent_was_deleted_is_an_error(self, client, fake):
        security = FOLDER_ID_PREFIX + 'AAEy/cSSAAA='
        fake.add_folder(security, 'Security', INBOX_ID)
        fake.folders[PHISH_ID]['parentFolderId'] = security
        fake.deliver(mail(1, at(minutes=30)))
        feed = Feed(client, folder='Inbox/Security/Phishing')
        assert feed.run() == [mail_id(1)]
        fake.folders[security]['parentFolderId'] = DELETED_ITEMS_ID
        fake.deliver(mail(2, at(minutes=5)))
        with pytest.raises(mgm.MailError, match='Inbox/Security/Phishing'):
            feed.run()

    def test_a_changed_parameter_that_does_not_resolve_is_an_error_not_the_old_folder(self, client, fake):
        fake.deliver(mail(1, at(minutes=30)))
        feed = Feed(client)
        assert feed.run() == [mail_id(1)]
        fake.deliver(mail(2, at(minutes=5)))
        with pytest.raises(mgm.MailError, match='Check the path'):
            feed.run(folder='Inbox/Phishin')

    def test_a_transient_translation_failure_is_retried_next_run_not_given_up(self, client, fake):
        ids = legacy_mailbox(fake)
        fake.translate_fails = unavailable(500, None)
        with pytest.raises(mgm.MailError):
            mgm.fetch_incidents(client, dict(LEGACY_LAST_RUN), mgm.FetchSettings(
                mailbox=USER, folder='Inbox/Phishing', first_fetch='3 days'))
        fake.translate_fails = None
        got = Feed(client, last_run=LEGACY_LAST_RUN).run()
        assert ids['same_second'] in got and ids['last'] not in got


# ================================================================================ RANGE READS: refused completions (review)
def test_completing_reads_all_refused_with_400_fail_the_fetch_instead_of_skipping_listed_mail(client, fake,
                                                                                              monkeypatch):
    """The listing carried the mails but not their attachments; every read by id that completes them is refused
    with the same 400 (a query problem, such as a property the attachment $select names): the mails are readable
    (they were listed), so none may be skipped."""
    errors: list[str] = []
    monkeypatch.setattr(demisto, 'error', lambda *parts: errors.append(' '.join(str(p) for p in parts)))
    fake.list_ignores_expand = True
    for n in range(1, 4):
        fake.deliver({**mail(n, at(minutes=30 - n)), 'hasAttachments': True})
    refusal = answer(400, 'error_attachment_contentid_select.json')
    original = fake._message
    monkeypatch.setattr(fake, '_message', lambda message_id, call: refusal)
    with pytest.raises(mgm.MailError, match='could not be read'):
        fetch(client, {})
    assert errors == []
    monkeypatch.setattr(fake, '_message', original)
    assert Feed(client).run() == [mail_id(1), mail_id(2), mail_id(3)]  # the platform kept the previous last run


def test_a_mail_left_out_of_the_listing_and_refused_with_400_is_still_skipped_alone(client, fake, monkeypatch):
    errors: list[str] = []
    monkeypatch.setattr(demisto, 'error', lambda *parts: errors.append(' '.join(str(p) for p in parts)))
    for n in range(1, 4):
        fake.deliver(mail(n, at(minutes=30 - n)))
    fake.failing[mail_id(2)] = (400, {}, {'error': {'code': 'ErrorInvalidRequest', 'message': 'The item cannot be read.'}})
    assert Feed(client).run() == [mail_id(1), mail_id(3)]
    assert len(errors) == 1 and mail_id(2) in errors[0]
