"""Audit events derived from two key sets (pure)."""

from __future__ import annotations

import logging

import pytest

from hook_service.keys import lifecycle as keys
from hook_service.keys.events import KeyEvent, diff, log_events, restored, rewrapped
from tests.support import key_supply, kid_of

TTL = 300


def kinds(events: list[KeyEvent]) -> list[tuple[str, str]]:
    return [(e.event, e.kid) for e in events]


def test_first_key_set_is_created_and_activated() -> None:
    ks = keys.initial_key_set(100, key_supply([0, 1]))
    events = diff(None, ks, now=100, actor="startup", replica="r1")
    assert sorted(kinds(events)) == sorted(
        [("created", kid_of(0)), ("created", kid_of(1)), ("activated", kid_of(0))]
    )
    assert {(e.time, e.actor, e.replica, e.version, e.id) for e in events} == {
        (100, "startup", "r1", 1, None)
    }


def test_rotation_creates_activates_retires_and_expires() -> None:
    supply = key_supply([0, 1, 2, 3])
    ks = keys.initial_key_set(0, supply)
    once = keys.rotate(ks, 1000, TTL, supply)
    assert kinds(diff(ks, once, now=1000, actor="a", replica="r")) == [
        ("created", kid_of(2)),
        ("activated", kid_of(1)),
        ("retired", kid_of(0)),
    ]
    later = 1000 + TTL + 660 + 5000  # key 0 is past retire_at and drops out
    twice = keys.rotate(once, later, TTL, supply)
    assert kinds(diff(once, twice, now=later, actor="a", replica="r")) == [
        ("created", kid_of(3)),
        ("activated", kid_of(2)),
        ("retired", kid_of(1)),
        ("expired", kid_of(0)),
    ]


def test_revocation_is_named() -> None:
    supply = key_supply([0, 1, 2])
    ks = keys.initial_key_set(0, supply)
    revoked = keys.revoke(ks, kid_of(0), 10, supply)
    assert kinds(
        diff(ks, revoked, now=10, actor="admin token #2", replica="r", revoked=kid_of(0))
    ) == [
        ("created", kid_of(2)),
        ("activated", kid_of(1)),
        ("revoked", kid_of(0)),
    ]


def test_rewrapped_names_every_key_and_fields_round_trip() -> None:
    ks = keys.initial_key_set(0, key_supply([0, 1]))
    events = rewrapped(ks, now=5, actor="cli", replica="r")
    assert kinds(events) == [("rewrapped", kid_of(0)), ("rewrapped", kid_of(1))]
    fields = events[0].fields()
    assert all(isinstance(v, str) for v in fields.values()) and "id" not in fields
    back = KeyEvent.from_fields("1-0", fields)
    assert back.to_json() == {**events[0].to_json(), "id": "1-0"}
    with pytest.raises(ValueError):
        KeyEvent.from_fields("1-0", {**fields, "event": "stolen"})


def test_restored_names_every_key_at_its_version_and_reads_back() -> None:
    ks = keys.initial_key_set(0, key_supply([0, 1]))
    events = restored(ks, now=7, actor="restore", replica="r2")
    assert kinds(events) == [("restored", kid_of(0)), ("restored", kid_of(1))]
    assert {(e.version, e.actor, e.replica, e.time) for e in events} == {(1, "restore", "r2", 7)}
    back = KeyEvent.from_fields("2-0", events[1].fields())  # a stream entry the API pages
    assert back.to_json() == {**events[1].to_json(), "id": "2-0"}


def test_log_lines_name_kid_actor_and_replica(caplog: pytest.LogCaptureFixture) -> None:
    ks = keys.initial_key_set(0, key_supply([0, 1]))
    with caplog.at_level(logging.INFO, logger="hook_service.keys"):
        log_events(
            diff(
                ks,
                keys.revoke(ks, kid_of(1), 3, key_supply([2])),
                now=3,
                actor="admin token #1",
                replica="pod-a",
                revoked=kid_of(1),
            )
        )
    revoked = [r for r in caplog.records if "revoked" in r.getMessage()]
    assert len(revoked) == 1 and revoked[0].levelno == logging.WARNING
    assert f"kid={kid_of(1)}" in revoked[0].getMessage()
    assert "actor=admin token #1 replica=pod-a" in revoked[0].getMessage()
