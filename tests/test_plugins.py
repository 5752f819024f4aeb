"""Bring your own method, dataset and policy: entry points, ``module:factory``, the Method contract.

The third-party package is made here: the README's example method (``mymethods.py``, taken from the
README verbatim) plus a dataset and a policy, with a ``*.dist-info`` whose ``entry_points.txt``
registers them, put on ``sys.path`` as an installed package would be.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from simulator.datasets import DATASETS, SHIPPED_DATASETS, make_dataset
from simulator.lockstep import LockstepCase, run_lockstep
from simulator.methods import METHODS, SHIPPED_METHODS, CheckedMethod, checked, make_method
from simulator.policies import POLICIES, SHIPPED_POLICIES, make_policy
from simulator.runner import RunSettings, run
from simulator.session import SessionConfig, run_session

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

EXTRAS = '''
import numpy as np

from simulator.datasets import DiskSessions


def few_disks(arg, n_sessions=None, start=None):
    """acme-disks[:N]: the first N held-out disk images (default 3)."""
    return DiskSessions(n_sessions or int(arg or 3))


class Last:
    """The last candidate, always."""

    name = "last"
    oracle = False

    def choose(self, masks, segs, scores, *, gt, current_mask, current_seg, allow_reject, rng):
        return masks.shape[0] - 1
'''

ENTRY_POINTS = """\
[probseg.methods]
threshold = mymethods:Threshold

[probseg.datasets]
acme-disks = acme_extras:few_disks

[probseg.policies]
last = acme_extras:Last
"""


def readme_example() -> str:
    """The README's example method, exactly as printed there."""
    blocks = re.findall(r"```python\n(# mymethods\.py\n.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1, "the README shows one mymethods.py example"
    return blocks[0]


@pytest.fixture()
def acme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An installed third-party package: modules plus a dist-info, on sys.path. Returns its folder."""
    site = tmp_path / "site"
    (site / "acme_methods-0.1.dist-info").mkdir(parents=True)
    (site / "mymethods.py").write_text(readme_example())
    (site / "acme_extras.py").write_text(EXTRAS)
    (site / "acme_methods-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: acme-methods\nVersion: 0.1\n")
    (site / "acme_methods-0.1.dist-info" / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(site))
    for module in ("mymethods", "acme_extras"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    return site


def test_shipped_tables_equal_the_entry_points_in_pyproject() -> None:
    """The fallback tables (for an uninstalled checkout) say exactly what pyproject.toml registers."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    assert declared["probseg.methods"] == SHIPPED_METHODS
    assert declared["probseg.datasets"] == SHIPPED_DATASETS
    assert declared["probseg.policies"] == SHIPPED_POLICIES
    for registry in (METHODS, DATASETS, POLICIES):
        for name, ep in registry.entries().items():
            if name in registry.shipped:
                assert callable(registry.load(name)), name


def test_plugin_names_are_found_and_cannot_replace_shipped_ones(acme: Path) -> None:
    assert list(METHODS)[: len(SHIPPED_METHODS)] == list(SHIPPED_METHODS)
    assert "threshold" in METHODS and "last" in POLICIES and "acme-disks[:ARG]" in list(DATASETS)
    method = make_method("threshold")
    assert isinstance(method, CheckedMethod) and (method.name, method.kind, method.multi) == ("threshold", "complete", False)
    assert make_method("mymethods:Threshold").name == "threshold"
    assert len(make_dataset("acme-disks:2")) == 2
    assert make_policy("last").name == "last"
    # A plug-in registering a shipped name does not replace the shipped method.
    dist = acme / "acme_methods-0.1.dist-info" / "entry_points.txt"
    dist.write_text(ENTRY_POINTS.replace("threshold =", "probseg ="))
    METHODS._entries = None  # the same sys.path: drop the cached listing
    assert METHODS.entries()["probseg"].value == "simulator.methods:PROBSEG"


def test_unknown_names_get_one_line_listing_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"^method: unknown method 'sam'; allowed: probseg, probseg-mean, .*random-walker-partial"):
        make_method("sam")
    with pytest.raises(ValueError, match=r"^policy: unknown policy 'oracle'; allowed: best-of-k, .*model-ranked"):
        make_policy("oracle")
    with pytest.raises(ValueError, match=r"^dataset: unknown dataset 'imagenet'; allowed: disks, medscribble:PATH"):
        make_dataset("imagenet")
    with pytest.raises(ValueError, match=r"^method: cannot import 'no_such_module:Thing'"):
        make_method("no_such_module:Thing")
    with pytest.raises(ValueError, match=r"^method: 'simulator.methods' has no attribute 'Nothing'"):
        make_method("simulator.methods:Nothing")
    with pytest.raises(ValueError, match=r"^beta: not a setting of method 'probseg'; its settings: \['checkpoint'\]"):
        make_method("probseg", beta=1.0)


def test_cli_unknown_method_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from simulator.cli import main

    assert main(["--method", "sam", "--n-sessions", "1", "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("probseg-simulate: error: method: unknown method 'sam'; allowed: probseg")


# --- the Method contract -------------------------------------------------------------------------

BROKEN = '''
from functools import partial

import numpy as np


class Broken:
    kind = "complete"
    multi = False

    def __init__(self, fault):
        self.name = f"broken-{fault}"
        self.fault = fault

    def propose(self, image, mask, seg, k, rng):
        masks = np.ones((k, *image.shape), dtype=bool)
        segs = np.repeat(seg[None], k, axis=0)
        if self.fault == "dtype":
            return masks.astype(np.uint8), segs, None
        if self.fault == "k":
            return masks[:1].repeat(k + 1, 0), segs[:1].repeat(k + 1, 0), None
        if self.fault == "outside":
            masks[:, 0, 0], segs[:, 0, 0] = False, True
            masks[:, mask] = True
        if self.fault == "decided":
            segs[:, mask & seg] = False
        if self.fault == "undecided":
            masks[:, ~mask] = False
            segs &= masks
        if self.fault == "scores":
            return masks, segs, np.zeros(k + 2)
        return masks, segs, None


def make(fault="none"):
    return Broken(fault)


# One factory per fault, each named as module:factory by the tests.
dtype, k, outside, decided, undecided, scores = (
    partial(Broken, fault) for fault in ("dtype", "k", "outside", "decided", "undecided", "scores")
)


class Batched(Broken):
    """Broken, also answering many requests in one call, as a batched model does."""

    batched_calls = 0

    def propose_batch(self, requests):
        self.batched_calls += 1
        if self.fault == "count":
            return [self.propose(*requests[0])]
        return [self.propose(*r) for r in requests]


class Kindless(Broken):
    kind = "both"

    def __init__(self):
        super().__init__("none")
'''

RULES = {
    "dtype": "masks must be a bool numpy array, got uint8",
    "k": "masks must have shape (k, H, W) = (1, 32, 32) for k = 1, got (2, 32, 32)",
    "outside": "segs must lie inside masks",
    "decided": "segs must equal seg on mask (a decided pixel keeps its label)",
    "undecided": "a complete method must decide every pixel",
    "scores": "scores must be None or k = 1 real numbers",
}


@pytest.mark.parametrize("fault", sorted(RULES))
def test_a_method_that_breaks_the_contract_is_refused_naming_it_and_the_rule(
    fault: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "brokenmethods.py").write_text(BROKEN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "brokenmethods", raising=False)
    image = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    mask = np.zeros((32, 32), dtype=bool)
    mask[10:14, 10:14] = True
    seg = mask.copy()
    method = make_method(f"brokenmethods:{fault}")
    with pytest.raises(ValueError) as info:
        method.propose(image, mask, seg, 1, np.random.default_rng(0))
    message = str(info.value)
    assert message.startswith(f"method: 'brokenmethods:{fault}' breaks the Method contract: {RULES[fault]}")
    assert "\n" not in message
    assert make_method("brokenmethods:make").propose(image, mask, seg, 1, np.random.default_rng(0))[0].shape == (1, 32, 32)
    # Through a run: the same line, before any table is written.
    with pytest.raises(ValueError, match=re.escape(RULES[fault])):
        run(RunSettings(method=f"brokenmethods:{fault}", policy="first", n_sessions=1,
                        session=SessionConfig(k=1, max_iters=2)),
            out=tmp_path / "run", workers=0, progress=False)
    assert not (tmp_path / "run" / "sessions.parquet").exists()


def _import_broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    (tmp_path / "brokenmethods.py").write_text(BROKEN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "brokenmethods", raising=False)
    import brokenmethods

    return brokenmethods


@pytest.mark.parametrize("fault", sorted(RULES))
def test_the_contract_is_checked_alike_on_the_per_session_and_the_lockstep_path(
    fault: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = _import_broken(tmp_path, monkeypatch)
    image = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    target = np.zeros((32, 32), dtype=bool)
    target[8:20, 8:20] = True
    policy, cfg = make_policy("first"), SessionConfig(k=1, max_iters=2)
    with pytest.raises(ValueError) as alone:
        run_session(image, target, broken.Batched(fault), policy, cfg, np.random.default_rng(0))
    method = broken.Batched(fault)  # unwrapped: run_lockstep wraps it, once for every session
    cases = [LockstepCase(i, image, target, np.random.default_rng(i)) for i in range(3)]
    with pytest.raises(ValueError) as lockstep:
        list(run_lockstep(cases, method, policy, cfg, batch_size=3))
    assert method.batched_calls == 1  # the batched answers were refused, not a per-session rerun
    assert str(alone.value) == str(lockstep.value)
    assert str(alone.value).startswith(f"method: 'broken-{fault}' breaks the Method contract: {RULES[fault]}")


def test_a_batch_answer_per_request_and_one_wrapper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = _import_broken(tmp_path, monkeypatch)
    image = np.zeros((32, 32), dtype=np.float32)
    request = (image, np.zeros((32, 32), dtype=bool), np.zeros((32, 32), dtype=bool), 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"^method: 'broken-count' breaks the Method contract: propose_batch must "
                                         r"return one answer per request \(2\), got 1$"):
        checked(broken.Batched("count")).propose_batch([request, request])
    once = checked(broken.Batched("none"))
    assert checked(once) is once and make_method("brokenmethods:make").__dict__["method"].__class__.__name__ == "Broken"
    # A method without propose_batch is asked once per request, each answer checked.
    answers = checked(broken.Broken("none")).propose_batch([request, request])
    assert len(answers) == 2 and all(a[0].shape == (1, 32, 32) for a in answers)


def test_a_method_without_a_valid_kind_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "brokenmethods.py").write_text(BROKEN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "brokenmethods", raising=False)
    with pytest.raises(ValueError, match=r"^method: 'brokenmethods:Kindless' breaks the Method contract: kind must be"):
        _ = make_method("brokenmethods:Kindless").kind
    with pytest.raises(ValueError, match=r"^method: 'builtins:dict' breaks the Method contract: it has no name"):
        make_method("builtins:dict")
    with pytest.raises(ValueError, match=r"^method: 'brokenmethods:Broken' cannot be made: its factory needs the setting"):
        make_method("brokenmethods:Broken")


# --- the third-party package end to end ----------------------------------------------------------

def test_readme_example_and_plugin_run_through_simulate_a_study_and_the_report(
    acme: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from simulator.cli import main as simulate
    from simulator.report import main as report
    from simulator.study import main as study

    # probseg-simulate, by entry point name and by module:factory: the same sessions.
    common = ["--n-sessions", "4", "--max-iters", "4", "--policy", "first", "--workers", "0", "--no-progress"]
    assert simulate(["--method", "threshold", "--out", str(tmp_path / "by-name"), *common]) == 0
    assert simulate(["--method", "mymethods:Threshold", "--out", str(tmp_path / "by-spec"), *common]) == 0
    a = pd.read_parquet(tmp_path / "by-name" / "sessions.parquet")
    b = pd.read_parquet(tmp_path / "by-spec" / "sessions.parquet")
    cols = ["noc_90", "final_dice", "iterations"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert a["final_dice"].between(0, 1).all() and (a["method"] == "threshold").all()
    config = json.loads((tmp_path / "by-spec" / "config.json").read_text())
    assert config["method"]["name"] == "threshold" and config["method"]["kind"] == "complete"
    # The plug-in's dataset and policy by their entry-point names.
    assert simulate(["--method", "threshold", "--dataset", "acme-disks:2", "--policy", "last", "--workers", "0",
                     "--no-progress", "--max-iters", "2", "--out", str(tmp_path / "extras")]) == 0
    assert len(pd.read_parquet(tmp_path / "extras" / "sessions.parquet")) == 2

    # A study with both spellings and a shipped arm; probseg-report compares them with the shipped one.
    (tmp_path / "acme.toml").write_text(textwrap.dedent("""\
        name = "acme"
        sessions = 6
        reference = "random-walker"
        [protocol]
        max_iters = 4
        [[arms]]
        label = "threshold"
        method = "threshold"
        policy = "first"
        k = 1
        [[arms]]
        label = "threshold by spec"
        method = "mymethods:Threshold"
        policy = "first"
        k = 1
        [[arms]]
        label = "random-walker"
        method = "random-walker"
        policy = "first"
        k = 1
        """))
    out = tmp_path / "study"
    assert study(["run", str(tmp_path / "acme.toml"), "--workers", "0", "--no-progress", "--no-report",
                  "--out", str(out)]) == 0
    capsys.readouterr()
    assert report([str(out), "--no-figures"]) == 0
    comparison = pd.read_csv(out / "comparison.csv")
    assert {"threshold", "threshold by spec"} <= set(comparison["label"])
    assert (comparison["reference"] == "random-walker").all()
    summary = pd.read_csv(out / "summary.csv").set_index("label")
    assert summary.loc["threshold", "noc_90"] == summary.loc["threshold by spec", "noc_90"]
    assert "threshold by spec" in (out / "report.md").read_text()


def test_the_console_script_finds_an_installed_plugin_in_ray_workers(acme: Path, tmp_path: Path) -> None:
    """``probseg-simulate --method threshold`` in a fresh process, sessions in a Ray worker (which
    unpickles the plug-in's method from the package on its PYTHONPATH)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(acme), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "run"
    done = subprocess.run(
        ["probseg-simulate", "--method", "threshold", "--policy", "first", "--n-sessions", "4", "--max-iters", "3",
         "--workers", "1", "--no-progress", "--json", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["method"] == "threshold" and summary["n_sessions"] == 4
