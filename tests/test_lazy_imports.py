"""A command answers --help and a usage error before importing torch, Ray, matplotlib or pandas.

The time this saves is measured in tests/benchmarks/test_bench_cli_help.py; here the behaviour:
which heavy modules a fresh interpreter has imported when the command is done.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "ray", "matplotlib", "pandas")

# console script -> (module, a usage error)
COMMANDS = {
    "probseg-simulate": ("simulator.cli", ["--k", "many"]),
    "probseg-study": ("simulator.study", ["run"]),
    "probseg-reproduce": ("probseg.reproduce", ["--n", "0"]),
    "probseg-train": ("probseg.train_cli", ["--out", "model.pth"]),
    "probseg-select": ("simulator.selection", ["--fold", "A"]),
    "probseg-report": ("simulator.report", ["--no-such-option"]),
    "probseg-tune-baselines": ("simulator.baselines", ["--no-such-option"]),
    "probseg-annotate": ("simulator.annotate.cli", ["--no-such-option"]),
}


def heavy_modules_after(code: str) -> list[str]:
    """The heavy modules imported by ``code`` in a fresh interpreter (run from the repository)."""
    # A module imported lazily (probseg.lazy) is in sys.modules before it runs: loaded means run.
    probe = (f"{code}\nimport sys\nprint('heavy:' + ','.join(m for m in {HEAVY!r} if m in sys.modules "
             "and type(sys.modules[m]).__name__ != '_LazyModule'))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return [m for m in done.stdout.strip().splitlines()[-1].removeprefix("heavy:").split(",") if m]


def test_the_packages_import_nothing_heavy() -> None:
    assert heavy_modules_after("import probseg, simulator, simulator.runner, simulator.study") == []


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_and_a_usage_error_import_nothing_heavy(command: str) -> None:
    module, bad = COMMANDS[command]
    code = (f"from {module} import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit as exc:\n    assert exc.code == 0\n"
            f"assert main({bad!r}) == 2")
    assert heavy_modules_after(code) == []


def test_the_lazy_names_are_the_real_ones() -> None:
    import probseg
    import simulator
    from probseg.predictor import ProbSeg
    from simulator.runner import run

    assert probseg.ProbSeg is ProbSeg and simulator.run is run
    assert set(probseg.__all__) <= set(dir(probseg)) and set(simulator.__all__) <= set(dir(simulator))
    with pytest.raises(AttributeError):
        _ = probseg.no_such_name
    with pytest.raises(AttributeError):
        _ = simulator.no_such_name


def test_one_name_one_thing() -> None:
    """The duplicates issue 16 listed: each thing has one name where it lives."""
    import probseg.data.medical
    import probseg.interaction
    import probseg.metrics
    import simulator.corrections
    import simulator.metrics
    import simulator.study

    assert simulator.metrics.dice is probseg.metrics.dice
    assert simulator.corrections.click_start is probseg.interaction.click_start
    assert not hasattr(probseg.data.medical, "click_start")
    # The study definition's arm and reader differ in name from the report's loaded Arm and load_study_results.
    assert not hasattr(simulator.study, "Arm") and not hasattr(simulator.study, "load_study")


def test_lazy_import_runs_the_module_on_first_use_only() -> None:
    code = ("from probseg.lazy import lazy_import\nimport sys\nassert 'colorsys' not in sys.modules\n"
            "m = lazy_import('colorsys')\nassert type(m).__name__ == '_LazyModule'\n"
            "assert m.rgb_to_hsv(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)\nassert sys.modules['colorsys'] is m and type(m).__name__ == 'module'\n"
            "import colorsys\nassert colorsys is m and lazy_import('colorsys') is m\nprint('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_lazy_import_of_a_missing_module_fails_at_once() -> None:
    from probseg.lazy import lazy_import

    with pytest.raises(ModuleNotFoundError, match="no_such_module"):
        lazy_import("no_such_module_here")
    with pytest.raises(ModuleNotFoundError):
        lazy_import("scipy.no_such_module_here")


def test_probseg_interaction_leaves_scipy_ndimage_for_later() -> None:
    code = "import probseg.interaction, probseg.data.partials, sys\nprint(type(sys.modules['scipy.ndimage']).__name__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.stdout.strip() == "_LazyModule", done.stderr
