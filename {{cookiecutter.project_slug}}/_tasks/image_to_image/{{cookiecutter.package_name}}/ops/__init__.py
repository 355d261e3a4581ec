"""Functional pieces in pure torch: metrics and small tensor ops (no numpy: they run on any device)."""

from .corruption import CORRUPTIONS, STRENGTH, corrupt
from .image import denormalize
from .metrics import psnr, ssim
from .tiling import pad_to_multiple, tiled_apply

__all__ = [
    "CORRUPTIONS",
    "STRENGTH",
    "corrupt",
    "denormalize",
    "pad_to_multiple",
    "psnr",
    "ssim",
    "tiled_apply",
]
