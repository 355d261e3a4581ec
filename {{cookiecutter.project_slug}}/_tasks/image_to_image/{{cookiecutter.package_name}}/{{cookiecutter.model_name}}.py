"""{{ cookiecutter.__model_class }}: a small U-Net for image restoration.

This is the only module train.py and test.py import for the model: it re-exports the loss
and the metrics that belong to it, so the scripts never reach into layers/, losses/ or ops/.
"""

import torch
from torch import nn

# The building blocks through their module: no model class name can shadow them.
from . import layers
from .layers import NORMS
from .losses import PIXEL_LOSSES, RestorationLoss, fetch_imagenet_weights
from .ops import psnr, ssim

__all__ = [
    "NORMS",
    "PIXEL_LOSSES",
    "RestorationLoss",
    "{{ cookiecutter.__model_class }}",
    "fetch_imagenet_weights",
    "psnr",
    "receptive_radius",
    "ssim",
]
# Down steps at most: each doubles the channels and the side inputs are padded to (2**depth),
# so beyond this the network no longer fits a GPU's memory.
MAX_DEPTH = 8


def receptive_radius(depth: int) -> int:
    """How far (px) from an output pixel the input pixels it depends on can lie: 7 * 2**depth - 5.

    The stem's two 3x3 convolutions reach 2 px. Down step k (a strided 3x3, then a 3x3 at
    stride 2**k) adds 2**(k-1) + 2**k. Up step k adds 2**k for the bilinear upsampling (a
    strided convolution centres its outputs on even pixels, the upsampling assumes odd ones,
    so its farther source is a whole coarse pixel away) and 2**k for its two 3x3 convolutions
    at level k-1. In all 2 + 3 (2**depth - 1) + 4 (2**depth - 1); tests measure it.
    """
    return 7 * 2**depth - 5


class {{ cookiecutter.__model_class }}(nn.Module):
    """Encoder-decoder with skip connections (Ronneberger et al., 2015) that predicts a residual.

    `depth` down steps, each halving the resolution and doubling the channels from `width`;
    as many up steps back. When in and out channels match, the output is the input plus the
    predicted correction: restoration changes little of an image, and a zero-initialised
    last layer makes the untrained model the identity, a good start. Any input size works.
    `norm` is "batch" or "group" (see layers.norm).
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        width: int = 32,
        depth: int = 3,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        norm_layer = layers.norm_layer_for(norm)
        if not 1 <= depth <= MAX_DEPTH:
            raise ValueError(f"depth must be from 1 to {MAX_DEPTH}, got {depth}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.residual = in_channels == out_channels
        channels = [width * 2**level for level in range(depth + 1)]
        self.stem = layers.DoubleConv(in_channels, width, norm_layer)
        self.downs = nn.ModuleList(
            layers.DownBlock(channels[i], channels[i + 1], norm_layer) for i in range(depth)
        )
        self.ups = nn.ModuleList(
            layers.UpBlock(channels[i + 1], channels[i], channels[i], norm_layer)
            for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(width, out_channels, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Map a (N, in_channels, H, W) batch to (N, out_channels, H, W)."""
        x = self.stem(images)
        skips = []
        for down in self.downs:
            skips.append(x)
            x = down(x)
        for up in self.ups:
            x = up(x, skips.pop())
        out = self.head(x)
        return images + out if self.residual else out
