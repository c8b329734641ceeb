"""Fixtures of the facts tests: ``store``, each facts store (memory, a real Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hook_service.facts.base import FactsStore
from hook_service.facts.logic import Limits
from tests.facts.support import KINDS, open_store


@pytest.fixture(params=KINDS)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[FactsStore]:
    instance = open_store(request.param, request, Limits())
    try:
        yield instance
    finally:
        await instance.aclose()
