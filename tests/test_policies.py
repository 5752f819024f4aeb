"""Each policy's choice on hand-made candidates (1 x 6 images), rejection and ties included."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.policies import POLICIES, BestOfK, ModelRanked, NoisyBestOfK, Policy, make_policy, state_score


def row(*bits: int) -> np.ndarray:
    return np.array([bits], dtype=bool)


GT = row(1, 1, 1, 0, 0, 0)
# Scores with error weight 2 (correct - 2 * wrong over decided pixels):
A = (row(1, 1, 0, 0, 0, 0), row(1, 1, 0, 0, 0, 0))  # 2 correct, 0 wrong -> 2
B = (row(1, 1, 1, 1, 1, 1), row(1, 1, 1, 1, 0, 0))  # 5 correct, 1 wrong -> 3
C = (row(1, 1, 1, 1, 1, 1), row(1, 1, 1, 0, 0, 0))  # perfect -> 6
D = (row(1, 1, 1, 1, 1, 1), row(1, 1, 1, 1, 1, 0))  # 4 correct, 2 wrong -> 0 (w=2), 3 (w=0.5)
EMPTY = (row(0, 0, 0, 0, 0, 0), row(0, 0, 0, 0, 0, 0))  # nothing decided -> 0


def stack(*cands: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return np.stack([c[0] for c in cands]), np.stack([c[1] for c in cands])


def choose(
    policy: Policy,
    cands: list[tuple[np.ndarray, np.ndarray]],
    current: tuple[np.ndarray, np.ndarray] = EMPTY,
    scores: np.ndarray | None = None,
    allow_reject: bool = True,
    seed: int = 0,
) -> int:
    masks, segs = stack(*cands)
    return policy.choose(
        masks, segs, scores, gt=GT, current_mask=current[0], current_seg=current[1],
        allow_reject=allow_reject, rng=np.random.default_rng(seed),
    )


def test_state_score_hand_values():
    assert state_score(*A, GT, 2.0) == 2
    assert state_score(*B, GT, 2.0) == 3
    assert state_score(*C, GT, 2.0) == 6
    assert state_score(*D, GT, 2.0) == 0
    assert state_score(*D, GT, 0.5) == 3
    assert state_score(*EMPTY, GT, 2.0) == 0


def test_best_of_k_picks_the_highest_score():
    best = BestOfK()
    assert choose(best, [A, B, C]) == 2
    assert choose(best, [A, B]) == 1
    assert choose(best, [B, A]) == 0


def test_best_of_k_error_weight_changes_the_ranking():
    assert choose(BestOfK(error_weight=2.0), [D, A]) == 1  # 0 vs 2
    assert choose(BestOfK(error_weight=0.5), [D, A]) == 0  # 3 vs 2


def test_best_of_k_ties_go_to_the_lowest_index():
    assert choose(BestOfK(), [A, C, C]) == 1
    assert choose(BestOfK(), [A, A], allow_reject=False) == 0


def test_best_of_k_rejects_when_nothing_beats_the_current_state():
    current = (row(1, 1, 1, 1, 0, 0), row(1, 1, 1, 0, 0, 0))  # 4 correct -> 4
    assert choose(BestOfK(), [A, B], current=current) == -1
    assert choose(BestOfK(), [A, B], current=current, allow_reject=False) == 1
    # Equal to the current score is not "above": a candidate that adds nothing is rejected.
    assert choose(BestOfK(), [current], current=current) == -1
    assert choose(BestOfK(), [A, C], current=current) == 1


def test_first_and_random_never_reject():
    current = C
    assert choose(make_policy("first"), [A, B, D], current=current) == 0
    assert choose(make_policy("random-of-k"), [A, B, D], current=current) in (0, 1, 2)


def test_random_of_k_is_seeded_and_uniform():
    policy = make_policy("random-of-k")
    picks = [choose(policy, [A, B, C, D], seed=s) for s in range(200)]
    assert picks == [choose(policy, [A, B, C, D], seed=s) for s in range(200)]
    assert picks[:20] == [int(np.random.default_rng(s).integers(4)) for s in range(20)]
    counts = np.bincount(picks, minlength=4)
    assert counts.min() > 30  # 50 expected per index


def test_noisy_best_of_k_extremes_and_slips():
    current = (row(1, 1, 1, 1, 0, 0), row(1, 1, 1, 0, 0, 0))
    assert all(choose(NoisyBestOfK(epsilon=0.0), [A, C, B], seed=s) == 1 for s in range(20))
    assert all(choose(NoisyBestOfK(epsilon=0.0), [A, B], current=current, seed=s) == -1 for s in range(20))
    slips = [choose(NoisyBestOfK(epsilon=1.0), [A, B], current=current, seed=s) for s in range(100)]
    assert set(slips) == {0, 1}  # a slip picks a candidate, never a rejection
    for s in range(20):  # one uniform draw, then the uniformly random index
        rng = np.random.default_rng(s)
        rng.random()
        assert choose(NoisyBestOfK(epsilon=1.0), [A, B, C], seed=s) == int(rng.integers(3))
    picks = [choose(NoisyBestOfK(epsilon=0.3), [A, C, B], seed=s) for s in range(400)]
    assert 0.6 < np.mean(np.array(picks) == 1) < 0.9  # best with prob 0.7 + 0.3 / 3 = 0.8


def test_model_ranked_uses_scores_only():
    policy = ModelRanked()
    assert choose(policy, [C, A, B], scores=np.array([-5.0, 2.0, 1.0])) == 1
    assert choose(policy, [C, A, B], scores=np.array([3.0, 3.0, 1.0])) == 0  # ties to the lowest index
    assert choose(policy, [A], scores=None) == 0  # one candidate: nothing to rank
    assert choose(policy, [A, C], current=C, scores=np.array([1.0, 0.0])) == 0  # never rejects
    with pytest.raises(ValueError, match="policy"):
        choose(policy, [A, C], scores=None)
    with pytest.raises(ValueError, match="policy"):
        choose(policy, [A, C], scores=np.array([np.nan, 1.0]))


def test_registry_and_make_policy():
    assert set(POLICIES) == {"best-of-k", "random-of-k", "first", "noisy-best-of-k", "model-ranked"}
    assert make_policy("best-of-k", error_weight=3.0) == BestOfK(3.0)
    assert make_policy("noisy-best-of-k", epsilon=0.2).epsilon == 0.2
    assert make_policy("best-of-k").oracle and not make_policy("model-ranked").oracle
    with pytest.raises(ValueError, match=r"policy.*best-of-k"):
        make_policy("oracle")
    with pytest.raises(ValueError, match="epsilon"):
        make_policy("first", epsilon=0.1)
    with pytest.raises(ValueError, match="epsilon"):
        make_policy("noisy-best-of-k", epsilon=1.5)
    with pytest.raises(ValueError, match="error_weight"):
        make_policy("best-of-k", error_weight=-1.0)


def test_bad_candidate_shapes_raise():
    masks, segs = stack(A, B)
    with pytest.raises(ValueError, match="scores"):
        BestOfK().choose(masks, segs, np.zeros(3), gt=GT, current_mask=EMPTY[0], current_seg=EMPTY[1],
                         allow_reject=True, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="masks"):
        BestOfK().choose(masks[0], segs[0], None, gt=GT, current_mask=EMPTY[0], current_seg=EMPTY[1],
                         allow_reject=True, rng=np.random.default_rng(0))
