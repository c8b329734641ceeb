"""``hook-service simulate``: the commands, their exit status, and the whole thing end to end
(real ``hook-service serve`` and ``hook-service simulate`` processes)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from hook_service.cli import cli
from hook_service.keys.backends.file import FileKeyStore
from hook_service.simulator.prelude import PreludeKeys
from tests.simulator.support import scenario_file, sim_keys, write_key_file
from tests.support import ADMIN_TOKEN, API_KEY, free_port, key_supply

HOOK = [sys.executable, "-m", "hook_service"]
# Only POST /outcomes calls (no hook step: the scope is given).
OUTCOME_SEQUENCE = """
version: 1
step_keys: [kyc_review]
sequences:
  - name: outcomes reported by the backend
    user_id: usr_outcomes
    steps:
      - outcome: verified
        scope: "transfer:write"
        expect: no_attempt
      - outcome: fraud
        scope: "transfer:write"
        expect: recorded
"""


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return write_key_file(tmp_path / "prelude.pem")


def test_jwks_creates_the_key_file_and_writes_the_jwks(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Keys are never generated in tests: --create gets the pre-generated pair.
    monkeypatch.setattr(PreludeKeys, "generate", classmethod(lambda cls: sim_keys()))
    key, out = tmp_path / "new.pem", tmp_path / "jwks.json"
    result = runner.invoke(
        cli, ["simulate", "jwks", "--prelude-key", str(key), "--create", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert json.loads(out.read_text()) == sim_keys().jwks()
    assert f"HOOK_PRELUDE_JWKS_FILE={out}" in result.output
    again = runner.invoke(cli, ["simulate", "jwks", "--prelude-key", str(key), "--create"])
    assert again.exit_code == 0  # an existing file is used, not replaced
    assert json.loads(again.stdout) == sim_keys().jwks()


def test_jwks_without_create_needs_the_file(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["simulate", "jwks", "--prelude-key", str(tmp_path / "no.pem")])
    assert result.exit_code == 2
    assert "no.pem: No such file" in result.output


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("0.0.0.0:9000", "only a loopback address is allowed"),
        ("203.0.113.5:9000", "only a loopback address is allowed"),
        ("example.com:9000", "expected HOST:PORT"),
        ("127.0.0.1:99999", "port must be from 1 to 65535"),
        ("127.0.0.1", "expected HOST:PORT"),
    ],
)
def test_jwks_serves_on_loopback_only(
    runner: CliRunner, key_file: Path, address: str, message: str
) -> None:
    result = runner.invoke(
        cli, ["simulate", "jwks", "--prelude-key", str(key_file), "--serve", address]
    )
    assert result.exit_code == 2
    assert message in result.output


def test_run_refuses_a_bad_scenario_file_with_exit_2(
    runner: CliRunner, key_file: Path, tmp_path: Path
) -> None:
    bad = scenario_file(tmp_path, "version: 1\nscenarios: [{name: x}]\n", "bad.yaml")
    result = runner.invoke(
        cli,
        [
            "simulate",
            "run",
            str(bad),
            "--url",
            "http://127.0.0.1:1",
            "--prelude-key",
            str(key_file),
        ],
        env={"SIMULATE_API_KEY": API_KEY},
    )
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {bad}: scenario 1 (x): expect is required")


def test_run_needs_an_api_key_and_a_readable_key_file(
    runner: CliRunner, key_file: Path, tmp_path: Path
) -> None:
    base = ["simulate", "run", "--url", "http://127.0.0.1:1"]
    missing = runner.invoke(cli, [*base, "--prelude-key", str(key_file)], env={})
    assert missing.exit_code == 2
    assert "--api-key" in missing.output
    broken = tmp_path / "broken.pem"
    broken.write_text("not a key")
    unreadable = runner.invoke(
        cli, [*base, "--prelude-key", str(broken)], env={"SIMULATE_API_KEY": API_KEY}
    )
    assert unreadable.exit_code == 2
    assert "broken.pem: needs one RSA and one Ed25519 private key" in unreadable.output


def test_run_against_nothing_fails_with_request_failed(runner: CliRunner, key_file: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    args = ["simulate", "run", "--url", url, "--prelude-key", str(key_file), "--json"]
    result = runner.invoke(cli, args, env={"SIMULATE_API_KEY": API_KEY})
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert set(report) == {"command", "target", "passed", "failed", "checks"}
    assert (report["passed"], report["target"]) == (False, url)
    jwks, first = report["checks"][:2]
    assert (jwks["check"], jwks["reason"]) == ("served as Prelude needs it", "invalid_jwks")
    assert set(first) == {"group", "check", "passed", "reason", "detail"}
    assert (first["check"], first["reason"]) == ("Prelude accepts the answer", "request_failed")
    assert first["detail"].startswith("ConnectError")
    probes = [c for c in report["checks"] if c["group"] == "hook signature check (contract 2.3)"]
    assert {c["reason"] for c in probes} == {"request_failed"}
    assert API_KEY not in result.output


# --- end to end: real processes --------------------------------------------------------------


def wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{url} did not come up:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def spawn(args: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)


def clean_env(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOOK_", "SIMULATE_"))}
    return {**env, **variables}


def start_served(tmp_path: Path, key_file: Path, **variables: str) -> Iterator[str]:
    """``hook-service serve`` trusting the JWKS written by ``hook-service simulate jwks``."""
    jwks = tmp_path / "prelude-jwks.json"
    written = subprocess.run(
        [*HOOK, "simulate", "jwks", "--prelude-key", str(key_file), "--out", str(jwks)],
        env=clean_env(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert written.returncode == 0, written.stderr
    FileKeyStore(tmp_path / "keys", new_key=key_supply([0, 1])).load_or_create()
    port = free_port()
    env = clean_env(
        HOOK_PORT=str(port),
        HOOK_KEYS_DIR=str(tmp_path / "keys"),
        HOOK_PRELUDE_JWKS_FILE=str(jwks),
        HOOK_API_KEYS=API_KEY,
        HOOK_ADMIN_TOKENS=ADMIN_TOKEN,
        **variables,
    )
    log = tmp_path / "serve.log"
    process = spawn([*HOOK, "serve"], env, log, tmp_path)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", process, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def served(tmp_path: Path, key_file: Path) -> Iterator[str]:
    yield from start_served(tmp_path, key_file)


def simulate(*args: str, **env: str) -> tuple[int, Any]:
    result = subprocess.run(
        [*HOOK, "simulate", *args, "--json"],
        env=clean_env(SIMULATE_API_KEY=API_KEY, SIMULATE_ADMIN_TOKEN=ADMIN_TOKEN, **env),
        capture_output=True,
        timeout=120,
        check=False,
        text=True,
    )
    assert result.returncode != 2, result.stderr
    return result.returncode, json.loads(result.stdout)


def test_end_to_end_against_a_real_service(served: str, key_file: Path) -> None:
    code, report = simulate("run", "--url", served, "--prelude-key", str(key_file))
    assert [c for c in report["checks"] if not c["passed"]] == []
    assert code == 0
    assert report["passed"] is True
    groups = {c["group"] for c in report["checks"]}
    assert "large transfer with a phone asks for SMS then KYC" in groups
    assert "hook signature check (contract 2.3)" in groups

    code, report = simulate("rotation", "--url", served, "--prelude-key", str(key_file))
    assert code == 1
    refused = [c for c in report["checks"] if not c["passed"]]
    assert [(c["check"], c["reason"]) for c in refused] == [
        ("POST /admin/keys/rotate", "rotation_too_early")
    ]
    assert "--force" in refused[0]["detail"]

    code, report = simulate("rotation", "--url", served, "--prelude-key", str(key_file), "--force")
    assert [c for c in report["checks"] if not c["passed"]] == []
    assert code == 0


def test_end_to_end_with_an_internal_listener(tmp_path: Path, key_file: Path) -> None:
    internal = free_port()
    for public in start_served(tmp_path, key_file, HOOK_INTERNAL_PORT=str(internal)):
        inside = f"http://127.0.0.1:{internal}"
        code, report = simulate(
            "run", "--url", public, "--internal-url", inside, "--prelude-key", str(key_file)
        )
        assert [c for c in report["checks"] if not c["passed"]] == []
        assert code == 0
        code, report = simulate(
            "rotation",
            "--url",
            public,
            "--internal-url",
            inside,
            "--force",
            "--prelude-key",
            str(key_file),
        )
        assert [c for c in report["checks"] if not c["passed"]] == []
        # Without --internal-url the token and admin calls meet the public listener's 404.
        code, report = simulate("run", "--url", public, "--prelude-key", str(key_file))
        assert code == 1
        assert "not_found" in json.dumps([c for c in report["checks"] if not c["passed"]])
        # The backend's outcome reports go to the internal listener too.
        outcomes = scenario_file(tmp_path, OUTCOME_SEQUENCE, name="outcomes.yaml")
        args = ("run", str(outcomes), "--url", public, "--prelude-key", str(key_file))
        code, report = simulate(*args, "--internal-url", inside)
        assert [c for c in report["checks"] if not c["passed"]] == []
        assert code == 0
        code, report = simulate(*args)
        failed = [c for c in report["checks"] if not c["passed"]]
        assert code == 1 and failed and "not_found" in json.dumps(failed)


def test_jwks_served_on_loopback(tmp_path: Path, key_file: Path) -> None:
    port = free_port()
    log = tmp_path / "jwks.log"
    address = f"127.0.0.1:{port}"
    process = spawn(
        [*HOOK, "simulate", "jwks", "--prelude-key", str(key_file), "--serve", address],
        clean_env(),
        log,
        tmp_path,
    )
    url = f"http://{address}/.well-known/jwks.json"
    try:
        wait_until_up(url, process, log)
        response = httpx.get(url)
        assert response.headers["content-type"] == "application/json"
        assert response.json() == sim_keys().jwks()
        assert f"HOOK_PRELUDE_JWKS_URL={url}" in log.read_text()
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_run_needs_an_http_base_url(runner: CliRunner, key_file: Path) -> None:
    args = ["simulate", "run", "--url", "127.0.0.1:8000", "--prelude-key", str(key_file)]
    result = runner.invoke(cli, args, env={"SIMULATE_API_KEY": API_KEY})
    assert result.exit_code == 2
    assert "expected an http:// or https:// base URL" in result.output


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:99999", "not a usable URL (Port out of range 0-65535)"),
        ("http://[::1", "not a usable URL (Invalid IPv6 URL)"),
        ("http://user:pw-secret@127.0.0.1:1", "must not carry credentials"),
        ("http://127.0.0.1:1/?x=1", "must not carry a query or fragment"),
    ],
)
def test_run_refuses_an_unusable_base_url_without_a_traceback(
    runner: CliRunner, key_file: Path, url: str, message: str
) -> None:
    args = ["simulate", "run", "--url", url, "--prelude-key", str(key_file)]
    result = runner.invoke(cli, args, env={"SIMULATE_API_KEY": API_KEY})
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert message in result.output
    assert "pw-secret" not in result.output


def test_rotation_needs_a_scenario_with_a_custom_step(
    runner: CliRunner, key_file: Path, tmp_path: Path
) -> None:
    otp_only = scenario_file(
        tmp_path,
        "version: 1\nscenarios:\n  - name: otp\n    request: {scope: 'a:b'}\n"
        "    expect: {status: review, steps: [verify_sms]}\n",
        "otp.yaml",
    )
    args = ["simulate", "rotation", "--url", "http://127.0.0.1:1", "--prelude-key", str(key_file)]
    result = runner.invoke(
        cli,
        [*args, "--scenarios", str(otp_only)],
        env={"SIMULATE_API_KEY": API_KEY, "SIMULATE_ADMIN_TOKEN": ADMIN_TOKEN},
    )
    assert result.exit_code == 2
    assert result.output == (
        f"error: {otp_only}: no scenario expects a review with a custom step (expect.steps)\n"
    )
