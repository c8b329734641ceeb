"""The simulator's report: one row per check, as a table or as JSON for CI.

JSON shape (stable keys): ``{"command", "target", "passed", "failed", "checks": [{"check",
"passed", "reason", "detail"}]}``. ``reason`` is the failure reason Prelude would give
(contract 8, or ``invalid_verification_token`` for a token) or the simulator's own code for a
probe; ``null`` on success. Issued tokens and credentials never appear in a report.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Check:
    """One check's outcome."""

    name: str
    passed: bool
    reason: str | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.name,
            "passed": self.passed,
            "reason": self.reason,
            "detail": self.detail,
        }


@dataclass(slots=True)
class Report:
    """The checks of one ``simulate`` command against one target, in the order they ran."""

    command: str
    target: str
    checks: list[Check] = field(default_factory=list)

    def ok(self, name: str, detail: str = "") -> Check:
        return self.add(Check(name, True, None, detail))

    def fail(self, name: str, reason: str, detail: str = "") -> Check:
        return self.add(Check(name, False, reason, detail))

    def add(self, check: Check) -> Check:
        self.checks.append(check)
        return check

    @property
    def passed(self) -> bool:
        """True when there was at least one check and every check passed."""
        return bool(self.checks) and all(check.passed for check in self.checks)

    def failures(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]

    def to_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "target": self.target,
            "passed": self.passed,
            "failed": len(self.failures()),
            "checks": [check.to_json() for check in self.checks],
        }

    def render_json(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    def render_table(self, width: int | None = None) -> str:
        """A plain-text table: check, result, Prelude's reason and the detail."""
        width = width or shutil.get_terminal_size((120, 24)).columns
        name_width = min(max((len(c.name) for c in self.checks), default=5), 48)
        reason_width = max((len(c.reason or "") for c in self.checks), default=0)
        reason_width = max(reason_width, len("reason"))
        detail_width = max(width - name_width - reason_width - 12, 30)
        lines = [
            f"{self.command} against {self.target}",
            f"{'check':<{name_width}}  result  {'reason':<{reason_width}}  detail",
        ]
        for check in self.checks:
            result = "pass" if check.passed else "FAIL"
            wrapped = textwrap.wrap(check.detail, detail_width) or [""]
            names = textwrap.wrap(check.name, name_width) or [""]
            for i in range(max(len(wrapped), len(names))):
                name = names[i] if i < len(names) else ""
                head = (
                    f"{name:<{name_width}}  {result:<6}  {check.reason or '':<{reason_width}}"
                    if i == 0
                    else f"{name:<{name_width}}  {'':<6}  {'':<{reason_width}}"
                )
                detail = wrapped[i] if i < len(wrapped) else ""
                lines.append(f"{head}  {detail}".rstrip())
        failed = len(self.failures())
        total = len(self.checks)
        lines.append(
            f"{total - failed}/{total} checks passed"
            + ("" if self.passed else f"; {failed} failed" if total else "; nothing was checked")
        )
        return "\n".join(lines)
