"""Pure torch pieces: segmentation metrics and small tensor ops (no numpy: any device runs them)."""

from .image import denormalize
from .metrics import (
    class_accuracy,
    class_iou,
    confusion_image,
    confusion_matrix,
    segmentation_scores,
)
from .tiling import pad_to_multiple, tiled_apply

__all__ = [
    "class_accuracy",
    "class_iou",
    "confusion_image",
    "confusion_matrix",
    "denormalize",
    "pad_to_multiple",
    "segmentation_scores",
    "tiled_apply",
]
