"""Per-pixel losses for restoration: L1, and Charbonnier (a smooth L1)."""

import torch
from torch import nn

PIXEL_LOSSES = ("l1", "charbonnier")


class PixelLoss(nn.Module):
    """Mean L1 distance, or Charbonnier sqrt(d^2 + eps^2): like L1, but smooth at zero."""

    def __init__(self, kind: str = "l1", eps: float = 1e-3) -> None:
        super().__init__()
        if kind not in PIXEL_LOSSES:
            raise ValueError(f"kind must be one of {', '.join(PIXEL_LOSSES)}, got {kind!r}")
        self.kind, self.eps = kind, eps

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        difference = prediction - target
        if self.kind == "l1":
            return difference.abs().mean()
        return torch.sqrt(difference * difference + self.eps**2).mean()

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}" + (f", eps={self.eps}" if self.kind == "charbonnier" else "")
