"""Seed data for inbox-rule triage: a compromised mailbox and a tidy one, plus out-of-office settings.

dana@contoso.com (accounts payable) was taken over: her inbox rules carry every sign of a malicious rule that
public detections agree on (forwarding/redirecting outside, deleting, hiding mail in folders nobody reads and
marking it read, filtering on security or money words, matching everything, names of punctuation).
erin@contoso.com keeps ordinary rules that look alike but are benign (invoices filed into a folder named Invoices,
forwarding to a colleague or to her own other mailbox, a size range for large attachments).
Each rule's display name says what it is; tests/test_e2e_rules.py lists the reasons the triage must give.
bob@contoso.com is out of office (scheduled automatic replies), which MailTips and mailboxSettings show.
"""
from __future__ import annotations

import datetime as dt
import random

from .core import utc_now
from .store import Mailbox, MailStore

# upn, display name, given name, surname, job title, user id
DANA = ("dana@contoso.com", "Dana Kim", "Dana", "Kim", "Accounts Payable Specialist",
        "4b2e8d6f-0a3c-4e7b-9d15-6c8f2a1e3b57")
ERIN = ("erin@contoso.com", "Erin Lopez", "Erin", "Lopez", "Office Manager", "8d1f3a5c-7e9b-4c2d-a6f8-1b3e5d7c9a02")
UPNS = (DANA[0], ERIN[0])
# The address alice's rule forwards to as well: a tenant-wide hunt sees it in two mailboxes.
SHARED_DROP = "fin.archive@protonmail-drop.net"
# A folder id of dana's mailbox that is no mail folder (rules can target Calendar or Notes items folders).
NOT_A_MAIL_FOLDER_ID = "AAMkADRiMmU4ZDZmLTBhM2MtNGU3Yi05ZDE1LTZjOGYyYTFlM2I1NwAuAAAAAADcAlEnDaRCalendarAAA="
BOB_OOF_MESSAGE = ("<html><body><p>I am out of the office until Monday with no access to email. "
                   "For urgent matters contact servicedesk@contoso.com.</p></body></html>")


def _to(address: str, name: str = "") -> list[dict]:
    return [{"emailAddress": {"name": name or address, "address": address}}]


def _rule(store: MailStore, name: str, sequence: int, conditions: dict | None, actions: dict,
          exceptions: dict | None = None, enabled: bool = True) -> dict:
    return {"id": store.ids.short_id(), "displayName": name, "sequence": sequence, "isEnabled": enabled,
            "hasError": False, "isReadOnly": False, "conditions": conditions, "actions": actions,
            "exceptions": exceptions}


def populate(store: MailStore, now: dt.datetime | None = None) -> list[Mailbox]:
    now = now or utc_now()
    dana = store.add_mailbox(*DANA)
    erin = store.add_mailbox(*ERIN)
    _seed_dana(store, dana)
    _seed_erin(store, erin)
    bob = store.user("bob@contoso.com")
    bob.settings["automaticRepliesSetting"] = {
        "status": "scheduled", "externalAudience": "all",
        "internalReplyMessage": BOB_OOF_MESSAGE, "externalReplyMessage": BOB_OOF_MESSAGE,
        "scheduledStartDateTime": {"dateTime": (now - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:00:00.0000000"),
                                   "timeZone": "UTC"},
        "scheduledEndDateTime": {"dateTime": (now + dt.timedelta(days=3)).strftime("%Y-%m-%dT%H:00:00.0000000"),
                                 "timeZone": "UTC"}}
    return [dana, erin]


def _seed_dana(store: MailStore, dana: Mailbox) -> None:
    root = dana.root
    inbox = store.folder(dana, "inbox")
    rss = store.create_folder(dana, root, "RSS Feeds").id
    rss_subscriptions = store.create_folder(dana, root, "RSS Subscriptions").id
    notes = store.create_folder(dana, root, "Notes").id
    invoices = store.create_folder(dana, inbox, "Invoices").id
    processed = store.create_folder(dana, inbox, "Processed").id
    folder = {name: store.folder(dana, name).id for name in ("archive", "deleteditems", "junkemail",
                                                             "conversationhistory")}
    rules = [
        ("Forward to external drop", {"fromAddresses": _to("ceo@contoso.com", "CEO")}, {"forwardTo": _to(SHARED_DROP)}),
        ("Redirect mail sent to me", {"sentToMe": True}, {"redirectTo": _to("dana.k@mail-relay.example")}),
        ("Send attachments on", {"hasAttachments": True}, {"forwardAsAttachmentTo": _to("docs@filedrop.example")}),
        ("Clean IT notices", {"senderContains": ["it-support"]}, {"delete": True}),
        ("Purge notices", {"senderContains": ["noreply@contoso.com"]}, {"permanentDelete": True}),
        ("Bank mail", {"senderContains": ["bank"]}, {"moveToFolder": rss, "markAsRead": True}),
        ("Subscriptions", {"senderContains": ["vendor"]}, {"moveToFolder": rss_subscriptions}),
        ("Chats", {"senderContains": ["partner"]}, {"moveToFolder": folder["conversationhistory"]}),
        ("Old mail", {"senderContains": ["ceo"]}, {"moveToFolder": folder["archive"]}),
        ("Tidy", {"senderContains": ["helpdesk"]}, {"moveToFolder": folder["deleteditems"], "markAsRead": True}),
        ("Junk it", {"senderContains": ["security"]}, {"moveToFolder": folder["junkemail"]}),
        ("Keep notes", {"senderContains": ["finance"]}, {"copyToFolder": notes}),
        ("Calendar items", {"senderContains": ["treasury"]}, {"moveToFolder": NOT_A_MAIL_FOLDER_ID}),
        ("Security alerts", {"subjectContains": ["phishing", "Your account was hacked"]},
         {"assignCategories": ["Later"]}),
        ("Payments out", {"bodyOrSubjectContains": ["IBAN", "wire transfer", "Rechnung"]},
         {"forwardTo": _to("ap.review@protonmail-drop.net")}),
        ("Everything", None, {"moveToFolder": processed}),
        ("Catch all body", {"bodyContains": ["\u0000"]}, {"moveToFolder": processed}),
        ("Catch all size", {"withinSizeRange": {"minimumSize": 0}}, {"moveToFolder": processed}),
        (".", {"senderContains": ["supplier"]}, {"markImportance": "low"}),
        ("", {"senderContains": ["auditor"]}, {"markImportance": "low"}),
        ("zzzz", {"senderContains": ["legal"]}, {"markImportance": "low"}),
        ("Invoices filed and deleted", {"bodyOrSubjectContains": ["invoice"]}, {"moveToFolder": invoices, "delete": True}),
        ("Invoices filed and forwarded", {"bodyOrSubjectContains": ["invoice"]},
         {"moveToFolder": invoices, "forwardTo": _to(SHARED_DROP)}),
    ]
    dana.rules.extend(_rule(store, name, i + 1, conditions, actions) for i, (name, conditions, actions) in enumerate(rules))


def _seed_erin(store: MailStore, erin: Mailbox) -> None:
    inbox = store.folder(erin, "inbox")
    invoices = store.create_folder(erin, inbox, "Invoices").id
    team = store.create_folder(erin, inbox, "Team").id
    large = store.create_folder(erin, inbox, "Large files").id
    rules = [
        ("Invoices to Invoices folder", {"bodyOrSubjectContains": ["invoice", "payment"]}, {"moveToFolder": invoices}),
        ("Payroll notices", {"subjectContains": ["payroll"]}, {"assignCategories": ["HR"]}),
        ("Forward to my assistant", {"fromAddresses": _to("ceo@contoso.com", "CEO")},
         {"forwardTo": _to("frank@contoso.com", "Frank")}),
        ("Copy to my other mailbox", {"sentToMe": True}, {"forwardTo": _to("erin.lopez@contoso.onmicrosoft.com")}),
        ("Team updates", {"senderContains": ["team"]}, {"moveToFolder": team, "stopProcessingRules": True}),
        ("Important from CEO", {"fromAddresses": _to("ceo@contoso.com", "CEO")}, {"markImportance": "high"}),
        ("Large attachments", {"withinSizeRange": {"minimumSize": 5000, "maximumSize": 150000}},
         {"moveToFolder": large}),
        ("Mark CCs read", {"sentCcMe": True}, {"markAsRead": True}),
    ]
    erin.rules.extend(_rule(store, name, i + 1, conditions, actions) for i, (name, conditions, actions) in enumerate(rules))


HUNT_DROP = "payroll.copy@protonmail-drop.net"


def plant_rules(store: MailStore, mailboxes: list[Mailbox], benign_share: float = 0.5, malicious_share: float = 0.02,
                seed: int = 11) -> dict:
    """Adds inbox rules to many mailboxes (benchmarks, hunt tests): a benign filing rule in `benign_share` of them, and
    in `malicious_share` of them a rule forwarding payroll mail to the same outside address and marking it read.
    Returns {"benign": [upn...], "malicious": [upn...], "drop": address}."""
    chooser = random.Random(seed)
    planted: dict = {"benign": [], "malicious": [], "drop": HUNT_DROP}
    with store.lock:
        for mailbox in mailboxes:
            if chooser.random() < benign_share:
                folder = store.create_folder(mailbox, store.folder(mailbox, "inbox"), "Receipts")
                mailbox.rules.append(_rule(store, "Receipts", len(mailbox.rules) + 1, {"subjectContains": ["receipt"]},
                                           {"moveToFolder": folder.id, "stopProcessingRules": True}))
                planted["benign"].append(mailbox.upn)
            if chooser.random() < malicious_share:
                mailbox.rules.append(_rule(store, ".", len(mailbox.rules) + 1, {"bodyOrSubjectContains": ["payroll"]},
                                           {"forwardTo": _to(HUNT_DROP), "markAsRead": True}))
                planted["malicious"].append(mailbox.upn)
    return planted
