"""Shared fixtures: a real, private ``redis-server`` (Redis is never mocked) and the anyio backend.

Use from any test module:

* ``redis_url`` (function scope): URL of the session's private server, running and flushed
  (FLUSHALL) before the test. Requesting it is what starts the server, so tests that do not need
  Redis never start one.
* ``redis_server`` (session scope): the :class:`RedisServer` behind ``redis_url``, for fault
  tests: ``.stop()``, ``.start()`` (same port, so URLs stay valid), ``.pause()``/``.resume()``
  (SIGSTOP/SIGCONT: a hung server), ``.url``, ``.port``, ``.pid``. ``redis_url``
  restarts/resumes it for the next test if a fault test failed half-way.
* ``redis_server_factory`` (function scope): ``make(*extra_args, password=None)`` starts an
  extra private server (e.g. with ``--requirepass``), stopped after the test.
* ``redis_or_cluster_url`` (function scope, two parameters): each of the two below.
* ``cluster_url`` (function scope): the URL of one node of the session's private Redis
  Cluster (three masters, no replicas, made with ``redis-cli --cluster create``), every
  master flushed before the test; ``redis_cluster`` (session scope) is the
  :class:`RedisClusterServers` behind it. Clients on it: ``tests.support.raw_redis``, and
  the stores with ``cluster=is_cluster(url)``.
* ``sentinel_group`` (session scope): a master, a replica and three Sentinels
  (:class:`tests.sentinels.SentinelGroup`); ``sentinel_deployment`` (function scope): it,
  emptied, as a :class:`~tests.sentinels.Deployment` whose writes wait for the replica;
  ``sentinel_group_factory``: a group of the test's own (failover tests: roles change).
* ``redis_deployment`` (function scope, parametrised): one Redis server, then Sentinel, then
  the Redis Cluster (slow): what the store and key-store behavioural suites run against.
* ``raw`` (function scope): a plain asyncio client (``decode_responses``) on ``redis_url``, to
  inspect what a store wrote.

If ``redis-server`` or ``redis-sentinel`` is not on PATH those fixtures FAIL (never skip): CI
must not silently drop the Redis tests.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
import redis
import redis.asyncio as aredis
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.testclient import TestClient

from bench.cluster import create_argv as cluster_create_argv
from hook_service import metrics
from hook_service._redis_target import RedisTarget
from hook_service.app import create_app
from hook_service.collaborators import claim_guard, open_key_store
from hook_service.facts.base import FactsStore
from hook_service.facts.memory import MemoryFactsStore
from hook_service.facts.redis import RedisFactsStore
from hook_service.keys.backends.base import KeyStore
from hook_service.keys.backends.file import FileKeyStore
from hook_service.settings import Settings
from hook_service.store.base import Store
from hook_service.store.memory import MemoryStore
from hook_service.store.redis import RedisStore

# Before support is first imported: its helpers assert, and their failures should explain.
pytest.register_assert_rewrite("tests.support")
from tests.sentinels import Deployment, SentinelGroup  # noqa: E402
from tests.support import (  # noqa: E402
    ADMIN_TOKEN,
    API_KEY,
    PRELUDE_JWKS_FILE,
    TEST_FACTS_KEY,
    TEST_KEK,
    FakeClock,
    KeyFactory,
    cluster_urls,
    free_port,
    is_cluster,
    stop_process,
    token_sealer,
)

_START_TIMEOUT = 10.0


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError:
        return False
    # A --requirepass server answers -NOAUTH before AUTH: it is up all the same.
    return reply.startswith((b"+PONG", b"-NOAUTH"))


class RedisServer:
    """One private ``redis-server`` process on 127.0.0.1, no persistence."""

    def __init__(
        self, binary: str, directory: Path, extra_args: tuple[str, ...] = (), password: str = ""
    ) -> None:
        self.binary = binary
        self.directory = directory
        self.extra_args = extra_args
        self.password = password
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        """Process id (raw signals; prefer :meth:`pause`/:meth:`resume`, which ``reset`` undoes)."""
        if self._process is None:
            raise RuntimeError("redis-server is not running")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start (or restart on the same port) and wait until it answers PING."""
        if self.running:
            return
        # The first start picks a free port; it may be taken in the meantime, so try a few.
        for _attempt in range(1 if self.port else 5):
            port = self.port or free_port()
            if self._spawn(port):
                self.port = port
                return
        log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
        pytest.fail(f"redis-server did not start on 127.0.0.1:{port}; log tail:\n{log}")

    def _spawn(self, port: int) -> bool:
        args = [self.binary, "--port", str(port), "--save", "", "--appendonly", "no"]
        args += ["--bind", "127.0.0.1", "--dir", str(self.directory), *self.extra_args]
        if self.password:
            args += ["--requirepass", self.password]
        with (self.directory / "redis.log").open("ab") as log:
            self._process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            if _answers_ping(port):
                return True
            time.sleep(0.02)
        self.stop()
        return False

    def stop(self) -> None:
        """Terminate the server (data is lost: no persistence)."""
        self.resume()  # a SIGSTOPped process would not act on SIGTERM
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, timeout=5)

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections but nothing answers (a hung server)."""
        if self.running and self._process is not None:
            os.kill(self._process.pid, signal.SIGSTOP)
            self._paused = True

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self._paused and self._process is not None:
            os.kill(self._process.pid, signal.SIGCONT)
        self._paused = False

    def reset(self) -> None:
        """Running, answering, and empty: the state every test starts from."""
        self.resume()
        self.start()
        client = redis.Redis.from_url(self.url, socket_timeout=5)
        try:
            client.config_set("maxmemory", 0)  # a fault test may have set it
            client.flushall()
        finally:
            client.close()


def _binary(name: str = "redis-server") -> str:
    binary = shutil.which(name)
    if binary is None:
        pytest.fail(
            f"{name} not found on PATH: the Redis tests need real servers "
            f"(`apt-get install {name}`, as `make test` does); they are never skipped",
            pytrace=False,
        )
    return binary


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(_binary(), tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis_server.reset()
    return redis_server.url


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aredis.Redis]:
    """A plain client to inspect what a store wrote (a real server, not a mock)."""
    client = aredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


class _Startable(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


_S = TypeVar("_S", bound=_Startable)


def _each_stopped(new: Callable[..., _S]) -> Iterator[Callable[..., _S]]:
    """A factory fixture's body: ``make(...)`` builds with ``new`` and starts; everything made
    is stopped after the test (also one whose start failed half-way)."""
    made: list[_S] = []

    def make(*args: Any, **kwargs: Any) -> _S:
        thing = new(*args, **kwargs)
        made.append(thing)
        thing.start()
        return thing

    try:
        yield make
    finally:
        for thing in made:
            thing.stop()


@pytest.fixture
def redis_server_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., RedisServer]]:
    binary = _binary()

    def new(*extra_args: str, password: str = "") -> RedisServer:
        return RedisServer(binary, tmp_path_factory.mktemp("redis"), extra_args, password)

    yield from _each_stopped(new)


def _sentinel_group(tmp_path_factory: pytest.TempPathFactory) -> SentinelGroup:
    binary, sentinel = _binary(), _binary("redis-sentinel")

    def make(*extra_args: str) -> RedisServer:
        server = RedisServer(binary, tmp_path_factory.mktemp("redis"), extra_args)
        server.start()
        return server

    return SentinelGroup(sentinel, make, tmp_path_factory.mktemp("sentinel"))


@pytest.fixture(scope="session")
def sentinel_group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    group = _sentinel_group(tmp_path_factory)
    try:
        group.start()
        yield group
    finally:
        group.stop()


@pytest.fixture
def sentinel_deployment(sentinel_group: SentinelGroup) -> Deployment:
    sentinel_group.reset()
    return sentinel_group.deployment(min_replicas=1)


@pytest.fixture
def sentinel_group_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[], SentinelGroup]]:
    yield from _each_stopped(lambda: _sentinel_group(tmp_path_factory))


@pytest.fixture(
    params=[
        "redis",
        pytest.param("sentinel", marks=pytest.mark.sentinel),
        pytest.param("cluster", marks=pytest.mark.slow),
    ]
)
def redis_deployment(request: pytest.FixtureRequest) -> Deployment:
    """One Redis server, then a Sentinel group (writes waiting for its replica), then the
    Redis Cluster (a node's URL; ``Deployment.url`` is that node, for ``raw_redis``)."""
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_url")
        return Deployment(url, url)
    if request.param == "cluster":
        node: str = request.getfixturevalue("cluster_url")
        return Deployment(RedisTarget(url=node, cluster=True), node)
    deployment: Deployment = request.getfixturevalue("sentinel_deployment")
    return deployment


class RedisClusterServers:
    """Three private ``redis-server`` masters (``cluster-enabled yes``, no replicas) joined
    into one Redis Cluster by ``redis-cli --cluster create``."""

    def __init__(self, binary: str, directory: Path) -> None:
        # The bus port is explicit: the default, port + 10000, may be out of range or taken.
        self.nodes = [
            RedisServer(
                binary,
                directory / f"node{i}",
                ("--cluster-enabled", "yes", "--cluster-port", str(free_port())),
            )
            for i in range(3)
        ]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> None:
        for node in self.nodes:
            node.directory.mkdir(parents=True, exist_ok=True)
            node.start()
        cli = _binary("redis-cli")
        create = cluster_create_argv(cli, [node.port for node in self.nodes])  # as bench's
        done = subprocess.run(create, capture_output=True, timeout=60, check=False)
        if done.returncode != 0 or not self._ready(deadline=time.monotonic() + 30):
            pytest.fail(f"redis-cli --cluster create failed:\n{done.stdout[-2000:]!r}")

    def _ready(self, deadline: float) -> bool:
        while time.monotonic() < deadline:
            if all(self._info(node.url).get("cluster_state") == "ok" for node in self.nodes):
                return True
            time.sleep(0.1)
        return False

    @staticmethod
    def _info(url: str) -> dict[str, Any]:
        client = redis.Redis.from_url(url, socket_timeout=5, decode_responses=True)
        try:
            return dict(client.cluster("info"))
        finally:
            client.close()

    def reset(self) -> None:
        """Every master empty (each holds a third of the slots)."""
        for node in self.nodes:
            client = redis.Redis.from_url(node.url, socket_timeout=5)
            try:
                client.flushall()
            finally:
                client.close()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    cluster = RedisClusterServers(_binary(), tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        cluster_urls.add(cluster.url)
        yield cluster
    finally:
        cluster_urls.discard(cluster.url)
        cluster.stop()


@pytest.fixture
def cluster_url(redis_cluster: RedisClusterServers) -> str:
    redis_cluster.reset()
    return redis_cluster.url


@pytest.fixture(params=["single", pytest.param("cluster", marks=pytest.mark.slow)])
def redis_or_cluster_url(request: pytest.FixtureRequest, redis_server: RedisServer) -> str:
    """``redis_url``, then ``cluster_url``: a module whose ``redis_url`` returns this runs
    every test on one Redis and on the cluster (``parametrize("redis_or_cluster_url",
    ["single"], indirect=True)`` keeps a fault test on the one server)."""
    if request.param == "cluster":
        return str(request.getfixturevalue("cluster_url"))
    redis_server.reset()
    return redis_server.url


# --- the application -----------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def new_key() -> Iterator[Callable[[], rsa.RSAPrivateKey]]:
    """The pre-generated signing keys, in order (tests/keys/hook_rsa_1..16.pem); running out
    fails the test."""
    supply = KeyFactory()
    yield supply
    supply.check()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        keys_dir=tmp_path / "keys",
        prelude_jwks_file=PRELUDE_JWKS_FILE,
        api_keys=(API_KEY,),
        admin_tokens=(ADMIN_TOKEN,),
        facts_key=TEST_FACTS_KEY,
    ).validated()


AppFactory = Callable[..., Starlette]


@pytest.fixture
def make_app(settings: Settings, clock: FakeClock) -> Iterator[AppFactory]:
    """Build an app on the test settings and the fake clock.

    ``make_app(redis_url)`` gives it a :class:`RedisStore` on that URL (several apps
    on one URL play several instances); other keyword arguments change settings. Apps on the
    same keys directory share one key store, as workers on one host share the directory.
    ``make_app(redis_url, keystore="redis")`` also keeps the keys in that Redis (KEK
    ``TEST_KEK``), each app with its own :class:`RedisKeyStore` and replica id, as replicas on
    several hosts; ``store_url=`` then puts the pending steps on another Redis (and the token
    issuer re-reads the key set around each claim instead of checking it there). All the apps
    of one test share the pre-generated signing keys; running out fails the test."""
    new_key = KeyFactory()
    key_stores: dict[Path, FileKeyStore] = {}
    replicas = iter(range(1, 100))

    def make(
        redis_url: str | None = None, *, store_url: str | None = None, **changes: Any
    ) -> Starlette:
        if changes.get("keystore") == "redis":
            changes.setdefault("redis_url", redis_url)
            changes.setdefault("redis_cluster", redis_url is not None and is_cluster(redis_url))
            changes.setdefault("key_encryption_keys", (TEST_KEK,))
            changes.setdefault("replica_id", f"replica-{next(replicas)}")
        app_settings = settings.replace(**changes) if changes else settings
        keys: KeyStore
        if app_settings.key_store == "redis":
            keys = open_key_store(app_settings, clock=clock, new_key=new_key)
        elif app_settings.keys_dir in key_stores:
            keys = key_stores[app_settings.keys_dir]
        else:
            keys = FileKeyStore(app_settings.keys_dir, clock=clock, new_key=new_key)
            key_stores[app_settings.keys_dir] = keys
        store_url = store_url or redis_url
        cluster = store_url is not None and is_cluster(store_url)
        store: Store = (
            RedisStore(store_url, sealer=token_sealer(), clock=clock, cluster=cluster)
            if store_url
            else MemoryStore(clock=clock)
        )
        # This wiring knows whether the key set is on the Redis where steps are claimed.
        same_redis = app_settings.key_store == "redis" and store_url == app_settings.redis_url
        guard = claim_guard(keys, same_redis=same_redis, cluster=cluster)
        facts: FactsStore = (
            RedisFactsStore(
                store_url, key=TEST_FACTS_KEY, on_error=metrics.store_error, cluster=cluster
            )
            if store_url
            else MemoryFactsStore(TEST_FACTS_KEY)
        )
        return create_app(
            app_settings, clock=clock, store=store, keys=keys, guard=guard, facts=facts
        )

    yield make
    new_key.check()


@pytest.fixture
def client(make_app: AppFactory) -> Iterator[TestClient]:
    with TestClient(make_app()) as test_client:
        yield test_client
