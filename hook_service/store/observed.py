"""The store as the metrics and traces see it: any :class:`~hook_service.store.base.Store`,
each call's failure reported to ``on_error(operation)`` and each call inside a span.

Pure like the stores' interface: the observers are injected callables (the metrics module's
``store_error`` and the tracing's spans), wired in :mod:`hook_service.services`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hook_service import errors
from hook_service.store.base import Claimed, KeySetGuard, PendingStep, Store
from hook_service.tokens.base import IssuedToken
from hook_service.tracing import Spans, no_span


class ObservedStore:
    """``store`` with its failures (:class:`errors.StoreUnavailable`) counted by operation."""

    def __init__(
        self, store: Store, on_error: Callable[[str], None], spans: Spans = no_span
    ) -> None:
        self.store = store
        self._on_error = on_error
        self._spans = spans

    def __repr__(self) -> str:
        return f"ObservedStore({self.store!r})"

    async def put_pending(
        self, steps: Sequence[PendingStep], *, within: float | None = None
    ) -> None:
        with self._spans("store.put_pending"):
            try:
                await self.store.put_pending(steps, within=within)
            except errors.StoreUnavailable:
                self._on_error("put_pending")
                raise

    async def ensure_pending(
        self, steps: Sequence[PendingStep], *, within: float | None = None
    ) -> None:
        with self._spans("store.ensure_pending"):
            try:
                await self.store.ensure_pending(steps, within=within)
            except errors.StoreUnavailable:
                self._on_error("ensure_pending")
                raise

    async def claim(
        self,
        user_id: str,
        key: str,
        issued: IssuedToken,
        now: float,
        guard: KeySetGuard | None = None,
        *,
        scope: str | None = None,
    ) -> Claimed | None:
        with self._spans("store.claim"):
            try:
                return await self.store.claim(user_id, key, issued, now, guard, scope=scope)
            except errors.StoreUnavailable:
                self._on_error("claim")
                raise

    async def ping(self) -> None:
        try:
            await self.store.ping()
        except errors.StoreUnavailable:
            self._on_error("ping")
            raise

    async def aclose(self) -> None:
        await self.store.aclose()
