"""probseg-select: the family-selection rule of CHECKPOINTS.md, on hand-computed figures, and a small
end-to-end run on MedScribble's training tasks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from simulator.selection import (
    FULL_RECIPE,
    candidates,
    choose_family,
    decision_name,
    main,
    paired_task_se,
    run_selection,
    shipped_family,
    train_command,
    train_final,
)

MEDSCRIBBLE = Path(__file__).resolve().parents[2] / "shared" / "medscribble"


def test_paired_se_is_zero_for_identical_or_shifted_scores():
    a = {"X": np.array([0.2, 0.5, 0.9]), "Y": np.array([0.1, 0.3])}
    assert paired_task_se(a, a) == 0.0
    shifted = {t: v + 0.1 for t, v in a.items()}
    assert paired_task_se(shifted, a) == pytest.approx(0.0, abs=1e-12)  # pairing removes the images' spread


def test_paired_se_matches_the_bootstrap_variance_by_hand():
    # One task, differences [0, 1]: a resample's mean difference has variance var_pop(d) / n = 0.25 / 2.
    a, b = {"X": np.array([0.0, 1.0])}, {"X": np.array([0.0, 0.0])}
    assert paired_task_se(a, b, n_boot=40_000) == pytest.approx(np.sqrt(0.125), abs=0.005)
    # Two such tasks: the score is their mean, so the variance halves.
    a2, b2 = {"X": a["X"], "Y": a["X"]}, {"X": b["X"], "Y": b["X"]}
    assert paired_task_se(a2, b2, n_boot=40_000) == pytest.approx(np.sqrt(0.125 / 2), abs=0.005)


def test_paired_se_refuses_mismatched_scores():
    with pytest.raises(ValueError, match="^a, b: "):
        paired_task_se({"X": np.ones(2)}, {"Y": np.ones(2)})
    with pytest.raises(ValueError, match="^a, b: "):
        paired_task_se({"X": np.ones(2)}, {"X": np.ones(3)})
    with pytest.raises(ValueError, match="^n_boot: "):
        paired_task_se({"X": np.ones(2)}, {"X": np.ones(2)}, n_boot=1)


def test_a_clear_winner_is_chosen_by_score():
    heads = {"X": np.array([0.50, 0.52, 0.51]), "Y": np.array([0.60, 0.61])}
    ssn = {"X": np.array([0.70, 0.72, 0.71]), "Y": np.array([0.80, 0.81])}
    d = choose_family({"heads": heads, "ssn": ssn}, {"heads": 0.3, "ssn": 0.0})
    assert (d.chosen, d.reason) == ("ssn", "score")
    assert d.scores["heads"] == pytest.approx((0.51 + 0.605) / 2)  # the mean of the task means
    assert d.per_task["ssn"] == pytest.approx({"X": 0.71, "Y": 0.805})


def test_within_one_standard_error_the_useful_diversity_decides_then_heads():
    heads = {"X": np.array([0.2, 0.9, 0.4, 0.7])}
    ssn = {"X": np.array([0.9, 0.2, 0.41, 0.7])}  # +0.0025 on average, differences of +-0.7
    d = choose_family({"heads": heads, "ssn": ssn}, {"heads": 0.01, "ssn": 0.05})
    assert d.se > abs(d.scores["ssn"] - d.scores["heads"])
    assert (d.chosen, d.reason) == ("ssn", "diversity")
    tie = choose_family({"ssn": ssn, "heads": heads}, {"heads": 0.05, "ssn": 0.05})
    assert (tie.chosen, tie.reason) == ("heads", "preference")


def test_choose_family_needs_two_families_with_diversity():
    x = {"X": np.ones(2)}
    with pytest.raises(ValueError, match="^per_image, diversity: "):
        choose_family({"heads": x}, {"heads": 0.0})
    with pytest.raises(ValueError, match="^per_image, diversity: "):
        choose_family({"heads": x, "ssn": x}, {"heads": 0.0})


def test_candidates_leave_each_training_task_out_once():
    fold = ("ACDC", "BTCV", "HipXRay", "STARE")
    got = candidates(fold, "complete")
    assert [(c.family, c.left_out) for c in got] == [(f, t) for f in ("heads", "ssn") for t in fold]
    for c in got:
        assert c.left_out not in c.train_tasks and len(c.train_tasks) == 3
        assert c.config == {"heads": "medical-heads-complete", "ssn": "medical-ssn-complete"}[c.family]
    with pytest.raises(ValueError, match="^row: "):
        candidates(fold, "both")
    with pytest.raises(ValueError, match="^families: "):
        candidates(fold, "partial", families=("heads", "vae"))
    with pytest.raises(ValueError, match="^left_out: "):
        candidates(fold, "partial", left_out=["WBC"])


def test_a_quarter_budget_is_a_quarter_of_the_recipe():
    c = candidates(("ACDC", "BTCV", "HipXRay", "STARE"), "partial", left_out=["BTCV"])[0]
    args = train_command(c, Path("x.pt"), 0.25, "data", "auto", 2)
    value = lambda flag: args[args.index(flag) + 1]  # noqa: E731
    assert value("--steps") == str(FULL_RECIPE["steps"] // 4)
    assert value("--n-pairs") == str(FULL_RECIPE["n_pairs"] // 4)
    assert value("--train-tasks") == "ACDC,HipXRay,STARE" and value("--config") == "medical-heads"
    assert "--interaction-loop" in args and value("--eval-images") == "0"
    assert value("--pseudo-fraction") == str(FULL_RECIPE["pseudo_fraction"])


def test_the_unet_row_compares_its_recipes_with_and_without_pseudo_tasks():
    fold = ("ACDC", "BTCV", "HipXRay", "STARE")
    got = candidates(fold, "unet", left_out=["ACDC"])
    assert [(c.family, c.config, c.pseudo_fraction) for c in got] == [
        ("pseudo", "medical-unet-complete", 0.5), ("real", "medical-unet-complete", 0.0)]
    value = lambda args, flag: args[args.index(flag) + 1]  # noqa: E731
    assert [value(train_command(c, Path("x.pt"), 0.25, "data", "auto", 2), "--pseudo-fraction") for c in got] == \
        ["0.5", "0.0"]
    with pytest.raises(ValueError, match="^families: unknown family 'heads' for row unet"):
        candidates(fold, "unet", families=("heads", "real"))
    # No diversity to tell them apart: a tie goes to the recipe the families train with.
    x = {"X": np.array([0.5, 0.6])}
    assert choose_family({"real": x, "pseudo": x}, {"real": 0.0, "pseudo": 0.0}).chosen == "pseudo"


def test_cli_bad_input_is_one_line_exit_2(capsys, tmp_path):
    assert main(["--fold", "C", "--row", "partial", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().startswith("probseg-select: error: fold: ")
    assert main(["--fold", "A", "--row", "partial", "--out", str(tmp_path), "--medscribble", str(tmp_path / "no")]) == 2
    assert "medscribble: MedScribble folder not found" in capsys.readouterr().err


@pytest.mark.skipif(not MEDSCRIBBLE.is_dir(), reason="MedScribble data not found")
def test_a_small_selection_trains_evaluates_chooses_and_resumes(tmp_path, capsys):
    kw = dict(fraction=0.001, left_out=["HipXRay"], medscribble=str(MEDSCRIBBLE), device="cpu", threads=1,
              workers=0, n_sessions=2, progress=False)
    decision = run_selection("A", "complete", tmp_path, **kw)
    record = json.loads((tmp_path / "selection.json").read_text())
    assert record["complete_run"] is False  # one task left out of four: reported as a partial run
    assert decision.chosen in ("heads", "ssn") and record["decision"]["chosen"] == decision.chosen
    assert [(c["family"], c["left_out"], c["sessions"]) for c in record["candidates"]] == \
        [("heads", "HipXRay", 4), ("ssn", "HipXRay", 4)]  # 2 sessions from each of the two starts
    for c in record["candidates"]:
        assert c["command"].startswith(f"probseg-train --config {c['config']} --dataset medical --interaction-loop")
        assert "--train-tasks ACDC,BTCV,STARE" in c["command"]
        assert 0.0 <= c["dice_at_clicks_5"] <= 1.0 and 0.0 <= c["diversity_gain"] <= 1.0
        # The first proposal's candidates: the best bounds the top-scored and the mean one.
        assert c["first_best_dice"] >= max(c["first_top_dice"], c["first_mean_dice"])
        assert c["diversity_gain"] == pytest.approx(c["first_best_dice"] - c["first_top_dice"])
    assert "A partial run" in (tmp_path / "selection.md").read_text()
    ckpt = tmp_path / "checkpoints" / "heads-complete-without-HipXRay.pt"
    before = ckpt.stat().st_mtime_ns
    capsys.readouterr()
    again = run_selection("A", "complete", tmp_path, **{**kw, "progress": True})
    assert ckpt.stat().st_mtime_ns == before  # trained by the same command: kept
    assert again == decision
    err = capsys.readouterr().err
    assert "probseg-select: fold A, row complete: decided before by the same commands" in err
    # Without the decision on record, each candidate's kept training and evaluation records give it again.
    (tmp_path / "selection.json").unlink()
    assert run_selection("A", "complete", tmp_path, **{**kw, "progress": True}) == decision
    err = capsys.readouterr().err
    assert "probseg-select: fold A, row complete: 2 candidates, 1 at a time" in err
    assert "probseg-select: heads-complete-without-HipXRay: kept (trained and evaluated by the same commands before)" in err
    # A fresh checkout holds the records but neither the weights nor the runs (both ignored by git): the
    # evaluations on record stand.
    for pt in (tmp_path / "checkpoints").glob("*.pt"):
        pt.unlink()
    shutil.rmtree(tmp_path / "runs")
    (tmp_path / "selection.json").unlink()
    assert run_selection("A", "complete", tmp_path, **kw) == decision
    assert not ckpt.exists()
    # An evaluation made otherwise (here: more sessions) is redone, from the weights, retrained if missing.
    third = run_selection("A", "complete", tmp_path, **{**kw, "n_sessions": 1, "progress": True})
    err = capsys.readouterr().err
    assert "heads-complete-without-HipXRay: training" in err and "evaluating" in err
    record = json.loads((tmp_path / "selection.json").read_text())
    assert [c["sessions"] for c in record["candidates"]] == [2, 2] and third.chosen in ("heads", "ssn")
    kept = json.loads((tmp_path / "checkpoints" / "heads-complete-without-HipXRay.eval.json").read_text())
    assert kept["evaluation"]["n_sessions"] == 1 and len(kept["rows"]) == 2


@pytest.mark.skipif(not MEDSCRIBBLE.is_dir(), reason="MedScribble data not found")
def test_a_small_unet_selection_evaluates_its_one_answer(tmp_path):
    run_selection("A", "unet", tmp_path, fraction=0.001, left_out=["HipXRay"], medscribble=str(MEDSCRIBBLE),
                  device="cpu", threads=1, workers=0, n_sessions=1, progress=False)
    record = json.loads((tmp_path / "selection.json").read_text())
    assert [(c["family"], c["sessions"], c["diversity_gain"]) for c in record["candidates"]] == \
        [("pseudo", 2, 0.0), ("real", 2, 0.0)]
    assert "--pseudo-fraction 0.0" in record["candidates"][1]["command"]
    config = json.loads((tmp_path / "runs" / "real-unet-without-HipXRay" / "human" / "config.json").read_text())
    assert (config["settings"]["method"], config["settings"]["policy"], config["settings"]["k"]) == \
        ("unet-complete", "first", 1)
    # Rule step 9 in the same folder: pseudo's candidate is kept, and the pair's decision has its own file.
    first = (tmp_path / "selection.json").read_text()
    ckpt = tmp_path / "checkpoints" / "pseudo-unet-without-HipXRay.pt"
    before = ckpt.stat().st_mtime_ns
    run_selection("A", "unet", tmp_path, fraction=0.001, families=("pseudo", "pseudo-long"), left_out=["HipXRay"],
                  medscribble=str(MEDSCRIBBLE), device="cpu", threads=1, workers=0, n_sessions=1, progress=False)
    assert ckpt.stat().st_mtime_ns == before and (tmp_path / "selection.json").read_text() == first
    pair = json.loads((tmp_path / "selection-pseudo-vs-pseudo-long.json").read_text())
    assert [(c["family"], c["scale"]) for c in pair["candidates"]] == [("pseudo", 1.0), ("pseudo-long", 2.0)]
    assert "--steps 7 --batch-size 16 --n-pairs 16 " in pair["candidates"][1]["command"]
    assert "pseudo-long's steps and pool x2" in (tmp_path / "selection-pseudo-vs-pseudo-long.md").read_text()


def _record(fold: str, chosen: str, scores: dict, row: str = "complete") -> dict:
    return {"fold": fold, "row": row, "complete_run": True, "fraction": 0.25, "n_sessions": None,
            "decision": {"chosen": chosen, "scores": scores}}


def test_the_shipped_family_is_the_folds_choice_or_the_higher_summed_score():
    agree = [_record("A", "ssn", {"heads": 0.5, "ssn": 0.6}), _record("B", "ssn", {"heads": 0.7, "ssn": 0.6})]
    assert shipped_family(agree) == "ssn"  # both folds chose it, whatever the sums
    differ = [_record("A", "ssn", {"heads": 0.50, "ssn": 0.60}), _record("B", "heads", {"heads": 0.75, "ssn": 0.60})]
    assert shipped_family(differ) == "heads"  # 1.25 against 1.20
    tie = [_record("A", "ssn", {"heads": 0.5, "ssn": 0.6}), _record("B", "heads", {"heads": 0.6, "ssn": 0.5})]
    assert shipped_family(tie) == "heads"
    with pytest.raises(ValueError, match="^selection: expected the decisions of one row"):
        shipped_family([_record("A", "ssn", {}), _record("B", "ssn", {}, row="partial")])


def test_cli_ship_needs_both_folds_complete_selections(capsys, tmp_path):
    for fold in ("A", "B"):
        (tmp_path / fold).mkdir()
        record = _record(fold, "heads", {"heads": 0.5, "ssn": 0.4})
        if fold == "B":
            record["complete_run"] = False
        (tmp_path / fold / "selection.json").write_text(json.dumps(record))
    argv = ["--row", "complete", "--ship", f"{tmp_path / 'A'},{tmp_path / 'B'}", "--final", str(tmp_path / "ship" / "k.pt")]
    assert main(argv) == 2
    assert "is a partial run" in capsys.readouterr().err
    assert main(["--row", "complete", "--ship", str(tmp_path / "A"), "--final", str(tmp_path / "ship")]) == 2
    assert "ship: expected one selection per fold (A, B), got A" in capsys.readouterr().err
    assert main(["--row", "complete", "--ship", str(tmp_path / "A")]) == 2
    assert "final: --ship needs --final PT" in capsys.readouterr().err
    assert main(["--row", "complete", "--out", str(tmp_path)]) == 2
    assert "fold: --fold is required" in capsys.readouterr().err
    # A smoke test (capped sessions, another fraction) is not a decision either.
    for change in ({"n_sessions": 2}, {"fraction": 0.001}):
        record = {**_record("B", "heads", {"heads": 0.5, "ssn": 0.4}), **change}
        (tmp_path / "B" / "selection.json").write_text(json.dumps(record))
        assert main(argv) == 2
        assert "ship: " in (err := capsys.readouterr().err) and "smoke test" in err
    assert not (tmp_path / "ship").exists()


def test_cli_final_is_checked_before_anything_trains(capsys, tmp_path):
    base = ["--fold", "A", "--row", "unet", "--out", str(tmp_path / "sel"), "--medscribble", str(MEDSCRIBBLE)]
    assert main([*base, "--final", str(tmp_path / "unet")]) == 2
    assert "final: expected a .pt file" in capsys.readouterr().err
    assert main([*base, "--final", str(tmp_path / "unet.pt"), "--n-sessions", "1"]) == 2
    assert "final: trains on a decision only" in capsys.readouterr().err
    assert not (tmp_path / "sel").exists()


def test_the_rule_compares_two_families():
    with pytest.raises(ValueError, match="^families: the rule compares two, got heads"):
        candidates(("ACDC", "BTCV"), "complete", families=("heads",))


@pytest.mark.skipif(not MEDSCRIBBLE.is_dir(), reason="MedScribble data not found")
def test_train_final_trains_the_chosen_recipe_on_every_given_task_and_keeps_it(tmp_path):
    ckpt = train_final("unet", "real", ["ACDC", "BTCV"], tmp_path / "A" / "unet.pt", str(MEDSCRIBBLE), "cpu", 1,
                       fraction=0.001)
    assert ckpt == tmp_path / "A" / "unet.pt" and ckpt.with_suffix(".log").is_file()
    command = json.loads(ckpt.with_suffix(".json").read_text())["command"]
    assert "--train-tasks ACDC,BTCV" in command and "--pseudo-fraction 0.0" in command
    assert "--score-steps" not in command  # the U-Net has no score head
    before = ckpt.stat().st_mtime_ns
    assert train_final("unet", "real", ["ACDC", "BTCV"], ckpt, str(MEDSCRIBBLE), "cpu", 1, fraction=0.001) == ckpt
    assert ckpt.stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="^family: 'heads' is not one of row unet's"):
        train_final("unet", "heads", ["ACDC"], tmp_path / "B" / "unet.pt", str(MEDSCRIBBLE))
    with pytest.raises(ValueError, match="^final: expected a .pt file"):
        train_final("unet", "real", ["ACDC"], tmp_path / "B", str(MEDSCRIBBLE))


def test_a_scored_familys_final_recipe_ends_with_the_score_stage(tmp_path, monkeypatch):
    import simulator.selection as sel

    seen = []
    monkeypatch.setattr(sel, "_train", lambda c, args, log: seen.append(args))
    train_final("complete", "heads", ["ACDC", "BTCV"], tmp_path / "k.pt", "data", "cpu", 1)
    args = seen[0]
    assert args[args.index("--score-steps") + 1] == str(sel.FINAL_SCORE_STEPS)
    assert args[args.index("--steps") + 1] == str(FULL_RECIPE["steps"]) and args[-2:] == ["--out", str(tmp_path / "k.pt")]
    # Then the rule's step 8: the ranked score head is fitted to that network, into k-ranked.pt.
    refit = seen[1]
    assert refit[:2] == ["--refit-score", str(tmp_path / "k.pt")]
    assert refit[refit.index("--score-head") + 1] == sel.RANKED_SCORE["score_head"]
    assert refit[refit.index("--score-steps") + 1] == str(sel.RANKED_SCORE["score_steps"])
    assert refit[-2:] == ["--out", str(tmp_path / "k-ranked.pt")] and len(seen) == 2


def test_train_final_keeps_a_ranked_checkpoint_made_by_the_same_commands(tmp_path, monkeypatch):
    import shlex

    import simulator.selection as sel

    seen = []
    monkeypatch.setattr(sel, "_train", lambda c, args, log: seen.append(args))
    got = train_final("partial", "ssn", ["ACDC"], tmp_path / "k.pt", "data", "cpu", 1)
    assert got == tmp_path / "k-ranked.pt" and len(seen) == 2
    # Records saying the same commands made both files: nothing is trained again.
    for args in seen:
        out = Path(args[args.index("--out") + 1])
        out.write_bytes(b"x")
        out.with_suffix(".json").write_text(json.dumps({"command": "probseg-train " + shlex.join(args)}))
    seen.clear()
    assert train_final("partial", "ssn", ["ACDC"], tmp_path / "k.pt", "data", "cpu", 1) == got and not seen


def test_pseudo_long_spends_twice_the_steps_and_pool_of_pseudo():
    fold = ("ACDC", "BTCV", "HipXRay", "STARE")
    got = candidates(fold, "unet", families=("pseudo", "pseudo-long"), left_out=["STARE"])
    assert [(c.family, c.config, c.pseudo_fraction, c.scale) for c in got] == [
        ("pseudo", "medical-unet-complete", 0.5, 1.0), ("pseudo-long", "medical-unet-complete", 0.5, 2.0)]
    value = lambda args, flag: args[args.index(flag) + 1]  # noqa: E731
    quarter = [train_command(c, Path("x.pt"), 0.25, "data", "auto", 1) for c in got]
    assert [(value(a, "--steps"), value(a, "--n-pairs")) for a in quarter] == [("875", "2000"), ("1750", "4000")]
    full = train_command(got[1], Path("x.pt"), 1.0, "data", "auto", 2)
    assert (value(full, "--steps"), value(full, "--n-pairs")) == ("7000", "16000")
    # The default pair of the unet row is unchanged, so step 6's candidates keep their commands.
    assert [c.family for c in candidates(fold, "unet", left_out=["STARE"])] == ["pseudo", "real"]
    # A tie within one standard error goes to the shorter schedule.
    x = {"X": np.array([0.5, 0.6])}
    tie = choose_family({"pseudo-long": x, "pseudo": x}, {"pseudo-long": 0.0, "pseudo": 0.0})
    assert (tie.chosen, tie.reason) == ("pseudo", "preference")


def test_a_second_pair_keeps_its_decision_beside_the_default_pairs():
    assert decision_name("unet") == decision_name("unet", ["real", "pseudo"]) == "selection.json"
    assert decision_name("unet", ["pseudo-long", "pseudo"]) == "selection-pseudo-vs-pseudo-long.json"
    assert decision_name("complete", ["ssn", "heads"]) == "selection.json"


def test_cli_ship_reads_the_named_pairs_decisions(capsys, tmp_path):
    for fold in ("A", "B"):
        (tmp_path / fold).mkdir()
        (tmp_path / fold / "selection.json").write_text(json.dumps(_record(fold, "pseudo", {"pseudo": 0.6, "real": 0.5},
                                                                           row="unet")))
    argv = ["--row", "unet", "--ship", f"{tmp_path / 'A'},{tmp_path / 'B'}", "--final", str(tmp_path / "ship" / "u.pt"),
            "--families", "pseudo,pseudo-long", "--medscribble", str(tmp_path)]
    assert main(argv) == 2  # only the default pair's decisions are there
    assert "selection-pseudo-vs-pseudo-long.json not found" in capsys.readouterr().err
    assert main([*argv[:-4], "--families", "pseudo,heads", "--medscribble", str(tmp_path)]) == 2
    assert "families: unknown family 'heads' for row unet" in capsys.readouterr().err
    assert not (tmp_path / "ship").exists()
