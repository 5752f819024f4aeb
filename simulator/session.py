"""One robot-annotator session: a method proposes, a policy chooses, the robot corrects.

State: the current segmentation ``(mask, seg)`` (bool (H, W), ``seg ⊆ mask``; undecided pixels count
as background) and the annotator's own input (start plus every correction, bool (H, W) each).

What a method is fed depends on its kind, so that partial and complete methods are compared fairly:

* a ``partial`` method gets the accepted state -- the chosen proposal with the corrections since
  applied -- and builds on it, as in the paper's loop (accepted pixels stay decided);
* a ``complete`` method gets only the annotator's input and re-predicts every pixel from it each
  iteration, as in RITM: its previous prediction never locks a pixel.

Each iteration: propose K candidates (K = 1 for single-proposal methods); the policy picks one (or
rejects all, keeping the current segmentation); the step is recorded (its Dice is the chosen
segmentation's, given the clicks so far -- before this iteration's correction, RITM's convention);
then the robot corrects. With decided errors (FN = mask & ~seg & GT, FP = seg & ~GT) it makes up to
``corrections_per_iter`` clicks with the correction rule, recomputed after each; without errors it
makes none, so a partial model gets to grow -- unless the chosen proposal decided nothing new (a
stall) or every candidate was rejected. Then the rule runs over the errors of the segmentation a
person would hand in (undecided pixels are background there, as in the Dice): the decided errors
plus the undecided target pixels. Undecided background is never clicked: deciding it as background
would change nothing a person hands in. A click decides the brush pixels that share the clicked
pixel's GT label and overrides the state there, so every click changes the handed-in segmentation.

The session ends when the annotator is done: right after a step is recorded, if the segmentation has
no error (Dice 1 with undecided pixels as background; under ``pending_as_errors`` nothing may be
pending either), or its Dice reaches ``stop_at`` when that is set; otherwise after ``max_iters``.
The last step record says why (``stop``). The protocol of v0.1 survives as named variants:
``fallback="v0.1"`` (the fallback also clicks undecided background) and ``early_stop=False`` (every
session runs ``max_iters`` iterations); the oracle's former acceptance rule is a policy setting
(:class:`~simulator.policies.BestOfK`'s ``acceptance``).
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Any

import numpy as np

from .corrections import (
    CORRECTION_RULES,
    START_KINDS,
    StartInput,
    apply_click,
    click_start,
    error_regions,
    human_start,
    next_click,
    resolve_brush_radius,
    scribble_start,
)
from .methods import CheckedMethod, Method, checked
from .metrics import HANDED_IN, dice, hd95, iou
from .policies import Policy
from .setting import setting
from .steplog import LOGGED_ITERS, STATE_KEYS, no_states, state_columns

__all__ = [
    "FALLBACKS", "LOG_KEYS", "STOP_REASONS", "STEP_KEYS", "ProposalRequest", "SessionConfig", "run_session", "session_steps",
    "start_session", "stop_reason",
]

# How the robot corrects after a stall or a rejection: ``hand-in`` clicks the errors of the segmentation
# a person would hand in; ``v0.1`` (the first release's rule) also clicks undecided background.
FALLBACKS = ("hand-in", "v0.1")
# Why a session ended (the last step record's ``stop``): no error left, Dice reached ``stop_at``, or
# the iteration budget ran out.
STOP_REASONS = ("done", "stop-at", "max-iters")

# The keys of every step record, in order.
STEP_KEYS = (
    "iteration",
    "dice",
    "iou",
    "hd95",
    "coverage",
    "n_fn",
    "n_fp",
    "n_pending",
    "click_made",
    "n_clicks",
    "click_reason",
    "clicks",
    "clicks_so_far",
    "candidate_scores",
    "candidate_dice",
    "chosen",
    "diversity",
    "model_seconds",
    "total_seconds",
    "stop",
)
TIMING_KEYS = ("model_seconds", "total_seconds")
# The keys of a simulated session's step records: :data:`STEP_KEYS`, the number of candidates shown
# (``n_shown``: K for a multi-proposal method, else 1) and the first iterations' states
# (:mod:`simulator.steplog`), so that steps.parquet alone draws a filmstrip.
LOG_KEYS = (*STEP_KEYS, "n_shown", *STATE_KEYS)


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


@dataclass(frozen=True)
class SessionConfig:
    """A session's protocol settings (see :func:`run_session`), each with its help text (the options
    of ``probseg-simulate`` and the keys of a study file are made from these fields); validated on
    construction."""

    k: int = setting(8, "candidates per iteration (single-proposal methods use 1)", group="arm")
    start: str = setting(
        "clicks", "the annotator's first input, one of: {choices}. clicks: a positive click at the target's deepest "
        "point and a negative one at the background's; scribbles: one simulated stroke in each; human: the "
        "dataset's own scribbles. NoC counts 1 per click and per stroke", choices=START_KINDS)
    max_iters: int = setting(20, "iterations (propose, pick, correct) a session runs at most")
    corrections_per_iter: int = setting(1, "correction clicks the robot makes after each pick, at most")
    correction_rule: str = setting(
        "ritm", "how the robot picks its correction clicks, one of: {choices} (see probseg.interaction.next_click)",
        choices=CORRECTION_RULES)
    brush_radius: int | None = setting(None, "click brush radius in px (default: max(1, round(H/64)))")
    pending_as_errors: bool = setting(False, "count pending target pixels as errors every iteration (an ablation)")
    allow_reject: bool = setting(True, "oracle policies may keep the current segmentation when no candidate beats "
                                       "it (non-oracle policies never reject)")
    fallback: str = setting(
        "hand-in", "after a stall or rejection, one of: {choices}. hand-in clicks the errors of the segmentation a "
        "person would hand in (undecided = background); v0.1 also clicks undecided background", choices=FALLBACKS)
    early_stop: bool = setting(True, "end a session once its segmentation has no error (--no-early-stop: always "
                                     "run --max-iters, as v0.1 did)")
    stop_at: float | None = setting(None, "end a session once its Dice reaches DICE instead of 1", metavar="DICE")

    def __post_init__(self) -> None:
        if not _is_int(self.k) or self.k < 1:
            raise ValueError(f"k: must be an integer >= 1, got {self.k!r}")
        if self.start not in START_KINDS:
            raise ValueError(f"start: unknown start {self.start!r}; allowed: {list(START_KINDS)}")
        if not _is_int(self.max_iters) or self.max_iters < 1:
            raise ValueError(f"max_iters: must be an integer >= 1, got {self.max_iters!r}")
        if not _is_int(self.corrections_per_iter) or self.corrections_per_iter < 1:
            raise ValueError(f"corrections_per_iter: must be an integer >= 1, got {self.corrections_per_iter!r}")
        if self.correction_rule not in CORRECTION_RULES:
            raise ValueError(
                f"correction_rule: unknown rule {self.correction_rule!r}; allowed: {list(CORRECTION_RULES)}"
            )
        resolve_brush_radius(self.brush_radius, (64, 64))  # validates the value only
        if self.fallback not in FALLBACKS:
            raise ValueError(f"fallback: unknown fallback {self.fallback!r}; allowed: {list(FALLBACKS)}")
        if not isinstance(self.early_stop, bool):
            raise ValueError(f"early_stop: expected True or False, got {self.early_stop!r}")
        if self.stop_at is not None:
            if isinstance(self.stop_at, bool) or not isinstance(self.stop_at, (int, float, np.floating, np.integer)) \
                    or not 0.0 < float(self.stop_at) <= 1.0:
                raise ValueError(f"stop_at: expected None or a Dice in (0, 1], got {self.stop_at!r}")
            if not self.early_stop:
                raise ValueError("stop_at: a Dice to stop at needs early_stop on")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_image_target(image: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(image)
    if image.ndim != 2 or min(image.shape) < 1:
        raise ValueError(f"image: expected a non-empty 2-D array (H, W), got shape {image.shape}")
    if image.dtype == bool or not np.issubdtype(image.dtype, np.number) or not np.all(np.isfinite(image)):
        raise ValueError("image: expected finite real values")
    target = np.asarray(target)
    if target.dtype != bool:
        raise ValueError(f"target: expected a bool array, got dtype {target.dtype}")
    if target.shape != image.shape:
        raise ValueError(f"target: shape {target.shape} differs from image shape {image.shape}")
    return image.astype(np.float32), target


def _dice_from_counts(inter: int, total: int) -> float:
    """:func:`~simulator.metrics.dice` from its counts (the same float operations, so the same value)."""
    return 1.0 if total == 0 else 2.0 * inter / total


def _candidate_dice(segs: np.ndarray, target: np.ndarray) -> list[float]:
    """Each candidate's Dice against ``target``, as ``[dice(s, target) for s in segs]`` gives it."""
    inter = (segs & target).sum(axis=(1, 2))
    sums = segs.sum(axis=(1, 2))
    n_target = int(target.sum())
    return [_dice_from_counts(int(i), int(n) + n_target) for i, n in zip(inter, sums)]


def _diversity(segs: np.ndarray) -> float:
    """Mean pairwise Dice distance (1 - Dice) of the candidates' foregrounds; 0 for one candidate.

    The pairwise intersections come from one matrix product instead of K(K-1)/2 mask comparisons.
    """
    k = len(segs)
    if k < 2:
        return 0.0
    flat = segs.reshape(k, -1)
    flat = flat.astype(np.float32 if flat.shape[1] < 2**24 else np.float64)  # whole counts stay exact
    inter = flat @ flat.T
    sums = flat.sum(axis=1)
    return float(np.mean([1.0 - _dice_from_counts(int(inter[i, j]), int(sums[i]) + int(sums[j]))
                          for i, j in combinations(range(k), 2)]))


def stop_reason(cfg: SessionConfig, target: np.ndarray, mask: np.ndarray, seg: np.ndarray, dice_value: float) -> str:
    """Why the annotator stops after seeing ``(mask, seg)``, or "" to go on (``max-iters`` is the caller's).

    ``done``: the segmentation a person would hand in (``seg``, undecided as background) equals
    ``target``, and under ``pending_as_errors`` nothing is pending. ``stop-at``: ``dice_value`` reached
    ``cfg.stop_at`` (which then replaces ``done``). Never with ``early_stop`` off.
    """
    if not cfg.early_stop:
        return ""
    if cfg.stop_at is not None:
        return "stop-at" if dice_value >= cfg.stop_at else ""
    if (seg != target).any() or (cfg.pending_as_errors and not mask.all()):
        return ""
    return "done"


def _start(cfg: SessionConfig, target: np.ndarray, radius: int, human_scribbles: Any, rng: np.random.Generator) -> StartInput:
    if cfg.start != "human" and human_scribbles is not None:
        raise ValueError(f"human_scribbles: only used with start='human', got start={cfg.start!r}")
    if cfg.start == "clicks":
        return click_start(target, radius)
    if cfg.start == "scribbles":
        return scribble_start(target, rng, radius)
    return human_start(target, human_scribbles)


def run_session(
    image: np.ndarray,
    target: np.ndarray,
    method: Method,
    policy: Policy,
    config: SessionConfig,
    rng: np.random.Generator,
    *,
    human_scribbles: tuple[np.ndarray, np.ndarray] | None = None,
    trace: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Run one session and return its step records, one per iteration (1..n, n <= config.max_iters).

    Args:
        image: float (H, W), any finite values.
        target: bool (H, W), the object the robot wants.
        method: a :class:`~simulator.methods.Method` (e.g. :func:`~simulator.methods.make_method`'s);
            its every answer is checked against the Method contract (:class:`~simulator.methods.CheckedMethod`).
        policy: a :class:`~simulator.policies.Policy` (e.g. :func:`~simulator.policies.make_policy`'s).
        config: the protocol, a :class:`SessionConfig` (each field's meaning is in its help text).
            NoC counts 1 per start click and per 8-connected start stroke.
        rng: the session's only source of randomness. Four independent streams are derived from it
            (start strokes, method samples, policy draws, random-error clicks), so changing the policy
            or the click rule does not change the candidates a method draws at the first iteration.
        human_scribbles: ``(pos, neg)`` bool (H, W) each; required by, and only allowed with,
            ``config.start == 'human'``.
        trace: when a list, one dict of arrays per iteration is appended to it, for figures:
            ``shown_mask``, ``shown_seg`` (bool (H, W), what the method was given), ``masks``,
            ``segs`` (bool (K, H, W), the candidates), ``chosen``, ``mask``, ``seg`` (the state after
            the choice, before corrections) and ``clicks`` (as in the step record). The start input is
            in the first dict as ``start_mask``, ``start_seg``. Tracing never changes the session.
    Returns:
        One dict per iteration with the keys :data:`LOG_KEYS`: ``dice``, ``iou``, ``hd95`` of the
        chosen (or, on rejection, kept) segmentation given the clicks so far, before this iteration's
        corrections; ``coverage`` (decided fraction); ``n_fn``, ``n_fp`` (decided errors);
        ``n_pending``; ``click_made``, ``n_clicks`` (corrections made after recording); ``clicks``: those
        corrections as ``[row, col, positive (0/1)]``, in order;
        ``click_reason``, why the robot clicked: ``error`` (the segmentation had errors -- decided
        ones, plus pending target pixels under ``pending_as_errors``; after a stall or a rejection
        the click may still land on a pending pixel, as the rule then runs over both), ``stall`` (no
        error, but the chosen proposal decided nothing new, so it clicked a pending pixel),
        ``reject`` (no error, every candidate rejected: likewise) or ``""`` (no click);
        ``clicks_so_far`` (start inputs plus corrections of earlier iterations); ``candidate_scores``
        (NaN where the method has none); ``candidate_dice``; ``chosen`` (-1 = rejected);
        ``diversity`` (mean pairwise Dice distance of the candidates, 0 for K = 1);
        ``model_seconds`` (time in ``method.propose``); ``total_seconds`` (the whole iteration);
        ``stop``: on the last record, why the session ended (one of :data:`STOP_REASONS`), else "";
        ``n_shown`` (candidates shown: ``k`` for a multi-proposal method, else 1); the states of the
        first :data:`~simulator.steplog.LOGGED_ITERS` iterations as packed masks (``None`` later;
        see :mod:`simulator.steplog`).
        There is no iteration-0 row: before the first proposal no method has acted, and iteration i's
        Dice already reflects exactly the start plus i - 1 rounds of corrections.
    Raises:
        ValueError: naming the argument at fault.
    """
    method = checked(method)
    steps = start_session(image, target, method, policy, config, human_scribbles, rng, trace)
    request = next(steps)
    while True:
        t_model = time.perf_counter()
        proposals = method.propose(request.image, request.mask, request.seg, request.k, request.rng)
        try:
            request = steps.send((proposals, time.perf_counter() - t_model))
        except StopIteration as done:
            return done.value


def start_session(
    image: np.ndarray,
    target: np.ndarray,
    method: CheckedMethod,
    policy: Policy,
    cfg: SessionConfig,
    human_scribbles: tuple[np.ndarray, np.ndarray] | None,
    rng: np.random.Generator,
    trace: list[dict[str, Any]] | None = None,
) -> "SessionSteps":
    """Check a session's arguments (as :func:`run_session` does) and return its :func:`session_steps`.

    ``method`` comes wrapped by :func:`~simulator.methods.checked` (the driver calls it and sends the
    answers, so the wrapper is what checks them).

    Raises:
        ValueError: naming the argument at fault (the start's own checks run at the first ``next``).
    """
    image, target = _check_image_target(image, target)
    if not isinstance(method, CheckedMethod):
        raise ValueError(f"method: expected a method wrapped by simulator.methods.checked, got {type(method).__name__}")
    if not callable(getattr(policy, "choose", None)):
        hint = f" (make_policy({policy!r}) makes one)" if isinstance(policy, str) else ""
        raise ValueError(f"policy: expected a Policy, an object with a choose method{hint}, got {type(policy).__name__}")
    if not isinstance(cfg, SessionConfig):
        raise ValueError(f"config: expected a SessionConfig, got {type(cfg).__name__}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng: expected a numpy Generator, got {type(rng).__name__}")
    return session_steps(image, target, method, policy, cfg, human_scribbles, rng, trace)


@dataclass(frozen=True)
class ProposalRequest:
    """What a session asks its method for at one iteration: ``method.propose(image, mask, seg, k, rng)``.

    ``image`` float32 (H, W); ``mask``, ``seg`` bool (H, W), the session's own arrays (a
    :class:`~simulator.methods.CheckedMethod` hands the method it wraps copies); ``rng`` the session's method stream.
    """

    image: np.ndarray
    mask: np.ndarray
    seg: np.ndarray
    k: int
    rng: np.random.Generator


# Yields requests, is sent ((masks, segs, scores), model seconds), returns the step records.
SessionSteps = Generator[
    ProposalRequest, tuple[tuple[np.ndarray, np.ndarray, np.ndarray | None], float], list[dict[str, Any]]
]


def session_steps(
    image: np.ndarray,
    target: np.ndarray,
    method: Method,
    policy: Policy,
    cfg: SessionConfig,
    human_scribbles: tuple[np.ndarray, np.ndarray] | None,
    rng: np.random.Generator,
    trace: list[dict[str, Any]] | None = None,
) -> SessionSteps:
    """One session as a generator, so that a driver decides how proposals are computed.

    It yields a :class:`ProposalRequest` per iteration and is sent back ``((masks, segs, scores),
    model_seconds)``: what the checked ``method.propose`` (or ``propose_batch``) returns for that
    request, so already checked against the Method contract, and the seconds it took (a
    driver that computes many sessions' proposals together passes each its share). When the session
    ends it returns its step records (``StopIteration.value``). Everything but the proposals is
    computed here, so every driver gives the same records for the same proposals: :func:`run_session`
    calls ``method.propose`` per request (the reference), :mod:`simulator.lockstep` batches requests
    of many sessions. Arguments as :func:`run_session`'s, already checked (``image`` float32).
    ``total_seconds`` counts this session's own work and its model seconds, not the time it waits
    while a driver serves other sessions.
    """
    radius = resolve_brush_radius(cfg.brush_radius, target.shape)
    start_rng, method_rng, policy_rng, click_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(rng.integers(0, 2**32, size=4)).spawn(4)
    )

    begin = _start(cfg, target, radius, human_scribbles, start_rng)
    input_mask, input_seg = begin.mask.copy(), begin.seg.copy()  # the annotator's own input
    cur_mask, cur_seg = begin.mask.copy(), begin.seg.copy()  # on screen; for a partial method, the accepted state
    clicked = begin.clicked.copy()
    clicks_so_far = begin.n_inputs
    partial = method.kind == "partial"
    n_ask = cfg.k if method.multi else 1
    steps: list[dict[str, Any]] = []

    for iteration in range(1, cfg.max_iters + 1):
        t_iter = time.perf_counter()
        feed_mask, feed_seg = (cur_mask, cur_seg) if partial else (input_mask, input_seg)
        waited = time.perf_counter()
        (masks, segs, scores), model_seconds = yield ProposalRequest(image, feed_mask, feed_seg, n_ask, method_rng)
        t_iter += time.perf_counter() - waited - model_seconds  # count the model's seconds, not the wait

        chosen = int(policy.choose(
            masks, segs, scores, gt=target, current_mask=cur_mask, current_seg=cur_seg,
            allow_reject=cfg.allow_reject, rng=policy_rng,
        ))
        if not -1 <= chosen < n_ask:
            raise ValueError(f"policy: returned index {chosen} for {n_ask} candidates")
        if chosen >= 0:
            progressed = bool((masks[chosen] & ~feed_mask).any())
            cur_mask, cur_seg = masks[chosen].copy(), segs[chosen].copy()
        else:
            progressed = False

        logged = iteration <= LOGGED_ITERS  # steps.parquet keeps these iterations' states (simulator.steplog)
        if trace is not None or logged:
            shot: dict[str, Any] = {
                "iteration": iteration, "shown_mask": feed_mask.copy(), "shown_seg": feed_seg.copy(),
                "masks": np.asarray(masks, dtype=bool).copy(), "segs": np.asarray(segs, dtype=bool).copy(),
                "chosen": chosen, "mask": cur_mask.copy(), "seg": cur_seg.copy(),
            }
            if iteration == 1:
                shot.update(start_mask=begin.mask.copy(), start_seg=begin.seg.copy())
            if trace is not None:
                trace.append(shot)
        fn, fp = error_regions(target, cur_mask, cur_seg)
        record: dict[str, Any] = {
            "iteration": iteration,
            "dice": dice(cur_seg, target),
            "iou": iou(cur_seg, target),
            "hd95": hd95(cur_seg, target),
            "coverage": float(cur_mask.mean()),
            "n_fn": int(fn.sum()),
            "n_fp": int(fp.sum()),
            "n_pending": int((~cur_mask).sum()),
            "clicks_so_far": clicks_so_far,
            "candidate_scores": [float("nan")] * n_ask if scores is None else [float(s) for s in scores],
            "candidate_dice": _candidate_dice(segs, target),
            "chosen": chosen,
            "diversity": _diversity(segs),
        }

        stop = stop_reason(cfg, target, cur_mask, cur_seg, record["dice"])
        if not stop and iteration == cfg.max_iters:
            stop = "max-iters"
        handed_in = stop in HANDED_IN  # the annotator is done: no correction, no further proposal

        # Pending target pixels join the error regions only when the proposal brought nothing new, so a
        # cautious method is not charged for pixels it has not decided yet unless it is stuck. Pending
        # background joins them only under the v0.1 fallback: as background is what a person hands in
        # for an undecided pixel, clicking it there fixes nothing.
        stuck = not progressed
        fn, fp = error_regions(target, cur_mask, cur_seg, pending_fn=cfg.pending_as_errors)
        had_errors = bool(((fn | fp) & ~clicked).any())
        made: list[list[int]] = []
        for _ in range(0 if handed_in else cfg.corrections_per_iter):
            fn, fp = error_regions(
                target, cur_mask, cur_seg, pending_fn=stuck or cfg.pending_as_errors,
                pending_fp=stuck and cfg.fallback == "v0.1",
            )
            click = next_click(target, fn, fp, clicked, cfg.correction_rule, click_rng)
            if click is None:
                break
            cur_mask, cur_seg = apply_click(target, cur_mask, cur_seg, click, radius)
            input_mask, input_seg = apply_click(target, input_mask, input_seg, click, radius)
            clicked[click.row, click.col] = True
            made.append([click.row, click.col, int(click.positive)])
        n_clicks = len(made)
        clicks_so_far += n_clicks
        reason = "" if n_clicks == 0 else "error" if had_errors else "reject" if chosen < 0 else "stall"
        record.update(click_made=n_clicks > 0, n_clicks=n_clicks, click_reason=reason, clicks=made, stop=stop,
                      n_shown=n_ask, **(state_columns(shot, cur_mask, cur_seg) if logged else no_states()),
                      model_seconds=model_seconds, total_seconds=time.perf_counter() - t_iter)
        steps.append({key: record[key] for key in LOG_KEYS})
        if trace is not None:
            trace[-1]["clicks"] = [list(c) for c in made]
        if handed_in:
            break
    return steps
