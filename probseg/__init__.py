"""probseg: probabilistic partial segmentation for interactive annotation of medical images.

Quick start::

    import probseg
    model = probseg.load("disks")
    masks, segs = model.propose(image, mask, seg, k=8, seed=0)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The public names and the module each lives in. They are imported on first use (PEP 562), so
# ``import probseg`` and a command's ``--help`` do not pay for torch until a model is needed.
_EXPORTS = {
    "CONFIGS": "model", "ModelConfig": "model", "PartialSegNet": "model", "build_network": "model",
    "ModelInfo": "predictor", "ProbSeg": "predictor",
    "REGISTRY": "registry", "available": "registry", "load": "registry",
}

__all__ = [*sorted(_EXPORTS, key=str.lower), "__version__"]

if TYPE_CHECKING:
    from .model import CONFIGS, ModelConfig, PartialSegNet, build_network
    from .predictor import ModelInfo, ProbSeg
    from .registry import REGISTRY, available, load


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'probseg' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
