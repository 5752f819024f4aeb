"""A user study's TOML file: its cases, arms and practice, and each participant's plan.

Schema (every key but ``name`` and ``arms`` is optional)::

    name = "pilot"                  # letters, digits, '.', '_' and '-' (the default log folder)
    description = "one line"
    dataset = "disks"               # any dataset simulator.datasets.make_dataset accepts
    cases = 2                       # the dataset's first N sessions (so a robot run with
                                    #   --n-sessions N holds the same sessions), or a list of indices
    practice = 1                    # practice cases: the sessions after the study's cases (not exported)
    seed = 0                        # the session seed: the same images, targets and model samples as
                                    #   probseg-simulate --seed; also seeds the candidates' screen order
    start = "clicks"                # the session's start input, as in the simulator
    max_iters = 20                  # proposals per case at most
    brush_radius = 1                # click brush radius in px (default: max(1, round(H / 64)))

    [[arms]]
    label = "probseg best-of-8"     # default: "<method> K=<k>"
    method = "probseg"; k = 8       # checkpoint = "..." (optional)

Every participant does every case under every arm, practice first (under their first arm); the arm
order is row ``participant % n`` of a balanced Latin square (Williams design), so each arm comes first
equally often and, for an even number of arms, follows every other arm equally often.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from simulator.corrections import START_KINDS
from simulator.datasets import make_dataset
from simulator.methods import METHODS
from simulator.runner import RunSettings
from simulator.session import SessionConfig

__all__ = ["UserArm", "UserStudy", "Task", "latin_square_row", "load_user_study", "parse_user_study"]

_TOP_KEYS = ("name", "description", "dataset", "cases", "practice", "seed", "start", "max_iters", "brush_radius", "arms")
_ARM_KEYS = ("label", "method", "k", "checkpoint")
_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass(frozen=True)
class UserArm:
    """One arm: a method and the number of candidates it shows (single-proposal methods show 1)."""

    label: str
    method: str
    k: int
    checkpoint: str | None = None


@dataclass(frozen=True)
class Task:
    """One case a participant annotates: ``kind`` is ``practice`` or ``study``; ``case`` a session index."""

    kind: str
    arm: int
    case: int


@dataclass(frozen=True)
class UserStudy:
    """A validated study (see the module docstring)."""

    name: str
    arms: tuple[UserArm, ...]
    cases: tuple[int, ...]
    practice: tuple[int, ...]
    description: str = ""
    dataset: str = "disks"
    seed: int = 0
    start: str = "clicks"
    max_iters: int = 20
    brush_radius: int | None = None
    path: Path | None = field(default=None, compare=False)

    def run_settings(self, arm: int) -> RunSettings:
        """The arm as the simulator's run settings (policy ``human``; ``n_sessions`` covers every case)."""
        a = self.arms[arm]
        return RunSettings(
            dataset=self.dataset, n_sessions=max((*self.cases, *self.practice)) + 1, method=a.method,
            checkpoint=a.checkpoint, policy="human", seed=self.seed,
            session=SessionConfig(k=a.k, start=self.start, max_iters=self.max_iters, brush_radius=self.brush_radius),
        )

    def plan(self, participant: int) -> list[Task]:
        """Participant ``participant``'s cases in order: practice, then every case under each arm in turn."""
        order = latin_square_row(len(self.arms), participant)
        tasks = [Task("practice", order[0], c) for c in self.practice]
        return tasks + [Task("study", a, c) for a in order for c in self.cases]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("path")
        return d

    def fingerprint(self) -> str:
        """SHA-256 of the study's content: a log made under another study is refused."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


def latin_square_row(n: int, row: int) -> list[int]:
    """Row ``row % n`` of the balanced Latin square of order ``n`` (Williams design): a permutation of 0..n-1.

    The first row is 0, 1, n-1, 2, n-2, ...; row r adds r modulo n. For odd n, rows n..2n-1 would be
    the mirrored rows; here rows repeat with period n (each arm is first once per n participants).
    """
    if n < 1:
        raise ValueError(f"n: need at least one arm, got {n}")
    first, lo, hi = [0], 1, n - 1
    while len(first) < n:
        first.append(lo)
        lo += 1
        if len(first) < n:
            first.append(hi)
            hi -= 1
    r = row % n
    return [(x + r) % n for x in first]


def _err(path: str, msg: str) -> ValueError:
    return ValueError(f"{path}: {msg}")


def _int(raw: dict[str, Any], key: str, default: Any, low: int, path: str = "") -> Any:
    value = raw.get(key, default)
    if value is None and default is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _err(path + key, f"expected an integer >= {low}, got {value!r}")
    return value


def _str(raw: dict[str, Any], key: str, default: str, path: str = "") -> str:
    value = raw.get(key, default)
    if not isinstance(value, str):
        raise _err(path + key, f"expected a string, got {value!r}")
    return value


def _unknown(raw: dict[str, Any], allowed: tuple[str, ...], path: str) -> None:
    for key in raw:
        if key not in allowed:
            raise _err(path + key, f"unknown field; allowed: {', '.join(allowed)}")


def parse_user_study(raw: dict[str, Any], path: Path | None = None) -> UserStudy:
    """Validate a study given as the parsed TOML; see :func:`load_user_study`."""
    _unknown(raw, _TOP_KEYS, "")
    if "name" not in raw:
        raise _err("name", "missing; every study has a name")
    name = _str(raw, "name", "")
    if not _NAME.match(name):
        raise _err("name", f"use letters, digits, '.', '_' and '-' only, got {name!r}")
    start = _str(raw, "start", "clicks")
    if start not in START_KINDS:
        raise _err("start", f"unknown value {start!r}; allowed: {', '.join(START_KINDS)}")
    cases_raw = raw.get("cases", 1)
    if isinstance(cases_raw, int) and not isinstance(cases_raw, bool) and cases_raw >= 1:
        cases = tuple(range(cases_raw))
    elif isinstance(cases_raw, list) and cases_raw and all(
            isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in cases_raw):
        cases = tuple(cases_raw)
        if len(set(cases)) != len(cases):
            raise _err("cases", f"lists a case twice: {cases_raw!r}")
    else:
        raise _err("cases", f"expected a number of cases >= 1 or a list of session indices, got {cases_raw!r}")
    n_practice = _int(raw, "practice", 0, 0)
    first_practice = max(cases) + 1
    practice = tuple(range(first_practice, first_practice + n_practice))
    arms_raw = raw.get("arms")
    if not isinstance(arms_raw, list) or not arms_raw:
        raise _err("arms", "missing; give at least one [[arms]] table")
    arms: list[UserArm] = []
    for i, a in enumerate(arms_raw):
        p = f"arms[{i}]."
        if not isinstance(a, dict):
            raise _err(f"arms[{i}]", "expected a table")
        _unknown(a, _ARM_KEYS, p)
        method = _str(a, "method", "")
        if method not in METHODS:
            raise _err(p + "method", f"unknown value {method!r}; allowed: {', '.join(METHODS)}")
        k = _int(a, "k", 1, 1, p)
        checkpoint = a.get("checkpoint")
        if checkpoint is not None and not isinstance(checkpoint, str):
            raise _err(p + "checkpoint", f"expected a string, got {checkpoint!r}")
        arms.append(UserArm(label=_str(a, "label", f"{method} K={k}", p), method=method, k=k, checkpoint=checkpoint))
    labels = [a.label for a in arms]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise _err("arms", f"two arms are labelled {dup[0]!r}")
    study = UserStudy(
        name=name, arms=tuple(arms), cases=cases, practice=practice, description=_str(raw, "description", ""),
        dataset=_str(raw, "dataset", "disks"), seed=_int(raw, "seed", 0, 0), start=start,
        max_iters=_int(raw, "max_iters", 20, 1), brush_radius=_int(raw, "brush_radius", None, 0), path=path,
    )
    n_needed = max((*cases, *practice)) + 1
    available = len(make_dataset(study.dataset, None, start=start))  # ValueError naming dataset
    if available < n_needed:
        raise _err("cases", f"the study needs {n_needed} sessions of {study.dataset!r} (cases and practice), "
                            f"which has {available}")
    for i in range(len(arms)):
        try:
            # The simulator's own checks (method, checkpoint, K, start, brush); "human" is not one of its
            # policies, so the arm is checked under a robot policy.
            replace(study.run_settings(i), policy="first").validate()
        except ValueError as exc:
            raise _err(f"arms[{i}]", str(exc)) from None
    return study


def load_user_study(source: str | Path) -> UserStudy:
    """Read and validate a study TOML file.

    Raises:
        ValueError: ``PATH: ...`` for an unreadable or invalid TOML file, else naming the field at fault.
    """
    path = Path(source)
    try:
        return parse_user_study(tomllib.loads(path.read_text()), path)
    except tomllib.TOMLDecodeError as exc:
        message = f"not valid TOML: {exc}"
    except OSError as exc:
        message = f"cannot read: {exc.strerror or exc}"
    except ValueError as exc:
        message = str(exc)
    raise ValueError(f"{path}: {message}")
