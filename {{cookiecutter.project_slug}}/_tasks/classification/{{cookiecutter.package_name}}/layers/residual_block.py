"""The basic residual block of ResNet (He et al., 2016)."""

import torch
from torch import nn

from .conv_norm_act import ConvNormAct
from .norm import NormLayer


class ResidualBlock(nn.Module):
    """Two 3x3 ConvNormAct layers plus a shortcut; a 1x1 projection when the shape changes."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvNormAct(in_channels, out_channels, stride=stride, norm_layer=norm_layer),
            ConvNormAct(out_channels, out_channels, norm_layer=norm_layer, activation=False),
        )
        if stride != 1 or in_channels != out_channels:
            self.shortcut = ConvNormAct(
                in_channels, out_channels, 1, stride, norm_layer=norm_layer, activation=False
            )
        else:
            self.shortcut = nn.Identity()
        self.act = nn.ReLU(inplace=True)
        # Start each block as (almost) the identity: zero the last norm's scale so the
        # residual branch adds nothing at first, which makes early training stable.
        last_norm = self.body[-1].norm
        if getattr(last_norm, "weight", None) is not None:
            nn.init.zeros_(last_norm.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))
