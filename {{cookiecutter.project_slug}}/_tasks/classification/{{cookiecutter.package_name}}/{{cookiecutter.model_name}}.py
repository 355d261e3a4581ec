"""{{ cookiecutter.__model_class }}: a small ResNet for image classification.

This is the only module train.py and test.py import for the model: it re-exports the loss
and the metric that belong to it, so the scripts never reach into layers/, losses/ or ops/.
"""

import torch
from torch import nn

# The building blocks through their module: no model class name can shadow them.
from . import layers
from .layers import NORMS, residual_block
from .losses import ClassificationLoss
from .ops import topk_correct

__all__ = [
    "NORMS",
    "ClassificationLoss",
    "{{ cookiecutter.__model_class }}",
    "topk_correct",
]


class {{ cookiecutter.__model_class }}(nn.Module):
    """Stem, three residual stages (each halving the resolution after the first), pool, linear.

    `width` is the channel count of the first stage; each later stage doubles it. Works at any
    input size of 8 px or more thanks to the global average pool. `norm` is "batch" or
    "group" (see layers.norm).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        width: int = 32,
        blocks_per_stage: int = 1,
        dropout: float = 0.0,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        norm_layer = layers.norm_layer_for(norm)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.stem = layers.ConvNormAct(in_channels, width, norm_layer=norm_layer)
        stages = []
        channels = width
        for stage_index in range(3):
            out_channels = width * 2**stage_index
            for block_index in range(blocks_per_stage):
                stride = 2 if stage_index > 0 and block_index == 0 else 1
                block = residual_block.ResidualBlock(channels, out_channels, stride, norm_layer)
                stages.append(block)
                channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(channels, num_classes),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.01)
                nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Map a (N, C, H, W) batch to (N, num_classes) logits."""
        return self.head(self.stages(self.stem(images)))
