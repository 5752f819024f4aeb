"""simulator.figures: one colour per method family, panels of at most MAX_LINES arms with the reference
in each, legends outside the axes, and the K sweep's line names."""

from __future__ import annotations

import io
import types

import numpy as np

from hand_arms import hand_arm
from simulator.figures import (
    MAX_LINES,
    Palette,
    _curve_panels,
    _k_sweeps,
    _model_name,
    arm_panels,
    method_family,
    plot_dice_vs_clicks,
    plot_noc90,
    series_name,
)


def _arm(base: str, method: str, variant: str = "default", checkpoint: str | None = None, policy: str = "first",
         dice: float = 0.5):
    label = base if variant == "default" else f"{base} | {variant}"
    steps = [{"dice": dice, "clicks_so_far": 2}, {"dice": min(1.0, dice + 0.2), "clicks_so_far": 3}]
    return hand_arm([{"session": s, "image": f"img{s}", "steps": steps} for s in range(3)], label=label,
                    settings={"method": method, "policy": policy, "checkpoint": checkpoint, "start": "clicks"},
                    variant=variant, base=base)


# The medscribble study's shape: 7 arms under 3 starts (21 arms).
_BASES = [("probseg best-of-8", "probseg", "best-of-k"), ("probseg random-of-8", "probseg", "random-of-k"),
          ("probseg-complete best-of-8", "probseg-complete", "best-of-k"), ("probseg-mean", "probseg-mean", "first"),
          ("unet-complete", "unet-complete", "first"), ("random-walker", "random-walker", "first"),
          ("random-walker-partial", "random-walker-partial", "first")]


def _medscribble_like():
    return [_arm(b, m, v, policy=p, dice=0.1 * i) for i, (b, m, p) in enumerate(_BASES)
            for v in ("human", "scribbles", "clicks")]


def _noisy_like():
    """14 arms of one variant: 5 choosing arms of each of two models, 4 single-proposal arms."""
    arms = [_arm(f"{model} eps={e}", "probseg", checkpoint=ckpt, policy="noisy-best-of-k")
            for model, ckpt in (("probseg", None), ("probseg-paper", "disks-paper")) for e in (0.0, 0.1, 0.3, 0.5, 1.0)]
    return arms + [_arm(m, m) for m in ("probseg-mean", "unet-complete", "random-walker", "random-walker-partial")]


def test_palette_gives_a_method_one_colour_and_its_arms_distinct_styles():
    arms = _medscribble_like()
    pal = Palette(arms)
    by_label = {a.label: a for a in arms}
    # The same arm under every start: the same line.
    assert pal.line(by_label["unet-complete | human"]) == pal.line(by_label["unet-complete | clicks"])
    # Two arms of one method share its colour, and differ in their line.
    best, rand = by_label["probseg best-of-8 | human"], by_label["probseg random-of-8 | human"]
    assert pal.color(best) == pal.color(rand) and pal.line(best) != pal.line(rand)
    assert pal.line(best)["color"] == pal.color(best)  # the first series of a family: its full colour
    colors = {method_family(a): pal.color(a) for a in arms}
    assert len(set(colors.values())) == len(colors) == 6
    assert method_family(_arm("x", "probseg", checkpoint="checkpoints/disks-paper-seed2.pt")) == "probseg (disks-paper)"
    assert series_name(best) == "probseg best-of-8"


def test_panels_by_start_hold_at_most_max_lines():
    panels = arm_panels(_medscribble_like(), references={"unet-complete | human"})
    assert [t for t, _ in panels] == ["variant: human", "variant: scribbles", "variant: clicks"]
    assert all(len(m) == 7 for _, m in panels)


def test_panels_cut_by_method_family_keep_the_reference_in_each():
    arms = _noisy_like()
    panels = arm_panels(arms, references={"unet-complete"})
    assert all(len(m) <= MAX_LINES for _, m in panels)
    assert all(any(a.label == "unet-complete" for a in m) for _, m in panels)
    assert {a.label for _, m in panels for a in m} == {a.label for a in arms}  # every arm drawn
    assert [t for t, _ in panels] == ["probseg", "probseg (disks-paper)", "other arms"]


def test_drawn_panels_have_few_lines_and_the_legend_covers_no_axes():
    arms = _medscribble_like()
    weights = [np.ones((20, 3))] * len(arms)
    fig = _curve_panels(arms, np.arange(5), lambda a: np.tile(a.steps["dice"].to_numpy()[[0, 1, 1, 1, 1]], (3, 1)),
                        weights, "t", "clicks", Palette(arms), {"unet-complete | human"})
    fig.savefig(io.BytesIO(), format="png")  # lays the figure out
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    assert len(axes) == 3 and all(len(ax.get_lines()) <= MAX_LINES for ax in axes)
    legend = fig.legends[0].get_window_extent()
    assert not any(legend.overlaps(ax.get_window_extent()) for ax in axes)
    assert len(fig.legends[0].get_texts()) == len(_BASES)  # one entry per arm, not per arm and start


def test_plots_write_pngs(tmp_path):
    arms = _noisy_like()
    p = plot_dice_vs_clicks(arms, tmp_path / "c.png", n_boot=20, references={"unet-complete"})
    assert p.stat().st_size > 0
    import pandas as pd

    summary = pd.DataFrame({"label": [a.label for a in arms], "noc_90": np.arange(len(arms), dtype=float),
                            "noc_90_lo": 0.0, "noc_90_hi": 20.0})
    assert plot_noc90(summary, tmp_path / "n.png", arms=arms).stat().st_size > 0
    assert plot_noc90(summary, tmp_path / "n2.png").stat().st_size > 0  # without arms: one panel


def test_k_sweep_lines_are_named_by_model_and_seed_never_by_path():
    assert _model_name("disks") == "disks"
    assert _model_name("/x/results/disks-k-sweep/checkpoints/disks-paper-seed12.pt") == "disks-paper"
    assert _model_name(None) is None

    def arm(method: str, ckpt: str, seed: int, k: int) -> types.SimpleNamespace:
        return types.SimpleNamespace(method=method, variant="default", train_seed=seed, kind="partial",
                                     settings={"method": method, "policy": "best-of-k", "k": k, "checkpoint": ckpt})

    arms = [arm(m, c, seed, k) for m, c0 in (("probseg", "disks"), ("probseg", "disks-paper"))
            for seed in (0, 1) for k in (1, 2)
            for c in [c0 if seed == 0 else f"/abs/path/checkpoints/{c0}-seed{seed}.pt"]]
    labels = [label for label, _ in _k_sweeps(arms)]
    assert labels == ["probseg / best-of-k | disks | seed 0", "probseg / best-of-k | disks | seed 1",
                      "probseg / best-of-k | disks-paper | seed 0", "probseg / best-of-k | disks-paper | seed 1"]
