"""The K candidates of the first proposal: do they differ, and does the method's own score find the good one?

For every arm whose method shows several candidates, from the steps of each session's first iteration
(``steps.parquet``): the best candidate's Dice, the Dice of the candidate the method scores highest
(its ``candidate_scores``; what the ``model-ranked`` policy takes), the gap between them (the diversity
that matters: what an annotator's choice adds to the model's own pick), candidate 0's Dice, and the
mean pairwise Dice between the candidates' foregrounds (1: all the same; one minus the step's
``diversity``). Each is a mean over sessions with a 95% bootstrap CI over images, as the other tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from probseg.lazy import lazy_import

from ..arms import Arm, image_codes
from ..stats import cluster_bootstrap
from .formatting import md_table

pd = lazy_import("pandas")  # imported on first use: commands start faster

__all__ = ["CANDIDATE_COLUMNS", "candidate_lines", "candidate_table", "first_proposal_rows"]

CANDIDATE_COLUMNS = ("best_dice", "top_scored_dice", "best_minus_top", "first_dice", "pairwise_dice")


def _listed(value: Any) -> list[Any]:
    """A list column's value as a list (a missing value, None, is empty)."""
    return [] if value is None else list(value)


def _parts(arm: Arm) -> list[tuple[Path, int]]:
    """``[(run directory, the arm's number of its session 0)]``: one run, or a pooled arm's folds."""
    return [(p.run_dir, p.first) for p in arm.parts] or [(arm.run_dir, 0)]


def first_proposal_rows(arm: Arm) -> pd.DataFrame:
    """One row per session of ``arm`` with candidates at iteration 1: ``session`` and :data:`CANDIDATE_COLUMNS`."""
    import pyarrow.parquet as pq

    frames = []
    for run_dir, first in _parts(arm):
        path = run_dir / "steps.parquet"
        names = pq.read_schema(path).names
        cols = ["session", "candidate_dice", "candidate_scores", "diversity"]
        df = pd.read_parquet(path, columns=[c for c in cols if c in names], filters=[("iteration", "==", 1)])
        frames.append(df.assign(session=df["session"] + first))
    rows: list[dict[str, Any]] = []
    for r in pd.concat(frames, ignore_index=True).to_dict("records"):
        dices = np.asarray(_listed(r.get("candidate_dice")), dtype=np.float64)
        if dices.size < 2:
            continue
        scores = np.asarray(_listed(r.get("candidate_scores")), dtype=np.float64)
        # No scores (or NaN ones: a method without them) leave the top-scored candidate undefined.
        top = float(dices[int(np.argmax(scores))]) if scores.size == dices.size and np.isfinite(scores).all() else np.nan
        # The step's diversity is the mean pairwise Dice distance of the candidates' foregrounds.
        pair = 1.0 - float(r["diversity"]) if r.get("diversity") is not None else np.nan
        best = float(dices.max())
        rows.append({"session": int(r["session"]), "best_dice": best, "top_scored_dice": top,
                     "best_minus_top": best - top, "first_dice": float(dices[0]), "pairwise_dice": pair})
    return pd.DataFrame(rows, columns=["session", *CANDIDATE_COLUMNS])


def candidate_table(arms: Sequence[Arm], n_boot: int, seed: int) -> pd.DataFrame | None:
    """Per arm with several candidates at its first proposal: each of :data:`CANDIDATE_COLUMNS` as a mean
    over sessions with a 95% bootstrap CI over images (``M``, ``M_lo``, ``M_hi``) and ``n_sessions``;
    None when no arm shows several candidates."""
    out = []
    for arm in arms:
        if int(arm.settings.get("k") or 1) < 2:
            continue
        rows = first_proposal_rows(arm)
        if rows.empty:
            continue
        codes, _ = image_codes(arm)
        by_session = dict(zip(arm.sessions["session"].astype(int), codes))
        clusters = np.array([by_session[s] for s in rows["session"]])
        _, clusters = np.unique(clusters, return_inverse=True)  # the images these sessions cover
        est, lo, hi = cluster_bootstrap(rows[list(CANDIDATE_COLUMNS)].to_numpy(), clusters, n_boot, seed)
        record: dict[str, Any] = {"label": arm.label, "method": arm.method, "policy": arm.settings.get("policy", ""),
                                  "k": int(arm.settings.get("k")), "start": arm.settings.get("start", ""),
                                  "n_sessions": len(rows)}
        for i, col in enumerate(CANDIDATE_COLUMNS):
            record.update({col: est[i], f"{col}_lo": lo[i], f"{col}_hi": hi[i]})
        out.append(record)
    return pd.DataFrame(out) if out else None


def _ci(r: Any, col: str) -> str:
    v, lo, hi = r[col], r[f"{col}_lo"], r[f"{col}_hi"]
    return "–" if not np.isfinite(v) else f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


def candidate_lines(table: pd.DataFrame | None, n_boot: int) -> list[str]:
    """The report's section on the first proposal's candidates (nothing when no arm has several)."""
    if table is None:
        return []
    lines = [
        "## Candidates of the first proposal", "",
        "Arms that show several candidates, at each session's first proposal: the best candidate's Dice, the "
        "Dice of the candidate the method scores highest (what `model-ranked` takes), their gap (what choosing "
        "adds to the method's own pick), candidate 0's Dice, and the mean pairwise Dice between the candidates' "
        f"foregrounds (1: identical candidates). Means over sessions, 95% bootstrap CI over images ({n_boot} "
        "resamples); – where the method gives no scores.", "",
    ]
    rows = [[f"`{r['label']}`", str(r["k"]), str(r["start"]), _ci(r, "best_dice"), _ci(r, "top_scored_dice"),
             _ci(r, "best_minus_top"), _ci(r, "first_dice"), _ci(r, "pairwise_dice")]
            for _, r in table.iterrows()]
    return lines + md_table(["arm", "K", "start", "best", "top-scored", "best − top-scored", "candidate 0",
                             "pairwise Dice"], rows) + [""]
