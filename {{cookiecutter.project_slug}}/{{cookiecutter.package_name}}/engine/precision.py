"""Mixed precision: the dtype autocast runs the forward pass in, and fp16's loss scaler."""

import contextlib

import torch
from torch import nn

from ..errors import UserError

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
