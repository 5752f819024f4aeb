"""Running many sessions: chunks, Ray, resumable outputs, tables.

A run is one *arm* (a method, a policy, K, a start and protocol settings) over a dataset's sessions.
Sessions are grouped into chunks; each chunk runs as a Ray task (or in-process with ``workers=0``)
and its results are written atomically to ``OUT/chunks/`` as soon as it finishes, so an interrupted
run loses nothing: running the same command on the same ``--out`` skips finished chunks. Each
session draws only from generators spawned from ``(seed, session index)``, so the tables are the same
whatever the number of workers or the chunking.
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from probseg.atomic import atomic_write
from probseg.lazy import lazy_import

from .datasets import DATASETS, SessionDataset, make_dataset, session_rng
from .methods import METHODS, Method, make_method
from .metrics import EffortModel, priced_steps, session_ends, session_metrics
from .policies import ACCEPTANCE_RULES, POLICIES, make_policy
from .lockstep import LockstepCase, run_lockstep
from .session import SessionConfig, run_session
from .setting import flatten, setting, unflatten

pd = lazy_import("pandas")  # imported on first use: --help and usage errors come at once

__all__ = ["RunSettings", "run", "run_chunk", "summarize", "RESULTS_DIR"]

RESULTS_DIR = Path("results") / "runs"
# Columns that measure time: they differ between runs and are left out of determinism checks.
TIMING_COLUMNS = ("model_seconds", "total_seconds", "session_seconds")


@dataclass
class RunSettings:
    """Everything that defines an arm's results (recorded in ``config.json``), each field with its help
    text: ``probseg-simulate``'s options and a study file's keys are made from these fields and those
    of the records nested here (:mod:`simulator.setting`).

    The protocol is ``session`` (a :class:`~simulator.session.SessionConfig`), the effort constants
    ``effort`` (an :class:`~simulator.metrics.EffortModel`); :meth:`to_dict` writes all of it as one flat
    dict (``k``, ``max_iters``, ``c_click``, ...), the form ``config.json`` and ``study.json`` hold, and
    :meth:`from_dict` reads it back. Execution settings (workers, Ray address, output folder, progress
    bar) are not part of it: they never change the tables.
    """

    dataset: str = setting(
        "disks", "session data: {choices}. medscribble: a MedScribble folder, ?tasks=ACDC,WBC keeps those tasks; "
        "nifti: a CSV manifest (image,label,label_values,axis,slices); folder: images/ and masks/ (PNG or NPY), "
        "optional scribbles/NAME_ANNOTATOR.npy. With --start human, one session per image and annotator",
        names=DATASETS)
    n_sessions: int | None = setting(None, "sessions (default: the dataset's, 1000 for disks)")
    method: str = setting("probseg", "one of: {choices}; or module.path:factory, any object with the Method "
                                     "protocol (simulator.methods.Method)", names=METHODS)
    checkpoint: str | None = setting(None, "override the method's checkpoint (a name or a .pt path)")
    policy: str = setting("best-of-k", "one of: {choices}; or module.path:factory", names=POLICIES)
    seed: int = setting(0, "every random draw derives from (seed, session)")
    session: SessionConfig = field(default_factory=SessionConfig, metadata={"group": "protocol"})
    acceptance: str = setting(
        "no-worse-dice", "oracle policies, one of: {choices}. no-worse-dice never accepts a candidate whose "
        "foreground has a lower Dice than the current one; pixel-score is v0.1's rule",
        choices=ACCEPTANCE_RULES, group="protocol")
    error_weight: float = setting(2.0, "best-of-k: score = correct - w * wrong")
    epsilon: float = setting(0.1, "noisy-best-of-k: probability of a random pick")
    rw_beta: float | None = setting(None, "random walker beta (default: the value tuned on training data)")
    effort: EffortModel = field(default_factory=EffortModel, metadata={"group": "effort"})
    chunk_size: int = setting(20, "sessions per task and per saved chunk", group="execution")

    def validate(self) -> None:
        """Raise ``ValueError`` naming the setting at fault."""
        if self.method not in METHODS:
            raise ValueError(f"method: unknown method {self.method!r}; allowed: {', '.join(METHODS)}")
        if self.policy not in POLICIES:
            raise ValueError(f"policy: unknown policy {self.policy!r}; allowed: {', '.join(POLICIES)}")
        if self.n_sessions is not None and self.n_sessions < 1:
            raise ValueError(f"n_sessions: must be >= 1, got {self.n_sessions}")
        if self.seed < 0:
            raise ValueError(f"seed: must be >= 0, got {self.seed}")
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size: must be >= 1, got {self.chunk_size}")
        if self.acceptance not in ACCEPTANCE_RULES:
            raise ValueError(f"acceptance: unknown rule {self.acceptance!r}; allowed: {', '.join(ACCEPTANCE_RULES)}")
        if self.checkpoint is not None and self.method.startswith("random-walker"):
            raise ValueError(f"checkpoint: method {self.method!r} has no checkpoint")
        if self.rw_beta is not None and not self.method.startswith("random-walker"):
            raise ValueError(f"rw_beta: only the random-walker methods take it, not {self.method!r}")
        # The records check their own fields on construction; here only that they are the records.
        for name, record in (("session", SessionConfig), ("effort", EffortModel)):
            if not isinstance(getattr(self, name), record):
                raise ValueError(f"{name}: expected a {record.__name__}, got {type(getattr(self, name)).__name__}")
        start = self.session.start
        dataset = make_dataset(self.dataset, self.n_sessions, start=start)
        if start == "human" and not dataset.has_human_scribbles:
            raise ValueError(f"start: dataset {self.dataset!r} has no human scribbles; use clicks or scribbles")
        self.make_policy()

    def make_policy(self) -> Any:
        kw: dict[str, Any] = {}
        if self.policy in ("best-of-k", "noisy-best-of-k"):
            kw["error_weight"] = self.error_weight
            kw["acceptance"] = self.acceptance
        if self.policy == "noisy-best-of-k":
            kw["epsilon"] = self.epsilon
        return make_policy(self.policy, **kw)

    @property
    def real_data(self) -> bool:
        """True for real images (any dataset but the synthetic disks)."""
        return self.dataset != "disks"

    def make_method(self) -> Method:
        """The arm's method; on real images the defaults are the medical checkpoints and the walker's
        beta tuned on the real training tasks."""
        kw: dict[str, Any] = {}
        if self.method.startswith("random-walker"):
            from .baselines import tuned_beta, tuned_mode, walker_entry

            family = walker_entry(self.dataset)  # a fold's unseen tasks take the walker tuned on its training tasks
            if self.rw_beta is None:
                kw["beta"] = tuned_beta(self.method, family)
                kw["mode"] = tuned_mode(self.method, family)  # the solver the beta was tuned with
            else:
                kw["beta"] = self.rw_beta
            return make_method(self.method, **kw)
        checkpoint = self.checkpoint
        if checkpoint is None and self.real_data:
            checkpoint = METHODS[self.method]["real_checkpoint"]
        return make_method(self.method, checkpoint=checkpoint)

    def to_dict(self) -> dict[str, Any]:
        """The settings as one flat dict (the nested records' fields inlined): ``config.json``'s form."""
        return flatten(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunSettings":
        """The settings of a flat dict as :meth:`to_dict` writes it; a missing key keeps its default.

        Raises:
            ValueError: naming a key that is no setting, or a value its record refuses.
        """
        return unflatten(cls, d)


# Sessions whose proposals one lockstep round computes together (1: the per-session reference path).
DEFAULT_BATCH_SIZE = 8
# What starting a local Ray instance costs a run that keeps working while it starts (see :func:`run`):
# on 2 quiet cores the main job (1,000 disk sessions, ~22 s in-process) took ~20 s shared with one
# Ray worker, where its estimate saves ~11 s: ~7 s go to Ray's start-up, its worker's imports and
# its shutdown. A run whose estimate saves less than this stays in-process.
RAY_STARTUP_SECONDS = 7.0


@dataclass
class _ChunkContext:
    """What every chunk of an arm shares, built once per process (a Ray worker runs many chunks)."""

    rs: RunSettings
    dataset: SessionDataset
    policy: Any


_CONTEXT: dict[str, _ChunkContext] = {}
_METHODS: dict[str, Method] = {}


def _chunk_context(settings: dict[str, Any]) -> _ChunkContext:
    key = json.dumps(settings, sort_keys=True, default=str)
    ctx = _CONTEXT.get(key)
    if ctx is None:
        rs = RunSettings.from_dict(settings)
        ctx = _ChunkContext(rs, make_dataset(rs.dataset, rs.n_sessions, start=rs.session.start), rs.make_policy())
        _CONTEXT.clear()  # one arm at a time: keep only the latest
        _CONTEXT[key] = ctx
    return ctx


def run_chunk(
    settings: dict[str, Any],
    method: Method,
    indices: list[int],
    crash_marker: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run the sessions ``indices``; return ``(step rows, session rows)``, in the order of ``indices``.

    Runs in a Ray worker or in-process, on one thread (restored afterwards) and in inference mode.
    ``batch_size`` sessions advance in lockstep (:func:`~simulator.lockstep.run_lockstep`); 1 runs
    each with :func:`~simulator.session.run_session`, the reference. The rows are the same for any
    ``batch_size`` except ``session_seconds`` (in lockstep: from the session's start to its end,
    rounds spent on other sessions included). ``crash_marker`` is a test hook: when given and the
    file does not exist, the worker creates it and dies, so tests can check that a lost chunk is retried.
    """
    import torch

    if crash_marker is not None and not os.path.exists(crash_marker):
        Path(crash_marker).touch()
        os._exit(1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # workers share the cores; one thread each avoids oversubscription
    try:
        with torch.inference_mode():
            return _run_sessions(_chunk_context(settings), method, indices, batch_size)
    finally:
        torch.set_num_threads(threads)


def _run_sessions(
    ctx: _ChunkContext, method: Method, indices: list[int], batch_size: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rs = ctx.rs
    cfg = rs.session
    cases = {index: ctx.dataset.case(index, rs.seed) for index in indices}
    human = cfg.start == "human"
    results: dict[int, tuple[list[dict[str, Any]], float]] = {}
    if batch_size == 1:
        for index, case in cases.items():
            t0 = time.perf_counter()
            steps = run_session(case.image, case.target, method, ctx.policy, cfg, session_rng(rs.seed, index),
                                human_scribbles=case.human_scribbles if human else None)
            results[index] = (steps, time.perf_counter() - t0)
    else:
        todo = (LockstepCase(index, case.image, case.target, session_rng(rs.seed, index),
                             case.human_scribbles if human else None) for index, case in cases.items())
        for index, steps, seconds in run_lockstep(todo, method, ctx.policy, cfg, batch_size):
            results[index] = (steps, seconds)
    step_rows: list[dict[str, Any]] = []
    session_rows: list[dict[str, Any]] = []
    for index, case in cases.items():
        steps, seconds = results[index]
        ident = {
            "session": index, "task": case.task, "image": case.image_id, "target": case.target_id, "start": cfg.start,
            "seed": rs.seed, "method": rs.method, "policy": rs.policy, "k": cfg.k,
        }
        step_rows.extend({**ident, **s} for s in priced_steps(steps, rs.effort))
        m = session_metrics(steps, corrections_per_iter=cfg.corrections_per_iter, max_iters=cfg.max_iters,
                            effort_model=rs.effort)
        session_rows.append({**ident, **m, "session_seconds": seconds})
    return step_rows, session_rows


def _ray_chunk(
    settings: dict[str, Any], method_box: list[Any], indices: list[int], crash_marker: str | None, batch_size: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """:func:`run_chunk` in a Ray worker. The method comes boxed (a list holding its object ref), so Ray
    does not fetch it for each task: a worker deserialises it once per run and keeps it."""
    import ray

    ref = method_box[0]
    method = _METHODS.get(ref.hex())
    if method is None:
        _METHODS.clear()
        method = _METHODS[ref.hex()] = ray.get(ref)
    return run_chunk(settings, method, indices, crash_marker, batch_size)


def _chunks(n: int, size: int) -> list[list[int]]:
    return [list(range(i, min(n, i + size))) for i in range(0, n, size)]


def _write_atomic(df: pd.DataFrame, path: Path) -> None:
    atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))


def _write_text_atomic(text: str, path: Path) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def _versions() -> dict[str, str]:
    import ray
    import scipy
    import skimage
    import torch

    import probseg

    return {
        "python": platform.python_version(), "probseg": probseg.__version__, "torch": torch.__version__,
        "numpy": np.__version__, "scipy": scipy.__version__, "scikit-image": skimage.__version__,
        "pandas": pd.__version__, "ray": ray.__version__,
    }


def _prepare_out(out: Path, settings: RunSettings, method: Method) -> None:
    """Create ``out`` and its config, or check that an existing run there has the same settings."""
    try:
        (out / "chunks").mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"out: cannot write to {out}: {exc.strerror or exc}") from None
    cfg_path = out / "config.json"
    identity = settings.to_dict()
    info = getattr(getattr(method, "model", None), "info", None)  # a probseg model's ProbSeg.info
    ckpt_path, ckpt_sha = (info.checkpoint_path, info.checkpoint_sha256) if info is not None else ("", "")
    walker_beta = getattr(method, "beta", None)
    method_record = {
        "name": method.name, "kind": method.kind, "multi": method.multi,
        "checkpoint": ckpt_path, "checkpoint_sha256": ckpt_sha, "rw_beta": walker_beta,
        "rw_mode": getattr(method, "mode", None) if walker_beta is not None else None,
    }
    if cfg_path.exists():
        try:
            old_config = json.loads(cfg_path.read_text())
            old = old_config["settings"]
        except (ValueError, KeyError, OSError):
            raise ValueError(f"out: {cfg_path} is unreadable; choose another --out") from None
        diff = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
        if diff and "fallback" not in old:
            raise ValueError(f"out: {out} holds a run made under the v0.1 session rules (before protocol 0.2); "
                             "delete that folder or choose another --out")
        if diff:
            raise ValueError(f"out: {out} holds a run with another configuration (differs in: {', '.join(diff)})")
        # What the settings leave to files must match too, or a resume would mix two methods' sessions:
        # a checkpoint name may hold new weights, and a retune changes a walker's beta or solver.
        old_method = old_config.get("method", {})
        for key in ("checkpoint_sha256", "rw_beta", "rw_mode"):
            before, now = old_method.get(key), method_record[key]
            if key not in old_method or before == now or (key == "checkpoint_sha256" and not (before and now)):
                continue  # older records lack the key; an unreadable checkpoint has no hash to compare
            what = (f"other weights of {Path(ckpt_path).name} (the checkpoint file changed)"
                    if key == "checkpoint_sha256"
                    else f"another random walker ({key} {before!r}, now {now!r}; the tuned values changed)")
            raise ValueError(f"out: {out} holds a run made with {what}; delete that folder or choose another --out")
        return
    config = {
        "settings": identity,
        "session": settings.session.to_dict(),
        "effort": asdict(settings.effort),
        "method": method_record,
        "versions": _versions(),
        "git_commit": _git_commit(),
        "host": socket.gethostname(),
    }
    _write_text_atomic(json.dumps(config, indent=2, sort_keys=True, default=str) + "\n", cfg_path)


def check_unseen_tasks(method: Method, dataset: SessionDataset) -> None:
    """Refuse to evaluate a model on a task it was trained on (the checkpoint records its tasks).

    Raises:
        ValueError: naming ``checkpoint``, the overlapping tasks and the dataset.
    """
    model = getattr(method, "model", None)
    trained = set(getattr(model, "trained_tasks", []) or []) - {"disks"}
    if not trained:
        return
    tasks = set(dataset.session_tasks())
    seen = sorted(trained & tasks)
    if seen:
        raise ValueError(
            f"checkpoint: {getattr(model, 'name', 'the model')} was trained on {', '.join(seen)}, which this dataset "
            f"includes; evaluate it on unseen tasks only (e.g. medscribble:PATH?tasks=...), or on MedScribble with "
            f"the checkpoint of the fold that never saw them (--checkpoint results/medscribble/checkpoints/A/... "
            f"for CAMUS, OASIS, OCTA500, WBC; B/... for the other four)"
        )


def _probe_address(address: str, timeout: float = 10.0) -> None:
    """Fail fast (within ``timeout`` s) when a Ray address cannot be reached."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"address: expected auto, HOST:PORT or ray://HOST:PORT, got {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ValueError(f"address: cannot reach Ray at {address}: {exc.strerror or exc}") from None


def _finite_or_none(value: Any) -> Any:
    """``None`` for a NaN or infinite float (strict JSON has neither), ``value`` otherwise."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def summary_json(summary: dict[str, Any], indent: int | None = None) -> str:
    """``summary`` as strict JSON (no ``NaN``/``Infinity``, which JSON parsers outside Python refuse)."""
    return json.dumps({k: _finite_or_none(v) for k, v in summary.items()}, indent=indent, allow_nan=False)


def summarize(sessions: pd.DataFrame, wall_seconds: float, n_run: int) -> dict[str, Any]:
    """The arm's summary (``summary.json``): plain Python values, ``None`` where a number is undefined.

    Args:
        sessions: the session table, one row per session (``sessions.parquet``).
        wall_seconds: seconds this invocation spent running sessions.
        n_run: sessions this invocation ran (0 for a resumed run whose chunks were all done).
    Returns:
        ``method``, ``policy``, ``k``, ``start``, ``seed``: the arm. Each metric column: its mean over the
        sessions, ``None`` when no session has a value (e.g. ``dice_at_iter_10`` of a 5-iteration run).
        ``nof_85``/``nof_90``: sessions that never reached that Dice (the field's number of failures).
        ``n_sessions``: sessions in the table. ``steps_per_session``: the mean number of iterations run.
        ``n_stopped_early``: sessions that ended before ``max_iters`` because the annotator was done (or
        reached ``stop_at``). ``positive_click_share``: the positive fraction of the robot's correction
        clicks (``None`` when it made none). ``n_sessions_run``: ``n_run``. ``wall_seconds``: this
        invocation's seconds running sessions (in-process and the shared fast path: from the first
        chunk to the last, Ray's start-up included; on Ray alone: from the first chunk submitted to
        the last result); ``None`` when it ran none, as is ``sessions_per_second`` (``n_run /
        wall_seconds``): a resumed run whose sessions were all done measured nothing.
    """
    labels = ("session", "task", "image", "target", "start", "seed", "method", "policy", "k", "stop")
    metric_cols = [c for c in sessions.columns if c not in labels]
    out: dict[str, Any] = {}
    first = sessions.iloc[0]
    for key in ("method", "policy", "k", "start", "seed"):
        out[key] = first[key].item() if hasattr(first[key], "item") else first[key]
    for c in metric_cols:
        col = sessions[c]
        out[c] = float(col.astype(float).mean())
    out["nof_85"] = int((~sessions["reached_85"].astype(bool)).sum())
    out["nof_90"] = int((~sessions["reached_90"].astype(bool)).sum())
    out["n_sessions"] = int(len(sessions))
    ends = session_ends(sessions)
    out["steps_per_session"] = ends["steps_per_session"]
    out["n_stopped_early"] = None if math.isnan(ends["n_stopped_early"]) else int(ends["n_stopped_early"])
    out["positive_click_share"] = ends["positive_click_share"]
    out["n_sessions_run"] = int(n_run)
    out["wall_seconds"] = float(wall_seconds) if n_run else None
    out["sessions_per_second"] = float(n_run / wall_seconds) if n_run and wall_seconds > 0 else None
    return {k: _finite_or_none(v) for k, v in out.items()}


def run(
    settings: RunSettings,
    out: str | os.PathLike | None = None,
    workers: int = 2,
    address: str | None = None,
    progress: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    ray_startup_seconds: float = RAY_STARTUP_SECONDS,
    _crash_marker: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Run an arm; write ``steps.parquet``, ``sessions.parquet``, ``summary.json`` and ``config.json``.

    Args:
        settings: the arm.
        out: output folder (default: a fresh folder under ``results/runs/``). Rerunning into a folder
            that holds the same run resumes it; one holding another configuration is refused.
        workers: processes that run sessions at once on this machine: this one and ``workers - 1``
            local Ray workers (see ``ray_startup_seconds``); 0 runs in-process without Ray.
        address: an existing Ray cluster (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``) instead of a
            local instance.
        progress: show a progress bar.
        batch_size: sessions that advance in lockstep within a worker, their proposals computed in one
            batched pass (1: one session at a time, the reference path). Never changes the tables.
        ray_startup_seconds: the fast path. Without ``address`` and without a running Ray instance,
            the first chunk runs in-process and is timed; the rest run in-process too when running
            them on ``workers`` processes would save less than this many seconds (always with one
            worker); else this process goes on with them while a local Ray instance starts, and
            ``workers - 1`` Ray workers share the rest with it. 0 always runs every chunk on Ray.
            Never changes the tables: a chunk's rows do not depend on where it runs.
    Returns:
        ``(steps, sessions, summary)``: the step and session DataFrames and the summary dict.
    Raises:
        ValueError: naming the setting at fault (also for an unreachable ``address``).
    """
    settings.validate()
    if workers < 0:
        raise ValueError(f"workers: must be >= 0, got {workers}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: must be an integer >= 1, got {batch_size!r}")
    if not ray_startup_seconds >= 0:
        raise ValueError(f"ray_startup_seconds: must be >= 0, got {ray_startup_seconds!r}")
    if address is not None:
        _probe_address(address)
    method = settings.make_method()
    _ = method.kind  # loads a checkpoint now, so a missing or corrupt one fails before any work
    dataset: SessionDataset = make_dataset(settings.dataset, settings.n_sessions, start=settings.session.start)
    check_unseen_tasks(method, dataset)
    if out is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = RESULTS_DIR / f"{stamp}-{settings.method}-{settings.policy}-k{settings.session.k}"
    out = Path(out)
    _prepare_out(out, settings, method)
    chunks = _chunks(len(dataset), settings.chunk_size)
    paths = [(out / "chunks" / f"steps-{j:05d}.parquet", out / "chunks" / f"sessions-{j:05d}.parquet") for j in range(len(chunks))]
    todo = [j for j, (sp, ss) in enumerate(paths) if not (sp.exists() and ss.exists())]
    sdict = settings.to_dict()
    n_run = sum(len(chunks[j]) for j in todo)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(dataset), initial=len(dataset) - n_run, desc=f"{settings.method}/{settings.policy}",
               unit="session", disable=not progress)

    def save(j: int, result: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> None:
        steps, sessions = result
        _write_atomic(pd.DataFrame(steps), paths[j][0])
        _write_atomic(pd.DataFrame(sessions), paths[j][1])
        bar.update(len(chunks[j]))

    t0 = time.perf_counter()
    wall = 0.0
    if todo and workers == 0 and address is None:
        for j in todo:
            save(j, run_chunk(sdict, method, chunks[j], None, batch_size))
    elif todo and address is None and _crash_marker is None and ray_startup_seconds > 0 and not _ray_running():
        # The fast path: time one chunk here; start Ray for the rest only when its workers would save
        # more than Ray's start-up costs, and keep working here meanwhile (this process is a worker).
        save(todo[0], run_chunk(sdict, method, chunks[todo[0]], None, batch_size))
        seconds_per_session = (time.perf_counter() - t0) / len(chunks[todo[0]])
        saved = sum(len(chunks[j]) for j in todo[1:]) * seconds_per_session * (1 - 1 / max(workers, 1))
        if saved <= ray_startup_seconds:
            for j in todo[1:]:
                save(j, run_chunk(sdict, method, chunks[j], None, batch_size))
        else:
            _run_hybrid(sdict, method, chunks, todo[1:], workers, save, batch_size)
    elif todo:  # on Ray alone: its sessions' wall time leaves its start-up out, as before the fast path
        wall = _run_ray(sdict, method, chunks, todo, workers, address, save, _crash_marker, batch_size)
    if todo and not wall:
        wall = time.perf_counter() - t0
    bar.close()
    steps_df = pd.concat([pd.read_parquet(p[0]) for p in paths], ignore_index=True)
    sessions_df = pd.concat([pd.read_parquet(p[1]) for p in paths], ignore_index=True)
    summary = summarize(sessions_df, wall, n_run)
    _write_atomic(steps_df, out / "steps.parquet")
    _write_atomic(sessions_df, out / "sessions.parquet")
    _write_text_atomic(summary_json(summary, indent=2) + "\n", out / "summary.json")
    summary["out"] = str(out)
    return steps_df, sessions_df, summary


def start_ray(workers: int, address: str | None) -> bool:
    """Start Ray unless it is already running: a quiet local instance with ``workers`` CPUs, or the
    cluster at ``address``. Returns True when this call started it (the caller then shuts it down)."""
    import logging

    import ray

    if ray.is_initialized():
        return False
    if address is None:
        ray.init(address="local", num_cpus=max(1, workers), include_dashboard=False,
                 log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
    else:
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    return True


def _ray_running() -> bool:
    import ray

    return ray.is_initialized()


def _ray_task(method: Method) -> tuple[Any, list[Any]]:
    """The chunk task for Ray (retried when a worker dies) and the method boxed in the object store:
    the model travels to each worker once (see :func:`_ray_chunk`)."""
    import ray

    return ray.remote(num_cpus=1, max_retries=3, retry_exceptions=True)(_ray_chunk), [ray.put(method)]


def _run_ray(
    sdict: dict[str, Any],
    method: Method,
    chunks: list[list[int]],
    todo: list[int],
    workers: int,
    address: str | None,
    save: Any,
    crash_marker: str | None,
    batch_size: int,
) -> float:
    """Run chunks ``todo`` as Ray tasks, saving each result as it arrives; return the seconds from the
    first submission to the last result (Ray's start-up left out)."""
    import ray

    started_here = start_ray(workers, address)
    try:
        remote, method_box = _ray_task(method)
        t0 = time.perf_counter()
        pending = {remote.remote(sdict, method_box, chunks[j], crash_marker, batch_size): j for j in todo}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                save(pending.pop(ref), ray.get(ref))
        return time.perf_counter() - t0
    finally:
        if started_here:
            ray.shutdown()


def _run_hybrid(
    sdict: dict[str, Any],
    method: Method,
    chunks: list[list[int]],
    todo: list[int],
    workers: int,
    save: Any,
    batch_size: int,
) -> None:
    """Run chunks ``todo`` here and on ``workers - 1`` local Ray workers at once, saving each result as
    it arrives (in this thread, so the files and the progress bar have one writer).

    This process starts on the chunks while Ray starts (seconds), so Ray's start-up costs only the
    cores it takes. A chunk's rows are the same wherever it runs (:func:`run_chunk`), so the tables do
    not depend on which chunks ran here. The thread here works on its own copy of the method (as a
    Ray worker does): the network's layers are patched while it decodes a batch
    (:class:`probseg.batching.ExactBatcher`), and the copy for Ray is serialised meanwhile.
    """
    import queue
    import threading

    import ray
    from ray import cloudpickle

    lock = threading.Lock()
    left = list(todo)
    done: queue.Queue[tuple[int, Any]] = queue.Queue()
    stop = threading.Event()

    def take() -> int | None:
        with lock:
            return left.pop(0) if left and not stop.is_set() else None

    local_method = cloudpickle.loads(cloudpickle.dumps(method))

    def work_here() -> None:
        while (j := take()) is not None:
            try:
                done.put((j, run_chunk(sdict, local_method, chunks[j], None, batch_size)))
            except BaseException as exc:  # handed to the main thread, which raises it
                done.put((j, exc))
                return

    here = threading.Thread(target=work_here, name="probseg-chunks", daemon=True)
    here.start()
    started = start_ray(max(workers - 1, 1), None)
    pending: dict[Any, int] = {}
    try:
        remote, method_box = _ray_task(method)
        n_remote = max(workers - 1, 1)

        def submit() -> None:
            while len(pending) < n_remote and (j := take()) is not None:
                pending[remote.remote(sdict, method_box, chunks[j], None, batch_size)] = j

        submit()
        while pending or here.is_alive() or not done.empty():
            if pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.05)
                for ref in ready:
                    save(pending.pop(ref), ray.get(ref))
                submit()
            else:
                here.join(timeout=0.05)
            while not done.empty():
                j, result = done.get()
                if isinstance(result, BaseException):
                    raise result
                save(j, result)
        here.join()
    finally:
        stop.set()  # on an error, neither side takes another chunk (a chunk running here is dropped)
        if started:
            ray.shutdown()
