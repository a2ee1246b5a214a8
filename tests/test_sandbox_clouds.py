"""The sandbox's cloud profiles (sandbox/clouds.py): worldwide serves everything; usgov and china refuse what
their Graph schemas lack, with Graph's OData error shapes, before anything changes."""
from __future__ import annotations

import pytest

from sandbox import Sandbox
from sandbox.__main__ import parse_args
from tests.test_sandbox import Graph, q, verified_session

ALICE, BOB = "alice@contoso.com", "bob@contoso.com"
TO_BOB = [{"emailAddress": {"address": BOB}}]
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def sb(tmp_path_factory):
    with Sandbox(state_dir=tmp_path_factory.mktemp("sandbox-clouds")) as sandbox:
        yield sandbox


@pytest.fixture(autouse=True)
def _worldwide_again(sb):
    sb.reset()
    sb.reset_stats()
    yield
    sb.set_cloud("worldwide")


@pytest.fixture
def graph(sb):
    with verified_session(sb.ca_path) as session:
        yield Graph(sb, session, sb.issue_token())


def error_of(response) -> tuple[int, str, str]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["message"]


def a_message_id(sb, user: str = ALICE) -> str:
    return q(sb.mailbox(user, "Inbox")["folders"][0]["messages"][0]["immutableId"])


def new_draft(graph: Graph) -> str:
    created = graph.post(f"/users/{ALICE}/messages", json={"subject": "profile test", "toRecipients": TO_BOB})
    assert created.status_code == 201, created.text
    return q(created.json()["id"])


def upload_session(graph: Graph, draft: str):
    return graph.post(f"/users/{ALICE}/messages/{draft}/attachments/createUploadSession",
                      json={"AttachmentItem": {"attachmentType": "file", "name": "big.bin", "size": 5 * MiB}})


# --- worldwide ------------------------------------------------------------------------------

def test_worldwide_serves_every_operation_the_profiles_refuse(sb, graph):
    assert sb.cloud == "worldwide" and sb.info["cloud"] == "worldwide"
    assert upload_session(graph, new_draft(graph)).status_code == 201
    original = a_message_id(sb)
    assert graph.post(f"/users/{ALICE}/messages/{original}/createReply", json={"comment": "x"}).status_code == 201
    assert graph.get(f"/users/{ALICE}/mailFolders/inbox/messageRules").status_code == 200
    assert graph.get(f"/users/{ALICE}/messages/{original}",
                     params={"$select": "subject,flag,internetMessageHeaders"}).status_code == 200
    rest_id = sb.mailbox(ALICE, "Inbox")["folders"][0]["messages"][0]["id"]
    translated = graph.post(f"/users/{ALICE}/translateExchangeIds", json={
        "inputIds": [rest_id], "sourceIdType": "restId", "targetIdType": "restImmutableEntryId"})
    assert translated.status_code == 200 and translated.json()["value"]


# --- usgov ----------------------------------------------------------------------------------

def test_usgov_has_no_upload_sessions(sb, graph):
    draft = new_draft(graph)
    sb.set_cloud("usgov")
    sessions_before = dict(sb.ctx.extensions["graph_send"].sessions)
    refused = upload_session(graph, draft)
    assert error_of(refused) == (400, "BadRequest", "Resource not found for the segment 'createUploadSession'.")
    assert sb.ctx.extensions["graph_send"].sessions == sessions_before
    key = "POST /v1.0/users/{user}/messages/{message}/attachments/createUploadSession"
    assert sb.stats()["endpoints"][key]["statuses"] == {"400": 1}
    # small attachments are posted as before
    small = graph.post(f"/users/{ALICE}/messages/{draft}/attachments", json={
        "@odata.type": "#microsoft.graph.fileAttachment", "name": "a.txt", "contentBytes": "aGVsbG8="})
    assert small.status_code == 201


@pytest.mark.parametrize("action", ["createReply", "createReplyAll", "createForward"])
def test_usgov_create_responses_take_no_parameters(sb, graph, action):
    sb.set_cloud("usgov")
    original = a_message_id(sb)
    drafts_before = sb.mailbox(ALICE, "Drafts")["folders"][0]["messages"]
    refused = graph.post(f"/users/{ALICE}/messages/{original}/{action}", json={"comment": "see below"})
    assert error_of(refused) == (400, "BadRequest", f"The parameter 'comment' in the request payload is not a valid "
                                                    f"parameter for the operation '{action}'.")
    assert sb.mailbox(ALICE, "Drafts")["folders"][0]["messages"] == drafts_before
    bare = graph.post(f"/users/{ALICE}/messages/{original}/{action}")
    assert bare.status_code == 201 and bare.json()["isDraft"] is True
    # reply/forward (send at once) keep their message and comment parameters
    sent = graph.post(f"/users/{ALICE}/messages/{original}/forward", json={"comment": "fyi", "toRecipients": TO_BOB})
    assert sent.status_code == 202


def test_usgov_has_no_translate_exchange_ids_or_permanent_delete(sb, graph):
    sb.set_cloud("usgov")
    original = a_message_id(sb)
    translated = graph.post(f"/users/{ALICE}/translateExchangeIds", json={
        "inputIds": [], "sourceIdType": "restId", "targetIdType": "restImmutableEntryId"})
    assert error_of(translated)[2] == "Resource not found for the segment 'translateExchangeIds'."
    hard = graph.post(f"/users/{ALICE}/messages/{original}/permanentDelete")
    assert error_of(hard) == (400, "BadRequest", "Resource not found for the segment 'permanentDelete'.")
    assert graph.get(f"/users/{ALICE}/mailFolders/inbox/messageRules").status_code == 200
    assert graph.get(f"/users/{ALICE}/messages/{original}", params={"$select": "flag"}).status_code == 200


def test_usgov_refusals_apply_inside_batch(sb, graph):
    sb.set_cloud("usgov")
    original = a_message_id(sb)
    answer = graph.post("/$batch", json={"requests": [
        {"id": "1", "method": "POST", "url": f"/users/{ALICE}/messages/{original}/createReply",
         "headers": {"Content-Type": "application/json"}, "body": {"comment": "x"}},
        {"id": "2", "method": "GET", "url": f"/users/{ALICE}/messages/{original}?$select=subject"}]})
    assert answer.status_code == 200
    items = {i["id"]: i for i in answer.json()["responses"]}
    assert items["1"]["status"] == 400 and "not a valid parameter" in items["1"]["body"]["error"]["message"]
    assert items["2"]["status"] == 200


# --- china ----------------------------------------------------------------------------------

def test_china_has_no_inbox_rules_delta_or_permanent_delete(sb, graph):
    sb.set_cloud("china")
    rules = graph.get(f"/users/{ALICE}/mailFolders/inbox/messageRules")
    assert error_of(rules) == (400, "BadRequest", "Resource not found for the segment 'messageRules'.")
    assert error_of(graph.request("DELETE", f"/users/{ALICE}/mailFolders/inbox/messageRules/AQAAAJ5dZqA="))[0] == 400
    delta = graph.get(f"/users/{ALICE}/mailFolders/inbox/messages/delta")
    assert error_of(delta)[2] == "Resource not found for the segment 'delta'."
    hard = graph.post(f"/users/{ALICE}/messages/{a_message_id(sb)}/permanentDelete")
    assert error_of(hard)[2] == "Resource not found for the segment 'permanentDelete'."


@pytest.mark.parametrize("select", ["subject,internetMessageHeaders", "flag", "id, FLAG"])
def test_china_message_type_lacks_headers_and_flag_in_select(sb, graph, select):
    sb.set_cloud("china")
    original = a_message_id(sb)
    for path in (f"/users/{ALICE}/messages/{original}", f"/users/{ALICE}/mailFolders/inbox/messages"):
        status, code, message = error_of(graph.get(path, params={"$select": select}))
        assert (status, code) == (400, "RequestBroker--ParseUri")
        assert message.startswith("Could not find a property named '") and "microsoft.graph.message" in message
    assert graph.get(f"/users/{ALICE}/messages/{original}", params={"$select": "id,subject,body"}).status_code == 200


def test_china_refuses_writing_headers_or_flag(sb, graph):
    sb.set_cloud("china")
    flagged = graph.post(f"/users/{ALICE}/sendMail", json={"message": {
        "subject": "s", "toRecipients": TO_BOB, "flag": {"flagStatus": "flagged"}}})
    assert error_of(flagged)[:2] == (400, "RequestBodyRead") and "'flag'" in error_of(flagged)[2]
    headers = graph.post(f"/users/{ALICE}/messages", json={
        "subject": "s", "internetMessageHeaders": [{"name": "x-case", "value": "1"}]})
    assert error_of(headers)[0] == 400 and "internetMessageHeaders" in error_of(headers)[2]
    assert "s" not in [m["subject"] for m in sb.mailbox(BOB, "Inbox")["folders"][0]["messages"]]
    plain = graph.post(f"/users/{ALICE}/sendMail", json={"message": {"subject": "plain", "toRecipients": TO_BOB}})
    assert plain.status_code == 202
    # upload sessions exist in 21Vianet
    assert upload_session(graph, new_draft(graph)).status_code == 201


# --- switching profiles ---------------------------------------------------------------------

def test_profile_is_chosen_at_start_over_http_or_on_the_command_line(sb, graph, tmp_path):
    with verified_session(sb.ca_path) as http:
        assert http.post(f"{sb.base_url}/_sandbox/cloud", json={"cloud": "china"}).status_code == 200
        assert sb.cloud == "china"
        unknown = http.post(f"{sb.base_url}/_sandbox/cloud", json={"cloud": "mars"})
        assert unknown.status_code == 400 and "worldwide" in unknown.json()["error_description"]
    assert sb.cloud == "china"
    assert parse_args(["--cloud", "usgov"]).cloud == "usgov"
    assert parse_args([]).cloud == "worldwide"
    with pytest.raises(ValueError, match="unknown cloud profile"):
        Sandbox(state_dir=tmp_path, cloud="mars")
