"""End to end: one mail whose attachment cannot be read within a run never stops fetch (README "How fetch works").

The sandbox delays the large attachment's `/$value` and then sends only part of it, every time it is asked - a
slow server that never delivers the whole file. Through the CLI, run after run with the state file carried over:
the other mails arrive in the first run, the stuck mail in the second with what could be read and the unread
attachment named, and every mail exactly once, with no file left in the output folder that no incident names.
"""
import base64
import re
from collections import Counter
from pathlib import Path

import pytest

from tests.test_e2e_fetch import Fetcher, Mails, create_folder, fetch_instance, pdf, raw

pytestmark = pytest.mark.e2e

HUGE = bytes(range(256)) * 6144  # 1.5 MiB: streamed from /$value (smaller files are read through $batch)
STREAMED_VALUE = r'^/v1\.0/users/[^/]+/messages/[^/]+/attachments/[^/]+/\$value$'


def published_files(incidents: list) -> set:
    return {a['localPath'] for incident in incidents for a in incident.get('attachment') or []}


def test_a_mail_whose_attachment_never_arrives_is_ingested_on_its_second_run_and_holds_back_no_other_mail(
        fresh_sandbox, tmp_path):
    folder = 'Inbox/Stuck'
    instance = fetch_instance(fresh_sandbox, tmp_path, folder, fetch_limit=10)
    create_folder(instance, folder)
    mails = Mails(fresh_sandbox)
    before = mails.add(folder, subject='Before the stuck mail', attachments=[pdf('before.pdf', 'before')])
    stuck = mails.add(folder, subject='Carries a file the server never finishes sending', attachments=[
        pdf('note.pdf', 'note'),
        {'name': 'huge.bin', 'contentType': 'application/octet-stream',
         'content_b64': base64.b64encode(HUGE).decode()}])
    after = [mails.add(folder, subject=f'After the stuck mail {n}', attachments=[pdf(f'after{n}.pdf', str(n))])
             for n in range(3)]
    fresh_sandbox.add_fault(STREAMED_VALUE, methods=['GET'], delay_ms=300, status=200, body='only the first bytes')
    fetcher = Fetcher(instance)

    first = fetcher.run()
    assert sorted(raw(i)['ID'] for i in first.incidents) == sorted([before.id] + [m.id for m in after]), \
        'the mails around the stuck one arrive in the first run'
    pending = fetcher.last_run()['pending']
    assert [(p['id'], p.get('attempts')) for p in pending] == [(stuck.id, 1)]

    second = fetcher.run()
    (incident,) = second.incidents
    assert raw(incident)['ID'] == stuck.id
    files = {a['name']: Path(a['localPath']).read_bytes() for a in incident['attachment']}
    assert files == {'note.pdf': stuck.attachments['note.pdf']}, 'what could be read is kept'
    (skipped,) = [label['value'] for label in incident['labels'] if label['type'] == 'Email/SkippedAttachment']
    size = re.fullmatch(r'huge\.bin \((\d+) bytes\)', skipped)
    assert size and int(size.group(1)) >= len(HUGE), skipped  # the size Graph gives: content and a little overhead
    line = next(line for line in incident['details'].splitlines() if 'huge.bin' in line)
    assert f'{size.group(1)} bytes' in line and 'the connection was cut' in line
    assert f'message_id={stuck.id}' in line and 'msgraph-mail-get-attachment' in line
    assert fetcher.last_run()['pending'] == []

    fetcher.drain(max_runs=3)
    counts = Counter(raw(i)['ID'] for i in fetcher.incidents)
    assert counts == Counter({m: 1 for m in mails.expected}), fetcher.summary()
    for delivered in fetcher.incidents:
        mail = mails.expected[raw(delivered)['ID']]
        names = {a['name'] for a in delivered['attachment']}
        assert names == set(mail.attachments) - {'huge.bin'}, mail.subject
    out = {str(p) for p in instance.out_dir.iterdir()}
    assert out == published_files(fetcher.incidents), 'files in the output folder that no incident names'

