"""Checkpoints: plain state dicts written atomically, read back with weights_only=True.

A checkpoint holds only tensors and plain Python types (no pickled classes), so loading it
never runs code from the file.
"""

import os
import pickle
import random
import re
import shutil
import textwrap
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import DivergedError, UserError

FORMAT_VERSION = 1
REQUIRED_KEYS = (
    "format_version",
    "model",
    "model_config",
    "classes",
    "optimizer",
    "scheduler",
    "state",
    "args",
    "rng",
)


@dataclass
class TrainState:
    """Where training stands; enough, with the RNG states, to continue exactly."""

    epoch: int = 0  # the epoch in progress (the next one to run at an epoch boundary)
    step_in_epoch: int = 0  # optimizer steps already done within `epoch`
    global_step: int = 0  # optimizer steps since the start of the run
    best_metric: float | None = None  # best validation accuracy so far
    world_size: int = 1  # processes training together (each one's share of an epoch depends on it)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain model inside DDP and torch.compile wrappers, so saved keys have no prefixes."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile
            model = model._orig_mod
        else:
            return model


def capture_rng_state() -> dict:
    """The python, numpy and torch (CPU and every CUDA device) random states as plain types."""
    _, numpy_key, numpy_pos, numpy_has_gauss, numpy_gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [numpy_key.tolist(), numpy_pos, numpy_has_gauss, numpy_gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict) -> None:
    """Put back what capture_rng_state() saved (CUDA only when the device count matches)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    key, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(("MT19937", np.array(key, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: Path,
    *,
    model: nn.Module,
    model_config: dict,
    classes: list[str],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: TrainState,
    args: dict,
    scaler: dict | None = None,
    task: str | None = None,
) -> None:
    """Write everything needed to evaluate the model or to continue training, atomically.

    Weights that are no longer finite are never written (a DivergedError instead), so a
    diverged run cannot replace its last good checkpoint.
    """
    weights = unwrap_model(model).state_dict()
    floats = [tensor.isfinite().all() for tensor in weights.values() if tensor.is_floating_point()]
    if floats and not torch.stack(floats).all():  # one device sync per save
        raise DivergedError(f"the model's weights stopped being finite by step {state.global_step}")
    payload = {
        "format_version": FORMAT_VERSION,
        "task": task,  # which kind of project trained it (test.py refuses another task's)
        "model": weights,
        "model_config": model_config,  # the model's constructor arguments
        "classes": classes,  # class index -> name
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler,  # the fp16 GradScaler's state dict, or None
        "state": asdict(state),
        "args": args,
        "rng": capture_rng_state(),
    }
    atomic_save(payload, path)


def save_epoch_checkpoints(checkpoint_dir: Path, is_best: bool, **parts) -> None:
    """Save last.pt (parts as for save_checkpoint) and, when validation improved, best.pt."""
    save_checkpoint(checkpoint_dir / "last.pt", **parts)
    if is_best:  # the same bytes: copy rather than serialise twice
        atomic_copy(checkpoint_dir / "last.pt", checkpoint_dir / "best.pt")


def atomic_save(payload: dict, path: Path) -> None:
    """torch.save to a temporary file beside `path`, fsync it, then rename it over `path`.

    A crash at any moment leaves either the old file or the new one, never half of one.
    """
    _atomic_write(Path(path), lambda file: torch.save(payload, file))


def atomic_copy(source: Path, target: Path) -> None:
    """Copy a finished checkpoint (e.g. last.pt to best.pt) with the same guarantee."""
    with open(source, "rb") as original:
        _atomic_write(Path(target), lambda file: shutil.copyfileobj(original, file))


def _atomic_write(path: Path, write) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def load_checkpoint(path: str | Path, task: str | None = None) -> dict:
    """Read a checkpoint onto the CPU with weights_only=True; a bad file, or one of another
    task than `task` (when given), is a UserError."""
    path = Path(path)
    if not path.exists():
        raise UserError(
            f"checkpoint {path} does not exist; give the path of a .pt file in a run's "
            "checkpoints/ folder"
        )
    if path.is_dir():
        raise UserError(f"{path} is a folder; give the checkpoint file in it, e.g. {path}/last.pt")
    if not zipfile.is_zipfile(path):  # torch.save has written zip archives since torch 1.6
        raise UserError(
            f"{path} is not a readable checkpoint (truncated, or not written by torch.save); "
            "use another checkpoint, e.g. the run's checkpoints/best.pt"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged archive or pickled objects can fail in many ways
        if refused_objects(error):
            raise UserError(
                f"{path} holds Python objects other than tensors and plain values, so it was not "
                "loaded (loading them could run code); use a checkpoint that train.py wrote, "
                "e.g. the run's checkpoints/best.pt"
            ) from None
        raise UserError(
            f"{path} is not a readable checkpoint ({first_line(error)}); "
            "use a checkpoint that train.py wrote, e.g. the run's checkpoints/best.pt"
        ) from None
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in REQUIRED_KEYS):
        raise UserError(
            f"{path} is a torch file but not a checkpoint of this project (it lacks "
            f"{', '.join(REQUIRED_KEYS)}); use a .pt file that train.py wrote"
        )
    if checkpoint["format_version"] > FORMAT_VERSION:
        raise UserError(
            f"{path} has checkpoint format {checkpoint['format_version']}, newer than the "
            f"{FORMAT_VERSION} this code reads; update the project's code to load it"
        )
    if task is not None:
        require_task(checkpoint, path, task)
    return checkpoint


def refused_objects(error: Exception) -> bool:
    """True when torch.load(weights_only=True) refused a file for pickling a class or function."""
    return isinstance(error, pickle.UnpicklingError) and "GLOBAL" in str(error)


def checkpoint_task(checkpoint: dict) -> str:
    """The task a checkpoint was trained for: its "task", or for one saved before that key,
    told by its model config (only a classifier has num_classes)."""
    if checkpoint.get("task"):
        return checkpoint["task"]
    return "classification" if "num_classes" in checkpoint["model_config"] else "image_to_image"


def require_task(checkpoint: dict, path: str | Path, task: str) -> None:
    """Refuse a checkpoint another task's project trained (its model and metrics differ)."""
    trained_for = checkpoint_task(checkpoint)
    if trained_for != task:
        raise UserError(
            f"{path} was trained for the {trained_for} task, not this project's {task}; use it "
            f"with the project that trained it (one generated with task={trained_for})"
        )


def first_line(error: Exception) -> str:
    """The first line of an error message without terminal colour codes, at most 120
    characters, cut between words."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
    line = (text.splitlines() or [type(error).__name__])[0]
    return textwrap.shorten(line, 120, placeholder=" ...")


def load_model_weights(model: nn.Module, checkpoint: dict, path: str | Path) -> None:
    """Load the checkpoint's weights into `model`; a different architecture is a UserError."""
    try:
        unwrap_model(model).load_state_dict(checkpoint["model"])
    except RuntimeError as error:
        detail = str(error).splitlines()[1].strip() if "\n" in str(error) else str(error)
        raise UserError(
            f"{path} holds weights of another model or number of classes "
            f"({checkpoint['model_config']}; {detail[:160]}); resume with matching flags "
            "or start a new run"
        ) from None
