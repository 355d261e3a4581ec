"""Building blocks of the model, one concept per file."""

from .conv_norm_act import ConvNormAct, NormLayer
from .residual_block import ResidualBlock

__all__ = ["ConvNormAct", "NormLayer", "ResidualBlock"]
