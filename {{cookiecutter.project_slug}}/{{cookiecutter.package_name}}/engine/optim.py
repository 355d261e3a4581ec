"""Optimizer and learning-rate schedule (linear warm-up, then cosine, step or constant)."""

import math

import torch
from torch import nn

OPTIMIZERS = ("adamw", "sgd")
SCHEDULERS = ("cosine", "step", "constant")


def build_optimizer(
    model: nn.Module, name: str, lr: float, weight_decay: float, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """AdamW or SGD with Nesterov momentum; no weight decay on biases and norm scales."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")


def lr_factor(step: int, kind: str, warmup_steps: int, total_steps: int) -> float:
    """The multiplier of the base learning rate after `step` optimizer steps."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if kind == "step":  # divide by 10 at half and at three quarters of training
        return 0.1 ** ((progress >= 0.5) + (progress >= 0.75))
    if kind == "constant":
        return 1.0
    raise ValueError(f"unknown scheduler {kind!r}; choose one of {SCHEDULERS}")


def build_scheduler(
    optimizer: torch.optim.Optimizer, kind: str, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-optimizer-step schedule; its state dict is just the step count, so it resumes exactly."""
    if kind not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {kind!r}; choose one of {SCHEDULERS}")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, kind, warmup_steps, total_steps)
    )


def apply_schedule(
    optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LambdaLR
) -> None:
    """Give every parameter group the schedule's rate for the schedule's current step.

    A resumed run's schedule may be longer than the saved one (--epochs raised after the run
    finished): the optimizer state it loaded holds the rate the old schedule ended at, 0 after
    a cosine, which the next step would use. Same formula as LambdaLR, so an unchanged
    schedule gives bitwise the rate it saved.
    """
    step = scheduler.last_epoch
    for group, base_lr, factor in zip(
        optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True
    ):
        group["lr"] = base_lr * factor(step)
