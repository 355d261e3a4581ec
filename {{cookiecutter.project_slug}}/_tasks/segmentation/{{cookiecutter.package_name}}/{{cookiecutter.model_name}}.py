"""{{ cookiecutter.__model_class }}: a small U-Net for semantic segmentation.

This is the only module train.py and test.py import for the model: it re-exports the loss
and the metrics that belong to it, so the scripts never reach into layers/, losses/ or ops/.
"""

import torch
from torch import nn

# The building blocks through their module: no model class name can shadow them.
from . import layers
from .layers import NORMS
from .losses import LOSS_KINDS, SegmentationLoss, inverse_frequency_weights
from .ops import class_iou, confusion_matrix, segmentation_scores

__all__ = [
    "LOSS_KINDS",
    "NORMS",
    "SegmentationLoss",
    "{{ cookiecutter.__model_class }}",
    "class_iou",
    "confusion_matrix",
    "inverse_frequency_weights",
    "receptive_radius",
    "segmentation_scores",
]
# Down steps at most: each doubles the channels, so beyond this the network no longer fits a
# GPU's memory.
MAX_DEPTH = 8


def receptive_radius(depth: int) -> int:
    """How far (px) from an output pixel the input pixels it depends on can lie: 7 * 2**depth - 5
    (the same blocks as the restoration U-Net: a stem of two 3x3 convolutions, `depth` strided
    down steps and bilinear up steps; --tile overlaps tiles by more than twice this)."""
    return 7 * 2**depth - 5


class {{ cookiecutter.__model_class }}(nn.Module):
    """Encoder-decoder with skip connections (Ronneberger et al., 2015): a class score for
    every pixel.

    `depth` down steps, each halving the resolution and doubling the channels from `width`;
    as many up steps back, each upsampling to its skip's exact size, so any height and width
    work (an odd side rounds up on the way down and is cut back on the way up). The output is
    (N, num_classes, H, W) logits. `norm` is "batch" or "group" (see layers.norm).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        width: int = 16,
        depth: int = 3,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if not 1 <= depth <= MAX_DEPTH:
            raise ValueError(f"depth must be from 1 to {MAX_DEPTH}, got {depth}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        norm_layer = layers.norm_layer_for(norm)
        self.num_classes, self.in_channels = num_classes, in_channels
        channels = [width * 2**level for level in range(depth + 1)]
        self.stem = layers.DoubleConv(in_channels, width, norm_layer)
        self.downs = nn.ModuleList(
            layers.DownBlock(channels[i], channels[i + 1], norm_layer) for i in range(depth)
        )
        self.ups = nn.ModuleList(
            layers.UpBlock(channels[i + 1], channels[i], channels[i], norm_layer)
            for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(width, num_classes, 1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Map a (N, in_channels, H, W) batch to (N, num_classes, H, W) logits."""
        x = self.stem(images)
        skips = []
        for down in self.downs:
            skips.append(x)
            x = down(x)
        for up in self.ups:
            x = up(x, skips.pop())
        return self.head(x)
