"""Evaluation on a held-out split, shared by train.py (every epoch) and test.py."""

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..ops import psnr, ssim
from .distributed import sum_across_ranks

# Called with each batch as (corrupted, output, target); test.py saves samples this way.
BatchHook = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]


@torch.inference_mode()
def evaluate(
    model: nn.Module, loader: DataLoader, device: torch.device, on_batch: BatchHook | None = None
) -> dict[str, float]:
    """Mean L1 loss, PSNR and SSIM of the model's outputs, and of the corrupted inputs.

    The inputs' scores are the baseline a model must beat. Outputs are clipped to [0, 1]
    first, as a saved image would be. Sums stay on the device (float32: MPS has no float64)
    and are read once, at the end. Under torchrun each rank evaluates its own shard and the
    sums are added up over the ranks; pass the plain model, not DDP (the shards may differ by
    one batch, and DDP's forward would wait for a rank that has none left).
    """
    model.eval()
    # loss, psnr, ssim, psnr_input, ssim_input and the image count, summed over images
    sums = torch.zeros(6, device=device)
    for corrupted, target in loader:
        corrupted = corrupted.to(device, non_blocking=True)
        target = target.to(device, non_blocking=True)
        output = model(corrupted).float().clamp(0.0, 1.0)
        sums += torch.stack(
            [
                (output - target).abs().flatten(1).mean(dim=1).sum(),
                psnr(output, target).sum(),
                ssim(output, target).sum(),
                psnr(corrupted, target).sum(),
                ssim(corrupted, target).sum(),
                torch.tensor(float(target.size(0)), device=device),
            ]
        )
        if on_batch is not None:
            on_batch(corrupted, output, target)
    *totals, count = sum_across_ranks(sums).tolist()
    if count == 0:
        raise ValueError("the evaluation split is empty")
    loss, psnr_mean, ssim_mean, psnr_input, ssim_input = (total / count for total in totals)
    return {
        "loss": loss,
        "psnr": psnr_mean,
        "ssim": ssim_mean,
        "psnr_input": psnr_input,
        "ssim_input": ssim_input,
        "samples": int(count),
    }
