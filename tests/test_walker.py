"""The random walker: a converged solve read as the likelier label, checked against scikit-image; and
its tuning (the one-standard-error rule, the per-fold entries)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from skimage.segmentation import random_walker

from probseg.data import DiskSpec, make_disk_image
from simulator.baselines import (
    MEDSCRIBBLE_FOLDS, _default_entry, one_se_choice, pick_solver, tune_random_walker_beta, walker_entry,
)
from simulator.methods import RandomWalkerMethod, _normalise01, walker_probabilities
from simulator.metrics import dice


def _seeded(image: np.ndarray, fg: np.ndarray, bg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(labels, mask, seg)`` for foreground seeds ``fg`` and background seeds ``bg`` (bool (H, W))."""
    labels = np.zeros(image.shape, dtype=np.int32)
    labels[fg], labels[bg] = 1, 2
    return labels, fg | bg, fg.copy()


def test_a_capped_solve_read_at_one_half_misses_a_disk_the_converged_walker_finds():
    # A 256x256 disk on a faintly noisy background, one seed pixel in each: at beta 30,000 scikit-image's
    # multigrid CG stops after 30 iterations far from the answer, and its foreground map read as
    # "p_fg > 0.5" (the walker before this fix) recovers under 60% of the disk in Dice.
    n = 256
    yy, xx = np.mgrid[:n, :n]
    disk = (yy - n / 2) ** 2 + (xx - n / 2) ** 2 < (n / 4) ** 2
    image = disk * 0.5 + 0.25 + np.random.default_rng(0).normal(0.0, 0.02, disk.shape)
    fg, bg = np.zeros_like(disk), np.zeros_like(disk)
    fg[n // 2, n // 2] = bg[2, 2] = True
    labels, mask, seg = _seeded(image, fg, bg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-image warns that CG did not converge: the point here
        capped = random_walker(_normalise01(image), labels, beta=30000.0, mode="cg_mg", return_full_prob=True)
    assert dice(capped[0] > 0.5, disk) < 0.6
    _, segs, _ = RandomWalkerMethod(beta=30000.0).propose(image, mask, seg, 1, np.random.default_rng(0))
    assert dice(segs[0], disk) > 0.99


@pytest.mark.parametrize("case", range(4))
def test_the_walker_labels_as_scikit_images_exact_walker_on_small_images(case):
    rng = np.random.default_rng([7, case])
    h, w = 20 + 3 * case, 24
    image = rng.random((h, w)) * 0.3 + np.repeat(rng.random((h // 4 + 1, w // 4)), 4, axis=0)[:h].repeat(4, axis=1)
    fg, bg = rng.random((2, h, w)) < 0.03
    bg &= ~fg
    fg[0, 0], bg[-1, -1] = True, True
    labels, mask, seg = _seeded(image, fg, bg)
    beta = (130.0, 2000.0, 30000.0, 128000.0)[case]
    full = random_walker(_normalise01(image), labels, beta=beta, mode="bf", return_full_prob=True)
    for partial in (False, True):
        rw = RandomWalkerMethod(beta=beta, partial=partial)
        masks, segs, _ = rw.propose(image, mask, seg, 1, rng)
        expected = full.argmax(axis=0) == 0
        decided = masks[0]
        np.testing.assert_array_equal(segs[0][decided], expected[decided])
        share = rw.foreground_probability(image, mask, seg)
        np.testing.assert_allclose(share[~mask], full[0][~mask], atol=1e-6)  # exact solve: p_fg + p_bg = 1


def test_the_share_is_the_larger_label_even_when_a_solve_falls_short():
    labels = np.zeros((8, 8), dtype=np.int32)
    labels[0, 0], labels[7, 7] = 1, 2
    image = np.random.default_rng(3).random((8, 8))
    share = walker_probabilities(image, labels, 130.0, mode="cg_j", tol=0.5)  # a deliberately loose solve
    assert ((share >= 0) & (share <= 1)).all()
    full = random_walker(_normalise01(image), labels, beta=130.0, mode="cg_j", tol=0.5, return_full_prob=True)
    np.testing.assert_array_equal(share > 0.5, full[0] > full[1])


def test_a_constant_image_gives_the_walk_with_equal_weights():
    # Equal weights along a strip with seed columns at both ends: the probability falls linearly.
    image = np.full((5, 9), 0.3)
    fg, bg = np.zeros((5, 9), bool), np.zeros((5, 9), bool)
    fg[:, 0], bg[:, 8] = True, True
    _, mask, seg = _seeded(image, fg, bg)
    share = RandomWalkerMethod(beta=1000.0).foreground_probability(image, mask, seg)
    np.testing.assert_allclose(share, np.tile(1 - np.arange(9) / 8, (5, 1)), atol=1e-6)


def test_one_se_rule_keeps_the_simplest_setting_within_a_standard_error_of_the_difference():
    rng = np.random.default_rng(0)
    hardness = rng.normal(0, 0.2, 25)  # images differ far more than the settings do
    noise = rng.normal(0, 0.02, (3, 25))
    noise -= noise.mean(axis=1, keepdims=True)  # so the means differ by exactly what is written
    scores = np.array([[0.50], [0.798], [0.80]]) + hardness + noise  # the last is best, by less than a SE
    chosen, means, se = one_se_choice(scores, seed=1)
    np.testing.assert_allclose(means, scores.mean(axis=1))
    assert se[2] == 0  # the best's difference from itself
    # The SE of a paired difference of means of 25 images: the differences' spread over 5.
    np.testing.assert_allclose(se[:2], (scores[:2] - scores[2]).std(axis=1, ddof=1) / 5, rtol=0.15)
    assert chosen == 1  # 0.798 is within one SE (about 0.006) of 0.80; 0.50 is not
    # Unpaired, the error of a mean here is about 0.04: the images' hardness, not the settings.
    assert se[1] < scores[2].std(ddof=1) / 5 / 4
    scores[1] -= 0.05  # now 0.748: outside
    assert one_se_choice(scores, seed=1)[0] == 2
    with pytest.raises(ValueError, match="per_image"):
        one_se_choice(np.zeros((0, 3)))


def test_pick_solver_prefers_the_first_solver_within_a_standard_error():
    from simulator.baselines import WalkerTuning

    rng = np.random.default_rng(2)
    hardness = rng.normal(0.5, 0.2, 20)

    def tuning(rows: dict[float, float]) -> WalkerTuning:
        arr = {b: hardness + v + rng.normal(0, 0.02, 20) for b, v in rows.items()}
        return WalkerTuning(chosen=0.0, best=0.0, means={b: float(v.mean()) for b, v in arr.items()}, se={}, per_image=arr)

    bf = tuning({10.0: 0.0, 100.0: 0.1})
    assert pick_solver({"bf": bf, "cg_j": tuning({10.0: 0.102})}) == ("bf", 100.0)  # within a SE: the first solver
    assert pick_solver({"bf": bf, "cg_j": tuning({10.0: 0.2})}) == ("cg_j", 10.0)
    with pytest.raises(ValueError, match="tunings"):
        pick_solver({})


def test_tune_random_walker_beta_scores_every_beta_and_is_deterministic():
    disks = [make_disk_image(np.random.default_rng([12, i]), DiskSpec(n_disks=2)) for i in range(3)]
    images, targets = [d.image for d in disks], [d.disks[0] for d in disks]
    result = tune_random_walker_beta(images, targets, [5000.0, 1.0, 130.0], n_corrections=2)
    assert list(result.means) == [1.0, 130.0, 5000.0]  # simplest first
    assert all(0 <= v <= 1 for v in result.means.values())
    assert result.means[result.best] == max(result.means.values())
    assert result.chosen <= result.best
    assert result.means[result.chosen] >= result.means[result.best] - result.se[result.best]
    again = tune_random_walker_beta(images, targets, [1.0, 130.0, 5000.0], n_corrections=2)
    assert (again.chosen, again.means, again.se) == (result.chosen, result.means, result.se)
    # Two sessions of one image count as one image in the bootstrap.
    grouped = tune_random_walker_beta(images[:2], targets[:2], [130.0], n_corrections=0, groups=[0, 0])
    assert grouped.per_image[130.0].shape == (1,)
    with pytest.raises(ValueError, match="images"):
        tune_random_walker_beta(images, targets[:1], [1.0])
    with pytest.raises(ValueError, match="human_scribbles"):
        tune_random_walker_beta(images, targets, [1.0], start="human")


def test_each_fold_takes_the_walker_tuned_on_its_own_training_tasks():
    a, b = MEDSCRIBBLE_FOLDS["A"], MEDSCRIBBLE_FOLDS["B"]
    assert not set(a) & set(b)
    assert walker_entry(f"medscribble:/d?tasks={','.join(b)}") == "medical-A"  # fold A's unseen tasks
    assert walker_entry("medscribble:/d?tasks=ACDC") == "medical-B"
    assert walker_entry("medscribble:/d?tasks=ACDC,WBC") == "medical"  # holds a training task of each fold
    assert walker_entry("medscribble:/d") == "medical"
    assert walker_entry("disks") == "disks"
    assert _default_entry(f"medscribble:/d?tasks={','.join(reversed(a))}") == "medical-A"
    assert _default_entry("medscribble:/d?tasks=ACDC") == "medical"


def test_pooling_two_fold_entries_applies_the_rule_to_all_their_images():
    from simulator.baselines import pool_entries

    def entry(scores: dict[str, list[float]], tasks: list[str]) -> dict:
        walker = {"dice_by_image": {"bf": scores}}
        return {"random-walker": walker, "random-walker-partial": walker, "tasks": tasks, "n_images": 3,
                "n_sessions": 3, "betas": [10.0, 100.0], "modes": ["bf"], "protocol": "p"}

    # Fold A prefers beta 100 clearly, fold B by less than a standard error: pooled, 100 wins by more than a SE.
    a = entry({"10.0": [0.2, 0.3, 0.25], "100.0": [0.8, 0.85, 0.9]}, ["ACDC"])
    b = entry({"10.0": [0.6, 0.61, 0.62], "100.0": [0.56, 0.62, 0.67]}, ["WBC"])
    pooled = pool_entries({"A": a, "B": b}, ["A", "B"])
    assert pooled["random-walker"]["beta"] == 100.0 and pooled["random-walker"]["mode"] == "bf"
    assert pooled["random-walker"]["dice_by_image"]["bf"]["10.0"] == [0.2, 0.3, 0.25, 0.6, 0.61, 0.62]
    assert pooled["tasks"] == ["ACDC", "WBC"] and pooled["n_images"] == 6
    assert pool_entries({"B": b, "B2": b}, ["B", "B2"])["random-walker"]["beta"] == 10.0  # within a SE: simplest
    with pytest.raises(ValueError, match="differ in betas"):
        pool_entries({"A": a, "B": {**b, "betas": [10.0]}}, ["A", "B"])
    with pytest.raises(ValueError, match="no entry 'C'"):
        pool_entries({"A": a}, ["A", "C"])


def test_tune_real_refuses_an_unknown_annotator_choice():
    from simulator.baselines import tune_real

    with pytest.raises(ValueError, match="^annotators"):
        tune_real("medscribble:/nowhere?tasks=WBC", annotators="second")
