"""The image is built and run, not only read (issue 13, point 7).

Bases made from Debian packages (no registry image can be pulled), the Dockerfile built on one
with ``--network host`` and the host's CA bundle as the ``ca_bundle`` secret (this machine's
egress inspects TLS, as many banks' proxies do), then ``compose.yaml`` started with Redis (a
second debootstrap base) and ``hook-service simulate run`` played from the host against the
published port, its backend and admin calls to the internal listener on the compose network
(reached from the host at the container's address there, never published). Everything this
test creates is removed at the end; a daemon it started is
stopped by its pid.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deploy.support import (
    ROOT,
    Docker,
    Rootfs,
    build_rootfs,
    docker_daemon,
    machine_lock,
    run,
    tool,
)

pytestmark = pytest.mark.slow

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
SERVICE_BASE = Rootfs("python", ("python3", "python3-venv"))
# The official redis image keeps its data in /data, owned by the redis user; so does this one.
REDIS_BASE = Rootfs("redis", ("redis-server",), ("install -d -o redis -g redis -m 0750 /data",))
BUILD_TIMEOUT = 480
HEALTHY_TIMEOUT = 120
SIMULATE_TIMEOUT = 180
IMAGE_PREFIX = "prelude-stepup-hook-test"


@pytest.fixture(scope="module")
def docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Docker]:
    with machine_lock(), docker_daemon(tmp_path_factory.mktemp("dockerd")) as daemon:
        yield daemon


def compose_command(docker: Docker) -> list[str]:
    """Debian's docker-compose, or the compose plugin of the client when it has one."""
    if shutil.which("docker-compose"):
        return [tool("docker-compose")]
    if docker("compose", "version", check=False).returncode == 0:
        return [docker.client, "compose"]
    return [tool("docker-compose")]  # fails, naming the package


@pytest.fixture(scope="module")
def images(docker: Docker) -> Iterator[dict[str, str]]:
    """The two bases imported and the service image built on the first; removed at the end."""
    tags = {
        "base": f"{IMAGE_PREFIX}/python-base:{SERVICE_BASE.key}",
        "redis": f"{IMAGE_PREFIX}/redis:{REDIS_BASE.key}",
        "service": f"{IMAGE_PREFIX}/service:{secrets.token_hex(4)}",
    }
    try:
        for tag, tarball in zip(
            (tags["base"], tags["redis"]), build_rootfs(SERVICE_BASE, REDIS_BASE), strict=True
        ):
            docker("import", str(tarball), tag, timeout=180)
        if not HOST_CA_BUNDLE.is_file():
            pytest.fail(f"{HOST_CA_BUNDLE} is missing: apt-get install ca-certificates")
        build = ["build", "--network", "host", "--build-arg", f"BASE={tags['base']}"]
        index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple")
        build += ["--build-arg", f"PIP_INDEX_URL={index}"]
        build += ["--secret", f"id=ca_bundle,src={HOST_CA_BUNDLE}", "--tag", tags["service"]]
        docker(*build, str(ROOT), timeout=BUILD_TIMEOUT)
        yield tags
    finally:
        docker("rmi", "--force", *tags.values(), timeout=60, check=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Deployment:
    """``compose.yaml`` as shipped, with an env file and one override: the simulator's Prelude
    JWKS mounted as ``HOOK_PRELUDE_JWKS_FILE``."""

    def __init__(self, docker: Docker, images: dict[str, str], workdir: Path) -> None:
        self.docker = docker
        self.api_key = "api-" + secrets.token_hex(16)
        self.redis_password = secrets.token_hex(16)
        self.port = free_port()
        self.prelude_key = workdir / "sim-prelude.pem"
        jwks = workdir / "sim-prelude-jwks.json"
        self.cli([*self.simulate, "jwks", "--create", "--prelude-key", str(self.prelude_key)])
        self.cli([*self.simulate, "jwks", "--prelude-key", str(self.prelude_key)], jwks)
        env = {
            "SERVICE_IMAGE": images["service"],
            "REDIS_IMAGE": images["redis"],
            "PUBLIC_PORT": str(self.port),
            "REDIS_PASSWORD": self.redis_password,
            "HOOK_PRELUDE_JWKS_FILE": "/etc/hook/prelude-jwks.json",
            "HOOK_API_KEYS": self.api_key,
            "HOOK_ADMIN_TOKENS": "admin-" + secrets.token_hex(16),
            "HOOK_KEY_ENCRYPTION_KEYS": base64.b64encode(secrets.token_bytes(32)).decode(),
            "HOOK_FACTS_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        }
        env_file = workdir / "compose.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()), encoding="utf-8")
        override = workdir / "compose.test.yaml"
        override.write_text(
            f"services:\n  hook:\n    volumes:\n      - {jwks}:/etc/hook/prelude-jwks.json:ro\n",
            encoding="utf-8",
        )
        self.project = "stepuphook" + secrets.token_hex(4)
        self.compose = [*compose_command(docker), "--project-name", self.project]
        self.compose += ["--env-file", str(env_file), "--project-directory", str(ROOT)]
        self.compose += ["--file", str(ROOT / "compose.yaml"), "--file", str(override)]

    simulate = (sys.executable, "-m", "hook_service", "simulate")

    @staticmethod
    def cli(command: list[str], out: Path | None = None) -> subprocess.CompletedProcess[str]:
        result = run(command, timeout=60)
        if out is not None:
            out.write_text(result.stdout, encoding="utf-8")
        return result

    def up(self) -> None:
        run([*self.compose, "up", "--detach", "--no-build"], timeout=120, env=self.docker.env)

    def down(self) -> None:
        down = [*self.compose, "down", "--volumes", "--remove-orphans", "--timeout", "10"]
        run(down, timeout=120, env=self.docker.env, check=False)

    def logs(self) -> str:
        logs = run([*self.compose, "logs", "--no-color"], timeout=60, env=self.docker.env)
        return logs.stdout[-4000:]

    def container(self, service: str) -> str:
        ids = run([*self.compose, "ps", "-q", service], timeout=60, env=self.docker.env)
        return ids.stdout.strip()

    def internal_url(self, container: str) -> str:
        """The internal listener at the container's address on the compose network."""
        networks: dict[str, Any] = self.docker.inspect(container)["NetworkSettings"]["Networks"]  # type: ignore[index]
        address = next(network["IPAddress"] for network in networks.values())
        return f"http://{address}:8001"

    def wait_healthy(self, container: str) -> dict[str, Any]:
        deadline = time.monotonic() + HEALTHY_TIMEOUT
        while True:
            state: dict[str, Any] = self.docker.inspect(container)["State"]  # type: ignore[assignment]
            if state.get("Health", {}).get("Status") == "healthy":
                return state
            if time.monotonic() > deadline or state["Status"] == "exited":
                pytest.fail(f"{container[:12]} not healthy: {state}\n{self.logs()}")
            time.sleep(1)


@pytest.fixture(scope="module")
def deployment(
    docker: Docker, images: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    deployment = Deployment(docker, images, tmp_path_factory.mktemp("compose"))
    try:
        deployment.up()
        yield deployment
    finally:
        deployment.down()


def test_the_simulator_passes_against_the_published_port(deployment: Deployment) -> None:
    hook = deployment.container("hook")
    deployment.wait_healthy(deployment.container("redis"))
    deployment.wait_healthy(hook)
    command = [*deployment.simulate, "run", "--url", f"http://127.0.0.1:{deployment.port}"]
    command += ["--internal-url", deployment.internal_url(hook)]
    command += ["--prelude-key", str(deployment.prelude_key), "--json"]
    env = {**os.environ, "SIMULATE_API_KEY": deployment.api_key}
    result = run(command, timeout=SIMULATE_TIMEOUT, env=env, check=False)
    report = json.loads(result.stdout)
    failed = [check for check in report["checks"] if not check["passed"]]
    assert result.returncode == 0, f"{failed}\n{deployment.logs()}"
    assert report["failed"] == 0 and report["passed"] is True
    groups = {check["group"] for check in report["checks"]}
    # Signed hook calls and a custom step taken end to end through Redis, not only /healthz.
    assert len(report["checks"]) >= 20 and len(groups) >= 3, groups


def test_the_container_runs_as_non_root_with_a_readyz_health_check(
    deployment: Deployment, images: dict[str, str]
) -> None:
    hook = deployment.container("hook")
    state = deployment.wait_healthy(hook)
    info = deployment.docker.inspect(hook)
    config: dict[str, Any] = info["Config"]  # type: ignore[assignment]
    assert config["User"] == "10001:10001"
    status = deployment.docker("exec", hook, "cat", "/proc/1/status").stdout
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    assert uids == ["10001"] * 4, status
    assert "/readyz" in " ".join(config["Healthcheck"]["Test"])
    assert state["Health"]["Log"][-1]["ExitCode"] == 0
    host_config: dict[str, Any] = info["HostConfig"]  # type: ignore[assignment]
    assert host_config["RestartPolicy"]["Name"] == "unless-stopped"


def test_only_the_public_listener_is_published(deployment: Deployment) -> None:
    container = deployment.container("hook")
    deployment.wait_healthy(container)
    hook = deployment.docker.inspect(container)
    ports: dict[str, Any] = hook["NetworkSettings"]["Ports"]  # type: ignore[index]
    published = {port: bindings for port, bindings in ports.items() if bindings}
    assert published == {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(deployment.port)}]}
    assert "8001/tcp" in ports  # the internal listener: exposed on the network, not published
    public = f"http://127.0.0.1:{deployment.port}"
    for path in ("/verification-token", "/admin/keys", "/openapi.json"):
        answer = httpx.get(public + path, timeout=10)
        assert (answer.status_code, answer.json()["error"]) == (404, "not_found"), path
    internal = httpx.get(deployment.internal_url(container) + "/openapi.json", timeout=10)
    assert internal.status_code == 200
    redis = deployment.docker.inspect(deployment.container("redis"))
    assert not any(redis["NetworkSettings"]["Ports"].values())  # type: ignore[index]


def test_redis_refuses_clients_without_the_password(deployment: Deployment) -> None:
    redis = deployment.container("redis")
    deployment.wait_healthy(redis)
    anonymous = deployment.docker("exec", redis, "redis-cli", "ping").stdout
    assert "NOAUTH" in anonymous
    env = ["--env", f"REDISCLI_AUTH={deployment.redis_password}"]
    assert deployment.docker("exec", *env, redis, "redis-cli", "ping").stdout.strip() == "PONG"
