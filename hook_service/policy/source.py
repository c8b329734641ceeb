"""Reading a policy file (and a policy's test file): strict YAML and the file's revision.

The revision is the SHA-256 of the file's bytes, so ``GET /admin/policy``, every decision log
line and ``sha256sum policy.yaml`` on the ConfigMap all name the same version.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from hook_service.errors import PolicyError

_MERGE_TAG: Final = "tag:yaml.org,2002:merge"


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, except that a repeated mapping key is an error instead of
    silently replacing the first (two `when:` in one rule must not keep only the weaker)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            # Merge keys (`<<: *base`) may legitimately be overridden; other keys never.
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
                key = self.construct_object(key_node)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A YAML file as read: its parsed document and the SHA-256 (hex) of its bytes."""

    path: Path
    data: Any
    revision: str


def read_yaml(path: Path, what: str = "policy file") -> SourceFile:
    """The YAML document at ``path``; PolicyError naming ``path`` when it is unreadable, not
    UTF-8, not YAML, or repeats a key."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PolicyError(f"{path}: the {what} is not UTF-8 text") from None
    try:
        loader = _UniqueKeyLoader(text)
        # PyYAML names a str stream "<unicode string>" in its marks; name the file instead.
        loader.name = str(path)
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from None
    return SourceFile(path, data, hashlib.sha256(raw).hexdigest())
