"""Losses, each an nn.Module so it moves with .to(device) and sits in the graph like a layer."""

from .segmentation import LOSS_KINDS, SegmentationLoss, inverse_frequency_weights

__all__ = ["LOSS_KINDS", "SegmentationLoss", "inverse_frequency_weights"]
