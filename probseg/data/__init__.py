"""Data: synthetic disks, random shapes and SynthMorph-style images, partial-segmentation pairs,
real-image loaders (MedScribble, NIfTI manifests, image folders), intensity normalisation."""

from .disks import DiskImage, DiskSpec, all_subset_masks, make_disk_dataset, make_disk_image, subset_mask
from .examples import Example
from .folder import load_image_folder
from .intensity import normalize_image
from .medscribble import load_medscribble, medscribble_tasks
from .nifti import load_nifti_manifest
from .partials import PairSpec, PartialPair, brush_disk, click_input, make_partial_pair, object_masks, stroke_input
from .shapes import random_label_map, random_shape, random_shape_with_area
from .synth import SynthSpec, make_synth_example


def __getattr__(name: str):
    # The medical training pool needs torch; imported on first use so that reading data does not.
    if name == "build_medical_pool":
        from .medical import build_medical_pool

        return build_medical_pool
    raise AttributeError(f"module 'probseg.data' has no attribute {name!r}")


__all__ = [
    "DiskImage",
    "DiskSpec",
    "Example",
    "PairSpec",
    "PartialPair",
    "SynthSpec",
    "all_subset_masks",
    "brush_disk",
    "build_medical_pool",
    "click_input",
    "load_image_folder",
    "load_medscribble",
    "load_nifti_manifest",
    "make_disk_dataset",
    "make_disk_image",
    "make_partial_pair",
    "make_synth_example",
    "medscribble_tasks",
    "normalize_image",
    "object_masks",
    "random_label_map",
    "random_shape",
    "random_shape_with_area",
    "stroke_input",
    "subset_mask",
]
