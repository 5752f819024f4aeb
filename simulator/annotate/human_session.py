"""One case with a person in the loop: the simulator's session, with the robot's choice and clicks
replaced by the person's.

It follows :func:`simulator.session.run_session` step for step, with the simulator's own parts: the
session's random streams (so the method draws the same candidates as ``probseg-simulate`` for the same
``(seed, case)`` and the same inputs), the start input, what each method kind is fed (a ``partial``
method the accepted state, a ``complete`` method only the annotator's input), the click brush
(:func:`~probseg.interaction.apply_click`: the brush disk restricted to the clicked pixel's true label,
the label being the person's, so a wrong click stays wrong) and the step records
(:data:`~simulator.session.STEP_KEYS`). A brush stroke is kept exactly as drawn, as a human start's
scribbles are.

An iteration: candidates are shown; the person chooses one (position 1..K on screen) or none (0,
keeping the current segmentation); then corrects it with clicks and strokes (any number, undoable);
then asks for new candidates (``next``: the step is recorded, with the Dice of the chosen segmentation
before the corrections, as the simulator records it) or hands the case in (``accept``). Handing in
after corrections records one more step, without candidates, holding the corrected segmentation, so
the Dice handed in is in the table. ``stop`` is ``done`` for a hand-in and ``max-iters`` when the
iteration budget ran out.

Every action is checked before it changes anything (:meth:`HumanSession.check`), so a bad one raises
``ValueError`` and leaves the session as it was. The session is a pure function of its actions: the
server rebuilds it after a restart by applying the logged actions again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from probseg.interaction import Click, apply_click, brush_disk, error_regions, resolve_brush_radius
from simulator.datasets import SessionCase, session_rng
from simulator.methods import Method, checked
from simulator.metrics import dice, hd95, iou
from simulator.session import STEP_KEYS, SessionConfig, _diversity, _start

__all__ = ["ACTIONS", "HumanSession", "stroke_pixels"]

ACTIONS = ("choose", "click", "stroke", "undo", "next", "accept")
MAX_STROKE_POINTS = 2000


def stroke_pixels(shape: tuple[int, int], points: list[tuple[int, int]], radius: int) -> np.ndarray:
    """The pixels a brush stroke covers: bool ``shape`` (H, W).

    ``points``: (row, col) pairs in order; consecutive points are joined by unit steps, and a disk of
    ``radius`` is drawn at every step.
    """
    out = np.zeros(shape, dtype=bool)
    path: list[tuple[int, int]] = [points[0]]
    for (r0, c0), (r1, c1) in zip(points, points[1:]):
        n = max(abs(r1 - r0), abs(c1 - c0))
        for i in range(1, n + 1):
            path.append((int(round(r0 + (r1 - r0) * i / n)), int(round(c0 + (c1 - c0) * i / n))))
    for r, c in dict.fromkeys(path):
        out |= brush_disk(shape, (r, c), radius)
    return out


@dataclass
class _State:
    """What a correction changes (copied whole, so undo restores it exactly)."""

    cur_mask: np.ndarray
    cur_seg: np.ndarray
    input_mask: np.ndarray
    input_seg: np.ndarray
    clicked: np.ndarray

    def copy(self) -> "_State":
        return _State(*(a.copy() for a in (self.cur_mask, self.cur_seg, self.input_mask, self.input_seg, self.clicked)))


@dataclass
class _Iteration:
    number: int
    feed_mask: np.ndarray
    masks: np.ndarray
    segs: np.ndarray
    scores: np.ndarray | None
    order: list[int]
    model_seconds: float
    before: tuple[np.ndarray, np.ndarray]  # the segmentation on screen before the choice
    started: float
    chosen: int | None = None  # candidate index, -1 = none, None = not chosen yet
    corrections: list[tuple[dict[str, Any], _State]] = field(default_factory=list)


class HumanSession:
    """One case of one participant under one arm (see the module docstring).

    Args:
        case: the case (image float32 (H, W), target bool (H, W)).
        method: the arm's method.
        config: the protocol (``k``, ``start``, ``max_iters``, ``brush_radius``).
        seed: the session seed (as ``probseg-simulate --seed``).
        order_seed: seeds the candidates' screen order (e.g. ``(study seed, participant)``, so each
            participant sees their own order).
    """

    def __init__(self, case: SessionCase, method: Method, config: SessionConfig, seed: int,
                 order_seed: Sequence[int]) -> None:
        self.case = case
        self.method = checked(method)  # every answer checked against the Method contract, as a robot's session does
        self.cfg = config
        self.order_seed = [int(x) for x in order_seed]
        self.radius = resolve_brush_radius(config.brush_radius, case.target.shape)
        rng = session_rng(seed, case.index)
        # The same four streams as simulator.session.run_session, in the same order, so the method
        # draws the candidates the robot would see for the same inputs.
        start_rng, self._method_rng, _policy_rng, _click_rng = (
            np.random.default_rng(s) for s in np.random.SeedSequence(rng.integers(0, 2**32, size=4)).spawn(4)
        )
        begin = _start(config, case.target, self.radius, case.human_scribbles if config.start == "human" else None,
                       start_rng)
        self.state = _State(begin.mask.copy(), begin.seg.copy(), begin.mask.copy(), begin.seg.copy(),
                            begin.clicked.copy())
        self.start_clicks = begin.n_inputs
        self.clicks_so_far = begin.n_inputs
        self.n_ask = config.k if method.multi else 1
        self.steps: list[dict[str, Any]] = []
        self.stop = ""
        self.it: _Iteration | None = None
        self._propose(1)

    # -- what the page shows -------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return bool(self.stop)

    @property
    def current(self) -> tuple[np.ndarray, np.ndarray]:
        """The segmentation on screen: ``(mask, seg)`` bool (H, W)."""
        return self.state.cur_mask, self.state.cur_seg

    def candidates(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The candidates in screen order: ``(mask, seg)`` bool (H, W) each."""
        assert self.it is not None
        return [(self.it.masks[j], self.it.segs[j]) for j in self.it.order]

    def shown_dice(self) -> float:
        """The Dice of the segmentation on screen (undecided as background); logged, never shown."""
        return dice(self.state.cur_seg, self.case.target)

    def chosen_position(self) -> int | None:
        """The chosen candidate's screen position (1..K), 0 for none, None when not chosen yet."""
        if self.it is None or self.it.chosen is None:
            return None
        return 0 if self.it.chosen < 0 else self.it.order.index(self.it.chosen) + 1

    # -- actions -------------------------------------------------------------------------------------
    def check(self, action: dict[str, Any]) -> None:
        """Raise ``ValueError`` naming the field when ``action`` cannot be applied now; change nothing."""
        kind = action.get("type")
        if kind not in ACTIONS:
            raise ValueError(f"type: unknown action {kind!r}; allowed: {', '.join(ACTIONS)}")
        if self.finished or self.it is None:
            raise ValueError("type: this case is finished")
        h, w = self.case.target.shape
        it = self.it
        if kind == "choose":
            pos = action.get("position")
            if not isinstance(pos, int) or isinstance(pos, bool) or not 0 <= pos <= self.n_ask:
                raise ValueError(f"position: expected 0 (none) or 1..{self.n_ask}, got {pos!r}")
            if it.corrections:
                raise ValueError("type: choose before correcting (undo the corrections to choose again)")
        elif kind in ("click", "stroke"):
            if it.chosen is None:
                raise ValueError("type: choose a candidate (or none) before correcting")
            points = [(action.get("row"), action.get("col"))] if kind == "click" else action.get("points")
            if not isinstance(points, list) or not 1 <= len(points) <= MAX_STROKE_POINTS:
                raise ValueError(f"points: expected 1..{MAX_STROKE_POINTS} points")
            for p in points:
                if (not isinstance(p, (list, tuple)) or len(p) != 2
                        or not all(isinstance(v, int) and not isinstance(v, bool) for v in p)
                        or not (0 <= p[0] < h and 0 <= p[1] < w)):
                    raise ValueError(f"points: {p!r} is not a pixel (row, col) of the {h}x{w} image")
            if not isinstance(action.get("positive"), bool):
                raise ValueError("positive: expected true or false")
            if kind == "stroke":
                r = action.get("radius")
                if not isinstance(r, int) or isinstance(r, bool) or not 0 <= r <= max(h, w):
                    raise ValueError(f"radius: expected an integer in 0..{max(h, w)}, got {r!r}")
        elif kind == "undo":
            if it.chosen is None:
                raise ValueError("type: nothing to undo")
        elif kind == "next":
            if it.chosen is None:
                raise ValueError("type: choose a candidate (or none) before asking for new ones")

    def apply(self, action: dict[str, Any]) -> None:
        """Apply a checked action (see :meth:`check`, which this calls first)."""
        self.check(action)
        it = self.it
        assert it is not None
        kind = action["type"]
        if kind == "choose":
            pos = action["position"]
            it.chosen = -1 if pos == 0 else it.order[pos - 1]
            mask, seg = it.before if pos == 0 else (it.masks[it.chosen], it.segs[it.chosen])
            self.state.cur_mask, self.state.cur_seg = mask.copy(), seg.copy()
        elif kind in ("click", "stroke"):
            saved = self.state.copy()
            st = self.state
            if kind == "click":
                click = Click(int(action["row"]), int(action["col"]), bool(action["positive"]))
                st.cur_mask, st.cur_seg = apply_click(self.case.target, st.cur_mask, st.cur_seg, click, self.radius)
                st.input_mask, st.input_seg = apply_click(self.case.target, st.input_mask, st.input_seg, click,
                                                          self.radius)
                st.clicked[click.row, click.col] = True
            else:
                px = stroke_pixels(self.case.target.shape, [tuple(p) for p in action["points"]], int(action["radius"]))
                for m, s in ((st.cur_mask, st.cur_seg), (st.input_mask, st.input_seg)):
                    m |= px
                    s[px] = bool(action["positive"])
            it.corrections.append((action, saved))
        elif kind == "undo":
            if it.corrections:
                _, saved = it.corrections.pop()
                self.state = saved
            else:
                it.chosen = None
                self.state.cur_mask, self.state.cur_seg = it.before[0].copy(), it.before[1].copy()
        elif kind == "next":
            last = it.number == self.cfg.max_iters
            self._record(stop="max-iters" if last else "")
            if not last:
                self._propose(it.number + 1)
        elif kind == "accept":
            if it.chosen is None:
                it.chosen = -1  # handing in without a choice keeps the segmentation on screen
            corrected = bool(it.corrections)
            if not corrected or it.number == self.cfg.max_iters:
                self._record(stop="done" if not corrected else "max-iters")
            else:
                self._record(stop="")
                self._record_hand_in(it.number + 1)

    # -- internals -----------------------------------------------------------------------------------
    def _propose(self, number: int) -> None:
        st = self.state
        partial = self.method.kind == "partial"
        feed_mask, feed_seg = (st.cur_mask, st.cur_seg) if partial else (st.input_mask, st.input_seg)
        t0 = time.perf_counter()
        masks, segs, scores = self.method.propose(self.case.image, feed_mask, feed_seg, self.n_ask, self._method_rng)
        seconds = time.perf_counter() - t0
        # The screen order: seeded per participant, case and iteration, never by the model's scores.
        order = np.random.default_rng([*self.order_seed, self.case.index, number]).permutation(self.n_ask)
        self.it = _Iteration(
            number=number, feed_mask=feed_mask.copy(), masks=np.asarray(masks, dtype=bool),
            segs=np.asarray(segs, dtype=bool), scores=None if scores is None else np.asarray(scores, dtype=np.float64),
            order=[int(j) for j in order], model_seconds=seconds, before=(st.cur_mask.copy(), st.cur_seg.copy()),
            started=time.perf_counter(),
        )

    def _metrics(self, seg: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
        target = self.case.target
        fn, fp = error_regions(target, mask, seg)
        return {"dice": dice(seg, target), "iou": iou(seg, target), "hd95": hd95(seg, target),
                "coverage": float(mask.mean()), "n_fn": int(fn.sum()), "n_fp": int(fp.sum()),
                "n_pending": int((~mask).sum())}

    def _record(self, stop: str) -> None:
        it = self.it
        assert it is not None and it.chosen is not None
        mask, seg = it.before if it.chosen < 0 else (it.masks[it.chosen], it.segs[it.chosen])
        made = [[int(a["row"]), int(a["col"]), int(a["positive"])] if a["type"] == "click"
                else [int(a["points"][0][0]), int(a["points"][0][1]), int(a["positive"])] for a, _ in it.corrections]
        record = {
            "iteration": it.number, **self._metrics(seg, mask), "click_made": bool(made), "n_clicks": len(made),
            "click_reason": "human" if made else "", "clicks": made, "clicks_so_far": self.clicks_so_far,
            "candidate_scores": [float("nan")] * self.n_ask if it.scores is None else [float(s) for s in it.scores],
            "candidate_dice": [dice(s, self.case.target) for s in it.segs], "chosen": it.chosen,
            "diversity": _diversity(it.segs), "model_seconds": it.model_seconds,
            "total_seconds": time.perf_counter() - it.started, "stop": stop,
        }
        self.steps.append({key: record[key] for key in STEP_KEYS})
        self.clicks_so_far += len(made)
        self.stop = stop

    def _record_hand_in(self, number: int) -> None:
        """The corrected segmentation handed in: a step without candidates (nothing proposed)."""
        st = self.state
        record = {
            "iteration": number, **self._metrics(st.cur_seg, st.cur_mask), "click_made": False, "n_clicks": 0,
            "click_reason": "", "clicks": [], "clicks_so_far": self.clicks_so_far, "candidate_scores": [],
            "candidate_dice": [], "chosen": -1, "diversity": 0.0, "model_seconds": 0.0, "total_seconds": 0.0,
            "stop": "done",
        }
        self.steps.append({key: record[key] for key in STEP_KEYS})
        self.stop = "done"
