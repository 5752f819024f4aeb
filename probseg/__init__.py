"""probseg: probabilistic partial segmentation for interactive annotation of medical images.

Quick start::

    import probseg
    model = probseg.load("disks")
    masks, segs = model.propose(image, mask, seg, k=8, seed=0)
"""

__version__ = "0.1.0"

from .model import CONFIGS, ModelConfig, PartialSegNet, build_network  # noqa: E402
from .predictor import ModelInfo, ProbSeg  # noqa: E402
from .registry import REGISTRY, available, load  # noqa: E402

__all__ = ["CONFIGS", "ModelConfig", "ModelInfo", "PartialSegNet", "ProbSeg", "REGISTRY", "available", "build_network", "load", "__version__"]
