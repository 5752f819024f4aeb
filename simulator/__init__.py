"""simulator: robot-annotator sessions for probabilistic interactive segmentation.

A robot annotator runs interactive sessions against ground truth: a method proposes K candidates, a
policy picks one, and the robot corrects it with the field's click rules; every step is logged.

Quick start::

    from simulator import RunSettings, run
    steps, sessions, summary = run(RunSettings(method="probseg", policy="best-of-k", k=8), workers=2)

or one session::

    from simulator import SessionConfig, make_method, make_policy, run_session
    steps = run_session(image, target, make_method("probseg"), make_policy("best-of-k"), SessionConfig(k=8),
                        np.random.default_rng(0))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The public names and the module each lives in, imported on first use (PEP 562) so that a
# command's --help does not import torch, pandas and scikit-image first.
_EXPORTS = {
    "METHODS": "methods", "make_method": "methods",
    "EffortModel": "metrics", "session_metrics": "metrics",
    "POLICIES": "policies", "make_policy": "policies",
    "RunSettings": "runner", "run": "runner",
    "SessionConfig": "session", "run_session": "session",
}

__all__ = sorted(_EXPORTS, key=lambda n: (not n.isupper(), n.lower()))

if TYPE_CHECKING:
    from .methods import METHODS, make_method
    from .metrics import EffortModel, session_metrics
    from .policies import POLICIES, make_policy
    from .runner import RunSettings, run
    from .session import SessionConfig, run_session


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'simulator' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
