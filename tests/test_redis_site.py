"""hook_service/_redis.py: the one Redis client factory and error guard of both Redis backends;
never a password in a message, a log line or an error."""

from __future__ import annotations

import logging

import pytest

from hook_service import errors
from hook_service._redis import RedisSite
from tests.support import free_port

pytestmark = pytest.mark.anyio

SECRET = "s3cr%40t-pw"  # percent-encoded in the URL: both spellings must be scrubbed


def test_scrub_removes_the_password_in_both_spellings_and_the_location_has_none() -> None:
    site = RedisSite(f"redis://user:{SECRET}@127.0.0.1:6379/0?password=other-pw")
    message = f"auth failed for {SECRET} / s3cr@t-pw / other-pw"
    assert site.scrub(message) == "auth failed for *** / *** / ***"
    assert site.location == "redis://127.0.0.1:6379/0"
    assert SECRET not in repr(site)


def test_a_bad_url_is_a_config_error_naming_the_server_without_its_password() -> None:
    site = RedisSite(f"redis://:{SECRET}@127.0.0.1:6379/0?socket_timeout=soon")
    with pytest.raises(errors.ConfigError) as caught:
        site.client(timeout=0.2)
    assert "127.0.0.1:6379" in str(caught.value)
    assert SECRET not in str(caught.value) and "s3cr@t" not in str(caught.value)


async def test_the_guard_turns_a_redis_failure_into_the_callers_error_and_logs_it_scrubbed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    site = RedisSite(f"redis://:{SECRET}@127.0.0.1:{free_port()}/0")  # nobody listens there
    client = site.client(timeout=0.2)
    log = logging.getLogger("tests.redis_site")
    try:
        with (
            caplog.at_level(logging.WARNING, logger=log.name),
            pytest.raises(errors.StoreUnavailable, match=r"^down: ConnectionError$") as caught,
            site.guard("ping", lambda name: errors.StoreUnavailable(f"down: {name}"), log=log),
        ):
            await client.ping()
    finally:
        await client.aclose()
    assert caught.value.__cause__ is None  # redis-py's exception (and its URL) stays behind
    assert "redis ping failed at redis://127.0.0.1:" in caplog.text
    assert SECRET not in caplog.text and "s3cr@t" not in caplog.text


def test_the_guard_lets_other_errors_through() -> None:
    site = RedisSite("redis://127.0.0.1:6379/0")
    with (
        pytest.raises(KeyError),
        site.guard("x", lambda name: errors.StoreUnavailable(name)),
    ):
        raise KeyError("not a Redis failure")
