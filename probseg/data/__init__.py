"""Synthetic data: disks, random shapes, partial-segmentation pairs, intensity normalisation."""

from .disks import DiskImage, DiskSpec, all_subset_masks, make_disk_dataset, make_disk_image, subset_mask
from .examples import Example
from .folder import load_image_folder
from .intensity import normalize_image
from .medscribble import load_medscribble, medscribble_tasks
from .nifti import load_nifti_manifest
from .partials import PairSpec, PartialPair, brush_disk, click_input, make_partial_pair, object_masks, stroke_input
from .shapes import random_label_map, random_shape, random_shape_with_area

__all__ = [
    "DiskImage",
    "DiskSpec",
    "Example",
    "PairSpec",
    "PartialPair",
    "all_subset_masks",
    "brush_disk",
    "click_input",
    "load_image_folder",
    "load_medscribble",
    "load_nifti_manifest",
    "make_disk_dataset",
    "make_disk_image",
    "make_partial_pair",
    "medscribble_tasks",
    "normalize_image",
    "object_masks",
    "random_label_map",
    "random_shape",
    "random_shape_with_area",
    "stroke_input",
    "subset_mask",
]
