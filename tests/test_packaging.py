"""What a wheel of the project ships: every module, the example policy and its simulator
scenarios, the type marker.

The Docker image installs the wheel, so a subpackage or data file missing from it would only
show at container start."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def built_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files a wheel of the project installs, built offline from a copy of the project.

    setuptools' ``build_py`` is the step of ``bdist_wheel`` that collects modules and package
    data. (``pip wheel`` itself needs the ``wheel`` package with this venv's setuptools, or the
    network for build isolation.) The copy keeps the build's egg-info out of the working tree."""
    tmp_path = tmp_path_factory.mktemp("build")
    root = ROOT
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, project / name)
    shutil.copytree(
        root / "hook_service",
        project / "hook_service",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    lib = tmp_path / "lib"
    build = [sys.executable, "-c", "from setuptools import setup; setup()", "build_py"]
    result = subprocess.run(
        [*build, "--build-lib", str(lib)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return lib / "hook_service"


def test_every_module_ships(built_package: Path) -> None:
    source = {p.relative_to(ROOT / "hook_service") for p in (ROOT / "hook_service").rglob("*.py")}
    shipped = {p.relative_to(built_package) for p in built_package.rglob("*.py")}
    assert Path("endpoints/stepup.py") in source
    assert source == shipped


def test_example_policy_its_tests_and_type_marker_ship(built_package: Path) -> None:
    for name in ("example.yaml", "example.tests.yaml"):
        policy = ROOT / "hook_service" / "policies" / name
        assert (built_package / "policies" / name).read_bytes() == policy.read_bytes()
    assert (built_package / "py.typed").is_file()


def test_simulator_scenarios_ship(built_package: Path) -> None:
    scenarios = ROOT / "hook_service" / "simulator" / "scenarios" / "example.yaml"
    shipped = built_package / "simulator" / "scenarios" / "example.yaml"
    assert shipped.read_bytes() == scenarios.read_bytes()
