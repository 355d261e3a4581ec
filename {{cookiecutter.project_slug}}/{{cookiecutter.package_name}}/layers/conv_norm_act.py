"""Convolution -> normalisation -> activation, the basic unit of the network."""

from torch import nn

from .norm import NormLayer


class ConvNormAct(nn.Sequential):
    """A padded convolution followed by a norm layer and an (optional) activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        norm_layer: NormLayer = nn.BatchNorm2d,
        activation: bool = True,
    ) -> None:
        super().__init__()
        # The norm layer has its own shift, so a conv bias would be redundant.
        self.add_module(
            "conv",
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=kernel_size // 2,
                bias=False,
            ),
        )
        self.add_module("norm", norm_layer(out_channels))
        if activation:
            self.add_module("act", nn.ReLU(inplace=True))
