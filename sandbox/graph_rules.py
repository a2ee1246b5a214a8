"""Graph routes for inbox-rule writes, mailbox settings, MailTips and the tenant's domains.

* ``POST .../mailFolders/inbox/messageRules`` and ``PATCH .../messageRules/{rule}`` validate like Graph: unknown
  properties (of the rule, its actions or its predicates) are refused, ``sequence`` must be a whole number of 1 or
  more, ``displayName`` and ``sequence`` are required on create; a rule created without ``isEnabled`` is disabled.
* ``GET /users/{user}/mailboxSettings`` (and ``/mailboxSettings/automaticRepliesSetting``): defaults for every
  mailbox plus the seeded overrides in ``Mailbox.settings`` (bob is out of office).
* ``POST /users/{user}/getMailTips``: one mailTips per asked address, in order, with only the requested options;
  addresses of the tenant's domains that are no mailbox get ``error`` (code ``ErrorRecipientNotFound`` in the
  sandbox), other domains are ``external``.
* ``GET /domains``: the tenant's verified domains.
"""
from __future__ import annotations

import copy
from typing import Any

from .context import SandboxContext
from .core import GraphError, Request, Response, bad_request, item_not_found
from .routing import Router
from .store import Mailbox
from .views import rule_json

USER = "/v1.0/users/{user}"
RULES = f"{USER}/mailFolders/{{folder}}/messageRules"

RULE_PROPERTIES = {"displayName", "sequence", "isEnabled", "isReadOnly", "conditions", "actions", "exceptions"}
RULE_READ_ONLY = {"id", "hasError"}
ACTIONS = {"assignCategories", "copyToFolder", "delete", "forwardAsAttachmentTo", "forwardTo", "markAsRead",
           "markImportance", "moveToFolder", "permanentDelete", "redirectTo", "stopProcessingRules"}
PREDICATES = {"bodyContains", "bodyOrSubjectContains", "categories", "fromAddresses", "hasAttachments",
              "headerContains", "importance", "isApprovalRequest", "isAutomaticForward", "isAutomaticReply",
              "isEncrypted", "isMeetingRequest", "isMeetingResponse", "isNonDeliveryReport", "isPermissionControlled",
              "isReadReceipt", "isSigned", "isVoicemail", "messageActionFlag", "notSentToMe", "recipientContains",
              "senderContains", "sensitivity", "sentCcMe", "sentOnlyToMe", "sentToAddresses", "sentToMe",
              "sentToOrCcMe", "subjectContains", "withinSizeRange"}
MAILTIPS_OPTIONS = {"automaticReplies", "mailboxFullStatus", "customMailTip", "deliveryRestriction",
                    "externalMemberCount", "maxMessageSize", "moderationStatus", "recipientScope",
                    "recipientSuggestions", "totalMemberCount"}
MAX_MESSAGE_SIZE = 37748736


def unknown_property(name: str, type_name: str) -> GraphError:
    return bad_request(f"The property '{name}' does not exist on type 'microsoft.graph.{type_name}'. Make sure to "
                       "only use property names that are defined by the type.", "RequestBroker--ParseUri")


def check_object(value: Any, allowed: set[str], type_name: str, name: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request(f"Invalid value for property '{name}'.", "ErrorInvalidProperty")
    for key in value:
        if key not in allowed and not key.startswith("@odata."):
            raise unknown_property(key, type_name)
    return value


def check_rule(body: Any, creating: bool) -> dict:
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    for key in body:
        if key not in RULE_PROPERTIES | RULE_READ_ONLY and not key.startswith("@odata."):
            raise unknown_property(key, "messageRule")
    if creating:
        for required in ("displayName", "sequence"):
            if body.get(required) in (None, ""):
                raise bad_request(f"The property '{required}' is required.", "ErrorInvalidRequest")
    if "sequence" in body:
        sequence = body["sequence"]
        if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 1:
            raise bad_request("The value of 'sequence' must be a whole number greater than zero.",
                              "ErrorInvalidRequest")
    for name in ("isEnabled", "isReadOnly"):
        if name in body and not isinstance(body[name], bool):
            raise bad_request(f"Invalid value for property '{name}'.", "ErrorInvalidProperty")
    check_object(body.get("actions"), ACTIONS, "messageRuleActions", "actions")
    check_object(body.get("conditions"), PREDICATES, "messageRulePredicates", "conditions")
    check_object(body.get("exceptions"), PREDICATES, "messageRulePredicates", "exceptions")
    return {k: v for k, v in body.items() if k in RULE_PROPERTIES}


def default_settings(mailbox: Mailbox) -> dict:
    return {
        "archiveFolder": mailbox.well_known.get("archive"),
        "timeZone": "UTC", "dateFormat": "yyyy-MM-dd", "timeFormat": "HH:mm",
        "delegateMeetingMessageDeliveryOptions": "sendToDelegateOnly", "userPurpose": "user",
        "automaticRepliesSetting": {
            "status": "disabled", "externalAudience": "all", "internalReplyMessage": "", "externalReplyMessage": "",
            "scheduledStartDateTime": {"dateTime": "2024-01-01T08:00:00.0000000", "timeZone": "UTC"},
            "scheduledEndDateTime": {"dateTime": "2024-01-02T08:00:00.0000000", "timeZone": "UTC"}},
        "language": {"locale": "en-US", "displayName": "English (United States)"},
        "workingHours": {"daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
                         "startTime": "08:00:00.0000000", "endTime": "17:00:00.0000000",
                         "timeZone": {"name": "UTC"}},
    }


def mailbox_settings(mailbox: Mailbox) -> dict:
    settings = default_settings(mailbox)
    settings.update(copy.deepcopy(mailbox.settings))
    return settings


def register(router: Router, ctx: SandboxContext) -> None:
    store = ctx.store

    def rules_mailbox(request: Request) -> Mailbox:
        mailbox = store.user(request.params["user"])
        if store.folder(mailbox, request.params["folder"]).well_known != "inbox":
            raise item_not_found()
        return mailbox

    def create_rule(request: Request) -> Response:
        fields = check_rule(request.json(), creating=True)
        with store.lock:
            mailbox = rules_mailbox(request)
            rule = {"id": store.ids.short_id(), "displayName": fields["displayName"], "sequence": fields["sequence"],
                    "isEnabled": fields.get("isEnabled", False), "hasError": False,
                    "isReadOnly": fields.get("isReadOnly", False), "conditions": fields.get("conditions"),
                    "actions": fields.get("actions"), "exceptions": fields.get("exceptions")}
            mailbox.rules.append(rule)
            payload = {"@odata.context": ctx.odata_context(mailbox.upn, "mailFolders('inbox')/messageRules/$entity"),
                       **rule_json(rule)}
        return Response.json(payload, 201)

    def update_rule(request: Request) -> Response:
        fields = check_rule(request.json(), creating=False)
        with store.lock:
            mailbox = rules_mailbox(request)
            rule = store.rule(mailbox, request.params["rule"])
            if rule.get("isReadOnly") and set(fields) - {"isReadOnly"}:
                raise GraphError(403, "ErrorAccessDenied", "The rule is read-only.")
            rule.update(copy.deepcopy(fields))
            payload = {"@odata.context": ctx.odata_context(mailbox.upn, "mailFolders('inbox')/messageRules/$entity"),
                       **rule_json(rule)}
        return Response.json(payload)

    def get_settings(request: Request) -> Response:
        with store.lock:
            mailbox = store.user(request.params["user"])
            payload = {"@odata.context": ctx.odata_context(mailbox.upn, "mailboxSettings"), **mailbox_settings(mailbox)}
        return Response.json(payload)

    def get_automatic_replies(request: Request) -> Response:
        with store.lock:
            mailbox = store.user(request.params["user"])
            payload = {"@odata.context": ctx.odata_context(mailbox.upn, "mailboxSettings/automaticRepliesSetting"),
                       **mailbox_settings(mailbox)["automaticRepliesSetting"]}
        return Response.json(payload)

    def mailtip(address: str, options: set[str]) -> dict:
        domain = address.rpartition("@")[2].lower()
        internal = domain in {d.lower() for d in ctx.identity.tenant_domains}
        tip: dict = {"emailAddress": {"name": "", "address": address}}
        mailbox = None
        if internal:
            try:
                mailbox = store.user(address)
            except GraphError:
                tip["error"] = {"code": "ErrorRecipientNotFound",
                                "message": f"The recipient {address} was not found in the directory."}
                return tip
            tip["emailAddress"]["name"] = mailbox.display_name
        if "automaticReplies" in options:
            replies = mailbox_settings(mailbox)["automaticRepliesSetting"] if mailbox else {"status": "disabled"}
            tip["automaticReplies"] = ({"message": replies["internalReplyMessage"],
                                        "messageLanguage": {"locale": "en-US", "displayName": "English (United States)"},
                                        "scheduledStartTime": replies.get("scheduledStartDateTime"),
                                        "scheduledEndTime": replies.get("scheduledEndDateTime")}
                                       if replies["status"] != "disabled" else {"message": ""})
        values = {"mailboxFullStatus": ("mailboxFull", False), "customMailTip": ("customMailTip", None),
                  "deliveryRestriction": ("deliveryRestricted", False), "moderationStatus": ("isModerated", False),
                  "externalMemberCount": ("externalMemberCount", 0), "totalMemberCount": ("totalMemberCount", 1),
                  "maxMessageSize": ("maxMessageSize", MAX_MESSAGE_SIZE),
                  "recipientScope": ("recipientScope", "internal" if internal else "external"),
                  "recipientSuggestions": ("recipientSuggestions", [])}
        for option, (key, value) in values.items():
            if option in options:
                tip[key] = value
        return tip

    def get_mailtips(request: Request) -> Response:
        body = request.json()
        addresses = body.get("EmailAddresses") if isinstance(body, dict) else None
        if not isinstance(addresses, list) or not addresses or not all(isinstance(a, str) for a in addresses):
            raise bad_request("The parameter 'EmailAddresses' is required and must be a list of addresses.",
                              "ErrorInvalidParameter")
        raw_options = body.get("MailTipsOptions") or ""
        options = {o.strip() for o in str(raw_options).split(",") if o.strip()}
        unknown = options - MAILTIPS_OPTIONS
        if unknown:
            raise bad_request(f"The value '{sorted(unknown)[0]}' is not valid for 'MailTipsOptions'.",
                              "ErrorInvalidParameter")
        with store.lock:
            store.user(request.params["user"])
            tips = [mailtip(address.strip(), options) for address in addresses]
        return Response.json({"@odata.context": f"{ctx.base_url}/v1.0/$metadata#Collection(microsoft.graph.mailTips)",
                              "value": tips})

    def list_domains(request: Request) -> Response:
        domains = ctx.identity.tenant_domains
        value = [{"id": name, "authenticationType": "Managed", "isAdminManaged": True, "isDefault": i == len(domains) - 1,
                  "isInitial": name.endswith(".onmicrosoft.com"), "isRoot": True, "isVerified": True,
                  "supportedServices": ["Email"]} for i, name in enumerate(domains)]
        return Response.json({"@odata.context": f"{ctx.base_url}/v1.0/$metadata#domains", "value": value})

    router.add("POST", RULES, create_rule)
    router.add("PATCH", f"{RULES}/{{rule}}", update_rule)
    router.add("GET", f"{USER}/mailboxSettings", get_settings)
    router.add("GET", f"{USER}/mailboxSettings/automaticRepliesSetting", get_automatic_replies)
    router.add("POST", f"{USER}/getMailTips", get_mailtips)
    router.add("GET", "/v1.0/domains", list_domains)
