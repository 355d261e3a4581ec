"""Devices and processes: pick the device, and run one script as many processes under torchrun
(process group, DDP, collectives)."""

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

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


T = TypeVar("T")
TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE")


def launched_by_torchrun() -> bool:
    """True in a process that torchrun (or a SLURM script exporting its variables) started."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def is_distributed() -> bool:
    """True while a process group is up."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's global index (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """How many processes train together (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def effective_batch(args: argparse.Namespace, processes: int | None = None) -> int:
    """Samples per optimizer step over all processes (this run's by default): batch x
    accumulation x processes."""
    return args.batch_size * args.accum_steps * (processes or world_size())


def is_main_process() -> bool:
    """Rank 0: the one process that prints, writes TensorBoard, run folders and checkpoints."""
    return rank() == 0


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[None]:
    """Join torchrun's process group for the duration (nccl on CUDA, gloo on the CPU).

    Without torchrun this does nothing. The group is destroyed on the way out, after an
    error or a signal too, so no rank is left waiting in a collective.
    """
    if not launched_by_torchrun() or is_distributed():
        yield
        return
    if device.type not in ("cuda", "cpu"):
        raise UserError(
            f"torchrun needs --device cuda or cpu (got {device.type}: it has no "
            "process-group backend); run `python train.py` without torchrun on this machine"
        )
    if device.type == "cuda":
        torch.cuda.set_device(device)  # before NCCL starts, or every rank would use GPU 0
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    stdout = sys.stdout
    try:
        if not is_main_process():
            # Only rank 0 speaks; the others' stdout would repeat every line N times.
            # Their stderr stays open, so an error on any rank is still seen.
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (closed below)
        yield
    finally:
        if sys.stdout is not stdout:
            sys.stdout.close()
            sys.stdout = stdout
        dist.destroy_process_group()


def wrap_model(model: nn.Module, device: torch.device, sync_batchnorm: bool) -> nn.Module:
    """DDP around `model` when a process group is up (else `model` itself).

    `model` keeps its own identity: checkpoints save it, never the wrapper, so they load
    into a single-process run and back.
    """
    if not is_distributed():
        return model
    if sync_batchnorm:
        if device.type != "cuda":
            raise UserError("--sync-bn needs CUDA GPUs; on the CPU use --norm group instead")
        # In place on the submodules: `model` stays the object that checkpoints save.
        for name, child in list(model.named_children()):
            model.add_module(name, nn.SyncBatchNorm.convert_sync_batchnorm(child))
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def gradient_sync(model: nn.Module, enabled: bool) -> contextlib.AbstractContextManager:
    """DDP's no_sync() when `enabled` is False: accumulation's non-final micro-steps keep
    their gradients local instead of all-reducing them every micro-batch."""
    if enabled:  # the common case, decided before the (slow) attribute lookup on a Module
        return contextlib.nullcontext()
    no_sync = getattr(model, "no_sync", None)  # DDP's (also reached through torch.compile)
    return no_sync() if no_sync is not None else contextlib.nullcontext()


def sum_across_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over all ranks, in place (the identity with one process)."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def max_across_ranks(value: float, device: torch.device) -> float:
    """The largest of every rank's `value`, an int or a float (a host sync: log steps only)."""
    if not is_distributed():
        return value
    tensor = torch.tensor(value, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return type(value)(tensor.item())


def on_main_process(function: Callable[[], T]) -> T:
    """Run `function` on rank 0 only and hand its result (or its UserError) to every rank.

    For what must happen once, like creating the run folder: the other ranks wait here
    instead of racing rank 0 on the file system.
    """
    if not is_distributed():
        return function()
    outcome: list[object] = [None]
    if is_main_process():
        try:
            outcome[0] = ("ok", function())
        except UserError as error:
            outcome[0] = ("error", str(error))
    dist.broadcast_object_list(outcome, src=0)
    status, value = outcome[0]
    if status == "error":
        raise UserError(value)
    return value


def barrier() -> None:
    """Wait until every rank gets here (nothing to wait for with one process)."""
    if is_distributed():
        dist.barrier()


def place_model(
    model: nn.Module, criterion: nn.Module, device: torch.device, args: argparse.Namespace
) -> nn.Module:
    """Move the model and the loss to the device (NHWC with --channels-last); return the model
    the loop runs: wrapped in DDP under torchrun, compiled with --compile."""
    model.to(device)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    criterion.to(device)
    torch.set_float32_matmul_precision("high")  # TF32 matmuls where the GPU has them
    step_model = wrap_model(model, device, args.sync_bn)
    return torch.compile(step_model) if args.compile else step_model
