"""Shared test fixtures: a Graph client wired to requests-mock, with no real waiting."""
import json
import os
from typing import Any, Callable

import pytest

import MicrosoftGraphMail as mgm

GRAPH = 'https://graph.microsoft.com/v1.0'
TEST_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'test_data')


def load_json(relative_path: str) -> Any:
    with open(os.path.join(TEST_DATA, relative_path), encoding='utf-8') as handle:
        return json.load(handle)


class StaticTokenProvider:
    """Hands out numbered tokens and counts how often a token was requested."""

    def __init__(self) -> None:
        self.calls = 0

    def acquire(self, refresh_token: str = '') -> mgm.AccessToken:
        self.calls += 1
        return mgm.AccessToken(value=f'test-access-token-{self.calls}', expires_on=mgm.time.time() + 3600)


class SleepRecorder:
    """Stands in for time.sleep so retry tests run instantly and can assert the waits."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def make_client(sleeps: SleepRecorder) -> Callable[..., mgm.GraphClient]:
    """Builds a worldwide-cloud GraphClient; `default_user` is the fetch mailbox."""

    def build(default_user: str = 'soc@contoso.com', server_url: str = 'https://graph.microsoft.com',
              provider: Any = None, **retry: Any) -> mgm.GraphClient:
        endpoints = mgm.resolve_endpoints(server_url)
        http = mgm.HttpSession(timeout=10, insecure=False, use_proxy=False)
        tokens = mgm.TokenManager(provider or StaticTokenProvider(), 'test', mgm.MemoryStore(), mgm.SecretRedactor())
        return mgm.GraphClient(endpoints, http, tokens, retry=mgm.RetryPolicy(sleep=sleeps, **retry),
                               default_user=default_user)

    return build


@pytest.fixture
def client(make_client: Callable[..., mgm.GraphClient]) -> mgm.GraphClient:
    return make_client()


@pytest.fixture
def in_tmp_dir(tmp_path, monkeypatch):
    """File results are written to the working directory, as inside XSOAR."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
