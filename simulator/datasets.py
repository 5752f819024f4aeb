"""Session datasets: which images and targets a run's sessions use.

A dataset is named by a string (``disks``; later issues add real data) and yields
:class:`SessionCase` objects by index; case ``i`` depends only on ``(seed, i)``, so any subset of
sessions (a chunk, a resumed run, another worker count) sees exactly the same data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from probseg.data import DiskSpec, make_disk_image, subset_mask
from probseg.data.disks import HELDOUT_SEED, N_HELDOUT

__all__ = ["SessionCase", "SessionDataset", "DiskSessions", "make_dataset", "DATASETS"]

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
    """

    index: int
    image_id: str
    target_id: str
    image: np.ndarray
    target: np.ndarray
    human_scribbles: tuple[np.ndarray, np.ndarray] | None = None


class SessionDataset:
    """Base class: ``len(ds)`` sessions, ``ds.case(i, seed)`` the i-th."""

    name = "base"
    has_human_scribbles = False

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def case(self, index: int, seed: int) -> SessionCase:  # pragma: no cover - abstract
        raise NotImplementedError


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
        )


DATASETS = ("disks",)


def make_dataset(name: str, n_sessions: int | None = None) -> SessionDataset:
    """A session dataset by name; ``n_sessions`` caps its size (default: the dataset's own)."""
    if name == "disks":
        n = N_HELDOUT if n_sessions is None else n_sessions
        return DiskSessions(n)
    raise ValueError(f"dataset: unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")


def session_rng(seed: int, index: int) -> np.random.Generator:
    """The generator a session's own draws (start, sampling, policy, correction) come from."""
    return np.random.default_rng([seed, index, STREAM_SESSION])
