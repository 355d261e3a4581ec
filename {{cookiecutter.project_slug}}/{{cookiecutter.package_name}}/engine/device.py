"""Pick the device to train on and move batches to it."""

import torch

from .errors import UserError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def mps_available() -> bool:
    """True when torch was built with MPS and the machine has it."""
    return hasattr(torch.backends, "mps") and torch.backends.mps.is_available()


def select_device(name: str) -> torch.device:
    """`auto` means cuda, then mps, then cpu; an explicit choice must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"--device cuda was asked for, but this torch {torch.__version__} sees no CUDA GPU; "
            "use --device cpu (or auto), or install a CUDA build of torch on a machine with a GPU"
        )
    if name == "mps" and not mps_available():
        raise UserError(
            "--device mps was asked for, but MPS is not available here (it needs Apple silicon "
            "and a macOS build of torch); use --device cpu (or auto)"
        )
    if name not in DEVICE_CHOICES:
        raise UserError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    return torch.device(name)


def synchronize(device: torch.device) -> None:
    """Wait for queued work on an asynchronous device (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
