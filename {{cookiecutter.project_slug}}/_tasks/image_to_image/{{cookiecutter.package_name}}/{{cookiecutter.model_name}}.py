"""{{ cookiecutter.__model_class }}: a small U-Net for image restoration.

This is the only module train.py and test.py import for the model: it re-exports the loss
and the metrics that belong to it, so the scripts never reach into layers/, losses/ or ops/.
"""

import torch
from torch import nn

# The building blocks through their module: no model class name can shadow them.
from . import layers
from .layers import NORMS, receptive_radius
from .losses import PIXEL_LOSSES, RestorationLoss, fetch_imagenet_weights
from .ops import psnr, ssim

__all__ = [
    "NORMS",
    "PIXEL_LOSSES",
    "RestorationLoss",
    "{{ cookiecutter.__model_class }}",
    "fetch_imagenet_weights",
    "psnr",
    "receptive_radius",
    "ssim",
]


class {{ cookiecutter.__model_class }}(layers.UNet):
    """The shared U-Net body (layers.UNet: `depth` down steps from `width` channels and back,
    any input size, `norm` "batch" or "group") with a 1x1 head that predicts a residual.

    When in and out channels match, the output is the input plus the predicted correction:
    restoration changes little of an image, and a zero-initialised last layer makes the
    untrained model the identity, a good start.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        width: int = 32,
        depth: int = 3,
        norm: str = "batch",
    ) -> None:
        super().__init__(in_channels, width, depth, norm)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.residual = in_channels == out_channels
        self.head = nn.Conv2d(width, out_channels, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Map a (N, in_channels, H, W) batch to (N, out_channels, H, W)."""
        out = self.head(self.features(images))
        return images + out if self.residual else out
