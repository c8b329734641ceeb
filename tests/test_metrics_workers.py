"""Metrics under several workers (issue 13.3): the counts every worker made add up in one scrape,
whichever worker answers it, also after a worker died; the directory comes and goes with
metrics_export.prepare_multiprocess / cleanup_multiprocess.

The server runs for real: ``hook-service serve --workers 2``."""

from __future__ import annotations

import base64
import os
import re
import secrets
import signal
import sys
import time
from pathlib import Path

import httpx
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from hook_service import metrics_export
from hook_service.settings import Settings
from tests.support import (
    PRELUDE_JWKS_FILE,
    TEST_KEK,
    ServiceProcess,
    free_port,
    hook_body,
    sign_hook,
)

DECISIONS = "stepup_hook_decisions_total"
LARGE = {"scope": "transfer:write", "status": "review", "rule": "large-transfer"}


def scraped_decisions(base: str) -> float:
    # A new connection each time: any worker may answer.
    text = httpx.get(base + "/metrics", headers={"Connection": "close"}).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == DECISIONS and sample.labels == LARGE:
                return sample.value
    return 0.0


def per_worker_decisions(directory: Path) -> dict[int, float]:
    """What each worker's own file holds (counter_<pid>.db)."""
    counts = {}
    for path in directory.glob("counter_*.db"):
        pid = int(re.fullmatch(r"counter_(\d+)\.db", path.name)[1])  # type: ignore[index]
        total = 0.0
        merged = MultiProcessCollector.merge([str(path)], accumulate=False)  # type: ignore[no-untyped-call]
        for family in merged:
            total += sum(
                s.value for s in family.samples if s.name == DECISIONS and s.labels == LARGE
            )
        counts[pid] = total
    return counts


def hook(base: str) -> None:
    # A user each: the example policy blocks the eleventh request of one user in an hour.
    body = hook_body(amount="1500", user_id="usr_" + secrets.token_hex(8))
    headers = sign_hook(body) | {"Connection": "close"}
    assert httpx.post(base + "/hooks/stepup", content=body, headers=headers).status_code == 200


def test_counts_add_up_across_workers_and_survive_a_dead_worker(
    tmp_path: Path, redis_url: str
) -> None:
    """``hook-service serve --workers 2``: one metrics directory for both workers (here the
    operator's own, so that the test can read each worker's file), every scrape the total."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_1.db").write_bytes(b"a previous run")  # serve empties it first
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOK_")}
    port = free_port()
    env |= {
        metrics_export.MULTIPROC_VARIABLE: str(directory),
        "HOOK_PRELUDE_JWKS_FILE": str(PRELUDE_JWKS_FILE),
        "HOOK_REDIS_URL": redis_url,
        "HOOK_KEY_ENCRYPTION_KEYS": base64.b64encode(TEST_KEK).decode(),
        "HOOK_FACTS_KEY": base64.b64encode(bytes(range(32, 64))).decode(),
        "HOOK_REPLAY_WINDOW": "0",
        "HOOK_LOG_LEVEL": "WARNING",
        "HOOK_PORT": str(port),
    }
    command = [sys.executable, "-m", "hook_service", "serve", "--workers", "2"]
    with ServiceProcess(command, env, port, tmp_path) as service:
        assert not (directory / "counter_1.db").exists()
        sent = 0
        # Until both workers have decided some (the kernel picks who accepts).
        while sent < 400 and sum(1 for n in per_worker_decisions(directory).values() if n) < 2:
            for _ in range(10):
                hook(service.base)
            sent += 10
        workers = {pid: n for pid, n in per_worker_decisions(directory).items() if n}
        assert len(workers) == 2, f"one worker took all {sent} requests"
        assert sum(workers.values()) == sent
        # Every scrape, whichever worker serves it, counts every worker's requests.
        assert {scraped_decisions(service.base) for _ in range(8)} == {sent}

        # A worker dies: uvicorn starts another; the dead one's counts stay in the total.
        victim = next(iter(workers))
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:
            try:
                hook(service.base)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert {scraped_decisions(service.base) for _ in range(8)} == {sent + 1}
    # serve cleans the operator's directory after the last worker, never removes it.
    assert directory.is_dir() and list(directory.iterdir()) == []


def test_an_operators_directory_is_emptied_not_removed(tmp_path: Path) -> None:
    (tmp_path / "counter_1.db").write_bytes(b"old run")
    env: dict[str, str] = {}
    settings = Settings(insecure_skip_signature=True, metrics_dir=tmp_path)
    directory = metrics_export.prepare_multiprocess(settings, env)
    assert not directory.owned and list(tmp_path.iterdir()) == []
    (tmp_path / "counter_2.db").write_bytes(b"this run")
    metrics_export.cleanup_multiprocess(directory, env)
    assert tmp_path.is_dir() and list(tmp_path.iterdir()) == []
