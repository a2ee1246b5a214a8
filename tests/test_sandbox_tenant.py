"""The sandbox's generated tenant (tenant.py): directory and group routes, users without a mailbox, permanentDelete,
the per-app concurrency limit and planting a campaign."""
import functools
import threading
import time

import pytest
import requests

from sandbox import Sandbox
from sandbox.seed import SEED_UPNS


@pytest.fixture(scope='module')
def sb(tmp_path_factory):
    with Sandbox(state_dir=tmp_path_factory.mktemp('tenant'), tenant_size=40) as sandbox:
        yield sandbox


@pytest.fixture(autouse=True)
def _clean(sb):
    yield
    sb.set_latency(0)
    sb.set_concurrency(limit=4, batch_item_latency_ms=0, reset_counters=True)


@pytest.fixture
def graph(sb):
    session = requests.Session()
    session.request = functools.partial(session.request, verify=sb.ca_path)  # type: ignore[method-assign]
    headers = {'Authorization': f'Bearer {sb.issue_token()}'}

    def call(method: str, path: str, **kwargs) -> requests.Response:
        url = path if path.startswith('https://') else f'{sb.base_url}/v1.0/{path}'
        return session.request(method, url, headers=headers, timeout=30, **kwargs)
    return call


def test_users_are_paged_and_users_without_a_mailbox_have_no_mail(graph):
    first = graph('GET', 'users?$top=30').json()
    second = graph('GET', first['@odata.nextLink']).json()
    users = first['value'] + second['value']
    assert len(users) == 40 + len(SEED_UPNS) and '@odata.nextLink' not in second
    without = [u for u in users if u['mail'] is None]
    assert len(without) == 4
    answer = graph('GET', f"users/{without[0]['id']}/messages")
    assert answer.status_code == 404 and answer.json()['error']['code'] == 'MailboxNotEnabledForRESTAPI'
    assert graph('GET', f"users/{without[0]['id']}").status_code == 200, 'the user itself exists'


def test_group_members_are_transitive_and_counted_once(sb, graph):
    groups = sb.ctx.extensions['tenant'].groups
    everyone = next(g for g in groups.values() if g.name == 'All staff')
    answer = graph('GET', f'groups/{everyone.id}/transitiveMembers/microsoft.graph.user?$top=999').json()
    ids = [u['id'] for u in answer['value']]
    assert len(ids) == 40 == len(set(ids))
    missing = graph('GET', 'groups/00000000-0000-4000-8000-000000000000/transitiveMembers/microsoft.graph.user')
    assert missing.status_code == 404


def test_permanent_delete_removes_the_message(sb, graph):
    planted = sb.plant_campaign(count=1, seed=3, internet_message_id='<pd@x.example>')['planted'][0]
    answer = graph('POST', f"users/{planted['user']}/messages/{requests.utils.quote(planted['immutableId'], safe='')}"
                           '/permanentDelete')
    assert answer.status_code == 204
    assert sb.campaign_copies('<pd@x.example>') == []


def test_a_campaign_is_planted_in_the_chosen_share_and_folders(sb):
    result = sb.plant_campaign(count=10, purged=2, seed=5, internet_message_id='<share@x.example>')
    live = sb.campaign_copies('<share@x.example>')
    assert len(result['planted']) == 10 == len(live)
    assert {c['folder'] for c in live} == {'Inbox', 'Inbox/Projects', 'Junk Email', 'Deleted Items'}
    assert sum(c['isRead'] for c in live) == 2


def test_a_fifth_request_in_flight_is_throttled(sb, graph):
    sb.set_latency(1000)
    statuses: list[int] = []

    def one() -> None:
        statuses.append(graph('GET', 'users/alice@contoso.com/mailFolders').status_code)

    threads = [threading.Thread(target=one) for _ in range(5)]
    for thread in threads:
        thread.start()
        time.sleep(0.02)
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 200, 200, 200, 429]
    assert sb.concurrency()['rejected'] == 1


def test_batch_sub_requests_run_four_at_a_time_and_count_against_the_limit(sb, graph):
    sb.set_concurrency(batch_item_latency_ms=400, reset_counters=True)
    requests_ = [{'id': str(n), 'method': 'GET', 'url': '/users/alice@contoso.com/mailFolders/inbox'} for n in range(8)]
    result: dict = {}
    batch = threading.Thread(target=lambda: result.update(graph('POST', '$batch', json={'requests': requests_}).json()))
    batch.start()
    time.sleep(0.1)
    intruder = graph('GET', 'users/bob@contoso.com/mailFolders')
    batch.join()
    assert intruder.status_code == 429 and intruder.json()['error']['code'] == 'ApplicationThrottled'
    assert intruder.headers['Retry-After'] == '1'
    assert [r['status'] for r in result['responses']] == [200] * 8
    assert sb.concurrency()['peak'] == 4, 'four sub-requests of the batch ran at once, never more'
