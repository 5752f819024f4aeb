"""simulator: robot-annotator sessions for probabilistic interactive segmentation.

A robot annotator runs interactive sessions against ground truth: a method proposes K candidates, a
policy picks one, and the robot corrects it with the field's click rules; every step is logged.

Quick start::

    from simulator import RunSettings, run
    steps, sessions, summary = run(RunSettings(method="probseg", policy="best-of-k", k=8), workers=2)

or one session::

    from simulator import run_session, make_method
    steps = run_session(image, target, make_method("probseg"), "best-of-k", k=8, rng=np.random.default_rng(0))
"""

from .methods import METHODS, make_method
from .metrics import EffortModel, session_metrics
from .policies import POLICIES, make_policy
from .runner import RunSettings, run
from .session import SessionConfig, run_session

__all__ = [
    "METHODS",
    "POLICIES",
    "EffortModel",
    "RunSettings",
    "SessionConfig",
    "make_method",
    "make_policy",
    "run",
    "run_session",
    "session_metrics",
]
