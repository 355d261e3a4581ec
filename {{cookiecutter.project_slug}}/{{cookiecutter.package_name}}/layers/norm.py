"""The normalisation layers a model can be built with, chosen by name (`--norm`)."""

import math
from collections.abc import Callable

from torch import nn

NormLayer = Callable[[int], nn.Module]
NORMS = ("batch", "group")
GROUPS = 32  # GroupNorm's usual group count (Wu & He, 2018), fewer for narrow layers


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups that divide `channels`."""
    return nn.GroupNorm(math.gcd(channels, GROUPS), channels)


def norm_layer_for(name: str) -> NormLayer:
    """BatchNorm2d for "batch"; GroupNorm for "group", which uses no batch statistics, so it
    behaves the same at any per-process batch size (small batches per GPU, CPU DDP)."""
    if name == "batch":
        return nn.BatchNorm2d
    if name == "group":
        return group_norm
    raise ValueError(f"unknown norm {name!r}; choose one of {', '.join(NORMS)}")
