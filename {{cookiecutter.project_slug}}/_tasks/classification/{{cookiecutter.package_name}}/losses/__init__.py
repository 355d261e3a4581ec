"""Losses, each an nn.Module so it moves with .to(device) and sits in the graph like a layer."""

from .classification import ClassificationLoss

__all__ = ["ClassificationLoss"]
