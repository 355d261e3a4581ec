"""Cross-entropy with label smoothing, as a module."""

import torch
import torch.nn.functional as F
from torch import nn


class ClassificationLoss(nn.Module):
    """Mean cross-entropy over the batch; `label_smoothing` spreads that much target mass evenly.

    Targets are class indices (N,) or class probabilities (N, C), as MixUp and CutMix make
    them; smoothing mixes either with the uniform distribution (F.cross_entropy does both).
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}"
