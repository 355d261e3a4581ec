"""Checkpoints: plain state dicts written atomically, read back with weights_only=True.

A checkpoint holds only tensors and plain Python types (no pickled classes), so loading it
never runs code from the file.
"""

import contextlib
import math
import pickle
import random
import re
import shutil
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from ..errors import DivergedError, UserError
from .devices import is_main_process
from .files import atomic_write, first_line, write_failure

FORMAT_VERSION = 1
REQUIRED_KEYS = (
    "format_version",
    "model",
    "model_config",
    "optimizer",
    "scheduler",
    "state",
    "args",
    "rng",
)
# Every entry the engine writes; any other entry is the task's (Task.checkpoint_extras).
ENGINE_KEYS = (
    *REQUIRED_KEYS, "task", "scaler", "ema", "ema_updates", "trackers",
)  # fmt: skip


@dataclass
class TrainState:
    """Where training stands; enough, with the RNG states, to continue exactly."""

    epoch: int = 0  # the epoch in progress (the next one to run at an epoch boundary)
    step_in_epoch: int = 0  # optimizer steps already done within `epoch`
    global_step: int = 0  # optimizer steps since the start of the run
    best_metric: float | None = None  # best validation accuracy so far
    world_size: int = 1  # processes training together (the effective batch depends on it)
    # --keep-top-k: the epoch checkpoints kept, best first, as {"file", "epoch", "value"}
    kept: list[dict] = field(default_factory=list)
    # Samples of the epoch's order (a function of seed and epoch) trained on so far, by all
    # processes together: where a resumed run, with any process count, goes on from.
    samples_in_epoch: int = 0
    # After a change of the process count: [step, progress], the learning-rate decay's
    # progress (0 to 1) at that step, from which it goes on to the end of the run.
    lr_anchor: list[float] | None = None

    def next_epoch(self) -> None:
        """Move to the start of the next epoch."""
        self.epoch, self.step_in_epoch, self.samples_in_epoch = self.epoch + 1, 0, 0


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
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: TrainState,
    args: dict,
    scaler: dict | None = None,
    task: str | None = None,
    ema: AveragedModel | None = None,
    trackers: dict[str, str] | None = None,
    extras: dict | None = None,
) -> None:
    """Write everything needed to evaluate the model or to continue training, atomically;
    `extras` are the task's own entries (Task.checkpoint_extras: e.g. its classes).

    Weights that are no longer finite are never written (a DivergedError instead), so a
    diverged run cannot replace its last good checkpoint.
    """
    weights = unwrap_model(model).state_dict()
    floats = [tensor.isfinite().all() for tensor in weights.values() if tensor.is_floating_point()]
    if floats and not torch.stack(floats).all():  # one device sync per save
        raise DivergedError(f"the model's weights stopped being finite by step {state.global_step}")
    payload = {
        **(extras or {}),
        "format_version": FORMAT_VERSION,
        "task": task,  # which kind of project trained it (test.py refuses another task's)
        "model": weights,
        "model_config": model_config,  # the model's constructor arguments
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler,  # the fp16 GradScaler's state dict, or None
        # --ema: the averaged weights (a plain state dict, keyed as "model") and how many
        # optimizer steps they average; None without --ema
        "ema": unwrap_model(ema.module).state_dict() if ema is not None else None,
        "ema_updates": int(ema.n_averaged) if ema is not None else None,
        "state": asdict(state),
        "args": args,
        "rng": capture_rng_state(),
        # the MLflow / W&B run ids ({"mlflow": id}), so a resumed run continues those runs
        "trackers": dict(trackers or {}),
    }
    atomic_save(payload, path)


def save_epoch_checkpoints(
    checkpoint_dir: Path, is_best: bool, epoch_file: Path | None = None, **parts
) -> None:
    """Save last.pt (parts as for save_checkpoint) and, when validation improved, best.pt;
    with `epoch_file` (a new --keep-top-k checkpoint) that file first, then last.pt as its copy.

    The new epoch file comes before last.pt, whose state lists the kept files: a crash in
    between leaves one file too many (the next epoch removes it), never a listed one missing.
    """
    if epoch_file is None:
        save_checkpoint(checkpoint_dir / "last.pt", **parts)
    else:
        save_checkpoint(epoch_file, **parts)
        atomic_copy(epoch_file, checkpoint_dir / "last.pt")
    if is_best:  # the same bytes: copy rather than serialise twice
        atomic_copy(checkpoint_dir / "last.pt", checkpoint_dir / "best.pt")


def atomic_save(payload: dict, path: Path) -> None:
    """torch.save to a temporary file beside `path`, fsync it, then rename it over `path`.

    A crash at any moment leaves either the old file or the new one, never half of one; a
    failed write (a full disk) is a UserError naming the last good checkpoint.
    """
    path = Path(path)
    try:
        atomic_write(path, lambda file: torch.save(payload, file))
    except OSError as error:
        raise UserError(checkpoint_write_failure(path, error, tensor_bytes(payload))) from None


def atomic_copy(source: Path, target: Path) -> None:
    """Copy a finished checkpoint (e.g. last.pt to best.pt) with the same guarantee."""
    target = Path(target)
    try:
        with open(source, "rb") as original:
            atomic_write(target, lambda file: shutil.copyfileobj(original, file))
    except OSError as error:
        raise UserError(
            checkpoint_write_failure(target, error, Path(source).stat().st_size)
        ) from None


def tensor_bytes(payload: object) -> int:
    """The bytes of every tensor in a (nested) checkpoint payload: about its size on disk."""
    if isinstance(payload, torch.Tensor):
        return payload.numel() * payload.element_size()
    if isinstance(payload, dict):
        return sum(tensor_bytes(value) for value in payload.values())
    if isinstance(payload, list | tuple):
        return sum(tensor_bytes(value) for value in payload)
    return 0


def checkpoint_write_failure(path: Path, error: OSError, needed: int | None) -> str:
    """The sentence for a checkpoint that could not be written: why, and the last good one."""
    last = path.parent / "last.pt"  # always written first, and never replaced by a failed write
    kept = (
        f"the last good checkpoint is {last}: continue from it with --resume {last}"
        if last.is_file()
        else "no checkpoint of this run was saved yet"
    )
    return f"{write_failure(path, error, needed)}; {kept}"


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


def task_extras(checkpoint: dict) -> dict:
    """The task's own entries of a checkpoint: every entry the engine does not write."""
    return {key: value for key, value in checkpoint.items() if key not in ENGINE_KEYS}


def require_task(checkpoint: dict, path: str | Path, task: str) -> None:
    """Refuse a checkpoint another task's project trained (its model and metrics differ). A
    checkpoint written before checkpoints named their task is taken as this project's: its
    weights must still fit the model, which loading them checks."""
    trained_for = checkpoint.get("task") or task
    if trained_for != task:
        raise UserError(
            f"{path} was trained for the {trained_for} task, not this project's {task}; use it "
            f"with the project that trained it (one generated with task={trained_for})"
        )
    checkpoint["task"] = trained_for


def load_model_weights(
    model: nn.Module, checkpoint: dict, path: str | Path, weights: str = "model"
) -> None:
    """Load the checkpoint's weights ("model", or "ema": the averaged ones) into `model`; a
    different architecture is a UserError."""
    try:
        unwrap_model(model).load_state_dict(checkpoint[weights])
    except RuntimeError as error:
        detail = str(error).splitlines()[1].strip() if "\n" in str(error) else str(error)
        raise UserError(
            f"{path} holds weights of another model or model size "
            f"({checkpoint['model_config']}; {detail[:160]}); resume with matching flags "
            "or start a new run"
        ) from None


# --keep-top-k's files: epoch-<epoch>-<metric>-<value>.pt, e.g. epoch-003-accuracy-0.9512.pt
EPOCH_CHECKPOINT = re.compile(r"epoch-\d{3,}-\w+-[-+.\w]+\.pt")


def epoch_checkpoint_name(epoch: int, metric_name: str, value: float) -> str:
    """The file name of an epoch's checkpoint: its number and validation metric, readable."""
    return f"epoch-{epoch:03d}-{metric_name}-{value:.4f}.pt"


def top_k(entries: list[dict], k: int, higher_is_better: bool) -> list[dict]:
    """The k best entries ({"value", "epoch", ...}), best first; a tie keeps the earlier epoch,
    a non-finite value ranks last."""

    def rank(entry: dict) -> tuple[float, int]:
        value = entry["value"]
        if not math.isfinite(value):
            return math.inf, entry["epoch"]
        return (-value if higher_is_better else value), entry["epoch"]

    return sorted(entries, key=rank)[:k]


def remove_unkept_epoch_checkpoints(folder: Path, kept: list[dict]) -> None:
    """Delete the epoch checkpoints in `folder` that `kept` does not list (the one that just fell
    out of the top k, or one a crash left before last.pt listed its successor)."""
    names = {entry["file"] for entry in kept}
    for path in folder.glob("epoch-*.pt"):
        if EPOCH_CHECKPOINT.fullmatch(path.name) and path.name not in names:
            path.unlink(missing_ok=True)


class RunCheckpoints:
    """A run's last.pt and best.pt, and everything they hold besides the training state.

    Only rank 0 writes: under DDP every rank holds the same weights.
    """

    def __init__(
        self,
        folder: Path,
        state: TrainState,
        scaler: Callable[[], dict | None],
        keep_top_k: int = 0,
        **parts,
    ) -> None:
        self.folder, self.state, self.scaler, self.parts = folder, state, scaler, parts
        self.last = folder / "last.pt"
        self.keep_top_k = keep_top_k  # 0: no epoch checkpoints besides last.pt and best.pt
        self.last_save_seconds: float | None = None  # how long the latest save took

    def save_last(self) -> None:
        """last.pt, as of now (a stop, or --ckpt-every-steps within an epoch), timed."""
        if is_main_process():
            started = time.perf_counter()
            save_checkpoint(self.last, state=self.state, scaler=self.scaler(), **self.parts)
            self.last_save_seconds = time.perf_counter() - started

    def save_epoch(self, value: float, higher_is_better: bool, metric_name: str = "metric") -> None:
        """last.pt at the end of an epoch and, when `value` (the validation metric that picks
        best.pt) beats the best so far, best.pt; the state keeps the best value. With
        --keep-top-k, also the epoch's own checkpoint while it is among the K best."""
        best = self.state.best_metric
        is_best = best is None or (value > best if higher_is_better else value < best)
        if is_best:
            self.state.best_metric = value
        epoch_file = None
        if self.keep_top_k:
            name = epoch_checkpoint_name(self.state.epoch, metric_name, value)
            entry = {"file": name, "epoch": self.state.epoch, "value": value}
            self.state.kept = top_k([*self.state.kept, entry], self.keep_top_k, higher_is_better)
            epoch_file = self.folder / name if entry in self.state.kept else None
        if is_main_process():
            started = time.perf_counter()
            parts = {"state": self.state, "scaler": self.scaler(), **self.parts}
            save_epoch_checkpoints(self.folder, is_best, epoch_file, **parts)
            self.last_save_seconds = time.perf_counter() - started
            if self.keep_top_k:  # only now: the files that fell out are no longer listed
                remove_unkept_epoch_checkpoints(self.folder, self.state.kept)

    @contextlib.contextmanager
    def explain_divergence(self) -> Iterator[None]:
        """Turn a DivergedError into one sentence that names the last good checkpoint."""
        try:
            yield
        except DivergedError as error:
            kept = (
                f"its last good checkpoint is {self.last}"
                if self.last.exists()
                else "no checkpoint was saved"
            )
            raise DivergedError(
                f"{error}, so the run stopped; {kept}; lower --lr (or lengthen --warmup-steps) "
                "and start again"
            ) from None
