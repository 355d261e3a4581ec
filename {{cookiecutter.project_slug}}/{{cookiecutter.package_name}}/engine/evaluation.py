"""Evaluation on a held-out split, shared by train.py (every epoch) and test.py."""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..ops import topk_correct
from .distributed import sum_across_ranks

# Called with each batch as (images, logits, targets), as test.py's task hook expects.
BatchHook = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]


@torch.inference_mode()
def evaluate(
    model: nn.Module, loader: DataLoader, device: torch.device, on_batch: BatchHook | None = None
) -> dict[str, float]:
    """Mean cross-entropy (without label smoothing), top-1 and top-5 accuracy over `loader`.

    Sums stay on the device (float32 and int64: MPS has no float64) and are read once, at
    the end. Under torchrun each rank evaluates its own shard and the sums are added up over
    the ranks, so every rank gets the numbers one process would get on the whole split.
    Pass the plain model, not DDP: the shards may differ by one batch, and DDP's forward
    would wait for a rank that has none left.
    """
    model.eval()
    loss_sum = torch.zeros((), device=device)
    counts = torch.zeros(3, device=device, dtype=torch.int64)  # top-1, top-5, samples
    for images, targets in loader:
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        logits = model(images)
        loss_sum += F.cross_entropy(logits, targets, reduction="sum")
        counts[:2] += topk_correct(logits, targets, ks=(1, 5))
        counts[2] += targets.size(0)
        if on_batch is not None:
            on_batch(images, logits, targets)
    sum_across_ranks(loss_sum)
    top1, top5, count = sum_across_ranks(counts).tolist()
    if count == 0:
        raise ValueError("the evaluation split is empty")
    return {
        "loss": loss_sum.item() / count,
        "accuracy": top1 / count,
        "top5_accuracy": top5 / count,
        "samples": count,
    }
