"""Building blocks of the model, one concept per file."""

from .conv_norm_act import ConvNormAct
from .double_conv import DoubleConv
from .down_block import DownBlock
from .norm import NORMS, NormLayer, norm_layer_for
from .up_block import UpBlock

__all__ = [
    "NORMS",
    "ConvNormAct",
    "DoubleConv",
    "DownBlock",
    "NormLayer",
    "UpBlock",
    "norm_layer_for",
]
