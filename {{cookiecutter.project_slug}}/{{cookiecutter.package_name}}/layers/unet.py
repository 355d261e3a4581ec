"""The U-Net body (Ronneberger et al., 2015): a model of it adds only its head."""

import torch
from torch import nn

from .double_conv import DoubleConv
from .down_block import DownBlock
from .norm import norm_layer_for
from .up_block import UpBlock

# Down steps at most: each doubles the channels, so beyond this the network no longer fits a
# GPU's memory.
MAX_DEPTH = 8


def receptive_radius(depth: int) -> int:
    """How far (px) from an output pixel the input pixels it depends on can lie: 7 * 2**depth - 5.

    The stem's two 3x3 convolutions reach 2 px. Down step k (a strided 3x3, then a 3x3 at
    stride 2**k) adds 2**(k-1) + 2**k. Up step k adds 2**k for the bilinear upsampling (a
    strided convolution centres its outputs on even pixels, the upsampling assumes odd ones,
    so its farther source is a whole coarse pixel away) and 2**k for its two 3x3 convolutions
    at level k-1. In all 2 + 3 (2**depth - 1) + 4 (2**depth - 1); tests measure it. A head of
    1x1 convolutions adds nothing.
    """
    return 7 * 2**depth - 5


class UNet(nn.Module):
    """Encoder-decoder with skip connections: `depth` down steps, each halving the resolution
    and doubling the channels from `width`, and as many up steps back, each upsampling to its
    skip's exact size, so any height and width work (an odd side rounds up on the way down and
    is cut back on the way up). `norm` is "batch" or "group" (see layers.norm).

    `features` gives `width` channels at the input's size; a subclass adds the head.
    """

    def __init__(self, in_channels: int, width: int, depth: int, norm: str) -> None:
        super().__init__()
        if not 1 <= depth <= MAX_DEPTH:
            raise ValueError(f"depth must be from 1 to {MAX_DEPTH}, got {depth}")
        norm_layer = norm_layer_for(norm)
        channels = [width * 2**level for level in range(depth + 1)]
        self.stem = DoubleConv(in_channels, width, norm_layer)
        self.downs = nn.ModuleList(
            DownBlock(channels[i], channels[i + 1], norm_layer) for i in range(depth)
        )
        self.ups = nn.ModuleList(
            UpBlock(channels[i + 1], channels[i], channels[i], norm_layer)
            for i in reversed(range(depth))
        )

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Map a (N, in_channels, H, W) batch to (N, width, H, W) features."""
        x = self.stem(images)
        skips = []
        for down in self.downs:
            skips.append(x)
            x = down(x)
        for up in self.ups:
            x = up(x, skips.pop())
        return x
