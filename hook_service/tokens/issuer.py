"""``TokenIssuer``: sign, claim, check for revocation (design.md "POST /verification-token").

The one core object behind ``POST /verification-token``: given the subject the endpoint read
from the request, it signs a verification token with the active key, claims the pending step
(one step, one token; a retry of the same challenge gets the stored token), and refuses to
hand out a token whose key has since been revoked. Its :class:`~hook_service.tokens.base.
ClaimGuard` keeps the claim from passing a change of the key set. After a token's *first*
issuance it tells ``on_issued`` (the facts learn from it, design.md "Facts"). No HTTP, no Redis.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection

from hook_service import errors, logs
from hook_service.keys.lifecycle import KeySet
from hook_service.store.base import Claimed, Store
from hook_service.tokens.base import ClaimGuard, IssuedToken
from hook_service.tokens.jwt import mint_verification_token
from hook_service.tracing import Spans, no_span

# A claim that finds the key set changed is retried with the new set; more than a few changes
# during one request means something is churning the keys.
CLAIM_ATTEMPTS = 3

OnIssued = Callable[[str, str, str, int], Awaitable[None]]
"""``on_issued(user_id, scope, key, now)``: a token was issued for the first time for the
pending step ``key`` recorded for ``scope``. It must not raise: the token is issued."""


class TokenIssuer:
    """Issue verification tokens for the pending custom steps in ``store``; ``spans`` times
    the signing (tracing)."""

    def __init__(
        self,
        store: Store,
        guard: ClaimGuard,
        *,
        custom_steps: Collection[str],
        ttl: int,
        attempts: int = CLAIM_ATTEMPTS,
        on_issued: OnIssued | None = None,
        spans: Spans = no_span,
    ) -> None:
        self.store = store
        self.guard = guard
        self.custom_steps = custom_steps
        self.ttl = ttl
        self.attempts = attempts
        self.on_issued = on_issued
        self.spans = spans

    async def issue(
        self, user_id: str, challenge_id: str, key: str, now: int, scope: str | None = None
    ) -> IssuedToken:
        """The token for ``(user_id, key)``'s pending step, bound to ``challenge_id``; with
        ``scope`` (a challenge token's ``scope_requested``) the step must have been recorded
        for that scope, checked atomically with the claim (issue 10, point 11).

        Raises :class:`errors.NoPendingStep` (no such custom step, nothing pending, or pending
        for another scope),
        :class:`errors.StepAlreadyUsed` (another challenge got it, or its token's key has been
        revoked since), :class:`errors.KeySetChanged` when the key set kept changing, and the
        stores' own unavailability errors."""
        if key not in self.custom_steps:
            raise errors.NoPendingStep(f"{key!r} is not a custom step of the policy")
        result, fresh, recorded = await self._sign_and_claim(user_id, challenge_id, key, now, scope)
        latest = await self.guard.latest()
        if all(k.kid != result.kid for k in latest.published(now)):
            # A retry gets the token stored at its first claim: its key may have been revoked
            # since. Never hand out a token Prelude can no longer verify, nor keep a revoked
            # key's signature in circulation.
            raise errors.StepAlreadyUsed(
                "the token for this challenge was signed by a key that has since been revoked; "
                "start a new step-up"
            )
        # The request's line (docs/operations.md, "Logs") and the outcome metric.
        logs.note(
            token="issued" if fresh else "re-sent",
            jti=result.jti,
            kid=result.kid,
            user_id=user_id,
            key=key,
        )
        if fresh and self.on_issued is not None:
            await self.on_issued(user_id, recorded, key, now)
        return result

    async def _sign_and_claim(
        self, user_id: str, challenge_id: str, key: str, now: int, scope: str | None
    ) -> Claimed:
        key_set: KeySet = await self.guard.signing_set()
        for _ in range(self.attempts):
            with self.spans("tokens.sign"):
                issued = mint_verification_token(
                    key_set.active,
                    user_id=user_id,
                    challenge_id=challenge_id,
                    key=key,
                    now=now,
                    ttl=self.ttl,
                )
            claimed = await self.guard.claim(self.store, issued, now, key_set, scope)
            if claimed is not None:
                return claimed
            key_set = await self.guard.changed()  # another replica changed the keys
        raise errors.KeySetChanged(
            "the signing keys kept changing while issuing a token; try again"
        )
