"""End to end: fetch-incidents run again and again through the CLI, as the platform runs it.

Every scenario carries the state from run to run in the state file only, collects the incidents of
all runs until a run returns none, and checks the one property that matters: every mail put into the
fetch folder became exactly one incident, with its attachments, whatever happened in between
(throttling, killed runs, late and concurrent arrivals, renamed folders, expired delta tokens, clouds
without delta). A failed run may happen (the platform then keeps the last run); losing or
duplicating a mail may not.
"""
import base64
import json
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from sandbox.content import generated_blob
from tests.e2e_support import Instance

pytestmark = pytest.mark.e2e

MAILBOX = 'soc@contoso.com'
DELTA_ENDPOINT = 'GET /v1.0/users/{user}/mailFolders/{folder}/messages/delta'
LIST_ENDPOINT = 'GET /v1.0/users/{user}/mailFolders/{folder}/messages'
MESSAGE_ITEM = r'^/v1\.0/users/[^/]+/messages/[^/]+$'  # a message read by id (the fetch reads them in $batch)
FOLDER_LISTING = r'^/v1\.0/users/[^/]+/mailFolders/[^/]+/messages$'  # the range listing fetch reads pending mail by
ATTACHMENT_ITEM = r'^/v1\.0/users/[^/]+/messages/[^/]+/attachments/[^/]+$'


# ---------------------------------------------------------------- time
def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace('Z', '+00:00'))


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f'timed out after {timeout} s waiting for {what}')


# ---------------------------------------------------------------- what the test put into the folder
@dataclass
class Mail:
    id: str  # immutable id: the fetch reads with Prefer: IdType="ImmutableId", so rawJSON ID is this
    subject: str
    received: str
    message_id: str  # internetMessageId
    attachments: dict = field(default_factory=dict)  # name -> bytes


class Mails:
    """The oracle: every mail the fetch must turn into exactly one incident."""

    def __init__(self, sandbox: Any):
        self.sandbox = sandbox
        self.expected: dict[str, Mail] = {}

    def add(self, folder: str, *, expected: bool = True, **spec: Any) -> Mail:
        message = self.sandbox.add_message(MAILBOX, folder, **spec)
        attachments = {}
        for attachment in spec.get('attachments') or []:
            if 'content_b64' in attachment:
                attachments[attachment['name']] = base64.b64decode(attachment['content_b64'])
            else:
                attachments[attachment['name']] = str(attachment['content']).encode()
        mail = Mail(message['immutableId'], message['subject'], message['receivedDateTime'],
                    message['internetMessageId'], attachments)
        if expected:
            self.expect(mail)
        return mail

    def bulk(self, folder: str, count: int, *, attachment_ratio: float = 0.0, attachment_size: int = 2048,
             **options: Any) -> list[Mail]:
        created = self.sandbox.add_messages_bulk(MAILBOX, folder, count, attachment_ratio=attachment_ratio,
                                                 attachment_size=attachment_size, **options)
        listed = {m['immutableId']: m for f in self.sandbox.mailbox(MAILBOX, folder)['folders'] for m in f['messages']}
        mails = []
        for index, immutable_id in enumerate(created['immutable_ids']):
            info = listed[immutable_id]
            name = f'report-{index + 1:05d}.pdf'
            attachments = {name: generated_blob(name, attachment_size).read_all()} if info['hasAttachments'] else {}
            mails.append(self.expect(Mail(immutable_id, info['subject'], info['receivedDateTime'],
                                          info['internetMessageId'], attachments)))
        if attachment_ratio:
            assert sum(1 for m in mails if m.attachments) == int(count * attachment_ratio), 'bulk setup'
        return mails

    def move_in(self, mail: Mail, destination: str) -> Mail:
        """A server-side move that keeps receivedDateTime: the mail arrives late in `destination`."""
        moved = self.sandbox.move_message(MAILBOX, mail.id, destination)
        assert moved['immutableId'] == mail.id and moved['receivedDateTime'] == mail.received
        return self.expect(mail)

    def expect(self, mail: Mail) -> Mail:
        self.expected[mail.id] = mail
        return mail


def pdf(name: str, text: str) -> dict:
    return {'name': name, 'contentType': 'application/pdf',
            'content_b64': base64.b64encode(b'%PDF-1.4\n' + text.encode() + b'\n%%EOF\n').decode()}


# ---------------------------------------------------------------- running fetch like the platform
@dataclass
class Run:
    returncode: int
    incidents: list
    seconds: float
    stderr: str


def delivered_incidents(stdout: str) -> list:
    """Incidents a run handed to the platform (a killed or failed run may print nothing at all)."""
    try:
        return json.loads(stdout).get('incidents') or []
    except ValueError:
        return []


class Fetcher:
    """Runs fetch-incidents again and again with the state carried in the instance's state file."""

    def __init__(self, instance: Instance):
        self.instance = instance
        self.runs: list[Run] = []
        self.incidents: list = []

    def last_run(self) -> Optional[dict]:
        return self.instance.state().get('last_run')

    def _record(self, returncode: int, stdout: str, stderr: str, before: Optional[dict], seconds: float,
                may_fail: bool) -> Run:
        assert 'Traceback' not in stderr, stderr
        if returncode == 0:
            incidents = json.loads(stdout)['incidents'] or []
            assert self.last_run() == json.loads(stdout)['last_run'], 'a completed fetch must commit its last run'
        else:
            assert may_fail, f'fetch-incidents failed (exit {returncode}): {stderr.strip()}'
            assert returncode == 1, stderr
            assert stderr.strip(), 'a failed fetch must say why'
            incidents = delivered_incidents(stdout)
            assert incidents == [], 'a failed fetch delivered incidents'
            assert self.last_run() == before, 'a failed fetch changed the last run'
        run = Run(returncode, incidents, seconds, stderr)
        self.runs.append(run)
        self.incidents.extend(incidents)
        return run

    def run(self, may_fail: bool = False) -> Run:
        before, started = self.last_run(), time.monotonic()
        result = self.instance.run('fetch-incidents', timeout=120)
        return self._record(result.returncode, result.stdout, result.stderr, before, time.monotonic() - started,
                            may_fail)

    def run_while(self, action: Callable[[subprocess.Popen], None]) -> Run:
        """Starts a fetch, lets `action` act while it is in progress, then records its outcome."""
        before, started = self.last_run(), time.monotonic()
        process = self.instance.start('fetch-incidents')
        try:
            action(process)
            stdout, stderr = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        return self._record(process.returncode, stdout, stderr, before, time.monotonic() - started, False)

    def kill_during(self, sandbox: Any, what: str, **fault: Any) -> None:
        """Starts a fetch, holds it inside the request a delay fault matches, kills it there."""
        before = self.last_run()
        rule = sandbox.add_fault(**fault)
        process = self.instance.start('fetch-incidents')
        try:
            wait_for(lambda: next(r for r in sandbox.faults() if r['id'] == rule)['matched'] >= 1, what)
            assert process.poll() is None, f'the fetch ended before it was killed {what}'
            process.kill()
            stdout, _ = process.communicate(timeout=30)
        finally:
            sandbox.remove_fault(rule)
            if process.poll() is None:
                process.kill()
                process.communicate()
        assert process.returncode < 0, 'the fetch was not killed'
        assert delivered_incidents(stdout) == [], f'the fetch killed {what} delivered incidents'
        assert self.last_run() == before, f'the fetch killed {what} committed a last run'
        self.runs.append(Run(process.returncode, [], 0.0, 'killed'))

    def drain(self, max_runs: int = 30, may_fail: bool = False) -> 'Fetcher':
        """Runs until a completed run returns no incident."""
        for _ in range(max_runs):
            run = self.run(may_fail=may_fail)
            if run.returncode == 0 and not run.incidents:
                return self
        pytest.fail(f'fetch did not settle within {max_runs} runs: {self.summary()}')

    def summary(self) -> str:
        return ', '.join(f'{len(r.incidents)}' if r.returncode == 0 else f'exit {r.returncode}' for r in self.runs)


def raw(incident: dict) -> dict:
    return json.loads(incident['rawJSON'])


def assert_exactly_once(incidents: list, mails: Mails) -> None:
    """The incidents are the expected mails, each exactly once, each with its attachments."""
    data = [raw(i) for i in incidents]
    counts = Counter(d['ID'] for d in data)

    def describe(mail_id: str) -> str:
        mail = mails.expected.get(mail_id)
        return f'{mail.subject!r} received {mail.received}' if mail else mail_id[-16:]

    duplicated = [f'{describe(i)} x{n}' for i, n in counts.items() if n > 1]
    missing = [describe(i) for i in mails.expected if i not in counts]
    unexpected = [f"{d['Subject']!r} received {d['ReceivedTime']}" for d in data if d['ID'] not in mails.expected]
    assert not (duplicated or missing or unexpected), (
        f'{len(mails.expected)} mails, {len(incidents)} incidents; '
        f'{len(missing)} lost: {missing[:8]}; {len(duplicated)} duplicated: {duplicated[:8]}; '
        f'{len(unexpected)} unexpected: {unexpected[:8]}')
    for incident, email in zip(incidents, data, strict=True):
        mail = mails.expected[email['ID']]
        assert email['MessageID'] == mail.message_id and email['ReceivedTime'] == mail.received
        assert incident['occurred'] == mail.received
        files = {a['name']: Path(a['localPath']).read_bytes() for a in incident.get('attachment') or []}
        assert files == mail.attachments, f'attachments of {mail.subject!r}'


# ---------------------------------------------------------------- set-up
def fetch_instance(sandbox: Any, tmp_path: Path, folder: str, **params: Any) -> Instance:
    settings: dict[str, Any] = {'isFetch': True, 'mailbox_to_fetch': MAILBOX, 'folder_to_fetch': folder,
                                'first_fetch': '30 days', 'fetch_limit': 50}
    settings.update(params)
    return Instance(sandbox, tmp_path / 'instance', **settings)


def create_folder(instance: Instance, path: str) -> str:
    """Creates the folder with the integration's own command (a parent path, then the new name)."""
    parent, _, name = path.rpartition('/')
    result = instance.run('msgraph-mail-create-folder', user_id=MAILBOX, new_folder_name=name,
                          parent_folder_id=parent or 'Inbox')
    assert result.returncode == 0, result.stderr
    return path


def read_flags(sandbox: Any, folder: str) -> dict:
    return {m['immutableId']: m['isRead'] for f in sandbox.mailbox(MAILBOX, folder)['folders'] for m in f['messages']}


def delta_statuses(sandbox: Any) -> dict:
    return sandbox.stats()['endpoints'].get(DELTA_ENDPOINT, {}).get('statuses', {})


# ================================================================ 1. volume, same second, order
def test_500_mails_with_37_in_one_second_arrive_once_each_in_received_order(fresh_sandbox, tmp_path):
    folder = 'Inbox/Volume'
    instance = fetch_instance(fresh_sandbox, tmp_path, folder, first_fetch='30 days', fetch_limit=50)
    create_folder(instance, folder)
    mails = Mails(fresh_sandbox)
    start = utc_now() - timedelta(days=3)
    mails.bulk(folder, 230, start=iso(start), step_seconds=60, attachment_ratio=0.1, subject_prefix='Early')
    # 37 mails in one second that lies between two of the others: they straddle the 250th position,
    # i.e. the boundary between the 5th and 6th run of 50.
    same_second = start + timedelta(minutes=229, seconds=30)
    tied = mails.bulk(folder, 37, start=iso(same_second), same_second=37, attachment_ratio=0.2, subject_prefix='Tied')
    assert len({m.received for m in tied}) == 1
    mails.bulk(folder, 233, start=iso(start + timedelta(minutes=230)), step_seconds=60, attachment_ratio=0.1,
               subject_prefix='Late')
    # Before first_fetch: not to be fetched.
    for days in (31, 45):
        mails.add(folder, expected=False, subject=f'Older than first_fetch ({days} days)',
                  receivedDateTime=iso(utc_now() - timedelta(days=days)))
    assert len(mails.expected) == 500

    fetcher = Fetcher(instance).drain(max_runs=15)

    sizes = [len(r.incidents) for r in fetcher.runs]
    assert all(size <= 50 for size in sizes), sizes
    assert len([s for s in sizes if s]) >= 10, sizes
    assert_exactly_once(fetcher.incidents, mails)
    received = [parse_iso(i['occurred']) for i in fetcher.incidents]
    out_of_order = [(a, b) for a, b in pairwise(received) if b < a]
    assert not out_of_order, f'incidents not in receivedDateTime order: {out_of_order[:3]}'


# ================================================================ 2. throttling and unavailability
def test_throttling_and_503_on_requests_and_batch_items_lose_and_duplicate_nothing(fresh_sandbox, tmp_path):
    folder = 'Inbox/Throttled'
    instance = fetch_instance(fresh_sandbox, tmp_path, folder, fetch_limit=10)
    create_folder(instance, folder)
    mails = Mails(fresh_sandbox)
    mails.bulk(folder, 48, start=iso(utc_now() - timedelta(hours=5)), step_seconds=300, same_second=3,
               attachment_ratio=0.25, attachment_size=4096)
    fetcher = Fetcher(instance)

    def periodic_faults() -> list[int]:
        return [fresh_sandbox.add_fault(r'^/v1\.0/', status=429, retry_after=0, every_nth=5, in_batch=True),
                fresh_sandbox.add_fault(r'^/v1\.0/', status=503, every_nth=13, in_batch=True)]

    rules = periodic_faults()
    for _ in range(2):
        fetcher.run(may_fail=True)
    for rule in rules:
        fresh_sandbox.remove_fault(rule)

    # The $batch request itself throttled past the retry budget (8 attempts): the run fails.
    burst = fresh_sandbox.add_fault(r'^/v1\.0/\$batch$', status=429, retry_after=0)
    assert fetcher.run(may_fail=True).returncode == 1
    fresh_sandbox.remove_fault(burst)
    # The range listing and every message read inside $batch throttled past the budget: the run stops before
    # those mails (the listing failing only means reading them by id).
    listing = fresh_sandbox.add_fault(FOLDER_LISTING, methods=['GET'], status=429, retry_after=0)
    burst = fresh_sandbox.add_fault(MESSAGE_ITEM, methods=['GET'], status=429, retry_after=0, in_batch=True)
    assert fetcher.run(may_fail=True).incidents == []
    fresh_sandbox.remove_fault(burst)
    fresh_sandbox.remove_fault(listing)
    # Attachment reads inside $batch unavailable past the budget: the run fails rather than drop them.
    burst = fresh_sandbox.add_fault(ATTACHMENT_ITEM, status=503, retry_after=0, in_batch=True)
    fetcher.run(may_fail=True)
    fresh_sandbox.remove_fault(burst)

    mails.bulk(folder, 12, step_seconds=20, attachment_ratio=0.25, attachment_size=4096, subject_prefix='Newer')
    periodic_faults()
    for _ in range(20):
        run = fetcher.run(may_fail=True)
        if run.returncode == 0 and not run.incidents:
            break
    faults_injected = fresh_sandbox.stats()['totals']['faults_injected']
    fresh_sandbox.clear_faults()
    fetcher.drain(max_runs=10)

    assert faults_injected >= 20, faults_injected
    assert any(r.returncode == 1 for r in fetcher.runs)
    assert_exactly_once(fetcher.incidents, mails)


# ================================================================ 3. killed mid-fetch
def test_a_fetch_killed_mid_run_delivers_nothing_and_the_next_runs_fetch_everything_once(fresh_sandbox, tmp_path):
    folder = 'Inbox/Killed'
    instance = fetch_instance(fresh_sandbox, tmp_path, folder, fetch_limit=10)
    create_folder(instance, folder)
    mails = Mails(fresh_sandbox)
    mails.bulk(folder, 30, start=iso(utc_now() - timedelta(hours=2)), step_seconds=120, attachment_ratio=0.3)
    fetcher = Fetcher(instance)

    fetcher.kill_during(fresh_sandbox, 'while reading the delta of its very first run',
                        path_regex=r'/messages/delta$', delay_ms=3000, count=1)
    assert len(fetcher.run().incidents) == 10
    fetcher.kill_during(fresh_sandbox, 'while reading messages in $batch',
                        path_regex=r'^/v1\.0/\$batch$', delay_ms=3000, count=1)
    fetcher.kill_during(fresh_sandbox, 'while reading attachments in $batch',
                        path_regex=ATTACHMENT_ITEM, delay_ms=3000, count=1, in_batch=True)
    mails.add(folder, subject='Arrived between the killed runs', attachments=[pdf('late.pdf', 'late')])
    fetcher.drain(max_runs=10)

    assert_exactly_once(fetcher.incidents, mails)


# ================================================================ 4. concurrent and late arrivals
def test_mail_arriving_between_and_during_runs_and_old_mail_moved_in_late_are_fetched_once(fresh_sandbox, tmp_path):
    folder = 'Inbox/Arrivals'
    instance = fetch_instance(fresh_sandbox, tmp_path, folder, first_fetch='2 days', fetch_limit=5)
    create_folder(instance, folder)
    mails = Mails(fresh_sandbox)
    now = utc_now()
    first = mails.bulk(folder, 12, start=iso(now - timedelta(hours=3)), step_seconds=600, attachment_ratio=0.25)
    # Old mail elsewhere, later moved into the fetch folder: days before the fetched mail and before first_fetch.
    old = [mails.add('Inbox', expected=False, subject=f'Old mail moved in late {n}',
                     receivedDateTime=iso(now - timedelta(days=days)), attachments=[pdf(f'old-{n}.pdf', str(n))])
           for n, days in ((1, 5), (2, 9))]
    fetcher = Fetcher(instance)
    assert len(fetcher.run().incidents) == 5

    mails.add(folder, subject='Between runs, newest', receivedDateTime=iso(utc_now()))
    mails.add(folder, subject='Between runs, same second as a fetched mail', receivedDateTime=first[0].received)
    mails.move_in(old[0], folder)
    assert len(fetcher.run().incidents) == 5

    def arrive_during_run(process: subprocess.Popen) -> None:
        wait_for(lambda: any('delta' in entry['key'] for entry in fresh_sandbox.log()), 'the delta read')
        mails.add(folder, subject='During the run, newest', receivedDateTime=iso(utc_now()),
                  attachments=[pdf('during.pdf', 'during')])
        mails.add(folder, subject='During the run, older than the mail being fetched',
                  receivedDateTime=iso(now - timedelta(hours=3, minutes=30)))
        mails.move_in(old[1], folder)
        assert process.poll() is None, 'the run ended before the mail arrived'
        fresh_sandbox.set_latency(0)

    fresh_sandbox.reset_stats()
    fresh_sandbox.set_latency(250)
    fetcher.run_while(arrive_during_run)
    fetcher.drain(max_runs=10)

    assert_exactly_once(fetcher.incidents, mails)


# ================================================================ 5. renamed and deleted folder
def test_a_renamed_fetch_folder_keeps_delivering_mail_once(fresh_sandbox, tmp_path):
    instance = fetch_instance(fresh_sandbox, tmp_path, 'Inbox/Suspicious', first_fetch='2 days', fetch_limit=5)
    create_folder(instance, 'Inbox/Suspicious')
    mails = Mails(fresh_sandbox)
    mails.bulk('Inbox/Suspicious', 12, start=iso(utc_now() - timedelta(hours=4)), step_seconds=600,
               attachment_ratio=0.25)
    fetcher = Fetcher(instance)
    assert len(fetcher.run().incidents) == 5

    renamed = instance.run('msgraph-mail-update-folder', user_id=MAILBOX, folder_id='Inbox/Suspicious',
                           new_display_name='Suspicious-2024')
    assert renamed.returncode == 0, renamed.stderr
    mails.add('Inbox/Suspicious-2024', subject='After the rename', attachments=[pdf('renamed.pdf', 'r')])
    fetcher.drain(max_runs=10)
    assert_exactly_once(fetcher.incidents, mails)

    # The admin then points the instance at the new name: nothing is fetched twice, new mail comes.
    instance.write_params(isFetch=True, mailbox_to_fetch=MAILBOX, folder_to_fetch='Inbox/Suspicious-2024',
                          first_fetch='2 days', fetch_limit=5)
    mails.add('Inbox/Suspicious-2024', subject='After the parameter change')
    fetcher.drain(max_runs=10)
    assert_exactly_once(fetcher.incidents, mails)


@pytest.mark.parametrize('purged', [False, True], ids=['moved-to-deleted-items', 'purged'])
def test_a_deleted_fetch_folder_is_a_clear_error(fresh_sandbox, tmp_path, purged):
    folder = 'Inbox/Doomed'
    instance = fetch_instance(fresh_sandbox, tmp_path, folder)
    create_folder(instance, folder)
    mails = Mails(fresh_sandbox)
    mails.bulk(folder, 3, start=iso(utc_now() - timedelta(hours=1)), step_seconds=60)
    fetcher = Fetcher(instance)
    fetcher.drain(max_runs=3)
    assert_exactly_once(fetcher.incidents, mails)

    # Graph (like Outlook) moves a deleted folder to Deleted Items; deleting it there purges it.
    for target in [folder, 'Deleted Items/Doomed'][:2 if purged else 1]:
        deleted = instance.run('msgraph-mail-delete-folder', user_id=MAILBOX, folder_id=target)
        assert deleted.returncode == 0, deleted.stderr
    before = fetcher.last_run()
    result = instance.run('fetch-incidents', as_json=False)

    assert result.returncode == 1, f'fetch of a deleted folder did not fail: {result.stdout.strip()}'
    assert 'Traceback' not in result.stderr
    assert folder in result.stderr and MAILBOX in result.stderr, result.stderr
    assert fetcher.last_run() == before


def test_a_fetch_folder_deleted_and_re_created_under_the_same_path_delivers_the_new_mail(fresh_sandbox, tmp_path):
    """Deleted (to Deleted Items) and created again by the same path, as a user or a script does: the mail
    of the new folder must come, not be read from the old folder in Deleted Items for ever."""
    folder = 'Inbox/Recreated'
    instance = fetch_instance(fresh_sandbox, tmp_path, folder)
    create_folder(instance, folder)
    mails = Mails(fresh_sandbox)
    mails.bulk(folder, 3, start=iso(utc_now() - timedelta(hours=1)), step_seconds=60)
    fetcher = Fetcher(instance)
    fetcher.drain(max_runs=3)

    deleted = instance.run('msgraph-mail-delete-folder', user_id=MAILBOX, folder_id=folder)
    assert deleted.returncode == 0, deleted.stderr
    create_folder(instance, folder)
    mails.add(folder, subject='In the re-created folder', attachments=[pdf('new.pdf', 'new')])
    fetcher.drain(max_runs=5)

    assert_exactly_once(fetcher.incidents, mails)


# ================================================================ 6. expired delta token
def test_an_expired_delta_token_between_runs_loses_and_duplicates_nothing(fresh_sandbox, tmp_path):
    folder = 'Inbox/Expiring'
    instance = fetch_instance(fresh_sandbox, tmp_path, folder, first_fetch='2 days', fetch_limit=7)
    create_folder(instance, folder)
    mails = Mails(fresh_sandbox)
    mails.bulk(folder, 24, start=iso(utc_now() - timedelta(hours=2)), step_seconds=240, same_second=2,
               attachment_ratio=0.25)
    fetcher = Fetcher(instance)
    fetcher.run()
    for round_number in range(6):
        fresh_sandbox.expire_delta_tokens()
        mails.add(folder, subject=f'New after expiry {round_number}', receivedDateTime=iso(utc_now()))
        if not fetcher.run().incidents:
            break
    fresh_sandbox.expire_delta_tokens()
    fetcher.drain(max_runs=10)

    assert '410' in delta_statuses(fresh_sandbox)
    assert_exactly_once(fetcher.incidents, mails)


def test_old_mail_moved_in_just_before_the_delta_token_expires_is_not_lost(fresh_sandbox, tmp_path):
    """The token can expire between two runs: a resync must still find mail that arrived in that gap,
    also when its receivedDateTime is old (moved by a user or an inbox rule)."""
    folder = 'Inbox/ExpiringLate'
    instance = fetch_instance(fresh_sandbox, tmp_path, folder, first_fetch='2 days', fetch_limit=5)
    create_folder(instance, folder)
    mails = Mails(fresh_sandbox)
    mails.bulk(folder, 8, start=iso(utc_now() - timedelta(hours=1)), step_seconds=120)
    late = mails.add('Inbox', expected=False, subject='Received yesterday, moved in late',
                     receivedDateTime=iso(utc_now() - timedelta(days=1)))
    fetcher = Fetcher(instance)
    fetcher.drain(max_runs=5)

    mails.move_in(late, folder)
    fresh_sandbox.expire_delta_tokens()
    fetcher.drain(max_runs=5)

    assert '410' in delta_statuses(fresh_sandbox)
    assert_exactly_once(fetcher.incidents, mails)


# ================================================================ 7. no delta (21Vianet)
def test_without_delta_support_window_mode_fetches_every_mail_once(fresh_sandbox, tmp_path):
    fresh_sandbox.set_delta_supported(False)
    folder = 'Inbox/Window'
    instance = fetch_instance(fresh_sandbox, tmp_path, folder, first_fetch='1 day', fetch_limit=7)
    create_folder(instance, folder)
    mails = Mails(fresh_sandbox)
    mails.bulk(folder, 25, start=iso(utc_now() - timedelta(hours=2)), step_seconds=300, same_second=4,
               attachment_ratio=0.2)
    fetcher = Fetcher(instance)
    fetcher.run()
    fetcher.run()
    # Arrivals after runs that have seen every mail up to `newest`: new mail, a mail in the same second as
    # the newest one (the old same-second bug) and one delivered late by 3 minutes (within the overlap).
    newest = max(parse_iso(m.received) for m in mails.expected.values())
    new = mails.add(folder, subject='New between runs', receivedDateTime=iso(utc_now()),
                    attachments=[pdf('w.pdf', 'w')])
    mails.add(folder, subject='Same second as the newest mail already seen', receivedDateTime=iso(newest))
    mails.add(folder, subject='Delivered 3 minutes late', receivedDateTime=iso(newest - timedelta(minutes=3)))
    fetcher.run()
    mails.add(folder, subject='Same second as the newest mail, after it was fetched', receivedDateTime=new.received)
    fetcher.drain(max_runs=15)

    stats = fresh_sandbox.stats()['endpoints']
    assert '400' in delta_statuses(fresh_sandbox) and stats[LIST_ENDPOINT]['requests'] >= len(fetcher.runs)
    assert_exactly_once(fetcher.incidents, mails)


def test_window_mode_does_not_fetch_mail_older_than_first_fetch(fresh_sandbox, tmp_path):
    fresh_sandbox.set_delta_supported(False)
    folder = 'Inbox/WindowStart'
    first_fetch = utc_now() - timedelta(hours=2)
    instance = fetch_instance(fresh_sandbox, tmp_path, folder, first_fetch=iso(first_fetch), fetch_limit=10)
    create_folder(instance, folder)
    mails = Mails(fresh_sandbox)
    mails.add(folder, subject='After first_fetch', receivedDateTime=iso(first_fetch + timedelta(minutes=5)))
    mails.add(folder, subject='5 minutes before first_fetch', expected=False,
              receivedDateTime=iso(first_fetch - timedelta(minutes=5)))
    mails.add(folder, subject='A day before first_fetch', expected=False,
              receivedDateTime=iso(first_fetch - timedelta(days=1)))
    fetcher = Fetcher(instance).drain(max_runs=5)

    assert_exactly_once(fetcher.incidents, mails)


# ================================================================ upgrade from the existing integration
def test_switching_from_the_existing_integration_neither_refetches_nor_skips_mail(fresh_sandbox, tmp_path):
    """The platform hands the new code the last run the existing integration wrote (anchor-xsoar.md §3): `time`
    is the second of its last incident, and its ids are Graph's regular ids (it never asked for immutable ids)."""
    folder = 'Inbox/Migrated'
    instance = fetch_instance(fresh_sandbox, tmp_path, folder, first_fetch='3 days', fetch_limit=10)
    create_folder(instance, folder)
    mails = Mails(fresh_sandbox)
    cursor = utc_now() - timedelta(hours=1)
    mails.add(folder, expected=False, subject='Ingested by an earlier run of the existing integration',
              receivedDateTime=iso(cursor - timedelta(minutes=5)))
    found = mails.add(folder, expected=False, subject='Ingested by its last run',
                      receivedDateTime=iso(cursor - timedelta(seconds=5)))
    last = mails.add(folder, expected=False, subject='Its last incident, in the second of `time`',
                     receivedDateTime=iso(cursor))
    mails.add(folder, subject='Same second as `time`, beyond its fetch_limit: never ingested',
              receivedDateTime=iso(cursor))
    mails.add(folder, subject='Arrived after the switch', receivedDateTime=iso(cursor + timedelta(minutes=5)),
              attachments=[pdf('after.pdf', 'after')])
    listed = {m['immutableId']: m['id'] for m in fresh_sandbox.mailbox(MAILBOX, folder)['folders'][0]['messages']}
    assert all(listed[m.id] != m.id for m in (found, last)), 'the sandbox gives regular and immutable ids apart'
    epoch = int(time.time())
    state = instance.state()
    state['last_run'] = {
        'time': iso(cursor), 'LAST_RUN_IDS': [listed[last.id]],
        'LAST_RUN_FOLDER_ID': fresh_sandbox.mailbox(MAILBOX, folder)['folders'][0]['id'],
        'LAST_RUN_FOLDER_PATH': folder, 'LAST_RUN_ACCOUNT': MAILBOX,
        'found_incident_ids': {listed[found.id]: epoch - 60, listed[last.id]: epoch - 60}, 'limit': 10}
    instance.state_path.write_text(json.dumps(state))

    fetcher = Fetcher(instance).drain(max_runs=5)

    assert_exactly_once(fetcher.incidents, mails)


# ================================================================ 8. mark as read
def test_mark_fetched_read_marks_exactly_the_fetched_mail(fresh_sandbox, tmp_path):
    folder = 'Inbox/MarkRead'
    instance = fetch_instance(fresh_sandbox, tmp_path, folder, fetch_limit=6, mark_fetched_read=True)
    create_folder(instance, folder)
    mails = Mails(fresh_sandbox)
    mails.bulk(folder, 16, start=iso(utc_now() - timedelta(hours=2)), step_seconds=300, attachment_ratio=0.25)
    already_read = mails.add(folder, subject='Already read when it arrived', isRead=True,
                             receivedDateTime=iso(utc_now() - timedelta(hours=3)))
    inbox_before = read_flags(fresh_sandbox, 'Inbox')
    fetcher = Fetcher(instance)
    fetcher.run()
    fetcher.run()

    fetched = {raw(i)['ID'] for i in fetcher.incidents}
    assert len(fetched) == 12
    flags = read_flags(fresh_sandbox, folder)
    assert {i for i, is_read in flags.items() if is_read} == fetched | {already_read.id}

    # Killed while marking its mail read: those mails were not delivered, so they must come again.
    fetcher.kill_during(fresh_sandbox, 'while marking fetched mail read',
                        path_regex=MESSAGE_ITEM, methods=['PATCH'], delay_ms=2000, count=1, in_batch=True)
    fetcher.drain(max_runs=5)
    assert_exactly_once(fetcher.incidents, mails)
    assert all(read_flags(fresh_sandbox, folder).values())
    assert read_flags(fresh_sandbox, 'Inbox') == inbox_before
