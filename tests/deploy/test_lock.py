"""``requirements.lock`` pins what pyproject.toml asks for, with hashes, as the image needs
(``pip install --require-hashes``); ``deploy/lock.py`` renders it."""

from __future__ import annotations

import re

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from deploy.lock import ROOT, render, requirements

ENTRY = re.compile(
    r"^([a-z0-9-]+)==(\S+) \\\n((?:    --hash=sha256:[0-9a-f]{64}(?: \\\n)?)+)", re.M
)


def locked() -> dict[str, tuple[str, list[str]]]:
    text = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    entries = {m[1]: (m[2], re.findall(r"[0-9a-f]{64}", m[3])) for m in ENTRY.finditer(text)}
    pins = [line for line in text.splitlines() if "==" in line and not line.startswith("#")]
    assert len(pins) == len(entries), "a pin without a sha256 hash"
    return entries


def test_every_dependency_and_the_build_backend_is_pinned_within_its_range() -> None:
    entries = locked()
    for line in requirements(ROOT / "pyproject.toml"):
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in entries, f"{name} is not in requirements.lock: run `make lock`"
        version, digests = entries[name]
        assert requirement.specifier.contains(version), f"{name}=={version} vs {requirement}"
        assert digests


def test_python_3_11_before_3_11_3_gets_what_redis_needs_there() -> None:
    # bookworm's Python is 3.11.2; redis requires async-timeout before 3.11.3.
    assert "async-timeout" in locked()


def test_render_writes_every_architectures_hash_and_refuses_diverging_versions() -> None:
    text = render({"x86_64": {"a": ("1.0", "1" * 64)}, "aarch64": {"a": ("1.0", "2" * 64)}})
    assert f"a==1.0 \\\n    --hash=sha256:{'1' * 64} \\\n    --hash=sha256:{'2' * 64}\n" in text
    with pytest.raises(SystemExit, match="different versions"):
        render({"x86_64": {"a": ("1.0", "1" * 64)}, "aarch64": {"a": ("1.1", "2" * 64)}})
    with pytest.raises(SystemExit, match="different versions"):
        render({"x86_64": {"a": ("1.0", "1" * 64)}, "aarch64": {}})
