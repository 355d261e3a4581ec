"""The decoder step of a U-Net: upsample, join the encoder's skip features, convolve."""

import torch
import torch.nn.functional as F
from torch import nn

from .double_conv import DoubleConv
from .norm import NormLayer


class UpBlock(nn.Module):
    """Bilinear upsampling to the skip's size, concatenation with it, then a DoubleConv.

    Upsampling to the skip's exact size (not x2) undoes the round-up of an odd side.
    Bilinear plus convolution avoids the checkerboard artefacts of transposed convolutions.
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.conv = DoubleConv(in_channels + skip_channels, out_channels, norm_layer)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], dim=1))
