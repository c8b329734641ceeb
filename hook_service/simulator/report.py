"""The simulator's report: one row per check, as a table or as JSON for CI.

JSON shape (stable keys): ``{"command", "target", "passed", "failed", "checks": [{"group",
"check", "passed", "reason", "detail"}]}``; ``group`` is the scenario (or ``""``). ``reason`` is
the failure reason Prelude would give (contract 8 for a hook answer; for a verification token
the code of its ``/stepup/continue`` refusal, e.g. ``invalid_verification_token``,
``token_mismatch``, ``token_reused``, ``step_bypassed``: see ``verifier.py``) or the
simulator's own code for a probe; ``null`` on success. Issued tokens and
credentials never appear in a report.
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
    group: str = ""

    @property
    def title(self) -> str:
        """``"<group>: <name>"``, or the name alone outside a group."""
        return f"{self.group}: {self.name}" if self.group else self.name

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
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

    def ok(self, name: str, detail: str = "", *, group: str = "") -> Check:
        return self.add(Check(name, True, None, detail, group))

    def fail(self, name: str, reason: str, detail: str = "", *, group: str = "") -> Check:
        return self.add(Check(name, False, reason, detail, group))

    def check(self, title: str) -> Check:
        """The one check called ``title`` (``"<group>: <name>"``); ``KeyError`` otherwise."""
        found = [check for check in self.checks if check.title == title]
        if len(found) != 1:
            raise KeyError(title)
        return found[0]

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
        """A plain-text table: check, result, Prelude's reason and the detail; checks of one
        scenario under its name. The detail column wraps to ``width`` (at least 30 wide)."""
        width = width or shutil.get_terminal_size((120, 24)).columns
        name_width = min(max((len(c.name) for c in self.checks), default=5) + 2, 52)
        reason_width = max([len(c.reason or "") for c in self.checks] + [len("reason")])
        detail_width = max(width - name_width - reason_width - 12, 30)
        lines = [
            f"{self.command} against {self.target}",
            f"{'check':<{name_width}}  result  {'reason':<{reason_width}}  detail",
        ]
        group = ""
        for check in self.checks:
            if check.group and check.group != group:
                lines.append(check.group)
            group = check.group
            indent = "  " if group else ""
            result = "pass" if check.passed else "FAIL"
            names = textwrap.wrap(check.name, name_width - len(indent)) or [""]
            details = textwrap.wrap(check.detail, detail_width) or [""]
            for i in range(max(len(names), len(details))):
                name = indent + names[i] if i < len(names) else ""
                cells = (result, check.reason or "") if i == 0 else ("", "")
                detail = details[i] if i < len(details) else ""
                row = f"{name:<{name_width}}  {cells[0]:<6}  {cells[1]:<{reason_width}}  {detail}"
                lines.append(row.rstrip())
        failed = len(self.failures())
        total = len(self.checks)
        summary = f"{total - failed}/{total} checks passed"
        if failed:
            summary += f"; {failed} failed"
        elif not total:
            summary += "; nothing was checked"
        lines.append(summary)
        return "\n".join(lines)
