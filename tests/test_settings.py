"""One settings type, one way through: the protocol and effort records nested in the run settings, the
flat form ``config.json`` and ``study.json`` hold, and the command-line options and study keys made
from the records' fields."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields, replace
from pathlib import Path

import pytest

from simulator import study_schema
from simulator.cli import _parser, settings_from_args
from simulator.metrics import EffortModel
from simulator.runner import RunSettings
from simulator.session import SessionConfig
from simulator.setting import settings_of

ROOT = Path(__file__).resolve().parents[1]

# The "settings" of a config.json written by probseg-simulate before the records were nested (flat
# RunSettings), for: --method random-walker --policy noisy-best-of-k --k 4 --n-sessions 2 --max-iters 3
# --corrections-per-iter 2 --brush-radius 2 --stop-at 0.95 --fallback v0.1 --acceptance pixel-score
# --epsilon 0.2 --c-click 3.0 --chunk-size 5 --seed 7.
OLD_CONFIG_SETTINGS = {
    "acceptance": "pixel-score", "allow_reject": True, "b_choose": 0.15, "brush_radius": 2, "c_click": 3.0,
    "c_inspect": 1.35, "checkpoint": None, "chunk_size": 5, "correction_rule": "ritm", "corrections_per_iter": 2,
    "dataset": "disks", "early_stop": True, "epsilon": 0.2, "error_weight": 2.0, "fallback": "v0.1", "k": 4,
    "max_iters": 3, "method": "random-walker", "n_sessions": 2, "pending_as_errors": False,
    "policy": "noisy-best-of-k", "rw_beta": None, "seed": 7, "start": "clicks", "stop_at": 0.95,
}
OLD_ARGV = ["--method", "random-walker", "--policy", "noisy-best-of-k", "--k", "4", "--n-sessions", "2",
            "--max-iters", "3", "--corrections-per-iter", "2", "--brush-radius", "2", "--stop-at", "0.95",
            "--fallback", "v0.1", "--acceptance", "pixel-score", "--epsilon", "0.2", "--c-click", "3.0",
            "--chunk-size", "5", "--seed", "7"]


def _args(argv: list[str]) -> argparse.Namespace:
    return _parser().parse_args(argv)


def test_an_old_flat_config_reads_back_to_the_same_flat_dict() -> None:
    settings = RunSettings.from_dict(OLD_CONFIG_SETTINGS)
    assert settings.session == SessionConfig(k=4, max_iters=3, corrections_per_iter=2, brush_radius=2, stop_at=0.95,
                                             fallback="v0.1")
    assert settings.effort == EffortModel(c_click=3.0)
    assert settings.to_dict() == OLD_CONFIG_SETTINGS
    # The same options today give the same record, so a run folder made then resumes now.
    assert settings_from_args(_args(OLD_ARGV)).to_dict() == OLD_CONFIG_SETTINGS


def test_committed_study_arms_read_as_before() -> None:
    """A study.json arm holds only the keys its study set; the rest keep the defaults they had."""
    defaults = RunSettings().to_dict()
    arms = [a for path in sorted(ROOT.glob("results/*/study.json")) for a in json.loads(path.read_text())["arms"]]
    assert arms, "no committed study.json"
    for arm in arms:
        flat = RunSettings.from_dict(arm["settings"]).to_dict()
        assert {k: flat[k] for k in arm["settings"]} == arm["settings"]
        assert {k: v for k, v in flat.items() if k not in arm["settings"]} == \
            {k: v for k, v in defaults.items() if k not in arm["settings"]}


def test_flat_names_are_the_fields_of_the_run_settings_and_its_records() -> None:
    names = [s.name for s in settings_of(RunSettings)]
    nested = {f.name for f in fields(SessionConfig)} | {f.name for f in fields(EffortModel)}
    own = {f.name for f in fields(RunSettings)} - {"session", "effort"}
    assert len(names) == len(set(names)) and set(names) == nested | own
    assert list(RunSettings().to_dict()) == names
    assert all(s.help and "{choices}" not in s.help for s in settings_of(RunSettings))


def test_a_bad_key_or_value_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"^max_iter: not a run setting; allowed: .*max_iters"):
        RunSettings.from_dict({"max_iter": 3})
    with pytest.raises(ValueError, match=r"^k: must be an integer >= 1, got 0"):
        RunSettings.from_dict({"k": 0})
    with pytest.raises(ValueError, match=r"^c_click: must be a finite number >= 0"):
        RunSettings.from_dict({"c_click": -1.0})
    with pytest.raises(ValueError, match=r"^session: expected a SessionConfig, got dict"):
        RunSettings(session={"k": 4}).validate()  # type: ignore[arg-type]


def test_every_setting_is_an_option_with_its_default_and_help() -> None:
    parser = _parser()
    by_dest = {a.dest: a for a in parser._actions}
    for s in settings_of(RunSettings):
        action = by_dest[s.name]
        assert action.option_strings[0] == "--" + s.name.replace("_", "-")
        assert action.default == s.default and action.help == s.help
    assert by_dest["stop_at"].metavar == "DICE" and by_dest["effort_model"].metavar == "FILE"
    # Flags: on by default -> --name/--no-name; off -> --name.
    assert by_dest["early_stop"].option_strings == ["--early-stop", "--no-early-stop"]
    assert by_dest["allow_reject"].option_strings == ["--allow-reject", "--no-allow-reject"]
    assert by_dest["pending_as_errors"].option_strings == ["--pending-as-errors"]
    # The help lists the allowed values where a field has a fixed set.
    assert "one of: clicks, scribbles, human" in by_dest["start"].help
    assert "hand-in, v0.1" in by_dest["fallback"].help and "no-worse-dice, pixel-score" in by_dest["acceptance"].help


def test_options_land_in_the_nested_records(tmp_path: Path) -> None:
    settings = settings_from_args(_args(["--k", "2", "--no-early-stop", "--pending-as-errors", "--no-allow-reject",
                                         "--correction-rule", "random-error", "--b-choose", "0.5"]))
    assert settings.session == SessionConfig(k=2, early_stop=False, pending_as_errors=True, allow_reject=False,
                                             correction_rule="random-error")
    assert settings.effort == EffortModel(b_choose=0.5)
    effort_file = tmp_path / "effort.json"
    effort_file.write_text(json.dumps({"effort": {"c_click": 1.5, "c_inspect": 0.5, "b_choose": 0.25}}))
    fitted = settings_from_args(_args(["--c-click", "9", "--effort-model", str(effort_file)]))
    assert fitted.effort == EffortModel(c_click=1.5, c_inspect=0.5, b_choose=0.25)
    assert replace(fitted, effort=EffortModel()) == RunSettings()


def test_study_keys_are_the_settings_fields() -> None:
    protocol = {f.name for f in fields(SessionConfig)} - {"k"} | {"acceptance"}  # K is an arm's, as on the CLI
    assert set(study_schema._PROTOCOL_KEYS) == protocol
    assert set(study_schema._EFFORT_KEYS) == {f.name for f in fields(EffortModel)}
    assert set(study_schema._ARM_KEYS) == protocol | {"method", "policy", "k", "checkpoint", "epsilon",
                                                      "error_weight", "rw_beta"}
    base = {"name": "s", "reference": "a", "arms": [{"label": "a", "method": "random-walker", "policy": "first",
                                                    "k": 1}]}
    with pytest.raises(ValueError, match=r"^protocol.fallback: unknown value 'v0.2'; allowed: hand-in, v0.1$"):
        study_schema.parse_study({**base, "protocol": {"fallback": "v0.2"}})
    with pytest.raises(ValueError, match=r"^protocol.early_stop: expected true or false, got 1$"):
        study_schema.parse_study({**base, "protocol": {"early_stop": 1}})
    with pytest.raises(ValueError, match=r"^arms\[0\].stop_at: expected a number, got '0.9'$"):
        study_schema.parse_study({**base, "arms": [{**base["arms"][0], "stop_at": "0.9"}]})
    study = study_schema.parse_study({**base, "protocol": {"max_iters": 7, "pending_as_errors": True},
                                      "effort": {"c_click": 2.0}})
    settings = RunSettings.from_dict(study.arms[0].settings)
    assert settings.session.max_iters == 7 and settings.session.pending_as_errors and settings.effort.c_click == 2.0
