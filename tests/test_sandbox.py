"""Tests of the local Graph mail sandbox (loopback only)."""
from __future__ import annotations

import base64
import email
import email.policy
import functools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import msal
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sandbox import Sandbox
from sandbox.seed import SEED_UPNS

REPO = Path(__file__).resolve().parents[1]
ALICE, BOB, SOC = "alice@contoso.com", "bob@contoso.com", "soc@contoso.com"
IMMUTABLE = {"Prefer": 'IdType="ImmutableId"'}


# --- fixtures -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def sb(tmp_path_factory):
    with Sandbox(state_dir=tmp_path_factory.mktemp("sandbox"), latency_ms=0) as sandbox:
        yield sandbox


@pytest.fixture(autouse=True)
def _clean_trouble(sb):
    yield
    sb.clear_faults()
    sb.set_latency(0)
    sb.set_delta_supported(True)


def verified_session(ca_path: str) -> requests.Session:
    """REQUESTS_CA_BUNDLE overrides Session.verify, so pin verify on every call."""
    session = requests.Session()
    session.request = functools.partial(session.request, verify=ca_path)  # type: ignore[method-assign]
    return session


@pytest.fixture
def http(sb):
    with verified_session(sb.ca_path) as session:
        yield session


class Graph:
    """Tiny Graph client for the tests."""

    def __init__(self, sb: Sandbox, session: requests.Session, token: str) -> None:
        self.base = sb.base_url + "/v1.0"
        self.session = session
        self.headers = {"Authorization": f"Bearer {token}"}

    def url(self, path: str) -> str:
        return path if path.startswith("https://") else self.base + path

    def request(self, method: str, path: str, headers: dict | None = None, **kwargs) -> requests.Response:
        return self.session.request(method, self.url(path), headers={**self.headers, **(headers or {})}, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def all_pages(self, path: str, **kwargs) -> list[list[dict]]:
        pages, url = [], path
        while url:
            response = self.get(url, **kwargs)
            assert response.status_code == 200, response.text
            pages.append(response.json()["value"])
            url = response.json().get("@odata.nextLink")
        return pages


@pytest.fixture
def graph(sb, http):
    return Graph(sb, http, sb.issue_token())


def q(value: str) -> str:
    return quote(value, safe="")


def new_folder(graph: Graph, user: str, parent: str = "inbox") -> dict:
    response = graph.post(f"/users/{user}/mailFolders/{parent}/childFolders",
                          json={"displayName": f"t-{uuid.uuid4().hex[:8]}"})
    assert response.status_code == 201, response.text
    return response.json()


def path_of(sb: Sandbox, user: str, folder: dict) -> str:
    return next(f["path"] for f in sb.mailbox(user)["folders"] if f["id"] == folder["id"])


def msal_app(sb: Sandbox, credential) -> msal.ConfidentialClientApplication:
    info = sb.info
    return msal.ConfidentialClientApplication(
        info["client_id"], client_credential=credential, authority=info["authority"],
        instance_discovery=False, azure_region=False, http_client=verified_session(sb.ca_path))


# --- identity -------------------------------------------------------------------------

def test_msal_client_secret_token_works_on_graph(sb, http):
    app = msal_app(sb, sb.info["client_secret"])
    result = app.acquire_token_for_client([sb.info["scope"]])
    assert "access_token" in result, result
    assert result["token_type"] == "Bearer" and result["expires_in"] > 3000
    graph = Graph(sb, http, result["access_token"])
    assert graph.get(f"/users/{ALICE}/mailFolders").status_code == 200


def test_msal_certificate_credential(sb):
    cert = sb.info["certificate"]
    credential = {"private_key": Path(cert["private_key_path"]).read_text(), "thumbprint": cert["thumbprint"]}
    result = msal_app(sb, credential).acquire_token_for_client([sb.info["scope"]])
    assert "access_token" in result, result


def test_certificate_signed_by_wrong_key_is_rejected(sb):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    credential = {"private_key": other, "thumbprint": sb.info["certificate"]["thumbprint"]}
    result = msal_app(sb, credential).acquire_token_for_client([sb.info["scope"]])
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [700027]


def test_wrong_secret_gives_invalid_client_without_echo(sb):
    result = msal_app(sb, "not-the-secret-123").acquire_token_for_client([sb.info["scope"]])
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert "AADSTS7000215" in result["error_description"]
    assert "not-the-secret-123" not in json.dumps(result)


def test_token_endpoint_errors(sb, http):
    info = sb.info
    url = f"{info['authority']}/oauth2/v2.0/token"
    form = {"grant_type": "client_credentials", "client_id": info["client_id"],
            "client_secret": info["client_secret"], "scope": info["scope"]}
    unknown = http.post(url, data={**form, "client_id": str(uuid.uuid4())})
    assert unknown.status_code == 400 and unknown.json()["error"] == "unauthorized_client"
    assert unknown.json()["error_codes"] == [700016]
    scope = http.post(url, data={**form, "scope": "https://graph.microsoft.com/.default"})
    assert scope.status_code == 400 and scope.json()["error_codes"] == [70011]
    assert {"timestamp", "trace_id", "correlation_id"} <= set(scope.json())
    tenant = http.get(f"{info['base_url']}/no-such-tenant/v2.0/.well-known/openid-configuration")
    assert tenant.status_code == 400 and "AADSTS90002" in tenant.json()["error_description"]
    discovery = http.get(f"{info['authority']}/v2.0/.well-known/openid-configuration").json()
    assert discovery["token_endpoint"] == url


def oproxy_payload(info: dict, content: str, stamp: float | None = None, key: str | None = None) -> dict:
    nonce = os.urandom(12)
    plaintext = f"{int(stamp or time.time())}:{content}".encode()
    sealed = AESGCM(base64.b64decode(key or info["oproxy"]["key"])).encrypt(nonce, plaintext, None)
    return {"app_name": "ms-graph-mail", "registration_id": info["oproxy"]["registration_id"],
            "encrypted_token": base64.b64encode(nonce + sealed).decode(), "scope": None, "resource": ""}


def test_oproxy_exchange_and_refresh_token(sb, http):
    info = sb.info
    url = info["oproxy"]["token_url"]
    first = http.post(url, json=oproxy_payload(info, info["oproxy"]["token"]))
    assert first.status_code == 200, first.text
    assert first.json()["expires_in"] == 3595
    second = http.post(url, json=oproxy_payload(info, first.json()["refresh_token"]))
    assert second.status_code == 200 and second.json()["refresh_token"] != first.json()["refresh_token"]
    assert Graph(sb, http, second.json()["access_token"]).get(f"/users/{BOB}").status_code == 200
    stale = http.post(url, json=oproxy_payload(info, info["oproxy"]["token"], stamp=time.time() - 900))
    wrong_key = http.post(url, json=oproxy_payload(info, info["oproxy"]["token"],
                                                   key=base64.b64encode(b"k" * 32).decode()))
    bogus = http.post(url, json=oproxy_payload(info, "made-up-refresh-token"))
    assert (stale.status_code, wrong_key.status_code, bogus.status_code) == (400, 400, 401)
    assert info["oproxy"]["key"] not in wrong_key.text


def test_managed_identity_imds(sb, http, monkeypatch):
    info = sb.info
    url, resource = info["managed_identity"]["endpoint"], info["managed_identity"]["resource"]
    params = {"api-version": "2018-02-01", "resource": resource}
    assert http.get(url, params=params).status_code == 400  # Metadata header missing
    system = http.get(url, params=params, headers={"Metadata": "true"})
    assert system.status_code == 200 and system.json()["expires_in"] == "3599"
    user = http.get(url, params={**params, "client_id": info["managed_identity"]["user_assigned_client_id"]},
                    headers={"Metadata": "true"})
    assert user.status_code == 200
    assert http.get(url, params={**params, "client_id": "nope"}, headers={"Metadata": "true"}).status_code == 400
    # msal's own managed-identity client, pointed at the sandbox
    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", info["base_url"])
    client = msal.ManagedIdentityClient(msal.SystemAssignedManagedIdentity(),
                                        http_client=verified_session(sb.ca_path))
    result = client.acquire_token_for_client(resource=resource)
    assert "access_token" in result, result
    assert Graph(sb, http, result["access_token"]).get(f"/users/{SOC}/mailFolders").status_code == 200


def test_graph_requires_valid_token(sb, http, graph):
    anonymous = http.get(f"{sb.base_url}/v1.0/users/{ALICE}/messages")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert anonymous.headers["request-id"] == anonymous.json()["error"]["innerError"]["request-id"]
    assert graph.get(f"/users/{ALICE}/messages").status_code == 200
    sb.expire_tokens()
    assert graph.get(f"/users/{ALICE}/messages").status_code == 401


# --- reading mail ----------------------------------------------------------------------

def test_folders_and_well_known_names(sb, graph):
    root = graph.get(f"/users/{ALICE}/mailFolders").json()
    names = [f["displayName"] for f in root["value"]]
    assert names[:3] == ["Inbox", "Drafts", "Sent Items"] and "@odata.nextLink" not in root
    assert len(graph.all_pages(f"/users/{ALICE}/mailFolders", params={"$top": 3})) == 3
    inbox = graph.get(f"/users/{ALICE}/mailFolders/Inbox").json()
    assert inbox["displayName"] == "Inbox" and inbox["totalItemCount"] >= 8
    assert set(inbox) >= {"id", "parentFolderId", "childFolderCount", "unreadItemCount", "sizeInBytes", "isHidden"}
    phishing = graph.get(f"/users/{SOC}/mailFolders/inbox/childFolders",
                         params={"$filter": "displayName eq 'Phishing'"}).json()["value"]
    assert len(phishing) == 1 and phishing[0]["childFolderCount"] == 1
    triaged = graph.get(f"/users/{SOC}/mailFolders/{q(phishing[0]['id'])}/childFolders").json()["value"]
    assert [f["displayName"] for f in triaged] == ["Triaged"]
    folder = new_folder(graph, ALICE)
    duplicate = graph.post(f"/users/{ALICE}/mailFolders/inbox/childFolders",
                           json={"displayName": folder["displayName"]})
    assert duplicate.status_code == 409 and duplicate.json()["error"]["code"] == "ErrorFolderExists"
    renamed = graph.request("PATCH", f"/users/{ALICE}/mailFolders/{q(folder['id'])}",
                            json={"displayName": folder["displayName"] + "-x"})
    assert renamed.json()["displayName"].endswith("-x")
    assert graph.request("DELETE", f"/users/{ALICE}/mailFolders/{q(folder['id'])}").status_code == 204


def test_unknown_user_and_message(graph):
    user = graph.get("/users/nobody@contoso.com/messages")
    assert user.status_code == 404 and user.json()["error"]["code"] == "ErrorInvalidUser"
    assert "nobody@contoso.com" in user.json()["error"]["message"]
    message = graph.get(f"/users/{ALICE}/messages/{q('AAMkAGnope=')}")
    assert message.status_code == 404 and message.json()["error"]["code"] == "ErrorItemNotFound"


def test_paging_follows_next_links(sb, graph):
    folder = new_folder(graph, BOB)
    sb.add_messages_bulk(BOB, path_of(sb, BOB, folder), count=25)
    url = f"/users/{BOB}/mailFolders/{q(folder['id'])}/messages"
    pages = graph.all_pages(url, params={"$top": 10, "$select": "subject"})
    assert [len(p) for p in pages] == [10, 10, 5]
    assert len({m["id"] for p in pages for m in p}) == 25
    assert set(pages[0][0]) == {"@odata.etag", "id", "subject"}
    assert [len(p) for p in graph.all_pages(url, headers={"Prefer": "odata.maxpagesize=12"})] == [12, 12, 1]
    assert len(graph.all_pages(url)[0]) == 10  # default page size


def test_filter_orderby_and_search_rules(sb, graph):
    url = f"/users/{ALICE}/mailFolders/inbox/messages"

    def get(**params):
        return graph.get(url, params={"$top": 100, **params})

    unread = get(**{"$filter": "isRead eq false"}).json()["value"]
    assert unread and all(not m["isRead"] for m in unread)
    since = sorted(m["receivedDateTime"] for m in get().json()["value"])[3]
    ordered = get(**{"$filter": f"receivedDateTime ge {since} and hasAttachments eq true",
                     "$orderby": "receivedDateTime asc"})
    assert ordered.status_code == 200, ordered.text
    times = [m["receivedDateTime"] for m in ordered.json()["value"]]
    assert times == sorted(times) and all(t >= since for t in times)
    assert all(m["hasAttachments"] for m in ordered.json()["value"])
    default_order = [m["receivedDateTime"] for m in get().json()["value"]]
    assert default_order == sorted(default_order, reverse=True)
    by_sender = get(**{"$filter": "from/emailAddress/address eq 'BOB@contoso.com'"}).json()["value"]
    assert by_sender and {m["from"]["emailAddress"]["address"] for m in by_sender} == {BOB}
    inefficient = get(**{"$filter": "isRead eq false", "$orderby": "receivedDateTime desc"})
    assert inefficient.status_code == 400 and inefficient.json()["error"]["code"] == "InefficientFilter"
    unsupported = get(**{"$filter": "contains(subject, 'x')"})
    assert unsupported.status_code == 400
    assert unsupported.json()["error"]["code"] == "ErrorInvalidUrlQueryFilter"
    found = get(**{"$search": '"invoice"'}).json()["value"]
    assert any("INV-20931" in m["subject"] for m in found)
    for clash in ({"$filter": "isRead eq true"}, {"$orderby": "receivedDateTime desc"}):
        response = get(**{"$search": '"invoice"', **clash})
        assert response.status_code == 400 and response.json()["error"]["code"] == "ErrorInvalidUrlQuery"
    bad_select = get(**{"$select": "subject,nonsense"})
    assert bad_select.status_code == 400


def find(graph: Graph, user: str, subject_start: str, **kwargs) -> dict:
    messages = graph.get(f"/users/{user}/messages", params={"$top": 200}, **kwargs).json()["value"]
    return next(m for m in messages if m["subject"].startswith(subject_start))


def test_message_resource_shape_and_prefer(graph):
    message = find(graph, ALICE, "Invoice INV-20931")
    expected = ["@odata.etag", "id", "createdDateTime", "lastModifiedDateTime", "changeKey", "categories",
                "receivedDateTime", "sentDateTime", "hasAttachments", "internetMessageId", "subject",
                "bodyPreview", "importance", "parentFolderId", "conversationId", "conversationIndex",
                "isDeliveryReceiptRequested", "isReadReceiptRequested", "isRead", "isDraft", "webLink",
                "inferenceClassification", "body", "sender", "from", "toRecipients", "ccRecipients",
                "bccRecipients", "replyTo", "flag"]
    assert list(message) == expected
    assert message["body"]["contentType"] == "html" and len(message["bodyPreview"]) <= 255
    item = f"/users/{ALICE}/messages/{q(message['id'])}"
    text = graph.get(item, headers={"Prefer": 'outlook.body-content-type="text", IdType="ImmutableId"'})
    assert text.json()["body"]["contentType"] == "text" and "<" not in text.json()["body"]["content"]
    assert text.json()["id"] != message["id"]  # the immutable id
    assert "IdType" in text.headers["Preference-Applied"]
    selected = graph.get(item, params={"$select": "subject,internetMessageHeaders,uniqueBody"}).json()
    assert {"subject", "internetMessageHeaders", "uniqueBody"} <= set(selected) and "body" not in selected
    assert any(h["name"] == "Authentication-Results" and "spf=fail" in h["value"]
               for h in selected["internetMessageHeaders"])
    assert "internetMessageHeaders" not in graph.get(item).json()
    # ids travel percent-encoded or in URL-safe spellings
    raw_id = message["id"]
    for spelling in (raw_id.replace("/", "-").replace("+", "_"), raw_id.replace("+", "-").replace("/", "_")):
        assert graph.get(f"/users/{ALICE}/messages/{q(spelling)}").status_code == 200
    user_id = graph.get(f"/users/{ALICE}").json()["id"]
    assert graph.get(f"/users/{user_id}/mailFolders/inbox/messages/{q(raw_id)}").status_code == 200
    special = find(graph, ALICE, "Project plan |")
    assert "\n" in special["subject"]
    inline_only = find(graph, ALICE, "Team offsite photos")
    assert inline_only["hasAttachments"] is False and "cid:image001.png" in inline_only["body"]["content"]


def test_attachments_and_mime(graph):
    invoice = find(graph, ALICE, "Invoice INV-20931")
    base = f"/users/{ALICE}/messages/{q(invoice['id'])}"
    listed = graph.get(f"{base}/attachments").json()["value"]
    assert listed[0]["@odata.type"] == "#microsoft.graph.fileAttachment"
    pdf = base64.b64decode(listed[0]["contentBytes"])
    assert pdf.startswith(b"%PDF") and listed[0]["size"] == len(pdf)
    raw = graph.get(f"{base}/attachments/{q(listed[0]['id'])}/$value")
    assert raw.content == pdf and raw.headers["Content-Length"] == str(len(pdf))
    slim = graph.get(f"{base}/attachments", params={"$select": "id,name,size"}).json()["value"][0]
    assert "contentBytes" not in slim
    expanded = graph.get(base, params={"$expand": "attachments"}).json()
    assert expanded["attachments"][0]["name"] == "INV-20931.pdf"

    mime = email.message_from_bytes(graph.get(f"{base}/$value").content, policy=email.policy.default)
    assert mime["Subject"].startswith("Invoice INV-20931")
    assert [p.get_filename() for p in mime.iter_attachments()] == ["INV-20931.pdf"]

    forward = find(graph, ALICE, "FW: Unusual sign-in")
    forward_base = f"/users/{ALICE}/messages/{q(forward['id'])}"
    item_meta = graph.get(f"{forward_base}/attachments").json()["value"][0]
    assert item_meta["@odata.type"] == "#microsoft.graph.itemAttachment" and "item" not in item_meta
    item_url = f"{forward_base}/attachments/{q(item_meta['id'])}"
    item = graph.get(item_url, params={"$expand": "microsoft.graph.itemattachment/item"}).json()["item"]
    assert item["subject"] == "Microsoft account unusual sign-in activity"
    nested = email.message_from_bytes(graph.get(f"{item_url}/$value").content, policy=email.policy.default)
    assert nested["Subject"] == item["subject"]
    assert [p.get_filename() for p in nested.iter_attachments()] == ["sign-in-details.txt"]
    outer = email.message_from_bytes(graph.get(f"{forward_base}/$value").content, policy=email.policy.default)
    assert [p.get_content_type() for p in outer.iter_attachments()] == ["message/rfc822"]

    plan = find(graph, ALICE, "Project plan |")
    reference = graph.get(f"/users/{ALICE}/messages/{q(plan['id'])}/attachments").json()["value"][0]
    assert reference["@odata.type"] == "#microsoft.graph.referenceAttachment"
    resume = find(graph, ALICE, "Résumé")
    name = graph.get(f"/users/{ALICE}/messages/{q(resume['id'])}/attachments").json()["value"][0]["name"]
    assert name == "Résumé_Søren_Ødegård_履歴書.pdf"
    photos = find(graph, ALICE, "Team offsite photos")
    inline = graph.get(f"/users/{ALICE}/messages/{q(photos['id'])}/attachments").json()["value"][0]
    assert inline["isInline"] and inline["contentId"] == "image001.png@01DA5F3C.2B7E1A40"


def test_patch_move_copy_delete_and_immutable_ids(sb, graph):
    folder = new_folder(graph, BOB)
    added = sb.add_message(BOB, "Inbox", subject="move me", body="<p>hi</p>", **{"from": "x@fabrikam.example"})
    url = f"/users/{BOB}/messages/{q(added['id'])}"
    patched = graph.request("PATCH", url, json={"isRead": True, "categories": ["Red"],
                                                "flag": {"flagStatus": "flagged"}}).json()
    assert patched["isRead"] and patched["categories"] == ["Red"] and patched["changeKey"] != added["changeKey"]
    assert graph.request("PATCH", url, json={"bogus": 1}).status_code == 400
    moved = graph.post(f"{url}/move", json={"destinationId": folder["id"]})
    assert moved.status_code == 201 and moved.json()["parentFolderId"] == folder["id"]
    assert moved.json()["id"] != added["id"]  # regular ids change on move
    assert graph.get(url).status_code == 404
    back = graph.post(f"/users/{BOB}/messages/{q(moved.json()['id'])}/move", headers=IMMUTABLE,
                      json={"destinationId": "inbox"})
    assert back.json()["id"] == added["immutableId"]  # immutable ids survive moves
    copied = graph.post(f"/users/{BOB}/messages/{q(added['immutableId'])}/copy", json={"destinationId": "archive"})
    assert copied.status_code == 201 and copied.json()["subject"] == "move me"
    assert graph.request("DELETE", f"/users/{BOB}/messages/{q(copied.json()['id'])}").status_code == 204


def test_inbox_rules(graph):
    rules_url = f"/users/{ALICE}/mailFolders/inbox/messageRules"
    rules = graph.get(rules_url).json()["value"]
    forward = next(r for r in rules if r["actions"].get("forwardTo"))
    assert forward["actions"]["forwardTo"][0]["emailAddress"]["address"].endswith("protonmail-drop.net")
    assert set(forward) == {"id", "displayName", "sequence", "isEnabled", "hasError", "isReadOnly",
                            "conditions", "actions", "exceptions"}
    assert len(graph.get(rules_url, params={"$top": 1}).json()["value"]) == 1
    bob_rules = f"/users/{BOB}/mailFolders/inbox/messageRules"
    rule = graph.get(bob_rules).json()["value"][0]
    assert graph.get(f"{bob_rules}/{q(rule['id'])}").json()["displayName"] == rule["displayName"]
    assert graph.request("DELETE", f"{bob_rules}/{q(rule['id'])}").status_code == 204
    assert graph.get(f"{bob_rules}/{q(rule['id'])}").status_code == 404


# --- $batch ------------------------------------------------------------------------------

def test_batch_dispatch_limits_and_throttled_items(sb, graph):
    requests_ = [{"id": "1", "method": "GET", "url": f"/users/{ALICE}/mailFolders/inbox"},
                 {"id": "2", "method": "GET", "url": f"/users/{ALICE}/messages?$top=2&$select=subject"},
                 {"id": "3", "method": "GET", "url": "/users/ghost@contoso.com/messages"}]
    sb.reset_stats()
    body = graph.post("/$batch", json={"requests": requests_}).json()
    by_id = {r["id"]: r for r in body["responses"]}
    assert by_id["1"]["status"] == 200 and by_id["1"]["body"]["displayName"] == "Inbox"
    assert len(by_id["2"]["body"]["value"]) == 2
    assert by_id["3"]["status"] == 404 and by_id["3"]["body"]["error"]["code"] == "ErrorInvalidUser"
    stats = sb.stats()
    assert stats["totals"]["requests"] == 1 and stats["totals"]["batch_items"] == 3
    assert stats["batch_items"]["GET /v1.0/users/{user}/mailFolders/{folder}"]["requests"] == 1

    too_many = [{"id": str(i), "method": "GET", "url": f"/users/{ALICE}"} for i in range(21)]
    assert graph.post("/$batch", json={"requests": too_many}).status_code == 400
    duplicate = [{"id": "a", "method": "GET", "url": "/users"}] * 2
    assert graph.post("/$batch", json={"requests": duplicate}).status_code == 400

    sb.add_fault(path_regex=r"/mailFolders/inbox$", status=429, retry_after=3, in_batch=True, count=1)
    throttled = graph.post("/$batch", json={"requests": requests_[:2]}).json()["responses"]
    assert throttled[0]["status"] == 429 and throttled[0]["headers"]["Retry-After"] == "3"
    assert throttled[0]["body"]["error"]["code"] == "ApplicationThrottled"
    assert throttled[1]["status"] == 200


def test_sequential_batch_runs_in_order_and_a_failure_leaves_the_rest_unrun(sb, graph):
    chain = [{"id": "1", "method": "GET", "url": f"/users/{ALICE}/mailFolders/inbox"},
             {"id": "2", "method": "GET", "url": "/users/ghost@contoso.com/messages", "dependsOn": ["1"]},
             {"id": "3", "method": "GET", "url": f"/users/{ALICE}/mailFolders/inbox", "dependsOn": ["2"]},
             {"id": "4", "method": "GET", "url": f"/users/{ALICE}/mailFolders/inbox", "dependsOn": ["3"]}]
    sb.reset_stats()
    by_id = {r["id"]: r for r in graph.post("/$batch", json={"requests": chain}).json()["responses"]}
    assert [by_id[k]["status"] for k in "1234"] == [200, 404, 424, 424]
    assert by_id["3"]["body"]["error"]["code"] == "FailedDependency"
    assert sb.stats()["totals"]["batch_items"] == 2, "items not run are not Graph requests"
    envelope = [e for e in sb.log() if e["path"].endswith("/$batch")][-1]
    assert envelope["batch"] == {"items": 4, "sequential": True, "not_run": 2}


def test_a_batch_neither_fully_sequential_nor_fully_parallel_is_refused(sb, graph):
    mixed = [{"id": "1", "method": "GET", "url": f"/users/{ALICE}/mailFolders/inbox"},
             {"id": "2", "method": "GET", "url": f"/users/{ALICE}/mailFolders/inbox", "dependsOn": ["1"]},
             {"id": "3", "method": "GET", "url": f"/users/{ALICE}/mailFolders/inbox"}]
    sb.reset_stats()
    answer = graph.post("/$batch", json={"requests": mixed})
    assert answer.status_code == 400 and "fully sequential or fully parallel" in answer.json()["error"]["message"]
    assert sb.stats()["totals"]["batch_items"] == 0


# --- delta ---------------------------------------------------------------------------------

def delta_round(graph: Graph, url: str, headers: dict | None = None, on_page=None) -> tuple[list[dict], str]:
    """Follow one round; returns (items, deltaLink)."""
    items, page = [], 0
    while True:
        body = graph.get(url, headers=headers).json()
        assert not ("@odata.nextLink" in body and "@odata.deltaLink" in body)
        items += body["value"]
        if "@odata.deltaLink" in body:
            return items, body["@odata.deltaLink"]
        page += 1
        if on_page:
            on_page(page)
        url = body["@odata.nextLink"]
        assert "$skiptoken=" in url


def test_delta_rounds_are_exact(sb, graph):
    folder = new_folder(graph, SOC)
    path = path_of(sb, SOC, folder)
    first_ids = sb.add_messages_bulk(SOC, path, count=5)["ids"]
    url = f"/users/{SOC}/mailFolders/{q(folder['id'])}/messages/delta"
    late = {}

    def add_mid_round(page: int) -> None:
        if page == 1:
            late.update(sb.add_message(SOC, path, subject="arrived mid-round"))

    items, delta_link = delta_round(graph, url, {"Prefer": "odata.maxpagesize=2"}, add_mid_round)
    assert sorted(m["id"] for m in items) == sorted(first_ids)
    assert "$deltatoken=" in delta_link
    # the late message comes in the next round, together with an update and a move-out
    graph.request("PATCH", f"/users/{SOC}/messages/{q(first_ids[0])}", json={"isRead": True})
    graph.post(f"/users/{SOC}/messages/{q(first_ids[1])}/move", json={"destinationId": "archive"})
    items, delta_link = delta_round(graph, delta_link)
    changed = {m["id"]: m for m in items}
    assert late["id"] in changed and changed[first_ids[0]]["isRead"] is True
    assert changed[first_ids[1]] == {"@odata.type": "#microsoft.graph.message", "id": first_ids[1],
                                     "@removed": {"reason": "deleted"}}
    assert len(items) == 3
    assert delta_round(graph, delta_link)[0] == []  # nothing new
    again, _ = delta_round(graph, delta_link)  # delta links stay valid
    assert again == []


def test_delta_options_immutable_ids_and_expiry(sb, graph):
    folder = new_folder(graph, SOC)
    path = path_of(sb, SOC, folder)
    added = sb.add_messages_bulk(SOC, path, count=3, start="2024-01-01T00:00:00Z", step_seconds=3600)
    url = f"/users/{SOC}/mailFolders/{q(folder['id'])}/messages/delta"
    filtered, link = delta_round(graph, url + "?$select=subject&$filter=receivedDateTime ge 2024-01-01T01:00:00Z",
                                 IMMUTABLE)
    assert sorted(m["id"] for m in filtered) == sorted(added["immutable_ids"][1:])
    assert set(filtered[0]) == {"@odata.etag", "id", "subject"}
    sb.move_message(SOC, added["ids"][2], "Inbox")
    removed, link = delta_round(graph, link, IMMUTABLE)
    assert removed == [{"@odata.type": "#microsoft.graph.message", "id": added["immutable_ids"][2],
                        "@removed": {"reason": "deleted"}}]
    created_only, _ = delta_round(graph, url + "?changeType=deleted")
    assert created_only == []
    sb.expire_delta_tokens()
    gone = graph.get(link)
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "SyncStateNotFound"
    sb.set_delta_supported(False)
    unsupported = graph.get(url)
    assert unsupported.status_code == 400 and "not supported" in unsupported.json()["error"]["message"]
    search = graph.get(url, params={"$search": '"x"'})
    assert search.status_code == 400


# --- trouble, stats, latency --------------------------------------------------------------------

def test_faults_every_nth_count_and_retry_after(sb, graph):
    rule = sb.add_fault(path_regex=r"/users/[^/]+/mailFolders$", methods=["GET"], status=429, retry_after=2,
                        every_nth=2, count=2)
    statuses = [graph.get(f"/users/{ALICE}/mailFolders") for _ in range(6)]
    assert [r.status_code for r in statuses] == [200, 429, 200, 429, 200, 200]
    assert statuses[1].headers["Retry-After"] == "2"
    assert statuses[1].json()["error"]["message"] == "Application is over its MailboxConcurrency limit."
    assert sb.faults()[0]["applied"] == 2 and sb.remove_fault(rule)
    sb.add_fault(path_regex="/messages", status=503, count=1)
    unavailable = graph.get(f"/users/{ALICE}/messages")
    assert unavailable.status_code == 503 and unavailable.json()["error"]["code"] == "ServiceUnavailable"
    sb.add_fault(path_regex="/mailFolders/inbox$", delay_ms=150, count=1)
    started = time.perf_counter()
    assert graph.get(f"/users/{ALICE}/mailFolders/inbox").status_code == 200
    assert time.perf_counter() - started >= 0.15


def test_fault_redirect_answers_3xx_with_location_and_is_not_followed_by_itself(sb, graph):
    target = sb.base_url + "/elsewhere"
    sb.add_fault(path_regex=r"/sendMail$", status=307, location=target, count=1)
    answer = graph.post(f"/users/{ALICE}/sendMail", json={"message": {}}, allow_redirects=False)
    assert answer.status_code == 307 and answer.headers["Location"] == target and answer.content == b""
    with pytest.raises(ValueError):
        sb.add_fault(path_regex="x", status=400, location=target)


def test_fault_echo_authorization_quotes_the_callers_header(sb, graph):
    sb.add_fault(path_regex=r"/mailFolders$", status=400, echo_authorization=True, count=1)
    answer = graph.get(f"/users/{ALICE}/mailFolders")
    assert answer.status_code == 400
    assert graph.headers["Authorization"] in answer.json()["error"]["message"]
    assert answer.json()["error"]["code"] == "BadRequest"


def test_json_bodies_above_4_000_000_bytes_get_413(sb, graph):
    """Graph refuses a JSON body of about 4 MB; the sandbox refuses above the integration's budget, no later."""
    message = {"subject": "big", "toRecipients": [{"emailAddress": {"address": BOB}}],
               "body": {"contentType": "Text", "content": ""}}
    envelope = len(json.dumps({"message": message, "saveToSentItems": False}).encode())
    for size, status in ((4_000_000, 202), (4_000_001, 413)):
        message["body"]["content"] = "x" * (size - envelope)
        body = json.dumps({"message": message, "saveToSentItems": False}).encode()
        assert len(body) == size
        answer = graph.post(f"/users/{ALICE}/sendMail", data=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == status, answer.text[:200]


def test_stats_keys_and_log(sb, http, graph):
    sb.reset_stats()
    app = msal_app(sb, sb.info["client_secret"])
    assert "access_token" in app.acquire_token_for_client([sb.info["scope"]])
    graph.get(f"/users/{ALICE}/mailFolders/inbox/messages/delta")
    graph.get(f"/users/{ALICE}/messages/{q('AAMkAGnope=')}")
    http.get(f"{sb.base_url}/_sandbox/stats")  # control endpoints are not counted
    stats = sb.stats()
    endpoints = stats["endpoints"]
    assert set(endpoints) == {
        "GET /{tenant}/v2.0/.well-known/openid-configuration", "POST /{tenant}/oauth2/v2.0/token",
        "GET /v1.0/users/{user}/mailFolders/{folder}/messages/delta", "GET /v1.0/users/{user}/messages/{message}"}
    assert endpoints["GET /v1.0/users/{user}/messages/{message}"]["statuses"] == {"404": 1}
    assert stats["totals"]["requests"] == 4 and stats["totals"]["bytes_out"] > 0
    assert endpoints["POST /{tenant}/oauth2/v2.0/token"]["bytes_in"] > 0
    log = sb.log()
    assert [entry["status"] for entry in log][-1] == 404 and len(log) == 4
    assert http.get(f"{sb.base_url}/_sandbox/log").json() == log


def test_latency_applies_to_graph_not_control(sb, http, graph):
    http.post(f"{sb.base_url}/_sandbox/latency", json={"ms": 200})
    started = time.perf_counter()
    graph.get(f"/users/{ALICE}")
    assert time.perf_counter() - started >= 0.2
    started = time.perf_counter()
    http.get(f"{sb.base_url}/_sandbox/stats")
    assert time.perf_counter() - started < 0.2


# --- control API and load data ---------------------------------------------------------------------

def test_control_endpoints_over_http(sb, http, graph):
    control = f"{sb.base_url}/_sandbox"
    folder = new_folder(graph, ALICE)
    path = path_of(sb, ALICE, folder)
    created = http.post(f"{control}/messages", json={
        "user": ALICE, "folder": path, "subject": "late arrival", "body": "hello", "from": "eve@example.net",
        "receivedDateTime": "2024-02-02T10:00:00Z",
        "attachments": [{"name": "a.txt", "content_b64": base64.b64encode(b"abc").decode()},
                        {"name": "big.bin", "size": 5000}],
        "item_attachments": [{"subject": "inner", "body": "inner body"}]}).json()
    assert created["receivedDateTime"] == "2024-02-02T10:00:00Z" and created["hasAttachments"]
    moved = http.post(f"{control}/move", json={"user": ALICE, "message_id": created["id"],
                                                "destination": "Inbox"}).json()
    assert moved["receivedDateTime"] == "2024-02-02T10:00:00Z"
    dump = http.get(f"{control}/mailbox", params={"user": ALICE, "folder": "Inbox"}).json()
    assert any(m["subject"] == "late arrival" for m in dump["folders"][0]["messages"])
    fault = http.post(f"{control}/faults", json={"path_regex": "/nothing", "status": 500}).json()
    assert isinstance(fault["id"], int)
    assert http.delete(f"{control}/faults").json() == {"ok": True}
    assert http.post(f"{control}/latency", json={}).status_code == 400
    assert http.post(f"{control}/token-lifetime", json={"seconds": 600}).status_code == 200
    token = msal_app(sb, sb.info["client_secret"]).acquire_token_for_client([sb.info["scope"]])
    assert token["expires_in"] <= 600
    sb.set_token_lifetime(3599)


def test_bulk_load_and_big_attachment(sb, graph):
    folder = new_folder(graph, BOB)
    path = path_of(sb, BOB, folder)
    started = time.perf_counter()
    bulk = sb.add_messages_bulk(BOB, path, count=1000, attachment_ratio=0.1, same_second=5)
    assert time.perf_counter() - started < 3.0 and len(bulk["ids"]) == 1000
    pages = graph.all_pages(f"/users/{BOB}/mailFolders/{q(folder['id'])}/messages",
                            params={"$top": 1000, "$select": "receivedDateTime,hasAttachments"})
    messages = pages[0]
    assert len(messages) == 1000 and sum(m["hasAttachments"] for m in messages) == 100
    assert len({m["receivedDateTime"] for m in messages}) == 200

    big = sb.add_messages_bulk(BOB, path, count=1, attachment_ratio=1, attachment_size=100 * 1024 * 1024)
    base = f"/users/{BOB}/messages/{q(big['ids'][0])}/attachments"
    meta = graph.get(base, params={"$select": "id,name,size"}).json()["value"][0]
    assert meta["size"] == 100 * 1024 * 1024
    with graph.get(f"{base}/{q(meta['id'])}/$value", stream=True) as response:
        assert response.headers["Content-Length"] == str(100 * 1024 * 1024)
        assert next(response.iter_content(1024)).startswith(b"%PDF")


def test_reset_restores_seed(sb, graph):
    sb.add_message(ALICE, "Inbox", subject="temporary")
    sb.reset()
    subjects = [m["subject"] for f in sb.mailbox(ALICE)["folders"] for m in f["messages"]]
    assert "temporary" not in subjects and any(s.startswith("Invoice INV-20931") for s in subjects)
    assert graph.get(f"/users/{ALICE}/mailFolders/inbox/messages").status_code == 200


# --- CLI ------------------------------------------------------------------------------------------

def test_cli_ready_line_and_sigterm(tmp_path):
    command = [sys.executable, "-m", "sandbox", "--port", "0", "--state-dir", str(tmp_path)]
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        try:
            line = process.stdout.readline().strip()
            assert line.startswith("READY https://127.0.0.1:")
            info = json.loads((tmp_path / "sandbox.json").read_text())
            assert info["base_url"] == line.split(" ", 1)[1] and Path(info["ca_path"]).exists()
            assert {"tenant_id", "client_id", "client_secret", "mailboxes"} <= set(info)
            assert set(info["certificate"]) == {"thumbprint", "private_key_path", "certificate_path"}
            assert {"registration_id", "token", "key", "token_url"} <= set(info["oproxy"])
            assert len(base64.b64decode(info["oproxy"]["key"])) == 32
            assert info["oproxy"]["token_url"] == info["base_url"] + "/oproxy/obtain-token"
            assert "user_assigned_client_id" in info["managed_identity"]
            assert info["mailboxes"] == [*SEED_UPNS] and info["mailboxes"][:3] == [ALICE, BOB, SOC]
            with verified_session(info["ca_path"]) as session:
                discovery = session.get(f"{info['authority']}/v2.0/.well-known/openid-configuration")
                assert discovery.status_code == 200
        finally:
            process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stdout.read() == ""


# --- Graph's budget: what throttling counts, the per-mailbox budget, $select on a single attachment --------------

def test_stats_count_graph_requests_as_graph_throttles_them_and_round_trips_apart(sb, http, graph):
    items = [{"id": str(i), "method": "GET", "url": f"/users/{ALICE}/mailFolders/inbox"} for i in range(5)]
    sb.reset_stats()
    app = msal_app(sb, sb.info["client_secret"])
    assert "access_token" in app.acquire_token_for_client([sb.info["scope"]])  # identity: not Graph
    graph.get(f"/users/{ALICE}/mailFolders/inbox")
    sb.add_fault(path_regex=r"/mailFolders/inbox$", status=429, retry_after=1, in_batch=True, every_nth=2)
    graph.post("/$batch", json={"requests": items})
    totals = sb.stats()["totals"]
    assert totals["graph_requests"] == 6, "each $batch item counts, the envelope does not"
    assert totals["round_trips"] == 2, "HTTP requests to Graph, the envelope included"
    assert totals["throttled"] == 2, "every 429 received: the 2nd and the 4th item"
    assert totals["requests"] == 4 and totals["batch_items"] == 5


def test_mailbox_budget_refuses_requests_of_an_app_over_its_mailbox_window(sb, http, graph):
    try:
        assert sb.set_mailbox_budget(3, window_seconds=60)["requests"] == 3
        for _ in range(2):
            assert graph.get(f"/users/{ALICE}/mailFolders/inbox").status_code == 200
        items = [{"id": str(i), "method": "GET", "url": f"/users/{ALICE}/mailFolders/inbox"} for i in range(2)]
        answers = {r["id"]: r for r in graph.post("/$batch", json={"requests": items}).json()["responses"]}
        assert answers["0"]["status"] == 200, "the envelope is not a mailbox request; its items are"
        assert answers["1"]["status"] == 429 and answers["1"]["body"]["error"]["code"] == "ApplicationThrottled"
        assert 1 <= int(answers["1"]["headers"]["Retry-After"]) <= 60
        refused = graph.get(f"/users/{ALICE}/mailFolders/inbox")
        assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60
        assert graph.get(f"/users/{BOB}/mailFolders/inbox").status_code == 200, "another mailbox has its own budget"
        budget = http.get(f"{sb.base_url}/_sandbox/mailbox-budget").json()
        assert budget["refused"] == 2 and len(budget["used"]) == 2
        with pytest.raises(ValueError):
            sb.set_mailbox_budget(0)
    finally:
        sb.set_mailbox_budget(None)
    assert graph.get(f"/users/{ALICE}/mailFolders/inbox").status_code == 200


def test_mailbox_budget_windows_start_afresh_and_count_per_app():
    from sandbox.budget import MailboxBudget
    from sandbox.core import Headers, Request
    now = [100.0]
    budget = MailboxBudget(clock=lambda: now[0])
    budget.configure(2, window_seconds=10)

    def ask(app: str, path: str = f"/v1.0/users/{ALICE}/messages"):
        request = Request("GET", path, "", Headers([]), b"")
        request.principal = app
        return budget.check(request)

    assert ask("app-1") is None and ask("app-1") is None
    refused = ask("app-1")
    assert refused.status == 429 and dict(refused.headers)["Retry-After"] == "10"
    assert ask("app-2") is None, "each app has its own budget for the mailbox"
    assert ask("app-1", "/v1.0/$batch") is None and ask("app-1", "/v1.0/users") is None, "not mailbox requests"
    now[0] += 7.5
    assert dict(ask("app-1").headers)["Retry-After"] == "3"
    now[0] += 2.5
    assert ask("app-1") is None, "a new window, a new budget"
    assert budget.describe()["refused"] == 2


def test_single_attachment_select_can_be_ignored_as_graph_may_while_the_list_honours_it(sb, http, graph):
    folder = new_folder(graph, BOB)
    bulk = sb.add_messages_bulk(BOB, path_of(sb, BOB, folder), count=1, attachment_ratio=1, attachment_size=4096)
    base = f"/users/{BOB}/messages/{q(bulk['ids'][0])}/attachments"
    meta = graph.get(base, params={"$select": "id,name,size"}).json()["value"][0]
    single = f"{base}/{q(meta['id'])}"
    assert "contentBytes" not in graph.get(single, params={"$select": "id,name,size"}).json()
    try:
        response = http.post(f"{sb.base_url}/_sandbox/single-attachment-select", json={"honoured": False})
        assert response.status_code == 200
        ignored = graph.get(single, params={"$select": "id,name,size"}).json()
        assert len(base64.b64decode(ignored["contentBytes"])) == 4096
        assert "contentBytes" not in graph.get(base, params={"$select": "id,name,size"}).json()["value"][0]
    finally:
        sb.set_single_attachment_select(True)
    assert "contentBytes" not in graph.get(single, params={"$select": "id,name,size"}).json()
