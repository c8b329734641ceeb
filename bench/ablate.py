"""Where the whole hook's time goes: the in-process hook with one part switched off at a time
(``python -m bench.ablate``; docs/benchmarks.md, "Where the time goes").

:mod:`bench.parts` times each part alone, in a tight loop; the parts then add up to about a
third of the whole call, because a part called among all the others costs more than alone
(the interpreter's caches are shared with the rest of the call). This module answers the
other question, what the whole call saves when a part is not there: the ``otp-only`` call
through the ASGI app (with the in-memory store, as ``--dev``), 8 calls at a time on one
uvloop event loop as ``serve`` runs them, once whole and once without each part, the cases
interleaved round by round (a shared machine's other load then falls on every case alike) and
each case's best round kept. The differences are the parts' costs inside the call. Nothing
here is a configuration of the service: the parts are switched off by replacing module
attributes in this process only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uvloop

from hook_service import logs, metrics
from hook_service.app import create_app
from hook_service.endpoints import observe
from hook_service.hook.signature import SignatureCheck
from hook_service.settings import Settings
from hook_service.simulator.prelude import PreludeKeys

from . import bare_app, parts, prepare

CONCURRENCY = 8  # the bench's wrk connections
DISTINCT = 200  # distinct signed calls per case, cycled
Case = Callable[[], contextlib.AbstractContextManager[None]]


@contextlib.contextmanager
def _replaced(target: Any, name: str, value: Any) -> Iterator[None]:
    saved = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, saved)


def _nothing(*args: Any, **kwargs: Any) -> None:
    return None


@contextlib.contextmanager
def _no_metrics() -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for name in ("request", "decision", "hook_seconds", "replay", "token", "on_error"):
            stack.enter_context(_replaced(metrics, name, _nothing))
        yield


async def _passthrough(self: observe.RequestObserver, scope: Any, receive: Any, send: Any) -> None:
    await self.app(scope, receive, send)


async def _unchecked(self: SignatureCheck, body: bytes, signature: Any, key_id: Any) -> None:
    return None


def measure(rounds: int, count: int) -> list[tuple[str, float]]:
    """``(case, CPU seconds per call)``: the whole hook, without each part, and the floors."""
    keys = PreludeKeys.generate()
    work = Path(tempfile.mkdtemp(prefix="hook-ablate-"))
    jwks_file = work / "prelude_jwks.json"
    jwks_file.write_text(json.dumps(keys.jwks()))
    loop = uvloop.new_event_loop()
    sink = open(os.devnull, "w")  # noqa: SIM115 - the request lines' stream for the whole run
    apps = {}
    for replay in (True, False):
        settings = Settings.from_env(
            prelude_jwks_file=jwks_file,
            api_keys=("k" * 24,),
            keys_dir=work / "keys",
            replay_window=600 if replay else 0,
        )
        app = create_app(settings)
        loop.run_until_complete(app.state.services.startup())
        apps[replay] = app
    for handler in logging.root.handlers:
        if isinstance(handler, logs.LineHandler):
            handler.setStream(sink)
    floors = bare_app.build(jwks_file)
    requests = []
    for index in range(DISTINCT):
        body = prepare.hook_body(index, amount="50")
        requests.append((body, dict(prepare.hook_request(keys, body).headers)))

    def calls(app: Any, path: str) -> list[Callable[[], Any]]:
        return [parts.asgi_call(app, parts.http_scope(path, h, b), b) for b, h in requests]

    fresh = apps[False]
    hook = fresh.state.services.hook
    decider = hook._decider

    def core(body: bytes, headers: dict[str, str]) -> Callable[[], Any]:
        signature = headers["X-Webhook-Signature"]
        key_id = headers["X-Webhook-Signature-Key-Id"]
        return lambda: hook.answer(body, signature=signature, key_id=key_id)

    cases: dict[str, tuple[list[Callable[[], Any]], Case]] = {
        "the whole hook, a replay (HOOK_REPLAY_WINDOW=600)": (
            calls(apps[True], "/hooks/stepup"),
            contextlib.nullcontext,
        ),
        "the whole hook, decided (HOOK_REPLAY_WINDOW=0)": (
            calls(fresh, "/hooks/stepup"),
            contextlib.nullcontext,
        ),
        "  without the request line": (
            calls(fresh, "/hooks/stepup"),
            lambda: _replaced(logs, "request_line", _nothing),
        ),
        "  without the metrics": (calls(fresh, "/hooks/stepup"), _no_metrics),
        "  without the request middleware (id, line, metrics)": (
            calls(fresh, "/hooks/stepup"),
            lambda: _replaced(observe.RequestObserver, "__call__", _passthrough),
        ),
        "  without the facts (attempt, history)": (
            calls(fresh, "/hooks/stepup"),
            lambda: _replaced(decider, "_history", None),
        ),
        "  without HTTP (StepUpHook.answer alone: no app, endpoint or middleware)": (
            [core(b, h) for b, h in requests],
            contextlib.nullcontext,
        ),
        "  without the signature check": (
            calls(fresh, "/hooks/stepup"),
            lambda: _replaced(SignatureCheck, "verify", _unchecked),
        ),
        "signed floor": (calls(floors, "/signed"), contextlib.nullcontext),
        "bare route": (calls(floors, "/"), contextlib.nullcontext),
    }

    async def run(batch: list[Callable[[], Any]], total: int) -> None:
        async def worker(first: int) -> None:
            for index in range(first, total, CONCURRENCY):
                await batch[index % len(batch)]()
                # A call to the in-memory store never waits: without a turn of the loop per
                # call (a server has one, reading the next request) the background writes
                # would pile up, then be dropped, and go uncounted.
                await asyncio.sleep(0)

        await asyncio.gather(*(worker(w) for w in range(CONCURRENCY)))

    for batch, case in cases.values():  # warm-up: imports, caches, replay records
        with case():
            loop.run_until_complete(run(batch, 2 * DISTINCT))
    gc.collect()
    gc.freeze()  # as serve does after start-up (server.FrozenAfterStartup)
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(rounds):
        for name, (batch, case) in cases.items():
            with case():
                start = time.process_time()
                loop.run_until_complete(run(batch, count))
                best[name] = min(best[name], (time.process_time() - start) / count)
    for app in apps.values():
        loop.run_until_complete(app.state.services.aclose())
    loop.close()
    sink.close()
    return list(best.items())


def table(results: list[tuple[str, float]]) -> str:
    """The Markdown table of docs/benchmarks.md: each case and its difference to the whole."""
    whole = dict(results)["the whole hook, decided (HOOK_REPLAY_WINDOW=0)"]
    lines = ["| case (`otp-only`, in process, 8 at a time) | CPU per call | the part |"]
    lines.append("|---|---|---|")
    for name, seconds in results:
        part = f"{(whole - seconds) * 1e6:.1f} µs" if name.startswith("  without") else ""
        lines.append(f"| {name.strip()} | {seconds * 1e6:.1f} µs | {part} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ablate", description=__doc__)
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds")
    parser.add_argument("--count", type=int, default=1000, help="calls per case and round")
    args = parser.parse_args(argv)
    print(table(measure(args.rounds, args.count)))


if __name__ == "__main__":
    main()
