"""The report's sections for real-image studies: per task, per annotator, simulated vs human starts,
the minimal detectable difference and the per-task Dice figure.

No session is simulated here: the run directories are written by hand (``config.json``,
``sessions.parquet``, ``steps.parquet``, ``summary.json``, as :func:`simulator.runner.run` writes
them), from Dice curves chosen so that every number can be checked against the Parquet files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from simulator.metrics import session_metrics
from simulator.report import comparison_table, load_study_results, main, write_report
from simulator.runner import RunSettings, summarize
from simulator.session import SessionConfig
from simulator.stats import cluster_values, minimal_detectable_difference

MAX_ITERS = 6
N_BOOT = 200
Z = NormalDist().inv_cdf(0.975) + NormalDist().inv_cdf(0.8)

# Real tasks: CAMUS with 2 images, OASIS with 1, WBC with 3. Image "WBC/w2" has only two annotators.
TASK_IMAGES = {"CAMUS": ["c0", "c1"], "OASIS": ["o0"], "WBC": ["w0", "w1", "w2"]}
N_ANNOTATORS = {"w2": 2}
START_CLICKS = {"clicks": 1, "scribbles": 2, "human": 2}
METHOD_KIND = {"random-walker": "complete", "probseg": "partial"}

Curve = Callable[[str, str, str, str, str], float]


def _first_dice(task: str, image: str, target: str, method: str, start: str) -> float:
    """A session's first Dice: image difficulty + method, start and annotator offsets (all distinct)."""
    img = {"c0": 0.50, "c1": 0.62, "o0": 0.44, "w0": 0.70, "w1": 0.58, "w2": 0.66, "d0": 0.5, "d1": 0.6, "d2": 0.7}
    base = img.get(image.split("/")[-1], 0.55)
    base += {"random-walker": 0.0, "probseg": 0.08}.get(method, 0.0)
    base += {"clicks": -0.05, "scribbles": 0.02, "human": 0.0}.get(start, 0.0)
    if target.startswith("annotator-"):
        base += 0.03 * int(target.split("-")[1]) - 0.03
    return float(min(base, 0.95))


def _curve(d0: float, rate: float, n: int) -> list[float]:
    """Dice over iterations 1..n, closing the gap to 1 by ``rate`` each iteration."""
    return [1.0 - (1.0 - d0) * (1.0 - rate) ** i for i in range(n)]


def write_fake_run(
    path: Path,
    sessions: list[tuple[str, str, str]],
    *,
    method: str = "random-walker",
    start: str = "clicks",
    k: int = 1,
    policy: str = "best-of-k",
    dataset: str = "medscribble:/nonexistent/MedScribble",
    with_task: bool = True,
    first_dice: Curve = _first_dice,
) -> Path:
    """Write a finished run directory by hand: one session per ``(task, image, target)``, in order.

    Each session runs ``MAX_ITERS`` iterations of one click each; its Dice curve starts at
    ``first_dice(task, image, target, method, start)`` and closes a third (partial methods: 40%) of the
    gap to 1 per iteration. Its metrics come from :func:`simulator.metrics.session_metrics`, as in a run.
    """
    path.mkdir(parents=True, exist_ok=True)
    settings = RunSettings(dataset=dataset, method=method, policy=policy,
                           session=SessionConfig(k=k, start=start, max_iters=MAX_ITERS))
    effort = settings.effort
    rate = 0.4 if METHOD_KIND[method] == "partial" else 1.0 / 3.0
    step_rows, session_rows = [], []
    for index, (task, image, target) in enumerate(sessions):
        ident = {"session": index, "task": task, "image": image, "target": target, "start": start,
                 "seed": 0, "method": method, "policy": policy, "k": k}
        dice = _curve(first_dice(task, image, target, method, start), rate, MAX_ITERS)
        steps = [
            {"iteration": i + 1, "dice": d, "clicks_so_far": START_CLICKS[start] + i, "click_made": True,
             "n_clicks": 1, "candidate_dice": [d] * k, "n_candidates": k, "hd95": 10.0 * (1.0 - d)}
            for i, d in enumerate(dice)
        ]
        m = session_metrics(steps, corrections_per_iter=1, max_iters=MAX_ITERS, effort_model=effort)
        step_rows += [{**ident, **s} for s in steps]
        session_rows.append({**ident, **m, "session_seconds": 0.01})
    steps_df = pd.DataFrame(step_rows).drop(columns=["n_candidates"])
    sessions_df = pd.DataFrame(session_rows)
    if not with_task:
        steps_df = steps_df.drop(columns=["task"])
        sessions_df = sessions_df.drop(columns=["task"])
    steps_df.to_parquet(path / "steps.parquet", index=False)
    sessions_df.to_parquet(path / "sessions.parquet", index=False)
    config = {
        "settings": settings.to_dict(), "session": settings.session.to_dict(),
        "effort": {"c_click": effort.c_click, "c_inspect": effort.c_inspect, "b_choose": effort.b_choose},
        "method": {"name": method, "kind": METHOD_KIND[method], "multi": k > 1, "checkpoint": "", "rw_beta": None},
        "versions": {}, "git_commit": "fake", "host": "test",
    }
    (path / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (path / "summary.json").write_text(json.dumps(summarize(sessions_df, 1.0, len(sessions_df)), default=float))
    return path


def real_sessions(start: str) -> list[tuple[str, str, str]]:
    """``(task, image, target)`` per session: one per annotator for the human start, else one per image."""
    out = []
    for task, images in TASK_IMAGES.items():
        for image in images:
            image_id = f"medscribble/{task}/{image}"
            if start == "human":
                out += [(task, image_id, f"annotator-{a}") for a in range(N_ANNOTATORS.get(image, 3))]
            else:
                out.append((task, image_id, "mask"))
    return out


def write_study(root: Path, arms: list[dict], **extra) -> Path:
    """A study directory: ``study.json`` naming the arms' run directories under ``runs/``."""
    root.mkdir(parents=True, exist_ok=True)
    spec = {
        "name": "real-study", "description": "A hand-made real-image study for the tests.", "reference": None,
        "primary_endpoint": "dice_at_clicks_5", "thresholds": [0.85, 0.90],
        "bootstrap": {"n_boot": N_BOOT, "seed": 3}, "quick": False, "arms": arms, "reproduce": None,
    }
    spec.update(extra)
    (root / "study.json").write_text(json.dumps(spec))
    return root


@pytest.fixture(scope="module")
def real_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two methods (random walker: the reference; probseg) under the human, scribbles and clicks starts."""
    root = tmp_path_factory.mktemp("real") / "study"
    arms = []
    for start in ("human", "scribbles", "clicks"):
        for method, base in (("random-walker", "rw"), ("probseg", "probseg")):
            label = f"{base} | {start}"
            run_dir = f"runs/{base}-{start}"
            write_fake_run(root / run_dir, real_sessions(start), method=method, start=start,
                           k=4 if method == "probseg" else 1)
            arms.append({"label": label, "name": label, "train_seed": None, "variant": start,
                         "reference": f"rw | {start}", "run_dir": run_dir})
    return write_study(root, arms, reference="rw | human")


@pytest.fixture(scope="module")
def real_report(real_study: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("real-report")
    return write_report(real_study, out=out, figures=False) | {"out": out}


def _sessions(study: Path, run: str) -> pd.DataFrame:
    return pd.read_parquet(study / "runs" / run / "sessions.parquet")


# --------------------------------------------------------------------------------------------------
# Statistics helpers


def test_cluster_values_and_mdd_hand_computed():
    v = np.array([1.0, 3.0, np.nan, 5.0, 2.0])
    c = np.array([0, 0, 1, 1, 3])
    np.testing.assert_allclose(cluster_values(v, c, 4), [2.0, 5.0, np.nan, 2.0])
    np.testing.assert_allclose(cluster_values(v, c, 4, statistic="sum"), [4.0, 5.0, np.nan, 2.0])
    mdd, sd, n = minimal_detectable_difference(np.array([0.1, -0.1, 0.3, np.nan]))
    assert n == 3 and sd == pytest.approx(np.std([0.1, -0.1, 0.3], ddof=1))
    assert mdd == pytest.approx((1.959964 + 0.841621) * sd / math.sqrt(3), rel=1e-6)
    mdd_sum, _, _ = minimal_detectable_difference(np.array([0.1, -0.1, 0.3]), statistic="sum")
    assert mdd_sum == pytest.approx(Z * sd * math.sqrt(3))
    assert all(math.isnan(x) for x in minimal_detectable_difference(np.array([0.2]))[:2])
    with pytest.raises(ValueError, match="power"):
        minimal_detectable_difference(np.zeros(3), power=1.0)


# --------------------------------------------------------------------------------------------------
# Loading and pairing a study whose starts hold different sessions


def test_mixed_start_study_pairs_each_arm_with_its_variant_reference(real_study, real_report):
    summary = real_report["summary"].set_index("label")
    assert summary.loc["rw | human", "n_sessions"] == 17 and summary.loc["rw | scribbles", "n_sessions"] == 6
    assert (summary["n_images"] == 6).all()
    pairs = real_report["comparison"][["label", "reference"]].drop_duplicates().values.tolist()
    assert pairs == [["probseg | human", "rw | human"], ["probseg | scribbles", "rw | scribbles"],
                     ["probseg | clicks", "rw | clicks"]]
    text = (real_report["out"] / "report.md").read_text()
    assert "6 images; 6, 17 sessions per arm" in text
    assert "- Tasks: CAMUS (2 images), OASIS (1 image), WBC (3 images)." in text
    # A human-start arm cannot be paired with a scribbles-start reference (other sessions) ...
    _, arms = load_study_results(real_study)
    with pytest.raises(ValueError, match="cannot be paired"):
        comparison_table(arms, {"probseg | human": "rw | scribbles"})



def test_capped_sessions_give_the_human_start_fewer_images(tmp_path):
    """A --quick run caps sessions: 3 human sessions are 1 image x 3 annotators, 3 scribbles sessions 3 images."""
    root = tmp_path / "quick"
    arms = []
    for start in ("human", "scribbles"):
        for method, base in (("random-walker", "rw"), ("probseg", "probseg")):
            run_dir = f"runs/{base}-{start}"
            write_fake_run(root / run_dir, real_sessions(start)[:3], method=method, start=start)
            arms.append({"label": f"{base} | {start}", "name": f"{base} | {start}", "variant": start,
                         "reference": f"rw | {start}", "run_dir": run_dir})
    res = write_report(write_study(root, arms), figures=False)
    summary = res["summary"].set_index("label")
    assert summary.loc["rw | human", "n_images"] == 1 and summary.loc["rw | scribbles", "n_images"] == 3
    assert any("did not all run on the same images" in w for w in res["warnings"])
    prim = res["comparison"][res["comparison"]["primary"]].set_index("label")
    assert np.isnan(prim.loc["probseg | human", "mdd"]) and np.isfinite(prim.loc["probseg | scribbles", "mdd"])
    st = res["starts"]
    assert (st["n_images"] == 1).all() and set(st["task"]) == {"all"}  # the one image both starts ran
    scr = st[(st["start"] == "scribbles") & st["primary"] & (st["group"] == "rw")].iloc[0]
    human = _sessions(root, "rw-human")["dice_at_clicks_5"].mean()
    first = _sessions(root, "rw-scribbles").iloc[0]
    assert scr["diff_vs_human"] == pytest.approx(first["dice_at_clicks_5"] - human)
    assert np.isnan(scr["diff_lo"])
    text = (root / "report.md").read_text()
    assert "1, 3 images per arm (not the same images" in text and "## Warnings" in text


# --------------------------------------------------------------------------------------------------
# Per task


def _image_mean_diffs(study: Path, arm: str, ref: str, metric: str, task: str | None = None) -> pd.Series:
    a, r = _sessions(study, arm), _sessions(study, ref)
    assert (a["image"].values == r["image"].values).all() and (a["target"].values == r["target"].values).all()
    d = a.assign(d=a[metric] - r[metric])
    if task is not None:
        d = d[d["task"] == task]
    return d.groupby("image")["d"].mean()


def test_per_task_table_matches_the_sessions(real_study, real_report):
    pt = pd.read_csv(real_report["out"] / "per_task.csv")
    assert list(pt.columns) == ["task", "label", "reference", "variant", "start", "metric", "primary", "n_images",
                                "n_sessions", "value", "value_lo", "value_hi", "diff", "diff_lo", "diff_hi", "mdd"]
    assert sorted(pt["task"].unique()) == ["CAMUS", "OASIS", "WBC"]
    assert set(pt["metric"]) == {"dice_at_clicks_5", "noc_90"}
    s_p, s_r = _sessions(real_study, "probseg-human"), _sessions(real_study, "rw-human")
    for task, images in TASK_IMAGES.items():
        n_sessions = sum(N_ANNOTATORS.get(i, 3) for i in images)
        for metric in ("dice_at_clicks_5", "noc_90"):
            row = pt[(pt["task"] == task) & (pt["label"] == "probseg | human") & (pt["metric"] == metric)].iloc[0]
            sel = s_p["task"] == task
            assert row["n_images"] == len(images) and row["n_sessions"] == n_sessions
            assert row["reference"] == "rw | human" and row["start"] == "human"
            assert row["value"] == pytest.approx(s_p.loc[sel, metric].mean())
            assert row["diff"] == pytest.approx((s_p.loc[sel, metric] - s_r.loc[sel, metric]).mean())
            if len(images) == 1:  # one image: a value, no CI, no MDD
                assert row[["value_lo", "value_hi", "diff_lo", "diff_hi", "mdd"]].isna().all()
            else:
                assert row["value_lo"] - 1e-12 <= row["value"] <= row["value_hi"] + 1e-12
                assert row["diff_lo"] - 1e-12 <= row["diff"] <= row["diff_hi"] + 1e-12
            if metric == "dice_at_clicks_5" and len(images) > 1:
                d = _image_mean_diffs(real_study, "probseg-human", "rw-human", metric, task)
                assert row["mdd"] == pytest.approx(Z * d.std(ddof=1) / math.sqrt(len(images)))
            elif metric == "noc_90":
                assert np.isnan(row["mdd"])
    # The reference arms have their values but no difference.
    ref_rows = pt[pt["label"] == pt["reference"]]
    assert set(ref_rows["label"]) == {"rw | human", "rw | scribbles", "rw | clicks"}
    assert ref_rows[["diff", "diff_lo", "diff_hi", "mdd"]].isna().all().all()
    text = (real_report["out"] / "report.md").read_text()
    assert "## Per task" in text and "these CIs are wide" in text and "1–3 image(s)" in text
    assert "| OASIS | `probseg \\| human` | 1 | 3 | 0.896 [–] | +0.0622 [–] |" in text


# --------------------------------------------------------------------------------------------------
# The smallest detectable difference


def test_mdd_in_comparison_csv_and_report(real_study, real_report):
    comp = pd.read_csv(real_report["out"] / "comparison.csv")
    assert list(comp.columns)[-1] == "mdd"
    assert comp.loc[~comp["primary"], "mdd"].isna().all()
    prim = comp[comp["primary"]].set_index("label")
    mdds = []
    for start in ("human", "scribbles", "clicks"):
        d = _image_mean_diffs(real_study, f"probseg-{start}", f"rw-{start}", "dice_at_clicks_5")
        assert len(d) == 6
        expected = Z * d.std(ddof=1) / math.sqrt(6)
        assert prim.loc[f"probseg | {start}", "mdd"] == pytest.approx(expected)
        mdds.append(expected)
    overall = math.sqrt(np.mean(np.square(mdds)))
    text = (real_report["out"] / "report.md").read_text()
    assert "## Smallest detectable difference" in text
    assert f"With 6 images this study can detect differences of about **{overall:.3f}** in Dice@5 clicks" in text
    assert "| OASIS | 1 | – | – |" in text  # one image: no MDD
    assert "2.80 × SD / √n" in text


# --------------------------------------------------------------------------------------------------
# Per annotator


def test_per_annotator_table(real_study, real_report):
    pa = pd.read_csv(real_report["out"] / "per_annotator.csv")
    assert set(pa["label"]) == {"rw | human", "probseg | human"}  # only the human start
    assert set(pa["task"]) == {"all", "CAMUS", "OASIS", "WBC"}
    s = _sessions(real_study, "probseg-human")
    rows = pa[(pa["label"] == "probseg | human") & (pa["task"] == "all") & (pa["metric"] == "dice_at_clicks_5")]
    assert rows["annotator"].tolist() == ["annotator-0", "annotator-1", "annotator-2"]
    means = s.groupby("target")["dice_at_clicks_5"].mean()
    np.testing.assert_allclose(rows["value"], means.loc[rows["annotator"]].to_numpy())
    assert rows["n_images"].tolist() == [6, 6, 5]  # WBC/w2 has two annotators
    assert (rows["n_annotators"] == 3).all()
    assert rows["annotators_sd"].iloc[0] == pytest.approx(means.std(ddof=1))
    assert rows["annotators_min"].iloc[0] == pytest.approx(means.min())
    assert rows["annotators_max"].iloc[0] == pytest.approx(means.max())
    wbc = pa[(pa["label"] == "probseg | human") & (pa["task"] == "WBC") & (pa["metric"] == "noc_90")]
    sw = s[s["task"] == "WBC"]
    np.testing.assert_allclose(wbc["value"], sw.groupby("target")["noc_90"].mean().to_numpy())
    text = (real_report["out"] / "report.md").read_text()
    assert "## Per annotator (human start)" in text and "Not every annotator scribbled every image" in text
    assert "| `probseg \\| human` | all | 0.921 | 0.927 | 0.930 |" in text


# --------------------------------------------------------------------------------------------------
# Simulated against human starts


def _image_means(study: Path, run: str, metric: str) -> pd.Series:
    return _sessions(study, run).groupby("image")[metric].mean()


def test_starts_table_pairs_by_image_with_annotators_averaged(real_study, real_report):
    st = pd.read_csv(real_report["out"] / "starts.csv")
    assert list(st["group"].unique()) == ["rw", "probseg"]
    main_rows = st[(st["task"] == "all") & (st["metric"] == "dice_at_clicks_5")]
    assert main_rows[main_rows["group"] == "probseg"]["start"].tolist() == ["human", "scribbles", "clicks"]
    for group, run in (("rw", "rw"), ("probseg", "probseg")):
        human = _image_means(real_study, f"{run}-human", "dice_at_clicks_5")
        g = main_rows[main_rows["group"] == group].set_index("start")
        assert g.loc["human", "value"] == pytest.approx(human.mean())  # every image counts once
        assert np.isnan(g.loc["human", "diff_vs_human"])
        for start in ("scribbles", "clicks"):
            sim = _image_means(real_study, f"{run}-{start}", "dice_at_clicks_5")
            assert g.loc[start, "n_images"] == 6 and g.loc[start, "human_label"] == f"{run} | human"
            assert g.loc[start, "value"] == pytest.approx(sim.mean())
            assert g.loc[start, "diff_vs_human"] == pytest.approx((sim - human).mean())
            assert g.loc[start, "diff_lo"] <= g.loc[start, "diff_vs_human"] <= g.loc[start, "diff_hi"]
    # The session mean of the human start weighs images by their annotators; the image mean does not.
    summary = real_report["summary"].set_index("label")
    assert summary.loc["rw | human", "dice_at_clicks_5"] != pytest.approx(main_rows.iloc[0]["value"])
    oasis = st[(st["task"] == "OASIS") & (st["start"] == "scribbles")]
    assert oasis[["value_lo", "value_hi", "diff_lo", "diff_hi"]].isna().all().all() and (oasis["n_images"] == 1).all()
    text = (real_report["out"] / "report.md").read_text()
    assert "## Simulated against human starts" in text
    assert ("- **Simulated scribbles against human scribbles**: simulated scribbles are a better start than the human "
            "scribbles for every method (Dice@5 clicks higher by 0.005–0.007") in text


def _human_vs_scribbles_study(root: Path, offsets: dict[str, float]) -> Path:
    """The random walker from human and simulated scribbles; ``offsets`` shifts the scribbles' first Dice per image."""

    def first(task: str, image: str, target: str, method: str, start: str) -> float:
        return _first_dice(task, image, target, method, "human") + (
            offsets[image.split("/")[-1]] if start == "scribbles" else 0.0)

    arms = []
    for start in ("human", "scribbles"):
        write_fake_run(root / "runs" / start, real_sessions(start), start=start, first_dice=first)
        arms.append({"label": f"rw | {start}", "name": f"rw | {start}", "variant": start,
                     "reference": f"rw | {start}", "run_dir": f"runs/{start}"})
    return write_study(root, arms)


@pytest.mark.parametrize("sign, expected", [
    (0.0, "this study does not tell simulated scribbles from human scribbles as a start"),
    (-1.0, "simulated scribbles are a worse start than the human scribbles for the method"),
])
def test_starts_statement_follows_the_ci(tmp_path, sign, expected):
    # sign 0: offsets of both signs around zero (CI includes zero); -1: every image worse.
    noisy = {"c0": 0.04, "c1": -0.05, "o0": 0.02, "w0": -0.03, "w1": 0.05, "w2": -0.02}
    offsets = noisy if sign == 0.0 else {k: -0.06 - abs(v) for k, v in noisy.items()}
    study = _human_vs_scribbles_study(tmp_path / "s", offsets)
    res = write_report(study, figures=False)
    assert res["comparison"].empty  # every arm is its own variant's reference
    text = (study / "report.md").read_text()
    assert expected in text
    row = res["starts"].query("task == 'all' and start == 'scribbles' and primary").iloc[0]
    assert row["group"] == "rw"
    assert (row["diff_lo"] <= 0 <= row["diff_hi"]) == (sign == 0.0)


def test_start_groups_need_equal_settings_and_a_human_start(tmp_path):
    sessions = {s: real_sessions(s) for s in ("human", "scribbles", "clicks")}
    root = tmp_path / "s"
    specs = [("rw | human", "random-walker", "human", 1), ("rw | clicks", "random-walker", "clicks", 1),
             ("p4 | scribbles", "probseg", "scribbles", 4), ("p2 | human", "probseg", "human", 2)]
    arms = []
    for label, method, start, k in specs:
        run_dir = f"runs/{label.replace(' | ', '-')}"
        write_fake_run(root / run_dir, sessions[start], method=method, start=start, k=k)
        arms.append({"label": label, "name": label, "variant": start, "reference": label, "run_dir": run_dir})
    res = write_report(write_study(root, arms), figures=False)
    # probseg K=4 (scribbles) and K=2 (human) differ in K: no group; the random walker groups.
    assert res["starts"]["group"].unique().tolist() == ["rw"]
    assert set(res["starts"]["start"]) == {"human", "clicks"}
    assert set(res["per_annotator"]["label"]) == {"rw | human", "p2 | human"}


# --------------------------------------------------------------------------------------------------
# Determinism, disk reports unchanged, figures and CLI


def test_real_tables_are_byte_identical_across_calls(real_study, tmp_path):
    write_report(real_study, out=tmp_path / "a", figures=False)
    write_report(real_study, out=tmp_path / "b", figures=False)
    names = ["summary.csv", "comparison.csv", "per_task.csv", "per_annotator.csv", "starts.csv", "report.md"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    write_report(real_study, out=tmp_path / "c", seed=11, figures=False)
    for name in ("per_task.csv", "starts.csv"):
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes(), name


@pytest.mark.parametrize("with_task", [True, False])
def test_disk_runs_get_no_real_sections(tmp_path, with_task):
    disk = [("disks", f"disks/{i}", "target") for i in range(5)]
    runs = [write_fake_run(tmp_path / m, disk, method=m, k=k, dataset="disks", with_task=with_task)
            for m, k in (("random-walker", 1), ("probseg", 4))]
    res = write_report(runs, out=tmp_path / "out", n_boot=50, figures=False)
    # The K = 4 arm's candidates get their table; nothing of the real-image tables.
    assert set(res["paths"]) == {"summary.csv", "comparison.csv", "session_ends.csv", "candidates.csv", "report.md"}
    assert res["per_task"] is None and res["per_annotator"] is None and res["starts"] is None
    text = (tmp_path / "out" / "report.md").read_text()
    for section in ("Per task", "Smallest detectable", "Per annotator", "Simulated against human", "- Tasks:"):
        assert section not in text
    comp = res["comparison"]
    assert comp.loc[comp["primary"], "mdd"].notna().all() and comp.loc[~comp["primary"], "mdd"].isna().all()
    assert "every arm runs the same sessions" in text


def test_one_real_task_gets_a_per_task_table(tmp_path):
    sessions = [("CAMUS", f"medscribble/CAMUS/c{i}", "mask") for i in range(3)]
    runs = [write_fake_run(tmp_path / m, sessions, method=m) for m in ("random-walker", "probseg")]
    res = write_report(runs, out=tmp_path / "out", endpoint="dice_at_clicks_5", n_boot=50, figures=False)
    assert set(res["paths"]) == {"summary.csv", "comparison.csv", "session_ends.csv", "report.md", "per_task.csv"}
    assert res["per_task"]["task"].unique().tolist() == ["CAMUS"]
    assert "## Per task" in (tmp_path / "out" / "report.md").read_text()


def test_figures_and_cli(real_study, tmp_path, capsys):
    out = tmp_path / "fig"
    assert main([str(real_study), "--out", str(out), "--n-boot", "30"]) == 0
    printed = capsys.readouterr().out
    for name in ("per_task.csv", "per_annotator.csv", "starts.csv", "dice-vs-clicks-per-task.png"):
        assert f"{name}: " in printed, name
    for name in ("dice-vs-clicks.png", "dice-vs-clicks-per-task.png", "dice-vs-iteration.png", "dice-vs-effort.png"):
        assert (out / name).stat().st_size > 1000, name
    text = (out / "report.md").read_text()
    assert "](dice-vs-clicks-per-task.png)" in text
    assert "no filmstrip for method" in text  # the fake dataset cannot be replayed: a warning, not a crash

