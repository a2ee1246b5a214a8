"""End to end: the mailbox commands as a program, the way a SOC analyst works a phishing report.

Every test drives `python MicrosoftGraphMail.py COMMAND ...` against the sandbox (tests/e2e_support.py) and checks
the outcome twice: in what the command printed (entries, context, files under --out) and in the sandbox itself
(its control API: `mailbox()`, `stats()`, or a direct Graph GET with a token from `issue_token()`).

Seed (sandbox/seed.py): alice's Inbox holds an invoice phish with a PDF, a "shared document" phish with a DOCX,
a mail with an inline image, a forward with the original phish attached as an item (.eml), a mail with a
OneDrive reference attachment and a subject with `|` and a newline, a CV with a non-ASCII attachment name.
alice has a suspicious inbox rule that forwards invoices outside; soc has Inbox/Phishing and Inbox/Phishing/Triaged.
Ids are immutable ids (the integration sends Prefer: IdType="ImmutableId"), so the sandbox's `immutableId`
is the id the commands take and return.
"""
import email
import email.policy
import hashlib
import os
import re
import unicodedata
import urllib.parse
from pathlib import Path

import pytest
import requests

from tests.e2e_support import Instance, failure, ok

pytestmark = pytest.mark.e2e

ALICE, BOB, SOC = 'alice@contoso.com', 'bob@contoso.com', 'soc@contoso.com'
INVOICE = 'Invoice INV-20931 overdue – final notice'
SHARED_DOC = 'Shared with you: Q3 Budget Review.docx'
PHOTOS = 'Team offsite photos'
FORWARD = 'FW: Unusual sign-in activity'
ATTACHED_ALERT = 'Microsoft account unusual sign-in activity'
PROJECT_PLAN = 'Project plan | Phase 2\nkick-off agenda'
RESUME = 'Résumé – Søren Ødegård (application for Financial Analyst)'
LUNCH = 'Lunch on Thursday?'
NON_ASCII_PDF = 'Résumé_Søren_Ødegård_履歴書.pdf'
FORWARD_TARGET = 'fin.archive@protonmail-drop.net'

MESSAGES_KEY = 'MSGraphMail(val.ID && val.ID == obj.ID)'
FOLDERS_KEY = 'MSGraphMail.Folders(val.ID && val.ID === obj.ID)'
STATUS_KEY = 'MSGraphMail.EmailStatus(val.ID && val.ID === obj.ID)'
RULES_KEY = 'MSGraphMail.Rule(val.id === obj.id)'
MOVED_KEY = 'MSGraphMail.MovedEmails(val.ID === obj.ID)'
ATTACHMENTS_KEY = 'MSGraphMailAttachment(val.ID === obj.ID)'
BATCH = 'POST /v1.0/$batch'
IDENTITY_KEYS = {'POST /{tenant}/oauth2/v2.0/token', 'GET /{tenant}/v2.0/.well-known/openid-configuration'}
ENTRY_NOTE, ENTRY_FILE, ENTRY_ERROR = 1, 3, 4
BIDI_CONTROLS = set('\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069')


# ------------------------------------------------------------------------------------------- helpers
def first(result) -> dict:
    return result.entries[0]


def ctx(entry: dict, key: str):
    context = entry.get('EntryContext') or {}
    assert key in context, f'{key} missing from context keys {list(context)}'
    return context[key]


def next_page_link(entry: dict):
    for key, value in (entry.get('EntryContext') or {}).items():
        if key.startswith('MSGraphMail(') and isinstance(value, dict) and 'NextPage' in value:
            return value['NextPage']
    return None


def folder_view(sandbox, user: str, folder: str) -> dict:
    return sandbox.mailbox(user, folder)['folders'][0]


def seeded(sandbox, user: str, folder: str = 'Inbox') -> dict:
    """Messages of a folder by subject, as the sandbox holds them (immutableId = the id the commands use)."""
    return {m['subject']: m for m in folder_view(sandbox, user, folder)['messages']}


def message_id(sandbox, subject: str, user: str = ALICE, folder: str = 'Inbox') -> str:
    return seeded(sandbox, user, folder)[subject]['immutableId']


def where_is(sandbox, user: str, immutable_id: str) -> list:
    """Paths of every folder of `user` that holds the message."""
    return [f['path'] for f in sandbox.mailbox(user)['folders']
            if any(m['immutableId'] == immutable_id for m in f['messages'])]


def unknown_id(known: str) -> str:
    """A well-formed message id of the same mailbox that does not exist."""
    return known[:-12] + 'Zm9yZ2VkMQ=='


def sandbox_attachment_bytes(sandbox, user: str, msg_id: str, attachment_id: str) -> bytes:
    """The attachment's bytes straight from the sandbox's Graph API, bypassing the integration."""
    quote = lambda value: urllib.parse.quote(value, safe='')  # noqa: E731
    url = (f'{sandbox.base_url}/v1.0/users/{quote(user)}/messages/{quote(msg_id)}'
           f'/attachments/{quote(attachment_id)}/$value')
    response = requests.get(url, headers={'Authorization': f'Bearer {sandbox.issue_token()}'},
                            verify=sandbox.ca_path, timeout=30)
    assert response.status_code == 200, response.text[:500]
    return response.content


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def list_attachments(instance: Instance, user: str, msg_id: str) -> list:
    entry = first(ok(instance.run('msgraph-mail-list-attachments', user_id=user, message_id=msg_id)))
    listed = ctx(entry, ATTACHMENTS_KEY)
    assert listed['ID'] == msg_id and listed['UserID'] == user
    return listed['Attachment']


def saved_file(entry: dict, out_dir: Path) -> Path:
    assert entry['Type'] == ENTRY_FILE, entry
    path = Path(entry['File'])
    assert path.parent == out_dir.resolve() and path.is_file(), path
    return path


def parse_eml(path: Path) -> email.message.EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert not message.defects, message.defects
    return message


def graph_requests(stats: dict) -> dict:
    return {k: v['requests'] for k, v in stats['endpoints'].items() if k not in IDENTITY_KEYS}


def table_cell_counts(markdown: str) -> list:
    """Number of cells of each table line (unescaped pipes minus one)."""
    lines = [line for line in markdown.splitlines() if line.startswith('|')]
    return [len(re.findall(r'(?<!\\)\|', line)) - 1 for line in lines]


def assert_out_folder_sanitised(instance: Instance) -> list:
    """Every file under --out has a name that stays in the folder and cannot mislead or break a shell."""
    out = instance.out_dir.resolve()
    names = sorted(os.listdir(out))
    for name in names:
        path = out / name
        assert path.is_file() and not path.is_symlink(), name
        assert path.resolve().parent == out, name
        assert '/' not in name and '\\' not in name and not name.startswith('.'), name
        assert not re.search(r'[<>:"|?*;$`]', name), name
        assert all(unicodedata.category(c) not in ('Cc', 'Cf') for c in name), repr(name)
        assert len(name) <= 215, name
        assert not re.fullmatch(r'\d+_[0-9a-f-]{36}', name), f'unpublished temporary file left behind: {name}'
    # nothing was written next to --out either
    assert sorted(p.name for p in instance.workdir.iterdir()) == ['out', 'params.json', 'state.json', 'state.json.lock']
    return names


# ------------------------------------------------------------------------------ finding the phish
def test_search_email_finds_the_invoice_phish_by_kql_term(instance, fresh_sandbox):
    invoice = seeded(fresh_sandbox, ALICE)[INVOICE]

    by_sender = first(ok(instance.run('msgraph-mail-search-email', user_id=ALICE, search='from:contoso-billing.co')))
    found = ctx(by_sender, MESSAGES_KEY)
    assert [m['Subject'] for m in found] == [INVOICE]
    mail = found[0]
    assert mail['ID'] == invoice['immutableId']
    assert mail['From']['Address'] == 'ar@contoso-billing.co'
    assert mail['UserID'] == ALICE and mail['HasAttachments'] is True
    assert mail['InternetMessageID'] == invoice['internetMessageId']

    by_term = first(ok(instance.run('msgraph-mail-search-email', user_id=ALICE, folder_id='Inbox',
                                    search='INV-20931')))
    assert [m['ID'] for m in ctx(by_term, MESSAGES_KEY)] == [invoice['immutableId']]


def test_list_emails_in_inbox_narrowed_with_an_odata_filter(instance, fresh_sandbox):
    inbox = seeded(fresh_sandbox, ALICE)

    sender = first(ok(instance.run('msgraph-mail-list-emails', user_id=ALICE, folder_id='Inbox',
                                   odata="$filter=from/emailAddress/address eq 'ar@contoso-billing.co'")))
    assert [m['ID'] for m in ctx(sender, MESSAGES_KEY)] == [inbox[INVOICE]['immutableId']]

    with_files = first(ok(instance.run('msgraph-mail-list-emails', user_id=ALICE, folder_id='Inbox',
                                       odata='$filter=hasAttachments eq true&$select=subject,hasAttachments')))
    listed = ctx(with_files, MESSAGES_KEY)
    expected = {s for s, m in inbox.items() if m['hasAttachments']}
    assert {m['Subject'] for m in listed} == expected
    assert INVOICE in expected and PHOTOS not in expected  # an inline image alone is not an attachment
    assert all(m['HasAttachments'] is True and set(m) >= {'ID', 'Subject', 'UserID'} for m in listed)
    assert all('Body' not in m for m in listed)  # $select was honoured


def test_list_emails_pages_with_next_page(instance, fresh_sandbox):
    expected = [m['immutableId'] for m in folder_view(fresh_sandbox, ALICE, 'Inbox')['messages']]
    assert len(expected) == 8

    entry = first(ok(instance.run('msgraph-mail-list-emails', user_id=ALICE, folder_id='Inbox', page_size=3)))
    pages = [[m['ID'] for m in ctx(entry, MESSAGES_KEY)]]
    assert 'next_page' in entry['HumanReadable']
    link = next_page_link(entry)
    while link:
        assert link.startswith(fresh_sandbox.base_url)
        entry = first(ok(instance.run('msgraph-mail-list-emails', user_id=ALICE, next_page=link)))
        pages.append([m['ID'] for m in ctx(entry, MESSAGES_KEY)])
        link = next_page_link(entry)
        assert len(pages) <= 4, 'paging does not end'
    assert [len(p) for p in pages] == [3, 3, 2]
    assert [i for page in pages for i in page] == expected  # newest first, nothing lost or repeated

    # several pages in one run; the subject with '|' and a newline does not break the table
    entry = first(ok(instance.run('msgraph-mail-list-emails', user_id=ALICE, folder_id='Inbox', page_size=3,
                                  pages_to_pull=3, as_json=True)))
    assert [m['ID'] for m in ctx(entry, MESSAGES_KEY)] == expected
    assert next_page_link(entry) is None
    readable = entry['HumanReadable']
    counts = table_cell_counts(readable)
    assert len(counts) == 2 + 8 and len(set(counts)) == 1, readable
    assert 'Project plan \\| Phase 2 kick-off agenda' in readable


def test_get_email_with_body_and_headers_in_context(instance, fresh_sandbox):
    invoice = seeded(fresh_sandbox, ALICE)[INVOICE]

    entry = first(ok(instance.run('msgraph-mail-get-email', user_id=ALICE, message_id=invoice['immutableId'],
                                  get_body='true')))
    mail = ctx(entry, MESSAGES_KEY)
    assert mail['ID'] == invoice['immutableId'] and mail['Subject'] == INVOICE and mail['UserID'] == ALICE
    assert mail['BodyType'] == 'html'
    assert 'https://contoso-billing.co/pay/INV-20931?ref=alice' in mail['Body']
    assert mail['Importance'] == 'high' and mail['IsRead'] is False
    headers = {h['name']: h['value'] for h in mail['Headers']}
    assert 'spf=fail' in headers['Authentication-Results'] and 'dmarc=fail' in headers['Authentication-Results']
    assert headers['Return-Path'] == 'bounce@contoso-billing.co'
    assert headers['X-Originating-IP'] == '[198.51.100.77]'
    assert mail['InternetMessageID'] == invoice['internetMessageId']

    without_body = first(ok(instance.run('msgraph-mail-get-email', user_id=ALICE,
                                         message_id=invoice['immutableId'])))
    assert 'Body' not in ctx(without_body, MESSAGES_KEY)


# -------------------------------------------------------------------------------------- attachments
def test_invoice_pdf_is_saved_with_the_sandbox_bytes(instance, fresh_sandbox):
    invoice_id = message_id(fresh_sandbox, INVOICE)
    listed = list_attachments(instance, ALICE, invoice_id)
    assert [(a['Name'], a['Type'], a['AttachmentType'], a['IsInline']) for a in listed] == \
        [('INV-20931.pdf', 'application/pdf', 'fileAttachment', False)]
    pdf = listed[0]

    entries = ok(instance.run('msgraph-mail-get-attachment', user_id=ALICE, message_id=invoice_id,
                              attachment_id=pdf['ID'])).entries
    assert len(entries) == 1
    saved = saved_file(entries[0], instance.out_dir)
    assert saved.name == 'INV-20931.pdf'
    data = saved.read_bytes()
    original = sandbox_attachment_bytes(fresh_sandbox, ALICE, invoice_id, pdf['ID'])
    assert sha256(data) == sha256(original) and data.startswith(b'%PDF-')
    assert len(data) == pdf['Size']
    assert_out_folder_sanitised(instance)


def test_get_attachment_never_reads_the_single_attachment_when_graph_ignores_its_select(instance, fresh_sandbox):
    """Graph may ignore $select on GET of one attachment and send its contentBytes: the name and size come from
    the attachment list, the bytes from /$value."""
    invoice_id = message_id(fresh_sandbox, INVOICE)
    pdf = list_attachments(instance, ALICE, invoice_id)[0]
    fresh_sandbox.set_single_attachment_select(False)
    try:
        fresh_sandbox.reset_stats()
        entries = ok(instance.run('msgraph-mail-get-attachment', user_id=ALICE, message_id=invoice_id,
                                  attachment_id=pdf['ID'])).entries
    finally:
        fresh_sandbox.set_single_attachment_select(True)
    saved = saved_file(entries[0], instance.out_dir)
    assert saved.name == 'INV-20931.pdf' and saved.read_bytes() == sandbox_attachment_bytes(
        fresh_sandbox, ALICE, invoice_id, pdf['ID'])
    endpoints = fresh_sandbox.stats()['endpoints']
    assert 'GET /v1.0/users/{user}/messages/{message}/attachments/{attachment}' not in endpoints
    assert endpoints['GET /v1.0/users/{user}/messages/{message}/attachments']['requests'] == 1


@pytest.mark.parametrize('subject, name, magic', [
    (SHARED_DOC, 'Q3 Budget Review.docx', b'PK\x03\x04'),
    (RESUME, NON_ASCII_PDF, b'%PDF-'),
    (PHOTOS, 'image001.png', b'\x89PNG\r\n\x1a\n'),
], ids=['docx', 'non-ascii-name', 'inline-image'])
def test_file_attachments_of_every_kind_are_saved_intact(instance, fresh_sandbox, subject, name, magic):
    msg_id = message_id(fresh_sandbox, subject)
    listed = list_attachments(instance, ALICE, msg_id)
    assert [a['Name'] for a in listed] == [name]
    attachment = listed[0]
    assert attachment['AttachmentType'] == 'fileAttachment'
    assert attachment['IsInline'] is (subject == PHOTOS)

    entries = ok(instance.run('msgraph-mail-get-attachment', user_id=ALICE, message_id=msg_id,
                              attachment_id=attachment['ID'])).entries
    saved = saved_file(entries[0], instance.out_dir)
    assert saved.name == name  # the harness keeps letters of any script
    data = saved.read_bytes()
    assert data.startswith(magic) and len(data) == attachment['Size']
    assert data == sandbox_attachment_bytes(fresh_sandbox, ALICE, msg_id, attachment['ID'])
    assert_out_folder_sanitised(instance)


def test_attached_email_as_parsed_mail_and_as_eml(instance, fresh_sandbox):
    forward_id = message_id(fresh_sandbox, FORWARD)
    listed = list_attachments(instance, ALICE, forward_id)
    assert [(a['Name'], a['AttachmentType']) for a in listed] == [(ATTACHED_ALERT, 'itemAttachment')]

    parsed = ok(instance.run('msgraph-mail-get-attachment', user_id=ALICE, message_id=forward_id,
                             attachment_id=listed[0]['ID'])).entries
    assert len(parsed) == 1 and parsed[0]['Type'] == ENTRY_NOTE
    inner = ctx(parsed[0], MESSAGES_KEY)
    assert inner['Subject'] == ATTACHED_ALERT
    assert inner['From']['Address'] == 'account-security-noreply@accountprotection.micros0ft.com'
    assert '203.0.113.66' in inner['Body'] and inner['HasAttachments'] is True
    assert os.listdir(instance.out_dir) == []  # parsed, not downloaded

    as_eml = ok(instance.run('msgraph-mail-get-attachment', user_id=ALICE, message_id=forward_id,
                             should_download_message_attachment='true')).entries
    assert len(as_eml) == 1
    saved = saved_file(as_eml[0], instance.out_dir)
    assert saved.name == f'{ATTACHED_ALERT}.eml'
    message = parse_eml(saved)
    assert message['Subject'] == ATTACHED_ALERT
    assert 'accountprotection.micros0ft.com' in message['From']
    assert [p.get_filename() for p in message.iter_attachments()] == ['sign-in-details.txt']

    # the SOC's copy of the reported invoice phish: the attached original keeps its PDF
    report_id = message_id(fresh_sandbox, f'[Phish Report] {INVOICE}', user=SOC)
    reported = ok(instance.run('msgraph-mail-get-attachment', user_id=SOC, message_id=report_id,
                               should_download_message_attachment='true')).entries
    original = parse_eml(saved_file(reported[0], instance.out_dir))
    assert original['Subject'] == INVOICE
    pdfs = [p for p in original.iter_attachments() if p.get_filename() == 'INV-20931.pdf']
    assert len(pdfs) == 1 and pdfs[0].get_content().startswith(b'%PDF-')
    assert_out_folder_sanitised(instance)


def test_reference_attachment_is_reported_without_a_crash(instance, fresh_sandbox):
    plan_id = message_id(fresh_sandbox, PROJECT_PLAN)
    listed = list_attachments(instance, ALICE, plan_id)
    assert [(a['Name'], a['AttachmentType']) for a in listed] == [('Phase 2 Plan.xlsx', 'referenceAttachment')]

    for args in ({'attachment_id': listed[0]['ID']}, {}):
        result = ok(instance.run('msgraph-mail-get-attachment', user_id=ALICE, message_id=plan_id, **args))
        assert [e['Type'] for e in result.entries] == [ENTRY_NOTE]
        assert 'Phase 2 Plan.xlsx' in result.entries[0]['HumanReadable']
    assert os.listdir(instance.out_dir) == []


def test_get_email_as_eml_is_a_parseable_rfc822_file(instance, fresh_sandbox):
    invoice = seeded(fresh_sandbox, ALICE)[INVOICE]
    entries = ok(instance.run('msgraph-mail-get-email-as-eml', user_id=ALICE,
                              message_id=invoice['immutableId'])).entries
    assert len(entries) == 1
    saved = saved_file(entries[0], instance.out_dir)
    assert saved.suffix == '.eml'
    message = parse_eml(saved)
    assert message['Subject'] == INVOICE
    assert message['Message-ID'] == invoice['internetMessageId']
    assert 'ar@contoso-billing.co' in message['From']
    assert [p.get_filename() for p in message.iter_attachments()] == ['INV-20931.pdf']
    assert_out_folder_sanitised(instance)


def test_out_folder_holds_only_sanitised_file_names(instance, fresh_sandbox):
    """Attachment names chosen by an attacker cannot leave --out, hide, or carry control characters."""
    hostile = ['../../../../tmp/pwned.sh', '..\\..\\evil.bat', '.bashrc', 'a\nb\tc.txt', '..', '',
               'C:\\Windows\\system32\\x.dll', '|whoami|;rm -rf $HOME.txt', 'x' * 300 + '.pdf',
               'invoice\u202efdp.exe']
    mail = fresh_sandbox.add_message(
        ALICE, 'Inbox', subject='Hostile attachment names', body='see attachments', **{'from': 'x@evil.example'},
        attachments=[{'name': n, 'content': f'payload {i}', 'contentType': 'text/plain'}
                     for i, n in enumerate(hostile)],
        item_attachments=[{'subject': 'inner', 'body': 'inner', 'name': '../../inner/../.profile'}])
    result = ok(instance.run('msgraph-mail-get-attachment', user_id=ALICE, message_id=mail['immutableId'],
                             should_download_message_attachment='true'))
    assert [e['Type'] for e in result.entries] == [ENTRY_FILE] * (len(hostile) + 1)
    names = assert_out_folder_sanitised(instance)
    assert len(names) == len(hostile) + 1
    contents = sorted(p.read_bytes() for p in instance.out_dir.iterdir() if p.suffix != '.eml')
    assert contents == sorted(f'payload {i}'.encode() for i in range(len(hostile)))


def test_attachment_display_names_carry_no_bidi_or_control_characters(instance, fresh_sandbox):
    """The name the integration gives a file is what the War Room shows: 'invoice<RLO>fdp.exe' must not
    display as 'invoiceexe.pdf' (a classic phishing trick). safe_attachment_name promises no control characters."""
    mail = fresh_sandbox.add_message(
        ALICE, 'Inbox', subject='Your invoice', body='attached', **{'from': 'x@evil.example'},
        attachments=[{'name': 'invoice\u202efdp.exe', 'content': 'MZ', 'contentType': 'application/octet-stream'},
                     {'name': 'report\u2067cod.scr', 'content': 'MZ', 'contentType': 'application/octet-stream'},
                     {'name': 'line\x1bbreak.txt', 'content': 'x', 'contentType': 'text/plain'}])
    ok(instance.run('msgraph-mail-get-attachment', user_id=ALICE, message_id=mail['immutableId']))
    display_names = [f['name'] for f in instance.state()['files'].values()]
    assert len(display_names) == 3
    for name in display_names:
        assert not (set(name) & BIDI_CONTROLS), f'bidi control character kept in display name {name!r}'
        assert all(unicodedata.category(c) != 'Cc' for c in name), repr(name)
        assert '/' not in name and '\\' not in name and not name.startswith('.'), name


# ------------------------------------------------------------------------------------------ folders
def test_list_folders_shows_the_mailbox_top_level(instance, fresh_sandbox):
    entry = first(ok(instance.run('msgraph-mail-list-folders', user_id=SOC)))
    folders = {f['DisplayName']: f for f in ctx(entry, FOLDERS_KEY)}
    assert {'Inbox', 'Drafts', 'Sent Items', 'Deleted Items', 'Junk Email', 'Archive'} <= set(folders)
    inbox = folder_view(fresh_sandbox, SOC, 'Inbox')
    assert folders['Inbox']['ID'] == inbox['id']
    assert folders['Inbox']['ChildFolderCount'] == 1
    assert folders['Inbox']['TotalItemCount'] == len(inbox['messages'])
    assert folders['Inbox']['UnreadItemCount'] == sum(not m['isRead'] for m in inbox['messages'])


def test_list_child_folders_of_a_path(instance, fresh_sandbox):
    entry = first(ok(instance.run('msgraph-mail-list-child-folders', user_id=SOC,
                                  parent_folder_id='Inbox/Phishing')))
    children = ctx(entry, FOLDERS_KEY)
    triaged = folder_view(fresh_sandbox, SOC, 'Inbox/Phishing/Triaged')
    assert [(f['DisplayName'], f['ID'], f['TotalItemCount']) for f in children] == \
        [('Triaged', triaged['id'], len(triaged['messages']))]
    assert children[0]['ParentFolderID'] == folder_view(fresh_sandbox, SOC, 'Inbox/Phishing')['id']


def test_create_rename_and_delete_a_case_folder_by_path(instance, fresh_sandbox):
    name, renamed = "Case 4711 – Bob's P&L", 'Case 4711 (closed)'
    phishing_id = folder_view(fresh_sandbox, SOC, 'Inbox/Phishing')['id']

    created = ctx(first(ok(instance.run('msgraph-mail-create-folder', user_id=SOC, new_folder_name=name,
                                        parent_folder_id='Inbox/Phishing'))), FOLDERS_KEY)
    assert [(f['DisplayName'], f['ParentFolderID']) for f in created] == [(name, phishing_id)]
    assert folder_view(fresh_sandbox, SOC, f'Inbox/Phishing/{name}')['id'] == created[0]['ID']

    again = failure(instance.run('msgraph-mail-create-folder', as_json=False, user_id=SOC, new_folder_name=name,
                                 parent_folder_id='Inbox/Phishing'))
    assert 'already exists' in again and name in again and SOC in again

    updated = ctx(first(ok(instance.run('msgraph-mail-update-folder', user_id=SOC,
                                        folder_id=f'Inbox/Phishing/{name}', new_display_name=renamed))), FOLDERS_KEY)
    assert [(f['ID'], f['DisplayName']) for f in updated] == [(created[0]['ID'], renamed)]
    children = ctx(first(ok(instance.run('msgraph-mail-list-child-folders', user_id=SOC,
                                         parent_folder_id='inbox\\phishing'))), FOLDERS_KEY)
    assert sorted(f['DisplayName'] for f in children) == [renamed, 'Triaged']

    ok(instance.run('msgraph-mail-delete-folder', user_id=SOC, folder_id=f'Inbox/Phishing/{renamed}'))
    paths = [f['path'] for f in fresh_sandbox.mailbox(SOC)['folders']]
    assert not any(p.startswith('Inbox/Phishing/Case') for p in paths), paths
    assert 'Inbox/Phishing/Triaged' in paths


# ------------------------------------------------------------------------------ changing the mailbox
def test_move_email_to_junk(instance, fresh_sandbox):
    invoice_id = message_id(fresh_sandbox, INVOICE)
    junk_id = folder_view(fresh_sandbox, ALICE, 'Junk Email')['id']

    entry = first(ok(instance.run('msgraph-mail-move-email', user_id=ALICE, message_id=invoice_id,
                                  destination_folder_id='Junk Email')))
    moved = ctx(entry, MOVED_KEY)
    assert moved == {'ID': invoice_id, 'DestinationFolderID': junk_id, 'UserID': ALICE}
    assert where_is(fresh_sandbox, ALICE, invoice_id) == ['Junk Email']
    assert INVOICE not in seeded(fresh_sandbox, ALICE, 'Inbox')


def test_delete_email_then_a_second_delete_is_not_found(instance, fresh_sandbox):
    doc_id = message_id(fresh_sandbox, SHARED_DOC)

    ok(instance.run('msgraph-mail-delete-email', user_id=ALICE, message_id=doc_id))
    assert where_is(fresh_sandbox, ALICE, doc_id) == []

    again = failure(instance.run('msgraph-mail-delete-email', as_json=False, user_id=ALICE, message_id=doc_id))
    assert 'not found' in again and doc_id in again and ALICE in again


def test_delete_email_reports_where_the_mail_went(instance, fresh_sandbox):
    """What delete-email tells the analyst must match the mailbox: a mail it says is in Deleted Items is there."""
    doc_id = message_id(fresh_sandbox, SHARED_DOC)
    readable = first(ok(instance.run('msgraph-mail-delete-email', user_id=ALICE, message_id=doc_id)))['HumanReadable']
    assert doc_id in readable and ALICE in readable
    location = where_is(fresh_sandbox, ALICE, doc_id)
    if 'Deleted Items' in readable:
        assert location == ['Deleted Items'], \
            f'delete-email says the mail was moved to Deleted Items, but it is in {location or "no folder"}: {readable}'


def test_update_email_status_read_then_unread_in_one_batch_each(instance, fresh_sandbox):
    inbox = seeded(fresh_sandbox, ALICE)
    ids = [inbox[s]['immutableId'] for s in (INVOICE, SHARED_DOC, FORWARD)]
    assert not any(inbox[s]['isRead'] for s in (INVOICE, SHARED_DOC, FORWARD))

    for status, expected in (('Read', True), ('Unread', False)):
        fresh_sandbox.reset_stats()
        entry = first(ok(instance.run('msgraph-mail-update-email-status', user_id=ALICE,
                                      message_ids=','.join(ids), status=status)))
        rows = ctx(entry, STATUS_KEY)
        assert rows == [{'ID': i, 'Status': status, 'Succeeded': True, 'Error': ''} for i in ids]
        stats = fresh_sandbox.stats()
        assert graph_requests(stats) == {BATCH: 1}
        assert stats['batch_items']['PATCH /v1.0/users/{user}/messages/{message}']['requests'] == 3
        now = seeded(fresh_sandbox, ALICE)
        assert [now[s]['isRead'] for s in (INVOICE, SHARED_DOC, FORWARD)] == [expected] * 3
        assert now[RESUME]['isRead'] is False  # untouched


def test_update_email_status_with_an_unknown_id_still_updates_the_others(instance, fresh_sandbox):
    inbox = seeded(fresh_sandbox, ALICE)
    good = [inbox[INVOICE]['immutableId'], inbox[FORWARD]['immutableId']]
    missing = unknown_id(good[0])

    result = instance.run('msgraph-mail-update-email-status', user_id=ALICE, status='Read',
                          message_ids=f'{good[0]},{missing},{good[1]}')
    assert result.returncode == 1 and 'Traceback' not in result.stderr
    rows = {r['ID']: r for r in ctx(first(result), STATUS_KEY)}
    assert [rows[i]['Succeeded'] for i in (good[0], missing, good[1])] == [True, False, True]
    assert 'ErrorItemNotFound' in rows[missing]['Error'] or '404' in rows[missing]['Error']
    errors = [e['Contents'] for e in result.entries if e['Type'] == ENTRY_ERROR]
    assert len(errors) == 1 and missing in errors[0] and ALICE in errors[0]
    now = seeded(fresh_sandbox, ALICE)
    assert now[INVOICE]['isRead'] is True and now[FORWARD]['isRead'] is True


# -------------------------------------------------------------------------------------------- rules
def test_rules_list_get_and_delete_the_forwarding_rule(instance, fresh_sandbox):
    rules = ctx(first(ok(instance.run('msgraph-mail-list-rules', user_id=ALICE))), RULES_KEY)
    forwarding = [r for r in rules if any(t['emailAddress']['address'] == FORWARD_TARGET
                                          for t in (r.get('actions') or {}).get('forwardTo') or [])]
    assert len(forwarding) == 1 and len(rules) == 2
    suspicious = forwarding[0]
    assert suspicious['isEnabled'] is True and 'invoice' in suspicious['conditions']['bodyOrSubjectContains']

    got = ctx(first(ok(instance.run('msgraph-mail-get-rule', user_id=ALICE, rule_id=suspicious['id']))), RULES_KEY)
    assert got == [suspicious]
    other = next(r for r in rules if r is not suspicious)  # an id with '/' in it
    assert ctx(first(ok(instance.run('msgraph-mail-get-rule', user_id=ALICE, rule_id=other['id']))),
               RULES_KEY)[0]['displayName'] == other['displayName']

    ok(instance.run('msgraph-mail-delete-rule', user_id=ALICE, rule_id=suspicious['id']))
    remaining = ctx(first(ok(instance.run('msgraph-mail-list-rules', user_id=ALICE))), RULES_KEY)
    assert [r['id'] for r in remaining] == [other['id']]
    gone = failure(instance.run('msgraph-mail-get-rule', as_json=False, user_id=ALICE, rule_id=suspicious['id']))
    assert 'not found' in gone and suspicious['id'] in gone and ALICE in gone


# ------------------------------------------------------------------------------------------- errors
MISSING_MESSAGE = '{missing}'
ERROR_CASES = [
    # command, arguments, text the error must name (besides the mailbox)
    ('msgraph-mail-get-email', {'message_id': MISSING_MESSAGE}, MISSING_MESSAGE),
    ('msgraph-mail-list-attachments', {'message_id': MISSING_MESSAGE}, MISSING_MESSAGE),
    ('msgraph-mail-get-attachment', {'message_id': MISSING_MESSAGE}, MISSING_MESSAGE),
    ('msgraph-mail-get-attachment', {'message_id': '{invoice}', 'attachment_id': '{missing_attachment}'},
     '{missing_attachment}'),
    ('msgraph-mail-get-email-as-eml', {'message_id': MISSING_MESSAGE}, MISSING_MESSAGE),
    ('msgraph-mail-delete-email', {'message_id': MISSING_MESSAGE}, MISSING_MESSAGE),
    ('msgraph-mail-move-email', {'message_id': MISSING_MESSAGE, 'destination_folder_id': 'Junk Email'},
     MISSING_MESSAGE),
    ('msgraph-mail-move-email', {'message_id': '{invoice}', 'destination_folder_id': 'Inbox/Quarantine'},
     'Inbox/Quarantine'),
    ('msgraph-mail-update-email-status', {'message_ids': MISSING_MESSAGE, 'status': 'Read'}, MISSING_MESSAGE),
    ('msgraph-mail-list-emails', {'folder_id': 'Inbox/Quarantine'}, 'Inbox/Quarantine'),
    ('msgraph-mail-search-email', {'folder_id': 'Inbox/Quarantine', 'search': 'invoice'}, 'Inbox/Quarantine'),
    ('msgraph-mail-list-folders', {'user_id': 'mallory@contoso.com'}, 'mallory@contoso.com'),
    ('msgraph-mail-list-child-folders', {'parent_folder_id': 'Inbox/Phishing/Quarantine'},
     'Inbox/Phishing/Quarantine'),
    ('msgraph-mail-create-folder', {'parent_folder_id': 'Inbox/Quarantine', 'new_folder_name': 'Case 1'},
     'Inbox/Quarantine'),
    ('msgraph-mail-update-folder', {'folder_id': 'Inbox/Quarantine', 'new_display_name': 'Case 1'},
     'Inbox/Quarantine'),
    ('msgraph-mail-delete-folder', {'folder_id': 'Inbox/Quarantine'}, 'Inbox/Quarantine'),
    ('msgraph-mail-list-rules', {'user_id': 'mallory@contoso.com'}, 'mallory@contoso.com'),
    ('msgraph-mail-get-rule', {'rule_id': 'AQAAAAAAAAA='}, 'AQAAAAAAAAA='),
    ('msgraph-mail-delete-rule', {'rule_id': 'AQAAAAAAAAA='}, 'AQAAAAAAAAA='),
]


@pytest.mark.parametrize('command, arguments, named', ERROR_CASES,
                         ids=[f'{c[0].removeprefix("msgraph-mail-")}-{i}' for i, c in enumerate(ERROR_CASES)])
def test_unknown_object_is_a_clear_error(instance, fresh_sandbox, command, arguments, named):
    invoice_id = message_id(fresh_sandbox, INVOICE)
    values = {'missing': unknown_id(invoice_id), 'invoice': invoice_id,
              'missing_attachment': unknown_id(invoice_id).replace('AAku', 'AAMk', 1)}
    args = {'user_id': ALICE, **{k: v.format(**values) for k, v in arguments.items()}}
    named = named.format(**values)
    before = fresh_sandbox.mailbox(ALICE)

    message = failure(instance.run(command, as_json=False, **args))
    assert named in message, message
    assert args['user_id'] in message, message
    assert re.search(r'not found|invalid', message, re.I), message
    assert fresh_sandbox.mailbox(ALICE) == before  # a failed command changes nothing
    assert os.listdir(instance.out_dir) == []  # and leaves no half-written file behind
