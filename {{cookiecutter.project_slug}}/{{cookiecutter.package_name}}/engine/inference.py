"""Inference: a trained model as a function of image batches, and what it needs to be fed.

A model card (a dict of plain values, JSON-able) says what a model file is: its task, the
config that builds it, how images become its inputs, its classes and the task's own settings.
predict.py reads it from a checkpoint or from an exported file (engine/exports.py writes it into
each format), so a deployed model carries everything a prediction needs.
"""

import math
import reprlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..errors import UserError
from ..image_files import FoundImage, load_rgb_image
from .checkpoint import load_checkpoint, load_model_weights
from .files import first_line
from .loader import ignore_stop_signals

CARD_VERSION = 1  # bump when a card's keys change meaning
# The largest input side a card may name: a larger one is a damaged card, not a model (an
# 8192 px square batch of one already takes 800 MB before the network's first layer).
MAX_IMAGE_SIZE = 8192


@dataclass
class Predictor:
    """A model ready to predict: `run` maps a float32 batch on `device` to the model's output
    (float32, on `device`), without autograd; `card` says how to feed it and read it."""

    run: Callable[[torch.Tensor], torch.Tensor]
    card: dict
    device: torch.device


def model_card(checkpoint: dict, path: str | Path, setting_names: tuple[str, ...]) -> dict:
    """The model card of a checkpoint; `setting_names` are the training flags the task needs at
    prediction time (e.g. image_to_image's corruption, for --corrupt)."""
    if checkpoint.get("preprocessing") is None:
        raise UserError(
            f"{path} was written before checkpoints recorded how images are fed to the model; "
            "evaluate it with test.py, or train a new run to predict with or export it"
        )
    train_args, state = checkpoint["args"], checkpoint["state"]
    return {
        "card_version": CARD_VERSION,
        "task": checkpoint.get("task"),
        "model_config": checkpoint["model_config"],
        "preprocessing": checkpoint["preprocessing"],
        "classes": list(checkpoint["classes"]),
        "settings": {name: train_args.get(name) for name in setting_names},
        # A run trained with --ema measured (and picked best.pt by) its average of the weights.
        "weights": "ema" if checkpoint.get("ema") is not None else "model",
        "checkpoint": str(path),
        "epoch": state["epoch"],
        "global_step": state["global_step"],
    }


# ------------------------------------------------------------------------------ Card checks
def check_card(card: object, source: str | Path, build_model: Callable) -> dict:
    """`card` when each field has the type and range this project writes, and its model_config
    builds the network; a card edited by hand, damaged or of another version is a UserError."""
    problem = card_problem(card) or model_config_problem(card["model_config"], build_model)
    if problem is not None:
        raise UserError(
            f"the model card of {source} is not usable: {problem}; use the file as export.py "
            "or train.py wrote it, or export the checkpoint again"
        )
    return card


def card_problem(card: object) -> str | None:
    """What is wrong with a card's fields (but the model config), or None."""
    if not isinstance(card, dict):
        return "it is not a JSON object"
    if card.get("card_version") != CARD_VERSION:
        return (
            f"card_version is {reprlib.repr(card.get('card_version'))}, not {CARD_VERSION} "
            f"(the version this project reads)"
        )
    expected = {"task": str, "model_config": dict, "preprocessing": dict, "classes": list,
                "settings": dict, "epoch": int, "global_step": int}  # fmt: skip
    for key, kind in expected.items():
        if not isinstance(card.get(key), kind) or isinstance(card.get(key), bool):
            return f"{key} is {reprlib.repr(card.get(key))}, not a {kind.__name__}"
    if not all(isinstance(name, str) for name in card["classes"]):
        return f"classes {reprlib.repr(card['classes'])} are not all strings"
    if card.get("weights") not in ("model", "ema"):
        return f'weights is {reprlib.repr(card.get("weights"))}, not "model" or "ema"'
    return preprocessing_problem(card["preprocessing"])


def preprocessing_problem(form: dict) -> str | None:
    """What is wrong with a card's preprocessing (input size, channels, normalisation), or None."""
    size = form.get("image_size")
    if not is_count(size, 1, MAX_IMAGE_SIZE):
        return f"preprocessing.image_size is {reprlib.repr(size)}, not a whole number of pixels "\
            f"from 1 to {MAX_IMAGE_SIZE}"  # fmt: skip
    resize = form.get("resize_size")
    if resize is not None and not is_count(resize, size, MAX_IMAGE_SIZE):
        return f"preprocessing.resize_size is {reprlib.repr(resize)}, not a whole number "\
            f"from image_size ({size}) to {MAX_IMAGE_SIZE}"  # fmt: skip
    if form.get("in_channels") not in (1, 3) or isinstance(form.get("in_channels"), bool):
        return f"preprocessing.in_channels is {reprlib.repr(form.get('in_channels'))}, not 1 or 3"
    for key, smallest in (("mean", -math.inf), ("std", 0.0)):
        values = form.get(key)
        if values is not None and not (
            isinstance(values, list)
            and len(values) in (1, 3)
            and all(is_number(value) and value > smallest for value in values)
        ):
            above = "" if smallest == -math.inf else " above 0"
            shown = reprlib.repr(values)
            return f"preprocessing.{key} is {shown}, not 1 or 3 finite numbers{above}"
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


def is_number(value: object) -> bool:
    """A finite int or float (JSON's numbers; not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_count(value: object, smallest: int, largest: int) -> bool:
    """An int (not a bool) from `smallest` to `largest`."""
    return isinstance(value, int) and not isinstance(value, bool) and smallest <= value <= largest


def load_checkpoint_model(
    path: Path, task_name: str, setting_names: tuple[str, ...], build_model: Callable
) -> tuple[nn.Module, dict]:
    """The checkpoint's network in eval mode on the CPU (its EMA weights when it has them),
    and its model card."""
    checkpoint = load_checkpoint(path, task_name)
    card = check_card(model_card(checkpoint, path, setting_names), path, build_model)
    model = build_model(card["model_config"])
    load_model_weights(model, checkpoint, path, card["weights"])
    return model.eval(), card


def eager_predictor(model: nn.Module, card: dict, device: torch.device) -> Predictor:
    """A Predictor of an nn.Module: eval mode, on `device`, under inference_mode."""
    model = model.eval().to(device)

    @torch.inference_mode()
    def run(images: torch.Tensor) -> torch.Tensor:
        return model(images).float()

    return Predictor(run, card, device)


# ------------------------------------------------------------------------------ Input images
@dataclass
class ImageGroup:
    """Images of one size, stacked: one forward pass. `indices` are their input positions."""

    indices: list[int]
    images: list[FoundImage]
    batch: torch.Tensor  # (N, C, H, W) float32


@dataclass
class PredictionBatch:
    """A loader batch: its readable images grouped by size, and the inputs that failed."""

    groups: list[ImageGroup] = field(default_factory=list)
    failures: list[tuple[int, FoundImage, str]] = field(default_factory=list)  # with the reason

    def pin_memory(self) -> "PredictionBatch":
        """Page-locked copies, so copies to the GPU overlap compute (DataLoader calls this)."""
        for group in self.groups:
            group.batch = group.batch.pin_memory()
        return self

    def to(self, device: torch.device) -> "PredictionBatch":
        """The same batch with its images on `device`."""
        for group in self.groups:
            group.batch = group.batch.to(device, non_blocking=True)
        return self


class PredictionImages(Dataset):
    """Input images loaded as RGB and transformed; an unreadable one is a reason, not a crash."""

    def __init__(self, images: list[FoundImage], transform: Callable) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        try:
            return index, self.transform(load_rgb_image(self.images[index].path)), None
        except UserError as error:  # load_rgb_image's sentence names the file
            return index, None, str(error)
        except (OSError, ValueError, Image.DecompressionBombError) as error:  # the transform's
            return (
                index,
                None,
                f"cannot use the image {self.images[index].path} ({first_line(error)})",
            )


class CollatePredictions:
    """A collate_fn that stacks same-sized samples into groups and keeps failures aside (a
    class, not a closure: with the spawn start method, workers receive it pickled)."""

    def __init__(self, images: list[FoundImage]) -> None:
        self.images = images

    def __call__(self, samples: list[tuple[int, torch.Tensor | None, str | None]]):
        batch, by_size = PredictionBatch(), {}
        for index, tensor, reason in samples:
            if tensor is None:
                batch.failures.append((index, self.images[index], reason))
            else:
                by_size.setdefault(tuple(tensor.shape), []).append((index, tensor))
        for members in by_size.values():
            indices = [index for index, _ in members]
            stacked = torch.stack([tensor for _, tensor in members])
            batch.groups.append(ImageGroup(indices, [self.images[i] for i in indices], stacked))
        return batch


def build_prediction_loader(
    images: list[FoundImage],
    transform: Callable,
    batch_size: int,
    num_workers: int,
    pin_memory: bool = False,
) -> DataLoader:
    """Input images in order, loaded and transformed by `num_workers` processes, as in training."""
    return DataLoader(
        PredictionImages(images, transform),
        batch_size=batch_size,
        shuffle=False,
        collate_fn=CollatePredictions(images),
        num_workers=num_workers,
        pin_memory=pin_memory,
        prefetch_factor=4 if num_workers > 0 else None,
        worker_init_fn=ignore_stop_signals,
    )
