"""Losses, each an nn.Module so it moves with .to(device) and sits in the graph like a layer."""

from .perceptual import VGGPerceptualLoss, fetch_imagenet_weights, imagenet_weights_cached
from .pixel import PIXEL_LOSSES, PixelLoss
from .restoration import RestorationLoss

__all__ = [
    "PIXEL_LOSSES",
    "PixelLoss",
    "RestorationLoss",
    "VGGPerceptualLoss",
    "fetch_imagenet_weights",
    "imagenet_weights_cached",
]
