"""PolicyHolder: the live policy, the shadow policy, hot reload and the DEBUG trace."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import yaml

from hook_service.errors import PolicyError
from hook_service.policy.base import Decision
from hook_service.policy.holder import PolicyHolder
from hook_service.services import _on_sighup
from tests.policy.test_policy import request
from tests.support import FakeClock


def policy(status: str = "continue", when: str | None = None, **top: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {"name": f"r-{status}", "status": status}
    if status == "review":
        rule["steps"] = ["otp"]
    if when is not None:
        rule["when"] = when
    return {"version": 1, "scopes": {"transfer:write": {"rules": [rule]}}, **top}


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    return write(tmp_path / "live.yaml", policy()), write(tmp_path / "shadow.yaml", policy())


def test_info_names_revision_source_and_time(files: tuple[Path, Path]) -> None:
    live, _ = files
    holder = PolicyHolder(live, clock=FakeClock(1_760_000_000.0))
    assert holder.info() == {
        "revision": hashlib.sha256(live.read_bytes()).hexdigest(),
        "source": str(live),
        "loaded_at": "2025-10-09T08:53:20Z",
        "shadow": None,
    }
    assert holder.decide(request()).revision == holder.info()["revision"]


def test_reload_replaces_a_valid_file_and_refuses_an_invalid_one(files: tuple[Path, Path]) -> None:
    live, _ = files
    clock = FakeClock()
    holder = PolicyHolder(live, clock=clock)
    steps = holder.live_custom_steps()
    write(
        live,
        policy("block", custom_steps=["kyc"])
        | {
            "scopes": {
                "transfer:write": {"rules": [{"name": "kyc", "status": "review", "steps": ["kyc"]}]}
            }
        },
    )
    clock.advance(60)
    info = holder.reload()
    assert holder.decide(request()).rule == "kyc"
    assert info["revision"] == hashlib.sha256(live.read_bytes()).hexdigest()
    assert "kyc" in steps  # the token issuer's view follows the reload
    good = holder.info()
    live.write_text("version: 1\nscopes: {transfer:write: {rules: [{name: x, status: maybe}]}}\n")
    with pytest.raises(PolicyError) as refused:
        holder.reload()
    assert str(refused.value) == (
        f'{live}: scopes."transfer:write".rules[0] (x): status must be one of continue, review, '
        'block, got "maybe"'
    )
    assert holder.info() == good  # the old policy stays in force
    assert holder.decide(request()).rule == "kyc"
    assert holder.reload_or_log() is False


def test_an_invalid_shadow_refuses_the_whole_reload(files: tuple[Path, Path]) -> None:
    live, shadow = files
    holder = PolicyHolder(live, shadow, clock=FakeClock())
    before = holder.info()
    write(live, policy("block"))
    shadow.write_text("version: 2\n")
    with pytest.raises(PolicyError, match="version must be 1"):
        holder.reload()
    assert holder.info() == before
    assert holder.decide(request()).rule == "r-continue"


def test_the_shadow_never_changes_the_answer_and_counts_disagreements(
    files: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    live, shadow = files
    write(shadow, policy("block"))
    seen: list[tuple[Decision, Decision]] = []
    holder = PolicyHolder(
        live, shadow, clock=FakeClock(), on_disagreement=lambda scope, a, b: seen.append((a, b))
    )
    with caplog.at_level(logging.INFO, "hook_service.policy"):
        decision = holder.decide(request())
    assert (decision.rule, decision.status) == ("r-continue", "continue")
    assert [(a.rule, b.rule) for a, b in seen] == [("r-continue", "r-block")]
    (line,) = [r.getMessage() for r in caplog.records if "shadow disagrees" in r.getMessage()]
    assert (
        "live_rule=r-continue live_status=continue shadow_rule=r-block shadow_status=block" in line
    )
    info = holder.info()["shadow"]
    assert (info["disagreements"], info["errors"]) == (1, 0)
    assert info["revision"] == hashlib.sha256(shadow.read_bytes()).hexdigest()


def test_an_agreeing_shadow_is_silent(
    files: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    live, shadow = files
    holder = PolicyHolder(live, shadow, clock=FakeClock())
    with caplog.at_level(logging.DEBUG, "hook_service.policy"):
        holder.decide(request())
    assert not [r for r in caplog.records if "shadow" in r.getMessage()]
    assert holder.info()["shadow"]["disagreements"] == 0


def test_shadow_errors_and_failures_never_reach_the_live_answer(
    files: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    live, shadow = files
    write(shadow, policy("continue", when="number(metadata.amount) > 1.0"))
    holder = PolicyHolder(live, shadow, clock=FakeClock())

    def broken(scope: str, live: Decision, shadow: Decision) -> None:
        raise RuntimeError("metrics down")

    holder.on_disagreement = broken
    with caplog.at_level(logging.WARNING, "hook_service.policy"):
        decision = holder.decide(request(metadata={"amount": "NaN"}))
    assert (decision.rule, decision.error) == ("r-continue", None)
    assert holder.info()["shadow"]["errors"] == 2  # its on_error answer, then the hook raising
    # The shadow's own on_error is not a live warning ("answering on_error" is for live).
    assert not [r for r in caplog.records if "answering on_error" in r.getMessage()]


def test_debug_trace_is_one_line_without_raw_ip_or_user_agent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    live = write(
        tmp_path / "p.yaml",
        policy(
            "block",
            when='signals.ip == "203.0.113.42" && signals.user_agent != ""'
            ' && signals.platform == "WEB"',
        ),
    )
    holder = PolicyHolder(live, clock=FakeClock())
    req = request(signals={"platform": "WEB", "ip": "203.0.113.42", "user_agent": "Mozilla/5.0"})
    with caplog.at_level(logging.INFO, "hook_service.policy"):
        holder.decide(req)
    assert not [r for r in caplog.records if "trace" in r.getMessage()]  # DEBUG only
    with caplog.at_level(logging.DEBUG, "hook_service.policy"):
        holder.decide(req)
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("trace ")]
    assert line == (
        f"trace scope=transfer:write revision={holder.info()['revision']} rules=(r-block: matched "
        '[signals.ip=<redacted> signals.user_agent=<redacted> signals.platform="WEB"]) -> block '
        "rule=r-block"
    )
    assert "203.0.113.42" not in caplog.text and "Mozilla" not in caplog.text


def test_sighup_reloads_the_policy(files: tuple[Path, Path]) -> None:
    live, _ = files
    holder = PolicyHolder(live, clock=FakeClock())
    write(live, policy("block"))

    async def main() -> None:
        _on_sighup(holder.reload_or_log)
        try:
            os.kill(os.getpid(), signal.SIGHUP)
            for _ in range(100):
                if holder.decide(request()).rule == "r-block":
                    return
                await asyncio.sleep(0.01)
        finally:
            _on_sighup(None)

    asyncio.run(main())
    assert holder.decide(request()).rule == "r-block"
