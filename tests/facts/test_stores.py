"""FactsStore semantics (issue 11 points 1, 2, 4), run against the memory store and a real
Redis; what only the Redis store does is in ``test_redis.py``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hook_service.facts.base import CONTINUE, Attempt, Facts, FactsStore, Proof
from hook_service.facts.geo import Geo
from hook_service.facts.logic import DAY, HOUR, Limits
from tests.facts.support import (
    CHROME_130_WIN,
    CHROME_131_MAC,
    CHROME_131_WIN,
    FIREFOX_WIN,
    KINDS,
    LONDON_IP,
    MOUNTAIN_VIEW_IP,
    OTHER_IP,
    SCOPE,
    Requests,
    open_store,
    write_city_db,
)
from tests.support import FakeClock

pytestmark = pytest.mark.anyio

USER = "usr_1"
SMALL = Limits(devices=3, ips=3, countries=2, steps=2, attempts=5, scopes=2)


@pytest.fixture(params=KINDS)
async def small(request: pytest.FixtureRequest) -> AsyncIterator[FactsStore]:
    """A store with tiny caps (:data:`SMALL`)."""
    instance = open_store(request.param, request, SMALL)
    try:
        yield instance
    finally:
        await instance.aclose()


@pytest.fixture
def req(clock: FakeClock) -> Requests:
    return Requests(clock)


async def verified(
    store: FactsStore, req: Requests, attempt: Attempt, steps: tuple[str, ...] = ()
) -> Facts:
    """The hook's path for a review that the user then passed (POST /outcomes verified)."""
    facts = await store.observe(USER, attempt, req.clock())
    await store.settle(USER, req.review(attempt, steps), req.clock())
    assert await store.prove(USER, Proof(attempt.scope), req.clock()) is True
    return facts


# --- counters -------------------------------------------------------------------------------


async def test_counters_exclude_the_current_attempt(store: FactsStore, req: Requests) -> None:
    seen = [(await store.observe(USER, req.attempt(), req.clock())).attempts_1h for _ in range(4)]
    assert seen == [0, 1, 2, 3]
    other = await store.observe("usr_2", req.attempt(), req.clock())
    assert (other.attempts_1h, other.attempts_24h) == (0, 0)  # per user


async def test_concurrent_attempts_each_count_the_others(store: FactsStore, req: Requests) -> None:
    attempts = [req.attempt() for _ in range(8)]
    results = await asyncio.gather(*(store.observe(USER, a, req.clock()) for a in attempts))
    assert sorted(f.attempts_1h for f in results) == list(range(8))


async def test_hour_and_day_windows_follow_the_clock(
    store: FactsStore, req: Requests, clock: FakeClock
) -> None:
    for _ in range(3):
        await store.observe(USER, req.attempt(), clock())
    clock.advance(HOUR - 1)
    facts = await store.observe(USER, req.attempt(), clock())
    assert (facts.attempts_1h, facts.attempts_24h) == (3, 3)
    clock.advance(2)  # the first three are now older than an hour
    facts = await store.observe(USER, req.attempt(), clock())
    assert (facts.attempts_1h, facts.attempts_24h) == (1, 4)
    clock.advance(DAY)
    facts = await store.observe(USER, req.attempt(), clock())
    assert (facts.attempts_1h, facts.attempts_24h) == (0, 0)


async def test_distinct_ips_of_the_last_day(
    store: FactsStore, req: Requests, clock: FakeClock
) -> None:
    for ip in (LONDON_IP, OTHER_IP, LONDON_IP, None, "::ffff:81.2.69.142"):
        facts = await store.observe(USER, req.attempt(ip), clock())
    assert facts.distinct_ips_24h == 2  # the mapped address is LONDON_IP; None is no IP
    clock.advance(DAY + 1)
    assert (await store.observe(USER, req.attempt(), clock())).distinct_ips_24h == 0


# --- seen and known ------------------------------------------------------------------------


async def test_a_request_alone_never_makes_anything_known(
    store: FactsStore, req: Requests, clock: FakeClock
) -> None:
    first = await store.observe(USER, req.attempt(), clock())
    assert first == Facts(country="GB")  # nothing known about a new user but the country
    for status in ("", CONTINUE, "block"):
        attempt = req.attempt()
        await store.observe(USER, attempt, clock())
        await store.settle(USER, attempt.settled(status, (), clock() + 600), clock())
        assert await store.prove(USER, Proof(SCOPE), clock()) is False
    facts = await store.observe(USER, req.attempt(), clock())
    assert facts.device_seen and facts.ip_seen
    assert not (facts.device_known or facts.ip_known or facts.country_known)
    assert facts.verified_age == -1


async def test_a_proof_makes_device_ip_and_country_known(
    store: FactsStore, req: Requests, clock: FakeClock
) -> None:
    await verified(store, req, req.attempt())
    clock.advance(120)
    facts = await store.observe(USER, req.attempt(ua=CHROME_131_WIN), clock())  # browser update
    assert facts.device_known and facts.ip_known and facts.country_known
    assert facts.verified_age == 120
    elsewhere = await store.observe(USER, req.attempt(OTHER_IP, CHROME_131_MAC), clock())
    assert (elsewhere.device_seen, elsewhere.device_known) == (False, False)
    assert (elsewhere.ip_known, elsewhere.country, elsewhere.country_known) == (False, "AU", False)


async def test_a_request_without_ip_or_user_agent_knows_nothing_of_them(
    store: FactsStore, req: Requests, clock: FakeClock
) -> None:
    await verified(store, req, req.attempt())
    facts = await store.observe(USER, req.attempt(ip=None, ua=None), clock())
    assert facts.country == "" and not facts.country_known
    assert not (facts.device_seen or facts.device_known or facts.ip_seen or facts.ip_known)
    assert facts.verified_age == 0


async def test_only_the_latest_unexpired_review_of_the_scope_is_proved(
    store: FactsStore, req: Requests, clock: FakeClock
) -> None:
    assert await store.prove(USER, Proof(SCOPE), clock()) is False  # no attempt at all
    mine = req.attempt()
    await store.observe(USER, mine, clock())
    await store.settle(USER, req.review(mine, window=60), clock())
    stranger = req.attempt(OTHER_IP, FIREFOX_WIN)  # supersedes mine, still undecided
    await store.observe(USER, stranger, clock())
    await store.settle(USER, req.review(mine), clock())  # too late: no longer the latest
    assert await store.prove(USER, Proof(SCOPE), clock()) is False
    await store.settle(USER, req.review(stranger, window=60), clock())
    clock.advance(60)
    assert await store.prove(USER, Proof(SCOPE), clock()) is False  # expired
    facts = await store.observe(USER, req.attempt(), clock())
    assert not (facts.device_known or facts.ip_known)


async def test_a_token_proves_only_an_attempt_that_recorded_its_step(
    store: FactsStore, req: Requests, clock: FakeClock
) -> None:
    otp_only = req.attempt()
    await store.observe(USER, otp_only, clock())
    await store.settle(USER, req.review(otp_only), clock())
    assert await store.prove(USER, Proof(SCOPE, "kyc_review"), clock()) is False
    clock.advance(10)
    facts = await store.observe(USER, req.attempt(), clock())
    assert facts.step_age == {"kyc_review": 10}  # a token was issued all the same
    assert not facts.device_known
    kyc = req.attempt()
    await store.observe(USER, kyc, clock())
    await store.settle(USER, req.review(kyc, ("kyc_review",)), clock())
    assert await store.prove(USER, Proof(SCOPE, "kyc_review"), clock()) is True
    clock.advance(5)
    facts = await store.observe(USER, req.attempt(), clock())
    assert facts.device_known and facts.step_age == {"kyc_review": 5}


async def test_a_retried_outcome_does_not_refresh_the_verification(
    store: FactsStore, req: Requests, clock: FakeClock
) -> None:
    await verified(store, req, req.attempt())
    clock.advance(100)
    assert await store.prove(USER, Proof(SCOPE), clock()) is True
    assert (await store.observe(USER, req.attempt(), clock())).verified_age == 100


# --- fraud, flag, retention, caps ------------------------------------------------------------


async def test_fraud_flags_and_forgets_what_proofs_taught(
    store: FactsStore, req: Requests, clock: FakeClock
) -> None:
    await verified(store, req, req.attempt(), ("kyc_review",))
    await store.prove(USER, Proof(SCOPE, "kyc_review"), clock())
    pending = req.attempt()
    await store.observe(USER, pending, clock())
    await store.settle(USER, req.review(pending), clock())
    await store.report_fraud(USER, clock())
    assert await store.prove(USER, Proof(SCOPE), clock()) is False  # pre-fraud attempt
    facts = await store.observe(USER, req.attempt(), clock())
    assert facts.flagged
    assert not (facts.device_known or facts.ip_known or facts.country_known)
    assert (facts.verified_age, facts.step_age, facts.travel_kmh) == (-1, {}, -1.0)
    assert facts.device_seen and facts.ip_seen and facts.attempts_1h == 2  # counters stay


async def test_the_flag_expires_after_its_ttl(
    store: FactsStore, req: Requests, clock: FakeClock
) -> None:
    await store.report_fraud(USER, clock())
    clock.advance(7 * DAY - 1)
    assert (await store.observe(USER, req.attempt(), clock())).flagged
    clock.advance(1)
    assert not (await store.observe(USER, req.attempt(), clock())).flagged
    assert (await store.show(USER, clock()))["flagged"] is False


async def test_retention_drops_old_history(
    store: FactsStore, req: Requests, clock: FakeClock
) -> None:
    await verified(store, req, req.attempt(), ("kyc_review",))
    await store.prove(USER, Proof(SCOPE, "kyc_review"), clock())
    clock.advance(30 * DAY - 1)
    held = await store.show(USER, clock())
    assert [row["known_age"] for row in held["devices"]] == [30 * DAY - 1]
    assert held["step_age"] == {"kyc_review": 30 * DAY - 1} and held["countries"]
    await store.observe(USER, req.attempt(OTHER_IP, FIREFOX_WIN), clock())
    clock.advance(1)
    facts = await store.observe(USER, req.attempt(), clock())
    assert facts == Facts(country="GB", attempts_1h=1, attempts_24h=1, distinct_ips_24h=1)
    held = await store.show(USER, clock())
    # Seen again now and Firefox 1 s ago; the proof of 30 days ago is gone.
    assert [(row["seen_age"], row["known_age"]) for row in held["devices"]] == [
        (0, None),
        (1, None),
    ]
    assert held["countries"] == {} and held["step_age"] == {} and held["verified_age"] == -1


async def test_caps_keep_the_most_recent_entries(
    small: FactsStore, req: Requests, clock: FakeClock
) -> None:
    uas = [CHROME_130_WIN, FIREFOX_WIN, CHROME_131_MAC, "agent-4", "agent-5"]
    ips = ["81.2.69.1", "81.2.69.2", "81.2.69.3", "81.2.69.4", "81.2.69.5"]
    for ua, ip in zip(uas, ips, strict=True):
        await small.observe(USER, req.attempt(ip, ua), clock())
        clock.advance(1)
    held = await small.show(USER, clock())
    assert len(held["devices"]) == 3 and len(held["ips"]) == 3
    assert held["attempts"]["last_1h"] == 5
    assert not (await small.observe(USER, req.attempt(ips[0], uas[0]), clock())).device_seen
    facts = await small.observe(USER, req.attempt(ips[4], uas[4]), clock())
    assert facts.device_seen and facts.ip_seen
    assert facts.attempts_1h == 5  # capped at SMALL.attempts


async def test_latest_attempts_are_capped_by_scope(
    small: FactsStore, req: Requests, clock: FakeClock
) -> None:
    for scope in ("a:write", "b:write", "c:write"):
        attempt = req.attempt(scope=scope)
        await small.observe(USER, attempt, clock())
        await small.settle(USER, req.review(attempt), clock())
    assert await small.prove(USER, Proof("a:write"), clock()) is False  # dropped, oldest
    assert await small.prove(USER, Proof("c:write"), clock()) is True


# --- show and erase ----------------------------------------------------------------------------


async def test_show_answers_hashes_counts_and_ages(
    store: FactsStore, req: Requests, clock: FakeClock
) -> None:
    attempt = req.attempt()
    await verified(store, req, attempt, ("kyc_review",))
    clock.advance(30)
    held = await store.show(USER, clock())
    assert held["devices"] == [{"hash": attempt.device, "seen_age": 30, "known_age": 30}]
    assert held["ips"] == [{"hash": attempt.ip, "seen_age": 30, "known_age": 30}]
    assert held["countries"] == {"GB": 30}
    assert held["attempts"] == {"last_1h": 1, "last_24h": 1}
    [open_attempt] = held["open_attempts"]
    assert open_attempt["proven"] is True and open_attempt["expires_in"] == 570
    assert (held["verified_age"], held["location_age"], held["flagged"]) == (30, -1, False)
    assert LONDON_IP not in repr(held) and "Chrome" not in repr(held)


async def test_erase_answers_what_it_erased_and_leaves_nothing(
    store: FactsStore, req: Requests, clock: FakeClock
) -> None:
    await verified(store, req, req.attempt(), ("kyc_review",))
    await store.prove(USER, Proof(SCOPE, "kyc_review"), clock())
    await store.observe(USER, req.attempt(OTHER_IP, FIREFOX_WIN), clock())
    await store.observe("usr_2", req.attempt(), clock())
    await store.report_fraud(USER, clock())
    erased = await store.erase(USER, clock())
    assert erased == {
        "devices": 2,
        "ips": 2,
        "countries": 0,  # fraud forgot them
        "attempts": 2,
        "open_attempts": 0,
        "steps": 0,
        "verified": 0,
        "flag": 1,
    }
    assert await store.erase(USER, clock()) == dict.fromkeys(erased, 0)
    assert await store.observe(USER, req.attempt(), clock()) == Facts(country="GB")
    assert (await store.observe("usr_2", req.attempt(), clock())).device_seen


async def test_travel_needs_a_city_database_and_a_verified_location(
    store: FactsStore, clock: FakeClock, tmp_path: Path
) -> None:
    geo = Geo(write_city_db(tmp_path / "cities.mmdb"))
    cities, plain = Requests(clock, geo), Requests(clock)
    try:
        assert (await store.observe(USER, cities.attempt(), clock())).travel_kmh == -1.0
        await verified(store, cities, cities.attempt(LONDON_IP))
        clock.advance(HOUR)
        far = await store.observe(USER, cities.attempt(MOUNTAIN_VIEW_IP), clock())
        assert far.country == "US" and 8500 < far.travel_kmh < 8700  # London -> Mountain View
        no_db = await store.observe(USER, plain.attempt(MOUNTAIN_VIEW_IP), clock())
        assert no_db.travel_kmh == -1.0
        unlocated = await store.observe(USER, cities.attempt(OTHER_IP), clock())
        assert (unlocated.country, unlocated.travel_kmh) == ("AU", -1.0)
        assert (await store.observe(USER, cities.attempt(LONDON_IP), clock())).travel_kmh == 0.0
        assert (await store.show(USER, clock()))["location_age"] == HOUR
    finally:
        geo.close()
