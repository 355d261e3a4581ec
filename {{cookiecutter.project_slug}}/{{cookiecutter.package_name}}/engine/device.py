"""Pick the device to train on and move batches to it."""

import os

import torch

from ..errors import UserError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def mps_available() -> bool:
    """True when torch was built with MPS and the machine has it."""
    return hasattr(torch.backends, "mps") and torch.backends.mps.is_available()


def select_device(name: str) -> torch.device:
    """`auto` means cuda, then mps, then cpu; an explicit choice must be available.

    Under torchrun each process drives its own GPU, cuda:LOCAL_RANK.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return local_cuda_device()
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
    return local_cuda_device() if name == "cuda" else torch.device(name)


def local_cuda_device() -> torch.device:
    """cuda:LOCAL_RANK (cuda:0 without torchrun); more processes than GPUs is an error."""
    index, count = int(os.environ.get("LOCAL_RANK", 0)), torch.cuda.device_count()
    if index >= count:
        raise UserError(
            f"this process has LOCAL_RANK {index} but the machine has {count} GPU(s); "
            f"start at most --nproc_per_node={count} processes per machine"
        )
    return torch.device("cuda", index)


def synchronize(device: torch.device) -> None:
    """Wait for queued work on an asynchronous device (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
