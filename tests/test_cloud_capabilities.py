"""The per-cloud capability table: what each national cloud's Graph offers, asked in one place, and the commands
that do the best their cloud allows (sending, replies and forwards, rules, id translation, attached meeting mail)."""
import re

import pytest

import MicrosoftGraphMail as mgm
from tests.test_sending import FORWARD_DRAFT, ORIGINAL_ID, REPLY_DRAFT, WarRoom, seg


def test_each_cloud_url_carries_its_capabilities():
    assert mgm.resolve_endpoints('https://graph.microsoft.com').capabilities.permanent_delete
    us_gov = mgm.resolve_endpoints('https://graph.microsoft.us').capabilities
    assert not us_gov.upload_sessions and not us_gov.permanent_delete and us_gov.inbox_rules
    assert mgm.resolve_endpoints('https://dod-graph.microsoft.us').capabilities == us_gov
    china = mgm.resolve_endpoints('https://microsoftgraph.chinacloudapi.cn').capabilities
    assert not china.inbox_rules and not china.message_delta and not china.message_headers_and_flag
    assert china.upload_sessions


def test_require_capability_names_the_cloud_and_the_alternative():
    endpoints = mgm.resolve_endpoints('https://microsoftgraph.chinacloudapi.cn')
    with pytest.raises(mgm.MailError, match=r'Inbox rules is not.*21Vianet.*Use the Outlook'):
        mgm.require_capability(endpoints, 'inbox_rules', 'Inbox rules', 'Use the Outlook client instead.')
    mgm.require_capability(mgm.resolve_endpoints('https://graph.microsoft.com'), 'inbox_rules', 'x', 'y')


def test_message_select_drops_headers_and_flag_only_where_the_cloud_lacks_them():
    fields = 'id,subject,internetMessageHeaders,flag,body'
    assert mgm.message_select(fields, mgm.WORLDWIDE_CAPABILITIES) == fields
    assert mgm.message_select(fields, mgm.CHINA_CAPABILITIES) == 'id,subject,body'


# ================================================================================ a custom Server URL names its cloud
PROXY = 'https://graph-proxy.agency.example'
EMULATOR_AUTHORITY = 'https://127.0.0.1:8443'
MIB = 1024 * 1024


@pytest.mark.parametrize('named, capabilities', [('US Gov GCC-High', mgm.US_GOV_CAPABILITIES),
                                                 ('us gov dod', mgm.US_GOV_CAPABILITIES),
                                                 ('21Vianet (China)', mgm.CHINA_CAPABILITIES),
                                                 ('Worldwide', mgm.WORLDWIDE_CAPABILITIES)])
def test_an_emulator_named_as_a_cloud_has_that_clouds_capabilities_and_its_own_audience(named, capabilities):
    endpoints = mgm.resolve_endpoints(PROXY, EMULATOR_AUTHORITY, named)
    assert endpoints.capabilities == capabilities
    assert endpoints.cloud_name.lower() == named.lower()
    assert endpoints.graph_base == f'{PROXY}/v1.0' and endpoints.login_root == EMULATOR_AUTHORITY
    assert endpoints.scope == f'{PROXY}/.default'  # an authority of its own issues tokens for the URL itself


def test_a_proxy_named_as_dod_takes_the_dod_authority_and_audience():
    endpoints = mgm.resolve_endpoints(PROXY, '', 'US Gov DoD')
    assert endpoints.login_root == 'https://login.microsoftonline.us'
    assert endpoints.scope == 'https://dod-graph.microsoft.us/.default'
    assert endpoints.managed_identity_resource == 'https://dod-graph.microsoft.us/'
    assert endpoints.capabilities == mgm.US_GOV_CAPABILITIES


@pytest.mark.parametrize('authority, capabilities, audience', [
    ('https://login.chinacloudapi.cn', mgm.CHINA_CAPABILITIES, 'https://microsoftgraph.chinacloudapi.cn'),
    ('https://login.microsoftonline.us/', mgm.US_GOV_CAPABILITIES, 'https://graph.microsoft.us'),
    ('https://login.microsoftonline.com', mgm.WORLDWIDE_CAPABILITIES, 'https://graph.microsoft.com')])
def test_a_proxy_behind_a_microsoft_authority_behaves_as_that_authoritys_cloud(authority, capabilities, audience):
    endpoints = mgm.resolve_endpoints(PROXY, authority)
    assert endpoints.capabilities == capabilities and endpoints.scope == f'{audience}/.default'


@pytest.mark.parametrize('named, authority', [('US Gov GCC-High', 'https://login.chinacloudapi.cn'),
                                               ('21Vianet (China)', 'https://login.microsoftonline.com'),
                                               ('Worldwide', 'https://login.microsoftonline.us')])
def test_a_named_cloud_with_another_clouds_microsoft_authority_is_refused(named, authority):
    with pytest.raises(mgm.MailError, match=r'server_url_cloud.*azure_ad_endpoint.*token authority of'):
        mgm.resolve_endpoints(PROXY, authority, named)


def test_a_named_us_gov_cloud_may_share_its_authority_between_gcc_high_and_dod():
    endpoints = mgm.resolve_endpoints(PROXY, 'https://login.microsoftonline.us', 'US Gov DoD')
    assert endpoints.scope == 'https://dod-graph.microsoft.us/.default'


def test_an_unknown_authority_without_a_named_cloud_is_a_worldwide_custom_endpoint():
    endpoints = mgm.resolve_endpoints(PROXY, EMULATOR_AUTHORITY)
    assert endpoints.cloud_name == 'Custom' and endpoints.capabilities == mgm.WORLDWIDE_CAPABILITIES


def test_naming_another_cloud_for_a_known_server_url_is_an_error():
    with pytest.raises(mgm.MailError, match=r"server_url_cloud.*21Vianet.*US Gov GCC-High Graph itself"):
        mgm.resolve_endpoints('https://graph.microsoft.us', '', '21Vianet (China)')
    assert mgm.resolve_endpoints('https://graph.microsoft.us', '', 'US Gov GCC-High').cloud_name == 'US Gov GCC-High'


@pytest.mark.parametrize('value', ['usgov', 'Mars', 'US Gov'])
def test_an_unknown_cloud_name_lists_the_names(value):
    with pytest.raises(mgm.MailError, match=r"server_url_cloud.*Worldwide, US Gov GCC-High, US Gov DoD"):
        mgm.resolve_endpoints(PROXY, EMULATOR_AUTHORITY, value)


# ================================================================================ sending per cloud
US_GOV_GRAPH = 'https://graph.microsoft.us/v1.0'
CHINA_GRAPH = 'https://microsoftgraph.chinacloudapi.cn/v1.0'
USER = 'soc@contoso.com'


@pytest.fixture
def war_room(tmp_path, monkeypatch) -> WarRoom:
    return WarRoom.installed(tmp_path, monkeypatch)


class CloudGraph:
    """Graph of one cloud for one mailbox: the original message, one draft, and what was asked of it."""

    def __init__(self, requests_mock, graph: str, draft: dict):
        self.m = requests_mock
        self.base = f'{graph}/users/{USER}'
        self.draft = draft
        self.draft_url = f'{self.base}/messages/{seg(draft["id"])}'
        self.original_url = f'{self.base}/messages/{seg(ORIGINAL_ID)}'
        requests_mock.post(f'{self.base}/sendMail', status_code=202)
        requests_mock.post(f'{self.base}/messages', status_code=201, json=draft)
        for action in ('createReply', 'createForward'):
            requests_mock.post(f'{self.original_url}/{action}', status_code=201, json=draft)
        requests_mock.post(f'{self.original_url}/reply', status_code=202)
        requests_mock.patch(self.draft_url, json=draft)
        requests_mock.post(f'{self.draft_url}/attachments', status_code=201, json={'id': 'att'})
        requests_mock.post(f'{self.draft_url}/attachments/createUploadSession', status_code=201,
                           json={'uploadUrl': 'https://outlook.office.com/api/v2.0/Users/x/AttachmentSessions/s?authtoken=t'})
        requests_mock.put(re.compile(r'^https://outlook\.office\.com/'), status_code=201)
        requests_mock.post(f'{self.draft_url}/send', status_code=202)
        requests_mock.delete(self.draft_url, status_code=204)

    def trail(self) -> list[str]:
        steps = []
        for request in self.m.request_history:
            url = request.url.split('?')[0].replace(self.base, '')
            url = url.replace(seg(self.draft['id']), '{draft}').replace(seg(ORIGINAL_ID), '{original}')
            steps.append('PUT {upload}' if request.method == 'PUT' else f'{request.method} {url}')
        return steps

    def body_of(self, method: str, suffix: str) -> dict:
        [found] = [r for r in self.m.request_history if r.method == method and r.url.split('?')[0].endswith(suffix)]
        return found.json()


@pytest.fixture
def gov_client(make_client):
    return make_client(server_url='https://graph.microsoft.us')


@pytest.fixture
def china_client(make_client):
    return make_client(server_url='https://microsoftgraph.chinacloudapi.cn')


def no_requests(requests_mock) -> None:
    assert requests_mock.call_count == 0, [f'{r.method} {r.url}' for r in requests_mock.request_history]


@pytest.mark.parametrize('command, args', [
    (mgm.send_mail_command, {'to': 'a@contoso.com', 'subject': 's'}),
    (mgm.create_draft_command, {'subject': 's'}),
    (mgm.reply_mail_command, {'to': 'a@contoso.com', 'subject': 's', 'inReplyTo': ORIGINAL_ID, 'body': 'b'}),
    (mgm.reply_to_command, {'ID': ORIGINAL_ID, 'body': 'b', 'to': 'a@contoso.com'}),
    (mgm.forward_email_command, {'message_id': ORIGINAL_ID, 'to': 'a@contoso.com'})])
def test_usgov_refuses_a_file_needing_an_upload_session_before_any_request(gov_client, requests_mock, war_room,
                                                                           command, args):
    war_room.add('1@1', 'small.txt', size=100)
    war_room.add('2@1', 'scan.pdf', size=3 * MIB)
    with pytest.raises(mgm.MailError) as exc:
        command(gov_client, {**args, 'attachIDs': '1@1,2@1'})
    message = str(exc.value)
    assert 'US Gov GCC-High' in message and "'scan.pdf' (3145728 bytes)" in message and 'small.txt' not in message
    assert f'{mgm.single_request_file_limit()} bytes at most' in message and str(mgm.JSON_REQUEST_MAX_BYTES) in message
    no_requests(requests_mock)


def test_usgov_the_largest_file_one_request_carries_is_sent_in_one_request(gov_client, requests_mock, war_room):
    graph = CloudGraph(requests_mock, US_GOV_GRAPH, REPLY_DRAFT)
    war_room.add('1@1', 'scan.pdf', size=mgm.single_request_file_limit())
    mgm.send_mail_command(gov_client, {'to': 'a@contoso.com', 'subject': 's', 'attachIDs': '1@1'})
    assert graph.trail() == ['POST /sendMail']
    assert len(requests_mock.request_history[-1].body) <= mgm.JSON_REQUEST_MAX_BYTES


def test_usgov_a_file_just_under_3_mib_is_refused_since_its_base64_exceeds_the_json_limit(gov_client, requests_mock,
                                                                                         war_room):
    """Issue 9, finding 6: 3 MiB - 1 bytes are 4 MiB of base64; Graph answers 413, so it is refused up front."""
    war_room.add('1@1', 'scan.pdf', size=3 * MIB - 1)
    with pytest.raises(mgm.MailError, match='US Gov'):
        mgm.send_mail_command(gov_client, {'to': 'a@contoso.com', 'subject': 's', 'attachIDs': '1@1'})
    no_requests(requests_mock)


def test_usgov_the_refusal_follows_the_json_budget_constant(gov_client, requests_mock, war_room, monkeypatch):
    monkeypatch.setattr(mgm, 'JSON_REQUEST_MAX_BYTES', 2 * MIB)
    war_room.add('1@1', 'scan.pdf', size=2 * MIB)
    with pytest.raises(mgm.MailError, match=str(mgm.single_request_file_limit())):
        mgm.send_mail_command(gov_client, {'to': 'a@contoso.com', 'subject': 's', 'attachIDs': '1@1'})
    no_requests(requests_mock)


def test_usgov_reply_mail_uses_a_bare_create_reply_then_patch_then_send(gov_client, requests_mock, war_room):
    graph = CloudGraph(requests_mock, US_GOV_GRAPH, REPLY_DRAFT)
    entry = mgm.reply_mail_command(gov_client, {'to': 'Kevin.Sharp@fabrikam.example, alexw@contoso.com',
                                                'cc': 'audit@contoso.com', 'subject': 'Suspicious invoice',
                                                'inReplyTo': ORIGINAL_ID, 'body': 'We are on it.'})
    assert graph.trail() == ['POST /messages/{original}/createReply', 'PATCH /messages/{draft}',
                             'POST /messages/{draft}/send']
    assert graph.body_of('POST', '/createReply') == {}
    patch = graph.body_of('PATCH', seg(REPLY_DRAFT['id']))
    assert [r['emailAddress']['address'] for r in patch['toRecipients']] == ['kevin.sharp@fabrikam.example',
                                                                              'alexw@contoso.com']
    assert patch['ccRecipients'] == [{'emailAddress': {'address': 'audit@contoso.com'}}]
    assert patch['subject'] == 'Re: Suspicious invoice'
    assert patch['body']['contentType'] == 'HTML'
    assert patch['body']['content'].startswith('<html><body><div>We are on it.</div><div id="divRplyFwdMsg">')
    assert set(patch) == {'toRecipients', 'ccRecipients', 'subject', 'body'}
    assert entry['EntryContext']['MicrosoftGraph.SentMail(val.ID && val.ID == obj.ID)']['ID'] == REPLY_DRAFT['id']


def test_usgov_forward_with_a_small_file_patches_the_bare_forward_and_posts_the_file(gov_client, requests_mock,
                                                                                    war_room):
    graph = CloudGraph(requests_mock, US_GOV_GRAPH, FORWARD_DRAFT)
    war_room.add('1@1', 'notes.txt', size=1000)
    mgm.forward_email_command(gov_client, {'message_id': ORIGINAL_ID, 'to': 'report@contoso.com',
                                           'comment': 'Reported.', 'attachIDs': '1@1'})
    assert graph.trail() == ['POST /messages/{original}/createForward', 'PATCH /messages/{draft}',
                             'POST /messages/{draft}/attachments', 'POST /messages/{draft}/send']
    assert graph.body_of('POST', '/createForward') == {}
    patch = graph.body_of('PATCH', seg(FORWARD_DRAFT['id']))
    assert patch['toRecipients'] == [{'emailAddress': {'address': 'report@contoso.com'}}]
    assert 'Reported.' in patch['body']['content']
    assert graph.body_of('POST', '/attachments')['name'] == 'notes.txt'


def test_usgov_reply_to_without_files_is_one_reply_with_message_and_comment(gov_client, requests_mock, war_room):
    graph = CloudGraph(requests_mock, US_GOV_GRAPH, REPLY_DRAFT)
    mgm.reply_to_command(gov_client, {'ID': ORIGINAL_ID, 'body': 'Thanks.', 'to': 'a@contoso.com'})
    assert graph.trail() == ['POST /messages/{original}/reply']
    assert graph.body_of('POST', '/reply')['comment'] == 'Thanks.'


def test_usgov_a_failed_patch_deletes_the_bare_draft_and_sends_nothing(gov_client, requests_mock, war_room):
    graph = CloudGraph(requests_mock, US_GOV_GRAPH, REPLY_DRAFT)
    requests_mock.patch(graph.draft_url, status_code=400,
                        json={'error': {'code': 'ErrorInvalidProperty', 'message': 'Invalid value.'}})
    war_room.add('1@1', 'a.txt', size=10)
    with pytest.raises(mgm.MailError, match=r'Updating the draft failed: .*ErrorInvalidProperty.*The draft was deleted'):
        mgm.reply_to_command(gov_client, {'ID': ORIGINAL_ID, 'body': 'x', 'to': 'a@contoso.com', 'attachIDs': '1@1'})
    assert graph.trail() == ['POST /messages/{original}/createReply', 'PATCH /messages/{draft}',
                             'DELETE /messages/{draft}']


def test_china_reply_with_a_large_file_uploads_it_to_the_bare_draft(china_client, requests_mock, war_room):
    graph = CloudGraph(requests_mock, CHINA_GRAPH, REPLY_DRAFT)
    war_room.add('1@1', 'capture.pcap', size=3 * MIB + 10)
    mgm.reply_mail_command(china_client, {'to': 'a@contoso.com', 'subject': 's', 'inReplyTo': ORIGINAL_ID,
                                          'body': 'b', 'attachIDs': '1@1'})
    assert graph.trail() == ['POST /messages/{original}/createReply', 'PATCH /messages/{draft}',
                             'POST /messages/{draft}/attachments/createUploadSession', 'PUT {upload}',
                             'POST /messages/{draft}/send']


def test_china_send_mail_carries_no_flag_and_refuses_headers_or_a_flag(china_client, requests_mock, war_room):
    graph = CloudGraph(requests_mock, CHINA_GRAPH, REPLY_DRAFT)
    entry = mgm.send_mail_command(china_client, {'to': 'a@contoso.com', 'subject': 's', 'flag': 'notFlagged'})
    message = graph.body_of('POST', '/sendMail')['message']
    assert 'flag' not in message and 'internetMessageHeaders' not in message
    assert entry[0]['EntryContext']['MicrosoftGraph.Email']['flag'] is None
    requests_mock.reset_mock()
    for args, named in (({'headers': 'x-case:1'}, "argument 'headers'"), ({'flag': 'flagged'}, "argument 'flag'")):
        with pytest.raises(mgm.MailError, match=re.escape(named) + r'.*21Vianet'):
            mgm.send_mail_command(china_client, {'to': 'a@contoso.com', 'subject': 's', **args})
        with pytest.raises(mgm.MailError, match='21Vianet'):
            mgm.create_draft_command(china_client, {'subject': 's', **args})
    no_requests(requests_mock)


def test_usgov_keeps_headers_and_flag(gov_client, requests_mock, war_room):
    graph = CloudGraph(requests_mock, US_GOV_GRAPH, REPLY_DRAFT)
    mgm.send_mail_command(gov_client, {'to': 'a@contoso.com', 'subject': 's', 'flag': 'flagged', 'headers': 'x-a:1'})
    message = graph.body_of('POST', '/sendMail')['message']
    assert message['flag'] == {'flagStatus': 'flagged'} and message['internetMessageHeaders'] == [
        {'name': 'x-a', 'value': '1'}]


# ================================================================================ merging a comment into a bare draft
def test_a_text_comment_is_escaped_into_an_html_draft():
    body = mgm.body_with_comment({'contentType': 'html', 'content': '<html><BODY class="x"><p>orig</p></BODY></html>'},
                                 '<script>alert(1)</script>\nline 2', 'Text')
    assert body == {'contentType': 'HTML', 'content': '<html><BODY class="x"><div>&lt;script&gt;alert(1)&lt;/script&gt;'
                                                      '<br>line 2</div><p>orig</p></BODY></html>'}


def test_an_html_comment_goes_first_when_the_draft_has_no_body_tag():
    body = mgm.body_with_comment({'contentType': 'html', 'content': '<p>orig</p>'}, '<b>hi</b>', 'HTML')
    assert body['content'] == '<div><b>hi</b></div><p>orig</p>'


def test_a_text_draft_gets_the_comment_as_text():
    assert mgm.body_with_comment({'contentType': 'text', 'content': 'orig'}, '<p>a &amp; b</p>', 'HTML') == \
        {'contentType': 'Text', 'content': 'a & b\n\norig'}
    assert mgm.body_with_comment({'contentType': 'text', 'content': ''}, 'plain', 'Text')['content'] == 'plain'


def test_many_body_like_tags_in_an_attackers_original_are_searched_once():
    hostile = '<body' * 50000
    body = mgm.body_with_comment({'contentType': 'html', 'content': hostile}, 'c', 'HTML')
    assert body['content'] == '<div>c</div>' + hostile


def test_the_patch_adds_our_recipients_to_graphs_without_duplicates():
    draft = {'toRecipients': [{'emailAddress': {'name': 'K', 'address': 'K@x.example'}}]}
    changes = mgm.response_draft_changes(draft, {'toRecipients': [{'emailAddress': {'address': 'k@X.example'}},
                                                                  {'emailAddress': {'address': 'm@x.example'}}]},
                                         '', 'HTML')
    assert changes == {'toRecipients': [{'emailAddress': {'name': 'K', 'address': 'K@x.example'}},
                                        {'emailAddress': {'address': 'm@x.example'}}]}


# ================================================================================ rules, id translation, meeting items
@pytest.mark.parametrize('command, args', [(mgm.list_rules_command, {}), (mgm.get_rule_command, {'rule_id': 'r1'}),
                                           (mgm.delete_rule_command, {'rule_id': 'r1'})])
def test_china_rules_commands_are_refused_before_any_request(china_client, requests_mock, command, args):
    with pytest.raises(mgm.MailError, match=r'Inbox rules .*not available in the 21Vianet \(China\) cloud.*PowerShell'):
        command(china_client, {'user_id': USER, **args})
    no_requests(requests_mock)


def test_usgov_rules_commands_still_call_graph(gov_client, requests_mock):
    rules = requests_mock.get(f'{US_GOV_GRAPH}/users/{USER}/mailFolders/inbox/messageRules', json={'value': []})
    mgm.list_rules_command(gov_client, {'user_id': USER})
    assert rules.call_count == 1


def test_id_translation_is_not_attempted_where_the_cloud_lacks_it(gov_client, client, requests_mock):
    assert mgm.translate_to_immutable_ids(gov_client, USER, ['AAMk1']) == {}
    no_requests(requests_mock)
    requests_mock.post(f'https://graph.microsoft.com/v1.0/users/{USER}/translateExchangeIds',
                       json={'value': [{'sourceId': 'AAMk1', 'targetId': 'AAkA1'}]})
    assert mgm.translate_to_immutable_ids(client, USER, ['AAMk1']) == {'AAMk1': 'AAkA1'}


@pytest.mark.parametrize('item_type', ['#microsoft.graph.eventMessage', '#microsoft.graph.eventMessageRequest',
                                       '#microsoft.graph.eventMessageResponse',
                                       '#microsoft.graph.calendarSharingMessage', '#microsoft.graph.message'])
def test_an_attached_meeting_message_is_parsed_as_attached_mail(client, requests_mock, item_type):
    url = f'https://graph.microsoft.com/v1.0/users/{USER}/messages/M1/attachments/A1'
    requests_mock.get(url, json={'id': 'A1', 'item': {'@odata.type': item_type, 'id': '', 'subject': 'Board meeting',
                                                      'from': {'emailAddress': {'address': 'ceo@fabrikam.example'}}}})
    [entry] = mgm.attachment_entries(client, USER, 'M1', {'id': 'A1', 'name': 'Board meeting',
                                                          '@odata.type': mgm.ITEM_ATTACHMENT}, as_eml=False)
    parsed = entry['EntryContext'][mgm.MESSAGE_CONTEXT_KEY]
    assert parsed['Subject'] == 'Board meeting' and parsed['ID'] == 'A1'
    assert parsed['From']['Address'] == 'ceo@fabrikam.example'


def test_an_attached_contact_is_still_reported_as_unsupported(client, requests_mock):
    url = f'https://graph.microsoft.com/v1.0/users/{USER}/messages/M1/attachments/A1'
    requests_mock.get(url, json={'id': 'A1', 'item': {'@odata.type': '#microsoft.graph.contact', 'displayName': 'x'}})
    [entry] = mgm.attachment_entries(client, USER, 'M1', {'id': 'A1', 'name': 'card',
                                                          '@odata.type': mgm.ITEM_ATTACHMENT}, as_eml=False)
    assert 'only attached messages are supported' in entry['HumanReadable'] and not entry.get('EntryContext')


# ================================================================================ bare drafts: hostile originals (review)
def test_usgov_a_reply_to_a_sender_without_an_address_merges_recipients_and_sends(gov_client, requests_mock,
                                                                                  war_room):
    """Graph gives `address: null` for a sender it knows only by name (an X.500 or undisclosed sender)."""
    draft = {**REPLY_DRAFT, 'toRecipients': [{'emailAddress': {'name': 'Accounts', 'address': None}}]}
    graph = CloudGraph(requests_mock, US_GOV_GRAPH, draft)
    mgm.reply_mail_command(gov_client, {'to': 'a@contoso.com', 'subject': 's', 'inReplyTo': ORIGINAL_ID, 'body': 'b'})
    assert graph.trail() == ['POST /messages/{original}/createReply', 'PATCH /messages/{draft}',
                             'POST /messages/{draft}/send']
    patch = graph.body_of('PATCH', seg(draft['id']))
    assert [r['emailAddress'].get('address') for r in patch['toRecipients']] == [None, 'a@contoso.com']


def test_usgov_a_bare_draft_that_cannot_be_completed_is_deleted(gov_client, requests_mock, war_room, monkeypatch):
    graph = CloudGraph(requests_mock, US_GOV_GRAPH, REPLY_DRAFT)

    def broken(*args, **kwargs):
        raise mgm.MailError('cannot merge')
    monkeypatch.setattr(mgm, 'response_draft_changes', broken)
    with pytest.raises(mgm.MailError, match='cannot merge.*The draft was deleted'):
        mgm.reply_mail_command(gov_client, {'to': 'a@contoso.com', 'subject': 's', 'inReplyTo': ORIGINAL_ID,
                                            'body': 'b'})
    assert graph.trail() == ['POST /messages/{original}/createReply', 'DELETE /messages/{draft}']
