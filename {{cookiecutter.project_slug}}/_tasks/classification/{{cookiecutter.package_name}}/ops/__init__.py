"""Functional pieces in pure torch: metrics and small tensor ops (no numpy: they run on any device)."""

from .image import denormalize
from .metrics import topk_correct

__all__ = ["denormalize", "topk_correct"]
