"""Lockstep sessions: many sessions of one arm advance together, one batched proposal call per round.

Each session is a :func:`~simulator.session.session_steps` generator that asks for proposals; this
driver collects the requests of up to ``batch_size`` live sessions, computes them with one
:func:`propose_many` call (for probseg models: one batched forward pass per input size, see
:meth:`probseg.ProbSeg.propose_batch`), hands each session its own proposals, and starts the next
session as soon as one ends, so the batch stays full.

A session's records do not depend on which sessions shared its batch, on ``batch_size`` or on the
worker count: every random draw comes from the session's own streams, drawn in the session's own
order, and a batched proposal equals the per-session proposal bit for bit. The per-session path,
:func:`~simulator.session.run_session`, is the reference; ``tests/test_lockstep.py`` checks that
both give the same tables.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .methods import Method, checked
from .policies import Policy
from .session import ProposalRequest, SessionConfig, SessionSteps, start_session

__all__ = ["LockstepCase", "propose_many", "run_lockstep"]

Proposals = tuple[np.ndarray, np.ndarray, np.ndarray | None]


@dataclass(frozen=True)
class LockstepCase:
    """One session to run: ``key`` names it in the results; the rest as :func:`~simulator.session.run_session`."""

    key: Any
    image: np.ndarray
    target: np.ndarray
    rng: np.random.Generator
    human_scribbles: tuple[np.ndarray, np.ndarray] | None = None


def propose_many(method: Method, requests: list[ProposalRequest]) -> list[Proposals]:
    """Each request's ``method.propose`` result, batched when the method has ``propose_batch``.

    Through :class:`~simulator.methods.CheckedMethod` (``method`` is wrapped unless it is already),
    so each answer is checked and the method gets copies of each session's state, as in
    :func:`~simulator.session.run_session`.
    """
    return checked(method).propose_batch([(r.image, r.mask, r.seg, r.k, r.rng) for r in requests])


@dataclass
class _Live:
    case: LockstepCase
    steps: SessionSteps
    request: ProposalRequest
    began: float


def run_lockstep(
    cases: Iterable[LockstepCase],
    method: Method,
    policy: Policy,
    cfg: SessionConfig,
    batch_size: int = 16,
) -> Iterator[tuple[Any, list[dict[str, Any]], float]]:
    """Run sessions in lockstep, at most ``batch_size`` at a time.

    Args:
        cases: the sessions, started in this order (read lazily, one as a slot frees).
        method, policy, cfg: the arm, shared by every session; ``method`` is wrapped once in a
            :class:`~simulator.methods.CheckedMethod` (unless it is one), which checks every answer.
        batch_size: most sessions whose proposals are computed together (>= 1).
    Yields:
        ``(key, steps, seconds)`` per session as it ends (not in input order): its step records, as
        :func:`~simulator.session.run_session` returns them, and the seconds from its start to its
        end (including the rounds spent on other sessions).
    Raises:
        ValueError: naming the argument at fault.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size: must be an integer >= 1, got {batch_size!r}")
    method = checked(method)  # once for every session: each answer is checked as it comes back
    pending = iter(cases)
    live: list[_Live] = []
    exhausted = False
    while True:
        while not exhausted and len(live) < batch_size:
            case = next(pending, None)
            if case is None:
                exhausted = True
                break
            began = time.perf_counter()
            steps = start_session(case.image, case.target, method, policy, cfg, case.human_scribbles, case.rng)
            live.append(_Live(case, steps, next(steps), began))
        if not live:
            return
        t_model = time.perf_counter()
        proposals = propose_many(method, [s.request for s in live])
        share = (time.perf_counter() - t_model) / len(live)
        still: list[_Live] = []
        for session, proposal in zip(live, proposals):
            try:
                session.request = session.steps.send((proposal, share))
                still.append(session)
            except StopIteration as done:
                yield session.case.key, done.value, time.perf_counter() - session.began
        live = still
