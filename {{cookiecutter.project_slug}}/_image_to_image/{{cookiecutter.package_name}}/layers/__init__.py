"""Building blocks of the model, one concept per file."""

from .conv_norm_act import ConvNormAct, NormLayer
from .double_conv import DoubleConv
from .down_block import DownBlock
from .up_block import UpBlock

__all__ = ["ConvNormAct", "DoubleConv", "DownBlock", "NormLayer", "UpBlock"]
