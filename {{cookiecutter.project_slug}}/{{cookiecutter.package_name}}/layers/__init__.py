"""Building blocks of the models, one concept per file: the blocks every task may use (a block
only one task uses lives in that task's files and is imported from its own module)."""

from .conv_norm_act import ConvNormAct
from .double_conv import DoubleConv
from .down_block import DownBlock
from .norm import NORMS, NormLayer, norm_layer_for
from .unet import MAX_DEPTH, UNet, receptive_radius
from .up_block import UpBlock

__all__ = [
    "MAX_DEPTH",
    "NORMS",
    "ConvNormAct",
    "DoubleConv",
    "DownBlock",
    "NormLayer",
    "UNet",
    "UpBlock",
    "norm_layer_for",
    "receptive_radius",
]
