"""Fixtures for the end-to-end tests: a running sandbox and integration instances configured for it."""
import pytest

from sandbox import Sandbox
from tests.e2e_support import Instance


@pytest.fixture(scope='module')
def sandbox(tmp_path_factory):
    with Sandbox(state_dir=tmp_path_factory.mktemp('sandbox')) as running:
        yield running


@pytest.fixture
def fresh_sandbox(sandbox):
    """The module's sandbox, reseeded, without faults or latency, with zeroed counters."""
    sandbox.reset()
    sandbox.clear_faults()
    sandbox.set_latency(0)
    sandbox.set_delta_supported(True)
    sandbox.set_cloud('worldwide')
    sandbox.reset_stats()
    return sandbox


@pytest.fixture
def instance(fresh_sandbox, tmp_path):
    return Instance(fresh_sandbox, tmp_path / 'instance')
