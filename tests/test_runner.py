"""The runner: tables, determinism across worker counts, resume, lost chunks, refused outputs, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from simulator.cli import main as simulate_main
from simulator.runner import TIMING_COLUMNS, RunSettings, run
from simulator.session import SessionConfig

SESSION_COLUMNS = [
    "noc_80", "noc_85", "noc_90", "reached_80", "reached_85", "reached_90", "noi_80", "noi_85", "noi_90",
    "dice_at_clicks_3", "dice_at_clicks_5", "dice_at_clicks_10", "dice_at_iter_1", "dice_at_iter_5",
    "dice_at_iter_10", "dice_at_iter_20", "dice_auc", "final_dice", "final_hd95", "effort_s",
    "image", "target", "start", "seed",
]


def _settings(ckpt, **kw) -> RunSettings:
    base = dict(method="probseg", checkpoint=str(ckpt), policy="best-of-k", k=4, n_sessions=6, max_iters=3,
                chunk_size=2, seed=3)
    base.update(kw)
    return RunSettings.from_dict(base)


def _drop_timing(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=[c for c in TIMING_COLUMNS if c in df.columns])


def test_run_writes_tables_and_summary(tiny_checkpoint, tmp_path):
    steps, sessions, summary = run(_settings(tiny_checkpoint), out=tmp_path / "r", workers=0, progress=False)
    out = tmp_path / "r"
    for name in ("steps.parquet", "sessions.parquet", "summary.json", "config.json"):
        assert (out / name).is_file()
    assert len(sessions) == 6 and sorted(sessions["session"]) == list(range(6))
    assert len(steps) == 6 * 3
    for col in SESSION_COLUMNS:
        assert col in sessions.columns, col
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["n_sessions"] == 6 and "sessions_per_second" in on_disk and "wall_seconds" in on_disk
    assert on_disk["noc_90"] == pytest.approx(sessions["noc_90"].mean())
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["k"] == 4 and "versions" in config and "git_commit" in config
    pd.testing.assert_frame_equal(_drop_timing(pd.read_parquet(out / "sessions.parquet")), _drop_timing(sessions))


def test_same_tables_for_0_1_2_workers(tiny_checkpoint, tmp_path):
    tables = []
    for workers in (0, 1, 2):
        _, sessions, _ = run(_settings(tiny_checkpoint), out=tmp_path / f"w{workers}", workers=workers, progress=False)
        tables.append(_drop_timing(sessions).sort_values("session").reset_index(drop=True))
    pd.testing.assert_frame_equal(tables[0], tables[1])
    pd.testing.assert_frame_equal(tables[0], tables[2])


def test_other_seed_changes_targets(tiny_checkpoint, tmp_path):
    _, a, _ = run(_settings(tiny_checkpoint, n_sessions=12, chunk_size=12), out=tmp_path / "a", workers=0, progress=False)
    _, b, _ = run(_settings(tiny_checkpoint, n_sessions=12, chunk_size=12, seed=4), out=tmp_path / "b", workers=0,
                  progress=False)
    assert list(a["image"]) == list(b["image"])  # the held-out images are fixed
    assert list(a["target"]) != list(b["target"])  # the seed draws the targets


def test_resume_skips_finished_chunks_and_ends_with_same_tables(tiny_checkpoint, tmp_path):
    out = tmp_path / "r"
    _, first, _ = run(_settings(tiny_checkpoint), out=out, workers=0, progress=False)
    chunk_files = sorted((out / "chunks").glob("sessions-*.parquet"))
    assert len(chunk_files) == 3
    kept = chunk_files[0].stat().st_mtime_ns
    chunk_files[1].unlink()  # as if the run died before this chunk was saved
    time.sleep(0.01)
    _, second, summary = run(_settings(tiny_checkpoint), out=out, workers=0, progress=False)
    assert chunk_files[0].stat().st_mtime_ns == kept  # finished chunks are not rerun
    assert summary["n_sessions"] == 6
    pd.testing.assert_frame_equal(_drop_timing(first), _drop_timing(second))


def test_out_with_other_configuration_is_refused(tiny_checkpoint, tmp_path):
    out = tmp_path / "r"
    run(_settings(tiny_checkpoint), out=out, workers=0, progress=False)
    with pytest.raises(ValueError, match="out: .*another configuration.*k"):
        run(_settings(tiny_checkpoint, k=2), out=out, workers=0, progress=False)


def test_out_made_with_other_weights_of_the_same_checkpoint_is_refused(tmp_path):
    from probseg.train import TrainSettings, train

    ckpt = tmp_path / "model.pt"
    tiny = dict(config="paper", steps=2, batch_size=4, n_pairs=8, n_train_images=10, eval_images=0, threads=1)
    train(TrainSettings(**tiny), ckpt, progress=False)
    out = tmp_path / "r"
    run(_settings(ckpt), out=out, workers=0, progress=False)
    config = json.loads((out / "config.json").read_text())
    assert len(config["method"]["checkpoint_sha256"]) == 64
    run(_settings(ckpt), out=out, workers=0, progress=False)  # same weights: resumes
    train(TrainSettings(**{**tiny, "seed": 1}), ckpt, progress=False)  # retrained under the same name
    with pytest.raises(ValueError, match="out: .*other weights of model.pt"):
        run(_settings(ckpt), out=out, workers=0, progress=False)


def test_out_made_with_another_tuned_walker_is_refused(tmp_path, monkeypatch):
    from simulator import baselines

    walker = dict(method="random-walker", policy="first", k=1, n_sessions=2, max_iters=2, chunk_size=2, seed=3)
    out = tmp_path / "r"
    run(RunSettings.from_dict(walker), out=out, workers=0, progress=False)
    config = json.loads((out / "config.json").read_text())
    assert config["method"]["rw_beta"] == baselines.tuned_beta("random-walker")
    assert config["method"]["rw_mode"] == baselines.tuned_mode("random-walker")
    run(RunSettings.from_dict(walker), out=out, workers=0, progress=False)  # same tuned values: resumes
    table = json.loads(baselines.TUNED_PATH.read_text())
    before = table["disks"]["random-walker"]["mode"]
    after = "cg_j" if before != "cg_j" else "bf"
    table["disks"]["random-walker"]["mode"] = after  # a retune picked another solver, same beta
    retuned = tmp_path / "tuned.json"
    retuned.write_text(json.dumps(table))
    monkeypatch.setattr(baselines, "TUNED_PATH", retuned)
    with pytest.raises(ValueError, match=f"out: .*another random walker \\(rw_mode '{before}', now '{after}'"):
        run(RunSettings.from_dict(walker), out=out, workers=0, progress=False)


def test_worker_death_is_retried_and_no_session_lost_or_doubled(tiny_checkpoint, tmp_path):
    marker = tmp_path / "crashed-once"
    _, sessions, _ = run(_settings(tiny_checkpoint), out=tmp_path / "r", workers=1, progress=False,
                         _crash_marker=str(marker))
    assert marker.exists()  # a worker did die
    assert sorted(sessions["session"]) == list(range(6))


@pytest.mark.parametrize(
    "kw, field",
    [
        ({"policy": "best-of-all"}, "policy"),
        ({"method": "magic"}, "method"),
        ({"correction_rule": "nearest"}, "correction_rule"),
        ({"dataset": "imagenet"}, "dataset"),
        ({"k": 0}, "k"),
        ({"start": "boxes"}, "start"),
        ({"n_sessions": 0}, "n_sessions"),
        ({"start": "human"}, "start"),  # disks carry no human scribbles
    ],
)
def test_bad_settings_raise_naming_the_setting(tiny_checkpoint, kw, field):
    with pytest.raises(ValueError, match=field):
        _settings(tiny_checkpoint, **kw).validate()


def _one_line_exit_2(argv, capsys):
    code = simulate_main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("probseg-simulate: error:"), err
    return err[0]


@pytest.mark.parametrize(
    "argv, word",
    [
        (["--policy", "best"], "policy"),
        (["--method", "sam"], "method"),
        (["--correction-rule", "x"], "correction_rule"),
        (["--dataset", "x"], "dataset"),
        (["--k", "0"], "k"),
        (["--checkpoint", "/no/such/file.pt"], "checkpoint"),
        (["--k", "two"], "--k"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(argv, word, capsys, tmp_path):
    line = _one_line_exit_2(argv + ["--out", str(tmp_path / "o"), "--n-sessions", "2"], capsys)
    assert word in line


def test_cli_corrupt_checkpoint_and_unwritable_out(tiny_checkpoint, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert "checkpoint" in _one_line_exit_2(["--checkpoint", str(bad), "--out", str(tmp_path / "o")], capsys)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    line = _one_line_exit_2(["--checkpoint", str(tiny_checkpoint), "--out", str(blocker / "sub")], capsys)
    assert "out" in line


def test_cli_unreachable_address_fails_fast(tiny_checkpoint, tmp_path, capsys):
    t0 = time.perf_counter()
    line = _one_line_exit_2(["--checkpoint", str(tiny_checkpoint), "--address", "127.0.0.1:1",
                             "--out", str(tmp_path / "o")], capsys)
    assert "address" in line
    assert time.perf_counter() - t0 < 30  # a hang would be the bug; generous for a loaded CI machine


def test_cli_json_last_line_is_the_summary(tiny_checkpoint, tmp_path, capsys):
    code = simulate_main(["--checkpoint", str(tiny_checkpoint), "--n-sessions", "3", "--max-iters", "2", "--k", "2",
                          "--workers", "0", "--out", str(tmp_path / "o"), "--json", "--no-progress"])
    assert code == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads(last)
    assert summary["n_sessions"] == 3 and summary["policy"] == "best-of-k"
    on_disk = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert set(summary) == set(on_disk) and summary["noc_90"] == on_disk["noc_90"]


def test_console_script_help():
    res = subprocess.run([sys.executable, "-m", "simulator.cli", "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "--policy" in res.stdout and "best-of-k" in res.stdout


def test_run_from_python_matches_files(tiny_checkpoint, tmp_path):
    steps, sessions, _ = run(_settings(tiny_checkpoint, n_sessions=2), out=tmp_path / "r", workers=0, progress=False)
    assert set(np.unique(steps["session"])) == {0, 1}
    assert (steps.groupby("session")["iteration"].max() == 3).all()


def _strict_json(text: str):
    """Parse JSON as a parser outside Python would: NaN, Infinity and -Infinity are errors."""

    def refuse(constant: str):
        raise ValueError(f"not valid JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_summary_is_strict_json_also_for_a_resumed_run(tmp_path):
    out = tmp_path / "r"
    settings = RunSettings(n_sessions=2, session=SessionConfig(max_iters=2))
    _, _, first = run(settings, out=out, workers=0, progress=False)
    on_disk = _strict_json((out / "summary.json").read_text())
    assert on_disk["n_sessions_run"] == 2 and on_disk["sessions_per_second"] > 0
    assert on_disk["dice_at_iter_20"] is None  # a 2-iteration run has no value at iteration 20
    _, _, second = run(settings, out=out, workers=0, progress=False)  # every chunk done: nothing runs
    on_disk = _strict_json((out / "summary.json").read_text())
    assert on_disk["n_sessions"] == 2 and on_disk["n_sessions_run"] == 0
    assert on_disk["sessions_per_second"] is None and on_disk["wall_seconds"] is None  # nothing measured
    assert {k: v for k, v in second.items() if k != "out"} == on_disk
    assert on_disk["noc_90"] == first["noc_90"]


def test_cli_json_is_strict_json_also_for_a_resumed_run(tmp_path, capsys):
    argv = ["--n-sessions", "2", "--max-iters", "2", "--workers", "0", "--out", str(tmp_path / "o"), "--json",
            "--no-progress"]
    for n_run in (2, 0):
        assert simulate_main(argv) == 0
        printed = capsys.readouterr().out.strip().splitlines()
        summary = _strict_json(printed[-1])
        assert ("resumed: every session was already done" in printed[-2]) == (n_run == 0)
        assert summary["n_sessions_run"] == n_run and summary["dice_at_iter_20"] is None
    assert summary["sessions_per_second"] is None and summary["wall_seconds"] is None


def _help_entries(help_text: str) -> dict[str, str]:
    """Each option of a ``--help`` text and its help, wrapped lines joined: ``{"--k": "K candidates ..."}``."""
    entries: dict[str, str] = {}
    current = None
    for line in help_text.splitlines():
        if line.startswith("  -"):  # an option's first line: its flags, then its help when they are short
            flags, _, rest = line.strip().partition("  ")
            current = flags.split(",")[0].split()[0]
            entries[current] = rest.strip()
        elif current is not None and line.startswith(" " * 4) and line.strip():
            entries[current] = f"{entries[current]} {line.strip()}".strip()
        else:  # a blank line or a group title ends the entry
            current = None
    return entries


def test_simulate_help_states_each_default_once_and_helps_every_option(capsys):
    with pytest.raises(SystemExit) as info:
        simulate_main(["--help"])
    assert info.value.code == 0
    entries = _help_entries(capsys.readouterr().out)
    assert {"--dataset", "--max-iters", "--corrections-per-iter", "--json"} <= set(entries)
    for option, text in entries.items():
        assert text.count("(default") <= 1, (option, text)
        assert text and not text.startswith("(default"), f"{option} has no help text: {text!r}"
    assert "(default: 20)" in entries["--max-iters"] and "(default: 1)" in entries["--corrections-per-iter"]
