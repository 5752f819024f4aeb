"""The robot annotator's inputs, under the simulator's names: all of them now live in :mod:`probseg.interaction`.

The start generators (clicks, simulated strokes, human scribbles), the brush and the correction-click
rule moved to ``probseg`` so that training and evaluation draw inputs with exactly the code the
simulator uses (``probseg`` never imports ``simulator``). This module re-exports them unchanged, the
same objects under the same names, so ``from simulator.corrections import next_click`` and every other
existing import keep working. Nothing here is simulator-specific: the session loop that applies these
rules is :mod:`simulator.session`.
"""

from __future__ import annotations

from probseg import interaction as _interaction
from probseg.interaction import (
    CORRECTION_RULES, START_KINDS, Click, StartInput, apply_click, click_brush, click_start, count_strokes,
    deepest_point, error_regions, human_start, next_click, padded_edt, resolve_brush_radius, scribble_start,
    simulate_stroke,
)

# The names this module has always exported, in their old order: all of probseg.interaction but the
# brush itself, which callers have always imported from probseg.
_BRUSH = ("brush_disk", "default_brush_radius")
__all__ = [name for name in _interaction.__all__ if name not in _BRUSH]
