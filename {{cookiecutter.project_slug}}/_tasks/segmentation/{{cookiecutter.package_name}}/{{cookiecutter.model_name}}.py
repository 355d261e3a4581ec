"""{{ cookiecutter.__model_class }}: a small U-Net for semantic segmentation.

This is the only module train.py and test.py import for the model: it re-exports the loss
and the metrics that belong to it, so the scripts never reach into layers/, losses/ or ops/.
"""

import torch
from torch import nn

# The building blocks through their module: no model class name can shadow them.
from . import layers
from .layers import NORMS, receptive_radius
from .losses import LOSS_KINDS, SegmentationLoss, inverse_frequency_weights
from .ops import class_iou, confusion_matrix, segmentation_scores

__all__ = [
    "LOSS_KINDS",
    "NORMS",
    "SegmentationLoss",
    "{{ cookiecutter.__model_class }}",
    "class_iou",
    "confusion_matrix",
    "inverse_frequency_weights",
    "receptive_radius",
    "segmentation_scores",
]


class {{ cookiecutter.__model_class }}(layers.UNet):
    """The shared U-Net body (layers.UNet: `depth` down steps from `width` channels and back,
    any height and width, `norm` "batch" or "group") with a 1x1 head that scores every class
    at every pixel: (N, num_classes, H, W) logits.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        width: int = 16,
        depth: int = 3,
        norm: str = "batch",
    ) -> None:
        super().__init__(in_channels, width, depth, norm)
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        self.num_classes, self.in_channels = num_classes, in_channels
        self.head = nn.Conv2d(width, num_classes, 1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Map a (N, in_channels, H, W) batch to (N, num_classes, H, W) logits."""
        return self.head(self.features(images))
