"""The rotation scheduler on the file store: the flock is the lock on one host."""

from __future__ import annotations

from pathlib import Path

import pytest

from hook_service.keys.admin import KeyAdmin
from hook_service.keys.backends.file import FileKeyStore
from hook_service.keys.scheduler import RotationScheduler
from tests.support import FakeClock, key_supply, kid_of

pytestmark = pytest.mark.anyio

DAY = 86400


async def test_two_workers_on_one_directory_rotate_once_per_interval(tmp_path: Path) -> None:
    clock = FakeClock()
    supply = key_supply()
    stores = [FileKeyStore(tmp_path, clock=clock, new_key=supply) for _ in range(2)]
    stores[0].load_or_create()
    stores[1].load()
    schedulers = [
        RotationScheduler(KeyAdmin(store, clock=clock, replica=f"w{i}"), DAY)
        for i, store in enumerate(stores)
    ]
    assert [await s.check() for s in schedulers] == [False, False]  # not due yet
    for day in (1, 2):
        clock.advance(DAY)
        # Even asked directly, worker 1 re-checks under the flock and leaves the set alone.
        assert await schedulers[0].check() is True
        assert await schedulers[1].admin.rotate_if_due(DAY) is None
        assert await schedulers[1].check() is False
        assert stores[1].current().version == 1 + day
    assert stores[1].current().active.kid == kid_of(2)
    supply.check()


async def test_a_scheduled_rotation_waits_for_the_publish_lead(tmp_path: Path) -> None:
    clock = FakeClock()
    store = FileKeyStore(tmp_path, clock=clock, new_key=key_supply([0, 1, 3]))
    store.load_or_create()
    admin = KeyAdmin(store, clock=clock, publish_lead=3600)
    scheduler = RotationScheduler(admin, 7200)
    clock.advance(DAY)  # the interval has long passed ...
    await admin.import_next(key_supply([2])(), "cli")  # ... but the next key is brand new
    assert await scheduler.check() is False
    clock.advance(3599)
    assert await scheduler.check() is False
    clock.advance(1)
    assert await scheduler.check() is True
    assert store.current().active.kid == kid_of(2)
