"""Model configurations by name: the architecture and loss settings a checkpoint records.

The networks they build are in :mod:`probseg.model` (whose docstring explains each architecture);
this module needs no torch, so that a command can list the configurations in its ``--help`` at once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["ARCHS", "CONFIGS", "MEDICAL_WORK_SIZE", "SCORE_HEADS", "SIZE_MULTIPLE", "ModelConfig"]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and loss settings.

    Attributes:
        name: the configuration's name.
        arch: ``paper`` (Figure 2 as written), ``wide`` (spatial latent, small U-Net decoder) or
            ``punet`` (U-Net backbone, latent injected before a 1x1-convolution head).
        latent_dim: channels of the spatial latent z (L, H/8, W/8).
            0 makes the network deterministic.
        width: base channel count of the ``wide`` decoder.
        beta0, beta1: loss weights of Eq. (3).
        mode: ``partial`` (predict a larger partial segmentation) or ``complete`` (decide every pixel).
        work_size: side of the square working resolution every input is resized to by
            :meth:`probseg.ProbSeg.propose` (a multiple of :data:`SIZE_MULTIPLE`); 0 (the disk
            models): none, inputs are padded to a multiple of :data:`SIZE_MULTIPLE` instead.
        heads: output hypotheses of one forward pass (multiple-choice learning, as Segment
            Anything's mask tokens): 1 is the single-output network; ``heads`` > 1 gives that many
            candidates, trained with a best-candidate loss, plus a score head that predicts each
            candidate's Dice (see :class:`_ScoreHead`). Only deterministic ``punet`` and ``wide``
            networks (``latent_dim`` 0) have heads: the candidates' diversity comes from the heads,
            not from a latent.
        ssn_rank: > 0 makes the output a Stochastic Segmentation Network's (Monteiro et al., 2020):
            the two logit maps are drawn from a Gaussian with a low-rank-plus-diagonal covariance
            (``ssn_rank`` factor maps), so candidates are samples of the logits, drawn after one
            network pass; there is no KL term to collapse. Trained, as the heads, with a
            best-candidate loss over its samples (a soft best-of-M, as SSN's own loss) and scored by
            the same score head. Deterministic ``punet`` or ``wide`` networks with one head only.
        score_head: the score head of a scored network (``heads`` > 1 or ``ssn_rank`` > 0), one of
            :data:`SCORE_HEADS`: ``coarse`` (:class:`~probseg.model._ScoreHead`: the candidate maps
            average-pooled to the latent grid beside the backbone's coarse features) or ``fine``
            (:class:`~probseg.model._FineScoreHead`: each candidate read at half the working resolution
            with the image and the candidates' mean before it meets the coarse features). Checkpoints
            saved before this field existed have ``coarse``.
    """

    name: str = "paper"
    arch: str = "paper"
    latent_dim: int = 1
    width: int = 32
    beta0: float = 1.0
    beta1: float = 1e-3
    mode: str = "partial"
    work_size: int = 0
    heads: int = 1
    ssn_rank: int = 0
    score_head: str = "coarse"

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {', '.join(map(repr, ARCHS))}, got {self.arch!r}")
        if self.latent_dim < 0:
            raise ValueError(f"latent_dim must be >= 0, got {self.latent_dim}")
        if self.arch == "paper" and self.latent_dim < 1:
            raise ValueError("the paper architecture needs latent_dim >= 1")
        if self.mode not in ("partial", "complete"):
            raise ValueError(f"mode must be 'partial' or 'complete', got {self.mode!r}")
        if self.width < 4 or self.width % 4:
            # group norm uses 4 groups
            raise ValueError(f"width must be a positive multiple of 4, got {self.width}")
        if self.work_size < 0 or self.work_size % SIZE_MULTIPLE or 0 < self.work_size < 2 * SIZE_MULTIPLE:
            raise ValueError(
                f"work_size must be 0 or a multiple of {SIZE_MULTIPLE} >= {2 * SIZE_MULTIPLE}, got {self.work_size}"
            )

        if isinstance(self.heads, bool) or not isinstance(self.heads, int) or self.heads < 1:
            raise ValueError(f"heads must be an integer >= 1, got {self.heads!r}")
        if self.heads > 1 and (self.latent_dim > 0 or self.arch == "paper"):
            raise ValueError("heads > 1 needs a deterministic 'punet' or 'wide' network (latent_dim 0)")
        if isinstance(self.ssn_rank, bool) or not isinstance(self.ssn_rank, int) or self.ssn_rank < 0:
            raise ValueError(f"ssn_rank must be an integer >= 0, got {self.ssn_rank!r}")
        if self.ssn_rank > 0 and (self.latent_dim > 0 or self.arch == "paper" or self.heads > 1):
            raise ValueError("ssn_rank > 0 needs a deterministic 'punet' or 'wide' network (latent_dim 0) with one head")
        if self.score_head not in SCORE_HEADS:
            raise ValueError(f"score_head must be one of {', '.join(map(repr, SCORE_HEADS))}, got {self.score_head!r}")

    @property
    def stochastic(self) -> bool:
        return self.latent_dim > 0

    @property
    def multi_head(self) -> bool:
        """True when one forward pass gives several candidates (``heads`` > 1)."""
        return self.heads > 1

    @property
    def ssn(self) -> bool:
        """True when candidates are samples of a low-rank logit distribution (``ssn_rank`` > 0)."""
        return self.ssn_rank > 0

    @property
    def scored(self) -> bool:
        """True when a score head predicts each candidate's Dice (multi-head and SSN networks)."""
        return self.multi_head or self.ssn

    @property
    def sampled(self) -> bool:
        """True when proposals are random draws (a latent or an SSN): they depend on the seed."""
        return self.stochastic or self.ssn

    @property
    def out_channels(self) -> int:
        """Channels of the decoder's last layer: 2 logit maps per head; an SSN's mean (2), log
        diagonal variance (2) and ``ssn_rank`` factors (2 each)."""
        if self.ssn:
            return 2 * (2 + self.ssn_rank)
        return 2 * self.heads

    def to_dict(self) -> dict:
        return asdict(self)


ARCHS = ("paper", "wide", "punet")
SCORE_HEADS = ("coarse", "fine")

# All architectures put the latent on a grid 8 times coarser than the input; inputs are padded to a
# multiple of this (the ``punet`` backbone pools four times and pads to 16 internally).
SIZE_MULTIPLE = 8

# The medical models' working resolution: 256 x 256 MedScribble images are halved, which keeps
# propose(k=8) on a 256 x 256 image near 45 ms on one (busy) CPU core; see
# tests/benchmarks/test_bench_medical.py.
MEDICAL_WORK_SIZE = 128

CONFIGS: dict[str, ModelConfig] = {
    "paper": ModelConfig(name="paper", arch="paper", latent_dim=1),
    "wide": ModelConfig(name="wide", arch="wide", latent_dim=2, width=16, beta1=1e-2),
    "paper-complete": ModelConfig(name="paper-complete", arch="paper", latent_dim=1, mode="complete"),
    "wide-complete": ModelConfig(name="wide-complete", arch="wide", latent_dim=2, width=16, beta1=1e-2, mode="complete"),
    "unet-complete": ModelConfig(name="unet-complete", arch="wide", latent_dim=0, width=16, mode="complete"),
    # Real 2D medical images: the paper's KL weight (untuned on this data; see probseg-train --beta1).
    "medical": ModelConfig(name="medical", arch="punet", latent_dim=4, width=16, beta1=1e-3, work_size=MEDICAL_WORK_SIZE),
    "medical-complete": ModelConfig(
        name="medical-complete", arch="punet", latent_dim=4, width=16, beta1=1e-3, mode="complete",
        work_size=MEDICAL_WORK_SIZE,
    ),
    "medical-unet-complete": ModelConfig(
        name="medical-unet-complete", arch="punet", latent_dim=0, width=16, mode="complete", work_size=MEDICAL_WORK_SIZE
    ),
    # Multiple hypotheses from one pass (issue 13's family (a)): 8 heads, the simulator's default K,
    # so best-of-8 sees 8 distinct candidates; a score head ranks them.
    "heads": ModelConfig(name="heads", arch="wide", latent_dim=0, width=16, heads=8),
    "heads-complete": ModelConfig(name="heads-complete", arch="wide", latent_dim=0, width=16, heads=8, mode="complete"),
    "medical-heads": ModelConfig(
        name="medical-heads", arch="punet", latent_dim=0, width=16, heads=8, work_size=MEDICAL_WORK_SIZE
    ),
    "medical-heads-complete": ModelConfig(
        name="medical-heads-complete", arch="punet", latent_dim=0, width=16, heads=8, mode="complete",
        work_size=MEDICAL_WORK_SIZE,
    ),
    # Samples of a low-rank logit distribution (issue 13's family (b)), SSN's rank 10.
    "ssn": ModelConfig(name="ssn", arch="wide", latent_dim=0, width=16, ssn_rank=10),
    "ssn-complete": ModelConfig(name="ssn-complete", arch="wide", latent_dim=0, width=16, ssn_rank=10, mode="complete"),
    "medical-ssn": ModelConfig(
        name="medical-ssn", arch="punet", latent_dim=0, width=16, ssn_rank=10, work_size=MEDICAL_WORK_SIZE
    ),
    "medical-ssn-complete": ModelConfig(
        name="medical-ssn-complete", arch="punet", latent_dim=0, width=16, ssn_rank=10, mode="complete",
        work_size=MEDICAL_WORK_SIZE,
    ),
}
