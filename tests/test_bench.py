"""bench/: the pure parts the benchmark relies on, so it does not rot (no timing here).

The generated policies load and only their last rule matches; the request-pool format
round-trips; pooled hook calls and token requests pass the real service's checks."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from starlette.testclient import TestClient

from bench import bare_app, cluster, prepare
from bench.cpu import CpuWindow, machine_busy_seconds, where_ratios_come_from
from bench.facts import bytes_per_user
from bench.floors import FLOOR_SIGNED, FLOOR_SIGNING, FLOOR_SIGNING_ED25519
from bench.load import LUA, READY, WrkResult, _wrk
from bench.pending import record_pending
from bench.prepare import TokenForm
from bench.report import Figure, markdown_table, replace_block, text_table
from bench.rounds import ROUNDS, Case, interleaved
from bench.run import BENCH_DOC, _parse
from bench.servers import sentinel_conf, sentinel_env
from bench.topologies import sentinel_target
from hook_service._redis_target import RedisTarget
from hook_service.facts.hashing import FactsKey
from hook_service.facts.redis import RedisFactsStore
from hook_service.hook.parse import parse_hook_request
from hook_service.policy.engine import Policy
from hook_service.settings import Settings
from hook_service.simulator.prelude import PreludeKeys
from tests.conftest import AppFactory
from tests.support import (
    API_KEY,
    FakeClock,
    cluster_masters,
    ed25519_private_key,
    rsa_private_key,
    verify_like_prelude,
)

# Test keys stand in for the keys a bench run generates (keys are never generated in tests).
KEYS = PreludeKeys(rsa_private_key("prelude_rsa.pem"), ed25519_private_key("prelude_ed25519.pem"))
FACTS_KEY_B64 = base64.b64encode(bytes(range(64, 96))).decode()  # test-only HOOK_FACTS_KEY


@pytest.mark.parametrize("count", [1, 10, 100])
def test_generated_policy_loads_and_only_its_last_rule_matches(count: int) -> None:
    policy = Policy.from_mapping(prepare.policy_with_rules(count))
    for amount in ("50", "5000"):
        decision = policy.decide(parse_hook_request(prepare.hook_body(3, amount=amount)))
        assert (decision.rule, decision.status) == ("last", "review")
        assert [step.key for step in decision.steps] == ["verify_sms"]


def test_a_policy_needs_a_rule() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        prepare.policy_with_rules(0)


def test_pool_file_round_trips(tmp_path: Path) -> None:
    requests = [
        prepare.PoolRequest("GET", "/", ""),
        *prepare.hook_pool(KEYS, 3, amount="50"),
        prepare.token_request(KEYS, 7, api_key="k" * 20, now=1_999_999_000),
    ]
    path = tmp_path / "x.pool"
    assert prepare.write_pool(path, requests) == 5
    assert prepare.read_pool(path) == requests
    assert len(path.read_text().splitlines()) == 5


def test_pool_refuses_fields_that_would_break_lines() -> None:
    with pytest.raises(ValueError, match="tabs or newlines"):
        prepare.PoolRequest("POST", "/", "a\tb").line()
    with pytest.raises(ValueError, match="header name/value pairs"):
        prepare.PoolRequest.from_line("GET\t/\t\tX-Only-A-Name")


def test_hook_users_are_distinct_and_prelude_shaped() -> None:
    users = {json.loads(prepare.hook_body(i, amount="1"))["user_id"] for i in range(50)}
    assert len(users) == 50
    assert all(u.startswith("usr_") and len(u) == 31 for u in users)
    token_users = {prepare.token_subject(i)[0] for i in range(50)}
    assert not users & token_users


def _app_with_bench_keys(
    make_app: AppFactory, tmp_path: Path, redis_url: str | None = None
) -> TestClient:
    jwks = tmp_path / "bench_jwks.json"
    jwks.write_text(json.dumps(KEYS.jwks()))
    return TestClient(make_app(redis_url, prelude_jwks_file=jwks))


def test_pooled_hook_calls_pass_the_signature_check(make_app: AppFactory, tmp_path: Path) -> None:
    path = tmp_path / "hook.pool"
    prepare.write_pool(path, prepare.hook_pool(KEYS, 2, amount="50"))
    with _app_with_bench_keys(make_app, tmp_path) as client:
        for request in prepare.read_pool(path):
            response = client.post(
                request.path, content=request.body.encode(), headers=dict(request.headers)
            )
            assert response.status_code == 200
            assert response.headers["x-hook-rule"] == "otp-only"
            assert response.json()["steps"][0]["key"] == "verify_sms"
        tampered = prepare.read_pool(path)[0]
        response = client.post(
            tampered.path,
            content=tampered.body.replace("50", "51").encode(),
            headers=dict(tampered.headers),
        )
        assert response.status_code == 401


@pytest.mark.redis
@pytest.mark.parametrize("form", ["fields", "challenge_token"])
def test_pooled_token_request_mints_for_a_step_recorded_like_the_bench(
    make_app: AppFactory, tmp_path: Path, redis_url: str, clock: FakeClock, form: TokenForm
) -> None:
    user, challenge_id = prepare.token_subject(5)
    asyncio.run(record_pending(redis_url, [user]))
    request = prepare.token_request(KEYS, 5, api_key=API_KEY, now=clock.now, form=form)
    assert ("challenge_token" in json.loads(request.body)) == (form == "challenge_token")
    with _app_with_bench_keys(make_app, tmp_path, redis_url) as client:
        response = client.post(
            request.path, content=request.body.encode(), headers=dict(request.headers)
        )
        assert response.status_code == 200, response.text
        jwks = client.get("/.well-known/jwks.json").json()
        claims = verify_like_prelude(response.json()["verification_token"], jwks, clock.now)
        assert (claims["sub"], claims["challenge_id"], claims["key"]) == (
            user,
            challenge_id,
            "kyc_review",
        )
        again = client.post(
            request.path, content=request.body.encode(), headers=dict(request.headers)
        )
        assert again.json()["jti"] == response.json()["jti"]  # a retry: why pools are distinct


def test_figures_pass_fail_and_tables() -> None:
    figures = [
        Figure.ratio("hook", 6000, 10000, 0.5),
        Figure.ratio("jwks", 8000, 10000, 0.9),
        Figure.limit("p99", 10.0, "ms", 10),
        Figure.limit("bytes", 300.0, "B", 300, inclusive=True),
        Figure.ratio("info", 1, 2, None),
    ]
    assert [f.passed for f in figures] == [True, False, False, True, True]
    assert figures[1].to_json()["ratio"] == 0.8
    text = text_table(figures)
    assert "FAIL" in text.splitlines()[3] and "pass" in text.splitlines()[2]
    meta = {"date": "d", "nproc": 2, "machine": "m", "python": "3", "duration_s": 2.0}
    md = markdown_table(figures, {**meta, "connections": 8})
    assert "2 cores" in md and md.count("\n| ") == 6


def test_readme_block_is_replaced_and_nothing_else() -> None:
    readme = "intro\n<!-- bench:begin (cmd) -->\nold | table\n<!-- bench:end -->\nrest\n"
    new = replace_block(readme, "| new |")
    assert new == "intro\n<!-- bench:begin (cmd) -->\n| new |\n<!-- bench:end -->\nrest\n"
    assert replace_block(new, "| new |") == new
    with pytest.raises(ValueError, match="bench:begin"):
        replace_block("no markers", "x")


def test_update_docs_defaults_to_docs_benchmarks_md_and_keeps_the_old_name(
    tmp_path: Path,
) -> None:
    assert Path(__file__).parents[1] / "docs" / "benchmarks.md" == BENCH_DOC
    assert _parse([]).update_docs is None
    assert _parse(["--update-docs"]).update_docs == BENCH_DOC
    assert _parse(["--update-readme"]).update_docs == BENCH_DOC
    other = tmp_path / "figures.md"
    other.write_text("<!-- bench:begin -->\n<!-- bench:end -->\n")
    assert _parse([f"--update-readme={other}"]).update_docs == other
    assert _parse(["--update-docs", str(other)]).update_docs == other


def test_the_figures_live_in_docs_benchmarks_md_not_the_readme() -> None:
    replace_block(BENCH_DOC.read_text(), "x")  # has the block
    readme = BENCH_DOC.parents[1] / "README.md"
    with pytest.raises(ValueError, match="bench:begin"):
        replace_block(readme.read_text(), "x")


def test_update_docs_refuses_a_file_without_the_block_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A wrong file must not cost a whole run (the update happens at its end).
    readme = tmp_path / "README.md"
    readme.write_text("# no figures here\n")
    for argv in (["--update-readme", str(readme)], ["--update-docs", str(tmp_path / "nope.md")]):
        with pytest.raises(SystemExit) as exited:
            _parse(argv)
        assert exited.value.code == 2
        assert "--update-docs" in capsys.readouterr().err


# --- the floors (issue 15 point 1) ------------------------------------------------------------


def test_the_signed_floor_verifies_the_pooled_hook_calls_and_refuses_a_tampered_one(
    tmp_path: Path,
) -> None:
    jwks = tmp_path / "bench_jwks.json"
    jwks.write_text(json.dumps(KEYS.jwks()))
    hook = list(prepare.hook_pool(KEYS, 2, amount="50"))
    signed = list(prepare.at_path(hook, FLOOR_SIGNED))
    assert [(r.body, r.headers) for r in signed] == [(r.body, r.headers) for r in hook]
    with TestClient(bare_app.build(jwks)) as client:
        for request in signed:
            response = client.post(
                request.path, content=request.body.encode(), headers=dict(request.headers)
            )
            assert response.json() == {"status": "ok"}
        tampered = client.post(
            FLOOR_SIGNED,
            content=signed[0].body.replace("50", "51").encode(),
            headers=dict(signed[0].headers),
        )
        assert tampered.status_code == 401
        unknown_kid = {**dict(signed[0].headers), "X-Webhook-Signature-Key-Id": "other"}
        response = client.post(FLOOR_SIGNED, content=signed[0].body.encode(), headers=unknown_kid)
        assert response.status_code == 401


@pytest.mark.parametrize("path", [FLOOR_SIGNING, FLOOR_SIGNING_ED25519])
def test_the_signing_floors_answer_an_rs256_signature_over_300_bytes(path: str) -> None:
    app = bare_app.build(None)
    with TestClient(app) as client:
        token = client.post(path, content=b'{"user_id":"u"}').json()["verification_token"]
    signing_input, _, signature = token.rpartition(".")
    assert len(signing_input) == bare_app.SIGNING_PAYLOAD_BYTES
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    public = app.state.floors.signer.public_key()
    public.verify(raw, signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    app.state.floors.verify_challenge()  # the fixed Ed25519 signature verifies


def test_the_cluster_option_adds_the_cluster_figures_beside_one_redis() -> None:
    assert _parse(["--cluster"]).cluster is True and _parse([]).cluster is False
    single = cluster.Rates(hook=1000, hook_kyc=800, tokens=400, hook_p99_ms=4)
    on_cluster = cluster.Rates(hook=900, hook_kyc=600, tokens=380, hook_p99_ms=12)
    figures = cluster.figures(single, on_cluster, connections=8)
    assert [round(f.ratio_value or 0, 3) for f in figures[:3]] == [0.9, 0.75, 0.95]
    assert all(f.goal is None for f in figures[:3])  # reported beside one Redis, no floor yet
    latency = figures[3]
    assert (latency.value, latency.goal, latency.passed) == (12, 10, False)
    assert "cluster" in text_table(figures)


def test_the_cluster_processes_are_three_masters_on_their_own_ports(tmp_path: Path) -> None:
    argv = cluster.node_argv("redis-server", 7001, 17999, tmp_path)
    options = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert options["--cluster-enabled"] == "yes" and options["--cluster-port"] == "17999"
    assert (options["--port"], options["--bind"], options["--dir"]) == (
        "7001",
        "127.0.0.1",
        str(tmp_path),
    )
    assert options["--save"] == "" and options["--appendonly"] == "no"
    create = cluster.create_argv("redis-cli", [7001, 7002, 7003])
    assert create[3:6] == ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"]
    assert create[-3:] == ["--cluster-replicas", "0", "--cluster-yes"]
    with pytest.raises(ValueError, match="at least 3 masters"):
        cluster.create_argv("redis-cli", [7001, 7002])
    env = cluster.cluster_env({"HOOK_API_KEYS": "k"}, [7001, 7002, 7003])
    assert env == {
        "HOOK_API_KEYS": "k",
        "HOOK_REDIS_URL": "redis://127.0.0.1:7001/0",
        "HOOK_REDIS_CLUSTER": "true",
    }


@pytest.mark.redis
@pytest.mark.slow
def test_steps_recorded_like_the_bench_on_the_cluster_are_one_per_user(cluster_url: str) -> None:
    users = [prepare.token_subject(i)[0] for i in range(120)]  # over the concurrent writes
    asyncio.run(record_pending(RedisTarget(url=cluster_url, cluster=True), users))
    masters = cluster_masters(cluster_url)
    sizes = [master.dbsize() for master in masters]
    for master in masters:
        master.close()
    assert sum(sizes) == len(users) and all(sizes)  # spread over the three masters


# --- facts figures (issue 11 point 6) -------------------------------------------------------


@pytest.mark.parametrize("reads_facts", [True, False])
def test_facts_policies_read_facts_or_not_and_their_last_rule_decides(
    reads_facts: bool, make_app: AppFactory, tmp_path: Path
) -> None:
    data = prepare.facts_policy(reads_facts)
    policy = Policy.from_mapping(data)
    assert policy.reads_facts("transfer:write") is reads_facts
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(json.dumps(data))
    jwks = tmp_path / "bench_jwks.json"
    jwks.write_text(json.dumps(KEYS.jwks()))
    app = make_app(prelude_jwks_file=jwks, policy_file=policy_file, replay_window=0)
    requests = list(prepare.hook_pool(KEYS, 2, amount="50"))
    with TestClient(app) as client:
        for _ in range(3):  # wrk replays each pooled call: they stay on the last rule
            for request in requests:
                response = client.post(
                    request.path, content=request.body.encode(), headers=dict(request.headers)
                )
                assert response.headers["x-hook-rule"] == "last"


def test_a_typical_month_is_three_devices_ten_ips_sixty_attempts() -> None:
    month = prepare.typical_month(7)
    assert len(month) == 60
    assert sum(step.after for step in month) == 30 * 86_400
    assert len({step.user_agent for step in month}) == 3
    assert len({step.ip for step in month}) == 10
    assert [step.proof for step in month].count("kyc_review") == 4
    assert sum(step.proof is not None for step in month) == 15
    assert prepare.typical_month(7) == month
    assert {s.ip for s in prepare.typical_month(8)}.isdisjoint({s.ip for s in month})


@pytest.mark.redis
def test_the_month_of_history_lands_in_the_facts_store(redis_url: str) -> None:
    async def run() -> tuple[dict[str, Any], float]:
        per_user = await bytes_per_user(redis_url, FACTS_KEY_B64, users=3)
        store = RedisFactsStore(redis_url, key=FactsKey.from_base64(FACTS_KEY_B64))
        try:
            return await store.show(prepare.user_id(2), time.time()), per_user
        finally:
            await store.aclose()

    held, per_user = asyncio.run(run())
    assert (len(held["devices"]), len(held["ips"])) == (3, 10)
    assert per_user > 0


def test_a_latency_ratio_passes_at_or_below_its_goal() -> None:
    assert Figure.ratio_limit("p99", 3.0, 2.0, 1.5, "ms").passed
    slow = Figure.ratio_limit("p99", 3.1, 2.0, 1.5, "ms")
    assert not slow.passed
    assert slow.cells()[3:] == ["1.550", "<= 1.5", "FAIL"]
    assert slow.to_json()["kind"] == "ratio_at_most"


def test_the_sentinel_option_gives_the_service_variables_it_reads_as_the_bench_target(
    tmp_path: Path,
) -> None:
    assert _parse(["--sentinel"]).sentinel is True and _parse([]).sentinel is False
    env = sentinel_env([26379, 26380, 26381], min_replicas=1)
    settings = Settings.from_env(
        {
            **env,
            "HOOK_INSECURE_SKIP_SIGNATURE": "true",
            "HOOK_KEYSTORE": "file",
            "HOOK_KEY_ENCRYPTION_KEYS": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        }
    )
    assert settings.redis_target == sentinel_target([26379, 26380, 26381], 1)
    conf = sentinel_conf(26379, 6390, tmp_path)
    assert "port 26379\n" in conf
    assert f"sentinel monitor {settings.redis_sentinel_master} 127.0.0.1 6390 2\n" in conf


def test_the_ablation_puts_every_part_back_and_tables_each_case() -> None:
    from bench import ablate
    from hook_service import logs, metrics
    from hook_service.endpoints.observe import RequestObserver
    from hook_service.hook.signature import SignatureCheck

    originals = (
        logs.request_line,
        metrics.request,
        RequestObserver.__call__,
        SignatureCheck.verify,
    )
    results = ablate.measure(rounds=3, count=48)

    assert (
        logs.request_line,
        metrics.request,
        RequestObserver.__call__,
        SignatureCheck.verify,
    ) == originals
    figures = dict(results)
    assert all(seconds > 0 for seconds in figures.values())
    # Switched off, the signature check costs nothing: that case is cheaper than the whole.
    assert (
        figures["  without the signature check"]
        < figures["the whole hook, decided (HOOK_REPLAY_WINDOW=0)"]
    )
    table = ablate.table(results)
    assert table.count("\n") == len(results) + 1
    assert "| without the facts (attempt, history) |" in table


def test_interleaved_rounds_alternate_the_order_and_keep_each_cases_best_round() -> None:
    calls: list[tuple[str, int, float]] = []
    # Each case's rate per round: "a" is best in round 1, "b" in round 0, "c" in round 2.
    rates = {"a": [10, 30, 20], "b": [50, 5, 6], "c": [1, 2, 3]}

    def case(name: str) -> Case:
        def run(round_: int, duration: float) -> WrkResult:
            calls.append((name, round_, duration))
            requests = rates[name][round_]
            return WrkResult(requests, 1.0, 0, 0, 1.0, float(round_ + 1))

        return run

    best = interleaved({name: case(name) for name in rates}, 9.0)
    assert ROUNDS == 3
    # Every other round in reverse order, each run a third of the duration.
    assert [(n, r) for n, r, _ in calls] == [
        ("a", 0),
        ("b", 0),
        ("c", 0),
        ("c", 1),
        ("b", 1),
        ("a", 1),
        ("a", 2),
        ("b", 2),
        ("c", 2),
    ]
    assert {d for _, _, d in calls} == {3.0}
    # The best round by rate, and that round's p99 with it.
    assert {n: (r.requests, r.p99_ms) for n, r in best.items()} == {
        "a": (30, 2.0),
        "b": (50, 1.0),
        "c": (3, 3.0),
    }
    assert list(best) == ["a", "b", "c"]


def test_the_machines_busy_cpu_grows_with_work_and_never_beyond_its_cores() -> None:
    start, wall = machine_busy_seconds(), time.monotonic()
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:  # 0.3 s of CPU in this process
        pass
    busy, elapsed = machine_busy_seconds() - start, time.monotonic() - wall
    tick = 1 / os.sysconf("SC_CLK_TCK")
    assert busy >= 0.3 - 2 * tick
    assert busy <= elapsed * (os.cpu_count() or 1) + 2 * tick


def test_where_the_ratios_come_from_per_request_cpu_and_busy_cores() -> None:
    def run(requests: int, server_cpu: float, busy: float) -> WrkResult:
        return WrkResult(
            requests,
            2.0,
            0,
            0,
            1.0,
            2.0,
            worker_cpu=(server_cpu,),
            machine_busy=busy,
            cpu_window=2.0,
        )

    hook, floor = run(1000, 0.28, 1.0), run(3000, 0.28, 1.0)
    one, two = run(8000, 2.0, 2.2), run(12000, 3.6, 3.9)
    figures = where_ratios_come_from({"hook call": (hook, floor)}, {"hook": (one, two)})
    assert [f.name for f in figures] == [
        "server CPU per hook call vs its floor's",
        "cores busy, hook, 1 worker",
        "cores busy, hook, 2 workers",
    ]
    per_call = figures[0]
    assert per_call.value == pytest.approx(280.0) and per_call.unit == "µs"
    assert per_call.floor == pytest.approx(93.33, 0.01)
    assert per_call.ratio_value == pytest.approx(3.0)
    assert (figures[1].value, figures[2].value) == pytest.approx((1.1, 1.95))
    assert figures[2].floor == os.cpu_count() and figures[2].goal is None
    assert figures[2].cells()[5] == "-"  # reported, no goal


FAKE_WRK = """
import sys, time
end = time.process_time() + 1.0
while time.process_time() < end:  # reading the pool: before the window
    pass
print("a warning", file=sys.stderr, flush=True)
print("BENCH_READY", file=sys.stderr, flush=True)
time.sleep(0.2)
print("BENCH_JSON {}")
"""


def test_the_cpu_window_opens_once_wrk_has_read_its_pool_and_closes_when_it_exits(
    tmp_path: Path,
) -> None:
    # A stand-in for wrk speaking bench/pool.lua's protocol (the marker on stderr).
    script = tmp_path / "fake_wrk.py"
    script.write_text(FAKE_WRK)
    assert f'io.stderr:write("{READY}\\n")' in LUA.read_text()
    window = CpuWindow([os.getpid()])
    code, out, err = _wrk([sys.executable, str(script)], 1, 30, window)
    assert code == 0 and out.strip() == "BENCH_JSON {}"
    assert "a warning" in err and READY not in err
    # The second of CPU before the marker is outside the window: only the 0.2 s after it.
    assert 0.2 <= window.seconds < 0.8
    assert window.machine_busy <= window.seconds * (os.cpu_count() or 1) + 0.05
    failed = CpuWindow([os.getpid()])
    code, _, err = _wrk([sys.executable, "-c", "import sys; sys.exit('no pool')"], 1, 30, failed)
    assert code == 1 and "no pool" in err
    assert (failed.seconds, failed.machine_busy, failed.server_cpu) == (0.0, 0.0, 0.0)
