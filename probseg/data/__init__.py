"""Synthetic data: disks, random shapes, partial-segmentation pairs, intensity normalisation."""

from .disks import DiskImage, DiskSpec, all_subset_masks, make_disk_dataset, make_disk_image, subset_mask
from .intensity import normalize_image
from .partials import PairSpec, PartialPair, brush_disk, click_input, make_partial_pair, object_masks, stroke_input
from .shapes import random_label_map, random_shape, random_shape_with_area

__all__ = [
    "DiskImage",
    "DiskSpec",
    "PairSpec",
    "PartialPair",
    "all_subset_masks",
    "brush_disk",
    "click_input",
    "make_disk_dataset",
    "make_disk_image",
    "make_partial_pair",
    "normalize_image",
    "object_masks",
    "random_label_map",
    "random_shape",
    "random_shape_with_area",
    "stroke_input",
    "subset_mask",
]
