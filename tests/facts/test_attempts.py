"""The attempt ids (facts/attempts.py): random, 96 bits, valid Attempt ids."""

from __future__ import annotations

import base64

from hook_service.facts.attempts import random_id
from hook_service.facts.base import HASH, Attempt


def test_attempt_ids_are_96_random_bits_in_unpadded_base64url() -> None:
    ids = {random_id() for _ in range(2000)}
    assert len(ids) == 2000  # 2000 draws of 96 bits: a repeat would be a broken generator
    for value in ids:
        assert len(value) == 16 and HASH.fullmatch(value) and "=" not in value
        assert len(base64.urlsafe_b64decode(value)) == 12
    # Every id is one an Attempt accepts.
    assert Attempt(id=random_id(), at=1.0, scope="transfer:write").id
    # Both alphabet ends show up over 2000 ids (not a hex or a standard-base64 encoding).
    joined = "".join(ids)
    assert "-" in joined and "_" in joined
