"""Session datasets: which images and targets a run's sessions use.

A dataset is named by a string and yields :class:`SessionCase` objects by index; case ``i`` depends
only on ``(seed, i)``, so any subset of sessions (a chunk, a resumed run, another worker count) sees
exactly the same data. Names:

* ``disks``: the paper's held-out synthetic disk images; the seed draws each session's target.
* ``medscribble:PATH``: a MedScribble folder (:func:`probseg.data.load_medscribble`), all tasks;
  ``medscribble:PATH?tasks=ACDC,WBC`` keeps only the listed tasks (first-level folder names).
* ``nifti:MANIFEST.csv``: 2D slices of 3D volumes listed in a manifest
  (:func:`probseg.data.load_nifti_manifest`); no human scribbles.
* ``folder:PATH``: a folder of images and masks (:func:`probseg.data.load_image_folder`).
* ``NAME[:ARG]``: a dataset an installed package registers in the ``probseg.datasets`` entry-point
  group (:mod:`simulator.plugins`), as the four above are: ``factory(ARG or None, n_sessions, start)``
  returns a :class:`SessionDataset`.

Real images are fixed, so their cases do not depend on the seed. With ``start='human'`` a real
dataset has one session per (image, annotator) pair, so every annotator's scribbles are used; with any
other start, one session per image.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from probseg.data import (
    DiskSpec,
    Example,
    load_image_folder,
    load_medscribble,
    load_nifti_manifest,
    make_disk_image,
    subset_mask,
)
from probseg.data.disks import HELDOUT_SEED, N_HELDOUT

from .plugins import Registry

__all__ = ["SessionCase", "SessionDataset", "DiskSessions", "RealSessions", "make_dataset", "missing_data", "DataNotFound",
           "DATASETS", "DATASET_FORMS", "task_filter", "with_tasks"]

# Stream tags: each kind of random draw has its own stream spawned from (seed, session index).
STREAM_TARGET = 0
STREAM_SESSION = 1


@dataclass
class SessionCase:
    """One session's data.

    Attributes:
        index: the session index within the run.
        image_id: a stable identifier of the image.
        target_id: a stable identifier of the target within the image.
        image: float32 (H, W).
        target: bool (H, W).
        human_scribbles: ``(pos, neg)`` bool (H, W) each, or None where the dataset has none.
        task: the collection the image belongs to (``disks``, ``ACDC``, ...), for per-task tables.
    """

    index: int
    image_id: str
    target_id: str
    image: np.ndarray
    target: np.ndarray
    human_scribbles: tuple[np.ndarray, np.ndarray] | None = None
    task: str = ""


class SessionDataset:
    """Base class: ``len(ds)`` sessions, ``ds.case(i, seed)`` the i-th."""

    name = "base"
    has_human_scribbles = False

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def case(self, index: int, seed: int) -> SessionCase:  # pragma: no cover - abstract
        raise NotImplementedError

    def session_tasks(self) -> list[str]:
        """The tasks the sessions' images belong to, sorted (checked against a model's training tasks)."""
        return []


class DiskSessions(SessionDataset):
    """One session per held-out disk image; the target is a uniformly drawn non-empty disk subset.

    The images are the paper's held-out split (fixed by :data:`probseg.data.disks.HELDOUT_SEED`,
    never seen in training); the run's seed draws the targets.
    """

    name = "disks"

    def __init__(self, n: int = N_HELDOUT, spec: DiskSpec = DiskSpec()) -> None:
        if n < 1:
            raise ValueError(f"n_sessions: must be >= 1, got {n}")
        self.n = n
        self.spec = spec

    def session_tasks(self) -> list[str]:
        return ["disks"]

    def __len__(self) -> int:
        return self.n

    def case(self, index: int, seed: int) -> SessionCase:
        disk = make_disk_image(np.random.default_rng([HELDOUT_SEED, index]), self.spec)
        rng = np.random.default_rng([seed, index, STREAM_TARGET])
        bits = int(rng.integers(1, 2**self.spec.n_disks))
        subset = [j for j in range(self.spec.n_disks) if bits >> j & 1]
        return SessionCase(
            index=index,
            image_id=f"disks-heldout-{index:04d}",
            target_id="disks-" + "".join(str(j) for j in subset),
            image=disk.image,
            target=subset_mask(disk.disks, subset),
            task="disks",
        )


REAL_KINDS = ("medscribble", "nifti", "folder")


@lru_cache(maxsize=8)
def _load_examples(kind: str, path: str, tasks: tuple[str, ...] | None) -> tuple[Example, ...]:
    """A real source's examples, loaded once per process (each Ray worker runs many chunks).

    Keyed by the resolved path: a process that edits the files must call ``_load_examples.cache_clear()``.
    """
    if kind == "medscribble":
        return tuple(load_medscribble(path, tasks))
    if kind == "nifti":
        return tuple(load_nifti_manifest(path))
    return tuple(load_image_folder(path))


class RealSessions(SessionDataset):
    """Sessions on real images: one per example, or one per (example, annotator) for the human start.

    Examples load on first use and are cached per process. Sessions follow the loader's example
    order; for the human start, each example's annotators in turn.
    """

    def __init__(
        self,
        kind: str,
        path: str | Path,
        tasks: tuple[str, ...] | None = None,
        n_sessions: int | None = None,
        start: str | None = None,
    ) -> None:
        """
        Args:
            kind: ``medscribble``, ``nifti`` or ``folder``.
            path: the source folder (or manifest for ``nifti``).
            tasks: MedScribble tasks to keep (None: all).
            n_sessions: at most this many sessions (None: all).
            start: the run's start; ``human`` makes one session per annotator. None (a caller that
                does not say) gives one session per example, carrying its first annotator's
                scribbles, so a human start still runs.
        """
        if kind not in REAL_KINDS:
            raise ValueError(f"dataset: unknown kind {kind!r}; allowed: {', '.join(REAL_KINDS)}")
        if tasks is not None and kind != "medscribble":
            raise ValueError(f"dataset: only medscribble takes a task filter, not {kind}")
        if n_sessions is not None and n_sessions < 1:
            raise ValueError(f"n_sessions: must be >= 1, got {n_sessions}")
        self.kind = kind
        self.path = str(Path(path).expanduser().resolve())
        self.tasks = tuple(sorted(set(tasks))) if tasks is not None else None
        self.n_sessions = n_sessions
        self.start = start
        self.name = kind
        self._sessions: list[tuple[int, int | None]] | None = None

    @property
    def examples(self) -> tuple[Example, ...]:
        """The source's examples (loaded now if not yet in this process)."""
        return _load_examples(self.kind, self.path, self.tasks)

    @property
    def has_human_scribbles(self) -> bool:  # type: ignore[override]
        """True when every example has at least one annotator's scribbles."""
        return all(ex.scribbles for ex in self.examples)

    def sessions(self) -> list[tuple[int, int | None]]:
        """``(example index, annotator index or None)`` per session, capped at ``n_sessions``."""
        if self._sessions is None:
            examples = self.examples
            if self.start == "human":
                pairs: list[tuple[int, int | None]] = [
                    (e, a) for e, ex in enumerate(examples) for a in range(len(ex.scribbles))
                ]
            else:
                pairs = [(e, None) for e in range(len(examples))]
            self._sessions = pairs if self.n_sessions is None else pairs[: self.n_sessions]
        return self._sessions

    def __len__(self) -> int:
        return len(self.sessions())

    def session_tasks(self) -> list[str]:
        examples = self.examples
        return sorted({examples[e].task for e, _ in self.sessions()})

    def case(self, index: int, seed: int) -> SessionCase:
        """Session ``index``; ``seed`` is unused: real images and targets are fixed.

        Returns copies, so a session can never alter the cached examples.
        """
        sessions = self.sessions()
        if not 0 <= index < len(sessions):
            raise ValueError(f"index: session {index} out of range for {len(sessions)} sessions")
        e, a = sessions[index]
        ex = self.examples[e]
        if a is None and self.start is None and ex.scribbles:
            a_scribbles: tuple[np.ndarray, np.ndarray] | None = ex.scribbles[0]
        elif a is not None:
            a_scribbles = ex.scribbles[a]
        else:
            a_scribbles = None
        return SessionCase(
            index=index,
            image_id=f"{self.kind}/{ex.example_id}",
            target_id=ex.target_name if a is None else f"annotator-{ex.annotators[a]}",
            image=ex.image.copy(),
            target=ex.target.copy(),
            human_scribbles=None if a_scribbles is None else (a_scribbles[0].copy(), a_scribbles[1].copy()),
            task=ex.task,
        )


def _parse_real(kind: str, rest: str | None) -> tuple[str, tuple[str, ...] | None]:
    """``(path, tasks)`` of a real dataset's argument (``PATH`` or, for medscribble, ``PATH?tasks=A,B``)."""
    name = f"{kind}:{rest or ''}"
    rest = rest or ""
    tasks: tuple[str, ...] | None = None
    if kind == "medscribble" and "?" in rest:
        rest, _, query = rest.rpartition("?")
        key, eq, value = query.partition("=")
        if key != "tasks" or not eq:
            raise ValueError(f"dataset: unknown option {query!r} in {name!r}; expected ?tasks=A,B")
        tasks = tuple(t.strip() for t in value.split(",") if t.strip())
        if not tasks:
            raise ValueError(f"dataset: ?tasks= lists no task in {name!r}")
    if not rest:
        raise ValueError(f"dataset: {name!r} names no path; expected {kind}:PATH")
    return rest, tasks


def task_filter(dataset: str) -> tuple[str, tuple[str, ...]]:
    """``(the dataset without its task filter, the tasks it keeps)`` of a dataset string: for
    ``medscribble:PATH?tasks=A,B`` that is ``("medscribble:PATH", ("A", "B"))``; any other dataset, or a
    MedScribble one without a filter, keeps every task: ``(dataset, ())``."""
    if not dataset.startswith("medscribble:"):
        return dataset, ()
    path, tasks = _parse_real("medscribble", dataset.removeprefix("medscribble:"))
    return f"medscribble:{path}", tasks or ()


def with_tasks(dataset: str, tasks: Sequence[str]) -> str:
    """``dataset`` (``medscribble:PATH``) keeping only ``tasks``: :func:`task_filter`'s inverse."""
    return f"{task_filter(dataset)[0]}?tasks={','.join(tasks)}"


def disk_sessions(arg: str | None, n_sessions: int | None = None, start: str | None = None) -> SessionDataset:
    """``disks``: the held-out disk images (:class:`DiskSessions`); takes no argument."""
    if arg is not None:
        raise ValueError(f"dataset: 'disks' takes no argument, got 'disks:{arg}'")
    return DiskSessions(N_HELDOUT if n_sessions is None else n_sessions)


def _real_factory(kind: str) -> Any:
    def factory(arg: str | None, n_sessions: int | None = None, start: str | None = None) -> SessionDataset:
        path, tasks = _parse_real(kind, arg)
        dataset = RealSessions(kind, path, tasks, n_sessions, start)
        try:
            # Load now (once per process): bad data fails here, before a run writes anything.
            _ = dataset.examples
        except ValueError as exc:
            raise ValueError(f"dataset: {exc}") from None
        return dataset

    factory.__name__ = factory.__qualname__ = f"{kind}_sessions"
    factory.__doc__ = f"``{kind}:PATH``: real images (:class:`RealSessions`)."
    return factory


medscribble_sessions = _real_factory("medscribble")
nifti_sessions = _real_factory("nifti")
folder_sessions = _real_factory("folder")

# The shipped datasets, each registered under its name in pyproject.toml's ``probseg.datasets``
# entry points. A dataset is named ``NAME`` or ``NAME:ARG``; the factory registered as NAME is
# called as ``factory(ARG or None, n_sessions, start)`` and returns a :class:`SessionDataset`.
SHIPPED_DATASETS = {
    "disks": "simulator.datasets:disk_sessions",
    "medscribble": "simulator.datasets:medscribble_sessions",
    "nifti": "simulator.datasets:nifti_sessions",
    "folder": "simulator.datasets:folder_sessions",
}
# The accepted forms of the shipped names, as help and error messages show them.
DATASET_FORMS = {"disks": "disks", "medscribble": "medscribble:PATH[?tasks=A,B]", "nifti": "nifti:MANIFEST.csv",
                 "folder": "folder:PATH"}


class DatasetRegistry(Registry):
    """:data:`DATASETS`: the dataset names (no ``module:factory`` form: ``NAME:ARG`` is a name and
    its argument). Iterating gives each name's accepted form (``medscribble:PATH[?tasks=A,B]``);
    a plug-in's shows as ``NAME[:ARG]``."""

    def __iter__(self) -> Iterator[str]:
        return (DATASET_FORMS.get(name, f"{name}[:ARG]") for name in self.entries())


DATASETS = DatasetRegistry("dataset", "probseg.datasets", SHIPPED_DATASETS, specs=False)


def make_dataset(name: str, n_sessions: int | None = None, start: str | None = None) -> SessionDataset:
    """A session dataset by name (see the module docstring).

    Args:
        name: ``NAME`` or ``NAME:ARG`` with NAME in :data:`DATASETS`: ``disks``,
            ``medscribble:PATH[?tasks=A,B]``, ``nifti:MANIFEST.csv``, ``folder:PATH`` or an installed
            plug-in's (a ``probseg.datasets`` entry point, called as ``factory(ARG or None,
            n_sessions, start)``).
        n_sessions: caps its size (default: the dataset's own; a real dataset's is all its sessions).
        start: the run's start. For a real dataset ``human`` gives one session per annotator, any
            other start one per image; None keeps the old behaviour (one per image, the first
            annotator's scribbles attached). Disks ignore it.
    Raises:
        ValueError: ``dataset: ...`` for an unknown name or bad data (naming the file),
            ``start: ...`` when ``start='human'`` and an image has no human scribbles.
    """
    kind, sep, arg = name.partition(":")
    if kind not in DATASETS.entries():
        raise ValueError(f"dataset: unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    dataset = DATASETS.load(kind)(arg if sep else None, n_sessions, start)
    if not isinstance(dataset, SessionDataset):
        raise ValueError(f"dataset: {kind!r} made a {type(dataset).__name__}, not a SessionDataset")
    if start == "human" and not dataset.has_human_scribbles:
        raise ValueError(f"start: dataset {name!r} has no human scribbles for every image; use clicks or scribbles")
    return dataset


class DataNotFound(ValueError):
    """A dataset's files are not where its name says (not an error in the name itself)."""


# What each shipped real dataset's path must hold, for the message when it is absent.
_NEEDS = {
    "medscribble": "the MedScribble collection (a folder in its layout, see README: Real images)",
    "nifti": "a NIfTI manifest (CSV)",
    "folder": "an image folder (images/ and masks/)",
}


def missing_data(name: str) -> str | None:
    """What a shipped real dataset needs, when its path does not exist; None when it exists (or
    the name is not a shipped real dataset: its factory says what it lacks when it is made).

    A relative path is resolved from the current folder, as :func:`make_dataset` resolves it.
    """
    kind, sep, arg = name.partition(":")
    if kind not in _NEEDS or not sep:
        return None
    path, _ = _parse_real(kind, arg)
    if Path(path).expanduser().exists():
        return None
    return (f"needs {_NEEDS[kind]} at {path} ({Path(path).expanduser().resolve()} from {Path.cwd()}), "
            "which is not there")


def session_rng(seed: int, index: int) -> np.random.Generator:
    """The generator a session's own draws (start, sampling, policy, correction) come from."""
    return np.random.default_rng([seed, index, STREAM_SESSION])
