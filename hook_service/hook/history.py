"""How the hook uses the facts store (issue 11 points 1, 3 and 6; design.md "Facts").

Cost rule: a scope whose rules read ``facts`` waits for :meth:`HookHistory.observe` (the facts
before this attempt, and the attempt recorded, in one round trip) within the decider's budget.
Any other scope never waits for the facts store: its attempt is recorded by a background task
(:class:`Background`) after the answer is known, so a hung store neither delays nor changes
that answer. The one exception is a decision with a custom step, which waits for the store
anyway (its pending step): its attempt is recorded before the step, in the same budget, so a
replay is known before it could touch the step.

Replays: the replay record of a request (:class:`~hook_service.facts.base.Once`) holds the
first answer as :func:`encode_answer` text; the decider turns it back with
:func:`decode_answer`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from hook_service import logs
from hook_service.clock import Clock
from hook_service.errors import HookError
from hook_service.facts.attempts import AttemptFactory
from hook_service.facts.base import REVIEW, Attempt, Facts, FactsStore, Once, Replay
from hook_service.hook.base import HookRequest
from hook_service.policy.base import Decision, Step
from hook_service.policy.schema import GRANT_MODES, KEY_PATTERN, MAX_SECONDS, STATUSES

logger = logging.getLogger(logs.HOOK)

# A background write gets this long (the store's own timeouts are shorter): a hung store
# costs one waiting task per request for at most this long.
BACKGROUND_TIMEOUT: Final = 2.0
# At most this many background writes at once; beyond it a write is dropped (and logged), so
# a hung store under load cannot pile up tasks without bound.
BACKGROUND_LIMIT: Final = 1000


class Background:
    """Fire-and-forget writes, each under its own timeout; the tasks are kept referenced
    (asyncio keeps only weak references) and bounded by ``limit``."""

    def __init__(self, timeout: float = BACKGROUND_TIMEOUT, limit: int = BACKGROUND_LIMIT) -> None:
        self._timeout = timeout
        self._limit = limit
        self._tasks: set[asyncio.Task[None]] = set()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._tasks)

    def run(self, what: str, write: Callable[[], Awaitable[object]]) -> None:
        """Start ``write()`` in the background; ``what`` names it in the log."""
        if len(self._tasks) >= self._limit:
            self.dropped += 1
            logger.warning("facts %s dropped: %d background writes pending", what, self._limit)
            return
        task = asyncio.get_running_loop().create_task(self._guarded(what, write))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, what: str, write: Callable[[], Awaitable[object]]) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await write()
        except TimeoutError:
            logger.warning("facts %s timed out after %g s", what, self._timeout)
        except HookError as exc:
            logger.warning("facts %s failed: %s", what, exc.detail)
        except Exception:
            logger.exception("facts %s failed", what)

    async def drain(self, timeout: float = BACKGROUND_TIMEOUT) -> None:
        """Wait up to ``timeout`` for the pending writes, then cancel what is left (shutdown)."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)


@dataclass(frozen=True, slots=True)
class Answered:
    """A decoded replay record: the decision, the custom step keys it recorded as pending and
    their expiry (Unix seconds)."""

    decision: Decision
    custom: tuple[str, ...]
    until: float


def encode_answer(decision: Decision, custom: tuple[str, ...], until: float) -> str:
    """The replay record's answer: what a replay must get back and the steps to ensure."""
    steps = [[s.order, s.key, s.expiration_duration] for s in decision.steps]
    record = {
        "s": decision.status,
        "g": decision.grant_mode,
        "f": decision.granted_for,
        "t": steps,
        "r": decision.rule,
        "c": list(custom),
        "u": until,
        "v": decision.revision,  # the policy revision that decided (the request line shows it)
    }
    if decision.error is not None:
        record["e"] = decision.error
    return json.dumps(record, separators=(",", ":"))


def decode_answer(text: str) -> Answered:
    """The :class:`Answered` of :func:`encode_answer` text; ValueError when malformed."""
    try:
        r = json.loads(text)
        steps = tuple((int(o), str(k), int(d)) for o, k, d in r["t"])
        error = r.get("e")
        if error is not None and not isinstance(error, str):
            raise ValueError("error")
        decision = _decision(
            str(r["s"]), str(r["g"]), int(r["f"]), steps, str(r["r"]), error, str(r.get("v", ""))
        )
        return Answered(decision, tuple(str(c) for c in r["c"]), float(r["u"]))
    except (KeyError, TypeError, ValueError, ArithmeticError, RecursionError) as exc:
        # OverflowError: a number too large for int() or float(); RecursionError: nesting.
        raise ValueError(f"malformed replay record: {type(exc).__name__}") from None


@functools.lru_cache(maxsize=1024)
def _decision(
    status: str,
    grant_mode: str,
    granted_for: int,
    steps: tuple[tuple[int, str, int], ...],
    rule: str,
    error: str | None,
    revision: str,
) -> Decision:
    # A policy gives few distinct answers, and a Decision is immutable: the replays of them
    # share one, its body encoded once (6.9 -> 3.3 µs a decode, measured alone; issue 15,
    # point 3). The fields come converted (int, str), so equal keys are equal decisions.
    if not _valid_answer(status, grant_mode, granted_for, steps, rule):
        # A record changed in the store (Redis) must fail as malformed, never go out as an
        # answer no policy can give (contract 3) or a rule X-Hook-Rule cannot carry (a 500 to
        # Prelude). Raised, not cached: this runs once per distinct answer.
        raise ValueError("answer")
    return Decision(
        status,
        grant_mode,
        granted_for,
        tuple(Step(o, k, d) for o, k, d in steps),
        rule,
        error,
        revision=revision,
    )


def _valid_answer(
    status: str,
    grant_mode: str,
    granted_for: int,
    steps: tuple[tuple[int, str, int], ...],
    rule: str,
) -> bool:
    """Whether a replay record's answer is one a policy could have given: what the policy
    file's checks allow (policy/schema.py), steps in order 1..n for a review only."""
    return (
        status in STATUSES
        and grant_mode in GRANT_MODES
        and 1 <= granted_for <= MAX_SECONDS
        and bool(steps) == (status == "review")
        and all(
            order == index and KEY_PATTERN.fullmatch(key) and 1 <= duration <= MAX_SECONDS
            for index, (order, key, duration) in enumerate(steps, 1)
        )
        and KEY_PATTERN.fullmatch(rule) is not None
    )


@dataclass(frozen=True, slots=True)
class Observed:
    """What :meth:`HookHistory.observe` found: the facts before ``attempt`` (recorded
    undecided), or the replay of an earlier request (``attempt`` then recorded nowhere)."""

    attempt: Attempt
    once: Once | None
    facts: Facts | Replay | None  # None: recorded without reading the facts


class HookHistory:
    """The hook's side of the facts: attempts of requests (``attempts``) observed or recorded
    in ``facts``; replays recognised within ``window`` seconds (0: off)."""

    def __init__(
        self,
        facts: FactsStore,
        attempts: AttemptFactory,
        clock: Clock,
        *,
        window: int,
        background: Background | None = None,
    ) -> None:
        self._facts = facts
        self._attempts = attempts
        self._clock = clock
        self._window = window
        self.background = background or Background()

    def once(self, body: bytes, signature: str | None) -> Once | None:
        """The replay check of a request (None: replays are not checked)."""
        return self._attempts.once(body, signature, self._window)

    def _attempt(self, request: HookRequest) -> Attempt:
        return self._attempts.attempt(request.scope_requested, request.signals, self._clock())

    async def observe(self, request: HookRequest, once: Once | None) -> Observed:
        """The facts before this request, which is recorded undecided (awaited: the caller
        bounds it with its budget), or its replay."""
        attempt = self._attempt(request)
        now = self._clock()
        if once is None:
            facts: Facts | Replay = await self._facts.observe(request.user_id, attempt, now)
        else:
            facts = await self._facts.observe_once(request.user_id, attempt, now, once)
        return Observed(attempt, once, facts)

    def settle_later(
        self,
        request: HookRequest,
        observed: Observed,
        decision: Decision,
        custom: tuple[str, ...],
        until: float,
    ) -> None:
        """Complete ``observed`` with ``decision`` (``custom``: its custom step keys, pending
        until ``until``) in the background. Only a review can be proved, but any answer goes
        to the replay record."""
        once = observed.once
        if decision.status != REVIEW and once is None:
            return
        settled = observed.attempt.settled(decision.status, custom, until)
        once = _answering(once, decision, custom, until)
        user_id, now = request.user_id, self._clock()
        self.background.run("settle", lambda: self._facts.settle(user_id, settled, now, once))

    async def record_now(
        self,
        request: HookRequest,
        decision: Decision,
        custom: tuple[str, ...],
        until: float,
        once: Once,
    ) -> Observed:
        """Record this decided request (awaited) with an undecided replay record, or find
        that it is a replay (``facts`` is then the :class:`Replay`, else None). The caller
        settles it (:meth:`settle_later`) once its answer stands."""
        attempt = self._attempt(request).settled(decision.status, custom, until)
        replay = await self._facts.record(request.user_id, attempt, self._clock(), once)
        return Observed(attempt, once, replay)

    def record_later(
        self,
        request: HookRequest,
        decision: Decision,
        custom: tuple[str, ...],
        until: float,
        once: Once | None,
    ) -> None:
        """Record this decided request in the background (a replay is not recorded)."""
        attempt = self._attempt(request).settled(decision.status, custom, until)
        once = _answering(once, decision, custom, until)
        user_id, scope, now = request.user_id, request.scope_requested, self._clock()

        async def write() -> None:
            if await self._facts.record(user_id, attempt, now, once) is not None:
                logger.info("replay scope=%s user_id=%s: not recorded again", scope, user_id)

        self.background.run("record", write)


def _answering(
    once: Once | None, decision: Decision, custom: tuple[str, ...], until: float
) -> Once | None:
    """``once`` carrying ``decision`` as the answer its replays get."""
    if once is None:
        return None
    return Once(once.digest, once.window, encode_answer(decision, custom, until))
