"""Functional pieces in pure torch: metrics and small tensor ops (no numpy: they run on any device)."""

from .corruption import CORRUPTIONS, STRENGTH, corrupt
from .image import denormalize
from .metrics import psnr, ssim

__all__ = ["CORRUPTIONS", "STRENGTH", "corrupt", "denormalize", "psnr", "ssim"]
