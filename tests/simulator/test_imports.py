"""The simulator is written from the contract alone: it imports nothing from ``hook_service``
outside ``hook_service.simulator``, so a bug in the service's own checks cannot hide itself."""

from __future__ import annotations

import ast
from pathlib import Path

import hook_service.simulator

PACKAGE = Path(hook_service.simulator.__file__).parent


def package_of(path: Path) -> str:
    """The dotted package a module file of the simulator belongs to."""
    parts = path.relative_to(PACKAGE).parent.parts
    return ".".join(("hook_service", "simulator", *parts))


def imported_modules(source: str, package: str) -> list[str]:
    """Absolute names of every module ``source`` imports; relative imports are resolved
    against ``package`` (``from .. import x`` names ``<parent>.x``, which may be a module)."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                names.append(node.module or "")
                continue
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1])
            if node.module:
                names.append(f"{base}.{node.module}")
            else:
                names += [f"{base}.{alias.name}" for alias in node.names]
    return names


def outside_the_simulator(name: str) -> bool:
    in_service = name == "hook_service" or name.startswith("hook_service.")
    return in_service and not (
        name == "hook_service.simulator" or name.startswith("hook_service.simulator.")
    )


def test_the_simulator_imports_nothing_from_the_service() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert PACKAGE / "verifier.py" in files
    offending = {
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in files
        for name in imported_modules(path.read_text(), package_of(path))
        if outside_the_simulator(name)
    }
    assert offending == set()


def test_the_scan_resolves_every_spelling() -> None:
    # The scan must see relative and absolute imports, or the test above proves nothing.
    source = (
        "from . import lint\n"
        "from .flows import Flow\n"
        "from .. import tokens\n"
        "from ..hook import verify_signature\n"
        "import hook_service.keys\n"
        "from hook_service.simulator import report\n"
    )
    names = imported_modules(source, "hook_service.simulator")
    assert names == [
        "hook_service.simulator.lint",
        "hook_service.simulator.flows",
        "hook_service.tokens",
        "hook_service.hook",
        "hook_service.keys",
        "hook_service.simulator",
    ]
    assert [n for n in names if outside_the_simulator(n)] == [
        "hook_service.tokens",
        "hook_service.hook",
        "hook_service.keys",
    ]
    runner = imported_modules((PACKAGE / "runner.py").read_text(), "hook_service.simulator")
    assert "hook_service.simulator.flows" in runner
