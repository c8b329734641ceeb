"""The pure parts: the values, CEL, travel speed, limits."""

from __future__ import annotations

import random

import pytest
from cel_expr_python import cel

from hook_service.facts import logic
from hook_service.facts.base import NO_FACTS, Attempt, Facts, Proof
from hook_service.facts.logic import (
    HOUR,
    MIN_TRAVEL_SECONDS,
    History,
    Limits,
    great_circle_km,
    travel_kmh,
)
from tests.facts import references
from tests.facts.support import DUBLIN, LONDON, MOUNTAIN_VIEW

_ENV = cel.NewEnv(variables={"facts": cel.Type.Map(cel.Type.STRING, cel.Type.DYN)})


def evaluate(expression: str, facts: Facts) -> object:
    return _ENV.compile(expression).eval(_ENV.Activation({"facts": facts.to_cel()})).value()


def test_nothing_known_is_false_empty_zero_and_minus_one() -> None:
    assert NO_FACTS.to_cel() == {
        "device_seen": False,
        "device_known": False,
        "ip_seen": False,
        "ip_known": False,
        "country": "",
        "country_known": False,
        "attempts_1h": 0,
        "attempts_24h": 0,
        "distinct_ips_24h": 0,
        "verified_age": -1,
        "step_age": {},
        "flagged": False,
        "travel_kmh": -1.0,
    }


def test_cel_reads_every_field_with_its_type() -> None:
    facts = Facts(
        device_known=True,
        country="GB",
        attempts_1h=11,
        verified_age=120,
        step_age={"kyc_review": 86_400},
        travel_kmh=950.5,
    )
    assert evaluate(
        'facts.device_known && facts.country == "GB" && facts.attempts_1h > 10'
        ' && facts.verified_age < 300 && facts.step_age["kyc_review"] < 30 * 86400'
        ' && facts.travel_kmh > 900.0 && !("other" in facts.step_age) && !facts.flagged',
        facts,
    )
    assert evaluate("facts.travel_kmh < 0.0 && facts.verified_age == -1", NO_FACTS)
    cel_value = facts.to_cel()
    cel_value["step_age"]["x"] = 1
    assert facts.step_age == {"kyc_review": 86_400}  # CEL got a copy


def test_great_circle_distances() -> None:
    assert great_circle_km(LONDON, LONDON) == 0.0
    assert 460 < great_circle_km(LONDON, DUBLIN) < 470
    assert 8600 < great_circle_km(LONDON, MOUNTAIN_VIEW) < 8650


def test_travel_speed_and_its_floors() -> None:
    now = 1_000_000
    assert travel_kmh(None, LONDON, now) == -1.0
    assert travel_kmh((now - HOUR, *LONDON), None, now) == -1.0
    assert 460 < travel_kmh((now - HOUR, *LONDON), DUBLIN, now) < 470
    near = (LONDON[0] + 0.3, LONDON[1])  # ~33 km: the same place for city-level data
    assert travel_kmh((now - 1, *LONDON), near, now) == 0.0
    tiny = travel_kmh((now - 1, *LONDON), DUBLIN, now)  # 1 s counts as MIN_TRAVEL_SECONDS
    assert tiny == travel_kmh((now - MIN_TRAVEL_SECONDS, *LONDON), DUBLIN, now)
    assert travel_kmh((now + 50, *LONDON), DUBLIN, now) == tiny  # clock skew


def test_values_refuse_what_the_stores_could_not_keep() -> None:
    good = {"id": "A" * 16, "at": 1.0, "scope": "transfer:write"}
    Attempt(**good)  # type: ignore[arg-type]
    for bad in (
        {"scope": "a|b"},
        {"id": "short"},
        {"device": "81.2.69.142"},
        {"country": "gb"},
        {"status": "maybe"},
        {"steps": ("a,b",)},
        {"at": float("nan")},
        {"location": (91.0, 0.0)},
    ):
        with pytest.raises(ValueError):
            Attempt(**{**good, **bad})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Proof("transfer:write", step="kyc|review")


def test_limits_refuse_nonsense() -> None:
    for bad in ({"retention": HOUR}, {"flag_ttl": 0}, {"ips": 0}):
        with pytest.raises(ValueError):
            Limits(**bad)


def test_prune_reports_what_it_removed() -> None:
    history = History(seen_devices={"a" * 22: 10, "b" * 22: 20, "c" * 22: 30}, flagged_until=5)
    pruned = logic.prune(history, 100, Limits(devices=2))
    assert sorted(pruned.entries) == [("flagged_until", "", 5), ("seen_devices", "a" * 22, 10)]
    assert history.seen_devices == {"b" * 22: 20, "c" * 22: 30} and history.flagged_until == 0


def test_facts_and_prune_give_what_their_references_give() -> None:
    # logic.facts and logic.prune with live() inlined and prune's fast path: on random
    # histories around every boundary, the same facts, the same entries removed (in the same
    # order) and the same history left as the functions they replaced (tests/facts/references).
    rng = random.Random(11)
    for _ in range(3000):
        limits = rng.choice(references.LIMITS)
        history = references.history(rng, limits)
        attempt = references.attempt(rng, limits)
        now = references.NOW + rng.choice([0.0, 0.5, 0.999])
        expected, got = logic.copy(history), logic.copy(history)
        assert logic.facts(got, attempt, now, limits) == references.facts(
            expected, attempt, now, limits
        )
        assert logic.prune(got, now, limits) == references.prune(expected, now, limits)
        assert got == expected
        assert logic.prune(got, now, limits) == logic.Pruned()  # nothing left to prune


def test_settled_gives_what_dataclasses_replace_gives() -> None:
    rng = random.Random(12)
    for _ in range(500):
        attempt = references.attempt(rng, Limits())
        status = rng.choice(["", "continue", "review", "block"])
        steps = rng.choice([(), ("kyc_review",), ("z", "kyc_review")])
        expires_at = rng.choice([0.0, attempt.at + 600, 1e12])
        got = attempt.settled(status, steps, expires_at)
        assert type(got) is Attempt
        assert got == references.settled(attempt, status, steps, expires_at)
        assert repr(got) == repr(references.settled(attempt, status, steps, expires_at))
    attempt = references.attempt(rng, Limits())
    for status, steps, expires_at in (
        ("maybe", (), 0.0),
        ("review", ("kyc|review",), 0.0),
        ("review", ("",), 0.0),
        ("review", (), float("inf")),
        ("review", (), float("nan")),
        ("maybe", ("kyc|review",), float("nan")),  # the first check's message wins
        ("review", ("kyc|review",), float("nan")),
    ):
        with pytest.raises(ValueError) as reference:
            references.settled(attempt, status, steps, expires_at)
        with pytest.raises(ValueError) as refused:
            attempt.settled(status, steps, expires_at)
        assert str(refused.value) == str(reference.value)
    with pytest.raises(AttributeError):  # still frozen
        attempt.settled("review").status = "block"  # type: ignore[misc]
