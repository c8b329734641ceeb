"""GET /metrics (docs/operations.md, "Metrics"): what each request counts, bounded labels,
the scrape-time key and policy gauges, and the table in docs/operations.md."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from hook_service import errors, metrics
from hook_service.hook.base import HookRequest, Identifier
from hook_service.hook.decider import HookDecider
from hook_service.hook.parse import parse_hook_request
from hook_service.policy.engine import Policy, example_policy_path
from hook_service.store.base import LATE_WRITE, PendingStep
from hook_service.store.memory import MemoryStore
from hook_service.store.redis import RedisStore
from tests.conftest import AppFactory
from tests.store.support import RedisServer
from tests.support import (
    API_KEY,
    USER_ID,
    FakeClock,
    active_kid,
    bearer,
    free_port,
    hook_body,
    sign_hook,
    token_sealer,
)

ROOT = Path(__file__).parents[1]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(client: TestClient) -> Samples:
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(answer.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def post_hook(client: TestClient, body: bytes, **headers: str) -> int:
    answer = client.post("/hooks/stepup", content=body, headers=sign_hook(body) | headers)
    status: int = answer.status_code
    return status


def test_hook_requests_count_decisions_with_bounded_labels(client: TestClient) -> None:
    before = scrape(client)
    assert post_hook(client, hook_body(amount="1500")) == 200
    assert post_hook(client, hook_body(amount="abc")) == 200  # double("abc"): on_error
    assert post_hook(client, hook_body(scope="made-up:scope-12345")) == 200
    after = scrape(client)
    name = "stepup_hook_decisions_total"
    labels = {"scope": "transfer:write", "status": "review", "rule": "large-transfer"}
    assert delta(before, after, name, **labels) == 1
    on_error = {"scope": "transfer:write", "status": "block", "rule": "on_error"}
    assert delta(before, after, name, **on_error) == 1
    # A scope the policy does not list is _other: a caller cannot create series.
    assert delta(before, after, name, scope="_other", status="block", rule="default") == 1
    assert not any("made-up" in str(key) for key in after)
    assert delta(before, after, "stepup_hook_on_error_total", reason="policy_error") == 1
    assert delta(before, after, "stepup_hook_hook_duration_seconds_count") == 3
    route = {"route": "/hooks/stepup"}
    assert delta(before, after, "stepup_hook_request_duration_seconds_count", **route) == 3
    assert delta(before, after, "stepup_hook_requests_total", code="200", **route) == 3


def test_signature_failures_count_by_reason(client: TestClient) -> None:
    body = hook_body()
    before = scrape(client)
    forged = sign_hook(body, key="prelude_rsa_other.pem")
    assert client.post("/hooks/stepup", content=body, headers=forged).status_code == 401
    unsigned = {"Content-Type": "application/json"}
    assert client.post("/hooks/stepup", content=body, headers=unsigned).status_code == 401
    after = scrape(client)
    name = "stepup_hook_signature_failures_total"
    assert delta(before, after, name, reason="mismatch") == 1
    assert delta(before, after, name, reason="missing") == 1
    large = {"scope": "transfer:write", "status": "review", "rule": "large-transfer"}
    assert delta(before, after, "stepup_hook_decisions_total", **large) == 0


def test_unknown_kid_refetches_prelude_jwks_and_counts_the_fetch(client: TestClient) -> None:
    body = hook_body()
    before = scrape(client)
    assert post_hook(client, body, **{"X-Webhook-Signature-Key-Id": "nope"}) == 401
    after = scrape(client)
    name = "stepup_hook_prelude_jwks_fetches_total"
    assert delta(before, after, name, trigger="unknown_kid", result="ok") == 1
    name = "stepup_hook_signature_failures_total"
    assert delta(before, after, name, reason="unknown_key") == 1


def test_tokens_count_by_outcome(client: TestClient) -> None:
    before = scrape(client)
    request = {"user_id": USER_ID, "challenge_id": "chl_1", "key": "kyc_review"}

    def ask() -> Any:
        return client.post("/verification-token", headers=bearer(API_KEY), json=request)

    assert ask().status_code == 404  # nothing pending yet
    post_hook(client, hook_body(amount="1500"))
    assert ask().status_code == 200
    assert ask().status_code == 200  # the same challenge's retry: re-sent
    request["challenge_id"] = "chl_2"
    assert ask().status_code == 409
    assert client.post("/verification-token", json=request).status_code == 401
    after = scrape(client)
    name = "stepup_hook_verification_tokens_total"
    for outcome in ("no_pending_step", "issued", "re-sent", "step_already_used", "unauthorized"):
        assert delta(before, after, name, outcome=outcome) == 1, outcome
    # Never a user id, a kid, a token or an address in the exposition.
    text = client.get("/metrics").text
    for private in (USER_ID, active_kid(client), "203.0.113.42", "testclient"):
        assert private not in text


def test_outcomes_and_first_tokens_proofs_are_counted(client: TestClient) -> None:
    before = scrape(client)
    post_hook(client, hook_body(amount="1500"))  # the attempt, then the kyc_review step
    # A step no attempt recorded (as one recorded before the facts existed).
    services = client.app.state.services  # type: ignore[attr-defined]
    step = PendingStep("usr_no_attempt", "kyc_review", "transfer:write", services.clock() + 600)
    client.portal.call(services.store.put_pending, [step])  # type: ignore[union-attr]
    for user_id in (USER_ID, USER_ID, "usr_no_attempt"):  # a first token, its retry, another
        request = {"user_id": user_id, "challenge_id": "chl_1", "key": "kyc_review"}
        answer = client.post("/verification-token", headers=bearer(API_KEY), json=request)
        assert answer.status_code == 200
    reports = [
        ({"user_id": USER_ID, "outcome": "verified"}, 200),  # the attempt the token proved
        ({"user_id": "usr_never_asked", "outcome": "verified"}, 404),  # no_attempt: not counted
        ({"user_id": USER_ID, "outcome": "fraud"}, 200),
    ]
    for report, status in reports:
        body = report | {"scope": "transfer:write"}
        assert client.post("/outcomes", headers=bearer(API_KEY), json=body).status_code == status
    after = scrape(client)
    name = "stepup_hook_token_proofs_total"
    assert delta(before, after, name, result="marked") == 1
    assert delta(before, after, name, result="noted") == 1  # no attempt recorded the step
    assert delta(before, after, name, result="failed") == 0
    name = "stepup_hook_outcomes_reported_total"
    assert delta(before, after, name, outcome="verified") == 1
    assert delta(before, after, name, outcome="fraud") == 1


def test_a_damaged_key_set_shows_in_the_gauges_and_the_refused_tokens(
    client: TestClient, clock: FakeClock, tmp_path: Path
) -> None:
    post_hook(client, hook_body(amount="1500"))
    before = scrape(client)
    assert value(before, "stepup_hook_keystore_stale") == 0
    assert value(before, "stepup_hook_published_keys") == 2
    clock.advance(100)
    assert value(scrape(client), "stepup_hook_active_key_age_seconds") == pytest.approx(100)
    meta = tmp_path / "keys" / "keyset.json"
    original = meta.read_bytes()
    meta.write_bytes(original[:-5])
    request = {"user_id": USER_ID, "challenge_id": "chl_1", "key": "kyc_review"}
    refused = client.post("/verification-token", headers=bearer(API_KEY), json=request)
    assert refused.status_code == 503
    after = scrape(client)
    assert value(after, "stepup_hook_keystore_stale") == 1
    assert delta(before, after, "stepup_hook_keystore_errors_total", reason="stale") == 1
    outcome = {"outcome": "key_store_unavailable"}
    assert delta(before, after, "stepup_hook_verification_tokens_total", **outcome) == 1
    meta.write_bytes(original)


def test_rotation_gauge_counts_down_to_the_scheduled_rotation(
    make_app: AppFactory, clock: FakeClock
) -> None:
    with TestClient(make_app(key_rotation_interval=86_400)) as client:
        assert value(scrape(client), "stepup_hook_next_rotation_seconds") == 86_400
        clock.advance(86_400 + 30)  # the scheduler ticks on real time: not yet rotated here
        assert value(scrape(client), "stepup_hook_next_rotation_seconds") == -30


def test_no_rotation_gauge_without_a_schedule(client: TestClient) -> None:
    assert ("stepup_hook_next_rotation_seconds", frozenset()) not in scrape(client)


def test_policy_revision_is_the_sha256_of_the_file(client: TestClient) -> None:
    revision = hashlib.sha256(example_policy_path().read_bytes()).hexdigest()
    assert value(scrape(client), "stepup_hook_policy_info", revision=revision) == 1


def test_store_failures_are_counted_and_answer_on_error(
    make_app: AppFactory, clock: FakeClock
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with TestClient(make_app(dead)) as client:  # a real client on a port nobody listens on
        before = scrape(client)
        assert post_hook(client, hook_body(amount="1500")) == 200
        assert client.get("/readyz").status_code == 503
        after = scrape(client)
    # transfer:write reads facts: the hook's first store call is the facts observe.
    observe = delta(before, after, "stepup_hook_store_errors_total", operation="facts_observe")
    assert observe == 1
    assert delta(before, after, "stepup_hook_store_errors_total", operation="ping") == 1
    assert delta(before, after, "stepup_hook_on_error_total", reason="store_unavailable") == 1


def test_unmatched_paths_share_one_route_label(client: TestClient) -> None:
    before = scrape(client)
    assert client.get("/scanner/probe-0001").status_code == 404
    assert client.get("/scanner/probe-0002").status_code == 404
    after = scrape(client)
    assert delta(before, after, "stepup_hook_requests_total", route="_other", code="404") == 2
    assert not any("probe" in str(key) for key in after)


# --- the on_error reasons follow the decider's real paths -------------------------------------


@pytest.mark.anyio
async def test_on_error_reasons_of_every_failure(clock: FakeClock) -> None:
    policy = Policy.load(example_policy_path())
    failed = await HookDecider(policy, MemoryStore(clock), clock).decide(
        parse_hook_request(hook_body(amount="abc"))
    )
    assert failed.cause == "policy_error"
    dead = RedisStore(f"redis://127.0.0.1:{free_port()}/0", sealer=token_sealer(), clock=clock)
    try:
        down = await HookDecider(policy, dead, clock).decide(parse_hook_request(hook_body()))
    finally:
        await dead.aclose()
    assert down.cause == "store_unavailable"
    phone = (Identifier("phone_number", "+1"),)
    broken = HookRequest("transfer:write", "", phone, {"platform": "WEB"}, {"amount": "5000"})
    internal = await HookDecider(policy, MemoryStore(clock), clock).decide(broken)
    assert internal.cause == "internal_error"

    def own() -> Samples:
        return parse(generate_latest(metrics.REGISTRY).decode())

    before = own()
    metrics.on_error("something new")  # a cause outside the documented set
    assert delta(before, own(), "stepup_hook_on_error_total", reason="_other") == 1


@pytest.mark.anyio
@pytest.mark.redis
async def test_on_error_reason_of_a_store_past_its_budget(
    redis_server: RedisServer, redis_url: str, clock: FakeClock
) -> None:
    slow = RedisStore(redis_url, sealer=token_sealer(), clock=clock, timeout=5)
    decider = HookDecider(Policy.load(example_policy_path()), slow, clock, record_timeout=0.2)
    try:
        await slow.ping()
        redis_server.pause()
        try:
            decision = await decider.decide(parse_hook_request(hook_body()))
        finally:
            redis_server.resume()
    finally:
        await slow.aclose()
    assert decision.cause == "store_timeout"


@pytest.mark.anyio
@pytest.mark.redis
async def test_a_write_redis_ran_past_its_deadline_is_a_store_timeout(
    redis_server: RedisServer, redis_url: str, clock: FakeClock
) -> None:
    # The client still waits (timeout 5 s) when Redis, resumed, runs the write past the
    # deadline it carries and refuses it: that answer, too, is a store timeout.
    patient = RedisStore(redis_url, sealer=token_sealer(), clock=clock, timeout=5)
    try:
        await patient.ping()
        step = PendingStep(USER_ID, "kyc_review", "transfer:write", clock() + 600)
        redis_server.pause()
        try:
            write = asyncio.create_task(patient.put_pending([step], within=0.2))
            await asyncio.sleep(0.5)
        finally:
            redis_server.resume()
        with pytest.raises(errors.StoreTooLate):
            await write
    finally:
        await patient.aclose()

    class Late(MemoryStore):
        async def put_pending(
            self, steps: Sequence[PendingStep], *, within: float | None = None
        ) -> None:
            raise errors.StoreTooLate(LATE_WRITE)

    policy = Policy.load(example_policy_path())
    decision = await HookDecider(policy, Late(clock), clock).decide(
        parse_hook_request(hook_body(amount="5000"))
    )
    assert (decision.rule, decision.error, decision.cause) == (
        "on_error",
        LATE_WRITE,
        "store_timeout",
    )


# --- the documentation ------------------------------------------------------------------------


def documented() -> dict[str, tuple[str, str]]:
    """name -> (type, labels) from the table in docs/operations.md."""
    text = (ROOT / "docs" / "operations.md").read_text()
    rows = re.findall(r"^\| `(stepup_hook_\w+)` \| (\w+) \| ([^|]*) \|", text, re.M)
    return {name: (kind, labels.strip()) for name, kind, labels in rows}


def test_every_metric_is_documented_with_its_type_and_labels(client: TestClient) -> None:
    families = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        families[family.name] = family
    table = documented()
    exported = set()
    for family in families.values():
        name = family.name + ("_total" if family.type == "counter" else "")
        exported.add(name)
        assert name in table, f"{name} is not in docs/operations.md"
        kind, labels = table[name]
        assert kind == family.type, name
    # ...and every documented one is exported (the rotation gauge needs a schedule).
    assert set(table) - exported == {"stepup_hook_next_rotation_seconds"}
    # Labels: as the table says (a sample of each family shows them once it has counted).
    for name, (_kind, labels) in table.items():
        listed = set(re.findall(r"`(\w+)`", labels))
        found = families.get(name) or families.get(name.removesuffix("_total"))
        if found is None:
            assert name == "stepup_hook_next_rotation_seconds"  # only with a rotation schedule
            continue
        for sample in found.samples:
            assert set(sample.labels) - {"le"} == listed, name
