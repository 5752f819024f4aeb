"""The states a filmstrip draws, stored in ``steps.parquet`` as packed bool masks, so figures never re-run a session.

For the first :data:`LOGGED_ITERS` iterations of every session a step record carries, besides its
metrics, the session's states as bytes (``None`` on later iterations, and in run folders written
before these columns existed):

* ``start_state`` (iteration 1 only): the start input, bool (2, H, W) = (mask, seg);
* ``shown_state``: what the method was given, bool (2, H, W);
* ``candidates``: the K candidates, bool (K, 2, H, W) (K = the step's ``n_shown``);
* ``chosen_state``: the segmentation after the choice, before the corrections (on a rejection, the
  one kept), bool (2, H, W);
* ``corrected_state``: the state after the robot's corrections, bool (2, H, W).

The encoding (:func:`encode`): one byte holding the number of dimensions, each dimension as a
little-endian uint32, then ``zlib.compress(np.packbits(array, axis=None))``: a shaped bit array, its
bits compressed (masks are mostly runs of one value). :func:`decode` inverts it.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LOGGED_ITERS", "STATE_KEYS", "decode", "encode", "no_states", "read_states", "state_columns"]

# Iterations of each session whose states are stored: a filmstrip draws the first three. All of them
# would multiply steps.parquet's size by up to max_iters / 3 for no figure that uses them.
LOGGED_ITERS = 3
STATE_KEYS = ("start_state", "shown_state", "candidates", "chosen_state", "corrected_state")


def encode(masks: np.ndarray) -> bytes:
    """A bool array of any shape (at most 255 dimensions) as bytes: see the module's docstring."""
    arr = np.asarray(masks)
    if arr.dtype != bool:
        raise ValueError(f"masks: expected a bool array, got dtype {arr.dtype}")
    header = struct.pack(f"<B{arr.ndim}I", arr.ndim, *arr.shape)
    return header + zlib.compress(np.packbits(arr, axis=None).tobytes())


def decode(blob: bytes) -> np.ndarray:
    """The bool array :func:`encode` stored in ``blob`` (its shape restored)."""
    if not isinstance(blob, (bytes, bytearray, memoryview)) or len(blob) < 1:
        raise ValueError(f"blob: expected the bytes of encode(), got {type(blob).__name__}")
    blob = bytes(blob)
    ndim = blob[0]
    try:
        shape = struct.unpack_from(f"<{ndim}I", blob, 1)
        bits = np.frombuffer(zlib.decompress(blob[1 + 4 * ndim:]), dtype=np.uint8)
        n = int(np.prod(shape, dtype=np.int64))
        if bits.size * 8 < n:
            raise ValueError(f"{bits.size * 8} bits for shape {shape}")
        return np.unpackbits(bits, count=n).astype(bool).reshape(shape)
    except (struct.error, zlib.error, ValueError) as exc:
        raise ValueError(f"blob: not the bytes of encode(): {exc}") from None


def state_columns(shot: dict[str, Any], mask: np.ndarray, seg: np.ndarray) -> dict[str, bytes | None]:
    """A step's :data:`STATE_KEYS` from its trace entry ``shot`` (see :func:`simulator.session.run_session`'s
    ``trace``) and the state after its corrections, ``mask``, ``seg``: bool (H, W) each."""
    start = None if "start_mask" not in shot else encode(np.stack([shot["start_mask"], shot["start_seg"]]))
    return {
        "start_state": start,
        "shown_state": encode(np.stack([shot["shown_mask"], shot["shown_seg"]])),
        "candidates": encode(np.stack([shot["masks"], shot["segs"]], axis=1)),
        "chosen_state": encode(np.stack([shot["mask"], shot["seg"]])),
        "corrected_state": encode(np.stack([mask, seg])),
    }


def no_states() -> dict[str, None]:
    """The :data:`STATE_KEYS` of a step whose states are not stored (after the first :data:`LOGGED_ITERS`)."""
    return dict.fromkeys(STATE_KEYS)


def read_states(path: str | os.PathLike, session: int, n_iters: int = LOGGED_ITERS) -> list[dict[str, Any]]:
    """The stored states of the first ``n_iters`` iterations of ``session`` in the steps.parquet at ``path``.

    Only that session's rows and the columns a filmstrip needs are read. Returns one dict per
    iteration, as :func:`simulator.session.run_session`'s ``trace`` has them: ``iteration``,
    ``shown_mask``, ``shown_seg``, ``mask``, ``seg`` (after the choice), ``after_mask``, ``after_seg``
    (after the corrections; bool (H, W) each), ``masks``, ``segs`` (bool (K, H, W)), ``chosen`` and
    ``clicks`` (``[row, col, positive]`` each); the first also ``start_mask``, ``start_seg``.

    Raises:
        ValueError: naming ``path`` when the file stores no states (written before they were stored,
            or by a person's session) or none for ``session``.
    """
    import pandas as pd
    import pyarrow.parquet as pq

    path = Path(path)
    missing = [k for k in STATE_KEYS if k not in pq.read_schema(path).names]
    if missing:
        raise ValueError(f"path: {path} stores no session states (no {missing[0]!r} column)")
    df = pd.read_parquet(path, columns=["session", "iteration", "chosen", "clicks", *STATE_KEYS],
                         filters=[("session", "==", int(session))])
    df = df[df["shown_state"].notna()].sort_values("iteration", kind="stable").head(n_iters)
    if df.empty:
        raise ValueError(f"path: {path} stores no states of session {session}")
    out = []
    for row in df.itertuples(index=False):
        shown, cands = decode(row.shown_state), decode(row.candidates)
        chosen, after = decode(row.chosen_state), decode(row.corrected_state)
        shot: dict[str, Any] = {
            "iteration": int(row.iteration), "shown_mask": shown[0], "shown_seg": shown[1],
            "masks": cands[:, 0], "segs": cands[:, 1], "chosen": int(row.chosen), "mask": chosen[0],
            "seg": chosen[1], "after_mask": after[0], "after_seg": after[1],
            "clicks": [[int(v) for v in c] for c in (row.clicks if row.clicks is not None else [])],
        }
        if row.start_state is not None:
            start = decode(row.start_state)
            shot.update(start_mask=start[0], start_seg=start[1])
        out.append(shot)
    return out
