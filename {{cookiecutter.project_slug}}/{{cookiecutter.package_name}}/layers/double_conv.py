"""Two 3x3 ConvNormAct layers: the unit every U-Net level is made of."""

from torch import nn

from .conv_norm_act import ConvNormAct
from .norm import NormLayer


class DoubleConv(nn.Sequential):
    """ConvNormAct(in -> out) then ConvNormAct(out -> out), at full resolution."""

    def __init__(
        self, in_channels: int, out_channels: int, norm_layer: NormLayer = nn.BatchNorm2d
    ) -> None:
        super().__init__(
            ConvNormAct(in_channels, out_channels, norm_layer=norm_layer),
            ConvNormAct(out_channels, out_channels, norm_layer=norm_layer),
        )
