"""Pseudo-tasks from superpixels (probseg.data.superpixels) and their place in the medical pools."""

from __future__ import annotations


import numpy as np
import pytest
from scipy import ndimage

from probseg.data.augment import AugmentSpec
from probseg.data.examples import Example
from probseg.data.medical import build_medical_target_pool
from probseg.data.superpixels import SuperpixelSpec, superpixel_labels, superpixel_target


def _image(seed: int = 0, size: int = 64) -> np.ndarray:
    """Smooth blobs on a ramp: regions a superpixel method can find."""
    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.random((size, size)), 4)
    return ((img - img.min()) / (img.max() - img.min())).astype(np.float32)


@pytest.mark.parametrize("method", ["slic", "felzenszwalb", "either"])
def test_a_pseudo_target_is_one_solid_region_of_a_plausible_size(method):
    spec = SuperpixelSpec(method=method)
    for seed in range(6):
        target = superpixel_target(np.random.default_rng(seed), _image(seed), spec)
        assert target.dtype == bool and target.shape == (64, 64) and target.any()
        assert ndimage.label(target)[1] == 1  # connected
        assert (ndimage.binary_fill_holes(target) == target).all()  # no holes


def test_the_same_generator_state_gives_the_same_target_and_another_seed_another():
    a = superpixel_target(np.random.default_rng(3), _image())
    b = superpixel_target(np.random.default_rng(3), _image())
    assert (a == b).all()
    others = [superpixel_target(np.random.default_rng(s), _image()) for s in range(4, 10)]
    assert any((o != a).any() for o in others)


def test_labels_are_connected_regions_numbered_from_zero():
    labels = superpixel_labels(np.random.default_rng(0), _image(), SuperpixelSpec(method="slic"))
    assert labels.min() == 0 and set(np.unique(labels)) == set(range(labels.max() + 1))
    for value in range(labels.max() + 1):
        assert ndimage.label(labels == value)[1] == 1


def test_merging_stays_within_the_area_range_when_the_first_superpixel_is():
    spec = SuperpixelSpec(method="slic", n_segments=(40, 40), area=(0.01, 0.2), max_merge=3)
    for seed in range(5):
        target = superpixel_target(np.random.default_rng(seed), _image(seed), spec)
        assert 0.01 <= target.mean() <= 0.2 + 0.05  # hole filling may add the few pixels a merge encloses


@pytest.mark.parametrize("kw, field", [
    ({"method": "kmeans"}, "method"), ({"n_segments": (1, 4)}, "n_segments"), ({"compactness": (0.0, 1.0)}, "compactness"),
    ({"scale": (5.0, 1.0)}, "scale"), ({"area": (0.2, 1.5)}, "area"), ({"max_merge": -1}, "max_merge"),
])
def test_bad_spec_values_name_the_field(kw, field):
    with pytest.raises(ValueError, match=f"^{field}: "):
        SuperpixelSpec(**kw)


def test_spec_round_trips_through_a_dict():
    spec = SuperpixelSpec(method="slic", area=(0.02, 0.3))
    assert SuperpixelSpec.from_dict(spec.to_dict()) == spec


def test_bad_image_is_refused():
    with pytest.raises(ValueError, match="^image: "):
        superpixel_target(np.random.default_rng(0), np.zeros(5))


def _examples() -> list[Example]:
    out = []
    for j in range(3):
        image = _image(10 + j, 96)
        target = np.zeros((96, 96), dtype=bool)
        target[30:60, 20:50] = True
        out.append(Example(task=f"T{j}", example_id=f"i{j}", image=image, target=target))
    return out


def test_pseudo_fraction_zero_leaves_the_pool_as_it_was_and_one_replaces_every_real_target():
    examples = _examples()
    kw = dict(n_images=12, seed=0, real_fraction=1.0, size=64, examples=examples)
    plain = build_medical_target_pool(**kw)
    assert (build_medical_target_pool(**kw, augment_spec=AugmentSpec(pseudo_fraction=0.0)) == plain).all()
    pseudo = build_medical_target_pool(**kw, augment_spec=AugmentSpec(pseudo_fraction=1.0))
    # The images are drawn the same way; only the targets change.
    assert (pseudo[:, 0] == plain[:, 0]).all()
    assert all((pseudo[j, 1] != plain[j, 1]).any() for j in range(12))
    assert (build_medical_target_pool(**kw, augment_spec=AugmentSpec(pseudo_fraction=1.0)) == pseudo).all()


def test_augment_spec_refuses_a_bad_pseudo_fraction():
    with pytest.raises(ValueError, match="^pseudo_fraction: "):
        AugmentSpec(pseudo_fraction=1.5)
