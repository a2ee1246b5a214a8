"""The per-cloud capability table: what each national cloud's Graph offers, asked in one place."""
import pytest

import MicrosoftGraphMail as mgm


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
