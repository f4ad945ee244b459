"""Figures with their targets, and the summary table printed at the end of a run."""
from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One line of the summary: a figure, its value, and the target it is held to (if any)."""

    figure: str
    value: str
    target: str = ""
    result: str = "info"     # PASS, MISS, info, skip, error


def at_least(figure: str, value: float, goal: float, fmt: str = "{:.3f}",
             goal_fmt: str = "{:.2f}") -> Row:
    """A figure that must reach goal; ratios show a third decimal so a near miss reads as one."""
    return Row(figure, fmt.format(value), "≥ " + goal_fmt.format(goal),
               "PASS" if value >= goal else "MISS")


def at_most(figure: str, value: float, goal: float, fmt: str = "{:.3f}",
            goal_fmt: str = "{:.2f}", unit: str = "") -> Row:
    return Row(figure, fmt.format(value) + unit, "≤ " + goal_fmt.format(goal) + unit,
               "PASS" if value <= goal else "MISS")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(rows: list[Row]) -> str:
    heads = ("figure", "value", "target", "result")
    cells = [heads] + [(r.figure, r.value, r.target or "-", r.result) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    lines = []
    for n, c in enumerate(cells):
        lines.append(f"{c[0]:<{widths[0]}}  {c[1]:>{widths[1]}}  {c[2]:>{widths[2]}}  {c[3]}")
        if n == 0:
            lines.append("-" * (sum(widths) + 6 + len("result")))
    return "\n".join(lines)


def say(message: str = "") -> None:
    print(message, flush=True)
