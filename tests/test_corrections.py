"""The simulator's import path for the robot's inputs: every name still there, and the very objects in
:mod:`probseg.interaction` (the primitives themselves are tested in ``test_interaction.py``)."""

from __future__ import annotations

import probseg.data.partials
import probseg.interaction
import simulator.corrections
import simulator.session

# What simulator.corrections exported before its primitives moved to probseg.interaction.
EXPORTED = (
    "CORRECTION_RULES START_KINDS Click StartInput apply_click click_brush count_strokes deepest_point error_regions "
    "human_start next_click padded_edt resolve_brush_radius scribble_start click_start simulate_stroke"
).split()


def test_corrections_still_exports_every_name():
    assert simulator.corrections.__all__ == EXPORTED


def test_corrections_re_exports_the_probseg_objects_themselves():
    for name in EXPORTED:
        assert getattr(simulator.corrections, name) is getattr(probseg.interaction, name), name


def test_the_session_and_the_training_data_use_the_shared_primitives():
    for name in ("click_start", "scribble_start", "human_start", "next_click", "apply_click", "error_regions"):
        assert getattr(simulator.session, name) is getattr(probseg.interaction, name), name
    for name in ("brush_disk", "default_brush_radius"):
        assert getattr(probseg.data.partials, name) is getattr(probseg.interaction, name), name
