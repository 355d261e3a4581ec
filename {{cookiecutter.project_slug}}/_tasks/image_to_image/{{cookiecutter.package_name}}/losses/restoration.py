"""The training loss of restoration: a pixel loss plus a scaled VGG perceptual loss."""

from pathlib import Path

import torch
from torch import nn

from .perceptual import VGGPerceptualLoss
from .pixel import PixelLoss


class RestorationLoss(nn.Module):
    """pixel(prediction, target) + perceptual_scale * perceptual(prediction, target).

    With perceptual_scale 0 the VGG network is not even built (no weights to find, no
    compute spent); `perceptual_weights` is "imagenet", a local file, or None (random).
    """

    def __init__(
        self,
        pixel: str = "l1",
        perceptual_scale: float = 0.0,
        perceptual_weights: str | Path | None = "imagenet",
        arch: str = "vgg16",
    ) -> None:
        super().__init__()
        if perceptual_scale < 0:
            raise ValueError(f"perceptual_scale must be >= 0, got {perceptual_scale}")
        self.pixel = PixelLoss(pixel)
        self.perceptual_scale = perceptual_scale
        self.perceptual = (
            VGGPerceptualLoss(arch, weights=perceptual_weights) if perceptual_scale > 0 else None
        )

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.pixel(prediction, target)
        if self.perceptual is not None:
            loss = loss + self.perceptual_scale * self.perceptual(prediction, target)
        return loss

    def extra_repr(self) -> str:
        return f"perceptual_scale={self.perceptual_scale}"
