"""Unit tests of GraphClient's $batch scheduler (`batch`, `run_batches`): chunks of 20 across mailboxes, at most 4
requests in flight per app as Graph counts them, each throttled sub-request retried after its own Retry-After."""
import threading
import time

import pytest

import MicrosoftGraphMail as mgm
from conftest import GRAPH


def item(n: int, user: str = 'a@contoso.com') -> mgm.BatchItem:
    return mgm.BatchItem(id=f'i{n}', method='GET', url=f'users/{user}/messages?$top=1&n={n}')


class FakeBatch:
    """Answers POST /$batch; `plan[id]` lists the statuses an item gets on successive attempts (default 200)."""

    def __init__(self, plan=None, retry_after=None):
        self.plan = {k: list(v) for k, v in (plan or {}).items()}
        self.retry_after = retry_after or {}
        self.posts: list[list[str]] = []

    def __call__(self, request, context):
        ids = [r['id'] for r in request.json()['requests']]
        self.posts.append(ids)
        responses = []
        for item_id in ids:
            statuses = self.plan.get(item_id) or [200]
            status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
            headers = {'Retry-After': str(self.retry_after[item_id])} if item_id in self.retry_after else {}
            body = {'value': [{'id': f'm-{item_id}'}]} if status == 200 else {'error': {'code': 'ApplicationThrottled',
                                                                                           'message': 'slow down'}}
            responses.append({'id': item_id, 'status': status, 'headers': headers, 'body': body})
        return {'responses': responses}


def test_items_of_different_mailboxes_share_batches_of_20(client, requests_mock):
    fake = FakeBatch()
    requests_mock.post(f'{GRAPH}/$batch', json=fake)
    items = [item(n, f'user{n}@contoso.com') for n in range(41)]
    results = client.batch(items)
    assert [len(p) for p in fake.posts] == [20, 20, 1]
    assert {r['status'] for r in results.values()} == {200} and len(results) == 41
    sent = requests_mock.request_history[0].json()['requests']
    assert {r['url'].split('/')[2] for r in sent} == {f'user{n}@contoso.com' for n in range(20)}


def test_each_throttled_sub_request_waits_for_its_own_retry_after(client, requests_mock, sleeps):
    fake = FakeBatch(plan={'i1': [429, 200], 'i2': [503, 200]}, retry_after={'i1': 5, 'i2': 2})
    requests_mock.post(f'{GRAPH}/$batch', json=fake)
    results = client.batch([item(n) for n in range(6)])
    # i2 is due after 2 s and goes alone; i1 follows 3 s later (5 s after its answer), not with i2 after 5 s
    assert fake.posts[1:] == [['i2'], ['i1']]
    assert sleeps.waits == [2.0, 3.0]
    assert all(r['status'] == 200 for r in results.values())


def test_throttled_items_of_several_batches_wait_together(client, requests_mock, sleeps):
    fake = FakeBatch(plan={'i0': [429, 200], 'i25': [429, 200], 'i45': [429, 200]},
                     retry_after={'i0': 4, 'i25': 4, 'i45': 4})
    requests_mock.post(f'{GRAPH}/$batch', json=fake)
    results = client.batch([item(n) for n in range(50)])
    assert [len(p) for p in fake.posts] == [20, 20, 10, 3]
    assert sorted(fake.posts[3]) == ['i0', 'i25', 'i45']
    assert sleeps.waits == [4.0], 'one wait for all throttled items, not one per batch'
    assert all(r['status'] == 200 for r in results.values())


def test_an_item_throttled_past_its_budget_comes_back_with_its_429(make_client, requests_mock, sleeps):
    client = make_client(max_attempts=2)
    fake = FakeBatch(plan={'i1': [429]}, retry_after={'i1': 3})
    requests_mock.post(f'{GRAPH}/$batch', json=fake)
    results = client.batch([item(0), item(1)])
    assert results['i1']['status'] == 429 and results['i0']['status'] == 200
    assert sleeps.waits == [3.0]


def test_a_retry_after_beyond_the_wait_budget_is_not_waited_for(make_client, requests_mock, sleeps):
    client = make_client(wait_budget_seconds=10)
    requests_mock.post(f'{GRAPH}/$batch', json=FakeBatch(plan={'i0': [429]}, retry_after={'i0': 60}))
    assert client.batch([item(0)])['i0']['status'] == 429
    assert sleeps.waits == []


class ConcurrentPosts:
    """Stands in for GraphClient.post_batch (requests-mock serializes requests, so concurrency is observed here):
    records how many sub-requests are in flight at once."""

    def __init__(self, pause: float = 0.05):
        self.pause = pause
        self.lock = threading.Lock()
        self.sub_requests = 0
        self.peak_sub_requests = 0
        self.peak_batches = 0
        self.batches = 0

    def __call__(self, items, sequential=False):
        running = 1 if sequential else min(len(items), 4)   # Outlook runs a sequential batch one item at a time
        with self.lock:
            self.batches += 1
            self.sub_requests += running
            self.peak_sub_requests = max(self.peak_sub_requests, self.sub_requests)
            self.peak_batches = max(self.peak_batches, self.batches)
        time.sleep(self.pause)
        with self.lock:
            self.batches -= 1
            self.sub_requests -= running
        return {i.id: {'status': 200, 'headers': {}, 'body': {}} for i in items}


def test_full_batches_never_exceed_four_sub_requests_in_flight(client, monkeypatch):
    posts = ConcurrentPosts()
    monkeypatch.setattr(client, 'post_batch', posts)
    assert len(client.batch([item(n) for n in range(100)])) == 100
    assert posts.peak_batches == 1, 'a full $batch runs 4 sub-requests at once: a second one would exceed 4 per app'


def test_small_batches_run_side_by_side_within_four(client, monkeypatch):
    """Throttled items falling due one after the other go out as small batches in parallel (a 1-item batch costs 1
    of the 4), never past 4 sub-requests in flight."""
    posts = ConcurrentPosts(pause=0.3)
    throttled = {'i1': 1.0, 'i2': 1.05, 'i3': 1.1}

    def post(items, sequential=False):
        answers = posts(items, sequential)
        for i in items:
            if i.id in throttled:
                answers[i.id] = {'status': 429, 'headers': {'Retry-After': str(throttled.pop(i.id))}, 'body': {}}
        return answers

    monkeypatch.setattr(client, 'post_batch', post)
    results = client.batch([item(n) for n in range(6)])
    assert {r['status'] for r in results.values()} == {200}
    assert posts.peak_sub_requests <= 4
    assert posts.peak_batches >= 2


def test_batches_run_side_by_side_when_the_budget_allows(client, monkeypatch):
    """The budget is counted in sub-requests: with room for 8, two full batches are in flight at once."""
    posts = ConcurrentPosts(pause=0.1)
    monkeypatch.setattr(client, 'post_batch', posts)
    client.max_in_flight = 8
    assert len(client.batch([item(n) for n in range(40)])) == 40
    assert posts.peak_batches == 2


def test_follow_up_items_are_answered_too(client, requests_mock):
    fake = FakeBatch()
    requests_mock.post(f'{GRAPH}/$batch', json=fake)
    seen: list[str] = []

    def on_answer(done: mgm.BatchItem, answer: dict):
        seen.append(done.id)
        return [item(int(done.id[1:]) + 100)] if int(done.id[1:]) < 100 else []

    client.run_batches([item(n) for n in range(4)], on_answer)
    assert sorted(seen) == ['i0', 'i1', 'i100', 'i101', 'i102', 'i103', 'i2', 'i3']
    assert fake.posts == [['i0', 'i1', 'i2', 'i3'], ['i100', 'i101', 'i102', 'i103']]


def test_items_are_read_lazily(client, requests_mock):
    read = []

    def source():
        for n in range(10_000):
            read.append(n)
            yield item(n)

    read_ahead = []
    sent = [0]

    def answer(request, context):
        requests_ = request.json()['requests']
        sent[0] += len(requests_)
        read_ahead.append(len(read) - sent[0])
        return {'responses': [{'id': r['id'], 'status': 200, 'headers': {}, 'body': {}} for r in requests_]}

    requests_mock.post(f'{GRAPH}/$batch', json=answer)
    answered = []
    client.run_batches(source(), lambda done, answer: answered.append(done.id) or ())
    assert len(answered) == 10_000
    assert max(read_ahead) <= 20 * 4 + 20, 'the scheduler read far ahead of what it could send'


def test_follow_up_items_go_before_new_ones(client, requests_mock):
    fake = FakeBatch()
    requests_mock.post(f'{GRAPH}/$batch', json=fake)
    client.run_batches([item(n) for n in range(45)],
                       lambda done, answer: [item(1000)] if done.id == 'i0' else [])
    # the second batch left before the first one's answers were handled; the follow-up leads the third
    assert fake.posts[1][0] == 'i20'
    assert fake.posts[2][0] == 'i1000' and fake.posts[2][1:] == [f'i{n}' for n in range(40, 45)]


def test_an_envelope_failure_ends_the_run(client, requests_mock, sleeps):
    requests_mock.post(f'{GRAPH}/$batch', status_code=403, json={'error': {'code': 'Forbidden', 'message': 'no'}})
    with pytest.raises(mgm.GraphError) as raised:
        client.batch([item(0)])
    assert raised.value.status == 403


def test_token_manager_is_safe_across_threads():
    class SlowProvider:
        calls = 0

        def acquire(self, refresh_token=''):
            SlowProvider.calls += 1
            time.sleep(0.05)
            return mgm.AccessToken(value='t', expires_on=time.time() + 3600)

    tokens = mgm.TokenManager(SlowProvider(), 'x', mgm.MemoryStore(), mgm.SecretRedactor())
    threads = [threading.Thread(target=tokens.token) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert SlowProvider.calls == 1


# ================================================================================ sequential (chained) batches
class ChainAwareBatch(FakeBatch):
    """FakeBatch that honours dependsOn as Graph does: after a failed item, the items depending on it answer 424."""

    def __init__(self, plan=None, retry_after=None):
        super().__init__(plan, retry_after)
        self.chains: list[bool] = []   # per post: was it sequential (every item after the first dependsOn the one before)
        self.ran: list[str] = []

    def __call__(self, request, context):
        sent = request.json()['requests']
        self.chains.append(all(r.get('dependsOn') == [before['id']] for before, r in zip(sent, sent[1:])) and len(sent) > 1
                           and 'dependsOn' not in sent[0])
        answers = super().__call__(request, context)['responses']
        failed = False
        for sub, answer in zip(sent, answers):
            if failed and sub.get('dependsOn'):
                answer.update(status=424, headers={}, body={'error': {'code': 'FailedDependency', 'message': 'x'}})
            else:
                self.ran.append(sub['id'])
            failed = failed or answer['status'] >= 400
        return {'responses': answers}


def run_chained(client, items):
    answers: dict[str, list[int]] = {}
    client.run_batches(items, lambda done, answer: answers.setdefault(done.id, []).append(answer['status']) and (),
                       chained=True)
    return answers


def test_chained_batches_are_sequential_and_four_run_side_by_side(client, monkeypatch):
    posts = ConcurrentPosts(pause=0.05)
    monkeypatch.setattr(client, 'post_batch', posts)
    answered = []
    client.run_batches([item(n) for n in range(200)], lambda done, answer: answered.append(done.id) or (), chained=True)
    assert sorted(answered) == sorted(f'i{n}' for n in range(200))
    assert posts.peak_batches == 4, 'four sequential batches (one sub-request running each) fit the 4 per app'
    assert posts.peak_sub_requests <= 4


def test_a_chained_batch_carries_depends_on_the_item_before(client, requests_mock):
    fake = ChainAwareBatch()
    requests_mock.post(f'{GRAPH}/$batch', json=fake)
    run_chained(client, [item(n) for n in range(100)])
    assert [len(p) for p in fake.posts[:4]] == [20] * 4 and sum(len(p) for p in fake.posts) == 100
    assert all(chain for post, chain in zip(fake.posts, fake.chains) if len(post) > 1)
    sent = requests_mock.request_history[0].json()['requests']
    assert 'dependsOn' not in sent[0] and sent[5]['dependsOn'] == [sent[4]['id']]


def test_chains_shorten_so_the_last_ones_end_together(client, requests_mock):
    fake = ChainAwareBatch()
    requests_mock.post(f'{GRAPH}/$batch', json=fake)
    run_chained(client, [item(n) for n in range(25)])
    assert [len(p) for p in fake.posts] == [7, 6, 6, 6]


def test_items_a_failure_left_unrun_are_sent_again_and_answered_once(make_client, requests_mock, sleeps):
    client = make_client(max_attempts=1)   # no retries at all: a 424 must not use up an item's budget
    fake = ChainAwareBatch(plan={'i3': [404], 'i30': [429]}, retry_after={'i30': 1})
    requests_mock.post(f'{GRAPH}/$batch', json=fake)
    answers = run_chained(client, [item(n) for n in range(80)])
    assert sorted(answers) == sorted(f'i{n}' for n in range(80))
    assert all(len(statuses) == 1 for statuses in answers.values()), 'an item was answered twice'
    assert answers['i3'] == [404] and answers['i30'] == [429]
    assert {s for k, v in answers.items() if k not in ('i3', 'i30') for s in v} == {200}, 'a 424 reached the caller'
    assert sorted(fake.ran) == sorted(f'i{n}' for n in range(80)), 'each item ran exactly once'


def test_a_424_without_an_earlier_failure_is_a_final_answer(client, requests_mock):
    fake = ChainAwareBatch(plan={'i0': [424]})
    requests_mock.post(f'{GRAPH}/$batch', json=fake)
    answers = run_chained(client, [item(n) for n in range(4)])
    assert answers['i0'] == [424] and len(fake.posts) == 4


def test_throttled_items_in_a_chain_wait_for_their_own_retry_after(client, requests_mock, sleeps):
    fake = ChainAwareBatch(plan={'i2': [429, 200]}, retry_after={'i2': 4})
    requests_mock.post(f'{GRAPH}/$batch', json=fake)
    answers = run_chained(client, [item(n) for n in range(80)])
    assert answers['i2'] == [200] and {s for v in answers.values() for s in v} == {200}
    assert sleeps.waits == [4.0], 'the items after the throttled one went on without waiting'
    assert fake.posts[-1] == ['i2']


def test_when_most_answers_fail_parallel_batches_are_sent_instead(client, requests_mock):
    """A chain cut short at every item would run one sub-request per round trip: past the break-even share of
    failures the scheduler packs parallel batches (no dependsOn)."""
    fake = ChainAwareBatch(plan={f'i{n}': [403] for n in range(400)})
    requests_mock.post(f'{GRAPH}/$batch', json=fake)
    answers = run_chained(client, [item(n) for n in range(400)])
    assert {s for v in answers.values() for s in v} == {403} and len(answers) == 400
    assert fake.chains[0] and not any(fake.chains[-10:])
    assert len(fake.posts) < 60, f'{len(fake.posts)} round trips for 400 failing items'


def test_a_break_off_still_hands_over_the_answers_of_batches_already_sent(client, monkeypatch):
    """A batch that failed as a whole ends the run, but the other batches in flight did their work at Graph: their
    answers reach on_answer (a remediation records its moves) before the error is raised."""
    calls = [0]
    lock = threading.Lock()

    def post(items, sequential=False):
        with lock:
            calls[0] += 1
            number = calls[0]
        if number == 2:
            time.sleep(0.02)
            raise mgm.GraphError(400, 'BadRequest', 'envelope refused')
        time.sleep(0.1)
        return {i.id: {'status': 200, 'headers': {}, 'body': {}} for i in items}

    monkeypatch.setattr(client, 'post_batch', post)
    answered = []
    with pytest.raises(mgm.GraphError):
        client.run_batches([item(n) for n in range(80)], lambda done, answer: answered.append(done.id) or (),
                           chained=True)
    assert len(answered) == 60, 'the three batches sent beside the failed one were not all handed over'
