"""Where the hook's time goes: CPU time per request of each part of the hot path, in this
process (``python -m bench.parts``; docs/benchmarks.md, "Where the time goes").

No server and no load generator: each part is called on its own, over and over, with the
inputs of the bench's ``otp-only`` hook call, and timed with :func:`time.process_time` (best of
several rounds, so another process on a shared machine only costs rounds, not the figure).
The whole hook and the signed floor are driven through their ASGI apps the same way (a fake
``receive``/``send``; the HTTP parser and the socket are left out, they are the same for both).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from hook_service import logs, metrics
from hook_service.app import create_app
from hook_service.endpoints.stepup import DecisionResponse
from hook_service.hook.parse import parse_hook_request
from hook_service.hook.stepup import request_origin
from hook_service.settings import Settings
from hook_service.simulator.prelude import PreludeKeys

from . import bare_app, prepare

ROUNDS = 15


def best_of(call: Callable[[], object], count: int, rounds: int = ROUNDS) -> float:
    """The least CPU seconds per call of ``call`` over ``rounds`` rounds of ``count`` calls."""
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(count):
            call()
        best = min(best, (time.process_time() - start) / count)
    return best


def best_of_async(
    loop: asyncio.AbstractEventLoop, call: Callable[[], Awaitable[object]], count: int
) -> float:
    """:func:`best_of` for a coroutine function, each round one task running ``count`` calls."""

    async def batch() -> None:
        for _ in range(count):
            await call()

    best = float("inf")
    for _ in range(ROUNDS):
        start = time.process_time()
        loop.run_until_complete(batch())
        best = min(best, (time.process_time() - start) / count)
    return best


def http_scope(path: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The ASGI scope uvicorn would pass for a POST of ``body`` to ``path``."""
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    raw.append((b"content-length", str(len(body)).encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "POST",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": raw,
        "state": {},
    }


def asgi_call(app: Any, scope: dict[str, Any], body: bytes) -> Callable[[], Awaitable[None]]:
    """A coroutine function making one request to ``app``; a non-2xx answer raises."""

    async def call() -> None:
        sent = False
        status = 0

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(dict(scope), receive, send)
        if not 200 <= status < 300:
            raise RuntimeError(f"{scope['path']} answered {status}")

    return call


def measure(count: int) -> list[tuple[str, float]]:
    """``(part, CPU seconds per call)`` for each part, the whole hook and the floors."""
    keys = PreludeKeys.generate()
    work = Path(tempfile.mkdtemp(prefix="hook-parts-"))
    jwks_file = work / "prelude_jwks.json"
    jwks_file.write_text(json.dumps(keys.jwks()))
    settings = Settings.from_env(
        prelude_jwks_file=jwks_file, api_keys=("k" * 24,), keys_dir=work / "keys"
    )
    logs.configure_logging(settings)
    sink = open(os.devnull, "w")  # noqa: SIM115 - the request lines' stream for the whole run
    for handler in logging.root.handlers:
        if isinstance(handler, logs.LineHandler):
            handler.setStream(sink)
    app = create_app(settings)
    services = app.state.services
    loop = asyncio.new_event_loop()
    loop.run_until_complete(services.startup())

    body = prepare.hook_body(7, amount="50")
    request = prepare.hook_request(keys, body)
    headers = dict(request.headers)
    signature, kid = headers["X-Webhook-Signature"], headers["X-Webhook-Signature-Key-Id"]
    parsed = parse_hook_request(body)
    policy = services.policy
    decision = policy.decide(parsed)
    if decision.rule != "otp-only":
        raise RuntimeError(f"the bench body is decided by {decision.rule}, not otp-only")
    check = services.hook._signatures
    fields = {
        "request_id": "0" * 32,
        "method": "POST",
        "path": "/hooks/stepup",
        "status": 200,
        "duration_ms": 1.234,
        "scope": parsed.scope_requested,
        "user_id": parsed.user_id,
        "rule": decision.rule,
        "decision": decision.status,
        "policy_revision": policy.revision,
        "on_error": None,
    }

    async def respond() -> None:
        response = DecisionResponse(decision)

        async def send(message: Any) -> None:
            return None

        await response({"type": "http"}, _no_receive, send)

    def count_metrics() -> None:
        metrics.hook_seconds(0.001)
        metrics.decision(policy.scopes, parsed.scope_requested, decision.status, decision.rule)
        metrics.request("/hooks/stepup", 200, 0.001)

    floors = bare_app.build(jwks_file)
    scope = http_scope("/hooks/stepup", headers, body)
    few = max(1, count // 4)  # the calls with an RSA verification
    parts = [
        (
            "RSASSA-PSS signature check",
            best_of_async(loop, lambda: check.verify(body, signature, kid), few),
        ),
        ("parsing and validating the body", best_of(lambda: parse_hook_request(body), count)),
        ("CEL policy evaluation (decide)", best_of(lambda: policy.decide(parsed), count)),
        (
            "replay origin (BLAKE2b of signature and body)",
            best_of(lambda: request_origin(body, signature), count),
        ),
        ("building and sending the JSON response", best_of_async(loop, respond, count)),
        ("the request's log line", best_of(lambda: logs.request_line(fields), count)),
        ("metrics (3 series)", best_of(count_metrics, count)),
        (
            "the whole hook (ASGI, in process)",
            best_of_async(loop, asgi_call(app, scope, body), few),
        ),
        (
            "signed floor (ASGI, in process)",
            best_of_async(loop, asgi_call(floors, {**scope, "path": "/signed"}, body), few),
        ),
        (
            "bare route (ASGI, in process)",
            best_of_async(loop, asgi_call(floors, {**scope, "path": "/"}, body), count),
        ),
    ]
    loop.run_until_complete(services.aclose())
    loop.close()
    sink.close()
    return parts


async def _no_receive() -> dict[str, Any]:
    return {"type": "http.disconnect"}


def table(parts: list[tuple[str, float]]) -> str:
    """The Markdown table of docs/benchmarks.md, "Where the time goes"."""
    lines = ["| part of one hook call (`otp-only`) | CPU per call |", "|---|---|"]
    lines += [f"| {name} | {seconds * 1e6:.1f} µs |" for name, seconds in parts]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.parts", description=__doc__)
    parser.add_argument("--count", type=int, default=2000, help="calls per round")
    args = parser.parse_args(argv)
    print(table(measure(args.count)))


if __name__ == "__main__":
    main()
