"""The documents a newcomer follows: no NaN-dodging comparison, a module tree that matches the
code, links that resolve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
POLICIES = [
    *sorted((ROOT / "hook_service" / "policies").glob("*.yaml")),
    *sorted((ROOT / "hook_service" / "simulator" / "scenarios").glob("*.yaml")),
]

# double() of metadata anywhere, and a comparison on double(...) in either order. Any comparison
# with NaN is false, so "NaN" would skip the rule it guards; number() refuses it (docs/policy.md).
# A document that explains the pitfall may show it in prose, never in a `when`.
_DOUBLE_OF_METADATA = re.compile(r"double\(\s*metadata\b")
_COMPARED = re.compile(
    r"(?P<neg>!\(\s*)?double\([^()]*\)\s*(<=|>=|<|>|==|!=)|(<=|>=|<|>|==|!=)\s*double\("
)
_WHEN = re.compile(r"when:\s*(?P<q>['\"])(?P<expr>.*?)(?P=q)\s*(#.*)?$", re.MULTILINE)


def nan_dodging(text: str) -> list[str]:
    found = [m.group(0) for m in _COMPARED.finditer(text) if not m.group("neg")]
    return found + _DOUBLE_OF_METADATA.findall(text)


def test_the_checker_accepts_number_and_flags_double_of_metadata() -> None:
    assert nan_dodging("has(metadata.amount) && number(metadata.amount) >= 1000.0") == []
    assert nan_dodging("1000.0 <= number(metadata.amount)") == []
    assert nan_dodging("double(metadata.amount) >= 1000.0")
    assert nan_dodging("1000.0 <= double(metadata.amount)")
    assert nan_dodging("!(double(metadata.amount) < 1000.0)")  # safe, but number() is the form
    assert nan_dodging("double(signals.score) > 0.5")


def when_expressions(text: str) -> list[str]:
    return [m.group("expr") for m in _WHEN.finditer(text)]


@pytest.mark.parametrize("path", DOCS + POLICIES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_document_shows_a_comparison_that_nan_dodges(path: Path) -> None:
    # Policies are checked whole; documents in their `when:` lines (docs/policy.md explains
    # the pitfall in prose) and code blocks that are not YAML examples.
    text = path.read_text()
    if path.suffix == ".yaml":
        assert nan_dodging(text) == []
    for expr in when_expressions(text):
        assert nan_dodging(expr) == [], expr


def test_the_documents_show_number_for_amounts() -> None:
    policy_doc = (ROOT / "docs" / "policy.md").read_text()
    example = yaml.safe_load((ROOT / "hook_service" / "policies" / "example.yaml").read_text())
    assert any("number(metadata.amount) >= 1000.0" in e for e in when_expressions(policy_doc))
    whens = [
        rule.get("when", "") for scope in example["scopes"].values() for rule in scope["rules"]
    ]
    assert any("number(metadata.amount)" in w for w in whens)


def module_map() -> set[str]:
    text = (ROOT / "docs" / "code.md").read_text()
    block = text[text.index("<!-- module-tree") : text.index("<!-- module-tree:end -->")]
    lines = block.split("```")[1].strip().splitlines()
    assert lines[0] == "hook_service/"
    return {line.split()[0] for line in lines[1:]}


def test_the_module_map_matches_the_package() -> None:
    package = ROOT / "hook_service"
    modules = set()
    for path in package.rglob("*"):
        relative = path.relative_to(package).as_posix()
        if path.suffix not in (".py", ".yaml") or "__pycache__" in relative:
            continue
        modules.add("simulator/" if relative.startswith("simulator/") else relative)
    listed = module_map()
    # Every module is listed (an __init__.py only when it says something); nothing listed is gone.
    assert {m for m in modules if not m.endswith("__init__.py")} - listed == set()
    assert listed - modules == set()


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", path.read_text()):
        assert (path.parent / target).exists(), f"{path.name}: {target}"
