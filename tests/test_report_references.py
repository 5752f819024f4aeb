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
