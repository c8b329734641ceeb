"""server.FrozenAfterStartup: what start-up made is frozen out of the garbage collector's full
collections once, and only when the start-up is complete; requests pass through untouched."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from hook_service.server import FrozenAfterStartup

STARTED: list[int] = []


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the test process builds many apps: give the objects back to the collector


def make_app() -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        STARTED.append(gc.get_freeze_count())  # what start-up itself sees: nothing frozen yet
        yield

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    app = Starlette(routes=[Route("/", hello)], lifespan=lifespan)
    app.state.marker = "the app's own state"
    return app


def test_start_up_complete_freezes_what_it_made_and_requests_pass_through() -> None:
    wrapped: Any = FrozenAfterStartup(make_app())
    assert gc.get_freeze_count() == 0
    with TestClient(wrapped) as client:
        assert STARTED[-1] == 0
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # the modules, Starlette's and the test's own objects
        answer = client.get("/")
        assert (answer.status_code, answer.text) == (200, "hello")
        # A request freezes nothing more (a frozen object may still be freed by its refcount).
        assert gc.get_freeze_count() <= frozen
    assert wrapped.state.marker == "the app's own state"


def test_no_start_up_no_freeze() -> None:
    wrapped: Any = FrozenAfterStartup(make_app())
    client = TestClient(wrapped)  # not entered: no lifespan, as check_in_parent builds it
    assert client.get("/").text == "hello"
    assert gc.get_freeze_count() == 0
