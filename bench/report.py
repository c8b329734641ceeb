"""Figures of a bench run and their rendering: a text table, a Markdown table, JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure. A ratio figure has a floor and a minimum ratio as its goal (or, for
    a latency against another, a maximum ratio); a limit figure has an upper bound on the value
    itself."""

    name: str
    value: float
    unit: str
    floor: float | None
    goal: float | None
    # "ratio" (ratio >= goal), "ratio_at_most" (ratio <= goal), "below" (value < goal),
    # "at_most" (value <= goal)
    kind: str

    @classmethod
    def ratio(cls, name: str, value: float, floor: float, goal: float | None) -> Figure:
        return cls(name, value, "/s", floor, goal, "ratio")

    @classmethod
    def ratio_limit(cls, name: str, value: float, floor: float, goal: float, unit: str) -> Figure:
        """``value`` may be at most ``goal`` times ``floor`` (e.g. a p99 against another)."""
        return cls(name, value, unit, floor, goal, "ratio_at_most")

    @classmethod
    def compared(cls, name: str, value: float, floor: float, unit: str) -> Figure:
        """``value`` reported against ``floor`` (their ratio printed), no goal."""
        return cls(name, value, unit, floor, None, "ratio")

    @classmethod
    def limit(
        cls, name: str, value: float, unit: str, goal: float, *, inclusive: bool = False
    ) -> Figure:
        return cls(name, value, unit, None, goal, "at_most" if inclusive else "below")

    @property
    def ratio_value(self) -> float | None:
        if self.floor is None:
            return None
        return self.value / self.floor if self.floor else 0.0

    @property
    def goal_text(self) -> str:
        if self.goal is None:
            return "-"
        if self.kind == "ratio":
            return f">= {self.goal:g}"
        if self.kind == "ratio_at_most":
            return f"<= {self.goal:g}"
        return f"{'<' if self.kind == 'below' else '<='} {self.goal:g} {self.unit}"

    @property
    def passed(self) -> bool:
        if self.goal is None:
            return True
        if self.kind in ("ratio", "ratio_at_most"):
            ratio = self.ratio_value
            if ratio is None:
                return False
            return ratio >= self.goal if self.kind == "ratio" else ratio <= self.goal
        return self.value < self.goal if self.kind == "below" else self.value <= self.goal

    def cells(self) -> list[str]:
        ratio = self.ratio_value
        return [
            self.name,
            _number(self.value, self.unit),
            "-" if self.floor is None else _number(self.floor, self.unit),
            "-" if ratio is None else f"{ratio:.3f}",
            self.goal_text,
            "-" if self.goal is None else ("pass" if self.passed else "FAIL"),
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": round(self.value, 2),
            "unit": self.unit,
            "floor": None if self.floor is None else round(self.floor, 2),
            "ratio": None if self.ratio_value is None else round(self.ratio_value, 3),
            "goal": self.goal,
            "kind": self.kind,
            "pass": self.passed if self.goal is not None else None,
        }


HEADERS = ["figure", "value", "floor", "ratio", "goal", "result"]


def _number(value: float, unit: str) -> str:
    text = f"{value:,.0f}" if value >= 100 else f"{value:.2f}"
    return f"{text} {unit}"


def text_table(figures: list[Figure]) -> str:
    rows = [HEADERS, *(f.cells() for f in figures)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def markdown_table(figures: list[Figure], meta: dict[str, Any]) -> str:
    """docs/benchmarks.md's table, with the date and core count of the run."""
    lines = [
        f"Last run: {meta['date']}, {meta['nproc']} cores ({meta['machine']}), Python "
        f"{meta['python']}, {meta['duration_s']:g} s per case (in 3 interleaved rounds), "
        f"{meta['connections']} connections, 1 wrk thread.",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join("---" for _ in HEADERS) + "|",
    ]
    lines += ["| " + " | ".join(f.cells()) + " |" for f in figures]
    return "\n".join(lines)


BEGIN = "<!-- bench:begin"
END = "<!-- bench:end -->"


def replace_block(text: str, table: str) -> str:
    """``text`` (docs/benchmarks.md) with the lines between its bench markers replaced by
    ``table``."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"no {BEGIN} ... {END} block to replace")
    first_line_end = text.index("\n", start) + 1
    return text[:first_line_end] + table + "\n" + text[end:]
