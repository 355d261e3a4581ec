"""One optimizer step: the optimizer and its schedule, mixed precision, gradient clipping, and
the TrainStep that holds them with the model and the loss."""

import argparse
import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from ..errors import UserError
from .checkpoint import unwrap_model

OPTIMIZERS = ("adamw", "sgd")
SCHEDULERS = ("cosine", "step", "constant")
FEW_STEPS = 200  # below this many optimizer steps in all, a run rarely gets far: say so


# Parameters and the fraction of --lr they learn at (the task's split, e.g. head and backbone).
ParameterGroups = list[tuple[list[nn.Parameter], float]]


def build_optimizer(
    groups: nn.Module | ParameterGroups,
    name: str,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
) -> torch.optim.Optimizer:
    """AdamW or SGD with Nesterov momentum; no weight decay on biases and norm scales.

    `groups` is a model (every parameter at `lr`) or (parameters, lr scale) pairs. Frozen
    parameters stay in the optimizer: without gradients they are skipped, untouched by weight
    decay, and can be thawed later without a new optimizer.
    """
    if isinstance(groups, nn.Module):
        groups = [(list(groups.parameters()), 1.0)]
    param_groups = []
    for parameters, lr_scale in groups:
        decay = [parameter for parameter in parameters if parameter.ndim >= 2]
        no_decay = [parameter for parameter in parameters if parameter.ndim < 2]
        param_groups += [
            {"params": decay, "weight_decay": weight_decay, "lr": lr * lr_scale},
            {"params": no_decay, "weight_decay": 0.0, "lr": lr * lr_scale},
        ]
    # Empty groups are kept: a resumed optimizer must have as many groups as the saved one.
    if name == "adamw":
        return torch.optim.AdamW(param_groups, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(param_groups, lr=lr, momentum=momentum, nesterov=True)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")


def lr_factor(
    step: int,
    kind: str,
    warmup_steps: int,
    total_steps: int,
    anchor: tuple[float, float] | None = None,
) -> float:
    """The multiplier of the base learning rate after `step` optimizer steps (see
    decay_progress for `anchor`)."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    progress = decay_progress(step, warmup_steps, total_steps, anchor)
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if kind == "step":  # divide by 10 at half and at three quarters of training
        return 0.1 ** ((progress >= 0.5) + (progress >= 0.75))
    if kind == "constant":
        return 1.0
    raise ValueError(f"unknown scheduler {kind!r}; choose one of {SCHEDULERS}")


def decay_progress(
    step: int, warmup_steps: int, total_steps: int, anchor: tuple[float, float] | None = None
) -> float:
    """How far (0 to 1) the decay after the warm-up has gone at `step`: linearly from the
    warm-up's end to total_steps, or, with `anchor` = (step, progress), from that progress at
    that step (where the process count changed: see runs.restore_training)."""
    start, done = anchor or (warmup_steps, 0.0)
    return min(done + (step - start) * (1.0 - done) / max(total_steps - start, 1), 1.0)


def warmup_steps_of(args: argparse.Namespace, total_steps: int) -> int:
    """--warmup-steps, but at most a quarter of the run."""
    return min(args.warmup_steps, total_steps // 4)


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    kind: str,
    warmup_steps: int,
    total_steps: int,
    anchor: tuple[float, float] | None = None,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-optimizer-step schedule; its state dict is just the step count, so it resumes exactly."""
    if kind not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {kind!r}; choose one of {SCHEDULERS}")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_curve(kind, warmup_steps, total_steps, anchor)
    )


def lr_curve(
    kind: str, warmup_steps: int, total_steps: int, anchor: tuple[float, float] | None = None
) -> Callable[[int], float]:
    """lr_factor as a function of the step alone (what LambdaLR calls)."""
    return lambda step: lr_factor(step, kind, warmup_steps, total_steps, anchor)


def refit_schedule(
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    args: argparse.Namespace,
    total_steps: int,
    anchor: tuple[float, float],
) -> None:
    """Make the schedule end at `total_steps`, its decay going on from `anchor`; the step
    count (the schedule's state) stays as it is."""
    curve = lr_curve(args.scheduler, warmup_steps_of(args, total_steps), total_steps, anchor)
    scheduler.lr_lambdas = [curve] * len(scheduler.lr_lambdas)


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


AMP_CHOICES = ("auto", "off", "bf16", "fp16")


def resolve_amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """auto: bf16 on a CUDA GPU that supports it, else off; fp16 needs an accelerator."""
    if amp == "auto":
        use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if use_bf16 else None
    if amp == "fp16" and device.type == "cpu":
        raise UserError("--amp fp16 needs a GPU (cuda or mps); on the CPU use --amp bf16 or off")
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


class MixedPrecision:
    """Autocast for the forward pass and, for fp16, a GradScaler for the backward pass.

    bf16 has float32's range and needs no scaling; fp16 does, or small gradients flush to
    zero. With both off everything runs in float32 and the scaler passes calls through.
    """

    def __init__(self, amp: str, device: torch.device) -> None:
        self.device_type = device.type
        self.dtype = resolve_amp_dtype(amp, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context for the forward pass and the loss."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor, group_size: int = 1) -> None:
        """Backward pass of loss / group_size (the mean over an accumulation group), scaled for
        fp16; a group of one skips the division and its autograd node."""
        if group_size > 1:
            loss = loss / group_size
        self.scaler.scale(loss).backward()

    def step(self, model: nn.Module, optimizer: torch.optim.Optimizer, grad_clip: float) -> None:
        """Clip the gradient norm if asked, step the optimizer, update the fp16 scale."""
        if grad_clip > 0:
            self.scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        self.scaler.step(optimizer)  # with fp16, skips the step if gradients overflowed
        self.scaler.update()

    def state_dict(self) -> dict | None:
        """The scaler's state for a checkpoint (None when it is not in use)."""
        return self.scaler.state_dict() if self.scaler.is_enabled() else None

    def load_state_dict(self, state: dict | None) -> None:
        """Restore the scaler's state from a checkpoint, if both use one."""
        if state and self.scaler.is_enabled():
            self.scaler.load_state_dict(state)


def build_optimization(
    groups: nn.Module | ParameterGroups, batches_per_epoch: int, args: argparse.Namespace
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """The optimizer over `groups` (a model, or the task's (parameters, lr scale) pairs) and
    its schedule, stepped once per optimizer step. The schedule spans --epochs; --max-steps
    only stops the run, so a stopped run resumes on the same curve."""
    optimizer = build_optimizer(groups, args.optimizer, args.lr, args.weight_decay)
    total_steps = math.ceil(batches_per_epoch / args.accum_steps) * args.epochs
    if total_steps < FEW_STEPS and getattr(args, "resume", None) is None:  # said at the start
        tqdm.write(
            f"note: this run makes only {total_steps} optimizer steps; a small data set "
            "usually needs more --epochs or a smaller --batch-size"
        )
    warmup_steps = warmup_steps_of(args, total_steps)
    return optimizer, build_scheduler(optimizer, args.scheduler, warmup_steps, total_steps)


def build_ema(model: nn.Module, decay: float) -> AveragedModel | None:
    """--ema: an exponential moving average of `model`'s weights and buffers (batch-norm
    statistics too), or None when decay is 0.

    Build it after the model is on its device: the average is a copy of the plain model
    (never the DDP or compiled wrapper). Its step count, n_averaged, stays on the CPU, so
    the checks AveragedModel makes at each update never wait for the GPU. Under torchrun
    every rank averages the same weights (DDP keeps them equal), so the copies stay equal.
    """
    if decay == 0:
        return None
    return AveragedModel(
        unwrap_model(model), multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True
    )


@dataclass
class TrainStep:
    """What one optimizer step needs: the model the loop runs (DDP-wrapped and compiled when
    asked), its loss, the optimizer and its schedule, mixed precision, clipping, accumulation.

    The loop does the forward and backward pass itself, so the recipe stays visible there;
    this object holds the parts and does the update.
    """

    model: nn.Module
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    device: torch.device
    precision: MixedPrecision | None = None  # None: float32 (MixedPrecision "off")
    grad_clip: float = 0.0  # 0: no clipping
    accum_steps: int = 1  # micro-batches per optimizer step
    channels_last: bool = False  # NHWC batches, as the model was put in
    ema: AveragedModel | None = None  # --ema: updated after every optimizer step

    def __post_init__(self) -> None:
        self.precision = self.precision or MixedPrecision("off", self.device)
        self.layout = torch.channels_last if self.channels_last else torch.contiguous_format

    def to_device(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The batch on the device; non-blocking, so a pinned batch's copy overlaps compute.
        --channels-last lays out (N, C, H, W) batches; inputs of other ranks keep theirs."""
        layout = self.layout if inputs.dim() == 4 else torch.preserve_format
        inputs = inputs.to(self.device, non_blocking=True, memory_format=layout)
        return inputs, targets.to(self.device, non_blocking=True)

    def update_ema(self) -> None:
        """Average the new weights into the EMA (--ema; nothing without it)."""
        if self.ema is not None:
            self.ema.update_parameters(unwrap_model(self.model))
