"""The hook-service CLI: policy check/eval, keys list/rotate/revoke, serve --dev."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from click.testing import CliRunner

from hook_service._variables import FOREIGN
from hook_service.cli import cli
from hook_service.keys.backends.file import FileKeyStore
from hook_service.policy.engine import example_policy_path
from hook_service.settings import Settings
from tests.support import PRELUDE_JWKS_FILE, free_port, hook_body, key_supply, kid_of


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_policy_check_accepts_the_example(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["policy", "check", str(example_policy_path())])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output


def test_policy_check_names_file_rule_and_reason(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        example_policy_path().read_text().replace("granted_for: 300", "granted_for: 0", 1)
    )
    result = runner.invoke(cli, ["policy", "check", str(bad)])
    assert result.exit_code == 2
    assert "bad.yaml" in result.output
    assert "granted_for" in result.output


def test_policy_eval_prints_decision_and_rule(runner: CliRunner, tmp_path: Path) -> None:
    request = tmp_path / "request.json"
    request.write_bytes(hook_body(amount="1500", phone=False))
    result = runner.invoke(cli, ["policy", "eval", str(example_policy_path()), str(request)])
    assert result.exit_code == 0, result.output
    output = json.loads(result.output)
    assert output["rule"] == "large-transfer"
    assert [step["key"] for step in output["decision"]["steps"]] == ["verify_email", "kyc_review"]


def test_policy_eval_rejects_a_bad_request(runner: CliRunner, tmp_path: Path) -> None:
    request = tmp_path / "request.json"
    request.write_text('{"scope_requested": 1}')
    result = runner.invoke(cli, ["policy", "eval", str(example_policy_path()), str(request)])
    assert result.exit_code == 2
    assert "scope_requested" in result.output


def test_keys_list_rotate_revoke(runner: CliRunner, tmp_path: Path) -> None:
    keys_dir = ["--keys-dir", str(tmp_path / "keys")]
    missing = runner.invoke(cli, ["keys", "list", *keys_dir])
    assert missing.exit_code == 2
    assert "no key set" in missing.output
    assert not (tmp_path / "keys").exists()  # a mistyped directory gets no new key set
    FileKeyStore(tmp_path / "keys", new_key=key_supply()).load_or_create()
    listed = runner.invoke(cli, ["keys", "list", *keys_dir])
    assert listed.exit_code == 0, listed.output
    before = {key["state"]: key["kid"] for key in json.loads(listed.output)["keys"]}
    assert set(before) == {"active", "next"}
    assert "PRIVATE" not in listed.output

    early = runner.invoke(cli, ["keys", "rotate", *keys_dir])
    assert early.exit_code == 2
    assert "force" in early.output
    rotated = runner.invoke(cli, ["keys", "rotate", "--force", *keys_dir])
    after = {key["kid"]: key["state"] for key in json.loads(rotated.stdout)["keys"]}
    assert "refetch" in rotated.stderr  # an early forced rotation warns
    assert after[before["next"]] == "active"
    assert after[before["active"]] == "retired"

    revoked = runner.invoke(cli, ["keys", "revoke", before["active"], *keys_dir])
    assert revoked.exit_code == 0
    assert before["active"] not in {key["kid"] for key in json.loads(revoked.stdout)["keys"]}

    unknown = runner.invoke(cli, ["keys", "revoke", "nope", *keys_dir])
    assert unknown.exit_code == 2
    assert "nope" in unknown.output


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], queue.Queue[str]]]:
    """``hook-service serve --dev`` in an empty directory with no HOOK_* variables: its URL,
    the credentials it printed and its further output lines (stdout and stderr)."""
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("HOOK_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "hook_service", "serve", "--dev", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    stdout = process.stdout
    assert stdout is not None
    output: queue.Queue[str] = queue.Queue()

    def drain() -> None:
        # Drains the pipe for the whole run (a full pipe would block the server) and lets the
        # test wait with a deadline instead of hanging on readline().
        for line in stdout:
            output.put(line)

    threading.Thread(target=drain, daemon=True).start()
    printed: dict[str, str] = {}
    try:
        while len(printed) < 2:
            try:
                line = output.get(timeout=20)
            except queue.Empty:
                pytest.fail("serve --dev printed no credentials within 20 s")
            if line.startswith("dev API key"):
                printed["api_key"] = line.rsplit(" ", 1)[1].strip()
            elif line.startswith("dev admin token"):
                printed["admin_token"] = line.rsplit(" ", 1)[1].strip()
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(base + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield base, printed, output
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_serve_dev_works_with_no_configuration(
    dev_server: tuple[str, dict[str, str], queue.Queue[str]], tmp_path: Path
) -> None:
    base, printed, output = dev_server
    assert (tmp_path / "keys" / "keyset.json").exists()
    body = hook_body(amount="1500")
    decision = httpx.post(
        base + "/hooks/stepup", content=body, headers={"Content-Type": "application/json"}
    )
    assert decision.status_code == 200
    assert decision.headers["x-hook-rule"] == "large-transfer"
    token = httpx.post(
        base + "/verification-token",
        headers={"Authorization": f"Bearer {printed['api_key']}"},
        json={"user_id": json.loads(body)["user_id"], "challenge_id": "chl_1", "key": "kyc_review"},
    )
    assert token.status_code == 200
    keys = httpx.get(
        base + "/admin/keys", headers={"Authorization": f"Bearer {printed['admin_token']}"}
    )
    assert token.json()["kid"] in {key["kid"] for key in keys.json()["keys"]}
    # One line per request (docs/operations.md): the decision's and the token's, at INFO; the
    # token itself never.
    logged: list[str] = []
    while not any(" token=issued " in line for line in logged):
        try:
            logged.append(output.get(timeout=20))
        except queue.Empty:
            pytest.fail("no log line for the token within 20 s:\n" + "".join(logged))
    decision_line = next(line for line in logged if " path=/hooks/stepup " in line)
    assert " INFO hook_service.access request request_id=" in decision_line
    assert "rule=large-transfer decision=review" in decision_line
    assert token.json()["verification_token"] not in "".join(logged)


@pytest.mark.parametrize(
    ("variable", "make_value", "reason"),
    [
        ("HOOK_POLICY_FILE", lambda tmp: tmp / "missing.yaml", "missing.yaml"),
        ("HOOK_PRELUDE_JWKS_FILE", lambda tmp: tmp / "nope.json", "nope.json"),
        ("HOOK_KEYS_DIR", lambda tmp: tmp / "file-not-dir", "file-not-dir"),
        ("HOOK_TOKEN_TTL", lambda tmp: "5", "30 to 3600"),
    ],
)
def test_serve_refuses_bad_configuration_naming_the_variable(
    runner: CliRunner, tmp_path: Path, variable: str, make_value: Any, reason: str
) -> None:
    (tmp_path / "file-not-dir").write_text("x")
    env = {
        "HOOK_PRELUDE_JWKS_FILE": str(PRELUDE_JWKS_FILE),
        "HOOK_KEYS_DIR": str(tmp_path / "keys"),
        variable: str(make_value(tmp_path)),
    }
    result = runner.invoke(cli, ["serve"], env=env)
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {variable}")
    assert reason in result.output
    assert "Traceback" not in result.output


@pytest.fixture
def serve_settings(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., tuple[Any, Settings | None]]:
    """Runs ``hook-service serve ARGS`` up to the point where it would listen: the click result
    and the Settings it would serve with (None when it refused to start)."""
    import hook_service.server

    built: list[Settings] = []
    monkeypatch.setattr(hook_service.server, "serve", lambda settings, **_: built.append(settings))

    def serve(*args: str, env: dict[str, str] | None = None) -> tuple[Any, Settings | None]:
        base = {"HOOK_PRELUDE_JWKS_FILE": str(PRELUDE_JWKS_FILE)}
        result = runner.invoke(cli, ["serve", *args], env={**base, **(env or {})})
        return result, built[-1] if built else None

    return serve


FLAG_CASES: list[tuple[list[str], dict[str, str], str, Any]] = [
    (
        ["--keystore", "file"],
        {"HOOK_REDIS_URL": "redis://127.0.0.1:1", "HOOK_KEY_ENCRYPTION_KEYS": "A" * 43 + "="},
        "key_store",
        "file",
    ),
    (["--key-publish-lead", "90s"], {}, "key_publish_lead", 90),
    (["--key-publish-lead", "12h"], {}, "key_publish_lead", 12 * 3600),
    (["--key-rotation-interval", "30d"], {}, "key_rotation_interval", 30 * 86400),
    (["--replica-id", "eu-1:web@a"], {}, "replica", "eu-1:web@a"),
    (["--internal-port", "9001"], {}, "internal_address", ("127.0.0.1", 9001)),
    (["--internal-host", "::1", "--internal-port", "9001"], {}, "internal_address", ("::1", 9001)),
    (["--read-timeout", "30s"], {}, "read_timeout", 30),
    (["--max-connections", "100"], {}, "max_connections", 100),
    (
        ["--workers", "3", "--keystore", "file"],
        {
            "HOOK_REDIS_URL": "redis://127.0.0.1:1",
            "HOOK_KEY_ENCRYPTION_KEYS": base64.b64encode(bytes(32)).decode(),
        },
        "workers",
        3,
    ),
    (["--shadow-policy-file", "next.yaml"], {}, "shadow_policy_file", Path("next.yaml")),
    (
        ["--admin-token-labels", "ops, ci"],
        {"HOOK_ADMIN_TOKENS": "admin-token-0123456789,admin-token-abcdefghij"},
        "admin_token_labels",
        ("ops", "ci"),
    ),
]


@pytest.mark.parametrize(("args", "env", "attribute", "expected"), FLAG_CASES)
def test_serve_flags_reach_the_settings(
    serve_settings: Callable[..., tuple[Any, Settings | None]],
    args: list[str],
    env: dict[str, str],
    attribute: str,
    expected: Any,
) -> None:
    result, settings = serve_settings(*args, env=env)
    assert result.exit_code == 0, result.output
    assert settings is not None
    assert getattr(settings, attribute) == expected


def test_serve_flags_win_over_the_environment(
    serve_settings: Callable[..., tuple[Any, Settings | None]],
) -> None:
    env = {"HOOK_KEY_PUBLISH_LEAD": "20m", "HOOK_REPLICA_ID": "from-env"}
    result, settings = serve_settings(
        "--key-publish-lead", "5m", "--replica-id", "from-flag", env=env
    )
    assert result.exit_code == 0, result.output
    assert settings is not None
    assert (settings.key_publish_lead, settings.replica) == (300, "from-flag")


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["--keystore", "s3"], {}, "'--keystore'"),
        (["--keystore", "redis"], {}, "HOOK_KEYSTORE=redis needs HOOK_REDIS_URL"),
        (["--key-publish-lead", "11 minutes"], {}, "HOOK_KEY_PUBLISH_LEAD must be a duration"),
        (["--key-rotation-interval", "20m"], {}, "HOOK_KEY_ROTATION_INTERVAL must be at least"),
        (["--replica-id", "a b"], {}, "HOOK_REPLICA_ID must be"),
        (["--admin-token-labels", "ops,ops"], {}, "HOOK_ADMIN_TOKEN_LABELS: labels must be"),
        (
            ["--admin-token-labels", "ops"],
            {"HOOK_ADMIN_TOKENS": "admin-token-0123456789,admin-token-abcdefghij"},
            "HOOK_ADMIN_TOKEN_LABELS names 1 tokens",
        ),
        # Through the flag, the URL gets the same check as the variable (https, or loopback).
        (["--prelude-jwks-url", "http://example.com/jwks"], {}, "HOOK_PRELUDE_JWKS_URL must"),
    ],
)
def test_serve_refuses_a_bad_flag_naming_it(
    serve_settings: Callable[..., tuple[Any, Settings | None]],
    args: list[str],
    env: dict[str, str],
    named: str,
) -> None:
    result, settings = serve_settings(*args, env=env)
    assert result.exit_code == 2
    assert named in result.output
    assert settings is None
    assert "Traceback" not in result.output


def test_serve_flag_errors_name_the_flag_too(
    serve_settings: Callable[..., tuple[Any, Settings | None]],
) -> None:
    result, _ = serve_settings("--key-publish-lead", "soon")
    assert "Invalid value for '--key-publish-lead': HOOK_KEY_PUBLISH_LEAD" in result.output


def test_serve_help_lists_a_flag_for_every_non_secret_variable(runner: CliRunner) -> None:
    # Not ours (prometheus-client's, OpenTelemetry's): variables only, no flags.
    secrets = {
        "redis_url",
        "redis_sentinel_password",
        "api_keys",
        "admin_tokens",
        "key_encryption_keys",
        "facts_key",
        *FOREIGN,
    }
    shown = runner.invoke(cli, ["serve", "--help"]).output
    for field in dataclasses.fields(Settings):
        if field.name not in secrets:
            assert "--" + field.name.replace("_", "-") in shown
            assert "HOOK_" + field.name.upper() in shown
        else:
            assert "--" + field.name.replace("_", "-") not in shown


# --- keys against the Redis key store ----------------------------------------------------

KEK_A = base64.b64encode(bytes(range(32))).decode()
KEK_B = base64.b64encode(bytes(range(64, 96))).decode()


def redis_env(redis_url: str, keks: str | None = KEK_A) -> dict[str, str | None]:
    env: dict[str, str | None] = {"HOOK_REDIS_URL": redis_url, "HOOK_KEY_ENCRYPTION_KEYS": keks}
    return env


def redis_dump(redis_url: str) -> dict[Any, Any]:
    client = redis.Redis.from_url(redis_url)
    try:
        return {
            name: client.get(name) if client.type(name) == b"string" else client.xrange(name)
            for name in client.keys("*")
        }
    finally:
        client.close()


def seeded_redis(runner: CliRunner, tmp_path: Path, redis_url: str) -> dict[str, str]:
    """A key set created in a directory, then imported into Redis: {state: kid}."""
    FileKeyStore(tmp_path / "keys", new_key=key_supply([0, 1])).load_or_create()
    imported = runner.invoke(
        cli, ["keys", "import", "--from-dir", str(tmp_path / "keys")], env=redis_env(redis_url)
    )
    assert imported.exit_code == 0, imported.output
    return {key["state"]: key["kid"] for key in json.loads(imported.stdout)["keys"]}


def test_keys_import_from_dir_then_list_in_redis(
    runner: CliRunner, tmp_path: Path, redis_url: str
) -> None:
    kids = seeded_redis(runner, tmp_path, redis_url)
    assert kids == {"active": kid_of(0), "next": kid_of(1)}
    listed = runner.invoke(cli, ["keys", "list"], env=redis_env(redis_url))
    assert listed.exit_code == 0, listed.output
    assert {k["kid"] for k in json.loads(listed.stdout)["keys"]} == set(kids.values())
    again = runner.invoke(
        cli, ["keys", "import", "--from-dir", str(tmp_path / "keys")], env=redis_env(redis_url)
    )
    assert again.exit_code == 2 and "already holds a key set" in again.output
    replaced = runner.invoke(
        cli,
        ["keys", "import", "--from-dir", str(tmp_path / "keys"), "--replace"],
        env=redis_env(redis_url),
    )
    assert replaced.exit_code == 0, replaced.output
    assert json.loads(redis.Redis.from_url(redis_url).get("hook:keys:version") or b"0") == 2


def test_keys_commands_refuse_redis_without_a_kek(
    runner: CliRunner, tmp_path: Path, redis_url: str
) -> None:
    for command in (["keys", "list"], ["keys", "rewrap"], ["keys", "export-public"]):
        result = runner.invoke(cli, command, env=redis_env(redis_url, keks=None))
        assert result.exit_code == 2
        assert "HOOK_KEY_ENCRYPTION_KEYS is required" in result.output
    assert redis_dump(redis_url) == {}  # nothing written


def test_keys_commands_refuse_a_wrong_kek_and_write_nothing(
    runner: CliRunner, tmp_path: Path, redis_url: str
) -> None:
    seeded_redis(runner, tmp_path, redis_url)
    before = redis_dump(redis_url)
    for command in (["keys", "rotate", "--force"], ["keys", "rewrap"], ["keys", "list"]):
        result = runner.invoke(cli, command, env=redis_env(redis_url, keks=KEK_B))
        assert result.exit_code == 2, result.output
        assert "HOOK_KEY_ENCRYPTION_KEYS cannot decrypt the stored signing keys" in result.output
        assert KEK_A not in result.output and KEK_B not in result.output
    assert redis_dump(redis_url) == before


def test_keys_rewrap_moves_to_the_first_kek(
    runner: CliRunner, tmp_path: Path, redis_url: str
) -> None:
    seeded_redis(runner, tmp_path, redis_url)
    rewrapped = runner.invoke(cli, ["keys", "rewrap"], env=redis_env(redis_url, f"{KEK_B},{KEK_A}"))
    assert rewrapped.exit_code == 0, rewrapped.output
    assert "rewrapped 2 key(s)" in rewrapped.output
    only_new = runner.invoke(cli, ["keys", "list"], env=redis_env(redis_url, KEK_B))
    assert only_new.exit_code == 0, only_new.output
    only_old = runner.invoke(cli, ["keys", "list"], env=redis_env(redis_url, KEK_A))
    assert only_old.exit_code == 2 and "cannot decrypt" in only_old.output
    events: Any = redis.Redis.from_url(redis_url).xrange("hook:keys:events")
    assert [f[b"event"] for _, f in events][-2:] == [b"rewrapped", b"rewrapped"]
    assert {f[b"actor"] for _, f in events} >= {b"cli"}


def test_keys_rewrap_is_for_redis_only(runner: CliRunner, tmp_path: Path) -> None:
    FileKeyStore(tmp_path / "keys", new_key=key_supply([0, 1])).load_or_create()
    result = runner.invoke(cli, ["keys", "rewrap"], env={"HOOK_KEYS_DIR": str(tmp_path / "keys")})
    assert result.exit_code == 2 and "Redis key store only" in result.output


def test_keys_import_file_installs_a_next_key(
    runner: CliRunner, tmp_path: Path, redis_url: str
) -> None:
    seeded_redis(runner, tmp_path, redis_url)
    pem = Path(__file__).parent / "keys" / "hook_rsa_3.pem"
    imported = runner.invoke(cli, ["keys", "import", str(pem)], env=redis_env(redis_url))
    assert imported.exit_code == 0, imported.output
    states = {key["kid"]: key["state"] for key in json.loads(imported.stdout)["keys"]}
    assert states == {kid_of(0): "active", kid_of(2): "next"}
    assert "PRIVATE" not in imported.output
    early = runner.invoke(cli, ["keys", "rotate"], env=redis_env(redis_url))
    assert early.exit_code == 2 and "force" in early.output  # the imported key waits the lead
    not_a_key = tmp_path / "junk.pem"
    not_a_key.write_text("hello")
    junk = runner.invoke(cli, ["keys", "import", str(not_a_key)], env=redis_env(redis_url))
    assert junk.exit_code == 2 and "not an unencrypted PEM private key" in junk.output
    both = runner.invoke(cli, ["keys", "import"], env=redis_env(redis_url))
    assert both.exit_code == 2 and "either FILE or --from-dir" in both.output


def test_keys_export_public_writes_only_public_members(
    runner: CliRunner, tmp_path: Path, redis_url: str
) -> None:
    kids = seeded_redis(runner, tmp_path, redis_url)
    printed = runner.invoke(cli, ["keys", "export-public"], env=redis_env(redis_url))
    assert printed.exit_code == 0, printed.output
    jwks = json.loads(printed.stdout)
    assert {key["kid"] for key in jwks["keys"]} == set(kids.values())
    assert all(set(key) == {"kty", "kid", "use", "alg", "n", "e"} for key in jwks["keys"])
    target = tmp_path / "jwks.json"
    written = runner.invoke(
        cli,
        ["keys", "export-public", "--output", str(target), "--keys-dir", str(tmp_path / "keys")],
        env={"HOOK_KEYSTORE": "file"},
    )
    assert written.exit_code == 0, written.output
    assert json.loads(target.read_text()) == jwks


def test_keys_revoke_warns_about_prelude_cache(
    runner: CliRunner, tmp_path: Path, redis_url: str
) -> None:
    kids = seeded_redis(runner, tmp_path, redis_url)
    revoked = runner.invoke(cli, ["keys", "revoke", kids["next"]], env=redis_env(redis_url))
    # revoking next generates a new next key: only the message and the result are checked
    assert revoked.exit_code == 0, revoked.output
    assert kids["next"] not in {k["kid"] for k in json.loads(revoked.stdout)["keys"]}
    assert "10 minutes" in revoked.stderr
