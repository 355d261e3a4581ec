"""Classification metrics that stay on the device until the caller asks for a number."""

import torch


def topk_correct(
    logits: torch.Tensor, targets: torch.Tensor, ks: tuple[int, ...] = (1,)
) -> torch.Tensor:
    """Number of samples whose target is among the top-k logits, for each k (a device tensor).

    A k larger than the number of classes counts every sample as correct, as it must.
    """
    max_k = min(max(ks), logits.size(1))
    top = logits.topk(max_k, dim=1).indices  # (batch, max_k), best first
    hits = top.eq(targets.unsqueeze(1))  # at most one True per row
    return torch.stack([hits[:, : min(k, max_k)].any(dim=1).sum() for k in ks])
