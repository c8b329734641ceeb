"""What a ``when`` expression names, read from its text: for the lints (``policy check``) and
the trace (``policy eval --trace``, DEBUG logs).

cel-expr-python does not expose the parsed expression, so this is a small tokenizer of CEL's
lexical grammar (cel-spec ``langdef.md``: identifiers, string literals with their prefixes and
triple quotes, numbers, operators, ``//`` comments). It only has to find references such as
``metadata.amount``, ``metadata["amount"]``, ``"amount" in metadata`` or ``facts.device_known``
and calls such as ``double(...)``; the expression has already compiled, so it is well formed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Final

# Order matters: comments and strings first (they may contain anything), then the longest
# operators. String prefixes: r/R (raw), b/B (bytes), in either order.
_TOKEN: Final = re.compile(
    r"""
    (?P<space>\s+|//[^\n]*)
  | (?P<string>(?:[rR][bB]?|[bB][rR]?)?(?:\"\"\"(?:\\.|[^\\])*?\"\"\"|'''(?:\\.|[^\\])*?'''
                 |"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'))
  | (?P<number>0[xX][0-9a-fA-F]+[uU]?|[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?[uU]?
                 |\.[0-9]+(?:[eE][+-]?[0-9]+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>&&|\|\||<=|>=|==|!=|[-+*/%!<>?:.,()\[\]{}])
    """,
    re.VERBOSE | re.DOTALL,
)
COMPARISONS: Final = frozenset({"<", "<=", ">", ">=", "==", "!="})
# The request's maps whose keys a rule may name (HookRequest.cel_context and Policy.context).
MAPS: Final = ("metadata", "signals", "facts")


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "string", "number", "ident" or "op"
    text: str  # as written
    value: str  # a string's content (prefix and quotes removed), else the text


def tokens(expr: str) -> list[Token]:
    """The tokens of ``expr``, without spaces and comments (unknown characters are skipped)."""
    out: list[Token] = []
    position = 0
    while position < len(expr):
        match = _TOKEN.match(expr, position)
        if match is None:  # not CEL; the compiler has refused it already
            position += 1
            continue
        position = match.end()
        kind = match.lastgroup or "op"
        text = match.group()
        if kind == "space":
            continue
        value = text
        if kind == "string":
            body = text.lstrip("rRbB")
            quote = 3 if body[:3] in ('"""', "'''") else 1
            value = body[quote:-quote]
        out.append(Token(kind, text, value))
    return out


def normalized(expr: str) -> str:
    """``expr`` without spaces and comments: two ``when`` that normalize alike are the same."""
    return " ".join(token.text for token in tokens(expr))


def references(expr: str) -> dict[str, list[str]]:
    """The keys of ``metadata``, ``signals`` and ``facts`` that ``expr`` names, in order of
    first appearance, per map: ``m.key``, ``m["key"]`` and ``"key" in m``."""
    found: dict[str, list[str]] = {name: [] for name in MAPS}
    toks = tokens(expr)
    for index, token in enumerate(toks):
        if token.kind != "ident" or token.text not in MAPS:
            continue
        if index > 0 and toks[index - 1].text == ".":
            continue  # x.metadata is a field of something else
        key = _key_after(toks, index)
        if key is None and index >= 2 and toks[index - 1].text == "in":
            before = toks[index - 2]
            key = before.value if before.kind == "string" else None
        if key is not None and key not in found[token.text]:
            found[token.text].append(key)
    return found


def _key_after(toks: list[Token], index: int) -> str | None:
    rest = toks[index + 1 : index + 4]
    if len(rest) >= 2 and rest[0].text == "." and rest[1].kind == "ident":
        return rest[1].text
    if len(rest) == 3 and rest[0].text == "[" and rest[1].kind == "string" and rest[2].text == "]":
        return rest[1].value
    return None


def show_reference(name: str, key: str) -> str:
    """``metadata.amount``, or ``metadata["a b"]`` for a key that is not an identifier."""
    return f"{name}.{key}" if key.isidentifier() and key.isascii() else f"{name}[{json.dumps(key)}]"
