"""Fixtures for tests against a real anvil with the contracts deployed by the real deploy script.

``deployed`` (module scope) starts one anvil and deploys; tests isolate themselves by creating their own
network (``new_network``). Tests that rewind or kill the chain start their own anvil (``fresh_chain``).
"""

from __future__ import annotations

import pytest

from tests.client.onchain.helpers import start_deployed


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    with start_deployed(tmp_path_factory.mktemp("chain")) as d:
        yield d


@pytest.fixture
def fresh_chain(tmp_path):
    with start_deployed(tmp_path / "chain") as d:
        yield d
