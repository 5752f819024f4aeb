"""probseg-report: tables, bootstrap CIs, paired comparisons, Holm, determinism, CLI errors, figures, studies."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from simulator.report import (
    METRICS,
    arm_effort_counts,
    dice_at_clicks_matrix,
    dice_by_iteration_matrix,
    load_run,
    main,
    write_report,
)
from simulator.runner import RunSettings, run

N_SESSIONS = 6
MAX_ITERS = 4


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Small run directories (6 disk sessions of 4 iterations each), built once for the module."""
    root = tmp_path_factory.mktemp("runs")
    arms = {
        "random-walker": dict(method="random-walker", k=1),
        "unet-complete": dict(method="unet-complete", k=1),
        "probseg-k2": dict(method="probseg", k=2),
        "probseg-k4": dict(method="probseg", k=4),
        "rw-short": dict(method="random-walker", k=1, n_sessions=4),
    }
    out = {}
    for label, kw in arms.items():
        base = dict(policy="best-of-k", n_sessions=N_SESSIONS, max_iters=MAX_ITERS, chunk_size=3)
        base.update(kw)
        out[label] = root / label
        run(RunSettings.from_dict(base), out=out[label], workers=0, progress=False)
    out["rw-copy"] = root / "rw-copy"
    shutil.copytree(out["random-walker"], out["rw-copy"])
    return out


def test_summary_columns_cis_and_nof(runs, tmp_path):
    res = write_report([runs["random-walker"], runs["unet-complete"], runs["probseg-k2"]], out=tmp_path,
                       n_boot=200, figures=False)
    summary = pd.read_csv(tmp_path / "summary.csv")
    ids = ["label", "name", "train_seed", "variant", "method", "kind", "policy", "k", "start", "n_sessions", "n_images"]
    assert list(summary.columns) == ids + [f"{m}{s}" for m in METRICS for s in ("", "_lo", "_hi")]
    assert list(summary["label"]) == ["random-walker", "unet-complete", "probseg-k2"]
    assert (summary["n_sessions"] == N_SESSIONS).all() and (summary["n_images"] == N_SESSIONS).all()
    assert list(summary["kind"]) == ["complete", "complete", "partial"]
    for label in summary["label"]:
        sessions = pd.read_parquet(runs[label] / "sessions.parquet")
        row = summary.set_index("label").loc[label]
        assert row["nof_90"] == (~sessions["reached_90"]).sum()
        assert row["noc_90"] == pytest.approx(sessions["noc_90"].mean())
        assert row["effort_s"] == pytest.approx(sessions["effort_s"].mean())
        for m in METRICS:
            if np.isfinite(row[m]):
                assert row[f"{m}_lo"] - 1e-9 <= row[m] <= row[f"{m}_hi"] + 1e-9, (label, m)
    # 4 iterations: no session has an iteration 10, so that metric is NaN, not an error.
    assert summary["dice_at_iter_10"].isna().all()
    assert "session_seconds" not in " ".join(summary.columns)
    assert set(res["paths"]) == {"summary.csv", "comparison.csv", "session_ends.csv", "candidates.csv", "report.md"}
    ends = pd.read_csv(tmp_path / "session_ends.csv").set_index("label")
    for label in summary["label"]:
        sessions = pd.read_parquet(runs[label] / "sessions.parquet")
        assert ends.at[label, "steps_per_session"] == pytest.approx(sessions["iterations"].mean())
        assert ends.at[label, "n_stopped_early"] == sessions["stopped_early"].sum()
        total = sessions["correction_clicks"].sum()
        share = ends.at[label, "positive_click_share"]
        assert (np.isnan(share) if total == 0 else share == pytest.approx(sessions["positive_clicks"].sum() / total))
    assert "## How sessions ended" in (tmp_path / "report.md").read_text()


def test_identical_arms_zero_difference_and_p_one(runs, tmp_path):
    res = write_report([runs["random-walker"], runs["rw-copy"]], out=tmp_path, n_boot=100, figures=False)
    comp = pd.read_csv(tmp_path / "comparison.csv")
    assert (comp["label"] == "rw-copy").all() and (comp["reference"] == "random-walker").all()
    finite = comp[comp["diff"].notna()]
    assert len(finite) >= len(METRICS) - 2
    assert (finite[["diff", "diff_lo", "diff_hi"]] == 0).all().all()
    assert (finite["p_wilcoxon"] == 1.0).all() and (finite["p_holm"] == 1.0).all()
    assert comp["tie_choose_click_ratio"].isna().all()  # as many choices: the choice cost cannot decide
    assert comp.loc[comp["primary"], "metric"].tolist() == ["noc_90"]
    assert "identical to `random-walker` in every session" in (tmp_path / "report.md").read_text()
    assert res["reference"] == "random-walker"


def test_arms_table_names_the_walkers_tuned_beta_and_solver(runs, tmp_path):
    from simulator.baselines import tuned_beta, tuned_mode

    write_report([runs["random-walker"], runs["unet-complete"]], out=tmp_path, n_boot=50, figures=False)
    text = (tmp_path / "report.md").read_text()
    arms = text[text.index("### Arms"):].split("\n#")[0]  # the arms table only
    rows = {line.split(" | ")[0]: line for line in arms.splitlines() if line.startswith("| `")}
    beta, mode = tuned_beta("random-walker"), tuned_mode("random-walker")
    assert f"| beta {beta:g}, {mode} |" in rows["| `random-walker`"]
    assert "| disks-unet-complete.pt |" in rows["| `unet-complete`"]


def test_comparison_against_reference(runs, tmp_path):
    res = write_report([runs["random-walker"], runs["unet-complete"], runs["probseg-k2"]], out=tmp_path,
                       reference="probseg-k2", endpoint="effort_s", n_boot=100, figures=False)
    comp = res["comparison"]
    assert set(comp["label"]) == {"random-walker", "unet-complete"} and (comp["reference"] == "probseg-k2").all()
    assert comp.loc[comp["primary"], "metric"].unique().tolist() == ["effort_s"]
    ref = pd.read_parquet(runs["probseg-k2"] / "sessions.parquet").sort_values("session")
    rw = pd.read_parquet(runs["random-walker"] / "sessions.parquet").sort_values("session")
    row = comp[(comp["label"] == "random-walker") & (comp["metric"] == "noc_90")].iloc[0]
    assert row["diff"] == pytest.approx((rw["noc_90"].to_numpy() - ref["noc_90"].to_numpy()).mean())
    assert row["diff_lo"] <= row["diff"] <= row["diff_hi"]
    # Holm per metric over the two arms: adjusted >= raw, and the larger raw p-value's is at least the smaller's.
    for _, g in comp.groupby("metric"):
        g = g.dropna(subset=["p_wilcoxon"])
        assert (g["p_holm"] >= g["p_wilcoxon"] - 1e-12).all()
        if len(g) == 2:  # by hand: the smaller p times 2, the larger times 1 but not below the first
            small, large = sorted(g["p_wilcoxon"])
            first = min(1.0, 2 * small)
            expected = {small: first, large: min(1.0, max(first, large))}
            for raw, adj in zip(g["p_wilcoxon"], g["p_holm"]):
                assert adj == pytest.approx(expected[raw])
    # The reference (partial, K=2) makes choices; single-proposal arms do not: the tie ratio is defined.
    assert comp["tie_choose_click_ratio"].notna().all()
    text = (tmp_path / "report.md").read_text()
    assert "**effort (s) (primary)**" in text and "Tie ratio" in text
    # Tables name metrics by the field's labels, each with a one-line legend, never by column keys.
    results = text[text.index("## Results per arm"):text.index("## How sessions ended")]
    assert "| NoC@85 | NoC@90 | NoI@90 | NoF@90 |" in results, results
    assert "\neffort: annotator seconds to Dice 0.90; NoC@T: clicks" in results  # the legend, endpoint first
    assert not any(key in results for key in ("noc_90", "nof_90", "dice_at_clicks_5"))


def test_effort_counts_and_curves_match_session_metrics(runs):
    arm = load_run(runs["probseg-k2"])
    model = arm.effort_model()
    seconds = [model.seconds(c) for c in arm_effort_counts(arm)]
    np.testing.assert_allclose(seconds, arm.sessions["effort_s"].to_numpy())
    clicks = dice_at_clicks_matrix(arm, 10)
    np.testing.assert_allclose(clicks[:, 3], arm.sessions["dice_at_clicks_3"])
    np.testing.assert_allclose(clicks[:, 5], arm.sessions["dice_at_clicks_5"])
    np.testing.assert_allclose(clicks[:, 10], arm.sessions["dice_at_clicks_10"])
    iters = dice_by_iteration_matrix(arm, MAX_ITERS)
    np.testing.assert_allclose(iters[:, 0], arm.sessions["dice_at_iter_1"])


def test_csv_files_are_byte_identical_across_calls(runs, tmp_path):
    paths = [runs["random-walker"], runs["probseg-k2"]]
    write_report(paths, out=tmp_path / "a", n_boot=150, seed=7, figures=False)
    write_report(paths, out=tmp_path / "b", n_boot=150, seed=7, figures=False)
    for name in ("summary.csv", "comparison.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    write_report(paths, out=tmp_path / "c", n_boot=150, seed=8, figures=False)
    assert (tmp_path / "a" / "summary.csv").read_bytes() != (tmp_path / "c" / "summary.csv").read_bytes()


def _cli_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("probseg-report: error:") and "\n" not in err
    assert "Traceback" not in err
    return err


def test_cli_errors_one_line_exit_2(runs, tmp_path, capsys):
    rw, unet = str(runs["random-walker"]), str(runs["unet-complete"])
    assert "is not a directory" in _cli_error(capsys, [str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "sessions.parquet" in _cli_error(capsys, [str(empty)])
    assert "reference" in _cli_error(capsys, [rw, unet, "--out", str(tmp_path / "o"), "--reference", "nope"])
    assert "endpoint" in _cli_error(capsys, [rw, unet, "--out", str(tmp_path / "o"), "--endpoint", "nope"])
    assert "cannot be paired" in _cli_error(capsys, [rw, str(runs["rw-short"]), "--out", str(tmp_path / "o")])
    assert "out" in _cli_error(capsys, [rw, unet])
    assert "n_boot" in _cli_error(capsys, [rw, unet, "--out", str(tmp_path / "o"), "--n-boot", "0"])


def test_cli_writes_report_with_figures(runs, tmp_path, capsys):
    out = tmp_path / "fig"
    argv = [str(runs[k]) for k in ("unet-complete", "random-walker", "probseg-k2", "probseg-k4")]
    assert main(argv + ["--out", str(out), "--n-boot", "40"]) == 0
    assert "report.md" in capsys.readouterr().out
    names = ["dice-vs-clicks.png", "dice-vs-effort.png", "dice-vs-iteration.png", "noc90.png", "k-sweep.png",
             "filmstrip-unet-complete.png", "filmstrip-random-walker.png", "filmstrip-probseg.png"]
    for name in names:
        assert (out / name).is_file() and (out / name).stat().st_size > 1000, name
    text = (out / "report.md").read_text()
    for name in names:
        assert f"]({name})" in text, name
    assert "does not match" not in text  # every replayed example session matched its steps.parquet


def test_single_arm_k1_figures(runs, tmp_path):
    res = write_report(runs["unet-complete"], out=tmp_path, n_boot=30)
    assert res["comparison"].empty and list(res["comparison"].columns)[:3] == ["label", "reference", "metric"]
    assert (tmp_path / "noc90.png").stat().st_size > 0 and (tmp_path / "filmstrip-unet-complete.png").is_file()
    assert not (tmp_path / "k-sweep.png").exists()
    assert res["warnings"] == []


def _study(tmp_path, runs, arms: list[dict], **extra) -> object:
    study = tmp_path / "study"
    (study / "runs").mkdir(parents=True)
    for arm in arms:
        shutil.copytree(runs[arm.pop("src")], study / arm["run_dir"])
    spec = {
        "name": "noisy-annotator", "description": "A hand-made study for the tests.",
        "notes": "Numbers from 6 sessions: plumbing only.", "reference": arms[0]["label"] if arms else None,
        "primary_endpoint": "noc_85", "thresholds": [0.85, 0.90], "bootstrap": {"n_boot": 60, "seed": 1},
        "quick": True, "arms": arms, "reproduce": None,
    }
    spec.update(extra)
    (study / "study.json").write_text(json.dumps(spec))
    return study


def test_study_directory(runs, tmp_path, capsys):
    arms = [
        {"label": "random walker", "name": "random walker", "train_seed": None, "variant": "default",
         "run_dir": "runs/random-walker", "src": "random-walker", "settings": {}},
        {"label": "probseg seed 0", "name": "probseg", "train_seed": 0, "variant": "default",
         "run_dir": "runs/probseg-seed-0", "src": "probseg-k2", "settings": {}},
        {"label": "probseg seed 1", "name": "probseg", "train_seed": 1, "variant": "default",
         "run_dir": "runs/probseg-seed-1", "src": "probseg-k4", "settings": {}},
    ]
    study = _study(tmp_path, runs, arms, reproduce={"csv": "reproduce.csv", "figures": ["figure3.png"]})
    pd.DataFrame({"checkpoint": ["disks-paper"], "added_fg_px": [57.1], "max_dice": [0.97], "n_images": [1000]}).to_csv(
        study / "reproduce.csv", index=False)
    assert main([str(study), "--no-figures"]) == 0
    capsys.readouterr()
    summary = pd.read_csv(study / "summary.csv")
    assert list(summary["label"]) == ["random walker", "probseg seed 0", "probseg seed 1"]
    assert summary["train_seed"].tolist()[1:] == [0, 1]
    comp = pd.read_csv(study / "comparison.csv")
    assert comp.loc[comp["primary"], "metric"].unique().tolist() == ["noc_85"]
    text = (study / "report.md").read_text()
    assert text.startswith("# noisy-annotator") and "Numbers from 6 sessions" in text and "Quick study" in text
    assert "## Across training seeds" in text and "`probseg`" in text
    assert "## Reproducing the paper" in text and "disks-paper" in text and "57.1" in text
    assert "figure3.png" in text  # named although missing, and flagged
    assert "## Warnings" in text
    # --reference overrides the study's; unknown labels are refused.
    assert main([str(study), "--no-figures", "--reference", "probseg seed 1", "--out", str(tmp_path / "o")]) == 0
    assert set(pd.read_csv(tmp_path / "o" / "comparison.csv")["reference"]) == {"probseg seed 1"}
    capsys.readouterr()
    assert "reference" in _cli_error(capsys, [str(study), "--reference", "nope"])


def test_study_with_only_a_reproduce_section(runs, tmp_path):
    study = _study(tmp_path, runs, [], reproduce={"csv": "reproduce.csv", "figures": []})
    pd.DataFrame({"checkpoint": ["disks"], "target_dice_at_1": [0.68]}).to_csv(study / "reproduce.csv", index=False)
    res = write_report(study)
    assert res["summary"].empty and res["comparison"].empty
    text = (study / "report.md").read_text()
    assert "## Reproducing the paper" in text and "0.680" in text
    assert "| target Dice@1 |" in text and "target_dice_at_1" not in text  # the field's label, not the column key


def test_study_compares_each_arm_with_the_reference_of_its_variant(runs, tmp_path):
    arms = [
        {"label": "rw", "name": "rw", "variant": "default", "train_seed": None, "reference": "rw",
         "run_dir": "runs/rw", "src": "random-walker"},
        {"label": "probseg", "name": "probseg", "variant": "default", "train_seed": 0, "reference": "rw",
         "run_dir": "runs/probseg", "src": "probseg-k2"},
        {"label": "rw | v2", "name": "rw | v2", "variant": "v2", "train_seed": None, "reference": "rw | v2",
         "run_dir": "runs/rw-v2", "src": "rw-copy"},
        {"label": "probseg | v2", "name": "probseg | v2", "variant": "v2", "train_seed": 0, "reference": "rw | v2",
         "run_dir": "runs/probseg-v2", "src": "probseg-k4"},
    ]
    study = _study(tmp_path, runs, arms, reference="rw")
    res = write_report(study, figures=False)
    comp = res["comparison"]
    pairs = comp[["label", "reference"]].drop_duplicates().values.tolist()
    assert pairs == [["probseg", "rw"], ["probseg | v2", "rw | v2"]]
    assert res["reference"] == "rw" and res["references"]["probseg | v2"] == "rw | v2"
    text = (study / "report.md").read_text()
    assert "## Paired comparisons" in text
    assert "`probseg \\| v2` vs `rw \\| v2`" in text  # a table cell escapes the label's pipe
    # An explicit reference overrides the study's pairing.
    res = write_report(study, out=tmp_path / "o", reference="rw | v2", figures=False)
    assert set(res["comparison"]["reference"]) == {"rw | v2"} and res["comparison"]["label"].nunique() == 3


def test_arms_table_shows_a_policy_setting_only_for_policies_that_take_it():
    """Defect (issue 16): every arm showed ``epsilon=0.1`` as a difference, policies without an epsilon too."""
    from hand_arms import hand_arm

    from simulator.report.markdown import setup_lines, settings_differences

    ref = {"policy": "noisy-best-of-k", "epsilon": 0.0, "error_weight": 2.0, "acceptance": "no-worse-dice", "seed": 0}
    assert settings_differences({**ref, "epsilon": 0.3}, ref) == ["epsilon=0.3"]
    assert settings_differences({**ref, "policy": "model-ranked", "epsilon": 0.1}, ref) == []
    assert settings_differences({**ref, "policy": "first", "epsilon": 0.1, "seed": 1}, ref) == ["seed=1"]
    first = {"policy": "first", "epsilon": 0.1, "error_weight": 2.0, "acceptance": "no-worse-dice"}
    # Against a reference whose policy has no epsilon, the default epsilon is no difference; another one is.
    assert settings_differences({**first, "policy": "noisy-best-of-k"}, first) == []
    assert settings_differences({**first, "policy": "noisy-best-of-k", "epsilon": 0.5}, first) == ["epsilon=0.5"]

    steps = [{"dice": 0.95, "clicks_so_far": 2}]
    arms = [hand_arm([{"session": 0, "image": "a", "steps": steps}], label=lab,
                     settings={"dataset": "disks", "policy": pol, "epsilon": eps, "k": k})
            for lab, pol, eps, k in (("noisy eps=0", "noisy-best-of-k", 0.0, 8), ("noisy eps=0.1", "noisy-best-of-k", 0.1, 8),
                                     ("ranked", "model-ranked", 0.1, 8), ("unet", "first", 0.1, 1))]
    rows = {line.split(" | ")[0].strip("| `"): line.rsplit(" | ", 1)[1].rstrip(" |")
            for line in setup_lines(arms, None, 1) if line.startswith("| `")}
    assert rows == {"noisy eps=0": "–", "noisy eps=0.1": "epsilon=0.1", "ranked": "–", "unet": "–"}
