"""Inference: a trained model as a function of input batches, and what it needs to be fed.

A model card (a dict of plain values, JSON-able) says what a model file is: its task, the
config that builds it, the task's own entries of the checkpoint (e.g. its classes and how
inputs are fed) and the training settings the task needs to predict.
predict.py reads it from a checkpoint or from an exported file (engine/exports.py writes it into
each format), so a deployed model carries everything a prediction needs.
"""

import reprlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..errors import UserError
from ..input_files import InputFile
from .checkpoint import load_checkpoint, load_model_weights, task_extras
from .files import first_line
from .loader import ignore_stop_signals
from .task_base import Task

CARD_VERSION = 1  # bump when a card's keys change meaning


@dataclass
class Predictor:
    """A model ready to predict: `run` maps a float32 batch on `device` to the model's output
    (float32, on `device`), without autograd; `card` says how to feed it and read it."""

    run: Callable[[torch.Tensor], torch.Tensor]
    card: dict
    device: torch.device


def model_card(checkpoint: dict, path: str | Path, task: Task) -> dict:
    """The model card of a checkpoint: the engine's fields, the task's own entries of the
    checkpoint, and the training flags the task needs at prediction time (PREDICT_SETTINGS)."""
    train_args, state = checkpoint["args"], checkpoint["state"]
    return {
        **task_extras(checkpoint),
        "card_version": CARD_VERSION,
        "task": checkpoint["task"],  # load_checkpoint names it (this task for an older one)
        "model_config": checkpoint["model_config"],
        "settings": {name: train_args.get(name) for name in task.PREDICT_SETTINGS},
        # A run trained with --ema measured (and picked best.pt by) its average of the weights.
        "weights": "ema" if checkpoint.get("ema") is not None else "model",
        "checkpoint": str(path),
        "epoch": state["epoch"],
        "global_step": state["global_step"],
    }


# ------------------------------------------------------------------------------ Card checks
def check_card(card: object, source: str | Path, task: Task) -> dict:
    """`card` when each field has the type and range this project writes (the task checks its
    own) and its model_config builds the network; a card edited by hand, damaged or of another
    version is a UserError."""
    problem = card_problem(card) or task.card_problem(card)
    problem = problem or model_config_problem(card["model_config"], task.build_model)
    if problem is not None:
        raise UserError(
            f"the model card of {source} is not usable: {problem}; use the file as export.py "
            "or train.py wrote it, or export the checkpoint again"
        )
    return card


def card_problem(card: object) -> str | None:
    """What is wrong with the engine's fields of a card (but the model config), or None."""
    if not isinstance(card, dict):
        return "it is not a JSON object"
    if card.get("card_version") != CARD_VERSION:
        return (
            f"card_version is {reprlib.repr(card.get('card_version'))}, not {CARD_VERSION} "
            f"(the version this project reads)"
        )
    expected = {"task": str, "model_config": dict, "settings": dict, "epoch": int,
                "global_step": int}  # fmt: skip
    for key, kind in expected.items():
        if not isinstance(card.get(key), kind) or isinstance(card.get(key), bool):
            return f"{key} is {reprlib.repr(card.get(key))}, not a {kind.__name__}"
    if card.get("weights") not in ("model", "ema"):
        return f'weights is {reprlib.repr(card.get("weights"))}, not "model" or "ema"'
    return None


def model_config_problem(config: dict, build_model: Callable) -> str | None:
    """Why the task's network cannot be built from `config`, or None. Built on the meta device:
    the constructor checks every argument, and no memory is taken whatever sizes it names."""
    try:
        with torch.device("meta"):
            build_model(config)
    except (TypeError, ValueError, KeyError, OverflowError, UserError) as error:
        reason = first_line(error)
        return f"model_config {reprlib.repr(config)} does not build the network ({reason})"
    return None


def load_checkpoint_model(path: Path, task: Task) -> tuple[nn.Module, dict]:
    """The checkpoint's network in eval mode on the CPU (its EMA weights when it has them),
    and its model card."""
    checkpoint = load_checkpoint(path, task.NAME)
    card = check_card(model_card(checkpoint, path, task), path, task)
    model = task.build_model(card["model_config"])
    load_model_weights(model, checkpoint, path, card["weights"])
    return model.eval(), card


def eager_predictor(model: nn.Module, card: dict, device: torch.device) -> Predictor:
    """A Predictor of an nn.Module: eval mode, on `device`, under inference_mode."""
    model = model.eval().to(device)

    @torch.inference_mode()
    def run(inputs: torch.Tensor) -> torch.Tensor:
        return model(inputs).float()

    return Predictor(run, card, device)


# ------------------------------------------------------------------------------ Input files
@dataclass
class InputGroup:
    """Inputs of one shape, stacked: one forward pass. `indices` are their input positions."""

    indices: list[int]
    inputs: list[InputFile]
    batch: torch.Tensor  # (N, ...) float32


@dataclass
class PredictionBatch:
    """A loader batch: its readable inputs grouped by shape, and the inputs that failed."""

    groups: list[InputGroup] = field(default_factory=list)
    failures: list[tuple[int, InputFile, str]] = field(default_factory=list)  # with the reason

    def pin_memory(self) -> "PredictionBatch":
        """Page-locked copies, so copies to the GPU overlap compute (DataLoader calls this)."""
        for group in self.groups:
            group.batch = group.batch.pin_memory()
        return self

    def to(self, device: torch.device) -> "PredictionBatch":
        """The same batch with its inputs on `device`."""
        for group in self.groups:
            group.batch = group.batch.to(device, non_blocking=True)
        return self


class PredictionInputs(Dataset):
    """Input files read by the task's reader; an unreadable one is a reason, not a crash."""

    def __init__(self, files: list[InputFile], read: Callable[[Path], torch.Tensor]) -> None:
        self.files, self.read = files, read

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        path = self.files[index].path
        try:
            return index, self.read(path), None
        except UserError as error:  # the reader's sentence names the file
            return index, None, str(error)
        except (OSError, ValueError) as error:
            return index, None, f"cannot use the input {path} ({first_line(error)})"


class CollatePredictions:
    """A collate_fn that stacks same-shaped samples into groups and keeps failures aside (a
    class, not a closure: with the spawn start method, workers receive it pickled)."""

    def __init__(self, files: list[InputFile]) -> None:
        self.files = files

    def __call__(self, samples: list[tuple[int, torch.Tensor | None, str | None]]):
        batch, by_shape = PredictionBatch(), {}
        for index, tensor, reason in samples:
            if tensor is None:
                batch.failures.append((index, self.files[index], reason))
            else:
                by_shape.setdefault(tuple(tensor.shape), []).append((index, tensor))
        for members in by_shape.values():
            indices = [index for index, _ in members]
            stacked = torch.stack([tensor for _, tensor in members])
            batch.groups.append(InputGroup(indices, [self.files[i] for i in indices], stacked))
        return batch


def build_prediction_loader(
    files: list[InputFile],
    read: Callable[[Path], torch.Tensor],
    batch_size: int,
    num_workers: int,
    pin_memory: bool = False,
) -> DataLoader:
    """Input files in order, read by `num_workers` processes (the task's reader: a file's path
    to the model's input tensor), as in training."""
    return DataLoader(
        PredictionInputs(files, read),
        batch_size=batch_size,
        shuffle=False,
        collate_fn=CollatePredictions(files),
        num_workers=num_workers,
        pin_memory=pin_memory,
        prefetch_factor=4 if num_workers > 0 else None,
        worker_init_fn=ignore_stop_signals,
    )
