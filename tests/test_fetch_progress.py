"""Fetch always makes progress: a mail whose attachments cannot be read within one run (a download that stalls,
or runs into the fetch deadline) never holds back the mail around it.

The clock is injected (RetryPolicy's clock), so "a download takes 60 s" is one jump of the clock while Graph is
answering its `/$value`; nothing waits for real.
"""
import io
import json
import re
from typing import Any

import pytest

import MicrosoftGraphMail as mgm
from tests.test_fetch import (FIXTURE, ITEM_ID, PDF_BYTES, PDF_ID, PNG_ID, USER, ZIP_ID, FakeGraph, at,  # noqa: F401
                              fake, fetch, fixture_message, ids_of, info_log, mail, mail_id, seg, small_file,
                              unavailable)

ZIP_SIZE = next(a['size'] for a in FIXTURE['attachments'] if a['id'] == ZIP_ID)
BIG_BYTES = bytes(range(256)) * 6144  # 1.5 MiB: streamed from /$value, not read through $batch


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(make_client, clock) -> mgm.GraphClient:
    return make_client(clock=clock)


def slow_value(fake: FakeGraph, monkeypatch, clock: Clock, attachment_id: str, seconds: float) -> None:
    """Graph takes `seconds` to answer this attachment's /$value, every time it is asked."""
    serve = fake._attachment

    def answer(message_id: str, segment: str, value: bool) -> tuple:
        if value and segment == seg(attachment_id):
            clock.now += seconds
        return serve(message_id, segment, value)

    monkeypatch.setattr(fake, '_attachment', answer)


class DrippingBody(io.RawIOBase):
    """An attachment body that comes in slowly: each read of up to 64 KiB takes `seconds` of the injected clock."""

    def __init__(self, data: bytes, clock: Clock, seconds: float):
        self.data, self.clock, self.seconds = data, clock, seconds

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        piece, self.data = self.data[:min(len(buffer), 64 * 1024)], self.data[min(len(buffer), 64 * 1024):]
        if piece:
            self.clock.now += self.seconds
        buffer[:len(piece)] = piece
        return len(piece)


def dripping_value(requests_mock, clock: Clock, attachment_id: str, data: bytes, seconds: float) -> None:
    """This attachment's /$value drips: a server that still sends, slower than real progress."""
    tail = re.escape(attachment_id.split('+')[-1])
    requests_mock.get(re.compile(f'/attachments/[^/]*{tail}/\\$value'),
                      body=lambda request, context: DrippingBody(data, clock, seconds))


def run(client: mgm.GraphClient, last_run: dict, **settings: Any) -> tuple[dict, list[dict]]:
    """One fetch run as main() starts it: a fresh deadline."""
    client.set_deadline(mgm.FETCH_DEADLINE_SECONDS)
    return fetch(client, last_run, **settings)


def file_names(incident: dict) -> list[str]:
    return sorted(a['name'] for a in incident['attachment'])


def files_on_disk(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def files_of(incidents: list[dict]) -> list[str]:
    return sorted(f"1_{a['path']}" for i in incidents for a in i['attachment'])


def deliver_four(fake: FakeGraph) -> list[str]:
    """m1 (small file), m2 (the fixture mail: two small files, a 2.5 MB zip and an attached mail, both streamed),
    m3 (a streamed file), m4 (small file), received in that order."""
    one = small_file('ATT-one', 'one.pdf', PDF_BYTES)
    three = small_file('ATT-three', 'three.bin', BIG_BYTES)
    four = small_file('ATT-four', 'four.pdf', PDF_BYTES[:100])
    ids = [fake.deliver(mail(1, at(minutes=40), attachments=[one]), {'ATT-one': PDF_BYTES}),
           fake.deliver(fixture_message(mail_id(2), at(minutes=30)), {
               PDF_ID: PDF_BYTES, ZIP_ID: b'Z' * ZIP_SIZE, ITEM_ID: b'From: a@b\r\n\r\nmail', PNG_ID: b'png'}),
           fake.deliver(mail(3, at(minutes=20), attachments=[three]), {'ATT-three': BIG_BYTES}),
           fake.deliver(mail(4, at(minutes=10), attachments=[four]), {'ATT-four': PDF_BYTES[:100]})]
    return ids


class TestDeadline:

    def test_a_deadline_mid_run_returns_the_completed_mails_and_the_stuck_one_follows_with_the_skipped_file_named(
            self, client, fake, clock, monkeypatch, in_tmp_dir):
        m1, m2, m3, m4 = deliver_four(fake)
        slow_value(fake, monkeypatch, clock, ZIP_ID, 60)  # every read of the zip outlasts the 50 s deadline

        last_run, first = run(client, {})
        assert ids_of(first) == [m1, m4], 'the mails completed before the deadline are delivered'
        assert files_on_disk(in_tmp_dir) == files_of(first), 'no file of an unfinished mail is left behind'
        assert last_run['pending'] == [{'id': m2, 'received': at(minutes=30), 'attempts': 1},
                                       {'id': m3, 'received': at(minutes=20)}], \
            'the stuck mail counts one attempt; the mail the run did not get to counts none'

        last_run, second = run(client, last_run)
        assert ids_of(second) == [m2], 'on its second attempt the stuck mail is ingested anyway'
        (stuck,) = second
        assert file_names(stuck) == sorted([f'{FIXTURE["attachments"][3]["contentId"]}-attachmentName-image001.png',
                                            'invoice Q3.pdf']), 'what did download is kept'
        skipped = [label['value'] for label in stuck['labels'] if label['type'] == 'Email/SkippedAttachment']
        assert skipped == [f'statements.zip ({ZIP_SIZE} bytes)', 'Original message.eml (108189 bytes)']
        zip_line = next(line for line in stuck['details'].splitlines() if 'statements.zip' in line)
        assert str(ZIP_SIZE) in zip_line and 'overall time limit' in zip_line
        assert f'message_id={m2}' in zip_line and f'attachment_id={ZIP_ID}' in zip_line
        assert stuck['details'].startswith(FIXTURE['bodyPreview']), 'the preview stays first'
        assert 'command again' not in stuck['details'], 'advice for a war-room command does not fit an incident'
        assert last_run['pending'] == [{'id': m3, 'received': at(minutes=20)}]

        fake.failing.clear()
        monkeypatch.setattr(fake, '_attachment', FakeGraph._attachment.__get__(fake))
        last_run, third = run(client, last_run)
        assert ids_of(third) == [m3] and file_names(third[0]) == ['three.bin']
        last_run, fourth = run(client, last_run)
        assert fourth == [] and last_run['pending'] == []
        every = ids_of(first + second + third)
        assert sorted(every) == sorted([m1, m2, m3, m4]) and len(every) == len(set(every))
        assert files_on_disk(in_tmp_dir) == files_of(first + second + third)

    def test_a_mail_completed_on_its_second_attempt_is_ingested_whole(self, client, fake, clock, monkeypatch):
        m1, m2, m3, m4 = deliver_four(fake)
        slow_value(fake, monkeypatch, clock, ZIP_ID, 60)
        last_run, _ = run(client, {})
        monkeypatch.setattr(fake, '_attachment', FakeGraph._attachment.__get__(fake))  # the link is fast again
        last_run, second = run(client, last_run)
        assert ids_of(second) == [m2, m3]
        assert len(second[0]['attachment']) == 4
        assert not [label for label in second[0]['labels'] if label['type'] == 'Email/SkippedAttachment']
        assert second[0]['details'] == FIXTURE['bodyPreview']

    def test_the_attempt_count_is_a_named_constant(self, client, fake, clock, monkeypatch):
        monkeypatch.setattr(mgm, 'FETCH_ATTEMPTS_BEFORE_SKIPPING', 3)
        _, m2, _, _ = deliver_four(fake)
        slow_value(fake, monkeypatch, clock, ZIP_ID, 60)
        last_run, _ = run(client, {})
        last_run, second = run(client, last_run)
        assert m2 not in ids_of(second) and last_run['pending'][0] == {
            'id': m2, 'received': at(minutes=30), 'attempts': 2}
        last_run, third = run(client, last_run)
        assert ids_of(third) == [m2]


class TestStalledDownload:

    def test_a_download_without_real_progress_holds_back_only_its_own_mail(self, client, fake, clock, requests_mock,
                                                                              in_tmp_dir):
        m1, m2, m3, m4 = deliver_four(fake)
        # 2 s per 64 KiB: 1 MiB would take 32 s, more than the 30 s progress window; stopped well inside the deadline.
        dripping_value(requests_mock, clock, ZIP_ID, b'Z' * ZIP_SIZE, 2)

        last_run, first = run(client, {})
        assert ids_of(first) == [m1, m3, m4], 'the mails around the stalled one flow'
        assert files_on_disk(in_tmp_dir) == files_of(first)
        assert last_run['pending'] == [{'id': m2, 'received': at(minutes=30), 'attempts': 1}]

        last_run, second = run(client, last_run)
        (stuck,) = second
        assert ids_of(second) == [m2] and last_run['pending'] == []
        assert 'statements.zip' not in file_names(stuck) and 'Original message.eml' in file_names(stuck)
        assert [label['value'] for label in stuck['labels'] if label['type'] == 'Email/SkippedAttachment'] == [
            f'statements.zip ({ZIP_SIZE} bytes)']
        assert 'no real progress' in stuck['details'] and f'message_id={m2}' in stuck['details']
        assert files_on_disk(in_tmp_dir) == files_of(first + second)
        assert json.loads(stuck['rawJSON'])['Attachments'] == stuck['attachment']


class TestNoOrphans:

    def test_a_fetch_that_fails_on_an_attachment_leaves_no_file_behind(self, client, fake, in_tmp_dir):
        deliver_four(fake)
        fake.failing['ATT-three'] = unavailable(500, None)  # after other files of this run were written
        with pytest.raises(mgm.MailError):
            run(client, {})
        assert files_on_disk(in_tmp_dir) == []

    def test_an_attachment_refused_for_good_is_named_in_the_incident(self, client, fake):
        fake.failing[PDF_ID] = (404, {}, {'error': {'code': 'ErrorItemNotFound', 'message': 'Not found.'}})
        fake.deliver(fixture_message(mail_id(2), at(minutes=30)), {
            ZIP_ID: b'Z' * ZIP_SIZE, ITEM_ID: b'From: a@b\r\n\r\nmail', PNG_ID: b'png'})
        _, (incident,) = run(client, {})
        assert 'invoice Q3.pdf (4096 bytes)' in [label['value'] for label in incident['labels']]
        assert "Attachment 'invoice Q3.pdf' (4096 bytes) was not fetched" in incident['details']
