"""Evaluation on a held-out split, shared by train.py (every epoch) and test.py."""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..ops import topk_correct


@torch.inference_mode()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device) -> dict[str, float]:
    """Mean cross-entropy (without label smoothing), top-1 and top-5 accuracy over `loader`.

    Sums stay on the device (float32 and int64: MPS has no float64) and are read once, at
    the end.
    """
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros(2, device=device, dtype=torch.int64)
    count = 0
    for images, targets in loader:
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        logits = model(images)
        loss_sum += F.cross_entropy(logits, targets, reduction="sum")
        correct += topk_correct(logits, targets, ks=(1, 5))
        count += targets.size(0)
    if count == 0:
        raise ValueError("the evaluation split is empty")
    top1, top5 = correct.tolist()
    return {
        "loss": loss_sum.item() / count,
        "accuracy": top1 / count,
        "top5_accuracy": top5 / count,
        "samples": count,
    }
