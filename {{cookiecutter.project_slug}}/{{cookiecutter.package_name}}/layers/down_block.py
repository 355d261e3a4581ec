"""The encoder step of a U-Net: halve the resolution, change the channels."""

from torch import nn

from .conv_norm_act import ConvNormAct
from .norm import NormLayer


class DownBlock(nn.Sequential):
    """A strided 3x3 ConvNormAct (learned downsampling, no pooling) then a 3x3 ConvNormAct.

    An odd side rounds up (padding 1), so any input size works.
    """

    def __init__(
        self, in_channels: int, out_channels: int, norm_layer: NormLayer = nn.BatchNorm2d
    ) -> None:
        super().__init__(
            ConvNormAct(in_channels, out_channels, stride=2, norm_layer=norm_layer),
            ConvNormAct(out_channels, out_channels, norm_layer=norm_layer),
        )
