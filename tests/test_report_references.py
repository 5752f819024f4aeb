"""The report decides each arm's reference in one place, from study.json (old files: the study's reference)."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.arms import Arm
from simulator.report.references import resolve_references


def _arm(label: str, reference: str = "") -> Arm:
    return Arm(label=label, run_dir=Path("."), config={}, sessions=None, steps=None,  # type: ignore[arg-type]
               reference=reference)


STUDY = {"reference": "unet"}


def test_a_study_json_with_each_arms_reference_is_read_as_it_is():
    arms = [_arm("p | human", "unet | human"), _arm("unet | human", "unet | human"),
            _arm("p | clicks", "unet | clicks"), _arm("unet | clicks", "unet | clicks")]
    main, refs = resolve_references(arms, STUDY)
    assert refs == {"p | human": "unet | human", "unet | human": "unet | human",
                    "p | clicks": "unet | clicks", "unet | clicks": "unet | clicks"}
    assert main == "unet | human"  # the study's base label is no arm: the first arm's reference


def test_an_old_study_json_falls_back_to_the_studys_reference():
    arms = [_arm("p"), _arm("unet"), _arm("walker")]
    assert resolve_references(arms, STUDY) == ("unet", {"p": "unet", "unet": "unet", "walker": "unet"})
    with pytest.raises(ValueError, match="the study's reference 'rw' is not an arm"):
        resolve_references(arms, {"reference": "rw"})
    # an arm the study.json leaves without one takes the study's reference
    assert resolve_references([_arm("p", "unet"), _arm("unet"), _arm("w")], STUDY)[1]["w"] == "unet"


def _varm(label: str, base: str, variant: str, seed: int | None = None) -> Arm:
    return Arm(label=label, run_dir=Path("."), config={}, sessions=None, steps=None,  # type: ignore[arg-type]
               base=base, variant=variant, train_seed=seed)


def test_the_callers_base_label_pairs_each_arm_within_its_variant_and_seed():
    """``--reference "complete-k random-of-k"`` on a study: each arm against that base's arm of its own
    start (variant) and training seed, as the study's own reference is paired."""
    arms = [_varm("best | human", "best", "human"), _varm("rand | human", "rand", "human"),
            _varm("best | clicks", "best", "clicks"), _varm("rand | clicks", "rand", "clicks")]
    main, refs = resolve_references(arms, STUDY, "rand")
    assert refs == {"best | human": "rand | human", "rand | human": "rand | human",
                    "best | clicks": "rand | clicks", "rand | clicks": "rand | clicks"}
    assert main == "rand | human"
    seeded = [_varm("p | s0", "p", "default", 0), _varm("p | s1", "p", "default", 1),
              _varm("u | s0", "u", "default", 0), _varm("u | s1", "u", "default", 1), _varm("w", "w", "default")]
    refs = resolve_references(seeded, STUDY, "u")[1]
    assert refs["p | s1"] == "u | s1" and refs["p | s0"] == "u | s0" and refs["w"] == "u | s0"
    # a base that does not run an arm's variant is a clear error, not a silent cross-variant pairing
    with pytest.raises(ValueError, match="no arm of 'rand' runs variant 'scribbles'"):
        resolve_references(arms + [_varm("best | scribbles", "best", "scribbles")], STUDY, "rand")


def test_plain_runs_and_the_callers_choice():
    arms = [_arm("a"), _arm("b", "a")]
    assert resolve_references(arms) == ("a", {"a": "a", "b": "a"})
    assert resolve_references(arms, STUDY | {"reference": "a"}, reference="b") == ("b", {"a": "b", "b": "b"})
    assert resolve_references(arms, reference={"b": "a"}) == ("a", {"a": "a", "b": "a"})
    with pytest.raises(ValueError, match="no arm labelled 'c'"):
        resolve_references(arms, reference="c")
    with pytest.raises(ValueError, match="compared with 'c', which is not an arm"):
        resolve_references(arms, reference={"a": "c"})
    with pytest.raises(ValueError, match="study.json compares arm 'b' with 'x'"):
        resolve_references([_arm("a", "a"), _arm("b", "x")], STUDY)
