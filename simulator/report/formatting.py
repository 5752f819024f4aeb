"""How the report's markdown writes numbers, CIs, differences, p-values and tables."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..arms import format_metric


def fmt_ci(metric: str, v: float, lo: float, hi: float) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return f"{format_metric(metric, v)} [{format_metric(metric, lo)}, {format_metric(metric, hi)}]"


def fmt_diff(metric: str, v: float, lo: float, hi: float) -> str:
    if not math.isfinite(v):
        return "–"
    if metric.startswith("nof_"):
        digits = 0
    else:
        digits = 3 if metric.startswith("dice") or metric == "final_dice" else 2
        if max(abs(v), abs(lo), abs(hi)) < 0.1:
            digits += 1  # small differences keep a significant digit
    return f"{v:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def fmt_p(p: float) -> str:
    if p is None or not math.isfinite(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    esc = [str(h).replace("|", "\\|") for h in header]
    lines = ["| " + " | ".join(esc) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |")
    return lines


def fmt_ci_short(metric: str, v: float, lo: float, hi: float) -> str:
    """``value [lo, hi]``, or ``value [–]`` where there is no CI (a single image)."""
    if v is None or not math.isfinite(v):
        return "–"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{format_metric(metric, v)} [–]"
    return fmt_ci(metric, v, lo, hi)


def fmt_diff_short(metric: str, v: float, lo: float, hi: float) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return fmt_diff(metric, v, v, v).split(" ")[0] + " [–]"
    return fmt_diff(metric, v, lo, hi)


