"""Two listeners (issue 13, point 1) over real sockets against ``hook-service serve``, and the
server settings refused at start-up naming the variable."""

from __future__ import annotations

import resource
import socket
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from hook_service.cli import cli
from hook_service.server import PUBLIC_PATHS
from tests.server.conftest import Runner, serve_env
from tests.support import ADMIN_TOKEN, API_KEY, USER_ID, bearer, free_port, hook_body

INTERNAL_ONLY = [
    ("POST", "/verification-token"),
    ("GET", "/admin/keys"),
    ("GET", "/admin/keys/events"),
    ("POST", "/admin/keys/rotate"),
    ("GET", "/openapi.json"),
    ("POST", "/outcomes"),  # when it exists: internal by the allow-list
    ("GET", "/metrics"),
    ("GET", "/admin%2Fkeys"),  # decoded before the gate as before the router
]


def hook(url: str) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    return httpx.post(url + "/hooks/stepup", content=hook_body(), headers=headers)


def token_request(url: str) -> httpx.Response:
    payload = {"user_id": USER_ID, "challenge_id": "chl_1", "key": "kyc_review"}
    return httpx.post(url + "/verification-token", json=payload, headers=bearer(API_KEY))


def test_the_public_listener_serves_only_what_prelude_needs(serve: Runner) -> None:
    served = serve(internal=True)
    assert {"/hooks/stepup", "/.well-known/jwks.json", "/healthz", "/readyz"} == PUBLIC_PATHS
    for method, path in INTERNAL_ONLY:
        answer = httpx.request(method, served.url + path, headers=bearer(ADMIN_TOKEN))
        assert answer.status_code == 404, path
        assert answer.json() == {"error": "not_found", "detail": "Not Found"}
    assert hook(served.url).json()["status"] == "review"
    assert httpx.get(served.url + "/.well-known/jwks.json").json()["keys"]
    assert httpx.get(served.url + "/readyz").json()["status"] == "ready"
    # The internal listener serves everything, the public paths included.
    assert httpx.get(served.internal_url + "/openapi.json").json()["openapi"].startswith("3.")
    assert httpx.get(served.internal_url + "/healthz").json() == {"status": "ok"}


def test_both_listeners_share_one_set_of_collaborators(serve: Runner) -> None:
    """A step recorded through the public listener is claimed through the internal one: one
    process, one in-memory store, one key set."""
    served = serve(internal=True)
    assert hook(served.url).json()["status"] == "review"
    issued = token_request(served.internal_url)
    assert issued.status_code == 200, issued.text
    keys = httpx.get(served.internal_url + "/admin/keys", headers=bearer(ADMIN_TOKEN)).json()
    assert issued.json()["kid"] in {key["kid"] for key in keys["keys"]}
    public_jwks = httpx.get(served.url + "/.well-known/jwks.json").json()
    assert issued.json()["kid"] in {key["kid"] for key in public_jwks["keys"]}


def test_without_an_internal_listener_everything_is_on_one_port(serve: Runner) -> None:
    served = serve()
    assert hook(served.url).json()["status"] == "review"
    assert token_request(served.url).status_code == 200
    admin = httpx.get(served.url + "/admin/keys", headers=bearer(ADMIN_TOKEN))
    assert admin.status_code == 200 and admin.json()["keys"]
    assert "/verification-token" in httpx.get(served.url + "/openapi.json").json()["paths"]


def test_uvicorn_access_log_is_off(serve: Runner) -> None:
    served = serve(HOOK_LOG_LEVEL="INFO")
    assert httpx.get(served.url + "/healthz?marker=access-line").status_code == 200
    served.process.terminate()
    served.process.wait(timeout=15)
    output = served.output()
    assert "Application startup complete" in output  # uvicorn logged, at INFO
    assert "access-line" not in output and '"GET /healthz' not in output


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"HOOK_INTERNAL_PORT": "{port}"}, "HOOK_INTERNAL_PORT must differ from HOOK_PORT"),
        ({"HOOK_INTERNAL_HOST": "127.0.0.1"}, "HOOK_INTERNAL_HOST is set without"),
        ({"HOOK_INTERNAL_PORT": "70000"}, "HOOK_INTERNAL_PORT must be from 1 to 65535"),
        ({"HOOK_READ_TIMEOUT": "0"}, "HOOK_READ_TIMEOUT must be from 1 to 300"),
        ({"HOOK_READ_TIMEOUT": "soon"}, "HOOK_READ_TIMEOUT must be a duration"),
        ({"HOOK_MAX_CONNECTIONS": "0"}, "HOOK_MAX_CONNECTIONS must be from 1"),
        ({"HOOK_MAX_CONNECTIONS": "{hard}"}, "HOOK_MAX_CONNECTIONS={hard} on 1 listener(s)"),
        ({"HOOK_WORKERS": "2"}, "HOOK_WORKERS above 1 needs HOOK_REDIS_URL"),
        ({"HOOK_WORKERS": "0"}, "HOOK_WORKERS must be from 1 to 64"),
    ],
)
def test_serve_refuses_bad_server_settings_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], message: str
) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert hard != resource.RLIM_INFINITY, "this check needs a finite open-file limit"
    env = serve_env(tmp_path, HOOK_PORT="18000")
    env.update({name: value.format(port=18000, hard=hard) for name, value in variables.items()})
    for name in [name for name in env if name.startswith("HOOK_")]:
        monkeypatch.setenv(name, env[name])
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code == 2, result.output
    assert message.format(hard=hard) in result.output


def test_serve_names_the_port_it_cannot_listen_on(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # A neighbouring port may be in use too (CI saw port + 1 taken): ask the kernel for one.
        env = serve_env(tmp_path, HOOK_PORT=str(free_port()))
        env["HOOK_INTERNAL_PORT"] = str(port)
        result = CliRunner().invoke(cli, ["serve"], env=env)
    assert result.exit_code == 2, result.output
    assert f"HOOK_INTERNAL_PORT: cannot listen on 127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output
