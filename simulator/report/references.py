"""Which arm each arm of a report is compared with: the one place the report decides it.

A study works each arm's reference out once, when it is parsed (the reference arm of the arm's
variant and training seed, :mod:`simulator.study_schema`), and stores it in ``study.json`` (each arm's
``reference``); :func:`~simulator.report.load.load_study_results` puts it on the arm. The report
reads it from there. A ``study.json`` written before arms carried their reference falls back to the
study's single ``reference`` for every arm; plain runs compare every arm with the first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..arms import Arm

__all__ = ["resolve_references"]


def _labels_text(labels: Sequence[str]) -> str:
    return ", ".join(map(repr, labels))


def _per_variant(arms: Sequence[Arm], base: str) -> dict[str, str]:
    """Each arm's reference when the reference is a study base label: the base's arm of the same variant
    and training seed (a seed-less reference arm serves every seed)."""
    refs: dict[str, str] = {}
    for arm in arms:
        cands = [a for a in arms if a.base == base and a.variant == arm.variant]
        if not cands:
            raise ValueError(f"reference: no arm of {base!r} runs variant {arm.variant!r}, which arm "
                             f"{arm.label!r} runs")
        same_seed = [a for a in cands if a.train_seed == arm.train_seed]
        refs[arm.label] = (same_seed or cands)[0].label
    return refs


def resolve_references(
    arms: Sequence[Arm],
    study: Mapping[str, Any] | None = None,
    reference: str | Mapping[str, str] | None = None,
) -> tuple[str | None, dict[str, str]]:
    """``(main reference label, {arm label: its reference label})``.

    Args:
        arms: the report's arms.
        study: the study's ``study.json`` as a dict, None for plain runs.
        reference: the caller's choice, overriding the study's: one label for every arm, a study arm's
            base label (as the study file names it, e.g. ``"complete-k random-of-k"``: each arm is then
            compared with that base's arm of its own variant and training seed, as a study's
            ``reference`` is), or a ``{label: reference label}`` mapping (an arm it leaves out is its own
            reference).
    Returns:
        Each arm's reference, and the main one (the caller's label; else the study's reference when it
        is an arm, else the first arm's reference). Without ``reference``: each arm's ``reference``
        from ``study.json``; an old ``study.json`` without them: the study's ``reference`` for every
        arm; plain runs: the first arm.
    Raises:
        ValueError: naming ``reference`` for a reference that is not one of the arms.
    """
    labels = [a.label for a in arms]
    if isinstance(reference, Mapping):
        refs = {lab: reference.get(lab, lab) for lab in labels}
        for lab, ref in refs.items():
            if ref not in labels:
                raise ValueError(f"reference: arm {lab!r} is compared with {ref!r}, which is not an arm; "
                                 f"arms: {_labels_text(labels)}")
        return (refs[labels[0]] if labels else None), refs
    if not arms:
        if reference is not None and study is None:
            raise ValueError(f"reference: no arm labelled {reference!r}")
        return reference, {}
    study_ref = (study or {}).get("reference")
    if reference is None and study is not None and any(a.reference for a in arms):
        fallback = study_ref if study_ref in labels else None
        refs = {a.label: a.reference or fallback or a.label for a in arms}
        for lab, ref in refs.items():
            if ref not in labels:
                raise ValueError(f"reference: study.json compares arm {lab!r} with {ref!r}, which is not an arm")
        return fallback or refs[labels[0]], refs
    if reference is not None and reference not in labels and any(a.base == reference for a in arms):
        refs = _per_variant(arms, reference)
        return refs[labels[0]], refs
    main = reference if reference is not None else study_ref or labels[0]
    if main not in labels:
        problem = f"no arm labelled {main!r}" if reference is not None else f"the study's reference {main!r} is not an arm"
        raise ValueError(f"reference: {problem}; arms: {_labels_text(labels)}")
    return main, {lab: main for lab in labels}
