"""The documents a newcomer follows: no NaN-dodging comparison, a module tree that matches the
code, links that resolve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
POLICIES = [
    *sorted((ROOT / "hook_service" / "policies").glob("*.yaml")),
    *sorted((ROOT / "hook_service" / "simulator" / "scenarios").glob("*.yaml")),
]

# A comparison on double(...) in either order. Any comparison with NaN is false, so unless it is
# negated (`!(double(x) < 1000.0)`), `"NaN"` skips the rule it guards (docs/policy.md).
_COMPARED = re.compile(
    r"(?P<neg>!\(\s*)?double\([^()]*\)\s*(<=|>=|<|>|==|!=)|(<=|>=|<|>|==|!=)\s*double\("
)


def nan_dodging(text: str) -> list[str]:
    return [m.group(0) for m in _COMPARED.finditer(text) if not m.group("neg")]


def test_the_checker_tells_the_safe_form_from_the_unsafe_one() -> None:
    assert nan_dodging("has(metadata.amount) && !(double(metadata.amount) < 1000.0)") == []
    assert nan_dodging("double(metadata.amount) >= 1000.0")
    assert nan_dodging("1000.0 <= double(metadata.amount)")


@pytest.mark.parametrize("path", DOCS + POLICIES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_document_shows_a_comparison_that_nan_dodges(path: Path) -> None:
    assert nan_dodging(path.read_text()) == []


def readme_tree() -> set[str]:
    text = (ROOT / "README.md").read_text()
    block = text[text.index("<!-- module-tree") : text.index("<!-- module-tree:end -->")]
    lines = block.split("```")[1].strip().splitlines()
    assert lines[0] == "hook_service/"
    return {line.split()[0] for line in lines[1:]}


def test_readme_module_tree_matches_the_package() -> None:
    package = ROOT / "hook_service"
    modules = set()
    for path in package.rglob("*"):
        relative = path.relative_to(package).as_posix()
        if path.suffix not in (".py", ".yaml") or "__pycache__" in relative:
            continue
        modules.add("simulator/" if relative.startswith("simulator/") else relative)
    listed = readme_tree()
    # Every module is listed (an __init__.py only when it says something); nothing listed is gone.
    assert {m for m in modules if not m.endswith("__init__.py")} - listed == set()
    assert listed - modules == set()


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", path.read_text()):
        assert (path.parent / target).exists(), f"{path.name}: {target}"
