"""Shared fixtures for the sandbox tests: one real sandbox per module, reset per test."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from renewals.sandbox.testing import RunningSandbox, running_sandbox


@pytest.fixture(scope="module")
def module_sandbox() -> Iterator[RunningSandbox]:
    with running_sandbox() as sandbox:
        yield sandbox


@pytest.fixture
def sandbox(module_sandbox: RunningSandbox) -> RunningSandbox:
    """The module's sandbox, emptied and back on default config."""
    module_sandbox.reset()
    return module_sandbox


@pytest.fixture
def api(sandbox: RunningSandbox) -> Iterator[httpx.Client]:
    """An httpx client on the sandbox's /api/v1 with a valid API key."""
    with sandbox.api_client(timeout=10.0) as client:
        yield client
