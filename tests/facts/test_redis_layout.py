"""The Redis layout's codec: ``decode`` of what the scripts return, against the decode it
replaced (tests/facts/references), on random histories and on replies no script writes."""

from __future__ import annotations

import random
from typing import Any

import pytest

from hook_service.facts import redis_layout
from hook_service.facts.logic import History
from tests.facts import references


def _outcome(state: list[Any], decode: Any) -> tuple[str, Any]:
    try:
        return "ok", decode(state)
    except Exception as exc:  # the error must be the same too: type and message
        return type(exc).__name__, str(exc)


def test_decode_gives_what_its_reference_gives_on_random_histories() -> None:
    rng = random.Random(13)
    for _ in range(2000):
        limits = rng.choice(references.LIMITS)
        h = references.history(rng, limits)
        state = references.reply(h, rng)
        decoded = redis_layout.decode(state)
        assert decoded == references.decode(state)
        assert isinstance(decoded, History)
        # A client with decode_responses: str replies, the same history.
        text = [
            [v.decode() for v in state[0]],
            None if state[1] is None else state[1].decode(),
            [v.decode() for v in state[2]],
            None if state[3] is None else state[3].decode(),
        ]
        assert redis_layout.decode(text) == decoded


@pytest.mark.parametrize(
    "held",
    [
        [],
        [b"d" + b"a" * 16, b"12"],
        [b"d" + b"a" * 16],  # odd: a field without a value
        [b"d" + b"a" * 16, b"12", b"v"],
        [b"", b"12"],  # an empty field name
        [b"x" + b"a" * 16, b"12"],  # an unknown kind of field
        [b"d\x00a", b"12", b"i" + b"b" * 16, b"13"],  # a NUL inside a field
        [b"d" + b"a" * 16, b"1\x002"],
        [b"d\xe9t\xe9", b"12"],  # not UTF-8
        [b"d\xed\xa0\x80", b"12"],  # an encoded surrogate: surrogatepass takes it
        [b"d\xc3", b"\xa9"],  # a character split across two items
        [b"d" + "é".encode(), "١٢".encode()],  # non-ASCII digits: int() takes them as text
        [b"d" + b"a" * 16, b" 12 "],
        [b"d" + b"a" * 16, b"1_2"],
        [b"d" + b"a" * 16, b"twelve"],
        [b"l", b"10,51.5,-0.12"],
        [b"l", b"10,51.5"],
        [b"v", b"10", b"v", b"11"],
        ["d" + "a" * 16, "12"],  # str items (a decoding client)
        [b"d" + b"a" * 16, "12"],  # mixed
        [b"d" + b"a" * 16, 12],  # an integer reply
        [bytearray(b"d" + b"a" * 16), b"12"],
    ],
)
def test_decode_of_any_history_hash_is_its_references(held: list[Any]) -> None:
    state = [held, b"100,5", [], None]
    assert _outcome(state, redis_layout.decode) == _outcome(state, references.decode)
