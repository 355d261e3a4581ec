"""Building blocks of the model, one concept per file."""

from .conv_norm_act import ConvNormAct
from .norm import NORMS, NormLayer, norm_layer_for
from .residual_block import ResidualBlock

__all__ = ["NORMS", "ConvNormAct", "NormLayer", "ResidualBlock", "norm_layer_for"]
